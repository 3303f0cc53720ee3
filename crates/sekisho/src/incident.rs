//! `sekisho incident scope`: for a time window (and optionally one principal or role), which
//! tenants, accounts and categories of data were opened, used or reachable — with counts and
//! the audit record ids behind every line. The disclosure table an operator must publish.

use anyhow::{Result, bail};
use clap::Subcommand;
use detect::scope::{Facts, Line, scope};

use crate::config::Config;

#[derive(Subcommand)]
pub enum IncidentCmd {
    /// The scope of an incident window.
    Scope {
        /// Window start (Unix seconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC).
        #[arg(long)]
        from: String,
        /// Window end (same forms).
        #[arg(long)]
        to: String,
        /// Only what this principal did (`cli:alice`, `mx`, `portal:bob@acme`).
        #[arg(long)]
        principal: Option<String>,
        /// Assume this role was compromised (`mx`, `vault`): adds what it could reach.
        #[arg(long)]
        role: Option<String>,
        /// JSON output.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV output.
        #[arg(long)]
        csv: bool,
    },
}

/// A CSV field, quoted when it must be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub async fn run(cfg: Config, cmd: IncidentCmd) -> Result<()> {
    let IncidentCmd::Scope {
        from,
        to,
        principal,
        role,
        json,
        csv,
    } = cmd;
    let (from, to) = (
        crate::audit::parse_time(&from)?,
        crate::audit::parse_time(&to)?,
    );
    if from > to {
        bail!("--from must not be after --to");
    }
    if let Some(r) = &role
        && !matches!(r.as_str(), "mx" | "vault" | "cli" | "portal")
    {
        bail!("--role must be one of mx, vault, cli, portal");
    }
    let store = crate::serve::open_store(&cfg).await?;
    let facts = Facts {
        records: store.records_between(from, to).await?,
        tenants: store.tenant_names().await?,
        terminations: store.terminations().await?,
        messages: store.messages_by_tenant(from, to).await?,
    };
    let report = scope(&facts, from, to, principal.as_deref(), role.as_deref());
    if json {
        return crate::print_json(&report);
    }
    let ids = |l: &Line| {
        l.records
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let who = |l: &Line| l.principals.iter().cloned().collect::<Vec<_>>().join(" ");
    if csv {
        println!("tenant_id,tenant,status,category,access,count,principals,records");
        for l in &report.lines {
            println!(
                "{},{},{},{},{},{},{},{}",
                l.tenant_id,
                csv_field(&l.tenant),
                csv_field(&l.status),
                csv_field(l.category),
                csv_field(l.access),
                l.count,
                csv_field(&who(l)),
                csv_field(&ids(l))
            );
        }
        return Ok(());
    }
    println!(
        "incident scope {} – {}{}{}: {} tenant(s) active at the start, {} already terminated",
        egress::time_rfc2822(from),
        egress::time_rfc2822(to.min(i64::from(u32::MAX))),
        principal.map_or(String::new(), |p| format!(", principal {p}")),
        role.map_or(String::new(), |r| format!(", role {r} assumed compromised")),
        report.tenants_active,
        report.tenants_terminated
    );
    if report.lines.is_empty() {
        println!("nothing was opened, used or reachable in this window");
    }
    for line in &report.unrecoverable {
        println!("out of reach: {line}");
    }
    for l in &report.lines {
        println!(
            "{} ({}) [{}]: {} — {} x{} by {}; records {}",
            l.tenant,
            l.tenant_id,
            l.status,
            l.category,
            l.access,
            l.count,
            who(l),
            if l.records.is_empty() {
                "(message trace)".to_string()
            } else {
                ids(l)
            }
        );
    }
    Ok(())
}
