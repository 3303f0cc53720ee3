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
mod directory;
mod filter;
mod lockbox;
mod senders;
mod stats;
mod tokens;
mod trace;
mod users;
mod vault;

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use thiserror::Error;

pub use alerts::{Alert, NewAlert};
pub use audit::{AuditCheckpoint, AuditKey, AuditRecord};
pub use bayes::{BayesCounts, LearnMessage, LearnOutcome};
pub use directory::{Directory, Lookup, SharedDirectory, TenantInfo};
pub use filter::{FilterPolicy, StoredName};
pub use lockbox::{LOCKBOX_MAX_MINUTES, LOCKBOX_MIN_MINUTES, Lockbox};
pub use senders::{MAX_SENDER_ENTRIES, SenderAction, SenderEntry, sender_pattern};
pub use stats::{Count, MailStats, symbol_names};
pub use tokens::{ApiToken, MAX_TOKENS_PER_USER, TOKEN_SCOPES};
pub use trace::{TraceEvent, TraceFilter, TraceMessage, TraceRecord};
pub use users::{Enrolment, ROLES, User};
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
    Db(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// How a tenant's recipients are verified at `RCPT TO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecipientPolicy {
    /// Accept every mailbox until recipients are listed; then only listed ones (default).
    Auto,
    /// Only listed recipients (none listed: nobody).
    Verify,
    /// Every mailbox of the tenant's domains.
    CatchAll,
}

impl RecipientPolicy {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Verify => "verify",
            Self::CatchAll => "catch-all",
        }
    }
}

impl FromStr for RecipientPolicy {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "verify" => Ok(Self::Verify),
            "catch-all" => Ok(Self::CatchAll),
            other => Err(StoreError::Invalid(format!(
                "unknown recipient policy {other:?}: use auto, verify or catch-all"
            ))),
        }
    }
}

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

/// The metadata store.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
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
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // Deleted rows are overwritten, not left in free pages (tenant termination).
            .pragma("secure_delete", "on")
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        let store = Self { pool };
        store.chain_unchained().await?;
        Ok(store)
    }

    /// A write transaction. `BEGIN IMMEDIATE` takes the write lock at the start, so another
    /// process (the roles and the CLI share the database) committing in between makes this one
    /// wait (`busy_timeout`) instead of failing with `SQLITE_BUSY_SNAPSHOT` when a transaction
    /// that has read tries to write.
    pub(crate) async fn write_tx(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.pool().begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn bump(tx: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
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
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM tenants WHERE name = ?")
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
            "UPDATE meta SET value = max(value, (SELECT coalesce(max(id), 0) FROM tenants)) + 1
             WHERE key = 'tenant_high_water' RETURNING value",
        )
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO tenants (id, name, route, created_at) VALUES (?, ?, ?, ?)")
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

    async fn insert_domain(
        tx: &mut sqlx::SqliteConnection,
        tenant: i64,
        domain: &str,
    ) -> Result<(), StoreError> {
        let owner: Option<String> = sqlx::query_scalar(
            "SELECT t.name FROM domains d JOIN tenants t ON t.id = d.tenant_id WHERE d.domain = ?",
        )
        .bind(domain)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(owner) = owner {
            return Err(StoreError::Conflict(format!(
                "domain {domain} already belongs to tenant {owner:?}"
            )));
        }
        sqlx::query("INSERT INTO domains (domain, tenant_id) VALUES (?, ?)")
            .bind(domain)
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// The id of the tenant named `name`.
    pub async fn tenant_id(&self, name: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT id FROM tenants WHERE name = ?")
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
        self.update_tenant(tenant, "UPDATE tenants SET route = ? WHERE id = ?", route)
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
            "UPDATE tenants SET recipient_policy = ? WHERE id = ?",
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
            "SELECT t.id, t.name FROM domains d JOIN tenants t ON t.id = d.tenant_id WHERE d.domain = ?",
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
        let done =
            sqlx::query("INSERT OR IGNORE INTO recipients (address, tenant_id) VALUES (?, ?)")
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

    /// Removes a listed recipient.
    pub async fn remove_recipient(&self, address: &str) -> Result<(), StoreError> {
        let address = address.trim().to_lowercase();
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM recipients WHERE address = ?")
            .bind(&address)
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
             WHERE (?1 IS NULL OR t.name = ?1) ORDER BY t.name, r.address",
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
        let rows = sqlx::query(
            "SELECT t.id, t.name, t.route, t.recipient_policy,
                    (SELECT group_concat(domain, ' ') FROM (SELECT domain FROM domains WHERE tenant_id = t.id ORDER BY domain)),
                    (SELECT count(*) FROM recipients WHERE tenant_id = t.id)
             FROM tenants t ORDER BY t.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let domains: Option<String> = r.get(4);
                Ok(Tenant {
                    id: r.get(0),
                    name: r.get(1),
                    route: r.get(2),
                    recipient_policy: r.get::<String, _>(3).parse()?,
                    domains: domains
                        .unwrap_or_default()
                        .split_whitespace()
                        .map(String::from)
                        .collect(),
                    recipients: r.get(5),
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
                policy: t.get::<String, _>(3).parse()?,
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
        Ok(dir)
    }

    /// The underlying pool (for the trace module).
    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
