//! The SMTP listener: second stage of the mail path (wire → **ingress** → spool → egress).
//!
//! Accepts TCP connections under a global and a per-client-IP concurrency limit, drives one
//! [`wire::Session`] per connection (timeouts, STARTTLS), and turns each complete transaction
//! into a spooled message: inspected before the reply to DATA (a reject is a 5xx, never a
//! bounce), `Received:` and verdict headers added, committed with group commit, then — and
//! only then — `250 … queued as <id>`, and handed to delivery (or sealed into the quarantine).
//!
//! # Security
//! Faces the Internet. Every read is bounded by the session's limits and an idle timeout;
//! every session by a total time limit. Bytes pipelined before a STARTTLS handshake are
//! discarded by the session. Message content is never logged.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use egress::{Delivery, TraceSink};
use inspect::{Action, Inspector, TenantRules, Verdict};
use spool::{Envelope, MessageMeta, RcptState, Spool, new_queue_id};
use store::{Lookup, SharedDirectory, TraceRecord, unix_now};
use telemetry::Metrics;
use tls::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::{
    Event, PeerInfo, RcptVerdict, RecipientPolicy, Reply, Session, SessionConfig, TlsInfo,
    Transaction,
};

/// A quarantined message to be sealed and stored.
pub struct QuarantineRequest<'a> {
    /// Queue id.
    pub id: &'a str,
    /// The tenant (one per transaction).
    pub tenant: i64,
    /// Envelope sender.
    pub mail_from: &'a str,
    /// Envelope recipients.
    pub rcpts: Vec<String>,
    /// The message as it would be delivered (trace and verdict headers included).
    pub body: &'a [u8],
    /// The verdict.
    pub verdict: &'a Verdict,
    /// Unix seconds.
    pub received_at: i64,
    /// 8BITMIME was used.
    pub eight_bit: bool,
    /// SMTPUTF8 was used.
    pub smtputf8: bool,
    /// REQUIRETLS was asked for (RFC 8689): kept for the release.
    pub require_tls: bool,
    /// The tenant's own retention in days, if it set one.
    pub retention_days: Option<u32>,
}

/// Where quarantined messages go: sealed to the tenant's key, never readable by `mx` again.
/// `Ok` only once the sealed message and its metadata are durable.
pub trait QuarantineSink: Send + Sync {
    /// Seals and stores one message.
    fn quarantine<'a>(
        &'a self,
        q: QuarantineRequest<'a>,
    ) -> inspect::BoxFuture<'a, Result<(), String>>;
}

/// Watches outbound senders. Every relayed message is counted (its recipients, per sender)
/// before it is inspected; a sender that sends too much is held, and its mail refused with a
/// `451` its own server keeps and retries, until an administrator releases it.
pub trait OutboundGuard: Send + Sync {
    /// Counts a message of `sender` (of `tenant`) to `rcpts` recipients from `client`;
    /// `Err` is the reply that refuses it.
    fn admit<'a>(
        &'a self,
        tenant: i64,
        sender: &'a str,
        client: IpAddr,
        rcpts: usize,
    ) -> inspect::BoxFuture<'a, Result<(), Reply>>;
}

/// What the ingress hands mail to and reads from.
pub struct IngressParts {
    /// The directory snapshot.
    pub directory: Arc<SharedDirectory>,
    /// The spool.
    pub spool: Spool,
    /// Delivery.
    pub delivery: Arc<Delivery>,
    /// The inspection pipeline.
    pub inspector: Arc<Inspector>,
    /// Sealed quarantine.
    pub quarantine: Arc<dyn QuarantineSink>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Trace records.
    pub trace: TraceSink,
    /// Outbound senders' counter and holds (`None`: outbound mail is not counted).
    pub outbound: Option<Arc<dyn OutboundGuard>>,
}

/// Listener settings.
#[derive(Clone)]
pub struct IngressConfig {
    /// Host name for the greeting and `Received:`.
    pub hostname: String,
    /// Protocol limits.
    pub limits: wire::Limits,
    /// Concurrent sessions overall.
    pub max_sessions: usize,
    /// Concurrent sessions per client IP.
    pub max_sessions_per_ip: usize,
    /// Longest wait for the client's next bytes.
    pub idle_timeout: Duration,
    /// Longest session.
    pub session_timeout: Duration,
    /// TLS for STARTTLS (None: not offered).
    pub tls: Option<Arc<tls::rustls::ServerConfig>>,
    /// Free space the spool keeps: below it, new mail gets `452 4.3.1`.
    pub spool_reserve: u64,
}

/// Symbols that say a part the checks need did not answer: the scanner, and DNS.
fn part_failures(verdict: &inspect::Verdict) -> (bool, bool) {
    use inspect::Symbol as S;
    let has = |list: &[S]| verdict.symbols.iter().any(|s| list.contains(&s.symbol));
    (
        has(&[S::ScannerUnavailable]),
        has(&[
            S::SpfTempError,
            S::DkimTempError,
            S::DmarcTempError,
            S::AuthTimeout,
        ]),
    )
}

/// Recipient checks against the shared directory snapshot.
struct DirectoryPolicy(Arc<SharedDirectory>);

impl RecipientPolicy for DirectoryPolicy {
    fn check(&self, rcpt: &str) -> RcptVerdict {
        match self.0.get().lookup(rcpt) {
            Lookup::Accept(tenant) => RcptVerdict::Accept { tenant },
            Lookup::UnknownUser => RcptVerdict::UnknownUser,
            Lookup::NotOurs => RcptVerdict::RelayDenied,
        }
    }

    fn relay_tenant(&self, client: IpAddr, mail_from: &str) -> Option<i64> {
        self.0.get().relay_tenant(client, mail_from)
    }
}

/// The SMTP ingress.
pub struct Ingress {
    cfg: IngressConfig,
    session_cfg: Arc<SessionConfig>,
    spool: Spool,
    delivery: Arc<Delivery>,
    inspector: Arc<Inspector>,
    quarantine: Arc<dyn QuarantineSink>,
    directory: Arc<SharedDirectory>,
    metrics: Arc<Metrics>,
    trace: TraceSink,
    outbound: Option<Arc<dyn OutboundGuard>>,
    sessions: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    /// Resolved tenant rules, valid for one directory generation.
    rules: Mutex<(i64, RulesByTenant)>,
}

/// Resolved rules per tenant id (`None`: the tenant overrides nothing).
type RulesByTenant = HashMap<i64, Option<Arc<TenantRules>>>;

/// A tenant's stored filter policy resolved against the global policy (`None`: nothing is
/// overridden). Errors name the offending setting.
pub fn tenant_rules(
    global: &inspect::Policy,
    f: &store::FilterPolicy,
    senders: &[store::SenderEntry],
) -> Result<Option<TenantRules>, String> {
    if f.is_empty() && senders.is_empty() {
        return Ok(None);
    }
    let weights: HashMap<String, f64> = f.weights.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let overridden =
        !weights.is_empty() || f.tag.is_some() || f.quarantine.is_some() || f.reject.is_some();
    let policy = if overridden {
        Some(global.overridden(&weights, f.tag, f.quarantine, f.reject)?)
    } else {
        None
    };
    Ok(Some(TenantRules {
        policy,
        protected_names: f
            .protected_names
            .iter()
            .map(|n| inspect::ProtectedName {
                name: n.name.clone(),
                addresses: n.addresses.clone(),
            })
            .collect(),
        trusted_arc: f.trusted_arc.clone(),
        senders: inspect::SenderLists::new(
            senders
                .iter()
                .map(|e| inspect::SenderRule {
                    rcpt: e.rcpt.clone(),
                    pattern: e.pattern.clone(),
                    allow: e.action == store::SenderAction::Allow,
                })
                .collect(),
        ),
    }))
}

/// Releases a client IP's session slot when dropped.
struct IpSlot {
    ip: IpAddr,
    map: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.map.lock().expect("poisoned");
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl Ingress {
    /// A new ingress.
    pub fn new(cfg: IngressConfig, parts: IngressParts) -> Arc<Self> {
        let IngressParts {
            directory,
            spool,
            delivery,
            inspector,
            quarantine,
            metrics,
            trace,
            outbound,
        } = parts;
        let session_cfg = Arc::new(SessionConfig {
            hostname: cfg.hostname.clone(),
            limits: cfg.limits.clone(),
            starttls: cfg.tls.is_some(),
            recipients: Arc::new(DirectoryPolicy(directory.clone())),
        });
        Arc::new(Self {
            rules: Mutex::new((i64::MIN, HashMap::new())),
            sessions: Arc::new(Semaphore::new(cfg.max_sessions.max(1))),
            per_ip: Arc::new(Mutex::new(HashMap::new())),
            cfg,
            session_cfg,
            spool,
            delivery,
            inspector,
            quarantine,
            directory,
            metrics,
            trace,
            outbound,
        })
    }

    /// Accepts connections until `stop_accepting`; sessions still running when `hard_stop`
    /// fires are closed with `421`. Session tasks are tracked by `tracker`.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        stop_accepting: CancellationToken,
        hard_stop: CancellationToken,
        tracker: TaskTracker,
    ) {
        let mut backoff = Duration::from_millis(5);
        loop {
            let (tcp, addr) = tokio::select! {
                _ = stop_accepting.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(x) => { backoff = Duration::from_millis(5); x }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
            };
            let this = self.clone();
            let hard_stop = hard_stop.clone();
            tracker.spawn(async move { this.connection(tcp, addr, hard_stop).await });
        }
    }

    fn admit(&self, ip: IpAddr) -> Result<(OwnedSemaphorePermit, IpSlot), Reply> {
        let permit = self
            .sessions
            .clone()
            .try_acquire_owned()
            .map_err(|_| Reply::new(421, "4.7.0", "Too many connections, try again later"))?;
        let mut map = self.per_ip.lock().expect("poisoned");
        let n = map.entry(ip).or_insert(0);
        if *n >= self.cfg.max_sessions_per_ip {
            return Err(Reply::new(
                421,
                "4.7.0",
                "Too many connections from your address, try again later",
            ));
        }
        *n += 1;
        Ok((
            permit,
            IpSlot {
                ip,
                map: self.per_ip.clone(),
            },
        ))
    }

    async fn connection(&self, mut tcp: TcpStream, addr: SocketAddr, hard_stop: CancellationToken) {
        self.metrics.smtp_connections.inc();
        let _slots = match self.admit(addr.ip()) {
            Ok(slots) => slots,
            Err(reply) => {
                self.metrics.smtp_connections_refused.inc();
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    let _ = tcp.write_all(format!("{reply}\r\n").as_bytes()).await;
                    let _ = tcp.shutdown().await;
                })
                .await;
                return;
            }
        };
        let _ = tcp.set_nodelay(true);
        self.metrics.smtp_sessions_active.inc();
        if let Err(e) = self.session(tcp, addr, hard_stop).await {
            tracing::debug!(peer = %addr, error = %e, "session ended with an I/O error");
        }
        self.metrics.smtp_sessions_active.dec();
    }

    async fn session(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
        hard_stop: CancellationToken,
    ) -> std::io::Result<()> {
        let mut stream = Stream::Plain(tcp);
        let mut session = Session::new(
            self.session_cfg.clone(),
            PeerInfo {
                ip: addr.ip(),
                port: addr.port(),
            },
        );
        let deadline = tokio::time::Instant::now() + self.cfg.session_timeout;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match session.advance() {
                Event::NeedInput => {
                    flush(&mut stream, &mut session).await?;
                    let read = tokio::select! {
                        r = tokio::time::timeout(self.cfg.idle_timeout, stream.read(&mut buf)) => r,
                        _ = tokio::time::sleep_until(deadline) => {
                            session.close_with(Reply::new(421, "4.4.2", "Session time limit exceeded, closing connection"));
                            continue;
                        }
                        _ = hard_stop.cancelled() => {
                            session.close_with(Reply::new(421, "4.3.2", "Service shutting down, try again later"));
                            continue;
                        }
                    };
                    match read {
                        Err(_) => session.close_with(Reply::new(
                            421,
                            "4.4.2",
                            "Idle timeout, closing connection",
                        )),
                        Ok(Ok(0)) => return Ok(()),
                        Ok(Ok(n)) => session.feed(&buf[..n]),
                        Ok(Err(e)) => return Err(e),
                    }
                }
                Event::StartTls => {
                    flush(&mut stream, &mut session).await?;
                    let (Stream::Plain(tcp), Some(config)) = (stream, self.cfg.tls.clone()) else {
                        return Ok(());
                    };
                    let accepted = tokio::time::timeout(
                        self.cfg.idle_timeout,
                        TlsAcceptor::from(config).accept(tcp),
                    )
                    .await;
                    let Ok(Ok(tls)) = accepted else {
                        tracing::debug!(peer = %addr, "TLS handshake failed");
                        return Ok(());
                    };
                    stream = Stream::Server(Box::new(tls));
                    let (version, cipher) = stream.tls_params().unwrap_or_default();
                    self.metrics.smtp_tls_sessions.inc();
                    session.tls_started(TlsInfo { version, cipher });
                }
                Event::Message(tx) => {
                    let result = self.accept_message(addr, *tx).await;
                    session.queued(result);
                }
                Event::Close => {
                    flush(&mut stream, &mut session).await?;
                    let _ = stream.shutdown().await;
                    return Ok(());
                }
            }
        }
    }

    /// Inspects a transaction and spools it; `Ok(queue id)` only once it is durable.
    async fn accept_message(&self, peer: SocketAddr, mut tx: Transaction) -> Result<String, Reply> {
        let started = Instant::now();
        // A full spool refuses new mail before any work, keeping room to move queued mail on.
        if !self.spool.has_room(self.cfg.spool_reserve) {
            self.metrics.smtp_messages_refused.inc();
            return Err(insufficient_storage());
        }
        let id = new_queue_id();
        let now = unix_now();
        let outbound = tx.relay_for;
        if let Some(tenant) = outbound {
            // Outbound recipients are the sending tenant's from here on: its trace, its
            // policy, its purge; the spool's outbound flag routes them out.
            for (_, t) in &mut tx.rcpts {
                *t = tenant;
            }
            if let Some(guard) = &self.outbound
                && let Err(reply) = guard
                    .admit(tenant, &tx.mail_from, peer.ip(), tx.rcpts.len())
                    .await
            {
                self.metrics.smtp_messages_refused.inc();
                self.trace_received(&id, now, peer, &tx, tx.body.len(), None);
                for (rcpt, tenant) in &tx.rcpts {
                    self.trace_event(&id, rcpt, *tenant, "held", &reply.to_string());
                }
                tracing::info!(queue_id = %id, client = %peer.ip(), "outbound message refused: sender held");
                return Err(reply);
            }
        }
        let env = inspect::Envelope {
            client_ip: peer.ip(),
            helo: tx.helo.clone(),
            mail_from: tx.mail_from.clone(),
            rcpts: tx.rcpts.iter().map(|(a, _)| a.clone()).collect(),
            protected_domains: match outbound {
                None => self.tenant_domains(&tx.rcpts),
                Some(_) => Vec::new(),
            },
            // The session admits one tenant per transaction.
            tenant: tx.rcpts.first().map(|(_, t)| *t),
            rules: tx.rcpts.first().and_then(|(_, t)| self.rules_for(*t)),
            received_at: Some(now),
            outbound: outbound.is_some(),
        };
        let original = inspect::strip_forged_headers(&tx.body, &self.cfg.hostname);
        let verdict = self.inspector.inspect(&original, &env).await;
        self.metrics.inspect_cpu.observe(verdict.cpu);
        let slot = match verdict.action {
            Action::Deliver => 0,
            Action::Tag => 1,
            Action::Quarantine => 2,
            Action::Reject => 3,
            Action::Tempfail => 4,
        };
        self.metrics.verdicts[slot].inc();
        self.count_parts(&verdict, !env.outbound);
        let refusal = match verdict.action {
            // Outbound mail the policy would quarantine is refused: the sender is the
            // tenant's own user, whose server tells them (no backscatter to a stranger).
            Action::Reject | Action::Quarantine if outbound.is_some() => Some(Reply::new(
                550,
                "5.7.1",
                format!(
                    "Message refused by outbound content policy (score {:.1}: {})",
                    verdict.score,
                    verdict.reasons()
                ),
            )),
            Action::Reject => Some(Reply::new(
                554,
                "5.7.1",
                format!(
                    "Message rejected by content policy (score {:.1}: {})",
                    verdict.score,
                    verdict.reasons()
                ),
            )),
            Action::Tempfail => Some(Reply::new(
                451,
                "4.7.1",
                "Message cannot be checked now, try again later",
            )),
            _ => None,
        };
        if let Some(reply) = refusal {
            self.metrics.smtp_messages_refused.inc();
            self.trace_received(&id, now, peer, &tx, original.len(), Some(&verdict));
            for (rcpt, tenant) in &tx.rcpts {
                self.trace_event(
                    &id,
                    rcpt,
                    *tenant,
                    verdict.action.name(),
                    &reply.to_string(),
                );
            }
            tracing::info!(queue_id = %id, client = %peer.ip(), action = verdict.action.name(), score = verdict.score, "message refused by policy");
            return Err(reply);
        }
        let received = received_header(&self.cfg.hostname, &tx, peer.ip(), &id, now);
        // Verdicts and authentication results are for the tenant's own readers: outbound mail
        // leaves without them.
        let verdict_headers = match outbound {
            None => verdict.headers(),
            Some(_) => String::new(),
        };
        let mut body = Vec::with_capacity(received.len() + verdict_headers.len() + original.len());
        body.extend_from_slice(received.as_bytes());
        body.extend_from_slice(verdict_headers.as_bytes());
        body.extend_from_slice(&original);
        if verdict.action == Action::Quarantine {
            let note = format!(
                "quarantined (sealed): score {:.2}: {}",
                verdict.score,
                verdict.symbol_list()
            );
            let sealed =
                self.quarantine
                    .quarantine(QuarantineRequest {
                        id: &id,
                        tenant: tx.rcpts.first().map_or(0, |(_, t)| *t),
                        mail_from: &tx.mail_from,
                        rcpts: tx.rcpts.iter().map(|(a, _)| a.clone()).collect(),
                        body: &body,
                        verdict: &verdict,
                        received_at: now,
                        eight_bit: tx.eight_bit,
                        smtputf8: tx.smtputf8,
                        require_tls: tx.require_tls,
                        retention_days: tx.rcpts.first().and_then(|(_, t)| {
                            self.directory.get().tenant(*t)?.filter.quarantine_days
                        }),
                    })
                    .await;
            if let Err(e) = sealed {
                tracing::error!(queue_id = %id, error = %e, "quarantine failed; message refused with 451");
                self.metrics.smtp_messages_refused.inc();
                return Err(Reply::new(
                    451,
                    "4.3.0",
                    "Message cannot be quarantined now, try again later",
                ));
            }
            self.accepted(&id, now, peer, &tx, body.len(), &verdict, started);
            for (rcpt, tenant) in &tx.rcpts {
                self.trace_event(&id, rcpt, *tenant, "quarantined", &note);
            }
            return Ok(id);
        }
        let envelope = Envelope {
            mail_from: tx.mail_from.clone(),
            rcpts: tx
                .rcpts
                .iter()
                .map(|(address, tenant)| RcptState::pending(address, *tenant))
                .collect(),
            eight_bit: tx.eight_bit,
            smtputf8: tx.smtputf8,
            outbound: outbound.is_some(),
            require_tls: tx.require_tls,
        };
        let meta = MessageMeta::queued(id.clone(), envelope, now, body.len() as u64, String::new());
        if let Err(e) = self.spool.submit(meta.clone(), &body, true).await {
            self.metrics.smtp_messages_refused.inc();
            if let spool::SpoolError::Io(io) = &e
                && io.kind() == std::io::ErrorKind::StorageFull
            {
                tracing::error!(error = %e, "spool full; message refused with 452");
                return Err(insufficient_storage());
            }
            tracing::error!(error = %e, "spool commit failed; message refused with 451");
            return Err(Reply::new(
                451,
                "4.3.0",
                "Local error in processing, try again later",
            ));
        }
        self.accepted(&id, now, peer, &tx, body.len(), &verdict, started);
        // Mail the gateway let through teaches the first-contact history; spam does not.
        if matches!(verdict.action, Action::Deliver | Action::Tag)
            && outbound.is_none()
            && let (Some(author), Some(tenant)) = (&verdict.author, env.tenant)
            && let Some(history) = self.inspector.senders()
            && let Some(sender) = history.record(tenant, author)
        {
            let _ = self.trace.send(TraceRecord::SenderSeen {
                tenant,
                sender,
                at: now,
            });
        }
        self.delivery.dispatch(meta, Arc::new(body));
        Ok(id)
    }

    /// Counts, traces and logs an acknowledged message.
    #[allow(clippy::too_many_arguments)] // one call site pair; a struct would only rename them
    fn accepted(
        &self,
        id: &str,
        now: i64,
        peer: SocketAddr,
        tx: &Transaction,
        size: usize,
        verdict: &Verdict,
        started: Instant,
    ) {
        self.metrics.smtp_accept_latency.observe(started.elapsed());
        self.metrics.smtp_messages_accepted.inc();
        self.metrics.smtp_bytes_accepted.add(size as u64);
        self.trace_received(id, now, peer, tx, size, Some(verdict));
        tracing::info!(queue_id = %id, client = %peer.ip(), size, action = verdict.action.name(), "message accepted");
    }

    /// The rules of a tenant, resolved once per directory generation.
    fn rules_for(&self, tenant: i64) -> Option<Arc<TenantRules>> {
        let dir = self.directory.get();
        let mut cache = self.rules.lock().expect("poisoned");
        if cache.0 != dir.generation() {
            *cache = (dir.generation(), HashMap::new());
        }
        cache
            .1
            .entry(tenant)
            .or_insert_with(|| {
                let info = dir.tenant(tenant)?;
                match tenant_rules(self.inspector.policy(), &info.filter, &info.senders) {
                    Ok(r) => r.map(Arc::new),
                    Err(e) => {
                        tracing::warn!(tenant = %info.name, error = %e, "tenant filter policy ignored");
                        None
                    }
                }
            })
            .clone()
    }

    /// The domains of the tenants that the recipients belong to.
    fn tenant_domains(&self, rcpts: &[(String, i64)]) -> Vec<String> {
        let dir = self.directory.get();
        let mut tenants: Vec<i64> = rcpts.iter().map(|(_, t)| *t).collect();
        tenants.sort_unstable();
        tenants.dedup();
        tenants
            .iter()
            .filter_map(|t| dir.tenant(*t))
            .flat_map(|t| t.domains.iter().cloned())
            .collect()
    }

    /// Counts the parts that failed this message's checks (the node's health watch raises
    /// alerts from these counters).
    fn count_parts(&self, verdict: &inspect::Verdict, inbound: bool) {
        if inbound {
            self.metrics.auth_checked.inc();
        }
        let (scanner, dns) = part_failures(verdict);
        if scanner {
            self.metrics.scanner_unavailable.inc();
        }
        if dns {
            self.metrics.auth_dns_temperror.inc();
        }
    }

    fn trace_received(
        &self,
        id: &str,
        at: i64,
        peer: SocketAddr,
        tx: &Transaction,
        size: usize,
        verdict: Option<&Verdict>,
    ) {
        let _ = self.trace.send(TraceRecord::Received {
            id: id.to_string(),
            at,
            mail_from: tx.mail_from.clone(),
            size: size as u64,
            client_ip: peer.ip().to_string(),
            helo: tx.helo.clone(),
            tls: tx
                .tls
                .as_ref()
                .map(|t| format!("{} {}", t.version, t.cipher)),
            rcpts: tx.rcpts.clone(),
            verdict: verdict.map(|v| v.action.name().to_string()),
            score: verdict.map(|v| v.score),
            symbols: verdict.map(Verdict::symbol_list).unwrap_or_default(),
        });
    }

    fn trace_event(&self, id: &str, rcpt: &str, tenant: i64, event: &str, detail: &str) {
        let _ = self.trace.send(TraceRecord::Event(store::TraceEvent {
            message_id: id.to_string(),
            rcpt: rcpt.to_string(),
            tenant_id: Some(tenant),
            at: unix_now(),
            event: event.to_string(),
            detail: detail.to_string(),
        }));
    }
}

/// The reply for mail that does not fit in the spool now (RFC 3463 4.3.1).
fn insufficient_storage() -> Reply {
    Reply::new(452, "4.3.1", "Insufficient system storage, try again later")
}

async fn flush(stream: &mut Stream, session: &mut Session) -> std::io::Result<()> {
    if session.has_output() {
        let out = session.take_output();
        stream.write_all(&out).await?;
        stream.flush().await?;
    }
    Ok(())
}

/// The `Received:` trace header (RFC 5321 section 4.4), with TLS details (RFC 8314 style
/// comment) and `for` only when there is a single recipient.
pub fn received_header(hostname: &str, tx: &Transaction, ip: IpAddr, id: &str, now: i64) -> String {
    let mut h = format!(
        "Received: from {} ([{ip}])\r\n\tby {hostname} (Sekisho) with {} id {id}",
        tx.helo, tx.protocol
    );
    if let Some(tls) = &tx.tls {
        h.push_str(&format!(
            "\r\n\t(version={} cipher={})",
            tls.version, tls.cipher
        ));
    }
    if let [(rcpt, _)] = tx.rcpts.as_slice() {
        h.push_str(&format!("\r\n\tfor <{rcpt}>"));
    }
    h.push_str(&format!(";\r\n\t{}\r\n", egress::time_rfc2822(now)));
    h
}
