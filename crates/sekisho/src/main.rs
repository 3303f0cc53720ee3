//! `sekisho`: the one binary of the Sekisho email security gateway.
//!
//! # Layout
//! - [`config`]: TOML file → flags/environment → validated [`config::Config`].
//! - [`serve`]: one node (store, spool, delivery, SMTP ingress, admin surfaces).
//! - [`admin`]: admin HTTP (`/healthz`, `/metrics`) and the local admin socket.
//! - `main`: the CLI; each subcommand finds its node through `--config`/`--data-dir`.
//!
//! # Security
//! The CLI changes the store directly (SQLite in WAL mode is safe for several processes) and
//! reaches the running node only through its 0600 admin socket; nothing admin-related listens
//! on the network except the loopback HTTP listener, which exposes health and metrics only.
#![forbid(unsafe_code)]

mod acme;
mod admin;
mod audit;
mod backup;
mod dbroles;
mod demo;
mod dkim;
mod dkim_cmd;
mod handover;
mod health;
#[cfg(feature = "test-hooks")]
mod hooks;
mod incident;
mod kaudit;
mod lockbox;
mod mta_sts;
mod mx_dns;
mod outbound;
mod quarantine;
mod retention;
mod roles;
mod sandbox;
mod secrets;
mod serve;
mod surface;
mod sysusers;
mod tls_reports;
mod users;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use config::{Config, Overrides, RawConfig};
use sekisho::config;
use store::{RecipientPolicy, TraceFilter};

#[derive(Parser)]
#[command(
    name = "sekisho",
    version,
    about = "Sekisho (関所): a multi-tenant email security gateway"
)]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct NodeArgs {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "SEKISHO_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (store, spool, keys, certificate) [default: ./sekisho-data].
    #[arg(long, global = true, env = "SEKISHO_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// DNS resolver for authentication checks, IP:PORT [default: the system's].
    #[arg(long, global = true, env = "SEKISHO_DNS")]
    dns: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, env = "SEKISHO_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway node.
    Serve {
        /// SMTP listener address [default: 127.0.0.1:2587].
        #[arg(long, env = "SEKISHO_SMTP_LISTEN")]
        smtp_listen: Option<String>,
        /// Admin HTTP listener address [default: 127.0.0.1:9587].
        #[arg(long, env = "SEKISHO_ADMIN_LISTEN")]
        admin_listen: Option<String>,
        /// Portal HTTPS listener address, or `off` [default: 127.0.0.1:9443].
        #[arg(long, env = "SEKISHO_PORTAL_LISTEN")]
        portal_listen: Option<String>,
        /// Host name used in greetings and Received headers.
        #[arg(long, env = "SEKISHO_HOSTNAME")]
        hostname: Option<String>,
        /// Also create the demo tenant (demo.test → a local Maildir).
        #[arg(long)]
        demo: bool,
    },
    /// Check the configuration and print the settings in effect, as TOML (defaults, the
    /// file, flags and environment together; usable as a configuration file).
    CheckConfig,
    /// The node's certificate from an ACME CA ([acme]): `renew` when it is missing, does not
    /// cover the names, or ends within `renew_before`.
    #[command(subcommand)]
    Acme(AcmeCmd),
    /// Back up the store (a consistent snapshot, taken while the node runs) and the
    /// quarantine's sealed blobs, with a manifest of digests. Never the KEK.
    Backup {
        /// A new or empty directory (not inside the data directory or the vault's).
        #[arg(long)]
        to: PathBuf,
    },
    /// Restore a backup into this node's fresh data directory; the KEK beside it (restored
    /// from its own backup) must open it, or nothing is restored.
    Restore {
        /// The backup's directory.
        #[arg(long)]
        from: PathBuf,
    },
    /// Tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Domains of tenants.
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Recipient verification lists.
    #[command(subcommand)]
    Recipient(RecipientCmd),
    /// The daily quarantine digest with one-click release links.
    #[command(subcommand)]
    Digest(DigestCmd),
    /// Outbound relay: the networks tenants' own mail servers send from; senders held by
    /// the outbound-burst rule.
    #[command(subcommand)]
    Outbound(outbound::OutboundCmd),
    /// The vault: KEK rotation and its records.
    #[command(subcommand)]
    Vault(VaultCmd),
    /// The audit log: verify the chain and its signed checkpoints; export a tenant's records.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Alerts raised by detection: list, acknowledge, resolve.
    #[command(subcommand)]
    Alerts(audit::AlertsCmd),
    /// Canary objects: decoys whose use raises a critical alert.
    #[command(subcommand)]
    Canary(audit::CanaryCmd),
    /// Lockbox requests and approvals (the console reads a tenant's mail under one).
    #[command(subcommand)]
    Lockbox(lockbox::LockboxCmd),
    /// The shared PostgreSQL store: per-role database users.
    #[command(subcommand)]
    Store(dbroles::StoreCmd),
    /// The running node's attack surface: listeners, roles (user, seccomp, Landlock),
    /// database grants, features, dependencies; --baseline FILE exits non-zero on drift.
    Surface {
        /// JSON (save one as a baseline).
        #[arg(long)]
        json: bool,
        /// Compare with an earlier `surface --json`; any drift is printed, alerted and
        /// fails the command.
        #[arg(long)]
        baseline: Option<PathBuf>,
    },
    /// Portal accounts: invite (a one-time enrolment link), list.
    #[command(subcommand)]
    User(users::UserCmd),
    /// Incident response: which tenants and data were opened, used or reachable.
    #[command(subcommand)]
    Incident(incident::IncidentCmd),
    /// Sealed quarantine: list, show, open (through the vault, recorded), release, delete.
    #[command(subcommand)]
    Quarantine(QuarantineCmd),
    /// The running node's queue.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// The spool's keys: live, destroyed, segments awaiting compaction.
    #[command(subcommand)]
    Spool(SpoolCmd),
    /// The gateway nodes sharing this store: health, queue sizes, versions.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Run the inspection pipeline on message files (or directories of them), as the SMTP
    /// path would, and print each verdict.
    Check {
        /// Message files or directories (read recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Client IP the message came from.
        #[arg(long, default_value = "127.0.0.1")]
        ip: std::net::IpAddr,
        /// HELO name of the client.
        #[arg(long, default_value = "localhost")]
        helo: String,
        /// Envelope sender.
        #[arg(long, default_value = "")]
        mail_from: String,
        /// Envelope recipient (repeatable).
        #[arg(long)]
        rcpt: Vec<String>,
        /// Check as mail for this tenant (its domains are protected against lookalikes).
        #[arg(long)]
        tenant: Option<String>,
        /// Check as outbound mail of `--tenant`'s users (the stages that judge inbound
        /// mail's origin are skipped, as on the relay path).
        #[arg(long, requires = "tenant")]
        outbound: bool,
        /// One JSON object per file per line.
        #[arg(long)]
        json: bool,
    },
    /// List every evidence symbol with its weight under this node's policy and its meaning.
    Symbols {
        /// One JSON object per symbol per line.
        #[arg(long)]
        json: bool,
        /// A Markdown table (the source of docs/symbols.md).
        #[arg(long, conflicts_with = "json")]
        markdown: bool,
    },
    /// Train the Bayes classifier from message files or directories of ham and spam.
    Train {
        /// Ham (wanted mail): files or directories (repeatable).
        #[arg(long)]
        ham: Vec<PathBuf>,
        /// Spam: files or directories (repeatable).
        #[arg(long)]
        spam: Vec<PathBuf>,
        /// Train this tenant's own model instead of the global one.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Correct the Bayes classifier with one message.
    Learn {
        /// The message is ham.
        #[arg(long, conflicts_with = "spam", required_unless_present = "spam")]
        ham: Option<PathBuf>,
        /// The message is spam.
        #[arg(long)]
        spam: Option<PathBuf>,
        /// Teach this tenant's own model instead of the global one.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Search the message trace.
    Trace {
        /// Messages to this recipient.
        #[arg(long)]
        rcpt: Option<String>,
        /// Messages from this sender.
        #[arg(long)]
        from: Option<String>,
        /// One message by queue id.
        #[arg(long)]
        id: Option<String>,
        /// Most messages shown.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// List the nodes that write heartbeats to this store.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AcmeCmd {
    /// Obtain or renew the certificate (http-01 on [acme] http_listen); exits 0 whether or
    /// not it had to. `systemctl reload sekisho` puts a new one in service.
    Renew {
        /// Renew even though the certificate is good for longer than renew_before.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum TenantCmd {
    /// Add a tenant with its domains and downstream route.
    Add {
        /// Unique tenant name.
        name: String,
        /// A domain of the tenant (repeatable).
        #[arg(long = "domain", required = true)]
        domains: Vec<String>,
        /// Downstream: smtp://host:port?tls=none|opportunistic|required[&ca=FILE][&auth=tenant][&client_cert=tenant] or maildir:///path.
        #[arg(long)]
        route: String,
        /// Recipient verification: auto (accept all until recipients are listed), verify, catch-all.
        #[arg(long, default_value = "auto")]
        recipient_policy: String,
    },
    /// List tenants.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Change a tenant's route.
    SetRoute {
        /// Tenant name.
        name: String,
        /// New route URL.
        route: String,
    },
    /// Change a tenant's recipient verification policy (auto, verify, catch-all).
    SetRecipientPolicy {
        /// Tenant name.
        name: String,
        /// auto, verify or catch-all.
        policy: String,
    },
    /// Whether the tenant's outbound TLS sessions go into the TLS reports (RFC 8460) sent to
    /// recipient domains that ask for them (on by default).
    TlsReports {
        /// Tenant name.
        name: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Show or change the tenant's filter policy (overrides of the global one); without
    /// changes it prints the policy.
    Policy(PolicyArgs),
    /// Register the tenant's own age recipient (customer-held key): its quarantined mail is
    /// sealed to it alone and nobody on the operator side can open it.
    SetKey {
        /// Tenant name.
        name: String,
        /// The tenant's age X25519 recipient (age1…).
        #[arg(long)]
        age_recipient: String,
        /// Even if quarantined messages are sealed to the current key (they can then no longer
        /// be opened here).
        #[arg(long)]
        force: bool,
    },
    /// Terminate a tenant: destroy its key pair (crypto-shred), delete its sealed messages and
    /// every record of it, refuse its domains from now on; the KEK is rotated.
    Terminate {
        /// Tenant name.
        name: String,
        /// The tenant name again, to confirm.
        #[arg(long)]
        confirm: String,
    },
    /// Connector secrets (SMTP AUTH credentials, TLS client certificate): sealed by the vault
    /// and write-only — no command shows them again.
    #[command(subcommand)]
    Secret(SecretCmd),
    /// DKIM signing keys for the tenant's domains: made and kept by the vault, which signs
    /// the tenant's outbound mail (mx never holds a key).
    #[command(subcommand)]
    Dkim(dkim_cmd::DkimCmd),
}

#[derive(Subcommand)]
enum SecretCmd {
    /// Seal a secret (replacing the tenant's previous one of that kind).
    Set {
        /// Tenant name.
        name: String,
        #[command(subcommand)]
        value: SecretValue,
    },
    /// Which secrets a tenant has and when each was set (never the values).
    List {
        /// Tenant name.
        name: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Delete a tenant's secret.
    Delete {
        /// Tenant name.
        name: String,
        /// smtp-auth or client-cert.
        kind: String,
    },
}

#[derive(Subcommand)]
enum SecretValue {
    /// SMTP AUTH (PLAIN) credentials, used by routes with `auth=tenant`.
    SmtpAuth {
        /// Username.
        #[arg(long)]
        username: String,
        /// File holding the password (`-` reads standard input); one trailing newline is
        /// dropped. Never given on the command line, where `ps` and shell history would see it.
        #[arg(long)]
        password_file: PathBuf,
    },
    /// TLS client certificate chain and private key (PEM), used by routes with
    /// `client_cert=tenant`.
    ClientCert {
        /// Certificate chain, leaf first.
        #[arg(long)]
        cert: PathBuf,
        /// Private key (PKCS#8, PKCS#1 or SEC1).
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(Subcommand)]
enum VaultCmd {
    /// Re-wrap every tenant key under a new KEK and destroy the old one (no downtime).
    RotateKek,
    /// The vault's records (every open, release, key change), newest first.
    Records {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct PolicyArgs {
    /// Tenant name.
    name: String,
    /// Score at which mail is tagged.
    #[arg(long)]
    tag: Option<f64>,
    /// Score at which mail is quarantined.
    #[arg(long)]
    quarantine: Option<f64>,
    /// Score at which mail is rejected.
    #[arg(long)]
    reject: Option<f64>,
    /// Weight of a symbol: SYMBOL=WEIGHT (repeatable).
    #[arg(long = "weight", value_name = "SYMBOL=WEIGHT")]
    weights: Vec<String>,
    /// Drop a weight override (repeatable).
    #[arg(long = "unset-weight", value_name = "SYMBOL")]
    unset_weights: Vec<String>,
    /// Protect a person's display name: "NAME" or "NAME=addr1,addr2" (their real addresses;
    /// without them, any address at the tenant's domains is theirs). Repeatable.
    #[arg(long = "protect-name", value_name = "NAME[=ADDRESSES]")]
    protect_names: Vec<String>,
    /// Stop protecting a name (repeatable).
    #[arg(long = "unprotect-name", value_name = "NAME")]
    unprotect_names: Vec<String>,
    /// Trust ARC seals by this forwarder domain (repeatable).
    #[arg(long = "trust-arc", value_name = "DOMAIN")]
    trust_arc: Vec<String>,
    /// Stop trusting an ARC sealer (repeatable).
    #[arg(long = "untrust-arc", value_name = "DOMAIN")]
    untrust_arc: Vec<String>,
    /// Keep this tenant's quarantined messages this many days (1–3650).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
    quarantine_days: Option<u32>,
    /// Keep this tenant's message-trace records this many days (1–3650).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
    trace_days: Option<u32>,
    /// Drop every override first (the global policy applies again).
    #[arg(long)]
    reset: bool,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

impl PolicyArgs {
    fn changes(&self) -> bool {
        self.tag.is_some()
            || self.quarantine.is_some()
            || self.reject.is_some()
            || !self.weights.is_empty()
            || !self.unset_weights.is_empty()
            || !self.protect_names.is_empty()
            || !self.unprotect_names.is_empty()
            || !self.trust_arc.is_empty()
            || !self.untrust_arc.is_empty()
            || self.quarantine_days.is_some()
            || self.trace_days.is_some()
            || self.reset
    }

    /// `current` with the requested changes applied.
    fn apply(&self, mut p: store::FilterPolicy) -> Result<store::FilterPolicy> {
        if self.reset {
            p = store::FilterPolicy::default();
        }
        p.tag = self.tag.or(p.tag);
        p.quarantine = self.quarantine.or(p.quarantine);
        p.reject = self.reject.or(p.reject);
        p.quarantine_days = self.quarantine_days.or(p.quarantine_days);
        p.trace_days = self.trace_days.or(p.trace_days);
        for w in &self.weights {
            let (name, value) = w
                .split_once('=')
                .with_context(|| format!("--weight {w:?}: expected SYMBOL=WEIGHT"))?;
            let symbol = inspect::Symbol::from_name(name.trim())
                .with_context(|| format!("--weight: unknown symbol {name:?}"))?;
            let value: f64 = value
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .with_context(|| format!("--weight {w:?}: {value:?} is not a number"))?;
            p.weights.insert(symbol.name().to_string(), value);
        }
        for name in &self.unset_weights {
            let symbol = inspect::Symbol::from_name(name.trim())
                .with_context(|| format!("--unset-weight: unknown symbol {name:?}"))?;
            p.weights.remove(symbol.name());
        }
        for spec in &self.protect_names {
            let (name, addresses) = match spec.split_once('=') {
                Some((n, a)) => (
                    n.trim(),
                    a.split(',')
                        .map(|x| x.trim().to_ascii_lowercase())
                        .filter(|x| !x.is_empty())
                        .collect::<Vec<_>>(),
                ),
                None => (spec.trim(), Vec::new()),
            };
            if name.is_empty() {
                anyhow::bail!("--protect-name {spec:?}: the name is empty");
            }
            if let Some(bad) = addresses.iter().find(|a| !a.contains('@')) {
                anyhow::bail!("--protect-name {spec:?}: {bad:?} is not an address");
            }
            p.protected_names.retain(|n| n.name != name);
            p.protected_names.push(store::StoredName {
                name: name.to_string(),
                addresses,
            });
        }
        for name in &self.unprotect_names {
            p.protected_names.retain(|n| n.name != name.trim());
        }
        for d in &self.trust_arc {
            let d = store::normalize_domain(d)?;
            if !p.trusted_arc.contains(&d) {
                p.trusted_arc.push(d);
            }
        }
        for d in &self.untrust_arc {
            let d = store::normalize_domain(d)?;
            p.trusted_arc.retain(|t| *t != d);
        }
        Ok(p)
    }
}

fn print_policy(name: &str, p: &store::FilterPolicy, global: &inspect::Policy) {
    let t = |v: Option<f64>, g: f64| match v {
        Some(v) => format!("{v} (global {g})"),
        None => format!("{g} (global)"),
    };
    println!("tenant {name} filter policy:");
    println!(
        "  thresholds: tag {}, quarantine {}, reject {}",
        t(p.tag, global.tag),
        t(p.quarantine, global.quarantine),
        t(p.reject, global.reject)
    );
    if p.weights.is_empty() {
        println!("  weights: global");
    }
    for (s, w) in &p.weights {
        let g = inspect::Symbol::from_name(s).map_or(f64::NAN, |s| global.weight(s));
        println!("  weight {s}: {w} (global {g})");
    }
    for n in &p.protected_names {
        if n.addresses.is_empty() {
            println!(
                "  protected name: {} (any address at the tenant's domains)",
                n.name
            );
        } else {
            println!(
                "  protected name: {} <{}>",
                n.name,
                n.addresses.join(">, <")
            );
        }
    }
    if !p.trusted_arc.is_empty() {
        println!("  trusted ARC sealers: {}", p.trusted_arc.join(", "));
    }
    if let Some(d) = p.quarantine_days {
        println!("  quarantine kept {d} days");
    }
    if let Some(d) = p.trace_days {
        println!("  message trace kept {d} days");
    }
}

#[derive(Subcommand)]
enum DomainCmd {
    /// Add a domain to a tenant.
    Add {
        /// Tenant name.
        tenant: String,
        /// Domain.
        domain: String,
    },
}

#[derive(Subcommand)]
enum RecipientCmd {
    /// List a recipient address (its domain must belong to a tenant).
    Add {
        /// Address.
        address: String,
    },
    /// Remove a listed recipient.
    Remove {
        /// Address.
        address: String,
    },
    /// Show listed recipients.
    List {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum QuarantineCmd {
    /// Quarantined messages, newest first (metadata only: sender, recipients, verdict).
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// One quarantined message's metadata.
    Show {
        /// Quarantine id.
        id: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Open (decrypt) a quarantined message through the vault; the open is recorded with the
    /// reason. Writes the message to stdout or --out.
    Open {
        /// Quarantine id.
        id: String,
        /// Why it is opened (recorded).
        #[arg(long, required_unless_present = "break_glass")]
        reason: Option<String>,
        /// The lockbox the tenant approved for this (operators request one in the portal;
        /// `sekisho lockbox list` shows them).
        #[arg(long, conflicts_with = "break_glass")]
        lockbox: Option<i64>,
        /// In an emergency, without a lockbox: opens, records the reason and raises a
        /// critical `break-glass` alert.
        #[arg(long, value_name = "REASON")]
        break_glass: Option<String>,
        /// Write the message to this file (mode 0600) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a quarantined message's sealed blob (age format) as it is stored — for a tenant
    /// that holds its own key (`age --decrypt -i identity.txt FILE`). Nothing is decrypted.
    Export {
        /// Quarantine id.
        id: String,
        /// Output file (mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Deliver a quarantined message with its original envelope.
    Release {
        /// Quarantine id.
        id: String,
    },
    /// Delete a quarantined message (its sealed blob and metadata).
    Delete {
        /// Quarantine id.
        id: String,
    },
}

#[derive(Subcommand)]
enum DigestCmd {
    /// Send the digests of everything quarantined since the last run now, instead of at the
    /// daily time (through the running node).
    Send {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

/// Who is at the keyboard, for records: `cli:<login>`.
pub(crate) fn cli_principal() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

async fn quarantine_cmd(cfg: Config, cmd: QuarantineCmd) -> Result<()> {
    let store = serve::open_store(&cfg).await?;
    let vault = proto::client::VaultClient::new(proto::client::socket_path(&cfg.data_dir));
    match cmd {
        QuarantineCmd::List {
            tenant,
            limit,
            json,
        } => {
            let tenant_id = match &tenant {
                Some(name) => Some(
                    store
                        .list_tenants()
                        .await?
                        .into_iter()
                        .find(|t| t.name == *name)
                        .with_context(|| format!("no tenant named {name:?}"))?
                        .id,
                ),
                None => None,
            };
            let items = store.quarantine_list(tenant_id, limit).await?;
            if json {
                return print_json(&items);
            }
            if items.is_empty() {
                println!("the quarantine is empty");
            }
            for q in items {
                println!(
                    "{} {} {} from <{}> to {} score {:.2} size {}",
                    q.id,
                    egress::time_rfc2822(q.received_at),
                    q.tenant,
                    q.mail_from,
                    q.rcpts.join(","),
                    q.score,
                    q.size
                );
            }
        }
        QuarantineCmd::Show { id, json } => {
            let q = store.quarantine_get(&id).await?;
            if json {
                return print_json(&q);
            }
            println!("id:          {}", q.id);
            println!("tenant:      {}", q.tenant);
            println!("received:    {}", egress::time_rfc2822(q.received_at));
            println!("expires:     {}", egress::time_rfc2822(q.expires_at));
            println!("from:        <{}>", q.mail_from);
            println!("to:          {}", q.rcpts.join(", "));
            println!("size:        {}", q.size);
            println!("verdict:     {} (score {:.2})", q.verdict, q.score);
            println!("symbols:     {}", q.symbols);
            println!("sealed to:   {}", q.sealed_to);
            println!("(subject and content are sealed: `sekisho quarantine open {id} --reason …`)");
        }
        QuarantineCmd::Open {
            id,
            reason,
            lockbox,
            break_glass,
            out,
        } => {
            let reason = break_glass.clone().or(reason).unwrap_or_default();
            if reason.trim().is_empty() {
                anyhow::bail!("--reason must say why the message is opened (it is recorded)");
            }
            let qid: proto::QueueId = id.parse().map_err(anyhow::Error::msg)?;
            let plain = vault
                .open_quarantine(proto::client::OpenQuarantine {
                    id: &qid,
                    purpose: proto::vault::Purpose::Read,
                    principal: &cli_principal(),
                    reason: &reason,
                    session: None,
                    role_token: None,
                    lockbox,
                    break_glass: break_glass.is_some(),
                })
                .await?;
            match out {
                Some(path) => {
                    use std::io::Write;
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    f.write_all(&plain)?;
                    eprintln!("wrote {} octets to {}", plain.len(), path.display());
                }
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&plain)?;
                }
            }
        }
        QuarantineCmd::Export { id, out } => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let q = store.quarantine_get(&id).await?;
            let sealed = serve::blob_store(&cfg)?.get(&q.blob).await?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            f.write_all(&sealed)?;
            store
                .record(&store::NewRecord {
                    principal: &cli_principal(),
                    action: "export-sealed",
                    tenant_id: Some(q.tenant_id),
                    object: &id,
                    outcome: "ok",
                    ..store::NewRecord::by(proto::Process::Cli)
                })
                .await?;
            println!(
                "wrote the sealed message ({} octets, age to {}) to {}",
                sealed.len(),
                q.sealed_to,
                out.display()
            );
        }
        QuarantineCmd::Release { id } => {
            admin::client(&cfg.data_dir)
                .ask(proto::mx::QuarantineRelease {
                    id: id.parse().map_err(anyhow::Error::msg)?,
                    principal: cli_principal(),
                    session: None,
                    token: None,
                })
                .await?;
            println!("{id} released for delivery");
        }
        QuarantineCmd::Delete { id } => {
            let q = store.quarantine_get(&id).await?;
            serve::blob_store(&cfg)?.delete(&q.blob).await?;
            store.quarantine_remove(&id).await?;
            store
                .record(&store::NewRecord {
                    principal: &cli_principal(),
                    action: "delete",
                    tenant_id: Some(q.tenant_id),
                    object: &id,
                    outcome: "ok",
                    ..store::NewRecord::by(proto::Process::Cli)
                })
                .await?;
            println!("{id} deleted");
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum SpoolCmd {
    /// Live and destroyed data keys and segments: a destroyed key's message cannot be read
    /// by anyone, the KEK's holder included.
    Stats {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Test hook: reads a copy of a data directory as a thief would — every file tried as a
    /// spool key, and with `--kek`, the spool key unwrapped from the database — and prints
    /// what opened, as JSON.
    #[cfg(feature = "test-hooks")]
    Forensic {
        /// The copy of the data directory.
        copy: PathBuf,
        /// The KEK file (the thief has it too).
        #[arg(long)]
        kek: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum QueueCmd {
    /// List queued messages.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Show one message's envelope and recipient states.
    Show {
        /// Queue id.
        id: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Retry every deferred message now.
    Flush {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Delete a message from the queue (no DSN is sent).
    Delete {
        /// Queue id.
        id: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Hold a message (not delivered until released).
    Hold {
        /// Queue id.
        id: String,
    },
    /// Release a held message.
    Release {
        /// Queue id.
        id: String,
    },
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEKISHO_LOG")
        // PostgreSQL's notices ("relation … already exists, skipping" at every migration
        // check) are not news.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx::postgres::notice=warn"));
    use std::io::IsTerminal;
    // Colour only for a person at a terminal: a log file or journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load_config(node: &NodeArgs, o: Overrides) -> Result<Config> {
    let raw = match &node.config {
        Some(path) => RawConfig::load(path)?,
        None => RawConfig::default(),
    };
    let mut cfg = raw.resolve(&Overrides {
        data_dir: node.data_dir.clone(),
        dns: node.dns.clone(),
        ..o
    })?;
    cfg.config_file = node
        .config
        .as_deref()
        .map(std::path::absolute)
        .transpose()?;
    Ok(cfg)
}

/// `serve`'s configuration and role, settled before the runtime starts: a role takes its
/// token from the supervisor and `mx` confines itself while it is still one thread.
fn prepare(cli: &Cli) -> Result<Option<(Config, Option<serve::RoleStart>)>> {
    let Command::Serve {
        smtp_listen,
        admin_listen,
        portal_listen,
        hostname,
        ..
    } = &cli.command
    else {
        return Ok(None);
    };
    let cfg = load_config(
        &cli.node,
        Overrides {
            smtp_listen: smtp_listen.clone(),
            admin_listen: admin_listen.clone(),
            portal_listen: portal_listen.clone(),
            hostname: hostname.clone(),
            ..Overrides::default()
        },
    )?;
    let role = serve::prepare_role(&cfg)?;
    Ok(Some((cfg, role)))
}

/// `sekisho … | head` closes the pipe early: that ends the command quietly (status 0), as
/// for any Unix tool, instead of a panic message about printing to stdout.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    init_logging(&cli.node.log_format);
    let prepared = match prepare(&cli) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, prepared)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Asks a running node to reload its directory now (it also notices within a second).
pub(crate) async fn poke(cfg: &Config) {
    let _ = admin::client(&cfg.data_dir)
        .ask(proto::mx::Reload { token: None })
        .await;
}

async fn run(cli: Cli, prepared: Option<(Config, Option<serve::RoleStart>)>) -> Result<()> {
    match cli.command {
        Command::Serve { demo, .. } => {
            let (cfg, role) = prepared.context("serve was not prepared")?;
            serve::serve(cfg, demo, role).await
        }
        Command::CheckConfig => {
            let cfg = load_config(&cli.node, Overrides::default())?;
            let file = match &cli.node.config {
                Some(p) => Some(std::fs::read_to_string(p)?),
                None => None,
            };
            print!("{}", sekisho::effective::effective(file.as_deref(), &cfg)?);
            Ok(())
        }
        Command::Acme(AcmeCmd::Renew { force }) => {
            acme::renew(&load_config(&cli.node, Overrides::default())?, force)
                .await
                .map(|_| ())
        }
        Command::Backup { to } => {
            backup::backup(&load_config(&cli.node, Overrides::default())?, &to).await
        }
        Command::Restore { from } => {
            backup::restore(&load_config(&cli.node, Overrides::default())?, &from).await
        }
        Command::Tenant(cmd) => tenant(load_config(&cli.node, Overrides::default())?, cmd).await,
        Command::Node(NodeCmd::List { json }) => {
            let cfg = load_config(&cli.node, Overrides::default())?;
            let store = serve::open_store(&cfg).await?;
            node_list(&store, json).await
        }
        Command::Domain(DomainCmd::Add { tenant, domain }) => {
            let cfg = load_config(&cli.node, Overrides::default())?;
            let store = serve::open_store(&cfg).await?;
            store.add_domain(&tenant, &domain).await?;
            changed(&store, "domain-add", Some(&tenant), &domain).await?;
            poke(&cfg).await;
            println!("domain {domain} added to tenant {tenant}");
            Ok(())
        }
        Command::Recipient(cmd) => {
            recipient(load_config(&cli.node, Overrides::default())?, cmd).await
        }
        Command::Queue(cmd) => queue(load_config(&cli.node, Overrides::default())?, cmd).await,
        Command::Spool(SpoolCmd::Stats { json }) => {
            spool_stats(load_config(&cli.node, Overrides::default())?, json).await
        }
        #[cfg(feature = "test-hooks")]
        Command::Spool(SpoolCmd::Forensic { copy, kek }) => {
            let cfg = load_config(&cli.node, Overrides::default())?;
            hooks::forensic(&cfg, &copy, kek.as_deref()).await
        }
        Command::Audit(cmd) => audit::run(load_config(&cli.node, Overrides::default())?, cmd).await,
        Command::Alerts(cmd) => {
            audit::alerts(load_config(&cli.node, Overrides::default())?, cmd).await
        }
        Command::Incident(cmd) => {
            incident::run(load_config(&cli.node, Overrides::default())?, cmd).await
        }
        Command::User(cmd) => users::user(load_config(&cli.node, Overrides::default())?, cmd).await,
        Command::Digest(DigestCmd::Send { json }) => {
            let cfg = load_config(&cli.node, Overrides::default())?;
            let sent = admin::client(&cfg.data_dir)
                .ask(proto::mx::DigestSend {})
                .await?;
            if json {
                return print_json(&sent);
            }
            println!(
                "{} digest(s) queued, listing {} quarantined message(s)",
                sent.digests, sent.items
            );
            Ok(())
        }
        Command::Outbound(cmd) => {
            outbound::outbound(load_config(&cli.node, Overrides::default())?, cmd).await
        }
        Command::Canary(cmd) => {
            audit::canary(load_config(&cli.node, Overrides::default())?, cmd).await
        }
        Command::Lockbox(cmd) => {
            lockbox::lockbox(load_config(&cli.node, Overrides::default())?, cmd).await
        }
        Command::Store(cmd) => {
            dbroles::run(load_config(&cli.node, Overrides::default())?, cmd).await
        }
        Command::Surface { json, baseline } => {
            surface::run(
                load_config(&cli.node, Overrides::default())?,
                json,
                baseline,
            )
            .await
        }
        Command::Vault(cmd) => {
            let cfg = load_config(&cli.node, Overrides::default())?;
            match cmd {
                VaultCmd::RotateKek => {
                    let vault =
                        proto::client::VaultClient::new(proto::client::socket_path(&cfg.data_dir));
                    let summary = vault
                        .admin(proto::vault::Admin::RotateKek {
                            principal: cli_principal(),
                        })
                        .await?;
                    println!("KEK rotated: {summary}");
                }
                VaultCmd::Records { limit, json } => {
                    let records = serve::open_store(&cfg).await?.records(limit).await?;
                    if json {
                        return print_json(&records);
                    }
                    for r in records {
                        println!(
                            "{} {} {} {} via {} tenant {} {} {}{}",
                            r.id,
                            egress::time_rfc2822(r.at),
                            r.principal,
                            r.action,
                            r.role,
                            r.tenant_id.map_or("-".to_string(), |t| t.to_string()),
                            if r.object.is_empty() { "-" } else { &r.object },
                            r.outcome,
                            if r.reason.is_empty() {
                                String::new()
                            } else {
                                format!(" reason: {}", r.reason)
                            }
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Quarantine(cmd) => {
            quarantine_cmd(load_config(&cli.node, Overrides::default())?, cmd).await
        }
        Command::Check {
            paths,
            ip,
            helo,
            mail_from,
            rcpt,
            tenant,
            outbound,
            json,
        } => {
            let cfg = load_config(&cli.node, Overrides::default())?;
            let store = serve::open_store(&cfg).await?;
            let tenant = match tenant {
                Some(name) => Some(
                    store
                        .list_tenants()
                        .await?
                        .into_iter()
                        .find(|t| t.name == name)
                        .with_context(|| format!("no tenant named {name:?}"))?,
                ),
                None => None,
            };
            let env = inspect::Envelope {
                client_ip: ip,
                helo,
                mail_from,
                rcpts: rcpt,
                protected_domains: tenant
                    .as_ref()
                    .map(|t| t.domains.clone())
                    .unwrap_or_default(),
                tenant: tenant.as_ref().map(|t| t.id),
                rules: match &tenant {
                    Some(t) => ingress::tenant_rules(
                        &cfg.policy,
                        &store.filter_policy(&t.name).await?,
                        &store.sender_lists(t.id).await?,
                    )
                    .map_err(|e| anyhow::anyhow!("tenant {}: {e}", t.name))?
                    .map(std::sync::Arc::new),
                    None => None,
                },
                received_at: None,
                outbound,
            };
            check(&cfg, &store, &paths, &env, json).await
        }
        Command::Symbols { json, markdown } => {
            let cfg = load_config(&cli.node, Overrides::default())?;
            if markdown {
                print!("{}", inspect::evidence::markdown_table(&cfg.policy));
                return Ok(());
            }
            for s in inspect::Symbol::ALL {
                let w = cfg.policy.weight(*s);
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"symbol": s.name(), "weight": w, "description": s.description()})
                    );
                } else {
                    println!("{:<22} {:>8} {}", s.name(), w, s.description());
                }
            }
            Ok(())
        }
        Command::Train { ham, spam, tenant } => {
            if ham.is_empty() && spam.is_empty() {
                anyhow::bail!("nothing to train: give --ham DIR and/or --spam DIR");
            }
            let cfg = load_config(&cli.node, Overrides::default())?;
            train(&cfg, &ham, &spam, tenant.as_deref()).await
        }
        Command::Learn { ham, spam, tenant } => {
            let cfg = load_config(&cli.node, Overrides::default())?;
            let ham: Vec<PathBuf> = ham.into_iter().collect();
            let spam: Vec<PathBuf> = spam.into_iter().collect();
            train(&cfg, &ham, &spam, tenant.as_deref()).await
        }
        Command::Trace {
            rcpt,
            from,
            id,
            limit,
            json,
        } => {
            let cfg = load_config(&cli.node, Overrides::default())?;
            let store = serve::open_store(&cfg).await?;
            let found = store
                .trace(&TraceFilter {
                    rcpt,
                    mail_from: from,
                    id,
                    limit,
                    tenant: None,
                })
                .await?;
            if json {
                return print_json(&found);
            }
            if found.is_empty() {
                println!("no matching messages");
            }
            for m in found {
                println!(
                    "{} {} from <{}> size {} client {} helo {}{}",
                    m.id,
                    egress::time_rfc2822(m.received_at),
                    m.mail_from,
                    m.size,
                    m.client_ip,
                    m.helo,
                    m.tls.map(|t| format!(" tls {t}")).unwrap_or_default()
                );
                if let Some(verdict) = &m.verdict {
                    println!(
                        "    verdict {verdict} score {:.2}",
                        m.score.unwrap_or_default()
                    );
                    for (name, weight) in traced_symbols(&m.symbols) {
                        let why = inspect::Symbol::from_name(name).map_or("", |s| s.description());
                        println!("      {name}({weight}) {why}");
                    }
                }
                for e in m.events {
                    println!(
                        "    {} {:<9} <{}> {}",
                        egress::time_rfc2822(e.at),
                        e.event,
                        e.rcpt,
                        e.detail
                    );
                }
            }
            Ok(())
        }
    }
}

/// The `NAME(weight)` pairs of a trace's symbol list (as `Verdict::symbol_list` writes it).
fn traced_symbols(list: &str) -> Vec<(&str, &str)> {
    list.split(", ")
        .filter_map(|s| s.strip_suffix(')')?.split_once('('))
        .collect()
}

/// Files under `paths` (directories recursively), sorted.
fn message_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        let meta = std::fs::metadata(&p).with_context(|| format!("cannot read {}", p.display()))?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&p)? {
                stack.push(entry?.path());
            }
        } else {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// A message file as an SMTP client would send it: an mbox `From ` envelope line (never part
/// of the message) is dropped, and bare LF line endings become CRLF.
fn read_message(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let raw = std::fs::read(path)?;
    let body = match raw.strip_prefix(b"From ") {
        Some(rest) => match rest.iter().position(|&b| b == b'\n') {
            Some(nl) => &rest[nl + 1..],
            None => &[][..],
        },
        None => &raw[..],
    };
    if body.contains(&b'\r') {
        return Ok(body.to_vec());
    }
    let mut out = Vec::with_capacity(body.len() + body.len() / 32);
    for &b in body {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    Ok(out)
}

/// The envelope for re-checking a stored message: unless given on the command line, MAIL FROM
/// is the message's Return-Path and the arrival time is the date of its topmost Received header,
/// so an old message is judged as of when it arrived.
fn replay_envelope(raw: &[u8], given: &inspect::Envelope) -> inspect::Envelope {
    let mut env = given.clone();
    let Some(m) = mail_parser::MessageParser::new().parse_headers(raw) else {
        return env;
    };
    if env.mail_from.is_empty()
        && let Some(mail_parser::HeaderValue::Text(rp)) =
            m.header(mail_parser::HeaderName::ReturnPath)
    {
        env.mail_from = rp.trim_matches(['<', '>', ' ']).to_string();
    }
    if env.received_at.is_none() {
        env.received_at = m
            .received()
            .and_then(|r| r.date)
            .filter(|d| d.is_valid())
            .map(|d| d.to_timestamp());
    }
    env
}

async fn check(
    cfg: &Config,
    store: &store::Store,
    paths: &[PathBuf],
    env: &inspect::Envelope,
    json: bool,
) -> Result<()> {
    // The models as mx loads them, through mx's handle.
    let mail = store.clone().into_mail();
    let bayes = std::sync::Arc::new(inspect::stages::bayes::Bayes::new());
    serve::load_bayes(&mail, &bayes, &Default::default()).await?;
    let senders = std::sync::Arc::new(inspect::stages::contact::SenderHistory::new());
    serve::load_senders(&mail, &senders, &mut 0).await?;
    let inspector = serve::inspector(cfg, bayes, senders)?;
    let files = message_files(paths)?;
    let mut failed = 0;
    for file in &files {
        let raw = match read_message(file) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {}: {e}", file.display());
                failed += 1;
                continue;
            }
        };
        let verdict = inspector.inspect(&raw, &replay_envelope(&raw, env)).await;
        if json {
            let v = serde_json::json!({
                "file": file.display().to_string(),
                "action": verdict.action,
                "score": verdict.score,
                "symbols": verdict.symbols,
                "auth": verdict.auth,
                "cpu_us": verdict.cpu.as_micros() as u64,
            });
            println!("{v}");
        } else {
            println!(
                "{}: {} score {:.2} {}",
                file.display(),
                verdict.action.name(),
                verdict.score,
                verdict.symbol_list()
            );
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} files could not be read", files.len());
    }
    Ok(())
}

/// Draws a progress bar on stderr (in place on a terminal, every quarter otherwise).
fn progress(done: usize, total: usize) {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stderr().is_terminal();
    let quarter = (total / 4).max(1);
    if !tty && !done.is_multiple_of(quarter) && done != total {
        return;
    }
    let width = 30;
    let filled = done * width / total.max(1);
    let bar = format!(
        "[{}{}] {done}/{total}",
        "#".repeat(filled),
        ".".repeat(width - filled)
    );
    let mut err = std::io::stderr();
    if tty {
        let _ = write!(err, "\rtraining {bar}");
        if done == total {
            let _ = writeln!(err);
        }
    } else {
        let _ = writeln!(err, "training {bar}");
    }
}

async fn train(
    cfg: &Config,
    ham: &[PathBuf],
    spam: &[PathBuf],
    tenant: Option<&str>,
) -> Result<()> {
    let store = serve::open_store(cfg).await?;
    let (tenant_id, model_name) = match tenant {
        Some(name) => {
            let t = store
                .list_tenants()
                .await?
                .into_iter()
                .find(|t| t.name == name)
                .with_context(|| format!("no tenant named {name:?}"))?;
            (t.id, format!("tenant {name}"))
        }
        None => (inspect::stages::bayes::GLOBAL, "global".to_string()),
    };
    let ham_files = message_files(ham)?;
    let spam_files = message_files(spam)?;
    let total = ham_files.len() + spam_files.len();
    let limits = cfg.view_limits.clone();
    // The n-gram classifier learns online, so the order matters: classes are interleaved
    // (a fixed order from the file names, not their directories, so a run is repeatable)
    // rather than all ham first.
    let mut labelled: Vec<(&PathBuf, bool)> = ham_files
        .iter()
        .map(|f| (f, false))
        .chain(spam_files.iter().map(|f| (f, true)))
        .collect();
    labelled.sort_by_key(|(f, _)| {
        let name = f.file_name().unwrap_or(f.as_os_str()).to_string_lossy();
        (inspect::bayes::token_hash(&name), f.to_path_buf())
    });
    // Messages per transaction and per set of n-gram passes (bounds memory for big corpora:
    // about 15 KiB of features and token hashes per message). A typical corpus is one batch,
    // so every pass goes over all of it.
    const BATCH: usize = 10_000;
    let mut outcome = store::LearnOutcome::default();
    let mut done = 0;
    for chunk in labelled.chunks(BATCH) {
        let mut msgs = Vec::with_capacity(chunk.len());
        let mut feats = Vec::with_capacity(chunk.len());
        for (file, is_spam) in chunk {
            let raw =
                read_message(file).with_context(|| format!("cannot read {}", file.display()))?;
            let (view, _) = inspect::MessageView::parse(&raw, &limits);
            let tokens = inspect::bayes::tokenize(&view);
            feats.push(inspect::ngram::features(&view, &tokens));
            let (digest, tokens) = inspect::bayes::learn_form(&tokens);
            msgs.push(store::LearnMessage {
                digest,
                spam: *is_spam,
                tokens,
            });
            done += 1;
            progress(done, total);
        }
        let o = learn_batch(&store, tenant_id, &msgs, &feats).await?;
        outcome.learned += o.learned;
        outcome.moved += o.moved;
        outcome.already += o.already;
    }
    poke(cfg).await;
    let now = store.bayes_load(tenant_id).await?;
    println!(
        "{model_name} model: learned {} new message(s), moved {} to the other class, {} already known; now {} ham, {} spam, {} tokens",
        outcome.learned,
        outcome.moved,
        outcome.already,
        now.ham_msgs,
        now.spam_msgs,
        now.tokens.len()
    );
    if let Some((generation, _)) = store.ngram_load(tenant_id).await? {
        println!("{model_name} n-gram weights: generation {generation}");
    }
    if now.ham_msgs < inspect::bayes::MIN_TRAINED as i64
        || now.spam_msgs < inspect::bayes::MIN_TRAINED as i64
    {
        println!(
            "the model gives no opinion until it has {} ham and {} spam messages",
            inspect::bayes::MIN_TRAINED,
            inspect::bayes::MIN_TRAINED
        );
    }
    Ok(())
}

/// Learns one batch into both classifiers of a model: Bayes counts and, in the same
/// transaction, n-gram weights stepped (`PASSES` passes over the batch) on every message
/// that is new or changes class.
/// Retries when another trainer stored weights meanwhile (its steps are kept, ours redone).
async fn learn_batch(
    store: &store::Store,
    tenant: i64,
    msgs: &[store::LearnMessage],
    feats: &[Vec<u32>],
) -> Result<store::LearnOutcome> {
    const ATTEMPTS: usize = 5;
    for _ in 0..ATTEMPTS {
        let stored = store.ngram_load(tenant).await?;
        let base = stored.as_ref().map(|(g, _)| *g);
        // Weights of an earlier format were learned on other features: they start again
        // from nothing, and every message of the batch teaches them (the Bayes counts keep
        // what they learned).
        let older = stored
            .as_ref()
            .is_some_and(|(_, b)| inspect::ngram::is_older_format(b));
        let mut weights = match &stored {
            Some(_) if older => inspect::ngram::Weights::default(),
            Some((_, bytes)) => inspect::ngram::Weights::from_bytes(bytes)
                .context("the stored n-gram model is damaged (not this version's format)")?,
            None => inspect::ngram::Weights::default(),
        };
        let digests: Vec<u64> = msgs.iter().map(|m| m.digest).collect();
        let seen = if older {
            Default::default()
        } else {
            store.bayes_seen(tenant, &digests).await?
        };
        // The messages that teach something: new, or learned before as the other class
        // (a duplicate in the batch counts once).
        let mut class = std::collections::HashMap::new();
        let teach: Vec<(&Vec<u32>, bool)> = msgs
            .iter()
            .zip(feats)
            .filter(|(m, _)| {
                let before = class.get(&m.digest).or(seen.get(&m.digest)).copied();
                class.insert(m.digest, m.spam);
                before != Some(m.spam)
            })
            .map(|(m, f)| (f, m.spam))
            .collect();
        for pass in 0..inspect::ngram::PASSES {
            for (f, spam) in &teach {
                weights.learn(f, *spam, pass);
            }
        }
        let update = store::NgramUpdate {
            base,
            weights: weights.to_bytes(),
            relearned: older,
        };
        match store.bayes_learn_with(tenant, msgs, Some(update)).await {
            Err(store::StoreError::Conflict(_)) => continue,
            r => return Ok(r?),
        }
    }
    anyhow::bail!("the model kept changing while training ({ATTEMPTS} attempts): try again")
}

fn validate_route(route: &str) -> Result<()> {
    route.parse::<egress::Route>()?;
    Ok(())
}

/// `sekisho node list`: every node of the store with its status at this moment.
async fn node_list(store: &store::Store, json: bool) -> Result<()> {
    let now = store::unix_now();
    let nodes = store.nodes().await?;
    if json {
        #[derive(serde::Serialize)]
        struct Row<'a> {
            #[serde(flatten)]
            node: &'a store::NodeInfo,
            status: &'static str,
            seen_seconds_ago: i64,
        }
        let rows: Vec<Row> = nodes
            .iter()
            .map(|n| Row {
                node: n,
                status: n.status(now),
                seen_seconds_ago: now - n.last_seen,
            })
            .collect();
        return print_json(&rows);
    }
    println!(
        "{:<20} {:<8} {:<10} {:<22} {:>7} {:>9} {:>6}  LAST SEEN",
        "NAME", "STATUS", "VERSION", "SMTP", "ACTIVE", "DEFERRED", "HOLD"
    );
    for n in &nodes {
        println!(
            "{:<20} {:<8} {:<10} {:<22} {:>7} {:>9} {:>6}  {}s ago",
            n.name,
            n.status(now),
            n.version,
            n.smtp,
            n.active,
            n.deferred,
            n.hold,
            now - n.last_seen
        );
    }
    if nodes.is_empty() {
        println!("(no node has started on this store yet)");
    }
    Ok(())
}

async fn tenant(cfg: Config, cmd: TenantCmd) -> Result<()> {
    let store = serve::open_store(&cfg).await?;
    match cmd {
        TenantCmd::Add {
            name,
            domains,
            route,
            recipient_policy,
        } => {
            validate_route(&route)?;
            let policy: RecipientPolicy = recipient_policy.parse().map_err(anyhow::Error::msg)?;
            store.add_tenant(&name, &domains, &route).await?;
            if policy != RecipientPolicy::Auto {
                store.set_recipient_policy(&name, policy).await?;
            }
            changed(&store, "tenant-add", Some(&name), &route).await?;
            poke(&cfg).await;
            println!("tenant {name} added: {} → {route}", domains.join(", "));
        }
        TenantCmd::List { json } => {
            let tenants = store.list_tenants().await?;
            if json {
                return print_json(&tenants);
            }
            println!(
                "{:<20} {:<10} {:<11} {:<40} ROUTE",
                "NAME", "POLICY", "RECIPIENTS", "DOMAINS"
            );
            for t in tenants {
                println!(
                    "{:<20} {:<10} {:<11} {:<40} {}",
                    t.name,
                    t.recipient_policy.as_str(),
                    t.recipients,
                    t.domains.join(","),
                    t.route
                );
            }
        }
        TenantCmd::SetRoute { name, route } => {
            validate_route(&route)?;
            store.set_route(&name, &route).await?;
            changed(&store, "set-route", Some(&name), &route).await?;
            poke(&cfg).await;
            println!("tenant {name} now routes to {route}");
        }
        TenantCmd::SetRecipientPolicy { name, policy } => {
            let parsed = policy.parse().map_err(anyhow::Error::msg)?;
            store.set_recipient_policy(&name, parsed).await?;
            changed(&store, "set-recipient-policy", Some(&name), &policy).await?;
            poke(&cfg).await;
            println!("tenant {name} recipient policy is now {policy}");
        }
        TenantCmd::TlsReports { name, state } => {
            let id = store.tenant_id(&name).await?;
            store.set_tenant_tls_reports(id, state == "on").await?;
            changed(&store, "tls-reports", Some(&name), &state).await?;
            println!(
                "tenant {name}: its outbound TLS sessions are {} TLS reports",
                if state == "on" {
                    "counted in"
                } else {
                    "left out of"
                }
            );
        }
        TenantCmd::SetKey {
            name,
            age_recipient,
            force,
        } => {
            vault::parse_recipient(&age_recipient)?;
            let stranded = store
                .set_customer_key(&name, age_recipient.trim(), force)
                .await?;
            changed(
                &store,
                "set-customer-key",
                Some(&name),
                age_recipient.trim(),
            )
            .await?;
            poke(&cfg).await;
            println!(
                "tenant {name}: mail is now sealed to the tenant's own key {}; the operator side cannot open it{}",
                age_recipient.trim(),
                if stranded > 0 {
                    format!(
                        " ({stranded} earlier quarantined message(s) can no longer be opened here)"
                    )
                } else {
                    String::new()
                }
            );
        }
        TenantCmd::Terminate { name, confirm } => {
            if confirm != name {
                anyhow::bail!("--confirm must repeat the tenant name ({name:?}) exactly");
            }
            let vault = proto::client::VaultClient::new(proto::client::socket_path(&cfg.data_dir));
            let summary = vault
                .admin(proto::vault::Admin::TerminateTenant {
                    tenant: name,
                    principal: cli_principal(),
                })
                .await?;
            poke(&cfg).await;
            println!("{summary}");
        }
        TenantCmd::Secret(cmd) => secret(&cfg, &store, cmd).await?,
        TenantCmd::Dkim(cmd) => dkim_cmd::run(&cfg, cmd).await?,
        TenantCmd::Policy(args) => {
            let mut p = store.filter_policy(&args.name).await?;
            if args.changes() {
                p = args.apply(p)?;
                ingress::tenant_rules(&cfg.policy, &p, &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
                store.set_filter_policy(&args.name, &p).await?;
                changed(
                    &store,
                    "set-filter-policy",
                    Some(&args.name),
                    &serde_json::to_string(&p)?,
                )
                .await?;
                poke(&cfg).await;
            }
            if args.json {
                return print_json(&p);
            }
            print_policy(&args.name, &p, &cfg.policy);
        }
    }
    Ok(())
}

/// Records a change made from the CLI in the audit log (who, what, which tenant and object).
async fn changed(
    store: &store::Store,
    action: &str,
    tenant: Option<&str>,
    object: &str,
) -> Result<()> {
    let tenant_id = match tenant {
        Some(t) => store.tenant_id(t).await.ok(),
        None => None,
    };
    store
        .record(&store::NewRecord {
            principal: &cli_principal(),
            action,
            tenant_id,
            object,
            outcome: "ok",
            ..store::NewRecord::by(proto::Process::Cli)
        })
        .await?;
    Ok(())
}

/// Reads a secret file (or standard input for `-`), bounded, dropping one trailing newline.
fn read_secret_file(path: &std::path::Path, what: &str) -> Result<zeroize::Zeroizing<String>> {
    use std::io::Read;
    let limit = keys::connector::MAX_FIELD as u64 + 1;
    let mut text = zeroize::Zeroizing::new(String::new());
    let read = if path.as_os_str() == "-" {
        std::io::stdin().take(limit).read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_string(&mut text))
    };
    read.with_context(|| format!("cannot read the {what} from {}", path.display()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

async fn secret(cfg: &Config, store: &store::Store, cmd: SecretCmd) -> Result<()> {
    match cmd {
        SecretCmd::Set { name, value } => {
            let secret = match value {
                SecretValue::SmtpAuth {
                    username,
                    password_file,
                } => keys::connector::ConnectorSecret::SmtpAuth {
                    username,
                    password: read_secret_file(&password_file, "password")?.to_string(),
                },
                SecretValue::ClientCert { cert, key } => {
                    let cert_pem = read_secret_file(&cert, "certificate")?;
                    let key_pem = read_secret_file(&key, "private key")?;
                    tls::ClientAuth::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    keys::connector::ConnectorSecret::ClientCert {
                        cert_pem: cert_pem.to_string(),
                        key_pem: key_pem.to_string(),
                    }
                }
            };
            secret.validate().map_err(anyhow::Error::msg)?;
            let vault = proto::client::VaultClient::new(proto::client::socket_path(&cfg.data_dir));
            let summary = vault
                .seal_secret(&name, &cli_principal(), &secret.to_bytes())
                .await?;
            poke(cfg).await;
            println!("{summary}; it cannot be shown again");
        }
        SecretCmd::List { name, json } => {
            let list = store.secret_list(store.tenant_id(&name).await?).await?;
            if json {
                return print_json(&list);
            }
            if list.is_empty() {
                println!("tenant {name} has no connector secrets");
            }
            for s in list {
                println!("{:<12} set {}", s.kind, egress::time_rfc2822(s.updated_at));
            }
        }
        SecretCmd::Delete { name, kind } => {
            let kind: keys::connector::SecretKind = kind.parse().map_err(anyhow::Error::msg)?;
            store
                .secret_delete(store.tenant_id(&name).await?, kind.name())
                .await?;
            changed(store, "delete-secret", Some(&name), kind.name()).await?;
            poke(cfg).await;
            println!("{kind} secret of {name} deleted");
        }
    }
    Ok(())
}

async fn recipient(cfg: Config, cmd: RecipientCmd) -> Result<()> {
    let store = serve::open_store(&cfg).await?;
    match cmd {
        RecipientCmd::Add { address } => {
            let tenant = store.add_recipient(&address).await?;
            changed(&store, "recipient-add", Some(&tenant), &address).await?;
            poke(&cfg).await;
            println!("{address} listed for tenant {tenant}");
        }
        RecipientCmd::Remove { address } => {
            store.remove_recipient(&address, None).await?;
            changed(&store, "recipient-remove", None, &address).await?;
            poke(&cfg).await;
            println!("{address} removed");
        }
        RecipientCmd::List { tenant, json } => {
            let list = store.list_recipients(tenant.as_deref()).await?;
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|(a, t)| serde_json::json!({"address": a, "tenant": t}))
                    .collect();
                return print_json(&v);
            }
            for (address, tenant) in list {
                println!("{address:<40} {tenant}");
            }
        }
    }
    Ok(())
}

async fn spool_stats(cfg: Config, json: bool) -> Result<()> {
    let s = admin::client(&cfg.data_dir)
        .ask(proto::mx::SpoolStats {})
        .await
        .context("spool stats")?;
    if json {
        return print_json(&s);
    }
    println!("messages queued                {}", s.messages);
    println!("live data keys                 {}", s.live_keys);
    println!(
        "destroyed data keys            {} on disk ({} since mx started): their mail opens for no one",
        s.destroyed_keys, s.destroyed_since_start
    );
    println!("segments                       {}", s.segments);
    println!(
        "segments awaiting compaction   {}",
        s.segments_awaiting_compaction
    );
    Ok(())
}

async fn queue(cfg: Config, cmd: QueueCmd) -> Result<()> {
    use proto::mx::{QueueDelete, QueueFlush, QueueHold, QueueList, QueueRelease, QueueShow};
    let mx = admin::client(&cfg.data_dir);
    let id = |id: String| id.parse::<proto::QueueId>().map_err(anyhow::Error::msg);
    match cmd {
        QueueCmd::List { json } => {
            let list = mx.ask(QueueList {}).await.context("queue")?;
            if json {
                return print_json(&list);
            }
            print_queue(&list);
        }
        QueueCmd::Show { id: qid, json } => {
            let m = mx.ask(QueueShow { id: id(qid)? }).await.context("queue")?;
            if json {
                return print_json(&m);
            }
            print_queued(&m);
        }
        QueueCmd::Flush { json } => {
            let out = mx.ask(QueueFlush {}).await.context("queue")?;
            if json {
                return print_json(&out);
            }
            println!("{} deferred message(s) due now", out.flushed);
        }
        QueueCmd::Delete { id: qid, json } => {
            let out = mx
                .ask(QueueDelete { id: id(qid)? })
                .await
                .context("queue")?;
            if json {
                return print_json(&out);
            }
            println!("{} deleted", out.deleted);
        }
        QueueCmd::Hold { id: qid } => {
            let out = mx.ask(QueueHold { id: id(qid)? }).await.context("queue")?;
            println!("{} held", out.held);
        }
        QueueCmd::Release { id: qid } => {
            let out = mx
                .ask(QueueRelease { id: id(qid)? })
                .await
                .context("queue")?;
            println!("{} released", out.released);
        }
    }
    Ok(())
}

fn print_queue(list: &[proto::mx::QueueEntry]) {
    if list.is_empty() {
        println!("queue is empty");
    }
    for m in list {
        let pending: Vec<&str> = m
            .envelope
            .rcpts
            .iter()
            .filter(|r| r.status == proto::mx::RcptStatus::Pending)
            .map(|r| r.address.as_str())
            .collect();
        println!(
            "{} {:<8} attempts {} size {} from <{}> to {} {}",
            m.id,
            format!("{:?}", m.state).to_lowercase(),
            m.attempts,
            m.size,
            m.envelope.mail_from,
            pending.join(","),
            m.note
        );
    }
}

fn print_queued(m: &proto::mx::QueueEntry) {
    println!("id          {}", m.id);
    println!("state       {}", format!("{:?}", m.state).to_lowercase());
    println!("from        <{}>", m.envelope.mail_from);
    println!("size        {}", m.size);
    println!("received    {}", egress::time_rfc2822(m.received_at));
    println!("attempts    {}", m.attempts);
    println!("next try    {}", egress::time_rfc2822(m.next_attempt));
    for r in &m.envelope.rcpts {
        println!(
            "rcpt        <{}> {} {}",
            r.address,
            format!("{:?}", r.status).to_lowercase(),
            r.last_reply
        );
    }
}
