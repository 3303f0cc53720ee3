//! MTA-STS (RFC 8461): a recipient domain's published promise that its mail exchangers
//! speak TLS with certificates valid for their names. Parsing and matching live here; where
//! a policy comes from (DNS, HTTPS, the cache) is a [`PolicySource`] (in mx, the node's).

use crate::secrets::BoxFuture;
use std::sync::Arc;

/// The longest `max_age` a policy may ask for (RFC 8461 §3.2: about a year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// What a sender does with a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only to listed exchangers over TLS with a valid certificate, or not at all.
    Enforce,
    /// Deliver as without a policy; failures are reported (TLS-RPT), not enforced.
    Testing,
    /// The domain withdrew its policy.
    None,
}

/// A domain's policy (the HTTPS body, parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Enforce, testing or none.
    pub mode: Mode,
    /// Exchanger patterns: a host name, or `*.` and a domain (one label more, any).
    pub mx: Vec<String>,
    /// Seconds the policy may be cached.
    pub max_age: u64,
}

/// The policy `id` of a `_mta-sts` TXT record (`v=STSv1; id=…`), if it is one.
pub fn txt_id(record: &str) -> Option<String> {
    let mut tags = record.split(';').map(str::trim).filter(|t| !t.is_empty());
    if tags.next()? != "v=STSv1" {
        return None;
    }
    let id = tags.find_map(|t| t.strip_prefix("id="))?;
    let ok = (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then(|| id.to_string())
}

/// Parses a policy body: `key: value` lines (CRLF or LF), `version: STSv1` first.
pub fn parse(text: &str) -> Result<Policy, String> {
    let mut version = None;
    let (mut mode, mut max_age, mut mx) = (None, None, Vec::new());
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| format!("not a key: value line: {line:?}"))?;
        let value = value.trim();
        match key.trim() {
            "version" => version = Some(value.to_string()),
            "mode" => {
                mode = Some(match value {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    other => return Err(format!("unknown mode {other:?}")),
                })
            }
            "max_age" => {
                let n: u64 = value
                    .parse()
                    .map_err(|_| format!("max_age {value:?} is not a number"))?;
                max_age = Some(n.min(MAX_AGE_LIMIT));
            }
            "mx" => mx.push(value.trim_end_matches('.').to_ascii_lowercase()),
            // Unknown keys are ignored (RFC 8461 §3.2).
            _ => {}
        }
    }
    if version.as_deref() != Some("STSv1") {
        return Err("not an STSv1 policy".into());
    }
    let mode = mode.ok_or("the policy has no mode")?;
    let max_age = max_age.ok_or("the policy has no max_age")?;
    if mx.is_empty() && mode != Mode::None {
        return Err("the policy lists no mx".into());
    }
    Ok(Policy { mode, mx, max_age })
}

impl Policy {
    /// Whether `host` (an exchanger's name from DNS) is one the policy lists.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|p| match p.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => *p == host,
        })
    }
}

/// What a domain's policy lookup came to.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// The policy in effect now. `None`: the domain has none (or it cannot be learned now and
    /// none is cached: delivered as without one, as RFC 8461 §5 says).
    pub policy: Option<Arc<Policy>>,
    /// Why a policy the domain announces could not be fetched now (for TLS reports).
    pub fetch_failed: Option<crate::tls_report::ResultType>,
}

/// Where delivery learns a domain's policy.
pub trait PolicySource: Send + Sync {
    /// The policy of `domain` in effect now, and whether fetching it failed.
    fn policy(&self, domain: &str) -> BoxFuture<'_, Answer>;
}

/// Whether the message asks, with a `TLS-Required: No` header field (RFC 8689 §5), that the
/// recipient domain's TLS policy be ignored: its sender prefers delivery in clear text to no
/// delivery. Only the header block is read; the field name is matched without regard to
/// case, its value must be `No` (white space and case aside). A message sent with REQUIRETLS
/// ignores it (the caller checks).
pub fn tls_required_no(raw: &[u8]) -> bool {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut fields: Vec<String> = Vec::new();
    for line in head.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        match (line.starts_with([' ', '\t']), fields.last_mut()) {
            (true, Some(last)) => last.push_str(line),
            _ => fields.push(line.to_string()),
        }
    }
    fields.iter().any(|f| {
        f.split_once(':').is_some_and(|(name, value)| {
            name.trim_end().eq_ignore_ascii_case("TLS-Required")
                && value.trim().eq_ignore_ascii_case("no")
        })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn tls_required_no_is_read_from_the_header_block_only() {
        assert!(tls_required_no(
            b"From: a@b\r\nTLS-Required: No\r\n\r\nbody"
        ));
        assert!(tls_required_no(
            b"tls-required:\r\n  no\r\nSubject: x\r\n\r\n"
        ));
        assert!(!tls_required_no(b"From: a@b\r\nTLS-Required: Yes\r\n\r\n"));
        assert!(!tls_required_no(b"From: a@b\r\nX-TLS-Required: No\r\n\r\n"));
        assert!(!tls_required_no(b"From: a@b\r\n\r\nTLS-Required: No\r\n"));
        assert!(!tls_required_no(
            b"From: a@b\r\nSubject: TLS-Required: No\r\n\r\n"
        ));
    }
    use super::*;

    #[test]
    fn a_policy_parses_and_bad_ones_say_why() {
        let p = parse("version: STSv1\r\nmode: enforce\r\nmx: mx1.Example.com.\r\nmx: *.example.net\r\nmax_age: 86400\r\n").unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.mx, ["mx1.example.com", "*.example.net"]);
        assert_eq!(p.max_age, 86400);
        assert_eq!(
            parse("version: STSv1\nmode: none\nmax_age: 99999999999\n")
                .unwrap()
                .max_age,
            MAX_AGE_LIMIT
        );
        for bad in [
            "mode: enforce\nmx: a\nmax_age: 1\n",
            "version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n",
            "version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a\n",
            "version: STSv1\nmode: enforce\nmx: a\nmax_age: soon\n",
            "<html>not found</html>",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn patterns_match_a_name_or_one_label_under_a_wildcard() {
        let p = parse(
            "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: *.example.net\nmax_age: 1\n",
        )
        .unwrap();
        for ok in ["mx1.example.com", "MX1.example.com.", "a.example.net"] {
            assert!(p.allows(ok), "{ok}");
        }
        for no in [
            "mx2.example.com",
            "example.net",
            "a.b.example.net",
            "evil-example.net",
            "mx1.example.com.evil",
        ] {
            assert!(!p.allows(no), "{no}");
        }
    }

    #[test]
    fn the_txt_record_gives_its_id() {
        assert_eq!(
            txt_id("v=STSv1; id=20261207T1;").as_deref(),
            Some("20261207T1")
        );
        assert_eq!(txt_id("v=STSv1;id=abc").as_deref(), Some("abc"));
        for no in [
            "v=spf1 -all",
            "v=STSv1;",
            "v=STSv1; id=",
            "v=STSv1; id=a-b",
            "id=abc; v=STSv1",
        ] {
            assert_eq!(txt_id(no), None, "{no}");
        }
    }
}
