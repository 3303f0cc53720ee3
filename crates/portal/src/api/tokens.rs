//! API tokens for automation: made by the vault (shown once), listed, revoked.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use proto::Scope;
use proto::acts::{TokenList as ListTokens, TokenRevoke};
use proto::vault::{Request, Response as VaultResponse};
use serde::Deserialize;

use super::{JsonBody, ProblemDoc};
use crate::Portal;
use crate::problem::{Problem, vault_problem};
use crate::session::Session;

/// An API token's description (the token itself is shown only when made).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TokenDoc {
    /// Token id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Created (Unix time).
    pub created_at: i64,
    /// Expires (Unix time).
    pub expires_at: i64,
    /// Revoked (Unix time), if.
    pub revoked_at: Option<i64>,
    /// Last used (Unix time).
    pub last_used_at: Option<i64>,
}

/// The caller's tokens.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TokenList {
    /// Newest first.
    pub tokens: Vec<TokenDoc>,
}

/// A new token.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct NewTokenAnswer {
    /// Token id.
    pub id: i64,
    /// Send as `Authorization: Bearer <token>`; shown only now.
    pub token: String,
    /// Expiry (Unix time).
    pub expires_at: i64,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenCreate {
    /// A name for people (1–100 characters).
    #[schema(max_length = 100)]
    name: String,
    /// Some of: quarantine:read, quarantine:write, senders:read, senders:write, stats:read,
    /// trace:read, lockbox:read, alerts:read. The token never has more rights than its user.
    scopes: Vec<String>,
    /// Lifetime in days (1–365).
    #[schema(minimum = 1, maximum = 365)]
    days: i64,
}

#[utoipa::path(post, path = "/api/tokens", tag = "tokens", request_body = TokenCreate, security(("session" = [])),
    responses(
        (status = 200, description = "the token, shown once", body = NewTokenAnswer),
        (status = 400, description = "bad name, scopes or days", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "CSRF, or called with a token", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn tokens_create(
    State(p): State<Arc<Portal>>,
    s: Session,
    JsonBody(b): JsonBody<TokenCreate>,
) -> Result<Response, Problem> {
    if b.scopes.len() > 16 || b.name.len() > 400 {
        return Err(Problem::bad_request("at most 16 scopes and a short name"));
    }
    let scopes = b
        .scopes
        .iter()
        .map(|s| s.parse::<Scope>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            let all: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
            Problem::bad_request(format!("scopes must be some of {}", all.join(", ")))
        })?;
    let req = Request::TokenCreate {
        session: s.token.clone(),
        name: b.name,
        scopes,
        days: b.days,
    };
    match p.vault.call(&req, &[]).await {
        Ok((
            VaultResponse::ApiToken {
                id,
                token,
                expires_at,
            },
            _,
        )) => Ok(axum::Json(NewTokenAnswer {
            id,
            token,
            expires_at,
        })
        .into_response()),
        Ok(_) => Err(Problem::internal("unexpected answer from the vault")),
        Err(e) => Err(vault_problem(e)),
    }
}

#[utoipa::path(get, path = "/api/tokens", tag = "tokens", security(("session" = [])),
    responses(
        (status = 200, description = "the caller's tokens (never the tokens themselves)", body = TokenList),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn tokens_list(
    State(p): State<Arc<Portal>>,
    s: Session,
) -> Result<Response, Problem> {
    let tokens = s
        .ask(&p, ListTokens {})
        .await?
        .into_iter()
        .map(|t| TokenDoc {
            id: t.id,
            name: t.name,
            scopes: t.scopes.iter().map(|s| s.to_string()).collect(),
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            last_used_at: t.last_used_at,
        })
        .collect();
    Ok(axum::Json(TokenList { tokens }).into_response())
}

#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, description = "token id")), security(("session" = [])),
    responses(
        (status = 204, description = "revoked"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "CSRF", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no live token of the caller with this id", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn tokens_revoke(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<i64>,
) -> Result<Response, Problem> {
    s.ask(&p, TokenRevoke { id }).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
