//! Passkey endpoints: the portal carries WebAuthn JSON between the browser and the vault,
//! which makes every challenge and checks every answer (the portal holds no key and cannot
//! tell a good answer from a bad one).

use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use proto::client::CallError;
use proto::vault::{PasskeyPurpose, Request, Response as VaultResponse};
use serde::Deserialize;

use crate::Portal;
use crate::api::{
    JsonBody, MessageAnswer, ProblemDoc, Session, SessionAnswer, session_cookie, vault_problem,
};
use crate::listener::ClientAddr;
use crate::problem::Problem;

/// A ceremony to hand to the browser.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ChallengeAnswer {
    /// Send back with the browser's answer.
    pub ceremony: String,
    /// For `navigator.credentials.create()` / `.get()`: `{"publicKey": …}`, binary fields
    /// base64url-encoded.
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

/// The browser's answer to a ceremony.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Finish {
    /// The ceremony id from the start.
    #[schema(max_length = 128)]
    ceremony: String,
    /// The `PublicKeyCredential`, binary fields base64url-encoded (`id`, `rawId`, `type`,
    /// `response`, `extensions`).
    #[schema(value_type = Object)]
    credential: serde_json::Value,
    /// A name for a new passkey (registration; at most 64 characters).
    #[schema(max_length = 64)]
    #[serde(default)]
    name: Option<String>,
}

/// A registered passkey.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct PasskeyDoc {
    /// Id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Registered (Unix seconds).
    pub created_at: i64,
    /// Last used.
    pub last_used_at: Option<i64>,
}

/// The caller's passkeys.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct PasskeyList {
    /// Oldest first.
    pub passkeys: Vec<PasskeyDoc>,
}

/// Starts a ceremony in the vault.
pub(crate) async fn begin(
    p: &Portal,
    purpose: PasskeyPurpose,
    session: Option<&Session>,
) -> Result<ChallengeAnswer, Problem> {
    let req = Request::PasskeyBegin {
        purpose,
        session: session.map(|s| s.token.clone()),
    };
    match p.vault.call(&req, &[]).await {
        Ok((VaultResponse::Challenge { ceremony, options }, _)) => Ok(ChallengeAnswer {
            ceremony,
            options: serde_json::from_str(&options)
                .map_err(|_| Problem::internal("unexpected answer from the vault"))?,
        }),
        Ok(_) => Err(Problem::internal("unexpected answer from the vault")),
        Err(CallError::Refused(r)) => Err(Problem::new(
            StatusCode::CONFLICT,
            "Passkey request refused",
            r.message,
        )),
        Err(e) => Err(vault_problem(e)),
    }
}

/// Finishes a ceremony in the vault.
pub(crate) async fn finish(
    p: &Portal,
    b: Finish,
    session: Option<&Session>,
    from: ClientAddr,
) -> Result<VaultResponse, Problem> {
    if b.ceremony.len() > 128 || b.name.as_ref().is_some_and(|n| n.len() > 256) {
        return Err(Problem::bad_request("the ceremony id or name is too long"));
    }
    let answer = serde_json::to_vec(&b.credential)
        .map_err(|_| Problem::bad_request("the credential is not JSON"))?;
    let req = Request::PasskeyFinish {
        ceremony: b.ceremony,
        session: session.map(|s| s.token.clone()),
        name: b.name,
        client_ip: from.0.ip().to_string(),
    };
    match p.vault.call(&req, &answer).await {
        Ok((r, _)) => Ok(r),
        Err(CallError::Refused(r)) => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "Passkey not accepted",
            r.message,
        )),
        Err(e) => Err(vault_problem(e)),
    }
}

/// Signs in with a finished login ceremony: the session cookie and the answer.
pub(crate) async fn login_with(
    p: &Portal,
    b: Finish,
    from: ClientAddr,
) -> Result<(String, String, proto::vault::SessionUser), Problem> {
    match finish(p, b, None, from).await? {
        VaultResponse::Session { token, csrf, user } => Ok((token, csrf, user)),
        _ => Err(Problem::internal("unexpected answer from the vault")),
    }
}

#[utoipa::path(post, path = "/api/passkeys/login/begin", tag = "accounts",
    responses(
        (status = 200, description = "a sign-in challenge for any passkey of this site", body = ChallengeAnswer),
        (status = 409, description = "passkeys are not set up, or too many sign-ins are in progress", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "too many attempts", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn login_begin(State(p): State<Arc<Portal>>) -> Result<Response, Problem> {
    Ok(axum::Json(begin(&p, PasskeyPurpose::Login, None).await?).into_response())
}

#[utoipa::path(post, path = "/api/passkeys/login/finish", tag = "accounts", request_body = Finish,
    responses(
        (status = 200, description = "signed in; sets the HttpOnly session cookie", body = SessionAnswer),
        (status = 400, description = "malformed request", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "the passkey was not accepted (or the challenge expired)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "too many attempts", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn login_finish(
    State(p): State<Arc<Portal>>,
    ConnectInfo(addr): ConnectInfo<ClientAddr>,
    JsonBody(b): JsonBody<Finish>,
) -> Result<Response, Problem> {
    let (token, csrf, user) = login_with(&p, b, addr).await?;
    let mut r = axum::Json(SessionAnswer {
        user: user.into(),
        csrf_token: csrf,
    })
    .into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&token, proto::vault::SESSION_ABSOLUTE),
    );
    Ok(r)
}

#[utoipa::path(get, path = "/api/passkeys", tag = "accounts", security(("session" = [])),
    responses(
        (status = 200, description = "the caller's passkeys", body = PasskeyList),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "an API token", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn list(State(p): State<Arc<Portal>>, s: Session) -> Result<Response, Problem> {
    Ok(axum::Json(PasskeyList {
        passkeys: list_of(&p, &s).await?,
    })
    .into_response())
}

/// The session user's passkeys.
pub(crate) async fn list_of(p: &Portal, s: &Session) -> Result<Vec<PasskeyDoc>, Problem> {
    let req = Request::PasskeyList {
        session: s.token.clone(),
    };
    match p.vault.call(&req, &[]).await {
        Ok((VaultResponse::Passkeys { items }, _)) => Ok(items
            .into_iter()
            .map(|i| PasskeyDoc {
                id: i.id,
                name: i.name,
                created_at: i.created_at,
                last_used_at: i.last_used_at,
            })
            .collect()),
        Ok(_) => Err(Problem::internal("unexpected answer from the vault")),
        Err(e) => Err(vault_problem(e)),
    }
}

#[utoipa::path(post, path = "/api/passkeys/register/begin", tag = "accounts", security(("session" = [])),
    responses(
        (status = 200, description = "a registration challenge for the caller", body = ChallengeAnswer),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "CSRF", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "needs a step-up first, or passkeys are not set up", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn register_begin(
    State(p): State<Arc<Portal>>,
    s: Session,
) -> Result<Response, Problem> {
    Ok(axum::Json(begin(&p, PasskeyPurpose::Register, Some(&s)).await?).into_response())
}

#[utoipa::path(post, path = "/api/passkeys/register/finish", tag = "accounts", request_body = Finish, security(("session" = [])),
    responses(
        (status = 200, description = "the passkey is registered", body = MessageAnswer),
        (status = 400, description = "malformed request", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "the answer did not verify, the challenge expired, or no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "CSRF", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn register_finish(
    State(p): State<Arc<Portal>>,
    ConnectInfo(addr): ConnectInfo<ClientAddr>,
    s: Session,
    JsonBody(b): JsonBody<Finish>,
) -> Result<Response, Problem> {
    done(finish(&p, b, Some(&s), addr).await?)
}

fn done(r: VaultResponse) -> Result<Response, Problem> {
    match r {
        VaultResponse::Done { summary } => {
            Ok(axum::Json(MessageAnswer { message: summary }).into_response())
        }
        _ => Err(Problem::internal("unexpected answer from the vault")),
    }
}

#[utoipa::path(post, path = "/api/step-up/passkey/begin", tag = "accounts", security(("session" = [])),
    responses(
        (status = 200, description = "a challenge for one of the caller's passkeys", body = ChallengeAnswer),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "CSRF", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "the caller has no passkey", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn step_up_begin(
    State(p): State<Arc<Portal>>,
    s: Session,
) -> Result<Response, Problem> {
    Ok(axum::Json(begin(&p, PasskeyPurpose::StepUp, Some(&s)).await?).into_response())
}

#[utoipa::path(post, path = "/api/step-up/passkey/finish", tag = "accounts", request_body = Finish, security(("session" = [])),
    responses(
        (status = 200, description = "the session is re-confirmed for 5 minutes", body = MessageAnswer),
        (status = 400, description = "malformed request", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "the passkey was not accepted, or no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "CSRF", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn step_up_finish(
    State(p): State<Arc<Portal>>,
    ConnectInfo(addr): ConnectInfo<ClientAddr>,
    s: Session,
    JsonBody(b): JsonBody<Finish>,
) -> Result<Response, Problem> {
    done(finish(&p, b, Some(&s), addr).await?)
}

#[utoipa::path(delete, path = "/api/passkeys/{id}", tag = "accounts",
    params(("id" = i64, Path, description = "passkey id")), security(("session" = [])),
    responses(
        (status = 200, description = "removed", body = MessageAnswer),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "CSRF, or no step-up, or not the caller's passkey", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn remove(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<i64>,
) -> Result<Response, Problem> {
    remove_with(&p, &s, id).await?;
    Ok(axum::Json(MessageAnswer {
        message: format!("passkey {id} removed"),
    })
    .into_response())
}

/// Removes one of the session user's passkeys (the vault wants a step-up).
pub(crate) async fn remove_with(p: &Portal, s: &Session, id: i64) -> Result<(), Problem> {
    let req = Request::PasskeyRemove {
        session: s.token.clone(),
        id,
    };
    match p.vault.call(&req, &[]).await {
        Ok((VaultResponse::Done { .. }, _)) => Ok(()),
        Ok(_) => Err(Problem::internal("unexpected answer from the vault")),
        Err(e) => Err(vault_problem(e)),
    }
}
