//! Tables the vault and the quarantine use: tenant keys, quarantine metadata, records.

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError, unix_now};

/// A tenant's key pair as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantKey {
    /// Tenant id.
    pub tenant_id: i64,
    /// age recipient (public).
    pub recipient: String,
    /// The identity wrapped with the KEK; `None` for a customer-held key.
    pub wrapped: Option<Vec<u8>>,
}

/// A connector secret as stored: sealed with the vault's KEK, bound to tenant and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// Tenant id.
    pub tenant_id: i64,
    /// Kind name (`smtp-auth`, `client-cert`).
    pub kind: String,
    /// The sealed value.
    pub sealed: Vec<u8>,
}

/// What a connector secret listing shows: never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretInfo {
    /// Kind name.
    pub kind: String,
    /// When it was last set (Unix seconds).
    pub updated_at: i64,
}

/// One quarantined message (metadata only; the body is a sealed blob).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantineItem {
    /// Queue id it was received under.
    pub id: String,
    /// Tenant id.
    pub tenant_id: i64,
    /// Tenant name (filled in by listings).
    pub tenant: String,
    /// Envelope sender.
    pub mail_from: String,
    /// Envelope recipients.
    pub rcpts: Vec<String>,
    /// Size in octets (as sealed, with the gateway's trace headers).
    pub size: i64,
    /// Unix seconds.
    pub received_at: i64,
    /// When retention deletes it (Unix seconds).
    pub expires_at: i64,
    /// Verdict action.
    pub verdict: String,
    /// Score.
    pub score: f64,
    /// Symbols with weights.
    pub symbols: String,
    /// Blob store key.
    #[serde(skip)]
    pub blob: String,
    /// The age recipient it is sealed to.
    pub sealed_to: String,
    /// 8BITMIME was used.
    #[serde(skip)]
    pub eight_bit: bool,
    /// SMTPUTF8 was used.
    #[serde(skip)]
    pub smtputf8: bool,
    /// The sender asked for REQUIRETLS (RFC 8689): a release queues it with the request.
    #[serde(skip)]
    pub require_tls: bool,
}

/// What a tenant's termination removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Terminated {
    /// Quarantined messages (their blobs are deleted by the caller).
    pub quarantined: u64,
    /// Domains.
    pub domains: u64,
    /// Listed recipients.
    pub recipients: u64,
    /// Trace messages and events.
    pub trace_records: u64,
    /// Bayes tokens and learned-message digests.
    pub bayes_records: u64,
    /// Connector secrets.
    pub secrets: u64,
}

/// One record of the vault's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Row id.
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// Who.
    pub principal: String,
    /// Through which role.
    pub role: String,
    /// What.
    pub action: String,
    /// Tenant, if any.
    pub tenant_id: Option<i64>,
    /// Object (quarantine id, secret name).
    pub object: String,
    /// Stated reason.
    pub reason: String,
    /// Outcome.
    pub outcome: String,
}

/// A record to append.
#[derive(Debug, Clone)]
pub struct NewRecord<'a> {
    /// Who.
    pub principal: &'a str,
    /// Which of Sekisho's processes acted (and wrote the record).
    pub role: proto::Process,
    /// What.
    pub action: &'a str,
    /// Tenant, if any.
    pub tenant_id: Option<i64>,
    /// Object.
    pub object: &'a str,
    /// Stated reason.
    pub reason: &'a str,
    /// Outcome.
    pub outcome: &'a str,
}

impl NewRecord<'static> {
    /// A record by `role` with every other field empty, to fill in with struct update syntax.
    pub fn by(role: proto::Process) -> Self {
        NewRecord {
            principal: "",
            role,
            action: "",
            tenant_id: None,
            object: "",
            reason: "",
            outcome: "",
        }
    }
}

fn item(r: &crate::Row0) -> Result<QuarantineItem, StoreError> {
    let rcpts: String = r.get("rcpts");
    Ok(QuarantineItem {
        id: r.get("id"),
        tenant_id: r.get("tenant_id"),
        tenant: r.try_get("tenant").unwrap_or_default(),
        mail_from: r.get("mail_from"),
        rcpts: serde_json::from_str(&rcpts)
            .map_err(|e| StoreError::Invalid(format!("quarantine rcpts: {e}")))?,
        size: r.get("size"),
        received_at: r.get("received_at"),
        expires_at: r.get("expires_at"),
        verdict: r.get("verdict"),
        score: r.get("score"),
        symbols: r.get("symbols"),
        blob: r.get("blob"),
        sealed_to: r.get("sealed_to"),
        eight_bit: r.get::<i64, _>("eight_bit") != 0,
        smtputf8: r.get::<i64, _>("smtputf8") != 0,
        require_tls: r.get::<i64, _>("require_tls") != 0,
    })
}

impl Store {
    /// The tenant's key pair, if it has one.
    pub async fn tenant_key(&self, tenant_id: i64) -> Result<Option<TenantKey>, StoreError> {
        let row = sqlx::query("SELECT recipient, wrapped FROM tenant_keys WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| TenantKey {
            tenant_id,
            recipient: r.get(0),
            wrapped: r.get(1),
        }))
    }

    /// Stores a tenant's key pair unless it has one; returns the key in force.
    pub async fn put_tenant_key(&self, key: &TenantKey) -> Result<TenantKey, StoreError> {
        sqlx::query(
            "INSERT INTO tenant_keys (tenant_id, recipient, wrapped, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(key.tenant_id)
        .bind(&key.recipient)
        .bind(&key.wrapped)
        .bind(unix_now())
        .execute(self.pool())
        .await?;
        self.tenant_key(key.tenant_id)
            .await?
            .ok_or_else(|| StoreError::NotFound("tenant key vanished".into()))
    }

    /// Every wrapped tenant key (for KEK rotation).
    pub async fn wrapped_tenant_keys(&self) -> Result<Vec<TenantKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, recipient, wrapped FROM tenant_keys WHERE wrapped IS NOT NULL ORDER BY tenant_id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| TenantKey {
                tenant_id: r.get(0),
                recipient: r.get(1),
                wrapped: r.get(2),
            })
            .collect())
    }

    /// Every sealed connector secret (for KEK rotation).
    pub async fn sealed_secrets(&self) -> Result<Vec<SealedSecret>, StoreError> {
        let rows =
            sqlx::query("SELECT tenant_id, kind, sealed FROM secrets ORDER BY tenant_id, kind")
                .fetch_all(self.pool())
                .await?;
        Ok(rows
            .iter()
            .map(|r| SealedSecret {
                tenant_id: r.get(0),
                kind: r.get(1),
                sealed: r.get(2),
            })
            .collect())
    }

    /// Replaces everything wrapped with the KEK — tenant keys, connector secrets, audit
    /// signing keys, portal users' second factors, the nodes' spool keys and DKIM keys — in
    /// one transaction (KEK rotation).
    pub async fn rewrap_kek_material(
        &self,
        keys: &[TenantKey],
        secrets: &[SealedSecret],
        audit_keys: &[crate::AuditKey],
        totps: &[(i64, Vec<u8>)],
        spool_keys: &[crate::WrappedSpoolKey],
        dkim: &[crate::SealedDkimKey],
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        for k in dkim {
            sqlx::query(
                "UPDATE dkim_keys SET sealed = $1 WHERE tenant_id = $2 AND domain = $3 AND selector = $4",
            )
            .bind(&k.sealed)
            .bind(k.tenant_id)
            .bind(&k.domain)
            .bind(&k.selector)
            .execute(&mut *tx)
            .await?;
        }
        for k in spool_keys {
            sqlx::query("UPDATE spool_keys SET wrapped = $1 WHERE node = $2")
                .bind(&k.wrapped)
                .bind(&k.node)
                .execute(&mut *tx)
                .await?;
        }
        for (id, sealed) in totps {
            sqlx::query("UPDATE users SET totp_sealed = $1 WHERE id = $2")
                .bind(sealed)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        for k in keys {
            sqlx::query(
                "UPDATE tenant_keys SET wrapped = $1 WHERE tenant_id = $2 AND recipient = $3",
            )
            .bind(&k.wrapped)
            .bind(k.tenant_id)
            .bind(&k.recipient)
            .execute(&mut *tx)
            .await?;
        }
        for s in secrets {
            sqlx::query("UPDATE secrets SET sealed = $1 WHERE tenant_id = $2 AND kind = $3")
                .bind(&s.sealed)
                .bind(s.tenant_id)
                .bind(&s.kind)
                .execute(&mut *tx)
                .await?;
        }
        for k in audit_keys {
            sqlx::query("UPDATE audit_keys SET wrapped = $1 WHERE key_id = $2")
                .bind(&k.wrapped)
                .bind(&k.key_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores (or replaces) a tenant's sealed connector secret (bumping the directory
    /// generation, so mx drops the value it holds).
    pub async fn secret_put(&self, s: &SealedSecret) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO secrets (tenant_id, kind, sealed, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT(tenant_id, kind) DO UPDATE SET sealed = $3, updated_at = $4",
        )
        .bind(s.tenant_id)
        .bind(&s.kind)
        .bind(&s.sealed)
        .bind(unix_now())
        .execute(&mut *tx)
        .await?;
        Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A tenant's sealed connector secret of `kind` (vault only: it alone can open it).
    pub async fn secret_get(
        &self,
        tenant_id: i64,
        kind: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT sealed FROM secrets WHERE tenant_id = $1 AND kind = $2")
                .bind(tenant_id)
                .bind(kind)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Which secrets a tenant has, and when each was set — never their values.
    pub async fn secret_list(&self, tenant_id: i64) -> Result<Vec<SecretInfo>, StoreError> {
        let rows =
            sqlx::query("SELECT kind, updated_at FROM secrets WHERE tenant_id = $1 ORDER BY kind")
                .bind(tenant_id)
                .fetch_all(self.pool())
                .await?;
        Ok(rows
            .iter()
            .map(|r| SecretInfo {
                kind: r.get(0),
                updated_at: r.get(1),
            })
            .collect())
    }

    /// Deletes a tenant's secret of `kind` (bumping the directory generation).
    pub async fn secret_delete(&self, tenant_id: i64, kind: &str) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM secrets WHERE tenant_id = $1 AND kind = $2")
            .bind(tenant_id)
            .bind(kind)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no {kind} secret is set")));
        }
        Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets a tenant's customer-held recipient (no private key is stored). Refused while
    /// messages sealed to a previous key are quarantined, unless `force` (they then can no
    /// longer be opened here).
    pub async fn set_customer_key(
        &self,
        tenant: &str,
        recipient: &str,
        force: bool,
    ) -> Result<u64, StoreError> {
        let id = self.tenant_id(tenant).await?;
        let mut tx = self.write_tx().await?;
        let stranded: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM quarantine WHERE tenant_id = $1 AND sealed_to != $2",
        )
        .bind(id)
        .bind(recipient)
        .fetch_one(&mut *tx)
        .await?;
        if stranded > 0 && !force {
            return Err(StoreError::Conflict(format!(
                "{stranded} quarantined message(s) of {tenant} are sealed to its current key and could no longer be opened here; release or delete them first, or use --force"
            )));
        }
        sqlx::query(
            "INSERT INTO tenant_keys (tenant_id, recipient, wrapped, created_at) VALUES ($1, $2, NULL, $3)
             ON CONFLICT(tenant_id) DO UPDATE SET recipient = $2, wrapped = NULL, created_at = $3",
        )
        .bind(id)
        .bind(recipient)
        .bind(unix_now())
        .execute(&mut *tx)
        .await?;
        Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(stranded as u64)
    }

    /// Deletes a tenant and everything stored about it (its key pair included) in one
    /// transaction, then checkpoints the WAL so deleted pages do not linger there. Returns the
    /// counts and the blob keys of its quarantined messages (for the caller to delete).
    pub async fn terminate_tenant(&self, id: i64) -> Result<(Terminated, Vec<String>), StoreError> {
        let mut tx = self.write_tx().await?;
        let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).bind(id);
        let blobs: Vec<String> =
            sqlx::query_scalar("SELECT blob FROM quarantine WHERE tenant_id = $1")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        let mut t = Terminated {
            quarantined: blobs.len() as u64,
            domains: count("SELECT count(*) FROM domains WHERE tenant_id = $1")
                .fetch_one(&mut *tx)
                .await? as u64,
            recipients: count("SELECT count(*) FROM recipients WHERE tenant_id = $1")
                .fetch_one(&mut *tx)
                .await? as u64,
            secrets: count("SELECT count(*) FROM secrets WHERE tenant_id = $1")
                .fetch_one(&mut *tx)
                .await? as u64,
            ..Default::default()
        };
        // Trace: the tenant's events, and messages that concern no other tenant.
        let msgs = sqlx::query(
            "DELETE FROM trace_messages WHERE id IN (SELECT message_id FROM trace_events WHERE tenant_id = $1)
             AND id NOT IN (SELECT message_id FROM trace_events WHERE tenant_id IS NULL OR tenant_id <> $1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let events = sqlx::query("DELETE FROM trace_events WHERE tenant_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        t.trace_records = msgs + events;
        for sql in [
            "DELETE FROM bayes_tokens WHERE tenant_id = $1",
            "DELETE FROM bayes_seen WHERE tenant_id = $1",
            "DELETE FROM bayes_models WHERE tenant_id = $1",
            "DELETE FROM ngram_weights WHERE tenant_id = $1",
        ] {
            t.bayes_records += sqlx::query(sql)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        // Its outbound TLS session counts (which domains its people wrote to).
        sqlx::query("DELETE FROM tls_sessions WHERE tenant_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        // Sealed DKIM keys go with it (also a cascade; said here as the secrets they are).
        sqlx::query("DELETE FROM dkim_keys WHERE tenant_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        // Cascades: domains, recipients, filter policy, sender history, key pair, quarantine,
        // connector secrets.
        sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Self::bump(&mut tx).await?;
        tx.commit().await?;
        // Leave no copy of the deleted rows (the wrapped key above all) in the database files:
        // SQLite overwrites them (secure_delete) and truncates its WAL here; PostgreSQL keeps
        // dead row versions until VACUUM, so vacuum the tables that held the tenant's secrets.
        let scrub = match self.engine {
            crate::Engine::Sqlite => "PRAGMA wal_checkpoint(TRUNCATE)",
            crate::Engine::Postgres => {
                "VACUUM tenant_keys, secrets, quarantine, users, user_sessions, enrolments, tenants"
            }
        };
        sqlx::query(scrub).execute(self.pool()).await?;
        Ok((t, blobs))
    }

    /// Records a quarantined message.
    pub async fn quarantine_insert(&self, q: &QuarantineItem) -> Result<(), StoreError> {
        let rcpts = serde_json::to_string(&q.rcpts)
            .map_err(|e| StoreError::Invalid(format!("quarantine rcpts: {e}")))?;
        sqlx::query(
            "INSERT INTO quarantine (id, tenant_id, mail_from, rcpts, size, received_at, expires_at, verdict, score, symbols, blob, sealed_to, eight_bit, smtputf8, require_tls)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&q.id)
        .bind(q.tenant_id)
        .bind(&q.mail_from)
        .bind(rcpts)
        .bind(q.size)
        .bind(q.received_at)
        .bind(q.expires_at)
        .bind(&q.verdict)
        .bind(q.score)
        .bind(&q.symbols)
        .bind(&q.blob)
        .bind(&q.sealed_to)
        .bind(i64::from(q.eight_bit))
        .bind(i64::from(q.smtputf8))
        .bind(i64::from(q.require_tls))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Quarantined messages, newest first, optionally of one tenant.
    pub async fn quarantine_list(
        &self,
        tenant: Option<i64>,
        limit: i64,
    ) -> Result<Vec<QuarantineItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT q.*, t.name AS tenant FROM quarantine q JOIN tenants t ON t.id = q.tenant_id
             WHERE ($1 IS NULL OR q.tenant_id = $1) ORDER BY q.received_at DESC, q.id LIMIT $2",
        )
        .bind(tenant)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(item).collect()
    }

    /// Quarantined messages per tenant id (one query, for overviews).
    pub async fn quarantine_counts(
        &self,
    ) -> Result<std::collections::HashMap<i64, i64>, StoreError> {
        Ok(
            sqlx::query("SELECT tenant_id, count(*) FROM quarantine GROUP BY tenant_id")
                .fetch_all(self.pool())
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
        )
    }

    /// One quarantined message.
    pub async fn quarantine_get(&self, id: &str) -> Result<QuarantineItem, StoreError> {
        let row = sqlx::query(
            "SELECT q.*, t.name AS tenant FROM quarantine q JOIN tenants t ON t.id = q.tenant_id WHERE q.id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no quarantined message {id}")))?;
        item(&row)
    }

    /// Quarantined messages whose retention ended at `now` (at most `limit`).
    pub async fn quarantine_expired(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<QuarantineItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT q.*, t.name AS tenant FROM quarantine q JOIN tenants t ON t.id = q.tenant_id
             WHERE q.expires_at <= $1 ORDER BY q.expires_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(item).collect()
    }

    /// Items received after `from` up to `to` (Unix seconds), oldest first, at most `limit`.
    pub async fn quarantine_received_between(
        &self,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<QuarantineItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT q.*, t.name AS tenant FROM quarantine q JOIN tenants t ON t.id = q.tenant_id
             WHERE q.received_at > $1 AND q.received_at <= $2 ORDER BY q.received_at, q.id LIMIT $3",
        )
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(item).collect()
    }

    /// Forgets a quarantined message (its blob is deleted by the caller).
    pub async fn quarantine_remove(&self, id: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM quarantine WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no quarantined message {id}")));
        }
        Ok(())
    }

    /// The most recent records, newest first.
    /// The source addresses of a principal's successful portal logins (newest first, at most
    /// `limit`), from the `login` records (`reason` = `from ADDR`).
    pub async fn login_sources(
        &self,
        principal: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT reason FROM records WHERE principal = $1 AND action = 'login' AND outcome = 'ok'
             ORDER BY id DESC LIMIT $2",
        )
        .bind(principal)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.strip_prefix("from ").map(str::to_string))
            .collect())
    }

    /// The newest records, at most `limit`.
    pub async fn records(&self, limit: i64) -> Result<Vec<Record>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, principal, role, action, tenant_id, object, reason, outcome FROM records ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(crate::audit::record).collect())
    }
}
