//! Header, Received-chain, HELO and charset/script anomaly rules (no external service).
//!
//! Each rule looks for something a well-behaved mail system does not produce: a Date far from
//! the arrival time or unparseable, a malformed Message-ID, a display name that carries another
//! address, a HELO that claims the recipient's own domain, text whose words mix alphabets to dodge
//! filters (`Vіagra` with a Cyrillic `і`), 8-bit text without a declared charset, text in a script
//! the tenant does not read, and a message that arrives with no Received trace at all.

use std::net::IpAddr;

use mail_parser::{HeaderValue, MimeHeaders, PartType};
use unicode_security::MixedScript;

use crate::evidence::{Evidence, Symbol};
use crate::view::MessageView;
use crate::{Envelope, SyncStage};

/// A Date this far after arrival is in the future (clock skew allowance included).
pub const FUTURE_SLACK_SECS: i64 = 6 * 3600;
/// A Date this far before arrival is in the past (longer than queues retry).
pub const PAST_SLACK_SECS: i64 = 4 * 86400;
/// Words examined per message for mixed scripts (a limit, for cost).
const MAX_WORDS: usize = 20_000;
/// Letters sampled per message for the script mix.
const MAX_LETTERS: usize = 50_000;

/// Writing systems, for the "script the tenant does not read" rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Script {
    /// Latin letters.
    Latin,
    /// Japanese: kana, or Han together with kana.
    Japanese,
    /// Han without any kana.
    Chinese,
    /// Hangul.
    Korean,
    /// Cyrillic.
    Cyrillic,
    /// Greek.
    Greek,
    /// Arabic.
    Arabic,
    /// Hebrew.
    Hebrew,
    /// Thai.
    Thai,
}

impl Script {
    /// Every script, for configuration errors.
    pub const ALL: &'static [Script] = &[
        Script::Latin,
        Script::Japanese,
        Script::Chinese,
        Script::Korean,
        Script::Cyrillic,
        Script::Greek,
        Script::Arabic,
        Script::Hebrew,
        Script::Thai,
    ];

    /// Lower-case name, as in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Script::Latin => "latin",
            Script::Japanese => "japanese",
            Script::Chinese => "chinese",
            Script::Korean => "korean",
            Script::Cyrillic => "cyrillic",
            Script::Greek => "greek",
            Script::Arabic => "arabic",
            Script::Hebrew => "hebrew",
            Script::Thai => "thai",
        }
    }

    /// The script of a name.
    pub fn from_name(name: &str) -> Result<Script, String> {
        Script::ALL
            .iter()
            .copied()
            .find(|s| s.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                format!(
                    "unknown script {name:?} (known: {})",
                    Script::ALL
                        .iter()
                        .map(|s| s.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

/// Letter counts per script class.
#[derive(Default)]
struct ScriptMix {
    latin: usize,
    kana: usize,
    han: usize,
    hangul: usize,
    cyrillic: usize,
    greek: usize,
    arabic: usize,
    hebrew: usize,
    thai: usize,
}

impl ScriptMix {
    fn add(&mut self, c: char) {
        let slot = match c as u32 {
            0x41..=0x5A | 0x61..=0x7A | 0xC0..=0x24F => &mut self.latin,
            0x3040..=0x30FF | 0xFF66..=0xFF9F => &mut self.kana,
            0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF => &mut self.han,
            0xAC00..=0xD7AF | 0x1100..=0x11FF | 0x3130..=0x318F => &mut self.hangul,
            0x400..=0x4FF => &mut self.cyrillic,
            0x370..=0x3FF => &mut self.greek,
            0x600..=0x6FF | 0x750..=0x77F => &mut self.arabic,
            0x590..=0x5FF => &mut self.hebrew,
            0xE00..=0xE7F => &mut self.thai,
            _ => return,
        };
        *slot += 1;
    }

    fn total(&self) -> usize {
        self.latin
            + self.kana
            + self.han
            + self.hangul
            + self.cyrillic
            + self.greek
            + self.arabic
            + self.hebrew
            + self.thai
    }

    /// The dominant script (Han counts as Japanese when any kana is present).
    fn dominant(&self) -> Option<(Script, usize)> {
        let (japanese, chinese) = if self.kana > 0 {
            (self.kana + self.han, 0)
        } else {
            (0, self.han)
        };
        [
            (Script::Latin, self.latin),
            (Script::Japanese, japanese),
            (Script::Chinese, chinese),
            (Script::Korean, self.hangul),
            (Script::Cyrillic, self.cyrillic),
            (Script::Greek, self.greek),
            (Script::Arabic, self.arabic),
            (Script::Hebrew, self.hebrew),
            (Script::Thai, self.thai),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .max_by_key(|(_, n)| *n)
    }
}

/// The header and anomaly rules.
pub struct HeaderRules {
    scripts: Vec<Script>,
}

impl Default for HeaderRules {
    /// Latin and Japanese text are expected (Sekisho's first market).
    fn default() -> Self {
        Self::new(vec![Script::Latin, Script::Japanese])
    }
}

impl HeaderRules {
    /// Rules expecting text in `scripts`; text mostly in another script is evidence.
    pub fn new(scripts: Vec<Script>) -> Self {
        Self { scripts }
    }

    /// The evidence for one message.
    pub fn check(&self, msg: &MessageView<'_>, env: &Envelope) -> Vec<Evidence> {
        let mut out = Vec::new();
        helo_rules(env, &mut out);
        let Some(m) = &msg.parsed else { return out };
        date_rules(m, env.received_at(), &mut out);
        if let Some((_, v)) = m
            .headers_raw()
            .find(|(n, _)| n.eq_ignore_ascii_case("Message-ID"))
            && !valid_msgid(v.trim())
        {
            out.push(Evidence::new(
                Symbol::InvalidMsgId,
                "Message-ID is not <left@right>",
            ));
        }
        if let Some(subject) = m.subject() {
            let letters: Vec<char> = subject.chars().filter(|c| c.is_alphabetic()).collect();
            if letters.len() >= 12
                && letters.iter().all(|c| c.is_ascii_uppercase())
                && subject.split_whitespace().count() >= 2
            {
                out.push(Evidence::new(Symbol::SubjectAllCaps, "subject in capitals"));
            }
        }
        if let Some(from) = m.from().and_then(|a| a.first())
            && let (Some(name), Some(addr)) = (from.name.as_deref(), from.address.as_deref())
            && let Some(shown) = address_in(name)
        {
            let domain = |a: &str| {
                a.rsplit_once('@')
                    .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
            };
            if domain(&shown) != domain(addr) {
                out.push(Evidence::new(
                    Symbol::FromNameAddress,
                    format!(
                        "display name shows an address at {} but the mail is from {}",
                        domain(&shown).unwrap_or_default(),
                        domain(addr).unwrap_or_default()
                    ),
                ));
            }
        }
        self.text_rules(msg, m, &mut out);
        received_rules(m, env, &mut out);
        out
    }

    fn text_rules(
        &self,
        msg: &MessageView<'_>,
        m: &mail_parser::Message<'_>,
        out: &mut Vec<Evidence>,
    ) {
        // Mixed-script words: subject and From display name first (short, high signal), then
        // the bodies.
        let heads = [
            m.subject().unwrap_or(""),
            m.from()
                .and_then(|a| a.first())
                .and_then(|a| a.name.as_deref())
                .unwrap_or(""),
        ];
        let mut words = 0;
        let mixed = heads
            .into_iter()
            .chain(msg.texts())
            .flat_map(|t| t.split(|c: char| !c.is_alphanumeric()))
            .take_while(|_| {
                words += 1;
                words <= MAX_WORDS
            })
            .find(|w| is_mixed_script_word(w));
        if let Some(w) = mixed {
            out.push(Evidence::new(
                Symbol::MixedScript,
                format!("a word of {} letters mixes alphabets", w.chars().count()),
            ));
        }
        let mut mix = ScriptMix::default();
        for c in heads
            .into_iter()
            .chain(msg.texts())
            .flat_map(|t| t.chars())
            .take(MAX_LETTERS)
        {
            mix.add(c);
        }
        if let Some((script, n)) = mix.dominant()
            && n >= 20
            && n * 2 > mix.total()
            && !self.scripts.contains(&script)
        {
            out.push(Evidence::new(
                Symbol::ForeignScript,
                format!("text is mostly {} script", script.name()),
            ));
        }
        for part in &m.parts {
            if !matches!(part.body, PartType::Text(_) | PartType::Html(_)) {
                continue;
            }
            let declared = part
                .content_type()
                .and_then(|ct| ct.attribute("charset"))
                .map(|c| c.to_ascii_lowercase());
            let encoded = part
                .content_transfer_encoding()
                .is_some_and(|e| e.eq_ignore_ascii_case("base64"));
            if matches!(declared.as_deref(), None | Some("us-ascii")) && !encoded {
                let raw = msg
                    .raw
                    .get(part.offset_body as usize..part.offset_end as usize)
                    .unwrap_or(&[]);
                if raw.iter().any(|&b| b >= 0x80) {
                    out.push(Evidence::new(
                        Symbol::CharsetMissing,
                        "8-bit text without a declared charset",
                    ));
                    break;
                }
            }
        }
    }
}

/// True for a word that mixes letters of scripts which never share a word (Latin with
/// Cyrillic or Greek, …); Japanese mixing Han with kana is one script by UTS #39's
/// augmented sets, so it does not count.
fn is_mixed_script_word(w: &str) -> bool {
    w.chars().count() >= 3 && !w.is_ascii() && !w.is_single_script()
}

/// An e-mail address inside a display name (`"support@bank.example" <x@evil.example>`).
fn address_in(name: &str) -> Option<String> {
    name.split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | '"' | '\'' | ','))
        .find(|w| {
            w.split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.ends_with('.'))
        })
        .map(|w| w.to_string())
}

fn valid_msgid(v: &str) -> bool {
    v.starts_with('<')
        && v.ends_with('>')
        && v[1..v.len() - 1]
            .split_once('@')
            .is_some_and(|(l, r)| !l.is_empty() && !r.is_empty())
}

fn date_rules(m: &mail_parser::Message<'_>, arrival: i64, out: &mut Vec<Evidence>) {
    if !m.headers_raw().any(|(n, _)| n.eq_ignore_ascii_case("Date")) {
        return; // MISSING_DATE is the content rules' finding
    }
    match m.date() {
        Some(d) if d.is_valid() && d.tz_hour <= 14 => {
            let at = d.to_timestamp();
            if at > arrival + FUTURE_SLACK_SECS {
                out.push(Evidence::new(
                    Symbol::DateInFuture,
                    format!("Date is {} h after arrival", (at - arrival) / 3600),
                ));
            } else if at < arrival - PAST_SLACK_SECS {
                out.push(Evidence::new(
                    Symbol::DateInPast,
                    format!("Date is {} days before arrival", (arrival - at) / 86400),
                ));
            }
        }
        _ => out.push(Evidence::new(
            Symbol::InvalidDate,
            "Date header cannot be read as an RFC 5322 date",
        )),
    }
}

fn is_loopback_or_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

fn helo_rules(env: &Envelope, out: &mut Vec<Evidence>) {
    if is_loopback_or_private(env.client_ip) || env.helo.is_empty() {
        return; // internal hops and local tools are not judged by their greeting
    }
    let helo = env.helo.trim_end_matches('.').to_ascii_lowercase();
    if let Some(literal) = helo.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let literal = literal.strip_prefix("ipv6:").unwrap_or(literal);
        if literal.parse::<IpAddr>().ok() != Some(env.client_ip) {
            out.push(Evidence::new(
                Symbol::HeloIpMismatch,
                "HELO address literal is not the client's address",
            ));
        }
        return;
    }
    if helo.parse::<IpAddr>().is_ok() || !helo.contains('.') {
        out.push(Evidence::new(
            Symbol::HeloNotFqdn,
            "HELO is not a fully qualified domain name",
        ));
        return;
    }
    if let Some(d) = env
        .protected_domains
        .iter()
        .find(|d| helo == **d || helo.ends_with(&format!(".{d}")))
    {
        out.push(Evidence::new(
            Symbol::HeloClaimsTenant,
            format!("an outside client greets as {d}, the recipient's own domain"),
        ));
    }
}

fn received_rules(m: &mail_parser::Message<'_>, env: &Envelope, out: &mut Vec<Evidence>) {
    let received = m
        .headers()
        .iter()
        .filter(|h| matches!(h.value, HeaderValue::Received(_)))
        .count();
    if received == 0 && !is_loopback_or_private(env.client_ip) {
        out.push(Evidence::new(
            Symbol::RcvdNone,
            "no Received header: sent straight from a program, not through a mail server",
        ));
    }
}

impl SyncStage for HeaderRules {
    fn stage_name(&self) -> &'static str {
        "headers"
    }

    fn evidence(&self, msg: &MessageView<'_>, env: &Envelope) -> Vec<Evidence> {
        self.check(msg, env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::ViewLimits;

    const AT: i64 = 1_704_067_200; // 2024-01-01T00:00:00Z

    fn env(ip: &str, helo: &str) -> Envelope {
        Envelope {
            client_ip: ip.parse().unwrap(),
            helo: helo.into(),
            protected_domains: vec!["acme.example".into()],
            received_at: Some(AT),
            ..Default::default()
        }
    }

    fn symbols_with(raw: &str, env: &Envelope) -> Vec<Symbol> {
        let (view, _) = MessageView::parse(raw.as_bytes(), &ViewLimits::default());
        let mut s: Vec<_> = HeaderRules::default()
            .check(&view, env)
            .into_iter()
            .map(|e| e.symbol)
            .collect();
        s.sort();
        s
    }

    fn symbols(raw: &str) -> Vec<Symbol> {
        symbols_with(raw, &env("192.0.2.1", "mail.sender.example"))
    }

    fn msg(headers: &str, body: &str) -> String {
        let mut h = String::from(
            "Received: from mail.sender.example (mail.sender.example [192.0.2.1]) by mx.acme.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n",
        );
        for name in ["From", "Date", "Message-ID", "Subject"] {
            if !headers.contains(&format!("{name}:")) {
                h += match name {
                    "From" => "From: Alice <alice@sender.example>\r\n",
                    "Date" => "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n",
                    "Message-ID" => "Message-ID: <1@sender.example>\r\n",
                    _ => "Subject: quarterly report\r\n",
                };
            }
        }
        format!("{h}{headers}\r\n{body}\r\n")
    }

    #[test]
    fn a_plain_message_fires_nothing() {
        assert_eq!(symbols(&msg("", "hello, the report is attached")), vec![]);
        assert_eq!(
            symbols(&msg(
                "Subject: =?UTF-8?B?5Lya6K2w44Gu44GK55+l44KJ44Gb?=\r\nContent-Type: text/plain; charset=UTF-8\r\n",
                "明日の会議は午後三時からです。資料を確認してください。よろしくお願いします。"
            )),
            vec![],
            "Japanese text is expected by default"
        );
    }

    #[test]
    fn dates_far_from_arrival_or_unreadable() {
        let future = msg("Date: Thu, 1 Feb 2024 00:00:00 +0000\r\n", "x");
        assert_eq!(symbols(&future), vec![Symbol::DateInFuture]);
        let past = msg("Date: Fri, 1 Dec 2023 00:00:00 +0000\r\n", "x");
        assert_eq!(symbols(&past), vec![Symbol::DateInPast]);
        let skew = msg("Date: Mon, 1 Jan 2024 03:00:00 +0000\r\n", "x");
        assert_eq!(symbols(&skew), vec![], "a few hours of clock skew is fine");
        let bad = msg("Date: someday soon\r\n", "x");
        assert_eq!(symbols(&bad), vec![Symbol::InvalidDate]);
        let bad_zone = msg("Date: Mon, 1 Jan 2024 00:00:00 -1900\r\n", "x");
        assert_eq!(symbols(&bad_zone), vec![Symbol::InvalidDate]);
    }

    #[test]
    fn message_id_shape() {
        assert_eq!(
            symbols(&msg("Message-ID: 12345\r\n", "x")),
            vec![Symbol::InvalidMsgId]
        );
        assert_eq!(
            symbols(&msg("Message-ID: <abc.def@host.example>\r\n", "x")),
            vec![]
        );
    }

    #[test]
    fn subject_in_capitals() {
        assert_eq!(
            symbols(&msg("Subject: FREE MONEY WAITING FOR YOU\r\n", "x")),
            vec![Symbol::SubjectAllCaps]
        );
        assert_eq!(
            symbols(&msg("Subject: NASA FAQ\r\n", "x")),
            vec![],
            "short acronyms are not shouting"
        );
    }

    #[test]
    fn display_name_with_another_address() {
        assert_eq!(
            symbols(&msg(
                "From: \"support@bank.example\" <x@evil.example>\r\n",
                "x"
            )),
            vec![Symbol::FromNameAddress]
        );
        assert_eq!(
            symbols(&msg(
                "From: \"alice@sender.example\" <alice@sender.example>\r\n",
                "x"
            )),
            vec![],
            "the same domain is fine"
        );
    }

    #[test]
    fn words_mixing_alphabets() {
        // "Vіagra" with a Cyrillic і (U+0456).
        assert_eq!(
            symbols(&msg(
                "Content-Type: text/plain; charset=UTF-8\r\n",
                "buy V\u{456}agra now"
            )),
            vec![Symbol::MixedScript]
        );
        assert_eq!(
            symbols(&msg(
                "Content-Type: text/plain; charset=UTF-8\r\n",
                "Привет, this is a bilingual note with enough latin words to dominate the text"
            )),
            vec![],
            "Cyrillic and Latin in separate words are not mixing"
        );
    }

    #[test]
    fn text_in_an_unexpected_script() {
        let chinese = msg(
            "Content-Type: text/plain; charset=UTF-8\r\n",
            "第十一届中国国际电子元器件展览会将于二零零二年四月一日在深圳举行欢迎参观",
        );
        assert_eq!(symbols(&chinese), vec![Symbol::ForeignScript]);
        let (view, _) = MessageView::parse(chinese.as_bytes(), &ViewLimits::default());
        let rules = HeaderRules::new(vec![Script::Latin, Script::Chinese]);
        assert!(
            rules
                .check(&view, &env("192.0.2.1", "mail.sender.example"))
                .is_empty(),
            "a tenant that reads Chinese configures it"
        );
    }

    #[test]
    fn eight_bit_text_without_charset() {
        let raw = "Received: from a (a [192.0.2.1]) by b; Mon, 1 Jan 2024 00:00:00 +0000\r\nFrom: a@sender.example\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@x.example>\r\nSubject: hi\r\n\r\ncaf\u{e9} ol\u{e9}\r\n";
        assert_eq!(symbols(raw), vec![Symbol::CharsetMissing]);
        assert_eq!(
            symbols(&msg(
                "Content-Type: text/plain; charset=UTF-8\r\n",
                "caf\u{e9}"
            )),
            vec![]
        );
    }

    #[test]
    fn helo_rules_for_outside_clients() {
        let m = msg("", "x");
        assert_eq!(
            symbols_with(&m, &env("192.0.2.1", "[192.0.2.9]")),
            vec![Symbol::HeloIpMismatch]
        );
        assert_eq!(symbols_with(&m, &env("192.0.2.1", "[192.0.2.1]")), vec![]);
        assert_eq!(
            symbols_with(&m, &env("192.0.2.1", "desktop")),
            vec![Symbol::HeloNotFqdn]
        );
        assert_eq!(
            symbols_with(&m, &env("192.0.2.1", "mail.acme.example")),
            vec![Symbol::HeloClaimsTenant]
        );
        assert_eq!(
            symbols_with(&m, &env("10.0.0.5", "desktop")),
            vec![],
            "internal clients are not judged by their greeting"
        );
    }

    #[test]
    fn no_received_trace_from_outside() {
        let bare = "From: a@sender.example\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@x.example>\r\nSubject: hi\r\n\r\nhello\r\n";
        assert_eq!(symbols(bare), vec![Symbol::RcvdNone]);
        assert_eq!(symbols_with(bare, &env("127.0.0.1", "localhost")), vec![]);
    }
}
