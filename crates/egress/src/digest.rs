//! The quarantine digest: once a day (`[digest] at`, local to `utc_offset`) every recipient
//! with newly quarantined mail gets one e-mail listing it — sender, time, verdict, never the
//! subject or any content (those are sealed) — each with a signed, expiring one-click
//! release link to the portal. The links are made and checked by the vault (an HMAC under
//! the KEK-derived key; see `vault::server::portal::LINK_PREFIX`): the portal and the
//! database can show them but not make one. Digests go through this node's own queue to the
//! recipient's tenant route, like any mail. With several nodes on one store only the first
//! up node sends (as for alert sinks), from the store's shared mark.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use proto::client::VaultClient;
use proto::vault::RoleToken;
use store::MailStore;

use crate::Delivery;

/// Most items one digest run covers (the rest wait for the next run).
const MAX_ITEMS_PER_RUN: i64 = 100_000;
/// Items younger than this are left for the next run: a message is stored in quarantine
/// a moment after the time it was received at.
const SETTLE_SECS: i64 = 2;
/// Entries listed in one recipient's digest (the rest: "and N more", in the portal).
const MAX_LISTED: usize = 100;
/// Store marks: the end of the window the last run covered, and when it ran.
const SENT_UNTIL: &str = "digest_sent_until";
const LAST_RUN: &str = "digest_last_run";

/// `[digest]`.
#[derive(Debug, Clone)]
pub struct DigestConfig {
    /// Minutes after local midnight the daily run starts.
    pub at: u32,
    /// The local time zone, minutes east of UTC.
    pub utc_offset_minutes: i32,
    /// How long the links stay valid.
    pub link_ttl: Duration,
    /// The portal as recipients reach it (`https://quarantine.example.net`).
    pub portal_url: String,
    /// The digest's From address.
    pub from: String,
}

impl DigestConfig {
    /// The latest scheduled run at or before `now` (Unix seconds).
    pub fn due_at(&self, now: i64) -> i64 {
        let offset = i64::from(self.utc_offset_minutes) * 60;
        let local = now + offset;
        let today = local - local.rem_euclid(86_400) + i64::from(self.at) * 60 - offset;
        if today <= now { today } else { today - 86_400 }
    }
}

pub use proto::mx::DigestSent as Sent;

/// Why a digest run stopped early (what it queued stays queued; the mark is not advanced, so
/// the next run lists the same items again).
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    /// The vault failed or refused to make links.
    #[error("vault: {0}")]
    Vault(String),
    /// A digest could not be queued.
    #[error("queueing the digest for {rcpt}: {error}")]
    Queue {
        /// The recipient.
        rcpt: String,
        /// What the spool said.
        error: String,
    },
}

/// The digest as one node runs it: what it reads (store), who signs its links (the vault,
/// asked with mx's role token) and where it queues the mail (this node's delivery).
pub struct Digest {
    /// When and how.
    pub cfg: DigestConfig,
    /// The store (quarantine index, marks, audit).
    pub store: MailStore,
    /// The vault, which makes the links.
    pub vault: VaultClient,
    /// mx's role token.
    pub token: Option<RoleToken>,
    /// This node's delivery (digests go through its queue).
    pub delivery: Arc<Delivery>,
}

/// One entry of a recipient's digest.
struct Entry {
    item: store::QuarantineItem,
    link: String,
}

impl Digest {
    /// Sends the digests of everything quarantined since the last run, now.
    pub async fn send(&self) -> Result<Sent, DigestError> {
        let (store, cfg) = (&self.store, &self.cfg);
        let now = store::unix_now();
        let from = store.meta_get(SENT_UNTIL).await?;
        let to = now - SETTLE_SECS;
        let items = store
            .quarantine_received_between(from, to, MAX_ITEMS_PER_RUN)
            .await?;
        let until = match items.last() {
            Some(last) if items.len() as i64 == MAX_ITEMS_PER_RUN => last.received_at,
            _ => to,
        };
        // Queue ids were made by the spool; a row whose id is not one gets no link.
        let pairs: Vec<(proto::QueueId, String)> = items
            .iter()
            .filter_map(|i| Some((i.id.parse().ok()?, &i.rcpts)))
            .flat_map(|(id, rcpts): (proto::QueueId, _)| {
                rcpts.iter().map(move |r| (id.clone(), r.to_lowercase()))
            })
            .collect();
        let expires_at = now + cfg.link_ttl.as_secs() as i64;
        let mut links = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(proto::vault::MAX_DIGEST_LINKS) {
            let req = proto::vault::Request::DigestLinks {
                items: chunk.to_vec(),
                expires_at,
                role_token: self.token.clone(),
            };
            match self.vault.call(&req, &[]).await {
                Ok((proto::vault::Response::Links { tokens }, _))
                    if tokens.len() == chunk.len() =>
                {
                    links.extend(tokens)
                }
                Ok((other, _)) => {
                    return Err(DigestError::Vault(format!(
                        "unexpected answer: {}",
                        other.kind()
                    )));
                }
                Err(e) => return Err(DigestError::Vault(e.to_string())),
            }
        }
        let by_id: BTreeMap<&str, &store::QuarantineItem> =
            items.iter().map(|i| (i.id.as_str(), i)).collect();
        let mut per_rcpt: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for ((id, rcpt), link) in pairs.iter().zip(links) {
            // No link: a canary, or an item released or deleted meanwhile.
            let (Some(link), Some(item)) = (link, by_id.get(id.as_str())) else {
                continue;
            };
            per_rcpt.entry(rcpt.clone()).or_default().push(Entry {
                item: (*item).clone(),
                link,
            });
        }
        let mut sent = Sent::default();
        for (rcpt, entries) in &per_rcpt {
            // The first run covers everything: "since" is then the oldest message listed.
            let since = match from {
                0 => entries
                    .iter()
                    .map(|e| e.item.received_at)
                    .min()
                    .unwrap_or(now),
                f => f,
            };
            let hostname = self.delivery.hostname();
            let content = message(cfg, rcpt, entries, since, expires_at, now, hostname);
            self.delivery
                .submit_local(&content, std::slice::from_ref(rcpt), "quarantine digest")
                .await
                .map_err(|e| DigestError::Queue {
                    rcpt: rcpt.clone(),
                    error: e.to_string(),
                })?;
            sent.digests += 1;
            sent.items += entries.len();
        }
        store.meta_set(SENT_UNTIL, until).await?;
        store.meta_set(LAST_RUN, now).await?;
        store
            .record(&store::NewRecord {
                principal: "mx",
                action: "digest-sent",
                reason: &format!(
                    "{} digest(s) listing {} item(s) quarantined until {until}",
                    sent.digests, sent.items
                ),
                outcome: "ok",
                ..store::NewRecord::by(proto::Process::Mx)
            })
            .await?;
        tracing::info!(
            digests = sent.digests,
            items = sent.items,
            "quarantine digests queued"
        );
        Ok(sent)
    }

    /// Runs the daily digest until `shutdown` (checked every 30 s; only on the first node up).
    pub async fn run(self: Arc<Self>, node: String, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
            if !self.store.is_first_up(&node).await {
                continue;
            }
            let now = store::unix_now();
            let Ok(last) = self.store.meta_get(LAST_RUN).await else {
                continue;
            };
            if last == 0 {
                // First start: the first digest covers what arrives from now on.
                let _ = self.store.meta_set(SENT_UNTIL, now).await;
                let _ = self.store.meta_set(LAST_RUN, now).await;
                continue;
            }
            if last >= self.cfg.due_at(now) {
                continue;
            }
            if let Err(e) = self.send().await {
                tracing::error!(error = %e, "the quarantine digest failed; retrying in 30 s");
            }
        }
    }
}

/// One recipient's digest: Japanese first, then English (the recipient's language is not
/// known; the portal follows the browser's).
fn message(
    cfg: &DigestConfig,
    rcpt: &str,
    entries: &[Entry],
    since: i64,
    expires_at: i64,
    now: i64,
    hostname: &str,
) -> Vec<u8> {
    let time = crate::time_rfc2822;
    let n = entries.len();
    let base = cfg.portal_url.trim_end_matches('/');
    let mut text = format!(
        "{rcpt} 宛てのメール {n} 通が隔離されました（{} 以降）。\n\
         {n} message(s) to {rcpt} were quarantined since {}.\n\n\
         リンクを開くと、配信する前に確認画面が表示されます。\n\
         Each link opens a page that asks before anything is released.\n\n",
        time(since),
        time(since),
    );
    for (i, e) in entries.iter().take(MAX_LISTED).enumerate() {
        let reasons: Vec<&str> = e
            .item
            .symbols
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .take(3)
            .collect();
        text.push_str(&format!(
            "{}. {}\n   差出人 / From: {}\n   判定 / Verdict: {} ({:.1}) {}\n   配信する / Release: {base}/digest/{}\n\n",
            i + 1,
            time(e.item.received_at),
            if e.item.mail_from.is_empty() {
                "<>"
            } else {
                &e.item.mail_from
            },
            e.item.verdict,
            e.item.score,
            reasons.join(", "),
            e.link,
        ));
    }
    if n > MAX_LISTED {
        text.push_str(&format!(
            "… ほか {} 通 / and {} more\n\n",
            n - MAX_LISTED,
            n - MAX_LISTED
        ));
    }
    text.push_str(&format!(
        "リンクの有効期限 / Links valid until: {}\n\
         隔離メールの一覧 / Your quarantine: {base}/quarantine\n\n\
         このメールは自動送信です。返信しないでください。\n\
         This message was sent automatically; do not reply.\n",
        time(expires_at)
    ));
    crate::notice::build(
        &cfg.from,
        &[rcpt.to_string()],
        &format!("[Sekisho] 隔離メール {n} 通 / Quarantine digest: {n} message(s)"),
        &text,
        &format!("digest-{now}.{}@{hostname}", hex::encode(rcpt.as_bytes())),
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daily_run_is_due_at_the_local_time() {
        let cfg = DigestConfig {
            at: 8 * 60,
            utc_offset_minutes: 9 * 60,
            link_ttl: Duration::from_secs(3600),
            portal_url: String::new(),
            from: String::new(),
        };
        // 2026-12-02 08:00 +09:00 is 2026-12-01 23:00 UTC = 1796166000.
        let eight_jst = 1_796_166_000;
        assert_eq!(cfg.due_at(eight_jst), eight_jst);
        assert_eq!(cfg.due_at(eight_jst + 3600), eight_jst);
        assert_eq!(cfg.due_at(eight_jst - 1), eight_jst - 86_400);
        let utc = DigestConfig {
            utc_offset_minutes: 0,
            ..cfg
        };
        assert_eq!(utc.due_at(eight_jst), eight_jst - 15 * 3600);
    }
}
