-- Per-principal baselines: the highest count a counter's window reached each day for each
-- scope, and whether the rule fired that day (such days are left out of the baseline, so an
-- attack does not teach the rule to tolerate the next one).
CREATE TABLE detect_peaks (
    kind  TEXT NOT NULL,
    scope TEXT NOT NULL,
    day   BIGINT NOT NULL,
    peak  BIGINT NOT NULL,
    fired BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, scope, day)
);
