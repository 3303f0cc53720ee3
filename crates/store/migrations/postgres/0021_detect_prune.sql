-- Detection events older than every rule's window are pruned by age across all scopes (a
-- scope that never comes back — one address of a spraying run — is not pruned by its own
-- next event), so they are found by time.
CREATE INDEX detect_events_at ON detect_events (at_ms);
