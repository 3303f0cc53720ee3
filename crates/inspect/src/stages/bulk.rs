//! Markers of bulk mail that was asked for: newsletters and notifications that link their own
//! site and offer a way out, and list mail whose sender answers for it with DMARC.

use crate::evidence::{Evidence, Symbol};
use crate::stages::dnsbl::registrable;
use crate::view::MessageView;
use crate::{Envelope, SyncStage};

/// How a message's link domains relate to its author's, by registrable domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAlignment {
    /// No links.
    NoLinks,
    /// Every link leads to the author's domain.
    All,
    /// Some links lead there, some elsewhere.
    Some,
    /// No link leads there (or the author has no domain).
    None,
}

impl LinkAlignment {
    /// The word for classifier tokens.
    pub fn word(self) -> &'static str {
        match self {
            LinkAlignment::NoLinks => "nolinks",
            LinkAlignment::All => "all",
            LinkAlignment::Some => "some",
            LinkAlignment::None => "none",
        }
    }
}

/// How the message's links relate to its author's domain, with the number of aligned links.
pub fn link_alignment(msg: &MessageView<'_>) -> (LinkAlignment, usize) {
    let links = &msg.links().domains;
    if links.is_empty() {
        return (LinkAlignment::NoLinks, 0);
    }
    let Some(author) = msg
        .author()
        .and_then(|a| a.rsplit_once('@').and_then(|(_, d)| registrable(d)))
    else {
        return (LinkAlignment::None, 0);
    };
    let aligned = links
        .iter()
        .filter(|l| registrable(l).is_some_and(|r| r == author))
        .count();
    let kind = match aligned {
        0 => LinkAlignment::None,
        n if n == links.len() => LinkAlignment::All,
        _ => LinkAlignment::Some,
    };
    (kind, aligned)
}

fn has_header(msg: &MessageView<'_>, name: &str) -> bool {
    msg.parsed
        .as_ref()
        .is_some_and(|m| m.headers_raw().any(|(n, _)| n.eq_ignore_ascii_case(name)))
}

/// Whether the message offers a way out: a `List-Unsubscribe` header or the word in its text.
pub fn offers_unsubscribe(msg: &MessageView<'_>) -> bool {
    has_header(msg, "List-Unsubscribe")
        || msg.texts().any(|t| contains_ignore_case(t, "unsubscribe"))
}

/// The newsletter marker.
pub struct BulkMarkers;

impl BulkMarkers {
    /// The evidence for one message.
    pub fn check(msg: &MessageView<'_>) -> Vec<Evidence> {
        if !offers_unsubscribe(msg) {
            return Vec::new();
        }
        match link_alignment(msg) {
            (LinkAlignment::Some, aligned) => vec![Evidence::new(
                Symbol::NewsletterOwnLinks,
                format!(
                    "{aligned} of {} link domains are the author's, with a way to unsubscribe",
                    msg.links().domains.len()
                ),
            )],
            _ => Vec::new(),
        }
    }
}

/// `LIST_UNSUB_SIGNED` when the message has `List-Unsubscribe` and the authentication stage
/// found both DMARC and DKIM passing (composed after the stages, from their evidence).
pub fn signed_list_mail(msg: &MessageView<'_>, evidence: &[Evidence]) -> Option<Evidence> {
    let has = |s: Symbol| evidence.iter().any(|e| e.symbol == s);
    (has_header(msg, "List-Unsubscribe") && has(Symbol::DmarcPass) && has(Symbol::DkimPass)).then(
        || {
            Evidence::new(
                Symbol::ListUnsubSigned,
                "List-Unsubscribe, and the author domain passes DMARC with a DKIM signature",
            )
        },
    )
}

/// Evidence a newsletter's good shape must not offset: impersonation, look-alikes and link
/// tricks (a phisher copies a brand's footer and its unsubscribe line too).
const NOT_A_NEWSLETTER: &[Symbol] = &[
    Symbol::LookalikeDomain,
    Symbol::Impersonation,
    Symbol::LookalikeLure,
    Symbol::LookalikeLink,
    Symbol::LinkTextMismatch,
    Symbol::PhishFeedDomain,
    Symbol::HtmlPasswordForm,
    Symbol::FromNameAddress,
];

/// Ways a copyright notice is written, in the normalized text (lower case, digits as `0`):
/// `(C) Shop Inc. 2002` names the holder first, so its closing words count too.
const COPYRIGHT: &[&str] = &[
    "©",
    "copyright",
    "(c) 0000",
    "(c)0000",
    "all rights reserved",
];

/// `NEWSLETTER_FOOTER` when the newsletter marker fired, the text signs off with a copyright
/// notice — a company's newsletter footer — and nothing in the evidence says impersonation or
/// a link trick (composed after the stages, from their evidence).
pub fn newsletter_footer(msg: &MessageView<'_>, evidence: &[Evidence]) -> Option<Evidence> {
    let has = |s: Symbol| evidence.iter().any(|e| e.symbol == s);
    if !has(Symbol::NewsletterOwnLinks) || NOT_A_NEWSLETTER.iter().any(|s| has(*s)) {
        return None;
    }
    let text = msg.normalized_text(crate::view::NORMALIZED_BYTES);
    COPYRIGHT.iter().any(|c| text.contains(c)).then(|| {
        Evidence::new(
            Symbol::NewsletterFooter,
            "a newsletter signed with a copyright notice, and no sign of impersonation",
        )
    })
}

fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    hay.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

impl SyncStage for BulkMarkers {
    fn stage_name(&self) -> &'static str {
        "bulk"
    }

    fn evidence(&self, msg: &MessageView<'_>, _env: &Envelope) -> Vec<Evidence> {
        Self::check(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::ViewLimits;

    fn view(raw: &str) -> MessageView<'_> {
        MessageView::parse(raw.as_bytes(), &ViewLimits::default()).0
    }

    fn newsletter(from: &str, links: &[&str], extra: &str) -> String {
        let body: Vec<String> = links.iter().map(|l| format!("https://{l}/page")).collect();
        format!(
            "From: News <{from}>\r\nSubject: This week\r\n{extra}\r\n{}\r\nTo unsubscribe, visit our site.\r\n",
            body.join("\r\n")
        )
    }

    #[test]
    fn own_links_beside_others_with_a_way_out_is_a_newsletter() {
        let m = newsletter(
            "news@mail.shop.example",
            &["www.shop.example", "partner.example"],
            "",
        );
        let e = BulkMarkers::check(&view(&m));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].symbol, Symbol::NewsletterOwnLinks);
        assert!(e[0].detail.starts_with("1 of 2"), "{}", e[0].detail);
        assert_eq!(link_alignment(&view(&m)).0, LinkAlignment::Some);
    }

    #[test]
    fn spam_shapes_are_not_newsletters() {
        // Links only elsewhere (a free-mail author linking a shop), only to the author's own
        // throwaway domain, no links, or no way out.
        for m in [
            newsletter(
                "deals@freemail.example",
                &["pills.example", "shop.example"],
                "",
            ),
            newsletter(
                "deals@pills.example",
                &["pills.example", "www.pills.example"],
                "",
            ),
            newsletter("deals@pills.example", &[], ""),
        ] {
            assert!(BulkMarkers::check(&view(&m)).is_empty(), "{m}");
        }
        let no_way_out = "From: a@shop.example\r\nSubject: x\r\n\r\nhttps://shop.example/ https://other.example/\r\n";
        assert!(BulkMarkers::check(&view(no_way_out)).is_empty());
        assert_eq!(link_alignment(&view(no_way_out)).0, LinkAlignment::Some);
    }

    #[test]
    fn a_copyright_footer_marks_a_newsletter_unless_it_impersonates() {
        let footer = "\r\n(C) 2026 Shop Example Inc. All rights reserved.";
        let m = newsletter(
            "news@mail.shop.example",
            &["www.shop.example", "partner.example"],
            "",
        ) + footer;
        let v = view(&m);
        let shaped = BulkMarkers::check(&v);
        assert_eq!(
            newsletter_footer(&v, &shaped).map(|e| e.symbol),
            Some(Symbol::NewsletterFooter)
        );
        for sign in [
            "&copy; Shop Example",
            "Copyright Shop Example",
            "\u{a9} Shop Example",
        ] {
            let html = format!(
                "From: News <news@mail.shop.example>\r\nSubject: This week\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
                 <p><a href=\"https://www.shop.example/a\">Sale</a> <a href=\"https://partner.example/b\">Partner</a></p>\
                 <p><a href=\"https://www.shop.example/u\">Unsubscribe</a></p><p>{sign}</p>\r\n"
            );
            let hv = view(&html);
            let shaped = BulkMarkers::check(&hv);
            assert_eq!(shaped.len(), 1, "{sign}");
            assert!(newsletter_footer(&hv, &shaped).is_some(), "{sign}");
        }
        // Not without the newsletter's shape, not without a footer, not beside a lure.
        assert!(newsletter_footer(&v, &[]).is_none());
        let plain = newsletter(
            "news@mail.shop.example",
            &["www.shop.example", "partner.example"],
            "",
        );
        let pv = view(&plain);
        assert!(newsletter_footer(&pv, &BulkMarkers::check(&pv)).is_none());
        for lure in NOT_A_NEWSLETTER {
            let mut evidence = shaped.clone();
            evidence.push(Evidence::new(*lure, ""));
            assert!(newsletter_footer(&v, &evidence).is_none(), "{lure:?}");
        }
    }

    #[test]
    fn list_unsubscribe_is_signed_only_with_dmarc_and_dkim_passing() {
        let m = newsletter(
            "news@shop.example",
            &["shop.example"],
            "List-Unsubscribe: <https://shop.example/u>\r\n",
        );
        let pass = [
            Evidence::new(Symbol::DkimPass, ""),
            Evidence::new(Symbol::DmarcPass, ""),
        ];
        assert_eq!(
            signed_list_mail(&view(&m), &pass).map(|e| e.symbol),
            Some(Symbol::ListUnsubSigned)
        );
        assert!(
            signed_list_mail(&view(&m), &pass[..1]).is_none(),
            "DKIM alone"
        );
        assert!(
            signed_list_mail(&view(&m), &pass[1..]).is_none(),
            "DMARC alone"
        );
        let plain = newsletter("news@shop.example", &["shop.example"], "");
        assert!(
            signed_list_mail(&view(&plain), &pass).is_none(),
            "no List-Unsubscribe"
        );
    }
}
