//! Tenants, their domains, routes and recipients: operators create tenants and add domains;
//! operators and a tenant's own admins change its route (after a step-up: a route decides
//! where all of its mail goes) and keep its recipient list. Every change is recorded and
//! reaches the mail path at once.
//!
//! From the portal a route is an `smtp://` URL only: a Maildir route or a CA file names a path
//! on the mail node, which only the local operator (the CLI) may choose.

use proto::acts::{
    DomainAdd, RecipientAdd, RecipientList, RecipientPolicySet, RecipientRemove, Recipients,
    RouteSet, SecretInfo, TenantCreate, TenantGet, TenantView,
};
use proto::route::Route;
use proto::{Refused, Role, TenantId};

use super::{Caller, Done};
use crate::server::Vault;

/// Most domains a tenant is created with at once.
const MAX_DOMAINS: usize = 100;

fn tenant_view(t: store::Tenant, quarantined: i64) -> TenantView {
    TenantView {
        id: TenantId(t.id),
        name: t.name,
        domains: t.domains,
        route: t.route,
        recipient_policy: t.recipient_policy,
        recipients: t.recipients,
        quarantined,
    }
}

impl Vault {
    /// Tenant `id` if the caller may manage it: operators any, tenant admins their own. Any
    /// other tenant does not exist for them ("not found", whatever the id).
    async fn managed(&self, c: &Caller, id: TenantId) -> Done<store::Tenant> {
        let allowed = match (c.user.role, c.user.tenant_id) {
            (Role::Operator, _) => true,
            (Role::TenantAdmin, Some(own)) => own == id,
            _ => {
                return Err(
                    Refused::forbidden("tenants are for operators and tenant admins").into(),
                );
            }
        };
        let missing = || Refused::not_found(format!("no tenant {id}"));
        if !allowed {
            return Err(missing().into());
        }
        Ok(self.store.tenant(id.0).await?.ok_or_else(missing)?)
    }

    async fn tenant_answer(&self, id: TenantId) -> Done<TenantView> {
        let t = self
            .store
            .tenant(id.0)
            .await?
            .ok_or_else(|| Refused::not_found(format!("no tenant {id}")))?;
        let quarantined = self
            .store
            .quarantine_counts()
            .await?
            .get(&id.0)
            .copied()
            .unwrap_or(0);
        Ok(tenant_view(t, quarantined))
    }

    pub(super) async fn tenant_list(&self, c: &Caller) -> Done<Vec<TenantView>> {
        let only = c.admin_scope("tenants are for operators and tenant admins")?;
        let mut list = self.store.list_tenants().await?;
        list.sort_by(|a, b| a.name.cmp(&b.name));
        let counts = self.store.quarantine_counts().await?;
        Ok(list
            .into_iter()
            .filter(|t| only.is_none_or(|o| o == t.id))
            .map(|t| {
                let q = counts.get(&t.id).copied().unwrap_or(0);
                tenant_view(t, q)
            })
            .collect())
    }

    pub(super) async fn tenant_get(&self, c: &Caller, a: TenantGet) -> Done<TenantView> {
        self.managed(c, a.id).await?;
        self.tenant_answer(a.id).await
    }

    pub(super) async fn tenant_create(&self, c: &Caller, a: TenantCreate) -> Done<TenantView> {
        c.operator_only("creating tenants")?;
        let route = Route::for_portal(&a.route).map_err(Refused::invalid)?;
        if a.domains.len() > MAX_DOMAINS {
            return Err(Refused::invalid(format!("at most {MAX_DOMAINS} domains at once")).into());
        }
        let name = a.name.trim();
        let id = self.store.add_tenant(name, &a.domains, &route).await?;
        self.record_act(c, "tenant-add", Some(id), name, &route)
            .await;
        self.reload_mail_path().await;
        self.tenant_answer(TenantId(id)).await
    }

    pub(super) async fn domain_add(&self, c: &Caller, a: DomainAdd) -> Done<TenantView> {
        c.operator_only("adding domains")?;
        let t = self.managed(c, a.tenant).await?;
        self.store.add_domain(&t.name, &a.domain).await?;
        self.record_act(c, "domain-add", Some(t.id), a.domain.trim(), "")
            .await;
        self.reload_mail_path().await;
        self.tenant_answer(a.tenant).await
    }

    pub(super) async fn route_set(&self, c: &Caller, a: RouteSet) -> Done<TenantView> {
        let t = self.managed(c, a.tenant).await?;
        let route = Route::for_portal(&a.route).map_err(Refused::invalid)?;
        if !c.stepped_up {
            return Err(Refused::step_up(
                "a route decides where all of the tenant's mail goes: confirm with a current code first (POST /api/step-up)",
            )
            .into());
        }
        self.store.set_route(&t.name, &route).await?;
        self.record_act(
            c,
            "set-route",
            Some(t.id),
            &route,
            &format!("was {}", t.route),
        )
        .await;
        self.reload_mail_path().await;
        self.tenant_answer(a.tenant).await
    }

    pub(super) async fn recipient_list(&self, c: &Caller, a: RecipientList) -> Done<Recipients> {
        let t = self.managed(c, a.tenant).await?;
        let recipients = self
            .store
            .list_recipients(Some(&t.name))
            .await?
            .into_iter()
            .map(|(address, _)| address)
            .collect();
        Ok(Recipients {
            policy: t.recipient_policy,
            recipients,
        })
    }

    pub(super) async fn recipient_add(&self, c: &Caller, a: RecipientAdd) -> Done<String> {
        let t = self.managed(c, a.tenant).await?;
        let address = a.address.trim().to_lowercase();
        let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        if !t.domains.iter().any(|d| d == domain) {
            return Err(Refused::invalid(format!(
                "{address:?} is not a mailbox of {}'s domains ({})",
                t.name,
                t.domains.join(", ")
            ))
            .into());
        }
        self.store.add_recipient(&address).await?;
        self.record_act(c, "recipient-add", Some(t.id), &address, "")
            .await;
        self.reload_mail_path().await;
        Ok(address)
    }

    pub(super) async fn recipient_remove(&self, c: &Caller, a: RecipientRemove) -> Done<String> {
        let t = self.managed(c, a.tenant).await?;
        let address = a.address.trim().to_lowercase();
        self.store.remove_recipient(&address, Some(t.id)).await?;
        self.record_act(c, "recipient-remove", Some(t.id), &address, "")
            .await;
        self.reload_mail_path().await;
        Ok(format!("{address} is no longer listed"))
    }

    pub(super) async fn recipient_policy_set(
        &self,
        c: &Caller,
        a: RecipientPolicySet,
    ) -> Done<TenantView> {
        let t = self.managed(c, a.tenant).await?;
        self.store.set_recipient_policy(&t.name, a.policy).await?;
        self.record_act(c, "set-recipient-policy", Some(t.id), a.policy.as_str(), "")
            .await;
        self.reload_mail_path().await;
        self.tenant_answer(a.tenant).await
    }

    /// Which connector secrets the tenant admin's tenant has sealed (never their values).
    pub(super) async fn secret_list(&self, c: &Caller) -> Done<Vec<SecretInfo>> {
        let (tenant, _) = super::policy::tenant_admin_of(c)?;
        Ok(self
            .store
            .secret_list(tenant)
            .await?
            .into_iter()
            .map(|x| SecretInfo {
                kind: x.kind,
                updated_at: x.updated_at,
            })
            .collect())
    }
}
