//! Transcript tests of the sans-IO session. Every transcript is fed whole, split at every byte
//! boundary, and one byte at a time; all three must give the same replies and messages.

use std::sync::Arc;

use wire::{
    BareLineEndings, Event, Limits, PeerInfo, RcptVerdict, RecipientPolicy, Session, SessionConfig,
    TlsInfo, Transaction,
};

/// Tenant 1 owns `one.test` (every mailbox), tenant 2 owns `two.test` (only `known@`),
/// `flaky.test` cannot be checked right now.
struct Directory;

impl RecipientPolicy for Directory {
    fn check(&self, rcpt: &str) -> RcptVerdict {
        let domain = rcpt.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
        match domain.as_deref() {
            Some("one.test") => RcptVerdict::Accept { tenant: 1 },
            Some("two.test") if rcpt.starts_with("known@") => RcptVerdict::Accept { tenant: 2 },
            Some("two.test") => RcptVerdict::UnknownUser,
            Some("flaky.test") => RcptVerdict::TempFail,
            _ => RcptVerdict::RelayDenied,
        }
    }

    /// The test client (192.0.2.7) is tenant 1's own mail server.
    fn relay_tenant(&self, client: std::net::IpAddr, mail_from: &str) -> Option<i64> {
        let ours = mail_from.to_ascii_lowercase().ends_with("@one.test");
        (ours && client.to_string() == "192.0.2.7").then_some(1)
    }
}

fn config(limits: Limits) -> Arc<SessionConfig> {
    Arc::new(SessionConfig {
        hostname: "mx.sekisho.test".into(),
        limits,
        starttls: true,
        recipients: Arc::new(Directory),
    })
}

/// A received message: sender, recipients with tenant ids, body.
type Received = (String, Vec<(String, i64)>, Vec<u8>);

#[derive(Debug, PartialEq)]
struct Outcome {
    output: String,
    messages: Vec<Received>,
    closed: bool,
    tls: bool,
    /// Each message's `relay_for`.
    relayed: Vec<Option<i64>>,
    /// Each message's `require_tls`.
    require_tls: Vec<bool>,
}

/// Drives a session over `chunks` like the ingress driver does.
fn drive(limits: &Limits, chunks: &[&[u8]]) -> Outcome {
    let mut session = Session::new(
        config(limits.clone()),
        PeerInfo {
            ip: "192.0.2.7".parse().unwrap(),
            port: 40000,
        },
    );
    let mut out = Outcome {
        output: String::new(),
        messages: vec![],
        closed: false,
        tls: false,
        relayed: vec![],
        require_tls: vec![],
    };
    let mut n = 0;
    'feed: for chunk in chunks {
        session.feed(chunk);
        loop {
            match session.advance() {
                Event::NeedInput => break,
                Event::Message(tx) => {
                    let Transaction {
                        mail_from,
                        rcpts,
                        body,
                        relay_for,
                        require_tls,
                        ..
                    } = *tx;
                    out.messages.push((mail_from, rcpts, body));
                    out.require_tls.push(require_tls);
                    out.relayed.push(relay_for);
                    n += 1;
                    session.queued(Ok(format!("Q{n}")));
                }
                Event::StartTls => {
                    out.tls = true;
                    session.tls_started(TlsInfo {
                        version: "TLSv1.3".into(),
                        cipher: "TLS13_AES_256_GCM_SHA384".into(),
                    });
                }
                Event::Close => {
                    out.closed = true;
                    break 'feed;
                }
            }
        }
    }
    out.output = String::from_utf8(session.take_output()).unwrap();
    out
}

/// Runs the transcript whole, split at every byte, and byte by byte; returns the outcome.
fn run(limits: &Limits, input: &[u8]) -> Outcome {
    let whole = drive(limits, &[input]);
    for k in 1..input.len() {
        let split = drive(limits, &[&input[..k], &input[k..]]);
        assert_eq!(split, whole, "split at byte {k} differs");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(drive(limits, &bytes), whole, "byte-by-byte differs");
    whole
}

/// The reply codes in an output, one per reply (continuation lines skipped).
fn codes(output: &str) -> Vec<u16> {
    output
        .split("\r\n")
        .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
        .map(|l| l[..3].parse().unwrap())
        .collect()
}

const HEAD: &str =
    "EHLO client.test\r\nMAIL FROM:<sender@example.org>\r\nRCPT TO:<alice@one.test>\r\n";

#[test]
fn plain_delivery_with_pipelining() {
    let input = format!("{HEAD}DATA\r\nSubject: hi\r\n\r\nHello\r\n.\r\nQUIT\r\n");
    let out = run(&Limits::default(), input.as_bytes());
    assert_eq!(codes(&out.output), [220, 250, 250, 250, 354, 250, 221]);
    assert!(out.output.contains("250 2.0.0 Ok: queued as Q1"));
    assert_eq!(out.messages.len(), 1);
    assert_eq!(out.messages[0].0, "sender@example.org");
    assert_eq!(out.messages[0].1, vec![("alice@one.test".to_string(), 1)]);
    assert_eq!(out.messages[0].2, b"Subject: hi\r\n\r\nHello\r\n");
    assert!(out.closed);
}

#[test]
fn a_tenants_own_server_relays_its_senders_mail_outbound() {
    let input = "EHLO mail.one.test\r\nMAIL FROM:<alice@one.test>\r\nRCPT TO:<bob@example.org>\r\n\
                 RCPT TO:<carol@one.test>\r\nRCPT TO:<dan@example.net>\r\nDATA\r\nSubject: out\r\n\r\nhi\r\n.\r\n\
                 MAIL FROM:<alice@one.test>\r\nRCPT TO:<carol@one.test>\r\nDATA\r\n\r\nin\r\n.\r\n\
                 MAIL FROM:<mallory@example.org>\r\nRCPT TO:<bob@example.org>\r\nRSET\r\n\
                 MAIL FROM:<>\r\nRCPT TO:<bob@example.org>\r\nQUIT\r\n";
    let out = run(&Limits::default(), input.as_bytes());
    // External recipients of a tenant's sender are outbound (tenant 0); the tenant's own
    // recipient belongs in another transaction; its own mail inbound stays inbound.
    assert_eq!(
        codes(&out.output),
        [
            220, 250, 250, 250, 452, 250, 354, 250, 250, 250, 354, 250, 250, 550, 250, 250, 550,
            221
        ]
    );
    assert_eq!(out.messages.len(), 2);
    assert_eq!(
        out.messages[0].1,
        vec![("bob@example.org".into(), 0), ("dan@example.net".into(), 0)]
    );
    assert_eq!(out.relayed, [Some(1), None]);
    assert_eq!(out.messages[1].1, vec![("carol@one.test".into(), 1)]);
    // A foreign sender (or the null sender, which the test policy does not relay) from the
    // same server is not relayed.
    assert_eq!(
        out.output.matches("550 5.7.1 Relay access denied").count(),
        2
    );
}

#[test]
fn ehlo_advertises_the_extensions() {
    let out = run(&Limits::default(), b"EHLO client.test\r\n");
    for ext in [
        "PIPELINING",
        "SIZE 52428800",
        "8BITMIME",
        "SMTPUTF8",
        "CHUNKING",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
        "HELP",
    ] {
        assert!(
            out.output.contains(&format!("250-{ext}\r\n"))
                || out.output.contains(&format!("250 {ext}\r\n")),
            "{ext} missing in {}",
            out.output
        );
    }
}

#[test]
fn dot_stuffed_lines_are_unstuffed() {
    let input = format!("{HEAD}DATA\r\n..leading dot\r\n...\r\n.\r\n");
    let out = run(&Limits::default(), input.as_bytes());
    assert_eq!(out.messages[0].2, b".leading dot\r\n..\r\n");
}

#[test]
fn empty_body_is_accepted() {
    let input = format!("{HEAD}DATA\r\n.\r\n");
    let out = run(&Limits::default(), input.as_bytes());
    assert_eq!(out.messages[0].2, b"");
}

#[test]
fn bdat_chunks_and_last() {
    let input = format!("{HEAD}BDAT 7\r\nSubjectBDAT 11 LAST\r\n: x\r\n\r\nyo\r\nQUIT\r\n");
    let out = run(&Limits::default(), input.as_bytes());
    assert_eq!(codes(&out.output), [220, 250, 250, 250, 250, 250, 221]);
    assert!(out.output.contains("250 2.0.0 7 octets received"));
    assert_eq!(out.messages[0].2, b"Subject: x\r\n\r\nyo\r\n");
}

#[test]
fn bdat_zero_length_last_completes() {
    let input = format!("{HEAD}BDAT 4\r\nab\r\nBDAT 0 LAST\r\n");
    let out = run(&Limits::default(), input.as_bytes());
    assert_eq!(out.messages[0].2, b"ab\r\n");
}

#[test]
fn data_after_bdat_is_refused() {
    let input = format!("{HEAD}BDAT 2\r\nabDATA\r\n");
    let out = run(&Limits::default(), input.as_bytes());
    assert!(out.output.contains("503 5.5.1 DATA not allowed after BDAT"));
}

#[test]
fn bdat_without_transaction_consumes_its_chunk() {
    let out = run(
        &Limits::default(),
        b"EHLO c\r\nBDAT 6 LAST\r\nNOOP\r\nNOOP\r\n",
    );
    // The chunk "NOOP\r\n" is swallowed, the second NOOP is a command.
    assert_eq!(codes(&out.output), [220, 250, 503, 250]);
}

#[test]
fn recipients_of_two_tenants_in_one_transaction() {
    let input = "EHLO c\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<a@one.test>\r\nRCPT TO:<known@two.test>\r\nRCPT TO:<b@one.test>\r\nDATA\r\nx\r\n.\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<known@two.test>\r\nDATA\r\ny\r\n.\r\n";
    let out = run(&Limits::default(), input.as_bytes());
    // The second tenant's recipient is deferred with 452 and sent in its own transaction.
    assert_eq!(
        codes(&out.output),
        [220, 250, 250, 250, 452, 250, 354, 250, 250, 250, 354, 250]
    );
    assert!(
        out.output
            .contains("452 4.5.3 Recipient of another organisation")
    );
    assert_eq!(
        out.messages[0].1,
        vec![("a@one.test".into(), 1), ("b@one.test".into(), 1)]
    );
    assert_eq!(out.messages[1].1, vec![("known@two.test".into(), 2)]);
}

#[test]
fn recipient_verdicts_have_their_codes() {
    let input = "EHLO c\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<x@elsewhere.test>\r\nRCPT TO:<nobody@two.test>\r\nRCPT TO:<a@flaky.test>\r\nRCPT TO:<not-an-address>\r\nDATA\r\n";
    let out = run(&Limits::default(), input.as_bytes());
    assert!(out.output.contains("550 5.7.1 Relay access denied"));
    assert!(out.output.contains("550 5.1.1 "));
    assert!(out.output.contains("451 4.3.0 "));
    assert!(out.output.contains(" 5.1.3 "));
    assert!(out.output.contains("554 5.5.1 No valid recipients"));
    assert!(out.messages.is_empty());
}

#[test]
fn null_sender_is_accepted() {
    let input = "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@one.test>\r\nDATA\r\nx\r\n.\r\n";
    let out = run(&Limits::default(), input.as_bytes());
    assert_eq!(out.messages[0].0, "");
}

#[test]
fn command_sequence_errors() {
    let input = "MAIL FROM:<a@b.test>\r\nHELO c\r\nRCPT TO:<a@one.test>\r\nDATA\r\nMAIL FROM:<a@b.test>\r\nMAIL FROM:<a@b.test>\r\nRSET\r\nNOOP\r\nVRFY bob\r\nEXPN list\r\nHELP\r\nFOO\r\nAUTH PLAIN x\r\n";
    let out = run(&Limits::default(), input.as_bytes());
    assert_eq!(
        codes(&out.output),
        [
            220, 503, 250, 503, 503, 250, 503, 250, 250, 252, 502, 214, 500, 502
        ]
    );
}

#[test]
fn helo_sessions_cannot_use_esmtp_parameters() {
    let out = run(
        &Limits::default(),
        b"HELO c\r\nMAIL FROM:<a@b.test> BODY=8BITMIME\r\n",
    );
    assert!(out.output.contains("555 5.5.4"));
}

#[test]
fn unsupported_mail_parameters_are_refused() {
    let out = run(&Limits::default(), b"EHLO c\r\nMAIL FROM:<a@b.test> BODY=BINARYMIME\r\nMAIL FROM:<a@b.test> BODY=8BITMIME SMTPUTF8\r\n");
    assert_eq!(codes(&out.output), [220, 250, 555, 250]);
}

// ---- Limits: each one crossed ----

#[test]
fn limit_command_line_length() {
    let limits = Limits {
        max_command_line: 64,
        ..Limits::default()
    };
    let ok = format!("NOOP {}\r\n", "a".repeat(64 - 7));
    assert_eq!(ok.len(), 64);
    let too_long = format!("NOOP {}\r\nNOOP\r\n", "a".repeat(200));
    let out = run(&limits, format!("{ok}{too_long}").as_bytes());
    assert_eq!(codes(&out.output), [220, 250, 500, 250]);
    assert!(
        out.output
            .contains("500 5.5.2 Line too long (limit 64 octets)")
    );
}

#[test]
fn limit_message_size_declared() {
    let limits = Limits {
        max_message_size: 100,
        ..Limits::default()
    };
    let out = run(
        &limits,
        b"EHLO c\r\nMAIL FROM:<a@b.test> SIZE=101\r\nMAIL FROM:<a@b.test> SIZE=100\r\n",
    );
    assert_eq!(codes(&out.output), [220, 250, 552, 250]);
    assert!(
        out.output
            .contains("552 5.3.4 Message size exceeds fixed limit of 100 octets")
    );
}

#[test]
fn limit_message_size_received_data_and_bdat() {
    let limits = Limits {
        max_message_size: 100,
        ..Limits::default()
    };
    let fits = format!("{HEAD}DATA\r\n{}\r\n.\r\n", "a".repeat(98));
    let out = run(&limits, fits.as_bytes());
    assert_eq!(out.messages.len(), 1);
    let big = format!("{HEAD}DATA\r\n{}\r\n.\r\nNOOP\r\n", "a".repeat(99));
    let out = run(&limits, big.as_bytes());
    assert!(out.messages.is_empty());
    assert_eq!(codes(&out.output), [220, 250, 250, 250, 354, 552, 250]);
    let big_bdat = format!("{HEAD}BDAT 101 LAST\r\n{}NOOP\r\n", "a".repeat(101));
    let out = run(&limits, big_bdat.as_bytes());
    assert!(out.messages.is_empty());
    assert_eq!(codes(&out.output), [220, 250, 250, 250, 552, 250]);
}

#[test]
fn limit_body_line_length() {
    let limits = Limits {
        max_body_line: 20,
        ..Limits::default()
    };
    let ok = format!("{HEAD}DATA\r\n{}\r\n.\r\n", "a".repeat(20));
    assert_eq!(run(&limits, ok.as_bytes()).messages.len(), 1);
    let long = format!("{HEAD}DATA\r\n{}\r\n.\r\n", "a".repeat(21));
    let out = run(&limits, long.as_bytes());
    assert!(out.messages.is_empty());
    assert!(
        out.output
            .contains("550 5.6.0 Message rejected: a line is longer than 20 octets")
    );
}

#[test]
fn limit_recipients() {
    let limits = Limits {
        max_recipients: 2,
        ..Limits::default()
    };
    let input = "EHLO c\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<a@one.test>\r\nRCPT TO:<b@one.test>\r\nRCPT TO:<c@one.test>\r\nDATA\r\nx\r\n.\r\n";
    let out = run(&limits, input.as_bytes());
    assert!(out.output.contains("452 4.5.3 Too many recipients"));
    assert_eq!(out.messages[0].1.len(), 2);
}

#[test]
fn limit_commands_per_session() {
    let limits = Limits {
        max_commands: 3,
        ..Limits::default()
    };
    let out = run(&limits, b"NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n");
    assert_eq!(codes(&out.output), [220, 250, 250, 250, 421]);
    assert!(out.output.contains("421 4.7.0 Too many commands"));
    assert!(out.closed);
}

#[test]
fn limit_errors_per_session() {
    let limits = Limits {
        max_errors: 2,
        ..Limits::default()
    };
    let out = run(&limits, b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n");
    assert_eq!(codes(&out.output), [220, 500, 500, 500, 421]);
    assert!(out.closed);
}

// ---- SMTP smuggling ----

/// Sequences that some servers take as the end of DATA (from the 2023 SMTP smuggling
/// research and smtp-proto's own table).
const SMUGGLING: &[&str] = &[
    "\n.\n",
    "\n.\r\n",
    "\r.\r",
    "\r.\r\n",
    "\r\n.\n",
    "\r\n.\r",
    "\n.\r",
    "\r\n\x00.\r\n",
    "\r.\n",
];

fn smuggling_input(seq: &str) -> String {
    format!(
        "{HEAD}DATA\r\nSubject: legit\r\n\r\nhello{seq}MAIL FROM:<ceo@one.test>\r\nRCPT TO:<alice@one.test>\r\nDATA\r\nSubject: forged\r\n\r\nsmuggled\r\n.\r\nQUIT\r\n"
    )
}

#[test]
fn smuggling_sequences_never_end_data_and_are_rejected() {
    let mut ran = 0;
    for seq in SMUGGLING {
        let out = run(&Limits::default(), smuggling_input(seq).as_bytes());
        let has_bare = seq.replace("\r\n", "").contains(['\r', '\n']);
        if has_bare {
            assert!(out.messages.is_empty(), "{seq:?} produced a message");
            assert_eq!(
                codes(&out.output),
                [220, 250, 250, 250, 354, 550, 221],
                "{seq:?}"
            );
        } else {
            // e.g. "\r\n\0.\r\n": no bare line ending, the NUL line is content.
            assert_eq!(out.messages.len(), 1, "{seq:?}");
            assert!(out.messages[0].2.windows(8).any(|w| w == b"smuggled"));
        }
        ran += 1;
    }
    assert_eq!(ran, SMUGGLING.len());
}

#[test]
fn smuggling_sequences_normalized_stay_inside_one_message() {
    let limits = Limits {
        bare_line_endings: BareLineEndings::Normalize,
        ..Limits::default()
    };
    for seq in SMUGGLING {
        let out = run(&limits, smuggling_input(seq).as_bytes());
        assert_eq!(out.messages.len(), 1, "{seq:?}");
        let body = &out.messages[0].2;
        assert!(body.windows(9).any(|w| w == b"MAIL FROM"), "{seq:?}");
        // Normalized content has no bare line endings left.
        for (i, &b) in body.iter().enumerate() {
            if b == b'\n' {
                assert_eq!(body[i - 1], b'\r', "{seq:?}");
            }
            if b == b'\r' {
                assert_eq!(body.get(i + 1), Some(&b'\n'), "{seq:?}");
            }
        }
    }
}

#[test]
fn bare_lf_in_bdat_is_rejected_too() {
    let input = format!("{HEAD}BDAT 5 LAST\r\na\n.\nNOOP\r\n");
    let out = run(&Limits::default(), input.as_bytes());
    assert!(out.messages.is_empty());
    assert!(out.output.contains("550 5.6.0"));
}

// ---- STARTTLS ----

#[test]
fn starttls_discards_pipelined_plaintext_and_requires_ehlo_again() {
    let input = "EHLO c\r\nSTARTTLS\r\nMAIL FROM:<injected@x.test>\r\n";
    let out = drive(
        &Limits::default(),
        &[
            input.as_bytes(),
            b"MAIL FROM:<a@b.test>\r\nEHLO c\r\nMAIL FROM:<a@b.test>\r\n",
        ],
    );
    assert!(out.tls);
    assert_eq!(codes(&out.output), [220, 250, 220, 503, 250, 250]);
    // After TLS, STARTTLS is no longer offered.
    let after = out
        .output
        .rsplit("220 2.0.0 Ready to start TLS")
        .next()
        .unwrap();
    assert!(!after.contains("STARTTLS"));
}

#[test]
fn requiretls_is_offered_and_taken_only_inside_tls() {
    // In clear text: not offered, and asking for it is refused (RFC 8689 §4.1).
    let out = run(
        &Limits::default(),
        b"EHLO c\r\nMAIL FROM:<a@b.test> REQUIRETLS\r\nQUIT\r\n",
    );
    assert!(!out.output.contains("REQUIRETLS\r\n"), "{}", out.output);
    assert_eq!(codes(&out.output), [220, 250, 530, 221]);
    assert!(out.output.contains("530 5.7.10"));
    // After STARTTLS: offered, accepted, and carried with the message.
    let out = drive(
        &Limits::default(),
        &[
            b"EHLO c\r\nSTARTTLS\r\n",
            b"EHLO c\r\nMAIL FROM:<a@b.test> REQUIRETLS\r\nRCPT TO:<alice@one.test>\r\nDATA\r\nhi\r\n.\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@one.test>\r\nDATA\r\nho\r\n.\r\n",
        ],
    );
    let after = out.output.rsplit("Ready to start TLS").next().unwrap();
    assert!(after.contains("250-REQUIRETLS\r\n"), "{after}");
    assert_eq!(out.require_tls, [true, false]);
}

#[test]
fn starttls_needs_ehlo() {
    let out = run(&Limits::default(), b"STARTTLS\r\n");
    assert_eq!(codes(&out.output), [220, 503]);
}
