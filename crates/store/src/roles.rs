//! PostgreSQL users per role, with the narrowest grants each role's work needs.
//!
//! On SQLite every process that opens the file can write all of it; on PostgreSQL the
//! database itself can say no. `sekisho store grant-roles` (the store's owner) creates one
//! login per role — `<database>_vault`, `<database>_mx` — and a `<database>_portal` that
//! cannot log in and holds no privilege (the portal opens no database: it asks the vault).
//! The vault may read and write every table (it performs the portal's acts and holds the
//! keys anyway); mx may read what delivery and inspection need and write only what the mail
//! path writes — never tenants, routes, domains, recipients, policies, sender lists,
//! accounts, sessions, tokens, lockbox approvals, keys, secrets or audit signatures.
//! Migrations are the owner's: roles connecting as their own user skip them.

use crate::{Engine, Store, StoreError};

/// What `mx` may do to each table it touches (anything unlisted: nothing).
pub const MX_GRANTS: &[(&str, &str)] = &[
    // The directory and the models: read only.
    ("tenants", "SELECT"),
    ("domains", "SELECT"),
    ("recipients", "SELECT"),
    ("filter_policies", "SELECT"),
    ("sender_lists", "SELECT"),
    ("outbound_networks", "SELECT"),
    ("bayes_models", "SELECT"),
    ("bayes_tokens", "SELECT"),
    ("bayes_seen", "SELECT"),
    ("ngram_weights", "SELECT"),
    // What the mail path writes.
    ("sender_history", "SELECT, INSERT"),
    ("quarantine", "SELECT, INSERT, DELETE"),
    ("trace_messages", "SELECT, INSERT, UPDATE, DELETE"),
    ("trace_events", "SELECT, INSERT, DELETE"),
    ("nodes", "SELECT, INSERT, UPDATE"),
    ("detect_events", "SELECT, INSERT, DELETE"),
    ("detect_marks", "SELECT, INSERT, UPDATE, DELETE"),
    ("detect_peaks", "SELECT, INSERT, UPDATE, DELETE"),
    ("alerts", "SELECT, INSERT, UPDATE"),
    ("records", "SELECT, INSERT"),
    ("tls_sessions", "SELECT, INSERT, UPDATE, DELETE"),
    ("tls_reports", "SELECT, INSERT, UPDATE, DELETE"),
    ("meta", "SELECT, INSERT, UPDATE"),
];

/// A role's PostgreSQL login.
#[derive(Clone)]
pub struct RoleLogin {
    /// The role (`vault`, `mx`).
    pub role: &'static str,
    /// Its database user.
    pub user: String,
    /// Its password (random; kept in a file only that role reads).
    pub password: zeroize::Zeroizing<String>,
}

/// The database user of `role` for the database `db`.
pub fn role_user(db: &str, role: &str) -> String {
    format!("{db}_{role}")
}

/// Quotes an identifier for PostgreSQL.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl Store {
    /// True if `user` exists and may log in (PostgreSQL).
    pub async fn login_exists(&self, user: &str) -> Result<bool, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname = $1 AND rolcanlogin")
                .bind(user)
                .fetch_one(self.pool())
                .await?;
        Ok(n > 0)
    }

    /// The table privileges granted to `user` (table, privilege), sorted (PostgreSQL).
    pub async fn table_privileges(&self, user: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT table_name::text, privilege_type::text FROM information_schema.table_privileges
             WHERE grantee = $1 AND table_schema = 'public' ORDER BY table_name, privilege_type",
        )
        .bind(user)
        .fetch_all(self.pool())
        .await?)
    }

    /// The current database's name (PostgreSQL).
    pub async fn database_name(&self) -> Result<String, StoreError> {
        Ok(sqlx::query_scalar("SELECT current_database()::text")
            .fetch_one(self.pool())
            .await?)
    }

    /// Creates (or updates) the roles' logins and grants, as the store's owner. With
    /// `passwords`, each login's password is set to the given one (a fresh login gets it);
    /// without, only the grants are applied again (after a migration added tables).
    pub async fn grant_roles(&self, passwords: &[RoleLogin]) -> Result<(), StoreError> {
        if self.engine != Engine::Postgres {
            return Err(StoreError::Invalid(
                "per-role database users are a PostgreSQL feature: on SQLite the portal opens no database and mx and the vault share the file".into(),
            ));
        }
        let db = self.database_name().await?;
        let (vault, mx, portal) = (
            role_user(&db, "vault"),
            role_user(&db, "mx"),
            role_user(&db, "portal"),
        );
        let mut sql = Vec::new();
        for user in [&vault, &mx, &portal] {
            sql.push(format!(
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{}') THEN CREATE ROLE {} NOLOGIN; END IF; END $$",
                user.replace('\'', "''"),
                ident(user)
            ));
            sql.push(format!(
                "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}",
                ident(user)
            ));
            sql.push(format!(
                "REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {}",
                ident(user)
            ));
        }
        for login in passwords {
            let user = role_user(&db, login.role);
            if !login.password.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(StoreError::Invalid(
                    "a role password is alphanumeric".into(),
                ));
            }
            sql.push(format!(
                "ALTER ROLE {} LOGIN PASSWORD '{}'",
                ident(&user),
                login.password.as_str()
            ));
        }
        sql.push(format!("ALTER ROLE {} NOLOGIN", ident(&portal)));
        for user in [&vault, &mx] {
            sql.push(format!(
                "GRANT CONNECT ON DATABASE {} TO {}",
                ident(&db),
                ident(user)
            ));
            sql.push(format!("GRANT USAGE ON SCHEMA public TO {}", ident(user)));
            sql.push(format!(
                "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}",
                ident(user)
            ));
        }
        sql.push(format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}",
            ident(&vault)
        ));
        sql.push(format!(
            "REVOKE ALL ON TABLE _sqlx_migrations FROM {}",
            ident(&vault)
        ));
        for (table, privileges) in MX_GRANTS {
            sql.push(format!(
                "GRANT {privileges} ON TABLE {table} TO {}",
                ident(&mx)
            ));
        }
        let mut tx = self.pool().begin().await?;
        for s in &sql {
            sqlx::raw_sql(sqlx::AssertSqlSafe(s.clone()))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
