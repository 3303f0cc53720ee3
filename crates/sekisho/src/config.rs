//! Configuration in two phases: the raw TOML file (`deny_unknown_fields`, every field
//! optional) is merged with flags and `SEKISHO_*` variables, then validated into [`Config`],
//! with errors that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The raw file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    spool: RawSpool,
    #[serde(default)]
    inspect: RawInspect,
    #[serde(default)]
    dns: RawDns,
    #[serde(default)]
    malware: RawMalware,
    #[serde(default)]
    dnsbl: Vec<RawDnsbl>,
    #[serde(default)]
    vault: RawVault,
    #[serde(default)]
    quarantine: RawQuarantine,
    #[serde(default)]
    trace: RawTrace,
    #[serde(default)]
    sandbox: RawSandbox,
    #[serde(default)]
    blobs: RawBlobs,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    detect: RawDetect,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    portal: RawPortal,
    #[serde(default)]
    digest: RawDigest,
    #[serde(default)]
    tls_reports: RawTlsReports,
    #[serde(default)]
    acme: RawAcme,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcme {
    directory: Option<String>,
    contact: Option<String>,
    domains: Option<Vec<String>>,
    http_listen: Option<String>,
    ca_file: Option<PathBuf>,
    renew_before: Option<String>,
    account_key: Option<PathBuf>,
}

/// Certificates from an ACME CA (`sekisho acme renew`).
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// The CA's directory URL (https).
    pub directory: String,
    /// The account's contact address.
    pub contact: Option<String>,
    /// The names the certificate is for (default: the host name).
    pub domains: Vec<String>,
    /// Where the http-01 challenge is answered (port 80 as the CA sees it).
    pub http_listen: SocketAddr,
    /// An extra root the CA's own HTTPS is checked against (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Renew when the certificate has less than this left.
    pub renew_before: Duration,
    /// The account key (made on first use; beside the certificate by default).
    pub account_key: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsReports {
    enabled: Option<bool>,
    organization: Option<String>,
    contact: Option<String>,
    from: Option<String>,
    max_per_run: Option<i64>,
    every: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDigest {
    enabled: Option<bool>,
    at: Option<String>,
    utc_offset: Option<String>,
    link_ttl: Option<String>,
    portal_url: Option<String>,
    from: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPortal {
    url: Option<String>,
    rate: Option<f64>,
    burst: Option<f64>,
    logins_per_minute: Option<f64>,
    probe_threshold: Option<u32>,
    block_for: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    webhook_url: Option<String>,
    #[serde(default)]
    email_to: Vec<String>,
    email_from: Option<String>,
    webhook_secret_file: Option<PathBuf>,
    syslog: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetect {
    bulk_open_threshold: Option<usize>,
    bulk_open_window: Option<String>,
    throttle: Option<String>,
    login_failure_threshold: Option<usize>,
    login_failure_window: Option<String>,
    outbound_burst_threshold: Option<usize>,
    outbound_burst_window: Option<String>,
    outbound_hold: Option<String>,
    working_hours: Option<String>,
    working_days: Option<String>,
    utc_offset: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    checkpoint_every: Option<usize>,
    checkpoint_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: Option<String>,
    password_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlobs {
    backend: Option<String>,
    s3: Option<RawS3>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawS3 {
    bucket: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    prefix: Option<String>,
    access_key_id: Option<String>,
    secret_access_key_file: Option<PathBuf>,
}

/// Where sealed blobs (quarantined messages) are kept.
#[derive(Debug, Clone)]
pub enum Blobs {
    /// `<data_dir>/quarantine`.
    Local,
    /// An S3-compatible object store.
    S3(store::blobs::S3Config),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSandbox {
    landlock: Option<String>,
    kernel_audit: Option<String>,
    users: Option<String>,
    refusals: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    kek_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuarantine {
    retention: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrace {
    retention: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDnsbl {
    zone: String,
    kind: String,
    #[serde(default)]
    listed: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMalware {
    clamd: Option<String>,
    deadline: Option<String>,
    on_scanner_error: Option<String>,
    scan: Option<String>,
    max_archive_depth: Option<usize>,
    max_archive_entries: Option<usize>,
    max_archive_size: Option<toml::Value>,
    max_compression_ratio: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    resolver: Option<String>,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInspect {
    tag_score: Option<f64>,
    quarantine_score: Option<f64>,
    reject_score: Option<f64>,
    #[serde(default)]
    weights: std::collections::HashMap<String, f64>,
    max_mime_depth: Option<usize>,
    max_mime_parts: Option<usize>,
    auth_deadline: Option<String>,
    phishing_feed: Option<PathBuf>,
    #[serde(default)]
    protected_brands: Vec<String>,
    common_brands: Option<bool>,
    expected_scripts: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    hostname: Option<String>,
    node_name: Option<String>,
    data_dir: Option<PathBuf>,
    smtp_listen: Option<String>,
    admin_listen: Option<String>,
    portal_listen: Option<String>,
    shutdown_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_command_line: Option<usize>,
    max_body_line: Option<usize>,
    max_message_size: Option<toml::Value>,
    max_recipients: Option<usize>,
    max_commands: Option<usize>,
    max_errors: Option<usize>,
    max_sessions: Option<usize>,
    max_sessions_per_ip: Option<usize>,
    idle_timeout: Option<String>,
    session_timeout: Option<String>,
    bare_line_endings: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    max_concurrent: Option<usize>,
    per_destination: Option<usize>,
    retry_initial: Option<String>,
    retry_max: Option<String>,
    max_lifetime: Option<String>,
    timeout: Option<String>,
    external_route: Option<String>,
    allow_private_mx: Option<bool>,
    mta_sts: Option<bool>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpool {
    max_segment_size: Option<toml::Value>,
    reserve: Option<toml::Value>,
}

/// Values given on the command line or in the environment; they win over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--data-dir` / `SEKISHO_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--smtp-listen` / `SEKISHO_SMTP_LISTEN`.
    pub smtp_listen: Option<String>,
    /// `--admin-listen` / `SEKISHO_ADMIN_LISTEN`.
    pub admin_listen: Option<String>,
    /// `--portal-listen` / `SEKISHO_PORTAL_LISTEN`.
    pub portal_listen: Option<String>,
    /// `--hostname` / `SEKISHO_HOSTNAME`.
    pub hostname: Option<String>,
    /// `--dns` / `SEKISHO_DNS`.
    pub dns: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The configuration file this was read from (absolute), if any.
    pub config_file: Option<PathBuf>,
    /// ACME (`[acme]` with a directory), if configured.
    pub acme: Option<AcmeConfig>,
    pub hostname: String,
    /// This node's name in the cluster's node list (`[server] node_name`; the host name).
    pub node_name: String,
    pub data_dir: PathBuf,
    pub smtp_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// The portal's HTTPS listener (`None`: no portal role).
    pub portal_listen: Option<SocketAddr>,
    pub shutdown_grace: Duration,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// The vault's key-encryption key (read by the vault role only).
    pub kek_file: PathBuf,
    /// How long quarantined messages are kept.
    pub quarantine_retention: Duration,
    /// How long message-trace records are kept (a tenant's `trace_days` overrides it).
    pub trace_retention: Duration,
    /// Refuse to run `mx` unless Landlock confines it (else warn and run unconfined).
    pub sandbox_required: bool,
    /// Watch the kernel audit log for Landlock denials by the roles (`None`: off).
    pub kernel_audit: Option<KernelAudit>,
    /// Started as root, run each role under its own user (`[sandbox] users`).
    pub role_users: bool,
    /// Ask the kernel to log what it refuses the role users (`[sandbox] refusals = "raise"`).
    pub raise_refusals: bool,
    /// Where sealed blobs are kept.
    pub blobs: Blobs,
    /// The shared PostgreSQL store (`[store] url`); `None`: SQLite in the data directory.
    pub store_url: Option<StoreConfig>,
    /// The vault signs an audit checkpoint after this many records…
    pub checkpoint_every: i64,
    /// …or this long after the last one, whichever comes first.
    pub checkpoint_interval: Duration,
    /// Bulk-read detection in the vault.
    pub bulk_rule: vault::detect::BulkRule,
    /// Failed-login storm rule (`[detect] login_failure_*`).
    pub login_storm: vault::detect::LoginStormRule,
    /// Outbound-burst rule (`[detect] outbound_burst_*`, `outbound_hold`).
    pub outbound_burst: detect::outbound::BurstRule,
    /// Daily TLS reports to recipient domains (`[tls_reports]`; `None`: off).
    pub tls_reports: Option<TlsReportConfig>,
    /// The daily quarantine digest (`[digest]`; `None`: off, or no portal to link to).
    pub digest: Option<egress::digest::DigestConfig>,
    /// Operators' working hours (`[detect] working_hours`, `working_days`, `utc_offset`).
    pub working_hours: Option<vault::detect::WorkingHours>,
    /// The portal's front-door limits (`[portal]`).
    pub portal_limits: portal::front::Limits,
    /// The portal's public origin (`[portal] url`), which is also the WebAuthn relying party
    /// (`None`: no portal).
    pub portal_origin: Option<PortalOrigin>,
    /// Where alerts are forwarded.
    pub webhook: Option<detect::sinks::Webhook>,
    /// The syslog socket alerts are sent to (`/dev/log`).
    pub syslog: Option<PathBuf>,
    /// Who receives every new alert by e-mail (`[alerts] email_to`), and from whom.
    pub alert_mail: Option<detect::sinks::AlertMail>,
    /// True when the certificate is the generated self-signed one.
    pub tls_generated: bool,
    pub limits: wire::Limits,
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
    pub idle_timeout: Duration,
    pub session_timeout: Duration,
    pub delivery: egress::DeliveryConfig,
    /// Direct delivery honours recipient domains' MTA-STS policies (`[delivery] mta_sts`).
    pub mta_sts: bool,
    pub spool_segment: u64,
    /// Free space below which new mail is refused with `452 4.3.1` (`[spool] reserve`).
    pub spool_reserve: u64,
    pub policy: inspect::Policy,
    pub view_limits: inspect::ViewLimits,
    /// DNS resolver for authentication (None: the system's resolv.conf).
    pub dns_resolver: Option<SocketAddr>,
    pub dns_timeout: Duration,
    pub auth_deadline: Duration,
    /// Known-bad domain feed (JSON with "blacklist", or one domain per line), hot-reloaded.
    pub phishing_feed: Option<PathBuf>,
    /// Brand domains protected against lookalikes for every tenant.
    pub protected_brands: Vec<String>,
    /// Whether the commonly imitated brands (`inspect::stages::brands::COMMON`) are
    /// protected against deceptive look-alikes with a lure (default on).
    pub common_brands: bool,
    /// DNS block lists (`[[dnsbl]]`).
    pub dnsbl: Vec<inspect::stages::dnsbl::DnsList>,
    /// Scripts mail is expected in; text mostly in another one is evidence.
    pub expected_scripts: Vec<inspect::stages::headers::Script>,
    /// clamd to scan with (None: the built-in attachment policy only).
    pub clamd: Option<inspect::stages::malware::ClamdAddr>,
    pub clamd_deadline: Duration,
    /// Which messages clamd sees.
    pub clamd_scope: inspect::stages::malware::ScanScope,
    pub archive_limits: inspect::stages::malware::ArchiveLimits,
}

/// Default SMTP listener (loopback; a production node sets `0.0.0.0:25`).
impl Config {
    /// The global flags that name this node to the CLI (`--config FILE --data-dir DIR`), for
    /// next steps printed to the person who started it.
    pub fn cli_flags(&self) -> String {
        match &self.config_file {
            Some(c) => format!(
                "--config {} --data-dir {}",
                c.display(),
                self.data_dir.display()
            ),
            None => format!("--data-dir {}", self.data_dir.display()),
        }
    }
}

fn resolve_acme(a: RawAcme, hostname: &str, tls_cert: &Path) -> Result<Option<AcmeConfig>> {
    let http_listen = addr(
        "acme.http_listen",
        a.http_listen.as_deref().unwrap_or("0.0.0.0:80"),
    )?;
    let renew_before = duration_or(
        "acme.renew_before",
        a.renew_before.as_deref(),
        Duration::from_secs(30 * 86_400),
    )?;
    let Some(directory) = a.directory else {
        return Ok(None);
    };
    if !directory.starts_with("https://") || url::Url::parse(&directory).is_err() {
        bail!("acme.directory: {directory:?} is not an https:// URL");
    }
    let domains = a.domains.unwrap_or_else(|| vec![hostname.to_string()]);
    if domains.is_empty() {
        bail!("acme.domains: name at least one domain");
    }
    let domains = domains
        .iter()
        .map(|d| store::normalize_domain(d).map_err(|e| anyhow::anyhow!("acme.domains: {e}")))
        .collect::<Result<Vec<_>>>()?;
    if let Some(c) = &a.contact
        && (!c.contains('@') || c.contains(char::is_whitespace))
    {
        bail!("acme.contact: {c:?} is not an e-mail address");
    }
    let account_key = a.account_key.unwrap_or_else(|| {
        tls_cert
            .parent()
            .unwrap_or(Path::new("."))
            .join("acme-account.key")
    });
    Ok(Some(AcmeConfig {
        directory,
        contact: a.contact,
        domains,
        http_listen,
        ca_file: a.ca_file,
        renew_before,
        account_key,
    }))
}

/// Every setting with a fixed default (what `check-config` starts from).
pub const DEFAULTS: &str = include_str!("defaults.toml");

pub const DEFAULT_SMTP: &str = "127.0.0.1:2587";
/// Default admin HTTP listener.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9587";
/// The portal's public origin: where people open it, and the relying party of its passkeys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalOrigin {
    /// `https://host[:port]`.
    pub url: url::Url,
    /// Without `[portal] url`: any port of the host (`localhost` for a loopback listener,
    /// else `server.hostname`) is the portal's.
    pub any_port: bool,
}

impl PortalOrigin {
    /// The URL people open, for a portal listening on `port`.
    pub fn public_url(&self, port: u16) -> String {
        let base = self.url.as_str().trim_end_matches('/');
        if self.any_port && self.url.port().is_none() {
            format!("{base}:{port}")
        } else {
            base.to_string()
        }
    }

    /// The WebAuthn relying party id (the host).
    pub fn rp_id(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }
}

/// The portal's default listener (HTTPS, loopback: put a real address in production).
pub const DEFAULT_PORTAL: &str = "127.0.0.1:9443";

/// Parses `30s`, `5m`, `2h`, `7d`, `250ms`, or a bare number of seconds.
pub fn parse_duration(key: &str, s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .with_context(|| format!("{key}: {s:?} is not a duration (examples: 30s, 5m, 2h, 7d)"))?;
    let secs = |per: u64| n.checked_mul(per).map(Duration::from_secs);
    let d = match unit.trim() {
        "" | "s" => secs(1),
        "ms" => Some(Duration::from_millis(n)),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        other => bail!("{key}: unknown duration unit {other:?} (use ms, s, m, h or d)"),
    };
    match d {
        Some(d) if d <= MAX_DURATION => Ok(d),
        _ => bail!("{key}: {s:?} is too long (the most is 3650d)"),
    }
}

/// The longest duration a setting takes: ten years. Longer ones are typing errors, and a
/// deadline that far away would overflow the clock arithmetic of timers.
const MAX_DURATION: Duration = Duration::from_secs(3650 * 86400);

/// A configured duration, or `default` when the key is absent.
/// Daily TLS reports (RFC 8460) to the recipient domains that ask for them (`[tls_reports]`).
#[derive(Debug, Clone)]
pub struct TlsReportConfig {
    /// Who sends them (`organization-name`, `contact-info`, the submitting domain).
    pub submitter: egress::tls_report::Submitter,
    /// The `From` of report mail.
    pub from: String,
    /// Most reports sent in one run (the rest wait for the next).
    pub max_per_run: i64,
    /// How often the node looks for reports due.
    pub every: Duration,
}

impl TlsReportConfig {
    #[allow(clippy::too_many_arguments)]
    fn from_raw(
        enabled: Option<bool>,
        organization: Option<String>,
        contact: Option<String>,
        from: Option<String>,
        max_per_run: Option<i64>,
        every: Duration,
        hostname: &str,
    ) -> Result<Option<Self>> {
        if !enabled.unwrap_or(true) {
            return Ok(None);
        }
        let from = from.unwrap_or_else(|| format!("tlsrpt-noreply@{hostname}"));
        if !from.contains('@') || from.contains(char::is_whitespace) {
            bail!("tls_reports.from: {from:?} is not an e-mail address");
        }
        let max_per_run = max_per_run.unwrap_or(200);
        if !(1..=10_000).contains(&max_per_run) {
            bail!("tls_reports.max_per_run: {max_per_run} is not between 1 and 10000");
        }
        if every < Duration::from_secs(1) {
            bail!("tls_reports.every: at least 1s");
        }
        Ok(Some(Self {
            submitter: egress::tls_report::Submitter {
                organization: organization.unwrap_or_else(|| hostname.to_string()),
                contact: contact.unwrap_or_else(|| format!("mailto:postmaster@{hostname}")),
                domain: hostname.to_string(),
            },
            from,
            max_per_run,
            every,
        }))
    }
}

fn duration_or(key: &str, value: Option<&str>, default: Duration) -> Result<Duration> {
    value.map_or(Ok(default), |v| parse_duration(key, v))
}

/// Parses a size: an integer of octets, or a string like `50MiB`, `10MB`, `512KiB`.
pub fn parse_size(key: &str, v: &toml::Value) -> Result<u64> {
    match v {
        toml::Value::Integer(n) if *n > 0 => Ok(*n as u64),
        toml::Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: u64 = num.parse().with_context(|| {
                format!("{key}: {s:?} is not a size (examples: 52428800, \"50MiB\")")
            })?;
            let mult = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "kb" => 1000,
                "kib" | "k" => 1024,
                "mb" => 1_000_000,
                "mib" | "m" => 1 << 20,
                "gb" => 1_000_000_000,
                "gib" | "g" => 1 << 30,
                other => {
                    bail!("{key}: unknown size unit {other:?} (use KiB, MiB, GiB, KB, MB, GB)")
                }
            };
            n.checked_mul(mult).with_context(|| {
                format!("{key}: {s:?} is too large (the most is 16 EiB less one octet)")
            })
        }
        other => {
            bail!("{key}: expected a positive integer or a string like \"50MiB\", got {other}")
        }
    }
}

fn addr(key: &str, s: &str) -> Result<SocketAddr> {
    s.parse().with_context(|| {
        format!("{key}: {s:?} is not an IP:port address (example: 127.0.0.1:2587)")
    })
}

fn at_least(key: &str, v: usize, min: usize) -> Result<usize> {
    if v < min {
        bail!("{key}: must be at least {min}, got {v}");
    }
    Ok(v)
}

/// Most concurrent sessions or deliveries a setting may ask for (a semaphore holds at most
/// `usize::MAX >> 3` permits; far fewer than that would already exhaust descriptors).
const MAX_CONCURRENCY: usize = 1_000_000;

fn concurrency(key: &str, v: usize) -> Result<usize> {
    if !(1..=MAX_CONCURRENCY).contains(&v) {
        bail!("{key}: must be between 1 and {MAX_CONCURRENCY}, got {v}");
    }
    Ok(v)
}

impl RawConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config file {}", path.display()))
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
    }

    /// Validates and resolves, applying overrides.
    pub fn resolve(self, o: &Overrides) -> Result<Config> {
        let s = self.server;
        let hostname = o
            .hostname
            .clone()
            .or(s.hostname)
            .unwrap_or_else(|| "sekisho.localhost".into());
        if hostname.is_empty() || hostname.contains(char::is_whitespace) {
            bail!("server.hostname: {hostname:?} is not a host name");
        }
        let node_name = s.node_name.unwrap_or_else(|| hostname.clone());
        if node_name.is_empty() || node_name.len() > 64 || node_name.chars().any(char::is_control) {
            bail!("server.node_name: {node_name:?} must be 1-64 printable characters");
        }
        let data_dir = o
            .data_dir
            .clone()
            .or(s.data_dir)
            .unwrap_or_else(|| PathBuf::from("sekisho-data"));
        let smtp_listen = addr(
            "server.smtp_listen",
            o.smtp_listen
                .as_deref()
                .or(s.smtp_listen.as_deref())
                .unwrap_or(DEFAULT_SMTP),
        )?;
        let admin_listen = addr(
            "server.admin_listen",
            o.admin_listen
                .as_deref()
                .or(s.admin_listen.as_deref())
                .unwrap_or(DEFAULT_ADMIN),
        )?;
        let portal_listen = match o
            .portal_listen
            .as_deref()
            .or(s.portal_listen.as_deref())
            .unwrap_or(DEFAULT_PORTAL)
        {
            "off" => None,
            a => Some(addr("server.portal_listen", a)?),
        };
        let shutdown_grace = parse_duration(
            "server.shutdown_grace",
            s.shutdown_grace.as_deref().unwrap_or("10s"),
        )?;
        let kek_file = std::env::var_os("SEKISHO_KEK_FILE")
            .map(PathBuf::from)
            .or(self.vault.kek_file.clone())
            .unwrap_or_else(|| default_kek_file(&data_dir));
        let (abs_kek, abs_data) = (
            std::path::absolute(&kek_file)?,
            std::path::absolute(&data_dir)?,
        );
        if abs_kek.starts_with(&abs_data) {
            bail!(
                "vault.kek_file: {} is inside the data directory; keep the KEK outside it (the mx role may read the data directory, and its backups must not carry the key)",
                kek_file.display()
            );
        }
        if abs_kek
            .parent()
            .is_some_and(|vault_dir| abs_data.starts_with(vault_dir))
        {
            bail!(
                "vault.kek_file: {} is in a directory that holds the data directory; give the KEK a directory of its own (the whole of it is out of the mx and portal roles' reach)",
                kek_file.display()
            );
        }
        let blobs = resolve_blobs(self.blobs)?;
        let store_url = resolve_store(self.store)?;
        let checkpoint_every = at_least(
            "audit.checkpoint_every",
            self.audit.checkpoint_every.unwrap_or(100),
            1,
        )? as i64;
        let checkpoint_interval = duration_or(
            "audit.checkpoint_interval",
            self.audit.checkpoint_interval.as_deref(),
            Duration::from_secs(30),
        )?;
        let bulk_rule = vault::detect::BulkRule {
            threshold: at_least(
                "detect.bulk_open_threshold",
                self.detect.bulk_open_threshold.unwrap_or(20),
                1,
            )?,
            window: duration_or(
                "detect.bulk_open_window",
                self.detect.bulk_open_window.as_deref(),
                Duration::from_secs(60),
            )?,
            throttle: duration_or(
                "detect.throttle",
                self.detect.throttle.as_deref(),
                Duration::from_secs(600),
            )?,
        };
        let login_storm = vault::detect::LoginStormRule {
            threshold: at_least(
                "detect.login_failure_threshold",
                self.detect.login_failure_threshold.unwrap_or(20),
                1,
            )?,
            window: duration_or(
                "detect.login_failure_window",
                self.detect.login_failure_window.as_deref(),
                Duration::from_secs(300),
            )?,
        };
        let outbound_burst = detect::outbound::BurstRule {
            threshold: at_least(
                "detect.outbound_burst_threshold",
                self.detect.outbound_burst_threshold.unwrap_or(300),
                1,
            )?,
            window: duration_or(
                "detect.outbound_burst_window",
                self.detect.outbound_burst_window.as_deref(),
                Duration::from_secs(600),
            )?,
            hold: duration_or(
                "detect.outbound_hold",
                self.detect.outbound_hold.as_deref(),
                Duration::from_secs(86_400),
            )?,
        };
        let working_hours = match &self.detect.working_hours {
            None => None,
            Some(h) => Some(
                vault::detect::WorkingHours::parse(
                    h,
                    self.detect.working_days.as_deref().unwrap_or("mon-fri"),
                    self.detect.utc_offset.as_deref().unwrap_or("+00:00"),
                )
                .map_err(|e| anyhow::anyhow!("detect.working_hours: {e}"))?,
            ),
        };
        let portal_limits = {
            let d = portal::front::Limits::default();
            let positive = |key: &str, v: Option<f64>, default: f64| -> Result<f64> {
                match v {
                    None => Ok(default),
                    Some(x) if x.is_finite() && x > 0.0 => Ok(x),
                    Some(x) => bail!("{key}: must be a positive number, got {x}"),
                }
            };
            portal::front::Limits {
                rate: positive("portal.rate", self.portal.rate, d.rate)?,
                burst: positive("portal.burst", self.portal.burst, d.burst)?.max(1.0),
                logins_per_minute: positive(
                    "portal.logins_per_minute",
                    self.portal.logins_per_minute,
                    d.logins_per_minute,
                )?
                .max(1.0),
                probe_threshold: at_least(
                    "portal.probe_threshold",
                    self.portal.probe_threshold.unwrap_or(d.probe_threshold) as usize,
                    1,
                )? as u32,
                block_for: duration_or(
                    "portal.block_for",
                    self.portal.block_for.as_deref(),
                    d.block_for,
                )?,
                ..d
            }
        };
        let portal_origin = match (&self.portal.url, portal_listen) {
            (_, None) => None,
            (Some(u), Some(_)) => {
                let url = url::Url::parse(u)
                    .ok()
                    .filter(|p| {
                        p.scheme() == "https"
                            && p.host_str()
                                .is_some_and(|h| h.parse::<std::net::IpAddr>().is_err())
                            && p.path() == "/"
                            && p.query().is_none()
                    })
                    .with_context(|| {
                        format!(
                            "portal.url: {u:?} is not an https:// URL with a host name and no path"
                        )
                    })?;
                Some(PortalOrigin {
                    url,
                    any_port: false,
                })
            }
            (None, Some(listen)) => {
                let host = if listen.ip().is_loopback() {
                    "localhost"
                } else {
                    hostname.as_str()
                };
                let url = url::Url::parse(&format!("https://{host}"))
                    .with_context(|| format!("server.hostname {host:?} cannot be a portal URL"))?;
                Some(PortalOrigin {
                    url,
                    any_port: true,
                })
            }
        };
        let syslog = self.alerts.syslog;
        let alert_mail = if self.alerts.email_to.is_empty() {
            if self.alerts.email_from.is_some() {
                bail!("alerts.email_from: set alerts.email_to (who receives alert e-mails) too");
            }
            None
        } else {
            let valid = |a: &str| {
                a.rsplit_once('@').is_some_and(|(l, d)| {
                    !l.is_empty()
                        && d.contains('.')
                        && !a
                            .chars()
                            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
                })
            };
            if self.alerts.email_to.len() > 20 {
                bail!("alerts.email_to: at most 20 addresses (use a list address)");
            }
            for a in &self.alerts.email_to {
                if !valid(a) {
                    bail!("alerts.email_to: {a:?} is not an e-mail address");
                }
            }
            let from = self
                .alerts
                .email_from
                .clone()
                .unwrap_or_else(|| format!("sekisho-alerts@{hostname}"));
            if !valid(&from) {
                bail!("alerts.email_from: {from:?} is not an e-mail address");
            }
            Some(detect::sinks::AlertMail {
                to: self
                    .alerts
                    .email_to
                    .iter()
                    .map(|a| a.to_lowercase())
                    .collect(),
                from,
            })
        };
        let tls_reports = TlsReportConfig::from_raw(
            self.tls_reports.enabled,
            self.tls_reports.organization.clone(),
            self.tls_reports.contact.clone(),
            self.tls_reports.from.clone(),
            self.tls_reports.max_per_run,
            duration_or(
                "tls_reports.every",
                self.tls_reports.every.as_deref(),
                Duration::from_secs(3600),
            )?,
            &hostname,
        )?;
        let digest = match (self.digest.enabled.unwrap_or(true), portal_listen) {
            (false, _) | (_, None) => None,
            (true, Some(listen)) => {
                let d = &self.digest;
                let at = vault::detect::time_of_day(d.at.as_deref().unwrap_or("08:00"))
                    .ok()
                    .filter(|m| *m < 24 * 60)
                    .with_context(|| format!("digest.at: {:?} is not HH:MM", d.at))?;
                let utc_offset_minutes =
                    vault::detect::utc_offset(d.utc_offset.as_deref().unwrap_or("+00:00"))
                        .map_err(|e| anyhow::anyhow!("digest.utc_offset: {e}"))?;
                let link_ttl = duration_or(
                    "digest.link_ttl",
                    d.link_ttl.as_deref(),
                    Duration::from_secs(72 * 3600),
                )?;
                if link_ttl > Duration::from_secs(30 * 86_400) {
                    bail!("digest.link_ttl: at most 30 days (a link is a credential)");
                }
                let portal_url = match &d.portal_url {
                    Some(u) => {
                        let parsed = url::Url::parse(u)
                            .ok()
                            .filter(|p| p.scheme() == "https" && p.host().is_some())
                            .with_context(|| {
                                format!("digest.portal_url: {u:?} is not an https:// URL")
                            })?;
                        parsed.as_str().trim_end_matches('/').to_string()
                    }
                    None => format!("https://{hostname}:{}", listen.port()),
                };
                let from = d
                    .from
                    .clone()
                    .unwrap_or_else(|| format!("sekisho-digest@{hostname}"));
                if !from.contains('@') || from.contains(char::is_whitespace) {
                    bail!("digest.from: {from:?} is not an e-mail address");
                }
                Some(egress::digest::DigestConfig {
                    at,
                    utc_offset_minutes,
                    link_ttl,
                    portal_url,
                    from,
                })
            }
        };
        let webhook = match (self.alerts.webhook_url, self.alerts.webhook_secret_file) {
            (None, None) => None,
            (Some(u), Some(f)) => {
                let url = url::Url::parse(&u)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .with_context(|| format!("alerts.webhook_url: {u:?} is not an http(s) URL"))?;
                let secret = std::fs::read_to_string(&f).with_context(|| {
                    format!("alerts.webhook_secret_file: cannot read {}", f.display())
                })?;
                let secret = zeroize::Zeroizing::new(secret.trim().as_bytes().to_vec());
                if secret.len() < 16 {
                    bail!("alerts.webhook_secret_file: the secret must be at least 16 bytes");
                }
                Some(detect::sinks::Webhook { url, secret })
            }
            _ => bail!("alerts.webhook_url and alerts.webhook_secret_file go together"),
        };
        let sandbox_required = match self.sandbox.landlock.as_deref().unwrap_or("required") {
            "required" => true,
            "best-effort" => false,
            other => bail!("sandbox.landlock: {other:?} is not one of required, best-effort"),
        };
        let kernel_audit = match self.sandbox.kernel_audit.as_deref().unwrap_or("on") {
            "on" => Some(KernelAudit::SwitchOn),
            "watch" => Some(KernelAudit::WatchOnly),
            "off" => None,
            other => bail!("sandbox.kernel_audit: {other:?} is not one of on, watch, off"),
        };
        let role_users = match self.sandbox.users.as_deref().unwrap_or("on") {
            "on" => true,
            "off" => false,
            other => bail!("sandbox.users: {other:?} is not one of on, off"),
        };
        let raise_refusals = match self.sandbox.refusals.as_deref().unwrap_or("raise") {
            "raise" => true,
            "quiet" => false,
            other => bail!("sandbox.refusals: {other:?} is not one of raise, quiet"),
        };
        let quarantine_retention = duration_or(
            "quarantine.retention",
            self.quarantine.retention.as_deref(),
            Duration::from_secs(14 * 86400),
        )?;
        let trace_retention = duration_or(
            "trace.retention",
            self.trace.retention.as_deref(),
            Duration::from_secs(90 * 86400),
        )?;
        let (tls_cert, tls_key, tls_generated) = match (self.tls.cert, self.tls.key) {
            (Some(c), Some(k)) => (c, k, false),
            (None, None) => (
                data_dir.join("tls/cert.pem"),
                data_dir.join("tls/key.pem"),
                true,
            ),
            _ => bail!(
                "tls: set both tls.cert and tls.key, or neither (a self-signed certificate is generated)"
            ),
        };

        let l = self.limits;
        let d = wire::Limits::default();
        let max_message_size = match &l.max_message_size {
            Some(v) => parse_size("limits.max_message_size", v)? as usize,
            None => d.max_message_size,
        };
        let max_command_line = at_least(
            "limits.max_command_line",
            l.max_command_line.unwrap_or(d.max_command_line),
            512,
        )?;
        if max_command_line > 65536 {
            bail!("limits.max_command_line: at most 65536, got {max_command_line}");
        }
        let limits = wire::Limits {
            max_command_line,
            max_body_line: at_least(
                "limits.max_body_line",
                l.max_body_line.unwrap_or(d.max_body_line),
                998,
            )?,
            max_message_size: at_least("limits.max_message_size", max_message_size, 1024)?,
            max_recipients: at_least(
                "limits.max_recipients",
                l.max_recipients.unwrap_or(d.max_recipients),
                1,
            )?,
            max_commands: at_least(
                "limits.max_commands",
                l.max_commands.unwrap_or(d.max_commands),
                10,
            )?,
            max_errors: at_least("limits.max_errors", l.max_errors.unwrap_or(d.max_errors), 1)?,
            bare_line_endings: match l.bare_line_endings.as_deref().unwrap_or("reject") {
                "reject" => wire::BareLineEndings::Reject,
                "normalize" => wire::BareLineEndings::Normalize,
                other => bail!("limits.bare_line_endings: {other:?} is not reject or normalize"),
            },
        };

        let dl = self.delivery;
        let dd = egress::DeliveryConfig::default();
        let external_route = dl
            .external_route
            .map(|r| match r.trim() {
                // Direct delivery: each domain's own mail exchangers.
                "mx" => Ok(egress::Route::Mx(String::new())),
                r => r.parse::<egress::Route>().map_err(|e| {
                    anyhow::anyhow!("delivery.external_route: {e} (or \"mx\" for direct delivery)")
                }),
            })
            .transpose()?;
        let delivery = egress::DeliveryConfig {
            hostname: hostname.clone(),
            max_concurrent: concurrency(
                "delivery.max_concurrent",
                dl.max_concurrent.unwrap_or(dd.max_concurrent),
            )?,
            per_destination: concurrency(
                "delivery.per_destination",
                dl.per_destination.unwrap_or(dd.per_destination),
            )?,
            retry_initial: duration_or(
                "delivery.retry_initial",
                dl.retry_initial.as_deref(),
                dd.retry_initial,
            )?,
            retry_max: duration_or("delivery.retry_max", dl.retry_max.as_deref(), dd.retry_max)?,
            max_lifetime: duration_or(
                "delivery.max_lifetime",
                dl.max_lifetime.as_deref(),
                dd.max_lifetime,
            )?,
            timeout: duration_or("delivery.timeout", dl.timeout.as_deref(), dd.timeout)?,
            external_route,
            allow_private_mx: dl.allow_private_mx.unwrap_or(dd.allow_private_mx),
            ca_file: dl.ca_file.clone(),
        };
        if let Some(p) = &delivery.ca_file
            && !p.is_file()
        {
            bail!("delivery.ca_file: {} is not a file", p.display());
        }
        let mta_sts = dl.mta_sts.unwrap_or(true);
        if delivery.retry_initial.is_zero() {
            bail!("delivery.retry_initial: must be more than zero");
        }
        if delivery.retry_max < delivery.retry_initial {
            bail!("delivery.retry_max: must not be less than delivery.retry_initial");
        }
        let spool_segment = match &self.spool.max_segment_size {
            Some(v) => parse_size("spool.max_segment_size", v)?,
            None => 64 << 20,
        };
        if spool_segment < 1 << 20 {
            bail!("spool.max_segment_size: must be at least 1MiB");
        }
        let spool_reserve = match &self.spool.reserve {
            Some(v) => parse_size("spool.reserve", v)?,
            None => 64 << 20,
        };
        let i = self.inspect;
        let phishing_feed = i.phishing_feed.clone();
        if let Some(feed) = &phishing_feed
            && !feed.is_file()
        {
            bail!(
                "inspect.phishing_feed: {} is not a readable file",
                feed.display()
            );
        }
        let protected_brands = i.protected_brands.clone();
        for b in &protected_brands {
            store::normalize_domain(b)
                .map_err(|e| anyhow::anyhow!("inspect.protected_brands: {e}"))?;
        }
        let expected_scripts = match &i.expected_scripts {
            Some(names) => names
                .iter()
                .map(|n| inspect::stages::headers::Script::from_name(n))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("inspect.expected_scripts: {e}"))?,
            None => vec![
                inspect::stages::headers::Script::Latin,
                inspect::stages::headers::Script::Japanese,
            ],
        };
        let mut dnsbl = Vec::new();
        for (n, l) in self.dnsbl.iter().enumerate() {
            let what = format!("dnsbl[{n}]");
            let zone = store::normalize_domain(&l.zone)
                .map_err(|e| anyhow::anyhow!("{what}.zone: {e}"))?;
            let kind = match l.kind.as_str() {
                "ip" => inspect::stages::dnsbl::ListKind::Ip,
                "domain" => inspect::stages::dnsbl::ListKind::Domain,
                other => bail!("{what}.kind: {other:?} is not \"ip\" or \"domain\""),
            };
            let listed = l
                .listed
                .iter()
                .map(|a| {
                    a.parse::<std::net::Ipv4Addr>()
                        .map_err(|_| anyhow::anyhow!("{what}.listed: {a:?} is not an IPv4 address"))
                })
                .collect::<Result<Vec<_>>>()?;
            dnsbl.push(inspect::stages::dnsbl::DnsList { zone, kind, listed });
        }
        let dp = inspect::Policy::default();
        let policy = inspect::Policy::new(
            &i.weights,
            i.tag_score.unwrap_or(dp.tag),
            i.quarantine_score.unwrap_or(dp.quarantine),
            i.reject_score.unwrap_or(dp.reject),
        )
        .map_err(|e| anyhow::anyhow!("inspect: {e}"))?;
        let m = self.malware;
        let clamd = m
            .clamd
            .as_deref()
            .map(|c| c.parse::<inspect::stages::malware::ClamdAddr>())
            .transpose()
            .map_err(|e| anyhow::anyhow!("malware.clamd: {e}"))?;
        let clamd_deadline =
            parse_duration("malware.deadline", m.deadline.as_deref().unwrap_or("10s"))?;
        let clamd_scope = match m.scan.as_deref().unwrap_or("attachments") {
            "attachments" => inspect::stages::malware::ScanScope::Attachments,
            "all" => inspect::stages::malware::ScanScope::All,
            other => bail!("malware.scan: {other:?} is not attachments or all"),
        };
        let mut policy = policy;
        match m.on_scanner_error.as_deref().unwrap_or("tempfail") {
            "tempfail" => policy.tempfail_on.push(inspect::Symbol::ScannerUnavailable),
            "deliver" => {}
            other => bail!("malware.on_scanner_error: {other:?} is not tempfail or deliver"),
        }
        let da = inspect::stages::malware::ArchiveLimits::default();
        let archive_limits = inspect::stages::malware::ArchiveLimits {
            max_depth: at_least(
                "malware.max_archive_depth",
                m.max_archive_depth.unwrap_or(da.max_depth),
                1,
            )?,
            max_entries: at_least(
                "malware.max_archive_entries",
                m.max_archive_entries.unwrap_or(da.max_entries),
                1,
            )?,
            max_total: match &m.max_archive_size {
                Some(v) => parse_size("malware.max_archive_size", v)?,
                None => da.max_total,
            },
            max_ratio: m.max_compression_ratio.unwrap_or(da.max_ratio).max(2),
            max_inner: da.max_inner,
        };
        let dv = inspect::ViewLimits::default();
        let view_limits = inspect::ViewLimits {
            max_mime_depth: at_least(
                "inspect.max_mime_depth",
                i.max_mime_depth.unwrap_or(dv.max_mime_depth),
                1,
            )?,
            max_mime_parts: at_least(
                "inspect.max_mime_parts",
                i.max_mime_parts.unwrap_or(dv.max_mime_parts),
                1,
            )?,
        };
        let dns_resolver = o
            .dns
            .as_deref()
            .or(self.dns.resolver.as_deref())
            .map(|r| addr("dns.resolver", r))
            .transpose()?;
        let dns_timeout =
            parse_duration("dns.timeout", self.dns.timeout.as_deref().unwrap_or("2s"))?;
        let auth_deadline = parse_duration(
            "inspect.auth_deadline",
            i.auth_deadline.as_deref().unwrap_or("5s"),
        )?;
        let acme = resolve_acme(self.acme, &hostname, &tls_cert)?;
        Ok(Config {
            config_file: None,
            acme,
            node_name,
            clamd,
            clamd_deadline,
            clamd_scope,
            archive_limits,
            phishing_feed,
            protected_brands,
            common_brands: i.common_brands.unwrap_or(true),
            dnsbl,
            expected_scripts,
            dns_resolver,
            dns_timeout,
            auth_deadline,
            policy,
            view_limits,
            hostname,
            data_dir,
            smtp_listen,
            admin_listen,
            portal_listen,
            shutdown_grace,
            tls_cert,
            tls_key,
            kek_file,
            quarantine_retention,
            trace_retention,
            sandbox_required,
            kernel_audit,
            role_users,
            raise_refusals,
            blobs,
            store_url,
            checkpoint_every,
            checkpoint_interval,
            bulk_rule,
            login_storm,
            outbound_burst,
            digest,
            tls_reports,
            working_hours,
            portal_limits,
            portal_origin,
            webhook,
            syslog,
            alert_mail,
            tls_generated,
            limits,
            max_sessions: concurrency("limits.max_sessions", l.max_sessions.unwrap_or(1000))?,
            max_sessions_per_ip: concurrency(
                "limits.max_sessions_per_ip",
                l.max_sessions_per_ip.unwrap_or(100),
            )?,
            idle_timeout: parse_duration(
                "limits.idle_timeout",
                l.idle_timeout.as_deref().unwrap_or("5m"),
            )?,
            session_timeout: parse_duration(
                "limits.session_timeout",
                l.session_timeout.as_deref().unwrap_or("30m"),
            )?,
            delivery,
            mta_sts,
            spool_segment,
            spool_reserve,
        })
    }
}

/// The shared PostgreSQL store: its URL (no password in it) and where the owner's password
/// is. The password is read when the store is opened, by the process that opens it — never
/// by the portal, which opens no database.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `postgres://user@host:port/db`.
    pub url: String,
    /// The owner's password, if any.
    pub password_file: Option<PathBuf>,
}

impl StoreConfig {
    /// The owner's URL, with the password put in.
    pub fn owner_url(&self) -> Result<store::StoreUrl> {
        let password = match &self.password_file {
            Some(path) => Some(zeroize::Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| {
                        format!("store.password_file: cannot read {}", path.display())
                    })?
                    .trim()
                    .to_string(),
            )),
            None => None,
        };
        store::StoreUrl::postgres(&self.url, password.as_deref().map(|p| p.as_str()))
            .map_err(|e| anyhow::anyhow!("store.url: {e}"))
    }

    /// The database's name (the last part of the URL's path).
    pub fn database(&self) -> Result<String> {
        let u = url::Url::parse(&self.url).context("store.url")?;
        let db = u.path().trim_start_matches('/');
        if db.is_empty() {
            bail!("store.url: name the database (postgres://user@host:port/DATABASE)");
        }
        Ok(db.to_string())
    }
}

fn resolve_store(raw: RawStore) -> Result<Option<StoreConfig>> {
    let Some(url) = raw.url.filter(|u| !u.is_empty()) else {
        if raw.password_file.is_some() {
            bail!("store.password_file: set store.url to a postgres:// URL to use it");
        }
        return Ok(None);
    };
    // Checked now (no password yet), so a bad URL is one clear error at start.
    store::StoreUrl::postgres(&url, None).map_err(|e| anyhow::anyhow!("store.url: {e}"))?;
    Ok(Some(StoreConfig {
        url,
        password_file: raw.password_file,
    }))
}

fn resolve_blobs(raw: RawBlobs) -> Result<Blobs> {
    match raw.backend.as_deref().unwrap_or("local") {
        "local" => {
            if raw.s3.is_some() {
                bail!("blobs.s3: set blobs.backend = \"s3\" to use it");
            }
            Ok(Blobs::Local)
        }
        "s3" => {
            let s3 = raw.s3.unwrap_or_default();
            let bucket = s3
                .bucket
                .filter(|b| !b.is_empty())
                .context("blobs.s3.bucket: required with blobs.backend = \"s3\"")?;
            if let Some(e) = &s3.endpoint {
                url::Url::parse(e)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .with_context(|| format!("blobs.s3.endpoint: {e:?} is not an http(s) URL"))?;
            }
            let secret_access_key = match &s3.secret_access_key_file {
                Some(path) => {
                    let text = std::fs::read_to_string(path).with_context(|| {
                        format!(
                            "blobs.s3.secret_access_key_file: cannot read {}",
                            path.display()
                        )
                    })?;
                    Some(zeroize::Zeroizing::new(text.trim().to_string()))
                }
                None => None,
            };
            Ok(Blobs::S3(store::blobs::S3Config {
                bucket,
                endpoint: s3.endpoint,
                region: s3.region.unwrap_or_else(|| "us-east-1".into()),
                prefix: s3.prefix.unwrap_or_else(|| "quarantine".into()),
                access_key_id: s3.access_key_id,
                secret_access_key,
            }))
        }
        other => bail!("blobs.backend: {other:?} is not one of local, s3"),
    }
}

/// How the supervisor (as root) reads the kernel's word on the roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelAudit {
    /// Switch the kernel's audit on if it is off, and watch (the default).
    SwitchOn,
    /// Watch only (an audit daemon or the boot parameter decides whether audit is on).
    WatchOnly,
}

/// Where the KEK lives unless configured: beside the data directory, never inside it
/// (`sekisho-data` → `sekisho-data.vault/kek`).
pub fn default_kek_file(data_dir: &std::path::Path) -> PathBuf {
    let data_dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sekisho-data".into());
    let parent = data_dir.parent().unwrap_or(std::path::Path::new("/"));
    parent.join(format!("{name}.vault")).join("kek")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `config` fuzz target: a size whose number times its unit is over 2^64
    /// overflowed (a panic in debug builds, a silently wrapped limit in release builds).
    #[test]
    fn a_size_over_the_range_is_refused_not_wrapped() {
        let raw = RawConfig::parse("[spool]\nreserve = \"37095500002899MiB\"\n").unwrap();
        let e = raw.resolve(&Overrides::default()).unwrap_err().to_string();
        assert!(
            e.contains("spool.reserve") && e.contains("too large"),
            "{e}"
        );
        let v = toml::Value::String("16EiB".into());
        assert!(parse_size("x", &v).is_err());
        let v = toml::Value::String("17179869183GiB".into());
        assert_eq!(parse_size("x", &v).unwrap(), 17179869183 << 30);
        let v = toml::Value::String("17179869184GiB".into());
        assert!(
            parse_size("x", &v)
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
    }

    /// The same for durations: an overflowing product, or a deadline beyond what the timers'
    /// clock arithmetic can hold (`Instant + d` panics), is refused.
    #[test]
    fn a_duration_over_ten_years_or_a_concurrency_over_a_million_is_refused() {
        for s in [
            "18446744073709551615s",
            "307445734561825861m",
            "3651d",
            "99999999999999999999d",
        ] {
            let e = parse_duration("limits.idle_timeout", s)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("too long") || e.contains("not a duration"),
                "{s}: {e}"
            );
        }
        assert_eq!(
            parse_duration("x", "3650d").unwrap(),
            Duration::from_secs(3650 * 86400)
        );
        let raw = RawConfig::parse("[limits]\nmax_sessions = 9223372036854775807\n").unwrap();
        let e = raw.resolve(&Overrides::default()).unwrap_err().to_string();
        assert!(
            e.contains("limits.max_sessions") && e.contains("between 1 and"),
            "{e}"
        );
        let raw = RawConfig::parse("[limits]\nidle_timeout = \"18446744073709551615s\"\n").unwrap();
        let e = raw.resolve(&Overrides::default()).unwrap_err().to_string();
        assert!(
            e.contains("limits.idle_timeout") && e.contains("too long"),
            "{e}"
        );
    }

    #[test]
    fn the_vaults_malware_symbols_are_inspection_symbols() {
        // The vault asks for a step-up before releasing mail flagged with these; it does not
        // depend on the inspect crate, so the names are tied together here.
        for name in vault::server::MALWARE_SYMBOLS {
            assert!(inspect::Symbol::from_name(name).is_some(), "{name}");
        }
        assert!(vault::server::malware_flagged(
            "SPF_NONE(0.50), VIRUS_FOUND(1000.00)"
        ));
        assert!(!vault::server::malware_flagged(
            "SPF_NONE(0.50), GTUBE(1000.00)"
        ));
    }

    fn resolve(text: &str) -> Result<Config> {
        RawConfig::parse(text)?.resolve(&Overrides::default())
    }

    #[test]
    fn defaults_are_valid() {
        let c = resolve("").unwrap();
        assert_eq!(c.smtp_listen.to_string(), DEFAULT_SMTP);
        assert_eq!(c.data_dir, PathBuf::from("sekisho-data"));
        assert!(c.tls_generated);
        assert!(c.sandbox_required);
        // The KEK lives beside the data directory, never inside it.
        let kek = std::path::absolute("sekisho-data.vault/kek").unwrap();
        assert_eq!(c.kek_file, kek);
        assert_eq!(
            default_kek_file(Path::new("/srv/mx/data/")),
            PathBuf::from("/srv/mx/data.vault/kek")
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[server]\nsmtp_port = 25\n", "unknown field `smtp_port`"),
            (
                "[limits]\nmax_message_size = \"50 parsecs\"\n",
                "limits.max_message_size: unknown size unit",
            ),
            (
                "[limits]\nmax_recipients = 0\n",
                "limits.max_recipients: must be at least 1",
            ),
            ("[limits]\nidle_timeout = \"soon\"\n", "limits.idle_timeout"),
            (
                "[server]\nsmtp_listen = \"localhost\"\n",
                "server.smtp_listen",
            ),
            (
                "[delivery]\nexternal_route = \"ftp://x\"\n",
                "delivery.external_route",
            ),
            (
                "[limits]\nbare_line_endings = \"allow\"\n",
                "limits.bare_line_endings",
            ),
            ("[tls]\ncert = \"/x.pem\"\n", "tls.cert and tls.key"),
            (
                "[inspect.weights]\nNOT_A_SYMBOL = 1.0\n",
                "inspect: unknown symbol \"NOT_A_SYMBOL\"",
            ),
            (
                "[inspect]\ntag_score = 20.0\n",
                "inspect: thresholds must satisfy",
            ),
            (
                "[vault]\nkek_file = \"sekisho-data/vault/kek\"\n",
                "is inside the data directory",
            ),
            ("[sandbox]\nlandlock = \"off\"\n", "sandbox.landlock"),
            ("[sandbox]\nusers = \"root\"\n", "sandbox.users"),
            ("[sandbox]\nrefusals = \"loud\"\n", "sandbox.refusals"),
            ("[blobs]\nbackend = \"s3\"\n", "blobs.s3.bucket: required"),
            ("[blobs]\nbackend = \"nfs\"\n", "blobs.backend"),
            (
                "[blobs]\nbackend = \"s3\"\n[blobs.s3]\nbucket = \"b\"\nendpoint = \"ftp://x\"\n",
                "blobs.s3.endpoint",
            ),
            ("[blobs.s3]\nbucket = \"b\"\n", "set blobs.backend"),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", resolve(text).unwrap_err());
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn overrides_win_and_units_parse() {
        let raw = RawConfig::parse(
            "[server]\nsmtp_listen = \"127.0.0.1:1\"\n[limits]\nmax_message_size = \"10MiB\"\n[delivery]\nretry_initial = \"500ms\"\n",
        )
        .unwrap();
        let c = raw
            .resolve(&Overrides {
                smtp_listen: Some("127.0.0.1:2".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(c.smtp_listen.port(), 2);
        assert_eq!(c.limits.max_message_size, 10 << 20);
        assert_eq!(c.delivery.retry_initial, Duration::from_millis(500));
    }
}

#[cfg(test)]
mod defaults_tests {
    use super::*;

    fn resolved(text: &str) -> String {
        let o = Overrides {
            data_dir: Some(PathBuf::from("/tmp/sekisho-defaults-test")),
            ..Overrides::default()
        };
        let debug = format!("{:?}", RawConfig::parse(text).unwrap().resolve(&o).unwrap());
        // The policy's weights are a hash map: compare them in a fixed order.
        let (head, rest) = debug.split_once("weights: {").unwrap();
        let (weights, tail) = rest.split_once('}').unwrap();
        let mut w: Vec<&str> = weights.split(", ").collect();
        w.sort();
        format!("{head}weights: {{{}}}{tail}", w.join(", "))
    }

    #[test]
    fn the_defaults_file_is_what_the_code_defaults_to() {
        assert_eq!(resolved(DEFAULTS), resolved(""));
    }
}
