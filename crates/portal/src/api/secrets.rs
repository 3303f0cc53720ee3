//! Connector secrets: sealed by the vault, write-only (listed by kind, never shown).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use proto::acts::SecretList as ListSecrets;
use proto::vault::Request;
use serde::Deserialize;

use super::{MessageAnswer, ProblemDoc};
use crate::Portal;
use crate::problem::{Problem, vault_problem};
use crate::session::Session;

/// A sealed connector secret (its value is never shown).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SecretDoc {
    /// `smtp-auth` or `client-cert`.
    pub kind: String,
    /// Last set (Unix time).
    pub updated_at: i64,
}

/// The tenant's sealed secrets.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SecretList {
    /// By kind.
    pub secrets: Vec<SecretDoc>,
}

#[utoipa::path(get, path = "/api/secrets", tag = "secrets", security(("session" = [])),
    responses(
        (status = 200, description = "which secrets are set, and when (never their values)", body = SecretList),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "tenant admins only", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn secrets_list(
    State(p): State<Arc<Portal>>,
    s: Session,
) -> Result<Response, Problem> {
    let secrets = s
        .ask(&p, ListSecrets {})
        .await?
        .into_iter()
        .map(|x| SecretDoc {
            kind: x.kind,
            updated_at: x.updated_at,
        })
        .collect();
    Ok(axum::Json(SecretList { secrets }).into_response())
}

/// A connector secret's value (`kind` decides the other fields).
#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // documents the body; the bytes go to the vault unparsed
struct SecretValue {
    /// `smtp-auth` (with `username`, `password`) or `client-cert` (with `cert_pem`, `key_pem`).
    kind: String,
    /// SMTP AUTH user.
    username: Option<String>,
    /// SMTP AUTH password.
    password: Option<String>,
    /// Client certificate chain (PEM).
    cert_pem: Option<String>,
    /// Its private key (PEM).
    key_pem: Option<String>,
}

#[utoipa::path(put, path = "/api/secrets", tag = "secrets", request_body = SecretValue, security(("session" = [])),
    responses(
        (status = 200, description = "sealed by the vault (write-only)", body = MessageAnswer),
        (status = 400, description = "not a valid secret", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "tenant admins only, after a step-up; CSRF", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "too large", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "not JSON", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn secrets_put(
    State(p): State<Arc<Portal>>,
    s: Session,
    req: axum::extract::Request,
) -> Result<Response, Problem> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "JSON expected",
            "send the secret as application/json",
        ));
    }
    // The value passes through unparsed and is wiped after; only the vault reads it.
    let max = crate::front::Limits::default().max_body;
    let body = zeroize::Zeroizing::new(
        axum::body::to_bytes(req.into_body(), max)
            .await
            .map_err(|_| crate::front::too_large(max))?
            .to_vec(),
    );
    let message = secret_seal(&p, &s, &body).await?;
    Ok(axum::Json(MessageAnswer { message }).into_response())
}

/// Hands a connector secret's bytes to the vault to seal for the admin's tenant.
pub(crate) async fn secret_seal(p: &Portal, s: &Session, value: &[u8]) -> Result<String, Problem> {
    let call = Request::SealSecretBy {
        session: s.token.clone(),
    };
    p.vault.done(&call, value).await.map_err(vault_problem)
}
