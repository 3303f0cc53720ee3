//! The audit log: records chained by SHA-256, checkpoints signed by the vault.
//!
//! Any process may append (the CLI, `mx`, the vault): [`Store::record`] takes SQLite's write
//! lock first (`BEGIN IMMEDIATE`), so two writers never chain onto the same predecessor.

use serde::Serialize;
use sqlx::Row;

use crate::{NewRecord, Record, Store, StoreError, unix_now};

/// A record with its chain fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// The record.
    #[serde(flatten)]
    pub record: Record,
    /// Random salt (hex).
    pub salt: String,
    /// The previous record's hash (hex).
    pub prev_hash: String,
    /// This record's hash (hex).
    pub hash: String,
}

/// A signed checkpoint of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditCheckpoint {
    /// Checkpoint id.
    pub id: i64,
    /// The record it covers (and every one before it).
    pub record_id: i64,
    /// When it was signed (Unix seconds).
    pub at: i64,
    /// The chain hash at `record_id` (hex).
    pub hash: String,
    /// The signing key.
    pub key_id: String,
    /// Ed25519 signature (hex).
    pub signature: String,
}

/// A checkpoint signing key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditKey {
    /// Key id.
    pub key_id: String,
    /// Ed25519 public key.
    pub public_key: Vec<u8>,
    /// PKCS#8, wrapped with the KEK.
    pub wrapped: Vec<u8>,
}

impl Record {
    /// The canonical form the chain hashes: compact JSON, fixed field order, with the salt.
    pub fn canonical(&self, salt: &[u8]) -> Vec<u8> {
        #[derive(Serialize)]
        struct Canonical<'a> {
            id: i64,
            at: i64,
            principal: &'a str,
            role: &'a str,
            action: &'a str,
            tenant_id: Option<i64>,
            object: &'a str,
            reason: &'a str,
            outcome: &'a str,
            salt: String,
        }
        serde_json::to_vec(&Canonical {
            id: self.id,
            at: self.at,
            principal: &self.principal,
            role: &self.role,
            action: &self.action,
            tenant_id: self.tenant_id,
            object: &self.object,
            reason: &self.reason,
            outcome: &self.outcome,
            salt: hex::encode(salt),
        })
        .expect("a record serializes")
    }
}

/// The columns of an [`AuditRecord`] (a macro so queries stay static strings).
macro_rules! columns {
    () => {
        "id, at, principal, role, action, tenant_id, object, reason, outcome, salt, prev_hash, hash"
    };
}

/// A record from a row with (at least) the record's named columns.
pub(crate) fn record(r: &crate::Row0) -> Record {
    Record {
        id: r.get("id"),
        at: r.get("at"),
        principal: r.get("principal"),
        role: r.get("role"),
        action: r.get("action"),
        tenant_id: r.get("tenant_id"),
        object: r.get("object"),
        reason: r.get("reason"),
        outcome: r.get("outcome"),
    }
}

fn audit_record(r: &crate::Row0) -> AuditRecord {
    let blob = |name: &str| hex::encode(r.get::<Option<Vec<u8>>, _>(name).unwrap_or_default());
    AuditRecord {
        record: record(r),
        salt: blob("salt"),
        prev_hash: blob("prev_hash"),
        hash: blob("hash"),
    }
}

fn checkpoint(r: &crate::Row0) -> AuditCheckpoint {
    AuditCheckpoint {
        id: r.get("id"),
        record_id: r.get("record_id"),
        at: r.get("at"),
        hash: hex::encode(r.get::<Vec<u8>, _>("hash")),
        key_id: r.get("key_id"),
        signature: hex::encode(r.get::<Vec<u8>, _>("signature")),
    }
}

impl Store {
    /// Appends a record to the chain; returns its id.
    pub async fn record(&self, r: &NewRecord<'_>) -> Result<i64, StoreError> {
        let mut tx = self.write_tx().await?;
        let last: Option<(i64, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT id, hash FROM records ORDER BY id DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        let (id, prev) = match last {
            Some((id, hash)) => (
                id + 1,
                hash.unwrap_or_else(|| keys::audit::GENESIS.to_vec()),
            ),
            None => (1, keys::audit::GENESIS.to_vec()),
        };
        let record = Record {
            id,
            at: unix_now(),
            principal: r.principal.to_string(),
            role: r.role.to_string(),
            action: r.action.to_string(),
            tenant_id: r.tenant_id,
            object: r.object.to_string(),
            reason: r.reason.to_string(),
            outcome: r.outcome.to_string(),
        };
        let salt = keys::audit::salt();
        let hash = keys::audit::chain_hash(&prev, &record.canonical(&salt));
        sqlx::query(
            "INSERT INTO records (id, at, principal, role, action, tenant_id, object, reason, outcome, salt, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(record.id)
        .bind(record.at)
        .bind(&record.principal)
        .bind(&record.role)
        .bind(&record.action)
        .bind(record.tenant_id)
        .bind(&record.object)
        .bind(&record.reason)
        .bind(&record.outcome)
        .bind(&salt[..])
        .bind(&prev)
        .bind(&hash[..])
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Chains records written before the chain existed (once, at open).
    pub(crate) async fn chain_unchained(&self) -> Result<(), StoreError> {
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM records WHERE hash IS NULL")
            .fetch_one(self.pool())
            .await?;
        if pending == 0 {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        let rows = sqlx::query(concat!("SELECT ", columns!(), " FROM records ORDER BY id"))
            .fetch_all(&mut *tx)
            .await?;
        let mut prev = keys::audit::GENESIS.to_vec();
        for row in &rows {
            let rec = audit_record(row);
            if rec.hash.is_empty() {
                let salt = keys::audit::salt();
                let hash = keys::audit::chain_hash(&prev, &rec.record.canonical(&salt));
                sqlx::query(
                    "UPDATE records SET salt = $1, prev_hash = $2, hash = $3 WHERE id = $4",
                )
                .bind(&salt[..])
                .bind(&prev)
                .bind(&hash[..])
                .bind(rec.record.id)
                .execute(&mut *tx)
                .await?;
                prev = hash.to_vec();
            } else {
                prev = hex::decode(&rec.hash).unwrap_or_default();
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records with `id >= from`, oldest first, at most `limit`.
    pub async fn audit_records(
        &self,
        from: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM records WHERE id >= $1 ORDER BY id LIMIT $2"
        ))
        .bind(from)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(audit_record).collect())
    }

    /// The newest record's id and hash.
    pub async fn audit_head(&self) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        let row: Option<(i64, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT id, hash FROM records ORDER BY id DESC LIMIT 1")
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|(id, h)| (id, h.unwrap_or_default())))
    }

    /// Every checkpoint, oldest first.
    pub async fn audit_checkpoints(&self) -> Result<Vec<AuditCheckpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, record_id, at, hash, key_id, signature FROM audit_checkpoints ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(checkpoint).collect())
    }

    /// Stores a signed checkpoint.
    pub async fn audit_checkpoint_put(
        &self,
        record_id: i64,
        at: i64,
        hash: &[u8],
        key_id: &str,
        signature: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (record_id, at, hash, key_id, signature) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(record_id)
        .bind(at)
        .bind(hash)
        .bind(key_id)
        .bind(signature)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every checkpoint signing key (public keys for verification; wrapped private keys).
    pub async fn audit_keys(&self) -> Result<Vec<AuditKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT key_id, public_key, wrapped FROM audit_keys ORDER BY created_at, key_id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| AuditKey {
                key_id: r.get(0),
                public_key: r.get(1),
                wrapped: r.get(2),
            })
            .collect())
    }

    /// Retires a signing key that can no longer be unwrapped: its private part is dropped, its
    /// public key stays for verifying the checkpoints it signed.
    pub async fn audit_key_retire(&self, key_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE audit_keys SET wrapped = x'' WHERE key_id = $1")
            .bind(key_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Stores a new checkpoint signing key.
    pub async fn audit_key_put(&self, k: &AuditKey) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_keys (key_id, public_key, wrapped, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&k.key_id)
        .bind(&k.public_key)
        .bind(&k.wrapped)
        .bind(unix_now())
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// The last record covered by a valid checkpoint.
    pub signed_through: Option<i64>,
    /// The newest record.
    pub head: Option<i64>,
}

/// The first sign of tampering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tampered {
    /// The first bad record.
    pub record_id: i64,
    /// What is wrong, for a person.
    pub problem: String,
}

/// Records are read in pages of this many.
const PAGE: i64 = 5000;

impl Store {
    /// Walks the chain from record `from` (the start if 0) and every checkpoint. `pinned` are
    /// the public keys the vault created (from outside the database); a checkpoint signed by
    /// any other key is tampering. `head` is the newest record the vault pinned outside the
    /// database (its id and hash): a chain that ends before it, or holds another hash there,
    /// lost or rewrote its tail even where no checkpoint covers it yet.
    pub async fn audit_verify(
        &self,
        from: i64,
        pinned: &[(String, Vec<u8>)],
        head: Option<(i64, Vec<u8>)>,
    ) -> Result<Result<Verified, Tampered>, StoreError> {
        let bad = |record_id, problem: String| Ok(Err(Tampered { record_id, problem }));
        let unhex = |s: &str| hex::decode(s).unwrap_or_default();
        // Only the hashes checkpoints name are kept (memory stays small on a long log).
        let checkpoints = self.audit_checkpoints().await?;
        let mut wanted: std::collections::HashSet<i64> =
            checkpoints.iter().map(|c| c.record_id).collect();
        let head_pin = head.filter(|(id, _)| *id >= from.max(1));
        if let Some((id, _)) = &head_pin {
            wanted.insert(*id);
        }
        let mut hashes = std::collections::HashMap::new();
        let mut prev: Option<(i64, Vec<u8>)> = None;
        let mut next = from.max(1);
        let mut count = 0u64;
        loop {
            let page = self.audit_records(next, PAGE).await?;
            let Some(last) = page.last() else { break };
            next = last.record.id + 1;
            for r in &page {
                let id = r.record.id;
                let stored_prev = unhex(&r.prev_hash);
                match &prev {
                    None if from <= 1 && id != 1 => {
                        return bad(id, format!("records 1 to {} are missing (deleted)", id - 1));
                    }
                    None if from <= 1 && stored_prev != keys::audit::GENESIS => {
                        return bad(id, "the first record does not start the chain".into());
                    }
                    Some((pid, _)) if id != pid + 1 => {
                        return bad(
                            id,
                            format!(
                                "record {} is missing: the chain jumps from {pid} to {id} (deleted)",
                                pid + 1
                            ),
                        );
                    }
                    Some((_, phash)) if *phash != stored_prev => {
                        return bad(
                            id,
                            "its link to the previous record is broken (a record was deleted, reordered or inserted)".into(),
                        );
                    }
                    _ => {}
                }
                let want =
                    keys::audit::chain_hash(&stored_prev, &r.record.canonical(&unhex(&r.salt)));
                if unhex(&r.hash) != want {
                    return bad(id, "its contents do not match its hash (edited)".into());
                }
                if wanted.contains(&id) {
                    hashes.insert(id, want.to_vec());
                }
                prev = Some((id, want.to_vec()));
                count += 1;
            }
        }
        let head = prev.as_ref().map(|(id, _)| *id);
        if let Some((pin, pin_hash)) = &head_pin {
            match hashes.get(pin) {
                None => {
                    return bad(
                        *pin,
                        format!(
                            "the log ends at record {} but the vault pinned record {pin}: its newest records were deleted",
                            head.map_or("0".into(), |h| h.to_string())
                        ),
                    );
                }
                Some(h) if h != pin_hash => {
                    return bad(
                        *pin,
                        "it is not the record the vault pinned (the tail was rewritten)".into(),
                    );
                }
                Some(_) => {}
            }
        }
        let mut signed_through = None;
        let mut checked = 0;
        for c in checkpoints.iter().filter(|c| c.record_id >= from) {
            let Some((_, key)) = pinned.iter().find(|(k, _)| *k == c.key_id) else {
                return bad(
                    c.record_id,
                    format!(
                        "checkpoint {} is signed by key {} which the vault did not create",
                        c.id, c.key_id
                    ),
                );
            };
            let hash = unhex(&c.hash);
            let msg = keys::audit::checkpoint_message(c.record_id, c.at, &hash);
            if !keys::audit::verify(key, &msg, &unhex(&c.signature)) {
                return bad(
                    c.record_id,
                    format!("checkpoint {} has a bad signature (forged)", c.id),
                );
            }
            match hashes.get(&c.record_id) {
                Some(h) if *h == hash => {}
                Some(_) => {
                    return bad(
                        c.record_id,
                        format!(
                            "the chain differs from what checkpoint {} signed (rewritten)",
                            c.id
                        ),
                    );
                }
                None => {
                    return bad(
                        c.record_id,
                        format!(
                            "checkpoint {} covers a record that no longer exists (truncated)",
                            c.id
                        ),
                    );
                }
            }
            signed_through = signed_through.max(Some(c.record_id));
            checked += 1;
        }
        Ok(Ok(Verified {
            records: count,
            checkpoints: checked,
            signed_through,
            head,
        }))
    }
}

impl Store {
    /// Records whose time is within `[from, to]`, oldest first.
    pub async fn records_between(&self, from: i64, to: i64) -> Result<Vec<Record>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, principal, role, action, tenant_id, object, reason, outcome FROM records
             WHERE at >= $1 AND at <= $2 ORDER BY id",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(record).collect())
    }

    /// Per tenant, how many messages passed through the mail path (received) within
    /// `[from, to]`, from the message trace.
    pub async fn messages_by_tenant(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT e.tenant_id, count(DISTINCT m.id) FROM trace_messages m
             JOIN trace_events e ON e.message_id = m.id
             WHERE m.received_at >= $1 AND m.received_at <= $2 AND e.tenant_id IS NOT NULL
             GROUP BY e.tenant_id ORDER BY e.tenant_id",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?)
    }

    /// Tenants that exist now: id, name, creation time.
    pub async fn tenant_names(&self) -> Result<Vec<(i64, String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT id, name, created_at FROM tenants ORDER BY id")
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Terminations ever recorded: tenant id, name, time, record id.
    pub async fn terminations(&self) -> Result<Vec<(i64, String, i64, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT tenant_id, object, at, id FROM records
             WHERE action = 'terminate-tenant' AND tenant_id IS NOT NULL ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?)
    }
}
