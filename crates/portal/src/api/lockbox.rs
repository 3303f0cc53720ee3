//! Lockbox: operators ask for time-limited access to a tenant's content, the tenant's
//! admins approve or deny (the vault seals an approval), either ends it early.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use proto::acts::{
    LockboxAsk as AskLockbox, LockboxList as ListLockbox, LockboxRevoke, LockboxView,
};
use proto::vault::Request;
use serde::Deserialize;

use super::{JsonBody, MessageAnswer, ProblemDoc};
use crate::Portal;
use crate::problem::{Problem, vault_problem};
use crate::session::Session;

/// A lockbox request and its decision.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct LockboxDoc {
    /// Request id.
    pub id: i64,
    /// Tenant name.
    pub tenant: String,
    /// The operator.
    pub operator: String,
    /// Why.
    pub reason: String,
    /// Length of the access once approved.
    pub minutes: i64,
    /// Unix time.
    pub requested_at: i64,
    /// `requested`, `approved`, `expired`, `denied` or `revoked`.
    pub state: String,
    /// Who decided.
    pub decided_by: String,
    /// End of an approved access (Unix time).
    pub expires_at: Option<i64>,
}

/// Lockbox requests.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct LockboxList {
    /// Newest first.
    pub requests: Vec<LockboxDoc>,
}

impl From<LockboxView> for LockboxDoc {
    fn from(lb: LockboxView) -> Self {
        LockboxDoc {
            id: lb.id,
            tenant: lb.tenant,
            operator: lb.operator,
            reason: lb.reason,
            minutes: lb.minutes,
            requested_at: lb.requested_at,
            state: lb.state,
            decided_by: lb.decided_by,
            expires_at: lb.expires_at,
        }
    }
}

/// The requests the user sees: operators their own, tenant admins their tenant's, auditors all.
pub(crate) async fn lockbox_requests(p: &Portal, s: &Session) -> Result<Vec<LockboxDoc>, Problem> {
    let list = s.ask(p, ListLockbox {}).await?;
    Ok(list.into_iter().map(LockboxDoc::from).collect())
}

/// An operator asks for access to a tenant's content.
pub(crate) async fn lockbox_ask(
    p: &Portal,
    s: &Session,
    tenant: &str,
    reason: &str,
    minutes: i64,
) -> Result<LockboxDoc, Problem> {
    let ask = AskLockbox {
        tenant: tenant.to_string(),
        reason: reason.to_string(),
        minutes,
    };
    Ok(s.ask(p, ask).await?.into())
}

/// A tenant admin decides; the vault checks the admin and seals an approval.
pub(crate) async fn lockbox_decision(
    p: &Portal,
    s: &Session,
    id: i64,
    approve: bool,
) -> Result<(), Problem> {
    let req = Request::LockboxDecide {
        id,
        approve,
        session: s.token.clone(),
    };
    p.vault.done(&req, &[]).await.map_err(vault_problem)?;
    Ok(())
}

/// Ends a pending or approved access: the operator who asked, or the tenant's admins.
pub(crate) async fn lockbox_end(p: &Portal, s: &Session, id: i64) -> Result<(), Problem> {
    s.ask(p, LockboxRevoke { id }).await?;
    Ok(())
}

#[utoipa::path(get, path = "/api/lockbox", tag = "lockbox", security(("session" = [])),
    responses(
        (status = 200, description = "operators: their requests; tenant admins: their tenant's; auditors: all", body = LockboxList),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "end users have no lockbox", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn lockbox_list(
    State(p): State<Arc<Portal>>,
    s: Session,
) -> Result<Response, Problem> {
    let requests = lockbox_requests(&p, &s).await?;
    Ok(axum::Json(LockboxList { requests }).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LockboxAsk {
    /// Tenant name.
    #[schema(max_length = 200)]
    tenant: String,
    /// Why (10–500 characters; the tenant reads it).
    #[schema(min_length = 10, max_length = 500)]
    reason: String,
    /// How long the access should last once approved (5–1440).
    #[schema(minimum = 5, maximum = 1440)]
    minutes: i64,
}

#[utoipa::path(post, path = "/api/lockbox", tag = "lockbox", request_body = LockboxAsk, security(("session" = [])),
    responses(
        (status = 200, description = "requested; the tenant's admins decide", body = LockboxDoc),
        (status = 400, description = "no such tenant, reason or minutes out of range", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "only operators ask (or CSRF)", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn lockbox_request(
    State(p): State<Arc<Portal>>,
    s: Session,
    JsonBody(b): JsonBody<LockboxAsk>,
) -> Result<Response, Problem> {
    let doc = lockbox_ask(&p, &s, &b.tenant, &b.reason, b.minutes).await?;
    Ok(axum::Json(doc).into_response())
}

#[utoipa::path(post, path = "/api/lockbox/{id}/approve", tag = "lockbox",
    params(("id" = i64, Path, description = "request id")), security(("session" = [])),
    responses(
        (status = 200, description = "approved: the operator may open the tenant's content for the requested minutes", body = MessageAnswer),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "not a tenant admin, decided already, or CSRF", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no such request for this admin's tenant", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn lockbox_approve(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<i64>,
) -> Result<Response, Problem> {
    lockbox_decision(&p, &s, id, true).await?;
    Ok(axum::Json(MessageAnswer {
        message: format!("lockbox request {id} approved"),
    })
    .into_response())
}

#[utoipa::path(post, path = "/api/lockbox/{id}/deny", tag = "lockbox",
    params(("id" = i64, Path, description = "request id")), security(("session" = [])),
    responses(
        (status = 200, description = "denied", body = MessageAnswer),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "not a tenant admin, decided already, or CSRF", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no such request for this admin's tenant", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn lockbox_deny(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<i64>,
) -> Result<Response, Problem> {
    lockbox_decision(&p, &s, id, false).await?;
    Ok(axum::Json(MessageAnswer {
        message: format!("lockbox request {id} denied"),
    })
    .into_response())
}

#[utoipa::path(post, path = "/api/lockbox/{id}/revoke", tag = "lockbox",
    params(("id" = i64, Path, description = "request id")), security(("session" = [])),
    responses(
        (status = 200, description = "ended", body = MessageAnswer),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "CSRF", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no such request for this user", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "neither pending nor approved", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn lockbox_revoke(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<i64>,
) -> Result<Response, Problem> {
    lockbox_end(&p, &s, id).await?;
    Ok(axum::Json(MessageAnswer {
        message: format!("lockbox request {id} revoked"),
    })
    .into_response())
}
