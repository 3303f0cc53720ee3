//! A second, discriminative classifier beside naive Bayes: online logistic regression over
//! hashed binary features of what a sender wrote and chose, not of how the mail travelled:
//!
//! - character 4-grams of the decoded, normalized text (subject and body after MIME and
//!   charset decoding, HTML markup and style removed, lower case, digits folded, white space
//!   collapsed) — they see obfuscated spelling, phrasing and any script without a tokenizer;
//! - every token of the Bayes tokenizer (words, link domains, MIME types, HTML elements);
//! - the names of the header fields the author's software wrote, and each adjacent pair in
//!   their order — never their values, and never trace fields (`Received`, `Return-Path`,
//!   the receivers' own filter stamps), whose relays and dates describe one period's transport
//!   and do not carry over to another period's or another sender's mail.
//!
//! Logistic regression weighs correlated features jointly instead of multiplying them as if
//! independent. Training is online (stochastic gradient descent, `PASSES` passes over each
//! batch at a falling rate) with an L2 shrink of every weight a message touches, and weights
//! bounded by `MAX_WEIGHT`: a model is sure of a message only when many features agree, not
//! because one rare feature was seen in one class. `sekisho train` and `learn` update stored
//! weights.
//!
//! Weights are a dense vector of 2^20 `f32` (4 MiB per model); feature indices are FNV-1a
//! hashes, so a model holds no text of anybody's mail.

use std::collections::HashSet;

use crate::bayes::token_hash;
use crate::view::MessageView;

/// Feature index bits: 2^20 weights.
pub const BITS: u32 = 20;
/// Number of weights in a model.
pub const DIM: usize = 1 << BITS;
/// Bytes of normalized text whose 4-grams are features.
pub const TEXT_BYTES: usize = 3000;
/// Most header fields whose names are features.
pub const MAX_HEADER_NAMES: usize = 64;
/// Learning rate of the first pass over a batch (each later pass divides it by its number).
pub const RATE: f32 = 0.03;
/// Passes over each batch of messages learned: a second pass at half the rate makes the
/// result depend much less on the order of the messages.
pub const PASSES: u32 = 2;
/// L2 shrink per step of each weight a message touches (relative to the learning rate).
pub const L2: f32 = 0.001;
/// Largest absolute value of one weight.
pub const MAX_WEIGHT: f32 = 4.0;
/// Largest absolute weight sum fed to the logistic function (keeps `exp` finite).
const MAX_MARGIN: f64 = 40.0;
/// Format tag of a stored model: "SKLR", version 2 (version 1 weighed raw transport bytes:
/// its weights mean nothing to these features, so it is not read).
const MAGIC: &[u8; 5] = b"SKLR2";

/// Header fields added on the way (relays, receivers, their filters): not the sender's.
fn is_trace(name: &str) -> bool {
    const EXACT: [&str; 9] = [
        "received",
        "return-path",
        "delivered-to",
        "x-original-to",
        "authentication-results",
        "received-spf",
        "x-received",
        "x-envelope-from",
        "x-envelope-to",
    ];
    const PREFIXES: [&str; 6] = [
        "x-spam",
        "x-virus",
        "arc-",
        "x-amavis",
        "x-sekisho",
        "x-ms-exchange-organization",
    ];
    EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

fn index(h: u64) -> u32 {
    (h >> (64 - BITS)) as u32
}

fn fnv(seed: u64, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The sorted, distinct feature indices of a message: 4-grams of its normalized text, the
/// hashed Bayes tokens, and its header names and their order.
pub fn features(msg: &MessageView<'_>, tokens: &HashSet<String>) -> Vec<u32> {
    let text = msg.normalized_text(TEXT_BYTES);
    let mut out: Vec<u32> = Vec::with_capacity(text.len() + tokens.len() + 2 * MAX_HEADER_NAMES);
    out.extend(text.as_bytes().windows(4).map(|w| index(fnv(4, w))));
    out.extend(tokens.iter().map(|t| index(token_hash(t))));
    if let Some(m) = &msg.parsed {
        let mut prev = String::from("^");
        for (name, _) in m.headers_raw().take(MAX_HEADER_NAMES) {
            let name = name.to_ascii_lowercase();
            // Only real field names (an mbox `From ` line is not one) that are not trace.
            let field_name =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
            if !field_name || is_trace(&name) {
                continue;
            }
            out.push(index(fnv(5, name.as_bytes())));
            out.push(index(fnv(6, format!("{prev}>{name}").as_bytes())));
            prev = name;
        }
    }
    out.extend(
        producer_marks(msg)
            .iter()
            .map(|m| index(fnv(7, m.as_bytes()))),
    );
    out.sort_unstable();
    out.dedup();
    out
}

/// Most characters of a value whose shape is a mark.
const SHAPE_CHARS: usize = 48;

/// The shape of a value as its software writes it: lower-case letters as `a`, upper-case
/// as `A`, digits as `0`, other characters kept, runs of one class as one (`----=_NextPart_
/// 000_00D1` → `-=_AaAa_0_0A0`). It tells mailers apart without naming anybody.
pub fn shape(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars().take(SHAPE_CHARS) {
        let class = if c.is_ascii_lowercase() {
            'a'
        } else if c.is_ascii_uppercase() {
            'A'
        } else if c.is_ascii_digit() {
            '0'
        } else {
            c
        };
        if !out.ends_with(class) || !class.is_ascii_alphanumeric() {
            out.push(class);
        }
    }
    out
}

/// Marks of the software that produced the message, which its sender chose: the shapes of
/// its MIME boundaries, `Message-ID` and `Date`, and the words of the MIME preamble ("This is
/// a multi-part message in MIME format."). Never values that name a relay or a time.
fn producer_marks(msg: &MessageView<'_>) -> Vec<String> {
    let Some(m) = &msg.parsed else {
        return Vec::new();
    };
    let mut out = Vec::new();
    use mail_parser::MimeHeaders;
    for part in m.parts.iter().take(8) {
        if let Some(b) = part.content_type().and_then(|ct| ct.attribute("boundary")) {
            out.push(format!("boundary:{}", shape(b)));
        }
    }
    if let Some(id) = m.message_id() {
        let (local, domain) = id.rsplit_once('@').unwrap_or((id, ""));
        out.push(format!("msgid:{}", shape(local)));
        let author = msg
            .author()
            .and_then(|a| a.rsplit_once('@').map(|(_, d)| d.to_string()));
        let same = author.is_some_and(|a| {
            a.eq_ignore_ascii_case(domain)
                || domain.to_ascii_lowercase().ends_with(&format!(".{a}"))
        });
        out.push(format!("msgid-domain:{same}"));
    }
    if let Some((_, v)) = m
        .headers_raw()
        .find(|(n, _)| n.eq_ignore_ascii_case("Date"))
    {
        out.push(format!("date:{}", shape(v.trim())));
    }
    if let Some(pre) = preamble(msg.raw) {
        out.extend(
            pre.split(|c: char| !c.is_alphanumeric())
                .filter(|w| w.len() >= 2)
                .take(24)
                .map(|w| format!("pre:{}", w.to_ascii_lowercase())),
        );
    }
    out
}

/// The MIME preamble of a multipart message: the text between the header block and the
/// first boundary line (at most 300 bytes looked at).
fn preamble(raw: &[u8]) -> Option<String> {
    let (_, body_at) = crate::view::header_block(raw);
    let body = &raw[body_at..raw.len().min(body_at + 300)];
    let text = String::from_utf8_lossy(body);
    let end = text.find("\n--")?;
    let pre = text[..end].trim();
    (!pre.is_empty()).then(|| pre.to_string())
}

/// The weights of one model.
#[derive(Clone, PartialEq)]
pub struct Weights {
    w: Vec<f32>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nonzero = self.w.iter().filter(|x| **x != 0.0).count();
        write!(f, "Weights({nonzero} of {DIM} non-zero)")
    }
}

impl Default for Weights {
    fn default() -> Self {
        Self { w: vec![0.0; DIM] }
    }
}

impl Weights {
    fn margin(&self, features: &[u32]) -> f64 {
        let s: f64 = features
            .iter()
            .map(|&i| f64::from(self.w[i as usize]))
            .sum();
        s.clamp(-MAX_MARGIN, MAX_MARGIN)
    }

    /// The spam probability of a message (0 = ham, 1 = spam).
    pub fn predict(&self, features: &[u32]) -> f64 {
        1.0 / (1.0 + (-self.margin(features)).exp())
    }

    /// One online step towards the message's class, in pass `pass` (from 0) over a batch:
    /// callers go over the whole batch in order `PASSES` times.
    pub fn learn(&mut self, features: &[u32], spam: bool, pass: u32) {
        let y = if spam { 1.0 } else { 0.0 };
        let rate = RATE / (pass + 1) as f32;
        let step = ((y - self.predict(features)) as f32) * rate;
        for &i in features {
            let w = &mut self.w[i as usize];
            *w = (*w * (1.0 - L2 * rate) + step).clamp(-MAX_WEIGHT, MAX_WEIGHT);
        }
    }

    /// The stored form: the format tag, then every weight as little-endian `f32`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + DIM * 4);
        out.extend_from_slice(MAGIC);
        for x in &self.w {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out
    }

    /// Reads the stored form; `None` for anything else (wrong tag, size, or a weight that
    /// is not a finite number).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let body = bytes.strip_prefix(MAGIC.as_slice())?;
        if body.len() != DIM * 4 {
            return None;
        }
        let w: Vec<f32> = body
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        w.iter().all(|x| x.is_finite()).then_some(Self { w })
    }
}

/// Whether `bytes` are weights of an earlier format (learned on other features: a model to
/// relearn, not a damaged one).
pub fn is_older_format(bytes: &[u8]) -> bool {
    bytes.starts_with(b"SKLR1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bayes::tokenize;
    use crate::view::{MessageView, ViewLimits};

    fn feats(raw: &str) -> Vec<u32> {
        let (v, _) = MessageView::parse(raw.as_bytes(), &ViewLimits::default());
        features(&v, &tokenize(&v))
    }

    #[test]
    fn features_are_sorted_distinct_bounded_and_stable() {
        let raw = "Subject: hello hello\r\n\r\nhello hello hello\r\n";
        let f = feats(raw);
        assert!(f.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
        assert!(f.iter().all(|&i| (i as usize) < DIM));
        assert_eq!(f, feats(raw), "same message, same features");
        assert_ne!(f, feats("Subject: other\r\n\r\nsomething else\r\n"));
        // Only the first TEXT_BYTES bytes of text give 4-grams.
        let long = format!("Subject: x\r\n\r\n{}", "abcdefghij".repeat(10_000));
        assert!(feats(&long).len() < TEXT_BYTES + 100);
        let (empty, _) = MessageView::parse(b"", &ViewLimits::default());
        assert!(features(&empty, &HashSet::new()).is_empty());
    }

    #[test]
    fn transport_does_not_change_features_what_the_sender_wrote_does() {
        let body = "From: a@example.org\r\nSubject: offer\r\nX-Mailer: M\r\n\r\nBuy now\r\n";
        let relayed = format!(
            "Return-Path: <b@relay.example>\r\nReceived: from relay.example by mx.example; \
             Mon, 2 Sep 2002 10:00:00 +0100\r\nX-Spam-Status: No, hits=0.1\r\n{body}"
        );
        assert_eq!(
            feats(body),
            feats(&relayed),
            "trace fields are not features"
        );
        // The same words in another transfer encoding and case are the same text.
        let qp = "From: a@example.org\r\nSubject: offer\r\nX-Mailer: M\r\n\
                  Content-Transfer-Encoding: quoted-printable\r\n\r\nBUY=20now\r\n";
        let text = |raw: &str| {
            let (v, _) = MessageView::parse(raw.as_bytes(), &ViewLimits::default());
            v.normalized_text(TEXT_BYTES).to_string()
        };
        assert_eq!(text(body), text(qp));
        // A header name the author's software wrote is a feature, and so is the order.
        let reordered = "Subject: offer\r\nFrom: a@example.org\r\nX-Mailer: M\r\n\r\nBuy now\r\n";
        assert_ne!(feats(body), feats(reordered));
        let listed = format!("List-Unsubscribe: <mailto:u@example.org>\r\n{body}");
        assert_ne!(feats(body), feats(&listed));
    }

    #[test]
    fn weights_stay_bounded_however_often_a_feature_is_seen() {
        let f = feats("Subject: same\r\n\r\nsame words every time\r\n");
        let mut w = Weights::default();
        for _ in 0..10_000 {
            w.learn(&f, true, 0);
        }
        assert!(w.w.iter().all(|x| x.abs() <= MAX_WEIGHT));
        assert!(w.predict(&f) > 0.99);
    }

    #[test]
    fn learning_separates_classes_and_untrained_is_undecided() {
        let spam = feats("Subject: cheap pills\r\n\r\ncheap pills casino winner prize claim\r\n");
        let ham = feats("Subject: meeting notes\r\n\r\nagenda minutes project schedule\r\n");
        let mut w = Weights::default();
        assert_eq!(w.predict(&spam), 0.5);
        for _ in 0..200 {
            w.learn(&spam, true, 0);
            w.learn(&ham, false, 0);
        }
        assert!(w.predict(&spam) > 0.99, "{}", w.predict(&spam));
        assert!(w.predict(&ham) < 0.01, "{}", w.predict(&ham));
    }

    #[test]
    fn stored_form_round_trips_and_rejects_anything_else() {
        let mut w = Weights::default();
        w.learn(&feats("Subject: a\r\n\r\nbody words here\r\n"), true, 0);
        let bytes = w.to_bytes();
        assert_eq!(bytes.len(), 5 + DIM * 4);
        assert_eq!(Weights::from_bytes(&bytes), Some(w));
        assert_eq!(Weights::from_bytes(&bytes[..bytes.len() - 1]), None);
        assert_eq!(Weights::from_bytes(b"SKLR2"), None);
        let mut older = bytes.clone();
        older[..5].copy_from_slice(b"SKLR1");
        assert_eq!(
            Weights::from_bytes(&older),
            None,
            "the raw-byte model is not read"
        );
        assert!(is_older_format(&older) && !is_older_format(&bytes));
        let mut nan = bytes.clone();
        nan[5..9].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(
            Weights::from_bytes(&nan),
            None,
            "a non-finite weight is refused"
        );
    }

    /// Online passes over four fifths of the SpamAssassin split, judged on the fifth.
    /// A sanity bound only; `bench/quality` reports the real figures.
    #[test]
    fn spamassassin_split_held_out_fifth() {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/corpora/spam/spamassassin-public-corpus-train");
        let load = |dir: &str, spam: bool| -> Vec<(u64, Vec<u32>, bool)> {
            let mut out = Vec::new();
            for e in std::fs::read_dir(root.join(dir)).unwrap() {
                let p = e.unwrap().path();
                let raw = std::fs::read(&p).unwrap();
                let (v, _) = MessageView::parse(&raw, &ViewLimits::default());
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                out.push((token_hash(&name), features(&v, &tokenize(&v)), spam));
            }
            out
        };
        let mut all = load("spam-1", true);
        all.extend(load("easy-ham-1", false));
        assert!(all.len() > 2500, "corpus missing");
        all.sort_by_key(|m| m.0);
        let mut w = Weights::default();
        for pass in 0..PASSES {
            for m in all.iter().filter(|m| m.0 % 5 != 0) {
                w.learn(&m.1, m.2, pass);
            }
        }
        let held: Vec<_> = all.iter().filter(|m| m.0 % 5 == 0).collect();
        let spam = held.iter().filter(|m| m.2).count();
        let caught = held.iter().filter(|m| m.2 && w.predict(&m.1) > 0.9).count();
        let fp = held
            .iter()
            .filter(|m| !m.2 && w.predict(&m.1) > 0.9)
            .count();
        eprintln!("held-out fifth: caught {caught}/{spam}, false positives {fp}");
        assert!(
            spam > 50 && caught as f64 / spam as f64 > 0.9,
            "{caught}/{spam}"
        );
        assert!(
            (fp as f64) < 0.01 * (held.len() - spam) as f64,
            "{fp} false positives"
        );
    }
}
