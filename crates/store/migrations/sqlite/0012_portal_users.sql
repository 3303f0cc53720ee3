-- Portal accounts. No password or second factor is readable here: the password is an argon2id
-- PHC string, the TOTP secret is sealed by the vault with the KEK (AAD binds it to the user).
-- Operators and auditors have no tenant; tenant admins and end users belong to one tenant and
-- go with it when it is terminated.
CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    role           TEXT NOT NULL CHECK (role IN ('operator', 'auditor', 'tenant-admin', 'user')),
    tenant_id      INTEGER REFERENCES tenants (id) ON DELETE CASCADE,
    password_hash  TEXT NOT NULL,
    totp_sealed    BLOB NOT NULL,
    totp_last_step INTEGER,
    active         INTEGER NOT NULL DEFAULT 0,
    failed_logins  INTEGER NOT NULL DEFAULT 0,
    locked_until   INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    CHECK ((role IN ('operator', 'auditor')) = (tenant_id IS NULL))
);

-- Live sessions. `id_mac` is HMAC-SHA256 of the session token under a key only the vault has,
-- so a row written by anyone else never matches a token.
CREATE TABLE user_sessions (
    id_mac      TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_ip   TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX user_sessions_user ON user_sessions (user_id);

-- One-time enrolment links (an invitation to create one account). `token_mac` as above.
CREATE TABLE enrolments (
    token_mac   TEXT PRIMARY KEY,
    email       TEXT NOT NULL,
    role        TEXT NOT NULL,
    tenant_id   INTEGER REFERENCES tenants (id) ON DELETE CASCADE,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    user_id     INTEGER REFERENCES users (id) ON DELETE CASCADE
);
