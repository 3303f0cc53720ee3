//! SPF macros (RFC 7208 §7): parsing a macro-string and expanding it for one check.

use std::net::IpAddr;

/// One piece of a macro-string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Literal text (`%%`, `%_` and `%-` already turned into `%`, space and `%20`).
    Literal(String),
    /// `%{letter digits r delimiters}`.
    Macro {
        letter: u8,
        url_escape: bool,
        keep: Option<usize>,
        reverse: bool,
        delimiters: String,
    },
}

/// A parsed macro-string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroString {
    pieces: Vec<Piece>,
    /// The text ended with a macro-expand (`%{…}`, `%%`, `%_`, `%-`).
    ends_with_macro: bool,
}

/// What macros expand to for one check (§7.2).
pub struct MacroValues<'a> {
    /// `s`: the sender (`local@domain`).
    pub sender: &'a str,
    /// `l`: its local part.
    pub local: &'a str,
    /// `o`: its domain.
    pub sender_domain: &'a str,
    /// `d`: the domain being checked.
    pub domain: &'a str,
    /// `i`, `c`, `v`: the client's address.
    pub ip: IpAddr,
    /// `h`: the HELO/EHLO name.
    pub helo: &'a str,
    /// `p`: the client's validated name, or "unknown".
    pub validated: &'a str,
    /// `r`: the receiving host's name.
    pub receiver: &'a str,
    /// `t`: the current time (Unix seconds).
    pub now: u64,
}

impl MacroString {
    /// Parses `text`; `explanation` allows `c`, `r` and `t`, which only explanation text may
    /// use (§7.3).
    pub fn parse(text: &str, explanation: bool) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut ends_with_macro = false;
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            ends_with_macro = false;
            let c = b[i];
            if c != b'%' {
                // explain-string = *( macro-string / SP ) (§6.2).
                let visible = (0x21..=0x7e).contains(&c);
                if !(visible || explanation && c == b' ') {
                    return Err(format!("{text}: byte {c:#04x} is not allowed here"));
                }
                literal.push(c as char);
                i += 1;
                continue;
            }
            ends_with_macro = true;
            match b.get(i + 1) {
                Some(b'%') => literal.push('%'),
                Some(b'_') => literal.push(' '),
                Some(b'-') => literal.push_str("%20"),
                Some(b'{') => {
                    let close = text[i..]
                        .find('}')
                        .ok_or(format!("{text}: unclosed macro"))?;
                    let inner = &text[i + 2..i + close];
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(macro_piece(inner, explanation, text)?);
                    i += close + 1;
                    continue;
                }
                _ => return Err(format!("{text}: a lone '%'")),
            }
            i += 2;
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Self {
            pieces,
            ends_with_macro,
        })
    }

    /// Whether the text ended with a macro-expand.
    pub fn ends_with_macro(&self) -> bool {
        self.ends_with_macro
    }

    /// Whether a macro of `letter` (lower case) appears.
    pub fn uses(&self, letter: u8) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Macro { letter: l, .. } if *l == letter))
    }

    /// The expansion for `v`.
    pub fn expand(&self, v: &MacroValues<'_>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Literal(t) => out.push_str(t),
                Piece::Macro {
                    letter,
                    url_escape,
                    keep,
                    reverse,
                    delimiters,
                } => {
                    let value = value_of(*letter, v);
                    let delims = if delimiters.is_empty() {
                        "."
                    } else {
                        delimiters
                    };
                    let mut parts: Vec<&str> = value.split(|c| delims.contains(c)).collect();
                    if *reverse {
                        parts.reverse();
                    }
                    if let Some(n) = keep {
                        let skip = parts.len().saturating_sub(*n);
                        parts.drain(..skip);
                    }
                    let joined = parts.join(".");
                    if *url_escape {
                        out.push_str(&escape(&joined));
                    } else {
                        out.push_str(&joined);
                    }
                }
            }
        }
        out
    }
}

fn macro_piece(inner: &str, explanation: bool, text: &str) -> Result<Piece, String> {
    let b = inner.as_bytes();
    let letter = *b.first().ok_or(format!("{text}: empty macro"))?;
    let lower = letter.to_ascii_lowercase();
    let allowed = match lower {
        b's' | b'l' | b'o' | b'd' | b'i' | b'p' | b'h' | b'v' => true,
        b'c' | b'r' | b't' => explanation,
        _ => false,
    };
    if !allowed {
        return Err(format!(
            "{text}: %{{{}}} is not a macro here",
            letter as char
        ));
    }
    let rest = &inner[1..];
    let digits_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let keep = match &rest[..digits_end] {
        "" => None,
        d => match d.parse::<usize>() {
            Ok(0) | Err(_) => return Err(format!("{text}: a macro keeps at least one part")),
            Ok(n) => Some(n.min(128)),
        },
    };
    let mut rest = &rest[digits_end..];
    let reverse = rest.starts_with(['r', 'R']);
    if reverse {
        rest = &rest[1..];
    }
    if !rest.chars().all(|c| ".-+,/_=".contains(c)) {
        return Err(format!("{text}: bad macro delimiters {rest:?}"));
    }
    Ok(Piece::Macro {
        letter: lower,
        url_escape: letter.is_ascii_uppercase(),
        keep,
        reverse,
        delimiters: rest.to_string(),
    })
}

fn value_of(letter: u8, v: &MacroValues<'_>) -> String {
    match letter {
        b's' => v.sender.to_string(),
        b'l' => v.local.to_string(),
        b'o' => v.sender_domain.to_string(),
        b'd' => v.domain.to_string(),
        b'i' => match v.ip {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => a
                .octets()
                .iter()
                .flat_map(|o| [o >> 4, o & 0xf])
                .map(|n| format!("{n:x}"))
                .collect::<Vec<_>>()
                .join("."),
        },
        b'c' => v.ip.to_string(),
        b'v' => match v.ip {
            IpAddr::V4(_) => "in-addr".into(),
            IpAddr::V6(_) => "ip6".into(),
        },
        b'h' => v.helo.to_string(),
        b'p' => v.validated.to_string(),
        b'r' => v.receiver.to_string(),
        b't' => v.now.to_string(),
        _ => String::new(),
    }
}

/// URL escaping of an upper-case macro (§7.3): everything but unreserved characters.
fn escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(ip: &str) -> MacroValues<'static> {
        MacroValues {
            sender: "strong-bad@email.example.com",
            local: "strong-bad",
            sender_domain: "email.example.com",
            domain: "email.example.com",
            ip: ip.parse().unwrap(),
            helo: "mx.example.org",
            validated: "unknown",
            receiver: "mx.sekisho.example",
            now: 1,
        }
    }

    fn expand(text: &str, ip: &str) -> String {
        MacroString::parse(text, true).unwrap().expand(&values(ip))
    }

    /// The examples of RFC 7208 §7.4.
    #[test]
    fn the_rfc_examples_expand_as_written() {
        let v4 = "192.0.2.3";
        assert_eq!(expand("%{s}", v4), "strong-bad@email.example.com");
        assert_eq!(expand("%{o}", v4), "email.example.com");
        assert_eq!(expand("%{d2}", v4), "example.com");
        assert_eq!(expand("%{d4}", v4), "email.example.com");
        assert_eq!(expand("%{dr}", v4), "com.example.email");
        assert_eq!(expand("%{d2r}", v4), "example.email");
        assert_eq!(expand("%{l}", v4), "strong-bad");
        assert_eq!(expand("%{l-}", v4), "strong.bad");
        assert_eq!(expand("%{lr}", v4), "strong-bad");
        assert_eq!(expand("%{lr-}", v4), "bad.strong");
        assert_eq!(expand("%{l1r-}", v4), "strong");
        assert_eq!(
            expand("%{ir}.%{v}._spf.%{d2}", v4),
            "3.2.0.192.in-addr._spf.example.com"
        );
        assert_eq!(
            expand("%{lr-}.lp._spf.%{d2}", v4),
            "bad.strong.lp._spf.example.com"
        );
        assert_eq!(
            expand("%{ir}.%{v}._spf.%{d2}", "2001:db8::cb01"),
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
        );
        assert_eq!(expand("%{S}", v4), "strong-bad%40email.example.com");
        assert_eq!(expand("a%%b%_c%-d", v4), "a%b c%20d");
    }

    #[test]
    fn bad_macros_are_refused() {
        for bad in ["%{x}", "%{d0}", "%{", "%", "a%b", "%{d2q}", "%{c}"] {
            assert!(MacroString::parse(bad, false).is_err(), "{bad}");
        }
        assert!(MacroString::parse("%{c}", true).is_ok());
    }
}
