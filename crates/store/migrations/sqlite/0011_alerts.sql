-- Alerts raised by detection (sandbox violations, canary touches, bulk reads, …). One alert per
-- dedupe key while it is open or acknowledged; repeats raise its count.
CREATE TABLE alerts (
    id         INTEGER PRIMARY KEY,
    rule       TEXT NOT NULL,
    severity   TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    dedupe_key TEXT NOT NULL,
    principal  TEXT NOT NULL DEFAULT '',
    tenant_id  INTEGER,
    summary    TEXT NOT NULL,
    first_at   INTEGER NOT NULL,
    last_at    INTEGER NOT NULL,
    count      INTEGER NOT NULL DEFAULT 1,
    state      TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'resolved')),
    updated_by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alerts_state ON alerts (state, last_at);
