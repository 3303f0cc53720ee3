//! The JSON API. Authentication and tenant isolation live in one place each:
//! [`Session::from_request`] asks the vault who the caller is (and checks the CSRF token on
//! every state-changing method), and [`visible`] decides which quarantine items a user may see.
//! Handlers never look at a tenant id themselves.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use vault::client::CallError;
use vault::proto::{Request, Response as VaultResponse, SessionUser};

use crate::Portal;
use crate::listener::ClientAddr;
use crate::problem::Problem;

/// The session cookie.
pub const COOKIE: &str = "sekisho_session";
/// The header carrying the CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Most quarantine items one list answer holds.
pub const MAX_LIST: i64 = 500;

/// The OpenAPI document's frame; the paths are added by the router as it registers them.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Sekisho portal API",
        description = "Quarantine, accounts and sessions of the Sekisho mail gateway. Errors are RFC 9457 problem documents (application/problem+json). Requests other than GET need the X-CSRF-Token header with the csrf_token of the session.",
        license(name = "Apache-2.0")
    ),
    modifiers(&SessionCookie),
    tags(
        (name = "accounts", description = "Enrolment, login, sessions"),
        (name = "quarantine", description = "Held messages: list, view safely, release"),
        (name = "senders", description = "Allowed and blocked senders (\"always allow\", \"always block\")"),
        (name = "policy", description = "The tenant's filter policy: thresholds, weights, protected names"),
        (name = "secrets", description = "Connector secrets (write-only: sealed by the vault, never read back)"),
        (name = "users", description = "People: list and invite (tenant admins their tenant's, operators all)"),
        (name = "operations", description = "Tenants, queues and system health (operators)"),
        (name = "alerts", description = "Detection alerts (operators and auditors, read-only)"),
        (name = "tokens", description = "API tokens for automation: scoped, expiring, revocable (Authorization: Bearer)"),
        (name = "lockbox", description = "Operators' time-limited access to a tenant's content, approved by the tenant"),
        (name = "trace", description = "Message trace: what happened to each message"),
        (name = "statistics", description = "Mail flow of the caller's tenant (operators: all)")
    )
)]
struct ApiDoc;

/// Declares the session cookie as the API's security scheme.
struct SessionCookie;

impl utoipa::Modify for SessionCookie {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "session",
                SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(COOKIE))),
            );
    }
}

/// The API routes and their OpenAPI document, registered together so neither can exist
/// without the other.
pub fn api_routes() -> (Router<Arc<Portal>>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(enrol_start))
        .routes(routes!(enrol_confirm))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(step_up))
        .routes(routes!(crate::passkeys::login_begin))
        .routes(routes!(crate::passkeys::login_finish))
        .routes(routes!(crate::passkeys::list))
        .routes(routes!(crate::passkeys::remove))
        .routes(routes!(crate::passkeys::register_begin))
        .routes(routes!(crate::passkeys::register_finish))
        .routes(routes!(crate::passkeys::step_up_begin))
        .routes(routes!(crate::passkeys::step_up_finish))
        .routes(routes!(tokens_list, tokens_create))
        .routes(routes!(tokens_revoke))
        .routes(routes!(alerts))
        .routes(routes!(audit_export))
        .routes(routes!(tenants, crate::tenancy::tenant_create))
        .routes(routes!(crate::tenancy::tenant_domain_add))
        .routes(routes!(crate::tenancy::tenant_route))
        .routes(routes!(
            crate::tenancy::recipients_list,
            crate::tenancy::recipients_add
        ))
        .routes(routes!(crate::tenancy::recipients_remove))
        .routes(routes!(crate::tenancy::recipient_policy))
        .routes(routes!(users_list, users_invite))
        .routes(routes!(policy_get, policy_put))
        .routes(routes!(secrets_list, secrets_put))
        .routes(routes!(health))
        .routes(routes!(quarantine_list))
        .routes(routes!(quarantine_show, quarantine_delete))
        .routes(routes!(quarantine_release))
        .routes(routes!(quarantine_view))
        .routes(routes!(stats))
        .routes(routes!(trace))
        .routes(routes!(lockbox_list, lockbox_request))
        .routes(routes!(lockbox_approve))
        .routes(routes!(lockbox_deny))
        .routes(routes!(lockbox_revoke))
        .routes(routes!(senders_list, senders_add))
        .routes(routes!(senders_remove))
        .routes(routes!(quarantine_sender))
        .split_for_parts()
}

/// The routes, behind the front door.
pub fn router(portal: Arc<Portal>) -> Router {
    let (api, doc) = api_routes();
    let doc: Arc<str> = doc
        .to_json()
        .expect("the OpenAPI document serialises")
        .into();
    let mut r = Router::new();
    if portal.test_hooks {
        r = r
            .route("/api/test-hooks/exec", post(test_exec))
            .route("/api/test-hooks/vault", post(test_vault));
    }
    r.merge(api)
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(crate::web::routes())
        .route(
            "/api/openapi.json",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    doc.to_string(),
                )
            }),
        )
        .fallback(|| async { Problem::not_found("no such page or endpoint") })
        .layer(axum::middleware::from_fn_with_state(
            portal.clone(),
            crate::front::front_door,
        ))
        .with_state(portal)
}

/// An RFC 9457 problem document (the shape of every error answer).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ProblemDoc {
    /// Always `about:blank`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong, in a few words.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What to do about it.
    pub detail: String,
}

/// A portal user.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct UserDoc {
    /// Account id.
    pub id: i64,
    /// Login name.
    pub email: String,
    /// `operator`, `auditor`, `tenant-admin` or `user`.
    pub role: String,
    /// Tenant id (tenant admins and users).
    pub tenant_id: Option<i64>,
    /// Tenant name.
    pub tenant: Option<String>,
}

impl From<SessionUser> for UserDoc {
    fn from(u: SessionUser) -> Self {
        Self {
            id: u.id,
            email: u.email,
            role: u.role,
            tenant_id: u.tenant_id,
            tenant: u.tenant,
        }
    }
}

/// The caller and the CSRF token of their session.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SessionAnswer {
    /// Who.
    pub user: UserDoc,
    /// Send as `X-CSRF-Token` on every request other than GET.
    pub csrf_token: String,
}

/// The second factor of a new account, shown once.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TotpAnswer {
    /// base32 TOTP secret (RFC 6238, SHA-1, 6 digits, 30 s).
    pub totp_secret: String,
    /// The same as an `otpauth://` URI (for a QR code).
    pub otpauth_uri: String,
    /// What to do next.
    pub next: String,
}

/// An account activated.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ActivatedAnswer {
    /// What was done.
    pub message: String,
    /// One-time recovery codes for a lost authenticator, shown only now: keep them safe.
    /// Each logs in once in place of a code.
    pub recovery_codes: Vec<String>,
}

/// A done act.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct MessageAnswer {
    /// What was done.
    pub message: String,
}

/// A quarantined message's metadata (its content is sealed).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ItemDoc {
    /// Quarantine id.
    pub id: String,
    /// Tenant name.
    pub tenant: String,
    /// Envelope sender.
    pub mail_from: String,
    /// Envelope recipients.
    pub rcpts: Vec<String>,
    /// Size in bytes.
    pub size: i64,
    /// Arrival (Unix time).
    pub received_at: i64,
    /// Deletion by retention (Unix time).
    pub expires_at: i64,
    /// The verdict's action.
    pub verdict: String,
    /// The verdict's score.
    pub score: f64,
    /// The symbols behind it.
    pub symbols: String,
}

impl From<&store::QuarantineItem> for ItemDoc {
    fn from(q: &store::QuarantineItem) -> Self {
        Self {
            id: q.id.clone(),
            tenant: q.tenant.clone(),
            mail_from: q.mail_from.clone(),
            rcpts: q.rcpts.clone(),
            size: q.size,
            received_at: q.received_at,
            expires_at: q.expires_at,
            verdict: q.verdict.clone(),
            score: q.score,
            symbols: q.symbols.clone(),
        }
    }
}

/// Quarantined messages.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ItemList {
    /// Newest first.
    pub items: Vec<ItemDoc>,
}

/// A message's safe view.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ViewAnswer {
    /// Quarantine id.
    pub id: String,
    /// What can be shown safely.
    pub view: crate::view::SafeView,
}

#[derive(Deserialize)]
struct TestExec {
    path: String,
}

/// Test hook: plays code execution inside the portal by running `/bin/sh -c "touch PATH"`.
/// The seccomp filter kills the process before the shell exists.
async fn test_exec(JsonBody(b): JsonBody<TestExec>) -> Response {
    let ran = tokio::task::spawn_blocking(move || {
        std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("touch '{}'", b.path))
            .status()
            .is_ok_and(|s| s.success())
    })
    .await
    .unwrap_or(false);
    axum::Json(json!({ "ran": ran })).into_response()
}

#[derive(Deserialize)]
struct TestVault {
    /// `open` (a quarantined message, without a session), `mx-release` (the same through mx's
    /// admin socket) or `terminate` (a tenant).
    attack: String,
    /// The message id or the tenant name.
    target: String,
}

/// Test hook: plays an intruder with code execution inside the portal speaking the vault's
/// protocol directly, as the local CLI would. The vault must refuse.
async fn test_vault(State(p): State<Arc<Portal>>, JsonBody(b): JsonBody<TestVault>) -> Response {
    if b.attack == "mx-release" {
        // mx's admin socket, without a user's session.
        let req = json!({ "cmd": "quarantine-release", "id": b.target, "principal": "cli:root" });
        let answer = match admin_call(&p.data_dir, &req).await {
            Ok(v) => json!({ "answer": v }),
            Err(e) => json!({ "refused": e.detail }),
        };
        return axum::Json(answer).into_response();
    }
    let req = match b.attack.as_str() {
        "open" => Request::OpenQuarantine {
            id: b.target,
            purpose: vault::proto::Purpose::Read,
            principal: "cli:root".into(),
            reason: "looks interesting".into(),
            session: None,
            role_token: None,
        },
        // Mint a digest link for the item, to release it without anybody's session.
        "digest-links" => Request::DigestLinks {
            items: b
                .target
                .split_once(' ')
                .map(|(id, rcpt)| vec![(id.to_string(), rcpt.to_string())])
                .unwrap_or_default(),
            expires_at: i64::MAX / 2,
            role_token: None,
        },
        _ => Request::Admin(vault::proto::Admin::TerminateTenant {
            tenant: b.target,
            principal: "cli:root".into(),
        }),
    };
    let answer = match p.vault.call(&req, &[]).await {
        Ok((r, body)) => json!({ "answer": r.kind(), "bytes": body.len() }),
        Err(CallError::Refused(m)) => json!({ "refused": m }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    axum::Json(answer).into_response()
}

/// A JSON body within the front door's size limit, or a problem saying what is wrong with it.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: axum::extract::Request, _: &S) -> Result<Self, Problem> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "JSON expected",
                "send the body as application/json",
            ));
        }
        let max = crate::front::Limits::default().max_body;
        let bytes: Bytes = axum::body::to_bytes(req.into_body(), max)
            .await
            .map_err(|_| crate::front::too_large(max))?;
        if crate::front::json_has_nul(&bytes) {
            return Err(crate::front::nul_refused());
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| Problem::bad_request(format!("the JSON body does not fit: {e}")))
    }
}

/// The logged-in caller, as the vault vouches for it.
pub struct Session {
    /// Who.
    pub user: SessionUser,
    /// The session token (passed on to the vault for content opens).
    pub token: String,
    /// The CSRF token bound to the session.
    pub csrf: String,
    /// Re-confirmed with the second factor within the last few minutes (step-up).
    pub stepped_up: bool,
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

pub(crate) fn vault_problem(e: CallError) -> Problem {
    match e {
        CallError::Refused(m) => Problem::forbidden(m),
        other => {
            tracing::error!(error = %other, "vault call failed");
            Problem::internal("the vault did not answer; try again shortly")
        }
    }
}

/// Who the session cookie in `headers` belongs to, as the vault says (no CSRF check: the
/// caller checks the token where the request changes something).
pub(crate) async fn resolve_session(
    headers: &HeaderMap,
    portal: &Portal,
) -> Result<Session, Problem> {
    let token = cookie_token(headers).ok_or_else(Problem::unauthenticated)?;
    resolve_token(token, portal).await
}

/// Who a session or API token belongs to, as the vault says.
async fn resolve_token(token: String, portal: &Portal) -> Result<Session, Problem> {
    let (user, csrf, stepped_up) = match portal
        .vault
        .call(
            &Request::Session {
                token: token.clone(),
            },
            &[],
        )
        .await
    {
        Ok((
            VaultResponse::User {
                user,
                csrf,
                stepped_up,
            },
            _,
        )) => (user, csrf, stepped_up),
        Ok(_) => return Err(Problem::internal("unexpected answer from the vault")),
        Err(CallError::Refused(_)) => return Err(Problem::unauthenticated()),
        Err(e) => return Err(vault_problem(e)),
    };
    Ok(Session {
        user,
        token,
        csrf,
        stepped_up,
    })
}

impl FromRequestParts<Arc<Portal>> for Session {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, portal: &Arc<Portal>) -> Result<Self, Problem> {
        // Automation: `Authorization: Bearer st1_…` (no cookie, so no CSRF), narrowed to the
        // token's scopes here, for every route at once.
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string());
        if let Some(token) = bearer {
            if !token.starts_with("st1_") {
                return Err(Problem::unauthenticated());
            }
            let s = resolve_token(token, portal).await?;
            let need = token_scope(&parts.method, parts.uri.path()).ok_or_else(|| {
                Problem::forbidden("API tokens cannot do this: log in to the portal")
            })?;
            if !need.is_empty() && !s.user.allows(need) {
                return Err(Problem::forbidden(format!(
                    "this API token lacks the {need} scope"
                )));
            }
            return Ok(s);
        }
        let s = resolve_session(&parts.headers, portal).await?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .map(HeaderValue::as_bytes)
                .unwrap_or_default();
            if !keys::ct_eq(sent, s.csrf.as_bytes()) {
                return Err(Problem::forbidden(format!(
                    "missing or wrong {CSRF_HEADER} header: send the csrf_token from the login answer or GET /api/me"
                )));
            }
        }
        Ok(s)
    }
}

/// The scope an API token needs for a request (`""`: any token; `None`: no token may).
pub fn token_scope(method: &Method, path: &str) -> Option<&'static str> {
    let read = matches!(*method, Method::GET | Method::HEAD);
    let under = |p: &str| path == p || path.starts_with(&format!("{p}/"));
    Some(match () {
        _ if path == "/api/me" && read => "",
        _ if under("/api/quarantine") && path.ends_with("/sender") => "senders:write",
        _ if under("/api/quarantine") => {
            if read {
                "quarantine:read"
            } else {
                "quarantine:write"
            }
        }
        _ if under("/api/senders") => {
            if read {
                "senders:read"
            } else {
                "senders:write"
            }
        }
        _ if path == "/api/stats" && read => "stats:read",
        _ if path == "/api/trace" && read => "trace:read",
        _ if path == "/api/lockbox" && read => "lockbox:read",
        _ if path == "/api/alerts" && read => "alerts:read",
        _ if path.starts_with("/api/tenants/") && path.contains("/recipients") => {
            if read {
                "recipients:read"
            } else {
                "recipients:write"
            }
        }
        _ => return None,
    })
}

/// The one rule of which quarantine items (metadata) a user sees: operators every tenant's
/// (metadata only — content needs a lockbox), tenant admins their tenant's, end users the
/// items addressed to them, auditors none.
pub fn visible(user: &SessionUser, item: &store::QuarantineItem) -> bool {
    match user.role.as_str() {
        "operator" => true,
        _ => vault::server::may_open(user, item.tenant_id, &item.rcpts),
    }
}

pub(crate) fn session_cookie(token: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .expect("token is ASCII")
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EnrolStart {
    token: String,
    password: String,
}

#[utoipa::path(post, path = "/api/enrol", tag = "accounts", request_body = EnrolStart,
    responses(
        (status = 200, description = "password set; the second factor to add to an authenticator", body = TotpAnswer),
        (status = 403, description = "link not valid, or password refused", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 400, description = "malformed body", body = ProblemDoc, content_type = "application/problem+json"),))]
async fn enrol_start(
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
struct EnrolConfirm {
    token: String,
    code: String,
}

#[utoipa::path(post, path = "/api/enrol/confirm", tag = "accounts", request_body = EnrolConfirm,
    responses(
        (status = 200, description = "the account is active; its recovery codes, shown once", body = ActivatedAnswer),
        (status = 403, description = "wrong code or link not valid", body = ProblemDoc, content_type = "application/problem+json"),))]
async fn enrol_confirm(
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
                recovery_codes,
            },
            _,
        )) => Ok(axum::Json(ActivatedAnswer {
            message: summary,
            recovery_codes,
        })
        .into_response()),
        Ok(_) => Err(Problem::internal("unexpected answer from the vault")),
        Err(e) => Err(vault_problem(e)),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Login {
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
async fn login(
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
    r.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&token, vault::server::SESSION_ABSOLUTE),
    );
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
    if email.len() > 254 || code.len() > 16 || password.len() > keys::password::MAX_LEN {
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
        Err(CallError::Refused(m)) => {
            Err(Problem::new(StatusCode::UNAUTHORIZED, "Login failed", m))
        }
        Err(e) => Err(vault_problem(e)),
    }
}

#[utoipa::path(post, path = "/api/logout", tag = "accounts", security(("session" = [])),
    responses(
        (status = 204, description = "logged out"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "missing CSRF token", body = ProblemDoc, content_type = "application/problem+json"),))]
async fn logout(State(p): State<Arc<Portal>>, s: Session) -> Result<Response, Problem> {
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
async fn me(s: Session) -> Response {
    axum::Json(SessionAnswer {
        user: s.user.into(),
        csrf_token: s.csrf,
    })
    .into_response()
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
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
async fn quarantine_list(
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

/// The newest `limit` quarantine items the user may see.
pub(crate) async fn list_items(
    p: &Portal,
    s: &Session,
    limit: i64,
) -> Result<Vec<store::QuarantineItem>, Problem> {
    // Narrow in the query where the role allows it; `visible` has the last word.
    let tenant = if s.user.role == "operator" {
        None
    } else {
        Some(s.user.tenant_id.ok_or_else(|| {
            Problem::forbidden("this role has no quarantine (auditors read audit and alerts)")
        })?)
    };
    let items = p
        .store
        .quarantine_list(tenant, limit)
        .await
        .map_err(|_| Problem::internal("the store did not answer"))?;
    Ok(items.into_iter().filter(|i| visible(&s.user, i)).collect())
}

/// The item, if it exists and the user may see it (else 404 either way: another tenant's ids
/// are not confirmed to exist).
pub(crate) async fn visible_item(
    p: &Portal,
    s: &Session,
    id: &str,
) -> Result<store::QuarantineItem, Problem> {
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(Problem::bad_request("not a quarantine id"));
    }
    match p.store.quarantine_get(id).await {
        Ok(item) if visible(&s.user, &item) => Ok(item),
        Ok(_) | Err(store::StoreError::NotFound(_)) => {
            Err(Problem::not_found(format!("no quarantined message {id}")))
        }
        Err(_) => Err(Problem::internal("the store did not answer")),
    }
}

/// The item, if the user may also act on its content (`verb`: what they want to do): the
/// portal's early answer; the vault applies the same rule again before it acts.
async fn openable_item(
    p: &Portal,
    s: &Session,
    id: &str,
    verb: &str,
) -> Result<store::QuarantineItem, Problem> {
    let item = visible_item(p, s, id).await?;
    // An operator's attempt always goes on to the vault, which records it and raises the
    // alert of an operator reaching for content without an approved lockbox.
    if s.user.role != "operator" && !may_open_now(p, &s.user, &item).await {
        return Err(Problem::forbidden(format!(
            "operators {verb} tenants' mail only through a tenant-approved lockbox (request one at /lockbox)"
        )));
    }
    Ok(item)
}

/// The portal's early answer to "may this user open this item now": the vault's rule, and
/// for operators an approved lockbox for the tenant (the vault checks its seal again).
pub(crate) async fn may_open_now(
    p: &Portal,
    user: &SessionUser,
    item: &store::QuarantineItem,
) -> bool {
    if vault::server::may_open(user, item.tenant_id, &item.rcpts) {
        return true;
    }
    user.role == "operator"
        && p.store
            .lockbox_active(user.id, item.tenant_id, store::unix_now())
            .await
            .is_ok_and(|v| !v.is_empty())
}

#[utoipa::path(delete, path = "/api/quarantine/{id}", tag = "quarantine",
    params(("id" = String, Path, description = "quarantine id")), security(("session" = [])),
    responses(
        (status = 204, description = "deleted (the sealed message and its index entry)"),
        (status = 403, description = "refused (lockbox, CSRF)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no such item for this user", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),))]
async fn quarantine_delete(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    delete_item(&p, &s, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Deletes a quarantined message (sealed blob and index entry) through the vault.
pub(crate) async fn delete_item(p: &Portal, s: &Session, id: &str) -> Result<(), Problem> {
    openable_item(p, s, id, "delete").await?;
    let req = Request::DeleteQuarantine {
        id: id.to_string(),
        principal: s.user.principal(),
        session: Some(s.token.clone()),
    };
    match p.vault.call(&req, &[]).await {
        Ok((VaultResponse::Done { .. }, _)) => Ok(()),
        Ok(_) => Err(Problem::internal("unexpected answer from the vault")),
        Err(e) => Err(vault_problem(e)),
    }
}

#[utoipa::path(get, path = "/api/quarantine/{id}", tag = "quarantine", params(("id" = String, Path, description = "quarantine id")), security(("session" = [])),
    responses(
        (status = 200, description = "the item", body = ItemDoc),
        (status = 404, description = "no such item for this user", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),))]
async fn quarantine_show(
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
struct ViewQuery {
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
async fn quarantine_view(
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
    openable_item(p, s, id, "open").await?;
    let plain = p
        .vault
        .open_quarantine_for(
            id,
            vault::proto::Purpose::Read,
            &s.user.principal(),
            reason,
            Some(&s.token),
        )
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
async fn quarantine_release(
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

/// Releases a quarantined message into the spool for delivery (through the mail node, which
/// asks the vault to open it with the user's session).
pub(crate) async fn release_item(p: &Portal, s: &Session, id: &str) -> Result<(), Problem> {
    openable_item(p, s, id, "release").await?;
    let req = json!({
        "cmd": "quarantine-release",
        "id": id,
        "principal": s.user.principal(),
        "session": s.token,
    });
    admin_call(&p.data_dir, &req).await?;
    Ok(())
}

/// One request on the node's admin socket (JSON line in, JSON line out).
pub(crate) async fn admin_call(
    data_dir: &std::path::Path,
    req: &serde_json::Value,
) -> Result<serde_json::Value, Problem> {
    let path = data_dir.join("admin.sock");
    let exchange = async {
        let mut s = tokio::net::UnixStream::connect(&path).await?;
        s.write_all(format!("{req}\n").as_bytes()).await?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).await?;
        std::io::Result::Ok(line)
    };
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), exchange)
        .await
        .map_err(|_| Problem::internal("the mail node did not answer in time"))?
        .map_err(|_| Problem::internal("the mail node is not running"))?;
    let reply: serde_json::Value = serde_json::from_str(&line)
        .map_err(|_| Problem::internal("malformed answer from the mail node"))?;
    if reply["ok"] == json!(true) {
        Ok(reply["data"].clone())
    } else {
        Err(Problem::forbidden(
            reply["error"].as_str().unwrap_or("refused").to_string(),
        ))
    }
}

/// A name and how many messages had it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct CountDoc {
    /// Sender, verdict action or symbol.
    pub name: String,
    /// Messages.
    pub count: i64,
}

/// Mail-flow statistics over a window.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct StatsDoc {
    /// Start of the window (Unix seconds, on an hour boundary).
    pub from: i64,
    /// Messages per hour, oldest first.
    pub hourly: Vec<i64>,
    /// Messages per verdict action, most frequent first (`none`: not inspected).
    pub verdicts: Vec<CountDoc>,
    /// Most frequent envelope senders.
    pub top_senders: Vec<CountDoc>,
    /// Most frequent evidence symbols.
    pub top_symbols: Vec<CountDoc>,
    /// Messages counted.
    pub total: i64,
    /// Only the newest messages of a very busy window were counted.
    pub truncated: bool,
}

fn counts(v: Vec<store::Count>) -> Vec<CountDoc> {
    v.into_iter()
        .map(|c| CountDoc {
            name: c.name,
            count: c.count,
        })
        .collect()
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    /// Hours up to now (1–744, default 24).
    #[param(minimum = 1, maximum = 744)]
    hours: Option<u32>,
}

#[utoipa::path(get, path = "/api/stats", tag = "statistics", params(StatsQuery), security(("session" = [])),
    responses(
        (status = 200, description = "messages per hour, verdicts, top senders and symbols", body = StatsDoc),
        (status = 400, description = "bad window", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "only operators and tenant admins see statistics", body = ProblemDoc, content_type = "application/problem+json"),))]
async fn stats(
    State(p): State<Arc<Portal>>,
    s: Session,
    Query(q): Query<StatsQuery>,
) -> Result<Response, Problem> {
    let hours = q.hours.unwrap_or(24);
    if !(1..=744).contains(&hours) {
        return Err(Problem::bad_request("hours must be 1 to 744 (31 days)"));
    }
    let m = stats_for(&p, &s, hours).await?;
    Ok(axum::Json(StatsDoc {
        from: m.from,
        hourly: m.hourly,
        verdicts: counts(m.verdicts),
        top_senders: counts(m.top_senders),
        top_symbols: counts(m.top_symbols),
        total: m.total,
        truncated: m.truncated,
    })
    .into_response())
}

/// Statistics of the user's scope: a tenant admin's tenant, an operator's whole node.
pub(crate) async fn stats_for(
    p: &Portal,
    s: &Session,
    hours: u32,
) -> Result<store::MailStats, Problem> {
    let tenant = admin_scope(s, "statistics are for tenant admins and operators")?;
    p.store
        .mail_stats(tenant, store::unix_now(), hours)
        .await
        .map_err(|_| Problem::internal("the store did not answer"))
}

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

/// The tenant and recipient an end user or tenant admin's sender entries live under, for
/// `scope` (`me` or `tenant`); the one place that decides who may change which list.
pub(crate) fn sender_scope(user: &SessionUser, scope: &str) -> Result<(i64, String), Problem> {
    let tenant = match (user.role.as_str(), user.tenant_id) {
        ("user" | "tenant-admin", Some(t)) => t,
        _ => {
            return Err(Problem::forbidden(
                "sender lists belong to a tenant's admins and users",
            ));
        }
    };
    match (scope, user.role.as_str()) {
        ("me", _) => Ok((tenant, user.email.to_lowercase())),
        ("tenant", "tenant-admin") => Ok((tenant, String::new())),
        ("tenant", _) => Err(Problem::forbidden(
            "only tenant admins change the tenant's list; use scope \"me\" for your own",
        )),
        _ => Err(Problem::bad_request("scope must be \"me\" or \"tenant\"")),
    }
}

/// Whether the user sees (and whether they may remove) an entry.
fn sender_rights(user: &SessionUser, e: &store::SenderEntry) -> (bool, bool) {
    if user.tenant_id != Some(e.tenant_id) {
        return (false, false);
    }
    let own = e.rcpt == user.email.to_lowercase();
    match user.role.as_str() {
        "tenant-admin" => (true, true),
        "user" => (own || e.rcpt.is_empty(), own),
        _ => (false, false),
    }
}

fn sender_doc(user: &SessionUser, e: store::SenderEntry) -> SenderDoc {
    let scope = if e.rcpt.is_empty() {
        "tenant"
    } else if e.rcpt == user.email.to_lowercase() {
        "me"
    } else {
        "recipient"
    };
    SenderDoc {
        id: e.id,
        scope: scope.into(),
        removable: sender_rights(user, &e).1,
        rcpt: e.rcpt,
        pattern: e.pattern,
        action: e.action.name().into(),
        added_by: e.added_by,
        added_at: e.added_at,
    }
}

/// The tenant a tenant admin's request is narrowed to; `None` for operators (every tenant).
/// Other roles are refused with `refusal`.
fn admin_scope(s: &Session, refusal: &str) -> Result<Option<i64>, Problem> {
    match (s.user.role.as_str(), s.user.tenant_id) {
        ("operator", _) => Ok(None),
        ("tenant-admin", Some(t)) => Ok(Some(t)),
        _ => Err(Problem::forbidden(refusal)),
    }
}

/// The entries the user sees.
pub(crate) async fn sender_entries(p: &Portal, s: &Session) -> Result<Vec<SenderDoc>, Problem> {
    let (tenant, _) = sender_scope(&s.user, "me")?;
    let all = p
        .store
        .sender_lists(tenant)
        .await
        .map_err(|_| Problem::internal("the store did not answer"))?;
    Ok(all
        .into_iter()
        .filter(|e| sender_rights(&s.user, e).0)
        .map(|e| sender_doc(&s.user, e))
        .collect())
}

/// Adds an entry under `scope`, recorded in the audit log.
pub(crate) async fn sender_put(
    p: &Portal,
    s: &Session,
    scope: &str,
    pattern: &str,
    action: &str,
) -> Result<SenderDoc, Problem> {
    let (tenant, rcpt) = sender_scope(&s.user, scope)?;
    let action = match action {
        "allow" => store::SenderAction::Allow,
        "block" => store::SenderAction::Block,
        _ => {
            return Err(Problem::bad_request(
                "action must be \"allow\" or \"block\"",
            ));
        }
    };
    let pattern = store::sender_pattern(pattern).map_err(Problem::bad_request)?;
    let principal = s.user.principal();
    let e = p
        .store
        .sender_list_put(
            tenant,
            &rcpt,
            &pattern,
            action,
            &principal,
            store::unix_now(),
        )
        .await
        .map_err(|e| match e {
            store::StoreError::Invalid(m) => Problem::bad_request(m),
            _ => Problem::internal("the store did not answer"),
        })?;
    record_change(
        p,
        s,
        &format!("sender-{}", action.name()),
        tenant,
        &pattern,
        &rcpt,
    )
    .await;
    Ok(sender_doc(&s.user, e))
}

/// Removes an entry the user may remove (404 for any other id).
pub(crate) async fn sender_remove(p: &Portal, s: &Session, id: i64) -> Result<(), Problem> {
    let missing = || Problem::not_found(format!("no sender entry {id}"));
    let e = match p.store.sender_entry(id).await {
        Ok(e) => e,
        Err(store::StoreError::NotFound(_)) => return Err(missing()),
        Err(_) => return Err(Problem::internal("the store did not answer")),
    };
    match sender_rights(&s.user, &e) {
        (true, true) => {}
        (true, false) => {
            return Err(Problem::forbidden(
                "the tenant's entries are changed by its admins",
            ));
        }
        _ => return Err(missing()),
    }
    p.store
        .sender_list_remove(id)
        .await
        .map_err(|_| Problem::internal("the store did not answer"))?;
    record_change(p, s, "sender-remove", e.tenant_id, &e.pattern, &e.rcpt).await;
    Ok(())
}

/// A policy change by a portal user, in the audit log; this node's mail path picks it up at
/// once (every other node within a second, with its next directory reload).
async fn record_change(
    p: &Portal,
    s: &Session,
    action: &str,
    tenant: i64,
    object: &str,
    rcpt: &str,
) {
    ask_reload(p).await;
    let reason = if rcpt.is_empty() {
        "for the whole tenant".to_string()
    } else {
        format!("for {rcpt}")
    };
    record_act(p, s, action, Some(tenant), object, &reason).await;
}

/// Asks the mail node to reload its directory now (it does within a second anyway).
pub(crate) async fn ask_reload(p: &Portal) {
    if let Err(e) = admin_call(&p.data_dir, &json!({ "cmd": "reload" })).await {
        tracing::warn!(detail = %e.detail, "the mail node was not asked to reload");
    }
}

/// An act of a portal user, in the audit log.
pub(crate) async fn record_act(
    p: &Portal,
    s: &Session,
    action: &str,
    tenant: Option<i64>,
    object: &str,
    reason: &str,
) {
    let r = store::NewRecord {
        principal: &s.user.principal(),
        role: "portal",
        action,
        tenant_id: tenant,
        object,
        reason,
        outcome: "ok",
    };
    if let Err(e) = p.store.record(&r).await {
        tracing::error!(error = %e, action, "audit record not written");
    }
}

#[utoipa::path(get, path = "/api/senders", tag = "senders", security(("session" = [])),
    responses(
        (status = 200, description = "the tenant's entries and the caller's own (tenant admins: every recipient's)", body = SenderList),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "operators and auditors have no sender lists", body = ProblemDoc, content_type = "application/problem+json"),))]
async fn senders_list(State(p): State<Arc<Portal>>, s: Session) -> Result<Response, Problem> {
    let entries = sender_entries(&p, &s).await?;
    Ok(axum::Json(SenderList { entries }).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SenderAdd {
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
async fn senders_add(
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
async fn senders_remove(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<i64>,
) -> Result<Response, Problem> {
    sender_remove(&p, &s, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ItemSender {
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
    let item = openable_item(p, s, id, "judge").await?;
    if item.mail_from.is_empty() {
        return Err(Problem::bad_request(
            "the message has no sender (a bounce); nothing to allow or block",
        ));
    }
    let scope = if s.user.role == "tenant-admin" {
        "tenant"
    } else {
        "me"
    };
    sender_put(p, s, scope, &item.mail_from, action).await
}

#[utoipa::path(post, path = "/api/quarantine/{id}/sender", tag = "quarantine", request_body = ItemSender,
    params(("id" = String, Path, description = "quarantine id")), security(("session" = [])),
    responses(
        (status = 200, description = "the sender is allowed or blocked from now on (end users: for their mailbox; tenant admins: for the tenant)", body = SenderDoc),
        (status = 400, description = "bad action, or a bounce without sender", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "refused (operators, CSRF)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no such item for this user", body = ProblemDoc, content_type = "application/problem+json"),))]
async fn quarantine_sender(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ItemSender>,
) -> Result<Response, Problem> {
    let e = item_sender(&p, &s, &id, &b.action).await?;
    Ok(axum::Json(e).into_response())
}

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
/// recipients' events), an operator's whole node.
pub(crate) async fn trace_for(
    p: &Portal,
    s: &Session,
    q: TraceQuery,
) -> Result<Vec<store::TraceMessage>, Problem> {
    let tenant = admin_scope(s, "the message trace is for tenant admins and operators")?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit must be 1 to {MAX_LIST}"
        )));
    }
    let clean = |v: Option<String>, max: usize, what: &str| -> Result<Option<String>, Problem> {
        match v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) {
            Some(v) if v.chars().count() > max => Err(Problem::bad_request(format!(
                "{what} is longer than {max} characters"
            ))),
            v => Ok(v),
        }
    };
    let f = store::TraceFilter {
        rcpt: clean(q.rcpt, 254, "rcpt")?,
        mail_from: clean(q.from, 254, "from")?,
        id: clean(q.id, 64, "id")?,
        tenant,
        limit,
    };
    p.store
        .trace(&f)
        .await
        .map_err(|_| Problem::internal("the store did not answer"))
}

#[utoipa::path(get, path = "/api/trace", tag = "trace", params(TraceQuery), security(("session" = [])),
    responses(
        (status = 200, description = "matching messages, newest first", body = TraceList),
        (status = 400, description = "bad limit or field", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "only tenant admins and operators search the trace", body = ProblemDoc, content_type = "application/problem+json"),))]
async fn trace(
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

pub(crate) fn lockbox_doc(lb: store::Lockbox, now: i64) -> LockboxDoc {
    let state = if lb.state == "approved" && !lb.open_at(now) {
        "expired".to_string()
    } else {
        lb.state
    };
    LockboxDoc {
        id: lb.id,
        tenant: lb.tenant,
        operator: lb.operator,
        reason: lb.reason,
        minutes: lb.minutes,
        requested_at: lb.requested_at,
        state,
        decided_by: lb.decided_by,
        expires_at: lb.expires_at,
    }
}

/// The requests the user sees: operators their own, tenant admins their tenant's, auditors all.
pub(crate) async fn lockbox_requests(p: &Portal, s: &Session) -> Result<Vec<LockboxDoc>, Problem> {
    let (tenant, operator) = match (s.user.role.as_str(), s.user.tenant_id) {
        ("operator", _) => (None, Some(s.user.id)),
        ("auditor", _) => (None, None),
        ("tenant-admin", Some(t)) => (Some(t), None),
        _ => {
            return Err(Problem::forbidden(
                "lockbox requests are for operators, tenant admins and auditors",
            ));
        }
    };
    let now = store::unix_now();
    Ok(p.store
        .lockbox_list(tenant, operator)
        .await
        .map_err(|_| Problem::internal("the store did not answer"))?
        .into_iter()
        .map(|lb| lockbox_doc(lb, now))
        .collect())
}

/// An operator asks for access to a tenant's content.
pub(crate) async fn lockbox_ask(
    p: &Portal,
    s: &Session,
    tenant: &str,
    reason: &str,
    minutes: i64,
) -> Result<LockboxDoc, Problem> {
    if s.user.role != "operator" {
        return Err(Problem::forbidden("only operators request lockbox access"));
    }
    let reason = reason.trim();
    if reason.chars().count() < 10 || reason.len() > 500 {
        return Err(Problem::bad_request(
            "say why in 10 to 500 characters (the tenant reads it before approving)",
        ));
    }
    if tenant.len() > 200 {
        return Err(Problem::bad_request("no such tenant"));
    }
    let tenant_id = match p.store.tenant_id(tenant).await {
        Ok(t) => t,
        Err(store::StoreError::NotFound(_)) => {
            return Err(Problem::bad_request(format!("no tenant named {tenant:?}")));
        }
        Err(_) => return Err(Problem::internal("the store did not answer")),
    };
    let now = store::unix_now();
    let lb = p
        .store
        .lockbox_request(tenant_id, s.user.id, &s.user.email, reason, minutes, now)
        .await
        .map_err(|e| match e {
            store::StoreError::Invalid(m) => Problem::bad_request(m),
            _ => Problem::internal("the store did not answer"),
        })?;
    let why = format!("{minutes} minutes: {reason}");
    record_act(
        p,
        s,
        "lockbox-request",
        Some(tenant_id),
        &lb.id.to_string(),
        &why,
    )
    .await;
    Ok(lockbox_doc(lb, now))
}

/// A tenant admin decides; the vault checks the admin and seals an approval.
pub(crate) async fn lockbox_decision(
    p: &Portal,
    s: &Session,
    id: i64,
    approve: bool,
) -> Result<(), Problem> {
    if s.user.role != "tenant-admin" {
        return Err(Problem::forbidden(
            "lockbox requests are approved by the tenant's admins",
        ));
    }
    let req = Request::LockboxDecide {
        id,
        approve,
        session: s.token.clone(),
    };
    match p.vault.call(&req, &[]).await {
        Ok((VaultResponse::Done { .. }, _)) => Ok(()),
        Ok(_) => Err(Problem::internal("unexpected answer from the vault")),
        Err(CallError::Refused(m)) if m.starts_with("no lockbox request") => {
            Err(Problem::not_found(format!("no lockbox request {id}")))
        }
        Err(e) => Err(vault_problem(e)),
    }
}

/// Ends a pending or approved access: the operator who asked, or the tenant's admins.
pub(crate) async fn lockbox_end(p: &Portal, s: &Session, id: i64) -> Result<(), Problem> {
    let missing = || Problem::not_found(format!("no lockbox request {id}"));
    let lb = match p.store.lockbox_get(id).await {
        Ok(lb) => lb,
        Err(store::StoreError::NotFound(_)) => return Err(missing()),
        Err(_) => return Err(Problem::internal("the store did not answer")),
    };
    let allowed = match s.user.role.as_str() {
        "operator" => lb.operator_id == s.user.id,
        "tenant-admin" => s.user.tenant_id == Some(lb.tenant_id),
        _ => false,
    };
    if !allowed {
        return Err(missing());
    }
    p.store
        .lockbox_revoke(id, &s.user.principal(), store::unix_now())
        .await
        .map_err(|e| match e {
            store::StoreError::Conflict(m) => Problem::new(StatusCode::CONFLICT, "Conflict", m),
            _ => Problem::internal("the store did not answer"),
        })?;
    record_act(
        p,
        s,
        "lockbox-revoke",
        Some(lb.tenant_id),
        &id.to_string(),
        "ended early",
    )
    .await;
    Ok(())
}

#[utoipa::path(get, path = "/api/lockbox", tag = "lockbox", security(("session" = [])),
    responses(
        (status = 200, description = "operators: their requests; tenant admins: their tenant's; auditors: all", body = LockboxList),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "end users have no lockbox", body = ProblemDoc, content_type = "application/problem+json"),))]
async fn lockbox_list(State(p): State<Arc<Portal>>, s: Session) -> Result<Response, Problem> {
    let requests = lockbox_requests(&p, &s).await?;
    Ok(axum::Json(LockboxList { requests }).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LockboxAsk {
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
async fn lockbox_request(
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
async fn lockbox_approve(
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
async fn lockbox_deny(
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
async fn lockbox_revoke(
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
        Err(CallError::Refused(m)) => {
            Err(Problem::new(StatusCode::UNAUTHORIZED, "Step-up failed", m))
        }
        Err(e) => Err(vault_problem(e)),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct StepUp {
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
async fn step_up(
    State(p): State<Arc<Portal>>,
    s: Session,
    JsonBody(b): JsonBody<StepUp>,
) -> Result<Response, Problem> {
    step_up_with(&p, &s, &b.code).await?;
    Ok(axum::Json(MessageAnswer {
        message: format!(
            "confirmed for {} minutes",
            vault::server::STEP_UP_SECONDS / 60
        ),
    })
    .into_response())
}

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
struct TokenCreate {
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
async fn tokens_create(
    State(p): State<Arc<Portal>>,
    s: Session,
    JsonBody(b): JsonBody<TokenCreate>,
) -> Result<Response, Problem> {
    if b.scopes.len() > 16 || b.name.len() > 400 {
        return Err(Problem::bad_request("at most 16 scopes and a short name"));
    }
    let req = Request::TokenCreate {
        session: s.token.clone(),
        name: b.name,
        scopes: b.scopes,
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
        Err(CallError::Refused(m)) => Err(Problem::bad_request(m)),
        Err(e) => Err(vault_problem(e)),
    }
}

#[utoipa::path(get, path = "/api/tokens", tag = "tokens", security(("session" = [])),
    responses(
        (status = 200, description = "the caller's tokens (never the tokens themselves)", body = TokenList),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),))]
async fn tokens_list(State(p): State<Arc<Portal>>, s: Session) -> Result<Response, Problem> {
    let tokens = p
        .store
        .api_tokens_of(s.user.id)
        .await
        .map_err(|_| Problem::internal("the store did not answer"))?
        .into_iter()
        .map(|t| TokenDoc {
            id: t.id,
            name: t.name,
            scopes: t.scopes,
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
async fn tokens_revoke(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<i64>,
) -> Result<Response, Problem> {
    match p
        .store
        .api_token_revoke(id, s.user.id, store::unix_now())
        .await
    {
        Ok(()) => {}
        Err(store::StoreError::NotFound(m)) => return Err(Problem::not_found(m)),
        Err(_) => return Err(Problem::internal("the store did not answer")),
    }
    record_act(
        &p,
        &s,
        "token-revoke",
        s.user.tenant_id,
        &format!("token:{id}"),
        "revoked",
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

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
async fn audit_export(
    State(p): State<Arc<Portal>>,
    s: Session,
    Query(q): Query<ExportQuery>,
) -> Result<Response, Problem> {
    export_for(&p, &s, &q).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AlertQuery {
    /// Only alerts in this state (`open`, `acknowledged`, `resolved`).
    state: Option<String>,
}

#[utoipa::path(get, path = "/api/alerts", tag = "alerts", params(AlertQuery), security(("session" = [])),
    responses(
        (status = 200, description = "the alerts (at most 500, newest first)", body = AlertList),
        (status = 400, description = "bad state", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "only operators and auditors read alerts", body = ProblemDoc, content_type = "application/problem+json"),))]
async fn alerts(
    State(p): State<Arc<Portal>>,
    s: Session,
    Query(q): Query<AlertQuery>,
) -> Result<Response, Problem> {
    if !matches!(s.user.role.as_str(), "operator" | "auditor") {
        return Err(Problem::forbidden(
            "alerts are read by operators and auditors",
        ));
    }
    if let Some(st) = &q.state
        && !matches!(st.as_str(), "open" | "acknowledged" | "resolved")
    {
        return Err(Problem::bad_request(
            "state must be open, acknowledged or resolved",
        ));
    }
    let alerts = p
        .store
        .alerts(q.state.as_deref())
        .await
        .map_err(|_| Problem::internal("the store did not answer"))?
        .into_iter()
        .take(500)
        .map(|a| AlertDoc {
            id: a.id,
            rule: a.rule,
            severity: a.severity,
            principal: a.principal,
            tenant_id: a.tenant_id,
            summary: a.summary,
            first_at: a.first_at,
            last_at: a.last_at,
            count: a.count,
            state: a.state,
        })
        .collect();
    Ok(axum::Json(AlertList { alerts }).into_response())
}

/// A tenant as operators see it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TenantDoc {
    /// Tenant id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Domains.
    pub domains: Vec<String>,
    /// Where its mail goes (credentials are sealed secrets, never in the route).
    pub route: String,
    /// `auto`, `verify` or `catch-all`.
    pub recipient_policy: String,
    /// Listed recipients.
    pub recipients: i64,
    /// Messages held in quarantine.
    pub quarantined: i64,
}

impl TenantDoc {
    /// The document of `t`, with its count of quarantined messages.
    pub(crate) fn of(t: store::Tenant, quarantined: i64) -> Self {
        Self {
            id: t.id,
            name: t.name,
            domains: t.domains,
            route: t.route,
            recipient_policy: t.recipient_policy.as_str().to_string(),
            recipients: t.recipients,
            quarantined,
        }
    }
}

/// Tenants.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TenantList {
    /// By name.
    pub tenants: Vec<TenantDoc>,
}

/// The tenants an operator runs (a tenant admin: their own).
pub(crate) async fn tenant_docs(p: &Portal, s: &Session) -> Result<Vec<TenantDoc>, Problem> {
    let only = admin_scope(s, "tenants are for operators and tenant admins")?;
    let fail = |_| Problem::internal("the store did not answer");
    let mut out = Vec::new();
    let mut list = p.store.list_tenants().await.map_err(fail)?;
    list.sort_by(|a, b| a.name.cmp(&b.name));
    let counts = p.store.quarantine_counts().await.map_err(fail)?;
    for t in list.into_iter().filter(|t| only.is_none_or(|o| o == t.id)) {
        let quarantined = counts.get(&t.id).copied().unwrap_or(0);
        out.push(TenantDoc::of(t, quarantined));
    }
    Ok(out)
}

#[utoipa::path(get, path = "/api/tenants", tag = "operations", security(("session" = [])),
    responses(
        (status = 200, description = "operators: every tenant; tenant admins: their own", body = TenantList),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "end users and auditors", body = ProblemDoc, content_type = "application/problem+json"),))]
async fn tenants(State(p): State<Arc<Portal>>, s: Session) -> Result<Response, Problem> {
    let tenants = tenant_docs(&p, &s).await?;
    Ok(axum::Json(TenantList { tenants }).into_response())
}

/// The node's health as the portal sees it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct HealthDoc {
    /// Sekisho's version.
    pub version: String,
    /// The mail node answered on its admin socket.
    pub mx: bool,
    /// The vault answered.
    pub vault: bool,
    /// The store answered.
    pub store: bool,
    /// Queued messages by state (`active`, `deferred`, `hold`, `corrupt`).
    pub queue: std::collections::BTreeMap<String, i64>,
    /// Bytes queued.
    pub queue_bytes: u64,
    /// Age of the oldest queued message in seconds.
    pub oldest_queued_seconds: Option<i64>,
    /// Open alerts.
    pub open_alerts: i64,
    /// Every gateway node sharing the store, as its last heartbeat says.
    pub nodes: Vec<NodeDoc>,
}

/// One gateway node of the cluster.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct NodeDoc {
    /// Its name.
    pub name: String,
    /// `up`, `stopped` or `down` (no heartbeat for a while).
    pub status: String,
    /// Sekisho version it runs.
    pub version: String,
    /// Its SMTP listener.
    pub smtp: String,
    /// Queue: active, deferred, held messages.
    pub active: i64,
    /// Deferred messages.
    pub deferred: i64,
    /// Held messages.
    pub hold: i64,
    /// Seconds since its last heartbeat.
    pub seen_seconds_ago: i64,
}

/// Health of the node: each part asked, the queue summarised (no addresses).
pub(crate) async fn health_of(p: &Portal) -> HealthDoc {
    let now = store::unix_now();
    let queue = admin_call(&p.data_dir, &json!({ "cmd": "queue-list" })).await;
    let (mx, mut by_state, mut bytes, mut oldest) =
        (queue.is_ok(), std::collections::BTreeMap::new(), 0u64, None);
    if let Ok(serde_json::Value::Array(entries)) = &queue {
        for e in entries {
            let state = e["state"].as_str().unwrap_or("unknown").to_string();
            *by_state.entry(state).or_insert(0) += 1;
            bytes += e["size"].as_u64().unwrap_or(0);
            if let Some(at) = e["received_at"].as_i64() {
                oldest = Some(oldest.map_or(now - at, |o: i64| o.max(now - at)));
            }
        }
    }
    // Any answer from the vault (a refusal of a dead session included) means it is up.
    let vault = !matches!(
        p.vault
            .call(
                &Request::Session {
                    token: "s1_health".into()
                },
                &[]
            )
            .await,
        Err(CallError::Unreachable(_)) | Err(CallError::Vault(_)) | Err(CallError::Io(_))
    );
    let alerts = p.store.alerts(Some("open")).await;
    let nodes = p
        .store
        .nodes()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|n| NodeDoc {
            status: n.status(now).to_string(),
            seen_seconds_ago: now - n.last_seen,
            name: n.name,
            version: n.version,
            smtp: n.smtp,
            active: n.active,
            deferred: n.deferred,
            hold: n.hold,
        })
        .collect();
    HealthDoc {
        nodes,
        version: env!("CARGO_PKG_VERSION").to_string(),
        mx,
        vault,
        store: alerts.is_ok(),
        queue: by_state,
        queue_bytes: bytes,
        oldest_queued_seconds: oldest,
        open_alerts: alerts.map_or(0, |a| a.len() as i64),
    }
}

#[utoipa::path(get, path = "/api/health", tag = "operations", security(("session" = [])),
    responses(
        (status = 200, description = "version, which parts answer, the queue by state, open alerts", body = HealthDoc),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "operators only", body = ProblemDoc, content_type = "application/problem+json"),))]
async fn health(State(p): State<Arc<Portal>>, s: Session) -> Result<Response, Problem> {
    if s.user.role != "operator" {
        return Err(Problem::forbidden("system health is for operators"));
    }
    Ok(axum::Json(health_of(&p).await).into_response())
}

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
async fn users_list(State(p): State<Arc<Portal>>, s: Session) -> Result<Response, Problem> {
    let tenant = admin_scope(&s, "accounts are listed for operators and tenant admins")?;
    let users = p
        .store
        .user_list(tenant)
        .await
        .map_err(|_| Problem::internal("the store did not answer"))?
        .into_iter()
        .map(|u| AccountDoc {
            id: u.id,
            email: u.email,
            role: u.role,
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
struct Invite {
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
async fn users_invite(
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
        Err(CallError::Refused(m)) => Err(Problem::bad_request(m)),
        Err(e) => Err(vault_problem(e)),
    }
}

/// A person whose display name outsiders must not use.
#[derive(serde::Serialize, Deserialize, utoipa::ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct ProtectedNameDoc {
    /// The name (`Taro Yamada`, `山田 太郎`).
    #[schema(max_length = 200)]
    pub name: String,
    /// Their real addresses (empty: any address at the tenant's domains).
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// A tenant's filter policy: overrides of the node's global policy (absent: the global value).
#[derive(serde::Serialize, Deserialize, utoipa::ToSchema, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    /// Tag threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<f64>,
    /// Quarantine threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<f64>,
    /// Reject threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject: Option<f64>,
    /// Symbol weights by name.
    #[serde(default)]
    pub weights: std::collections::BTreeMap<String, f64>,
    /// Protected display names (impersonation).
    #[serde(default)]
    pub protected_names: Vec<ProtectedNameDoc>,
    /// Forwarders whose ARC seal the tenant trusts (domains).
    #[serde(default)]
    pub trusted_arc: Vec<String>,
    /// Days quarantined mail is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_days: Option<u32>,
}

/// The tenant's policy with the global values it overrides.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct PolicyAnswer {
    /// The tenant's overrides.
    pub policy: PolicyDoc,
    /// The thresholds in effect (`tag`, `quarantine`, `reject`).
    pub effective: std::collections::BTreeMap<String, f64>,
    /// The global weight of every symbol.
    pub default_weights: std::collections::BTreeMap<String, f64>,
}

impl From<store::FilterPolicy> for PolicyDoc {
    fn from(f: store::FilterPolicy) -> Self {
        Self {
            tag: f.tag,
            quarantine: f.quarantine,
            reject: f.reject,
            weights: f.weights,
            protected_names: f
                .protected_names
                .into_iter()
                .map(|n| ProtectedNameDoc {
                    name: n.name,
                    addresses: n.addresses,
                })
                .collect(),
            trusted_arc: f.trusted_arc,
            quarantine_days: f.quarantine_days,
        }
    }
}

fn tenant_admin_of(s: &Session) -> Result<(i64, String), Problem> {
    match (s.user.role.as_str(), s.user.tenant_id, &s.user.tenant) {
        ("tenant-admin", Some(id), Some(name)) => Ok((id, name.clone())),
        _ => Err(Problem::forbidden(
            "the filter policy is the tenant admins'",
        )),
    }
}

/// Thresholds and weights in effect under `p`.
fn effective(
    d: &crate::PolicyDefaults,
    p: &PolicyDoc,
) -> ([f64; 3], std::collections::BTreeMap<String, f64>) {
    let mut w = d.weights.clone();
    for (k, v) in &p.weights {
        w.insert(k.clone(), *v);
    }
    (
        [
            p.tag.unwrap_or(d.tag),
            p.quarantine.unwrap_or(d.quarantine),
            p.reject.unwrap_or(d.reject),
        ],
        w,
    )
}

/// Why `new` is not a valid policy, if it is not.
fn policy_error(d: &crate::PolicyDefaults, new: &PolicyDoc) -> Option<String> {
    for (k, v) in &new.weights {
        if !d.weights.contains_key(k) {
            return Some(format!("unknown symbol {k:?}"));
        }
        if !v.is_finite() || v.abs() > 10_000.0 {
            return Some(format!("{k}: a weight is a number from -10000 to 10000"));
        }
    }
    let ([t, q, r], _) = effective(d, new);
    if ![t, q, r]
        .iter()
        .all(|x| x.is_finite() && x.abs() <= 100_000.0)
    {
        return Some("thresholds are numbers from -100000 to 100000".into());
    }
    if !(t <= q && q <= r) {
        return Some(format!(
            "thresholds must satisfy tag ≤ quarantine ≤ reject (got {t}, {q}, {r})"
        ));
    }
    if new.protected_names.len() > 500 || new.trusted_arc.len() > 200 || new.weights.len() > 500 {
        return Some("at most 500 protected names, 200 trusted forwarders and 500 weights".into());
    }
    if new.protected_names.iter().any(|n| {
        n.name.trim().chars().count() < 3
            || n.name.chars().count() > 200
            || n.addresses.len() > 50
            || n.addresses
                .iter()
                .any(|a| store::sender_pattern(a).is_err() || !a.contains('@'))
    }) {
        return Some(
            "a protected name has 3 to 200 characters and at most 50 real addresses (name@example.com)"
                .into(),
        );
    }
    if new
        .trusted_arc
        .iter()
        .any(|dom| store::sender_pattern(dom).is_err() || dom.contains('@'))
    {
        return Some("a trusted forwarder is a domain (lists.example.com)".into());
    }
    if new
        .quarantine_days
        .is_some_and(|n| !(1..=3650).contains(&n))
    {
        return Some("quarantine_days is 1 to 3650".into());
    }
    None
}

/// True if `new` lets more through than `old`: a threshold raised or a weight lowered.
fn weakens(d: &crate::PolicyDefaults, old: &PolicyDoc, new: &PolicyDoc) -> bool {
    let (ot, ow) = effective(d, old);
    let (nt, nw) = effective(d, new);
    ot.iter().zip(nt.iter()).any(|(o, n)| n > o)
        || nw.iter().any(|(k, n)| ow.get(k).is_some_and(|o| n < o))
        || new.protected_names.len() < old.protected_names.len()
}

#[utoipa::path(get, path = "/api/policy", tag = "policy", security(("session" = [])),
    responses(
        (status = 200, description = "the tenant's overrides, the thresholds in effect and the global weights", body = PolicyAnswer),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "tenant admins only", body = ProblemDoc, content_type = "application/problem+json"),))]
async fn policy_get(State(p): State<Arc<Portal>>, s: Session) -> Result<Response, Problem> {
    let policy = policy_of(&p, &s).await?;
    let ([t, q, r], _) = effective(&p.policy, &policy);
    Ok(axum::Json(PolicyAnswer {
        effective: [("tag", t), ("quarantine", q), ("reject", r)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        default_weights: p.policy.weights.clone(),
        policy,
    })
    .into_response())
}

#[utoipa::path(put, path = "/api/policy", tag = "policy", request_body = PolicyDoc, security(("session" = [])),
    responses(
        (status = 200, description = "replaced; the mail path uses it at once", body = MessageAnswer),
        (status = 400, description = "not a valid policy (unknown symbol, thresholds out of order, …)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "tenant admins only; a policy that lets more through needs a step-up first; CSRF", body = ProblemDoc, content_type = "application/problem+json"),))]
async fn policy_put(
    State(p): State<Arc<Portal>>,
    s: Session,
    JsonBody(new): JsonBody<PolicyDoc>,
) -> Result<Response, Problem> {
    let message = policy_replace(&p, &s, new).await?;
    Ok(axum::Json(MessageAnswer { message }).into_response())
}

/// The tenant's current policy (its overrides).
pub(crate) async fn policy_of(p: &Portal, s: &Session) -> Result<PolicyDoc, Problem> {
    let (_, name) = tenant_admin_of(s)?;
    Ok(p.store
        .filter_policy(&name)
        .await
        .map_err(|_| Problem::internal("the store did not answer"))?
        .into())
}

/// The thresholds in effect under `doc`.
pub(crate) fn thresholds(p: &Portal, doc: &PolicyDoc) -> [f64; 3] {
    effective(&p.policy, doc).0
}

/// Replaces the tenant's policy (validated; loosening needs a stepped-up session).
pub(crate) async fn policy_replace(
    p: &Portal,
    s: &Session,
    new: PolicyDoc,
) -> Result<String, Problem> {
    let (tenant_id, name) = tenant_admin_of(s)?;
    if let Some(e) = policy_error(&p.policy, &new) {
        return Err(Problem::bad_request(e));
    }
    let fail = |_| Problem::internal("the store did not answer");
    let old: PolicyDoc = p.store.filter_policy(&name).await.map_err(fail)?.into();
    if weakens(&p.policy, &old, &new) && !s.stepped_up {
        return Err(Problem::forbidden(
            "this change lets more mail through (a threshold raised, a weight lowered or a protected name removed): confirm with a current code first (POST /api/step-up)",
        ));
    }
    let stored = store::FilterPolicy {
        tag: new.tag,
        quarantine: new.quarantine,
        reject: new.reject,
        weights: new.weights.clone(),
        protected_names: new
            .protected_names
            .iter()
            .map(|n| store::StoredName {
                name: n.name.trim().to_string(),
                addresses: n.addresses.iter().map(|a| a.to_lowercase()).collect(),
            })
            .collect(),
        trusted_arc: new.trusted_arc.iter().map(|d| d.to_lowercase()).collect(),
        quarantine_days: new.quarantine_days,
    };
    p.store
        .set_filter_policy(&name, &stored)
        .await
        .map_err(fail)?;
    record_change(p, s, "set-filter-policy", tenant_id, &name, "").await;
    tracing::info!(tenant = %name, "filter policy replaced from the portal");
    Ok(format!("the filter policy of {name} is replaced"))
}

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
async fn secrets_list(State(p): State<Arc<Portal>>, s: Session) -> Result<Response, Problem> {
    let (tenant_id, _) = tenant_admin_of(&s)?;
    let secrets = p
        .store
        .secret_list(tenant_id)
        .await
        .map_err(|_| Problem::internal("the store did not answer"))?
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
async fn secrets_put(
    State(p): State<Arc<Portal>>,
    s: Session,
    req: axum::extract::Request,
) -> Result<Response, Problem> {
    tenant_admin_of(&s)?;
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
    match p.vault.call(&call, value).await {
        Ok((VaultResponse::Done { summary }, _)) => Ok(summary),
        Ok(_) => Err(Problem::internal("unexpected answer from the vault")),
        Err(CallError::Refused(m)) if m.contains("step-up") || m.contains("admins") => {
            Err(Problem::forbidden(m))
        }
        Err(CallError::Refused(m)) => Err(Problem::bad_request(m)),
        Err(e) => Err(vault_problem(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_scopes_follow_the_route_and_method() {
        let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
        assert_eq!(token_scope(&get, "/api/me"), Some(""));
        assert_eq!(
            token_scope(&get, "/api/quarantine"),
            Some("quarantine:read")
        );
        assert_eq!(
            token_scope(&get, "/api/quarantine/X/view"),
            Some("quarantine:read")
        );
        assert_eq!(
            token_scope(&post, "/api/quarantine/X/release"),
            Some("quarantine:write")
        );
        assert_eq!(
            token_scope(&delete, "/api/quarantine/X"),
            Some("quarantine:write")
        );
        assert_eq!(
            token_scope(&post, "/api/quarantine/X/sender"),
            Some("senders:write")
        );
        assert_eq!(token_scope(&get, "/api/senders"), Some("senders:read"));
        assert_eq!(
            token_scope(&delete, "/api/senders/3"),
            Some("senders:write")
        );
        assert_eq!(token_scope(&get, "/api/stats"), Some("stats:read"));
        assert_eq!(token_scope(&get, "/api/trace"), Some("trace:read"));
        assert_eq!(token_scope(&get, "/api/lockbox"), Some("lockbox:read"));
        assert_eq!(token_scope(&get, "/api/alerts"), Some("alerts:read"));
        // What only people do.
        for (m, p) in [
            (&post, "/api/tokens"),
            (&get, "/api/tokens"),
            (&post, "/api/logout"),
            (&post, "/api/step-up"),
            (&post, "/api/lockbox/1/approve"),
            (&post, "/api/me"),
            (&get, "/api/quarantinex"),
        ] {
            assert_eq!(token_scope(m, p), None, "{m} {p}");
        }
    }
}
