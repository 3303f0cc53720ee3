-- Foundation schema: tenants, their domains and recipients, and the message trace.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
-- Bumped by every directory change; nodes reload their in-memory directory when it moves.
INSERT INTO meta (key, value) VALUES ('generation', 1);

CREATE TABLE tenants (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    route            TEXT NOT NULL,
    recipient_policy TEXT NOT NULL DEFAULT 'auto'
        CHECK (recipient_policy IN ('auto', 'verify', 'catch-all')),
    created_at       INTEGER NOT NULL
);

CREATE TABLE domains (
    domain    TEXT PRIMARY KEY,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE
);

CREATE TABLE recipients (
    address   TEXT PRIMARY KEY,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE
);
CREATE INDEX recipients_tenant ON recipients (tenant_id);

CREATE TABLE trace_messages (
    id          TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL,
    mail_from   TEXT NOT NULL,
    size        INTEGER NOT NULL,
    client_ip   TEXT NOT NULL,
    helo        TEXT NOT NULL,
    tls         TEXT
);
CREATE INDEX trace_messages_from ON trace_messages (mail_from);
CREATE INDEX trace_messages_time ON trace_messages (received_at);

CREATE TABLE trace_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    rcpt       TEXT NOT NULL,
    tenant_id  INTEGER,
    at         INTEGER NOT NULL,
    event      TEXT NOT NULL,
    detail     TEXT NOT NULL
);
CREATE INDEX trace_events_message ON trace_events (message_id);
CREATE INDEX trace_events_rcpt ON trace_events (rcpt);
