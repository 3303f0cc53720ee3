//! KEK rotation survives a crash at any point: the vault reopens with a KEK that opens every
//! stored tenant key.

use std::sync::Arc;

use store::Store;
use store::blobs::LocalBlobs;
use vault::proto::{Request, Response};
use vault::server::Vault;
use vault::{Kek, rewrap, unwrap_identity};

async fn setup(dir: &std::path::Path) -> (Store, Arc<LocalBlobs>) {
    let store = Store::open_sqlite(&dir.join("db")).await.unwrap();
    for name in ["a", "b"] {
        store
            .add_tenant(name, &[format!("{name}.test")], "maildir:///tmp")
            .await
            .unwrap();
    }
    (
        store,
        Arc::new(LocalBlobs::new(&dir.join("blobs")).unwrap()),
    )
}

async fn make_keys(v: &Vault) {
    for t in [1, 2] {
        let (r, _) = v.handle(Request::TenantRecipient { tenant: t }).await;
        assert!(matches!(r, Response::Recipient { .. }), "{r:?}");
    }
}

fn opens_all(kek: &Kek, keys: &[store::TenantKey]) -> bool {
    keys.iter().all(|k| {
        unwrap_identity(
            kek,
            k.tenant_id,
            &k.recipient,
            k.wrapped.as_deref().unwrap(),
        )
        .is_ok()
    })
}

#[tokio::test]
async fn a_rotation_interrupted_after_its_commit_is_completed_on_open() {
    let d = tempfile::tempdir().unwrap();
    let (store, blobs) = setup(d.path()).await;
    let kek_path = d.path().join("vault/kek");
    let v = Vault::open(store.clone(), blobs.clone(), &kek_path)
        .await
        .unwrap();
    make_keys(&v).await;
    drop(v);
    // Crash after the database commit, before the rename.
    let old = Kek::load_or_create(&kek_path).unwrap();
    let new = Kek::load_or_create(&kek_path.with_extension("next")).unwrap();
    let mut keys = store.wrapped_tenant_keys().await.unwrap();
    for k in &mut keys {
        k.wrapped = Some(
            rewrap(
                &old,
                &new,
                k.tenant_id,
                &k.recipient,
                k.wrapped.as_deref().unwrap(),
            )
            .unwrap(),
        );
    }
    store.rewrap_tenant_keys(&keys).await.unwrap();
    let _v = Vault::open(store.clone(), blobs.clone(), &kek_path)
        .await
        .unwrap();
    assert!(!kek_path.with_extension("next").exists());
    let now = Kek::load_or_create(&kek_path).unwrap();
    assert!(opens_all(&now, &store.wrapped_tenant_keys().await.unwrap()));
}

#[tokio::test]
async fn a_rotation_interrupted_before_its_commit_is_abandoned_on_open() {
    let d = tempfile::tempdir().unwrap();
    let (store, blobs) = setup(d.path()).await;
    let kek_path = d.path().join("vault/kek");
    let v = Vault::open(store.clone(), blobs.clone(), &kek_path)
        .await
        .unwrap();
    make_keys(&v).await;
    drop(v);
    // Crash after writing the new KEK, before the database commit.
    let _new = Kek::load_or_create(&kek_path.with_extension("next")).unwrap();
    let _v = Vault::open(store.clone(), blobs, &kek_path).await.unwrap();
    assert!(!kek_path.with_extension("next").exists());
    let now = Kek::load_or_create(&kek_path).unwrap();
    assert!(opens_all(&now, &store.wrapped_tenant_keys().await.unwrap()));
}
