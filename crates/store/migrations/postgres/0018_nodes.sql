-- The gateway nodes sharing this store, each writing a heartbeat with its queue sizes and
-- version (`sekisho node list`). A node that stopped beating is shown as down, not deleted.
CREATE TABLE nodes (
    name       TEXT PRIMARY KEY,
    version    TEXT NOT NULL,
    smtp       TEXT NOT NULL DEFAULT '',
    started_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    active     BIGINT NOT NULL DEFAULT 0,
    deferred   BIGINT NOT NULL DEFAULT 0,
    hold       BIGINT NOT NULL DEFAULT 0,
    stopped    BIGINT NOT NULL DEFAULT 0
);
