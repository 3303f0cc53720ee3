//! Sekisho's metadata store: tenants, domains, recipients and the message trace.
//!
//! Beside the mail path (wire → ingress → spool → egress): ingress and egress read an
//! in-memory [`Directory`] snapshot built from it, and write trace records to it in batches.
//! The embedded default is SQLite (through sqlx, WAL mode, so the CLI can change it while
//! `serve` runs); every SQL statement lives in this crate, behind [`Store`]'s methods, so a
//! PostgreSQL backend can be added without touching callers.
//!
//! # Security
//! Holds envelope addresses and routes in plaintext (routing needs them); never message
//! content or subjects. Every query uses bound parameters.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod alerts;
mod audit;
mod bayes;
pub mod blobs;
mod detect;
mod directory;
mod dkim;
mod filter;
mod lockbox;
mod mail;
mod nodes;
mod outbound;
mod passkeys;
pub mod roles;
mod senders;
mod snapshot;
mod spool_keys;
mod stats;
#[doc(hidden)]
pub mod testing;
pub mod tls_report;
mod tokens;
mod trace;
mod users;
mod vault;

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};
use thiserror::Error;

pub use alerts::{Alert, NewAlert};
pub use audit::{AuditCheckpoint, AuditKey, AuditRecord};
pub use bayes::{BayesCounts, LearnMessage, LearnOutcome, NgramUpdate};
pub use detect::{Baseline, DetectEvent, Trigger, WindowCount, unix_now_ms};
pub use directory::{Directory, Lookup, SharedDirectory, TenantInfo, address_key, domain_key};
pub use dkim::{DkimKey, MAX_SELECTOR_LEN, SealedDkimKey, normalize_selector};
pub use filter::{FilterPolicy, StoredName};
pub use lockbox::{LOCKBOX_MAX_MINUTES, LOCKBOX_MIN_MINUTES, Lockbox};
pub use mail::MailStore;
pub use nodes::{NODE_STALE_AFTER, NodeInfo};
pub use outbound::{
    MAX_OUTBOUND_NETWORKS, OUTBOUND, OutboundNetwork, outbound_network, outbound_scope,
};
pub use passkeys::{Ceremony, MAX_CEREMONIES, MAX_PASSKEYS_PER_USER, StoredPasskey};
pub use senders::{MAX_SENDER_ENTRIES, SenderAction, SenderEntry, sender_pattern};
pub use spool_keys::WrappedSpoolKey;
pub use stats::{Count, MailStats, symbol_names};
pub use tokens::{ApiToken, MAX_TOKENS_PER_USER};
pub use trace::{TraceEvent, TraceFilter, TraceMessage, TraceRecord};
pub use users::{Enrolment, Invitation, User};
pub use vault::{
    NewRecord, QuarantineItem, Record, SealedSecret, SecretInfo, TenantKey, Terminated,
};

/// Store errors, with messages a person can act on.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The thing exists already.
    #[error("{0}")]
    Conflict(String),
    /// The thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The input is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error("database: {0}")]
    Db(sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // PostgreSQL refuses text with a NUL character (SQLSTATE 22021); that is the
        // caller's input, not a database failure.
        if e.as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| c == "22021")
        {
            return Self::Invalid(
                "a text value contains a NUL character (U+0000) or invalid UTF-8: remove it".into(),
            );
        }
        Self::Db(e)
    }
}

pub use proto::RecipientPolicy;

/// A tenant as listed by the CLI.
#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    /// Id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Route URL of its downstream.
    pub route: String,
    /// Recipient verification.
    pub recipient_policy: RecipientPolicy,
    /// Its domains.
    pub domains: Vec<String>,
    /// Number of listed recipients.
    pub recipients: i64,
}

/// The database engine behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// An embedded SQLite file (one node; the default).
    Sqlite,
    /// A PostgreSQL server shared by several nodes.
    Postgres,
}

/// The metadata store.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
}

/// A row of any engine.
pub(crate) type Row0 = sqlx::any::AnyRow;
/// A connection of any engine (inside a transaction or from the pool).
pub(crate) type Conn = sqlx::AnyConnection;
/// A write transaction of any engine.
pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// The key of the PostgreSQL advisory lock every write transaction takes ("SEKI").
const PG_WRITE_LOCK: i64 = 0x5345_4b49;

/// `s` with every byte outside the unreserved URL set percent-encoded (for file names in
/// `sqlite://` URLs, which sqlx percent-decodes).
fn percent_encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL of a shared PostgreSQL store. It may carry a password, so it prints redacted and
/// is wiped from memory when dropped.
#[derive(Clone)]
pub struct StoreUrl(zeroize::Zeroizing<String>);

impl StoreUrl {
    /// A `postgres://` URL, with `password` (from a file, never the config itself) put in.
    pub fn postgres(url: &str, password: Option<&str>) -> Result<Self, StoreError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| StoreError::Invalid(format!("{} is not a URL: {e}", redact_url(url))))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(StoreError::Invalid(format!(
                "{} is not a postgres:// URL (the embedded SQLite store needs no url)",
                redact_url(url)
            )));
        }
        let mut full = parsed;
        if full.password().is_some() {
            return Err(StoreError::Invalid(
                "the url carries a password: put it in password_file instead (a config file is no place for it)"
                    .into(),
            ));
        }
        if let Some(pw) = password {
            full.set_password(Some(pw)).map_err(|()| {
                StoreError::Invalid("the url cannot carry a password (no host?)".into())
            })?;
        }
        Ok(Self(zeroize::Zeroizing::new(full.to_string())))
    }
}

impl StoreUrl {
    /// The URL with its password, to connect with (never to print: `Display` redacts it).
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The same database, as `user` with `password`.
    pub fn as_user(&self, user: &str, password: &str) -> Result<Self, StoreError> {
        let mut u =
            url::Url::parse(&self.0).map_err(|e| StoreError::Invalid(format!("store url: {e}")))?;
        u.set_username(user)
            .and_then(|()| u.set_password(Some(password)))
            .map_err(|()| StoreError::Invalid("the store url cannot carry a user".into()))?;
        Ok(Self(zeroize::Zeroizing::new(u.to_string())))
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

/// The store location with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Lower-cases and checks a domain name.
pub fn normalize_domain(d: &str) -> Result<String, StoreError> {
    let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        });
    if ok {
        Ok(d)
    } else {
        Err(StoreError::Invalid(format!(
            "{d:?} is not a valid domain name"
        )))
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the SQLite store at `path` and applies migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        // Absolute, so the URL has no host part (a relative first component would be one).
        let path = std::path::absolute(path)
            .map_err(|e| StoreError::Invalid(format!("the store path {}: {e}", path.display())))?;
        let Some(name) = path.to_str() else {
            return Err(StoreError::Invalid(format!(
                "the store path {} is not UTF-8",
                path.display()
            )));
        };
        let url = format!("sqlite://{}?mode=rwc", percent_encode_path(name));
        let opts = AnyConnectOptions::from_str(&url)?;
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL so the CLI and the roles share the file; secure_delete so deleted
                    // rows are overwritten, not left in free pages (tenant termination).
                    sqlx::raw_sql(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                         PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;
                         PRAGMA busy_timeout = 10000;",
                    )
                    .execute(conn)
                    .await?;
                    Ok(())
                })
            })
            .connect_with(opts)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Self::ready(pool, Engine::Sqlite).await
    }

    /// Opens the PostgreSQL store at `url` (`postgres://user@host:port/db`) and applies
    /// migrations. Several nodes share it.
    pub async fn open_postgres(url: &str) -> Result<Self, StoreError> {
        let opts = AnyConnectOptions::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("store url {}: {e}", redact_url(url))))?;
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Self::ready(pool, Engine::Postgres).await
    }

    /// Opens the shared PostgreSQL store of the configuration.
    pub async fn open_url(url: &StoreUrl) -> Result<Self, StoreError> {
        Self::open_postgres(&url.0).await
    }

    /// Opens the PostgreSQL store as a role's own database user (see [`roles`]): no
    /// migrations, which are the owner's.
    pub async fn open_url_as_role(url: &StoreUrl) -> Result<Self, StoreError> {
        let opts = AnyConnectOptions::from_str(&url.0)
            .map_err(|e| StoreError::Invalid(format!("store url {url}: {e}")))?;
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        Ok(Self {
            pool,
            engine: Engine::Postgres,
        })
    }

    async fn ready(pool: AnyPool, engine: Engine) -> Result<Self, StoreError> {
        let store = Self { pool, engine };
        store.chain_unchained().await?;
        Ok(store)
    }

    /// The engine behind this store.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// A write transaction; write transactions never interleave, on any engine, so every
    /// read-then-write in this crate (the audit chain, id high-water marks, counters) sees
    /// the latest committed state. On SQLite `BEGIN IMMEDIATE` takes the write lock at the
    /// start, so another process (the roles and the CLI share the file) committing in between
    /// makes this one wait (`busy_timeout`) instead of failing with `SQLITE_BUSY_SNAPSHOT`.
    /// On PostgreSQL a transaction-scoped advisory lock does the same across every node.
    pub(crate) async fn write_tx(&self) -> Result<Tx, StoreError> {
        match self.engine {
            Engine::Sqlite => Ok(self.pool().begin_with("BEGIN IMMEDIATE").await?),
            Engine::Postgres => {
                let mut tx = self.pool().begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(PG_WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    async fn bump(tx: &mut Conn) -> Result<(), StoreError> {
        sqlx::query("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
            .execute(tx)
            .await?;
        Ok(())
    }

    /// The directory generation; it changes whenever tenants, domains or recipients change.
    pub async fn generation(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'generation'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Adds a tenant with its domains and route. The route must already be validated.
    pub async fn add_tenant(
        &self,
        name: &str,
        domains: &[String],
        route: &str,
    ) -> Result<i64, StoreError> {
        if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control()) {
            return Err(StoreError::Invalid(
                "tenant name must be 1-64 printable characters".into(),
            ));
        }
        if domains.is_empty() {
            return Err(StoreError::Invalid(
                "a tenant needs at least one --domain".into(),
            ));
        }
        let domains: Vec<String> = domains
            .iter()
            .map(|d| normalize_domain(d))
            .collect::<Result<_, _>>()?;
        let mut tx = self.write_tx().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(StoreError::Conflict(format!(
                "tenant {name:?} exists already"
            )));
        }
        // Never a terminated tenant's id (see migration 0009).
        let id: i64 = sqlx::query_scalar(
            "UPDATE meta SET value = 1 + CASE WHEN value > (SELECT coalesce(max(id), 0) FROM tenants)
                 THEN value ELSE (SELECT coalesce(max(id), 0) FROM tenants) END
             WHERE key = 'tenant_high_water' RETURNING value",
        )
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO tenants (id, name, route, created_at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(name)
            .bind(route)
            .bind(unix_now())
            .execute(&mut *tx)
            .await?;
        for d in &domains {
            Self::insert_domain(&mut tx, id, d).await?;
        }
        Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn insert_domain(tx: &mut Conn, tenant: i64, domain: &str) -> Result<(), StoreError> {
        let owner: Option<String> = sqlx::query_scalar(
            "SELECT t.name FROM domains d JOIN tenants t ON t.id = d.tenant_id WHERE d.domain = $1",
        )
        .bind(domain)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(owner) = owner {
            return Err(StoreError::Conflict(format!(
                "domain {domain} already belongs to tenant {owner:?}"
            )));
        }
        sqlx::query("INSERT INTO domains (domain, tenant_id) VALUES ($1, $2)")
            .bind(domain)
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// The id of the tenant named `name`.
    pub async fn tenant_id(&self, name: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no tenant named {name:?}")))
    }

    /// Adds a domain to a tenant.
    pub async fn add_domain(&self, tenant: &str, domain: &str) -> Result<(), StoreError> {
        let domain = normalize_domain(domain)?;
        let id = self.tenant_id(tenant).await?;
        let mut tx = self.write_tx().await?;
        Self::insert_domain(&mut tx, id, &domain).await?;
        Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets one column of a tenant (the statement names it) and bumps the generation.
    async fn update_tenant(
        &self,
        tenant: &str,
        statement: &'static str,
        value: &str,
    ) -> Result<(), StoreError> {
        let id = self.tenant_id(tenant).await?;
        let mut tx = self.write_tx().await?;
        sqlx::query(statement)
            .bind(value)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Changes a tenant's route.
    pub async fn set_route(&self, tenant: &str, route: &str) -> Result<(), StoreError> {
        self.update_tenant(tenant, "UPDATE tenants SET route = $1 WHERE id = $2", route)
            .await
    }

    /// Changes a tenant's recipient policy.
    pub async fn set_recipient_policy(
        &self,
        tenant: &str,
        policy: RecipientPolicy,
    ) -> Result<(), StoreError> {
        self.update_tenant(
            tenant,
            "UPDATE tenants SET recipient_policy = $1 WHERE id = $2",
            policy.as_str(),
        )
        .await
    }

    /// Lists a recipient for verification; its domain must be one of the tenant's. Returns
    /// the tenant's name.
    pub async fn add_recipient(&self, address: &str) -> Result<String, StoreError> {
        let address = address.trim().to_lowercase();
        let Some((local, domain)) = address.rsplit_once('@') else {
            return Err(StoreError::Invalid(format!(
                "{address:?} is not an address (local@domain)"
            )));
        };
        if local.is_empty() {
            return Err(StoreError::Invalid(format!(
                "{address:?} has no local part"
            )));
        }
        let domain = normalize_domain(domain)?;
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "SELECT t.id, t.name FROM domains d JOIN tenants t ON t.id = d.tenant_id WHERE d.domain = $1",
        )
        .bind(&domain)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!(
                "no tenant has domain {domain}; add it with `sekisho domain add`"
            ))
        })?;
        let (id, name): (i64, String) = (row.get(0), row.get(1));
        let done = sqlx::query(
            "INSERT INTO recipients (address, tenant_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(&address)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("{address} is listed already")));
        }
        Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(name)
    }

    /// Removes a listed recipient (of `tenant` only, when given).
    pub async fn remove_recipient(
        &self,
        address: &str,
        tenant: Option<i64>,
    ) -> Result<(), StoreError> {
        let address = address.trim().to_lowercase();
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "DELETE FROM recipients WHERE address = $1 AND ($2 IS NULL OR tenant_id = $2)",
        )
        .bind(&address)
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("{address} is not listed")));
        }
        Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Listed recipients, optionally of one tenant: `(address, tenant name)`.
    pub async fn list_recipients(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.address, t.name FROM recipients r JOIN tenants t ON t.id = r.tenant_id
             WHERE ($1 IS NULL OR t.name = $1) ORDER BY t.name, r.address",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        if let Some(name) = tenant
            && rows.is_empty()
        {
            self.tenant_id(name).await?;
        }
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// All tenants with their domains.
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.tenants_where(None).await
    }

    /// The tenant with this id, with its domains.
    pub async fn tenant(&self, id: i64) -> Result<Option<Tenant>, StoreError> {
        Ok(self.tenants_where(Some(id)).await?.pop())
    }

    /// Every tenant, or the one with id `only`.
    async fn tenants_where(&self, only: Option<i64>) -> Result<Vec<Tenant>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(
            "SELECT t.id, t.name, t.route, t.recipient_policy,
                    (SELECT count(*) FROM recipients WHERE tenant_id = t.id)
             FROM tenants t WHERE $1 IS NULL OR t.id = $1 ORDER BY t.name",
        )
        .bind(only)
        .fetch_all(&mut *conn)
        .await?;
        let mut domains: HashMap<i64, Vec<String>> = HashMap::new();
        for d in sqlx::query(
            "SELECT tenant_id, domain FROM domains WHERE $1 IS NULL OR tenant_id = $1 ORDER BY domain",
        )
        .bind(only)
        .fetch_all(&mut *conn)
        .await?
        {
            domains.entry(d.get(0)).or_default().push(d.get(1));
        }
        rows.iter()
            .map(|r| {
                let id: i64 = r.get(0);
                Ok(Tenant {
                    id,
                    name: r.get(1),
                    route: r.get(2),
                    recipient_policy: r.get::<String, _>(3).parse().map_err(StoreError::Invalid)?,
                    domains: domains.remove(&id).unwrap_or_default(),
                    recipients: r.get(4),
                })
            })
            .collect()
    }

    /// Builds the in-memory directory snapshot used at `RCPT TO` and for routing.
    pub async fn directory(&self) -> Result<Directory, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let generation: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'generation'")
            .fetch_one(&mut *conn)
            .await?;
        let tenants = sqlx::query("SELECT id, name, route, recipient_policy FROM tenants")
            .fetch_all(&mut *conn)
            .await?;
        let domains = sqlx::query("SELECT domain, tenant_id FROM domains")
            .fetch_all(&mut *conn)
            .await?;
        let recipients = sqlx::query("SELECT address, tenant_id FROM recipients")
            .fetch_all(&mut *conn)
            .await?;
        let mut filters: HashMap<i64, FilterPolicy> = HashMap::new();
        for r in sqlx::query("SELECT tenant_id, body FROM filter_policies")
            .fetch_all(&mut *conn)
            .await?
        {
            let body: String = r.get(1);
            let policy = serde_json::from_str(&body)
                .map_err(|e| StoreError::Invalid(format!("stored filter policy: {e}")))?;
            filters.insert(r.get(0), policy);
        }
        let mut senders: HashMap<i64, Vec<SenderEntry>> = HashMap::new();
        for e in Self::all_sender_lists(&mut conn).await? {
            senders.entry(e.tenant_id).or_default().push(e);
        }
        let mut dir = Directory::new(generation);
        for t in &tenants {
            dir.add_tenant(TenantInfo {
                id: t.get(0),
                name: t.get(1),
                route: t.get(2),
                policy: t.get::<String, _>(3).parse().map_err(StoreError::Invalid)?,
                recipients: Default::default(),
                domains: Vec::new(),
                filter: filters.remove(&t.get::<i64, _>(0)).unwrap_or_default(),
                senders: senders.remove(&t.get::<i64, _>(0)).unwrap_or_default(),
            });
        }
        for d in &domains {
            dir.add_domain(d.get(0), d.get(1));
        }
        for r in &recipients {
            dir.add_recipient(r.get(0), r.get(1));
        }
        for r in sqlx::query(
            "SELECT network, tenant_id FROM outbound_networks ORDER BY tenant_id, network",
        )
        .fetch_all(&mut *conn)
        .await?
        {
            // Stored in canonical form by `add_outbound_network`; a row that does not parse
            // (edited by hand) admits nothing.
            if let Ok(net) = r.get::<String, _>(0).parse() {
                dir.add_outbound_network(net, r.get(1));
            }
        }
        Ok(dir)
    }

    /// The underlying pool (for the trace module).
    fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes the pool (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_url_takes_its_password_from_the_file_and_never_prints_it() {
        let u = StoreUrl::postgres(
            "postgres://sekisho@db.example:5432/sekisho",
            Some("p@ss:w/rd"),
        )
        .unwrap();
        assert_eq!(
            u.to_string(),
            "postgres://sekisho:***@db.example:5432/sekisho"
        );
        assert!(!format!("{u:?}").contains("p@ss"));
        let parsed = url::Url::parse(&u.0).unwrap();
        assert_eq!(
            parsed.password(),
            Some("p%40ss%3Aw%2Frd"),
            "percent-encoded in the URL"
        );
        assert!(StoreUrl::postgres("postgres://u:secret@db/x", None).is_err());
        assert!(StoreUrl::postgres("mysql://db/x", None).is_err());
        assert!(StoreUrl::postgres("postgres://db.example/sekisho", None).is_ok());
        assert_eq!(
            redact_url("postgres://u:secret@h/x"),
            "postgres://u:***@h/x"
        );
        assert_eq!(redact_url("/var/lib/sekisho.db"), "/var/lib/sekisho.db");
    }

    #[test]
    fn sqlite_paths_are_percent_encoded_for_the_url() {
        assert_eq!(
            percent_encode_path("/a b/c?d#e%.db"),
            "/a%20b/c%3Fd%23e%25.db"
        );
    }
}
