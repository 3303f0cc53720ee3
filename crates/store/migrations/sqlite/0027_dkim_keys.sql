-- Tenants' DKIM signing keys, one row per (tenant, domain, selector). The private key is
-- sealed under the KEK by the vault, bound to its tenant, domain and selector; the vault
-- alone opens it, to sign a digest mx sends (the key never leaves the vault). At most one
-- active key per domain signs; a pending one waits for its record to be published.
CREATE TABLE dkim_keys (
    tenant_id  BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    domain     TEXT NOT NULL,
    selector   TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    public_key BLOB NOT NULL,
    sealed     BLOB NOT NULL,
    state      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, domain, selector)
);
CREATE UNIQUE INDEX dkim_keys_one_active ON dkim_keys (tenant_id, domain) WHERE state = 'active';
