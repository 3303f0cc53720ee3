//! `sekisho serve`: starts the store, spool, delivery, SMTP ingress and admin surfaces of
//! one node, and shuts them down in order on SIGTERM/SIGINT.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use spool::{LegacyNodeKey, QueueState, Spool, SpoolKey, SpoolOptions};
use store::{MailStore, SharedDirectory, Store, TraceRecord};
use telemetry::Metrics;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, Node};
use crate::config::Config;
use crate::handover::Received;

/// Name, domain and mailbox folder of the demo tenant.
pub const DEMO_TENANT: &str = "demo";
/// The demo tenant's domain.
pub const DEMO_DOMAIN: &str = "demo.test";

/// Creates the data directory (mode 0700) if it does not exist.
pub fn ensure_data_dir(cfg: &Config) -> Result<()> {
    if !cfg.data_dir.exists() {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("cannot create data directory {}", cfg.data_dir.display()))?;
        // Keys, spool, store and the sockets live here: owner only.
        std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Opens the store of a data directory as its owner (migrating it first): the CLI's and the
/// supervisor's way in.
pub async fn open_store(cfg: &Config) -> Result<Store> {
    ensure_data_dir(cfg)?;
    match &cfg.store_url {
        Some(sc) => {
            let url = sc.owner_url()?;
            Store::open_url(&url)
                .await
                .with_context(|| format!("cannot open the store at {url}"))
        }
        None => Store::open_sqlite(&cfg.data_dir.join("sekisho.db"))
            .await
            .with_context(|| format!("cannot open the store in {}", cfg.data_dir.display())),
    }
}

/// The PostgreSQL URL mx connects with (its own user when it has one), for the test hooks.
#[cfg(feature = "test-hooks")]
fn mx_db_url(cfg: &Config) -> Result<Option<store::StoreUrl>> {
    let Some(sc) = &cfg.store_url else {
        return Ok(None);
    };
    Ok(Some(match crate::dbroles::read_password(cfg, "mx")? {
        Some(pw) => store::StoreUrl::postgres(&sc.url, None)?
            .as_user(&store::roles::role_user(&sc.database()?, "mx"), &pw)?,
        None => sc.owner_url()?,
    }))
}

/// Opens the store as `role` (`vault`, `mx`): on PostgreSQL with that role's own database user
/// when `sekisho store grant-roles` made one (its password in a file only that role reads),
/// else as the owner.
pub async fn open_store_as(cfg: &Config, role: &'static str) -> Result<Store> {
    let Some(sc) = &cfg.store_url else {
        return open_store(cfg).await;
    };
    let Some(password) = crate::dbroles::read_password(cfg, role)? else {
        return open_store(cfg).await;
    };
    let user = store::roles::role_user(&sc.database()?, role);
    let url = store::StoreUrl::postgres(&sc.url, None)?.as_user(&user, &password)?;
    Store::open_url_as_role(&url)
        .await
        .with_context(|| format!("cannot open the store at {url} as the {role} role"))
}

/// The demo tenant's Maildir.
fn demo_maildir(cfg: &Config) -> Result<String> {
    Ok(std::path::absolute(cfg.data_dir.join("maildir"))?
        .display()
        .to_string())
}

/// Creates the demo tenant if it is missing (the supervisor, as the store's owner, before
/// the roles start: mx may not add tenants).
pub async fn ensure_demo(cfg: &Config) -> Result<()> {
    let store = open_store(cfg).await?;
    let maildir = demo_maildir(cfg)?;
    let route = format!("maildir://{maildir}");
    if !store
        .list_tenants()
        .await?
        .iter()
        .any(|t| t.name == DEMO_TENANT)
    {
        store
            .add_tenant(DEMO_TENANT, &[DEMO_DOMAIN.into()], &route)
            .await?;
    }
    store.close().await;
    Ok(())
}

/// Loads the classifier models (Bayes counts and n-gram weights) whose stored generation differs from `known` into `bayes`.
/// Returns how many were (re)loaded.
pub async fn load_bayes(
    store: &MailStore,
    bayes: &inspect::stages::bayes::Bayes,
    known: &std::sync::Mutex<std::collections::HashMap<i64, i64>>,
) -> Result<usize> {
    let mut loaded = 0;
    for (tenant, generation) in store.bayes_generations().await? {
        if known.lock().expect("poisoned").get(&tenant) == Some(&generation) {
            continue;
        }
        let c = store.bayes_load(tenant).await?;
        let tokens = c.tokens.into_iter().map(|(t, s, h)| {
            (
                t,
                s.clamp(0, u32::MAX as i64) as u32,
                h.clamp(0, u32::MAX as i64) as u32,
            )
        });
        let ngram = match store.ngram_load(tenant).await? {
            Some((_, bytes)) => {
                let w = inspect::ngram::Weights::from_bytes(&bytes);
                if inspect::ngram::is_older_format(&bytes) {
                    tracing::warn!(
                        tenant,
                        "stored n-gram weights are of an earlier format; using Bayes alone until `sekisho train` relearns them"
                    );
                } else if w.is_none() {
                    tracing::warn!(
                        tenant,
                        "stored n-gram weights are damaged; using Bayes alone"
                    );
                }
                w
            }
            None => None,
        };
        bayes.set_models(
            tenant,
            inspect::bayes::Model::from_counts(
                c.spam_msgs.max(0) as u64,
                c.ham_msgs.max(0) as u64,
                tokens,
            ),
            ngram,
        );
        known.lock().expect("poisoned").insert(tenant, generation);
        loaded += 1;
    }
    Ok(loaded)
}

/// Loads sender-history rows after `*last` into `history`, advancing `*last`. Returns how
/// many rows were read.
pub async fn load_senders(
    store: &MailStore,
    history: &inspect::stages::contact::SenderHistory,
    last: &mut i64,
) -> Result<usize> {
    let mut total = 0;
    loop {
        let rows = store.senders_after(*last, 10_000).await?;
        if rows.is_empty() {
            return Ok(total);
        }
        total += rows.len();
        for (id, tenant, hash) in rows {
            history.insert(tenant, hash);
            *last = id;
        }
    }
}

/// The inspection pipeline of a node (the SMTP path and `sekisho check` use the same one).
pub fn inspector(
    cfg: &Config,
    bayes: Arc<inspect::stages::bayes::Bayes>,
    senders: Arc<inspect::stages::contact::SenderHistory>,
) -> Result<inspect::Inspector> {
    let authenticator = inspect::dns::authenticator(cfg.dns_resolver, cfg.dns_timeout)
        .map_err(anyhow::Error::msg)?;
    let auth = inspect::stages::auth::Authentication::new(
        authenticator,
        Arc::new(inspect::dns::DnsCaches::default()),
        cfg.hostname.clone(),
        cfg.auth_deadline,
    );
    let phish = inspect::stages::phish::Phishing::new(
        cfg.phishing_feed.clone(),
        cfg.protected_brands.clone(),
    )
    .map_err(|e| anyhow::anyhow!("inspect.phishing_feed: {e}"))?
    .with_common_brands(cfg.common_brands);
    let dnsbl = inspect::stages::dnsbl::Dnsbl::new(
        inspect::dns::authenticator(cfg.dns_resolver, cfg.dns_timeout)
            .map_err(anyhow::Error::msg)?,
        Arc::new(inspect::dns::DnsCaches::default()),
        cfg.dnsbl.clone(),
        cfg.auth_deadline,
    );
    let malware = inspect::stages::malware::Malware::new(
        cfg.clamd.clone(),
        cfg.clamd_deadline,
        cfg.archive_limits.clone(),
    )
    .with_scope(cfg.clamd_scope);
    // Stages that wait on the network first: join_all polls in order, so their queries are
    // in flight while the CPU-bound stages run.
    let mut stages: Vec<Arc<dyn inspect::Stage>> =
        vec![Arc::new(auth), Arc::new(dnsbl), Arc::new(malware)];
    stages.extend(inspect::stages::plain_rules());
    stages.extend([
        Arc::new(inspect::stages::headers::HeaderRules::new(
            cfg.expected_scripts.clone(),
        )) as Arc<dyn inspect::Stage>,
        Arc::new(phish),
        Arc::new(inspect::stages::contact::FirstContact::new(senders.clone())),
        bayes,
    ]);
    Ok(
        inspect::Inspector::new(stages, cfg.policy.clone(), cfg.view_limits.clone())
            .with_senders(senders),
    )
}

/// Writes trace records in batches (one transaction per batch).
async fn trace_writer(
    store: MailStore,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<TraceRecord>,
    metrics: Arc<Metrics>,
) {
    let mut batch = Vec::with_capacity(512);
    while rx.recv_many(&mut batch, 512).await > 0 {
        // Let a burst gather for a moment: fewer, larger transactions.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        write_trace_batch(&store, &batch, &metrics).await;
        batch.clear();
    }
}

/// How often a failed trace batch is tried again before the database is asked whether it
/// answers at all (a read of the store's generation).
const TRACE_TRIES: u32 = 3;
/// How long a batch waits for a database that does not answer before its records are
/// given up (counted in `sekisho_trace_write_errors_total` and logged).
const TRACE_PATIENCE: Duration = Duration::from_secs(300);

/// Writes one batch. While the database is away (a restart, a failover) the batch waits for
/// it, up to [`TRACE_PATIENCE`]; if the database answers but refuses the batch, the records
/// are written one at a time so that one record it refuses costs only itself.
async fn write_trace_batch(store: &MailStore, batch: &[TraceRecord], metrics: &Metrics) {
    if batch.is_empty() {
        return;
    }
    let started = std::time::Instant::now();
    let mut attempt = 0u32;
    loop {
        match store.write_trace(batch).await {
            Ok(()) => return,
            Err(e) => {
                metrics.trace_write_errors.inc();
                attempt += 1;
                tracing::warn!(error = %e, records = batch.len(), attempt, "trace write failed");
            }
        }
        if attempt >= TRACE_TRIES
            && (store.generation().await.is_ok() || started.elapsed() >= TRACE_PATIENCE)
        {
            break; // the database answers, and refuses some record of the batch; or too long
        }
        let backoff = Duration::from_millis(250 << attempt.min(4));
        tokio::time::sleep(backoff).await;
    }
    let mut lost = 0usize;
    for record in batch {
        if store
            .write_trace(std::slice::from_ref(record))
            .await
            .is_err()
        {
            lost += 1;
        }
    }
    if lost > 0 {
        tracing::error!(
            lost,
            records = batch.len(),
            "trace records could not be written"
        );
    }
}

/// How long a stopping node waits for its last heartbeat to be written.
const LAST_BEAT_WAIT: Duration = Duration::from_secs(3);

/// How often a node writes its heartbeat to the shared node list.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// Writes this node's heartbeat (version, SMTP address, queue sizes) every few seconds, and a
/// last one marked stopped on shutdown, so `sekisho node list` shows the cluster.
async fn heartbeat(node: Arc<Node>, name: String, smtp: String, shutdown: CancellationToken) {
    let started_at = store::unix_now();
    loop {
        let stopping = shutdown.is_cancelled();
        let counts = node.spool.counts();
        let get = |s| counts.get(&s).copied().unwrap_or(0) as i64;
        let beat = store::NodeInfo {
            name: name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            smtp: smtp.clone(),
            started_at,
            last_seen: store::unix_now(),
            active: get(QueueState::Active),
            deferred: get(QueueState::Deferred),
            hold: get(QueueState::Hold),
            stopped: stopping,
        };
        if stopping {
            // The last beat (marked stopped) must not hold up a stop while the store is away.
            match tokio::time::timeout(LAST_BEAT_WAIT, node.store.node_beat(&beat)).await {
                Ok(Err(e)) => tracing::warn!(error = %e, "the last node heartbeat failed"),
                Err(_) => tracing::warn!("the last node heartbeat did not finish in time"),
                Ok(Ok(())) => {}
            }
            return;
        }
        if let Err(e) = node.store.node_beat(&beat).await {
            tracing::warn!(error = %e, "node heartbeat failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
        }
    }
}

/// Keeps the shared directory in step with the store (the CLI also asks for a reload at once
/// through the admin socket).
async fn directory_refresher(node: Arc<Node>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if let Err(e) = node.reload_directory().await {
            tracing::error!(error = %e, "directory reload failed");
        }
        if let Err(e) = node.reload_bayes().await {
            tracing::error!(error = %e, "Bayes model reload failed");
        }
        if let Err(e) = node.reload_senders().await {
            tracing::error!(error = %e, "sender history reload failed");
        }
    }
}

/// Enforces quarantine and message-trace retention.
async fn retention_sweeper(
    node: Arc<Node>,
    every: Duration,
    trace_retention: Duration,
    shutdown: CancellationToken,
) {
    // The trace is purged at a quarter of its retention, at most hourly.
    let trace_every =
        (trace_retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut trace_due = tokio::time::Instant::now() + trace_every;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every.min(trace_every)) => {}
        }
        match crate::quarantine::purge_expired(&node.store, node.blobs.as_ref()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "quarantine retention purge"),
            Err(e) => tracing::error!(error = %e, "quarantine retention purge failed"),
        }
        if tokio::time::Instant::now() < trace_due {
            continue;
        }
        trace_due = tokio::time::Instant::now() + trace_every;
        let dir = node.directory.get();
        match crate::retention::purge_trace(&node.store, &dir, trace_retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "trace retention purge"),
            Err(e) => tracing::error!(error = %e, "trace retention purge failed"),
        }
    }
}

/// A role process, set up before its runtime started.
pub struct RoleStart {
    name: &'static str,
    token: Option<proto::vault::RoleToken>,
    confined: Option<crate::sandbox::Confined>,
    /// What it bound and read while still root.
    bound: Bound,
    /// The roles' users, when they run under their own.
    users: Option<crate::sysusers::RoleUsers>,
}

/// Listeners and TLS material a role takes while still root (ports below 1024, a key file
/// only root reads), before it drops to its user.
#[derive(Default)]
struct Bound {
    smtp: Option<std::net::TcpListener>,
    http: Option<std::net::TcpListener>,
    portal: Option<std::net::TcpListener>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl Bound {
    /// The listeners the supervisor handed over (a role started by hand binds its own), and
    /// the TLS material, read while still root.
    fn take(cfg: &Config, role: &str, handed: Option<&mut Received>) -> Result<Self> {
        let mut handed = handed;
        let mut listener = |addr: Option<std::net::SocketAddr>, what: &str| match handed.as_mut() {
            Some(h) => h.listener().map(Some),
            None => {
                let addr = addr.with_context(|| format!("no address to listen for {what} on"))?;
                let l = crate::handover::bind_tcp(addr, what)?;
                l.set_nonblocking(true)?;
                Ok(Some(l))
            }
        };
        let tls = || {
            tls::server_config(&cfg.tls_cert, &cfg.tls_key)
                .context("TLS certificate")
                .map(Some)
        };
        Ok(match role {
            "mx" => Bound {
                smtp: listener(Some(cfg.smtp_listen), "SMTP")?,
                http: listener(Some(cfg.admin_listen), "admin HTTP")?,
                tls: tls()?,
                ..Bound::default()
            },
            "portal" => Bound {
                portal: listener(cfg.portal_listen, "the portal")?,
                tls: tls()?,
                ..Bound::default()
            },
            _ => Bound::default(),
        })
    }
}

/// If this process is a role (`SEKISHO_ROLE`), sets it up while it is still one thread:
/// process name, death signal, non-dumpable, the token from the supervisor; its listeners
/// and TLS material while still root; for `mx` and the portal the Landlock rules (made as
/// root, which may list every directory on the way to the KEK); then its own user (started
/// as root), the proof that what it must not reach is out of reach, and for every role the
/// seccomp filter against exec, new processes and ptrace. `None` for the supervisor.
pub fn prepare_role(cfg: &Config) -> Result<Option<RoleStart>> {
    let name = match std::env::var(ROLE_ENV).as_deref() {
        Ok("mx") => "mx",
        Ok("vault") => "vault",
        Ok("portal") => "portal",
        Ok(other) => anyhow::bail!("{ROLE_ENV}={other:?}: not a role (mx, vault, portal)"),
        Err(_) => return Ok(None),
    };
    let mut handed = crate::roles::child_setup(name)?;
    let bound = Bound::take(cfg, name, handed.as_mut())?;
    let token = handed
        .map(|h| h.token.trim().to_string())
        .filter(|t| !t.is_empty())
        .map(proto::vault::RoleToken);
    // mx and the portal face the network (Landlock): mx may not reach the vault's directory;
    // the portal reaches nothing on disk. The vault must read the KEK: no Landlock rules.
    let rules = match name {
        "mx" => Some(crate::sandbox::rules_mx(&cfg.kek_file)?),
        "portal" => Some(crate::sandbox::rules_portal()?),
        _ => None,
    };
    let users = match std::env::var_os(crate::roles::USERS_ENV).is_some() {
        true => Some(
            crate::sysusers::lookup()?
                .context("the sekisho users are missing (the supervisor creates them)")?,
        ),
        false => None,
    };
    let targets = crate::sandbox::proof_targets(cfg, name);
    let restricted = rules.map(crate::sandbox::Rules::restrict).transpose()?;
    if let Some(u) = &users {
        crate::sysusers::become_user(u.of(name).context("no user for this role")?)?;
        crate::roles::after_drop()?;
    }
    let confined = match restricted {
        Some(r) => Some(r.prove(name, &targets, cfg.sandbox_required)?),
        None => None,
    };
    // No role ever starts a program, so code execution inside one cannot start one either.
    match crate::sandbox::forbid_exec() {
        Ok(()) => {}
        Err(e) if !cfg.sandbox_required => {
            tracing::warn!(error = %e, role = name, "running without the seccomp filter");
        }
        Err(e) => return Err(e),
    }
    Ok(Some(RoleStart {
        name,
        token,
        confined,
        bound,
        users,
    }))
}

/// Runs the node until a signal.
pub async fn serve(cfg: Config, demo: bool, role: Option<RoleStart>) -> Result<()> {
    match role {
        Some(r) if r.name == "mx" => run_mx(cfg, demo, r).await,
        Some(r) if r.name == "portal" => run_portal(cfg, r).await,
        Some(r) => run_vault(cfg, r).await,
        None => {
            if demo {
                ensure_demo(&cfg).await?;
            }
            crate::roles::supervise(cfg, demo).await
        }
    }
}

/// Waits for SIGTERM or SIGINT (a role's signal to stop).
async fn until_stopped() -> Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// The environment variable that makes `sekisho serve` run as one role under the supervisor.
pub const ROLE_ENV: &str = "SEKISHO_ROLE";

/// The quarantine blob store of a data directory.
pub fn blob_store(cfg: &Config) -> Result<Arc<dyn store::blobs::BlobStore>> {
    Ok(match &cfg.blobs {
        crate::config::Blobs::Local => Arc::new(store::blobs::LocalBlobs::new(
            &cfg.data_dir.join("quarantine"),
        )?),
        crate::config::Blobs::S3(s3) => Arc::new(store::blobs::S3Blobs::new(s3)?),
    })
}

/// The `vault` role: holds the KEK, answers on `<data dir>/vault.sock`, opens no network port
/// and parses no mail.
async fn run_vault(cfg: Config, start: RoleStart) -> Result<()> {
    let store = open_store_as(&cfg, "vault").await?;
    let mut v = vault::server::Vault::open(store.clone(), blob_store(&cfg)?, &cfg.kek_file)
        .await
        .map_err(anyhow::Error::msg)?;
    if let Some(t) = start.token {
        v.set_mx_token(t);
    }
    let open_socket = start.users.is_some();
    if let Some(u) = start.users {
        v.set_role_uids(vault::server::RoleUids {
            vault: u.vault.uid.as_raw(),
            mx: u.mx.uid.as_raw(),
            portal: u.portal.uid.as_raw(),
        });
    }
    v.set_bulk_rule(cfg.bulk_rule);
    v.set_policy_defaults(vault::server::PolicyDefaults {
        tag: cfg.policy.tag,
        quarantine: cfg.policy.quarantine,
        reject: cfg.policy.reject,
        weights: inspect::Symbol::ALL
            .iter()
            .map(|s| (s.name().to_string(), cfg.policy.weight(*s)))
            .collect(),
    });
    v.set_mail_node(&cfg.data_dir);
    v.set_login_storm_rule(cfg.login_storm);
    v.set_working_hours(cfg.working_hours);
    if let Some(o) = &cfg.portal_origin {
        v.set_passkey_origin(&o.url, o.any_port)
            .map_err(anyhow::Error::msg)?;
    }
    let v = Arc::new(v);
    let path = proto::client::socket_path(&cfg.data_dir);
    let listener = vault::server::bind(&path, open_socket)
        .with_context(|| format!("cannot bind {}", path.display()))?;
    let shutdown = CancellationToken::new();
    let checkpoints = tokio::spawn(vault::server::checkpoints(
        v.clone(),
        cfg.checkpoint_every,
        cfg.checkpoint_interval,
        shutdown.clone(),
    ));
    let task = tokio::spawn(vault::server::serve(listener, v, shutdown.clone()));
    until_stopped().await?;
    shutdown.cancel();
    // A request or checkpoint waiting on a store that is away (each acquire waits its pool
    // timeout, one after another) must not hold the stop until the supervisor kills the role:
    // what did not finish was not acknowledged, and is recorded again or asked again.
    let deadline = tokio::time::Instant::now() + VAULT_STOP_WAIT;
    let stopped = async { tokio::join!(task, checkpoints) };
    if tokio::time::timeout_at(deadline, stopped).await.is_err() {
        tracing::warn!("vault requests still waiting on the store at stop; leaving them");
    }
    if tokio::time::timeout_at(deadline, store.close())
        .await
        .is_err()
    {
        tracing::warn!("the store did not close in time at stop");
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// How long the vault's stop waits, in all, for its requests and checkpoints and for its store
/// to close.
const VAULT_STOP_WAIT: Duration = Duration::from_secs(5);

/// The `portal` role: HTTPS for people. Holds no key but its TLS key; logins, sessions and
/// content go through the vault, releases through mx's admin socket.
async fn run_portal(cfg: Config, start: RoleStart) -> Result<()> {
    use proto::vault::{Request, Response};
    let RoleStart {
        confined, bound, ..
    } = start;
    let tls = bound.tls.context("the portal's TLS configuration")?;
    let tcp = TcpListener::from_std(bound.portal.context("the portal's listener")?)?;
    let url = format!("https://{}", tcp.local_addr()?);
    let vault = proto::client::VaultClient::new(proto::client::socket_path(&cfg.data_dir));
    println!("portal listening on {url}");
    let public = match &cfg.portal_origin {
        Some(o) => {
            let public = o.public_url(tcp.local_addr()?.port());
            println!(
                "portal: open it at {public}; passkeys are for that name (WebAuthn RP ID {}; set [portal] url in production)",
                o.rp_id()
            );
            public
        }
        None => url.clone(),
    };
    if let Some(c) = &confined {
        println!(
            "portal sandbox: Landlock {} ({} rules: its own /proc entries, read-only; its TLS files were read before), seccomp forbids exec and new processes; the KEK and the data directory are {}",
            c.status,
            c.rules,
            if c.kek_reachable {
                "REACHABLE"
            } else {
                "out of reach"
            }
        );
    }
    #[cfg(feature = "test-hooks")]
    println!("WARNING: this binary has test hooks (POST /api/test-hooks/…); never in production");
    // The vault prints a first-operator link only while no account exists (accounts exist:
    // a conflict, said nothing about; a live earlier link: said why there is no new one).
    match vault.call(&Request::FirstEnrolment, &[]).await {
        Ok((Response::Enrolment { token }, _)) => println!(
            "portal: no account exists yet; enrol the first operator, login name `operator` (one-time link, valid 24 h): {public}/enrol#{token}"
        ),
        Ok(_) => {}
        Err(proto::client::CallError::Refused(r)) if r.kind == proto::Refusal::Conflict => {}
        Err(proto::client::CallError::Refused(r)) => {
            println!("portal: no account exists yet; {r}")
        }
        Err(e) => tracing::warn!(error = %e, "no first-operator enrolment link"),
    }
    let portal = Arc::new(portal::Portal {
        vault,
        front: portal::front::FrontDoor::new(cfg.portal_limits),
    });
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(portal::serve(
        portal,
        portal::listener::TlsListener::spawn(tcp, tls),
        shutdown.clone(),
    ));
    until_stopped().await?;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    Ok(())
}

/// How long mx waits for the vault to answer at start (the supervisor starts both at once).
const VAULT_WAIT: Duration = Duration::from_secs(30);

/// Obtains this node's spool key from the vault: it exists in clear only in mx's memory.
async fn spool_key(cfg: &Config, token: Option<&proto::vault::RoleToken>) -> Result<SpoolKey> {
    let token = token.context(
        "mx obtains its spool key from the vault with the role token the supervisor hands it: start the node with `sekisho serve`",
    )?;
    let vault = proto::client::VaultClient::new(proto::client::socket_path(&cfg.data_dir));
    let empty = spool_is_empty(&cfg.data_dir.join("spool"))?;
    let deadline = tokio::time::Instant::now() + VAULT_WAIT;
    loop {
        match vault.spool_key(&cfg.node_name, token, empty).await {
            Ok(hex) => {
                let text = std::str::from_utf8(&hex).unwrap_or_default();
                return SpoolKey::from_hex(text)
                    .context("the vault's spool key is not 64 hex digits");
            }
            Err(proto::client::CallError::Unreachable(_) | proto::client::CallError::Io(_))
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(anyhow::anyhow!("the spool key from the vault: {e}")),
        }
    }
}

/// Whether the spool holds no frame at all (no segment, or only empty ones).
fn spool_is_empty(dir: &std::path::Path) -> Result<bool> {
    let segments = match spool::log::list_segments(dir) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e.into()),
    };
    for n in segments {
        if std::fs::metadata(spool::log::segment_path(dir, n))?.len() > 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Opens the spool with the key from the vault. A spool of the first format (sealed under
/// `keys/spool.key` in the data directory) is migrated, and that key file then destroyed.
async fn open_spool(
    cfg: &Config,
    token: Option<&proto::vault::RoleToken>,
) -> Result<(Spool, spool::RecoveryReport)> {
    let key = spool_key(cfg, token).await?;
    let legacy_path = cfg.data_dir.join("keys/spool.key");
    let legacy = match legacy_path.exists() {
        true => Some(LegacyNodeKey::load_or_create(&legacy_path).context("keys/spool.key")?),
        false => None,
    };
    let (spool, report) = Spool::open(
        &cfg.data_dir.join("spool"),
        key,
        legacy.as_ref(),
        SpoolOptions {
            max_segment_bytes: cfg.spool_segment,
        },
    )
    .context("cannot open the spool")?;
    if legacy.is_some() {
        shred(&legacy_path).context("destroying keys/spool.key")?;
        println!(
            "spool: {} message(s) moved from keys/spool.key's format to per-message keys; keys/spool.key destroyed",
            report.migrated
        );
    }
    Ok((spool, report))
}

/// Overwrites a key file with zeros, syncs, and removes it.
fn shred(path: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let len = std::fs::metadata(path)?.len() as usize;
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(&vec![0u8; len])?;
    f.sync_all()?;
    drop(f);
    std::fs::remove_file(path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The `mx` role: SMTP in, inspection, spool, delivery, admin surfaces.
async fn run_mx(cfg: Config, demo: bool, start: RoleStart) -> Result<()> {
    let RoleStart {
        token,
        confined,
        bound,
        ..
    } = start;
    let store = open_store_as(&cfg, "mx").await?.into_mail();
    let demo_maildir = if demo {
        Some(demo_maildir(&cfg)?)
    } else {
        None
    };

    let generated = cfg.tls_generated;
    let tls_config = bound.tls.context("mx's TLS configuration")?;

    let (spool, report) = open_spool(&cfg, token.as_ref()).await?;
    if report.damaged_regions > 0 || report.corrupt_messages > 0 {
        tracing::error!(
            ?report,
            "spool recovery found damage; see spool/corrupt/ and `sekisho queue list`"
        );
    }

    let metrics = Arc::new(Metrics::default());
    metrics
        .malware_scanner_configured
        .set(i64::from(cfg.clamd.is_some()));
    let bayes = Arc::new(inspect::stages::bayes::Bayes::new());
    let bayes_generations = std::sync::Mutex::new(std::collections::HashMap::new());
    load_bayes(&store, &bayes, &bayes_generations).await?;
    let senders = Arc::new(inspect::stages::contact::SenderHistory::new());
    let mut senders_loaded = 0;
    load_senders(&store, &senders, &mut senders_loaded).await?;
    let directory = Arc::new(SharedDirectory::new(store.directory().await?));
    let (trace_tx, trace_rx) = tokio::sync::mpsc::unbounded_channel();
    let trace_task = tokio::spawn(trace_writer(store.clone(), trace_rx, metrics.clone()));

    let delivery = egress::Delivery::new(
        spool.clone(),
        directory.clone(),
        cfg.delivery.clone(),
        metrics.clone(),
        trace_tx.clone(),
    )?;
    let mut reporter = None;
    if matches!(cfg.delivery.external_route, Some(egress::Route::Mx(_))) {
        let dns = inspect::dns::authenticator(cfg.dns_resolver, cfg.dns_timeout)
            .map_err(anyhow::Error::msg)?;
        let dns = Arc::new(crate::mx_dns::NodeDns::new(dns));
        delivery.set_mx_resolver(dns.clone());
        reporter = Some(crate::tls_reports::Reporter {
            node: cfg.node_name.clone(),
            store: store.clone(),
            delivery: delivery.clone(),
            dns: dns.clone(),
            http: crate::mta_sts::https_client(
                dns.clone(),
                cfg.delivery.ca_file.as_deref(),
                cfg.delivery.allow_private_mx,
            )?,
            cfg: cfg.tls_reports.clone(),
            metrics: metrics.clone(),
        });
        if cfg.mta_sts {
            let sts = crate::mta_sts::NodeSts::new(
                dns,
                cfg.delivery.ca_file.as_deref(),
                cfg.delivery.allow_private_mx,
            )?;
            delivery.set_policy_source(Arc::new(sts));
        }
    }
    if let Some(token) = token.clone() {
        let vault = || proto::client::VaultClient::new(proto::client::socket_path(&cfg.data_dir));
        delivery.set_secret_source(Arc::new(crate::secrets::VaultSecrets::new(
            vault(),
            token.clone(),
        )));
        delivery.set_dkim_source(Arc::new(crate::dkim::VaultDkim::new(vault(), token)));
    }
    let quarantine = Arc::new(crate::quarantine::SealedQuarantine::new(
        store.clone(),
        blob_store(&cfg)?,
        proto::client::VaultClient::new(proto::client::socket_path(&cfg.data_dir)),
        cfg.quarantine_retention,
    ));
    let ingress = ingress::Ingress::new(
        ingress::IngressConfig {
            hostname: cfg.hostname.clone(),
            limits: cfg.limits.clone(),
            max_sessions: cfg.max_sessions,
            max_sessions_per_ip: cfg.max_sessions_per_ip,
            idle_timeout: cfg.idle_timeout,
            session_timeout: cfg.session_timeout,
            tls: Some(tls_config),
            spool_reserve: cfg.spool_reserve,
        },
        ingress::IngressParts {
            directory: directory.clone(),
            spool: spool.clone(),
            delivery: delivery.clone(),
            inspector: Arc::new(inspector(&cfg, bayes.clone(), senders.clone())?),
            quarantine: quarantine.clone(),
            metrics: metrics.clone(),
            trace: trace_tx.clone(),
            outbound: Some(detect::outbound::Guard::new(
                store.clone(),
                cfg.outbound_burst,
            )),
        },
    );
    let node = Arc::new(Node {
        spool: spool.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        delivery: delivery.clone(),
        directory: directory.clone(),
        trace: trace_tx.clone(),
        bayes,
        bayes_generations,
        senders,
        senders_loaded: std::sync::atomic::AtomicI64::new(senders_loaded),
        quarantine,
        blobs: blob_store(&cfg)?,
        vault: proto::client::VaultClient::new(proto::client::socket_path(&cfg.data_dir)),
        vault_token: token.clone(),
        digest: cfg.digest.clone().map(|digest| {
            Arc::new(egress::digest::Digest {
                cfg: digest,
                store: store.clone(),
                vault: proto::client::VaultClient::new(proto::client::socket_path(&cfg.data_dir)),
                token,
                delivery: delivery.clone(),
            })
        }),
        #[cfg(feature = "test-hooks")]
        hook_db: mx_db_url(&cfg)?,
    });
    drop(trace_tx);

    let smtp = TcpListener::from_std(bound.smtp.context("mx's SMTP listener")?)?;
    let http = TcpListener::from_std(bound.http.context("mx's admin HTTP listener")?)?;
    let sock_path = admin::socket_path(&cfg.data_dir);
    let sock = admin::bind_socket(&sock_path)?;

    let stop_accepting = CancellationToken::new();
    let hard_stop = CancellationToken::new();
    let background = CancellationToken::new();
    let sessions = TaskTracker::new();
    let smtp_addr = smtp.local_addr()?;
    let http_addr = http.local_addr()?;
    let ingress_task = tokio::spawn(ingress.serve(
        smtp,
        stop_accepting.clone(),
        hard_stop.clone(),
        sessions.clone(),
    ));
    let delivery_task = tokio::spawn(delivery.clone().run(background.clone(), cfg.shutdown_grace));
    let http_task = tokio::spawn(admin::serve_http(http, node.clone(), background.clone()));
    let sock_task = tokio::spawn(admin::serve_socket(sock, node.clone(), background.clone()));
    let dir_task = tokio::spawn(directory_refresher(node.clone(), background.clone()));
    let beat_task = tokio::spawn(heartbeat(
        node.clone(),
        cfg.node_name.clone(),
        smtp_addr.to_string(),
        background.clone(),
    ));
    let health_task = tokio::spawn(crate::health::watch(
        store.clone(),
        metrics.clone(),
        cfg.node_name.clone(),
        background.clone(),
    ));
    let sweep_task = tokio::spawn(retention_sweeper(
        node.clone(),
        crate::quarantine::sweep_interval(cfg.quarantine_retention),
        cfg.trace_retention,
        background.clone(),
    ));
    let digest_task = tokio::spawn({
        let (digest, name, stop) = (
            node.digest.clone(),
            cfg.node_name.clone(),
            background.clone(),
        );
        async move {
            if let Some(d) = digest {
                d.run(name, stop).await;
            }
        }
    });
    let tls_report_task = tokio::spawn({
        let stop = background.clone();
        async move {
            if let Some(r) = reporter {
                r.run(stop).await;
            }
        }
    });
    let hook_task = tokio::spawn({
        let ctx = detect::sinks::SinkCtx {
            store: store.clone(),
            node: cfg.node_name.clone(),
            shutdown: background.clone(),
        };
        let hook = cfg.webhook.clone();
        let syslog = cfg.syslog.clone().map(|p| (p, cfg.hostname.clone()));
        let mail = cfg
            .alert_mail
            .clone()
            .map(|m| (m, delivery.clone(), cfg.hostname.clone()));
        async move {
            let web = async {
                if let Some(hook) = hook {
                    detect::sinks::forward(ctx.clone(), hook).await;
                }
            };
            let sys = async {
                if let Some((path, host)) = syslog {
                    detect::sinks::forward_syslog(ctx.clone(), path, host).await;
                }
            };
            let email = async {
                if let Some((m, delivery, host)) = mail {
                    detect::sinks::forward_email(ctx.clone(), delivery, m, host).await;
                }
            };
            tokio::join!(web, sys, email);
        }
    });

    print_banner(
        &cfg,
        &Banner {
            smtp: smtp_addr,
            http: http_addr,
            generated,
            report: &report,
            demo_maildir: demo_maildir.as_deref(),
            confined: confined.as_ref(),
            blobs: &node.blobs.describe(),
        },
    );

    if demo_maildir.is_some() {
        let cfg = cfg.clone();
        tokio::spawn(async move { crate::demo::send_samples(&cfg, smtp_addr).await });
    }

    until_stopped().await?;
    println!(
        "shutting down: no new connections; sessions get {:?} to finish",
        cfg.shutdown_grace
    );
    stop_accepting.cancel();
    let _ = ingress_task.await;
    sessions.close();
    if tokio::time::timeout(cfg.shutdown_grace, sessions.wait())
        .await
        .is_err()
    {
        hard_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), sessions.wait()).await;
    }
    background.cancel();
    let _ = delivery_task.await;
    // Background tasks end at once when cancelled, unless a store call is under way; a store
    // that is away must not hold up the stop for its connection timeout.
    let background_done = async {
        tokio::join!(
            http_task,
            sock_task,
            dir_task,
            beat_task,
            health_task,
            sweep_task,
            hook_task,
            digest_task,
            tls_report_task
        )
    };
    // One budget for everything that may wait on the store: each step waiting out its own
    // bound in turn made a stop with the store away take 15 s here.
    let deadline = tokio::time::Instant::now() + MX_STORE_STOP_WAIT;
    if tokio::time::timeout_at(deadline, background_done)
        .await
        .is_err()
    {
        tracing::warn!("background tasks still waiting on the store at stop; leaving them");
    }
    spool.shutdown();
    drop(node);
    drop(delivery);
    // Trace records not written by now wait on a store that is away; they are lost with the
    // process either way, and the stop says so rather than waiting out the pool's timeouts.
    if tokio::time::timeout_at(deadline, trace_task).await.is_err() {
        tracing::warn!("trace records still waiting on the store at stop; leaving them");
    }
    if tokio::time::timeout_at(deadline, store.close())
        .await
        .is_err()
    {
        tracing::warn!("the store did not close in time at stop");
    }
    let _ = std::fs::remove_file(&sock_path);
    println!("stopped cleanly");
    Ok(())
}

/// How long mx's stop waits, in all, for background tasks, the trace writer and the store to
/// close once its sessions and deliveries are done.
const MX_STORE_STOP_WAIT: Duration = Duration::from_secs(5);

/// What the start-up banner reports.
struct Banner<'a> {
    smtp: std::net::SocketAddr,
    http: std::net::SocketAddr,
    generated: bool,
    report: &'a spool::RecoveryReport,
    demo_maildir: Option<&'a str>,
    confined: Option<&'a crate::sandbox::Confined>,
    blobs: &'a str,
}

fn print_banner(cfg: &Config, b: &Banner<'_>) {
    let Banner {
        smtp,
        http,
        generated,
        report,
        demo_maildir,
        confined,
        blobs,
    } = *b;
    let d = cfg.data_dir.display();
    println!(
        "Sekisho {} node {}",
        env!("CARGO_PKG_VERSION"),
        cfg.hostname
    );
    println!(
        "smtp listening on {smtp} (STARTTLS with {})",
        cfg.tls_cert.display()
    );
    if generated {
        println!(
            "  a self-signed certificate (generated at first start); set [tls] cert/key for production"
        );
    }
    println!("admin listening on http://{http} (/healthz, /metrics)");
    println!(
        "data directory {d} (spool sealed per message under keys the vault holds; {} queued message(s) recovered)",
        report.messages
    );
    println!("sealed quarantine in {blobs}");
    match &cfg.clamd {
        Some(addr) => println!(
            "malware: clamd at {addr} and the built-in attachment policy (executables, macros, archives, HTML attachments)"
        ),
        None => println!(
            "malware: built-in policy only (executables, macros, archives, HTML attachments; no virus signatures): set [malware] clamd"
        ),
    }
    #[cfg(feature = "test-hooks")]
    println!(
        "WARNING: this binary has test hooks (mx's admin socket can make mx attempt an exec, fetch a secret or probe files); never in production"
    );
    match confined {
        Some(c) => println!(
            "mx sandbox: Landlock {} ({} rules), seccomp forbids exec and new processes; the KEK {} is {}",
            c.status,
            c.rules,
            cfg.kek_file.display(),
            if c.kek_reachable {
                "READABLE from mx (best-effort mode)"
            } else {
                "out of its reach"
            }
        ),
        None => println!("mx sandbox: none (not started by the supervisor)"),
    }
    let cfg_flag = cfg.cli_flags();
    let me = crate::demo::invocation();
    match demo_maildir {
        Some(maildir) => {
            println!("demo tenant '{DEMO_TENANT}' accepts mail for @{DEMO_DOMAIN} into {maildir}");
            println!("next: swaks --server {smtp} --from you@example.org --to alice@{DEMO_DOMAIN}");
            println!(
                "      ls {maildir}/alice@{DEMO_DOMAIN}/new && {me} trace {cfg_flag} --rcpt alice@{DEMO_DOMAIN}"
            );
        }
        None => println!(
            "next: {me} tenant add NAME {cfg_flag} --domain example.com --route smtp://mail.example.com:25 (or restart with --demo)"
        ),
    }
}
