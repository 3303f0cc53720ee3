//! Portal accounts as listed to operators (all) and tenant admins (their tenant's); never a
//! password or a second factor; and the invitations not yet taken up (never their links).
//! Invitations are made by `invite_by` in the parent.

use proto::acts::{Account, Invitation};

use super::{Caller, Done};
use crate::server::Vault;

impl Vault {
    pub(super) async fn account_list(&self, c: &Caller) -> Done<Vec<Account>> {
        let tenant = c.admin_scope("accounts are listed for operators and tenant admins")?;
        Ok(self
            .store
            .user_list(tenant)
            .await?
            .into_iter()
            .map(|u| Account {
                id: u.id,
                email: u.email,
                role: u.role,
                tenant: u.tenant,
                active: u.active,
                locked_until: u.locked_until,
                created_at: u.created_at,
            })
            .collect())
    }

    /// Invitations not yet taken up, in the caller's scope.
    pub(super) async fn invitation_list(&self, c: &Caller) -> Done<Vec<Invitation>> {
        let tenant = c.admin_scope("invitations are listed for operators and tenant admins")?;
        Ok(self
            .store
            .invitations_pending(tenant, store::unix_now())
            .await?
            .into_iter()
            .map(|i| Invitation {
                email: i.email,
                role: i.role,
                tenant: i.tenant,
                invited_by: i.invited_by,
                expires_at: i.expires_at,
            })
            .collect())
    }
}
