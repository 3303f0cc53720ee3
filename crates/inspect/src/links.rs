//! Links in a message: HTML anchors (target and shown text) and URLs in text, with limits.

use std::sync::LazyLock;

use mail_parser::PartType;
use regex::Regex;

/// The links of a message: every target domain and the anchors whose text shows another
/// domain than they lead to.
#[derive(Debug, Default)]
pub struct Links {
    /// Target domains (sorted, unique).
    pub domains: Vec<String>,
    /// Anchors whose visible text names another domain than their target (at most
    /// [`MAX_MISMATCHES`], in document order).
    pub mismatches: Vec<Mismatch>,
}

/// An anchor whose visible text names one domain and whose target is another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The domain the reader sees.
    pub shown: String,
    /// The domain the link leads to.
    pub target: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "link text shows {} but leads to {}",
            self.shown, self.target
        )
    }
}

/// Most links examined per message (a limit, so a message with a million links costs little).
pub const MAX_LINKS: usize = 500;

/// Most link-text mismatches kept per message.
pub const MAX_MISMATCHES: usize = 16;

static HREF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?is)<a\s[^>]*?href\s*=\s*["']?([^"'\s>]+)[^>]*>(.*?)</a\s*>"#)
        .expect("valid regex")
});
static URL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?i)\bhttps?://[^\s<>"'()]+"#).expect("valid regex"));

/// Lower case, no trailing dot, Unicode form of IDNs (punycode decoded).
pub fn normalize(domain: &str) -> String {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let (unicode, result) = idna::domain_to_unicode(&d);
    if result.is_ok() { unicode } else { d }
}

/// The host of a URL, if it has one.
pub fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split(':').next()?;
    (!host.is_empty() && host.contains('.')).then(|| normalize(host))
}

/// Link domains of the message (HTML hrefs and URLs in text), and the anchors whose
/// visible text names another domain than their target.
pub fn links(m: &mail_parser::Message<'_>) -> Links {
    let mut domains = Vec::new();
    let mut mismatches = Vec::new();
    for part in &m.parts {
        match &part.body {
            PartType::Html(html) => {
                for cap in HREF.captures_iter(html).take(MAX_LINKS) {
                    let Some(target) = host_of(&cap[1]) else {
                        continue;
                    };
                    let text = strip_tags(&cap[2]);
                    let shown = URL
                        .find(&text)
                        .and_then(|u| host_of(u.as_str()))
                        .or_else(|| looks_like_domain(&text).map(|d| normalize(&d)));
                    if mismatches.len() < MAX_MISMATCHES
                        && let Some(shown) = shown
                        && shown != target
                        && !target.ends_with(&format!(".{shown}"))
                    {
                        mismatches.push(Mismatch {
                            shown,
                            target: target.clone(),
                        });
                    }
                    domains.push(target);
                }
            }
            PartType::Text(text) => {
                domains.extend(
                    URL.find_iter(text)
                        .take(MAX_LINKS)
                        .filter_map(|u| host_of(u.as_str())),
                );
            }
            _ => {}
        }
        if domains.len() >= MAX_LINKS {
            break;
        }
    }
    domains.sort();
    domains.dedup();
    Links {
        domains,
        mismatches,
    }
}

/// Link domains of plain text (sorted, unique, at most [`MAX_LINKS`] looked at): the links
/// of a message the MIME parser could not read.
pub fn text_links(text: &str) -> Vec<String> {
    let mut domains: Vec<String> = URL
        .find_iter(text)
        .take(MAX_LINKS)
        .filter_map(|u| host_of(u.as_str()))
        .collect();
    domains.sort();
    domains.dedup();
    domains
}

fn strip_tags(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

/// Anchor text that is just a domain (`www.bank.example`).
fn looks_like_domain(text: &str) -> Option<String> {
    let t = text.trim().trim_end_matches('/');
    let ok = t.contains('.')
        && !t.contains(char::is_whitespace)
        && !t.contains('@')
        && t.split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'));
    ok.then(|| t.to_string())
}
