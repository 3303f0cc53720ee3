//! Quarantined mail's metadata: which items a person sees, and "always allow / block" from one.

use proto::acts::{
    QuarantineDelete, QuarantineGet, QuarantineItem, QuarantineList, QuarantineRelease,
    QuarantineSender, SenderView,
};
use proto::vault::Response;
use proto::vault::SessionUser;
use proto::{QueueId, Refused, Role, SenderScope, TenantId};
use store::StoreError;

use super::{Caller, Done, MAX_LIST};
use crate::server::{Vault, may_open};

/// The one rule of which quarantine items (metadata) a person sees: operators every
/// tenant's (metadata only — content needs a lockbox), tenant admins their tenant's, end
/// users the items addressed to them, auditors none.
pub fn visible(user: &SessionUser, item: &store::QuarantineItem) -> bool {
    user.role == Role::Operator || may_open(user, item.tenant_id, &item.rcpts)
}

/// What crosses to the portal of a stored item (not its blob key or seal); `None` for a row
/// whose id is not a queue id (none is ever stored: ids are made by the spool).
pub fn item_view(i: store::QuarantineItem) -> Option<QuarantineItem> {
    Some(QuarantineItem {
        id: i.id.parse().ok()?,
        tenant_id: TenantId(i.tenant_id),
        tenant: i.tenant,
        mail_from: i.mail_from,
        rcpts: i.rcpts,
        size: i.size,
        received_at: i.received_at,
        expires_at: i.expires_at,
        verdict: i.verdict,
        score: i.score,
        symbols: i.symbols,
    })
}

impl Vault {
    pub(super) async fn quarantine_list(
        &self,
        c: &Caller,
        a: QuarantineList,
    ) -> Done<Vec<QuarantineItem>> {
        if !(1..=MAX_LIST).contains(&a.limit) {
            return Err(Refused::invalid(format!("limit must be 1 to {MAX_LIST}")).into());
        }
        // Narrow in the query where the role allows it; `visible` has the last word.
        let tenant = match c.user.role {
            Role::Operator => None,
            _ => Some(c.tenant().ok_or_else(|| {
                Refused::forbidden("this role has no quarantine (auditors read audit and alerts)")
            })?),
        };
        let items = self.store.quarantine_list(tenant, a.limit).await?;
        Ok(items
            .into_iter()
            .filter(|i| visible(&c.user, i))
            .filter_map(item_view)
            .collect())
    }

    pub(super) async fn quarantine_get(
        &self,
        c: &Caller,
        a: QuarantineGet,
    ) -> Done<QuarantineItem> {
        let item = self.visible_item(c, &a.id).await?;
        item_view(item)
            .ok_or_else(|| Refused::not_found(format!("no quarantined message {}", a.id)).into())
    }

    /// The item, if it exists and the caller may see it (else "not found" either way: another
    /// tenant's ids are not confirmed to exist).
    pub(super) async fn visible_item(
        &self,
        c: &Caller,
        id: &QueueId,
    ) -> Done<store::QuarantineItem> {
        match self.store.quarantine_get(id.as_str()).await {
            Ok(item) if visible(&c.user, &item) => Ok(item),
            Ok(_) | Err(StoreError::NotFound(_)) => {
                Err(Refused::not_found(format!("no quarantined message {id}")).into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Releases an item the person sees: mx asks this vault to open it with the same
    /// session, where the content rules (lockbox, malware step-up, throttle) apply.
    pub(super) async fn quarantine_release(
        &self,
        c: &Caller,
        a: QuarantineRelease,
    ) -> Done<String> {
        self.visible_item(c, &a.id).await?;
        self.release_through_mx(&a.id, &c.principal(), &c.session)
            .await
    }

    /// Deletes an item the person sees and may open.
    pub(super) async fn quarantine_delete(&self, c: &Caller, a: QuarantineDelete) -> Done<String> {
        self.visible_item(c, &a.id).await?;
        match self
            .delete_quarantine(a.id.as_str(), &c.principal(), Some(&c.session))
            .await
        {
            (Response::Done { summary }, _) => Ok(summary),
            (Response::Refused { refusal, message }, _) => {
                Err(Refused::new(refusal, message).into())
            }
            (other, _) => Err(super::Fail::Internal(format!(
                "unexpected answer {}",
                other.kind()
            ))),
        }
    }

    pub(super) async fn quarantine_sender(
        &self,
        c: &Caller,
        a: QuarantineSender,
    ) -> Done<SenderView> {
        let item = self.visible_item(c, &a.id).await?;
        if item.mail_from.is_empty() {
            return Err(Refused::invalid(
                "the message has no sender (a bounce); nothing to allow or block",
            )
            .into());
        }
        let scope = if c.user.role == Role::TenantAdmin {
            SenderScope::Tenant
        } else {
            SenderScope::Me
        };
        self.sender_put(c, scope, &item.mail_from, a.action).await
    }
}
