//! Sender lists ("always allow", "always block"): the caller's own and, for tenant admins,
//! the tenant's. Who may change which list the vault decides.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use proto::acts::{
    QuarantineSender, SenderAdd as AddSender, SenderList as ListSenders, SenderRemove, SenderView,
};
use proto::{SenderAction, SenderScope};
use serde::Deserialize;

use super::{JsonBody, ProblemDoc};
use crate::Portal;
use crate::problem::Problem;
use crate::session::Session;

/// An allowed or blocked sender.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SenderDoc {
    /// Entry id.
    pub id: i64,
    /// `tenant` (every recipient of the tenant) or `me` (the caller's own mailbox), from the
    /// caller's point of view; `recipient` for another recipient's entry (tenant admins).
    pub scope: String,
    /// The recipient it applies to (empty for the tenant).
    pub rcpt: String,
    /// An address or a domain (with its subdomains).
    pub pattern: String,
    /// `allow` or `block`.
    pub action: String,
    /// Who added it.
    pub added_by: String,
    /// When (Unix time).
    pub added_at: i64,
    /// The caller may remove it.
    pub removable: bool,
}

/// Allowed and blocked senders.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SenderList {
    /// Tenant-wide first.
    pub entries: Vec<SenderDoc>,
}

impl From<SenderView> for SenderDoc {
    fn from(e: SenderView) -> Self {
        SenderDoc {
            id: e.id,
            scope: e.scope,
            rcpt: e.rcpt,
            pattern: e.pattern,
            action: e.action.to_string(),
            added_by: e.added_by,
            added_at: e.added_at,
            removable: e.removable,
        }
    }
}

/// The action a person named, or 400.
fn action_of(action: &str) -> Result<SenderAction, Problem> {
    action
        .parse()
        .map_err(|_| Problem::bad_request("action must be \"allow\" or \"block\""))
}

/// The entries the user sees (the vault decides which, and which they may remove).
pub(crate) async fn sender_entries(p: &Portal, s: &Session) -> Result<Vec<SenderDoc>, Problem> {
    let entries = s.ask(p, ListSenders {}).await?;
    Ok(entries.into_iter().map(SenderDoc::from).collect())
}

/// Adds an entry under `scope` (`me` or `tenant`); the vault records it.
pub(crate) async fn sender_put(
    p: &Portal,
    s: &Session,
    scope: &str,
    pattern: &str,
    action: &str,
) -> Result<SenderDoc, Problem> {
    let scope: SenderScope = scope
        .parse()
        .map_err(|_| Problem::bad_request("scope must be \"me\" or \"tenant\""))?;
    let add = AddSender {
        scope,
        pattern: pattern.to_string(),
        action: action_of(action)?,
    };
    Ok(s.ask(p, add).await?.into())
}

/// Removes an entry the user may remove (404 for any other id).
pub(crate) async fn sender_remove(p: &Portal, s: &Session, id: i64) -> Result<(), Problem> {
    s.ask(p, SenderRemove { id }).await?;
    Ok(())
}

#[utoipa::path(get, path = "/api/senders", tag = "senders", security(("session" = [])),
    responses(
        (status = 200, description = "the tenant's entries and the caller's own (tenant admins: every recipient's)", body = SenderList),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "operators and auditors have no sender lists", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn senders_list(
    State(p): State<Arc<Portal>>,
    s: Session,
) -> Result<Response, Problem> {
    let entries = sender_entries(&p, &s).await?;
    Ok(axum::Json(SenderList { entries }).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SenderAdd {
    /// An address (`name@example.com`) or a domain (`example.com`, with its subdomains).
    #[schema(max_length = 254)]
    pattern: String,
    /// `allow` or `block`.
    action: String,
    /// `me` (the caller's mailbox) or `tenant` (tenant admins: every recipient).
    scope: String,
}

#[utoipa::path(post, path = "/api/senders", tag = "senders", request_body = SenderAdd, security(("session" = [])),
    responses(
        (status = 200, description = "added (or its action changed)", body = SenderDoc),
        (status = 400, description = "not an address or domain; bad action or scope", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "not this user's list (or CSRF)", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn senders_add(
    State(p): State<Arc<Portal>>,
    s: Session,
    JsonBody(b): JsonBody<SenderAdd>,
) -> Result<Response, Problem> {
    let e = sender_put(&p, &s, &b.scope, &b.pattern, &b.action).await?;
    Ok(axum::Json(e).into_response())
}

#[utoipa::path(delete, path = "/api/senders/{id}", tag = "senders",
    params(("id" = i64, Path, description = "entry id")), security(("session" = [])),
    responses(
        (status = 204, description = "removed"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "a tenant entry and the caller is no admin (or CSRF)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no such entry for this user", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn senders_remove(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<i64>,
) -> Result<Response, Problem> {
    sender_remove(&p, &s, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ItemSender {
    /// `allow` ("always allow") or `block` ("always block").
    action: String,
}

/// "Always allow" / "always block" the envelope sender of a quarantined message: for the end
/// user their own mailbox, for a tenant admin the whole tenant.
pub(crate) async fn item_sender(
    p: &Portal,
    s: &Session,
    id: &str,
    action: &str,
) -> Result<SenderDoc, Problem> {
    let act = QuarantineSender {
        id: super::quarantine::queue_id(id)?,
        action: action_of(action)?,
    };
    Ok(s.ask(p, act).await?.into())
}

#[utoipa::path(post, path = "/api/quarantine/{id}/sender", tag = "quarantine", request_body = ItemSender,
    params(("id" = String, Path, description = "quarantine id")), security(("session" = [])),
    responses(
        (status = 200, description = "the sender is allowed or blocked from now on (end users: for their mailbox; tenant admins: for the tenant)", body = SenderDoc),
        (status = 400, description = "bad action, or a bounce without sender", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "refused (operators, CSRF)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no such item for this user", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn quarantine_sender(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ItemSender>,
) -> Result<Response, Problem> {
    let e = item_sender(&p, &s, &id, &b.action).await?;
    Ok(axum::Json(e).into_response())
}
