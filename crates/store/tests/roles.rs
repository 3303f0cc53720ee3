//! Per-role database users on PostgreSQL: the database itself refuses what a role must not do.

use store::roles::{RoleLogin, role_user};
use store::{Engine, StoreUrl};

async fn connect(url: &str) -> Result<sqlx::AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    sqlx::pool::PoolOptions::<sqlx::Any>::new()
        .max_connections(1)
        .connect(url)
        .await
}

fn login(role: &'static str) -> RoleLogin {
    RoleLogin {
        role,
        user: String::new(),
        password: zeroize::Zeroizing::new(format!("pw{role}0123456789")),
    }
}

async fn refused(pool: &sqlx::AnyPool, sql: &'static str) -> bool {
    match sqlx::query(sql).execute(pool).await {
        Err(e) => e.to_string().contains("permission denied"),
        Ok(_) => false,
    }
}

#[tokio::test]
async fn each_role_may_do_only_its_work_and_the_portal_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = store::testing::scratch(Engine::Postgres, dir.path()).await;
    store
        .add_tenant("acme", &["acme.test".into()], "smtp://127.0.0.1:25")
        .await
        .unwrap();
    store
        .grant_roles(&[login("vault"), login("mx")])
        .await
        .unwrap();
    let db = store.database_name().await.unwrap();
    let owner = StoreUrl::postgres(&url, None).unwrap();
    let as_role = |role: &'static str| {
        let l = login(role);
        owner
            .as_user(&role_user(&db, role), &l.password)
            .unwrap()
            .expose_secret()
            .to_string()
    };

    // mx reads the directory and writes the mail path's tables …
    let mx = connect(&as_role("mx")).await.unwrap();
    sqlx::query("SELECT route FROM tenants")
        .fetch_all(&mx)
        .await
        .unwrap();
    sqlx::query("INSERT INTO nodes (name, version, smtp, started_at, last_seen, active, deferred, hold, stopped) VALUES ('n', 'v', 's', 0, 0, 0, 0, 0, 0)")
        .execute(&mx)
        .await
        .unwrap();
    // … but cannot change where a tenant's mail goes, nor read accounts or secrets.
    assert!(
        refused(
            &mx,
            "UPDATE tenants SET route = 'smtp://attacker.example:25'"
        )
        .await
    );
    assert!(
        refused(
            &mx,
            "INSERT INTO domains (tenant_id, domain) VALUES (1, 'evil.test')"
        )
        .await
    );
    assert!(refused(&mx, "DELETE FROM records").await);
    assert!(refused(&mx, "UPDATE records SET outcome = 'ok'").await);
    assert!(refused(&mx, "SELECT * FROM users").await);
    assert!(refused(&mx, "SELECT * FROM secrets").await);
    assert!(refused(&mx, "SELECT * FROM tenant_keys").await);
    // The vault performs the portal's acts: it may.
    let vault = connect(&as_role("vault")).await.unwrap();
    sqlx::query("UPDATE tenants SET route = 'smtp://127.0.0.1:2525'")
        .execute(&vault)
        .await
        .unwrap();
    assert!(
        refused(&vault, "DROP TABLE tenants").await || {
            // (DROP needs ownership: "must be owner of table")
            sqlx::query("DROP TABLE tenants")
                .execute(&vault)
                .await
                .is_err()
        }
    );
    // The portal's user cannot log in, and holds no privilege even when assumed.
    assert!(connect(&as_role("portal")).await.is_err());
    let owner_pool = connect(&url).await.unwrap();
    let mut c = owner_pool.acquire().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET ROLE \"{}\"",
        role_user(&db, "portal")
    )))
    .execute(&mut *c)
    .await
    .unwrap();
    for sql in [
        "UPDATE tenants SET route = 'smtp://attacker.example:25'",
        "INSERT INTO records (id, at, principal, role, action, object, reason, outcome) VALUES (999, 0, 'p', 'portal', 'a', '', '', 'ok')",
        "SELECT * FROM quarantine",
    ] {
        let e = sqlx::query(sql).execute(&mut *c).await.unwrap_err();
        assert!(e.to_string().contains("permission denied"), "{sql}: {e}");
    }
    sqlx::raw_sql("RESET ROLE").execute(&mut *c).await.unwrap();
    drop(c);
    // The route is what the vault set; the attacker's never landed.
    let route: String = sqlx::query_scalar("SELECT route FROM tenants")
        .fetch_one(&owner_pool)
        .await
        .unwrap();
    assert_eq!(route, "smtp://127.0.0.1:2525");
    // Granting again (after a migration) keeps every login working.
    store.grant_roles(&[]).await.unwrap();
    assert!(connect(&as_role("mx")).await.is_ok());
}

/// Every method of mx's handle ([`store::MailStore`]) works under mx's database grants: the
/// compiler keeps mx to these methods, and the database lets it do all of them (no mail path
/// fails in production for a grant the tests never exercised).
#[tokio::test]
async fn every_method_of_mx_handle_works_under_mx_grants() {
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = store::testing::scratch(Engine::Postgres, dir.path()).await;
    let tenant = store
        .add_tenant("acme", &["acme.test".into()], "smtp://127.0.0.1:25")
        .await
        .unwrap();
    store.grant_roles(&[login("mx")]).await.unwrap();
    let db = store.database_name().await.unwrap();
    let mx_url = StoreUrl::postgres(&url, None)
        .unwrap()
        .as_user(&role_user(&db, "mx"), &login("mx").password)
        .unwrap();
    let mx = store::Store::open_url_as_role(&mx_url)
        .await
        .unwrap()
        .into_mail();
    let now = store::unix_now();
    mx.directory().await.unwrap();
    mx.generation().await.unwrap();
    assert_eq!(mx.tenant(tenant).await.unwrap().unwrap().name, "acme");
    mx.bayes_generations().await.unwrap();
    mx.bayes_load(tenant).await.unwrap();
    mx.ngram_load(tenant).await.unwrap();
    mx.write_trace(&[store::TraceRecord::SenderSeen {
        tenant,
        sender: 42,
        at: now,
    }])
    .await
    .unwrap();
    assert_eq!(mx.senders_after(0, 10).await.unwrap().len(), 1);
    let item = store::QuarantineItem {
        id: "0123456789abcdef".into(),
        tenant_id: tenant,
        tenant: String::new(),
        mail_from: "a@example.org".into(),
        rcpts: vec!["b@acme.test".into()],
        size: 10,
        received_at: now - 10,
        expires_at: now - 1,
        verdict: "quarantine".into(),
        score: 9.0,
        symbols: "GTUBE(1000)".into(),
        blob: "ab/0123456789abcdef".into(),
        sealed_to: "age1x".into(),
        eight_bit: false,
        smtputf8: false,
        require_tls: false,
    };
    mx.quarantine_insert(&item).await.unwrap();
    mx.quarantine_get(&item.id).await.unwrap();
    assert_eq!(
        mx.quarantine_received_between(0, now, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(mx.quarantine_expired(now, 10).await.unwrap().len(), 1);
    mx.quarantine_remove(&item.id).await.unwrap();
    mx.node_beat(&store::NodeInfo {
        name: "n1".into(),
        version: "v".into(),
        smtp: "127.0.0.1:25".into(),
        started_at: now,
        last_seen: now,
        active: 0,
        deferred: 0,
        hold: 0,
        stopped: false,
    })
    .await
    .unwrap();
    assert!(mx.is_first_up("n1").await);
    mx.meta_set("digest_sent_until", now).await.unwrap();
    assert_eq!(mx.meta_get("digest_sent_until").await.unwrap(), now);
    let event = store::DetectEvent {
        kind: "outbound",
        scope: "1:a@acme.test",
        account: "",
        source: "",
    };
    let ms = store::unix_now_ms();
    mx.detect_note_n(
        &event,
        3,
        std::time::Duration::from_secs(60),
        store::Trigger::Events(100),
        ms,
    )
    .await
    .unwrap();
    mx.detect_throttle("outbound", "1:a@acme.test", ms + 60_000)
        .await
        .unwrap();
    assert!(
        mx.detect_throttled("outbound", "1:a@acme.test", ms)
            .await
            .unwrap()
            .is_some()
    );
    mx.alert_raise(&store::NewAlert {
        by: proto::Process::Mx,
        rule: "outbound-burst",
        severity: proto::Severity::Critical,
        dedupe_key: "outbound-burst:1",
        principal: "a@acme.test",
        tenant_id: Some(tenant),
        summary: "test",
    })
    .await
    .unwrap();
    assert!(!mx.alerts_after(0).await.unwrap().is_empty());
    mx.record(&store::NewRecord {
        principal: "mx",
        action: "digest-sent",
        outcome: "ok",
        ..store::NewRecord::by(proto::Process::Mx)
    })
    .await
    .unwrap();
    mx.close().await;
}
