//! What the fuzz targets share: in-process stand-ins for the network parts the inspection
//! pipeline talks to (a DNS server and clamd on loopback, answering at once), a runtime, and
//! the pipeline built as `serve` builds it.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub mod dns;

/// One current-thread runtime for every async call of a target.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// The address of a DNS server on loopback answering from [`dns::answer`] (started once).
pub fn fake_dns() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind DNS");
        let addr = sock.local_addr().expect("DNS address");
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = sock.recv_from(&mut buf) {
                if let Some(reply) = dns::answer(&buf[..n]) {
                    let _ = sock.send_to(&reply, peer);
                }
            }
        });
        addr
    })
}

/// The address of a clamd stand-in on loopback (started once): it reads one `zINSTREAM`
/// stream and answers `FOUND` when the stream holds the EICAR marker, `OK` otherwise.
pub fn fake_clamd() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind clamd");
        let addr = listener.local_addr().expect("clamd address");
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || clamd_session(conn));
            }
        });
        addr
    })
}

fn clamd_session(mut conn: std::net::TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut cmd = [0u8; 10];
    if conn.read_exact(&mut cmd).is_err() || &cmd != b"zINSTREAM\0" {
        return;
    }
    let mut found = false;
    loop {
        let mut len = [0u8; 4];
        if conn.read_exact(&mut len).is_err() {
            return;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            break;
        }
        let mut chunk = vec![0u8; len];
        if conn.read_exact(&mut chunk).is_err() {
            return;
        }
        found |= chunk.windows(5).any(|w| w == b"EICAR");
    }
    let reply: &[u8] = if found {
        b"stream: Eicar-Test-Signature FOUND\0"
    } else {
        b"stream: OK\0"
    };
    let _ = conn.write_all(reply);
}

/// The inspection pipeline with every stage `serve` runs, its DNS and clamd answered by the
/// stand-ins above.
pub fn inspector() -> &'static inspect::Inspector {
    static INSPECTOR: OnceLock<inspect::Inspector> = OnceLock::new();
    INSPECTOR.get_or_init(build_inspector)
}

fn build_inspector() -> inspect::Inspector {
    use inspect::stages;
    let deadline = Duration::from_secs(2);
    let resolver = || {
        inspect::dns::authenticator(Some(fake_dns()), Duration::from_millis(500))
            .expect("authenticator")
    };
    let auth = stages::auth::Authentication::new(
        resolver(),
        Arc::new(inspect::dns::DnsCaches::default()),
        "mx.sekisho.test".into(),
        deadline,
    );
    let dnsbl = stages::dnsbl::Dnsbl::new(
        resolver(),
        Arc::new(inspect::dns::DnsCaches::default()),
        vec![stages::dnsbl::DnsList {
            zone: "zen.dnsbl.test".into(),
            kind: stages::dnsbl::ListKind::Ip,
            listed: Vec::new(),
        }],
        deadline,
    );
    let malware = stages::malware::Malware::new(
        Some(stages::malware::ClamdAddr::Tcp(fake_clamd())),
        deadline,
        stages::malware::ArchiveLimits::default(),
    );
    let phish = stages::phish::Phishing::new(None, vec!["paypal".into(), "sekisho".into()])
        .expect("phishing stage");
    let senders = Arc::new(stages::contact::SenderHistory::new());
    let bayes = Arc::new(stages::bayes::Bayes::new());
    bayes.set_model(1, trained_model());
    let mut list: Vec<Arc<dyn inspect::Stage>> =
        vec![Arc::new(auth), Arc::new(dnsbl), Arc::new(malware)];
    list.extend(stages::plain_rules());
    list.extend([
        Arc::new(stages::headers::HeaderRules::default()) as Arc<dyn inspect::Stage>,
        Arc::new(phish),
        Arc::new(stages::contact::FirstContact::new(senders.clone())),
        bayes,
    ]);
    inspect::Inspector::new(
        list,
        inspect::Policy::default(),
        inspect::ViewLimits::default(),
    )
    .with_senders(senders)
}

/// A small model, so that the classifier's scoring runs (an untrained one abstains).
fn trained_model() -> inspect::bayes::Model {
    let mut model = inspect::bayes::Model::default();
    let limits = inspect::ViewLimits::default();
    let samples: [(&[u8], bool); 4] = [
        (
            b"Subject: cheap pills\r\n\r\nbuy cheap pills now, limited offer\r\n",
            true,
        ),
        (
            b"Subject: you won\r\n\r\nclaim your prize, send your bank details\r\n",
            true,
        ),
        (
            b"Subject: minutes\r\n\r\nthe minutes of Monday's meeting are attached\r\n",
            false,
        ),
        (
            b"Subject: lunch\r\n\r\nshall we have lunch on Thursday?\r\n",
            false,
        ),
    ];
    for _ in 0..5 {
        for (raw, spam) in samples {
            let (view, _) = inspect::MessageView::parse(raw, &limits);
            model.train(&inspect::bayes::tokenize(&view), spam);
        }
    }
    model
}

/// The envelope the pipeline targets judge under: inbound mail for tenant 1.
pub fn envelope(helo: &str, mail_from: &str) -> inspect::Envelope {
    inspect::Envelope {
        client_ip: "192.0.2.7".parse().expect("ip"),
        helo: helo.into(),
        mail_from: mail_from.into(),
        rcpts: vec!["user@one.test".into()],
        protected_domains: vec!["one.test".into()],
        tenant: Some(1),
        received_at: Some(1_780_000_000),
        ..Default::default()
    }
}

/// For targets whose code parses behind `catch_unwind` (mail-parser, in the inspection view and
/// the portal's safe view): a panic the product catches is its guard working, not a crash.
/// libFuzzer's hook would abort at any panic; this one reports each panic site once and lets
/// the product's `catch_unwind` decide. A panic nobody catches still aborts (libfuzzer-sys's
/// own `catch_unwind` around the target), so it is still found.
pub fn tolerate_caught_panics() {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    std::panic::set_hook(Box::new(|info| {
        let site = info
            .location()
            .map_or_else(|| "unknown".to_string(), ToString::to_string);
        let seen = SEEN.get_or_init(Default::default);
        if seen.lock().map(|mut s| s.insert(site)).unwrap_or(false) {
            eprintln!("sekisho-fuzz: a panic (caught by the product if the run goes on): {info}");
        }
    }));
}
