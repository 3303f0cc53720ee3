//! The sealed quarantine as `mx` sees it: seal to the tenant's recipient, store the blob, record
//! the metadata. `mx` holds recipients (public keys) only; opening goes through the vault.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ingress::{QuarantineRequest, QuarantineSink};
use proto::client::VaultClient;
use store::blobs::BlobStore;
use store::{MailStore, QuarantineItem};

/// `mx`'s side of the quarantine.
pub struct SealedQuarantine {
    store: MailStore,
    blobs: Arc<dyn BlobStore>,
    vault: VaultClient,
    retention: Duration,
    /// Tenant → recipient, as the vault last said.
    recipients: Mutex<HashMap<i64, String>>,
}

impl SealedQuarantine {
    /// A quarantine sealing through `vault`'s recipients into `blobs`, kept for `retention`.
    pub fn new(
        store: MailStore,
        blobs: Arc<dyn BlobStore>,
        vault: VaultClient,
        retention: Duration,
    ) -> Self {
        Self {
            store,
            blobs,
            vault,
            retention,
            recipients: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets cached recipients (a tenant key may have changed).
    pub fn forget_recipients(&self) {
        self.recipients.lock().expect("poisoned").clear();
    }

    async fn recipient(&self, tenant: i64) -> Result<String, String> {
        if let Some(r) = self.recipients.lock().expect("poisoned").get(&tenant) {
            return Ok(r.clone());
        }
        let (r, _) = self
            .vault
            .tenant_recipient(proto::TenantId(tenant))
            .await
            .map_err(|e| e.to_string())?;
        self.recipients
            .lock()
            .expect("poisoned")
            .insert(tenant, r.clone());
        Ok(r)
    }

    async fn put(&self, q: QuarantineRequest<'_>) -> Result<(), String> {
        let recipient = self.recipient(q.tenant).await?;
        let sealed = vault::seal(&recipient, q.body).map_err(|e| e.to_string())?;
        let blob = format!("{}/{}.age", q.tenant, q.id);
        self.blobs
            .put(&blob, sealed)
            .await
            .map_err(|e| e.to_string())?;
        let item = QuarantineItem {
            id: q.id.to_string(),
            tenant_id: q.tenant,
            tenant: String::new(),
            mail_from: q.mail_from.to_string(),
            rcpts: q.rcpts,
            size: q.body.len() as i64,
            received_at: q.received_at,
            expires_at: q.received_at
                + q.retention_days
                    .map_or(self.retention.as_secs(), |d| u64::from(d) * 86400)
                    as i64,
            verdict: q.verdict.action.name().to_string(),
            score: q.verdict.score,
            symbols: q.verdict.symbol_list(),
            blob: blob.clone(),
            sealed_to: recipient,
            eight_bit: q.eight_bit,
            smtputf8: q.smtputf8,
            require_tls: q.require_tls,
        };
        if let Err(e) = self.store.quarantine_insert(&item).await {
            let _ = self.blobs.delete(&blob).await;
            return Err(e.to_string());
        }
        Ok(())
    }
}

impl QuarantineSink for SealedQuarantine {
    fn quarantine<'a>(
        &'a self,
        q: QuarantineRequest<'a>,
    ) -> inspect::BoxFuture<'a, Result<(), String>> {
        Box::pin(self.put(q))
    }
}

/// How often the retention sweep runs for a node retention of `retention`.
pub fn sweep_interval(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Deletes quarantined messages whose retention has ended, and records what was purged (per
/// tenant: how many, which ids, when). Returns how many were purged.
pub async fn purge_expired(store: &MailStore, blobs: &dyn BlobStore) -> anyhow::Result<usize> {
    let now = store::unix_now();
    let expired = store.quarantine_expired(now, 1000).await?;
    let mut by_tenant: HashMap<i64, Vec<String>> = HashMap::new();
    for q in &expired {
        blobs.delete(&q.blob).await?;
        store.quarantine_remove(&q.id).await?;
        by_tenant.entry(q.tenant_id).or_default().push(q.id.clone());
    }
    for (tenant, ids) in by_tenant {
        for chunk in ids.chunks(100) {
            let reason = format!("{} quarantined message(s) past retention", chunk.len());
            store
                .record(&store::NewRecord {
                    principal: "retention",
                    role: proto::Process::Mx,
                    action: "retention-purge",
                    tenant_id: Some(tenant),
                    object: &chunk.join(","),
                    reason: &reason,
                    outcome: "ok",
                })
                .await?;
        }
    }
    Ok(expired.len())
}
