//! Tenants' DKIM signing keys (the vault's table: mx has no grant on it). The private key is
//! stored sealed under the KEK; listing shows public halves and states only.

use proto::nouns::{DkimAlgorithm, DkimKeyState};
use sqlx::Row;

use crate::{Store, StoreError, normalize_domain, unix_now};

/// Longest selector accepted (a DNS label).
pub const MAX_SELECTOR_LEN: usize = 63;

/// A key as listed: everything but the private half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimKey {
    /// The tenant it signs for.
    pub tenant_id: i64,
    /// The signing domain (`d=`).
    pub domain: String,
    /// The selector (`s=`).
    pub selector: String,
    /// RSA-2048 or Ed25519.
    pub algorithm: DkimAlgorithm,
    /// The DNS record's `p=` bytes.
    pub public_key: Vec<u8>,
    /// Where it is in its life.
    pub state: DkimKeyState,
    /// When it was made (Unix seconds).
    pub created_at: i64,
}

/// A key's sealed private half, for the vault to open (signing, KEK rotation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedDkimKey {
    /// The tenant it signs for.
    pub tenant_id: i64,
    /// The signing domain (`d=`).
    pub domain: String,
    /// The selector (`s=`).
    pub selector: String,
    /// RSA-2048 or Ed25519.
    pub algorithm: DkimAlgorithm,
    /// Where it is in its life.
    pub state: DkimKeyState,
    /// The PKCS#8 private key, sealed under the KEK.
    pub sealed: Vec<u8>,
}

/// A selector as DNS takes it: one label of letters, digits and hyphens (dots would put the
/// record somewhere else), lower-cased.
pub fn normalize_selector(s: &str) -> Result<String, StoreError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_SELECTOR_LEN
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok {
        return Err(StoreError::Invalid(format!(
            "{s:?} is not a DKIM selector: one DNS label of letters, digits and hyphens, at most {MAX_SELECTOR_LEN} characters"
        )));
    }
    Ok(s.to_ascii_lowercase())
}

fn parse<T: std::str::FromStr<Err = String>>(v: String) -> Result<T, StoreError> {
    v.parse().map_err(StoreError::Invalid)
}

/// The state of one key (normalized domain and selector), or `NotFound` naming it.
async fn key_state(
    tx: &mut crate::Conn,
    tenant_id: i64,
    domain: &str,
    selector: &str,
) -> Result<DkimKeyState, StoreError> {
    let state: Option<String> = sqlx::query_scalar(
        "SELECT state FROM dkim_keys WHERE tenant_id = $1 AND domain = $2 AND selector = $3",
    )
    .bind(tenant_id)
    .bind(domain)
    .bind(selector)
    .fetch_optional(&mut *tx)
    .await?;
    state.map(parse).transpose()?.ok_or_else(|| {
        StoreError::NotFound(format!("{domain} has no key with selector {selector:?}"))
    })
}

impl Store {
    /// Stores a new key for one of the tenant's domains: active if the domain has none yet,
    /// else pending (it signs once `dkim_rotate` makes it active). Returns its state.
    pub async fn dkim_create(
        &self,
        key: &DkimKey,
        sealed: &[u8],
    ) -> Result<DkimKeyState, StoreError> {
        let domain = normalize_domain(&key.domain)?;
        let selector = normalize_selector(&key.selector)?;
        let mut tx = self.write_tx().await?;
        let owned: Option<i64> =
            sqlx::query_scalar("SELECT tenant_id FROM domains WHERE domain = $1")
                .bind(&domain)
                .fetch_optional(&mut *tx)
                .await?;
        if owned != Some(key.tenant_id) {
            return Err(StoreError::Invalid(format!(
                "{domain} is not one of the tenant's domains (add it with `sekisho tenant add-domain`)"
            )));
        }
        let active: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM dkim_keys WHERE tenant_id = $1 AND domain = $2 AND state = 'active'",
        )
        .bind(key.tenant_id)
        .bind(&domain)
        .fetch_one(&mut *tx)
        .await?;
        let state = match active {
            0 => DkimKeyState::Active,
            _ => DkimKeyState::Pending,
        };
        let done = sqlx::query(
            "INSERT INTO dkim_keys (tenant_id, domain, selector, algorithm, public_key, sealed, state, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(key.tenant_id)
        .bind(&domain)
        .bind(&selector)
        .bind(key.algorithm.as_str())
        .bind(&key.public_key)
        .bind(sealed)
        .bind(state.as_str())
        .bind(unix_now())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "{domain} already has a key with selector {selector:?}: choose another selector"
            )));
        }
        // mx drops what it holds about keys when the directory generation moves.
        Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(state)
    }

    /// A tenant's keys (every tenant's with `None`), by domain and selector.
    pub async fn dkim_list(&self, tenant_id: Option<i64>) -> Result<Vec<DkimKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, domain, selector, algorithm, public_key, state, created_at FROM dkim_keys
             WHERE $1 IS NULL OR tenant_id = $1 ORDER BY tenant_id, domain, selector",
        )
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(DkimKey {
                    tenant_id: r.get(0),
                    domain: r.get(1),
                    selector: r.get(2),
                    algorithm: parse(r.get(3))?,
                    public_key: r.get(4),
                    state: parse(r.get(5))?,
                    created_at: r.get(6),
                })
            })
            .collect()
    }

    /// Every sealed key (KEK rotation, backup checks); `only` narrows to one tenant's key
    /// of a domain that is still the tenant's (signing).
    pub async fn dkim_sealed(
        &self,
        only: Option<(i64, &str)>,
    ) -> Result<Vec<SealedDkimKey>, StoreError> {
        let (tenant, domain) = only.map_or((None, None), |(t, d)| (Some(t), Some(d)));
        let rows = sqlx::query(
            "SELECT k.tenant_id, k.domain, k.selector, k.algorithm, k.state, k.sealed FROM dkim_keys k
             WHERE $1 IS NULL OR (k.tenant_id = $1 AND k.domain = $2 AND EXISTS
                 (SELECT 1 FROM domains d WHERE d.domain = k.domain AND d.tenant_id = k.tenant_id))
             ORDER BY k.tenant_id, k.domain, k.selector",
        )
        .bind(tenant)
        .bind(domain)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(SealedDkimKey {
                    tenant_id: r.get(0),
                    domain: r.get(1),
                    selector: r.get(2),
                    algorithm: parse(r.get(3))?,
                    state: parse(r.get(4))?,
                    sealed: r.get(5),
                })
            })
            .collect()
    }

    /// Makes a pending key the domain's active one; the active one before it is retired
    /// (it signs nothing more; its record stays published until `dkim_remove`).
    pub async fn dkim_rotate(
        &self,
        tenant_id: i64,
        domain: &str,
        selector: &str,
    ) -> Result<(), StoreError> {
        let (domain, selector) = (normalize_domain(domain)?, normalize_selector(selector)?);
        let mut tx = self.write_tx().await?;
        match key_state(&mut tx, tenant_id, &domain, &selector).await? {
            DkimKeyState::Pending => {}
            s => {
                return Err(StoreError::Invalid(format!(
                    "the key {selector:?} of {domain} is {s}: only a pending key (made by `dkim generate` while another signs) can become active"
                )));
            }
        }
        sqlx::query(
            "UPDATE dkim_keys SET state = 'retired' WHERE tenant_id = $1 AND domain = $2 AND state = 'active'",
        )
        .bind(tenant_id)
        .bind(&domain)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE dkim_keys SET state = 'active' WHERE tenant_id = $1 AND domain = $2 AND selector = $3",
        )
        .bind(tenant_id)
        .bind(&domain)
        .bind(&selector)
        .execute(&mut *tx)
        .await?;
        // mx drops what it holds about keys when the directory generation moves.
        Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a pending or retired key (the active one signs: rotate first).
    pub async fn dkim_remove(
        &self,
        tenant_id: i64,
        domain: &str,
        selector: &str,
    ) -> Result<(), StoreError> {
        let (domain, selector) = (normalize_domain(domain)?, normalize_selector(selector)?);
        let mut tx = self.write_tx().await?;
        if key_state(&mut tx, tenant_id, &domain, &selector).await? == DkimKeyState::Active {
            return Err(StoreError::Invalid(format!(
                "the key {selector:?} signs {domain}'s mail: make another active with `dkim rotate` first"
            )));
        }
        sqlx::query("DELETE FROM dkim_keys WHERE tenant_id = $1 AND domain = $2 AND selector = $3")
            .bind(tenant_id)
            .bind(&domain)
            .bind(&selector)
            .execute(&mut *tx)
            .await?;
        // mx drops what it holds about keys when the directory generation moves.
        Self::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
