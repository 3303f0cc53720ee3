-- Lockbox: an operator's request to open one tenant's content, approved (or denied) by a
-- tenant admin for a limited time. Only the vault approves: `approval_mac` is an HMAC under a
-- KEK-derived key over the approval's terms, so a row written by anyone else opens nothing.
CREATE TABLE lockbox (
    id             INTEGER PRIMARY KEY,
    tenant_id      INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    operator_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    operator       TEXT NOT NULL,
    reason         TEXT NOT NULL,
    minutes        INTEGER NOT NULL CHECK (minutes BETWEEN 5 AND 1440),
    requested_at   INTEGER NOT NULL,
    state          TEXT NOT NULL DEFAULT 'requested'
        CHECK (state IN ('requested', 'approved', 'denied', 'revoked')),
    decided_by     TEXT NOT NULL DEFAULT '',
    decided_at     INTEGER,
    expires_at     INTEGER,
    approval_mac   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX lockbox_tenant ON lockbox (tenant_id, state);
CREATE INDEX lockbox_operator ON lockbox (operator_id, state);
