//! Regression inputs the fuzz targets found (docs/testing.md). Each is kept here with what
//! Sekisho promises about it.

use inspect::{MessageView, Symbol, ViewLimits};

fn corpus(path: &str) -> Vec<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora");
    std::fs::read(root.join(path)).expect("the shared corpora")
}

/// mail-parser 0.11.9 panics ("Invalid part ID, could not find multipart", message.rs:485) on
/// this SpamAssassin test message (found by `inspect_message`, seeded from the corpora). The
/// view parses behind `catch_unwind`: the message is judged without its MIME tree, marked
/// `MIME_UNPARSEABLE`, and the session that carried it goes on.
#[test]
fn a_message_the_mime_parser_panics_on_is_judged_without_its_tree() {
    let raw = corpus("spam/spamassassin-t-data/t/data/nice/mime9");
    let (view, evidence) = MessageView::parse(&raw, &ViewLimits::default());
    assert!(view.parsed.is_none());
    assert_eq!(
        evidence.iter().map(|e| e.symbol).collect::<Vec<_>>(),
        vec![Symbol::MimeUnparseable]
    );
}
