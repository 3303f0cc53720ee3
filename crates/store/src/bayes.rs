//! Storage of naive-Bayes token counts (global model = tenant 0, and one per tenant).

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

impl Store {
    /// Adds counts to a model (0 = global) in one transaction and bumps its generation.
    pub async fn bayes_add(&self, tenant: i64, delta: &BayesCounts) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO bayes_models (tenant_id, spam_msgs, ham_msgs, generation) VALUES (?1, ?2, ?3, 1)
             ON CONFLICT(tenant_id) DO UPDATE SET spam_msgs = spam_msgs + ?2, ham_msgs = ham_msgs + ?3,
             generation = generation + 1",
        )
        .bind(tenant)
        .bind(delta.spam_msgs)
        .bind(delta.ham_msgs)
        .execute(&mut *tx)
        .await?;
        for (token, spam, ham) in &delta.tokens {
            sqlx::query(
                "INSERT INTO bayes_tokens (tenant_id, token, spam, ham) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(tenant_id, token) DO UPDATE SET spam = spam + ?3, ham = ham + ?4",
            )
            .bind(tenant)
            .bind(*token as i64)
            .bind(spam)
            .bind(ham)
            .execute(&mut *tx)
            .await?;
        }
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
        let head = sqlx::query("SELECT spam_msgs, ham_msgs FROM bayes_models WHERE tenant_id = ?")
            .bind(tenant)
            .fetch_optional(self.pool())
            .await?;
        let Some(head) = head else {
            return Ok(BayesCounts::default());
        };
        let tokens = sqlx::query("SELECT token, spam, ham FROM bayes_tokens WHERE tenant_id = ?")
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
