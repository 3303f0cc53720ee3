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

/// The same message made into spam: the parser still panics, but what the message says is
/// still judged — its raw body and subject go to the content rules, the link rules and both
/// classifiers' features, so a sender who finds a parser panic does not skip them.
#[test]
fn a_message_the_parser_panics_on_is_still_read_as_text() {
    let raw = String::from_utf8_lossy(&corpus("spam/spamassassin-t-data/t/data/nice/mime9"))
        .replace(
            "I just had to share this with all of you!",
            "To be removed from our list reply. No obligation! Visit http://192.0.2.7/offer",
        );
    let (view, evidence) = MessageView::parse(raw.as_bytes(), &ViewLimits::default());
    assert!(
        view.parsed.is_none(),
        "the edit must keep the panic for this test to mean anything"
    );
    assert_eq!(evidence[0].symbol, Symbol::MimeUnparseable);
    let fallback = view.fallback.as_ref().expect("the raw text");
    assert_eq!(fallback.subject, "Fwd: Fw: New University....");
    let found = |e: Vec<inspect::Evidence>| e.into_iter().map(|e| e.symbol).collect::<Vec<_>>();
    assert_eq!(
        found(inspect::stages::phrases::Phrases::check(&view)),
        [Symbol::SpamPhrases]
    );
    assert_eq!(
        found(inspect::stages::urls::UrlTricks::check(&view)),
        [Symbol::UrlNumericHost]
    );
    let tokens = inspect::bayes::tokenize(&view);
    assert!(
        tokens.contains("removed") && tokens.contains("h:unparsed"),
        "{tokens:?}"
    );
    assert!(
        view.normalized_text(200)
            .starts_with("fwd: fw: new university")
    );
    assert!(inspect::ngram::features(&view, &tokens).len() > 100);
}
