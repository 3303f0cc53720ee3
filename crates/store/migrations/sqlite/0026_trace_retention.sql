-- Trace retention purges each tenant's events by age.
CREATE INDEX trace_events_tenant_at ON trace_events (tenant_id, at);
