-- Allowed and blocked senders: a tenant's own (rcpt = '') or one recipient's ("always allow",
-- "always block" in the portal). A pattern is an address (`a@example.com`) or a domain
-- (`example.com`), lower case.
CREATE TABLE sender_lists (
    id         INTEGER PRIMARY KEY,
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    rcpt       TEXT NOT NULL DEFAULT '',
    pattern    TEXT NOT NULL,
    action     TEXT NOT NULL CHECK (action IN ('allow', 'block')),
    added_by   TEXT NOT NULL,
    added_at   INTEGER NOT NULL,
    UNIQUE (tenant_id, rcpt, pattern)
);
