//! TLS reporting (RFC 8460): outbound TLS session counts per UTC day and policy domain,
//! added by every node; the claim that one node sends a domain's daily report; each tenant's
//! opt-out; and the per-domain outcomes the portal shows.

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError, unix_now};

/// The kind of policy a session was judged by (RFC 8460 §4.4 `policy-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyType {
    /// An MTA-STS policy.
    Sts,
    /// None: TLS was opportunistic.
    NoPolicyFound,
}

impl PolicyType {
    /// The RFC's name.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyType::Sts => "sts",
            PolicyType::NoPolicyFound => "no-policy-found",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "sts" => PolicyType::Sts,
            _ => PolicyType::NoPolicyFound,
        }
    }
}

/// What a report tells apart about a session; a success has empty `result`, `receiving_mx`
/// and addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// The recipient domain whose policy applied.
    pub policy_domain: String,
    /// The tenant whose mail it carried (0: the gateway's own).
    pub tenant: i64,
    /// The kind of policy.
    pub policy_type: PolicyType,
    /// The policy's lines (`\n`-joined), empty without one.
    pub policy_text: String,
    /// The RFC 8460 result type of a failure, empty for a success.
    pub result: String,
    /// The exchanger's name.
    pub receiving_mx: String,
    /// Our address on the connection.
    pub sending_ip: String,
    /// The exchanger's address.
    pub receiving_ip: String,
}

impl SessionKey {
    fn digest(&self) -> String {
        let mut d = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for field in [
            self.policy_domain.as_str(),
            &self.tenant.to_string(),
            self.policy_type.as_str(),
            &self.policy_text,
            &self.result,
            &self.receiving_mx,
            &self.sending_ip,
            &self.receiving_ip,
        ] {
            d.update(&(field.len() as u64).to_be_bytes());
            d.update(field.as_bytes());
        }
        hex::encode(&d.finish().as_ref()[..16])
    }
}

/// One policy domain's outcomes over a span of days (the portal's view).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainOutcome {
    /// The recipient domain.
    pub policy_domain: String,
    /// `sts` when any session was judged by an MTA-STS policy, else `no-policy-found`.
    pub policy_type: PolicyType,
    /// Sessions that negotiated TLS as the policy asks.
    pub successful: i64,
    /// Sessions that did not.
    pub failed: i64,
    /// The most frequent failure's result type, if any failed.
    pub top_failure: Option<String>,
    /// The last day with a session (days since 1970).
    pub last_day: i64,
}

fn key_of(row: &crate::Row0) -> Result<(SessionKey, u64), StoreError> {
    let ty: String = row.try_get("policy_type")?;
    let n: i64 = row.try_get("sessions")?;
    Ok((
        SessionKey {
            day: row.try_get("day")?,
            policy_domain: row.try_get("policy_domain")?,
            tenant: row.try_get("tenant_id")?,
            policy_type: PolicyType::parse(&ty),
            policy_text: row.try_get("policy_text")?,
            result: row.try_get("result")?,
            receiving_mx: row.try_get("receiving_mx")?,
            sending_ip: row.try_get("sending_ip")?,
            receiving_ip: row.try_get("receiving_ip")?,
        },
        n.max(0) as u64,
    ))
}

impl Store {
    /// Adds session counts (one node's since its last flush), in one transaction.
    pub async fn tls_sessions_add(&self, rows: &[(SessionKey, u64)]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for (k, n) in rows {
            sqlx::query(
                "INSERT INTO tls_sessions (key, day, policy_domain, tenant_id, policy_type, policy_text, result, receiving_mx, sending_ip, receiving_ip, sessions) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT(day, key) DO UPDATE SET sessions = tls_sessions.sessions + excluded.sessions",
            )
            .bind(k.digest())
            .bind(k.day)
            .bind(&k.policy_domain)
            .bind(k.tenant)
            .bind(k.policy_type.as_str())
            .bind(&k.policy_text)
            .bind(&k.result)
            .bind(&k.receiving_mx)
            .bind(&k.sending_ip)
            .bind(&k.receiving_ip)
            .bind(i64::try_from(*n).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Policy domains with sessions on a day before `today` and no report claimed yet,
    /// oldest first, at most `limit`.
    pub async fn tls_reports_due(
        &self,
        today: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT s.day, s.policy_domain FROM tls_sessions s
             WHERE s.day < $1 AND NOT EXISTS
               (SELECT 1 FROM tls_reports r WHERE r.day = s.day AND r.policy_domain = s.policy_domain)
             ORDER BY s.day, s.policy_domain LIMIT $2",
        )
        .bind(today)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("day")?, r.try_get("policy_domain")?)))
            .collect()
    }

    /// Claims the report of `domain` for `day` for this node: false when another node (or an
    /// earlier run) has it.
    pub async fn tls_report_claim(
        &self,
        day: i64,
        domain: &str,
        node: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO tls_reports (day, policy_domain, node, claimed_at, outcome)
             VALUES ($1, $2, $3, $4, 'claimed') ON CONFLICT(day, policy_domain) DO NOTHING",
        )
        .bind(day)
        .bind(domain)
        .bind(node)
        .bind(unix_now())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records what came of a claimed report (`sent to …`, `no record`, `opted out`, …).
    pub async fn tls_report_outcome(
        &self,
        day: i64,
        domain: &str,
        outcome: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE tls_reports SET outcome = $3 WHERE day = $1 AND policy_domain = $2")
            .bind(day)
            .bind(domain)
            .bind(outcome)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// What came of a day's report for `domain`, if it was claimed.
    pub async fn tls_report_state(
        &self,
        day: i64,
        domain: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT outcome FROM tls_reports WHERE day = $1 AND policy_domain = $2",
        )
        .bind(day)
        .bind(domain)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The sessions of `domain` on `day` that may be reported: the gateway's own and those of
    /// tenants that have not opted out.
    pub async fn tls_sessions_reportable(
        &self,
        day: i64,
        domain: &str,
    ) -> Result<Vec<(SessionKey, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT day, policy_domain, tenant_id, policy_type, policy_text, result, receiving_mx, sending_ip, receiving_ip, sessions FROM tls_sessions WHERE day = $1 AND policy_domain = $2
             AND (tenant_id = 0 OR tenant_id IN (SELECT id FROM tenants WHERE tls_reports <> 0))",
        )
        .bind(day)
        .bind(domain)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(key_of).collect()
    }

    /// Drops session counts and report claims of days before `day`.
    pub async fn tls_sessions_prune(&self, day: i64) -> Result<u64, StoreError> {
        let n = sqlx::query("DELETE FROM tls_sessions WHERE day < $1")
            .bind(day)
            .execute(self.pool())
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM tls_reports WHERE day < $1")
            .bind(day)
            .execute(self.pool())
            .await?;
        Ok(n)
    }

    /// Per policy domain, the sessions since `since_day` (all tenants, or one), most failed
    /// first, at most `limit` domains.
    pub async fn tls_outcomes(
        &self,
        since_day: i64,
        tenant: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DomainOutcome>, StoreError> {
        let rows = sqlx::query(
            "SELECT policy_domain, policy_type, result, CAST(sum(sessions) AS BIGINT) AS n, max(day) AS last_day
             FROM tls_sessions WHERE day >= $1 AND ($2 < 0 OR tenant_id = $2)
             GROUP BY policy_domain, policy_type, result",
        )
        .bind(since_day)
        .bind(tenant.unwrap_or(-1))
        .fetch_all(self.pool())
        .await?;
        let mut by: std::collections::BTreeMap<String, (DomainOutcome, Vec<(i64, String)>)> =
            Default::default();
        for r in &rows {
            let domain: String = r.try_get("policy_domain")?;
            let ty = PolicyType::parse(&r.try_get::<String, _>("policy_type")?);
            let result: String = r.try_get("result")?;
            let n: i64 = r.try_get("n")?;
            let last: i64 = r.try_get("last_day")?;
            let (o, failures) = by.entry(domain.clone()).or_insert_with(|| {
                (
                    DomainOutcome {
                        policy_domain: domain,
                        policy_type: PolicyType::NoPolicyFound,
                        successful: 0,
                        failed: 0,
                        top_failure: None,
                        last_day: last,
                    },
                    Vec::new(),
                )
            });
            if ty == PolicyType::Sts {
                o.policy_type = PolicyType::Sts;
            }
            o.last_day = o.last_day.max(last);
            if result.is_empty() {
                o.successful += n;
            } else {
                o.failed += n;
                failures.push((n, result));
            }
        }
        let mut out: Vec<DomainOutcome> = by
            .into_values()
            .map(|(mut o, mut failures)| {
                failures.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
                o.top_failure = failures.into_iter().next().map(|(_, r)| r);
                o
            })
            .collect();
        out.sort_by(|a, b| {
            b.failed
                .cmp(&a.failed)
                .then(b.successful.cmp(&a.successful))
                .then(a.policy_domain.cmp(&b.policy_domain))
        });
        out.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(out)
    }

    /// Whether `tenant`'s sessions go into TLS reports (the default), and setting it.
    pub async fn set_tenant_tls_reports(&self, tenant: i64, on: bool) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE tenants SET tls_reports = $2 WHERE id = $1")
            .bind(tenant)
            .bind(i64::from(on))
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tenant {tenant}")));
        }
        Ok(())
    }

    /// Whether `tenant` takes part in TLS reports.
    pub async fn tenant_tls_reports(&self, tenant: i64) -> Result<bool, StoreError> {
        let on: Option<i64> = sqlx::query_scalar("SELECT tls_reports FROM tenants WHERE id = $1")
            .bind(tenant)
            .fetch_optional(self.pool())
            .await?;
        on.map(|v| v != 0)
            .ok_or_else(|| StoreError::NotFound(format!("tenant {tenant}")))
    }
}
