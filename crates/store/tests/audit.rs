//! The audit chain: an untouched log verifies; every kind of tampering is found and the first
//! bad record named.

use store::{Engine, NewRecord, Store};

struct Log {
    _dir: tempfile::TempDir,
    store: Store,
    raw: sqlx::AnyPool,
    pinned: Vec<(String, Vec<u8>)>,
}

/// Ten records, a checkpoint at record 6 signed by a pinned key.
async fn log(engine: Engine) -> Log {
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = store::testing::scratch(engine, dir.path()).await;
    for i in 1..=10 {
        let object = format!("Q{i}");
        store
            .record(&NewRecord {
                principal: "cli:alice",
                role: proto::Process::Vault,
                action: "open-quarantine:read",
                tenant_id: Some(i % 3),
                object: &object,
                reason: "user asked",
                outcome: "ok",
            })
            .await
            .unwrap();
    }
    let (signer, _) = keys::audit::Signer::generate();
    let records = store.audit_records(6, 1).await.unwrap();
    let hash = hex::decode(&records[0].hash).unwrap();
    let msg = keys::audit::checkpoint_message(6, 1_800_000_000, &hash);
    store
        .audit_checkpoint_put(
            6,
            1_800_000_000,
            &hash,
            &signer.key_id(),
            &signer.sign(&msg),
        )
        .await
        .unwrap();
    let raw = sqlx::AnyPool::connect(&url).await.unwrap();
    Log {
        _dir: dir,
        store,
        raw,
        pinned: vec![(signer.key_id(), signer.public_key())],
    }
}

async fn first_bad(l: &Log) -> (i64, String) {
    let t = l
        .store
        .audit_verify(0, &l.pinned, None)
        .await
        .unwrap()
        .unwrap_err();
    (t.record_id, t.problem)
}

async fn exec(l: &Log, sql: &'static str) {
    sqlx::query(sql).execute(&l.raw).await.unwrap();
}

async fn an_untouched_log_verifies(engine: Engine) {
    let l = log(engine).await;
    let v = l
        .store
        .audit_verify(0, &l.pinned, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (v.records, v.checkpoints, v.signed_through, v.head),
        (10, 1, Some(6), Some(10))
    );
    // From the middle too.
    let v = l
        .store
        .audit_verify(4, &l.pinned, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.records, 7);
}

async fn an_edited_record_is_named(engine: Engine) {
    let l = log(engine).await;
    exec(
        &l,
        "UPDATE records SET reason = 'nothing to see' WHERE id = 4",
    )
    .await;
    let (id, why) = first_bad(&l).await;
    assert_eq!(id, 4);
    assert!(why.contains("edited"), "{why}");
}

async fn a_deleted_record_is_named(engine: Engine) {
    let l = log(engine).await;
    exec(&l, "DELETE FROM records WHERE id = 5").await;
    let (id, why) = first_bad(&l).await;
    assert_eq!(id, 6);
    assert!(why.contains("record 5 is missing"), "{why}");
    // Deleting the first ones is found as well.
    exec(&l, "DELETE FROM records WHERE id <= 2").await;
    assert!(first_bad(&l).await.1.contains("records 1 to 2 are missing"));
}

async fn reordered_records_are_named(engine: Engine) {
    let l = log(engine).await;
    // Swap the contents (and chain fields) of records 3 and 4.
    exec(&l, "UPDATE records SET id = -3 WHERE id = 3").await;
    exec(&l, "UPDATE records SET id = 3 WHERE id = 4").await;
    exec(&l, "UPDATE records SET id = 4 WHERE id = -3").await;
    assert_eq!(first_bad(&l).await.0, 3);
}

async fn an_inserted_record_is_named(engine: Engine) {
    let l = log(engine).await;
    // Make room after record 2 and insert a forged record 3 with a well-formed hash of its own.
    exec(&l, "UPDATE records SET id = id + 100 WHERE id > 2").await;
    exec(&l, "UPDATE records SET id = id - 99 WHERE id > 100").await;
    exec(
        &l,
        "INSERT INTO records (id, at, principal, role, action, object, reason, outcome, salt, prev_hash, hash)
         SELECT 3, at, 'cli:mallory', role, action, object, reason, outcome, salt, hash, hash FROM records WHERE id = 2",
    )
    .await;
    let (id, why) = first_bad(&l).await;
    assert_eq!(id, 3, "{why}");
}

async fn a_rewritten_chain_or_forged_checkpoint_is_found(engine: Engine) {
    let l = log(engine).await;
    // A rewrite that recomputes every hash from record 2 on: the chain is consistent again,
    // but no longer what the checkpoint signed.
    let recs = l.store.audit_records(1, 100).await.unwrap();
    let mut prev = hex::decode(&recs[0].hash).unwrap();
    for r in &recs[1..] {
        let mut rec = r.record.clone();
        if rec.id == 2 {
            rec.principal = "cli:nobody".into();
        }
        let salt = hex::decode(&r.salt).unwrap();
        let hash = keys::audit::chain_hash(&prev, &rec.canonical(&salt));
        sqlx::query("UPDATE records SET principal = $1, prev_hash = $2, hash = $3 WHERE id = $4")
            .bind(&rec.principal)
            .bind(&prev)
            .bind(&hash[..])
            .bind(rec.id)
            .execute(&l.raw)
            .await
            .unwrap();
        prev = hash.to_vec();
    }
    let (id, why) = first_bad(&l).await;
    assert_eq!(id, 6);
    assert!(why.contains("differs from what checkpoint"), "{why}");

    // A checkpoint signed by a key of the attacker's own is refused, as is a bad signature.
    let l = log(engine).await;
    let (mallory, _) = keys::audit::Signer::generate();
    let hash = hex::decode(&l.store.audit_records(8, 1).await.unwrap()[0].hash).unwrap();
    let msg = keys::audit::checkpoint_message(8, 1_800_000_001, &hash);
    l.store
        .audit_checkpoint_put(
            8,
            1_800_000_001,
            &hash,
            &mallory.key_id(),
            &mallory.sign(&msg),
        )
        .await
        .unwrap();
    assert!(
        first_bad(&l)
            .await
            .1
            .contains("which the vault did not create")
    );
    let l = log(engine).await;
    exec(&l, "UPDATE audit_checkpoints SET at = at + 1").await;
    assert!(first_bad(&l).await.1.contains("bad signature"));
}

/// The tail past the last checkpoint (records 7 to 10) is covered by the vault's pin of the
/// head: deleting it, or rewriting it into a chain of its own, is found.
async fn a_deleted_or_rewritten_tail_is_found_by_the_head_pin(engine: Engine) {
    let l = log(engine).await;
    let head = l.store.audit_head().await.unwrap().unwrap();
    assert_eq!(head.0, 10);
    let verify = |l: &Log, pin| {
        let (store, keys) = (l.store.clone(), l.pinned.clone());
        async move { store.audit_verify(0, &keys, pin).await.unwrap() }
    };
    assert!(verify(&l, Some(head.clone())).await.is_ok());
    // Without the pin, dropping records 9 and 10 goes unnoticed (the chain is whole) …
    exec(&l, "DELETE FROM records WHERE id > 8").await;
    assert!(
        verify(&l, None).await.is_ok(),
        "the tail alone is not self-evident"
    );
    // … with it, it is named.
    let t = verify(&l, Some(head.clone())).await.unwrap_err();
    assert_eq!(t.record_id, 10);
    assert!(t.problem.contains("ends at record 8"), "{}", t.problem);
    // A new record 9 and 10 (a rewritten tail, chained properly) are not the pinned ones.
    for object in ["forged-9", "forged-10"] {
        l.store
            .record(&NewRecord {
                principal: "cli:mallory",
                action: "nothing-to-see",
                object,
                outcome: "ok",
                ..NewRecord::by(proto::Process::Cli)
            })
            .await
            .unwrap();
    }
    assert!(verify(&l, None).await.is_ok());
    let t = verify(&l, Some(head)).await.unwrap_err();
    assert_eq!(t.record_id, 10);
    assert!(t.problem.contains("rewritten"), "{}", t.problem);
}

store::engine_matrix!(
    a_deleted_or_rewritten_tail_is_found_by_the_head_pin,
    an_untouched_log_verifies,
    an_edited_record_is_named,
    a_deleted_record_is_named,
    reordered_records_are_named,
    an_inserted_record_is_named,
    a_rewritten_chain_or_forged_checkpoint_is_found,
);
