//! `sekisho tenant dkim …`: a tenant's DKIM signing keys, made and kept by the vault.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
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
    Rotate(KeyRef),
    /// Delete a retired or pending key (withdraw its DNS record too).
    Remove(KeyRef),
}

/// One key of a tenant's domain.
#[derive(Args)]
pub struct KeyRef {
    /// Tenant name.
    name: String,
    /// The domain.
    #[arg(long)]
    domain: String,
    /// The key's selector.
    #[arg(long)]
    selector: String,
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

/// A rotation or removal: the vault's summary, then what the operator does next.
async fn change(cfg: &Config, req: Admin, next: &str) -> Result<()> {
    let vault = proto::client::VaultClient::new(proto::client::socket_path(&cfg.data_dir));
    let summary = vault.admin(req).await?;
    crate::poke(cfg).await;
    println!("{summary}; {next}");
    Ok(())
}

pub async fn run(cfg: &Config, cmd: DkimCmd) -> Result<()> {
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
        DkimCmd::Rotate(k) => {
            let req = Admin::DkimRotate {
                tenant: k.name,
                domain: k.domain,
                selector: k.selector,
                principal: crate::cli_principal(),
            };
            change(
                cfg,
                req,
                "keep the retired key's record published for a few days",
            )
            .await?;
        }
        DkimCmd::Remove(k) => {
            let req = Admin::DkimRemove {
                tenant: k.name,
                domain: k.domain,
                selector: k.selector,
                principal: crate::cli_principal(),
            };
            change(cfg, req, "withdraw its DNS record").await?;
        }
    }
    Ok(())
}
