//! Message trace: what happened to each message of the caller's scope.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use proto::acts::{TraceMessage, TraceSearch};
use serde::Deserialize;

use super::{MAX_LIST, ProblemDoc};
use crate::Portal;
use crate::problem::Problem;
use crate::session::Session;

/// One recipient event of a traced message.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TraceEventDoc {
    /// Recipient.
    pub rcpt: String,
    /// Unix time.
    pub at: i64,
    /// `accepted`, `delivered`, `deferred`, `bounced`, `quarantined`, `released`, …
    pub event: String,
    /// The next hop's reply or the reason.
    pub detail: String,
}

/// A traced message (envelope and verdict; never content).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TraceDoc {
    /// Queue id.
    pub id: String,
    /// Unix time.
    pub received_at: i64,
    /// Envelope sender.
    pub mail_from: String,
    /// Size in bytes.
    pub size: i64,
    /// Client address.
    pub client_ip: String,
    /// HELO name.
    pub helo: String,
    /// TLS version and cipher, if any.
    pub tls: Option<String>,
    /// Verdict action.
    pub verdict: Option<String>,
    /// Score.
    pub score: Option<f64>,
    /// Symbols with weights.
    pub symbols: String,
    /// Events of the caller's tenant's recipients, oldest first.
    pub events: Vec<TraceEventDoc>,
}

/// Trace search results.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TraceList {
    /// Newest first.
    pub messages: Vec<TraceDoc>,
}

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct TraceQuery {
    /// Messages to this recipient.
    #[param(max_length = 254)]
    pub rcpt: Option<String>,
    /// Messages from this envelope sender.
    #[param(max_length = 254)]
    pub from: Option<String>,
    /// One message by queue id.
    #[param(max_length = 64)]
    pub id: Option<String>,
    /// Most messages (1–500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// Searches the trace within the user's scope: a tenant admin's tenant (and only its
/// recipients' events), an operator's whole cluster (the vault narrows it).
pub(crate) async fn trace_for(
    p: &Portal,
    s: &Session,
    q: TraceQuery,
) -> Result<Vec<TraceMessage>, Problem> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit must be 1 to {MAX_LIST}"
        )));
    }
    let search = TraceSearch {
        rcpt: q.rcpt,
        from: q.from,
        id: q.id,
        limit,
    };
    s.ask(p, search).await
}

#[utoipa::path(get, path = "/api/trace", tag = "trace", params(TraceQuery), security(("session" = [])),
    responses(
        (status = 200, description = "matching messages, newest first", body = TraceList),
        (status = 400, description = "bad limit or field", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "only tenant admins and operators search the trace", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn trace(
    State(p): State<Arc<Portal>>,
    s: Session,
    Query(q): Query<TraceQuery>,
) -> Result<Response, Problem> {
    let messages = trace_for(&p, &s, q)
        .await?
        .into_iter()
        .map(|m| TraceDoc {
            id: m.id,
            received_at: m.received_at,
            mail_from: m.mail_from,
            size: m.size,
            client_ip: m.client_ip,
            helo: m.helo,
            tls: m.tls,
            verdict: m.verdict,
            score: m.score,
            symbols: m.symbols,
            events: m
                .events
                .into_iter()
                .map(|e| TraceEventDoc {
                    rcpt: e.rcpt,
                    at: e.at,
                    event: e.event,
                    detail: e.detail,
                })
                .collect(),
        })
        .collect();
    Ok(axum::Json(TraceList { messages }).into_response())
}
