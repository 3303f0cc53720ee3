//! The safe view of a quarantined message: what a person needs to decide (who, what, which
//! attachments, where the links go) and nothing that can act on their browser. No HTML is ever
//! passed on — HTML bodies become text — and links are defanged (`hxxps://example[.]com/…`) so
//! that nothing in the view is clickable or fetched. Parsing runs in the confined portal role,
//! behind `catch_unwind`, with explicit output limits.

use mail_parser::{MessageParser, MimeHeaders, PartType};
use serde::Serialize;

/// Most characters of body text shown.
pub const MAX_TEXT: usize = 256 * 1024;
/// Most attachments listed.
pub const MAX_ATTACHMENTS: usize = 100;
/// Most links listed.
pub const MAX_LINKS: usize = 200;

/// What the portal shows of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SafeView {
    /// `From:` as written (display name and address).
    pub from: String,
    /// `To:` addresses.
    pub to: Vec<String>,
    /// `Cc:` addresses.
    pub cc: Vec<String>,
    /// Subject.
    pub subject: String,
    /// `Date:` as RFC 3339, if readable.
    pub date: Option<String>,
    /// The body as plain text (HTML converted), links defanged, at most [`MAX_TEXT`] chars.
    pub text: String,
    /// The text was cut at [`MAX_TEXT`].
    pub truncated: bool,
    /// The body was HTML (converted to text here; remote content never loaded).
    pub was_html: bool,
    /// Attachments: name, declared type, size.
    pub attachments: Vec<Attachment>,
    /// Every distinct link target, defanged.
    pub links: Vec<String>,
}

/// One attachment, described (never served).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Attachment {
    /// File name as declared.
    pub name: String,
    /// Declared content type.
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: usize,
}

/// Makes links unclickable and unfetchable: `http` → `hxxp`, dots in the host → `[.]`.
pub fn defang(text: &str) -> String {
    // One pass: a lower-cased copy has the same byte offsets, and every link has a `://`.
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    for (sep, _) in lower.match_indices("://") {
        let Some(scheme) = SCHEMES.iter().find(|s| lower[..sep].ends_with(*s)) else {
            continue;
        };
        let start = sep - scheme.len();
        if start < done {
            continue;
        }
        let end = text[sep..]
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\''))
            .map_or(text.len(), |e| sep + e);
        out.push_str(&text[done..start]);
        out.push_str(&defang_url(&text[start..end]));
        done = end;
    }
    out.push_str(&text[done..]);
    out
}

/// Schemes whose links are defanged (`https` before `http`: the longer one first).
const SCHEMES: [&str; 3] = ["https", "http", "ftp"];

fn is_link(word: &str) -> bool {
    let lower = word.get(..8).unwrap_or(word).to_ascii_lowercase();
    SCHEMES
        .iter()
        .any(|s| lower.starts_with(&format!("{s}://")))
}

fn defang_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => "hxxp",
        "https" => "hxxps",
        _ => "fxp",
    };
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    format!(
        "{scheme}://{}{}",
        rest[..host_end].replace('.', "[.]"),
        &rest[host_end..]
    )
}

fn addresses(a: Option<&mail_parser::Address<'_>>) -> Vec<String> {
    a.map(|a| {
        a.iter()
            .map(|x| {
                let addr = x.address.as_deref().unwrap_or("");
                match x.name.as_deref() {
                    Some(n) if !n.is_empty() => format!("{n} <{addr}>"),
                    _ => addr.to_string(),
                }
            })
            .take(100)
            .collect()
    })
    .unwrap_or_default()
}

fn links_of(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'')) {
        if is_link(word) && !out.iter().any(|l| l == word) {
            out.push(word.to_string());
            if out.len() >= MAX_LINKS {
                break;
            }
        }
    }
    out.iter().map(|l| defang_url(l)).collect()
}

/// The safe view of `raw`, or `None` if it cannot be parsed as a message.
pub fn render(raw: &[u8]) -> Option<SafeView> {
    std::panic::catch_unwind(|| render_inner(raw))
        .ok()
        .flatten()
}

fn render_inner(raw: &[u8]) -> Option<SafeView> {
    let m = MessageParser::default().parse(raw)?;
    let was_html = m
        .text_body
        .first()
        .and_then(|i| m.parts.get(*i as usize))
        .is_some_and(|p| matches!(p.body, PartType::Html(_)));
    let body = m.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
    let mut links = links_of(&body);
    // Links only in HTML attributes (the text conversion drops hrefs) are listed too.
    for html in m.html_bodies() {
        if let Some(h) = html.text_contents() {
            for l in links_of(&h.replace(['"', '\''], " ")) {
                if links.len() < MAX_LINKS && !links.contains(&l) {
                    links.push(l);
                }
            }
        }
    }
    let truncated = body.chars().count() > MAX_TEXT;
    let body: String = body.chars().take(MAX_TEXT).collect();
    let attachments = m
        .attachments()
        .take(MAX_ATTACHMENTS)
        .map(|a| Attachment {
            name: a.attachment_name().unwrap_or("(unnamed)").to_string(),
            content_type: a
                .content_type()
                .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
                .unwrap_or_else(|| "application/octet-stream".into()),
            size: a.contents().len(),
        })
        .collect();
    Some(SafeView {
        from: addresses(m.from()).into_iter().next().unwrap_or_default(),
        to: addresses(m.to()),
        cc: addresses(m.cc()),
        subject: m.subject().unwrap_or("").to_string(),
        date: m.date().map(|d| d.to_rfc3339()),
        text: defang(&body),
        truncated,
        was_html,
        attachments,
        links,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defangs_links_in_text() {
        assert_eq!(
            defang("go to https://login.example.com/x?a=1 now"),
            "go to hxxps://login[.]example[.]com/x?a=1 now"
        );
        assert_eq!(defang("HTTP://a.b"), "hxxp://a[.]b");
        assert_eq!(defang("no links here"), "no links here");
    }

    #[test]
    fn defangs_every_one_of_many_links() {
        let text = "see HTTPS://a.example/x and ftp://b.example ".repeat(5000);
        let out = defang(&text);
        assert_eq!(out.matches("hxxps://a[.]example/x").count(), 5000);
        assert_eq!(out.matches("fxp://b[.]example").count(), 5000);
        assert!(!out.to_ascii_lowercase().contains("https://"));
        assert_eq!(
            out.matches("see ").count(),
            5000,
            "text around links is kept"
        );
    }

    #[test]
    fn html_becomes_text_and_attachments_are_listed_not_served() {
        let raw = concat!(
            "From: Mallory <m@evil.example>\r\nTo: bob@acme.test\r\nSubject: Invoice\r\n",
            "Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n",
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n",
            "--b\r\nContent-Type: text/html\r\n\r\n",
            "<p>Pay <a href=\"https://pay.evil.example/now\">here</a></p>",
            "<img src=\"https://track.evil.example/p.gif\"><script>alert(1)</script>\r\n",
            "--b\r\nContent-Type: application/zip; name=\"inv.zip\"\r\n",
            "Content-Disposition: attachment; filename=\"inv.zip\"\r\n",
            "Content-Transfer-Encoding: base64\r\n\r\nUEsDBA==\r\n--b--\r\n"
        );
        let v = render(raw.as_bytes()).unwrap();
        assert_eq!(v.from, "Mallory <m@evil.example>");
        assert_eq!(v.subject, "Invoice");
        assert!(v.was_html);
        assert!(!v.text.contains('<'), "no markup passes: {}", v.text);
        assert!(v.text.contains("Pay"));
        assert!(
            v.links
                .contains(&"hxxps://pay[.]evil[.]example/now".to_string()),
            "{:?}",
            v.links
        );
        assert!(v.links.iter().all(|l| l.starts_with("hxxp")));
        assert_eq!(
            v.attachments,
            vec![Attachment {
                name: "inv.zip".into(),
                content_type: "application/zip".into(),
                size: 4
            }]
        );
    }

    #[test]
    fn text_is_capped() {
        let raw = format!("Subject: big\r\n\r\n{}\r\n", "a".repeat(MAX_TEXT + 10));
        let v = render(raw.as_bytes()).unwrap();
        assert!(v.truncated);
        assert_eq!(v.text.chars().count(), MAX_TEXT);
    }
}
