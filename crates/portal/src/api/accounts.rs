//! Accounts: enrolment from a one-time link, login with password and code, logout, the
//! caller, and step-up. The vault checks every password and code and mints every session;
//! the portal only carries what the person typed.

use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use proto::client::CallError;
use proto::vault::{
    MAX_PASSWORD, Request, Response as VaultResponse, SESSION_ABSOLUTE, STEP_UP_SECONDS,
    SessionUser,
};
use serde::Deserialize;

use super::{ActivatedAnswer, JsonBody, MessageAnswer, ProblemDoc, SessionAnswer, TotpAnswer};
use crate::Portal;
use crate::listener::ClientAddr;
use crate::problem::{Problem, vault_problem};
use crate::session::{Session, session_cookie};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrolStart {
    token: String,
    password: String,
}

#[utoipa::path(post, path = "/api/enrol", tag = "accounts", request_body = EnrolStart,
    responses(
        (status = 200, description = "password set; the second factor to add to an authenticator", body = TotpAnswer),
        (status = 403, description = "link not valid, or password refused", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 400, description = "malformed body", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn enrol_start(
    State(p): State<Arc<Portal>>,
    JsonBody(b): JsonBody<EnrolStart>,
) -> Result<Response, Problem> {
    let pass = zeroize::Zeroizing::new(b.password);
    match p
        .vault
        .call(&Request::EnrolStart { token: b.token }, pass.as_bytes())
        .await
    {
        Ok((VaultResponse::Totp { secret, uri }, _)) => Ok(axum::Json(TotpAnswer {
            totp_secret: secret,
            otpauth_uri: uri,
            next: "add the secret to an authenticator app, then POST /api/enrol/confirm with a current code".into(),
        })
        .into_response()),
        Ok(_) => Err(Problem::internal("unexpected answer from the vault")),
        Err(e) => Err(vault_problem(e)),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrolConfirm {
    token: String,
    code: String,
}

#[utoipa::path(post, path = "/api/enrol/confirm", tag = "accounts", request_body = EnrolConfirm,
    responses(
        (status = 200, description = "the account is active; its recovery codes, shown once", body = ActivatedAnswer),
        (status = 403, description = "wrong code or link not valid", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn enrol_confirm(
    State(p): State<Arc<Portal>>,
    JsonBody(b): JsonBody<EnrolConfirm>,
) -> Result<Response, Problem> {
    match p
        .vault
        .call(
            &Request::EnrolConfirm {
                token: b.token,
                code: b.code,
            },
            &[],
        )
        .await
    {
        Ok((
            VaultResponse::Activated {
                summary,
                login,
                recovery_codes,
            },
            _,
        )) => Ok(axum::Json(ActivatedAnswer {
            message: summary,
            login,
            recovery_codes,
        })
        .into_response()),
        Ok(_) => Err(Problem::internal("unexpected answer from the vault")),
        Err(e) => Err(vault_problem(e)),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    /// Login name (`operator` for the first operator, else an e-mail address).
    #[schema(max_length = 254)]
    email: String,
    /// The password.
    #[schema(max_length = 1024)]
    password: String,
    /// The current TOTP code, or one of the account's unused recovery codes.
    #[schema(max_length = 16)]
    code: String,
}

#[utoipa::path(post, path = "/api/login", tag = "accounts", request_body = Login,
    responses(
        (status = 200, description = "logged in; sets the HttpOnly session cookie", body = SessionAnswer),
        (status = 401, description = "wrong e-mail address, password or code; or locked", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "too many attempts", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn login(
    State(p): State<Arc<Portal>>,
    ConnectInfo(addr): ConnectInfo<ClientAddr>,
    JsonBody(b): JsonBody<Login>,
) -> Result<Response, Problem> {
    let pass = zeroize::Zeroizing::new(b.password);
    let (token, csrf, user) = login_with(&p, b.email, &pass, b.code, addr).await?;
    let mut r = axum::Json(SessionAnswer {
        user: user.into(),
        csrf_token: csrf,
    })
    .into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&token, SESSION_ABSOLUTE));
    Ok(r)
}

/// A login checked by the vault: the session token, its CSRF token and the user; 401 for
/// every wrong answer alike.
pub(crate) async fn login_with(
    p: &Portal,
    email: String,
    password: &str,
    code: String,
    from: ClientAddr,
) -> Result<(String, String, SessionUser), Problem> {
    if email.len() > 254 || code.len() > 16 || password.len() > MAX_PASSWORD {
        return Err(Problem::bad_request(
            "the e-mail address, password or code is too long",
        ));
    }
    let req = Request::Login {
        email,
        code,
        client_ip: from.0.ip().to_string(),
    };
    match p.vault.call(&req, password.as_bytes()).await {
        Ok((VaultResponse::Session { token, csrf, user }, _)) => Ok((token, csrf, user)),
        Ok(_) => Err(Problem::internal("unexpected answer from the vault")),
        Err(CallError::Refused(r)) => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "Login failed",
            r.message,
        )),
        Err(e) => Err(vault_problem(e)),
    }
}

#[utoipa::path(post, path = "/api/logout", tag = "accounts", security(("session" = [])),
    responses(
        (status = 204, description = "logged out"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "missing CSRF token", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn logout(State(p): State<Arc<Portal>>, s: Session) -> Result<Response, Problem> {
    p.vault
        .call(&Request::Logout { token: s.token }, &[])
        .await
        .map_err(vault_problem)?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0));
    Ok(r)
}

#[utoipa::path(get, path = "/api/me", tag = "accounts", security(("session" = [])),
    responses(
        (status = 200, description = "the caller", body = SessionAnswer),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn me(s: Session) -> Response {
    axum::Json(SessionAnswer {
        user: s.user.into(),
        csrf_token: s.csrf,
    })
    .into_response()
}

/// Re-confirms the session with a current code for a few minutes (step-up), through the vault.
pub(crate) async fn step_up_with(p: &Portal, s: &Session, code: &str) -> Result<(), Problem> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.is_empty() || code.len() > 16 {
        return Err(Problem::bad_request("send the current 6-digit code"));
    }
    let req = Request::StepUp {
        session: s.token.clone(),
        code,
    };
    match p.vault.call(&req, &[]).await {
        Ok((VaultResponse::Done { .. }, _)) => Ok(()),
        Ok(_) => Err(Problem::internal("unexpected answer from the vault")),
        Err(CallError::Refused(r)) => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "Step-up failed",
            r.message,
        )),
        Err(e) => Err(vault_problem(e)),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepUp {
    /// The current TOTP code.
    #[schema(max_length = 16)]
    code: String,
}

#[utoipa::path(post, path = "/api/step-up", tag = "accounts", request_body = StepUp, security(("session" = [])),
    responses(
        (status = 200, description = "the session is re-confirmed for 5 minutes (needed to release a message flagged as malware)", body = MessageAnswer),
        (status = 400, description = "no code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "wrong or reused code, or no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "CSRF", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn step_up(
    State(p): State<Arc<Portal>>,
    s: Session,
    JsonBody(b): JsonBody<StepUp>,
) -> Result<Response, Problem> {
    step_up_with(&p, &s, &b.code).await?;
    Ok(axum::Json(MessageAnswer {
        message: format!("confirmed for {} minutes", STEP_UP_SECONDS / 60),
    })
    .into_response())
}
