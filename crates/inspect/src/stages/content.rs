//! Content and header rules that need no external service.

use crate::evidence::{Evidence, Symbol};
use crate::view::MessageView;
use crate::{Envelope, SyncStage};

/// The GTUBE string (SpamAssassin's Generic Test for Unsolicited Bulk Email).
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// Public URL shorteners: a link through one hides its real target.
pub const SHORTENERS: &[&str] = &[
    "bit.ly",
    "tinyurl.com",
    "goo.gl",
    "t.co",
    "ow.ly",
    "is.gd",
    "buff.ly",
    "rebrand.ly",
    "cutt.ly",
    "shorturl.at",
    "tiny.cc",
    "rb.gy",
    "bl.ink",
    "t.ly",
    "s.id",
    "v.gd",
    "lnkd.in",
    "shorte.st",
];

static HIDDEN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(
        r#"(?is)<(?:div|span|p|td|font|a)\b[^>]*style\s*=\s*["'][^"']*(?:display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?:\.0*)?(?:px|pt|em|%)?\s*(?:;|["']))[^>]*>\s*[^<\s]"#,
    )
    .expect("valid regex")
});

/// Header presence and shape rules, GTUBE, HTML-only bodies, URL shorteners, hidden text.
pub struct ContentRules;

impl ContentRules {
    /// The evidence for one message (synchronous; the stage wraps it).
    pub fn check(msg: &MessageView<'_>) -> Vec<Evidence> {
        let mut out = Vec::new();
        if msg.texts().any(|t| t.contains(GTUBE)) || contains(msg.raw, GTUBE.as_bytes()) {
            out.push(Evidence::new(
                Symbol::Gtube,
                "GTUBE test string in the body",
            ));
        }
        let Some(m) = &msg.parsed else { return out };
        let count = |name: &str| {
            m.headers_raw()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .count()
        };
        match count("From") {
            0 => out.push(Evidence::new(Symbol::MissingFrom, "no From header")),
            1 => {}
            n => out.push(Evidence::new(
                Symbol::MultipleFrom,
                format!("{n} From headers"),
            )),
        }
        if count("Date") == 0 {
            out.push(Evidence::new(Symbol::MissingDate, "no Date header"));
        }
        if count("Message-ID") == 0 {
            out.push(Evidence::new(
                Symbol::MissingMessageId,
                "no Message-ID header",
            ));
        }
        if count("Subject") == 0 {
            out.push(Evidence::new(Symbol::MissingSubject, "no Subject header"));
        }
        let links = &msg.links().domains;
        if let Some(d) = links.iter().find(|d| SHORTENERS.contains(&d.as_str())) {
            out.push(Evidence::new(
                Symbol::UrlShortener,
                format!("link through {d}"),
            ));
        }
        let hidden = m.parts.iter().any(|p| match &p.body {
            mail_parser::PartType::Html(h) => HIDDEN.is_match(h),
            _ => false,
        });
        if hidden {
            out.push(Evidence::new(
                Symbol::HiddenText,
                "HTML text hidden from the reader",
            ));
        }
        if msg.html_only() {
            out.push(Evidence::new(
                Symbol::HtmlOnly,
                "HTML body without a text alternative",
            ));
            let author = msg.author();
            let domain = author
                .as_deref()
                .and_then(|a| a.rsplit_once('@'))
                .map(|(_, d)| d);
            if let Some(d) = domain.filter(|d| crate::freemail::is_free(d)) {
                out.push(Evidence::new(
                    Symbol::FreemailHtmlOnly,
                    format!("HTML only, from an address at {d}, a free mail provider"),
                ));
            }
        }
        out
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

impl SyncStage for ContentRules {
    fn stage_name(&self) -> &'static str {
        "content"
    }

    fn evidence(&self, msg: &MessageView<'_>, _env: &Envelope) -> Vec<Evidence> {
        Self::check(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::ViewLimits;

    fn symbols(raw: &str) -> Vec<Symbol> {
        let (view, mut ev) = MessageView::parse(raw.as_bytes(), &ViewLimits::default());
        ev.extend(ContentRules::check(&view));
        let mut s: Vec<_> = ev.into_iter().map(|e| e.symbol).collect();
        s.sort();
        s
    }

    const GOOD: &str = "From: a@example.org\r\nTo: b@example.net\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@example.org>\r\nSubject: hi\r\n\r\nhello\r\n";

    #[test]
    fn a_well_formed_message_fires_nothing() {
        assert_eq!(symbols(GOOD), vec![]);
    }

    #[test]
    fn gtube_fires_in_the_body_and_not_elsewhere() {
        let spam = GOOD.replace("hello", &format!("hello {GTUBE} bye"));
        assert_eq!(symbols(&spam), vec![Symbol::Gtube]);
        // A near miss does not fire.
        let near = GOOD.replace("hello", &GTUBE.replace("GTUBE", "GTUBX"));
        assert_eq!(symbols(&near), vec![]);
    }

    #[test]
    fn gtube_fires_inside_base64() {
        let b64 = "WEpTKkM0SkRCUUFETjEuTlNCTjMqMklETkVOKkdUVUJFLVNUQU5EQVJELUFOVEktVUJFLVRFU1QtRU1BSUwqQy4zNFg=";
        let msg = GOOD.replace(
            "Subject: hi\r\n\r\nhello\r\n",
            &format!("Subject: hi\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n"),
        );
        assert_eq!(symbols(&msg), vec![Symbol::Gtube]);
    }

    #[test]
    fn missing_and_multiple_headers() {
        assert_eq!(
            symbols("To: b@example.net\r\n\r\nbody\r\n"),
            vec![
                Symbol::MissingFrom,
                Symbol::MissingDate,
                Symbol::MissingMessageId,
                Symbol::MissingSubject
            ]
        );
        let two = GOOD.replace(
            "From: a@example.org\r\n",
            "From: a@example.org\r\nFrom: c@example.org\r\n",
        );
        assert_eq!(symbols(&two), vec![Symbol::MultipleFrom]);
    }

    #[test]
    fn html_only_fires_without_a_text_alternative() {
        let html = GOOD.replace(
            "Subject: hi\r\n",
            "Subject: hi\r\nContent-Type: text/html\r\n",
        );
        assert_eq!(symbols(&html), vec![Symbol::HtmlOnly]);
        let alt = GOOD.replace(
            "Subject: hi\r\n\r\nhello\r\n",
            "Subject: hi\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--b--\r\n",
        );
        assert_eq!(symbols(&alt), vec![]);
    }

    #[test]
    fn html_only_from_a_free_mail_address_fires_and_with_a_text_part_does_not() {
        let from_free = GOOD.replace(
            "From: ",
            "From: \"Deals\" <deals2002@Yahoo.co.jp>\r\nX-Was-From: ",
        );
        let html = from_free.replace(
            "Subject: hi\r\n",
            "Subject: hi\r\nContent-Type: text/html\r\n",
        );
        assert_eq!(
            symbols(&html),
            vec![Symbol::HtmlOnly, Symbol::FreemailHtmlOnly]
        );
        // The provider's own clients send a text alternative: nothing.
        let alt = from_free.replace(
            "Subject: hi\r\n\r\nhello\r\n",
            "Subject: hi\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--b--\r\n",
        );
        assert_eq!(symbols(&alt), vec![]);
        // HTML only from an organisation's own domain is only HTML_ONLY.
        let org = GOOD.replace(
            "Subject: hi\r\n",
            "Subject: hi\r\nContent-Type: text/html\r\n",
        );
        assert_eq!(symbols(&org), vec![Symbol::HtmlOnly]);
    }

    #[test]
    fn url_shorteners_fire_and_ordinary_links_do_not() {
        let short = GOOD.replace("hello", "see https://bit.ly/3xYz now");
        assert_eq!(symbols(&short), vec![Symbol::UrlShortener]);
        let plain = GOOD.replace("hello", "see https://www.example.org/bit.ly now");
        assert_eq!(symbols(&plain), vec![]);
    }

    #[test]
    fn hidden_html_text_fires_and_visible_styles_do_not() {
        let alt = |html: &str| {
            GOOD.replace(
                "Subject: hi\r\n\r\nhello\r\n",
                &format!("Subject: hi\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: text/html\r\n\r\n{html}\r\n--b--\r\n"),
            )
        };
        for hidden in [
            r#"<p>Buy</p><div style="display:none">viagra casino lottery</div>"#,
            r#"<span style='font-size:0px;'>invoice payment</span>"#,
            r#"<p style="color:red; visibility: hidden">words</p>"#,
        ] {
            assert_eq!(symbols(&alt(hidden)), vec![Symbol::HiddenText], "{hidden}");
        }
        for visible in [
            r#"<div style="display:block">hello</div>"#,
            r#"<span style="font-size:10px">hello</span>"#,
            r#"<div style="display:none"></div><p>tracking pixel container is empty</p>"#,
        ] {
            assert_eq!(symbols(&alt(visible)), vec![], "{visible}");
        }
    }

    #[test]
    fn mime_depth_limit_is_crossed() {
        let mut body = String::from("leaf\r\n");
        for i in 0..25 {
            body = format!(
                "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n{body}--b{i}--\r\n"
            );
        }
        let msg = format!(
            "From: a@example.org\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@x>\r\nSubject: deep\r\n{body}"
        );
        let (view, ev) = MessageView::parse(
            msg.as_bytes(),
            &ViewLimits {
                max_mime_depth: 10,
                max_mime_parts: 1000,
            },
        );
        assert!(view.depth > 10, "depth {}", view.depth);
        assert!(ev.iter().any(|e| e.symbol == Symbol::MimeTooDeep), "{ev:?}");
        let (_, ev) = MessageView::parse(
            msg.as_bytes(),
            &ViewLimits {
                max_mime_depth: 100,
                max_mime_parts: 10,
            },
        );
        assert!(
            ev.iter().any(|e| e.symbol == Symbol::MimeTooManyParts),
            "{ev:?}"
        );
        assert!(!ev.iter().any(|e| e.symbol == Symbol::MimeTooDeep));
    }
}
