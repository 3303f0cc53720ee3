//! The blob store for sealed objects (quarantined messages): one trait, a local directory
//! implementation (default). Blobs are opaque sealed bytes; nothing here can read them.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::StoreError;

/// Where sealed blobs live.
pub trait BlobStore: Send + Sync {
    /// Stores `data` under `key` durably (it is on stable storage when this returns).
    fn put(&self, key: &str, data: &[u8]) -> Result<(), StoreError>;
    /// Reads a blob.
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError>;
    /// Deletes a blob (absent is fine).
    fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// Blobs as files under a directory (mode 0700), written with fsync and an atomic rename.
pub struct LocalBlobs {
    root: PathBuf,
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Invalid(format!("blob store: {e}"))
}

impl LocalBlobs {
    /// A store under `root` (created if missing).
    pub fn new(root: &Path) -> Result<Self, StoreError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(root).map_err(io)?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let ok = !key.is_empty()
            && key.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            });
        if !ok {
            return Err(StoreError::Invalid(format!("bad blob key {key:?}")));
        }
        Ok(self.root.join(key))
    }
}

impl BlobStore for LocalBlobs {
    fn put(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(data).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        std::fs::read(self.path(key)?).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound(format!("no blob {key}")),
            _ => io(e),
        })
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        match std::fs::remove_file(self.path(key)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_delete_and_key_hygiene() {
        let d = tempfile::tempdir().unwrap();
        let b = LocalBlobs::new(d.path()).unwrap();
        b.put("7/abc.age", b"sealed").unwrap();
        assert_eq!(b.get("7/abc.age").unwrap(), b"sealed");
        b.delete("7/abc.age").unwrap();
        assert!(matches!(b.get("7/abc.age"), Err(StoreError::NotFound(_))));
        b.delete("7/abc.age").unwrap();
        for bad in ["../x", "/etc/passwd", "a//b", "a/../b", ""] {
            assert!(b.put(bad, b"x").is_err(), "{bad}");
        }
    }
}
