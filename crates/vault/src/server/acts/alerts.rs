//! Detection alerts, read by operators and auditors.

use proto::acts::{AlertList, AlertView};
use proto::{Refused, Role, TenantId};

use super::{Caller, Done};
use crate::server::Vault;

/// Most alerts one answer holds.
const MAX_ALERTS: usize = 500;

impl Vault {
    pub(super) async fn alert_list(&self, c: &Caller, a: AlertList) -> Done<Vec<AlertView>> {
        if !matches!(c.user.role, Role::Operator | Role::Auditor) {
            return Err(Refused::forbidden("alerts are read by operators and auditors").into());
        }
        Ok(self
            .store
            .alerts(a.state)
            .await?
            .into_iter()
            .take(MAX_ALERTS)
            .map(|a| AlertView {
                id: a.id,
                rule: a.rule,
                severity: a.severity,
                principal: a.principal,
                tenant_id: a.tenant_id.map(TenantId),
                summary: a.summary,
                first_at: a.first_at,
                last_at: a.last_at,
                count: a.count,
                state: a.state,
            })
            .collect())
    }
}
