//! `sekisho store grant-roles`: one PostgreSQL user per role, with the narrowest grants
//! (`store::roles`), and each role's password in a file only that role can read — the vault's
//! in the vault's directory (out of mx's and the portal's reach), mx's in its `keys/` (out of
//! the portal's). The portal gets no login at all: it opens no database.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use store::roles::RoleLogin;

use crate::config::Config;

#[derive(Subcommand)]
pub enum StoreCmd {
    /// Create (or update) the roles' own database users and grants (PostgreSQL; run as the
    /// store's owner, `[store] url`). Passwords are kept unless --rotate.
    GrantRoles {
        /// New passwords for every role (restart the node after).
        #[arg(long)]
        rotate: bool,
        /// JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The roles that log in to the database.
const ROLES: [&str; 2] = ["vault", "mx"];

/// Where `role`'s database password is kept.
pub fn password_file(cfg: &Config, role: &str) -> Result<PathBuf> {
    Ok(match role {
        "vault" => cfg
            .kek_file
            .parent()
            .context("the KEK has no directory")?
            .join("store-vault.password"),
        "mx" => cfg.data_dir.join("keys").join("store-mx.password"),
        other => bail!("{other} has no database login"),
    })
}

/// `role`'s database password, if `grant-roles` made one.
pub fn read_password(cfg: &Config, role: &str) -> Result<Option<zeroize::Zeroizing<String>>> {
    let path = password_file(cfg, role)?;
    match std::fs::read_to_string(&path) {
        Ok(p) => Ok(Some(zeroize::Zeroizing::new(p.trim().to_string()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_password(cfg: &Config, role: &str, path: &PathBuf, password: &str) -> Result<()> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let tmp = path.with_extension("new");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    writeln!(f, "{password}")?;
    f.sync_all()?;
    // Readable by the role's own user, when it runs under one.
    crate::sysusers::give(cfg, role, &tmp)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

pub async fn run(cfg: Config, cmd: StoreCmd) -> Result<()> {
    let StoreCmd::GrantRoles { rotate, json } = cmd;
    let Some(sc) = &cfg.store_url else {
        bail!(
            "per-role database users are a PostgreSQL feature ([store] url): on SQLite the portal opens no database and mx and the vault share the file"
        );
    };
    let store = crate::serve::open_store(&cfg).await?;
    let mut logins = Vec::new();
    for role in ROLES {
        let user = store::roles::role_user(&sc.database()?, role);
        let password = match read_password(&cfg, role)? {
            Some(p) if !rotate => p,
            None if !rotate && store.login_exists(&user).await? => bail!(
                "the {role} role's database user {user} exists already (made on another node of this cluster): copy {} from that node, or run with --rotate and copy the new files to every node",
                password_file(&cfg, role)?.display()
            ),
            _ => zeroize::Zeroizing::new(keys::SecretKey::generate().to_hex().to_string()),
        };
        logins.push(RoleLogin {
            role,
            user,
            password,
        });
    }
    store.grant_roles(&logins).await?;
    for l in &logins {
        write_password(&cfg, l.role, &password_file(&cfg, l.role)?, &l.password)?;
    }
    store
        .record(&store::NewRecord {
            principal: &crate::cli_principal(),
            action: "store-grant-roles",
            object: &logins
                .iter()
                .map(|l| l.user.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            reason: if rotate { "passwords rotated" } else { "" },
            outcome: "ok",
            ..store::NewRecord::by(proto::Process::Cli)
        })
        .await?;
    let users: Vec<(&str, &str)> = logins.iter().map(|l| (l.role, l.user.as_str())).collect();
    if json {
        return crate::print_json(&users);
    }
    for (role, user) in users {
        println!(
            "{role}: connects as {user} ({})",
            password_file(&cfg, role)?.display()
        );
    }
    println!(
        "portal: no database login (it asks the vault); restart the node to connect as these users"
    );
    Ok(())
}

/// Re-applies the grants at start when the roles have their own users (a migration may have
/// added tables since `grant-roles` ran).
pub async fn regrant(cfg: &Config) -> Result<()> {
    if cfg.store_url.is_none() || read_password(cfg, "mx")?.is_none() {
        return Ok(());
    }
    let store = crate::serve::open_store(cfg).await?;
    store.grant_roles(&[]).await?;
    store.close().await;
    Ok(())
}
