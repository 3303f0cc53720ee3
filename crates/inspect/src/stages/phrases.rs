//! How the text is written: phrases of unsolicited offers and of the advance-fee scam, and
//! words spelled to slip past word filters. Judged on the decoded, normalized text (subject
//! and bodies, HTML markup removed), so encodings and markup do not hide a phrase.
//!
//! The phrase lists are short and specific: each phrase was chosen because it is common in
//! spam and next to absent from wanted mail, newsletters included (measured on the training
//! split; `docs/performance.md`). One phrase alone is never evidence.

use crate::evidence::{Evidence, Symbol};
use crate::view::MessageView;
use crate::{Envelope, SyncStage};

/// Text judged (bytes of normalized text).
const TEXT_BYTES: usize = crate::view::NORMALIZED_BYTES;

/// Phrases of unsolicited offers and their removal notices (normalized text: lower case,
/// digits as `0`, one space between words).
const OFFER: &[&str] = &[
    "to be removed from",
    "removed from our",
    "remove in the subject",
    "with remove in the",
    "reply with remove",
    "this is not spam",
    "this is not a spam",
    "in compliance with",
    "bulk email",
    "email marketing",
    "no obligation",
    "money back guarantee",
    "000% guaranteed",
    "satisfaction guaranteed",
    "risk free",
    "risk-free",
    "act now",
    "order now",
    "call now",
    "work from home",
    "extra income",
    "as seen on",
    "free gift",
    "dear friend",
    "this message is sent",
    "you are receiving this",
    "limited time offer",
    "lowest rates",
    "mortgage rates",
    "double your",
];

/// Phrases of the advance-fee ("419") scam.
const ADVANCE_FEE: &[&str] = &[
    "next of kin",
    "united states dollars",
    "transfer the sum",
    "foreign partner",
    "bank draft",
    "beneficiary",
    "my late husband",
    "my late father",
    "barrister",
    "deceased",
    "strictly confidential",
    "confidential business",
    "lottery",
    "diplomatic",
    "compensation of",
];

/// Words spam filters look for, which spam spells with look-alikes to slip past them.
const WATCHED: &[&str] = &[
    "viagra",
    "cialis",
    "pharmacy",
    "prescription",
    "mortgage",
    "refinance",
    "casino",
    "lottery",
    "credit",
    "income",
    "investment",
    "guaranteed",
    "cheap",
    "discount",
    "medication",
    "pills",
    "rolex",
    "replica",
    "porn",
    "weight",
];

/// The phrases of `list` in `text`, each once.
fn found<'l>(text: &str, list: &[&'l str]) -> Vec<&'l str> {
    list.iter().copied().filter(|p| text.contains(p)).collect()
}

/// A watched word behind look-alike characters (`v1agra`, `cr3dit`) or spread letters
/// (`v-i-a-g-r-a`, `v i a g r a`), and the form it was written in.
fn obfuscated(text: &str) -> Option<(String, &'static str)> {
    // Look-alikes: a word with letters and at least one look-alike that reads as a watched
    // word. (Normalized text has digits folded to `0`, so `0` stands for any digit.)
    for word in text.split(' ').take(20_000) {
        let w = word.trim_matches(|c: char| !c.is_alphanumeric() && c != '@' && c != '$');
        if !(4..=24).contains(&w.len()) || !w.chars().any(|c| c.is_ascii_alphabetic()) {
            continue;
        }
        if !w.contains(['0', '@', '$', '!', '|']) {
            continue;
        }
        if let Some(hit) = WATCHED.iter().find(|t| reads_as(w, t)) {
            return Some((w.to_string(), hit));
        }
    }
    // Spread letters: single letters separated by one separator (space, dot, dash, `*`).
    let letters: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < letters.len() {
        let mut run = String::new();
        let start = letters[i].0;
        let mut j = i;
        while j < letters.len() && letters[j].1.is_ascii_alphabetic() {
            let alone_before = j == 0 || !letters[j - 1].1.is_ascii_alphabetic();
            let alone_after = letters
                .get(j + 1)
                .is_none_or(|c| !c.1.is_ascii_alphabetic());
            if !(alone_before && alone_after) {
                break;
            }
            run.push(letters[j].1);
            match letters.get(j + 1).map(|c| c.1) {
                Some(' ' | '.' | '-' | '*' | '_') => j += 2,
                _ => {
                    j += 1;
                    break;
                }
            }
        }
        if run.len() >= 4
            && let Some(hit) = WATCHED.iter().find(|t| run == **t)
        {
            let end = letters.get(j).map_or(text.len(), |c| c.0);
            return Some((text[start..end].trim().to_string(), hit));
        }
        i = j.max(i + 1);
    }
    None
}

/// Whether `w` reads as `target` when look-alikes are read as letters (`0` may be o, i, l
/// or e; `@` a; `$` s; `!` and `|` i or l).
fn reads_as(w: &str, target: &str) -> bool {
    w.len() == target.len()
        && w.chars().zip(target.chars()).all(|(c, t)| {
            c == t
                || match c {
                    '0' => matches!(t, 'o' | 'i' | 'l' | 'e' | 'a' | 's'),
                    '@' => t == 'a',
                    '$' => t == 's',
                    '!' | '|' => matches!(t, 'i' | 'l'),
                    _ => false,
                }
        })
}

/// The phrase and spelling rules.
pub struct Phrases;

impl Phrases {
    /// The evidence for one message.
    pub fn check(msg: &MessageView<'_>) -> Vec<Evidence> {
        let text = msg.normalized_text(TEXT_BYTES);
        let mut out = Vec::new();
        let offer = found(text, OFFER);
        let symbol = match offer.len() {
            0 | 1 => None,
            2 | 3 => Some(Symbol::SpamPhrases),
            _ => Some(Symbol::SpamPhrasesMany),
        };
        if let Some(symbol) = symbol {
            out.push(Evidence::new(symbol, quoted(&offer)));
        }
        let fee = found(text, ADVANCE_FEE);
        if fee.len() >= 2 {
            out.push(Evidence::new(Symbol::AdvanceFee, quoted(&fee)));
        }
        if let Some((written, word)) = obfuscated(text) {
            let shown: String = written.chars().take(40).collect();
            out.push(Evidence::new(
                Symbol::ObfuscatedWord,
                format!("\"{shown}\" reads as \"{word}\""),
            ));
        }
        out
    }
}

/// The phrases as a detail: the first five, quoted.
fn quoted(phrases: &[&str]) -> String {
    let shown: Vec<String> = phrases.iter().take(5).map(|p| format!("\"{p}\"")).collect();
    format!("{} phrases: {}", phrases.len(), shown.join(", "))
}

impl SyncStage for Phrases {
    fn stage_name(&self) -> &'static str {
        "phrases"
    }

    fn evidence(&self, msg: &MessageView<'_>, _env: &Envelope) -> Vec<Evidence> {
        Self::check(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::ViewLimits;

    fn symbols(body: &str) -> Vec<Symbol> {
        let raw = format!("From: a@example.org\r\nSubject: hello\r\n\r\n{body}\r\n");
        let (v, _) = MessageView::parse(raw.as_bytes(), &ViewLimits::default());
        Phrases::check(&v).iter().map(|e| e.symbol).collect()
    }

    #[test]
    fn offer_phrases_count_distinct_and_one_is_not_enough() {
        assert!(symbols("If you wish to be removed from this list, no problem.").is_empty());
        assert_eq!(
            symbols("To be removed from our list reply. No obligation!"),
            [Symbol::SpamPhrases]
        );
        assert_eq!(
            symbols("To be REMOVED from our list. No obligation, risk free, act now, order now."),
            [Symbol::SpamPhrasesMany]
        );
        // Repeating one phrase does not count twice.
        assert!(symbols("act now act now act now act now").is_empty());
        // Markup and encodings do not hide a phrase.
        let raw = "From: a@example.org\r\nSubject: x\r\nContent-Type: text/html\r\n\
                   Content-Transfer-Encoding: quoted-printable\r\n\r\n\
                   <p>no <b>obli=\r\ngation</b> and risk&nbsp;free</p>\r\n";
        let (v, _) = MessageView::parse(raw.as_bytes(), &ViewLimits::default());
        let got: Vec<Symbol> = Phrases::check(&v).iter().map(|e| e.symbol).collect();
        assert_eq!(got, [Symbol::SpamPhrases]);
    }

    #[test]
    fn advance_fee_needs_two_phrases() {
        assert_eq!(
            symbols("I am a barrister. As next of kin you may claim the funds."),
            [Symbol::AdvanceFee]
        );
        assert!(symbols("The beneficiary of the trust is named in the will.").is_empty());
    }

    #[test]
    fn obfuscated_watched_words_and_ordinary_text() {
        assert_eq!(symbols("Cheap V1AGRA here"), [Symbol::ObfuscatedWord]);
        assert_eq!(symbols("best m0rtg@ge deal"), [Symbol::ObfuscatedWord]);
        assert_eq!(symbols("buy v-i-a-g-r-a today"), [Symbol::ObfuscatedWord]);
        assert_eq!(symbols("buy c i a l i s today"), [Symbol::ObfuscatedWord]);
        // Ordinary words, numbers, plain spellings, addresses and version strings.
        for clean in [
            "viagra is a drug name; the mortgage is due",
            "version 3.0 of the x86 build, ipv4 and mp3",
            "mail me at credit@example.org or see a b c d",
            "the 2002 income report",
            "v i a g",
        ] {
            assert!(symbols(clean).is_empty(), "{clean}");
        }
    }
}
