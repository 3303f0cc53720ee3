//! Per-tenant filter policy: overrides of the global inspection policy, kept as one JSON
//! document per tenant (validated by the caller against the symbols it knows).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{Store, StoreError};

/// A person whose display name outsiders must not use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredName {
    /// The name.
    pub name: String,
    /// The person's real addresses (empty: any address at the tenant's domains).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

/// A tenant's overrides. Every field is optional; an empty policy means "global defaults".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterPolicy {
    /// Tag threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<f64>,
    /// Quarantine threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<f64>,
    /// Reject threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject: Option<f64>,
    /// Symbol weights by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, f64>,
    /// Protected display names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected_names: Vec<StoredName>,
    /// Trusted ARC sealers (domains).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_arc: Vec<String>,
    /// Days quarantined messages are kept (default: the node's `[quarantine] retention`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_days: Option<u32>,
    /// Days message-trace records are kept (default: the node's `[trace] retention`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_days: Option<u32>,
}

impl FilterPolicy {
    /// True if nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == FilterPolicy::default()
    }
}

impl Store {
    /// The tenant's filter policy (empty if it has none).
    pub async fn filter_policy(&self, tenant: &str) -> Result<FilterPolicy, StoreError> {
        let id = self.tenant_id(tenant).await?;
        self.filter_policy_of(id).await
    }

    pub(crate) async fn filter_policy_of(&self, id: i64) -> Result<FilterPolicy, StoreError> {
        let row = sqlx::query("SELECT body FROM filter_policies WHERE tenant_id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(r) => serde_json::from_str(&r.get::<String, _>(0))
                .map_err(|e| StoreError::Invalid(format!("stored filter policy: {e}"))),
            None => Ok(FilterPolicy::default()),
        }
    }

    /// Replaces the tenant's filter policy and bumps the generation (nodes pick it up).
    pub async fn set_filter_policy(
        &self,
        tenant: &str,
        policy: &FilterPolicy,
    ) -> Result<(), StoreError> {
        let id = self.tenant_id(tenant).await?;
        let body = serde_json::to_string(policy)
            .map_err(|e| StoreError::Invalid(format!("filter policy: {e}")))?;
        let mut tx = self.write_tx().await?;
        if policy.is_empty() {
            sqlx::query("DELETE FROM filter_policies WHERE tenant_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO filter_policies (tenant_id, body) VALUES ($1, $2)
                 ON CONFLICT(tenant_id) DO UPDATE SET body = $2",
            )
            .bind(id)
            .bind(body)
            .execute(&mut *tx)
            .await?;
        }
        Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
