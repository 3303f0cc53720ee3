//! Quarantined mail: list, show, view safely, release, delete. Which items a person sees,
//! and whether they may open one, the vault decides; content opens and releases go through
//! the vault (releases by way of the mail node, which asks the vault with the session).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use proto::QueueId;
use proto::acts::{
    LockboxList, QuarantineDelete, QuarantineGet, QuarantineItem, QuarantineList, QuarantineRelease,
};
use proto::client::OpenQuarantine;
use proto::vault::Purpose;
use serde::Deserialize;

use super::{ItemDoc, ItemList, MAX_LIST, MessageAnswer, ProblemDoc, ViewAnswer};
use crate::Portal;
use crate::problem::{Problem, vault_problem};
use crate::session::Session;

/// A quarantine id from a path, or 400.
pub(crate) fn queue_id(id: &str) -> Result<QueueId, Problem> {
    id.parse()
        .map_err(|_| Problem::bad_request("not a quarantine id"))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Most items (1–500, default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/quarantine", tag = "quarantine", params(ListQuery), security(("session" = [])),
    responses(
        (status = 200, description = "the items the caller may see", body = ItemList),
        (status = 400, description = "bad limit", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "this role has no quarantine", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn quarantine_list(
    State(p): State<Arc<Portal>>,
    s: Session,
    Query(q): Query<ListQuery>,
) -> Result<Response, Problem> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit must be 1 to {MAX_LIST}"
        )));
    }
    let items = list_items(&p, &s, limit).await?;
    let items = items.iter().map(ItemDoc::from).collect();
    Ok(axum::Json(ItemList { items }).into_response())
}

/// The newest `limit` quarantine items the user may see (the vault decides which).
pub(crate) async fn list_items(
    p: &Portal,
    s: &Session,
    limit: i64,
) -> Result<Vec<QuarantineItem>, Problem> {
    s.ask(p, QuarantineList { limit }).await
}

/// The item, if it exists and the user may see it (else 404 either way: another tenant's ids
/// are not confirmed to exist).
pub(crate) async fn visible_item(
    p: &Portal,
    s: &Session,
    id: &str,
) -> Result<QuarantineItem, Problem> {
    s.ask(p, QuarantineGet { id: queue_id(id)? }).await
}

/// For showing buttons only: may this user act on this item's content now (their own mail,
/// or for operators an approved lockbox for its tenant)? The vault decides again on the act.
pub(crate) async fn may_open_now(p: &Portal, s: &Session, item: &QuarantineItem) -> bool {
    if !s.is_operator() {
        return true;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    s.ask(p, LockboxList {}).await.is_ok_and(|l| {
        l.iter().any(|lb| {
            lb.tenant == item.tenant
                && lb.state == "approved"
                && lb.expires_at.is_some_and(|e| e > now)
        })
    })
}

#[utoipa::path(delete, path = "/api/quarantine/{id}", tag = "quarantine",
    params(("id" = String, Path, description = "quarantine id")), security(("session" = [])),
    responses(
        (status = 204, description = "deleted (the sealed message and its index entry)"),
        (status = 403, description = "refused (lockbox, CSRF)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no such item for this user", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn quarantine_delete(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    delete_item(&p, &s, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Deletes a quarantined message (sealed blob and index entry) through the vault.
pub(crate) async fn delete_item(p: &Portal, s: &Session, id: &str) -> Result<(), Problem> {
    s.ask(p, QuarantineDelete { id: queue_id(id)? }).await?;
    Ok(())
}

#[utoipa::path(get, path = "/api/quarantine/{id}", tag = "quarantine", params(("id" = String, Path, description = "quarantine id")), security(("session" = [])),
    responses(
        (status = 200, description = "the item", body = ItemDoc),
        (status = 404, description = "no such item for this user", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn quarantine_show(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let item = visible_item(&p, &s, &id).await?;
    Ok(axum::Json(ItemDoc::from(&item)).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ViewQuery {
    /// Why the message is opened (recorded; default "viewed in the portal").
    #[param(min_length = 1, max_length = 500)]
    reason: Option<String>,
}

/// The safe view of a message: the vault checks the session and the user's right to it,
/// records the open, and watches for bulk reads.
#[utoipa::path(get, path = "/api/quarantine/{id}/view", tag = "quarantine", params(("id" = String, Path, description = "quarantine id"), ViewQuery), security(("session" = [])),
    responses(
        (status = 200, description = "the safe view (text only, links defanged)", body = ViewAnswer),
        (status = 403, description = "throttled, or operators without a lockbox", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no such item for this user", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn quarantine_view(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<String>,
    Query(q): Query<ViewQuery>,
) -> Result<Response, Problem> {
    let reason = q.reason.unwrap_or_else(|| "viewed in the portal".into());
    let view = view_item(&p, &s, &id, &reason).await?;
    Ok(axum::Json(ViewAnswer { id, view }).into_response())
}

/// Opens a quarantined message through the vault (which checks the session again, records
/// the open with `reason` and watches for bulk reads) and renders its safe view.
pub(crate) async fn view_item(
    p: &Portal,
    s: &Session,
    id: &str,
    reason: &str,
) -> Result<crate::view::SafeView, Problem> {
    if reason.trim().is_empty() || reason.len() > 500 {
        return Err(Problem::bad_request("reason must be 1 to 500 characters"));
    }
    let id = visible_item(p, s, id).await?.id;
    let plain = p
        .vault
        .open_quarantine(OpenQuarantine {
            id: &id,
            purpose: Purpose::Read,
            principal: &s.user.principal(),
            reason,
            session: Some(&s.token),
            role_token: None,
            lockbox: None,
            break_glass: false,
        })
        .await
        .map_err(vault_problem)?;
    crate::view::render(&plain).ok_or_else(|| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unreadable message",
            "the message cannot be parsed as MIME; an operator can export the sealed original",
        )
    })
}

#[utoipa::path(post, path = "/api/quarantine/{id}/release", tag = "quarantine", params(("id" = String, Path, description = "quarantine id")), security(("session" = [])),
    responses(
        (status = 200, description = "released into the spool for delivery", body = MessageAnswer),
        (status = 403, description = "refused (lockbox, throttle, CSRF)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no such item for this user", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn quarantine_release(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    release_item(&p, &s, &id).await?;
    Ok(axum::Json(MessageAnswer {
        message: format!("{id} released for delivery"),
    })
    .into_response())
}

/// Releases a quarantined message into the spool for delivery: the vault checks the person,
/// then asks the mail node, which asks the vault to open it with the person's session.
pub(crate) async fn release_item(p: &Portal, s: &Session, id: &str) -> Result<(), Problem> {
    s.ask(p, QuarantineRelease { id: queue_id(id)? }).await?;
    Ok(())
}
