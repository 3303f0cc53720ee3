//! Outbound relay: the networks a tenant's own mail servers send from, and the senders held
//! for sending too much. A change of networks bumps the directory generation, so every node
//! admits (or stops admitting) the tenant's servers with its next directory reload.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError, unix_now};

/// Most networks one tenant may register.
pub const MAX_OUTBOUND_NETWORKS: i64 = 256;

/// The detection kind of outbound senders: their recipients are counted in `detect_events`,
/// their holds and counter resets kept in `detect_marks`, scoped by [`outbound_scope`].
pub const OUTBOUND: &str = "outbound";

/// One registered network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboundNetwork {
    /// Tenant id.
    pub tenant_id: i64,
    /// Canonical prefix (`192.0.2.0/24`).
    pub network: String,
    /// Who added it.
    pub added_by: String,
    /// When (Unix seconds).
    pub added_at: i64,
}

/// The canonical form of a network (`192.0.2.7/24` → `192.0.2.0/24`; a bare address is a
/// host route), or why it is not one. Prefixes wider than /8 (IPv4) or /16 (IPv6) are
/// refused: nobody's mail servers fill them, and a typo there would open the relay.
pub fn outbound_network(s: &str) -> Result<IpNet, StoreError> {
    let s = s.trim();
    let net: IpNet = match s.parse::<IpNet>() {
        Ok(n) => n.trunc(),
        Err(_) => match s.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => {
                return Err(StoreError::Invalid(format!(
                    "{s:?} is not an IP network (write 192.0.2.0/24, 2001:db8::/48 or one address)"
                )));
            }
        },
    };
    let widest = match net {
        IpNet::V4(_) => 8,
        IpNet::V6(_) => 16,
    };
    if net.prefix_len() < widest {
        return Err(StoreError::Invalid(format!(
            "{net} is wider than /{widest}: register your mail servers' own networks"
        )));
    }
    Ok(net)
}

/// The hold scope of one sender of one tenant.
pub fn outbound_scope(tenant: i64, sender: &str) -> String {
    format!("{tenant}:{}", sender.to_lowercase())
}

impl Store {
    /// Registers a network of `tenant`'s mail servers. Returns the canonical network.
    pub async fn add_outbound_network(
        &self,
        tenant: i64,
        network: &str,
        by: &str,
    ) -> Result<String, StoreError> {
        let net = outbound_network(network)?.to_string();
        let mut tx = self.write_tx().await?;
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbound_networks WHERE tenant_id = $1")
                .bind(tenant)
                .fetch_one(&mut *tx)
                .await?;
        if n >= MAX_OUTBOUND_NETWORKS {
            return Err(StoreError::Invalid(format!(
                "a tenant may register at most {MAX_OUTBOUND_NETWORKS} outbound networks"
            )));
        }
        let done = sqlx::query(
            "INSERT INTO outbound_networks (tenant_id, network, added_by, added_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(tenant)
        .bind(&net)
        .bind(by)
        .bind(unix_now())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("{net} is registered already")));
        }
        Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(net)
    }

    /// Removes a registered network of `tenant`.
    pub async fn remove_outbound_network(
        &self,
        tenant: i64,
        network: &str,
    ) -> Result<String, StoreError> {
        let net = outbound_network(network)?.to_string();
        let mut tx = self.write_tx().await?;
        let done =
            sqlx::query("DELETE FROM outbound_networks WHERE tenant_id = $1 AND network = $2")
                .bind(tenant)
                .bind(&net)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("{net} is not registered")));
        }
        Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(net)
    }

    /// The registered networks (of one tenant, or of all).
    pub async fn outbound_networks(
        &self,
        tenant: Option<i64>,
    ) -> Result<Vec<OutboundNetwork>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, network, added_by, added_at FROM outbound_networks
             WHERE $1 < 0 OR tenant_id = $1 ORDER BY tenant_id, network",
        )
        .bind(tenant.unwrap_or(-1))
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| OutboundNetwork {
                tenant_id: r.get(0),
                network: r.get(1),
                added_by: r.get(2),
                added_at: r.get(3),
            })
            .collect())
    }

    /// Ends the hold of `scope` of `kind` (a sender released by an administrator). False if
    /// it was not held.
    pub async fn detect_release(
        &self,
        kind: &str,
        scope: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE detect_marks SET until_ms = 0, reset_ms = $3
             WHERE kind = $1 AND scope = $2 AND until_ms > $3",
        )
        .bind(kind)
        .bind(scope)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}
