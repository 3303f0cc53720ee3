//! `sekisho backup --to DIR` and `sekisho restore --from DIR`: the store (a consistent
//! snapshot: SQLite's `VACUUM INTO`, PostgreSQL's `pg_dump`) and the quarantine's sealed
//! blobs, with a manifest of their sizes and SHA-256 digests. Never the KEK: everything in a
//! backup is sealed or wrapped under it, so a backup alone opens nothing, and a restore
//! refuses a KEK that does not open it. The spool (mail in flight) is not part of a backup:
//! a node drains it, and a restored node starting from a backup must not deliver it twice.

use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::config::{Blobs, Config};

/// The manifest's file name inside a backup.
const MANIFEST: &str = "MANIFEST.json";
/// The SQLite snapshot's name inside a backup.
const SQLITE: &str = "sekisho.db";
/// The PostgreSQL dump's name inside a backup.
const PG_DUMP: &str = "store.pgdump";
/// The sealed quarantine blobs' directory, inside a backup and a data directory.
const BLOBS: &str = "quarantine";

/// What a backup holds.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    /// Manifest format.
    format: u32,
    /// The Sekisho version that wrote it.
    version: String,
    /// When (Unix seconds).
    created_at: i64,
    /// `sqlite` or `postgres`.
    engine: String,
    /// Every file, relative to the backup directory.
    files: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    path: String,
    size: u64,
    sha256: String,
}

/// Writes a backup of the node's store and sealed blobs to `to` (new or empty).
pub async fn backup(cfg: &Config, to: &Path) -> Result<()> {
    prepare_target(cfg, to)?;
    let store = crate::serve::open_store(cfg).await?;
    let engine = match &cfg.store_url {
        None => {
            store
                .sqlite_snapshot(&to.join(SQLITE))
                .await
                .context("cannot snapshot the store")?;
            "sqlite"
        }
        Some(sc) => {
            pg_tool(
                "pg_dump",
                &sc.owner_url()?,
                &["--format=custom", "--no-owner", "--file"],
                &to.join(PG_DUMP),
            )?;
            "postgres"
        }
    };
    store.close().await;
    // After the store: every blob the snapshot names was written before it.
    let blobs = match &cfg.blobs {
        Blobs::Local => copy_tree(&cfg.data_dir.join(BLOBS), &to.join(BLOBS))?,
        Blobs::S3(_) => {
            println!(
                "note: the quarantine's blobs are in S3 and not copied (use the bucket's versioning or replication)"
            );
            0
        }
    };
    let manifest = Manifest {
        format: 1,
        version: env!("CARGO_PKG_VERSION").into(),
        created_at: store::unix_now(),
        engine: engine.into(),
        files: entries(to)?,
    };
    std::fs::write(to.join(MANIFEST), serde_json::to_vec_pretty(&manifest)?)?;
    println!(
        "backup of the {engine} store and {blobs} sealed blob(s) written to {} (no KEK: keep {} in a backup of its own)",
        to.display(),
        cfg.kek_file.display()
    );
    Ok(())
}

/// The backup directory: new or empty, not inside the data directory or the vault's.
fn prepare_target(cfg: &Config, to: &Path) -> Result<()> {
    let abs = std::path::absolute(to)?;
    let data = std::path::absolute(&cfg.data_dir)?;
    let vault_dir = std::path::absolute(cfg.kek_file.parent().unwrap_or(Path::new("/")))?;
    if abs.starts_with(&data) || abs.starts_with(&vault_dir) {
        bail!(
            "{} is inside the data directory or the vault's directory: back up to another place",
            to.display()
        );
    }
    if to.exists() && std::fs::read_dir(to)?.next().is_some() {
        bail!(
            "{} is not empty: back up into a new directory",
            to.display()
        );
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(to)?;
    Ok(())
}

/// Restores the backup in `from` into this node's (fresh) data directory, after checking its
/// manifest; the KEK beside the data directory must open it.
pub async fn restore(cfg: &Config, from: &Path) -> Result<()> {
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(from.join(MANIFEST)).with_context(|| {
            format!("{} has no {MANIFEST}: not a Sekisho backup", from.display())
        })?)
        .context("the backup's manifest is not valid")?;
    verify(from, &manifest)?;
    let want = if cfg.store_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    if manifest.engine != want {
        bail!(
            "the backup holds a {} store and this node is configured for {want}",
            manifest.engine
        );
    }
    let blobs_to = cfg.data_dir.join(BLOBS);
    if blobs_to.exists() && std::fs::read_dir(&blobs_to)?.next().is_some() {
        bail!(
            "{} is not empty: restore into a fresh data directory",
            blobs_to.display()
        );
    }
    std::fs::create_dir_all(&cfg.data_dir)?;
    match &cfg.store_url {
        None => restore_sqlite(cfg, from).await?,
        Some(sc) => {
            pg_tool(
                "pg_restore",
                &sc.owner_url()?,
                &["--no-owner", "--exit-on-error", "--single-transaction"],
                &from.join(PG_DUMP),
            )?;
            let store = crate::serve::open_store(cfg).await?;
            let checked = vault::server::check_kek(&store, &cfg.kek_file).await;
            store.close().await;
            checked.map_err(|e| {
                anyhow::anyhow!(
                    "{e}; the restored database is left for inspection: drop it before trying again"
                )
            })?;
        }
    }
    let blobs = copy_tree(&from.join(BLOBS), &blobs_to)?;
    audit_gap(cfg).await?;
    println!(
        "restored the {} store of {} (Sekisho {}) and {blobs} sealed blob(s) into {}; the KEK at {} opens it. Start the node with `serve`.",
        manifest.engine,
        proto::verdict::rfc2822(manifest.created_at),
        manifest.version,
        cfg.data_dir.display(),
        cfg.kek_file.display()
    );
    if cfg.store_url.is_some() {
        println!(
            "PostgreSQL: the roles' database users are per database; run `sekisho store grant-roles --rotate` before `serve`"
        );
    }
    Ok(())
}

/// Says so when the vault pinned a newer audit record than the restored log ends with: the
/// records made after the backup are gone, and the vault raises that (a critical
/// `audit-tail` alert) at start — as it would for an intruder's deletion. The pin is left as
/// it is: a restore must not be a way to roll the audit log back unseen.
async fn audit_gap(cfg: &Config) -> Result<()> {
    let Ok(Some((pinned, _))) = vault::server::read_head(&cfg.kek_file) else {
        return Ok(());
    };
    let store = crate::serve::open_store(cfg).await?;
    let head = store.audit_head().await?.map_or(0, |(id, _)| id);
    store.close().await;
    if pinned > head {
        println!(
            "note: the restored audit log ends at record {head}, the vault pinned record {pinned}: records made after the backup are gone, and the node raises a critical audit-tail alert at start (acknowledge it with `sekisho alerts ack ID`)"
        );
    }
    Ok(())
}

/// Puts the SQLite snapshot in place, migrates it to this version and checks the KEK; on a
/// refusal nothing is left behind.
async fn restore_sqlite(cfg: &Config, from: &Path) -> Result<()> {
    let db = cfg.data_dir.join(SQLITE);
    if db.exists() {
        bail!(
            "{} exists: restore into a fresh data directory",
            db.display()
        );
    }
    let part = cfg.data_dir.join("sekisho.db.restoring");
    std::fs::copy(from.join(SQLITE), &part)?;
    std::fs::rename(&part, &db)?;
    let checked = async {
        let store = crate::serve::open_store(cfg).await?;
        let r = vault::server::check_kek(&store, &cfg.kek_file).await;
        store.close().await;
        r.map_err(anyhow::Error::msg)
    }
    .await;
    if let Err(e) = checked {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(cfg.data_dir.join(format!("{SQLITE}{suffix}")));
        }
        return Err(e);
    }
    Ok(())
}

/// Runs `pg_dump`/`pg_restore` against the store, the password in the environment (never on a
/// command line other users can read).
fn pg_tool(tool: &str, url: &store::StoreUrl, args: &[&str], file: &Path) -> Result<()> {
    let mut u = url::Url::parse(url.expose_secret()).context("the store's URL")?;
    let password = zeroize::Zeroizing::new(u.password().unwrap_or("").to_string());
    let _ = u.set_password(None);
    let mut cmd = std::process::Command::new(tool);
    cmd.args(args);
    if tool == "pg_dump" {
        cmd.arg(file).arg(format!("--dbname={u}"));
    } else {
        cmd.arg(format!("--dbname={u}")).arg(file);
    }
    if !password.is_empty() {
        cmd.env("PGPASSWORD", password.as_str());
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {tool} (install PostgreSQL's client tools)"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "{tool} failed: {}",
            err.lines().next().unwrap_or("(no message)")
        );
    }
    Ok(())
}

/// Copies a directory tree (regular files and directories; nothing else is in the
/// quarantine), returning the number of files. A missing source is an empty tree.
fn copy_tree(from: &Path, to: &Path) -> Result<usize> {
    if !from.exists() {
        return Ok(0);
    }
    std::fs::create_dir_all(to)?;
    let mut n = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            n += copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Every file under `root` (but the manifest), with size and digest, sorted by path.
fn entries(root: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let path = rel.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if path != Path::new(MANIFEST) {
                let (size, sha256) = digest(&root.join(&path))?;
                out.push(Entry {
                    path: path.to_string_lossy().into_owned(),
                    size,
                    sha256,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Size and SHA-256 (hex) of a file.
fn digest(path: &Path) -> Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(ctx.finish().as_ref())))
}

/// Checks every file of the manifest (present, same size and digest) and that the backup
/// holds nothing the manifest does not name.
fn verify(root: &Path, m: &Manifest) -> Result<()> {
    if m.format != 1 {
        bail!("backup format {} is not known to this version", m.format);
    }
    let found = entries(root)?;
    for want in &m.files {
        match found.iter().find(|e| e.path == want.path) {
            Some(e) if e.size == want.size && e.sha256 == want.sha256 => {}
            Some(_) => bail!(
                "{} in the backup is damaged (size or digest differs)",
                want.path
            ),
            None => bail!("{} is missing from the backup", want.path),
        }
    }
    if let Some(extra) = found
        .iter()
        .find(|e| !m.files.iter().any(|w| w.path == e.path))
    {
        bail!("{} in the backup is not in its manifest", extra.path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_finds_damage_missing_and_extra_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("quarantine/ab")).unwrap();
        std::fs::write(d.path().join("sekisho.db"), b"db").unwrap();
        std::fs::write(d.path().join("quarantine/ab/1"), b"sealed").unwrap();
        let m = Manifest {
            format: 1,
            version: "t".into(),
            created_at: 0,
            engine: "sqlite".into(),
            files: entries(d.path()).unwrap(),
        };
        assert_eq!(m.files.len(), 2);
        verify(d.path(), &m).unwrap();
        std::fs::write(d.path().join("quarantine/ab/1"), b"sealeD").unwrap();
        assert!(
            verify(d.path(), &m)
                .unwrap_err()
                .to_string()
                .contains("damaged")
        );
        std::fs::remove_file(d.path().join("quarantine/ab/1")).unwrap();
        assert!(
            verify(d.path(), &m)
                .unwrap_err()
                .to_string()
                .contains("missing")
        );
        std::fs::write(d.path().join("quarantine/ab/1"), b"sealed").unwrap();
        std::fs::write(d.path().join("stray"), b"x").unwrap();
        assert!(
            verify(d.path(), &m)
                .unwrap_err()
                .to_string()
                .contains("not in its manifest")
        );
    }
}
