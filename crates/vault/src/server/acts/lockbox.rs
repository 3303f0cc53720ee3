//! Lockbox requests: operators ask for time-limited access to a tenant's content; the
//! tenant's admins decide (`lockbox_decide` in the parent, which seals an approval).

use proto::acts::{LockboxAsk, LockboxRevoke, LockboxView};
use proto::{Refused, Role};
use store::StoreError;

use super::{Caller, Done};
use crate::server::Vault;

fn lockbox_view(lb: store::Lockbox, now: i64) -> LockboxView {
    let state = if lb.state == "approved" && !lb.open_at(now) {
        "expired".to_string()
    } else {
        lb.state
    };
    LockboxView {
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

impl Vault {
    /// The requests a person sees: operators their own, tenant admins their tenant's,
    /// auditors all.
    pub(super) async fn lockbox_list(&self, c: &Caller) -> Done<Vec<LockboxView>> {
        let (tenant, operator) = match (c.user.role, c.tenant()) {
            (Role::Operator, _) => (None, Some(c.user.id)),
            (Role::Auditor, _) => (None, None),
            (Role::TenantAdmin, Some(t)) => (Some(t), None),
            _ => {
                return Err(Refused::forbidden(
                    "lockbox requests are for operators, tenant admins and auditors",
                )
                .into());
            }
        };
        let now = store::unix_now();
        Ok(self
            .store
            .lockbox_list(tenant, operator)
            .await?
            .into_iter()
            .map(|lb| lockbox_view(lb, now))
            .collect())
    }

    /// An operator asks for access to a tenant's content.
    pub(super) async fn lockbox_ask(&self, c: &Caller, a: LockboxAsk) -> Done<LockboxView> {
        if c.user.role != Role::Operator {
            return Err(Refused::forbidden("only operators request lockbox access").into());
        }
        let reason = a.reason.trim();
        if reason.chars().count() < 10 || reason.len() > 500 {
            return Err(Refused::invalid(
                "say why in 10 to 500 characters (the tenant reads it before approving)",
            )
            .into());
        }
        if a.tenant.len() > 200 {
            return Err(Refused::invalid("no such tenant").into());
        }
        let tenant_id = match self.store.tenant_id(&a.tenant).await {
            Ok(t) => t,
            Err(StoreError::NotFound(_)) => {
                return Err(Refused::invalid(format!("no tenant named {:?}", a.tenant)).into());
            }
            Err(e) => return Err(e.into()),
        };
        let now = store::unix_now();
        let lb = self
            .store
            .lockbox_request(tenant_id, c.user.id, &c.user.email, reason, a.minutes, now)
            .await?;
        let why = format!("{} minutes: {reason}", a.minutes);
        self.record_act(
            c,
            "lockbox-request",
            Some(tenant_id),
            &lb.id.to_string(),
            &why,
        )
        .await;
        Ok(lockbox_view(lb, now))
    }

    /// Ends a pending or approved access: the operator who asked, or the tenant's admins.
    pub(super) async fn lockbox_revoke(&self, c: &Caller, a: LockboxRevoke) -> Done<String> {
        let missing = || Refused::not_found(format!("no lockbox request {}", a.id));
        let lb = match self.store.lockbox_get(a.id).await {
            Ok(lb) => lb,
            Err(StoreError::NotFound(_)) => return Err(missing().into()),
            Err(e) => return Err(e.into()),
        };
        let allowed = match c.user.role {
            Role::Operator => lb.operator_id == c.user.id,
            Role::TenantAdmin => c.tenant() == Some(lb.tenant_id),
            _ => false,
        };
        if !allowed {
            return Err(missing().into());
        }
        self.store
            .lockbox_revoke(a.id, &c.principal(), store::unix_now())
            .await?;
        self.record_act(
            c,
            "lockbox-revoke",
            Some(lb.tenant_id),
            &a.id.to_string(),
            "ended early",
        )
        .await;
        Ok(format!("lockbox request {} revoked", a.id))
    }
}
