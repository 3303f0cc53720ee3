//! WebAuthn passkeys and the ceremonies (registration, sign-in) in progress.
//!
//! The store keeps what the vault hands it and the vault's MAC over it; it checks neither. The
//! vault refuses a row whose MAC it did not make, so writing to the database adds no passkey.

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError};

/// Most passkeys one account may register.
pub const MAX_PASSKEYS_PER_USER: i64 = 20;

/// Most ceremonies in progress at once, cluster-wide (sign-in needs no account, so this bounds
/// what an anonymous caller can make the store hold; the portal's rate limits come first).
pub const MAX_CEREMONIES: i64 = 10_000;

/// A registered passkey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredPasskey {
    /// Id.
    pub id: i64,
    /// The account.
    pub user_id: i64,
    /// The credential id (base64url).
    pub cred_id: String,
    /// The WebAuthn user handle of the account (a random UUID, the same for all its passkeys).
    pub user_handle: String,
    /// A name for people ("work laptop").
    pub name: String,
    /// The credential as the vault serialised it (public key, counter, flags).
    #[serde(skip)]
    pub passkey: String,
    /// The vault's MAC over the row.
    #[serde(skip)]
    pub mac: String,
    /// Registered (Unix seconds).
    pub created_at: i64,
    /// Last sign-in with it.
    pub last_used_at: Option<i64>,
}

fn passkey(r: &crate::Row0) -> StoredPasskey {
    StoredPasskey {
        id: r.get(0),
        user_id: r.get(1),
        cred_id: r.get(2),
        user_handle: r.get(3),
        name: r.get(4),
        passkey: r.get(5),
        mac: r.get(6),
        created_at: r.get(7),
        last_used_at: r.get(8),
    }
}

/// A ceremony taken back by its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceremony {
    /// `register`, `login` or `step-up`.
    pub purpose: String,
    /// The account (registration and step-up).
    pub user_id: Option<i64>,
    /// The serialised challenge state.
    pub state: String,
    /// The vault's MAC over it.
    pub mac: String,
}

impl Store {
    /// Adds a passkey; refuses a credential already registered (to any account) and more than
    /// [`MAX_PASSKEYS_PER_USER`] per account.
    #[allow(clippy::too_many_arguments)]
    pub async fn passkey_insert(
        &self,
        user_id: i64,
        cred_id: &str,
        user_handle: &str,
        name: &str,
        passkey_json: &str,
        mac: &str,
        now: i64,
    ) -> Result<StoredPasskey, StoreError> {
        let mut tx = self.write_tx().await?;
        let (mine, taken): (i64, i64) = {
            let r = sqlx::query(
                "SELECT (SELECT count(*) FROM passkeys WHERE user_id = $1),
                        (SELECT count(*) FROM passkeys WHERE cred_id = $2)",
            )
            .bind(user_id)
            .bind(cred_id)
            .fetch_one(&mut *tx)
            .await?;
            (r.get(0), r.get(1))
        };
        if taken > 0 {
            return Err(StoreError::Invalid(
                "this passkey is already registered".into(),
            ));
        }
        if mine >= MAX_PASSKEYS_PER_USER {
            return Err(StoreError::Invalid(format!(
                "{MAX_PASSKEYS_PER_USER} passkeys already: remove one first"
            )));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO passkeys (user_id, cred_id, user_handle, name, passkey, mac, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(user_id)
        .bind(cred_id)
        .bind(user_handle)
        .bind(name)
        .bind(passkey_json)
        .bind(mac)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(StoredPasskey {
            id,
            user_id,
            cred_id: cred_id.into(),
            user_handle: user_handle.into(),
            name: name.into(),
            passkey: passkey_json.into(),
            mac: mac.into(),
            created_at: now,
            last_used_at: None,
        })
    }

    /// An account's passkeys, oldest first.
    pub async fn passkeys_of(&self, user_id: i64) -> Result<Vec<StoredPasskey>, StoreError> {
        Ok(sqlx::query(
            "SELECT id, user_id, cred_id, user_handle, name, passkey, mac, created_at, last_used_at
             FROM passkeys WHERE user_id = $1 ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(passkey)
        .collect())
    }

    /// The passkey with this credential id.
    pub async fn passkey_by_cred(
        &self,
        cred_id: &str,
    ) -> Result<Option<StoredPasskey>, StoreError> {
        Ok(sqlx::query(
            "SELECT id, user_id, cred_id, user_handle, name, passkey, mac, created_at, last_used_at
             FROM passkeys WHERE cred_id = $1",
        )
        .bind(cred_id)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(passkey))
    }

    /// Notes a sign-in with a passkey and stores its updated state (counter, flags).
    pub async fn passkey_used(
        &self,
        id: i64,
        passkey_json: &str,
        mac: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE passkeys SET passkey = $1, mac = $2, last_used_at = $3 WHERE id = $4")
            .bind(passkey_json)
            .bind(mac)
            .bind(now)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Removes one of an account's passkeys.
    pub async fn passkey_delete(&self, id: i64, user_id: i64) -> Result<(), StoreError> {
        let n = sqlx::query("DELETE FROM passkeys WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(self.pool())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("no passkey {id}")));
        }
        Ok(())
    }

    /// Keeps a ceremony's state until `expires_at`; drops expired ones first and refuses
    /// beyond [`MAX_CEREMONIES`] live ones.
    #[allow(clippy::too_many_arguments)]
    pub async fn ceremony_put(
        &self,
        id_mac: &str,
        purpose: &str,
        user_id: Option<i64>,
        state: &str,
        mac: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let live: i64 = sqlx::query_scalar("SELECT count(*) FROM webauthn_ceremonies")
            .fetch_one(&mut *tx)
            .await?;
        if live >= MAX_CEREMONIES {
            return Err(StoreError::Invalid(
                "too many passkey sign-ins in progress: try again in a minute".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO webauthn_ceremonies (id_mac, purpose, user_id, state, mac, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id_mac)
        .bind(purpose)
        .bind(user_id)
        .bind(state)
        .bind(mac)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes a live ceremony out (once: a second take, or one after expiry, finds nothing).
    pub async fn ceremony_take(
        &self,
        id_mac: &str,
        now: i64,
    ) -> Result<Option<Ceremony>, StoreError> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "SELECT purpose, user_id, state, mac, expires_at FROM webauthn_ceremonies WHERE id_mac = $1",
        )
        .bind(id_mac)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        sqlx::query("DELETE FROM webauthn_ceremonies WHERE id_mac = $1")
            .bind(id_mac)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let expires_at: i64 = row.get(4);
        Ok((expires_at > now).then(|| Ceremony {
            purpose: row.get(0),
            user_id: row.get(1),
            state: row.get(2),
            mac: row.get(3),
        }))
    }
}
