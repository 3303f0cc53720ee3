//! Each role under its own Unix user, as Postfix runs its daemons: when `sekisho serve` starts
//! as root (and `[sandbox] users = "on"`, the default), the vault runs as `sekisho-vault`, mx
//! as `sekisho-mx` and the portal as `sekisho-portal`; the supervisor alone stays root. The
//! file system then separates them even where Landlock cannot (a path-named Unix socket, a
//! database file opened before confinement):
//!
//! | path                         | owner:group            | mode  | who gets in              |
//! |------------------------------|------------------------|-------|--------------------------|
//! | data directory               | root:sekisho           | 2771  | vault, mx; others pass through to `vault.sock` only |
//! | `sekisho.db*`                | root:sekisho           | 0660  | vault, mx                |
//! | `spool/`, `keys/`            | sekisho-mx             | 0700  | mx (`keys/`: its PostgreSQL password; no spool key) |
//! | `quarantine/`                | sekisho-mx:sekisho     | 2770  | mx writes, vault reads and deletes |
//! | `admin.sock`                 | sekisho-mx:sekisho     | 0660  | vault (and root: the CLI) |
//! | `vault.sock`                 | sekisho-vault          | 0666  | anyone may connect; the vault tells callers apart by their kernel-given uid and refuses strangers |
//! | the KEK's directory          | sekisho-vault          | 0700  | vault                    |
//! | `tls/` (generated)           | root                   | 0700  | read by mx and the portal before they drop root |
//!
//! Each role binds its ports and reads its TLS key while still root (port 25 and 443 need
//! it), then drops to its user for good (no capability, no way back) before anything reads
//! a byte from the network. The supervisor creates the users and the `sekisho` group with
//! `groupadd`/`useradd --system` if they are missing, and sets the table above at every start.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::unistd::{Gid, Group, Uid, User};

use crate::config::Config;

/// The group of the roles that share the data directory (vault, mx).
pub const GROUP: &str = "sekisho";

/// One role's user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    /// Its uid.
    pub uid: Uid,
    /// Its primary gid.
    pub gid: Gid,
}

/// The roles' users, as this machine knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleUsers {
    pub vault: Ids,
    pub mx: Ids,
    pub portal: Ids,
    /// The shared group of vault and mx.
    pub group: Gid,
}

/// The user each role runs as.
pub fn user_name(role: &str) -> Option<&'static str> {
    match role {
        "vault" => Some("sekisho-vault"),
        "mx" => Some("sekisho-mx"),
        "portal" => Some("sekisho-portal"),
        _ => None,
    }
}

impl RoleUsers {
    /// The users of `role`.
    pub fn of(&self, role: &str) -> Option<Ids> {
        match role {
            "vault" => Some(self.vault),
            "mx" => Some(self.mx),
            "portal" => Some(self.portal),
            _ => None,
        }
    }
}

/// The home directory of `role`'s user (`/nonexistent` for the users the supervisor made).
pub fn home(role: &str) -> Option<PathBuf> {
    User::from_name(user_name(role)?)
        .ok()
        .flatten()
        .map(|u| u.dir)
}

/// True if this process should run its roles under their own users: it is root and the
/// configuration does not say otherwise.
pub fn wanted(cfg: &Config) -> bool {
    cfg.role_users && nix::unistd::geteuid().is_root()
}

fn ids(name: &str) -> Result<Option<Ids>> {
    Ok(User::from_name(name)
        .with_context(|| format!("looking up user {name}"))?
        .map(|u| Ids {
            uid: u.uid,
            gid: u.gid,
        }))
}

/// The users, if all exist.
pub fn lookup() -> Result<Option<RoleUsers>> {
    let group = Group::from_name(GROUP).context("looking up group sekisho")?;
    let (Some(vault), Some(mx), Some(portal), Some(group)) = (
        ids("sekisho-vault")?,
        ids("sekisho-mx")?,
        ids("sekisho-portal")?,
        group,
    ) else {
        return Ok(None);
    };
    let users = RoleUsers {
        vault,
        mx,
        portal,
        group: group.gid,
    };
    users.check()?;
    Ok(Some(users))
}

impl RoleUsers {
    /// Refuses users that would not separate anything: root, one user for two roles, the
    /// portal in the shared group.
    fn check(&self) -> Result<()> {
        let all = [self.vault, self.mx, self.portal];
        if all.iter().any(|i| i.uid.is_root() || i.gid.as_raw() == 0) {
            bail!("the sekisho-* users must not be root or in group root");
        }
        if self.vault.uid == self.mx.uid
            || self.vault.uid == self.portal.uid
            || self.mx.uid == self.portal.uid
        {
            bail!("sekisho-vault, sekisho-mx and sekisho-portal must be three different users");
        }
        if self.portal.gid == self.group {
            bail!("sekisho-portal must not have group sekisho (the data directory's)");
        }
        Ok(())
    }
}

/// Runs `program args`, failing with its stderr.
fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program} (create the sekisho users yourself, or set [sandbox] users = \"off\")"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The users, creating what is missing (system users, no home, no shell). Another node
/// starting at the same moment may create them first: that is fine.
pub fn ensure() -> Result<RoleUsers> {
    if let Some(u) = lookup()? {
        return Ok(u);
    }
    let nologin = ["/usr/sbin/nologin", "/sbin/nologin", "/bin/false"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/bin/false");
    if Group::from_name(GROUP)?.is_none() {
        let _ = run("groupadd", &["--system", GROUP]);
    }
    let common = ["--system", "--no-create-home", "--home-dir", "/nonexistent"];
    for (role, group, what) in [
        ("vault", Some(GROUP), "Sekisho vault role"),
        ("mx", Some(GROUP), "Sekisho mx role"),
        ("portal", None, "Sekisho portal role"),
    ] {
        let name = user_name(role).expect("a role");
        if User::from_name(name)?.is_some() {
            continue;
        }
        let mut args: Vec<&str> = common.to_vec();
        args.extend(["--shell", nologin, "--comment", what]);
        match group {
            Some(g) => args.extend(["--gid", g]),
            None => args.push("--user-group"),
        }
        args.push(name);
        if let Err(e) = run("useradd", &args)
            && User::from_name(name)?.is_none()
        {
            return Err(e);
        }
    }
    lookup()?.context("the sekisho users could not be created")
}

/// Becomes `ids` for good: no supplementary groups, real, effective and saved ids all the
/// role's, so no way back to root. Call while the process is one thread.
pub fn become_user(ids: Ids) -> Result<()> {
    nix::unistd::setgroups(&[]).context("setgroups")?;
    nix::unistd::setresgid(ids.gid, ids.gid, ids.gid).context("setresgid")?;
    nix::unistd::setresuid(ids.uid, ids.uid, ids.uid).context("setresuid")?;
    // All three uids are the role's (asked, not tried: a refused setuid(0) would be a denial
    // the kernel audit watch raises).
    let r = nix::unistd::getresuid().context("getresuid")?;
    if [r.real, r.effective, r.saved].iter().any(|u| *u != ids.uid) {
        bail!("dropping root did not hold");
    }
    // What the role creates is never for others (sockets are set explicitly).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o007));
    Ok(())
}

/// Sets owner, group and mode of `path` (not following a symlink); nothing when they are
/// already so (a large quarantine is walked at every start).
fn set(path: &Path, uid: Uid, gid: Gid, mode: u32) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.uid() == uid.as_raw() && meta.gid() == gid.as_raw() && meta.mode() & 0o7777 == mode {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(uid.as_raw()), Some(gid.as_raw()))
        .with_context(|| format!("chown {}", path.display()))?;
    if !meta.file_type().is_symlink() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    Ok(())
}

/// Sets `root` and everything beneath it: directories `dir_mode`, files `file_mode`.
fn set_tree(root: &Path, uid: Uid, gid: Gid, dir_mode: u32, file_mode: u32) -> Result<()> {
    if !root.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(dir_mode & 0o777)
            .create(root)
            .with_context(|| format!("mkdir {}", root.display()))?;
    }
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p)?;
        if meta.is_dir() {
            set(&p, uid, gid, dir_mode)?;
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        } else if meta.file_type().is_socket() {
            continue; // its role sets it when it binds
        } else {
            set(&p, uid, gid, file_mode)?;
        }
    }
    Ok(())
}

/// Sets owners and modes as in the module's table, creating the role directories that are
/// missing. Run by the supervisor (root) before it starts the roles.
pub fn own(cfg: &Config, users: &RoleUsers) -> Result<()> {
    let root = Uid::from_raw(0);
    let data = &cfg.data_dir;
    set(data, root, users.group, 0o2771)?;
    for name in ["sekisho.db", "sekisho.db-wal", "sekisho.db-shm"] {
        let p = data.join(name);
        if p.exists() {
            set(&p, root, users.group, 0o660)?;
        }
    }
    let mx = users.mx;
    set_tree(&data.join("spool"), mx.uid, users.group, 0o700, 0o600)?;
    // mx's PostgreSQL password, when it has one (and a first-format spool key until mx
    // migrates the spool).
    if data.join("keys").exists() {
        set_tree(&data.join("keys"), mx.uid, users.group, 0o700, 0o600)?;
    }
    set_tree(&data.join("quarantine"), mx.uid, users.group, 0o2770, 0o660)?;
    let maildir = data.join("maildir");
    if maildir.exists() {
        set_tree(&maildir, mx.uid, users.group, 0o2770, 0o660)?;
    }
    let tls = data.join("tls");
    if tls.exists() {
        set_tree(&tls, root, Gid::from_raw(0), 0o700, 0o600)?;
    }
    if let Some(dir) = cfg.kek_file.parent() {
        let v = users.vault;
        set_tree(dir, v.uid, v.gid, 0o700, 0o600)?;
    }
    Ok(())
}

/// Hands a file a role will read (a database password written by the CLI) to that role's
/// user, when the roles run under their own users; otherwise leaves it.
pub fn give(cfg: &Config, role: &str, path: &Path) -> Result<()> {
    if !wanted(cfg) {
        return Ok(());
    }
    let Some(users) = lookup()? else {
        return Ok(()); // the supervisor creates the users and sets owners at its start
    };
    let ids = users.of(role).context("no such role")?;
    set(path, ids.uid, ids.gid, 0o600)
}

/// The first directory on the way to `path` (its parents) that `ids` may not pass through (mode and
/// ownership checked as the kernel would, without ACLs), if any.
pub fn unreachable_ancestor(path: &Path, ids: Ids, group: Option<Gid>) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let abs = std::path::absolute(path).ok()?;
    let mut dirs: Vec<&Path> = abs.ancestors().skip(1).collect();
    dirs.reverse();
    for d in dirs {
        let Ok(m) = std::fs::metadata(d) else {
            return None;
        };
        let mode = m.mode();
        let passes = if m.uid() == ids.uid.as_raw() {
            mode & 0o100 != 0
        } else if m.gid() == ids.gid.as_raw() || Some(m.gid()) == group.map(Gid::as_raw) {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !passes {
            return Some(d.to_path_buf());
        }
    }
    None
}

/// Refuses to start roles that could not reach their own directories (a data directory
/// under a private home or a `mktemp -d` directory), with one line that says what to do.
pub fn check_reachable(cfg: &Config, users: &RoleUsers) -> Result<()> {
    let vault_dir = cfg.kek_file.parent().unwrap_or(Path::new("/"));
    let checks = [
        ("sekisho-vault", users.vault, Some(users.group), vault_dir),
        (
            "sekisho-vault",
            users.vault,
            Some(users.group),
            &cfg.data_dir,
        ),
        ("sekisho-mx", users.mx, Some(users.group), &cfg.data_dir),
        ("sekisho-portal", users.portal, None, &cfg.data_dir),
    ];
    for (name, ids, group, path) in checks {
        if let Some(d) = unreachable_ancestor(path, ids, group) {
            bail!(
                "{name} cannot pass through {} to reach {}: make it searchable (chmod o+x {}), or set [sandbox] users = \"off\"",
                d.display(),
                path.display(),
                d.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(uid: u32, gid: u32) -> Ids {
        Ids {
            uid: Uid::from_raw(uid),
            gid: Gid::from_raw(gid),
        }
    }

    #[test]
    fn users_that_separate_nothing_are_refused() {
        let good = RoleUsers {
            vault: ids(901, 900),
            mx: ids(902, 900),
            portal: ids(903, 903),
            group: Gid::from_raw(900),
        };
        assert!(good.check().is_ok());
        assert_eq!(good.of("mx"), Some(ids(902, 900)));
        let same = RoleUsers {
            mx: ids(901, 900),
            ..good
        };
        assert!(same.check().is_err());
        let portal_in_group = RoleUsers {
            portal: ids(903, 900),
            ..good
        };
        assert!(portal_in_group.check().is_err());
        let root = RoleUsers {
            vault: ids(0, 900),
            ..good
        };
        assert!(root.check().is_err());
    }

    #[test]
    fn a_private_ancestor_is_found() {
        let d = tempfile::tempdir().unwrap();
        let private = d.path().join("private");
        std::fs::create_dir_all(private.join("data")).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let stranger = ids(65_000, 65_000);
        assert_eq!(
            unreachable_ancestor(&private.join("data/x"), stranger, None),
            Some(private.clone())
        );
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(
            unreachable_ancestor(&private.join("data/x"), stranger, None),
            None
        );
    }
}
