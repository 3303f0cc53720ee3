//! The parsed message every stage reads.

use std::panic::{AssertUnwindSafe, catch_unwind};

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use crate::evidence::{Evidence, Symbol};

/// Limits on MIME structure; crossing one is evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewLimits {
    /// Deepest multipart / message nesting.
    pub max_mime_depth: usize,
    /// Most MIME parts.
    pub max_mime_parts: usize,
}

impl Default for ViewLimits {
    fn default() -> Self {
        Self {
            max_mime_depth: 20,
            max_mime_parts: 1000,
        }
    }
}

/// A message as the stages see it.
pub struct MessageView<'a> {
    /// The raw message.
    pub raw: &'a [u8],
    /// The parsed message, if it could be parsed.
    pub parsed: Option<Message<'a>>,
    /// Deepest nesting seen.
    pub depth: usize,
    /// Link domains and the first link-text mismatch, extracted once on first use.
    links: std::sync::OnceLock<crate::links::Links>,
    /// The normalized text (up to [`NORMALIZED_BYTES`]), made once on first use.
    normalized: std::sync::OnceLock<String>,
    /// When the MIME parser could not read the message: its body as text (undecoded, at most
    /// [`FALLBACK_BYTES`]) and its subject, so the content rules and the classifiers still
    /// judge what it says — a message crafted to break the parser does not skip them.
    pub fallback: Option<Fallback<'a>>,
}

/// The raw text of a message the MIME parser could not read.
pub struct Fallback<'a> {
    /// The `Subject:` field's value as written (unfolded).
    pub subject: String,
    /// The body, bytes read as UTF-8 (invalid sequences replaced).
    pub body: std::borrow::Cow<'a, str>,
}

/// Most bytes of a body read as text when the MIME parser could not read the message.
pub const FALLBACK_BYTES: usize = 256 * 1024;

impl<'a> Fallback<'a> {
    fn of(raw: &'a [u8]) -> Self {
        let split = header_block(raw);
        let head = String::from_utf8_lossy(&raw[..split.0]);
        let mut subject = String::new();
        let mut in_subject = false;
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if in_subject {
                    subject.push(' ');
                    subject.push_str(line.trim());
                }
                continue;
            }
            in_subject = false;
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("subject")
                && subject.is_empty()
            {
                subject = value.trim().to_string();
                in_subject = true;
            }
        }
        let body = &raw[split.1..raw.len().min(split.1 + FALLBACK_BYTES)];
        Self {
            subject,
            body: String::from_utf8_lossy(body),
        }
    }
}

/// Most bytes of normalized text kept for the stages that read it.
pub const NORMALIZED_BYTES: usize = 64 * 1024;

impl<'a> MessageView<'a> {
    /// Parses `raw` behind `catch_unwind`; returns the view and evidence about its structure.
    pub fn parse(raw: &'a [u8], limits: &ViewLimits) -> (Self, Vec<Evidence>) {
        let mut evidence = Vec::new();
        let parsed =
            catch_unwind(AssertUnwindSafe(|| MessageParser::default().parse(raw))).unwrap_or(None);
        let mut depth = 0;
        match &parsed {
            None => evidence.push(Evidence::new(
                Symbol::MimeUnparseable,
                "the MIME parser could not read the message",
            )),
            Some(m) => {
                depth = mime_depth(m, 0, 0);
                if depth > limits.max_mime_depth {
                    evidence.push(Evidence::new(
                        Symbol::MimeTooDeep,
                        format!("nesting depth {depth} > limit {}", limits.max_mime_depth),
                    ));
                }
                if m.parts.len() > limits.max_mime_parts {
                    evidence.push(Evidence::new(
                        Symbol::MimeTooManyParts,
                        format!("{} parts > limit {}", m.parts.len(), limits.max_mime_parts),
                    ));
                }
            }
        }
        let fallback = parsed.is_none().then(|| Fallback::of(raw));
        let view = MessageView {
            raw,
            fallback,
            parsed,
            depth,
            links: std::sync::OnceLock::new(),
            normalized: std::sync::OnceLock::new(),
        };
        (view, evidence)
    }

    /// The message's link domains (sorted, unique) and the first anchor whose text shows another
    /// domain than its target; computed once and shared by all stages.
    pub fn links(&self) -> &crate::links::Links {
        self.links
            .get_or_init(|| match (&self.parsed, &self.fallback) {
                (Some(m), _) => crate::links::links(m),
                (None, Some(f)) => crate::links::Links {
                    domains: crate::links::text_links(&f.body),
                    mismatches: Vec::new(),
                },
                (None, None) => crate::links::Links::default(),
            })
    }

    /// The address of the first `From:` mailbox, lower-cased.
    pub fn author(&self) -> Option<String> {
        self.parsed
            .as_ref()?
            .from()?
            .first()?
            .address
            .as_deref()
            .filter(|a| a.contains('@'))
            .map(|a| a.trim().to_ascii_lowercase())
    }

    /// Text of all text/plain and text/html bodies (decoded), for content rules.
    /// (The fallback body when the parser could not read the message.)
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.parsed
            .iter()
            .flat_map(|m| {
                m.parts.iter().filter_map(|p| match &p.body {
                    PartType::Text(t) | PartType::Html(t) => Some(t.as_ref()),
                    _ => None,
                })
            })
            .chain(self.fallback.iter().map(|f| f.body.as_ref()))
    }

    /// What a reader sees, normalized for features: the subject and the decoded body texts
    /// (HTML without markup, `<style>`/`<script>` content and with common entities
    /// decoded), lower case, ASCII digits folded to `0`, white space runs as one space; at
    /// most `max_bytes` bytes (cut at a character boundary; [`NORMALIZED_BYTES`] at most).
    /// Made once per message and shared by the stages.
    pub fn normalized_text(&self, max_bytes: usize) -> &str {
        let text = self
            .normalized
            .get_or_init(|| self.normalize(NORMALIZED_BYTES));
        let mut cut = text.len().min(max_bytes);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        &text[..cut]
    }

    fn normalize(&self, max_bytes: usize) -> String {
        let mut out = String::with_capacity(max_bytes.min(64 * 1024));
        let push = |text: &str, out: &mut String| {
            for c in text.chars() {
                if out.len() >= max_bytes {
                    return false;
                }
                if c.is_ascii() {
                    // The common case, without Unicode tables.
                    if c.is_ascii_whitespace() || c == '\u{b}' {
                        push_space(out);
                    } else if c.is_ascii_digit() {
                        out.push('0');
                    } else {
                        out.push(c.to_ascii_lowercase());
                    }
                } else if c.is_whitespace() {
                    push_space(out);
                } else {
                    out.extend(c.to_lowercase());
                }
            }
            push_space(out);
            true
        };
        let Some(m) = &self.parsed else {
            if let Some(f) = &self.fallback
                && push(&f.subject, &mut out)
            {
                push(&crate::html::visible_text(&f.body), &mut out);
            }
            return cut_at(out, max_bytes);
        };
        if let Some(subject) = m.subject()
            && !push(subject, &mut out)
        {
            return out;
        }
        for p in &m.parts {
            let more = match &p.body {
                PartType::Text(t) => push(t, &mut out),
                PartType::Html(h) => push(&crate::html::visible_text(h), &mut out),
                _ => true,
            };
            if !more {
                break;
            }
        }
        cut_at(out, max_bytes)
    }

    /// True if the message has an HTML body and no text/plain body (attachments aside).
    pub fn html_only(&self) -> bool {
        let Some(m) = &self.parsed else { return false };
        let mut html = false;
        let mut text = false;
        for p in &m.parts {
            let is_attachment = p.content_disposition().is_some_and(|d| d.is_attachment());
            match &p.body {
                PartType::Html(_) if !is_attachment => html = true,
                PartType::Text(_) if !is_attachment => text = true,
                _ => {}
            }
        }
        html && !text
    }
}

/// Depth of part `id` (multiparts and nested messages add one level each). Iterative on the
/// part list of each message level, recursion only into nested messages, which mail-parser
/// itself limits.
fn mime_depth(m: &Message<'_>, id: usize, base: usize) -> usize {
    let mut max = base;
    let mut stack = vec![(id, base)];
    let mut seen = 0usize;
    while let Some((id, d)) = stack.pop() {
        seen += 1;
        if seen > m.parts.len() * 2 + 2 {
            break; // malformed cycles cannot loop forever
        }
        max = max.max(d);
        match m.parts.get(id).map(|p| &p.body) {
            Some(PartType::Multipart(children)) => {
                stack.extend(children.iter().map(|&c| (c as usize, d + 1)));
            }
            Some(PartType::Message(inner)) => max = max.max(mime_depth(inner, 0, d + 1)),
            _ => {}
        }
    }
    max
}

/// Where a raw message's header block ends and its body starts (after the blank line, CRLF
/// or bare LF); both are the message's length when there is no body.
pub fn header_block(raw: &[u8]) -> (usize, usize) {
    raw.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            raw.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        })
        .unwrap_or((raw.len(), raw.len()))
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut_at(mut text: String, max: usize) -> String {
    let mut cut = text.len().min(max);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text
}

fn push_space(out: &mut String) {
    if !out.is_empty() && !out.ends_with(' ') {
        out.push(' ');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_text_is_made_once_and_cut_at_character_boundaries() {
        let raw = "Subject: Größe 2024\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
                   <p>Hello&nbsp;<b>WORLD</b></p>\r\n<style>p{}</style>\r\n";
        let (v, _) = MessageView::parse(raw.as_bytes(), &ViewLimits::default());
        let all = v.normalized_text(NORMALIZED_BYTES);
        assert_eq!(
            all.split_whitespace().collect::<Vec<_>>(),
            ["größe", "0000", "hello", "world"]
        );
        for max in 0..all.len() {
            let cut = v.normalized_text(max);
            assert!(cut.len() <= max && all.starts_with(cut), "{max}: {cut:?}");
        }
        // "ö" is two bytes: a cut inside it falls back to the boundary before it.
        assert_eq!(v.normalized_text(4), "grö");
        assert_eq!(v.normalized_text(3), "gr");
    }

    #[test]
    fn the_ascii_fast_path_normalizes_as_the_unicode_rules_do() {
        // Every ASCII character and some others, through the body of a text message,
        // against the rules written plainly: white space (Unicode's) one space, ASCII digits
        // 0, everything else lower case.
        let mut body: String = (0x20u8..0x7f).map(char::from).collect();
        body.push_str("\t\u{b}\u{c}|\u{a0}|\u{1c}\u{1f}|ÄÖÜ İ Σ ＡＢ ٣ x\u{2003}y");
        let raw =
            format!("Subject: s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n");
        let (v, _) = MessageView::parse(raw.as_bytes(), &ViewLimits::default());
        let mut want = String::new();
        for text in ["s", v.texts().next().unwrap()] {
            for c in text.chars() {
                if c.is_whitespace() {
                    push_space(&mut want);
                } else if c.is_ascii_digit() {
                    want.push('0');
                } else {
                    want.extend(c.to_lowercase());
                }
            }
            push_space(&mut want);
        }
        assert_eq!(v.normalized_text(NORMALIZED_BYTES), want);
    }
}
