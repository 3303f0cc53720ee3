//! Alerts: what detection raises, deduplicated while open, moved through
//! open → acknowledged → resolved by people. Every raise and state change is also an audit
//! record.

use serde::Serialize;
use sqlx::Row;

use proto::{AlertState, Severity};

use crate::{NewRecord, Store, StoreError, unix_now};

/// An alert to raise.
#[derive(Debug, Clone)]
pub struct NewAlert<'a> {
    /// The detection rule (`sandbox-violation`, `canary-touched`, `bulk-open`, …).
    pub rule: &'a str,
    /// How urgent.
    pub severity: Severity,
    /// Repeats with the same key, while the alert is not resolved, count on one alert.
    pub dedupe_key: &'a str,
    /// Whose behaviour raised it.
    pub principal: &'a str,
    /// Which of Sekisho's processes saw it and raised it.
    pub by: proto::Process,
    /// The tenant concerned, if any.
    pub tenant_id: Option<i64>,
    /// What happened, for a person.
    pub summary: &'a str,
}

/// An alert as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// Id.
    pub id: i64,
    /// Rule.
    pub rule: String,
    /// Severity.
    pub severity: Severity,
    /// Dedupe key.
    pub dedupe_key: String,
    /// Principal.
    pub principal: String,
    /// Tenant.
    pub tenant_id: Option<i64>,
    /// Summary.
    pub summary: String,
    /// First seen.
    pub first_at: i64,
    /// Last seen.
    pub last_at: i64,
    /// Times seen.
    pub count: i64,
    /// Triage state.
    pub state: AlertState,
    /// Who changed the state last.
    pub updated_by: String,
}

fn alert(r: &crate::Row0) -> Alert {
    Alert {
        id: r.get("id"),
        rule: r.get("rule"),
        // A value no Sekisho wrote is shown as critical rather than hidden.
        severity: r
            .get::<String, _>("severity")
            .parse()
            .unwrap_or(Severity::Critical),
        dedupe_key: r.get("dedupe_key"),
        principal: r.get("principal"),
        tenant_id: r.get("tenant_id"),
        summary: r.get("summary"),
        first_at: r.get("first_at"),
        last_at: r.get("last_at"),
        count: r.get("count"),
        state: r
            .get::<String, _>("state")
            .parse()
            .unwrap_or(AlertState::Open),
        updated_by: r.get("updated_by"),
    }
}

impl Store {
    /// Raises an alert (or counts a repeat of an unresolved one with the same key) and records
    /// it in the audit log. Returns the alert id.
    pub async fn alert_raise(&self, a: &NewAlert<'_>) -> Result<i64, StoreError> {
        let now = unix_now();
        let mut tx = self.write_tx().await?;
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM alerts WHERE dedupe_key = $1 AND state != 'resolved' ORDER BY id DESC LIMIT 1",
        )
        .bind(a.dedupe_key)
        .fetch_optional(&mut *tx)
        .await?;
        let id = match existing {
            Some(id) => {
                sqlx::query("UPDATE alerts SET count = count + 1, last_at = $1, summary = $2 WHERE id = $3")
                    .bind(now)
                    .bind(a.summary)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                id
            }
            None => sqlx::query_scalar(
                "INSERT INTO alerts (rule, severity, dedupe_key, principal, tenant_id, summary, first_at, last_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(a.rule)
            .bind(a.severity.as_str())
            .bind(a.dedupe_key)
            .bind(a.principal)
            .bind(a.tenant_id)
            .bind(a.summary)
            .bind(now)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?,
        };
        tx.commit().await?;
        let object = format!("alert {id}");
        self.record(&NewRecord {
            principal: a.principal,
            role: a.by,
            action: &format!("alert-raised:{}", a.rule),
            tenant_id: a.tenant_id,
            object: &object,
            reason: a.summary,
            outcome: a.severity.as_str(),
        })
        .await?;
        Ok(id)
    }

    /// Alerts, newest first; only those in `state` if given.
    pub async fn alerts(&self, state: Option<AlertState>) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM alerts WHERE ($1 IS NULL OR state = $1) ORDER BY last_at DESC, id DESC",
        )
        .bind(state.map(AlertState::as_str))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(alert).collect())
    }

    /// Moves an alert to `acknowledged` or `resolved` (recorded).
    pub async fn alert_set_state(
        &self,
        id: i64,
        state: AlertState,
        by: &str,
    ) -> Result<(), StoreError> {
        if state == AlertState::Open {
            return Err(StoreError::Invalid(
                "an alert moves to acknowledged or resolved".into(),
            ));
        }
        let done = sqlx::query(
            "UPDATE alerts SET state = $1, updated_by = $2 WHERE id = $3 AND state != 'resolved'",
        )
        .bind(state.as_str())
        .bind(by)
        .bind(id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no unresolved alert {id}")));
        }
        let object = format!("alert {id}");
        self.record(&NewRecord {
            principal: by,
            action: &format!("alert-{state}"),
            object: &object,
            outcome: "ok",
            ..NewRecord::by(proto::Process::Cli)
        })
        .await?;
        Ok(())
    }
}

impl Store {
    /// Alerts with an id above `after`, oldest first (for sinks that forward new alerts).
    pub async fn alerts_after(&self, after: i64) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query("SELECT * FROM alerts WHERE id > $1 ORDER BY id LIMIT 100")
            .bind(after)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(alert).collect())
    }

    /// A named counter in `meta` (0 if never set).
    pub async fn meta_get(&self, key: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT value FROM meta WHERE key = $1")
                .bind(key)
                .fetch_optional(self.pool())
                .await?
                .unwrap_or(0),
        )
    }

    /// Sets a named counter in `meta`.
    pub async fn meta_set(&self, key: &str, value: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT(key) DO UPDATE SET value = $2",
        )
        .bind(key)
        .bind(value)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
