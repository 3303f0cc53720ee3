//! Store repositories against a real SQLite file and a real PostgreSQL database: every test
//! runs on both engines (`engine_matrix!`).

use store::{Engine, Lookup, RecipientPolicy, Store, StoreError, TraceFilter, TraceRecord};

/// An active account, as the vault's enrolment leaves it, for tests that need one.
async fn account(s: &Store, email: &str) -> i64 {
    let mac = format!("mac-{email}");
    s.enrolment_create(
        &mac,
        email,
        proto::Role::Operator,
        None,
        "test",
        0,
        i64::MAX / 2,
        false,
    )
    .await
    .unwrap();
    let e = s.enrolment_get(&mac, 1).await.unwrap().unwrap();
    let id = s
        .enrolment_set_user(&mac, &e, "phc", |_| vec![1], 1)
        .await
        .unwrap();
    s.enrolment_finish(&mac, id, 0).await.unwrap();
    id
}

async fn store(engine: Engine) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = store::testing::scratch(engine, dir.path()).await;
    (dir, s)
}

async fn tenants_domains_and_recipient_policy(engine: Engine) {
    let (_d, s) = store(engine).await;
    let g0 = s.generation().await.unwrap();
    let acme = s
        .add_tenant(
            "acme",
            &["Acme.Test".into(), "acme2.test".into()],
            "smtp://127.0.0.1:2600",
        )
        .await
        .unwrap();
    assert!(s.generation().await.unwrap() > g0);
    let err = s
        .add_tenant("acme", &["x.test".into()], "maildir:///tmp")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)));
    let err = s
        .add_tenant("other", &["acme.test".into()], "maildir:///tmp")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "domain acme.test already belongs to tenant \"acme\""
    );
    assert!(matches!(
        s.add_tenant("bad", &["not a domain".into()], "maildir:///tmp")
            .await,
        Err(StoreError::Invalid(_))
    ));

    // New tenant: every mailbox of its domains is accepted.
    let dir = s.directory().await.unwrap();
    assert_eq!(dir.lookup("anyone@ACME.test"), Lookup::Accept(acme));
    assert_eq!(dir.lookup("x@elsewhere.test"), Lookup::NotOurs);

    // Once one recipient is listed, unknown ones are refused.
    assert_eq!(s.add_recipient("Alice@acme.test").await.unwrap(), "acme");
    let dir = s.directory().await.unwrap();
    assert_eq!(dir.lookup("alice@acme.test"), Lookup::Accept(acme));
    assert_eq!(dir.lookup("bob@acme.test"), Lookup::UnknownUser);

    // Switch to catch-all, and to verify with nobody listed.
    s.set_recipient_policy("acme", RecipientPolicy::CatchAll)
        .await
        .unwrap();
    assert_eq!(
        s.directory().await.unwrap().lookup("bob@acme.test"),
        Lookup::Accept(acme)
    );
    s.set_recipient_policy("acme", RecipientPolicy::Verify)
        .await
        .unwrap();
    // One tenant by id: its own domains only; an unknown id is none.
    let one = s.tenant(acme).await.unwrap().unwrap();
    assert_eq!((one.name.as_str(), one.recipients), ("acme", 1));
    assert!(one.domains.contains(&"acme.test".to_string()));
    assert!(s.tenant(acme + 1000).await.unwrap().is_none());
    // Scoped to another tenant, the recipient is not found (and stays).
    assert!(matches!(
        s.remove_recipient("alice@acme.test", Some(acme + 1000))
            .await,
        Err(StoreError::NotFound(_))
    ));
    s.remove_recipient("alice@acme.test", Some(acme))
        .await
        .unwrap();
    assert_eq!(
        s.directory().await.unwrap().lookup("alice@acme.test"),
        Lookup::UnknownUser
    );

    assert!(matches!(
        s.add_recipient("x@nowhere.test").await,
        Err(StoreError::NotFound(_))
    ));
    s.add_domain("acme", "acme3.test").await.unwrap();
    let tenants = s.list_tenants().await.unwrap();
    assert_eq!(
        tenants[0].domains,
        vec!["acme.test", "acme2.test", "acme3.test"]
    );
    assert_eq!(tenants[0].recipient_policy, RecipientPolicy::Verify);
}

async fn trace_is_searchable_by_rcpt_and_sender(engine: Engine) {
    let (_d, s) = store(engine).await;
    // Trace records name existing tenants (records of a terminated one are dropped).
    s.add_tenant("acme", &["acme.test".into()], "maildir:///tmp/acme")
        .await
        .unwrap();
    s.write_trace(&[TraceRecord::Received {
        id: "ID1".into(),
        at: 100,
        mail_from: "a@x.test".into(),
        size: 42,
        client_ip: "127.0.0.1".into(),
        helo: "h".into(),
        tls: Some("TLSv1.3".into()),
        rcpts: vec![("r@acme.test".into(), 1)],
        verdict: Some("tag".into()),
        score: Some(6.5),
        symbols: "MISSING_DATE(1.00)".into(),
    }])
    .await
    .unwrap();
    s.write_trace(&[TraceRecord::Event(store::TraceEvent {
        message_id: "ID1".into(),
        rcpt: "r@acme.test".into(),
        tenant_id: Some(1),
        at: 101,
        event: "delivered".into(),
        detail: "250 ok".into(),
    })])
    .await
    .unwrap();
    let by_rcpt = s
        .trace(&TraceFilter {
            rcpt: Some("R@acme.test".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_rcpt.len(), 1);
    let events: Vec<_> = by_rcpt[0].events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(events, ["accepted", "delivered"]);
    assert_eq!(by_rcpt[0].verdict.as_deref(), Some("tag"));
    assert_eq!(by_rcpt[0].score, Some(6.5));
    let none = s
        .trace(&TraceFilter {
            mail_from: Some("b@x.test".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// A message refused before inspection has no score; the next one has. Both in one batch share
/// one prepared statement, whose parameter types come from the first: on PostgreSQL a NULL
/// `f64` once went out typed `real` (sqlx 0.9.0's `Any` driver) and the scored message then
/// failed with "incorrect binary data format", losing the whole batch.
async fn an_unscored_then_scored_message_are_written_in_one_batch(engine: Engine) {
    let (_d, s) = store(engine).await;
    s.add_tenant("acme", &["acme.test".into()], "maildir:///tmp/acme")
        .await
        .unwrap();
    let received = |id: &str, score: Option<f64>| TraceRecord::Received {
        id: id.into(),
        at: 100,
        mail_from: "a@x.test".into(),
        size: 42,
        client_ip: "127.0.0.1".into(),
        helo: "h".into(),
        tls: None,
        rcpts: vec![("r@acme.test".into(), 1)],
        verdict: score.map(|_| "deliver".into()),
        score,
        symbols: String::new(),
    };
    s.write_trace(&[received("U1", None), received("S1", Some(1.25))])
        .await
        .unwrap();
    let scored = s
        .trace(&TraceFilter {
            id: Some("S1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(scored.len(), 1);
    assert_eq!(scored[0].score, Some(1.25));
}

async fn trace_retention_purges_each_tenant_by_its_own_cutoff(engine: Engine) {
    let (_d, s) = store(engine).await;
    s.add_tenant("a", &["a.test".into()], "maildir:///tmp/a")
        .await
        .unwrap();
    s.add_tenant("b", &["b.test".into()], "maildir:///tmp/b")
        .await
        .unwrap();
    let received = |id: &str, at: i64, rcpt: &str, tenant: i64| TraceRecord::Received {
        id: id.into(),
        at,
        mail_from: "x@example.org".into(),
        size: 1,
        client_ip: "127.0.0.1".into(),
        helo: "h".into(),
        tls: None,
        rcpts: vec![(rcpt.into(), tenant)],
        verdict: None,
        score: None,
        symbols: String::new(),
    };
    s.write_trace(&[
        received("OLD-A", 100, "r@a.test", 1),
        received("OLD-B", 100, "r@b.test", 2),
        received("NEW-A", 900, "r@a.test", 1),
    ])
    .await
    .unwrap();
    // a keeps until 500, b until 50; refusals of no tenant until 500.
    let purged = s.trace_purge(&[(1, 500), (2, 50)], 500).await.unwrap();
    assert_eq!(purged, vec![(1, 1)]);
    let ids = |v: Vec<store::TraceMessage>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
    let left = ids(s.trace(&TraceFilter::default()).await.unwrap());
    assert_eq!(left, ["NEW-A", "OLD-B"]);
}

async fn bayes_counts_accumulate_per_model(engine: Engine) {
    let (_d, s) = store(engine).await;
    assert_eq!(
        s.bayes_load(0).await.unwrap(),
        store::BayesCounts::default()
    );
    let delta = store::BayesCounts {
        spam_msgs: 2,
        ham_msgs: 1,
        tokens: vec![(u64::MAX, 2, 0), (7, 1, 1)],
    };
    s.bayes_add(0, &delta).await.unwrap();
    s.bayes_add(0, &delta).await.unwrap();
    s.bayes_add(5, &delta).await.unwrap();
    let mut global = s.bayes_load(0).await.unwrap();
    global.tokens.sort();
    assert_eq!(global.spam_msgs, 4);
    assert_eq!(
        global.tokens,
        vec![(7, 2, 2), (u64::MAX, 4, 0)],
        "hashes survive the i64 column"
    );
    assert_eq!(s.bayes_generations().await.unwrap(), vec![(0, 2), (5, 1)]);
}

async fn learning_is_idempotent_and_moves_corrected_messages(engine: Engine) {
    let (_d, s) = store(engine).await;
    let msg = |digest, spam, tokens: &[u64]| store::LearnMessage {
        digest,
        spam,
        tokens: tokens.to_vec(),
    };
    let o = s
        .bayes_learn(
            0,
            &[
                msg(1, true, &[10, 11]),
                msg(2, false, &[11, 12]),
                msg(1, true, &[10, 11]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        (o.learned, o.moved, o.already),
        (2, 0, 1),
        "a duplicate in one batch counts once"
    );
    let again = s.bayes_learn(0, &[msg(1, true, &[10, 11])]).await.unwrap();
    assert_eq!((again.learned, again.moved, again.already), (0, 0, 1));
    let counts = |c: store::BayesCounts| {
        let mut t = c.tokens;
        t.sort();
        (c.spam_msgs, c.ham_msgs, t)
    };
    assert_eq!(
        counts(s.bayes_load(0).await.unwrap()),
        (1, 1, vec![(10, 1, 0), (11, 1, 1), (12, 0, 1)])
    );
    // The user corrects message 1: it was ham after all.
    let moved = s.bayes_learn(0, &[msg(1, false, &[10, 11])]).await.unwrap();
    assert_eq!((moved.learned, moved.moved, moved.already), (0, 1, 0));
    assert_eq!(
        counts(s.bayes_load(0).await.unwrap()),
        (0, 2, vec![(10, 0, 1), (11, 0, 2), (12, 0, 1)])
    );
    // Another model has its own memory.
    let other = s.bayes_learn(3, &[msg(1, true, &[10])]).await.unwrap();
    assert_eq!(other.learned, 1);
}

async fn ngram_weights_are_stored_with_learning_and_only_over_their_base(engine: Engine) {
    let (_d, s) = store(engine).await;
    let msg = |digest, spam| store::LearnMessage {
        digest,
        spam,
        tokens: vec![10],
    };
    let update = |base, w: &[u8]| {
        Some(store::NgramUpdate {
            base,
            weights: w.to_vec(),
            relearned: false,
        })
    };
    assert_eq!(s.ngram_load(0).await.unwrap(), None);
    assert!(s.bayes_seen(0, &[1, 2]).await.unwrap().is_empty());
    s.bayes_learn_with(0, &[msg(1, true)], update(None, b"w1"))
        .await
        .unwrap();
    assert_eq!(s.ngram_load(0).await.unwrap(), Some((1, b"w1".to_vec())));
    assert_eq!(
        s.bayes_seen(0, &[1, 2, 1]).await.unwrap(),
        [(1, true)].into_iter().collect()
    );
    let g = s.bayes_generations().await.unwrap();
    // A trainer that started before the first one stored is refused, and nothing changes.
    let stale = s
        .bayes_learn_with(0, &[msg(2, false)], update(None, b"stale"))
        .await;
    assert!(
        matches!(stale, Err(store::StoreError::Conflict(_))),
        "{stale:?}"
    );
    assert_eq!(s.ngram_load(0).await.unwrap(), Some((1, b"w1".to_vec())));
    assert!(s.bayes_seen(0, &[2]).await.unwrap().is_empty());
    assert_eq!(s.bayes_generations().await.unwrap(), g);
    // A batch that teaches nothing new stores no weights either.
    s.bayes_learn_with(0, &[msg(1, true)], update(Some(1), b"same"))
        .await
        .unwrap();
    assert_eq!(s.ngram_load(0).await.unwrap(), Some((1, b"w1".to_vec())));
    // Over the right base: stored, and the model's generation moves so nodes reload it.
    s.bayes_learn_with(0, &[msg(1, false)], update(Some(1), b"w2"))
        .await
        .unwrap();
    assert_eq!(s.ngram_load(0).await.unwrap(), Some((2, b"w2".to_vec())));
    assert_ne!(s.bayes_generations().await.unwrap(), g);
    // Weights relearned from scratch (the stored ones were of an earlier format) are stored
    // even though no message is new to the counts, and nodes see a new generation.
    let g = s.bayes_generations().await.unwrap();
    let relearn = store::NgramUpdate {
        base: Some(2),
        weights: b"w3".to_vec(),
        relearned: true,
    };
    s.bayes_learn_with(0, &[msg(1, false)], Some(relearn))
        .await
        .unwrap();
    assert_eq!(s.ngram_load(0).await.unwrap(), Some((3, b"w3".to_vec())));
    assert_ne!(s.bayes_generations().await.unwrap(), g);
    // A tenant's weights are its own and go with the tenant.
    let id = s
        .add_tenant("acme", &["acme.test".into()], "maildir:///tmp")
        .await
        .unwrap();
    s.bayes_learn_with(id, &[msg(1, true)], update(None, b"t"))
        .await
        .unwrap();
    assert_eq!(s.ngram_load(id).await.unwrap(), Some((1, b"t".to_vec())));
    s.terminate_tenant(id).await.unwrap();
    assert_eq!(s.ngram_load(id).await.unwrap(), None);
    assert_eq!(s.ngram_load(0).await.unwrap(), Some((3, b"w3".to_vec())));
}

async fn filter_policies_are_stored_per_tenant_and_reach_the_directory(engine: Engine) {
    let (_d, s) = store(engine).await;
    let id = s
        .add_tenant("acme", &["acme.test".into()], "maildir:///tmp")
        .await
        .unwrap();
    assert!(s.filter_policy("acme").await.unwrap().is_empty());
    let g0 = s.generation().await.unwrap();
    let mut p = store::FilterPolicy {
        tag: Some(4.0),
        ..Default::default()
    };
    p.weights.insert("BAYES_99".into(), 6.5);
    p.protected_names.push(store::StoredName {
        name: "Taro Yamada".into(),
        addresses: vec!["taro@acme.test".into()],
    });
    p.trusted_arc.push("lists.example".into());
    s.set_filter_policy("acme", &p).await.unwrap();
    assert_eq!(s.filter_policy("acme").await.unwrap(), p);
    assert!(
        s.generation().await.unwrap() > g0,
        "nodes must see the change"
    );
    let dir = s.directory().await.unwrap();
    assert_eq!(dir.tenant(id).unwrap().filter, p);
    // Clearing deletes the row.
    s.set_filter_policy("acme", &store::FilterPolicy::default())
        .await
        .unwrap();
    assert!(s.filter_policy("acme").await.unwrap().is_empty());
    assert!(matches!(
        s.filter_policy("nobody").await,
        Err(store::StoreError::NotFound(_))
    ));
}

async fn a_terminated_tenants_id_is_never_given_again_and_its_secrets_go_with_it(engine: Engine) {
    let (_d, s) = store(engine).await;
    let a = s
        .add_tenant("a", &["a.test".into()], "maildir:///tmp/a")
        .await
        .unwrap();
    let b = s
        .add_tenant("b", &["b.test".into()], "maildir:///tmp/b")
        .await
        .unwrap();
    s.secret_put(&store::SealedSecret {
        tenant_id: b,
        kind: "smtp-auth".into(),
        sealed: vec![1, 2, 3],
    })
    .await
    .unwrap();
    let before = s.generation().await.unwrap();
    assert_eq!(s.secret_list(b).await.unwrap()[0].kind, "smtp-auth");
    let (gone, _) = s.terminate_tenant(b).await.unwrap();
    assert_eq!(gone.secrets, 1);
    assert!(s.secret_get(b, "smtp-auth").await.unwrap().is_none());
    assert!(s.generation().await.unwrap() > before);
    // b was the highest id: a new tenant must not inherit it (queued mail and records name
    // tenants by id).
    let c = s
        .add_tenant("c", &["c.test".into()], "maildir:///tmp/c")
        .await
        .unwrap();
    assert!(c > b && b > a, "{a} {b} {c}");
}

async fn trace_records_of_a_terminated_tenant_are_dropped_when_they_arrive_late(engine: Engine) {
    let (_d, s) = store(engine).await;
    let a = s
        .add_tenant("a", &["a.test".into()], "maildir:///tmp/a")
        .await
        .unwrap();
    let b = s
        .add_tenant("b", &["b.test".into()], "maildir:///tmp/b")
        .await
        .unwrap();
    s.terminate_tenant(b).await.unwrap();
    let received = |id: &str, tenant: i64| TraceRecord::Received {
        id: id.into(),
        at: 100,
        mail_from: "x@sender.test".into(),
        size: 1,
        client_ip: "127.0.0.1".into(),
        helo: "h".into(),
        tls: None,
        rcpts: vec![(
            format!("r@{}.test", if tenant == a { "a" } else { "b" }),
            tenant,
        )],
        verdict: Some("quarantine".into()),
        score: Some(9.0),
        symbols: String::new(),
    };
    s.write_trace(&[
        received("LATE-B", b),
        received("LIVE-A", a),
        TraceRecord::Event(store::TraceEvent {
            message_id: "LATE-B".into(),
            rcpt: "r@b.test".into(),
            tenant_id: Some(b),
            at: 101,
            event: "quarantined".into(),
            detail: String::new(),
        }),
        TraceRecord::SenderSeen {
            tenant: b,
            sender: 7,
            at: 101,
        },
    ])
    .await
    .unwrap();
    let all = s
        .trace(&TraceFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["LIVE-A"]
    );
    // A tenant's view: its messages only.
    let c = s
        .add_tenant("c", &["c.test".into()], "maildir:///tmp/c")
        .await
        .unwrap();
    s.write_trace(&[received("LIVE-C", c)]).await.unwrap();
    for (tenant, want) in [(a, "LIVE-A"), (c, "LIVE-C")] {
        let seen = s
            .trace(&TraceFilter {
                tenant: Some(tenant),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            seen.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            [want]
        );
        assert!(seen[0].events.iter().all(|e| e.tenant_id == Some(tenant)));
    }
}

async fn mail_stats_count_per_hour_verdict_sender_and_symbol_per_tenant(engine: Engine) {
    let (_d, s) = store(engine).await;
    let a = s
        .add_tenant("a", &["a.test".into()], "maildir:///tmp/a")
        .await
        .unwrap();
    let b = s
        .add_tenant("b", &["b.test".into()], "maildir:///tmp/b")
        .await
        .unwrap();
    let now = 10 * 3600 + 1800; // half past ten
    let msg = |id: &str, at: i64, from: &str, tenant: i64, verdict: &str, symbols: &str| {
        TraceRecord::Received {
            id: id.into(),
            at,
            mail_from: from.into(),
            size: 1,
            client_ip: "127.0.0.1".into(),
            helo: "h".into(),
            tls: None,
            rcpts: vec![(format!("r@{tenant}.test"), tenant)],
            verdict: Some(verdict.into()),
            score: Some(1.0),
            symbols: symbols.into(),
        }
    };
    s.write_trace(&[
        msg(
            "M1",
            now - 60,
            "Spam@X.test",
            a,
            "quarantine",
            "GTUBE(1000), MISSING_DATE(1.00)",
        ),
        msg(
            "M2",
            now - 3600,
            "spam@x.test",
            a,
            "quarantine",
            "MISSING_DATE(1.00)",
        ),
        msg("M3", now - 2 * 3600, "", a, "deliver", ""),
        msg("M4", now - 30 * 3600, "old@x.test", a, "deliver", ""), // outside the window
        msg("M5", now - 60, "b@y.test", b, "reject", "GTUBE(1000)"),
    ])
    .await
    .unwrap();
    // A rejected message has no accepted event; its refusal event names the tenant.
    s.write_trace(&[TraceRecord::Event(store::TraceEvent {
        message_id: "M5".into(),
        rcpt: "r@b.test".into(),
        tenant_id: Some(b),
        at: now - 60,
        event: "rejected".into(),
        detail: "550 5.7.1".into(),
    })])
    .await
    .unwrap();

    let st = s.mail_stats(Some(a), now, 24).await.unwrap();
    assert_eq!(st.from, 10 * 3600 - 23 * 3600);
    assert_eq!(st.hourly.len(), 24);
    assert_eq!(&st.hourly[21..], &[1, 1, 1]);
    assert_eq!(st.hourly.iter().sum::<i64>(), 3);
    assert_eq!(st.total, 3);
    let names = |v: &[store::Count]| -> Vec<(String, i64)> {
        v.iter().map(|c| (c.name.clone(), c.count)).collect()
    };
    assert_eq!(
        names(&st.verdicts),
        [("quarantine".into(), 2), ("deliver".into(), 1)]
    );
    assert_eq!(
        names(&st.top_senders),
        [("spam@x.test".into(), 2), ("<>".into(), 1)]
    );
    assert_eq!(
        names(&st.top_symbols),
        [("MISSING_DATE".into(), 2), ("GTUBE".into(), 1)]
    );

    let st_b = s.mail_stats(Some(b), now, 24).await.unwrap();
    assert_eq!(names(&st_b.verdicts), [("reject".into(), 1)]);
    let all = s.mail_stats(None, now, 48).await.unwrap();
    assert_eq!((all.total, all.hourly.len()), (5, 48));
}

async fn sender_lists_are_per_tenant_reach_the_directory_and_bump_the_generation(engine: Engine) {
    let (_d, s) = store(engine).await;
    let a = s
        .add_tenant("a", &["a.test".into()], "maildir:///tmp/a")
        .await
        .unwrap();
    let b = s
        .add_tenant("b", &["b.test".into()], "maildir:///tmp/b")
        .await
        .unwrap();
    let g0 = s.generation().await.unwrap();
    let e = s
        .sender_list_put(
            a,
            "Bob@A.test",
            "@Partner.TEST",
            store::SenderAction::Allow,
            "user:bob",
            5,
        )
        .await
        .unwrap();
    assert_eq!(
        (e.rcpt.as_str(), e.pattern.as_str()),
        ("bob@a.test", "partner.test")
    );
    // The same pattern again changes the action, it adds no second entry.
    let again = s
        .sender_list_put(
            a,
            "bob@a.test",
            "partner.test",
            store::SenderAction::Block,
            "user:bob",
            6,
        )
        .await
        .unwrap();
    assert_eq!((again.id, again.action), (e.id, store::SenderAction::Block));
    s.sender_list_put(b, "", "x.test", store::SenderAction::Block, "user:admin", 7)
        .await
        .unwrap();
    assert!(s.generation().await.unwrap() > g0);
    assert!(matches!(
        s.sender_list_put(a, "", "not a domain", store::SenderAction::Allow, "x", 8)
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(s.sender_lists(a).await.unwrap().len(), 1);
    let dir = s.directory().await.unwrap();
    assert_eq!(dir.tenant(a).unwrap().senders.len(), 1);
    assert_eq!(dir.tenant(b).unwrap().senders[0].pattern, "x.test");
    s.sender_list_remove(e.id).await.unwrap();
    assert!(matches!(
        s.sender_list_remove(e.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(s.sender_lists(a).await.unwrap().is_empty());
}

async fn detection_counters_are_shared_windowed_and_start_over_once_fired(engine: Engine) {
    use std::time::Duration;
    use store::{DetectEvent, Trigger};
    let d = tempfile::tempdir().unwrap();
    let (s, url) = store::testing::scratch(engine, d.path()).await;
    let block = |ip: &'static str| DetectEvent {
        kind: "waf-block",
        scope: "",
        account: "",
        source: ip,
    };
    let w = Duration::from_secs(600);
    let t = 1_000_000_000;
    // Distinct sources: the same address twice is one.
    for (i, ip) in ["a", "b", "b", "c"].into_iter().enumerate() {
        let got = s
            .detect_note(&block(ip), w, Trigger::Sources(4), t + i as i64)
            .await;
        assert_eq!(got.unwrap(), None);
    }
    let fired = s
        .detect_note(&block("d"), w, Trigger::Sources(4), t + 10)
        .await
        .unwrap()
        .expect("the fourth address fires");
    assert_eq!((fired.events, fired.sources), (5, 4));
    // Counting starts over after firing…
    let again = s
        .detect_note(&block("e"), w, Trigger::Sources(2), t + 11)
        .await;
    assert_eq!(again.unwrap(), None);
    // …and events older than the window do not count.
    let open = |p: &'static str| DetectEvent {
        kind: "open",
        scope: p,
        account: p,
        source: "",
    };
    let w = Duration::from_secs(60);
    assert_eq!(
        s.detect_note(&open("p"), w, Trigger::Events(2), t)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.detect_note(&open("p"), w, Trigger::Events(2), t + 61_000)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.detect_note(&open("q"), w, Trigger::Events(2), t + 61_001)
            .await
            .unwrap(),
        None,
        "per scope"
    );
    assert!(
        s.detect_note(&open("p"), w, Trigger::Events(2), t + 61_002)
            .await
            .unwrap()
            .is_some()
    );
    // A shared rate: every hit counts, nothing starts over.
    let login = DetectEvent {
        kind: "login-attempt",
        scope: "192.0.2.7",
        account: "",
        source: "192.0.2.7",
    };
    for (i, want) in [1, 2, 3].into_iter().enumerate() {
        let got = s.rate_hit(&login, w, t + i as i64).await.unwrap();
        assert_eq!(got, want);
    }
    assert_eq!(
        s.rate_hit(&login, w, t + 60_001).await.unwrap(),
        2,
        "older hits fall out"
    );
    // Events of scopes that never come back are pruned by age, in every scope, now and then.
    let far = t + 30 * 86_400_000;
    for i in 0..300 {
        let scope = format!("198.51.100.{i}");
        let e = DetectEvent {
            kind: "login-attempt",
            scope: &scope,
            account: "",
            source: &scope,
        };
        s.rate_hit(&e, w, far + i).await.unwrap();
    }
    let raw = sqlx::AnyPool::connect(&url).await.unwrap();
    let old: i64 = sqlx::query_scalar("SELECT count(*) FROM detect_events WHERE at_ms < $1")
        .bind(far)
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(old, 0, "week-old events are gone");
    // Throttles: until their end, listed per kind.
    s.detect_throttle("open", "p", t + 5_000).await.unwrap();
    assert_eq!(
        s.detect_throttled("open", "p", t).await.unwrap(),
        Some(t + 5_000)
    );
    assert_eq!(
        s.detect_throttled("open", "p", t + 5_000).await.unwrap(),
        None
    );
    assert_eq!(s.detect_throttled("open", "q", t).await.unwrap(), None);
    s.detect_throttle("waf-block", "192.0.2.1", t + 9_000)
        .await
        .unwrap();
    assert_eq!(
        s.detect_throttles("waf-block", t).await.unwrap(),
        vec![("192.0.2.1".to_string(), t + 9_000)]
    );
}

async fn nodes_report_heartbeats_and_show_as_down_when_they_stop_beating(engine: Engine) {
    let (_d, s) = store(engine).await;
    let mut n = store::NodeInfo {
        name: "mx-1".into(),
        version: "0.1.0".into(),
        smtp: "127.0.0.1:25".into(),
        started_at: 100,
        last_seen: 100,
        active: 1,
        deferred: 2,
        hold: 3,
        stopped: false,
    };
    s.node_beat(&n).await.unwrap();
    n.last_seen = 110;
    n.active = 0;
    s.node_beat(&n).await.unwrap();
    let mut m = n.clone();
    m.name = "mx-0".into();
    m.stopped = true;
    s.node_beat(&m).await.unwrap();
    let nodes = s.nodes().await.unwrap();
    assert_eq!(
        nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["mx-0", "mx-1"]
    );
    assert_eq!(nodes[1], n, "one row per node, the last beat");
    assert_eq!(nodes[1].status(110 + store::NODE_STALE_AFTER), "up");
    assert_eq!(nodes[1].status(111 + store::NODE_STALE_AFTER), "down");
    assert_eq!(nodes[0].status(110), "stopped");
    n.name = String::new();
    assert!(matches!(s.node_beat(&n).await, Err(StoreError::Invalid(_))));
}

async fn outbound_networks_admit_only_their_tenants_senders_and_go_with_the_tenant(engine: Engine) {
    let (_d, s) = store(engine).await;
    let a = s
        .add_tenant("a", &["a.test".into()], "maildir:///tmp/a")
        .await
        .unwrap();
    let b = s
        .add_tenant("b", &["b.test".into()], "maildir:///tmp/b")
        .await
        .unwrap();
    let g0 = s.generation().await.unwrap();
    // Canonical form; a bare address is a host route.
    assert_eq!(
        s.add_outbound_network(a, "192.0.2.77/24", "cli:t")
            .await
            .unwrap(),
        "192.0.2.0/24"
    );
    assert_eq!(
        s.add_outbound_network(b, "2001:db8::25", "cli:t")
            .await
            .unwrap(),
        "2001:db8::25/128"
    );
    // Both tenants behind one shared address: each relays only its own domains.
    s.add_outbound_network(b, "192.0.2.10", "cli:t")
        .await
        .unwrap();
    assert!(s.generation().await.unwrap() > g0);
    assert!(matches!(
        s.add_outbound_network(a, "192.0.2.0/24", "cli:t").await,
        Err(StoreError::Conflict(_))
    ));
    for bad in ["10.0.0.0/7", "2001:db8::/15", "mail.a.test", ""] {
        assert!(
            matches!(
                s.add_outbound_network(a, bad, "cli:t").await,
                Err(StoreError::Invalid(_))
            ),
            "{bad}"
        );
    }
    let dir = s.directory().await.unwrap();
    let ip = |t: &str| t.parse::<std::net::IpAddr>().unwrap();
    assert_eq!(dir.relay_tenant(ip("192.0.2.200"), "alice@A.test"), Some(a));
    assert_eq!(
        dir.relay_tenant(ip("::ffff:192.0.2.200"), "alice@a.test"),
        Some(a)
    );
    assert_eq!(dir.relay_tenant(ip("192.0.2.200"), "bob@b.test"), None);
    assert_eq!(dir.relay_tenant(ip("192.0.2.10"), "bob@b.test"), Some(b));
    assert_eq!(dir.relay_tenant(ip("192.0.2.10"), "alice@a.test"), Some(a));
    assert_eq!(dir.relay_tenant(ip("198.51.100.1"), "alice@a.test"), None);
    assert_eq!(dir.relay_tenant(ip("192.0.2.200"), "x@sub.a.test"), None);
    assert_eq!(dir.relay_tenant(ip("192.0.2.200"), "x@example.org"), None);
    assert_eq!(dir.relay_tenant(ip("2001:db8::25"), ""), Some(b));
    assert_eq!(dir.relay_tenant(ip("2001:db8::26"), ""), None);
    let listed = s.outbound_networks(Some(b)).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|n| n.network.as_str())
            .collect::<Vec<_>>(),
        ["192.0.2.10/32", "2001:db8::25/128"]
    );
    assert_eq!(s.outbound_networks(None).await.unwrap().len(), 3);
    s.remove_outbound_network(a, "192.0.2.0/24").await.unwrap();
    assert!(matches!(
        s.remove_outbound_network(a, "192.0.2.0/24").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        s.directory()
            .await
            .unwrap()
            .relay_tenant(ip("192.0.2.200"), "alice@a.test"),
        None
    );
    s.terminate_tenant(b).await.unwrap();
    assert!(s.outbound_networks(None).await.unwrap().is_empty());
}

async fn a_held_scope_is_released_and_its_count_starts_over(engine: Engine) {
    let (_d, s) = store(engine).await;
    let t = store::unix_now_ms();
    let e = store::DetectEvent {
        kind: store::OUTBOUND,
        scope: "1:eve@a.test",
        account: "eve@a.test",
        source: "192.0.2.1",
    };
    let window = std::time::Duration::from_secs(600);
    let trigger = store::Trigger::Events(6);
    // Recipients count one event each.
    assert!(
        s.detect_note_n(&e, 3, window, trigger, t)
            .await
            .unwrap()
            .is_none()
    );
    let fired = s
        .detect_note_n(&e, 3, window, trigger, t + 1)
        .await
        .unwrap();
    assert_eq!(fired.map(|c| c.events), Some(6));
    s.detect_throttle(store::OUTBOUND, e.scope, t + 60_000)
        .await
        .unwrap();
    assert!(
        s.detect_throttled(store::OUTBOUND, e.scope, t + 2)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.detect_release(store::OUTBOUND, e.scope, t + 3)
            .await
            .unwrap()
    );
    assert!(
        !s.detect_release(store::OUTBOUND, e.scope, t + 4)
            .await
            .unwrap()
    );
    assert!(
        s.detect_throttled(store::OUTBOUND, e.scope, t + 5)
            .await
            .unwrap()
            .is_none()
    );
    // After the release the count starts over: five more do not fire, the sixth does.
    assert!(
        s.detect_note_n(&e, 5, window, trigger, t + 6)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.detect_note_n(&e, 1, window, trigger, t + 7)
            .await
            .unwrap()
            .is_some()
    );
}

async fn passkeys_are_unique_bounded_and_owned(engine: Engine) {
    let (_d, s) = store(engine).await;
    let a = account(&s, "a@x.test").await;
    let b = account(&s, "b@x.test").await;
    let p = s
        .passkey_insert(a, "cred1", "h-a", "laptop", "{}", "m1", 10)
        .await
        .unwrap();
    // One credential belongs to one account only.
    let again = s
        .passkey_insert(b, "cred1", "h-b", "x", "{}", "m", 11)
        .await;
    assert!(matches!(again, Err(StoreError::Invalid(_))), "{again:?}");
    assert_eq!(
        s.passkey_by_cred("cred1").await.unwrap().unwrap().user_id,
        a
    );
    assert!(s.passkey_by_cred("cred2").await.unwrap().is_none());
    // Nobody removes another account's passkey.
    assert!(matches!(
        s.passkey_delete(p.id, b).await,
        Err(StoreError::NotFound(_))
    ));
    s.passkey_used(p.id, "{\"c\":1}", "m2", 20).await.unwrap();
    let got = &s.passkeys_of(a).await.unwrap()[0];
    assert_eq!(
        (got.passkey.as_str(), got.mac.as_str()),
        ("{\"c\":1}", "m2")
    );
    assert_eq!(got.last_used_at, Some(20));
    for i in 1..store::MAX_PASSKEYS_PER_USER {
        s.passkey_insert(a, &format!("c{i}"), "h-a", "k", "{}", "m", 30)
            .await
            .unwrap();
    }
    let over = s.passkey_insert(a, "cx", "h-a", "k", "{}", "m", 30).await;
    assert!(matches!(over, Err(StoreError::Invalid(_))), "{over:?}");
    s.passkey_delete(p.id, a).await.unwrap();
    assert_eq!(
        s.passkeys_of(a).await.unwrap().len() as i64,
        store::MAX_PASSKEYS_PER_USER - 1
    );
    assert!(s.passkeys_of(b).await.unwrap().is_empty());
}

async fn ceremonies_are_taken_once_and_expire(engine: Engine) {
    let (_d, s) = store(engine).await;
    let a = account(&s, "a@x.test").await;
    s.ceremony_put("c1", "register", Some(a), "st", "mac", 100, 160)
        .await
        .unwrap();
    s.ceremony_put("c2", "login", None, "st2", "mac2", 100, 160)
        .await
        .unwrap();
    let got = s.ceremony_take("c1", 120).await.unwrap().unwrap();
    assert_eq!(
        (got.purpose.as_str(), got.user_id, got.state.as_str()),
        ("register", Some(a), "st")
    );
    assert!(s.ceremony_take("c1", 120).await.unwrap().is_none());
    // Expired: gone, and not handed out.
    assert!(s.ceremony_take("c2", 200).await.unwrap().is_none());
    assert!(s.ceremony_take("c2", 120).await.unwrap().is_none());
}

async fn pending_invitations_are_listed_until_taken_up_or_expired(engine: Engine) {
    let (_d, s) = store(engine).await;
    let acme = s
        .add_tenant("acme", &["acme.test".into()], "smtp://127.0.0.1:2525")
        .await
        .unwrap();
    let invite = |mac: &'static str, email: &'static str, role, tenant, expires| {
        let s = &s;
        async move {
            s.enrolment_create(mac, email, role, tenant, "op@x.test", 10, expires, false)
                .await
                .unwrap()
        }
    };
    invite(
        "m1",
        "admin@acme.test",
        proto::Role::TenantAdmin,
        Some(acme),
        1_000,
    )
    .await;
    invite("m2", "old@acme.test", proto::Role::User, Some(acme), 50).await;
    invite("m3", "aud@x.test", proto::Role::Auditor, None, 1_000).await;
    let all = s.invitations_pending(None, 100).await.unwrap();
    let names: Vec<_> = all.iter().map(|i| i.email.as_str()).collect();
    // The expired link is not pending.
    assert_eq!(names, ["admin@acme.test", "aud@x.test"]);
    assert_eq!(all[0].tenant.as_deref(), Some("acme"));
    assert_eq!(all[0].role, proto::Role::TenantAdmin);
    assert_eq!(all[0].invited_by, "op@x.test");
    let acme_only = s.invitations_pending(Some(acme), 100).await.unwrap();
    assert_eq!(acme_only.len(), 1);
    // Taken up: an account, no longer an invitation.
    let e = s.enrolment_get("m3", 100).await.unwrap().unwrap();
    let id = s
        .enrolment_set_user("m3", &e, "phc", |_| vec![1], 100)
        .await
        .unwrap();
    assert_eq!(s.invitations_pending(None, 100).await.unwrap().len(), 2);
    s.enrolment_finish("m3", id, 0).await.unwrap();
    let left = s.invitations_pending(None, 100).await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
}

store::engine_matrix!(
    tenants_domains_and_recipient_policy,
    trace_is_searchable_by_rcpt_and_sender,
    an_unscored_then_scored_message_are_written_in_one_batch,
    trace_retention_purges_each_tenant_by_its_own_cutoff,
    bayes_counts_accumulate_per_model,
    learning_is_idempotent_and_moves_corrected_messages,
    ngram_weights_are_stored_with_learning_and_only_over_their_base,
    filter_policies_are_stored_per_tenant_and_reach_the_directory,
    a_terminated_tenants_id_is_never_given_again_and_its_secrets_go_with_it,
    trace_records_of_a_terminated_tenant_are_dropped_when_they_arrive_late,
    mail_stats_count_per_hour_verdict_sender_and_symbol_per_tenant,
    sender_lists_are_per_tenant_reach_the_directory_and_bump_the_generation,
    detection_counters_are_shared_windowed_and_start_over_once_fired,
    nodes_report_heartbeats_and_show_as_down_when_they_stop_beating,
    outbound_networks_admit_only_their_tenants_senders_and_go_with_the_tenant,
    a_held_scope_is_released_and_its_count_starts_over,
    passkeys_are_unique_bounded_and_owned,
    ceremonies_are_taken_once_and_expire,
    pending_invitations_are_listed_until_taken_up_or_expired,
);

/// The two engines' migrations are kept in step: the same files, and after them the same
/// tables with the same columns.
#[tokio::test]
async fn both_engines_migrate_to_the_same_schema() {
    let names = |dir: &str| {
        let mut v: Vec<String> =
            std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
        v.sort();
        v
    };
    let sqlite = names("migrations/sqlite");
    assert!(sqlite.len() >= 19, "{sqlite:?}");
    assert_eq!(sqlite, names("migrations/postgres"));

    let d = tempfile::tempdir().unwrap();
    let mut schemas = Vec::new();
    for (engine, sql) in [
        (
            Engine::Sqlite,
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
        ),
        (
            Engine::Postgres,
            "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT) FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name NOT LIKE '_sqlx%'",
        ),
    ] {
        let (_s, url) = store::testing::scratch(engine, d.path()).await;
        let raw = sqlx::AnyPool::connect(&url).await.unwrap();
        let mut cols: Vec<(String, String)> = sqlx::query_as(sql).fetch_all(&raw).await.unwrap();
        cols.sort();
        schemas.push(cols);
    }
    assert!(schemas[0].len() > 100, "{} columns", schemas[0].len());
    assert_eq!(schemas[0], schemas[1]);
}
