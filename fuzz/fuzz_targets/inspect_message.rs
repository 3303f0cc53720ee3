//! The whole inspection pipeline (every stage `serve` runs; DNS and clamd answered by
//! in-process stand-ins) on an arbitrary message: it always comes to a verdict whose score is
//! a number and whose trace headers are single, CRLF-ended header fields.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: sekisho_fuzz::tolerate_caught_panics(), |raw: &[u8]| {
    let inspector = sekisho_fuzz::inspector();
    let env = sekisho_fuzz::envelope("mail.example.test", "sender@example.test");
    let verdict = sekisho_fuzz::runtime().block_on(inspector.inspect(raw, &env));
    assert!(!verdict.score.is_nan(), "score is NaN");
    for h in &verdict.trace_headers {
        assert!(h.ends_with("\r\n"), "trace header without CRLF: {h:?}");
        let body = &h[..h.len() - 2];
        // Folded lines are fine; a bare CR or LF would start a header of the sender's.
        for (i, line) in body.split("\r\n").enumerate() {
            assert!(!line.contains(['\r', '\n']), "bare line end in {h:?}");
            if i > 0 {
                assert!(line.starts_with([' ', '\t']), "unfolded line in {h:?}");
            }
        }
    }
});
