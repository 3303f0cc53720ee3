-- The vault: tenant key pairs (age X25519), sealed quarantine metadata, and the record of
-- every vault call and content/secret access (the audit issue chains these records).
CREATE TABLE tenant_keys (
    tenant_id  BIGINT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    -- The age recipient (public key) messages are sealed to.
    recipient  TEXT NOT NULL,
    -- The identity (private key) wrapped with the vault's KEK; NULL when the tenant holds its
    -- own key (customer-held key: nobody here can open its mail).
    wrapped    BYTEA,
    created_at BIGINT NOT NULL
);

-- Quarantined messages: the body (with every header, subject included) is a sealed blob; only
-- what routing, listing and trace need is here.
CREATE TABLE quarantine (
    id          TEXT PRIMARY KEY,
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    mail_from   TEXT NOT NULL,
    rcpts       TEXT NOT NULL,           -- JSON array of addresses
    size        BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    verdict     TEXT NOT NULL,
    score       DOUBLE PRECISION NOT NULL,
    symbols     TEXT NOT NULL,
    blob        TEXT NOT NULL,           -- key in the blob store
    sealed_to   TEXT NOT NULL,           -- the age recipient it was sealed to
    eight_bit   BIGINT NOT NULL DEFAULT 0,
    smtputf8    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX quarantine_tenant ON quarantine (tenant_id, received_at);

CREATE TABLE records (
    id        BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    principal TEXT NOT NULL,             -- who: cli:<user>, mx, portal:<user>, vault, retention
    role      TEXT NOT NULL,             -- through which process
    action    TEXT NOT NULL,             -- open, release, delete, create-key, …
    tenant_id BIGINT,
    object    TEXT NOT NULL DEFAULT '',  -- quarantine id, secret name, …
    reason    TEXT NOT NULL DEFAULT '',
    outcome   TEXT NOT NULL              -- ok, refused: …, error: …
);
