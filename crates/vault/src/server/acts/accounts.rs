//! Portal accounts as listed to operators (all) and tenant admins (their tenant's); never a
//! password or a second factor. Invitations are `invite_by` in the parent.

use proto::acts::Account;

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
}
