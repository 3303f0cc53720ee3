-- Connector secrets (SMTP AUTH credentials, TLS client certificate and key), sealed by the
-- vault with its KEK and bound to their tenant and kind. Write-only: no command or API reads
-- them back; only the mx role obtains them from the vault, at use.
CREATE TABLE secrets (
    tenant_id  BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    sealed     BYTEA NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind)
);
