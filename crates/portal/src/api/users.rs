//! People: accounts listed (operators all, tenant admins their tenant's) and invited (the
//! vault decides who may invite whom and makes the one-time link).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use proto::Role;
use proto::acts::AccountList as AccountListAct;
use proto::vault::{Request, Response as VaultResponse};
use serde::Deserialize;

use super::{JsonBody, ProblemDoc};
use crate::Portal;
use crate::problem::{Problem, vault_problem};
use crate::session::Session;

/// A portal account (never its password or second factor).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AccountDoc {
    /// Account id.
    pub id: i64,
    /// Login name.
    pub email: String,
    /// Role.
    pub role: String,
    /// Tenant name.
    pub tenant: Option<String>,
    /// Enrolment finished.
    pub active: bool,
    /// Locked after failed logins until (Unix time; 0: not locked).
    pub locked_until: i64,
    /// Created (Unix time).
    pub created_at: i64,
}

/// Accounts.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AccountList {
    /// By id.
    pub users: Vec<AccountDoc>,
}

#[utoipa::path(get, path = "/api/users", tag = "users", security(("session" = [])),
    responses(
        (status = 200, description = "tenant admins: their tenant's accounts; operators: all", body = AccountList),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "end users and auditors", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn users_list(
    State(p): State<Arc<Portal>>,
    s: Session,
) -> Result<Response, Problem> {
    let users = s
        .ask(&p, AccountListAct {})
        .await?
        .into_iter()
        .map(|u| AccountDoc {
            id: u.id,
            email: u.email,
            role: u.role.to_string(),
            tenant: u.tenant,
            active: u.active,
            locked_until: u.locked_until,
            created_at: u.created_at,
        })
        .collect();
    Ok(axum::Json(AccountList { users }).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Invite {
    /// The person's e-mail address (their login name).
    #[schema(max_length = 254)]
    email: String,
    /// `operator`, `auditor`, `tenant-admin` or `user`.
    role: String,
    /// Their tenant (operators name it; for tenant admins it is their own).
    tenant: Option<String>,
}

/// An invitation.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct InviteAnswer {
    /// The one-time enrolment link to send to the person (valid 72 h).
    pub link: String,
}

#[utoipa::path(post, path = "/api/users", tag = "users", request_body = Invite, security(("session" = [])),
    responses(
        (status = 200, description = "invited: the one-time link to send them", body = InviteAnswer),
        (status = 400, description = "not an e-mail address, unknown role or tenant, or not allowed for the caller's role", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "CSRF", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn users_invite(
    State(p): State<Arc<Portal>>,
    s: Session,
    headers: HeaderMap,
    JsonBody(b): JsonBody<Invite>,
) -> Result<Response, Problem> {
    let link = invite_with(&p, &s, b.email, b.role, b.tenant, &headers).await?;
    Ok(axum::Json(InviteAnswer { link }).into_response())
}

/// An invitation through the vault; the one-time link, on the host the request came to.
pub(crate) async fn invite_with(
    p: &Portal,
    s: &Session,
    email: String,
    role: String,
    tenant: Option<String>,
    headers: &HeaderMap,
) -> Result<String, Problem> {
    if email.len() > 254 || tenant.as_ref().is_some_and(|t| t.len() > 200) {
        return Err(Problem::bad_request(
            "the e-mail address or tenant name is too long",
        ));
    }
    let role = role.parse::<Role>().map_err(|_| {
        Problem::bad_request("role must be operator, auditor, tenant-admin or user")
    })?;
    let req = Request::InviteBy {
        session: s.token.clone(),
        email,
        role,
        tenant,
    };
    match p.vault.call(&req, &[]).await {
        Ok((VaultResponse::Enrolment { token }, _)) => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| h.len() <= 255 && h.bytes().all(|b| b.is_ascii_graphic()))
                .unwrap_or("<portal>");
            Ok(format!("https://{host}/enrol#{token}"))
        }
        Ok(_) => Err(Problem::internal("unexpected answer from the vault")),
        Err(e) => Err(vault_problem(e)),
    }
}
