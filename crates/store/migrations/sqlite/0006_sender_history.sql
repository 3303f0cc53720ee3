-- Which sender addresses (64-bit hashes of the lower-cased From address) have written to which
-- tenant, for the first-contact rule. Rows only grow; nodes load them incrementally by id.
CREATE TABLE sender_history (
    id         INTEGER PRIMARY KEY,
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    sender     INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    UNIQUE (tenant_id, sender)
);
