//! The kernel's word on the roles: Landlock denials read from the kernel audit log, raised as
//! alerts within a second.
//!
//! A compromised role that probes for the KEK, the spool or the database is refused by the
//! kernel (Landlock), and the refusal alone would stay silent. Since Linux 6.15 Landlock logs
//! each denial to the audit subsystem (`LANDLOCK_ACCESS` records, with the `SYSCALL` record of
//! the same event naming the process). The supervisor, started as root, subscribes to the
//! audit multicast group (read-only: it never replaces an audit daemon), and turns every
//! denial by one of its roles' processes into a `sandbox-denial` audit record and a critical
//! alert. With `[sandbox] kernel_audit = "on"` (the default when started as root) it also
//! switches the kernel's audit on if it is off; without root the watch is off, and the banner
//! and `sekisho surface` say so.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, sendto,
    socket,
};

/// Audit netlink message types (linux/audit.h).
const AUDIT_SET: u16 = 1001;
const AUDIT_ADD_RULE: u16 = 1011;
const AUDIT_SYSCALL: u16 = 1300;
const AUDIT_PATH: u16 = 1302;
const AUDIT_SOCKADDR: u16 = 1306;
const AUDIT_EOE: u16 = 1320;
const AUDIT_LANDLOCK_ACCESS: u16 = 1423;
/// The read-only multicast group of audit records.
const AUDIT_NLGRP_READLOG: u32 = 1;
/// `audit_status.mask` bit for `enabled`.
const AUDIT_STATUS_ENABLED: u32 = 1;
/// Events kept while waiting for their `SYSCALL` record.
const MAX_PENDING: usize = 256;
/// The key of the audit rules that log a role user's refused system calls.
pub const RULE_KEY: &str = "sekisho-roles";

/// The supervisor's role processes by pid (what a denial is attributed to), and what each
/// role tries once at its start to prove its own confinement (it opens what it must not
/// reach, and refuses to run if it can): the first denial of each such path by a fresh
/// process is that proof, made before any other code of it runs; anything else is not.
#[derive(Clone, Default)]
pub struct RolePids {
    roles: Arc<Mutex<HashMap<u32, Live>>>,
    proofs: Arc<HashMap<&'static str, Vec<String>>>,
}

impl RolePids {
    /// Roles whose start-up proof opens `proofs[role]` (real paths).
    pub fn new(proofs: HashMap<&'static str, Vec<String>>) -> Self {
        Self {
            roles: Default::default(),
            proofs: Arc::new(proofs),
        }
    }

    /// `pid` is now the process of `role` (a restarted role replaces its old pid).
    pub fn set(&self, role: &'static str, pid: Option<u32>) {
        let mut m = self.roles.lock().expect("poisoned");
        m.retain(|_, (r, _)| *r != role);
        if let Some(pid) = pid {
            let proof = self.proofs.get(role).cloned().unwrap_or_default();
            m.insert(pid, (role, proof));
        }
    }

    /// The role of `pid`, unless this denial is (the first of its kind in) its start-up proof.
    fn role_of(&self, pid: u32, object: &str) -> Option<&'static str> {
        let mut m = self.roles.lock().expect("poisoned");
        let (role, proof) = m.get_mut(&pid)?;
        let path = object.strip_prefix("path=").unwrap_or("");
        if let Some(i) = proof.iter().position(|p| p == path) {
            proof.remove(i);
            return None;
        }
        Some(*role)
    }
}

/// A live role process: its role, and the proof paths it has not yet been refused.
type Live = (&'static str, Vec<String>);

/// A denial by the kernel of something one of the roles tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Which role.
    pub role: &'static str,
    /// Its pid.
    pub pid: u32,
    /// Who refused.
    pub by: Enforcer,
    /// What was blocked: Landlock's blockers (`fs.read_file`, …), or the error and the
    /// system call (`EACCES in connect`).
    pub blockers: String,
    /// On what (`path="…"`, or the record's other fields).
    pub object: String,
}

/// What in the kernel refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcer {
    /// A Landlock rule.
    Landlock,
    /// File ownership and mode (the role's own user may not).
    Permissions,
}

impl Enforcer {
    /// In words, for records and alerts.
    pub fn name(self) -> &'static str {
        match self {
            Enforcer::Landlock => "Landlock",
            Enforcer::Permissions => "file permissions",
        }
    }
}

/// The value of `key=` in an audit record's text (quotes removed).
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text
        .match_indices(key)
        .find(|(i, _)| *i == 0 || text.as_bytes()[i - 1] == b' ')
        .map(|(i, _)| i + key.len())?;
    let rest = text[start..].strip_prefix('=')?;
    Some(match rest.strip_prefix('"') {
        Some(q) => q.split('"').next().unwrap_or(""),
        None => rest.split(' ').next().unwrap_or(""),
    })
}

/// The event serial of a record (`audit(1796580368.250:4): …` → `4`).
fn serial(text: &str) -> Option<u64> {
    let inner = text.strip_prefix("audit(")?.split(')').next()?;
    inner.split(':').nth(1)?.parse().ok()
}

/// What one audit event (one serial) has shown so far.
#[derive(Default)]
struct Event {
    /// Landlock's `blockers` and object.
    landlock: Option<(String, String)>,
    /// The process, from the `SYSCALL` record.
    pid: Option<u32>,
    /// Set when our rule logged the event: the error and the system call.
    refused: Option<String>,
    /// The file or socket path the call named (`PATH`, `SOCKADDR`).
    object: Option<String>,
}

/// One denial, assembled from its event's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    pub pid: u32,
    pub by: Enforcer,
    pub blockers: String,
    pub object: String,
}

/// Joins each event's records: a `LANDLOCK_ACCESS` record with its `SYSCALL` record (which
/// names the process), in whatever order they come; a `SYSCALL` record our rule logged
/// ([`RULE_KEY`]: a role's user was refused by file permissions) with the path or socket it
/// named, once the event is complete (`EOE`) and no Landlock record came with it.
#[derive(Default)]
pub struct Assembler {
    events: BTreeMap<u64, Event>,
}

impl Assembler {
    /// Takes one record; returns a denial once its event says enough.
    pub fn take(&mut self, kind: u16, text: &str) -> Option<Assembled> {
        let serial = serial(text)?;
        if kind == AUDIT_EOE {
            let e = self.events.remove(&serial)?;
            return match (e.landlock, e.pid, e.refused) {
                (None, Some(pid), Some(refused)) => Some(Assembled {
                    pid,
                    by: Enforcer::Permissions,
                    blockers: refused,
                    object: e.object.unwrap_or_default(),
                }),
                _ => None,
            };
        }
        let e = self.events.entry(serial).or_default();
        match kind {
            AUDIT_LANDLOCK_ACCESS => {
                let blockers = field(text, "blockers").unwrap_or("?").to_string();
                let object = match field(text, "path") {
                    Some(p) => format!("path={p}"),
                    None => text.split("): ").nth(1).unwrap_or("").to_string(),
                };
                e.landlock = Some((blockers, object));
            }
            AUDIT_SYSCALL => {
                e.pid = field(text, "pid").and_then(|p| p.parse().ok());
                if field(text, "key") == Some(RULE_KEY) {
                    e.refused = Some(refusal(text));
                }
            }
            AUDIT_PATH if e.object.is_none() => {
                e.object = path_name(text).map(|p| format!("path={p}"));
            }
            AUDIT_SOCKADDR => {
                if let Some(p) = field(text, "saddr").and_then(unix_socket_path) {
                    e.object = Some(format!("socket={p}"));
                }
            }
            _ => {}
        }
        let done = matches!(
            e,
            Event {
                landlock: Some(_),
                pid: Some(_),
                ..
            }
        );
        while self.events.len() > MAX_PENDING {
            self.events.pop_first();
        }
        if !done {
            return None;
        }
        let e = self.events.remove(&serial)?;
        let (blockers, object) = e.landlock?;
        Some(Assembled {
            pid: e.pid?,
            by: Enforcer::Landlock,
            blockers,
            object,
        })
    }
}

/// `EACCES in connect` from a `SYSCALL` record's `exit=` and `syscall=`.
fn refusal(text: &str) -> String {
    let error = match field(text, "exit") {
        Some("-13") => "EACCES",
        Some("-1") => "EPERM",
        Some(other) => other,
        None => "refused",
    };
    let call = field(text, "syscall").and_then(|n| n.parse::<i64>().ok());
    match call.and_then(syscall_name) {
        Some(name) => format!("{error} in {name}"),
        None => format!("{error} in system call {}", call.unwrap_or(-1)),
    }
}

/// The system calls a probe makes (the audit rules watch these only: fewer rules to test at
/// each system call's exit), by number and name.
fn probe_calls() -> Vec<(i64, &'static str)> {
    use libc::*;
    let mut calls = vec![
        (SYS_openat, "openat"),
        (SYS_openat2, "openat2"),
        (SYS_newfstatat, "newfstatat"),
        (SYS_statx, "statx"),
        (SYS_faccessat, "faccessat"),
        (SYS_faccessat2, "faccessat2"),
        (SYS_readlinkat, "readlinkat"),
        (SYS_connect, "connect"),
        (SYS_bind, "bind"),
        (SYS_unlinkat, "unlinkat"),
        (SYS_renameat2, "renameat2"),
        (SYS_mkdirat, "mkdirat"),
        (SYS_linkat, "linkat"),
        (SYS_symlinkat, "symlinkat"),
        (SYS_fchmodat, "fchmodat"),
        (SYS_fchmod, "fchmod"),
        (SYS_fchownat, "fchownat"),
        (SYS_fchown, "fchown"),
        (SYS_truncate, "truncate"),
        (SYS_chdir, "chdir"),
        (SYS_getxattr, "getxattr"),
        (SYS_kill, "kill"),
        (SYS_tgkill, "tgkill"),
        (SYS_setuid, "setuid"),
        (SYS_setgid, "setgid"),
        (SYS_setresuid, "setresuid"),
        (SYS_setresgid, "setresgid"),
        (SYS_setgroups, "setgroups"),
        (SYS_ptrace, "ptrace"),
        (SYS_mount, "mount"),
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([
        (SYS_open, "open"),
        (SYS_creat, "creat"),
        (SYS_stat, "stat"),
        (SYS_lstat, "lstat"),
        (SYS_access, "access"),
        (SYS_readlink, "readlink"),
        (SYS_rename, "rename"),
        (SYS_renameat, "renameat"),
        (SYS_mkdir, "mkdir"),
        (SYS_rmdir, "rmdir"),
        (SYS_unlink, "unlink"),
        (SYS_link, "link"),
        (SYS_symlink, "symlink"),
        (SYS_chmod, "chmod"),
        (SYS_chown, "chown"),
        (SYS_lchown, "lchown"),
    ]);
    calls
}

/// The name of system call `n`, if a probe makes it.
fn syscall_name(n: i64) -> Option<&'static str> {
    probe_calls()
        .into_iter()
        .find(|(k, _)| *k == n)
        .map(|(_, name)| name)
}

/// A `PATH` record's `name=`: quoted, or hex when it holds unusual bytes.
fn path_name(text: &str) -> Option<String> {
    let raw = field(text, "name")?;
    if text.contains("name=\"") {
        return Some(raw.to_string());
    }
    if raw == "(null)" {
        return None;
    }
    let bytes = hex::decode(raw).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The path of an `AF_UNIX` socket address, from a `SOCKADDR` record's hex `saddr`.
fn unix_socket_path(saddr: &str) -> Option<String> {
    let bytes = hex::decode(saddr).ok()?;
    let family = u16::from_ne_bytes([*bytes.first()?, *bytes.get(1)?]);
    if i32::from(family) != libc::AF_UNIX {
        return None;
    }
    let path = &bytes[2..];
    let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
    (end > 0).then(|| String::from_utf8_lossy(&path[..end]).into_owned())
}

fn audit_socket() -> Result<OwnedFd> {
    socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkAudit,
    )
    .context("kernel audit: netlink socket")
}

/// Sends one request to the kernel's audit and waits for its acknowledgement; `Ok(errno)`
/// when it refused (0: accepted).
fn request(kind: u16, payload: &[u8]) -> Result<i32> {
    let fd = audit_socket()?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).context("kernel audit: bind")?;
    let mut msg = Vec::with_capacity(16 + payload.len());
    msg.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&(1u16 | 4).to_ne_bytes()); // NLM_F_REQUEST | NLM_F_ACK
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(payload);
    sendto(
        fd.as_raw_fd(),
        &msg,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .context("kernel audit: send")?;
    let mut ack = [0u8; 1024];
    let n = recv(fd.as_raw_fd(), &mut ack, MsgFlags::empty()).context("kernel audit: ack")?;
    // NLMSG_ERROR with error 0 is the ack.
    ack.get(16..20)
        .filter(|_| n >= 20)
        .map(|b| -i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .context("kernel audit: no answer")
}

/// Switches the kernel's audit on (it stays as it is if already on).
fn enable_audit() -> Result<()> {
    // struct audit_status: mask, enabled, failure, pid, rate_limit, backlog_limit, lost,
    // backlog, then newer fields (zero).
    let mut payload = Vec::with_capacity(48);
    for v in [AUDIT_STATUS_ENABLED, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] {
        payload.extend_from_slice(&v.to_ne_bytes());
    }
    match request(AUDIT_SET, &payload)? {
        0 => Ok(()),
        e => anyhow::bail!("kernel audit: AUDIT_SET refused ({e})"),
    }
}

/// `AUDIT_ARCH_*` of this build (a rule's system call numbers are per architecture).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// `struct audit_rule_data` for: at the exit of a system call a probe makes
/// ([`probe_calls`]) by `uid` that failed with `-errno`, log the event under [`RULE_KEY`].
fn rule(uid: u32, errno: i32) -> Vec<u8> {
    const AUDIT_FILTER_EXIT: u32 = 0x04;
    const AUDIT_ALWAYS: u32 = 2;
    const AUDIT_EQUAL: u32 = 0x4000_0000;
    const AUDIT_UID: u32 = 1;
    const AUDIT_ARCH_FIELD: u32 = 11;
    const AUDIT_EXIT: u32 = 103;
    const AUDIT_FILTERKEY: u32 = 210;
    let fields = [
        (AUDIT_ARCH_FIELD, AUDIT_ARCH),
        (AUDIT_UID, uid),
        (AUDIT_EXIT, (-errno) as u32),
        (AUDIT_FILTERKEY, RULE_KEY.len() as u32),
    ];
    let mut words = vec![AUDIT_FILTER_EXIT, AUDIT_ALWAYS, fields.len() as u32];
    let mut mask = [0u32; 64];
    for (n, _) in probe_calls() {
        let n = n as usize;
        mask[n / 32] |= 1 << (n % 32);
    }
    words.extend(mask);
    for column in 0..3 {
        for i in 0..64 {
            words.push(match (fields.get(i), column) {
                (Some((f, _)), 0) => *f,
                (Some((_, v)), 1) => *v,
                (Some(_), _) => AUDIT_EQUAL,
                (None, _) => 0,
            });
        }
    }
    words.push(RULE_KEY.len() as u32);
    let mut out: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    out.extend_from_slice(RULE_KEY.as_bytes());
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out
}

/// Asks the kernel to log every system call the role users `uids` are refused with EACCES
/// or EPERM (rules already there stay; they are left in place at exit, as they concern only
/// these users).
pub fn add_rules(uids: &[u32]) -> Result<()> {
    for &uid in uids {
        for errno in [libc::EACCES, libc::EPERM] {
            match request(AUDIT_ADD_RULE, &rule(uid, errno))? {
                0 => {}
                e if e == libc::EEXIST => {}
                e => anyhow::bail!("kernel audit: a rule for uid {uid} was refused (errno {e})"),
            }
        }
    }
    Ok(())
}

/// Starts watching: a thread reads the audit multicast group and sends every denial of a
/// role to `denials` (Landlock's, and with `role_uids` the file permissions' refusals of
/// those users, which [`add_rules`] asks the kernel to log). `enable` also switches the
/// kernel's audit on.
pub fn watch(
    pids: RolePids,
    enable: bool,
    role_uids: &[u32],
    denials: tokio::sync::mpsc::UnboundedSender<Denial>,
) -> Result<()> {
    if enable {
        enable_audit()?;
    }
    add_rules(role_uids)?;
    let fd = audit_socket()?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, AUDIT_NLGRP_READLOG))
        .context("kernel audit: cannot join the read-only multicast group (needs root)")?;
    std::thread::Builder::new()
        .name("kernel-audit".into())
        .spawn(move || read_loop(fd, pids, denials))
        .context("kernel audit: thread")?;
    Ok(())
}

fn read_loop(fd: OwnedFd, pids: RolePids, denials: tokio::sync::mpsc::UnboundedSender<Denial>) {
    let mut buf = vec![0u8; 1 << 16];
    let mut events = Assembler::default();
    loop {
        let n = match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::ENOBUFS) => continue,
            Err(e) => {
                tracing::error!(error = %e, "kernel audit watch stopped");
                return;
            }
        };
        let mut at = 0;
        while at + 16 <= n {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
            let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2 bytes"));
            let end = (at + len).min(n);
            if len < 16 {
                break;
            }
            let text = String::from_utf8_lossy(&buf[at + 16..end]);
            if let Some(d) = events.take(kind, text.trim_end_matches('\0'))
                && let Some(role) = pids.role_of(d.pid, &d.object)
                && denials
                    .send(Denial {
                        role,
                        pid: d.pid,
                        by: d.by,
                        blockers: d.blockers,
                        object: d.object,
                    })
                    .is_err()
            {
                return;
            }
            // Netlink messages are 4-byte aligned.
            at += (len + 3) & !3;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_is_joined_with_its_process_in_either_order() {
        let access = r#"audit(1796580368.250:4): domain=17f098692 blockers=fs.read_file path="/srv/data.vault/kek" dev="vda" ino=611"#;
        let syscall = "audit(1796580368.250:4): arch=c000003e syscall=257 success=no exit=-13 ppid=1 pid=4321 uid=0 comm=\"sekisho-portal\"";
        let landlock = Assembled {
            pid: 4321,
            by: Enforcer::Landlock,
            blockers: "fs.read_file".into(),
            object: "path=/srv/data.vault/kek".into(),
        };
        let mut a = Assembler::default();
        assert_eq!(a.take(AUDIT_LANDLOCK_ACCESS, access), None);
        assert_eq!(a.take(AUDIT_SYSCALL, syscall), Some(landlock.clone()));
        let mut b = Assembler::default();
        assert_eq!(b.take(AUDIT_SYSCALL, syscall), None);
        assert_eq!(b.take(AUDIT_LANDLOCK_ACCESS, access), Some(landlock));
        // `ppid=` is not `pid=`.
        assert_eq!(field("ppid=1 pid=4321", "pid"), Some("4321"));
        // A syscall record of another event pairs with nothing.
        let mut c = Assembler::default();
        assert_eq!(c.take(AUDIT_SYSCALL, syscall), None);
        assert_eq!(c.take(AUDIT_EOE, "audit(1796580368.250:4): "), None);
        assert_eq!(c.take(AUDIT_LANDLOCK_ACCESS, access), None);
    }

    #[test]
    fn a_refusal_by_file_permissions_is_complete_at_the_end_of_its_event() {
        let syscall = format!(
            "audit(1796580368.250:9): arch=c000003e syscall={} success=no exit=-13 a0=3 ppid=1 pid=77 uid=998 comm=\"sekisho-portal\" key=\"{RULE_KEY}\"",
            libc::SYS_connect
        );
        // sockaddr_un for /d/admin.sock: family 1, then the path.
        let mut sa = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        sa.extend_from_slice(b"/d/admin.sock\0\0\0");
        let sockaddr = format!("audit(1796580368.250:9): saddr={}", hex::encode_upper(&sa));
        let mut a = Assembler::default();
        assert_eq!(a.take(AUDIT_SYSCALL, &syscall), None);
        assert_eq!(a.take(AUDIT_SOCKADDR, &sockaddr), None);
        assert_eq!(
            a.take(AUDIT_EOE, "audit(1796580368.250:9): "),
            Some(Assembled {
                pid: 77,
                by: Enforcer::Permissions,
                blockers: "EACCES in connect".into(),
                object: "socket=/d/admin.sock".into(),
            })
        );
        // A path, quoted or in hex.
        let open = syscall.replace(":9)", ":10)").replace(
            &format!("syscall={}", libc::SYS_connect),
            &format!("syscall={}", libc::SYS_openat),
        );
        let mut b = Assembler::default();
        b.take(AUDIT_SYSCALL, &open);
        b.take(
            AUDIT_PATH,
            r#"audit(1796580368.250:10): item=0 name="/d/spool" inode=5"#,
        );
        b.take(
            AUDIT_PATH,
            r#"audit(1796580368.250:10): item=1 name="/d" inode=4"#,
        );
        let got = b.take(AUDIT_EOE, "audit(1796580368.250:10): ").unwrap();
        assert_eq!(
            (got.blockers.as_str(), got.object.as_str()),
            ("EACCES in openat", "path=/d/spool")
        );
        assert_eq!(
            path_name(&format!(
                "audit(1:2): item=0 name={}",
                hex::encode("/d/a b")
            )),
            Some("/d/a b".into())
        );
        // Without our key, a failed call is nobody's denial.
        let mut c = Assembler::default();
        c.take(AUDIT_SYSCALL, &open.replace(RULE_KEY, "other"));
        assert_eq!(c.take(AUDIT_EOE, "audit(1796580368.250:10): "), None);
    }

    #[test]
    fn a_rule_is_the_kernels_struct_with_the_key_after_it() {
        let r = rule(998, libc::EACCES);
        let word = |i: usize| u32::from_ne_bytes(r[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!((word(0), word(1), word(2)), (0x04, 2, 4));
        let (fields, values, flags) = (3 + 64, 3 + 128, 3 + 192);
        assert_eq!((word(fields + 1), word(values + 1)), (1, 998));
        assert_eq!(
            (word(fields + 2), word(values + 2) as i32),
            (103, -libc::EACCES)
        );
        assert_eq!(word(flags + 3), 0x4000_0000);
        // The mask holds the calls a probe makes, and not the ones mail is made of.
        let watched = |n: i64| word(3 + n as usize / 32) & (1 << (n % 32)) != 0;
        assert!(watched(libc::SYS_openat) && watched(libc::SYS_connect));
        assert!(!watched(libc::SYS_read) && !watched(libc::SYS_sendmsg));
        assert_eq!(word(3 + 256) as usize, RULE_KEY.len());
        assert_eq!(
            &r[(4 + 256) * 4..(4 + 256) * 4 + RULE_KEY.len()],
            RULE_KEY.as_bytes()
        );
        assert_eq!(r.len() % 4, 0);
    }

    #[test]
    fn roles_are_known_by_their_current_pid_and_their_start_up_proof_is_expected_once() {
        let p = RolePids::new([("portal", vec!["/d.vault/kek".into()])].into());
        p.set("portal", Some(10));
        assert_eq!(p.role_of(10, "path=/d/spool"), Some("portal"));
        assert_eq!(p.role_of(10, "path=/d.vault/kek"), None, "its own proof");
        assert_eq!(
            p.role_of(10, "path=/d.vault/kek"),
            Some("portal"),
            "once only"
        );
        p.set("portal", Some(11));
        assert_eq!(
            (p.role_of(10, "path=/x"), p.role_of(11, "path=/x")),
            (None, Some("portal"))
        );
    }
}
