//! DKIM keys in the vault: signatures for the mx token alone, and a key kept open for speed
//! stops signing the moment it is removed or its tenant terminated — the cache never outlives
//! the key.

use std::sync::Arc;

use proto::nouns::DkimAlgorithm;
use proto::vault::{Admin, Request, Response, RoleToken};
use store::Engine;
use store::blobs::LocalBlobs;
use vault::server::Vault;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

async fn admin(v: &Vault, a: Admin) -> Response {
    v.handle(Request::Admin(a), Vec::new()).await.0
}

async fn generate(v: &Vault, selector: &str) {
    let r = admin(
        v,
        Admin::DkimGenerate {
            tenant: "a".into(),
            domain: "a.test".into(),
            selector: selector.into(),
            algorithm: DkimAlgorithm::Ed25519,
            principal: "test".into(),
        },
    )
    .await;
    assert!(matches!(r, Response::DkimKeys { .. }), "{r:?}");
}

async fn sign(v: &Vault, selector: &str, token: &str) -> Response {
    let (r, sig) = v
        .handle(
            Request::DkimSign {
                tenant: proto::TenantId(1),
                domain: "a.test".into(),
                selector: selector.into(),
                role_token: RoleToken(token.into()),
            },
            vec![7; 32],
        )
        .await;
    if r == Response::Signature {
        assert_eq!(sig.len(), 64, "an Ed25519 signature");
    }
    r
}

fn refused(r: &Response) -> bool {
    matches!(r, Response::Refused { .. })
}

async fn a_key_kept_open_stops_signing_when_removed_or_its_tenant_terminated(engine: Engine) {
    let d = tempfile::tempdir().unwrap();
    let (store, _) = store::testing::scratch(engine, d.path()).await;
    store
        .add_tenant("a", &["a.test".into()], "maildir:///tmp")
        .await
        .unwrap();
    let blobs = Arc::new(LocalBlobs::new(&d.path().join("blobs")).unwrap());
    let mut v = Vault::open(store.clone(), blobs, &d.path().join("vault/kek"))
        .await
        .unwrap();
    v.set_mx_token(RoleToken(TOKEN.into()));
    generate(&v, "s1").await;
    // Only the mx token has mail signed; twice (the second from the key kept open).
    assert!(refused(
        &sign(&v, "s1", "0123456789abcdef0123456789abcdee").await
    ));
    assert_eq!(sign(&v, "s1", TOKEN).await, Response::Signature);
    assert_eq!(sign(&v, "s1", TOKEN).await, Response::Signature);
    // A pending key does not sign; after the rotation the retired s1 still does (mail in
    // flight), until it is removed: then at once, although it was open.
    generate(&v, "s2").await;
    assert!(refused(&sign(&v, "s2", TOKEN).await));
    let rotate = Admin::DkimRotate {
        tenant: "a".into(),
        domain: "a.test".into(),
        selector: "s2".into(),
        principal: "test".into(),
    };
    assert!(matches!(admin(&v, rotate).await, Response::Done { .. }));
    assert_eq!(sign(&v, "s1", TOKEN).await, Response::Signature);
    assert_eq!(sign(&v, "s2", TOKEN).await, Response::Signature);
    let remove = Admin::DkimRemove {
        tenant: "a".into(),
        domain: "a.test".into(),
        selector: "s1".into(),
        principal: "test".into(),
    };
    assert!(matches!(admin(&v, remove).await, Response::Done { .. }));
    assert!(
        refused(&sign(&v, "s1", TOKEN).await),
        "a removed key signed"
    );
    // The tenant leaves: its open key signs nothing more.
    assert_eq!(sign(&v, "s2", TOKEN).await, Response::Signature);
    let terminate = Admin::TerminateTenant {
        tenant: "a".into(),
        principal: "test".into(),
    };
    assert!(matches!(admin(&v, terminate).await, Response::Done { .. }));
    let after = sign(&v, "s2", TOKEN).await;
    assert!(
        after != Response::Signature,
        "a terminated tenant's key signed"
    );
}

store::engine_matrix!(a_key_kept_open_stops_signing_when_removed_or_its_tenant_terminated,);
