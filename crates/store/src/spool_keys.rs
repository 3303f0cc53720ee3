//! Each node's spool key, wrapped under the KEK (the vault's table: mx has no grant on it).

use sqlx::Row;

use crate::{Store, StoreError, unix_now};

/// A node's wrapped spool key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedSpoolKey {
    /// The node it belongs to (`[server] node_name`).
    pub node: String,
    /// The key, wrapped under the KEK and bound to the node.
    pub wrapped: Vec<u8>,
}

impl Store {
    /// The wrapped spool key of `node`, if it has one.
    pub async fn spool_key(&self, node: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT wrapped FROM spool_keys WHERE node = $1")
            .bind(node)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Stores `node`'s first wrapped spool key; if one was stored meanwhile, that one stays
    /// and is returned (the spool it seals must keep opening).
    pub async fn spool_key_create(
        &self,
        node: &str,
        wrapped: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        sqlx::query(
            "INSERT INTO spool_keys (node, wrapped, created_at) VALUES ($1, $2, $3) ON CONFLICT (node) DO NOTHING",
        )
        .bind(node)
        .bind(wrapped)
        .bind(unix_now())
        .execute(self.pool())
        .await?;
        self.spool_key(node)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no spool key for node {node}")))
    }

    /// Replaces `node`'s wrapped spool key (the old one did not open and sealed nothing).
    pub async fn spool_key_replace(&self, node: &str, wrapped: &[u8]) -> Result<(), StoreError> {
        sqlx::query("UPDATE spool_keys SET wrapped = $1, created_at = $2 WHERE node = $3")
            .bind(wrapped)
            .bind(unix_now())
            .bind(node)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Every node's wrapped spool key (for KEK rotation).
    pub async fn spool_keys(&self) -> Result<Vec<WrappedSpoolKey>, StoreError> {
        let rows = sqlx::query("SELECT node, wrapped FROM spool_keys ORDER BY node")
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(|r| WrappedSpoolKey {
                node: r.get(0),
                wrapped: r.get(1),
            })
            .collect())
    }
}
