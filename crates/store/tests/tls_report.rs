//! TLS reporting's tables on both engines: counts add up across flushes, a report is claimed
//! once, an opted-out tenant's sessions are not reportable, and the per-domain outcomes
//! (summed in SQL: PostgreSQL's `sum` of BIGINT is NUMERIC) read back.

use store::Engine;
use store::tls_report::{PolicyType, SessionKey};

fn key(tenant: i64, domain: &str, result: &str) -> SessionKey {
    SessionKey {
        day: 20_000,
        policy_domain: domain.into(),
        tenant,
        policy_type: PolicyType::Sts,
        policy_text: "version: STSv1\nmode: enforce\nmx: mx.a.example\nmax_age: 60".into(),
        result: result.into(),
        receiving_mx: if result.is_empty() {
            ""
        } else {
            "mx.a.example"
        }
        .into(),
        sending_ip: String::new(),
        receiving_ip: String::new(),
    }
}

async fn counts_claims_and_opt_out(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store::testing::scratch(engine, dir.path()).await;
    let acme = store
        .add_tenant("acme", &["acme.example".into()], "smtp://127.0.0.1:2525")
        .await
        .unwrap();
    let beta = store
        .add_tenant("beta", &["beta.example".into()], "smtp://127.0.0.1:2525")
        .await
        .unwrap();
    let rows = vec![
        (key(acme, "a.example", ""), 3),
        (key(acme, "a.example", "certificate-expired"), 2),
        (key(beta, "b.example", ""), 1),
    ];
    store.tls_sessions_add(&rows).await.unwrap();
    store.tls_sessions_add(&rows[..2]).await.unwrap();

    let out = store.tls_outcomes(19_990, None, 10).await.unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].policy_domain, "a.example", "most failed first");
    assert_eq!((out[0].successful, out[0].failed), (6, 4));
    assert_eq!(out[0].top_failure.as_deref(), Some("certificate-expired"));
    assert_eq!(out[0].policy_type, PolicyType::Sts);
    let only_beta = store.tls_outcomes(19_990, Some(beta), 10).await.unwrap();
    assert_eq!(only_beta.len(), 1);
    assert_eq!(only_beta[0].policy_domain, "b.example");

    let due = store.tls_reports_due(20_001, 10).await.unwrap();
    assert_eq!(
        due,
        [(20_000, "a.example".into()), (20_000, "b.example".into())]
    );
    assert!(
        store.tls_reports_due(20_000, 10).await.unwrap().is_empty(),
        "not before the day is over"
    );
    assert!(
        store
            .tls_report_claim(20_000, "a.example", "n1")
            .await
            .unwrap()
    );
    assert!(
        !store
            .tls_report_claim(20_000, "a.example", "n2")
            .await
            .unwrap(),
        "claimed once"
    );
    store
        .tls_report_outcome(20_000, "a.example", "sent to x")
        .await
        .unwrap();
    assert_eq!(
        store
            .tls_report_state(20_000, "a.example")
            .await
            .unwrap()
            .as_deref(),
        Some("sent to x")
    );
    assert_eq!(store.tls_reports_due(20_001, 10).await.unwrap().len(), 1);

    let reportable = store
        .tls_sessions_reportable(20_000, "a.example")
        .await
        .unwrap();
    assert_eq!(reportable.iter().map(|(_, n)| n).sum::<u64>(), 10);
    store.set_tenant_tls_reports(acme, false).await.unwrap();
    assert!(!store.tenant_tls_reports(acme).await.unwrap());
    assert!(
        store
            .tls_sessions_reportable(20_000, "a.example")
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(store.tls_sessions_prune(20_001).await.unwrap(), 3);
    assert!(store.tls_outcomes(0, None, 10).await.unwrap().is_empty());
}

store::engine_matrix!(counts_claims_and_opt_out);
