//! Landlock confinement of the `mx` role: everything it may touch, except the vault's key.
//!
//! `mx` faces the network and parses mail, so it is where an attacker lands first. Before its
//! runtime starts (Landlock binds the calling thread and the threads it creates later), `mx`
//! restricts itself to a rule set built as the **complement of the protected files**: for every
//! directory on the way from `/` to a protected file, each entry that exists except that path
//! is allowed (read and write, never execute). The protected file itself, anything created later
//! beside it (a rotated KEK is a new file), and every symlink shortcut to it stay out of reach.
//! Landlock also stops a confined process from ptracing or reading the memory of one that is
//! not (the vault), even as root. Then `mx` checks that it really cannot open the KEK, and
//! refuses to run if it can (unless `[sandbox] landlock = "best-effort"`).
//!
//! A seccomp filter ([`forbid_exec`]) adds that `mx` can neither run a program nor create a
//! process nor inspect one: any attempt kills it, and the supervisor raises it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use landlock::{
    ABI, Access, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus,
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
            // target is reachable under its own real path if that is allowed.
            if std::fs::symlink_metadata(&path)?.file_type().is_symlink() {
                continue;
            }
            allowed.push(path);
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
    /// The KEK could be opened after confinement (only in best-effort mode).
    pub kek_reachable: bool,
}

/// Confines the calling thread (call before starting any other thread) so that `kek` — and
/// the rotation file beside it — cannot be read, written or replaced; then proves it.
pub fn confine_mx(kek: &Path, required: bool) -> Result<Confined> {
    let kek = real(kek).context("sandbox: KEK path")?;
    let protected = vec![kek.clone(), kek.with_extension("next")];
    let allowed = complement(&protected).context("sandbox: listing the KEK's directories")?;
    let dir_rights = AccessFs::from_all(TARGET) & !AccessFs::Execute;
    let file_rights: BitFlags<AccessFs> = AccessFs::from_file(TARGET) & !AccessFs::Execute;
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(TARGET))
        .context("sandbox: Landlock rule set")?
        .create()
        .context("sandbox: Landlock rule set")?;
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
    let status = ruleset
        .restrict_self()
        .context("sandbox: Landlock restrict_self")?;
    let status = match status.ruleset {
        RulesetStatus::FullyEnforced => "fully enforced",
        RulesetStatus::PartiallyEnforced => "partially enforced",
        RulesetStatus::NotEnforced => "not enforced",
    };
    // The proof: the KEK must not open from here.
    let reachable = match std::fs::File::open(&kek) {
        Ok(_) => true,
        Err(e) => {
            e.kind() != std::io::ErrorKind::PermissionDenied
                && e.kind() != std::io::ErrorKind::NotFound
        }
    };
    if reachable {
        if required {
            bail!(
                "sandbox: the KEK {} is readable from the mx role (Landlock {status}); this kernel cannot confine mx. Use a kernel with Landlock (Linux 5.13+, `lsm=landlock,…`) or set [sandbox] landlock = \"best-effort\" to run unconfined",
                kek.display()
            );
        }
        tracing::warn!(kek = %kek.display(), landlock = status, "mx runs unconfined: the KEK is readable from it");
    }
    Ok(Confined {
        status,
        rules,
        kek_reachable: reachable,
    })
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
