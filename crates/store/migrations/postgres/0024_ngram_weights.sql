-- Weights of the byte n-gram classifier (logistic regression), one row per model beside its
-- Bayes counts (tenant_id 0 is the global model). `generation` makes updates
-- compare-and-set: a trainer writes only over the weights it started from.
CREATE TABLE ngram_weights (
    tenant_id  BIGINT PRIMARY KEY,
    generation BIGINT NOT NULL,
    weights    BYTEA NOT NULL
);
