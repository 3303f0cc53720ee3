//! `sekisho tenant dkim …`: a tenant's DKIM signing keys, made and kept by the vault.

use anyhow::{Result, bail};
use clap::Subcommand;
use proto::nouns::{DkimAlgorithm, DkimKeyState};
use proto::vault::{Admin, DkimKeyInfo, Request, Response};

use crate::config::Config;

#[derive(Subcommand)]
pub enum DkimCmd {
    /// Make a key for one of the tenant's domains and print the DNS record to publish. The
    /// domain's first key signs at once; a later one waits (pending) until `dkim rotate`.
    Generate {
        /// Tenant name.
        name: String,
        /// The signing domain (one of the tenant's).
        #[arg(long)]
        domain: String,
        /// The selector (one DNS label, e.g. `sekisho2026`).
        #[arg(long)]
        selector: String,
        /// rsa (2048 bits) or ed25519.
        #[arg(long, default_value = "rsa")]
        algorithm: DkimAlgorithm,
        /// JSON output: an object with `name` and `value` (and the key's other fields).
        #[arg(long)]
        json: bool,
    },
    /// The tenant's keys, their states and DNS records.
    List {
        /// Tenant name.
        name: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Make a pending key sign (publish its record first); the key before it is retired
    /// but keeps verifying while its record stays published.
    Rotate {
        /// Tenant name.
        name: String,
        /// The domain.
        #[arg(long)]
        domain: String,
        /// The pending key's selector.
        #[arg(long)]
        selector: String,
    },
    /// Delete a retired or pending key (withdraw its DNS record too).
    Remove {
        /// Tenant name.
        name: String,
        /// The domain.
        #[arg(long)]
        domain: String,
        /// The key's selector.
        #[arg(long)]
        selector: String,
    },
}

async fn keys_of(cfg: &Config, req: Admin) -> Result<Vec<DkimKeyInfo>> {
    let vault = proto::client::VaultClient::new(proto::client::socket_path(&cfg.data_dir));
    match vault.call(&Request::Admin(req), &[]).await? {
        (Response::DkimKeys { keys }, _) => Ok(keys),
        (Response::Refused { message, .. } | Response::Error { message }, _) => bail!("{message}"),
        (other, _) => bail!("unexpected answer from the vault: {}", other.kind()),
    }
}

/// The record as a zone-file line: TXT strings are at most 255 bytes each.
fn zone_line(k: &DkimKeyInfo) -> String {
    let strings: Vec<String> = k
        .value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!("{}. IN TXT ( {} )", k.name, strings.join(" "))
}

pub async fn run(cfg: &Config, cmd: DkimCmd) -> Result<()> {
    let vault = proto::client::VaultClient::new(proto::client::socket_path(&cfg.data_dir));
    match cmd {
        DkimCmd::Generate {
            name,
            domain,
            selector,
            algorithm,
            json,
        } => {
            let req = Admin::DkimGenerate {
                tenant: name.clone(),
                domain,
                selector,
                algorithm,
                principal: crate::cli_principal(),
            };
            let Some(k) = keys_of(cfg, req).await?.pop() else {
                bail!("the vault made no key");
            };
            crate::poke(cfg).await;
            if json {
                return crate::print_json(&k);
            }
            println!(
                "DKIM key {} for {} ({}), {}; publish this record:",
                k.selector, k.domain, k.algorithm, k.state
            );
            println!("{}", zone_line(&k));
            if k.state == DkimKeyState::Pending {
                println!(
                    "then make it sign: sekisho tenant dkim rotate {name} --domain {} --selector {}",
                    k.domain, k.selector
                );
            }
        }
        DkimCmd::List { name, json } => {
            let keys = keys_of(
                cfg,
                Admin::DkimList {
                    tenant: name.clone(),
                },
            )
            .await?;
            if json {
                return crate::print_json(&keys);
            }
            if keys.is_empty() {
                println!(
                    "tenant {name} has no DKIM keys (make one with `sekisho tenant dkim generate`)"
                );
            }
            for k in keys {
                println!("{:<8} {:<8} {}", k.state, k.algorithm, zone_line(&k));
            }
        }
        DkimCmd::Rotate {
            name,
            domain,
            selector,
        } => {
            let summary = vault
                .admin(Admin::DkimRotate {
                    tenant: name,
                    domain,
                    selector,
                    principal: crate::cli_principal(),
                })
                .await?;
            crate::poke(cfg).await;
            println!("{summary}; keep the retired key's record published for a few days");
        }
        DkimCmd::Remove {
            name,
            domain,
            selector,
        } => {
            let summary = vault
                .admin(Admin::DkimRemove {
                    tenant: name,
                    domain,
                    selector,
                    principal: crate::cli_principal(),
                })
                .await?;
            crate::poke(cfg).await;
            println!("{summary}; withdraw its DNS record");
        }
    }
    Ok(())
}
