//! `sekisho lockbox`: the lockbox requests operators made and tenants decided, with the ids
//! the console reads under (`sekisho quarantine open ID --lockbox N`).

use anyhow::Result;
use clap::Subcommand;

use crate::config::Config;

#[derive(Subcommand)]
pub enum LockboxCmd {
    /// Lockbox requests, newest first: id, tenant, operator, state, until.
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn lockbox(cfg: Config, cmd: LockboxCmd) -> Result<()> {
    let LockboxCmd::List { tenant, json } = cmd;
    let store = crate::serve::open_store(&cfg).await?;
    let tenant_id = match &tenant {
        Some(name) => Some(store.tenant_id(name).await?),
        None => None,
    };
    let now = store::unix_now();
    let list = store.lockbox_list(tenant_id, None).await?;
    if json {
        return crate::print_json(&list);
    }
    if list.is_empty() {
        println!("no lockbox requests");
    }
    for lb in list {
        let state = if lb.state == "approved" && !lb.open_at(now) {
            "expired"
        } else {
            lb.state.as_str()
        };
        println!(
            "{:>5} {:<16} {:<28} {:<9} {:>4} min  until {}  {}",
            lb.id,
            lb.tenant,
            lb.operator,
            state,
            lb.minutes,
            lb.expires_at.map_or("-".into(), proto::verdict::rfc2822),
            lb.reason
        );
    }
    Ok(())
}
