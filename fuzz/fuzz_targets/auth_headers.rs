//! Authentication headers: arbitrary `DKIM-Signature`, `ARC-Seal`, `ARC-Message-Signature`,
//! `ARC-Authentication-Results`, `Authentication-Results` and `Received-SPF` values on an
//! otherwise ordinary message, through the authentication stage (SPF, DKIM, ARC, DMARC, keys
//! served by the stand-in DNS server) and the header rules; first through the ingress's
//! removal of forged fields (`X-Sekisho-*`, results claiming our authserv-id), which must
//! leave the body alone and no field claiming our id behind.
#![no_main]

use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 8] = [
    "DKIM-Signature",
    "ARC-Seal",
    "ARC-Message-Signature",
    "ARC-Authentication-Results",
    "Authentication-Results",
    "Received-SPF",
    "From",
    "Received",
];

/// The input is header values separated by NUL; each value's first byte picks its name.
fn message(data: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(data.len() + 256);
    for value in data.split(|&b| b == 0) {
        let Some((&pick, value)) = value.split_first() else {
            continue;
        };
        raw.extend_from_slice(NAMES[pick as usize % NAMES.len()].as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(
        b"From: Alice <alice@one.test>\r\nTo: bob@one.test\r\nSubject: hello\r\n\
          Date: Mon, 1 Jun 2026 10:00:00 +0900\r\nMessage-ID: <a@one.test>\r\n\r\nHello Bob.\r\n",
    );
    raw
}

const AUTHSERV_ID: &str = "mx.sekisho.test";

fn body(raw: &[u8]) -> &[u8] {
    raw.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&[][..], |p| &raw[p..])
}

fn strip(raw: &[u8]) -> Vec<u8> {
    let out = inspect::strip_forged_headers(raw, AUTHSERV_ID).into_owned();
    assert_eq!(body(&out), body(raw), "the body changed");
    let again = inspect::strip_forged_headers(&out, AUTHSERV_ID);
    assert_eq!(&again[..], &out[..], "a forged field survived the removal");
    out
}

fuzz_target!(init: sekisho_fuzz::tolerate_caught_panics(), |data: &[u8]| {
    let raw = strip(&message(data));
    let env = sekisho_fuzz::envelope("mail.one.test", "alice@one.test");
    let verdict = sekisho_fuzz::runtime().block_on(sekisho_fuzz::inspector().inspect(&raw, &env));
    assert!(
        verdict
            .trace_headers
            .iter()
            .any(|h| h.starts_with("Authentication-Results: ")),
        "no Authentication-Results written"
    );
});
