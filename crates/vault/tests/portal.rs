//! Portal accounts in the vault: first-operator enrolment (an abandoned one gives way to a new
//! link), and logins that answer the same words whatever was wrong — locked accounts included.

use std::sync::Arc;

use proto::vault::{Request, Response};
use store::blobs::LocalBlobs;
use store::{Engine, Store};
use vault::server::Vault;

const PASSWORD: &str = "correct horse battery staple";

async fn vault(dir: &std::path::Path, engine: Engine) -> (Vault, Store) {
    let (store, _) = store::testing::scratch(engine, dir).await;
    let blobs = Arc::new(LocalBlobs::new(&dir.join("blobs")).unwrap());
    let v = Vault::open(store.clone(), blobs, &dir.join("vault/kek"))
        .await
        .unwrap();
    (v, store)
}

fn base32_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buf, mut bits, mut out) = (0u32, 0, Vec::new());
    for c in s.bytes() {
        buf = (buf << 5) | A.iter().position(|&x| x == c).unwrap() as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

async fn first_link(v: &Vault) -> String {
    match v.handle(Request::FirstEnrolment, Vec::new()).await.0 {
        Response::Enrolment { token } => token,
        other => panic!("{other:?}"),
    }
}

async fn set_password(v: &Vault, token: &str) -> Response {
    v.handle(
        Request::EnrolStart {
            token: token.into(),
        },
        PASSWORD.as_bytes().to_vec(),
    )
    .await
    .0
}

fn refusal(r: Response) -> String {
    match r {
        Response::Refused { message, .. } => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn login(v: &Vault, email: &str, pass: &str, code: &str) -> Response {
    let req = Request::Login {
        email: email.into(),
        code: code.into(),
        client_ip: "192.0.2.1".into(),
    };
    v.handle(req, pass.as_bytes().to_vec()).await.0
}

async fn an_abandoned_first_enrolment_gives_way_to_a_new_link(engine: Engine) {
    let d = tempfile::tempdir().unwrap();
    let (v, store) = vault(d.path(), engine).await;
    let old = first_link(&v).await;
    assert!(matches!(
        set_password(&v, &old).await,
        Response::Totp { .. }
    ));
    // The operator never confirmed the code; the node restarts, and does not void the link
    // (another node of a cluster may have printed it)…
    assert_eq!(store.user_count().await.unwrap(), 0);
    assert!(refusal(v.handle(Request::FirstEnrolment, vec![]).await.0).contains("is live"));
    // …the local operator asks for a new one.
    let new = match v
        .handle(
            Request::Admin(proto::vault::Admin::FirstLink {
                principal: "cli:root".into(),
            }),
            vec![],
        )
        .await
        .0
    {
        Response::Enrolment { token } => token,
        other => panic!("{other:?}"),
    };
    let confirm = |t: &str, code: String| Request::EnrolConfirm {
        token: t.into(),
        code,
    };
    assert!(
        refusal(v.handle(confirm(&old, "000000".into()), vec![]).await.0).contains("not valid")
    );
    let Response::Totp { secret, .. } = set_password(&v, &new).await else {
        panic!("the new link must work although the abandoned one had set a password");
    };
    let code = keys::totp::code_at(&base32_decode(&secret), store::unix_now());
    let (r, _) = v.handle(confirm(&new, code), vec![]).await;
    assert!(matches!(r, Response::Activated { .. }), "{r:?}");
    assert_eq!(store.user_count().await.unwrap(), 1);
    assert!(refusal(v.handle(Request::FirstEnrolment, vec![]).await.0).contains("exist already"));
}

async fn a_locked_account_answers_like_a_wrong_password_or_an_unknown_account(engine: Engine) {
    let d = tempfile::tempdir().unwrap();
    let (v, store) = vault(d.path(), engine).await;
    let token = first_link(&v).await;
    let Response::Totp { secret, .. } = set_password(&v, &token).await else {
        panic!()
    };
    let secret = base32_decode(&secret);
    let now = store::unix_now();
    let (r, _) = v
        .handle(
            Request::EnrolConfirm {
                token,
                code: keys::totp::code_at(&secret, now),
            },
            vec![],
        )
        .await;
    let Response::Activated { recovery_codes, .. } = r else {
        panic!("{r:?}")
    };
    let distinct: std::collections::HashSet<&String> = recovery_codes.iter().collect();
    assert_eq!(distinct.len(), vault::server::RECOVERY_CODES);
    assert!(
        recovery_codes
            .iter()
            .all(|c| c.len() == 11 && c.as_bytes()[5] == b'-')
    );
    let next = keys::totp::code_at(&secret, now + 30);

    let wrong = refusal(login(&v, "operator", "not the password", &next).await);
    for _ in 1..vault::server::LOCK_AFTER {
        assert_eq!(
            refusal(login(&v, "operator", "not the password", &next).await),
            wrong
        );
    }
    // Locked now: the right password and a fresh code get the very same answer…
    assert_eq!(refusal(login(&v, "operator", PASSWORD, &next).await), wrong);
    // …as an account that does not exist.
    assert_eq!(
        refusal(login(&v, "nobody@x.test", PASSWORD, &next).await),
        wrong
    );
    let outcomes: Vec<String> = store
        .records(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == "login")
        .map(|r| r.outcome)
        .collect();
    assert!(
        outcomes.contains(&"refused: locked".to_string()),
        "{outcomes:?}"
    );
    assert!(!outcomes.contains(&"ok".to_string()));
}

async fn a_role_process_may_not_ask_what_only_the_local_cli_asks(engine: Engine) {
    use proto::vault::{Admin, Purpose, RoleToken};
    let dir = tempfile::tempdir().unwrap();
    let (mut v, _store) = vault(dir.path(), engine).await;
    v.set_mx_token(RoleToken("mx-secret".into()));
    let open = |session: Option<&str>, token: Option<&str>| Request::OpenQuarantine {
        id: "Q1".parse().unwrap(),
        purpose: Purpose::Read,
        principal: "cli:root".into(),
        reason: "r".into(),
        session: session.map(String::from),
        role_token: token.map(|t| RoleToken(t.into())),
        lockbox: None,
        break_glass: false,
    };
    let refused = [
        Request::Admin(Admin::TerminateTenant {
            tenant: "acme".into(),
            principal: "cli:root".into(),
        }),
        Request::SealSecret {
            tenant: "acme".into(),
            principal: "cli:root".into(),
        },
        open(None, None),
        open(None, Some("guessed")),
        Request::DeleteQuarantine {
            id: "Q1".parse().unwrap(),
            principal: "cli:root".into(),
            session: None,
        },
    ];
    for r in &refused {
        assert!(v.refused_for_role(r).is_some(), "{}", r.kind());
    }
    let allowed = [
        open(Some("s1_x"), None),
        open(None, Some("mx-secret")),
        Request::Login {
            email: "a@b.c".into(),
            code: "1".into(),
            client_ip: "127.0.0.1".into(),
        },
        Request::Ping,
    ];
    for r in &allowed {
        assert!(v.refused_for_role(r).is_none(), "{}", r.kind());
    }
}

async fn recovery_codes_outlive_a_kek_rotation_and_are_used_once(engine: Engine) {
    let d = tempfile::tempdir().unwrap();
    let (v, _store) = vault(d.path(), engine).await;
    let token = first_link(&v).await;
    let Response::Totp { secret, .. } = set_password(&v, &token).await else {
        panic!()
    };
    let code = keys::totp::code_at(&base32_decode(&secret), store::unix_now());
    let (r, _) = v
        .handle(Request::EnrolConfirm { token, code }, vec![])
        .await;
    let Response::Activated { recovery_codes, .. } = r else {
        panic!("{r:?}")
    };
    let (r, _) = v
        .handle(
            Request::Admin(proto::vault::Admin::RotateKek {
                principal: "cli:test".into(),
            }),
            vec![],
        )
        .await;
    assert!(matches!(r, Response::Done { .. }), "{r:?}");
    // A person who lost the authenticator still has the printed codes after a rotation.
    let r = login(&v, "operator", PASSWORD, &recovery_codes[0]).await;
    assert!(matches!(r, Response::Session { .. }), "{r:?}");
    let again = login(&v, "operator", PASSWORD, &recovery_codes[0]).await;
    assert!(matches!(again, Response::Refused { .. }), "{again:?}");
    let r = login(&v, "operator", PASSWORD, &recovery_codes[1].to_uppercase()).await;
    assert!(matches!(r, Response::Session { .. }), "{r:?}");
}

store::engine_matrix!(
    recovery_codes_outlive_a_kek_rotation_and_are_used_once,
    an_abandoned_first_enrolment_gives_way_to_a_new_link,
    a_locked_account_answers_like_a_wrong_password_or_an_unknown_account,
    a_role_process_may_not_ask_what_only_the_local_cli_asks,
);
