//! Tenants, their domains, routes and recipients through the API: operators create tenants and
//! add domains; operators and a tenant's own admins change its route (after a step-up: a
//! route decides where all of its mail goes) and keep its recipient list. Every change is an
//! audit record and reaches the mail path with the next directory reload (asked at once).
//!
//! From the portal a route is an `smtp://` URL only: a Maildir route or a CA file names a
//! path the mail node would write or read, which only the local operator (the CLI) may choose.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::Portal;
use crate::api::{JsonBody, MessageAnswer, ProblemDoc, Session, TenantDoc, ask_reload, record_act};
use crate::problem::Problem;

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

/// Lists a mailbox of tenant `id` (operators and its admins). Returns it as stored.
pub(crate) async fn add_recipient(
    p: &Portal,
    s: &Session,
    id: i64,
    address: &str,
) -> Result<String, Problem> {
    let t = managed(p, s, id).await?;
    let address = address.trim().to_lowercase();
    let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    if !t.domains.iter().any(|d| d == domain) {
        return Err(Problem::bad_request(format!(
            "{address:?} is not a mailbox of {}'s domains ({})",
            t.name,
            t.domains.join(", ")
        )));
    }
    p.store
        .add_recipient(&address)
        .await
        .map_err(store_problem)?;
    record_act(p, s, "recipient-add", Some(id), &address, "").await;
    ask_reload(p).await;
    Ok(address)
}

/// Unlists a mailbox of tenant `id`.
pub(crate) async fn remove_recipient(
    p: &Portal,
    s: &Session,
    id: i64,
    address: &str,
) -> Result<(), Problem> {
    let t = managed(p, s, id).await?;
    let address = address.trim().to_lowercase();
    p.store
        .remove_recipient(&address, Some(t.id))
        .await
        .map_err(store_problem)?;
    record_act(p, s, "recipient-remove", Some(id), &address, "").await;
    ask_reload(p).await;
    Ok(())
}

/// Sets tenant `id`'s recipient policy (`auto`, `verify`, `catch-all`).
pub(crate) async fn set_recipient_policy(
    p: &Portal,
    s: &Session,
    id: i64,
    policy: &str,
) -> Result<(), Problem> {
    let t = managed(p, s, id).await?;
    let policy: store::RecipientPolicy = policy.parse().map_err(store_problem)?;
    p.store
        .set_recipient_policy(&t.name, policy)
        .await
        .map_err(store_problem)?;
    record_act(p, s, "set-recipient-policy", Some(id), policy.as_str(), "").await;
    ask_reload(p).await;
    Ok(())
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

const MAX_DOMAINS: usize = 100;

fn store_problem(e: store::StoreError) -> Problem {
    match e {
        store::StoreError::Invalid(m) => Problem::bad_request(m),
        store::StoreError::Conflict(m) => Problem::new(StatusCode::CONFLICT, "Conflict", m),
        store::StoreError::NotFound(m) => Problem::not_found(m),
        _ => Problem::internal("the store did not answer"),
    }
}

/// A route the portal may set: a valid `smtp://` route without a CA file.
pub fn portal_route(route: &str) -> Result<String, Problem> {
    let route = route.trim();
    match route.parse::<egress::Route>() {
        Ok(egress::Route::Smtp(r)) if r.ca.is_none() => Ok(route.to_string()),
        Ok(egress::Route::Smtp(_)) => Err(Problem::bad_request(
            "a CA file names a path on the mail node: set it with the CLI (sekisho tenant set-route)",
        )),
        Ok(_) => Err(Problem::bad_request(
            "the portal sets smtp:// routes only (a Maildir route is a local path: use the CLI)",
        )),
        Err(e) => Err(Problem::bad_request(format!(
            "not a route: {} (smtp://host[:port]?tls=none|opportunistic|required[&auth=tenant][&client_cert=tenant])",
            e.reason
        ))),
    }
}

/// The tenant `id` if the caller may manage it: operators any, tenant admins their own. Any
/// other tenant does not exist for them (404, whatever the id).
async fn managed(p: &Portal, s: &Session, id: i64) -> Result<store::Tenant, Problem> {
    let allowed = match (s.user.role.as_str(), s.user.tenant_id) {
        ("operator", _) => true,
        ("tenant-admin", Some(own)) => own == id,
        _ => {
            return Err(Problem::forbidden(
                "tenants are for operators and tenant admins",
            ));
        }
    };
    let missing = || Problem::not_found(format!("no tenant {id}"));
    if !allowed {
        return Err(missing());
    }
    p.store
        .tenant(id)
        .await
        .map_err(store_problem)?
        .ok_or_else(missing)
}

fn operator_only(s: &Session, what: &str) -> Result<(), Problem> {
    if s.user.role == "operator" {
        Ok(())
    } else {
        Err(Problem::forbidden(format!("{what} is for operators")))
    }
}

async fn tenant_doc(p: &Portal, id: i64) -> Result<TenantDoc, Problem> {
    let t = p
        .store
        .tenant(id)
        .await
        .map_err(store_problem)?
        .ok_or_else(|| Problem::not_found(format!("no tenant {id}")))?;
    let quarantined = p
        .store
        .quarantine_counts()
        .await
        .map_err(store_problem)?
        .get(&id)
        .copied()
        .unwrap_or(0);
    Ok(TenantDoc::of(t, quarantined))
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
    Ok((StatusCode::CREATED, axum::Json(tenant_doc(&p, id).await?)).into_response())
}

/// Creates a tenant (operators). Returns its id.
pub(crate) async fn create(p: &Portal, s: &Session, t: &NewTenant) -> Result<i64, Problem> {
    operator_only(s, "creating tenants")?;
    let route = portal_route(&t.route)?;
    if t.domains.len() > MAX_DOMAINS {
        return Err(Problem::bad_request(format!(
            "at most {MAX_DOMAINS} domains at once"
        )));
    }
    let name = t.name.trim();
    let id = p
        .store
        .add_tenant(name, &t.domains, &route)
        .await
        .map_err(store_problem)?;
    record_act(p, s, "tenant-add", Some(id), name, &route).await;
    ask_reload(p).await;
    Ok(id)
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
    Ok((StatusCode::CREATED, axum::Json(tenant_doc(&p, id).await?)).into_response())
}

/// Adds a domain to tenant `id` (operators).
pub(crate) async fn add_domain(
    p: &Portal,
    s: &Session,
    id: i64,
    domain: &str,
) -> Result<(), Problem> {
    operator_only(s, "adding domains")?;
    let t = managed(p, s, id).await?;
    p.store
        .add_domain(&t.name, domain)
        .await
        .map_err(store_problem)?;
    record_act(p, s, "domain-add", Some(id), domain.trim(), "").await;
    ask_reload(p).await;
    Ok(())
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
    Ok(axum::Json(tenant_doc(&p, id).await?).into_response())
}

/// Changes tenant `id`'s route (operators and its admins, after a step-up).
pub(crate) async fn set_route(
    p: &Portal,
    s: &Session,
    id: i64,
    route: &str,
) -> Result<(), Problem> {
    let t = managed(p, s, id).await?;
    let route = portal_route(route)?;
    if !s.stepped_up {
        return Err(Problem::forbidden(
            "a route decides where all of the tenant's mail goes: confirm with a current code first (POST /api/step-up)",
        ));
    }
    p.store
        .set_route(&t.name, &route)
        .await
        .map_err(store_problem)?;
    record_act(
        p,
        s,
        "set-route",
        Some(id),
        &route,
        &format!("was {}", t.route),
    )
    .await;
    ask_reload(p).await;
    Ok(())
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

/// Tenant `id`'s recipient policy and listed mailboxes (operators and its admins).
pub(crate) async fn recipients_of(
    p: &Portal,
    s: &Session,
    id: i64,
) -> Result<RecipientList, Problem> {
    let t = managed(p, s, id).await?;
    let recipients = p
        .store
        .list_recipients(Some(&t.name))
        .await
        .map_err(store_problem)?
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    Ok(RecipientList {
        policy: t.recipient_policy.as_str().to_string(),
        recipients,
    })
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
    Ok(axum::Json(tenant_doc(&p, id).await?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_portal_sets_smtp_routes_without_local_paths() {
        assert!(portal_route("smtp://mx.example.net:25?tls=required&auth=tenant").is_ok());
        assert!(portal_route(" smtp://[2001:db8::1]:587?tls=opportunistic ").is_ok());
        for bad in [
            "maildir:///etc/cron.d",
            "smtp://mx.example.net?tls=required&ca=/etc/sekisho/vault/kek",
            "smtp://mx.example.net?auth=tenant",
            "http://mx.example.net",
            "smtp://",
            "not a url",
        ] {
            assert!(portal_route(bad).is_err(), "{bad}");
        }
    }
}
