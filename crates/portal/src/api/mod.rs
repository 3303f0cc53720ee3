//! The JSON API: one file per resource, each a thin face over the vault's acts (the web UI
//! in [`crate::web`] is the other face over the same functions). Who the caller is comes
//! from [`Session`] (the vault resolves it; the CSRF token is checked on every
//! state-changing method); what they may see or change the vault decides per act, so
//! handlers never look at a tenant id themselves.
//!
//! Every route is registered through `utoipa_axum::routes!`, which adds its OpenAPI entry at
//! the same time: the document cannot drift from the router.

pub mod accounts;
pub mod alerts;
pub mod body;
pub mod health;
#[cfg(feature = "test-hooks")]
mod hooks;
pub mod lockbox;
pub mod policy;
pub mod quarantine;
pub mod secrets;
pub mod senders;
pub mod stats;
pub mod tenants;
pub mod tokens;
pub mod trace;
pub mod users;

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use proto::acts::QuarantineItem;
use proto::vault::SessionUser;

pub use body::JsonBody;

// The acts both faces use (the web UI calls these, like the JSON handlers do).
pub(crate) use crate::problem::vault_problem;
pub(crate) use crate::session::{resolve_session, session_cookie};
pub(crate) use accounts::{login_with, step_up_with};
pub(crate) use alerts::{ExportQuery, alert_list, export_for};
pub(crate) use health::health_of;
pub(crate) use lockbox::{lockbox_ask, lockbox_decision, lockbox_end, lockbox_requests};
pub(crate) use policy::{policy_of, policy_replace};
pub(crate) use quarantine::{
    delete_item, list_items, may_open_now, release_item, view_item, visible_item,
};
pub(crate) use secrets::secret_seal;
pub(crate) use senders::{item_sender, sender_entries, sender_put, sender_remove};
pub(crate) use stats::{stats_for, tls_outcomes_for};
pub(crate) use tenants::tenant_docs;
pub(crate) use trace::{TraceQuery, trace_for};
pub(crate) use users::invite_with;

use crate::Portal;
use crate::problem::Problem;
pub use crate::session::{COOKIE, CSRF_HEADER, Session};

/// Most items one list answer holds.
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
        .routes(routes!(accounts::enrol_start))
        .routes(routes!(accounts::enrol_confirm))
        .routes(routes!(accounts::login))
        .routes(routes!(accounts::logout))
        .routes(routes!(accounts::me))
        .routes(routes!(accounts::step_up))
        .routes(routes!(crate::passkeys::login_begin))
        .routes(routes!(crate::passkeys::login_finish))
        .routes(routes!(crate::passkeys::list))
        .routes(routes!(crate::passkeys::remove))
        .routes(routes!(crate::passkeys::register_begin))
        .routes(routes!(crate::passkeys::register_finish))
        .routes(routes!(crate::passkeys::step_up_begin))
        .routes(routes!(crate::passkeys::step_up_finish))
        .routes(routes!(tokens::tokens_list, tokens::tokens_create))
        .routes(routes!(tokens::tokens_revoke))
        .routes(routes!(alerts::alerts))
        .routes(routes!(alerts::audit_export))
        .routes(routes!(tenants::tenants, tenants::tenant_create))
        .routes(routes!(tenants::tenant_domain_add))
        .routes(routes!(tenants::tenant_route))
        .routes(routes!(tenants::recipients_list, tenants::recipients_add))
        .routes(routes!(tenants::recipients_remove))
        .routes(routes!(tenants::recipient_policy))
        .routes(routes!(users::users_list, users::users_invite))
        .routes(routes!(policy::policy_get, policy::policy_put))
        .routes(routes!(secrets::secrets_list, secrets::secrets_put))
        .routes(routes!(health::health))
        .routes(routes!(quarantine::quarantine_list))
        .routes(routes!(
            quarantine::quarantine_show,
            quarantine::quarantine_delete
        ))
        .routes(routes!(quarantine::quarantine_release))
        .routes(routes!(quarantine::quarantine_view))
        .routes(routes!(stats::stats))
        .routes(routes!(stats::tls_outcomes))
        .routes(routes!(trace::trace))
        .routes(routes!(lockbox::lockbox_list, lockbox::lockbox_request))
        .routes(routes!(lockbox::lockbox_approve))
        .routes(routes!(lockbox::lockbox_deny))
        .routes(routes!(lockbox::lockbox_revoke))
        .routes(routes!(senders::senders_list, senders::senders_add))
        .routes(routes!(senders::senders_remove))
        .routes(routes!(senders::quarantine_sender))
        .split_for_parts()
}

/// The routes, behind the front door.
pub fn router(portal: Arc<Portal>) -> Router {
    let (api, doc) = api_routes();
    let doc: Arc<str> = doc
        .to_json()
        .expect("the OpenAPI document serialises")
        .into();
    let r = Router::new();
    #[cfg(feature = "test-hooks")]
    let r = hooks::routes(r);
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
            role: u.role.to_string(),
            tenant_id: u.tenant_id.map(|t| t.0),
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
    /// The login name to log in with.
    pub login: String,
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

impl From<&QuarantineItem> for ItemDoc {
    fn from(q: &QuarantineItem) -> Self {
        Self {
            id: q.id.to_string(),
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
