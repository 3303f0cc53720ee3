//! Detection alerts (operators and auditors) and audit exports (made by the vault for a
//! stepped-up session).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use proto::AlertState;
use proto::acts::{AlertList as AlertListAct, AlertView};
use proto::vault::Request;
use serde::Deserialize;

use super::ProblemDoc;
use crate::Portal;
use crate::problem::{Problem, vault_problem};
use crate::session::Session;

/// A detection alert.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AlertDoc {
    /// Alert id.
    pub id: i64,
    /// The rule that raised it.
    pub rule: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Who it is about.
    pub principal: String,
    /// Tenant id, if any.
    pub tenant_id: Option<i64>,
    /// What happened.
    pub summary: String,
    /// First raised (Unix time).
    pub first_at: i64,
    /// Last raised (Unix time).
    pub last_at: i64,
    /// How often.
    pub count: i64,
    /// `open`, `acknowledged` or `resolved`.
    pub state: String,
}

/// Alerts.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AlertList {
    /// Newest first.
    pub alerts: Vec<AlertDoc>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportQuery {
    /// The tenant (auditors and operators; a tenant admin's own is used).
    pub tenant: Option<String>,
    /// From (Unix seconds; default the beginning).
    pub from: Option<i64>,
    /// To (Unix seconds; default now).
    pub to: Option<i64>,
}

/// A tenant's audit export, made by the vault for a stepped-up session (recorded there).
pub(crate) async fn export_for(
    p: &Portal,
    s: &Session,
    q: &ExportQuery,
) -> Result<Response, Problem> {
    if s.user.scopes.is_some() {
        return Err(Problem::forbidden("an API token cannot export: log in"));
    }
    let (from, to) = (q.from.unwrap_or(0), q.to.unwrap_or(i64::MAX));
    if from > to {
        return Err(Problem::bad_request("from is after to"));
    }
    let req = Request::AuditExportBy {
        session: s.token.clone(),
        tenant: q.tenant.clone(),
        from,
        to,
    };
    let (_, body) = p.vault.call(&req, &[]).await.map_err(vault_problem)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/jsonl"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"sekisho-audit-export.jsonl\"",
            ),
        ],
        body,
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/audit/export", tag = "audit", params(ExportQuery), security(("session" = [])),
    responses(
        (status = 200, description = "the tenant's records with their chain links and signed checkpoints, as JSON Lines (format sekisho-audit-export-v1, see docs/audit.md)", body = String, content_type = "application/jsonl"),
        (status = 400, description = "from after to", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "no step-up yet, an API token, another tenant, or a role without exports", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn audit_export(
    State(p): State<Arc<Portal>>,
    s: Session,
    Query(q): Query<ExportQuery>,
) -> Result<Response, Problem> {
    export_for(&p, &s, &q).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertQuery {
    /// Only alerts in this state (`open`, `acknowledged`, `resolved`).
    state: Option<String>,
}

#[utoipa::path(get, path = "/api/alerts", tag = "alerts", params(AlertQuery), security(("session" = [])),
    responses(
        (status = 200, description = "the alerts (at most 500, newest first)", body = AlertList),
        (status = 400, description = "bad state", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "only operators and auditors read alerts", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn alerts(
    State(p): State<Arc<Portal>>,
    s: Session,
    Query(q): Query<AlertQuery>,
) -> Result<Response, Problem> {
    let state =
        match &q.state {
            None => None,
            Some(st) => Some(st.parse::<AlertState>().map_err(|_| {
                Problem::bad_request("state must be open, acknowledged or resolved")
            })?),
        };
    let alerts = alert_list(&p, &s, state)
        .await?
        .into_iter()
        .map(|a| AlertDoc {
            id: a.id,
            rule: a.rule,
            severity: a.severity.to_string(),
            principal: a.principal,
            tenant_id: a.tenant_id.map(|t| t.0),
            summary: a.summary,
            first_at: a.first_at,
            last_at: a.last_at,
            count: a.count,
            state: a.state.to_string(),
        })
        .collect();
    Ok(axum::Json(AlertList { alerts }).into_response())
}

/// The alerts (operators and auditors; the vault refuses everyone else), newest first.
pub(crate) async fn alert_list(
    p: &Portal,
    s: &Session,
    state: Option<AlertState>,
) -> Result<Vec<AlertView>, Problem> {
    s.ask(p, AlertListAct { state }).await
}
