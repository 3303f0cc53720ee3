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
