//! `sekisho audit`: verify the hash-chained, signed audit log, and export a tenant's part of
//! it in a form the tenant can verify on its own (docs/audit.md).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::json;

use crate::config::Config;

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Walk the chain and every checkpoint; exit non-zero naming the first bad record.
    Verify {
        /// Start at this record id (the whole log by default).
        #[arg(long, default_value_t = 0)]
        from: i64,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Write one tenant's records (with the chain links and signed checkpoints around them)
    /// as JSON Lines that the tenant can verify independently.
    Export {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// From this time (Unix seconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC).
        #[arg(long)]
        from: Option<String>,
        /// Up to this time (same forms).
        #[arg(long)]
        to: Option<String>,
        /// Output file (standard output by default).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Parses Unix seconds, `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn parse_time(s: &str) -> Result<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let bad = || {
        anyhow::anyhow!("{s:?} is not a time (Unix seconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ)")
    };
    let (date, clock) = match s.split_once('T') {
        Some((d, c)) => (d, Some(c.strip_suffix('Z').ok_or_else(bad)?)),
        None => (s, None),
    };
    let mut d = date.split('-').map(|p| p.parse::<i32>().map_err(|_| bad()));
    let (y, m, day) = (
        d.next().ok_or_else(bad)??,
        d.next().ok_or_else(bad)??,
        d.next().ok_or_else(bad)??,
    );
    let month = time::Month::try_from(u8::try_from(m).map_err(|_| bad())?).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(y, month, u8::try_from(day).map_err(|_| bad())?)
        .map_err(|_| bad())?;
    let (h, mi, sec) = match clock {
        None => (0, 0, 0),
        Some(c) => {
            let mut p = c.split(':').map(|x| x.parse::<u8>().map_err(|_| bad()));
            (
                p.next().ok_or_else(bad)??,
                p.next().ok_or_else(bad)??,
                p.next().ok_or_else(bad)??,
            )
        }
    };
    let t = time::Time::from_hms(h, mi, sec).map_err(|_| bad())?;
    Ok(date.with_time(t).assume_utc().unix_timestamp())
}

/// The audit keys `verify` trusts: the vault's pin file beside the KEK; if this user cannot
/// read it, the database's keys (said plainly).
async fn trusted_keys(cfg: &Config, store: &store::Store) -> Result<Vec<(String, Vec<u8>)>> {
    match vault::server::read_pins(&cfg.kek_file) {
        Ok(pins) => Ok(pins),
        Err(e) => {
            eprintln!(
                "warning: cannot read the pinned audit keys ({}: {e}); checking checkpoints against the keys in the database only",
                vault::server::pin_path(&cfg.kek_file).display()
            );
            Ok(store
                .audit_keys()
                .await?
                .into_iter()
                .map(|k| (k.key_id, k.public_key))
                .collect())
        }
    }
}

pub async fn run(cfg: Config, cmd: AuditCmd) -> Result<()> {
    let store = crate::serve::open_store(&cfg).await?;
    match cmd {
        AuditCmd::Verify { from, json } => {
            let keys = trusted_keys(&cfg, &store).await?;
            let head = match vault::server::read_head(&cfg.kek_file) {
                Ok(h) => h,
                Err(e) => {
                    eprintln!(
                        "warning: cannot read the vault's pinned head ({}: {e}); the newest records past the last checkpoint are not checked",
                        vault::server::head_path(&cfg.kek_file).display()
                    );
                    None
                }
            };
            match store.audit_verify(from, &keys, head).await? {
                Ok(v) => {
                    if json {
                        return crate::print_json(&json!({"ok": true, "verified": v}));
                    }
                    println!(
                        "audit log verified: {} record(s), {} checkpoint(s); signed through record {} of {}",
                        v.records,
                        v.checkpoints,
                        v.signed_through.map_or("-".into(), |r| r.to_string()),
                        v.head.map_or("-".into(), |r| r.to_string()),
                    );
                    Ok(())
                }
                Err(t) => {
                    if json {
                        crate::print_json(&json!({"ok": false, "tampered": t}))?;
                    }
                    bail!("audit log tampered: record {}: {}", t.record_id, t.problem)
                }
            }
        }
        AuditCmd::Export {
            tenant,
            from,
            to,
            out,
        } => {
            let id = store.tenant_id(&tenant).await?;
            let from = from.as_deref().map(parse_time).transpose()?.unwrap_or(0);
            let to = to
                .as_deref()
                .map(parse_time)
                .transpose()?
                .unwrap_or(i64::MAX);
            let mut w: Box<dyn Write + Send> = match &out {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("cannot create {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout())),
            };
            let keys = trusted_keys(&cfg, &store).await?;
            let n = vault::export::write(&store, &keys, id, &tenant, from, to, &mut w).await?;
            w.flush()?;
            if out.is_some() {
                eprintln!("{n} record(s) of {tenant} exported");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_parse_in_three_forms() {
        assert_eq!(parse_time("1795543901").unwrap(), 1_795_543_901);
        assert_eq!(parse_time("2026-11-24").unwrap(), 1_795_478_400);
        assert_eq!(parse_time("2026-11-24T00:00:10Z").unwrap(), 1_795_478_410);
        for bad in ["2026-13-01", "yesterday", "2026-11-24T10:00", "2026-11"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}

#[derive(Subcommand)]
pub enum AlertsCmd {
    /// Alerts, newest first.
    List {
        /// Only open, acknowledged or resolved ones.
        #[arg(long)]
        state: Option<proto::AlertState>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an alert (someone is on it).
    Ack {
        /// Alert id.
        id: i64,
    },
    /// Resolve an alert.
    Resolve {
        /// Alert id.
        id: i64,
    },
}

pub async fn alerts(cfg: Config, cmd: AlertsCmd) -> Result<()> {
    let store = crate::serve::open_store(&cfg).await?;
    match cmd {
        AlertsCmd::List { state, json } => {
            let list = store.alerts(state).await?;
            if json {
                return crate::print_json(&list);
            }
            if list.is_empty() {
                println!("no alerts");
            }
            for a in list {
                println!(
                    "{:>5} {:<8} {:<12} {:<18} x{:<4} {} {}",
                    a.id,
                    a.severity,
                    a.state,
                    a.rule,
                    a.count,
                    egress::time_rfc2822(a.last_at),
                    a.summary
                );
            }
        }
        AlertsCmd::Ack { id } => {
            store
                .alert_set_state(id, proto::AlertState::Acknowledged, &crate::cli_principal())
                .await?;
            println!("alert {id} acknowledged");
        }
        AlertsCmd::Resolve { id } => {
            store
                .alert_set_state(id, proto::AlertState::Resolved, &crate::cli_principal())
                .await?;
            println!("alert {id} resolved");
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum CanaryCmd {
    /// Plant a decoy quarantine item for a tenant: it looks like real quarantined mail, and
    /// whoever opens it raises a critical alert at once. Plant them again as retention removes
    /// them (a daily timer is a good habit).
    Plant {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// Plant a decoy `smtp-auth` connector secret instead (for a tenant whose route does
        /// not authenticate): obtaining it through mx raises the alert.
        #[arg(long)]
        secret: bool,
    },
}

pub async fn canary(cfg: Config, cmd: CanaryCmd) -> Result<()> {
    match cmd {
        CanaryCmd::Plant {
            tenant,
            secret: true,
        } => {
            let vault = proto::client::VaultClient::new(proto::client::socket_path(&cfg.data_dir));
            let summary = vault
                .admin(proto::vault::Admin::PlantCanarySecret {
                    tenant,
                    principal: crate::cli_principal(),
                })
                .await?;
            crate::poke(&cfg).await;
            println!("{summary}");
        }
        CanaryCmd::Plant {
            tenant,
            secret: false,
        } => {
            let store = crate::serve::open_store(&cfg).await?;
            let days = store.filter_policy(&tenant).await?.quarantine_days;
            let keep = days.map_or(cfg.quarantine_retention.as_secs() as i64, |d| {
                i64::from(d) * 86400
            });
            let vault = proto::client::VaultClient::new(proto::client::socket_path(&cfg.data_dir));
            let summary = vault
                .admin(proto::vault::Admin::PlantCanary {
                    tenant,
                    principal: crate::cli_principal(),
                    expires_at: store::unix_now() + keep,
                })
                .await?;
            println!("{summary}");
        }
    }
    Ok(())
}
