//! A tenant's audit export (`sekisho-audit-export-v1`, JSON Lines): a header, the trusted
//! checkpoint keys, then every record or link line from the tenant's first record in the
//! window to the first checkpoint at or after its last one, then the checkpoints in that
//! span. The tenant verifies it without Sekisho (`tools/verify-audit-export.py`; the format
//! is in docs/audit.md). Written by the CLI (`sekisho audit export`) and by the vault for a
//! stepped-up portal user.

use std::io::Write;

use serde_json::json;

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Writing.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    /// Encoding.
    #[error("encoding the export: {0}")]
    Json(#[from] serde_json::Error),
}

/// Writes the export of `tenant_id`'s records from `from` to `to` (Unix seconds) with the
/// checkpoint keys `keys` (key id, Ed25519 public key). Returns the number of the tenant's
/// records.
pub async fn write(
    store: &store::Store,
    keys: &[(String, Vec<u8>)],
    tenant_id: i64,
    tenant: &str,
    from: i64,
    to: i64,
    w: &mut (dyn Write + Send),
) -> Result<usize, ExportError> {
    let line = |w: &mut (dyn Write + Send), v: serde_json::Value| -> Result<(), ExportError> {
        serde_json::to_writer(&mut *w, &v)?;
        w.write_all(b"\n")?;
        Ok(())
    };
    line(
        w,
        json!({"type": "header", "format": "sekisho-audit-export-v1", "tenant": tenant,
               "tenant_id": tenant_id, "from": from, "to": to, "exported_at": store::unix_now()}),
    )?;
    for (key_id, public) in keys {
        line(
            w,
            json!({"type": "key", "key_id": key_id, "public_key": hex::encode(public)}),
        )?;
    }
    // The span: first and last of the tenant's records in the window.
    let mut all = Vec::new();
    let mut next = 1;
    loop {
        let page = store.audit_records(next, 5000).await?;
        let Some(last) = page.last() else { break };
        next = last.record.id + 1;
        all.extend(page);
    }
    let mine = |r: &store::AuditRecord| {
        r.record.tenant_id == Some(tenant_id) && (from..=to).contains(&r.record.at)
    };
    let (Some(first), Some(last)) = (all.iter().position(mine), all.iter().rposition(mine)) else {
        return Ok(0);
    };
    let checkpoints = store.audit_checkpoints().await?;
    let last_id = all[last].record.id;
    let end_id = checkpoints
        .iter()
        .map(|c| c.record_id)
        .filter(|&r| r >= last_id)
        .min()
        .unwrap_or(last_id);
    let start_id = all[first].record.id;
    let mut count = 0;
    for r in all
        .iter()
        .filter(|r| (start_id..=end_id).contains(&r.record.id))
    {
        if mine(r) {
            let mut v = serde_json::to_value(r)?;
            v["type"] = json!("record");
            line(w, v)?;
            count += 1;
        } else {
            line(
                w,
                json!({"type": "link", "id": r.record.id, "prev_hash": r.prev_hash, "hash": r.hash}),
            )?;
        }
    }
    for c in checkpoints
        .iter()
        .filter(|c| (start_id..=end_id).contains(&c.record_id))
    {
        let mut v = serde_json::to_value(c)?;
        v["type"] = json!("checkpoint");
        line(w, v)?;
    }
    Ok(count)
}
