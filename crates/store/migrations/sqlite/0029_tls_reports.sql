-- TLS reporting (RFC 8460). Outbound TLS sessions counted per UTC day, policy domain and
-- sending tenant (0: the gateway's own mail, such as DSNs), with what a report tells apart;
-- `key` is a digest of those fields (the policy text may be long). Each node adds its counts.
CREATE TABLE tls_sessions (
    day           BIGINT NOT NULL,
    key           TEXT NOT NULL,
    policy_domain TEXT NOT NULL,
    tenant_id     BIGINT NOT NULL,
    policy_type   TEXT NOT NULL,
    policy_text   TEXT NOT NULL,
    result        TEXT NOT NULL,
    receiving_mx  TEXT NOT NULL,
    sending_ip    TEXT NOT NULL,
    receiving_ip  TEXT NOT NULL,
    sessions      BIGINT NOT NULL,
    PRIMARY KEY (day, key)
);
CREATE INDEX tls_sessions_domain ON tls_sessions (policy_domain, day);
-- One report per policy domain and day: the row is the claim that keeps two nodes from
-- sending the same report, and says what came of it.
CREATE TABLE tls_reports (
    day           BIGINT NOT NULL,
    policy_domain TEXT NOT NULL,
    node          TEXT NOT NULL,
    claimed_at    BIGINT NOT NULL,
    outcome       TEXT NOT NULL,
    PRIMARY KEY (day, policy_domain)
);
-- A tenant may opt out: its sessions are then in no report sent to anyone.
ALTER TABLE tenants ADD COLUMN tls_reports INTEGER NOT NULL DEFAULT 1;
