//! Delivery: the last stage of the mail path (wire → ingress → spool → **egress**).
//!
//! [`Delivery`] takes committed messages from the [`spool::Spool`] — at once from ingress via
//! [`Delivery::dispatch`], and by its scheduler for retries — groups each message's pending
//! recipients by their tenant's [`Route`], and relays them: over SMTP through a connection
//! [`pool::Pool`] (reuse, per-destination concurrency limit, STARTTLS per route policy), or
//! into a Maildir. Each recipient's result is recorded in the spool and the message trace.
//! Temporary failures are retried with exponential backoff; permanent failures and expiry
//! produce a DSN (RFC 3464) to the sender, except for the null sender.
//!
//! # Security
//! Holds message content in memory only while delivering. Relays only to routes configured
//! for tenants (or the configured external route for DSNs): never to an address chosen by a
//! sender. `tls=required` routes verify certificates and never fall back to clear text.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod arc;
pub mod client;
pub mod digest;
mod direct;
pub mod dkim;
pub mod dsn;
pub mod maildir;
pub mod mta_sts;
pub mod mx;
pub mod notice;
pub mod pool;
pub mod secrets;
pub mod tls_report;

use std::sync::Arc;
use std::time::Duration;

use spool::{Envelope, MessageMeta, QueueState, RcptState, RcptStatus, Spool, new_queue_id};
use store::{Lookup, SharedDirectory, TraceEvent, TraceRecord, unix_now};
use telemetry::Metrics;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use client::{Failure, TlsClients};
pub use proto::route::{Route, RouteError, SmtpRoute, TlsPolicy};

/// Where trace records go (a batching writer task drains it).
pub type TraceSink = tokio::sync::mpsc::UnboundedSender<TraceRecord>;

/// Delivery settings.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Our host name (EHLO, DSN Reporting-MTA, postmaster address).
    pub hostname: String,
    /// Messages delivered concurrently.
    pub max_concurrent: usize,
    /// Connections per destination.
    pub per_destination: usize,
    /// First retry delay.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// After this long in the queue a message is bounced.
    pub max_lifetime: Duration,
    /// Timeout for connecting and for each reply.
    pub timeout: Duration,
    /// Route for recipients that belong to no tenant (outbound mail, DSNs to outside
    /// senders): a smarthost, or `Route::Mx` for direct delivery to each domain's MX.
    pub external_route: Option<Route>,
    /// Direct delivery may go to loopback and private addresses (an internal network's own
    /// mail exchangers); otherwise such MX targets are skipped.
    pub allow_private_mx: bool,
    /// CA certificates that verify mail exchangers' certificates under an MTA-STS policy
    /// (and, in mx, the policy's HTTPS server) instead of the Web PKI: a private network, or
    /// tests.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            hostname: "localhost".into(),
            max_concurrent: 64,
            per_destination: 20,
            retry_initial: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            max_lifetime: Duration::from_secs(5 * 86400),
            timeout: Duration::from_secs(60),
            external_route: None,
            allow_private_mx: false,
            ca_file: None,
        }
    }
}

/// Mail exchangers of one domain tried per attempt (the rest wait for the next attempt).
const MAX_MX_HOSTS: usize = 5;
/// Addresses of one mail exchanger tried per attempt.
const MAX_MX_ADDRESSES: usize = 4;

/// The outcome of one attempt for one recipient.
#[derive(Clone)]
enum Outcome {
    Delivered(String),
    Temporary(String),
    Permanent(String),
}

impl From<Failure> for Outcome {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Permanent(t) => Outcome::Permanent(t),
            Failure::Temporary(t) | Failure::Tls(_, t) => Outcome::Temporary(t),
        }
    }
}

/// A transaction's result for the recipients `idx`: each its own outcome, or one for all.
fn spread(result: Result<Vec<Outcome>, Outcome>, idx: &[usize], outcomes: &mut [Option<Outcome>]) {
    for (k, &i) in idx.iter().enumerate() {
        outcomes[i] = Some(match &result {
            Ok(each) => each[k].clone(),
            Err(all) => all.clone(),
        });
    }
}

/// The delivery engine.
pub struct Delivery {
    spool: Spool,
    directory: Arc<SharedDirectory>,
    cfg: DeliveryConfig,
    pool: pool::Pool,
    tls: TlsClients,
    metrics: Arc<Metrics>,
    trace: TraceSink,
    wake: Notify,
    slots: Arc<Semaphore>,
    tasks: TaskTracker,
    secrets: std::sync::OnceLock<Arc<dyn secrets::SecretSource>>,
    resolver: std::sync::OnceLock<Arc<dyn mx::MxResolver>>,
    dkim: std::sync::OnceLock<Arc<dyn dkim::DkimSource>>,
    sts: std::sync::OnceLock<Arc<dyn mta_sts::PolicySource>>,
    tls_tally: Arc<tls_report::Tally>,
}

impl Delivery {
    /// A delivery engine over `spool`.
    pub fn new(
        spool: Spool,
        directory: Arc<SharedDirectory>,
        cfg: DeliveryConfig,
        metrics: Arc<Metrics>,
        trace: TraceSink,
    ) -> Result<Arc<Self>, tls::TlsError> {
        Ok(Arc::new(Self {
            pool: pool::Pool::new(cfg.per_destination, Duration::from_secs(5)),
            slots: Arc::new(Semaphore::new(cfg.max_concurrent.max(1))),
            tls: TlsClients::new()?,
            spool,
            directory,
            cfg,
            metrics,
            trace,
            wake: Notify::new(),
            tasks: TaskTracker::new(),
            secrets: std::sync::OnceLock::new(),
            resolver: std::sync::OnceLock::new(),
            dkim: std::sync::OnceLock::new(),
            sts: std::sync::OnceLock::new(),
            tls_tally: Arc::new(tls_report::Tally::default()),
        }))
    }

    /// Outbound TLS session counts since the node last took them (TLS reporting).
    pub fn tls_tally(&self) -> Arc<tls_report::Tally> {
        self.tls_tally.clone()
    }

    /// The host name this node delivers as.
    pub fn hostname(&self) -> &str {
        &self.cfg.hostname
    }

    /// Where connector secrets come from (routes with `auth=tenant` / `client_cert=tenant`
    /// defer their mail until one is set). Set once, before delivery starts.
    pub fn set_secret_source(&self, source: Arc<dyn secrets::SecretSource>) {
        let _ = self.secrets.set(source);
    }

    /// Where direct delivery learns recipient domains' MTA-STS policies. Without one, TLS to
    /// exchangers stays opportunistic.
    pub fn set_policy_source(&self, source: Arc<dyn mta_sts::PolicySource>) {
        let _ = self.sts.set(source);
    }

    /// Where outbound mail is signed (in mx, the vault). Without one, nothing is signed.
    pub fn set_dkim_source(&self, source: Arc<dyn dkim::DkimSource>) {
        let _ = self.dkim.set(source);
    }

    /// An outbound message as it leaves: signed for its `From` domain when the sender's
    /// tenant has a key for it, at every attempt (after every change made to it).
    async fn outbound_signed(
        &self,
        meta: &MessageMeta,
        body: Arc<Vec<u8>>,
    ) -> Result<Arc<Vec<u8>>, Outcome> {
        let (Some(source), true) = (self.dkim.get(), meta.envelope.outbound) else {
            return Ok(body);
        };
        let Some(tenant) = meta.envelope.rcpts.first().map(|r| r.tenant) else {
            return Ok(body);
        };
        match dkim::sign(source, tenant, &body, unix_now()).await {
            Ok(Some(signed)) => Ok(Arc::new(signed)),
            Ok(None) => Ok(body),
            Err(e) => {
                tracing::warn!(queue_id = %meta.id, error = %e, "outbound message not signed; deferred");
                Err(Outcome::Temporary(format!(
                    "451 4.7.0 DKIM signing unavailable: {e}"
                )))
            }
        }
    }

    /// An inbound message as it leaves for its tenant: ARC-sealed (RFC 8617) with the DKIM
    /// key of the recipient's domain when the tenant has one, at every attempt. When the vault
    /// cannot sign, it goes unsealed with a warning: a seal is an addition the downstream may
    /// use, not a promise made to the sender, and inbound mail is not held for it.
    async fn inbound_sealed(&self, meta: &MessageMeta, body: Arc<Vec<u8>>) -> Arc<Vec<u8>> {
        let (Some(source), false) = (self.dkim.get(), meta.envelope.outbound) else {
            return body;
        };
        let Some(r) = meta
            .envelope
            .rcpts
            .iter()
            .find(|r| r.status == RcptStatus::Pending && r.tenant != 0)
        else {
            return body;
        };
        let Some(domain) = mx::domain_of(&r.address) else {
            return body;
        };
        let hostname = &self.cfg.hostname;
        match arc::seal_message(source, r.tenant, &domain, hostname, &body, unix_now()).await {
            Ok(Some(sealed)) => Arc::new(sealed),
            Ok(None) => body,
            Err(e) => {
                tracing::warn!(queue_id = %meta.id, error = %e, "inbound message not ARC-sealed");
                body
            }
        }
    }

    /// Where direct delivery (`external_route = "mx"`) looks up mail exchangers; without one
    /// such mail is deferred. Set once, before delivery starts.
    pub fn set_mx_resolver(&self, resolver: Arc<dyn mx::MxResolver>) {
        let _ = self.resolver.set(resolver);
    }

    /// Drops connector secrets and DKIM key answers held in memory (they changed in the
    /// store).
    pub fn forget_secrets(&self) {
        if let Some(s) = self.secrets.get() {
            s.forget_all();
        }
        if let Some(d) = self.dkim.get() {
            d.forget_all();
        }
    }

    /// Obtains a tenant's secret the way a delivery would, discarding it (the test hook that
    /// plays an intruder in mx uses this; nothing is returned).
    pub async fn obtain_secret(
        &self,
        tenant: i64,
        kind: secrets::SecretKind,
    ) -> Result<(), String> {
        let source = self
            .secrets
            .get()
            .ok_or("this process has no access to connector secrets")?;
        source.get(tenant, kind).await.map(|_| ())
    }

    /// The credentials a route needs, from the secret source.
    async fn credentials(&self, r: &SmtpRoute) -> Result<secrets::Credentials, String> {
        let mut creds = secrets::Credentials::default();
        let Some(tenant) = r.owner.filter(|_| r.auth || r.client_cert) else {
            return Ok(creds);
        };
        let source = self
            .secrets
            .get()
            .ok_or("this process has no access to connector secrets")?;
        if r.auth {
            creds.smtp_auth = Some(source.get(tenant, secrets::SecretKind::SmtpAuth).await?);
        }
        if r.client_cert {
            let secret = source.get(tenant, secrets::SecretKind::ClientCert).await?;
            let secrets::ConnectorSecret::ClientCert { cert_pem, key_pem } = &*secret else {
                return Err("the client-cert secret holds no certificate".into());
            };
            let auth = tls::ClientAuth::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())
                .map_err(|e| format!("the tenant's client-cert secret: {e}"))?;
            creds.client_cert = Some(Arc::new(auth));
        }
        Ok(creds)
    }

    /// Starts delivering a just-committed message that the caller claimed in the spool,
    /// with its content already in memory. If every delivery slot is busy, the message is
    /// left to the scheduler.
    pub fn dispatch(self: &Arc<Self>, meta: MessageMeta, body: Arc<Vec<u8>>) {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let this = self.clone();
                self.tasks.spawn(async move {
                    this.deliver(meta, Some(body)).await;
                    drop(permit);
                });
            }
            Err(_) => {
                self.spool.unclaim(&meta.id);
                self.wake.notify_one();
            }
        }
    }

    /// Wakes the scheduler (after `queue flush`, a release, …).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The scheduler: picks due messages until `shutdown`, then waits (up to `grace`) for
    /// deliveries in flight. Messages not finished stay in the spool.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken, grace: Duration) {
        let mut last_compact = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            let free = self.slots.available_permits();
            if free > 0 {
                for meta in self.spool.claim_due(unix_now(), free) {
                    match self.slots.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let this = self.clone();
                            self.tasks.spawn(async move {
                                this.deliver(meta, None).await;
                                drop(permit);
                            });
                        }
                        Err(_) => self.spool.unclaim(&meta.id),
                    }
                }
            }
            self.pool.sweep();
            if last_compact.elapsed() > Duration::from_secs(10) {
                last_compact = std::time::Instant::now();
                if let Err(e) = self.spool.compact(2).await {
                    tracing::error!(error = %e, "spool compaction failed");
                }
            }
        }
        self.tasks.close();
        let _ = tokio::time::timeout(grace, self.tasks.wait()).await;
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        self.cfg
            .retry_initial
            .saturating_mul(factor)
            .min(self.cfg.retry_max)
    }

    fn route_for(
        &self,
        dir: &store::Directory,
        tenant: i64,
        outbound: bool,
        rcpt: &str,
    ) -> Result<Route, Outcome> {
        if outbound && dir.tenant(tenant).is_none() {
            return Err(Outcome::Permanent(
                "550 5.7.1 the sender's organisation is no longer served here (tenant terminated)"
                    .into(),
            ));
        }
        if tenant == 0 || outbound {
            let route = self.cfg.external_route.clone().ok_or_else(|| {
                Outcome::Temporary(
                    "no route for recipients outside the tenants (set delivery.external_route)"
                        .into(),
                )
            })?;
            return match route {
                Route::Mx(_) => mx::domain_of(rcpt).map(Route::Mx).ok_or_else(|| {
                    Outcome::Permanent(format!("550 5.1.3 {rcpt:?} has no domain to deliver to"))
                }),
                other => Ok(other),
            };
        }
        // Tenant ids are never reused: a tenant missing from the directory was terminated,
        // and its queued mail goes no further.
        let t = dir.tenant(tenant).ok_or_else(|| {
            Outcome::Permanent(
                "550 5.1.6 the recipient's organisation is no longer served here (tenant terminated)"
                    .into(),
            )
        })?;
        let mut route = t
            .route
            .parse::<Route>()
            .map_err(|e| Outcome::Temporary(e.to_string()))?;
        if let Route::Smtp(r) = &mut route
            && (r.auth || r.client_cert)
        {
            r.owner = Some(tenant);
        }
        Ok(route)
    }

    async fn deliver(&self, mut meta: MessageMeta, body: Option<Arc<Vec<u8>>>) {
        let id = meta.id.clone();
        let body = match body {
            Some(b) => b,
            None => match self.spool.body(&id) {
                Ok(b) => Arc::new(b),
                Err(e) => {
                    tracing::error!(queue_id = %id, error = %e, "cannot read queued message");
                    meta.state = QueueState::Corrupt;
                    meta.note = e.to_string();
                    let _ = self.spool.update(meta).await;
                    self.spool.unclaim(&id);
                    return;
                }
            },
        };
        let dir = self.directory.get();
        let mut outcomes: Vec<Option<Outcome>> = meta.envelope.rcpts.iter().map(|_| None).collect();
        let original = body.clone();
        let body = match self.outbound_signed(&meta, body).await {
            Ok(b) => b,
            Err(deferred) => {
                for (o, r) in outcomes.iter_mut().zip(&meta.envelope.rcpts) {
                    if r.status == RcptStatus::Pending {
                        *o = Some(deferred.clone());
                    }
                }
                self.finish(meta, outcomes, &original).await;
                return;
            }
        };
        let body = self.inbound_sealed(&meta, body).await;
        let mut groups: Vec<(Route, Vec<usize>)> = Vec::new();
        for (i, r) in meta.envelope.rcpts.iter().enumerate() {
            if r.status != RcptStatus::Pending {
                continue;
            }
            match self.route_for(&dir, r.tenant, meta.envelope.outbound, &r.address) {
                Ok(route) => match groups.iter_mut().find(|(g, _)| *g == route) {
                    Some((_, idx)) => idx.push(i),
                    None => groups.push((route, vec![i])),
                },
                Err(outcome) => outcomes[i] = Some(outcome),
            }
        }
        for (route, idx) in groups {
            self.deliver_group(&meta, &body, &route, &idx, &mut outcomes)
                .await;
        }
        self.finish(meta, outcomes, &original).await;
    }

    async fn deliver_group(
        &self,
        meta: &MessageMeta,
        body: &Arc<Vec<u8>>,
        route: &Route,
        idx: &[usize],
        outcomes: &mut [Option<Outcome>],
    ) {
        let rcpts = &meta.envelope.rcpts;
        match route {
            Route::Smtp(r)
                if meta.envelope.require_tls && r.tls != proto::route::TlsPolicy::Required =>
            {
                let refused = Outcome::Permanent(format!(
                    "550 5.7.30 REQUIRETLS support required: the route to {} does not verify TLS (it needs tls=required)",
                    r.host
                ));
                spread(Err(refused), idx, outcomes);
            }
            Route::Smtp(r) => {
                let result = self.send_smtp(meta, body, r, idx).await;
                spread(result.map_err(Outcome::from), idx, outcomes);
            }
            Route::Mx(domain) => {
                spread(
                    self.deliver_mx(meta, body, domain, idx).await,
                    idx,
                    outcomes,
                );
            }
            Route::Maildir(root) => {
                for &i in idx {
                    let (root, rcpt, id, body) = (
                        root.clone(),
                        rcpts[i].address.clone(),
                        meta.id.clone(),
                        body.clone(),
                    );
                    let result = tokio::task::spawn_blocking(move || {
                        maildir::deliver(&root, &rcpt, &id, &body)
                    })
                    .await;
                    outcomes[i] = Some(match result {
                        Ok(Ok(path)) => Outcome::Delivered(format!(
                            "250 2.0.0 delivered to maildir {}",
                            path.display()
                        )),
                        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidInput => {
                            Outcome::Permanent(format!("550 5.1.3 {e}"))
                        }
                        Ok(Err(e)) => Outcome::Temporary(format!("451 4.3.0 maildir: {e}")),
                        Err(e) => Outcome::Temporary(format!("451 4.3.0 maildir task: {e}")),
                    });
                }
            }
        }
    }

    /// One transaction over an SMTP route for the recipients `idx`: an outcome for each, or
    /// a failure of the whole connection (nothing was accepted).
    async fn send_smtp(
        &self,
        meta: &MessageMeta,
        body: &Arc<Vec<u8>>,
        r: &SmtpRoute,
        idx: &[usize],
    ) -> Result<Vec<Outcome>, Failure> {
        Ok(self.transact(meta, body, r, idx).await?.0)
    }

    /// [`Self::send_smtp`], with what the connection was (for TLS reporting).
    async fn transact(
        &self,
        meta: &MessageMeta,
        body: &Arc<Vec<u8>>,
        r: &SmtpRoute,
        idx: &[usize],
    ) -> Result<(Vec<Outcome>, pool::Session), Failure> {
        let rcpts = &meta.envelope.rcpts;
        let creds = self.credentials(r).await.map_err(|e| {
            Failure::Temporary(format!(
                "451 4.7.0 cannot connect to {} with the tenant's credentials: {e}",
                r.host
            ))
        })?;
        let msg = client::Outgoing {
            mail_from: &meta.envelope.mail_from,
            rcpts: idx.iter().map(|&i| rcpts[i].address.as_str()).collect(),
            body,
            eight_bit: meta.envelope.eight_bit,
            smtputf8: meta.envelope.smtputf8,
            require_tls: meta.envelope.require_tls,
        };
        let sent = self
            .pool
            .send(
                r,
                &self.cfg.hostname,
                &self.tls,
                self.cfg.timeout,
                &msg,
                &creds,
            )
            .await;
        let (replies, session) = match sent {
            Ok(ok) => ok.split(),
            Err(f) => {
                // The next hop may have refused a changed secret: fetch it afresh.
                if let (Some(t), Some(source)) = (r.owner, self.secrets.get()) {
                    source.forget(t);
                }
                return Err(f);
            }
        };
        let outcomes = replies
            .into_iter()
            .map(|reply| {
                let text = match &session.tls {
                    Some(t) => format!("{} (via {}:{} {t})", reply.text, r.host, r.port),
                    None => format!("{} (via {}:{})", reply.text, r.host, r.port),
                };
                if reply.is_ok() {
                    Outcome::Delivered(text)
                } else if reply.is_permanent() {
                    Outcome::Permanent(text)
                } else {
                    Outcome::Temporary(text)
                }
            })
            .collect();
        Ok((outcomes, session))
    }

    fn trace_event(&self, meta: &MessageMeta, r: &RcptState, event: &str, detail: &str) {
        let _ = self.trace.send(TraceRecord::Event(TraceEvent {
            message_id: meta.id.clone(),
            rcpt: r.address.clone(),
            tenant_id: (r.tenant != 0).then_some(r.tenant),
            at: unix_now(),
            event: event.into(),
            detail: detail.into(),
        }));
    }

    async fn finish(&self, mut meta: MessageMeta, outcomes: Vec<Option<Outcome>>, body: &[u8]) {
        let now = unix_now();
        let mut newly_failed = Vec::new();
        for (i, outcome) in outcomes.into_iter().enumerate() {
            let Some(outcome) = outcome else { continue };
            let (status, event, text) = match outcome {
                Outcome::Delivered(t) => {
                    self.metrics.delivery_delivered.inc();
                    (RcptStatus::Delivered, "delivered", t)
                }
                Outcome::Permanent(t) => {
                    self.metrics.delivery_failed.inc();
                    newly_failed.push(i);
                    (RcptStatus::Failed, "bounced", t)
                }
                Outcome::Temporary(t) => {
                    self.metrics.delivery_deferred.inc();
                    (RcptStatus::Pending, "deferred", t)
                }
            };
            let r = &mut meta.envelope.rcpts[i];
            r.status = status;
            r.last_reply = text;
            let r = meta.envelope.rcpts[i].clone();
            self.trace_event(&meta, &r, event, &r.last_reply);
        }
        meta.attempts += 1;
        let lifetime = self.cfg.max_lifetime.as_secs() as i64;
        let expired = now - meta.received_at >= lifetime;
        for i in 0..meta.envelope.rcpts.len() {
            let r = &mut meta.envelope.rcpts[i];
            if r.status == RcptStatus::Pending && expired {
                r.status = RcptStatus::Failed;
                r.last_reply = format!(
                    "4.4.7 message expired after {} attempts in the queue; last error: {}",
                    meta.attempts, r.last_reply
                );
                newly_failed.push(i);
                self.metrics.delivery_failed.inc();
                let r = meta.envelope.rcpts[i].clone();
                self.trace_event(&meta, &r, "expired", &r.last_reply);
            }
        }
        if !newly_failed.is_empty() && !meta.envelope.mail_from.is_empty() {
            self.bounce(&meta, &newly_failed, body).await;
        }
        let pending = meta
            .envelope
            .rcpts
            .iter()
            .any(|r| r.status == RcptStatus::Pending);
        let id = meta.id.clone();
        if pending {
            meta.state = QueueState::Deferred;
            meta.next_attempt = now + self.backoff(meta.attempts).as_secs() as i64;
            meta.note = "waiting for retry".into();
            if let Err(e) = self.spool.update(meta).await {
                tracing::error!(queue_id = %id, error = %e, "cannot record delivery state");
            }
            self.spool.unclaim(&id);
        } else if let Err(e) = self.spool.remove(&id).await
            && !matches!(e, spool::SpoolError::NotFound(_))
        {
            tracing::error!(queue_id = %id, error = %e, "cannot remove delivered message");
            self.spool.unclaim(&id);
        }
    }

    /// Queues a DSN for `failed` recipients back to the sender.
    async fn bounce(&self, meta: &MessageMeta, failed: &[usize], body: &[u8]) {
        let rcpts = &meta.envelope.rcpts;
        let list: Vec<dsn::FailedRcpt<'_>> = failed
            .iter()
            .map(|&i| dsn::FailedRcpt {
                address: &rcpts[i].address,
                reason: &rcpts[i].last_reply,
            })
            .collect();
        let arrival = time_rfc2822(meta.received_at);
        let postmaster = format!("postmaster@{}", self.cfg.hostname);
        let sender = &meta.envelope.mail_from;
        let content = dsn::build(
            &self.cfg.hostname,
            &postmaster,
            sender,
            &meta.id,
            &arrival,
            &list,
            body,
        );
        match self
            .submit_local(
                &content,
                std::slice::from_ref(sender),
                &format!("DSN for {}", meta.id),
            )
            .await
        {
            Ok(dsn_id) => {
                self.metrics.delivery_dsn.inc();
                for &i in failed {
                    self.trace_event(
                        meta,
                        &rcpts[i],
                        "dsn-sent",
                        &format!("DSN queued as {dsn_id}"),
                    );
                }
            }
            Err(e) => tracing::error!(queue_id = %meta.id, error = %e, "cannot queue DSN"),
        }
    }
}

impl Delivery {
    /// Queues a message Sekisho wrote itself (a DSN, an alert e-mail) for `rcpts`, with the
    /// null return path, traced as received from `local`; delivered by the scheduler like any
    /// other (tenant recipients by their route, others by `external_route`). Returns its
    /// queue id.
    pub async fn submit_local(
        &self,
        content: &[u8],
        rcpts: &[String],
        note: &str,
    ) -> Result<String, spool::SpoolError> {
        let dir = self.directory.get();
        let rcpts: Vec<(String, i64)> = rcpts
            .iter()
            .map(|r| {
                let tenant = match dir.lookup(r) {
                    Lookup::Accept(t) => t,
                    _ => 0,
                };
                (r.clone(), tenant)
            })
            .collect();
        let envelope = Envelope {
            mail_from: String::new(),
            rcpts: rcpts
                .iter()
                .map(|(address, tenant)| RcptState::pending(address, *tenant))
                .collect(),
            eight_bit: false,
            smtputf8: false,
            outbound: false,
            require_tls: false,
        };
        let meta = MessageMeta::queued(
            new_queue_id(),
            envelope,
            unix_now(),
            content.len() as u64,
            note.to_string(),
        );
        self.spool.submit(meta.clone(), content, true).await?;
        let _ = self.trace.send(TraceRecord::Received {
            id: meta.id.clone(),
            at: meta.received_at,
            mail_from: String::new(),
            size: content.len() as u64,
            client_ip: "local".into(),
            helo: note.to_string(),
            tls: None,
            rcpts,
            verdict: None,
            score: None,
            symbols: String::new(),
        });
        // Delivered by the scheduler (a DSN must not recurse into a delivery task's slot).
        self.spool.unclaim(&meta.id);
        self.wake();
        Ok(meta.id)
    }
}

pub use proto::verdict::rfc2822 as time_rfc2822;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2822_dates() {
        assert_eq!(time_rfc2822(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            time_rfc2822(1_700_000_000),
            "Tue, 14 Nov 2023 22:13:20 +0000"
        );
        assert_eq!(time_rfc2822(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }
}
