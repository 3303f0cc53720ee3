//! Storage of the classifiers: naive-Bayes token counts and n-gram weights (global model =
//! tenant 0, and one per tenant).

use std::collections::HashMap;

use sqlx::Row;

use crate::{Store, StoreError};

/// Counts of one model as stored.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BayesCounts {
    /// Spam messages trained.
    pub spam_msgs: i64,
    /// Ham messages trained.
    pub ham_msgs: i64,
    /// `(token hash, spam count, ham count)`.
    pub tokens: Vec<(u64, i64, i64)>,
}

/// One message to learn: the digest of its token set, its class and its token hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnMessage {
    /// Identity of the message for this model (same tokens, same digest).
    pub digest: u64,
    /// True for spam.
    pub spam: bool,
    /// Token hashes.
    pub tokens: Vec<u64>,
}

/// What a learning run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LearnOutcome {
    /// Messages new to the model.
    pub learned: usize,
    /// Messages the model had as the other class, now moved.
    pub moved: usize,
    /// Messages the model already had as this class (nothing changed).
    pub already: usize,
}

/// New n-gram weights to store with a learning run, over the weights they were made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NgramUpdate {
    /// Generation of the stored weights the trainer started from (`None`: there were none).
    pub base: Option<i64>,
    /// The weights in their stored form.
    pub weights: Vec<u8>,
    /// The weights were learned again from this batch alone (the stored ones were of an
    /// earlier format): they are stored even when no message is new to the counts.
    pub relearned: bool,
}

impl Store {
    /// Learns messages into a model (0 = global) in one transaction: new messages are added,
    /// messages already learned as the same class are skipped (learning is idempotent), and
    /// messages learned as the other class are moved (their counts leave the old class).
    pub async fn bayes_learn(
        &self,
        tenant: i64,
        msgs: &[LearnMessage],
    ) -> Result<LearnOutcome, StoreError> {
        self.bayes_learn_with(tenant, msgs, None).await
    }

    /// The class each of `digests` was learned as in a model (absent: never learned).
    pub async fn bayes_seen(
        &self,
        tenant: i64,
        digests: &[u64],
    ) -> Result<HashMap<u64, bool>, StoreError> {
        let mut out = HashMap::new();
        for d in digests {
            if out.contains_key(d) {
                continue;
            }
            let row =
                sqlx::query("SELECT spam FROM bayes_seen WHERE tenant_id = $1 AND digest = $2")
                    .bind(tenant)
                    .bind(*d as i64)
                    .fetch_optional(self.pool())
                    .await?;
            if let Some(r) = row {
                out.insert(*d, r.get::<i64, _>(0) != 0);
            }
        }
        Ok(out)
    }

    /// The stored n-gram weights of a model: `(generation, stored form)`.
    pub async fn ngram_load(&self, tenant: i64) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        let row = sqlx::query("SELECT generation, weights FROM ngram_weights WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Like [`Store::bayes_learn`], and in the same transaction stores the n-gram weights
    /// the caller trained on these messages — only if the stored weights are still the ones
    /// it started from (`Conflict` otherwise: reload and train again), and only when some
    /// message was new or moved.
    pub async fn bayes_learn_with(
        &self,
        tenant: i64,
        msgs: &[LearnMessage],
        ngram: Option<NgramUpdate>,
    ) -> Result<LearnOutcome, StoreError> {
        let mut tx = self.write_tx().await?;
        if let Some(update) = &ngram {
            let now: Option<i64> =
                sqlx::query("SELECT generation FROM ngram_weights WHERE tenant_id = $1")
                    .bind(tenant)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| r.get(0));
            if now != update.base {
                return Err(StoreError::Conflict(
                    "the n-gram model changed while this run trained it; train again".into(),
                ));
            }
        }
        let mut outcome = LearnOutcome::default();
        let mut class: HashMap<u64, Option<bool>> = HashMap::new();
        let mut delta = BayesCounts::default();
        let mut tokens: HashMap<u64, (i64, i64)> = HashMap::new();
        for m in msgs {
            let before = match class.get(&m.digest) {
                Some(c) => *c,
                None => {
                    sqlx::query("SELECT spam FROM bayes_seen WHERE tenant_id = $1 AND digest = $2")
                        .bind(tenant)
                        .bind(m.digest as i64)
                        .fetch_optional(&mut *tx)
                        .await?
                        .map(|r| r.get::<i64, _>(0) != 0)
                }
            };
            let sign = |spam: bool,
                        d: i64,
                        delta: &mut BayesCounts,
                        tokens: &mut HashMap<u64, (i64, i64)>| {
                if spam {
                    delta.spam_msgs += d;
                } else {
                    delta.ham_msgs += d;
                }
                for t in &m.tokens {
                    let e = tokens.entry(*t).or_default();
                    if spam {
                        e.0 += d;
                    } else {
                        e.1 += d;
                    }
                }
            };
            match before {
                Some(old) if old == m.spam => {
                    outcome.already += 1;
                    continue;
                }
                Some(old) => {
                    sign(old, -1, &mut delta, &mut tokens);
                    outcome.moved += 1;
                }
                None => outcome.learned += 1,
            }
            sign(m.spam, 1, &mut delta, &mut tokens);
            class.insert(m.digest, Some(m.spam));
        }
        for (digest, spam) in &class {
            if let Some(spam) = spam {
                sqlx::query(
                    "INSERT INTO bayes_seen (tenant_id, digest, spam) VALUES ($1, $2, $3)
                     ON CONFLICT(tenant_id, digest) DO UPDATE SET spam = $3",
                )
                .bind(tenant)
                .bind(*digest as i64)
                .bind(i64::from(*spam))
                .execute(&mut *tx)
                .await?;
            }
        }
        let relearned = ngram.as_ref().is_some_and(|u| u.relearned);
        // (Relearned weights alone add no counts but still move the generation, so nodes
        // load them.)
        if outcome.learned + outcome.moved > 0 || relearned {
            delta.tokens = tokens.into_iter().map(|(t, (s, h))| (t, s, h)).collect();
            add_counts(&mut tx, tenant, &delta).await?;
            if let Some(update) = ngram {
                sqlx::query(
                    "INSERT INTO ngram_weights (tenant_id, generation, weights) VALUES ($1, 1, $2)
                     ON CONFLICT(tenant_id) DO UPDATE SET generation = ngram_weights.generation + 1, weights = $2",
                )
                .bind(tenant)
                .bind(update.weights)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Adds counts to a model (0 = global) in one transaction and bumps its generation.
    pub async fn bayes_add(&self, tenant: i64, delta: &BayesCounts) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        add_counts(&mut tx, tenant, delta).await?;
        tx.commit().await?;
        Ok(())
    }

    /// `(tenant, generation)` of every stored model.
    pub async fn bayes_generations(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = sqlx::query("SELECT tenant_id, generation FROM bayes_models ORDER BY tenant_id")
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Loads one model's counts.
    pub async fn bayes_load(&self, tenant: i64) -> Result<BayesCounts, StoreError> {
        let head = sqlx::query("SELECT spam_msgs, ham_msgs FROM bayes_models WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_optional(self.pool())
            .await?;
        let Some(head) = head else {
            return Ok(BayesCounts::default());
        };
        let tokens = sqlx::query("SELECT token, spam, ham FROM bayes_tokens WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|r| (r.get::<i64, _>(0) as u64, r.get(1), r.get(2)))
            .collect();
        Ok(BayesCounts {
            spam_msgs: head.get(0),
            ham_msgs: head.get(1),
            tokens,
        })
    }
}

/// Applies counts (negative ones remove; nothing drops below zero) and bumps the generation.
async fn add_counts(
    tx: &mut crate::Tx,
    tenant: i64,
    delta: &BayesCounts,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO bayes_models (tenant_id, spam_msgs, ham_msgs, generation)
         VALUES ($1, CASE WHEN $2 > 0 THEN $2 ELSE 0 END, CASE WHEN $3 > 0 THEN $3 ELSE 0 END, 1)
         ON CONFLICT(tenant_id) DO UPDATE SET spam_msgs = CASE WHEN bayes_models.spam_msgs + $2 > 0 THEN bayes_models.spam_msgs + $2 ELSE 0 END,
         ham_msgs = CASE WHEN bayes_models.ham_msgs + $3 > 0 THEN bayes_models.ham_msgs + $3 ELSE 0 END, generation = bayes_models.generation + 1",
    )
    .bind(tenant)
    .bind(delta.spam_msgs)
    .bind(delta.ham_msgs)
    .execute(&mut **tx)
    .await?;
    for (token, spam, ham) in &delta.tokens {
        if *spam == 0 && *ham == 0 {
            continue;
        }
        sqlx::query(
            "INSERT INTO bayes_tokens (tenant_id, token, spam, ham) VALUES ($1, $2, CASE WHEN $3 > 0 THEN $3 ELSE 0 END, CASE WHEN $4 > 0 THEN $4 ELSE 0 END)
             ON CONFLICT(tenant_id, token) DO UPDATE SET spam = CASE WHEN bayes_tokens.spam + $3 > 0 THEN bayes_tokens.spam + $3 ELSE 0 END, ham = CASE WHEN bayes_tokens.ham + $4 > 0 THEN bayes_tokens.ham + $4 ELSE 0 END",
        )
        .bind(tenant)
        .bind(*token as i64)
        .bind(spam)
        .bind(ham)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
