//! Landlock confinement of the roles that face the network.
//!
//! **mx** parses mail from the Internet, so it is where an attacker lands first; it needs its
//! data directory and whatever files routes name at run time (a private CA, a Maildir), so its
//! rule set is the **complement of the vault's directory** (the KEK's directory: the KEK, its
//! rotation file, the pinned audit keys and the canary registry): for every directory on the
//! way from `/` to it, each entry that exists except that path is allowed (read and write,
//! never execute). The vault's directory, anything created later beside it, and every symlink
//! shortcut to it stay out of reach.
//!
//! **The portal** needs nothing on disk once it has read its TLS certificate and key (before
//! its rules take effect), so its rule set is an **allow-list**: read-only beneath its own
//! `/proc` entries and the cgroup files, nothing else. The spool, `keys/`, the database,
//! quarantine blobs and the vault's directory are out of its reach (it talks to the vault over
//! its socket, which Landlock does not govern; what it may ask there the vault decides).
//!
//! Landlock also stops a confined process from ptracing or reading the memory of one that is
//! not (the vault), even as root. Each role then checks that it really cannot open what it
//! must not, and refuses to run if it can (unless `[sandbox] landlock = "best-effort"`).
//!
//! A seccomp filter ([`forbid_exec`]) adds that `mx` can neither run a program nor create a
//! process nor inspect one: any attempt kills it, and the supervisor raises it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use landlock::{
    ABI, Access, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreated,
    RulesetCreatedAttr, RulesetStatus,
};

/// The Landlock ABI whose rights we ask for; older kernels enforce what they know.
const TARGET: ABI = ABI::V5;

/// The paths to allow so that everything except `protected` (and whatever later appears in
/// their directories) stays reachable. `protected` must be absolute.
pub fn complement(protected: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut ancestors = BTreeSet::new();
    for p in protected {
        let mut a = p.parent();
        while let Some(dir) = a {
            ancestors.insert(dir.to_path_buf());
            a = dir.parent();
        }
    }
    let mut allowed = Vec::new();
    for dir in &ancestors {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            if ancestors.contains(&path) || protected.contains(&path) {
                continue;
            }
            // A symlink would grant its target, which may be the protected file; its
            // target is reachable under its own real path if that is allowed. An entry
            // removed since the directory was read (another process's temporary file) is
            // simply not granted.
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => continue,
                Ok(_) => allowed.push(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(allowed)
}

/// Real, absolute form of a path that may not exist yet (its deepest existing ancestor is
/// resolved, the rest appended).
fn real(path: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(path)?;
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(r) = existing.canonicalize() {
            let mut out = r;
            out.extend(rest.iter().rev());
            return Ok(out);
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => bail!("cannot resolve {}", path.display()),
        }
    }
}

/// What confinement achieved, for the banner and logs.
pub struct Confined {
    /// `fully enforced`, `partially enforced` or `not enforced`.
    pub status: &'static str,
    /// Rules installed.
    pub rules: usize,
    /// What must be out of reach (the KEK; for the portal also the data directory) could be
    /// opened after confinement (only in best-effort mode).
    pub kek_reachable: bool,
}

/// Landlock's answer in words.
fn status_name(s: RulesetStatus) -> &'static str {
    match s {
        RulesetStatus::FullyEnforced => "fully enforced",
        RulesetStatus::PartiallyEnforced => "partially enforced",
        RulesetStatus::NotEnforced => "not enforced",
    }
}

/// True if `path` can still be opened (a refusal or absence is out of reach). One `open`
/// (which opens a directory as well), so the kernel audit watch sees exactly one refusal
/// per path: the expected proof.
fn reachable(path: &Path) -> bool {
    match std::fs::File::open(path) {
        Ok(_) => true,
        Err(e) => {
            e.kind() != std::io::ErrorKind::PermissionDenied
                && e.kind() != std::io::ErrorKind::NotFound
        }
    }
}

/// Refuses to run when `what` is still reachable after confinement (or warns, best-effort).
fn prove(role: &str, what: &[&Path], status: &str, required: bool) -> Result<bool> {
    let open: Vec<String> = what
        .iter()
        .filter(|p| reachable(p))
        .map(|p| p.display().to_string())
        .collect();
    if open.is_empty() {
        return Ok(false);
    }
    if required {
        bail!(
            "sandbox: {} still readable from the {role} role (Landlock {status}); this kernel cannot confine it. Use a kernel with Landlock (Linux 5.13+, `lsm=landlock,…`) or set [sandbox] landlock = \"best-effort\" to run unconfined",
            open.join(", ")
        );
    }
    tracing::warn!(role, reachable = %open.join(", "), landlock = status, "role runs unconfined");
    Ok(true)
}

/// What `role` opens at start to prove its confinement (real paths, as the kernel names
/// them in its audit records): mx the KEK and its directory, the portal the KEK and the data
/// directory. Resolved while still root: resolving them as the role's user would itself be
/// refused (and raised).
pub fn proof_targets(cfg: &crate::config::Config, role: &str) -> Vec<PathBuf> {
    let kek = real(&cfg.kek_file).unwrap_or_else(|_| cfg.kek_file.clone());
    let vault_dir = kek.parent().map(Path::to_path_buf).unwrap_or_default();
    let data = real(&cfg.data_dir).unwrap_or_else(|_| cfg.data_dir.clone());
    match role {
        "mx" => vec![kek, vault_dir],
        "portal" => vec![kek, data],
        _ => Vec::new(),
    }
}

/// [`proof_targets`] of every confined role, for the kernel audit watch.
pub fn proof_paths(
    cfg: &crate::config::Config,
) -> std::collections::HashMap<&'static str, Vec<String>> {
    ["mx", "portal"]
        .into_iter()
        .map(|role| {
            let paths = proof_targets(cfg, role)
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            (role, paths)
        })
        .collect()
}

/// A role's Landlock rule set, made but not yet in force.
pub struct Rules {
    ruleset: RulesetCreated,
    rules: usize,
}

/// Rules in force on this thread (and every thread it starts), not yet proven.
pub struct Restricted {
    status: &'static str,
    rules: usize,
}

fn new_ruleset() -> Result<RulesetCreated> {
    Ruleset::default()
        .handle_access(AccessFs::from_all(TARGET))
        .context("sandbox: Landlock rule set")?
        .create()
        .context("sandbox: Landlock rule set")
}

/// mx's rules: everything but the vault's directory — the KEK's — may be read and written
/// (never executed). Made while still root, which may list every directory on the way.
pub fn rules_mx(kek: &Path) -> Result<Rules> {
    let kek = real(kek).context("sandbox: KEK path")?;
    let vault_dir = kek
        .parent()
        .context("sandbox: the KEK has no directory")?
        .to_path_buf();
    let allowed = complement(std::slice::from_ref(&vault_dir))
        .context("sandbox: listing the KEK's directories")?;
    let dir_rights = AccessFs::from_all(TARGET) & !AccessFs::Execute;
    let file_rights: BitFlags<AccessFs> = AccessFs::from_file(TARGET) & !AccessFs::Execute;
    let mut ruleset = new_ruleset()?;
    let mut rules = 0;
    for path in &allowed {
        let Ok(fd) = PathFd::new(path) else {
            continue; // vanished meanwhile
        };
        let rights = if path.is_dir() {
            dir_rights
        } else {
            file_rights
        };
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, rights))
            .with_context(|| format!("sandbox: rule for {}", path.display()))?;
        rules += 1;
    }
    Ok(Rules { ruleset, rules })
}

/// The portal's rules, an allow-list: read-only beneath its own /proc entries, the cgroup
/// files the runtime reads to size itself, and the overcommit setting the C library's
/// allocator reads when it trims a thread's heap. Nothing else: its TLS certificate and key
/// were read before.
pub fn rules_portal() -> Result<Rules> {
    let read = AccessFs::from_read(TARGET);
    let mut ruleset = new_ruleset()?;
    let mut rules = 0;
    let own = [
        PathBuf::from("/proc/self"),
        PathBuf::from("/sys/fs/cgroup"),
        PathBuf::from("/proc/sys/vm/overcommit_memory"),
    ];
    for path in own.iter().filter(|p| p.exists()) {
        let path = real(path)?;
        let fd = PathFd::new(&path)
            .with_context(|| format!("sandbox: the portal needs {}", path.display()))?;
        let rights = if path.is_dir() {
            read
        } else {
            read & AccessFs::from_file(TARGET)
        };
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, rights))
            .with_context(|| format!("sandbox: rule for {}", path.display()))?;
        rules += 1;
    }
    Ok(Rules { ruleset, rules })
}

impl Rules {
    /// Puts the rules in force on the calling thread (call before any other thread starts).
    pub fn restrict(self) -> Result<Restricted> {
        let status = self
            .ruleset
            .restrict_self()
            .context("sandbox: Landlock restrict_self")?;
        Ok(Restricted {
            status: status_name(status.ruleset),
            rules: self.rules,
        })
    }
}

impl Restricted {
    /// Proves (after the role dropped to its user, if it does) that `targets` — what `role`
    /// must not reach — do not open; refuses to run if one does (unless best-effort).
    pub fn prove(self, role: &str, targets: &[PathBuf], required: bool) -> Result<Confined> {
        let refs: Vec<&Path> = targets.iter().map(PathBuf::as_path).collect();
        let kek_reachable = prove(role, &refs, self.status, required)?;
        Ok(Confined {
            status: self.status,
            rules: self.rules,
            kek_reachable,
        })
    }
}

/// The system calls `mx` never makes: running a program, creating a process, inspecting
/// another one. Any attempt kills `mx` at once (`SIGSYS`); the supervisor sees how it died,
/// records a `sandbox-violation` and starts a fresh `mx`.
const FORBIDDEN: &[i64] = &[
    libc::SYS_execve,
    libc::SYS_execveat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_fork,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_vfork,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
];

/// Installs the seccomp filters of `mx` on the calling thread (inherited by every thread it
/// creates later): the [`FORBIDDEN`] calls and `clone` without `CLONE_THREAD` (a new process)
/// kill the process; `clone3` answers `ENOSYS`, so threads are made with `clone`, whose flags
/// a filter can see.
pub fn forbid_exec() -> Result<()> {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    use std::collections::BTreeMap;
    let arch: TargetArch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| anyhow::anyhow!("seccomp: {e:?}"))?;
    let mut kill: BTreeMap<i64, Vec<SeccompRule>> =
        FORBIDDEN.iter().map(|&n| (n, Vec::new())).collect();
    let new_process = SeccompRule::new(vec![SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
        0,
    )?])?;
    kill.insert(libc::SYS_clone, vec![new_process]);
    let filters = [
        SeccompFilter::new(kill, SeccompAction::Allow, SeccompAction::KillProcess, arch)?,
        SeccompFilter::new(
            [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch,
        )?,
    ];
    for f in filters {
        let program: BpfProgram = f.try_into()?;
        seccompiler::apply_filter(&program).context("seccomp: installing the filter")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_complement_allows_everything_but_the_protected_path() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        for dir in ["data/spool", "data.vault", "pki"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("data.vault/kek"), "k").unwrap();
        std::fs::write(root.join("data.vault/other"), "o").unwrap();
        std::os::unix::fs::symlink(root.join("data.vault"), root.join("shortcut")).unwrap();
        let kek = root.join("data.vault/kek");
        let allowed = complement(std::slice::from_ref(&kek)).unwrap();
        for want in ["data", "pki", "data.vault/other"] {
            assert!(
                allowed.contains(&root.join(want)),
                "{want} missing: {allowed:?}"
            );
        }
        for never in [
            kek.as_path(),
            &root.join("data.vault"),
            &root.join("shortcut"),
            &root,
        ] {
            assert!(
                !allowed.iter().any(|a| a == never),
                "{} allowed",
                never.display()
            );
        }
        // Nothing allowed is an ancestor of the key.
        assert!(!allowed.iter().any(|a| kek.starts_with(a)));
    }

    #[test]
    fn real_resolves_paths_that_do_not_exist_yet() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        assert_eq!(real(&root.join("a/b/kek")).unwrap(), root.join("a/b/kek"));
    }
}
