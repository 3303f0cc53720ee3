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
const AUDIT_SYSCALL: u16 = 1300;
const AUDIT_EOE: u16 = 1320;
const AUDIT_LANDLOCK_ACCESS: u16 = 1423;
/// The read-only multicast group of audit records.
const AUDIT_NLGRP_READLOG: u32 = 1;
/// `audit_status.mask` bit for `enabled`.
const AUDIT_STATUS_ENABLED: u32 = 1;
/// Events kept while waiting for their `SYSCALL` record.
const MAX_PENDING: usize = 256;

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

/// A Landlock denial by one of the roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Which role.
    pub role: &'static str,
    /// Its pid.
    pub pid: u32,
    /// What Landlock blocked (`fs.read_file`, `fs.write_file`, …).
    pub blockers: String,
    /// On what (`path="…"`, or the record's other fields).
    pub object: String,
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

/// Joins each event's `LANDLOCK_ACCESS` record with its `SYSCALL` record (which names the
/// process), in whatever order they come.
#[derive(Default)]
pub struct Assembler {
    access: BTreeMap<u64, (String, String)>,
    pids: BTreeMap<u64, u32>,
}

impl Assembler {
    /// Takes one record; returns a denial once both halves of an event are in.
    pub fn take(&mut self, kind: u16, text: &str) -> Option<(u32, String, String)> {
        let serial = serial(text)?;
        match kind {
            AUDIT_LANDLOCK_ACCESS => {
                let blockers = field(text, "blockers").unwrap_or("?").to_string();
                let object = match field(text, "path") {
                    Some(p) => format!("path={p}"),
                    None => text.split("): ").nth(1).unwrap_or("").to_string(),
                };
                self.access.insert(serial, (blockers, object));
            }
            AUDIT_SYSCALL => {
                if let Some(pid) = field(text, "pid").and_then(|p| p.parse().ok()) {
                    self.pids.insert(serial, pid);
                }
            }
            AUDIT_EOE => {
                // The event is complete: forget what never paired.
                self.pids.remove(&serial);
                self.access.remove(&serial);
                return None;
            }
            _ => return None,
        }
        while self.access.len() > MAX_PENDING {
            self.access.pop_first();
        }
        while self.pids.len() > MAX_PENDING {
            self.pids.pop_first();
        }
        if self.access.contains_key(&serial) && self.pids.contains_key(&serial) {
            let (blockers, object) = self.access.remove(&serial)?;
            let pid = self.pids.remove(&serial)?;
            return Some((pid, blockers, object));
        }
        None
    }
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

/// Switches the kernel's audit on (it stays as it is if already on).
fn enable_audit() -> Result<()> {
    let fd = audit_socket()?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).context("kernel audit: bind")?;
    // struct audit_status: mask, enabled, failure, pid, rate_limit, backlog_limit, lost,
    // backlog, then newer fields (zero).
    let mut payload = Vec::with_capacity(48);
    for v in [AUDIT_STATUS_ENABLED, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] {
        payload.extend_from_slice(&v.to_ne_bytes());
    }
    let mut msg = Vec::with_capacity(16 + payload.len());
    msg.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&AUDIT_SET.to_ne_bytes());
    msg.extend_from_slice(&(1u16 | 4).to_ne_bytes()); // NLM_F_REQUEST | NLM_F_ACK
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&payload);
    sendto(
        fd.as_raw_fd(),
        &msg,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .context("kernel audit: AUDIT_SET")?;
    let mut ack = [0u8; 1024];
    let n = recv(fd.as_raw_fd(), &mut ack, MsgFlags::empty()).context("kernel audit: ack")?;
    // NLMSG_ERROR with error 0 is the ack.
    let error = ack
        .get(16..20)
        .filter(|_| n >= 20)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match error {
        Some(0) => Ok(()),
        Some(e) => anyhow::bail!("kernel audit: AUDIT_SET refused ({})", -e),
        None => anyhow::bail!("kernel audit: no answer to AUDIT_SET"),
    }
}

/// Starts watching: a thread reads the audit multicast group and sends every Landlock denial
/// by a role to `denials`. `enable` also switches the kernel's audit on.
pub fn watch(
    pids: RolePids,
    enable: bool,
    denials: tokio::sync::mpsc::UnboundedSender<Denial>,
) -> Result<()> {
    if enable {
        enable_audit()?;
    }
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
            if let Some((pid, blockers, object)) = events.take(kind, text.trim_end_matches('\0'))
                && let Some(role) = pids.role_of(pid, &object)
                && denials
                    .send(Denial {
                        role,
                        pid,
                        blockers,
                        object,
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
        let mut a = Assembler::default();
        assert_eq!(a.take(AUDIT_LANDLOCK_ACCESS, access), None);
        assert_eq!(
            a.take(AUDIT_SYSCALL, syscall),
            Some((
                4321,
                "fs.read_file".into(),
                "path=/srv/data.vault/kek".into()
            ))
        );
        let mut b = Assembler::default();
        assert_eq!(b.take(AUDIT_SYSCALL, syscall), None);
        assert!(b.take(AUDIT_LANDLOCK_ACCESS, access).is_some());
        // `ppid=` is not `pid=`.
        assert_eq!(field("ppid=1 pid=4321", "pid"), Some("4321"));
        // A syscall record of another event pairs with nothing.
        let mut c = Assembler::default();
        assert_eq!(c.take(AUDIT_SYSCALL, syscall), None);
        assert_eq!(c.take(AUDIT_EOE, "audit(1796580368.250:4): "), None);
        assert_eq!(c.take(AUDIT_LANDLOCK_ACCESS, access), None);
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
