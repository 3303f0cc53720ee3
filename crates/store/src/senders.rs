//! Allowed and blocked senders per tenant and per recipient. A change bumps the directory
//! generation, so every node's inspection picks it up with the next directory reload.

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError};

/// Most entries one tenant may hold (tenant-wide and per recipient together).
pub const MAX_SENDER_ENTRIES: i64 = 10_000;

pub use proto::SenderAction;

fn action_of(s: &str) -> Result<SenderAction, StoreError> {
    s.parse().map_err(StoreError::Invalid)
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SenderEntry {
    /// Id.
    pub id: i64,
    /// Tenant id.
    pub tenant_id: i64,
    /// The recipient it applies to; empty for the whole tenant.
    pub rcpt: String,
    /// An address or a domain, lower case.
    pub pattern: String,
    /// Allow or block.
    pub action: SenderAction,
    /// Who added it (principal).
    pub added_by: String,
    /// When (Unix seconds).
    pub added_at: i64,
}

/// The normal form of a sender pattern: a lower-case address (`local@domain`) or domain
/// (`domain`, also written `@domain`), or why it is not one.
pub fn sender_pattern(raw: &str) -> Result<String, String> {
    let p = raw.trim().trim_start_matches('@').to_lowercase();
    let (local, domain) = match p.rsplit_once('@') {
        Some((l, d)) => (Some(l), d),
        None => (None, p.as_str()),
    };
    let domain_ok = domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    let local_ok = local.is_none_or(|l| {
        !l.is_empty()
            && l.len() <= 64
            && l.chars()
                .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
    });
    if p.len() > 254 || !domain_ok || !local_ok {
        return Err(format!(
            "{raw:?} is not an address (name@example.com) or a domain (example.com)"
        ));
    }
    Ok(p)
}

fn entry(r: &crate::Row0) -> Result<SenderEntry, StoreError> {
    Ok(SenderEntry {
        id: r.get(0),
        tenant_id: r.get(1),
        rcpt: r.get(2),
        pattern: r.get(3),
        action: action_of(&r.get::<String, _>(4))?,
        added_by: r.get(5),
        added_at: r.get(6),
    })
}

impl Store {
    /// Adds (or changes the action of) an entry; `rcpt` empty for the whole tenant.
    pub async fn sender_list_put(
        &self,
        tenant_id: i64,
        rcpt: &str,
        pattern: &str,
        action: SenderAction,
        by: &str,
        at: i64,
    ) -> Result<SenderEntry, StoreError> {
        let pattern = sender_pattern(pattern).map_err(StoreError::Invalid)?;
        let rcpt = rcpt.trim().to_lowercase();
        let mut tx = self.write_tx().await?;
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sender_lists WHERE tenant_id = $1")
                .bind(tenant_id)
                .fetch_one(&mut *tx)
                .await?;
        if count >= MAX_SENDER_ENTRIES {
            return Err(StoreError::Invalid(format!(
                "the tenant has {MAX_SENDER_ENTRIES} sender entries already; remove some first"
            )));
        }
        let row = sqlx::query(
            "INSERT INTO sender_lists (tenant_id, rcpt, pattern, action, added_by, added_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id, rcpt, pattern) DO UPDATE SET action = $4, added_by = $5, added_at = $6
             RETURNING id, tenant_id, rcpt, pattern, action, added_by, added_at",
        )
        .bind(tenant_id)
        .bind(&rcpt)
        .bind(&pattern)
        .bind(action.as_str())
        .bind(by)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        Self::bump(&mut tx).await?;
        tx.commit().await?;
        entry(&row)
    }

    /// The tenant's entries (all recipients'), tenant-wide first, then by recipient and pattern.
    pub async fn sender_lists(&self, tenant_id: i64) -> Result<Vec<SenderEntry>, StoreError> {
        sqlx::query(
            "SELECT id, tenant_id, rcpt, pattern, action, added_by, added_at FROM sender_lists
             WHERE tenant_id = $1 ORDER BY rcpt, pattern",
        )
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(entry)
        .collect()
    }

    /// One entry by id.
    pub async fn sender_entry(&self, id: i64) -> Result<SenderEntry, StoreError> {
        let row = sqlx::query(
            "SELECT id, tenant_id, rcpt, pattern, action, added_by, added_at FROM sender_lists WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no sender entry {id}")))?;
        entry(&row)
    }

    /// Removes an entry.
    pub async fn sender_list_remove(&self, id: i64) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let n = sqlx::query("DELETE FROM sender_lists WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("no sender entry {id}")));
        }
        Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every tenant's entries (for the directory snapshot).
    pub(crate) async fn all_sender_lists(
        conn: &mut crate::Conn,
    ) -> Result<Vec<SenderEntry>, StoreError> {
        sqlx::query(
            "SELECT id, tenant_id, rcpt, pattern, action, added_by, added_at FROM sender_lists ORDER BY id",
        )
        .fetch_all(conn)
        .await?
        .iter()
        .map(entry)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_addresses_or_domains_in_lower_case() {
        assert_eq!(
            sender_pattern(" Boss@Example.COM ").unwrap(),
            "boss@example.com"
        );
        assert_eq!(sender_pattern("@Example.com").unwrap(), "example.com");
        assert_eq!(
            sender_pattern("mail.example.co.jp").unwrap(),
            "mail.example.co.jp"
        );
        assert_eq!(sender_pattern("請求@例え.jp").unwrap(), "請求@例え.jp");
        for bad in [
            "",
            "@",
            "a@",
            "localhost",
            "a@b@c",
            "x@-bad.com",
            "a b@c.com",
            "<a@b.com>",
            "a@b..com",
            "' OR 1=1 --",
        ] {
            assert!(sender_pattern(bad).is_err(), "{bad}");
        }
        assert!(sender_pattern(&format!("{}@x.com", "a".repeat(65))).is_err());
    }
}
