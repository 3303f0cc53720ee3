//! Scratch stores for tests, on either engine, so one test body runs against both
//! ([`engine_matrix!`](crate::engine_matrix)).
//!
//! PostgreSQL scratch stores are fresh databases on the server named by the environment
//! variable `SEKISHO_TEST_POSTGRES` (an admin URL, e.g.
//! `postgres://postgres@127.0.0.1:55432/postgres`; `scripts/test` starts such a server).
//! Without it a PostgreSQL test fails: it never passes silently.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{Engine, Store};

/// The environment variable naming the test PostgreSQL server.
pub const POSTGRES_ENV: &str = "SEKISHO_TEST_POSTGRES";

/// A fresh store of `engine` (SQLite files go in `dir`) and a URL for raw connections to the
/// same database (for tests that tamper with it behind the store's back).
pub async fn scratch(engine: Engine, dir: &Path) -> (Store, String) {
    match engine {
        Engine::Sqlite => {
            let path = dir.join("t.db");
            let store = Store::open_sqlite(&path).await.expect("open sqlite store");
            (store, format!("sqlite://{}", path.display()))
        }
        Engine::Postgres => {
            let url = scratch_database().await;
            let store = Store::open_postgres(&url)
                .await
                .expect("open postgres store");
            (store, url)
        }
    }
}

/// Creates an empty database on the test server and returns its URL.
pub async fn scratch_database() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let admin = std::env::var(POSTGRES_ENV).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_ENV} is not set: PostgreSQL tests need a server \
             (scripts/test starts one; or set it to postgres://user@127.0.0.1:PORT/postgres)"
        )
    });
    let name = format!(
        "sekisho_t{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        crate::unix_now()
    );
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&admin)
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .expect("create a scratch database");
    pool.close().await;
    let mut url = url::Url::parse(&admin).expect("admin url");
    url.set_path(&name);
    url.to_string()
}

/// Runs each named `async fn(Engine)` test once per engine: `sqlite::name` and
/// `postgres::name`.
#[macro_export]
macro_rules! engine_matrix {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::Engine::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::Engine::Postgres).await
            })*
        }
    };
}
