//! What the store says of the cluster's health (operators): every node's last heartbeat,
//! and the open alerts.

use proto::acts::{HealthView, NodeView};
use proto::{AlertState, Role};

use super::{Caller, Done};
use crate::server::Vault;

impl Vault {
    pub(super) async fn health(&self, c: &Caller) -> Done<HealthView> {
        if c.user.role != Role::Operator {
            return Err(proto::Refused::forbidden("system health is for operators").into());
        }
        let now = store::unix_now();
        let open_alerts = self.store.alerts(Some(AlertState::Open)).await?.len() as i64;
        let nodes = self
            .store
            .nodes()
            .await?
            .into_iter()
            .map(|n| NodeView {
                status: n.status(now).to_string(),
                seen_seconds_ago: now - n.last_seen,
                name: n.name,
                version: n.version,
                smtp: n.smtp,
                active: n.active,
                deferred: n.deferred,
                hold: n.hold,
            })
            .collect();
        let queue = match &self.mx {
            Some(mx) => mx
                .ask(proto::mx::QueueSummary {
                    token: self.mx_token.clone(),
                })
                .await
                .ok(),
            None => None,
        };
        Ok(HealthView {
            nodes,
            open_alerts,
            queue,
        })
    }
}
