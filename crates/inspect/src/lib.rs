//! Inspection: Sekisho's judgement of every message, before the final reply to DATA.
//!
//! Sits between ingress and the spool (wire → ingress → **inspect** → spool → egress).
//! Each [`Stage`] is its own type and only produces typed [`Evidence`] (a [`Symbol`] with
//! detail) — never a score. The [`Policy`] alone turns evidence into a score and an
//! [`Action`] (deliver, tag, quarantine, reject, tempfail) with weights and thresholds, so
//! tuning never touches a stage (the rspamd lesson). Independent stages run concurrently.
//!
//! # Layout
//! - [`evidence`]: the symbols.
//! - [`view`]: the parsed message every stage reads ([`MessageView`], over mail-parser).
//! - [`policy`]: weights, thresholds, [`Verdict`] and the headers written from it.
//! - [`stages`]: the stages.
//!
//! # Security
//! Parses hostile content. mail-parser runs behind `catch_unwind` (its "never panics"
//! promise was broken before), MIME nesting depth and part count are limited explicitly, and
//! a message that cannot be parsed is evidence, not a crash. No message content is logged.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod arc;
pub mod bayes;
pub mod dns;
pub mod evidence;
pub mod freemail;
pub mod html;
pub mod links;
pub mod ngram;
pub mod policy;
pub mod spf;
pub mod stages;
pub mod tenant;
pub mod view;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

pub use evidence::{Evidence, Symbol};
pub use policy::{Action, Policy, Verdict, strip_forged_headers};
pub use tenant::{ProtectedName, SenderLists, SenderRule, TenantRules};
pub use view::{MessageView, ViewLimits};

/// A boxed future, for dyn-compatible async stages.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The SMTP facts about a message.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Client IP.
    pub client_ip: IpAddr,
    /// HELO/EHLO name.
    pub helo: String,
    /// Envelope sender (empty for the null sender).
    pub mail_from: String,
    /// Recipients.
    pub rcpts: Vec<String>,
    /// Domains of the recipients' tenants (lookalikes of these are phishing evidence).
    pub protected_domains: Vec<String>,
    /// The recipients' tenant (selects per-tenant models).
    pub tenant: Option<i64>,
    /// The tenant's own rules (policy overrides, protected names, trusted ARC forwarders).
    pub rules: Option<Arc<TenantRules>>,
    /// When the message was received (Unix seconds); `None` means now. Date rules compare
    /// against it, so re-checking an old message judges it as of its arrival.
    pub received_at: Option<i64>,
    /// Outbound: a tenant's own server relays its user's mail to the world (`tenant` is the
    /// sender's). Stages that judge where inbound mail comes from (authentication, block
    /// lists of the client, lookalikes, first contact) and sender lists do not apply.
    pub outbound: bool,
}

impl Default for Envelope {
    fn default() -> Self {
        Self {
            client_ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            helo: String::new(),
            mail_from: String::new(),
            rcpts: Vec::new(),
            protected_domains: Vec::new(),
            tenant: None,
            rules: None,
            received_at: None,
            outbound: false,
        }
    }
}

impl Envelope {
    /// The reception time (Unix seconds).
    pub fn received_at(&self) -> i64 {
        self.received_at.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        })
    }
}

/// What a stage found: evidence for the policy, and trace header fields it is responsible
/// for (e.g. `Authentication-Results`), written whatever the verdict.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Findings {
    /// Evidence for the policy.
    pub evidence: Vec<Evidence>,
    /// Complete header fields, each ending in CRLF.
    pub headers: Vec<String>,
    /// The authentication results, from the authentication stage.
    pub auth: Option<stages::auth::AuthSummary>,
}

impl From<Vec<Evidence>> for Findings {
    fn from(evidence: Vec<Evidence>) -> Self {
        Self {
            evidence,
            headers: Vec::new(),
            auth: None,
        }
    }
}

/// One inspection stage.
pub trait Stage: Send + Sync {
    /// Short name, for logs and timing.
    fn name(&self) -> &'static str;
    /// Looks at the message and returns what it found.
    fn inspect<'a>(
        &'a self,
        msg: &'a MessageView<'a>,
        env: &'a Envelope,
    ) -> BoxFuture<'a, Findings>;
    /// True for stages that judge inbound mail only (skipped for outbound mail).
    fn inbound_only(&self) -> bool {
        false
    }
}

/// A stage that needs no I/O: implementing this gives [`Stage`].
pub trait SyncStage: Send + Sync {
    /// Short name, for logs and timing.
    fn stage_name(&self) -> &'static str;
    /// Looks at the message and returns the evidence.
    fn evidence(&self, msg: &MessageView<'_>, env: &Envelope) -> Vec<Evidence>;
    /// True for stages that judge inbound mail only (skipped for outbound mail).
    fn inbound_only(&self) -> bool {
        false
    }
}

impl<T: SyncStage> Stage for T {
    fn name(&self) -> &'static str {
        self.stage_name()
    }

    fn inbound_only(&self) -> bool {
        SyncStage::inbound_only(self)
    }

    fn inspect<'a>(
        &'a self,
        msg: &'a MessageView<'a>,
        env: &'a Envelope,
    ) -> BoxFuture<'a, Findings> {
        // Lazy: the work happens when polled, so stages that wait on the network (listed first)
        // have sent their queries before the CPU-bound stages run.
        Box::pin(async move { self.evidence(msg, env).into() })
    }
}

/// A stage's future that measures the time spent inside its `poll` calls: its CPU time, not
/// the time it waited for DNS or clamd.
struct Timed<'a> {
    name: &'static str,
    inner: BoxFuture<'a, Findings>,
    busy: std::time::Duration,
}

impl Future for Timed<'_> {
    type Output = (&'static str, Findings, std::time::Duration);

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let started = std::time::Instant::now();
        let polled = self.inner.as_mut().poll(cx);
        self.busy += started.elapsed();
        polled.map(|f| (self.name, f, self.busy))
    }
}

/// Runs the stages and the policy.
pub struct Inspector {
    stages: Vec<Arc<dyn Stage>>,
    policy: Policy,
    limits: ViewLimits,
    senders: Option<Arc<stages::contact::SenderHistory>>,
}

impl Inspector {
    /// An inspector with the given stages and policy.
    pub fn new(stages: Vec<Arc<dyn Stage>>, policy: Policy, limits: ViewLimits) -> Self {
        Self {
            stages,
            policy,
            limits,
            senders: None,
        }
    }

    /// Keeps the sender history that the first-contact stage reads, so the SMTP path can
    /// teach it the senders of mail it let through.
    pub fn with_senders(mut self, senders: Arc<stages::contact::SenderHistory>) -> Self {
        self.senders = Some(senders);
        self
    }

    /// The sender history, if the pipeline has one.
    pub fn senders(&self) -> Option<&stages::contact::SenderHistory> {
        self.senders.as_deref()
    }

    /// The policy in use.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Inspects `raw` (the message as received, CRLF line endings) and decides.
    pub async fn inspect(&self, raw: &[u8], env: &Envelope) -> Verdict {
        let started = std::time::Instant::now();
        let (view, mut evidence) = MessageView::parse(raw, &self.limits);
        let mut cpu = started.elapsed();
        let mut stage_cpu = Vec::with_capacity(self.stages.len());
        let applies = |s: &&Arc<dyn Stage>| !(env.outbound && s.inbound_only());
        let results =
            futures_util::future::join_all(self.stages.iter().filter(applies).map(|s| Timed {
                name: s.name(),
                inner: s.inspect(&view, env),
                busy: std::time::Duration::ZERO,
            }))
            .await;
        let mut headers = Vec::new();
        let mut auth = None;
        for (name, r, busy) in results {
            evidence.extend(r.evidence);
            headers.extend(r.headers);
            auth = auth.or(r.auth);
            cpu += busy;
            stage_cpu.push((name, busy));
        }
        if let Some(e) = stages::bulk::signed_list_mail(&view, &evidence) {
            evidence.push(e);
        }
        if let Some(e) = stages::bulk::newsletter_footer(&view, &evidence) {
            evidence.push(e);
        }
        if let Some(rules) = env.rules.as_ref().filter(|_| !env.outbound) {
            let author = view.author().unwrap_or_default();
            let mail_from = env.mail_from.to_ascii_lowercase();
            if let Some(e) = rules.senders.evidence(
                &[author.as_str(), mail_from.as_str()],
                &env.rcpts,
                &evidence,
            ) {
                evidence.push(e);
            }
        }
        let policy = env
            .rules
            .as_ref()
            .and_then(|r| r.policy.as_ref())
            .unwrap_or(&self.policy);
        let mut verdict = policy.decide(evidence);
        verdict.trace_headers = headers;
        verdict.author = view.author();
        verdict.cpu = cpu;
        verdict.stage_cpu = stage_cpu;
        verdict.auth = auth;
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stage that always reports `symbol`.
    struct Always(Symbol, bool);

    impl SyncStage for Always {
        fn stage_name(&self) -> &'static str {
            "always"
        }

        fn evidence(&self, _: &MessageView<'_>, _: &Envelope) -> Vec<Evidence> {
            vec![Evidence::new(self.0, "test")]
        }

        fn inbound_only(&self) -> bool {
            self.1
        }
    }

    #[tokio::test]
    async fn outbound_mail_skips_the_inbound_only_stages() {
        let inspector = Inspector::new(
            vec![
                Arc::new(Always(Symbol::SpfFail, true)),
                Arc::new(Always(Symbol::Gtube, false)),
            ],
            Policy::default(),
            ViewLimits::default(),
        );
        let raw = b"Subject: x\r\n\r\nbody\r\n";
        let symbols = |v: &Verdict| v.symbols.iter().map(|s| s.symbol).collect::<Vec<_>>();
        let inbound = inspector.inspect(raw, &Envelope::default()).await;
        assert!(symbols(&inbound).contains(&Symbol::SpfFail));
        assert!(symbols(&inbound).contains(&Symbol::Gtube));
        let env = Envelope {
            outbound: true,
            ..Default::default()
        };
        let outbound = inspector.inspect(raw, &env).await;
        assert!(!symbols(&outbound).contains(&Symbol::SpfFail));
        assert!(symbols(&outbound).contains(&Symbol::Gtube));
    }
}
