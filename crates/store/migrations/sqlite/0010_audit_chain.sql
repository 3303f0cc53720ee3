-- The audit log: every record is chained to its predecessor by SHA-256 (with a random salt, so
-- a record's hash reveals nothing about it) and the vault signs checkpoints of the chain with
-- an Ed25519 key that only it can unwrap. See docs/audit.md.
ALTER TABLE records ADD COLUMN salt BLOB;
ALTER TABLE records ADD COLUMN prev_hash BLOB;
ALTER TABLE records ADD COLUMN hash BLOB;

CREATE TABLE audit_keys (
    key_id     TEXT PRIMARY KEY,
    public_key BLOB NOT NULL,
    wrapped    BLOB NOT NULL,          -- PKCS#8, wrapped with the KEK
    created_at INTEGER NOT NULL
);

CREATE TABLE audit_checkpoints (
    id        INTEGER PRIMARY KEY,
    record_id INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    hash      BLOB NOT NULL,
    key_id    TEXT NOT NULL,
    signature BLOB NOT NULL
);

-- Records not yet chained (written before this migration): found at once on every open.
CREATE INDEX records_unchained ON records (id) WHERE hash IS NULL;
