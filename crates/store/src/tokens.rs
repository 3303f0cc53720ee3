//! API tokens: scoped, expiring, revocable; kept as the vault's HMAC only.

use serde::Serialize;
use sqlx::Row;

use proto::Scope;

use crate::{Store, StoreError, User};

/// Most live tokens one user may hold.
pub const MAX_TOKENS_PER_USER: i64 = 50;

/// A token's description (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    /// Id.
    pub id: i64,
    /// The owner.
    pub user_id: i64,
    /// A name for people.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// Created (Unix seconds).
    pub created_at: i64,
    /// Expires.
    pub expires_at: i64,
    /// Revoked, if.
    pub revoked_at: Option<i64>,
    /// Last used.
    pub last_used_at: Option<i64>,
}

fn token(r: &crate::Row0) -> ApiToken {
    let scopes: String = r.get(3);
    ApiToken {
        id: r.get(0),
        user_id: r.get(1),
        name: r.get(2),
        // A name no Sekisho wrote grants nothing.
        scopes: scopes.split(' ').filter_map(|s| s.parse().ok()).collect(),
        created_at: r.get(4),
        expires_at: r.get(5),
        revoked_at: r.get(6),
        last_used_at: r.get(7),
    }
}

impl Store {
    /// Stores a new token's MAC.
    pub async fn api_token_insert(
        &self,
        user_id: i64,
        name: &str,
        token_mac: &str,
        scopes: &[Scope],
        now: i64,
        expires_at: i64,
    ) -> Result<ApiToken, StoreError> {
        let mut tx = self.write_tx().await?;
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(user_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if live >= MAX_TOKENS_PER_USER {
            return Err(StoreError::Invalid(format!(
                "{MAX_TOKENS_PER_USER} live tokens already: revoke some first"
            )));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (user_id, name, token_mac, scopes, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(user_id)
        .bind(name)
        .bind(token_mac)
        .bind(
            scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        )
        .bind(now)
        .bind(expires_at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ApiToken {
            id,
            user_id,
            name: name.to_string(),
            scopes: scopes.to_vec(),
            created_at: now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
        })
    }

    /// The live token with this MAC, and its (active) user; notes its use.
    pub async fn api_token_resolve(
        &self,
        token_mac: &str,
        now: i64,
    ) -> Result<Option<(ApiToken, User)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, user_id, name, scopes, created_at, expires_at, revoked_at, last_used_at
             FROM api_tokens WHERE token_mac = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(token_mac)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let t = token(&row);
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(t.id)
            .execute(self.pool())
            .await?;
        let user = self.user_by_id(t.user_id).await?.filter(|u| u.active);
        Ok(user.map(|u| (t, u)))
    }

    /// A user's tokens, newest first.
    pub async fn api_tokens_of(&self, user_id: i64) -> Result<Vec<ApiToken>, StoreError> {
        Ok(sqlx::query(
            "SELECT id, user_id, name, scopes, created_at, expires_at, revoked_at, last_used_at
             FROM api_tokens WHERE user_id = $1 ORDER BY id DESC",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(token)
        .collect())
    }

    /// Revokes every live token of a user (automatic response to an alert); how many.
    pub async fn api_tokens_revoke_user(&self, user_id: i64, now: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .execute(self.pool())
        .await?
        .rows_affected())
    }

    /// Revokes one of a user's tokens.
    pub async fn api_token_revoke(
        &self,
        id: i64,
        user_id: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let n = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .bind(user_id)
        .execute(self.pool())
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("no live token {id}")));
        }
        Ok(())
    }
}
