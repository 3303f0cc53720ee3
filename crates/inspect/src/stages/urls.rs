//! Link tricks: a user part before the host that shows the reader one name and takes the
//! browser to another, and hosts written as numbers (dotted, or one decimal, hex or octal
//! number) instead of names.

use std::sync::LazyLock;

use regex::Regex;

use crate::evidence::{Evidence, Symbol};
use crate::links::MAX_LINKS;
use crate::view::MessageView;
use crate::{Envelope, SyncStage};

static URL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?i)\bhttps?://[^\s<>"'()]+"#).expect("valid regex"));

/// The authority (`user@host:port`) of a URL found by [`URL`].
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#', '\\']).next().unwrap_or("")
}

/// Whether `host` is a number: a dotted IPv4 address, a bracketed IPv6 address, or one
/// decimal, hexadecimal (`0x…`) or octal number (browsers read all of these as addresses).
fn numeric(host: &str) -> bool {
    if host.starts_with('[') {
        return true;
    }
    let parts: Vec<&str> = host.trim_end_matches('.').split('.').collect();
    !host.is_empty()
        && parts.len() <= 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && (p.bytes().all(|b| b.is_ascii_digit())
                    || p.strip_prefix("0x")
                        .or_else(|| p.strip_prefix("0X"))
                        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit())))
        })
}

/// The link trick rules.
pub struct UrlTricks;

impl UrlTricks {
    /// The evidence for one message.
    pub fn check(msg: &MessageView<'_>) -> Vec<Evidence> {
        let mut userinfo = None;
        let mut number = None;
        let urls = msg.texts().flat_map(|t| URL.find_iter(t)).take(MAX_LINKS);
        for u in urls {
            let auth = authority(u.as_str());
            let (user, hostport) = match auth.rsplit_once('@') {
                Some((user, h)) => (Some(user), h),
                None => (None, auth),
            };
            let host = if hostport.starts_with('[') {
                hostport.split_inclusive(']').next().unwrap_or(hostport)
            } else {
                hostport.split(':').next().unwrap_or("")
            };
            if userinfo.is_none() && user.is_some_and(|u| !u.is_empty()) {
                userinfo = Some(host.to_string());
            }
            if number.is_none() && numeric(host) {
                number = Some(host.to_string());
            }
        }
        let mut out = Vec::new();
        if let Some(host) = userinfo {
            out.push(Evidence::new(
                Symbol::UrlUserinfo,
                format!("a link names a user before its host {host}"),
            ));
        }
        if let Some(host) = number {
            out.push(Evidence::new(
                Symbol::UrlNumericHost,
                format!("a link leads to the address {host}"),
            ));
        }
        out
    }
}

impl SyncStage for UrlTricks {
    fn stage_name(&self) -> &'static str {
        "urls"
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
        let raw = format!(
            "From: a@example.org\r\nSubject: s\r\nContent-Type: text/html\r\n\r\n{body}\r\n"
        );
        let (v, _) = MessageView::parse(raw.as_bytes(), &ViewLimits::default());
        UrlTricks::check(&v).iter().map(|e| e.symbol).collect()
    }

    #[test]
    fn user_parts_and_numeric_hosts_are_tricks() {
        assert_eq!(
            symbols(r#"<a href="https://www.bank.example@evil.example/login">bank</a>"#),
            [Symbol::UrlUserinfo]
        );
        for numeric in [
            "http://192.0.2.7/pay",
            "http://3232235777/",
            "http://0xC0.0xA8.1.1/",
            "http://[2001:db8::1]:8080/x",
        ] {
            assert_eq!(symbols(numeric), [Symbol::UrlNumericHost], "{numeric}");
        }
        assert_eq!(
            symbols("http://user@10.0.0.1/"),
            [Symbol::UrlUserinfo, Symbol::UrlNumericHost]
        );
    }

    #[test]
    fn ordinary_links_are_not() {
        for clean in [
            r#"<a href="https://www.example.org/a@b">x</a>"#,
            "https://shop.example:8443/path?to=a@b.example",
            "https://1password.example/ and http://365.example/",
            "mailto:someone@example.org",
            "no links at all",
        ] {
            assert!(symbols(clean).is_empty(), "{clean}");
        }
    }
}
