-- Tenant ids are never reused: queued mail, records and backups name tenants by id, so a new
-- tenant must not inherit a terminated tenant's id. The high-water mark survives deletions.
INSERT INTO meta (key, value) VALUES ('tenant_high_water', (SELECT coalesce(max(id), 0) FROM tenants));
