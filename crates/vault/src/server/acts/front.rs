//! The portal role's front door, shared by every portal node through the store: blocked
//! addresses, the block storm and the cluster-wide login count. These need no session; the
//! portal can add blocks and count logins, nothing more.

use std::net::IpAddr;
use std::time::Duration;

use proto::Severity;
use proto::acts::{FrontAct, FrontBlock, FrontBlocks, FrontLoginAttempt};
use proto::vault::Response;

use super::{Done, answer};
use crate::server::Vault;

/// The store counter and block list of the front door.
const BLOCK_KIND: &str = "waf-block";
/// Blocked addresses within this window that make a storm.
const STORM_WINDOW: Duration = Duration::from_secs(10 * 60);
/// How many blocked addresses make a storm.
const STORM_ADDRESSES: i64 = 5;
/// The window of the cluster-wide login count.
const LOGIN_WINDOW: Duration = Duration::from_secs(60);

impl Vault {
    /// Answers the portal role's own request.
    pub(in crate::server) async fn front(&self, f: FrontAct) -> (Response, Vec<u8>) {
        match f {
            FrontAct::FrontBlocks(_) => answer::<FrontBlocks>(self.front_blocks().await),
            FrontAct::FrontBlock(b) => answer::<FrontBlock>(self.front_block(b).await),
            FrontAct::FrontLoginAttempt(a) => {
                answer::<FrontLoginAttempt>(self.front_login(a.ip).await)
            }
        }
    }

    async fn front_blocks(&self) -> Done<Vec<(IpAddr, i64)>> {
        Ok(self
            .store
            .detect_throttles(BLOCK_KIND, store::unix_now_ms())
            .await?
            .into_iter()
            .filter_map(|(ip, until)| Some((ip.parse().ok()?, until)))
            .collect())
    }

    /// Records a block and raises its alert; shares the block with every portal node and
    /// counts the addresses blocked by any of them (a storm is a distributed scan).
    async fn front_block(&self, b: FrontBlock) -> Done<String> {
        let ip = b.ip;
        let summary = format!(
            "{ip} made {} probing requests (unknown or exploit paths, refused requests) within {} s; blocked for {} s",
            b.probes, b.window_secs, b.block_secs
        );
        tracing::warn!(event = "waf-block", %ip, "{summary}");
        let principal = format!("ip:{ip}");
        self.record(store::NewRecord {
            principal: &principal,
            action: "waf-block",
            reason: &summary,
            outcome: "blocked",
            ..store::NewRecord::by(proto::Process::Portal)
        })
        .await;
        self.alert(store::NewAlert {
            by: proto::Process::Vault,
            rule: "waf-block",
            severity: Severity::Warning,
            dedupe_key: &format!("waf-block:{ip}"),
            principal: &principal,
            tenant_id: None,
            summary: &summary,
        })
        .await;
        let now_ms = store::unix_now_ms();
        let block_ms = b.block_secs.min(86_400).saturating_mul(1000) as i64;
        let ip_text = ip.to_string();
        self.store
            .detect_throttle(BLOCK_KIND, &ip_text, now_ms.saturating_add(block_ms))
            .await?;
        let blocked = store::DetectEvent {
            kind: BLOCK_KIND,
            scope: "",
            account: "",
            source: &ip_text,
        };
        let storm = self
            .store
            .detect_note(
                &blocked,
                STORM_WINDOW,
                store::Trigger::Sources(STORM_ADDRESSES),
                now_ms,
            )
            .await?;
        if let Some(n) = storm.map(|c| c.sources) {
            let summary = format!(
                "{n} addresses were blocked for probing within {} minutes: a distributed scan of the portal",
                STORM_WINDOW.as_secs() / 60
            );
            self.alert(store::NewAlert {
                by: proto::Process::Vault,
                rule: "waf-block-storm",
                severity: Severity::Critical,
                dedupe_key: "waf-block-storm",
                principal: "portal",
                tenant_id: None,
                summary: &summary,
            })
            .await;
        }
        Ok(format!("{ip} blocked"))
    }

    async fn front_login(&self, ip: IpAddr) -> Done<u64> {
        let ip = ip.to_string();
        let attempt = store::DetectEvent {
            kind: "login-attempt",
            scope: &ip,
            account: "",
            source: &ip,
        };
        let n = self
            .store
            .rate_hit(&attempt, LOGIN_WINDOW, store::unix_now_ms())
            .await?;
        Ok(n.max(0) as u64)
    }
}
