-- Naive-Bayes models: tenant_id 0 is the global model. Tokens are 64-bit hashes (stored as
-- INTEGER bit patterns), never words.
CREATE TABLE bayes_models (
    tenant_id  INTEGER PRIMARY KEY,
    spam_msgs  INTEGER NOT NULL DEFAULT 0,
    ham_msgs   INTEGER NOT NULL DEFAULT 0,
    generation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE bayes_tokens (
    tenant_id INTEGER NOT NULL,
    token     INTEGER NOT NULL,
    spam      INTEGER NOT NULL,
    ham       INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, token)
) WITHOUT ROWID;
