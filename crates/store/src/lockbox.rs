//! Lockbox: operators' time-limited, tenant-approved access to a tenant's content.
//!
//! Anyone with the database may request or revoke (neither grants anything); only the vault
//! approves, and it seals each approval's terms with a MAC it alone can compute, which it
//! checks again on every open.

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError};

/// Shortest access an operator may ask for (minutes).
pub const LOCKBOX_MIN_MINUTES: i64 = 5;
/// Longest access an operator may ask for (minutes).
pub const LOCKBOX_MAX_MINUTES: i64 = 24 * 60;

/// One request and its decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lockbox {
    /// Id.
    pub id: i64,
    /// The tenant whose content.
    pub tenant_id: i64,
    /// The tenant's name.
    pub tenant: String,
    /// The operator's account id.
    pub operator_id: i64,
    /// The operator's login name.
    pub operator: String,
    /// Why.
    pub reason: String,
    /// How long the access lasts once approved.
    pub minutes: i64,
    /// When asked (Unix seconds).
    pub requested_at: i64,
    /// `requested`, `approved`, `denied` or `revoked` (an approval past `expires_at` is over).
    pub state: String,
    /// Who decided (principal).
    pub decided_by: String,
    /// When.
    pub decided_at: Option<i64>,
    /// End of an approved access.
    pub expires_at: Option<i64>,
    /// The vault's MAC over an approval's terms.
    #[serde(skip)]
    pub approval_mac: String,
}

impl Lockbox {
    /// An approved, unexpired access at `now` (the caller checks the MAC).
    pub fn open_at(&self, now: i64) -> bool {
        self.state == "approved" && self.expires_at.is_some_and(|e| e > now)
    }
}

macro_rules! select_lockbox {
    ($tail:literal) => {
        concat!(
            "SELECT l.id, l.tenant_id, t.name, l.operator_id, l.operator, l.reason, l.minutes, l.requested_at, l.state, l.decided_by, l.decided_at, l.expires_at, l.approval_mac
             FROM lockbox l JOIN tenants t ON t.id = l.tenant_id ",
            $tail
        )
    };
}

fn lockbox(r: &crate::Row0) -> Lockbox {
    Lockbox {
        id: r.get(0),
        tenant_id: r.get(1),
        tenant: r.get(2),
        operator_id: r.get(3),
        operator: r.get(4),
        reason: r.get(5),
        minutes: r.get(6),
        requested_at: r.get(7),
        state: r.get(8),
        decided_by: r.get(9),
        decided_at: r.get(10),
        expires_at: r.get(11),
        approval_mac: r.get(12),
    }
}

impl Store {
    /// Files an operator's request.
    pub async fn lockbox_request(
        &self,
        tenant_id: i64,
        operator_id: i64,
        operator: &str,
        reason: &str,
        minutes: i64,
        at: i64,
    ) -> Result<Lockbox, StoreError> {
        if !(LOCKBOX_MIN_MINUTES..=LOCKBOX_MAX_MINUTES).contains(&minutes) {
            return Err(StoreError::Invalid(format!(
                "minutes must be {LOCKBOX_MIN_MINUTES} to {LOCKBOX_MAX_MINUTES}"
            )));
        }
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO lockbox (tenant_id, operator_id, operator, reason, minutes, requested_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(tenant_id)
        .bind(operator_id)
        .bind(operator)
        .bind(reason)
        .bind(minutes)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        self.lockbox_get(id).await
    }

    /// One request.
    pub async fn lockbox_get(&self, id: i64) -> Result<Lockbox, StoreError> {
        sqlx::query(select_lockbox!("WHERE l.id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .map(|r| lockbox(&r))
            .ok_or_else(|| StoreError::NotFound(format!("no lockbox request {id}")))
    }

    /// Requests, newest first: of one tenant, of one operator, or all.
    pub async fn lockbox_list(
        &self,
        tenant_id: Option<i64>,
        operator_id: Option<i64>,
    ) -> Result<Vec<Lockbox>, StoreError> {
        Ok(sqlx::query(select_lockbox!(
            "WHERE ($1 IS NULL OR l.tenant_id = $1) AND ($2 IS NULL OR l.operator_id = $2)
             ORDER BY l.id DESC LIMIT 500"
        ))
        .bind(tenant_id)
        .bind(operator_id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(lockbox)
        .collect())
    }

    /// Records a decision on a pending request (`approved` with its expiry and MAC, or
    /// `denied`); a request decided already is not changed.
    pub async fn lockbox_decide(
        &self,
        id: i64,
        state: &str,
        by: &str,
        at: i64,
        expires_at: Option<i64>,
        mac: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let n = sqlx::query(
            "UPDATE lockbox SET state = $2, decided_by = $3, decided_at = $4, expires_at = $5, approval_mac = $6
             WHERE id = $1 AND state = 'requested'",
        )
        .bind(id)
        .bind(state)
        .bind(by)
        .bind(at)
        .bind(expires_at)
        .bind(mac)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "lockbox request {id} is not waiting for a decision"
            )));
        }
        Ok(())
    }

    /// Ends a pending or approved request early.
    pub async fn lockbox_revoke(&self, id: i64, by: &str, at: i64) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let n = sqlx::query(
            "UPDATE lockbox SET state = 'revoked', decided_by = $2, decided_at = $3, approval_mac = ''
             WHERE id = $1 AND state IN ('requested', 'approved')",
        )
        .bind(id)
        .bind(by)
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "lockbox request {id} is neither pending nor approved"
            )));
        }
        Ok(())
    }

    /// The operator's approved, unexpired accesses to the tenant at `now` (MACs unchecked).
    pub async fn lockbox_active(
        &self,
        operator_id: i64,
        tenant_id: i64,
        now: i64,
    ) -> Result<Vec<Lockbox>, StoreError> {
        Ok(sqlx::query(select_lockbox!(
            "WHERE l.operator_id = $1 AND l.tenant_id = $2 AND l.state = 'approved' AND l.expires_at > $3"
        ))
        .bind(operator_id)
        .bind(tenant_id)
        .bind(now)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(lockbox)
        .collect())
    }
}
