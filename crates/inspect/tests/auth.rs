//! The authentication stage against real material: the RFC 6376 / RFC 8463 examples and
//! stalwart mail-auth's DKIM resources from `../shared/corpora/auth`, with DNS answers seeded
//! into the stage's caches (offline). Unseeded lookups go to a local UDP socket that never
//! answers, so nothing leaves the machine.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use inspect::dns::{DnsCaches, authenticator};
use inspect::stages::auth::Authentication;
use inspect::{Envelope, Findings, Symbol};

fn corpora() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/auth")
}

/// A resolver address that swallows queries (bound, never answered) for as long as the
/// returned socket lives.
fn silent_resolver() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

fn stage(caches: Arc<DnsCaches>, resolver: SocketAddr, deadline: Duration) -> Authentication {
    let auth = authenticator(Some(resolver), Duration::from_millis(200)).unwrap();
    Authentication::new(auth, caches, "mx.sekisho.test".into(), deadline)
}

fn env(ip: &str, mail_from: &str) -> Envelope {
    Envelope {
        client_ip: ip.parse::<IpAddr>().unwrap(),
        helo: "mail.football.example.com".into(),
        mail_from: mail_from.into(),
        rcpts: vec!["suzie@shopping.example.net".into()],
        protected_domains: vec![],
        tenant: None,
        ..Default::default()
    }
}

fn symbols(f: &Findings) -> Vec<Symbol> {
    f.evidence.iter().map(|e| e.symbol).collect()
}

/// Stalwart's format: DNS records (`name value`), a blank line, the message.
fn load(path: &PathBuf) -> (Vec<(String, String)>, Vec<u8>) {
    let text = std::fs::read_to_string(path).unwrap();
    let (records, message) = text.split_once("\n\n").unwrap();
    let records = records
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    (
        records,
        message
            .replace("\r\n", "\n")
            .replace('\n', "\r\n")
            .into_bytes(),
    )
}

#[tokio::test]
async fn dkim_corpus_passes_and_fails_when_tampered() {
    let (_sock, resolver) = silent_resolver();
    let dir = corpora().join("stalwart-mail-auth/resources/dkim");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut ran = 0;
    let mut expired = 0;
    for file in files {
        let (records, message) = load(&file);
        let caches = Arc::new(DnsCaches::default());
        for (name, value) in &records {
            caches.seed_txt(name, value).unwrap();
        }
        let s = stage(caches, resolver, Duration::from_secs(5));
        let f = s
            .check(&message, &env("192.0.2.1", "joe@football.example.com"))
            .await;
        let dkim = f
            .evidence
            .iter()
            .find(|e| e.symbol.name().starts_with("DKIM_"))
            .unwrap();
        if dkim.detail.contains("Signature expired") {
            // Real mail whose signature carries an x= expiry in the past: not a pass.
            assert_eq!(dkim.symbol, Symbol::DkimPermError, "{}", file.display());
            expired += 1;
            continue;
        }
        assert_eq!(
            dkim.symbol,
            Symbol::DkimPass,
            "{}: {:?}",
            file.display(),
            f.evidence
        );
        assert!(f.headers[0].starts_with("Authentication-Results: mx.sekisho.test;"));
        assert!(f.headers[0].contains("dkim=pass"), "{}", f.headers[0]);
        // Change one body byte: every signature now fails.
        let mut tampered = message.clone();
        let body = tampered.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let at = tampered[body..]
            .iter()
            .position(|b| b.is_ascii_alphabetic())
            .unwrap()
            + body;
        tampered[at] ^= 0x20;
        let f = s
            .check(&tampered, &env("192.0.2.1", "joe@football.example.com"))
            .await;
        assert!(
            symbols(&f).contains(&Symbol::DkimFail),
            "{}: {:?}",
            file.display(),
            f.evidence
        );
        ran += 1;
    }
    assert!(ran > 0, "no DKIM corpus files under {}", dir.display());
    assert!(
        ran >= 4 && expired <= 2,
        "{ran} verified, {expired} expired"
    );
}

#[tokio::test]
async fn rfc8463_ed25519_and_rsa_signatures_verify() {
    let (_sock, resolver) = silent_resolver();
    let msg = std::fs::read(corpora().join("dkimpy-1.1.8/rfc6376.signed.msg")).unwrap();
    let msg = String::from_utf8(msg)
        .unwrap()
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    let caches = Arc::new(DnsCaches::default());
    // RFC 8463 appendix A.2 publishes these keys for the example.
    let rsa = std::fs::read_to_string(corpora().join("dkimpy-1.1.8/test.txt")).unwrap();
    caches
        .seed_txt("test._domainkey.football.example.com", rsa.trim())
        .unwrap();
    caches
        .seed_txt(
            "brisbane._domainkey.football.example.com",
            "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
        )
        .unwrap();
    let f = stage(caches, resolver, Duration::from_secs(5))
        .check(
            msg.as_bytes(),
            &env("192.0.2.1", "joe@football.example.com"),
        )
        .await;
    let dkim = f
        .evidence
        .iter()
        .find(|e| e.symbol == Symbol::DkimPass)
        .expect("dkim pass");
    assert_eq!(
        dkim.detail.matches("dkim=pass").count(),
        2,
        "{}",
        dkim.detail
    );
    // The summary `check --json` prints has each signature with its domain and selector.
    let auth = f.auth.expect("an authentication summary");
    let mut sigs: Vec<_> = auth
        .dkim
        .iter()
        .map(|d| (d.result, d.domain.as_deref(), d.selector.as_deref()))
        .collect();
    sigs.sort();
    assert_eq!(
        sigs,
        [
            ("pass", Some("football.example.com"), Some("brisbane")),
            ("pass", Some("football.example.com"), Some("test")),
        ]
    );
    assert_eq!(auth.arc, "none");
}

#[tokio::test]
async fn spf_results_follow_the_record() {
    let (_sock, resolver) = silent_resolver();
    let caches = Arc::new(DnsCaches::default());
    caches
        .seed_txt("hard.example", "v=spf1 ip4:192.0.2.0/24 -all")
        .unwrap();
    caches
        .seed_txt("soft.example", "v=spf1 ip4:192.0.2.0/24 ~all")
        .unwrap();
    caches.seed_txt("neutral.example", "v=spf1 ?all").unwrap();
    let s = stage(caches, resolver, Duration::from_secs(5));
    let msg = b"From: a@hard.example\r\nSubject: x\r\n\r\nx\r\n";
    let cases = [
        ("192.0.2.7", "a@hard.example", Symbol::SpfPass),
        ("198.51.100.7", "a@hard.example", Symbol::SpfFail),
        ("198.51.100.7", "a@soft.example", Symbol::SpfSoftFail),
        ("198.51.100.7", "a@neutral.example", Symbol::SpfNeutral),
        ("198.51.100.7", "a@unseeded.example", Symbol::SpfTempError),
    ];
    for (ip, from, want) in cases {
        let f = s.check(msg, &env(ip, from)).await;
        let spf: Vec<_> = symbols(&f)
            .into_iter()
            .filter(|s| s.name().starts_with("SPF_"))
            .collect();
        assert_eq!(spf, vec![want], "{ip} {from}: {:?}", f.evidence);
    }
    let f = s.check(msg, &env("198.51.100.7", "a@hard.example")).await;
    assert!(f.headers[0].contains("spf=fail"), "{}", f.headers[0]);
}

#[tokio::test]
async fn dmarc_passes_when_aligned_and_applies_the_policy_when_not() {
    let (_sock, resolver) = silent_resolver();
    let (records, message) = load(&corpora().join("stalwart-mail-auth/resources/dkim/001.txt"));
    let caches = Arc::new(DnsCaches::default());
    for (name, value) in &records {
        caches.seed_txt(name, value).unwrap();
    }
    caches
        .seed_txt("_dmarc.football.example.com", "v=DMARC1; p=reject")
        .unwrap();
    // The DMARC tree walk (RFC 9989) also asks the parent names.
    caches.seed_nxdomain("_dmarc.example.com");
    caches.seed_nxdomain("_dmarc.com");
    caches
        .seed_txt("football.example.com", "v=spf1 ip4:192.0.2.0/24 -all")
        .unwrap();
    caches
        .seed_txt("attacker.example", "v=spf1 ip4:203.0.113.0/24 -all")
        .unwrap();
    let s = stage(caches, resolver, Duration::from_secs(5));

    let f = s
        .check(&message, &env("192.0.2.1", "joe@football.example.com"))
        .await;
    assert!(symbols(&f).contains(&Symbol::DmarcPass), "{:?}", f.evidence);
    assert!(f.headers[0].contains("dmarc=pass"), "{}", f.headers[0]);

    // A forgery of the From domain: no valid signature, SPF passes only for the attacker's
    // own envelope domain (not aligned) → DMARC fails under p=reject.
    let forged = b"From: Joe SixPack <joe@football.example.com>\r\nTo: suzie@shopping.example.net\r\nSubject: wire the money\r\n\r\nurgent\r\n";
    let f = s
        .check(forged, &env("203.0.113.9", "bounce@attacker.example"))
        .await;
    let syms = symbols(&f);
    assert!(syms.contains(&Symbol::DmarcReject), "{:?}", f.evidence);
    assert!(syms.contains(&Symbol::SpfPass));
    assert!(syms.contains(&Symbol::DkimNone));
    assert!(f.headers[0].contains("dmarc=fail"), "{}", f.headers[0]);
}

#[tokio::test]
async fn dmarc_policies_and_dns_errors_have_their_own_symbols() {
    use mail_auth::ResolverCache;
    let (_sock, resolver) = silent_resolver();
    let caches = Arc::new(DnsCaches::default());
    for (domain, policy) in [("q.example", "quarantine"), ("n.example", "none")] {
        caches
            .seed_txt(domain, "v=spf1 ip4:192.0.2.0/24 -all")
            .unwrap();
        caches
            .seed_txt(
                &format!("_dmarc.{domain}"),
                &format!("v=DMARC1; p={policy}"),
            )
            .unwrap();
    }
    // A DMARC record that does not parse, and an SPF redirect to a domain without SPF.
    caches
        .seed_txt("broken.example", "v=spf1 redirect=nospf.example")
        .unwrap();
    caches.seed_nxdomain("nospf.example");
    caches.txt.insert(
        "_dmarc.broken.example.".into(),
        mail_auth::Txt::Error(mail_auth::Error::ParseError),
        std::time::Instant::now() + Duration::from_secs(3600),
    );
    caches.seed_nxdomain("_dmarc.example");
    // slow.example: SPF answers, DMARC never does (the silent resolver) → temperror.
    caches
        .seed_txt("slow.example", "v=spf1 ip4:192.0.2.0/24 -all")
        .unwrap();
    let s = stage(caches, resolver, Duration::from_secs(5));
    let cases = [
        ("q.example", Symbol::DmarcQuarantine),
        ("n.example", Symbol::DmarcPolicyNone),
        ("broken.example", Symbol::DmarcPermError),
        ("slow.example", Symbol::DmarcTempError),
    ];
    for (domain, want) in cases {
        let msg = format!("From: a@{domain}\r\nSubject: x\r\n\r\nx\r\n");
        let f = s
            .check(msg.as_bytes(), &env("198.51.100.7", &format!("a@{domain}")))
            .await;
        let dmarc: Vec<_> = symbols(&f)
            .into_iter()
            .filter(|s| s.name().starts_with("DMARC_"))
            .collect();
        assert_eq!(dmarc, vec![want], "{domain}: {:?}", f.evidence);
        if domain == "broken.example" {
            assert!(
                symbols(&f).contains(&Symbol::SpfPermError),
                "{:?}",
                f.evidence
            );
        }
    }
}

#[tokio::test]
async fn an_unanswered_dkim_key_is_a_temporary_error() {
    let (_sock, resolver) = silent_resolver();
    let (_records, message) = load(&corpora().join("stalwart-mail-auth/resources/dkim/001.txt"));
    let f = stage(
        Arc::new(DnsCaches::default()),
        resolver,
        Duration::from_secs(5),
    )
    .check(&message, &env("192.0.2.1", "joe@football.example.com"))
    .await;
    assert!(
        symbols(&f).contains(&Symbol::DkimTempError),
        "{:?}",
        f.evidence
    );
}

#[tokio::test]
async fn the_deadline_is_evidence() {
    let (_sock, resolver) = silent_resolver();
    let s = stage(
        Arc::new(DnsCaches::default()),
        resolver,
        Duration::from_millis(100),
    );
    let f = s
        .check(
            b"From: a@slow.example\r\n\r\nx\r\n",
            &env("192.0.2.1", "a@slow.example"),
        )
        .await;
    // The resolver never answers: either the stage deadline or the per-query timeout fires,
    // and neither produces a pass.
    let syms = symbols(&f);
    assert!(
        !syms.contains(&Symbol::SpfPass) && !syms.contains(&Symbol::DmarcPass),
        "{syms:?}"
    );
    assert!(
        syms == vec![Symbol::AuthTimeout] || syms.contains(&Symbol::SpfTempError),
        "{syms:?}"
    );
}

/// RFC 8463's Ed25519 example key pair (appendix A), used here as a forwarder's ARC key.
const ED25519_SEED: [u8; 32] = [
    157, 97, 177, 157, 239, 253, 90, 96, 186, 132, 74, 244, 146, 236, 44, 196, 68, 73, 197, 105,
    123, 50, 105, 25, 112, 59, 172, 3, 28, 174, 127, 96,
];
const ED25519_PUBLIC: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

#[tokio::test]
async fn a_trusted_forwarders_arc_seal_sets_forwarding_failures_aside() {
    use mail_auth::arc::ArcSealer;
    use mail_auth::common::crypto::Ed25519Key;
    use mail_auth::common::headers::HeaderWriter;
    use mail_auth::{AuthenticatedMessage, AuthenticationResults};

    let (_sock, resolver) = silent_resolver();
    let caches = Arc::new(DnsCaches::default());
    // The author's domain publishes strict SPF and DMARC p=reject; the forwarder (a mailing
    // list at 198.51.100.7) is not in its SPF, so forwarding breaks both.
    caches
        .seed_txt("origin.example", "v=spf1 ip4:192.0.2.0/24 -all")
        .unwrap();
    caches
        .seed_txt("_dmarc.origin.example", "v=DMARC1; p=reject")
        .unwrap();
    caches.seed_nxdomain("_dmarc.example");
    caches
        .seed_txt(
            "arc._domainkey.lists.forwarder.example",
            &format!("v=DKIM1; k=ed25519; p={ED25519_PUBLIC}"),
        )
        .unwrap();
    let original = "From: CEO <ceo@origin.example>\r\nTo: team@lists.forwarder.example\r\nSubject: plan\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <p1@origin.example>\r\n\r\nthe plan\r\n";
    // The forwarder verifies (first hop: no ARC yet) and seals.
    let auth = authenticator(Some(resolver), Duration::from_millis(200)).unwrap();
    let parsed = AuthenticatedMessage::parse(original.as_bytes()).unwrap();
    let arc_none = auth.verify_arc(caches.params(&parsed)).await;
    let results = AuthenticationResults::new("lists.forwarder.example");
    let public = base64_decode(ED25519_PUBLIC);
    let key = Ed25519Key::from_seed_and_public_key(&ED25519_SEED, &public).unwrap();
    let set = ArcSealer::from_key(key)
        .domain("lists.forwarder.example")
        .selector("arc")
        .headers(["From", "To", "Subject", "Date", "Message-ID"])
        .seal(&parsed, &results, &arc_none)
        .unwrap();
    let forwarded = format!("{}{original}", set.to_header());

    let env = Envelope {
        client_ip: "198.51.100.7".parse().unwrap(),
        helo: "lists.forwarder.example".into(),
        mail_from: "ceo@origin.example".into(),
        rcpts: vec!["bob@acme.example".into()],
        ..Default::default()
    };
    let s = stage(caches.clone(), resolver, Duration::from_secs(5));
    let plain = s.check(forwarded.as_bytes(), &env).await;
    let syms = symbols(&plain);
    assert!(syms.contains(&Symbol::ArcPass), "{:?}", plain.evidence);
    assert!(syms.contains(&Symbol::SpfFail) && syms.contains(&Symbol::DmarcReject));

    let trusting = Envelope {
        rules: Some(Arc::new(inspect::TenantRules {
            trusted_arc: vec!["forwarder.example".into()],
            ..Default::default()
        })),
        ..env.clone()
    };
    let f = s.check(forwarded.as_bytes(), &trusting).await;
    let syms = symbols(&f);
    assert!(syms.contains(&Symbol::ArcTrusted), "{:?}", f.evidence);
    assert!(!syms.contains(&Symbol::DmarcReject) && !syms.contains(&Symbol::SpfFail));
    let note = &f
        .evidence
        .iter()
        .find(|e| e.symbol == Symbol::ArcTrusted)
        .unwrap()
        .detail;
    assert!(
        note.contains("lists.forwarder.example") && note.contains("2 forwarding failure(s)"),
        "{note}"
    );

    // A message altered after sealing breaks the chain.
    let tampered = forwarded.replace("the plan\r\n", "the new plan\r\n");
    let f = s.check(tampered.as_bytes(), &trusting).await;
    let syms = symbols(&f);
    assert!(syms.contains(&Symbol::ArcFail), "{:?}", f.evidence);
    assert!(!syms.contains(&Symbol::ArcTrusted) && syms.contains(&Symbol::DmarcReject));
    // So does a signed header field changed (the message signature's check, with the key),
    // and results rewritten after sealing (the seal's check).
    for (what, from, to) in [
        ("subject", "Subject: plan\r\n", "Subject: new plan\r\n"),
        (
            "results",
            "ARC-Authentication-Results: i=1; lists.forwarder.example\r\n",
            "ARC-Authentication-Results: i=1; lists.forwarder.example; dkim=pass\r\n",
        ),
    ] {
        assert!(forwarded.contains(from), "{what}");
        let altered = forwarded.replacen(from, to, 1);
        let f = s.check(altered.as_bytes(), &trusting).await;
        assert!(
            symbols(&f).contains(&Symbol::ArcFail),
            "{what}: {:?}",
            f.evidence
        );
    }

    // A seal by anyone else is not trusted.
    let other = Envelope {
        rules: Some(Arc::new(inspect::TenantRules {
            trusted_arc: vec!["elsewhere.example".into()],
            ..Default::default()
        })),
        ..env
    };
    let f = s.check(forwarded.as_bytes(), &other).await;
    assert!(symbols(&f).contains(&Symbol::DmarcReject));
}

fn base64_decode(s: &str) -> Vec<u8> {
    let table = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').map(table).collect();
    bytes
        .chunks(4)
        .flat_map(|c| {
            let n = c.iter().fold(0u32, |acc, &v| (acc << 6) | u32::from(v)) << (6 * (4 - c.len()));
            let out = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.into_iter().take(c.len() - 1).collect::<Vec<_>>()
        })
        .collect()
}
