-- The gateway nodes sharing this store, each writing a heartbeat with its queue sizes and
-- version (`sekisho node list`). A node that stopped beating is shown as down, not deleted.
CREATE TABLE nodes (
    name       TEXT PRIMARY KEY,
    version    TEXT NOT NULL,
    smtp       TEXT NOT NULL DEFAULT '',
    started_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    active     INTEGER NOT NULL DEFAULT 0,
    deferred   INTEGER NOT NULL DEFAULT 0,
    hold       INTEGER NOT NULL DEFAULT 0,
    stopped    INTEGER NOT NULL DEFAULT 0
);
