//! Portal accounts, their sessions and one-time enrolment links.
//!
//! Only the vault writes here (it alone can hash a session token into `id_mac` and seal a
//! TOTP secret); the portal reads nothing of this table directly. A user row never carries a
//! readable secret: the password is argon2id, the second factor is sealed.

use serde::Serialize;
use sqlx::Row;

use proto::Role;

use crate::{Store, StoreError};

/// The role stored in a row (a value no Sekisho wrote is an error, not a guess).
fn role_of(r: &crate::Row0) -> Result<Role, StoreError> {
    r.get::<String, _>("role")
        .parse()
        .map_err(StoreError::Invalid)
}

/// A portal account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Id.
    pub id: i64,
    /// Login name (an e-mail address).
    pub email: String,
    /// Its role.
    pub role: Role,
    /// The tenant (tenant admins and end users only).
    pub tenant_id: Option<i64>,
    /// The tenant's name.
    pub tenant: Option<String>,
    /// argon2id PHC string.
    #[serde(skip)]
    pub password_hash: String,
    /// The TOTP secret sealed by the vault.
    #[serde(skip)]
    pub totp_sealed: Vec<u8>,
    /// The last TOTP step accepted (a code is never accepted twice).
    #[serde(skip)]
    pub totp_last_step: Option<i64>,
    /// Enrolment finished (second factor confirmed).
    pub active: bool,
    /// Failed logins since the last success.
    pub failed_logins: i64,
    /// No login before this time (lockout).
    pub locked_until: i64,
    /// Created.
    pub created_at: i64,
}

/// A one-time enrolment link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// The e-mail address the account will have.
    pub email: String,
    /// Its role.
    pub role: Role,
    /// Its tenant.
    pub tenant_id: Option<i64>,
    /// Expiry.
    pub expires_at: i64,
    /// The account made from it, while its second factor is not yet confirmed.
    pub user_id: Option<i64>,
}

/// An invitation not yet taken up: its link is live and no active account has its address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invitation {
    /// The login name the account will have.
    pub email: String,
    /// Its role.
    pub role: Role,
    /// The tenant's name (tenant admins and end users).
    pub tenant: Option<String>,
    /// Who made the link (`first-start`, or the inviting principal).
    pub invited_by: String,
    /// When the link stops working (Unix seconds).
    pub expires_at: i64,
}

/// One account query: the shared column list (read by [`user`]) and a `WHERE` clause.
macro_rules! select_users {
    ($where:literal) => {
        concat!(
            "SELECT u.id, u.email, u.role, u.tenant_id, t.name AS tenant, u.password_hash,
             u.totp_sealed, u.totp_last_step, u.active, u.failed_logins, u.locked_until,
             u.created_at FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id ",
            $where
        )
    };
}

fn user(r: &crate::Row0) -> Result<User, StoreError> {
    Ok(User {
        id: r.get("id"),
        email: r.get("email"),
        role: role_of(r)?,
        tenant_id: r.get("tenant_id"),
        tenant: r.get("tenant"),
        password_hash: r.get("password_hash"),
        totp_sealed: r.get("totp_sealed"),
        totp_last_step: r.get("totp_last_step"),
        active: r.get::<i64, _>("active") != 0,
        failed_logins: r.get("failed_logins"),
        locked_until: r.get("locked_until"),
        created_at: r.get("created_at"),
    })
}

impl Store {
    /// Number of active accounts (enrolment finished).
    pub async fn user_count(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM users WHERE active = 1")
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// Accounts, optionally of one tenant only.
    pub async fn user_list(&self, tenant_id: Option<i64>) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(select_users!(
            "WHERE $1 IS NULL OR u.tenant_id = $1 ORDER BY u.id"
        ))
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(user).collect()
    }

    /// Invitations whose link is still live and whose person has no active account yet,
    /// optionally of one tenant only; the latest link per address.
    pub async fn invitations_pending(
        &self,
        tenant_id: Option<i64>,
        now: i64,
    ) -> Result<Vec<Invitation>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.email, e.role, t.name AS tenant, e.created_by, max(e.expires_at) AS expires_at
             FROM enrolments e LEFT JOIN tenants t ON t.id = e.tenant_id
             WHERE e.expires_at > $1 AND ($2 IS NULL OR e.tenant_id = $2)
               AND NOT EXISTS (SELECT 1 FROM users u WHERE u.email = e.email AND u.active = 1)
             GROUP BY e.email, e.role, t.name, e.created_by ORDER BY e.email",
        )
        .bind(now)
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Invitation {
                    email: r.get("email"),
                    role: role_of(r)?,
                    tenant: r.get("tenant"),
                    invited_by: r.get("created_by"),
                    expires_at: r.get("expires_at"),
                })
            })
            .collect()
    }

    /// The account with this login name.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(select_users!("WHERE u.email = $1"))
            .bind(email.to_ascii_lowercase())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user).transpose()
    }

    /// The account with this id.
    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(select_users!("WHERE u.id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user).transpose()
    }

    /// Until when a first-start enrolment link is live, if one is (`now` in Unix seconds).
    pub async fn first_enrolment_until(&self, now: i64) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT max(expires_at) FROM enrolments WHERE created_by = 'first-start' AND expires_at > $1",
        )
        .bind(now)
        .fetch_one(self.pool())
        .await?)
    }

    /// Stores an enrolment link. With `first`, only while no account exists, and replacing
    /// earlier first-start links (each start of an unenrolled node prints a fresh one).
    #[allow(clippy::too_many_arguments)]
    pub async fn enrolment_create(
        &self,
        token_mac: &str,
        email: &str,
        role: Role,
        tenant_id: Option<i64>,
        created_by: &str,
        now: i64,
        expires_at: i64,
        first: bool,
    ) -> Result<(), StoreError> {
        if matches!(role, Role::Operator | Role::Auditor) == tenant_id.is_some() {
            return Err(StoreError::Invalid(
                "tenant admins and users belong to a tenant; operators and auditors to none".into(),
            ));
        }
        let mut tx = self.write_tx().await?;
        if first {
            let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE active = 1")
                .fetch_one(&mut *tx)
                .await?;
            if users > 0 {
                return Err(StoreError::Conflict(
                    "accounts exist already: invite further users with `sekisho user invite`"
                        .into(),
                ));
            }
            // An earlier first-start link, and the half-made account of an enrolment that was
            // abandoned after its first step, give way to the new link.
            sqlx::query(
                "DELETE FROM users WHERE active = 0 AND id IN
                 (SELECT user_id FROM enrolments WHERE created_by = 'first-start')",
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM enrolments WHERE created_by = 'first-start'")
                .execute(&mut *tx)
                .await?;
        } else if self.user_by_email(email).await?.is_some_and(|u| u.active) {
            return Err(StoreError::Conflict(format!(
                "an account {email} exists already"
            )));
        }
        sqlx::query(
            "INSERT INTO enrolments (token_mac, email, role, tenant_id, created_by, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token_mac)
        .bind(email.to_ascii_lowercase())
        .bind(role.as_str())
        .bind(tenant_id)
        .bind(created_by)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The unexpired enrolment link with this MAC.
    pub async fn enrolment_get(
        &self,
        token_mac: &str,
        now: i64,
    ) -> Result<Option<Enrolment>, StoreError> {
        let row = sqlx::query(
            "SELECT email, role, tenant_id, expires_at, user_id FROM enrolments
             WHERE token_mac = $1 AND expires_at > $2",
        )
        .bind(token_mac)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(Enrolment {
                email: r.get("email"),
                role: role_of(&r)?,
                tenant_id: r.get("tenant_id"),
                expires_at: r.get("expires_at"),
                user_id: r.get("user_id"),
            })
        })
        .transpose()
    }

    /// Creates (or, on a repeated first step, replaces) the not yet active account of an
    /// enrolment. Returns its id.
    pub async fn enrolment_set_user(
        &self,
        token_mac: &str,
        e: &Enrolment,
        password_hash: &str,
        totp_sealed_for: impl Fn(i64) -> Vec<u8>,
        now: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.write_tx().await?;
        if let Some(id) = e.user_id {
            sqlx::query("DELETE FROM users WHERE id = $1 AND active = 0")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
            .bind(&e.email)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict(format!(
                "an account {} exists already",
                e.email
            )));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (email, role, tenant_id, password_hash, totp_sealed, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&e.email)
        .bind(e.role.as_str())
        .bind(e.tenant_id)
        .bind(password_hash)
        .bind(Vec::<u8>::new())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE users SET totp_sealed = $1 WHERE id = $2")
            .bind(totp_sealed_for(id))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE enrolments SET user_id = $1 WHERE token_mac = $2")
            .bind(id)
            .bind(token_mac)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Activates the account of an enrolment (its second factor was confirmed at `step`) and
    /// uses the link up.
    pub async fn enrolment_finish(
        &self,
        token_mac: &str,
        user_id: i64,
        step: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE users SET active = 1, totp_last_step = $1 WHERE id = $2")
            .bind(step)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE enrolments SET user_id = NULL WHERE token_mac = $1")
            .bind(token_mac)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM enrolments WHERE token_mac = $1")
            .bind(token_mac)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Notes a failed login; `locked_until` is the lockout the caller computed.
    pub async fn user_login_failed(&self, id: i64, locked_until: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE users SET failed_logins = failed_logins + 1, locked_until = $1 WHERE id = $2",
        )
        .bind(locked_until)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Notes a successful login (TOTP step used) and opens a session.
    #[allow(clippy::too_many_arguments)]
    pub async fn session_open(
        &self,
        user_id: i64,
        step: i64,
        id_mac: &str,
        client_ip: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE users SET failed_logins = 0, locked_until = 0, totp_last_step = $1 WHERE id = $2",
        )
        .bind(step)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO user_sessions (id_mac, user_id, client_ip, created_at, last_seen, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id_mac)
        .bind(user_id)
        .bind(client_ip)
        .bind(now)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live session with this MAC and its user: expired sessions (absolute, or idle
    /// longer than `idle` seconds) are deleted and not returned; a live one is touched.
    pub async fn session_resolve(
        &self,
        id_mac: &str,
        now: i64,
        idle: i64,
    ) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(
            "SELECT user_id, last_seen, expires_at FROM user_sessions WHERE id_mac = $1",
        )
        .bind(id_mac)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let (last_seen, expires_at): (i64, i64) = (row.get("last_seen"), row.get("expires_at"));
        if now >= expires_at || now - last_seen > idle {
            self.session_close(id_mac).await?;
            return Ok(None);
        }
        sqlx::query("UPDATE user_sessions SET last_seen = $1 WHERE id_mac = $2")
            .bind(now)
            .bind(id_mac)
            .execute(self.pool())
            .await?;
        let user = self.user_by_id(row.get("user_id")).await?;
        Ok(user.filter(|u| u.active))
    }

    /// Marks a session as re-confirmed with the second factor until `until` (the vault's
    /// `mac` over it) and notes the TOTP step used.
    pub async fn session_step_up(
        &self,
        id_mac: &str,
        user_id: i64,
        step: i64,
        until: i64,
        mac: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE users SET failed_logins = 0, totp_last_step = $1 WHERE id = $2")
            .bind(step)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE user_sessions SET step_up_until = $1, step_up_mac = $2 WHERE id_mac = $3",
        )
        .bind(until)
        .bind(mac)
        .bind(id_mac)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A session's step-up: `(until, mac)`.
    pub async fn session_step_up_of(&self, id_mac: &str) -> Result<(i64, String), StoreError> {
        let row =
            sqlx::query("SELECT step_up_until, step_up_mac FROM user_sessions WHERE id_mac = $1")
                .bind(id_mac)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map_or((0, String::new()), |r| (r.get(0), r.get(1))))
    }

    /// Replaces a user's recovery codes (their MACs).
    pub async fn recovery_codes_set(
        &self,
        user_id: i64,
        macs: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        for mac in macs {
            sqlx::query("INSERT INTO recovery_codes (user_id, code_mac) VALUES ($1, $2)")
                .bind(user_id)
                .bind(mac)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Uses up an unused recovery code: true if it was one (and is now used).
    pub async fn recovery_code_use(
        &self,
        user_id: i64,
        mac: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let n = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_mac = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .bind(mac)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// How many unused recovery codes a user has.
    pub async fn recovery_codes_left(&self, user_id: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(self.pool())
        .await?)
    }

    /// Ends one session.
    pub async fn session_close(&self, id_mac: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM user_sessions WHERE id_mac = $1")
            .bind(id_mac)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Ends every session of a user (suspension, password change). Returns how many.
    pub async fn sessions_close_user(&self, user_id: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM user_sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(self.pool())
            .await?
            .rows_affected())
    }
}
