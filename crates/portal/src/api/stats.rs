//! Mail-flow statistics of the caller's scope.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use proto::acts::{Count, MailStats, Stats, TlsOutcome, TlsOutcomes};
use serde::Deserialize;

use super::ProblemDoc;
use crate::Portal;
use crate::problem::Problem;
use crate::session::Session;

/// A name and how many messages had it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct CountDoc {
    /// Sender, verdict action or symbol.
    pub name: String,
    /// Messages.
    pub count: i64,
}

/// Mail-flow statistics over a window.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct StatsDoc {
    /// Start of the window (Unix seconds, on an hour boundary).
    pub from: i64,
    /// Messages per hour, oldest first.
    pub hourly: Vec<i64>,
    /// Messages per verdict action, most frequent first (`none`: not inspected).
    pub verdicts: Vec<CountDoc>,
    /// Most frequent envelope senders.
    pub top_senders: Vec<CountDoc>,
    /// Most frequent evidence symbols.
    pub top_symbols: Vec<CountDoc>,
    /// Messages counted.
    pub total: i64,
    /// Only the newest messages of a very busy window were counted.
    pub truncated: bool,
}

fn counts(v: Vec<Count>) -> Vec<CountDoc> {
    v.into_iter()
        .map(|c| CountDoc {
            name: c.name,
            count: c.count,
        })
        .collect()
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatsQuery {
    /// Hours up to now (1–744, default 24).
    #[param(minimum = 1, maximum = 744)]
    hours: Option<u32>,
}

#[utoipa::path(get, path = "/api/stats", tag = "statistics", params(StatsQuery), security(("session" = [])),
    responses(
        (status = 200, description = "messages per hour, verdicts, top senders and symbols", body = StatsDoc),
        (status = 400, description = "bad window", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "only operators and tenant admins see statistics", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn stats(
    State(p): State<Arc<Portal>>,
    s: Session,
    Query(q): Query<StatsQuery>,
) -> Result<Response, Problem> {
    let hours = q.hours.unwrap_or(24);
    if !(1..=744).contains(&hours) {
        return Err(Problem::bad_request("hours must be 1 to 744 (31 days)"));
    }
    let m = stats_for(&p, &s, hours).await?;
    Ok(axum::Json(StatsDoc {
        from: m.from,
        hourly: m.hourly,
        verdicts: counts(m.verdicts),
        top_senders: counts(m.top_senders),
        top_symbols: counts(m.top_symbols),
        total: m.total,
        truncated: m.truncated,
    })
    .into_response())
}

/// Statistics of the user's scope: a tenant admin's tenant, an operator's whole cluster.
pub(crate) async fn stats_for(p: &Portal, s: &Session, hours: u32) -> Result<MailStats, Problem> {
    s.ask(p, Stats { hours }).await
}

/// One recipient domain's outbound TLS sessions over the window.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TlsOutcomeDoc {
    /// The recipient (policy) domain.
    pub domain: String,
    /// `sts` (an MTA-STS policy applied) or `no-policy-found`.
    pub policy: String,
    /// Sessions that negotiated TLS as the policy asks.
    pub successful: i64,
    /// Sessions that did not.
    pub failed: i64,
    /// The most frequent failure, as an RFC 8460 result type (`certificate-expired`, …).
    pub top_failure: Option<String>,
    /// The last day with a session (`YYYY-MM-DD`, UTC).
    pub last_day: String,
}

impl From<TlsOutcome> for TlsOutcomeDoc {
    fn from(o: TlsOutcome) -> Self {
        Self {
            domain: o.domain,
            policy: o.policy,
            successful: o.successful,
            failed: o.failed,
            top_failure: o.top_failure,
            last_day: proto::verdict::rfc3339(o.last_day * 86_400)[..10].to_string(),
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsQuery {
    /// Days up to today (1–30, default 7).
    #[param(minimum = 1, maximum = 30)]
    days: Option<u32>,
}

#[utoipa::path(get, path = "/api/tls-outcomes", tag = "statistics", params(TlsQuery), security(("session" = [])),
    responses(
        (status = 200, description = "outbound TLS sessions per recipient domain, most failed first", body = Vec<TlsOutcomeDoc>),
        (status = 400, description = "bad window", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "only operators and tenant admins see TLS outcomes", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn tls_outcomes(
    State(p): State<Arc<Portal>>,
    s: Session,
    Query(q): Query<TlsQuery>,
) -> Result<Response, Problem> {
    let days = q.days.unwrap_or(7);
    if !(1..=30).contains(&days) {
        return Err(Problem::bad_request("days must be 1 to 30"));
    }
    Ok(axum::Json(tls_outcomes_for(&p, &s, days).await?).into_response())
}

/// Outbound TLS outcomes of the user's scope over the last `days`.
pub(crate) async fn tls_outcomes_for(
    p: &Portal,
    s: &Session,
    days: u32,
) -> Result<Vec<TlsOutcomeDoc>, Problem> {
    let v = s.ask(p, TlsOutcomes { days }).await?;
    Ok(v.into_iter().map(TlsOutcomeDoc::from).collect())
}
