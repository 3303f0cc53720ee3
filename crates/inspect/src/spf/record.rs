//! SPF records (RFC 7208 §4.6, §12): a strict parser. Anything the ABNF does not allow is a
//! syntax error, and a syntax error anywhere makes the whole record a `permerror` before any
//! term is evaluated (§4.6: "if there are any syntax errors anywhere in the record").

use std::net::{Ipv4Addr, Ipv6Addr};

use super::macros::MacroString;

/// A directive's qualifier (§4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    /// `+` (the default).
    Pass,
    /// `-`.
    Fail,
    /// `~`.
    SoftFail,
    /// `?`.
    Neutral,
}

/// A mechanism (§5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    /// `all`.
    All,
    /// `include:domain-spec`.
    Include(MacroString),
    /// `a[:domain-spec][/ip4-cidr][//ip6-cidr]`.
    A(Option<MacroString>, u8, u8),
    /// `mx[:domain-spec][/ip4-cidr][//ip6-cidr]`.
    Mx(Option<MacroString>, u8, u8),
    /// `ptr[:domain-spec]`.
    Ptr(Option<MacroString>),
    /// `ip4:network[/cidr]`.
    Ip4(Ipv4Addr, u8),
    /// `ip6:network[/cidr]`.
    Ip6(Ipv6Addr, u8),
    /// `exists:domain-spec`.
    Exists(MacroString),
}

impl Mechanism {
    /// Whether evaluating it queries DNS (and so counts against the limit of 10, §4.6.4).
    pub fn queries_dns(&self) -> bool {
        !matches!(
            self,
            Mechanism::All | Mechanism::Ip4(..) | Mechanism::Ip6(..)
        )
    }
}

/// A parsed record: its directives in order and its two defined modifiers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Directives, evaluated left to right.
    pub directives: Vec<(Qualifier, Mechanism)>,
    /// `redirect=`.
    pub redirect: Option<MacroString>,
    /// `exp=`.
    pub exp: Option<MacroString>,
}

/// Whether a TXT string is an SPF version 1 record (§4.5): `v=spf1` alone or followed by a
/// space, in any letter case.
pub fn is_spf1(txt: &str) -> bool {
    let b = txt.as_bytes();
    b.len() >= 6 && b[..6].eq_ignore_ascii_case(b"v=spf1") && (b.len() == 6 || b[6] == b' ')
}

/// Parses a record that [`is_spf1`]. `Err` says why it is a `permerror`.
pub fn parse(txt: &str) -> Result<Record, String> {
    if !txt.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err("the record holds characters outside visible ASCII and space".into());
    }
    let mut record = Record::default();
    for term in txt[6..].split(' ').filter(|t| !t.is_empty()) {
        if let Some((name, value)) = modifier(term) {
            let slot = match name.to_ascii_lowercase().as_str() {
                "redirect" => Some(&mut record.redirect),
                "exp" => Some(&mut record.exp),
                _ => None,
            };
            match slot {
                Some(slot) => {
                    if slot.is_some() {
                        return Err(format!("{name}= appears twice"));
                    }
                    *slot = Some(domain_spec(value)?);
                }
                // Unknown modifiers are ignored, but must be well formed (§6).
                None => {
                    MacroString::parse(value, false)?;
                }
            }
            continue;
        }
        record.directives.push(directive(term)?);
    }
    Ok(record)
}

/// `name=value` when `term` is a modifier: the name is ALPHA *( ALPHA / DIGIT / "-" / "_" /
/// "." ) (§12).
fn modifier(term: &str) -> Option<(&str, &str)> {
    let (name, value) = term.split_once('=')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    .then_some((name, value))
}

fn directive(term: &str) -> Result<(Qualifier, Mechanism), String> {
    let (q, rest) = match term.as_bytes()[0] {
        b'+' => (Qualifier::Pass, &term[1..]),
        b'-' => (Qualifier::Fail, &term[1..]),
        b'~' => (Qualifier::SoftFail, &term[1..]),
        b'?' => (Qualifier::Neutral, &term[1..]),
        _ => (Qualifier::Pass, term),
    };
    let end = rest.find([':', '/']).unwrap_or(rest.len());
    let (name, arg) = rest.split_at(end);
    let m = match name.to_ascii_lowercase().as_str() {
        "all" if arg.is_empty() => Mechanism::All,
        "include" => Mechanism::Include(required(arg, term)?),
        "exists" => Mechanism::Exists(required(arg, term)?),
        "ptr" => Mechanism::Ptr(match arg {
            "" => None,
            a => Some(required(a, term)?),
        }),
        "a" | "mx" => {
            let (spec, v4, v6) = dual_cidr(arg)?;
            let spec = match spec {
                "" => None,
                s => Some(required(s, term)?),
            };
            if name.eq_ignore_ascii_case("a") {
                Mechanism::A(spec, v4, v6)
            } else {
                Mechanism::Mx(spec, v4, v6)
            }
        }
        "ip4" => {
            let (net, len) = network(arg, term, 32)?;
            Mechanism::Ip4(net, len)
        }
        "ip6" => {
            let (net, len) = network(arg, term, 128)?;
            Mechanism::Ip6(net, len)
        }
        _ => return Err(format!("{term}: unknown mechanism")),
    };
    Ok((q, m))
}

/// `:network[/cidr]` of `ip4` and `ip6` (`max` the family's prefix length).
fn network<T: std::str::FromStr>(arg: &str, term: &str, max: u8) -> Result<(T, u8), String> {
    let net = arg.strip_prefix(':').ok_or(format!("{term}: no network"))?;
    let (addr, len) = match net.split_once('/') {
        Some((a, l)) => (a, cidr(l, max)?),
        None => (net, max),
    };
    let addr = addr.parse().map_err(|_| format!("{term}: not a network"))?;
    Ok((addr, len))
}

/// The domain-spec after `:` (it must be there and non-empty).
fn required(arg: &str, term: &str) -> Result<MacroString, String> {
    match arg.strip_prefix(':') {
        Some(spec) if !spec.is_empty() => domain_spec(spec),
        _ => Err(format!("{term}: a domain is required after ':'")),
    }
}

/// `[:domain-spec][/ip4-cidr][//ip6-cidr]` split into the spec (with its `:`) and lengths.
fn dual_cidr(arg: &str) -> Result<(&str, u8, u8), String> {
    let (rest, v6) = match arg.rfind("//") {
        Some(i) if arg[i + 2..].bytes().all(|b| b.is_ascii_digit()) => {
            (&arg[..i], cidr(&arg[i + 2..], 128)?)
        }
        _ => (arg, 128),
    };
    let (rest, v4) = match rest.rfind('/') {
        Some(i) if rest[i + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            (&rest[..i], cidr(&rest[i + 1..], 32)?)
        }
        _ => (rest, 32),
    };
    if rest.contains('/') && !rest.starts_with(':') {
        return Err(format!("{arg}: not a CIDR length"));
    }
    Ok((rest, v4, v6))
}

/// A CIDR length: "0" or digits without a leading zero, at most `max`.
fn cidr(text: &str, max: u8) -> Result<u8, String> {
    let ok = !text.is_empty()
        && text.len() <= 3
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    match text.parse::<u8>() {
        Ok(n) if ok && n <= max => Ok(n),
        _ => Err(format!("/{text}: not a CIDR length up to {max}")),
    }
}

/// A domain-spec: a macro-string whose end is a macro or `.` and a top label (§7.1, §12).
/// The letters `c`, `r` and `t` belong to explanation text only (§7.3).
fn domain_spec(text: &str) -> Result<MacroString, String> {
    let ms = MacroString::parse(text, false)?;
    if ms.ends_with_macro() {
        return Ok(ms);
    }
    let t = text.strip_suffix('.').unwrap_or(text);
    let Some((_, top)) = t.rsplit_once('.') else {
        return Err(format!("{text}: a domain needs a dot and a top label"));
    };
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let good = !top.is_empty()
        && top.chars().all(|c| alnum(c) || c == '-')
        && top.starts_with(alnum)
        && top.ends_with(alnum)
        && (top.contains('-') || top.chars().any(|c| c.is_ascii_alphabetic()));
    if good {
        Ok(ms)
    } else {
        Err(format!("{text}: {top:?} is not a top-level label"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_strictly() {
        let r = parse("v=spf1 +a mx/24//64 -ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all").unwrap();
        assert_eq!(r.directives.len(), 5);
        assert_eq!(r.directives[1].1, Mechanism::Mx(None, 24, 64));
        assert_eq!(r.directives[4].0, Qualifier::SoftFail);
        let r = parse(
            "v=spf1 a:example.org/26 include:_spf.example.com redirect=spf.example.net foo=bar",
        )
        .unwrap();
        assert!(r.redirect.is_some() && r.exp.is_none());
        for bad in [
            "v=spf1 ip4:192.0.2.1/33",
            "v=spf1 ip4:192.0.2.1/024",
            "v=spf1 a/0024",
            "v=spf1 a:foo",
            "v=spf1 a:example.123",
            "v=spf1 include:",
            "v=spf1 frob",
            "v=spf1 redirect=a.example redirect=b.example",
            "v=spf1 a:example.org\tptr",
            "v=spf1 \u{80}a -all",
            "v=spf1 foo=%{q}",
            "v=spf1 a:%{c}.example.org",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(
            parse("v=spf1 exp=%{c}.example.org").is_err(),
            "c only in explanation text"
        );
        assert!(parse("v=spf1 exp=%{d}.example.org").is_ok());
        assert!(is_spf1("V=SPF1 -all") && is_spf1("v=spf1") && !is_spf1("v=spf10"));
    }
}
