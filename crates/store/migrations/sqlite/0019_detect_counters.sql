-- Detection counters shared by every node (bulk opens per principal, failed logins, WAF
-- blocks): one row per event inside the rules' windows (older rows are pruned as new ones
-- arrive), and per (kind, scope) the time its count last started over and a throttle/block
-- that every node honours.
CREATE TABLE detect_events (
    id      INTEGER PRIMARY KEY,
    kind    TEXT NOT NULL,
    scope   TEXT NOT NULL,
    account TEXT NOT NULL DEFAULT '',
    source  TEXT NOT NULL DEFAULT '',
    at_ms   INTEGER NOT NULL
);
CREATE INDEX detect_events_scope ON detect_events (kind, scope, at_ms);
CREATE TABLE detect_marks (
    kind        TEXT NOT NULL,
    scope       TEXT NOT NULL,
    reset_ms    INTEGER NOT NULL DEFAULT 0,
    until_ms    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, scope)
);
