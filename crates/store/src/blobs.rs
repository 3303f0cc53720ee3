//! The blob store for sealed objects (quarantined messages): one trait, two implementations —
//! a local directory (default) and an S3-compatible object store. Blobs are opaque sealed
//! bytes; nothing here can read them.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use crate::StoreError;

/// A boxed future of a blob operation (the trait stays object safe).
pub type BlobFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where sealed blobs live.
pub trait BlobStore: Send + Sync {
    /// Stores `data` under `key` durably (on stable storage, or acknowledged by the object
    /// store, when this returns).
    fn put<'a>(&'a self, key: &'a str, data: Vec<u8>) -> BlobFuture<'a, ()>;
    /// Reads a blob.
    fn get<'a>(&'a self, key: &'a str) -> BlobFuture<'a, Vec<u8>>;
    /// Deletes a blob (absent is fine).
    fn delete<'a>(&'a self, key: &'a str) -> BlobFuture<'a, ()>;
    /// Where the blobs are, for a person (no credentials).
    fn describe(&self) -> String;
}

/// Checks a blob key: `/`-separated segments of `[A-Za-z0-9._-]`, no `.` or `..`.
fn checked(key: &str) -> Result<&str, StoreError> {
    let ok = !key.is_empty()
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if ok {
        Ok(key)
    } else {
        Err(StoreError::Invalid(format!("bad blob key {key:?}")))
    }
}

/// Blobs as files under a directory (made mode 0770: the roles that hold blobs — mx writes,
/// the vault reads and deletes — share its group; its parent keeps others out), written with
/// fsync and an atomic rename.
pub struct LocalBlobs {
    root: Arc<PathBuf>,
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Invalid(format!("blob store: {e}"))
}

impl LocalBlobs {
    /// A store under `root` (created if missing).
    pub fn new(root: &Path) -> Result<Self, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        if !root.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o770)
                .create(root)
                .map_err(io)?;
        }
        Ok(Self {
            root: Arc::new(root.to_path_buf()),
        })
    }

    /// Runs file work off the async threads.
    fn blocking<'a, T: Send + 'static>(
        &'a self,
        key: &'a str,
        f: impl FnOnce(&Path, PathBuf) -> Result<T, StoreError> + Send + 'static,
    ) -> BlobFuture<'a, T> {
        let root = self.root.clone();
        Box::pin(async move {
            let path = root.join(checked(key)?);
            tokio::task::spawn_blocking(move || f(&root, path))
                .await
                .map_err(|e| StoreError::Invalid(format!("blob store: {e}")))?
        })
    }
}

impl BlobStore for LocalBlobs {
    fn put<'a>(&'a self, key: &'a str, data: Vec<u8>) -> BlobFuture<'a, ()> {
        self.blocking(key, move |root, path| {
            let dir = path.parent().unwrap_or(root);
            std::fs::create_dir_all(dir).map_err(io)?;
            let tmp = path.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&data).map_err(io)?;
            f.sync_all().map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BlobFuture<'a, Vec<u8>> {
        let name = key.to_string();
        self.blocking(key, move |_, path| {
            std::fs::read(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => StoreError::NotFound(format!("no blob {name}")),
                _ => io(e),
            })
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BlobFuture<'a, ()> {
        self.blocking(key, |_, path| match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        })
    }

    fn describe(&self) -> String {
        format!("directory {}", self.root.display())
    }
}

/// Where an S3-compatible store is and how to reach it.
#[derive(Clone)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint URL for S3-compatible servers (`http://127.0.0.1:9000`); `None` for AWS.
    pub endpoint: Option<String>,
    /// Region (`us-east-1` unless the server needs another).
    pub region: String,
    /// Key prefix inside the bucket (`sekisho/quarantine`), may be empty.
    pub prefix: String,
    /// Access key id; `None` uses the environment (`AWS_ACCESS_KEY_ID`, instance roles).
    pub access_key_id: Option<String>,
    /// Secret access key; `None` uses the environment.
    pub secret_access_key: Option<zeroize::Zeroizing<String>>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Blobs in an S3-compatible object store (through `object_store`). Objects are sealed
/// before they get here; the store only ever sees ciphertext.
pub struct S3Blobs {
    store: object_store::aws::AmazonS3,
    prefix: String,
    describe: String,
}

fn s3_err(e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { path, .. } => {
            StoreError::NotFound(format!("no blob {path}"))
        }
        other => StoreError::Invalid(format!("object store: {other}")),
    }
}

impl S3Blobs {
    /// A client for `cfg` (no request is made until the first operation).
    pub fn new(cfg: &S3Config) -> Result<Self, StoreError> {
        use object_store::aws::AmazonS3Builder;
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region);
        if let Some(endpoint) = &cfg.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(id) = &cfg.access_key_id {
            b = b.with_access_key_id(id);
        }
        if let Some(secret) = &cfg.secret_access_key {
            b = b.with_secret_access_key(secret.as_str());
        }
        let store = b
            .build()
            .map_err(|e| StoreError::Invalid(format!("object store: {e}")))?;
        Ok(Self {
            store,
            prefix: cfg.prefix.trim_matches('/').to_string(),
            describe: format!(
                "s3://{}/{} at {}",
                cfg.bucket,
                cfg.prefix.trim_matches('/'),
                cfg.endpoint.as_deref().unwrap_or("AWS")
            ),
        })
    }

    fn path(&self, key: &str) -> Result<object_store::path::Path, StoreError> {
        let key = checked(key)?;
        let full = if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        };
        object_store::path::Path::parse(full)
            .map_err(|e| StoreError::Invalid(format!("bad blob key: {e}")))
    }
}

impl BlobStore for S3Blobs {
    fn put<'a>(&'a self, key: &'a str, data: Vec<u8>) -> BlobFuture<'a, ()> {
        Box::pin(async move {
            use object_store::ObjectStoreExt;
            self.store
                .put(&self.path(key)?, data.into())
                .await
                .map(|_| ())
                .map_err(s3_err)
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BlobFuture<'a, Vec<u8>> {
        Box::pin(async move {
            use object_store::ObjectStoreExt;
            let got = self.store.get(&self.path(key)?).await.map_err(s3_err)?;
            Ok(got.bytes().await.map_err(s3_err)?.to_vec())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BlobFuture<'a, ()> {
        Box::pin(async move {
            use object_store::ObjectStoreExt;
            match self.store.delete(&self.path(key)?).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(s3_err(e)),
            }
        })
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_delete_and_key_hygiene() {
        let d = tempfile::tempdir().unwrap();
        let b = LocalBlobs::new(d.path()).unwrap();
        b.put("7/abc.age", b"sealed".to_vec()).await.unwrap();
        assert_eq!(b.get("7/abc.age").await.unwrap(), b"sealed");
        b.delete("7/abc.age").await.unwrap();
        assert!(matches!(
            b.get("7/abc.age").await,
            Err(StoreError::NotFound(_))
        ));
        b.delete("7/abc.age").await.unwrap();
        for bad in ["../x", "/etc/passwd", "a//b", "a/../b", ""] {
            assert!(b.put(bad, b"x".to_vec()).await.is_err(), "{bad}");
        }
        let s3 = S3Blobs::new(&S3Config {
            bucket: "b".into(),
            endpoint: Some("http://127.0.0.1:9".into()),
            region: "us-east-1".into(),
            prefix: "/q/".into(),
            access_key_id: Some("id".into()),
            secret_access_key: Some(zeroize::Zeroizing::new("secret".into())),
        })
        .unwrap();
        assert_eq!(s3.path("7/abc.age").unwrap().as_ref(), "q/7/abc.age");
        assert!(s3.path("../x").is_err());
        assert!(!format!("{:?}", s3.describe()).contains("secret"));
    }
}
