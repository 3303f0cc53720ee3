//! KEK rotation survives a crash at any point: the vault reopens with a KEK that opens every
//! stored tenant key and connector secret. Connector secrets are write-only and given to the
//! mx role alone.

use std::sync::Arc;

use proto::vault::{Request, Response, RoleToken};
use store::blobs::LocalBlobs;
use store::{Engine, Store};
use vault::server::Vault;
use vault::{
    ConnectorSecret, Kek, SecretKind, open_secret, rewrap, rewrap_secret, unwrap_identity,
};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

async fn setup(dir: &std::path::Path, engine: Engine) -> (Store, Arc<LocalBlobs>) {
    let (store, _) = store::testing::scratch(engine, dir).await;
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

fn secret(t: i64) -> ConnectorSecret {
    ConnectorSecret::SmtpAuth {
        username: format!("relay-{t}"),
        password: format!("pw-of-tenant-{t}"),
    }
}

async fn make_keys(v: &Vault) {
    for (t, name) in [(1, "a"), (2, "b")] {
        let (r, _) = v
            .handle(
                Request::TenantRecipient {
                    tenant: proto::TenantId(t),
                },
                Vec::new(),
            )
            .await;
        assert!(matches!(r, Response::Recipient { .. }), "{r:?}");
        let seal = Request::SealSecret {
            tenant: name.into(),
            principal: "test".into(),
        };
        let (r, _) = v.handle(seal, secret(t).to_bytes().to_vec()).await;
        assert!(matches!(r, Response::Done { .. }), "{r:?}");
    }
}

async fn opens_all(kek: &Kek, store: &Store) -> bool {
    let audit = store.audit_keys().await.unwrap();
    assert_eq!(audit.len(), 1);
    if vault::unwrap_audit_key(kek, &audit[0]).is_err() {
        return false;
    }
    let keys = store.wrapped_tenant_keys().await.unwrap();
    let secrets = store.sealed_secrets().await.unwrap();
    assert_eq!((keys.len(), secrets.len()), (2, 2));
    keys.iter().all(|k| {
        unwrap_identity(
            kek,
            k.tenant_id,
            &k.recipient,
            k.wrapped.as_deref().unwrap(),
        )
        .is_ok()
    }) && secrets
        .iter()
        .all(|s| open_secret(kek, s.tenant_id, SecretKind::SmtpAuth, &s.sealed).is_ok())
}

async fn use_secret(v: &Vault, tenant: i64, token: &str) -> (Response, Vec<u8>) {
    v.handle(
        Request::UseSecret {
            tenant: proto::TenantId(tenant),
            kind: SecretKind::SmtpAuth,
            role_token: RoleToken(token.into()),
        },
        Vec::new(),
    )
    .await
}

async fn secrets_are_write_only_and_given_to_the_mx_token_alone(engine: Engine) {
    let d = tempfile::tempdir().unwrap();
    let (store, blobs) = setup(d.path(), engine).await;
    let mut v = Vault::open(store.clone(), blobs, &d.path().join("vault/kek"))
        .await
        .unwrap();
    make_keys(&v).await;
    // Without a token configured nobody gets a secret; with one, only its holder does.
    assert!(matches!(
        use_secret(&v, 1, "").await.0,
        Response::Refused { .. }
    ));
    v.set_mx_token(RoleToken(TOKEN.into()));
    let (r, _) = use_secret(&v, 1, "0123456789abcdef0123456789abcdee").await;
    assert!(matches!(r, Response::Refused { .. }), "{r:?}");
    let (r, value) = use_secret(&v, 1, TOKEN).await;
    assert_eq!(r, Response::Secret);
    assert_eq!(ConnectorSecret::from_bytes(&value).unwrap(), secret(1));
    let (r, value) = use_secret(&v, 2, TOKEN).await;
    assert_eq!(
        ConnectorSecret::from_bytes(&value).unwrap(),
        secret(2),
        "{r:?}"
    );
    // Not set, and an invalid value, are refused with a reason.
    let r = v
        .handle(
            Request::UseSecret {
                tenant: proto::TenantId(1),
                kind: SecretKind::ClientCert,
                role_token: RoleToken(TOKEN.into()),
            },
            Vec::new(),
        )
        .await
        .0;
    assert!(
        matches!(&r, Response::Refused { message, .. } if message.contains("no client-cert")),
        "{r:?}"
    );
    let bad = Request::SealSecret {
        tenant: "a".into(),
        principal: "test".into(),
    };
    let r = v
        .handle(
            bad,
            br#"{"kind":"smtp-auth","username":"","password":"x"}"#.to_vec(),
        )
        .await
        .0;
    assert!(
        matches!(&r, Response::Refused { message, .. } if message.contains("username is empty")),
        "{r:?}"
    );
    // Every use and refusal is recorded; no record carries the value.
    let records = store.records(100).await.unwrap();
    let uses: Vec<_> = records
        .iter()
        .filter(|r| r.action == "use-secret")
        .collect();
    assert_eq!(uses.len(), 5);
    assert_eq!(uses.iter().filter(|r| r.outcome == "ok").count(), 2);
    assert!(uses.iter().any(|r| r.principal == "unknown"));
    assert!(!format!("{records:?}").contains("pw-of-tenant"));
}

async fn a_rotation_interrupted_after_its_commit_is_completed_on_open(engine: Engine) {
    let d = tempfile::tempdir().unwrap();
    let (store, blobs) = setup(d.path(), engine).await;
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
    let mut secrets = store.sealed_secrets().await.unwrap();
    for s in &mut secrets {
        s.sealed = rewrap_secret(&old, &new, s.tenant_id, SecretKind::SmtpAuth, &s.sealed).unwrap();
    }
    let mut audit_keys = store.audit_keys().await.unwrap();
    for k in &mut audit_keys {
        k.wrapped = vault::rewrap_audit_key(&old, &new, k).unwrap();
    }
    store
        .rewrap_kek_material(&keys, &secrets, &audit_keys, &[], &[], &[])
        .await
        .unwrap();
    let mut v = Vault::open(store.clone(), blobs.clone(), &kek_path)
        .await
        .unwrap();
    assert!(!kek_path.with_extension("next").exists());
    let now = Kek::load_or_create(&kek_path).unwrap();
    assert!(opens_all(&now, &store).await);
    v.set_mx_token(RoleToken(TOKEN.into()));
    assert_eq!(use_secret(&v, 2, TOKEN).await.0, Response::Secret);
    // The audit signing key was re-wrapped too and still signs.
    let mut last = None;
    assert!(
        v.checkpoint(1, std::time::Duration::ZERO, &mut last)
            .await
            .unwrap()
            .is_some()
    );
}

async fn a_rotation_interrupted_before_its_commit_is_abandoned_on_open(engine: Engine) {
    let d = tempfile::tempdir().unwrap();
    let (store, blobs) = setup(d.path(), engine).await;
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
    assert!(opens_all(&now, &store).await);
}

async fn a_full_rotation_rewraps_keys_and_secrets(engine: Engine) {
    let d = tempfile::tempdir().unwrap();
    let (store, blobs) = setup(d.path(), engine).await;
    let kek_path = d.path().join("vault/kek");
    let mut v = Vault::open(store.clone(), blobs, &kek_path).await.unwrap();
    make_keys(&v).await;
    let before = Kek::load_or_create(&kek_path).unwrap();
    let (r, _) = v
        .handle(
            Request::Admin(proto::vault::Admin::RotateKek {
                principal: "test".into(),
            }),
            Vec::new(),
        )
        .await;
    assert!(
        matches!(&r, Response::Done { summary } if summary.contains("2 tenant key(s), 2 connector secret(s), 1 audit key(s), 0 second factor(s) and 0 spool key(s) re-wrapped")),
        "{r:?}"
    );
    let after = Kek::load_or_create(&kek_path).unwrap();
    assert!(opens_all(&after, &store).await);
    assert!(!opens_all(&before, &store).await);
    v.set_mx_token(RoleToken(TOKEN.into()));
    let (_, value) = use_secret(&v, 1, TOKEN).await;
    assert_eq!(ConnectorSecret::from_bytes(&value).unwrap(), secret(1));
}

store::engine_matrix!(
    secrets_are_write_only_and_given_to_the_mx_token_alone,
    a_rotation_interrupted_after_its_commit_is_completed_on_open,
    a_rotation_interrupted_before_its_commit_is_abandoned_on_open,
    a_full_rotation_rewraps_keys_and_secrets,
);
