//! `sekisho outbound`: registers the networks a tenant's own mail servers send from, and shows
//! and releases the senders the outbound-burst rule (`detect::outbound`) held.

use anyhow::{Result, bail};
use clap::Subcommand;

use store::{OUTBOUND, Store, outbound_scope, unix_now_ms};

use crate::config::Config;

#[derive(Subcommand)]
pub enum OutboundCmd {
    /// Register a network a tenant's own mail servers send from (`192.0.2.0/24`, one
    /// address, or an IPv6 prefix). Their mail from the tenant's domains may then go to any
    /// address.
    AddNetwork {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The network.
        network: String,
    },
    /// Stop relaying for a registered network.
    RemoveNetwork {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The network.
        network: String,
    },
    /// List the registered networks.
    Networks {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// One JSON array.
        #[arg(long)]
        json: bool,
    },
    /// List the senders held by the outbound-burst rule.
    Holds {
        /// One JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Release a held sender: its mail flows again and its count starts over.
    Release {
        /// The sender's tenant.
        #[arg(long)]
        tenant: String,
        /// The sender's address.
        sender: String,
    },
}

/// One held sender.
#[derive(serde::Serialize)]
struct Hold {
    tenant: String,
    sender: String,
    until: i64,
}

pub async fn outbound(cfg: Config, cmd: OutboundCmd) -> Result<()> {
    let store = crate::serve::open_store(&cfg).await?;
    let principal = crate::cli_principal();
    let record = |action: &'static str, tenant: i64, object: String| {
        let store = store.clone();
        let principal = principal.clone();
        async move {
            store
                .record(&store::NewRecord {
                    principal: &principal,
                    action,
                    tenant_id: Some(tenant),
                    object: &object,
                    outcome: "ok",
                    ..store::NewRecord::by(proto::Process::Cli)
                })
                .await
        }
    };
    match cmd {
        OutboundCmd::AddNetwork { tenant, network } => {
            let id = store.tenant_id(&tenant).await?;
            let net = store.add_outbound_network(id, &network, &principal).await?;
            record("outbound-network-add", id, net.clone()).await?;
            crate::poke(&cfg).await;
            println!("tenant {tenant}: outbound mail from {net} is relayed for its domains");
        }
        OutboundCmd::RemoveNetwork { tenant, network } => {
            let id = store.tenant_id(&tenant).await?;
            let net = store.remove_outbound_network(id, &network).await?;
            record("outbound-network-remove", id, net.clone()).await?;
            crate::poke(&cfg).await;
            println!("tenant {tenant}: {net} removed");
        }
        OutboundCmd::Networks { tenant, json } => {
            let id = match &tenant {
                Some(t) => Some(store.tenant_id(t).await?),
                None => None,
            };
            let list = store.outbound_networks(id).await?;
            if json {
                return crate::print_json(&list);
            }
            if list.is_empty() {
                println!("no outbound networks");
            }
            let names = tenant_names(&store).await?;
            for n in list {
                println!(
                    "{:<16} {:<40} added by {} {}",
                    names(n.tenant_id),
                    n.network,
                    n.added_by,
                    egress::time_rfc2822(n.added_at)
                );
            }
        }
        OutboundCmd::Holds { json } => {
            let names = tenant_names(&store).await?;
            let holds: Vec<Hold> = store
                .detect_throttles(OUTBOUND, unix_now_ms())
                .await?
                .into_iter()
                .filter_map(|(scope, until)| {
                    let (tenant, sender) = scope.split_once(':')?;
                    Some(Hold {
                        tenant: names(tenant.parse().ok()?),
                        sender: sender.to_string(),
                        until: until / 1000,
                    })
                })
                .collect();
            if json {
                return crate::print_json(&holds);
            }
            if holds.is_empty() {
                println!("no senders held");
            }
            for h in holds {
                println!(
                    "{:<16} {:<40} held until {}",
                    h.tenant,
                    h.sender,
                    egress::time_rfc2822(h.until)
                );
            }
        }
        OutboundCmd::Release { tenant, sender } => {
            let id = store.tenant_id(&tenant).await?;
            let scope = outbound_scope(id, &sender);
            if !store
                .detect_release(OUTBOUND, &scope, unix_now_ms())
                .await?
            {
                bail!("<{sender}> of tenant {tenant} is not held");
            }
            record("outbound-release", id, scope).await?;
            println!("<{sender}> of tenant {tenant} released");
        }
    }
    Ok(())
}

/// Tenant names by id (ids of terminated tenants print as numbers).
async fn tenant_names(store: &Store) -> Result<impl Fn(i64) -> String> {
    let tenants = store.list_tenants().await?;
    Ok(move |id: i64| {
        tenants
            .iter()
            .find(|t| t.id == id)
            .map_or_else(|| id.to_string(), |t| t.name.clone())
    })
}
