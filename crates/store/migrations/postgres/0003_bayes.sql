-- Naive-Bayes models: tenant_id 0 is the global model. Tokens are 64-bit hashes (stored as
-- BIGINT bit patterns), never words.
CREATE TABLE bayes_models (
    tenant_id  BIGINT PRIMARY KEY,
    spam_msgs  BIGINT NOT NULL DEFAULT 0,
    ham_msgs   BIGINT NOT NULL DEFAULT 0,
    generation BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE bayes_tokens (
    tenant_id BIGINT NOT NULL,
    token     BIGINT NOT NULL,
    spam      BIGINT NOT NULL,
    ham       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, token)
);
