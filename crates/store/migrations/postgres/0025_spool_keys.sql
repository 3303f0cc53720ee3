-- Each node's spool key, wrapped under the KEK by the vault (which alone can unwrap it and
-- hands it to that node's mx at start). Nothing in the data directory opens the spool.
CREATE TABLE spool_keys (
    node       TEXT PRIMARY KEY,
    wrapped    BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
