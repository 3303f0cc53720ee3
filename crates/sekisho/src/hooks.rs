//! Test hooks of the mx role (`test-hooks` feature only; release builds contain none of
//! this): requests on mx's admin socket that make mx act as an intruder with code execution
//! inside it would, so end-to-end tests can show the sandbox, the kernel and the vault
//! refusing it. They are their own request type, read before the product's, so the product
//! protocol (`proto::mx`) knows nothing of them.

use proto::TenantId;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::admin::Node;

/// A test hook request (same line format as the admin socket's).
#[derive(Debug, Deserialize, Serialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Hook {
    /// Try to run `/bin/sh -c "touch PATH"` from inside mx; seccomp kills mx first.
    #[serde(rename = "test-exec")]
    Exec {
        /// The file the shell would create.
        path: String,
    },
    /// Obtain a tenant's `smtp-auth` secret from the vault with mx's token.
    #[serde(rename = "test-use-secret")]
    UseSecret {
        /// The tenant.
        tenant: TenantId,
    },
    /// Try files and sockets from inside mx; answers what the kernel said to each.
    #[serde(rename = "test-probe")]
    Probe {
        /// What to try.
        probes: Vec<portal::probe::Probe>,
    },
    /// Run one SQL statement on PostgreSQL with mx's own database login, as code inside mx
    /// could; answers what the database said.
    #[serde(rename = "test-sql")]
    Sql {
        /// The statement.
        statement: String,
    },
}

/// Runs a hook; the answer is the admin socket's `data`.
pub async fn run(node: &Node, hook: Hook) -> Value {
    match hook {
        Hook::Exec { path } => {
            let status = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("touch '{path}'"))
                .status();
            json!({ "ran": status.is_ok_and(|s| s.success()) })
        }
        Hook::UseSecret { tenant } => {
            let got = node
                .delivery
                .obtain_secret(tenant.0, egress::secrets::SecretKind::SmtpAuth)
                .await;
            json!({ "obtained": got.is_ok() })
        }
        Hook::Sql { statement } => {
            let Some(url) = &node.hook_db else {
                return json!({ "error": "not on PostgreSQL" });
            };
            sqlx::any::install_default_drivers();
            let result = async {
                let pool = sqlx::AnyPool::connect(url.expose_secret()).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                    .execute(&pool)
                    .await
            }
            .await;
            match result {
                Ok(r) => json!({ "ok": true, "rows": r.rows_affected() }),
                Err(e) => json!({ "ok": false, "error": e.to_string() }),
            }
        }
        Hook::Probe { probes } => {
            let results = tokio::task::spawn_blocking(move || portal::probe::run(&probes))
                .await
                .unwrap_or_default();
            json!({ "results": results })
        }
    }
}

/// `sekisho spool forensic COPY [--kek FILE]`: what a copy of the data directory yields to a
/// thief. Every regular file of the copy is tried as a spool key (hex or raw); with the KEK,
/// the node's wrapped spool key is taken from the database (the copy's SQLite file, or the
/// PostgreSQL store) and every frame it opens is printed.
pub async fn forensic(
    cfg: &crate::config::Config,
    copy: &std::path::Path,
    kek: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let spool_dir = copy.join("spool");
    let mut key_files = Vec::new();
    for path in files_under(copy)? {
        let bytes = std::fs::read(&path).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let candidates = [
            spool::SpoolKey::from_hex(text.trim()),
            <[u8; 32]>::try_from(bytes.as_slice())
                .ok()
                .map(spool::SpoolKey::from_bytes),
        ];
        for key in candidates.into_iter().flatten() {
            if !spool::readable_frames(&spool_dir, &key)?.is_empty() {
                key_files.push(path.display().to_string());
            }
        }
    }
    let mut opened = Vec::new();
    if let Some(kek) = kek {
        let kek = vault::Kek::load_or_create(kek).context("the KEK")?;
        let store = match &cfg.store_url {
            Some(_) => crate::serve::open_store(cfg).await?,
            None => store::Store::open_sqlite(&copy.join("sekisho.db")).await?,
        };
        if let Some(wrapped) = store.spool_key(&cfg.node_name).await? {
            let key = vault::unwrap_spool_key(&kek, &cfg.node_name, &wrapped)?;
            for plain in spool::readable_frames(&spool_dir, &key)? {
                opened.push(String::from_utf8_lossy(&plain).into_owned());
            }
        }
    }
    println!("{}", json!({ "key_files": key_files, "opened": opened }));
    Ok(())
}

fn files_under(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    Ok(out)
}
