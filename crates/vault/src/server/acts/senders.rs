//! Sender lists ("always allow", "always block"): who may change which list.

use proto::acts::{SenderAdd, SenderRemove, SenderView};
use proto::{Refused, Role, SenderAction, SenderScope};
use store::StoreError;

use super::{Caller, Done};
use crate::server::Vault;

/// The tenant and recipient a person's entries of `scope` live under: end users their own
/// mailbox, tenant admins also the whole tenant. The one place that decides who may change
/// which list.
fn sender_scope(c: &Caller, scope: SenderScope) -> Result<(i64, String), Refused> {
    let tenant = match (c.user.role, c.tenant()) {
        (Role::User | Role::TenantAdmin, Some(t)) => t,
        _ => {
            return Err(Refused::forbidden(
                "sender lists belong to a tenant's admins and users",
            ));
        }
    };
    match (scope, c.user.role) {
        (SenderScope::Me, _) => Ok((tenant, c.user.email.to_lowercase())),
        (SenderScope::Tenant, Role::TenantAdmin) => Ok((tenant, String::new())),
        (SenderScope::Tenant, _) => Err(Refused::forbidden(
            "only tenant admins change the tenant's list; use scope \"me\" for your own",
        )),
    }
}

/// Whether the person sees (and whether they may remove) an entry.
fn sender_rights(c: &Caller, e: &store::SenderEntry) -> (bool, bool) {
    if c.tenant() != Some(e.tenant_id) {
        return (false, false);
    }
    let own = e.rcpt == c.user.email.to_lowercase();
    match c.user.role {
        Role::TenantAdmin => (true, true),
        Role::User => (own || e.rcpt.is_empty(), own),
        _ => (false, false),
    }
}

fn sender_view(c: &Caller, e: store::SenderEntry) -> SenderView {
    let scope = if e.rcpt.is_empty() {
        "tenant"
    } else if e.rcpt == c.user.email.to_lowercase() {
        "me"
    } else {
        "recipient"
    };
    SenderView {
        id: e.id,
        scope: scope.into(),
        removable: sender_rights(c, &e).1,
        rcpt: e.rcpt,
        pattern: e.pattern,
        action: e.action,
        added_by: e.added_by,
        added_at: e.added_at,
    }
}

impl Vault {
    pub(super) async fn sender_list(&self, c: &Caller) -> Done<Vec<SenderView>> {
        let (tenant, _) = sender_scope(c, SenderScope::Me)?;
        Ok(self
            .store
            .sender_lists(tenant)
            .await?
            .into_iter()
            .filter(|e| sender_rights(c, e).0)
            .map(|e| sender_view(c, e))
            .collect())
    }

    pub(super) async fn sender_add(&self, c: &Caller, a: SenderAdd) -> Done<SenderView> {
        self.sender_put(c, a.scope, &a.pattern, a.action).await
    }

    /// Adds an entry under `scope`, recorded in the audit log.
    pub(super) async fn sender_put(
        &self,
        c: &Caller,
        scope: SenderScope,
        pattern: &str,
        action: SenderAction,
    ) -> Done<SenderView> {
        let (tenant, rcpt) = sender_scope(c, scope)?;
        let pattern = store::sender_pattern(pattern).map_err(Refused::invalid)?;
        let e = self
            .store
            .sender_list_put(
                tenant,
                &rcpt,
                &pattern,
                action,
                &c.principal(),
                store::unix_now(),
            )
            .await?;
        self.sender_changed(c, &format!("sender-{action}"), tenant, &pattern, &rcpt)
            .await;
        Ok(sender_view(c, e))
    }

    pub(super) async fn sender_remove(&self, c: &Caller, a: SenderRemove) -> Done<String> {
        let missing = || Refused::not_found(format!("no sender entry {}", a.id));
        let e = match self.store.sender_entry(a.id).await {
            Ok(e) => e,
            Err(StoreError::NotFound(_)) => return Err(missing().into()),
            Err(e) => return Err(e.into()),
        };
        match sender_rights(c, &e) {
            (true, true) => {}
            (true, false) => {
                return Err(
                    Refused::forbidden("the tenant's entries are changed by its admins").into(),
                );
            }
            _ => return Err(missing().into()),
        }
        self.store.sender_list_remove(a.id).await?;
        self.sender_changed(c, "sender-remove", e.tenant_id, &e.pattern, &e.rcpt)
            .await;
        Ok(format!("sender entry {} removed", a.id))
    }

    /// A list change: recorded, and the mail path told at once.
    async fn sender_changed(
        &self,
        c: &Caller,
        action: &str,
        tenant: i64,
        object: &str,
        rcpt: &str,
    ) {
        self.reload_mail_path().await;
        let reason = if rcpt.is_empty() {
            "for the whole tenant".to_string()
        } else {
            format!("for {rcpt}")
        };
        self.record_act(c, action, Some(tenant), object, &reason)
            .await;
    }
}
