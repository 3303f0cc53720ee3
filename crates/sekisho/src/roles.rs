//! The supervisor: `sekisho serve` re-executes itself as its roles (`vault`, then `mx` and
//! `portal`),
//! restarts a role that dies (with backoff), and shuts them down in order.
//!
//! Each role is the same binary with the same arguments and `SEKISHO_ROLE` set; its process
//! name (`comm`, what `ps` and `top` show) is `sekisho-<role>`. A role dies with its
//! supervisor (`PR_SET_PDEATHSIG`), so killing the supervisor — even with SIGKILL — never
//! leaves an orphan holding the ports or the spool. The supervisor holds the node lock.
//!
//! The supervisor binds the listening sockets once and hands them to every incarnation of mx
//! and the portal ([`crate::handover`]): while a role restarts, clients wait in the backlog.
//!
//! The supervisor makes one random **mx role token** per run and writes it to the stdin of
//! both the vault and the mx role (never the environment, argv or a file): the vault gives
//! connector secrets only to a caller presenting it. Both roles are non-dumpable, so another
//! process of the same user can neither ptrace them nor read their memory.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use proto::vault::RoleToken;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::serve::ROLE_ENV;

/// The supervisor's pid, as given to its roles.
const SUPERVISOR_ENV: &str = "SEKISHO_SUPERVISOR";
/// A role that exits this soon after its first start failed to start: give up.
const STARTUP: Duration = Duration::from_secs(3);
/// Longest wait between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Set by the supervisor when the roles drop to their own users (it alone decides).
pub const USERS_ENV: &str = "SEKISHO_ROLE_USERS";

/// First thing every role does: take its name, die with the supervisor, become
/// non-dumpable, and take the listening sockets and the role token the supervisor handed
/// it on stdin.
pub fn child_setup(role: &str) -> Result<Option<crate::handover::Received>> {
    let name = std::ffi::CString::new(format!("sekisho-{role}")).context("role name")?;
    nix::sys::prctl::set_name(&name).context("PR_SET_NAME")?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("PR_SET_PDEATHSIG")?;
    nix::sys::prctl::set_dumpable(false).context("PR_SET_DUMPABLE")?;
    // The supervisor may have died before the line above took effect.
    if let Ok(sup) = std::env::var(SUPERVISOR_ENV)
        && sup.parse::<u32>().ok() != Some(std::os::unix::process::parent_id())
    {
        bail!("the supervisor is gone");
    }
    if std::env::var_os(SUPERVISOR_ENV).is_none() {
        return Ok(None);
    }
    crate::handover::Received::read().map(Some)
}

/// After a role dropped root: the kernel cleared its death signal and may have made it
/// dumpable again (both follow credential changes); set them again.
pub fn after_drop() -> Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("PR_SET_PDEATHSIG")?;
    nix::sys::prctl::set_dumpable(false).context("PR_SET_DUMPABLE")?;
    if let Ok(sup) = std::env::var(SUPERVISOR_ENV)
        && sup.parse::<u32>().ok() != Some(std::os::unix::process::parent_id())
    {
        bail!("the supervisor is gone");
    }
    Ok(())
}

struct Role {
    name: &'static str,
    child: Child,
    /// Where this role's pid is kept for the kernel audit watch.
    pids: crate::kaudit::RolePids,
    started: Instant,
    first: bool,
    backoff: Duration,
    /// Its user's home, when it runs under its own user (which the supervisor tells it).
    home: Option<PathBuf>,
    /// The supervisor's copies of the sockets it serves on, handed to every incarnation.
    fds: Vec<OwnedFd>,
}

async fn spawn(
    name: &'static str,
    token: &RoleToken,
    home: Option<&Path>,
    fds: &[OwnedFd],
) -> Result<Child> {
    let exe = std::env::current_exe().context("cannot find my own executable")?;
    let mut cmd = Command::new(exe);
    // A role under its own user has that user's home, not root's (a library looking for
    // ~/.pgpass must not be refused root's, which would be raised as a denial).
    if let Some(home) = home {
        cmd.env("HOME", home).env(USERS_ENV, "1");
    } else {
        cmd.env_remove(USERS_ENV);
    }
    if name == "vault" {
        // Every password check takes a fresh 19 MiB (argon2id). glibc's moving mmap threshold
        // would soon serve those from per-thread heaps that keep the memory after it is freed
        // (bench/soak saw the vault step from 139 to 234 MiB); a fixed threshold keeps each
        // one a mapping of its own, returned when the check ends.
        cmd.env("MALLOC_MMAP_THRESHOLD_", "1048576");
    }
    // The role's argv[0] is the supervisor's, so the banner can say how to run the binary
    // again as the person typed it (without looking along PATH from inside a sandbox).
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    let (mut ours, theirs) = UnixStream::pair().context("the role's channel")?;
    let child = cmd
        .args(std::env::args_os().skip(1))
        .env(ROLE_ENV, name)
        .env(SUPERVISOR_ENV, std::process::id().to_string())
        .stdin(OwnedFd::from(theirs))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start the {name} role"))?;
    let fds: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
    crate::handover::send(&mut ours, &fds, token.0.as_bytes())
        .with_context(|| format!("cannot hand the {name} role its sockets and token"))?;
    Ok(child)
}

impl Role {
    async fn start(
        name: &'static str,
        token: &RoleToken,
        pids: &crate::kaudit::RolePids,
        users: Option<&crate::sysusers::RoleUsers>,
        fds: Vec<OwnedFd>,
    ) -> Result<Self> {
        // Some: the role drops to its own user, whose home this is.
        let home = users
            .map(|_| crate::sysusers::home(name).unwrap_or_else(|| PathBuf::from("/nonexistent")));
        let child = spawn(name, token, home.as_deref(), &fds).await?;
        pids.set(name, child.id());
        Ok(Self {
            name,
            child,
            pids: pids.clone(),
            started: Instant::now(),
            first: true,
            backoff: Duration::from_secs(1),
            home,
            fds,
        })
    }

    /// After an unexpected exit: give up if it never started, else restart after a backoff.
    async fn restart(
        &mut self,
        status: std::io::Result<std::process::ExitStatus>,
        token: &RoleToken,
    ) -> Result<()> {
        // Exiting with a status this soon is a failed start; a death by signal is not.
        let exited = status.as_ref().is_ok_and(|s| s.code().is_some());
        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
        if self.first && exited && self.started.elapsed() < STARTUP {
            bail!("the {} role failed to start ({status})", self.name);
        }
        if self.started.elapsed() > Duration::from_secs(60) {
            self.backoff = Duration::from_secs(1);
        }
        tracing::error!(role = self.name, %status, backoff = ?self.backoff, "role exited; restarting");
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.child = spawn(self.name, token, self.home.as_deref(), &self.fds).await?;
        self.pids.set(self.name, self.child.id());
        self.started = Instant::now();
        self.first = false;
        Ok(())
    }

    /// A planned restart (a reload): stopped as at shutdown, started again at once.
    async fn renew(&mut self, grace: Duration, token: &RoleToken) -> Result<()> {
        self.stop(grace).await;
        self.child = spawn(self.name, token, self.home.as_deref(), &self.fds).await?;
        self.pids.set(self.name, self.child.id());
        self.started = Instant::now();
        self.first = false;
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`.
    async fn stop(&mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        let asked = Instant::now();
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            tracing::error!(role = self.name, "role did not stop in time; killing it");
            let _ = self.child.kill().await;
            return;
        }
        let took_ms = asked.elapsed().as_millis() as u64;
        tracing::info!(role = self.name, took_ms, "role stopped");
    }
}

/// A role killed by `SIGSYS` tried a system call its seccomp filter forbids (exec, a new
/// process, ptrace): the kernel stopped it; this raises it as a critical event in the log and
/// the audit record.
async fn report_violation(
    cfg: &Config,
    role: &str,
    status: &std::io::Result<std::process::ExitStatus>,
) {
    use std::os::unix::process::ExitStatusExt;
    let Ok(s) = status else { return };
    if s.signal() != Some(Signal::SIGSYS as i32) {
        return;
    }
    let reason = format!(
        "the {role} role tried a forbidden system call (exec, process creation or ptrace) and was killed by the kernel; possible code execution inside it"
    );
    tracing::error!(
        severity = "critical",
        event = "sandbox-violation",
        role,
        "{reason}"
    );
    let recorded = async {
        let store = crate::serve::open_store(cfg).await?;
        store
            .record(&store::NewRecord {
                principal: role,
                action: "sandbox-violation",
                reason: &reason,
                outcome: "denied: process killed (SIGSYS)",
                ..store::NewRecord::by(proto::Process::Supervisor)
            })
            .await?;
        store
            .alert_raise(&store::NewAlert {
                by: proto::Process::Supervisor,
                rule: "sandbox-violation",
                severity: proto::Severity::Critical,
                dedupe_key: &format!("sandbox-violation:{role}"),
                principal: role,
                tenant_id: None,
                summary: &reason,
            })
            .await?;
        anyhow::Ok(())
    };
    if let Err(e) = recorded.await {
        tracing::error!(error = %e, "the sandbox violation could not be recorded");
    }
}

/// Starts the kernel audit watch (root only): every Landlock denial by a role, and every
/// system call a role's own user is refused by file permissions, becomes a `sandbox-denial`
/// record and a critical alert.
fn watch_kernel(
    cfg: &Config,
    pids: &crate::kaudit::RolePids,
    users: Option<&crate::sysusers::RoleUsers>,
) {
    let Some(mode) = cfg.kernel_audit else {
        println!("kernel audit watch: off ([sandbox] kernel_audit = \"off\")");
        return;
    };
    if !nix::unistd::geteuid().is_root() {
        println!(
            "kernel audit watch: off (needs root); Landlock still refuses, but a role's denied probes are not raised as alerts"
        );
        return;
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let enable = mode == crate::config::KernelAudit::SwitchOn;
    let uids: Vec<u32> = users
        .filter(|_| cfg.raise_refusals)
        .map(|u| {
            vec![
                u.vault.uid.as_raw(),
                u.mx.uid.as_raw(),
                u.portal.uid.as_raw(),
            ]
        })
        .unwrap_or_default();
    match crate::kaudit::watch(pids.clone(), enable, &uids, tx) {
        Ok(()) => {
            println!(
                "kernel audit watch: on (Landlock denials by a role{} are recorded and raised at once)",
                match (uids.is_empty(), users.is_some()) {
                    (false, _) => ", and refusals of the role users by file permissions,",
                    (true, true) =>
                        " (not the role users' refusals by file permissions: [sandbox] refusals = \"quiet\")",
                    (true, false) => "",
                }
            );
            tokio::spawn(report_denials(cfg.clone(), rx));
        }
        Err(e) => println!("kernel audit watch: off ({e:#})"),
    }
}

/// Most denials recorded per role and minute (an alert counts every one).
const DENIALS_RECORDED_PER_MINUTE: u32 = 60;

/// Records each denial (up to a rate) and raises the role's `sandbox-denial` alert.
async fn report_denials(
    cfg: Config,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<crate::kaudit::Denial>,
) {
    // Opened at the first denial: by then the vault has created (migrated) the store.
    let mut store: Option<store::Store> = None;
    let mut window = (
        Instant::now(),
        std::collections::HashMap::<&str, u32>::new(),
    );
    while let Some(d) = rx.recv().await {
        if store.is_none() {
            match crate::serve::open_store(&cfg).await {
                Ok(s) => store = Some(s),
                Err(e) => tracing::error!(error = %e, "kernel audit watch: no store to record in"),
            }
        }
        if window.0.elapsed() > Duration::from_secs(60) {
            window = (Instant::now(), Default::default());
        }
        let seen = window.1.entry(d.role).or_insert(0);
        *seen += 1;
        let summary = format!(
            "the {} role (pid {}) was refused {} on {} by the kernel ({}): code running inside it may be probing for what it must not reach",
            d.role,
            d.pid,
            d.blockers,
            d.object,
            d.by.name()
        );
        tracing::error!(
            severity = "critical",
            event = "sandbox-denial",
            role = d.role,
            "{summary}"
        );
        let Some(store) = &store else { continue };
        if *seen <= DENIALS_RECORDED_PER_MINUTE {
            let _ = store
                .record(&store::NewRecord {
                    principal: d.role,
                    action: "sandbox-denial",
                    object: &d.object,
                    reason: &d.blockers,
                    outcome: &format!("denied by the kernel ({})", d.by.name()),
                    ..store::NewRecord::by(proto::Process::Supervisor)
                })
                .await;
        }
        let _ = store
            .alert_raise(&store::NewAlert {
                by: proto::Process::Supervisor,
                rule: "sandbox-denial",
                severity: proto::Severity::Critical,
                dedupe_key: &format!("sandbox-denial:{}", d.role),
                principal: d.role,
                tenant_id: None,
                summary: &summary,
            })
            .await;
    }
}

async fn vault_ready(cfg: &Config, vault: &mut Role) -> Result<()> {
    let client = proto::client::VaultClient::new(proto::client::socket_path(&cfg.data_dir));
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if client.ping().await {
            return Ok(());
        }
        if let Ok(Some(status)) = vault.child.try_wait() {
            bail!("the vault role failed to start ({status})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("the vault role did not answer within 30 s")
}

/// Started as root: the roles' users (created if missing), their files owned as
/// [`crate::sysusers`] says. Otherwise every role runs as this process's user.
fn role_users(cfg: &Config, demo: bool) -> Result<Option<crate::sysusers::RoleUsers>> {
    use crate::sysusers;
    if !sysusers::wanted(cfg) {
        let me = nix::unistd::geteuid();
        println!(
            "roles run as uid {me} ({}); Landlock and the vault separate them",
            if me.is_root() {
                "[sandbox] users = \"off\""
            } else {
                "not started as root"
            }
        );
        return Ok(None);
    }
    let users = sysusers::ensure()?;
    match sysusers::check_reachable(cfg, &users) {
        Ok(()) => {}
        // The demo (README's first command, run from a clone in root's home) still starts,
        // saying loudly what it gave up; a real node refuses.
        Err(e) if demo => {
            println!(
                "WARNING: roles run as root, not as their own users: {e:#} (the demo starts anyway; a node without --demo refuses)"
            );
            return Ok(None);
        }
        Err(e) => return Err(e),
    }
    sysusers::own(cfg, &users)?;
    println!(
        "roles run as their own users: vault sekisho-vault ({}), mx sekisho-mx ({}), portal sekisho-portal ({})",
        users.vault.uid, users.mx.uid, users.portal.uid
    );
    Ok(Some(users))
}

/// `SIGHUP` (`systemctl reload`): after a certificate renewal, the roles that serve TLS read
/// it again. The new files are checked first — a broken pair is refused and the running
/// roles keep the old one — then the portal and mx are restarted one after the other (mx
/// finishes its sessions within `shutdown_grace`; acknowledged mail is in the spool).
async fn reload(
    cfg: &Config,
    mx: &mut Role,
    portal: Option<&mut Role>,
    token: &RoleToken,
    no_token: &RoleToken,
) -> Result<()> {
    if let Err(e) = tls::server_config(&cfg.tls_cert, &cfg.tls_key) {
        tracing::error!(error = %e, cert = %cfg.tls_cert.display(), "reload refused: the certificate and key do not load; the roles keep the ones they have");
        println!("reload refused: {e}");
        return Ok(());
    }
    println!(
        "reloading: the portal and mx read {} again",
        cfg.tls_cert.display()
    );
    if let Some(p) = portal {
        p.renew(Duration::from_secs(10), no_token).await?;
    }
    mx.renew(cfg.shutdown_grace + Duration::from_secs(20), token)
        .await
}

/// Runs the roles until SIGTERM/SIGINT; `SIGHUP` reloads (see [`reload`]).
pub async fn supervise(cfg: Config, demo: bool) -> Result<()> {
    crate::serve::ensure_data_dir(&cfg)?;
    // One node per data directory.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(cfg.data_dir.join("node.lock"))?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "another sekisho node is already running with data directory {}",
            cfg.data_dir.display()
        )
    })?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // Migrations are the owner's: the roles may connect as users that cannot run them.
    crate::dbroles::regrant(&cfg).await?;
    crate::serve::open_store(&cfg).await?.close().await;
    // Made here, as root: the roles read their TLS material before they drop root.
    if cfg.tls_generated && tls::ensure_self_signed(&cfg.hostname, &cfg.tls_cert, &cfg.tls_key)? {
        println!("generated a self-signed certificate; set [tls] cert/key for production");
    }
    // Bound once, here: a role that restarts finds its clients waiting in the backlog.
    let (mx_fds, portal_fds) = crate::handover::Listeners::bind(&cfg)?.into_roles();
    let users = role_users(&cfg, demo)?;
    let token = RoleToken(keys::SecretKey::generate().to_hex().to_string());
    let pids = crate::kaudit::RolePids::new(crate::sandbox::proof_paths(&cfg));
    watch_kernel(&cfg, &pids, users.as_ref());
    let mut vault = Role::start("vault", &token, &pids, users.as_ref(), Vec::new()).await?;
    vault_ready(&cfg, &mut vault).await?;
    let mut mx = match Role::start("mx", &token, &pids, users.as_ref(), mx_fds).await {
        Ok(r) => r,
        Err(e) => {
            vault.stop(Duration::from_secs(10)).await;
            return Err(e);
        }
    };
    // The portal is handed no token: it can never obtain connector secrets.
    let no_token = RoleToken(String::new());
    let mut portal = match cfg.portal_listen {
        Some(_) => {
            match Role::start("portal", &no_token, &pids, users.as_ref(), portal_fds).await {
                Ok(r) => Some(r),
                Err(e) => {
                    mx.stop(cfg.shutdown_grace).await;
                    vault.stop(Duration::from_secs(10)).await;
                    return Err(e);
                }
            }
        }
        None => None,
    };
    if demo {
        crate::demo::invite_people(&cfg).await;
    }
    let mut hup = signal(SignalKind::hangup())?;
    let outcome: Result<()> = loop {
        tokio::select! {
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
            _ = hup.recv() => {
                if let Err(e) = reload(&cfg, &mut mx, portal.as_mut(), &token, &no_token).await {
                    break Err(e);
                }
            }
            status = vault.child.wait() => {
                report_violation(&cfg, "vault", &status).await;
                if let Err(e) = vault.restart(status, &token).await {
                    break Err(e);
                }
            }
            status = mx.child.wait() => {
                report_violation(&cfg, "mx", &status).await;
                if let Err(e) = mx.restart(status, &token).await {
                    break Err(e);
                }
            }
            status = async {
                match portal.as_mut() {
                    Some(p) => p.child.wait().await,
                    None => std::future::pending().await,
                }
            } => {
                report_violation(&cfg, "portal", &status).await;
                if let Some(p) = portal.as_mut()
                    && let Err(e) = p.restart(status, &no_token).await
                {
                    break Err(e);
                }
            }
        }
    };
    // The portal and mx stop together (neither waits on the other); the vault last, as both
    // may ask it something while they finish. One after the other, a store that is away made
    // each wait out its own bounds in turn.
    let portal_stopped = async {
        if let Some(p) = portal.as_mut() {
            p.stop(Duration::from_secs(10)).await;
        }
    };
    tokio::join!(
        portal_stopped,
        mx.stop(cfg.shutdown_grace + Duration::from_secs(20))
    );
    vault.stop(Duration::from_secs(10)).await;
    drop(lock);
    outcome
}
