//! A consistent copy of the SQLite store, taken while the node runs (`sekisho backup`).

use std::path::Path;

use crate::{Engine, Store, StoreError};

impl Store {
    /// Writes a consistent copy of this SQLite store to `to` (a file that must not exist yet)
    /// with `VACUUM INTO`: one read transaction, so writers go on and the copy is a single
    /// point in time. PostgreSQL stores are copied with `pg_dump` instead.
    pub async fn sqlite_snapshot(&self, to: &Path) -> Result<(), StoreError> {
        if self.engine() != Engine::Sqlite {
            return Err(StoreError::Invalid(
                "a PostgreSQL store is copied with pg_dump, not a file snapshot".into(),
            ));
        }
        let path = to
            .to_str()
            .ok_or_else(|| StoreError::Invalid(format!("{} is not UTF-8", to.display())))?;
        sqlx::query("VACUUM INTO $1")
            .bind(path)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
