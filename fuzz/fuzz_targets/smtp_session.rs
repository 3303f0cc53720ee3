//! The SMTP session (`wire`) fed arbitrary client bytes, split into reads where the input
//! says: every reply is a well-formed SMTP reply, no message exceeds the size limit, and the
//! session ends when it says it does.
#![no_main]

use std::net::IpAddr;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use wire::{Event, PeerInfo, RcptVerdict, RecipientPolicy, Reply, Session, SessionConfig};

struct Directory;

impl RecipientPolicy for Directory {
    fn check(&self, rcpt: &str) -> RcptVerdict {
        let domain = rcpt.rsplit_once('@').map_or("", |(_, d)| d);
        match domain.to_ascii_lowercase().as_str() {
            "one.test" if rcpt.starts_with("nobody@") => RcptVerdict::UnknownUser,
            "one.test" => RcptVerdict::Accept { tenant: 1 },
            "two.test" => RcptVerdict::Accept { tenant: 2 },
            "slow.test" => RcptVerdict::TempFail,
            _ => RcptVerdict::RelayDenied,
        }
    }

    fn relay_tenant(&self, _client: IpAddr, mail_from: &str) -> Option<i64> {
        mail_from.ends_with("@one.test").then_some(1)
    }
}

const MAX_SIZE: usize = 64 * 1024;

fn config(bare: u8) -> Arc<SessionConfig> {
    let mut limits = wire::Limits {
        max_message_size: MAX_SIZE,
        ..Default::default()
    };
    limits.bare_line_endings = if bare & 1 == 0 {
        wire::BareLineEndings::Reject
    } else {
        wire::BareLineEndings::Normalize
    };
    Arc::new(SessionConfig {
        hostname: "mx.sekisho.test".into(),
        limits,
        starttls: bare & 4 != 0,
        recipients: Arc::new(Directory),
    })
}

/// Every line the session wrote is `DDD[ -]text CRLF` with a 2xx–5xx code.
fn check_replies(out: &[u8]) {
    if out.is_empty() {
        return;
    }
    assert!(out.ends_with(b"\r\n"), "reply without CRLF: {out:?}");
    for line in out[..out.len() - 2].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(line.len() >= 4, "short reply line {line:?}");
        assert!(matches!(line[0], b'2'..=b'5'), "bad code {line:?}");
        assert!(
            line[1..3].iter().all(u8::is_ascii_digit),
            "bad code {line:?}"
        );
        assert!(matches!(line[3], b' ' | b'-'), "bad separator {line:?}");
        assert!(!line.contains(&b'\r'), "bare CR in a reply {line:?}");
    }
    // Every LF ends a line with CR before it.
    assert!(only_crlf(out), "bare LF in a reply {out:?}");
}

/// Every CR is followed by LF and every LF preceded by CR: nothing a downstream server could
/// read as the end of DATA at another place than Sekisho did.
fn only_crlf(body: &[u8]) -> bool {
    body.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => body.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && body[i - 1] == b'\r',
        _ => true,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, data)) = data.split_first() else {
        return;
    };
    let peer = PeerInfo {
        ip: "192.0.2.7".parse().unwrap(),
        port: 25000,
    };
    let mut session = Session::new(config(head), peer);
    check_replies(&session.take_output());
    // Reads of 1..=16 bytes, or all at once: the parser must not depend on read boundaries.
    let step = match head >> 4 {
        0 => data.len().max(1),
        n => n as usize,
    };
    let mut accepted = 0usize;
    for chunk in data.chunks(step) {
        session.feed(chunk);
        loop {
            match session.advance() {
                Event::NeedInput => break,
                Event::StartTls => session.tls_started(wire::TlsInfo {
                    version: "TLSv1.3".into(),
                    cipher: "TLS13_AES_128_GCM_SHA256".into(),
                }),
                Event::Message(t) => {
                    assert!(t.body.len() <= MAX_SIZE, "message over the limit");
                    assert!(!t.rcpts.is_empty(), "message without recipients");
                    assert!(only_crlf(&t.body), "bare CR or LF passed on (smuggling)");
                    accepted += 1;
                    if accepted % 3 == 0 {
                        session.queued(Err(Reply::new(452, "4.3.1", "spool full")));
                    } else {
                        session.queued(Ok(format!("Q{accepted}")));
                    }
                }
                Event::Close => {
                    check_replies(&session.take_output());
                    return;
                }
            }
        }
        check_replies(&session.take_output());
    }
});
