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
