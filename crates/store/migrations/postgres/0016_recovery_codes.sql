-- One-time recovery codes of portal accounts (for a lost authenticator). Only the vault's
-- HMAC of each code is kept, so the database alone cannot tell or test a code.
CREATE TABLE recovery_codes (
    user_id  BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_mac TEXT NOT NULL,
    used_at  BIGINT,
    PRIMARY KEY (user_id, code_mac)
);
