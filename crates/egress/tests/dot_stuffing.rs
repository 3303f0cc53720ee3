//! Dot-stuffing (egress, sending DATA) and unstuffing (wire, receiving it) are inverses: any
//! body of CRLF lines — dots anywhere, lines that are only a dot, empty lines — comes out of
//! the receiver exactly as it went into the sender, whatever the read boundaries.

use proptest::prelude::*;
use wire::BareLineEndings;
use wire::data::{ContentSink, DataReceiver};

/// Lines of octets without CR or LF, dots and empty lines made likely.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let octet = prop_oneof![
        3 => Just(b'.'),
        1 => Just(b' '),
        4 => any::<u8>().prop_filter("no line ends", |b| *b != b'\r' && *b != b'\n'),
    ];
    let line = prop::collection::vec(octet, 0..12);
    (prop::collection::vec(line, 0..20), any::<bool>()).prop_map(|(lines, last_open)| {
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            out.extend_from_slice(l);
            if i + 1 < lines.len() || !last_open {
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    })
}

fn receive(wire_bytes: &[u8], step: usize) -> (Vec<u8>, usize) {
    let sink = ContentSink::new(1 << 20, 1000, BareLineEndings::Reject, 0);
    let mut rx = DataReceiver::new(sink);
    let mut used = 0;
    for chunk in wire_bytes.chunks(step) {
        let (n, done) = rx.ingest(chunk);
        used += n;
        if done {
            break;
        }
    }
    (rx.finish().0, used)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn unstuffing_inverts_stuffing(body in body(), step in 1usize..9) {
        let sent = egress::client::dot_stuff(&body);
        let (got, used) = receive(&sent, step);
        let mut want = body.clone();
        if !want.is_empty() && !want.ends_with(b"\r\n") {
            want.extend_from_slice(b"\r\n");
        }
        prop_assert_eq!(got, want);
        prop_assert_eq!(used, sent.len(), "the terminator is the end of the stuffed body");
    }

    #[test]
    fn no_stuffed_line_is_the_terminator(body in body()) {
        let sent = egress::client::dot_stuff(&body);
        let end = sent.len() - 3;
        // Only the last line is a lone dot.
        prop_assert!(!sent[..end].windows(5).any(|w| w == b"\r\n.\r\n"));
        prop_assert!(!sent.starts_with(b".\r\n") || end == 0);
    }
}
