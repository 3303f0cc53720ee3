//! A trainable naive-Bayes spam classifier: tokenizer, token counts, Robinson–Fisher combining.
//!
//! This is the classifier core. Token counts are kept per model (global, or one per tenant);
//! tokens are stored as 64-bit FNV-1a hashes, so a model holds no words of anybody's mail.
//! Wiring into the pipeline (a stage, `sekisho train` / `learn`, models in the store) builds
//! on this module.

use std::collections::{HashMap, HashSet};

use mail_parser::{MimeHeaders, PartType};

use crate::view::MessageView;

/// Most distinct tokens taken from one message.
pub const MAX_TOKENS: usize = 5000;
/// Fewest trained messages of each class before the model gives an opinion.
pub const MIN_TRAINED: u64 = 50;
/// Most "interesting" tokens combined per message.
pub const MAX_INTERESTING: usize = 150;

/// FNV-1a, 64 bit: a stable token hash (std's hasher may change between Rust versions).
pub fn token_hash(token: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in token.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The sorted token hashes of a message and the digest that identifies it for learning
/// (same token set, same digest — so re-learning a message is recognised even after trace
/// headers were added to it).
pub fn learn_form(tokens: &HashSet<String>) -> (u64, Vec<u64>) {
    let mut hashes: Vec<u64> = tokens.iter().map(|t| token_hash(t)).collect();
    hashes.sort_unstable();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in hashes.iter().flat_map(|x| x.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h, hashes)
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF   // Hiragana, Katakana
        | 0x3400..=0x4DBF // CJK extension A
        | 0x4E00..=0x9FFF // CJK unified ideographs
        | 0xAC00..=0xD7AF // Hangul syllables
        | 0xF900..=0xFAFF // CJK compatibility ideographs
        | 0xFF66..=0xFF9F) // half-width Katakana
}

/// Adds the tokens of `text` with `prefix` to `out`: lower-cased words of 3–24 characters,
/// and for CJK runs (no spaces between words) overlapping character bigrams.
fn words(text: &str, prefix: &str, out: &mut HashSet<String>) {
    let mut word = String::new();
    let mut cjk_prev: Option<char> = None;
    let flush = |w: &mut String, out: &mut HashSet<String>| {
        let n = w.chars().count();
        if (3..=24).contains(&n) && !w.chars().all(|c| c.is_ascii_digit()) {
            let lower = w.to_lowercase();
            if n >= 4 && *w != lower && w.chars().all(|c| !c.is_lowercase()) {
                out.insert(format!("{prefix}caps:{lower}"));
            }
            out.insert(format!("{prefix}{lower}"));
        } else if n > 24 {
            out.insert(format!("{prefix}long:{}", n / 10 * 10));
        }
        w.clear();
    };
    for c in text.chars() {
        if out.len() >= MAX_TOKENS {
            return;
        }
        if is_cjk(c) {
            flush(&mut word, out);
            if let Some(p) = cjk_prev {
                out.insert(format!("{prefix}{p}{c}"));
            }
            cjk_prev = Some(c);
        } else if c.is_alphanumeric() || matches!(c, '$' | '!' | '\'' | '-') {
            cjk_prev = None;
            word.push(c);
        } else {
            cjk_prev = None;
            flush(&mut word, out);
        }
    }
    flush(&mut word, out);
}

/// The tokens of a message: subject words (`s:`), sender domain (`f:`), registrable link domains (`u:`),
/// a few header facts (`h:`), and body words (HTML tags removed).
pub fn tokenize(msg: &MessageView<'_>) -> HashSet<String> {
    let mut out = HashSet::new();
    let Some(m) = &msg.parsed else {
        // The parser could not read it: the words of its subject and raw body still count.
        if let Some(f) = &msg.fallback {
            out.insert("h:unparsed".to_string());
            words(&f.subject, "s:", &mut out);
            words(&f.body, "", &mut out);
            for d in msg.links().domains.iter().take(50) {
                out.insert(format!("u:{d}"));
            }
        }
        return out;
    };
    if let Some(subject) = m.subject() {
        words(subject, "s:", &mut out);
    }
    if let Some(addr) = m
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address.as_deref())
        && let Some((_, domain)) = addr.rsplit_once('@')
    {
        out.insert(format!("f:{}", domain.to_lowercase()));
    }
    let links = &msg.links().domains;
    for d in links.iter().take(50) {
        // By registrable domain: a campaign's or a sender's many host names are one token.
        match crate::stages::dnsbl::registrable(d) {
            Some(r) => out.insert(format!("u:{r}")),
            None => out.insert(format!("u:{d}")),
        };
        if d.parse::<std::net::IpAddr>().is_ok() {
            out.insert("u:numeric-host".into());
        } else if let Some((_, tld)) = d.rsplit_once('.') {
            out.insert(format!("tld:{tld}"));
        }
    }
    out.insert(format!("links:{}", links.len().min(20) / 5));
    out.insert(format!(
        "link-align:{}",
        crate::stages::bulk::link_alignment(msg).0.word()
    ));
    if msg.html_only() {
        out.insert("h:html-only".into());
    }
    for name in ["X-Mailer", "User-Agent"] {
        if let Some((_, v)) = m.headers_raw().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            words(v, "h:mailer:", &mut out);
        }
    }
    if let Some(name) = m
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.name.as_deref())
    {
        words(name, "fn:", &mut out);
    }
    let rcpts = m.to().map_or(0, |a| a.iter().count()) + m.cc().map_or(0, |a| a.iter().count());
    out.insert(format!("h:rcpts:{}", rcpts.min(5)));
    for (name, value) in m.headers_raw() {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "in-reply-to" | "references" | "reply-to" | "x-priority" | "importance" => {
                out.insert(format!("h:has:{lower}"));
            }
            _ => {}
        }
        if lower == "x-priority" {
            words(value, "h:prio:", &mut out);
        }
    }
    for part in &m.parts {
        if let Some(ct) = part.content_type() {
            out.insert(format!(
                "ct:{}/{}",
                ct.ctype().to_ascii_lowercase(),
                ct.subtype().unwrap_or("").to_ascii_lowercase()
            ));
            if let Some(cs) = ct.attribute("charset") {
                out.insert(format!("cs:{}", cs.to_ascii_lowercase()));
            }
        }
        if let Some(enc) = part.content_transfer_encoding() {
            out.insert(format!("cte:{}", enc.to_ascii_lowercase()));
        }
    }
    for part in &m.parts {
        match &part.body {
            PartType::Text(t) => words(t, "", &mut out),
            PartType::Html(h) => {
                html_tags(h, &mut out);
                words(&strip_html(h), "", &mut out)
            }
            _ => {}
        }
        if out.len() >= MAX_TOKENS {
            break;
        }
    }
    out
}

/// Tokens for the HTML elements and a few attributes used (`<font color>`, `<img>`, tables):
/// the markup style of bulk senders is as telling as their words.
fn html_tags(html: &str, out: &mut HashSet<String>) {
    let mut rest = html;
    let mut seen = 0;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>').unwrap_or(rest.len());
        let tag = &rest[..end.min(200)];
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '/')
            .take(12)
            .collect::<String>()
            .to_ascii_lowercase();
        if !name.is_empty() && !name.starts_with('/') {
            out.insert(format!("tag:{name}"));
            let lower = tag.to_ascii_lowercase();
            if let Some(i) = lower.find("href=") {
                let url = lower[i + 5..].trim_start_matches(['"', '\'']);
                let url = url.split(['"', '\'', ' ', '>']).next().unwrap_or("");
                let path = url.splitn(4, '/').nth(3).unwrap_or("");
                words(path, "url:", out);
                if url.starts_with("mailto:") {
                    out.insert("url:mailto".into());
                }
            }
            for attr in [
                "color=", "size=", "bgcolor=", "width=", "style=", "href=", "src=",
            ] {
                if lower.contains(attr) {
                    out.insert(format!("tag:{name}:{attr}"));
                }
            }
        }
        seen += 1;
        if seen > 2000 {
            break;
        }
    }
}

/// Text of HTML without tags, scripts and styles (rough; good enough for tokens).
fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Token counts of one model.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Model {
    /// Spam messages trained.
    pub spam_msgs: u64,
    /// Ham messages trained.
    pub ham_msgs: u64,
    /// Per token hash: (spam count, ham count).
    pub tokens: HashMap<u64, (u32, u32)>,
}

impl Model {
    /// A model from stored counts.
    pub fn from_counts(
        spam_msgs: u64,
        ham_msgs: u64,
        tokens: impl IntoIterator<Item = (u64, u32, u32)>,
    ) -> Self {
        Self {
            spam_msgs,
            ham_msgs,
            tokens: tokens.into_iter().map(|(t, s, h)| (t, (s, h))).collect(),
        }
    }

    /// True once both classes have enough messages for an opinion.
    pub fn is_trained(&self) -> bool {
        self.spam_msgs >= MIN_TRAINED && self.ham_msgs >= MIN_TRAINED
    }

    /// Learns one message's tokens as spam or ham.
    pub fn train(&mut self, tokens: &HashSet<String>, spam: bool) {
        if spam {
            self.spam_msgs += 1;
        } else {
            self.ham_msgs += 1;
        }
        for t in tokens {
            let e = self.tokens.entry(token_hash(t)).or_default();
            if spam {
                e.0 = e.0.saturating_add(1);
            } else {
                e.1 = e.1.saturating_add(1);
            }
        }
    }

    /// Robinson's f(w): the token's spam probability, pulled towards 0.5 when rarely seen.
    fn token_prob(&self, spam: u32, ham: u32) -> f64 {
        let s = f64::from(spam) / self.spam_msgs.max(1) as f64;
        let h = f64::from(ham) / self.ham_msgs.max(1) as f64;
        let p = if s + h == 0.0 { 0.5 } else { s / (s + h) };
        let n = f64::from(spam) + f64::from(ham);
        const STRENGTH: f64 = 0.45;
        const PRIOR: f64 = 0.5;
        (STRENGTH * PRIOR + n * p) / (STRENGTH + n)
    }

    /// The spam probability of a message (0 = ham, 1 = spam) by Fisher's method over the
    /// most interesting tokens; `None` until both classes have `MIN_TRAINED` messages.
    pub fn classify(&self, tokens: &HashSet<String>) -> Option<f64> {
        if !self.is_trained() {
            return None;
        }
        let mut probs: Vec<f64> = tokens
            .iter()
            .filter_map(|t| self.tokens.get(&token_hash(t)))
            .map(|&(s, h)| self.token_prob(s, h))
            .filter(|p| (p - 0.5).abs() > 0.1)
            .collect();
        if probs.is_empty() {
            return Some(0.5);
        }
        probs.sort_by(|a, b| (b - 0.5).abs().total_cmp(&(a - 0.5).abs()));
        probs.truncate(MAX_INTERESTING);
        let n = probs.len();
        let ln_ham: f64 = probs.iter().map(|p| p.clamp(1e-6, 1.0 - 1e-6).ln()).sum();
        let ln_spam: f64 = probs
            .iter()
            .map(|p| (1.0 - p).clamp(1e-6, 1.0 - 1e-6).ln())
            .sum();
        let h = chi2_q(-2.0 * ln_ham, 2 * n);
        let s = chi2_q(-2.0 * ln_spam, 2 * n);
        Some((1.0 + h - s) / 2.0)
    }
}

/// The upper tail of the chi-square distribution with an even number of degrees of freedom
/// (Robinson's `chi2Q`).
fn chi2_q(x2: f64, dof: usize) -> f64 {
    let m = x2 / 2.0;
    let mut term = (-m).exp();
    let mut sum = term;
    for i in 1..dof / 2 {
        term *= m / i as f64;
        sum += term;
    }
    sum.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::ViewLimits;

    fn tokens(raw: &str) -> HashSet<String> {
        let (v, _) = MessageView::parse(raw.as_bytes(), &ViewLimits::default());
        tokenize(&v)
    }

    #[test]
    fn tokenizer_words_subject_links_and_cjk() {
        let t = tokens(
            "From: Shop <deals@cheap.example>\r\nSubject: Huge DISCOUNT today\r\n\r\nBuy now at https://cheap.example/x 12345 a ok 至急ご確認ください\r\n",
        );
        for want in [
            "s:huge",
            "s:discount",
            "s:today",
            "f:cheap.example",
            "u:cheap.example",
            "buy",
            "now",
            "至急",
            "確認",
        ] {
            assert!(t.contains(want), "{want} missing from {t:?}");
        }
        assert!(!t.contains("12345"), "pure numbers are not tokens");
        assert!(!t.contains("ok"), "two-letter words are not tokens");
    }

    #[test]
    fn classifier_needs_training_then_separates_classes() {
        let mut m = Model::default();
        let spam = tokens("Subject: cheap pills\r\n\r\ncheap pills casino winner prize claim\r\n");
        let ham =
            tokens("Subject: meeting notes\r\n\r\nagenda minutes project schedule review\r\n");
        assert_eq!(m.classify(&spam), None, "untrained model has no opinion");
        for _ in 0..MIN_TRAINED {
            m.train(&spam, true);
            m.train(&ham, false);
        }
        assert!(m.classify(&spam).unwrap() > 0.99);
        assert!(m.classify(&ham).unwrap() < 0.01);
        let unknown = tokens("Subject: zebra\r\n\r\nquokka axolotl\r\n");
        assert_eq!(m.classify(&unknown), Some(0.5));
    }

    #[test]
    fn chi2_is_a_probability() {
        assert!((chi2_q(0.0, 10) - 1.0).abs() < 1e-9);
        assert!(chi2_q(1000.0, 10) < 1e-9);
        let mid = chi2_q(10.0, 10);
        assert!(mid > 0.0 && mid < 1.0);
    }

    /// Holds out one fifth of the SpamAssassin training split and trains on the rest.
    /// A sanity bound only; `bench/quality` (to come) reports the real figures.
    #[test]
    fn spamassassin_split_held_out_fifth() {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/corpora/spam/spamassassin-public-corpus-train");
        let load = |dir: &str| -> Vec<HashSet<String>> {
            let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            files
                .iter()
                .map(|p| {
                    let raw = std::fs::read(p).unwrap();
                    let (v, _) = MessageView::parse(&raw, &ViewLimits::default());
                    tokenize(&v)
                })
                .collect()
        };
        let spam = load("spam-1");
        let ham = load("easy-ham-1");
        assert!(spam.len() > 400 && ham.len() > 2000, "corpus missing");
        let mut m = Model::default();
        for (_, t) in spam.iter().enumerate().filter(|(i, _)| i % 5 != 0) {
            m.train(t, true);
        }
        for (_, t) in ham.iter().enumerate().filter(|(i, _)| i % 5 != 0) {
            m.train(t, false);
        }
        let held_spam: Vec<_> = spam
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 5 == 0)
            .map(|(_, t)| t)
            .collect();
        let held_ham: Vec<_> = ham
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 5 == 0)
            .map(|(_, t)| t)
            .collect();
        let caught = held_spam
            .iter()
            .filter(|t| m.classify(t).unwrap() > 0.9)
            .count();
        let false_pos = held_ham
            .iter()
            .filter(|t| m.classify(t).unwrap() > 0.9)
            .count();
        let recall = caught as f64 / held_spam.len() as f64;
        let fp = false_pos as f64 / held_ham.len() as f64;
        eprintln!(
            "held-out fifth: spam recall {recall:.3} ({caught}/{}), ham false positives {fp:.4} ({false_pos}/{})",
            held_spam.len(),
            held_ham.len()
        );
        assert!(recall > 0.85, "spam recall {recall:.3}");
        assert!(fp < 0.01, "ham false positives {fp:.4}");
    }
}
