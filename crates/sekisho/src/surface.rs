//! `sekisho surface`: the node's attack surface as it really is — every listener and who may
//! use it, every role's process (user, NoNewPrivs, seccomp, its Landlock rules), the database
//! grants per role, the features compiled in and enabled, and the dependencies the binary was
//! built from. Read from `/proc` of the running node, not from what the configuration hopes.
//! `--baseline FILE` compares with an earlier `--json` and exits non-zero on any drift (a new
//! listener, a role's user or filter changed, a grant, a feature, a dependency), raising a
//! `surface-drift` alert.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// The packages of `Cargo.lock` at build time (`name version` per line).
const DEPENDENCIES: &str = include_str!(concat!(env!("OUT_DIR"), "/deps.txt"));

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// The role whose process listens.
    pub role: String,
    /// `tcp` or `unix`.
    pub kind: String,
    /// `address:port` or the socket's path.
    pub address: String,
    /// What it speaks.
    pub protocol: String,
    /// Who may use it, and for what.
    pub who: String,
}

/// One role's process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleProcess {
    /// `vault`, `mx`, `portal`.
    pub role: String,
    /// Its pid (not compared with a baseline).
    pub pid: u32,
    /// Its user and group ids (`uid/gid`).
    pub user: String,
    /// `NoNewPrivs` from `/proc`.
    pub no_new_privs: bool,
    /// `Seccomp` mode from `/proc` (2: filtered).
    pub seccomp: u8,
    /// How many seccomp filters it carries.
    pub seccomp_filters: u32,
    /// Its Landlock rules (set at its start; Linux does not show them in `/proc`).
    pub landlock: String,
    /// Whether it holds the database file open (SQLite).
    pub holds_database: bool,
}

/// What each role may do in the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// `sqlite` or `postgres`.
    pub engine: String,
    /// Role → how it connects and what it may do.
    pub roles: BTreeMap<String, String>,
}

/// The whole surface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Surface {
    /// Sekisho's version.
    pub version: String,
    /// Listening sockets.
    pub listeners: Vec<Listener>,
    /// Role processes.
    pub roles: Vec<RoleProcess>,
    /// Database grants.
    pub database: Grants,
    /// Cargo features compiled in.
    pub compiled: Vec<String>,
    /// Optional parts switched on by the configuration.
    pub enabled: BTreeMap<String, String>,
    /// The resolved dependency set (`name version`).
    pub dependencies: Vec<String>,
}

impl Surface {
    /// What a baseline compares: everything but pids, one line per fact.
    pub fn facts(&self) -> BTreeSet<String> {
        let mut f = BTreeSet::new();
        f.insert(format!("version {}", self.version));
        for l in &self.listeners {
            f.insert(format!(
                "listener {} {} {} {}",
                l.role, l.kind, l.address, l.protocol
            ));
        }
        for r in &self.roles {
            f.insert(format!(
                "role {} user={} no_new_privs={} seccomp={} filters={} landlock={} database={}",
                r.role,
                r.user,
                r.no_new_privs,
                r.seccomp,
                r.seccomp_filters,
                r.landlock,
                r.holds_database
            ));
        }
        for (role, g) in &self.database.roles {
            f.insert(format!("database {} {role}: {g}", self.database.engine));
        }
        for c in &self.compiled {
            f.insert(format!("compiled {c}"));
        }
        for (k, v) in &self.enabled {
            f.insert(format!("enabled {k} = {v}"));
        }
        for d in &self.dependencies {
            f.insert(format!("dependency {d}"));
        }
        f
    }
}

/// The pids whose open files include `path`.
fn holders(path: &Path) -> Vec<u32> {
    let Ok(want) = path.canonicalize() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for pid in pids() {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == want))
        {
            out.push(pid);
        }
    }
    out
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A `/proc/<pid>/status` field.
fn status_field(pid: u32, key: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
}

/// The node's role processes (role name → pid): the children of the process holding the
/// data directory's node lock.
fn role_pids(cfg: &Config) -> Result<BTreeMap<String, u32>> {
    let lock = cfg.data_dir.join("node.lock");
    // The lock is opened close-on-exec, so only the supervisor holds it.
    let supervisor = holders(&lock).into_iter().next().with_context(|| {
        format!(
            "no running node holds {} (start it with `sekisho serve`)",
            lock.display()
        )
    })?;
    let mut out = BTreeMap::new();
    for pid in pids() {
        let parent = status_field(pid, "PPid:").and_then(|p| p.parse::<u32>().ok());
        if parent != Some(supervisor) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if let Some(role) = comm.trim().strip_prefix("sekisho-") {
            out.insert(role.to_string(), pid);
        }
    }
    Ok(out)
}

/// Socket inodes a process holds.
fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return BTreeSet::new();
    };
    fds.flatten()
        .filter_map(|fd| {
            let t = std::fs::read_link(fd.path()).ok()?;
            let t = t.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// `0100007F:0A1B` (little-endian IPv4) or the 32-hex-digit IPv6 form → `ip:port`.
fn decode_addr(hex: &str) -> Option<String> {
    let (ip, port) = hex.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let bytes: Vec<u8> = (0..ip.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(ip.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    match bytes.len() {
        4 => Some(format!(
            "{}.{}.{}.{}:{port}",
            bytes[3], bytes[2], bytes[1], bytes[0]
        )),
        16 => {
            let mut b = [0u8; 16];
            for w in 0..4 {
                for i in 0..4 {
                    b[w * 4 + i] = bytes[w * 4 + 3 - i];
                }
            }
            Some(format!("[{}]:{port}", std::net::Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// Listening TCP sockets by inode, from `/proc/<pid>/net/tcp{,6}`.
fn tcp_listeners(pid: u32) -> HashMap<u64, String> {
    let mut out = HashMap::new();
    for file in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9
                && f[3] == "0A"
                && let (Some(addr), Ok(inode)) = (decode_addr(f[1]), f[9].parse())
            {
                out.insert(inode, addr);
            }
        }
    }
    out
}

/// Listening Unix sockets by inode, from `/proc/net/unix`.
fn unix_listeners() -> HashMap<u64, String> {
    let text = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Flags 00010000: accepting connections.
            (f.len() >= 8 && f[3] == "00010000")
                .then(|| Some((f[6].parse().ok()?, f[7].to_string())))?
        })
        .collect()
}

/// What a listener is and who may use it.
fn describe(role: &str, kind: &str, address: &str, smtp: &str) -> (String, String) {
    let (p, w) = match (role, kind) {
        ("mx", "tcp") if address == smtp => (
            "SMTP (ESMTP, STARTTLS)",
            "anyone: mail for the tenants' domains; relaying only from tenants' registered networks",
        ),
        ("mx", "tcp") => (
            "HTTP (/healthz, /metrics)",
            "anyone who reaches it: health and counters, no content",
        ),
        ("mx", _) => (
            "admin socket (proto::mx)",
            "mode 0600: the local CLI; the vault with the role token (reload, queue counts, releases for a person's session); the portal nothing",
        ),
        ("portal", "tcp") => (
            "HTTPS (portal, JSON API)",
            "anyone: people log in; every act is checked and recorded by the vault",
        ),
        ("vault", _) => (
            "vault socket (proto::vault)",
            "mode 0600: the local CLI; mx with its role token; the portal only for people's sessions",
        ),
        _ => ("unknown", "unknown: not a Sekisho listener"),
    };
    (p.to_string(), w.to_string())
}

/// The Landlock rules each role set at its start.
fn landlock_rules(cfg: &Config, role: &str) -> String {
    let vault_dir = cfg
        .kek_file
        .parent()
        .map_or_else(String::new, |d| d.display().to_string());
    match role {
        "mx" => format!("everything but {vault_dir} (read/write, never execute)"),
        "portal" => {
            let tls = if cfg.tls_generated {
                cfg.tls_cert
                    .parent()
                    .map_or_else(String::new, |d| d.display().to_string())
            } else {
                format!("{} {}", cfg.tls_cert.display(), cfg.tls_key.display())
            };
            format!("read-only: {tls}, its own /proc, cgroup files; nothing else")
        }
        "vault" => "none (it reads the KEK); seccomp only".into(),
        _ => "unknown".into(),
    }
}

async fn grants(cfg: &Config, holding: &BTreeSet<String>) -> Result<Grants> {
    let Some(sc) = &cfg.store_url else {
        let mut roles = BTreeMap::new();
        for r in ["vault", "mx", "portal"] {
            let g = if holding.contains(r) {
                "opens the database file: reads and writes every table"
            } else {
                "no database handle (Landlock denies the file)"
            };
            roles.insert(r.to_string(), g.to_string());
        }
        return Ok(Grants {
            engine: "sqlite".into(),
            roles,
        });
    };
    let store = crate::serve::open_store(cfg).await?;
    let db = sc.database()?;
    let mut roles = BTreeMap::new();
    for r in ["vault", "mx", "portal"] {
        let user = store::roles::role_user(&db, r);
        let own = r == "portal" || crate::dbroles::read_password(cfg, r)?.is_some();
        let g = if !own {
            "connects as the store's owner: every privilege (run `sekisho store grant-roles`)"
                .to_string()
        } else {
            let privileges = store.table_privileges(&user).await?;
            let login = if r == "portal" { "no login" } else { "logs in" };
            format!("{user} ({login}): {}", summarize(&privileges))
        };
        roles.insert(r.to_string(), g);
    }
    store.close().await;
    Ok(Grants {
        engine: "postgres".into(),
        roles,
    })
}

/// `SELECT on a, b; INSERT on c` from (table, privilege) pairs.
fn summarize(privileges: &[(String, String)]) -> String {
    if privileges.is_empty() {
        return "no privilege on any table".into();
    }
    let mut by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (t, p) in privileges {
        by.entry(p.as_str()).or_default().push(t.as_str());
    }
    by.iter()
        .map(|(p, t)| format!("{p} on {}", t.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

fn enabled(cfg: &Config, portal: bool) -> BTreeMap<String, String> {
    let on = |b: bool| if b { "on" } else { "off" }.to_string();
    let mut e = BTreeMap::new();
    e.insert("portal".into(), on(portal));
    e.insert(
        "store".into(),
        if cfg.store_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
        .into(),
    );
    e.insert("blobs".into(), format!("{:?}", cfg.blobs).to_lowercase());
    e.insert(
        "landlock".into(),
        if cfg.sandbox_required {
            "required"
        } else {
            "best-effort"
        }
        .into(),
    );
    e.insert(
        "kernel audit".into(),
        match cfg.kernel_audit {
            Some(crate::config::KernelAudit::SwitchOn) => "on",
            Some(crate::config::KernelAudit::WatchOnly) => "watch",
            None => "off",
        }
        .into(),
    );
    e.insert("digest".into(), on(cfg.digest.is_some()));
    e.insert("webhook".into(), on(cfg.webhook.is_some()));
    e.insert("syslog".into(), on(cfg.syslog.is_some()));
    e.insert("alert mail".into(), on(cfg.alert_mail.is_some()));
    e.insert("clamd".into(), on(cfg.clamd.is_some()));
    e
}

/// Reads the running node's surface.
pub async fn read(cfg: &Config) -> Result<Surface> {
    let pids = role_pids(cfg)?;
    let smtp = crate::serve::open_store(cfg)
        .await?
        .nodes()
        .await?
        .into_iter()
        .find(|n| n.name == cfg.node_name)
        .map(|n| n.smtp)
        .unwrap_or_default();
    let unix = unix_listeners();
    let db_holders: BTreeSet<u32> = holders(&cfg.data_dir.join("sekisho.db"))
        .into_iter()
        .collect();
    let mut listeners = Vec::new();
    let mut roles = Vec::new();
    let mut holding = BTreeSet::new();
    for (role, &pid) in &pids {
        let inodes = socket_inodes(pid);
        let tcp = tcp_listeners(pid);
        for inode in &inodes {
            let found = match (tcp.get(inode), unix.get(inode)) {
                (Some(a), _) => Some(("tcp", a.clone())),
                (_, Some(p)) => Some(("unix", p.clone())),
                _ => None,
            };
            if let Some((kind, address)) = found {
                let (protocol, who) = describe(role, kind, &address, &smtp);
                listeners.push(Listener {
                    role: role.clone(),
                    kind: kind.into(),
                    address,
                    protocol,
                    who,
                });
            }
        }
        let holds = db_holders.contains(&pid);
        if holds {
            holding.insert(role.clone());
        }
        let user = match (status_field(pid, "Uid:"), status_field(pid, "Gid:")) {
            (Some(u), Some(g)) => format!(
                "{}/{}",
                u.split_whitespace().next().unwrap_or("?"),
                g.split_whitespace().next().unwrap_or("?")
            ),
            _ => "?".into(),
        };
        roles.push(RoleProcess {
            role: role.clone(),
            pid,
            user,
            no_new_privs: status_field(pid, "NoNewPrivs:").as_deref() == Some("1"),
            seccomp: status_field(pid, "Seccomp:")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            seccomp_filters: status_field(pid, "Seccomp_filters:")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            landlock: landlock_rules(cfg, role),
            holds_database: holds,
        });
    }
    listeners.sort_by(|a, b| (&a.role, &a.kind, &a.address).cmp(&(&b.role, &b.kind, &b.address)));
    let mut compiled = Vec::new();
    if cfg!(feature = "test-hooks") {
        compiled.push("test-hooks".to_string());
    }
    Ok(Surface {
        version: env!("CARGO_PKG_VERSION").into(),
        listeners,
        roles,
        database: grants(cfg, &holding).await?,
        compiled,
        enabled: enabled(cfg, pids.contains_key("portal")),
        dependencies: DEPENDENCIES.lines().map(str::to_string).collect(),
    })
}

/// What changed from `baseline` to `now`: lines gone (`-`) and new (`+`).
pub fn drift(baseline: &Surface, now: &Surface) -> Vec<String> {
    let (before, after) = (baseline.facts(), now.facts());
    let mut out: Vec<String> = before
        .difference(&after)
        .map(|f| format!("- {f}"))
        .collect();
    out.extend(after.difference(&before).map(|f| format!("+ {f}")));
    out
}

fn print(s: &Surface) {
    println!("Sekisho {} attack surface", s.version);
    println!("listeners:");
    for l in &s.listeners {
        println!(
            "  {:<7} {:<4} {:<28} {} — {}",
            l.role, l.kind, l.address, l.protocol, l.who
        );
    }
    println!("roles:");
    for r in &s.roles {
        println!(
            "  {:<7} pid {:<7} uid/gid {:<9} NoNewPrivs {} seccomp {} ({} filters); Landlock: {}",
            r.role,
            r.pid,
            r.user,
            u8::from(r.no_new_privs),
            r.seccomp,
            r.seccomp_filters,
            r.landlock
        );
    }
    println!("database ({}):", s.database.engine);
    for (role, g) in &s.database.roles {
        println!("  {role:<7} {g}");
    }
    println!(
        "compiled in: {}",
        if s.compiled.is_empty() {
            "no optional features (no test hooks)".to_string()
        } else {
            s.compiled.join(", ")
        }
    );
    let enabled: Vec<String> = s.enabled.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("enabled: {}", enabled.join(", "));
    println!(
        "dependencies: {} packages resolved at build time (--json lists them)",
        s.dependencies.len()
    );
}

/// `sekisho surface [--json] [--baseline FILE]`.
pub async fn run(cfg: Config, json: bool, baseline: Option<PathBuf>) -> Result<()> {
    let now = read(&cfg).await?;
    if let Some(path) = baseline {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the baseline {}", path.display()))?;
        let before: Surface = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a `sekisho surface --json`", path.display()))?;
        let changes = drift(&before, &now);
        if changes.is_empty() {
            println!("no drift from {}", path.display());
            return Ok(());
        }
        for c in &changes {
            println!("{c}");
        }
        let summary = format!(
            "the node's attack surface drifted from {} ({} change(s), first: {})",
            path.display(),
            changes.len(),
            changes[0]
        );
        let store = crate::serve::open_store(&cfg).await?;
        store
            .alert_raise(&store::NewAlert {
                by: proto::Process::Cli,
                rule: "surface-drift",
                severity: proto::Severity::Warning,
                dedupe_key: "surface-drift",
                principal: &crate::cli_principal(),
                tenant_id: None,
                summary: &summary,
            })
            .await?;
        bail!("{summary}");
    }
    if json {
        return crate::print_json(&now);
    }
    print(&now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_addresses_decode() {
        assert_eq!(
            decode_addr("0100007F:0A1B").as_deref(),
            Some("127.0.0.1:2587")
        );
        assert_eq!(
            decode_addr("00000000000000000000000001000000:0050").as_deref(),
            Some("[::1]:80")
        );
        assert_eq!(decode_addr("zz:1"), None);
    }

    #[test]
    fn drift_names_what_changed_and_ignores_pids() {
        let listener = |port: u16| Listener {
            role: "mx".into(),
            kind: "tcp".into(),
            address: format!("127.0.0.1:{port}"),
            protocol: "SMTP".into(),
            who: "anyone".into(),
        };
        let s = |port, pid| Surface {
            version: "1".into(),
            listeners: vec![listener(port)],
            roles: vec![RoleProcess {
                role: "mx".into(),
                pid,
                user: "0/0".into(),
                no_new_privs: true,
                seccomp: 2,
                seccomp_filters: 2,
                landlock: "x".into(),
                holds_database: true,
            }],
            database: Grants {
                engine: "sqlite".into(),
                roles: BTreeMap::new(),
            },
            compiled: vec![],
            enabled: BTreeMap::new(),
            dependencies: vec!["tokio 1".into()],
        };
        assert!(
            drift(&s(25, 1), &s(25, 2)).is_empty(),
            "a restart is no drift"
        );
        let d = drift(&s(25, 1), &s(2525, 1));
        assert_eq!(d.len(), 2);
        assert!(
            d.iter()
                .any(|l| l.starts_with("+ listener mx tcp 127.0.0.1:2525"))
        );
    }
}
