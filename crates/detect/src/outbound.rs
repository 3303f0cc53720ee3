//! Outbound relay: which networks a tenant's own mail servers send from (`sekisho outbound
//! add-network …`), and the **outbound-burst** rule that watches what they send. A taken-over
//! account that starts sending spam through its organisation's server is noticed within one
//! burst: more than `[detect] outbound_burst_threshold` recipients from one sender within
//! `outbound_burst_window` raise a critical `outbound-burst` alert and hold that sender on
//! every node (`451 4.7.1`: its server keeps the mail and retries) for `outbound_hold` or
//! until an administrator runs `sekisho outbound release`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use store::{MailStore, OUTBOUND, outbound_scope, unix_now_ms};
use wire::Reply;

/// The outbound-burst rule (`[detect] outbound_burst_*`, `outbound_hold`).
#[derive(Debug, Clone, Copy)]
pub struct BurstRule {
    /// More recipients than this from one sender within `window` is a burst.
    pub threshold: usize,
    /// The window.
    pub window: Duration,
    /// How long a bursting sender is held (unless released earlier).
    pub hold: Duration,
}

/// Counts outbound recipients per sender in the store (so every node adds to one count) and
/// holds bursting senders.
pub struct Guard {
    store: MailStore,
    rule: BurstRule,
}

impl Guard {
    /// A guard over `store`.
    pub fn new(store: MailStore, rule: BurstRule) -> Arc<Self> {
        Arc::new(Self { store, rule })
    }

    fn held_reply(sender: &str, until_ms: i64) -> Reply {
        Reply::new(
            451,
            "4.7.1",
            format!(
                "Sender <{sender}> is held after an unusual volume of outbound mail (until {}); your administrator can release it",
                egress::time_rfc2822(until_ms / 1000)
            ),
        )
    }

    async fn check(
        &self,
        tenant: i64,
        sender: &str,
        client: IpAddr,
        rcpts: usize,
    ) -> Result<(), Reply> {
        let scope = outbound_scope(tenant, sender);
        let now = unix_now_ms();
        match self.store.detect_throttled(OUTBOUND, &scope, now).await {
            Ok(Some(until)) => return Err(Self::held_reply(sender, until)),
            Ok(None) => {}
            // The counter is a watchman, not a gate: mail flows while the store is unwell.
            Err(e) => {
                tracing::error!(error = %e, "outbound sender hold could not be checked");
                return Ok(());
            }
        }
        let client = client.to_string();
        let event = store::DetectEvent {
            kind: OUTBOUND,
            scope: &scope,
            account: sender,
            source: &client,
        };
        let trigger = store::Trigger::Events(self.rule.threshold as i64 + 1);
        let burst = match self
            .store
            .detect_note_n(&event, rcpts, self.rule.window, trigger, now)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "outbound message could not be counted");
                return Ok(());
            }
        };
        let Some(count) = burst else { return Ok(()) };
        let until = now.saturating_add(self.rule.hold.as_millis() as i64);
        let tenant_name = self
            .store
            .tenant(tenant)
            .await
            .ok()
            .flatten()
            .map_or_else(|| tenant.to_string(), |t| t.name);
        let summary = format!(
            "<{sender}> of tenant {tenant_name} sent to {} recipients within {} s (threshold {}) from {} address(es): possible account takeover; held until {}; release with `sekisho outbound release --tenant {tenant_name} {sender}`",
            count.events,
            self.rule.window.as_secs(),
            self.rule.threshold,
            count.sources,
            egress::time_rfc2822(until / 1000),
        );
        tracing::error!(severity = "critical", event = "outbound-burst", tenant = %tenant_name, "{summary}");
        if let Err(e) = self.store.detect_throttle(OUTBOUND, &scope, until).await {
            tracing::error!(error = %e, "the outbound sender could not be held");
        }
        let principal = format!("sender:{}", sender.to_lowercase());
        let _ = self
            .store
            .record(&store::NewRecord {
                principal: &principal,
                role: proto::Process::Mx,
                action: "outbound-hold",
                tenant_id: Some(tenant),
                object: &scope,
                reason: &summary,
                outcome: "held",
            })
            .await;
        let _ = self
            .store
            .alert_raise(&store::NewAlert {
                by: proto::Process::Mx,
                rule: "outbound-burst",
                severity: proto::Severity::Critical,
                dedupe_key: &format!("outbound-burst:{scope}"),
                principal: &principal,
                tenant_id: Some(tenant),
                summary: &summary,
            })
            .await;
        Err(Self::held_reply(sender, until))
    }
}

impl ingress::OutboundGuard for Guard {
    fn admit<'a>(
        &'a self,
        tenant: i64,
        sender: &'a str,
        client: IpAddr,
        rcpts: usize,
    ) -> inspect::BoxFuture<'a, Result<(), Reply>> {
        Box::pin(self.check(tenant, sender, client, rcpts))
    }
}
