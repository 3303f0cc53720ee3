//! Tenants, their domains, routes and recipients: operators create tenants and add domains;
//! operators and a tenant's own admins change its route (after a step-up: a route decides
//! where all of its mail goes) and keep its recipient list. The vault checks every rule,
//! records every change and tells the mail path at once.
//!
//! From the portal a route is an `smtp://` URL only: a Maildir route or a CA file names a path
//! on the mail node, which only the local operator (the CLI) may choose.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use proto::TenantId;
use proto::acts::{
    DomainAdd, RecipientAdd, RecipientList as ListRecipients, RecipientPolicySet, RecipientRemove,
    RouteSet, TenantCreate, TenantGet, TenantList as ListTenants, TenantView,
};
use serde::Deserialize;

use super::{JsonBody, MessageAnswer, ProblemDoc};
use crate::Portal;
use crate::problem::Problem;
use crate::session::Session;

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

/// Tenants.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TenantList {
    /// By name.
    pub tenants: Vec<TenantDoc>,
}

/// A new tenant.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Unique name (1-64 printable characters).
    pub name: String,
    /// Its domains (at least one).
    pub domains: Vec<String>,
    /// Where its mail goes: `smtp://host[:port]?tls=none|opportunistic|required[&auth=tenant][&client_cert=tenant]`.
    pub route: String,
}

/// A domain to add.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDomain {
    /// The domain name.
    pub domain: String,
}

/// A tenant's new route.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteDoc {
    /// `smtp://host[:port]?tls=…`.
    pub route: String,
}

/// A recipient to list.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRecipient {
    /// The mailbox (`local@domain`, a domain of the tenant).
    pub address: String,
}

/// How RCPT TO is checked for the tenant.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipientPolicyDoc {
    /// `auto`, `verify` or `catch-all`.
    pub policy: String,
}

/// A tenant's listed recipients.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct RecipientList {
    /// `auto`, `verify` or `catch-all`.
    pub policy: String,
    /// Listed mailboxes, sorted.
    pub recipients: Vec<String>,
}

impl From<TenantView> for TenantDoc {
    fn from(t: TenantView) -> Self {
        Self {
            id: t.id.0,
            name: t.name,
            domains: t.domains,
            route: t.route,
            recipient_policy: t.recipient_policy.to_string(),
            recipients: t.recipients,
            quarantined: t.quarantined,
        }
    }
}

/// The tenants an operator runs (a tenant admin: their own).
pub(crate) async fn tenant_docs(p: &Portal, s: &Session) -> Result<Vec<TenantDoc>, Problem> {
    let list = s.ask(p, ListTenants {}).await?;
    Ok(list.into_iter().map(TenantDoc::from).collect())
}

/// One tenant the user manages.
pub(crate) async fn tenant_doc(p: &Portal, s: &Session, id: i64) -> Result<TenantDoc, Problem> {
    Ok(s.ask(p, TenantGet { id: TenantId(id) }).await?.into())
}

/// Creates a tenant (operators). Returns its id.
pub(crate) async fn create(p: &Portal, s: &Session, t: &NewTenant) -> Result<i64, Problem> {
    let act = TenantCreate {
        name: t.name.clone(),
        domains: t.domains.clone(),
        route: t.route.clone(),
    };
    Ok(s.ask(p, act).await?.id.0)
}

/// Adds a domain to tenant `id` (operators).
pub(crate) async fn add_domain(
    p: &Portal,
    s: &Session,
    id: i64,
    domain: &str,
) -> Result<(), Problem> {
    let act = DomainAdd {
        tenant: TenantId(id),
        domain: domain.to_string(),
    };
    s.ask(p, act).await?;
    Ok(())
}

/// Changes tenant `id`'s route (operators and its admins, after a step-up).
pub(crate) async fn set_route(
    p: &Portal,
    s: &Session,
    id: i64,
    route: &str,
) -> Result<(), Problem> {
    let act = RouteSet {
        tenant: TenantId(id),
        route: route.to_string(),
    };
    s.ask(p, act).await?;
    Ok(())
}

/// Tenant `id`'s recipient policy and listed mailboxes (operators and its admins).
pub(crate) async fn recipients_of(
    p: &Portal,
    s: &Session,
    id: i64,
) -> Result<RecipientList, Problem> {
    let r = s
        .ask(
            p,
            ListRecipients {
                tenant: TenantId(id),
            },
        )
        .await?;
    Ok(RecipientList {
        policy: r.policy.to_string(),
        recipients: r.recipients,
    })
}

/// Lists a mailbox of tenant `id` (operators and its admins). Returns it as stored.
pub(crate) async fn add_recipient(
    p: &Portal,
    s: &Session,
    id: i64,
    address: &str,
) -> Result<String, Problem> {
    let act = RecipientAdd {
        tenant: TenantId(id),
        address: address.to_string(),
    };
    s.ask(p, act).await
}

/// Unlists a mailbox of tenant `id`.
pub(crate) async fn remove_recipient(
    p: &Portal,
    s: &Session,
    id: i64,
    address: &str,
) -> Result<(), Problem> {
    let act = RecipientRemove {
        tenant: TenantId(id),
        address: address.to_string(),
    };
    s.ask(p, act).await?;
    Ok(())
}

/// Sets tenant `id`'s recipient policy (`auto`, `verify`, `catch-all`).
pub(crate) async fn set_recipient_policy(
    p: &Portal,
    s: &Session,
    id: i64,
    policy: &str,
) -> Result<(), Problem> {
    let policy = policy
        .parse()
        .map_err(|e: String| Problem::bad_request(e))?;
    let act = RecipientPolicySet {
        tenant: TenantId(id),
        policy,
    };
    s.ask(p, act).await?;
    Ok(())
}

#[utoipa::path(get, path = "/api/tenants", tag = "operations", security(("session" = [])),
    responses(
        (status = 200, description = "operators: every tenant; tenant admins: their own", body = TenantList),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "end users and auditors", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn tenants(State(p): State<Arc<Portal>>, s: Session) -> Result<Response, Problem> {
    let tenants = tenant_docs(&p, &s).await?;
    Ok(axum::Json(TenantList { tenants }).into_response())
}

#[utoipa::path(post, path = "/api/tenants", tag = "operations", request_body = NewTenant, security(("session" = [])),
    responses(
        (status = 201, description = "created; its mail is accepted from the next directory reload (at once)", body = TenantDoc),
        (status = 400, description = "bad name, domain or route", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "operators only; CSRF", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "the name or a domain is taken", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn tenant_create(
    State(p): State<Arc<Portal>>,
    s: Session,
    JsonBody(t): JsonBody<NewTenant>,
) -> Result<Response, Problem> {
    let id = create(&p, &s, &t).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(tenant_doc(&p, &s, id).await?),
    )
        .into_response())
}

#[utoipa::path(post, path = "/api/tenants/{id}/domains", tag = "operations", request_body = NewDomain, security(("session" = [])),
    params(("id" = i64, Path, description = "tenant id")),
    responses(
        (status = 201, description = "added; mail for it is accepted from the next directory reload (at once)", body = TenantDoc),
        (status = 400, description = "not a domain name", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "operators only; CSRF", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "the domain belongs to a tenant already", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn tenant_domain_add(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<i64>,
    JsonBody(d): JsonBody<NewDomain>,
) -> Result<Response, Problem> {
    add_domain(&p, &s, id, &d.domain).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(tenant_doc(&p, &s, id).await?),
    )
        .into_response())
}

#[utoipa::path(put, path = "/api/tenants/{id}/route", tag = "operations", request_body = RouteDoc, security(("session" = [])),
    params(("id" = i64, Path, description = "tenant id")),
    responses(
        (status = 200, description = "changed; mail is delivered there from the next directory reload (at once)", body = TenantDoc),
        (status = 400, description = "not an smtp:// route the portal may set", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "operators and the tenant's admins, after a step-up; CSRF", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant (or not yours)", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn tenant_route(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<i64>,
    JsonBody(r): JsonBody<RouteDoc>,
) -> Result<Response, Problem> {
    set_route(&p, &s, id, &r.route).await?;
    Ok(axum::Json(tenant_doc(&p, &s, id).await?).into_response())
}

#[utoipa::path(get, path = "/api/tenants/{id}/recipients", tag = "operations", security(("session" = [])),
    params(("id" = i64, Path, description = "tenant id")),
    responses(
        (status = 200, description = "the recipient policy and the listed mailboxes", body = RecipientList),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "operators and the tenant's admins", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant (or not yours)", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn recipients_list(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<i64>,
) -> Result<Response, Problem> {
    Ok(axum::Json(recipients_of(&p, &s, id).await?).into_response())
}

#[utoipa::path(post, path = "/api/tenants/{id}/recipients", tag = "operations", request_body = NewRecipient, security(("session" = [])),
    params(("id" = i64, Path, description = "tenant id")),
    responses(
        (status = 201, description = "listed", body = MessageAnswer),
        (status = 400, description = "not a mailbox of one of the tenant's domains", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "operators and the tenant's admins; CSRF", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant (or not yours)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "listed already", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn recipients_add(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<i64>,
    JsonBody(r): JsonBody<NewRecipient>,
) -> Result<Response, Problem> {
    let address = add_recipient(&p, &s, id, &r.address).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(MessageAnswer {
            message: format!("{address} is listed"),
        }),
    )
        .into_response())
}

#[utoipa::path(delete, path = "/api/tenants/{id}/recipients/{address}", tag = "operations", security(("session" = [])),
    params(("id" = i64, Path, description = "tenant id"), ("address" = String, Path, description = "the listed mailbox")),
    responses(
        (status = 204, description = "no longer listed"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "operators and the tenant's admins; CSRF", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant, or the mailbox is not listed for it", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn recipients_remove(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path((id, address)): Path<(i64, String)>,
) -> Result<Response, Problem> {
    remove_recipient(&p, &s, id, &address).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(put, path = "/api/tenants/{id}/recipient-policy", tag = "operations", request_body = RecipientPolicyDoc, security(("session" = [])),
    params(("id" = i64, Path, description = "tenant id")),
    responses(
        (status = 200, description = "changed", body = TenantDoc),
        (status = 400, description = "not auto, verify or catch-all", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "operators and the tenant's admins; CSRF", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "no such tenant (or not yours)", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn recipient_policy(
    State(p): State<Arc<Portal>>,
    s: Session,
    Path(id): Path<i64>,
    JsonBody(r): JsonBody<RecipientPolicyDoc>,
) -> Result<Response, Problem> {
    set_recipient_policy(&p, &s, id, &r.policy).await?;
    Ok(axum::Json(tenant_doc(&p, &s, id).await?).into_response())
}
