-- WebAuthn passkeys of portal accounts. The vault keeps each credential (public key, counter)
-- with its HMAC under a key only it can derive, so a row written by anyone else is refused.
CREATE TABLE passkeys (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    cred_id      TEXT NOT NULL UNIQUE,
    user_handle  TEXT NOT NULL,
    name         TEXT NOT NULL,
    passkey      TEXT NOT NULL,
    mac          TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX passkeys_user ON passkeys (user_id);
-- A registration or sign-in in progress: the challenge state, MAC'd by the vault, keyed by the
-- HMAC of a random ceremony id; taken exactly once, and worthless after it expires.
CREATE TABLE webauthn_ceremonies (
    id_mac     TEXT PRIMARY KEY,
    purpose    TEXT NOT NULL,
    user_id    INTEGER REFERENCES users (id) ON DELETE CASCADE,
    state      TEXT NOT NULL,
    mac        TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX webauthn_ceremonies_expiry ON webauthn_ceremonies (expires_at);
