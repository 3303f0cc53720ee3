-- A tenant's filter policy overrides (thresholds, weights, protected names, trusted ARC
-- forwarders) as one JSON document; absent means the global policy applies unchanged.
CREATE TABLE filter_policies (
    tenant_id BIGINT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    body      TEXT NOT NULL
);
