//! The node's admin surfaces: the loopback HTTP listener (`/healthz`, `/metrics`) and the
//! local admin socket (`<data_dir>/admin.sock`, mode 0600) that the CLI uses for queue
//! commands and to make the node reload its directory at once.
//!
//! The socket speaks one JSON object per line each way: a request `{"cmd": "...", ...}` and a
//! reply `{"ok": true, "data": ...}` or `{"ok": false, "error": "..."}`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use spool::{Envelope, MessageMeta, QueueState, RcptState, RcptStatus, Spool};
use store::{Store, TraceEvent, TraceRecord};
use telemetry::Metrics;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// What the admin surfaces need from the running node.
pub struct Node {
    pub spool: Spool,
    pub store: Store,
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
    pub vault: vault::client::VaultClient,
    /// mx's role token (its sessionless opens need it: the vault refuses them from a role
    /// process without it).
    pub vault_token: Option<vault::proto::RoleToken>,
    /// The quarantine digest (`None`: off).
    pub digest: Option<crate::digest::DigestConfig>,
}

impl Node {
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
            // A terminated tenant's queued mail fails now (5.1.6) rather than at its next retry.
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

/// The environment variable that turns on test hooks (never set in production).
pub const TEST_HOOKS_ENV: &str = "SEKISHO_TEST_HOOKS";

/// A request on the admin socket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// Test hook (only with `SEKISHO_TEST_HOOKS=1`): try to run `/bin/sh -c "touch PATH"` from
    /// inside mx, as an attacker with code execution would. The sandbox must stop it.
    TestExec { path: String },
    /// Test hook (only with `SEKISHO_TEST_HOOKS=1`): obtain a tenant's `smtp-auth` secret from
    /// the vault with mx's token, as code running inside mx could.
    TestUseSecret { tenant: i64 },
    /// Reload the directory from the store now.
    Reload,
    /// All queued messages.
    QueueList,
    /// One message's metadata.
    QueueShow { id: String },
    /// Make deferred messages due now.
    QueueFlush,
    /// Delete one message (its pending recipients are recorded as deleted, no DSN).
    QueueDelete { id: String },
    /// Put a message on hold.
    QueueHold { id: String },
    /// Release a held message.
    QueueRelease { id: String },
    /// Send the quarantine digests of everything quarantined since the last run, now.
    DigestSend,
    /// Release a quarantined message: the vault opens it for this purpose and principal, and it
    /// is delivered with its original envelope.
    QuarantineRelease {
        id: String,
        principal: String,
        /// A portal user's session: the vault checks it and what the user may release.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
    },
}

/// The socket path of a node.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// Binds the admin socket (replacing a stale one) with mode 0600.
pub fn bind_socket(path: &Path) -> Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove stale {}", path.display())),
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
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

/// What a role process (the portal) may ask on the admin socket: a reload, reading the queue,
/// and releasing quarantined mail for a logged-in user's session (the vault checks it). The
/// rest — deleting, holding or flushing mail, sessionless releases, test hooks — only the
/// local CLI may ask; a compromised portal must not be able to.
fn allowed_for_role(req: &Request) -> bool {
    matches!(
        req,
        Request::Reload
            | Request::QueueList
            | Request::QueueShow { .. }
            | Request::QuarantineRelease {
                session: Some(_),
                ..
            }
    )
}

async fn handle(stream: UnixStream, node: Arc<Node>) -> Result<()> {
    let from_role = vault::server::peer_is_role(&stream);
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    BufReader::new(r.take(64 * 1024))
        .read_line(&mut line)
        .await?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(req) if from_role && !allowed_for_role(&req) => {
            let what = serde_json::from_str::<Value>(&line)
                .ok()
                .and_then(|v| v["cmd"].as_str().map(str::to_string))
                .unwrap_or_default();
            let summary = format!(
                "a role process (the portal) sent mx's admin socket a {what:?} request only the local CLI may send; the role may be compromised"
            );
            tracing::error!("{summary}");
            let _ = node
                .store
                .alert_raise(&store::NewAlert {
                    rule: "role-overreach",
                    severity: "critical",
                    dedupe_key: &format!("role-overreach:admin-socket:{what}"),
                    principal: "role",
                    tenant_id: None,
                    summary: &summary,
                })
                .await;
            json!({"ok": false, "error": "only the local CLI may ask this"})
        }
        Ok(req) => match execute(&node, req).await {
            Ok(data) => json!({"ok": true, "data": data}),
            Err(e) => json!({"ok": false, "error": format!("{e:#}")}),
        },
        Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
    };
    w.write_all(format!("{reply}\n").as_bytes()).await?;
    Ok(())
}

async fn execute(node: &Node, req: Request) -> Result<Value> {
    let spool = &node.spool;
    let get = |id: &str| {
        spool
            .get(id)
            .with_context(|| format!("no message {id} in the queue"))
    };
    Ok(match req {
        Request::TestExec { path } => {
            if std::env::var(TEST_HOOKS_ENV).as_deref() != Ok("1") {
                anyhow::bail!("test hooks are off");
            }
            let status = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("touch '{path}'"))
                .status();
            json!({ "ran": status.is_ok_and(|s| s.success()) })
        }
        Request::TestUseSecret { tenant } => {
            if std::env::var(TEST_HOOKS_ENV).as_deref() != Ok("1") {
                anyhow::bail!("test hooks are off");
            }
            let got = node
                .delivery
                .obtain_secret(tenant, egress::secrets::SecretKind::SmtpAuth)
                .await;
            json!({ "obtained": got.is_ok() })
        }
        Request::Reload => json!({
            "reloaded": node.reload_directory().await?,
            "bayes_models": node.reload_bayes().await?,
        }),
        Request::QueueList => serde_json::to_value(spool.list())?,
        Request::QueueShow { id } => serde_json::to_value(get(&id)?)?,
        Request::QueueFlush => {
            let n = spool.flush().await?;
            node.delivery.wake();
            json!({ "flushed": n })
        }
        Request::QueueDelete { id } => {
            let meta = get(&id)?;
            spool.remove(&id).await?;
            for r in meta
                .envelope
                .rcpts
                .iter()
                .filter(|r| r.status == RcptStatus::Pending)
            {
                let _ = node.trace.send(TraceRecord::Event(TraceEvent {
                    message_id: id.clone(),
                    rcpt: r.address.clone(),
                    tenant_id: (r.tenant != 0).then_some(r.tenant),
                    at: store::unix_now(),
                    event: "deleted".into(),
                    detail: "deleted by an operator (sekisho queue delete)".into(),
                }));
            }
            json!({ "deleted": id })
        }
        Request::QueueHold { id } => {
            let mut meta = get(&id)?;
            meta.state = QueueState::Hold;
            meta.note = "held by an operator".into();
            spool.update(meta).await?;
            json!({ "held": id })
        }
        Request::QuarantineRelease {
            id,
            principal,
            session,
        } => {
            let item = node.store.quarantine_get(&id).await?;
            let plain = node
                .vault
                .open_quarantine_as(
                    &id,
                    vault::proto::Purpose::Release,
                    &principal,
                    "released for delivery",
                    session.as_deref(),
                    node.vault_token.as_ref(),
                )
                .await?;
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
            };
            let meta = MessageMeta::queued(
                id.clone(),
                envelope,
                item.received_at,
                plain.len() as u64,
                format!("released from quarantine by {principal}"),
            );
            spool.submit(meta.clone(), &plain, true).await?;
            node.store.quarantine_remove(&id).await?;
            if let Err(e) = node.blobs.delete(&item.blob).await {
                tracing::error!(error = %e, id, "released message's sealed blob not deleted");
            }
            node.store
                .record(&store::NewRecord {
                    principal: &principal,
                    role: "mx",
                    action: "release",
                    tenant_id: Some(item.tenant_id),
                    object: &id,
                    outcome: "ok",
                    ..Default::default()
                })
                .await?;
            for rcpt in &item.rcpts {
                let _ = node.trace.send(TraceRecord::Event(TraceEvent {
                    message_id: id.clone(),
                    rcpt: rcpt.clone(),
                    tenant_id: Some(item.tenant_id),
                    at: store::unix_now(),
                    event: "released".into(),
                    detail: format!("released from quarantine by {principal}"),
                }));
            }
            node.delivery.dispatch(meta, Arc::new(plain.to_vec()));
            json!({ "released": id })
        }
        Request::DigestSend => match &node.digest {
            None => bail!(
                "the quarantine digest is off on this node ([digest] enabled = false, or no portal)"
            ),
            Some(cfg) => serde_json::to_value(crate::digest::send(node, cfg).await?)?,
        },
        Request::QueueRelease { id } => {
            let mut meta = get(&id)?;
            if meta.state != QueueState::Hold {
                bail!("message {id} is not on hold (state {:?})", meta.state);
            }
            meta.state = QueueState::Active;
            meta.next_attempt = 0;
            meta.note.clear();
            spool.update(meta).await?;
            node.delivery.wake();
            json!({ "released": id })
        }
    })
}

/// Sends one request to the node at `data_dir`.
pub async fn call(data_dir: &Path, req: &Request) -> Result<Value> {
    let path = socket_path(data_dir);
    let stream = UnixStream::connect(&path).await.with_context(|| {
        format!(
            "no running node at {} (cannot connect to {}); start it with `sekisho serve`",
            data_dir.display(),
            path.display()
        )
    })?;
    let (r, mut w) = stream.into_split();
    w.write_all(format!("{}\n", serde_json::to_string(req)?).as_bytes())
        .await?;
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        BufReader::new(r).read_line(&mut line),
    )
    .await
    .context("the node did not answer within 60 s")??;
    let reply: Value = serde_json::from_str(&line).context("malformed reply from the node")?;
    if reply["ok"] == json!(true) {
        Ok(reply["data"].clone())
    } else {
        bail!("{}", reply["error"].as_str().unwrap_or("unknown error"))
    }
}
