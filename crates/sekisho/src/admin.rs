//! The node's admin surfaces: the loopback HTTP listener (`/healthz`, `/metrics`) and the
//! local admin socket (`<data_dir>/admin.sock`, mode 0660: root and, when the roles run under their own users, the vault) that the CLI uses for queue
//! commands and to make the node reload its directory at once.
//!
//! The socket speaks `proto::mx`: one JSON request per line (`{"cmd": "...", ...}`) and one
//! reply per line (`{"ok": true, "data": ...}` or `{"ok": false, "error": "...", "refusal": ...}`),
//! typed on both ends.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use proto::mx::{MxClient, MxRequest, QueueCounts, QueueEntry, QueueEnvelope, QueueRcpt, Reply};
use proto::{QueueId, Refusal, Refused, TenantId};
use spool::{Envelope, MessageMeta, QueueState, RcptState, RcptStatus, Spool};
use store::{MailStore, TraceEvent, TraceRecord};
use telemetry::Metrics;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// What the admin surfaces need from the running node.
pub struct Node {
    pub spool: Spool,
    pub store: MailStore,
    pub metrics: Arc<Metrics>,
    pub delivery: Arc<egress::Delivery>,
    pub directory: Arc<store::SharedDirectory>,
    pub trace: egress::TraceSink,
    pub bayes: Arc<inspect::stages::bayes::Bayes>,
    pub bayes_generations: std::sync::Mutex<std::collections::HashMap<i64, i64>>,
    pub senders: Arc<inspect::stages::contact::SenderHistory>,
    /// Last sender-history row loaded.
    pub senders_loaded: std::sync::atomic::AtomicI64,
    pub quarantine: Arc<crate::quarantine::SealedQuarantine>,
    pub blobs: Arc<dyn store::blobs::BlobStore>,
    pub vault: proto::client::VaultClient,
    /// mx's role token (its sessionless opens need it: the vault refuses them from a role
    /// process without it).
    pub vault_token: Option<proto::vault::RoleToken>,
    /// The quarantine digest (`None`: off).
    pub digest: Option<Arc<egress::digest::Digest>>,
    /// Test hooks: the database as mx connects to it (to play an intruder using it).
    #[cfg(feature = "test-hooks")]
    pub hook_db: Option<store::StoreUrl>,
}

impl Node {
    /// True if `t` is the node's role token (which only the vault and mx hold).
    fn genuine(&self, t: &proto::vault::RoleToken) -> bool {
        self.vault_token
            .as_ref()
            .is_some_and(|mine| proto::ct_eq(mine.0.as_bytes(), t.0.as_bytes()))
    }

    /// Reloads Bayes models that were trained since they were loaded.
    pub async fn reload_bayes(&self) -> Result<usize> {
        let n = crate::serve::load_bayes(&self.store, &self.bayes, &self.bayes_generations).await?;
        if n > 0 {
            tracing::info!(models = n, "Bayes models reloaded");
        }
        Ok(n)
    }

    /// Loads sender-history rows written since the last load (by this node or another).
    pub async fn reload_senders(&self) -> Result<usize> {
        use std::sync::atomic::Ordering;
        let mut last = self.senders_loaded.load(Ordering::Relaxed);
        let n = crate::serve::load_senders(&self.store, &self.senders, &mut last).await?;
        self.senders_loaded.store(last, Ordering::Relaxed);
        Ok(n)
    }

    /// Rebuilds the directory snapshot if the store changed; true if it did.
    pub async fn reload_directory(&self) -> Result<bool> {
        let generation = self.store.generation().await?;
        if generation == self.directory.get().generation() {
            return Ok(false);
        }
        let newer = self.store.directory().await?;
        let terminated = self.directory.get().lost_tenants(&newer);
        self.directory.set(newer);
        if terminated {
            // A terminated tenant's queued mail fails now (5.1.6) rather than at its next retry,
            // held mail included; once failed, each message's key is destroyed.
            self.release_terminated().await?;
            let n = self.spool.flush().await?;
            self.delivery.wake();
            tracing::info!(
                rescheduled = n,
                "a tenant was terminated; its queued mail is being failed"
            );
        }
        // A tenant's key may have changed with it (terminated, customer key registered).
        self.quarantine.forget_recipients();
        // …and its connector secrets.
        self.delivery.forget_secrets();
        tracing::info!(generation, "directory reloaded");
        Ok(true)
    }
}

async fn healthz(State(node): State<Arc<Node>>) -> impl IntoResponse {
    match node.store.generation().await {
        Ok(_) => (StatusCode::OK, "ok\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n"),
    }
}

async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let m = &node.metrics;
    let counts = node.spool.counts();
    let get = |s| counts.get(&s).copied().unwrap_or(0) as i64;
    m.queue_active.set(get(QueueState::Active));
    m.queue_deferred.set(get(QueueState::Deferred));
    m.queue_hold.set(get(QueueState::Hold));
    m.queue_corrupt.set(get(QueueState::Corrupt));
    let (frames, syncs) = node.spool.sync_stats();
    m.spool_frames.set(frames as i64);
    m.spool_syncs.set(syncs as i64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m.render(),
    )
}

/// Serves `/healthz` and `/metrics` until `shutdown`.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    node: Arc<Node>,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(node);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "admin HTTP listener failed");
    }
}

pub use proto::mx::socket_path;

/// Binds the admin socket (replacing a stale one) with mode 0660 (owner mx, group: the vault's).
pub fn bind_socket(path: &Path) -> Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove stale {}", path.display())),
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
    // The vault (its group, when the roles run under their own users) and root connect.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Serves the admin socket until `shutdown`.
pub async fn serve_socket(listener: UnixListener, node: Arc<Node>, shutdown: CancellationToken) {
    loop {
        let conn = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = listener.accept() => c,
        };
        let Ok((stream, _)) = conn else { continue };
        let node = node.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(30), handle(stream, node)).await;
        });
    }
}

/// Reads one request line and answers it. A role process (the portal) may ask only what
/// [`MxRequest::for_roles`] allows; anything else is refused, recorded as `role-overreach`
/// and raised as a critical alert.
async fn handle(stream: UnixStream, node: Arc<Node>) -> Result<()> {
    let from_role = vault::server::peer_is_role(&stream);
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    BufReader::new(r.take(proto::mx::MAX_LINE))
        .read_line(&mut line)
        .await?;
    // Hooks answer the test's own process only, never a role (the portal).
    #[cfg(feature = "test-hooks")]
    if !from_role && let Ok(hook) = serde_json::from_str::<crate::hooks::Hook>(&line) {
        let data = crate::hooks::run(&node, hook).await;
        let line = serde_json::to_string(&Reply::answer(&data))?;
        w.write_all(format!("{line}\n").as_bytes()).await?;
        return Ok(());
    }
    let reply = match serde_json::from_str::<MxRequest>(&line) {
        Ok(req) if from_role && !req.for_roles(|t| node.genuine(t)) => {
            overreach(&node, req.kind()).await
        }
        Ok(req) => match execute(&node, req).await {
            Ok(reply) => reply,
            Err(e) => Reply::failed(format!("{e:#}")),
        },
        Err(e) => Reply::refused(&Refused::invalid(format!("bad request: {e}"))),
    };
    let line = serde_json::to_string(&reply)?;
    w.write_all(format!("{line}\n").as_bytes()).await?;
    Ok(())
}

impl Node {
    /// Makes held mail of terminated tenants due (delivery then fails it with 5.1.6 and
    /// destroys its key), and finishes at once what cannot be delivered (its content lost).
    async fn release_terminated(&self) -> Result<()> {
        let dir = self.directory.get();
        let gone = |m: &spool::MessageMeta| {
            m.envelope
                .rcpts
                .iter()
                .filter(|r| r.status == RcptStatus::Pending)
                .all(|r| r.tenant != 0 && dir.tenant(r.tenant).is_none())
        };
        for mut m in self.spool.list().into_iter().filter(|m| gone(m)) {
            match m.state {
                QueueState::Hold => {
                    m.state = QueueState::Active;
                    m.next_attempt = 0;
                    m.note = "tenant terminated".into();
                    self.spool.update(m).await?;
                }
                QueueState::Corrupt => self.spool.remove(&m.id).await?,
                QueueState::Active | QueueState::Deferred => {}
            }
        }
        Ok(())
    }
}

/// A role asked what only the local CLI may: refused, recorded and alerted.
async fn overreach(node: &Node, what: &str) -> Reply {
    let summary = format!(
        "a role process sent mx's admin socket a {what:?} request without the vault's token or only the local CLI may send; the portal (which has no token) may be compromised"
    );
    tracing::error!("{summary}");
    let _ = node
        .store
        .alert_raise(&store::NewAlert {
            by: proto::Process::Mx,
            rule: "role-overreach",
            severity: proto::Severity::Critical,
            dedupe_key: &format!("role-overreach:admin-socket:{what}"),
            principal: "role",
            tenant_id: None,
            summary: &summary,
        })
        .await;
    Reply::refused(&Refused::new(
        Refusal::NotForRoles,
        "only the local CLI may ask this",
    ))
}

fn entry(m: &MessageMeta) -> QueueEntry {
    QueueEntry {
        id: m.id.clone(),
        envelope: QueueEnvelope {
            mail_from: m.envelope.mail_from.clone(),
            rcpts: m
                .envelope
                .rcpts
                .iter()
                .map(|r| QueueRcpt {
                    address: r.address.clone(),
                    tenant: TenantId(r.tenant),
                    status: match r.status {
                        RcptStatus::Pending => proto::mx::RcptStatus::Pending,
                        RcptStatus::Delivered => proto::mx::RcptStatus::Delivered,
                        RcptStatus::Failed => proto::mx::RcptStatus::Failed,
                    },
                    last_reply: r.last_reply.clone(),
                })
                .collect(),
            eight_bit: m.envelope.eight_bit,
            smtputf8: m.envelope.smtputf8,
            outbound: m.envelope.outbound,
        },
        received_at: m.received_at,
        state: state(m.state),
        attempts: m.attempts,
        next_attempt: m.next_attempt,
        size: m.size,
        note: m.note.clone(),
    }
}

fn state(s: QueueState) -> proto::mx::QueueState {
    match s {
        QueueState::Active => proto::mx::QueueState::Active,
        QueueState::Deferred => proto::mx::QueueState::Deferred,
        QueueState::Hold => proto::mx::QueueState::Hold,
        QueueState::Corrupt => proto::mx::QueueState::Corrupt,
    }
}

/// The queue's counts by state (no addresses): what a role may know of it.
fn summary(spool: &Spool) -> QueueCounts {
    let now = store::unix_now();
    let mut c = QueueCounts::default();
    for m in spool.list() {
        *c.by_state.entry(state(m.state)).or_insert(0) += 1;
        c.bytes += m.size;
        let age = now - m.received_at;
        c.oldest_seconds = Some(c.oldest_seconds.map_or(age, |o| o.max(age)));
    }
    c
}

fn answer<A: proto::acts::Ask>(a: &A::Answer) -> Reply {
    Reply::answer(a)
}

/// The message `id` in the queue, or a refusal saying it is not there.
fn queued(spool: &Spool, id: &QueueId) -> Result<MessageMeta> {
    spool
        .get(id.as_str())
        .with_context(|| format!("no message {id} in the queue"))
}

async fn execute(node: &Node, req: MxRequest) -> Result<Reply> {
    use proto::mx::{
        Deleted, DigestSend, Flushed, Held, QuarantineRelease, QueueDelete, QueueFlush, QueueHold,
        QueueList, QueueRelease, QueueShow, QueueSummary, Released, Reload, Reloaded,
    };
    let spool = &node.spool;
    Ok(match req {
        MxRequest::Reload(_) => answer::<Reload>(&Reloaded {
            reloaded: node.reload_directory().await?,
            bayes_models: node.reload_bayes().await?,
        }),
        MxRequest::QueueList(_) => answer::<QueueList>(&spool.list().iter().map(entry).collect()),
        MxRequest::QueueShow(r) => answer::<QueueShow>(&entry(&queued(spool, &r.id)?)),
        MxRequest::QueueSummary(_) => answer::<QueueSummary>(&summary(spool)),
        MxRequest::QueueFlush(_) => {
            let flushed = spool.flush().await?;
            node.delivery.wake();
            answer::<QueueFlush>(&Flushed { flushed })
        }
        MxRequest::QueueDelete(r) => {
            queue_delete(node, &r.id).await?;
            answer::<QueueDelete>(&Deleted {
                deleted: r.id.to_string(),
            })
        }
        MxRequest::QueueHold(r) => {
            let mut meta = queued(spool, &r.id)?;
            meta.state = QueueState::Hold;
            meta.note = "held by an operator".into();
            spool.update(meta).await?;
            answer::<QueueHold>(&Held {
                held: r.id.to_string(),
            })
        }
        MxRequest::QueueRelease(r) => {
            let mut meta = queued(spool, &r.id)?;
            if meta.state != QueueState::Hold {
                bail!("message {} is not on hold (state {:?})", r.id, meta.state);
            }
            meta.state = QueueState::Active;
            meta.next_attempt = 0;
            meta.note.clear();
            spool.update(meta).await?;
            node.delivery.wake();
            answer::<QueueRelease>(&Released {
                released: r.id.to_string(),
            })
        }
        MxRequest::QuarantineRelease(r) => {
            match quarantine_release(node, &r.id, &r.principal, r.session.as_deref()).await {
                Ok(()) => answer::<QuarantineRelease>(&Released {
                    released: r.id.to_string(),
                }),
                Err(ReleaseError::Refused(refused)) => Reply::refused(&refused),
                Err(ReleaseError::Failed(e)) => return Err(e),
            }
        }
        MxRequest::SpoolStats(_) => {
            let s = spool.stats();
            answer::<proto::mx::SpoolStats>(&proto::mx::SpoolFigures {
                messages: s.messages,
                live_keys: s.live_keys,
                destroyed_keys: s.destroyed_keys,
                destroyed_since_start: s.destroyed_since_start,
                segments: s.segments,
                segments_awaiting_compaction: s.segments_awaiting_compaction,
            })
        }
        MxRequest::DigestSend(_) => match &node.digest {
            None => bail!(
                "the quarantine digest is off on this node ([digest] enabled = false, or no portal)"
            ),
            Some(d) => answer::<DigestSend>(&d.send().await?),
        },
    })
}

/// Deletes one queued message; its pending recipients are recorded as deleted (no DSN).
async fn queue_delete(node: &Node, id: &QueueId) -> Result<()> {
    let meta = queued(&node.spool, id)?;
    node.spool.remove(id.as_str()).await?;
    for r in meta
        .envelope
        .rcpts
        .iter()
        .filter(|r| r.status == RcptStatus::Pending)
    {
        let _ = node.trace.send(TraceRecord::Event(TraceEvent {
            message_id: id.to_string(),
            rcpt: r.address.clone(),
            tenant_id: (r.tenant != 0).then_some(r.tenant),
            at: store::unix_now(),
            event: "deleted".into(),
            detail: "deleted by an operator (sekisho queue delete)".into(),
        }));
    }
    Ok(())
}

/// Why a release did not happen: the vault refused (the person can act on it), or
/// something failed.
enum ReleaseError {
    Refused(Refused),
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for ReleaseError {
    fn from(e: E) -> Self {
        ReleaseError::Failed(e.into())
    }
}

/// Releases a quarantined message: the vault opens it for this principal (or checks the
/// session's user), and it is queued with its original envelope and delivered.
async fn quarantine_release(
    node: &Node,
    id: &QueueId,
    principal: &str,
    session: Option<&str>,
) -> Result<(), ReleaseError> {
    let item = match node.store.quarantine_get(id.as_str()).await {
        Ok(i) => i,
        Err(store::StoreError::NotFound(m)) => {
            return Err(ReleaseError::Refused(Refused::not_found(m)));
        }
        Err(e) => return Err(e.into()),
    };
    let opened = node
        .vault
        .open_quarantine(proto::client::OpenQuarantine {
            id,
            purpose: proto::vault::Purpose::Release,
            principal,
            reason: "released for delivery",
            session,
            role_token: node.vault_token.as_ref(),
            lockbox: None,
            break_glass: false,
        })
        .await;
    let plain = match opened {
        Ok(p) => p,
        Err(proto::client::CallError::Refused(r)) => return Err(ReleaseError::Refused(r)),
        Err(e) => return Err(e.into()),
    };
    let envelope = Envelope {
        mail_from: item.mail_from.clone(),
        rcpts: item
            .rcpts
            .iter()
            .map(|a| RcptState::pending(a, item.tenant_id))
            .collect(),
        eight_bit: item.eight_bit,
        smtputf8: item.smtputf8,
        outbound: false,
        require_tls: item.require_tls,
    };
    let meta = MessageMeta::queued(
        id.to_string(),
        envelope,
        item.received_at,
        plain.len() as u64,
        format!("released from quarantine by {principal}"),
    );
    node.spool.submit(meta.clone(), &plain, true).await?;
    node.store.quarantine_remove(id.as_str()).await?;
    if let Err(e) = node.blobs.delete(&item.blob).await {
        tracing::error!(error = %e, %id, "released message's sealed blob not deleted");
    }
    node.store
        .record(&store::NewRecord {
            principal,
            action: "release",
            tenant_id: Some(item.tenant_id),
            object: id.as_str(),
            outcome: "ok",
            ..store::NewRecord::by(proto::Process::Mx)
        })
        .await?;
    for rcpt in &item.rcpts {
        let _ = node.trace.send(TraceRecord::Event(TraceEvent {
            message_id: id.to_string(),
            rcpt: rcpt.clone(),
            tenant_id: Some(item.tenant_id),
            at: store::unix_now(),
            event: "released".into(),
            detail: format!("released from quarantine by {principal}"),
        }));
    }
    node.delivery.dispatch(meta, Arc::new(plain.to_vec()));
    Ok(())
}

/// The admin socket client of the node at `data_dir` (the CLI's; long operations like a
/// digest run get a minute).
pub fn client(data_dir: &Path) -> MxClient {
    MxClient::new(data_dir, Duration::from_secs(60))
}
