//! The policy: weights and thresholds that turn evidence into a score and an action.

use std::collections::HashMap;

use serde::Serialize;

use crate::evidence::{Evidence, Symbol};

/// What happens to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Deliver unchanged (apart from the verdict headers).
    Deliver,
    /// Deliver with the verdict headers marking it as suspicious.
    Tag,
    /// Hold for review.
    Quarantine,
    /// Refuse with a 5xx to DATA (no bounce is ever generated).
    Reject,
    /// Refuse with a 4xx to DATA (the sender retries).
    Tempfail,
}

impl Action {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Action::Deliver => "deliver",
            Action::Tag => "tag",
            Action::Quarantine => "quarantine",
            Action::Reject => "reject",
            Action::Tempfail => "tempfail",
        }
    }
}

/// A symbol as weighed by the policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scored {
    /// The symbol.
    pub symbol: Symbol,
    /// Its weight in this policy.
    pub weight: f64,
    /// The stage's detail.
    pub detail: String,
}

/// The decision about one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The action.
    pub action: Action,
    /// Sum of the weights.
    pub score: f64,
    /// Every symbol with its weight, highest first.
    pub symbols: Vec<Scored>,
    /// Header fields written by stages (e.g. `Authentication-Results`), CRLF-terminated.
    #[serde(skip)]
    pub trace_headers: Vec<String>,
    /// The message's From address (lower case), for the sender history.
    #[serde(skip)]
    pub author: Option<String>,
    /// CPU time of the inspection (parsing and every stage's own work, without waits for DNS
    /// or clamd).
    #[serde(skip)]
    pub cpu: std::time::Duration,
    /// CPU time per stage.
    #[serde(skip)]
    pub stage_cpu: Vec<(&'static str, std::time::Duration)>,
    /// The authentication results (SPF, each DKIM signature, DMARC, ARC), when checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<crate::stages::auth::AuthSummary>,
}

impl Verdict {
    /// `NAME(weight), …` for headers and traces.
    pub fn symbol_list(&self) -> String {
        self.symbols
            .iter()
            .map(|s| format!("{}({:.2})", s.symbol, s.weight))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The reasons a refusal gives the sender, in an SMTP reply: the names of the (at most
    /// three) heaviest symbols that counted against the message (`GTUBE, SPF_FAIL`). The
    /// names only, no detail of what was seen: enough for an honest sender (and the bounce
    /// their server writes) to know why, and the names are documented.
    pub fn reasons(&self) -> String {
        let mut against: Vec<&Scored> = self.symbols.iter().filter(|s| s.weight > 0.0).collect();
        against.sort_by(|a, b| b.weight.total_cmp(&a.weight));
        against
            .iter()
            .take(3)
            .map(|s| s.symbol.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The header block to prepend to the message: the stages' trace headers, then
    /// `X-Sekisho-Verdict`, `X-Sekisho-Score` and `X-Sekisho-Symbols` (CRLF-terminated lines).
    pub fn headers(&self) -> String {
        let mut h: String = self.trace_headers.concat();
        h += &format!(
            "X-Sekisho-Verdict: {}\r\nX-Sekisho-Score: {:.2}\r\n",
            self.action.name(),
            self.score
        );
        if !self.symbols.is_empty() {
            h.push_str(&format!(
                "X-Sekisho-Symbols: {}\r\n",
                fold(&self.symbol_list())
            ));
        }
        h
    }
}

/// Folds a long header value at ", " boundaries (lines under 78 octets where possible).
fn fold(value: &str) -> String {
    let mut out = String::new();
    let mut line = 20; // room for the header name
    for (i, item) in value.split(", ").enumerate() {
        if i > 0 {
            if line + item.len() + 2 > 76 {
                out.push_str(",\r\n\t");
                line = 1;
            } else {
                out.push_str(", ");
                line += 2;
            }
        }
        out.push_str(item);
        line += item.len();
    }
    out
}

/// Weights and thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    weights: HashMap<Symbol, f64>,
    /// Score at which a message is tagged.
    pub tag: f64,
    /// Score at which a message is quarantined.
    pub quarantine: f64,
    /// Score at which a message is rejected.
    pub reject: f64,
    /// Symbols that make the action `tempfail` unless the score already rejects (e.g. the
    /// malware scanner being unavailable, when mail must not pass unscanned).
    pub tempfail_on: Vec<Symbol>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            weights: Symbol::ALL
                .iter()
                .map(|&s| (s, s.default_weight()))
                .collect(),
            tag: 5.0,
            quarantine: 10.0,
            reject: 15.0,
            tempfail_on: Vec::new(),
        }
    }
}

impl Policy {
    /// The default policy with weight overrides by symbol name and the given thresholds.
    /// Errors name the offending key.
    pub fn new(
        overrides: &HashMap<String, f64>,
        tag: f64,
        quarantine: f64,
        reject: f64,
    ) -> Result<Self, String> {
        Policy::default().overridden(overrides, Some(tag), Some(quarantine), Some(reject))
    }

    /// This policy with some weights (by symbol name) and thresholds replaced — a tenant's
    /// overrides on top of the global policy. Errors name the offending key.
    pub fn overridden(
        &self,
        overrides: &HashMap<String, f64>,
        tag: Option<f64>,
        quarantine: Option<f64>,
        reject: Option<f64>,
    ) -> Result<Self, String> {
        let mut p = self.clone();
        for (name, &w) in overrides {
            let s = Symbol::from_name(name).ok_or_else(|| {
                format!(
                    "unknown symbol {name:?} (known: {})",
                    Symbol::ALL
                        .iter()
                        .map(|s| s.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            if !w.is_finite() {
                return Err(format!("{name}: weight must be a finite number"));
            }
            p.weights.insert(s, w);
        }
        p.tag = tag.unwrap_or(p.tag);
        p.quarantine = quarantine.unwrap_or(p.quarantine);
        p.reject = reject.unwrap_or(p.reject);
        if ![p.tag, p.quarantine, p.reject]
            .iter()
            .all(|t| t.is_finite())
        {
            return Err("thresholds must be finite numbers".into());
        }
        if !(p.tag <= p.quarantine && p.quarantine <= p.reject) {
            return Err(format!(
                "thresholds must satisfy tag ≤ quarantine ≤ reject (got {}, {}, {})",
                p.tag, p.quarantine, p.reject
            ));
        }
        Ok(p)
    }

    /// The weight of a symbol.
    pub fn weight(&self, s: Symbol) -> f64 {
        self.weights
            .get(&s)
            .copied()
            .unwrap_or_else(|| s.default_weight())
    }

    /// Scores the evidence and picks the action.
    pub fn decide(&self, evidence: Vec<Evidence>) -> Verdict {
        let mut symbols: Vec<Scored> = evidence
            .into_iter()
            .map(|e| Scored {
                symbol: e.symbol,
                weight: self.weight(e.symbol),
                detail: e.detail,
            })
            .collect();
        symbols.sort_by(|a, b| b.weight.total_cmp(&a.weight).then(a.symbol.cmp(&b.symbol)));
        let score = symbols.iter().fold(0.0, |acc, s| acc + s.weight);
        let action = if score >= self.reject {
            Action::Reject
        } else if symbols.iter().any(|s| self.tempfail_on.contains(&s.symbol)) {
            Action::Tempfail
        } else if score >= self.quarantine {
            Action::Quarantine
        } else if score >= self.tag {
            Action::Tag
        } else {
            Action::Deliver
        };
        Verdict {
            action,
            score,
            symbols,
            trace_headers: Vec::new(),
            author: None,
            cpu: std::time::Duration::ZERO,
            stage_cpu: Vec::new(),
            auth: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &[Symbol]) -> Vec<Evidence> {
        s.iter().map(|&s| Evidence::new(s, "t")).collect()
    }

    #[test]
    fn a_refusal_names_the_heaviest_symbols_against_the_message() {
        let v = Policy::default().decide(ev(&[
            Symbol::DkimPass,
            Symbol::MissingDate,
            Symbol::Gtube,
            Symbol::SpfFail,
            Symbol::HtmlOnly,
        ]));
        assert_eq!(v.reasons(), "GTUBE, SPF_FAIL, MISSING_DATE");
        assert_eq!(
            Policy::default().decide(ev(&[Symbol::DkimPass])).reasons(),
            ""
        );
    }

    #[test]
    fn thresholds_pick_the_action() {
        let p = Policy::new(&HashMap::new(), 1.0, 2.0, 3.0).unwrap();
        assert_eq!(p.decide(vec![]).action, Action::Deliver);
        // An empty sum prints as 0.00, not -0.00.
        assert_eq!(format!("{:.2}", p.decide(vec![]).score), "0.00");
        assert_eq!(p.decide(ev(&[Symbol::MissingDate])).action, Action::Tag);
        assert_eq!(
            p.decide(ev(&[Symbol::MissingFrom])).action,
            Action::Quarantine
        );
        assert_eq!(
            p.decide(ev(&[Symbol::MissingFrom, Symbol::MissingDate]))
                .action,
            Action::Reject
        );
        assert_eq!(
            Policy::default().decide(ev(&[Symbol::Gtube])).action,
            Action::Reject
        );
    }

    #[test]
    fn overrides_and_errors() {
        let mut o = HashMap::new();
        o.insert("missing_date".to_string(), 7.5);
        let p = Policy::new(&o, 5.0, 10.0, 15.0).unwrap();
        let v = p.decide(ev(&[Symbol::MissingDate, Symbol::MissingSubject]));
        assert_eq!(v.score, 8.0);
        assert_eq!(v.action, Action::Tag);
        assert_eq!(v.symbol_list(), "MISSING_DATE(7.50), MISSING_SUBJECT(0.50)");
        o.insert("NO_SUCH".to_string(), 1.0);
        assert!(
            Policy::new(&o, 5.0, 10.0, 15.0)
                .unwrap_err()
                .contains("unknown symbol \"NO_SUCH\"")
        );
        assert!(Policy::new(&HashMap::new(), 5.0, 4.0, 15.0).is_err());
    }

    #[test]
    fn headers_are_folded_crlf_lines() {
        let v = Policy::default().decide(ev(Symbol::ALL));
        let h = v.headers();
        assert!(h.starts_with("X-Sekisho-Verdict: reject\r\nX-Sekisho-Score: "));
        for line in h.split("\r\n") {
            assert!(line.len() <= 78, "{line:?}");
        }
        assert!(h.ends_with("\r\n"));
    }
}

/// The CRLF-terminated lines of `raw[..end]`.
/// Where the line starting at `pos` ends (after its CRLF), within `raw[..end]`.
fn line_end(raw: &[u8], pos: usize, end: usize) -> usize {
    raw[pos..end]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(end, |p| pos + p + 2)
}

/// Removes, from the top-level header block, what a sender could forge to be trusted
/// downstream: every `X-Sekisho-*` field (our verdict), and every `Authentication-Results`
/// field that claims our `authserv_id` (RFC 8601 §5: a border MTA deletes such fields; others'
/// results, and the ARC set's own `ARC-Authentication-Results`, stay). Continuation lines go
/// with their field. Returns the input unchanged (borrowed) when there is nothing to remove.
pub fn strip_forged_headers<'a>(raw: &'a [u8], authserv_id: &str) -> std::borrow::Cow<'a, [u8]> {
    let header_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |p| p + 2);
    let forged = |field: &[u8]| is_forged(field, authserv_id);
    if !fields(raw, header_end).any(forged) {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    for field in fields(raw, header_end).filter(|f| !forged(f)) {
        out.extend_from_slice(field);
    }
    out.extend_from_slice(&raw[header_end..]);
    std::borrow::Cow::Owned(out)
}

/// The header block's fields (`raw[..end]`), each with its continuation lines.
fn fields(raw: &[u8], end: usize) -> impl Iterator<Item = &[u8]> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let start = pos;
        pos = line_end(raw, pos, end);
        while pos < end && matches!(raw[pos], b' ' | b'\t') {
            pos = line_end(raw, pos, end);
        }
        Some(&raw[start..pos])
    })
}

fn is_forged(field: &[u8], authserv_id: &str) -> bool {
    const OURS: &[u8] = b"x-sekisho-";
    const AR: &[u8] = b"authentication-results:";
    let starts = |p: &[u8]| field.len() >= p.len() && field[..p.len()].eq_ignore_ascii_case(p);
    if starts(OURS) {
        return true;
    }
    if !starts(AR) {
        return false;
    }
    let value = String::from_utf8_lossy(&field[AR.len()..]);
    claimed_authserv_id(&value).is_some_and(|id| id.eq_ignore_ascii_case(authserv_id))
}

/// The authserv-id an `Authentication-Results` value starts with (after white space and
/// comments), up to `;`, white space or a comment.
fn claimed_authserv_id(value: &str) -> Option<&str> {
    let mut rest = value.trim_start();
    while let Some(after) = rest.strip_prefix('(') {
        rest = after.split_once(')')?.1.trim_start();
    }
    let end = rest
        .find(|c: char| c == ';' || c == '(' || c.is_whitespace())
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

#[cfg(test)]
mod strip_tests {
    use super::strip_forged_headers;

    #[test]
    fn forged_verdict_headers_are_removed_and_nothing_else() {
        let forged = b"Subject: x\r\nX-Sekisho-Verdict: deliver\r\nx-sekisho-symbols: A,\r\n\tB\r\nTo: y\r\n\r\nX-Sekisho-Verdict: in the body stays\r\n";
        assert_eq!(
            &strip_forged_headers(forged, "mx.example.net")[..],
            &b"Subject: x\r\nTo: y\r\n\r\nX-Sekisho-Verdict: in the body stays\r\n"[..]
        );
        let clean = b"Subject: x\r\n\r\nbody\r\n";
        assert!(matches!(
            strip_forged_headers(clean, "mx.example.net"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn results_claiming_our_authserv_id_are_removed_others_stay() {
        let raw = b"Authentication-Results: MX.example.net; dkim=pass header.d=bank.example\r\n\
Authentication-Results:\r\n (forged) mx.example.net;\r\n spf=pass\r\n\
Authentication-Results: mx.example.net.evil; spf=pass\r\n\
Authentication-Results: upstream.example.org; spf=fail\r\n\
ARC-Authentication-Results: i=1; mx.example.net; dkim=pass\r\n\
Subject: hi\r\n\r\nAuthentication-Results: mx.example.net; in the body stays\r\n";
        let out = strip_forged_headers(raw, "mx.example.net");
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "Authentication-Results: mx.example.net.evil; spf=pass\r\n\
Authentication-Results: upstream.example.org; spf=fail\r\n\
ARC-Authentication-Results: i=1; mx.example.net; dkim=pass\r\n\
Subject: hi\r\n\r\nAuthentication-Results: mx.example.net; in the body stays\r\n"
        );
    }
}
