//! The node registry: every gateway node sharing the store writes a heartbeat (its version,
//! SMTP address and queue sizes), so an operator sees the whole cluster with
//! `sekisho node list`.

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError, unix_now};

/// A node is shown as up while its last heartbeat is at most this many seconds old.
pub const NODE_STALE_AFTER: i64 = 20;

/// One node as last reported.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its name (`[server] node_name`, the host name by default); unique in the cluster.
    pub name: String,
    /// Sekisho version it runs.
    pub version: String,
    /// Its SMTP listener.
    pub smtp: String,
    /// When it started (Unix seconds).
    pub started_at: i64,
    /// Its last heartbeat (Unix seconds).
    pub last_seen: i64,
    /// Queue: messages being delivered.
    pub active: i64,
    /// Queue: messages waiting for a retry.
    pub deferred: i64,
    /// Queue: messages held.
    pub hold: i64,
    /// True if it said goodbye (clean shutdown).
    pub stopped: bool,
}

impl NodeInfo {
    /// `up`, `stopped` or `down` at `now`.
    pub fn status(&self, now: i64) -> &'static str {
        if self.stopped {
            "stopped"
        } else if now - self.last_seen <= NODE_STALE_AFTER {
            "up"
        } else {
            "down"
        }
    }
}

impl Store {
    /// Writes a node's heartbeat (creating its row on first call).
    pub async fn node_beat(&self, n: &NodeInfo) -> Result<(), StoreError> {
        if n.name.is_empty() || n.name.len() > 64 || n.name.chars().any(char::is_control) {
            return Err(StoreError::Invalid(
                "node name must be 1-64 printable characters".into(),
            ));
        }
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO nodes (name, version, smtp, started_at, last_seen, active, deferred, hold, stopped)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (name) DO UPDATE SET version = $2, smtp = $3, started_at = $4,
                 last_seen = $5, active = $6, deferred = $7, hold = $8, stopped = $9",
        )
        .bind(&n.name)
        .bind(&n.version)
        .bind(&n.smtp)
        .bind(n.started_at)
        .bind(n.last_seen)
        .bind(n.active)
        .bind(n.deferred)
        .bind(n.hold)
        .bind(i64::from(n.stopped))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// True if `node` is the first node (by name) that is up: with several nodes on one store,
    /// the one that runs cluster-wide duties (alert sinks, the digest). If it stops beating,
    /// the next takes over within [`NODE_STALE_AFTER`] seconds. A store error answers false.
    pub async fn is_first_up(&self, node: &str) -> bool {
        let now = unix_now();
        match self.nodes().await {
            Ok(nodes) => nodes
                .iter()
                .find(|n| n.status(now) == "up")
                .is_some_and(|n| n.name == node),
            Err(_) => false,
        }
    }

    /// Every node that ever beat, by name.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, version, smtp, started_at, last_seen, active, deferred, hold, stopped
             FROM nodes ORDER BY name",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| NodeInfo {
                name: r.get(0),
                version: r.get(1),
                smtp: r.get(2),
                started_at: r.get(3),
                last_seen: r.get(4),
                active: r.get(5),
                deferred: r.get(6),
                hold: r.get(7),
                stopped: r.get::<i64, _>(8) != 0,
            })
            .collect())
    }
}
