-- Messages a Bayes model has learned, by digest of their token set, and as which class:
-- learning the same message again is a no-op, learning it as the other class moves it.
CREATE TABLE bayes_seen (
    tenant_id BIGINT NOT NULL,
    digest    BIGINT NOT NULL,
    spam      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, digest)
);
