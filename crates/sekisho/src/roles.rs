//! The supervisor: `sekisho serve` re-executes itself as its roles (`vault`, then `mx` and
//! `portal`),
//! restarts a role that dies (with backoff), and shuts them down in order.
//!
//! Each role is the same binary with the same arguments and `SEKISHO_ROLE` set; its process
//! name (`comm`, what `ps` and `top` show) is `sekisho-<role>`. A role dies with its
//! supervisor (`PR_SET_PDEATHSIG`), so killing the supervisor — even with SIGKILL — never
//! leaves an orphan holding the ports or the spool. The supervisor holds the node lock.
//!
//! The supervisor makes one random **mx role token** per run and writes it to the stdin of
//! both the vault and the mx role (never the environment, argv or a file): the vault gives
//! connector secrets only to a caller presenting it. Both roles are non-dumpable, so another
//! process of the same user can neither ptrace them nor read their memory.

use std::fs::File;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::Read;

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use vault::proto::RoleToken;

use crate::config::Config;
use crate::serve::ROLE_ENV;

/// The supervisor's pid, as given to its roles.
const SUPERVISOR_ENV: &str = "SEKISHO_SUPERVISOR";
/// A role that exits this soon after its first start failed to start: give up.
const STARTUP: Duration = Duration::from_secs(3);
/// Longest wait between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Longest role token line read from stdin.
const MAX_TOKEN_LINE: u64 = 256;

/// First thing every role does: take its name, die with the supervisor, become
/// non-dumpable, and read the role token the supervisor wrote to its stdin.
pub fn child_setup(role: &str) -> Result<Option<RoleToken>> {
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
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .take(MAX_TOKEN_LINE)
        .read_to_string(&mut line)
        .context("reading the role token from the supervisor")?;
    let token = line.trim();
    Ok((!token.is_empty()).then(|| RoleToken(token.to_string())))
}

struct Role {
    name: &'static str,
    child: Child,
    started: Instant,
    first: bool,
    backoff: Duration,
}

async fn spawn(name: &'static str, token: &RoleToken) -> Result<Child> {
    let exe = std::env::current_exe().context("cannot find my own executable")?;
    let mut child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(ROLE_ENV, name)
        .env(SUPERVISOR_ENV, std::process::id().to_string())
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start the {name} role"))?;
    let mut stdin = child.stdin.take().context("role stdin")?;
    let line = zeroize::Zeroizing::new(format!("{}\n", token.0));
    stdin
        .write_all(line.as_bytes())
        .await
        .with_context(|| format!("cannot hand the {name} role its token"))?;
    drop(stdin);
    Ok(child)
}

impl Role {
    async fn start(name: &'static str, token: &RoleToken) -> Result<Self> {
        Ok(Self {
            name,
            child: spawn(name, token).await?,
            started: Instant::now(),
            first: true,
            backoff: Duration::from_secs(1),
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
        self.child = spawn(self.name, token).await?;
        self.started = Instant::now();
        self.first = false;
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`.
    async fn stop(&mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            tracing::error!(role = self.name, "role did not stop in time; killing it");
            let _ = self.child.kill().await;
        }
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
                role: "supervisor",
                action: "sandbox-violation",
                reason: &reason,
                outcome: "denied: process killed (SIGSYS)",
                ..Default::default()
            })
            .await?;
        store
            .alert_raise(&store::NewAlert {
                rule: "sandbox-violation",
                severity: "critical",
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

async fn vault_ready(cfg: &Config, vault: &mut Role) -> Result<()> {
    let client = vault::client::VaultClient::new(vault::client::socket_path(&cfg.data_dir));
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

/// Runs the roles until SIGTERM/SIGINT.
pub async fn supervise(cfg: Config) -> Result<()> {
    crate::serve::ensure_data_dir(&cfg)?;
    // One node per data directory.
    let lock = File::create(cfg.data_dir.join("node.lock"))?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "another sekisho node is already running with data directory {}",
            cfg.data_dir.display()
        )
    })?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let token = RoleToken(keys::SecretKey::generate().to_hex().to_string());
    let mut vault = Role::start("vault", &token).await?;
    vault_ready(&cfg, &mut vault).await?;
    let mut mx = match Role::start("mx", &token).await {
        Ok(r) => r,
        Err(e) => {
            vault.stop(Duration::from_secs(10)).await;
            return Err(e);
        }
    };
    // The portal is handed no token: it can never obtain connector secrets.
    let no_token = RoleToken(String::new());
    let mut portal = match cfg.portal_listen {
        Some(_) => match Role::start("portal", &no_token).await {
            Ok(r) => Some(r),
            Err(e) => {
                mx.stop(cfg.shutdown_grace).await;
                vault.stop(Duration::from_secs(10)).await;
                return Err(e);
            }
        },
        None => None,
    };
    let outcome: Result<()> = loop {
        tokio::select! {
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
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
    if let Some(p) = portal.as_mut() {
        p.stop(Duration::from_secs(10)).await;
    }
    mx.stop(cfg.shutdown_grace + Duration::from_secs(20)).await;
    vault.stop(Duration::from_secs(10)).await;
    drop(lock);
    outcome
}
