//! `check_host()` (RFC 7208 §4): record lookup and selection, mechanisms left to right,
//! `redirect`, the limits of §4.6.4, and the explanation of a `fail`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::lookup::{Answer, Lookup};
use super::macros::{MacroString, MacroValues};
use super::record::{Mechanism, Qualifier, Record, is_spf1, parse};
use super::{Outcome, SpfResult};
use crate::BoxFuture;

/// Most mechanisms and modifiers that query DNS in one evaluation (§4.6.4).
pub const MAX_DNS_TERMS: u32 = 10;
/// Most lookups that return no answer (§4.6.4: "void lookups").
pub const MAX_VOID_LOOKUPS: u32 = 2;
/// Most names looked at per `mx` (more is a `permerror`) and per `ptr` (more are ignored).
pub const MAX_NAMES: usize = 10;

/// One evaluation's facts and counters.
pub struct Check<'a, L: Lookup> {
    lookup: &'a L,
    ip: IpAddr,
    sender: String,
    local: String,
    sender_domain: String,
    helo: String,
    receiver: String,
    dns_terms: u32,
    void_lookups: u32,
}

/// How a term came out: it matched, it did not, or the evaluation ends with this result.
enum Term {
    Match,
    NoMatch,
    End(SpfResult),
}

impl<'a, L: Lookup> Check<'a, L> {
    /// A check of `ip` for the sender `sender` (`local@domain`; `postmaster@helo` for the
    /// null sender), said to be `helo`, received by `receiver`.
    pub fn new(lookup: &'a L, ip: IpAddr, sender: &str, helo: &str, receiver: &str) -> Self {
        // An IPv4-mapped IPv6 client is an IPv4 client (§5: "ip4" and "a" see it as such).
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (local, domain) = match sender.rsplit_once('@') {
            Some(("", d)) => ("postmaster", d),
            Some((l, d)) => (l, d),
            None => ("postmaster", sender),
        };
        Self {
            lookup,
            ip,
            sender: format!("{local}@{domain}"),
            local: local.to_string(),
            sender_domain: domain.to_string(),
            helo: helo.to_string(),
            receiver: receiver.to_string(),
            dns_terms: 0,
            void_lookups: 0,
        }
    }

    /// Runs `check_host()` for the sender's domain.
    pub async fn run(mut self) -> Outcome {
        let domain = self.sender_domain.clone();
        if !valid_domain(&domain) {
            return Outcome::new(SpfResult::None, format!("{domain:?} is not a domain name"));
        }
        let (result, record) = self.check_host(domain.clone(), 0).await;
        let mut outcome = Outcome::new(result, String::new());
        if result == SpfResult::Fail
            && let Some(exp) = record.and_then(|(r, d)| r.exp.map(|e| (e, d)))
        {
            outcome.explanation = self.explain(&exp.0, &exp.1).await;
        }
        outcome
    }

    /// `check_host(domain)`: the result, and the record and domain whose directive decided
    /// it (for the explanation of a `fail`).
    fn check_host(
        &mut self,
        domain: String,
        depth: u32,
    ) -> BoxFuture<'_, (SpfResult, Option<(Record, String)>)> {
        Box::pin(async move {
            if !valid_domain(&domain) {
                return (SpfResult::None, None);
            }
            let texts = match self.lookup.txt(&domain).await {
                Answer::Records(t) => t,
                Answer::Void => return (SpfResult::None, None),
                Answer::Failed => return (SpfResult::TempError, None),
            };
            let mut spf = texts.iter().filter(|t| is_spf1(t));
            let text = match (spf.next(), spf.next()) {
                (None, _) => return (SpfResult::None, None),
                (Some(_), Some(_)) => return (SpfResult::PermError, None),
                (Some(t), None) => t.clone(),
            };
            let Ok(record) = parse(&text) else {
                return (SpfResult::PermError, None);
            };
            for (q, m) in &record.directives {
                match self.term(m, &domain, depth).await {
                    Term::Match => return (result_of(*q), Some((record, domain))),
                    Term::NoMatch => {}
                    Term::End(r) => return (r, None),
                }
            }
            let Some(redirect) = &record.redirect else {
                return (SpfResult::Neutral, None);
            };
            if let Err(r) = self.count_term() {
                return (r, None);
            }
            let target = self.expand(redirect, &domain).await;
            match self.check_host(target, depth + 1).await {
                // §6.1: a redirect to a domain without a record is a permerror.
                (SpfResult::None, _) => (SpfResult::PermError, None),
                other => other,
            }
        })
    }

    fn count_term(&mut self) -> Result<(), SpfResult> {
        self.dns_terms += 1;
        if self.dns_terms > MAX_DNS_TERMS {
            Err(SpfResult::PermError)
        } else {
            Ok(())
        }
    }

    fn void(&mut self) -> Term {
        self.void_lookups += 1;
        if self.void_lookups > MAX_VOID_LOOKUPS {
            Term::End(SpfResult::PermError)
        } else {
            Term::NoMatch
        }
    }

    async fn term(&mut self, m: &Mechanism, domain: &str, depth: u32) -> Term {
        if m.queries_dns()
            && let Err(r) = self.count_term()
        {
            return Term::End(r);
        }
        match m {
            Mechanism::All => Term::Match,
            Mechanism::Ip4(net, len) => matches(self.ip, &IpAddr::V4(*net), *len, 0).into(),
            Mechanism::Ip6(net, len) => matches(self.ip, &IpAddr::V6(*net), 0, *len).into(),
            Mechanism::Include(spec) => {
                let target = self.expand(spec, domain).await;
                match self.check_host(target, depth + 1).await.0 {
                    SpfResult::Pass => Term::Match,
                    SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => Term::NoMatch,
                    SpfResult::TempError => Term::End(SpfResult::TempError),
                    SpfResult::PermError | SpfResult::None => Term::End(SpfResult::PermError),
                }
            }
            Mechanism::A(spec, v4, v6) => {
                let target = self.target(spec.as_ref(), domain).await;
                match self.addresses(&target).await {
                    Answer::Records(a) => a.iter().any(|x| matches(self.ip, x, *v4, *v6)).into(),
                    Answer::Void => self.void(),
                    Answer::Failed => Term::End(SpfResult::TempError),
                }
            }
            Mechanism::Mx(spec, v4, v6) => {
                let target = self.target(spec.as_ref(), domain).await;
                self.mx(&target, *v4, *v6).await
            }
            Mechanism::Ptr(spec) => {
                let target = self.target(spec.as_ref(), domain).await;
                match self.validated_names().await {
                    Some(names) => names.iter().any(|n| within(n, &target)).into(),
                    None => self.void(),
                }
            }
            Mechanism::Exists(spec) => {
                let target = self.expand(spec, domain).await;
                if !valid_domain(&target) {
                    return Term::NoMatch;
                }
                match self.lookup.a(&target).await {
                    Answer::Records(_) => Term::Match,
                    Answer::Void => self.void(),
                    Answer::Failed => Term::End(SpfResult::TempError),
                }
            }
        }
    }

    async fn mx(&mut self, target: &str, v4: u8, v6: u8) -> Term {
        if !valid_domain(target) {
            return Term::NoMatch;
        }
        let exchanges = match self.lookup.mx(target).await {
            Answer::Records(x) => x,
            Answer::Void => return self.void(),
            Answer::Failed => return Term::End(SpfResult::TempError),
        };
        if exchanges.len() > MAX_NAMES {
            return Term::End(SpfResult::PermError);
        }
        for x in &exchanges {
            match self.addresses(x).await {
                Answer::Records(a) if a.iter().any(|a| matches(self.ip, a, v4, v6)) => {
                    return Term::Match;
                }
                Answer::Failed => return Term::End(SpfResult::TempError),
                _ => {}
            }
        }
        Term::NoMatch
    }

    /// The client's addresses' family of records for `name`: A for IPv4, AAAA for IPv6.
    async fn addresses(&self, name: &str) -> Answer<IpAddr> {
        if !valid_domain(name) {
            return Answer::Void;
        }
        match self.ip {
            IpAddr::V4(_) => self.lookup.a(name).await.map(IpAddr::V4),
            IpAddr::V6(_) => self.lookup.aaaa(name).await.map(IpAddr::V6),
        }
    }

    /// The client's names that resolve back to it (§5.5), at most [`MAX_NAMES`] looked at;
    /// `None` when the PTR lookup gave nothing.
    async fn validated_names(&self) -> Option<Vec<String>> {
        let names = match self.lookup.ptr(self.ip).await {
            Answer::Records(n) => n,
            _ => return None,
        };
        let mut out = Vec::new();
        for n in names.iter().take(MAX_NAMES) {
            if let Answer::Records(a) = self.addresses(n).await
                && a.contains(&self.ip)
            {
                out.push(n.clone());
            }
        }
        Some(out)
    }

    async fn target(&self, spec: Option<&MacroString>, domain: &str) -> String {
        match spec {
            Some(s) => self.expand(s, domain).await,
            None => domain.to_string(),
        }
    }

    /// Expands a domain-spec (truncated from the left to 253 characters, §7.3).
    async fn expand(&self, spec: &MacroString, domain: &str) -> String {
        let validated = if spec.uses(b'p') {
            self.validated_name(domain).await
        } else {
            String::new()
        };
        let name = spec.expand(&self.values(domain, &validated));
        truncate(&name)
    }

    /// `%{p}`: a validated name of the client, the domain itself or one below it preferred.
    async fn validated_name(&self, domain: &str) -> String {
        let names = self.validated_names().await.unwrap_or_default();
        names
            .iter()
            .find(|n| within(n, domain))
            .or(names.first())
            .cloned()
            .unwrap_or_else(|| "unknown".into())
    }

    fn values<'v>(&'v self, domain: &'v str, validated: &'v str) -> MacroValues<'v> {
        MacroValues {
            sender: &self.sender,
            local: &self.local,
            sender_domain: &self.sender_domain,
            domain,
            ip: self.ip,
            helo: &self.helo,
            validated,
            receiver: &self.receiver,
            now: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    /// The explanation of a `fail` (§6.2): one TXT record at the expanded `exp=` domain,
    /// itself expanded; nothing on any error.
    async fn explain(&self, exp: &MacroString, domain: &str) -> Option<String> {
        let target = self.expand(exp, domain).await;
        if !valid_domain(&target) {
            return None;
        }
        let Answer::Records(texts) = self.lookup.txt(&target).await else {
            return None;
        };
        let [text] = texts.as_slice() else {
            return None;
        };
        let ms = MacroString::parse(text, true).ok()?;
        let validated = self.validated_name(domain).await;
        Some(ms.expand(&self.values(domain, &validated)))
    }
}

impl From<bool> for Term {
    fn from(b: bool) -> Self {
        if b { Term::Match } else { Term::NoMatch }
    }
}

fn result_of(q: Qualifier) -> SpfResult {
    match q {
        Qualifier::Pass => SpfResult::Pass,
        Qualifier::Fail => SpfResult::Fail,
        Qualifier::SoftFail => SpfResult::SoftFail,
        Qualifier::Neutral => SpfResult::Neutral,
    }
}

/// Whether `name` is `domain` or below it (case-insensitive, trailing dots aside).
fn within(name: &str, domain: &str) -> bool {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    n == d || n.ends_with(&format!(".{d}"))
}

/// Whether `ip` is in `net` with the prefix length of its family.
fn matches(ip: IpAddr, net: &IpAddr, v4: u8, v6: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => prefix4(a, v4) == prefix4(*n, v4),
        (IpAddr::V6(a), IpAddr::V6(n)) => prefix6(a, v6) == prefix6(*n, v6),
        _ => false,
    }
}

fn prefix4(a: Ipv4Addr, len: u8) -> u32 {
    let bits = u32::from(a);
    if len == 0 {
        0
    } else {
        bits >> (32 - u32::from(len.min(32)))
    }
}

fn prefix6(a: Ipv6Addr, len: u8) -> u128 {
    let bits = u128::from(a);
    if len == 0 {
        0
    } else {
        bits >> (128 - u32::from(len.min(128)))
    }
}

/// A name that can be queried and is a domain: at least two labels, each 1–63 octets (a
/// trailing dot aside), at most 253 in all, only visible ASCII and spaces (which macros such
/// as `%_` put there; DNS labels may hold any octet, RFC 2181 §11).
pub fn valid_domain(name: &str) -> bool {
    let n = name.strip_suffix('.').unwrap_or(name);
    n.len() <= 253
        && n.contains('.')
        && n.split('.').all(|l| !l.is_empty() && l.len() <= 63)
        && n.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

/// Drops labels from the left until the name is at most 253 characters (§7.3).
fn truncate(name: &str) -> String {
    let mut n = name;
    while n.trim_end_matches('.').len() > 253 {
        match n.split_once('.') {
            Some((_, rest)) => n = rest,
            None => break,
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::{SpfResult, check};
    use super::*;

    /// A zone in memory: (type, name) → records; a name listed as failing answers SERVFAIL.
    #[derive(Default)]
    struct Zone {
        records: HashMap<(&'static str, String), Vec<String>>,
        failing: Vec<String>,
    }

    impl Zone {
        fn add(mut self, kind: &'static str, name: &str, value: &str) -> Self {
            self.records
                .entry((kind, name.to_ascii_lowercase()))
                .or_default()
                .push(value.to_string());
            self
        }

        fn get(&self, kind: &'static str, name: &str) -> Answer<String> {
            let n = name.trim_end_matches('.').to_ascii_lowercase();
            if self.failing.contains(&n) {
                return Answer::Failed;
            }
            match self.records.get(&(kind, n)) {
                Some(r) => Answer::Records(r.clone()),
                None => Answer::Void,
            }
        }
    }

    impl Lookup for Zone {
        fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Answer<String>> {
            Box::pin(async move { self.get("TXT", name) })
        }
        fn a<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Answer<Ipv4Addr>> {
            Box::pin(async move { self.get("A", name).map(|s| s.parse().unwrap()) })
        }
        fn aaaa<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Answer<Ipv6Addr>> {
            Box::pin(async move { self.get("AAAA", name).map(|s| s.parse().unwrap()) })
        }
        fn mx<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Answer<String>> {
            Box::pin(async move { self.get("MX", name) })
        }
        fn ptr<'a>(&'a self, ip: IpAddr) -> BoxFuture<'a, Answer<String>> {
            Box::pin(async move { self.get("PTR", &super::super::lookup::reverse_name(ip)) })
        }
    }

    async fn result(zone: &Zone, ip: &str, from: &str) -> SpfResult {
        check(
            zone,
            ip.parse().unwrap(),
            from,
            "mail.example.net",
            "mx.test",
        )
        .await
        .result
    }

    #[tokio::test]
    async fn mechanisms_qualifiers_and_redirect() {
        let z = Zone::default()
            .add(
                "TXT",
                "example.org",
                "v=spf1 ip4:192.0.2.0/24 a:mail.example.org mx ~all",
            )
            .add("A", "mail.example.org", "198.51.100.7")
            .add("MX", "example.org", "mx1.example.org")
            .add("A", "mx1.example.org", "203.0.113.9")
            .add("TXT", "redir.example", "v=spf1 redirect=example.org")
            .add("TXT", "inc.example", "v=spf1 include:example.org -all");
        for (ip, want) in [
            ("192.0.2.77", SpfResult::Pass),
            ("198.51.100.7", SpfResult::Pass),
            ("203.0.113.9", SpfResult::Pass),
            ("::ffff:192.0.2.1", SpfResult::Pass),
            ("233.252.0.1", SpfResult::SoftFail),
        ] {
            assert_eq!(result(&z, ip, "a@example.org").await, want, "{ip}");
        }
        assert_eq!(
            result(&z, "192.0.2.1", "a@redir.example").await,
            SpfResult::Pass
        );
        // An include's softfail is no match: the including record's -all decides.
        assert_eq!(
            result(&z, "233.252.0.1", "a@inc.example").await,
            SpfResult::Fail
        );
        assert_eq!(
            result(&z, "192.0.2.1", "a@none.example").await,
            SpfResult::None
        );
        assert_eq!(
            result(&z, "192.0.2.1", "a@localhost").await,
            SpfResult::None
        );
    }

    #[tokio::test]
    async fn limits_errors_and_selection() {
        let mut z = Zone::default()
            .add("TXT", "many.example", "v=spf1 a:a1.example a:a2.example a:a3.example a:a4.example a:a5.example a:a6.example a:a7.example a:a8.example a:a9.example a:a10.example a:a11.example -all")
            .add("TXT", "void.example", "v=spf1 a:n1.example a:n2.example a:n3.example ~all")
            .add("TXT", "two.example", "v=spf1 -all")
            .add("TXT", "two.example", "v=spf1 +all")
            .add("TXT", "syntax.example", "v=spf1 ip4:192.0.2.0/33 +all")
            .add("TXT", "broken-include.example", "v=spf1 include:nothing.example +all")
            .add("TXT", "temp.example", "v=spf1 a:down.example -all");
        for i in 1..=11 {
            z = z.add("A", &format!("a{i}.example"), "198.51.100.1");
        }
        z.failing.push("down.example".into());
        let ip = "192.0.2.1";
        assert_eq!(
            result(&z, ip, "x@many.example").await,
            SpfResult::PermError,
            "11 DNS terms"
        );
        assert_eq!(
            result(&z, ip, "x@void.example").await,
            SpfResult::PermError,
            "3 void lookups"
        );
        assert_eq!(
            result(&z, ip, "x@two.example").await,
            SpfResult::PermError,
            "two records"
        );
        assert_eq!(
            result(&z, ip, "x@syntax.example").await,
            SpfResult::PermError
        );
        assert_eq!(
            result(&z, ip, "x@broken-include.example").await,
            SpfResult::PermError
        );
        assert_eq!(result(&z, ip, "x@temp.example").await, SpfResult::TempError);
    }

    #[tokio::test]
    async fn ptr_exists_macros_and_the_explanation() {
        let z = Zone::default()
            .add("TXT", "p.example", "v=spf1 ptr -all")
            .add("PTR", "1.2.0.192.in-addr.arpa", "host.p.example")
            .add("A", "host.p.example", "192.0.2.1")
            .add("PTR", "2.2.0.192.in-addr.arpa", "liar.p.example")
            .add(
                "TXT",
                "e.example",
                "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all exp=why.%{d}",
            )
            .add("A", "1.2.0.192.taro._spf.e.example", "127.0.0.2")
            .add(
                "TXT",
                "why.e.example",
                "%{i} is not allowed to send for %{d} (%{l})",
            );
        assert_eq!(
            result(&z, "192.0.2.1", "a@p.example").await,
            SpfResult::Pass
        );
        // A PTR name that does not resolve back is not the client's.
        assert_eq!(
            result(&z, "192.0.2.2", "a@p.example").await,
            SpfResult::Fail
        );
        assert_eq!(
            result(&z, "192.0.2.1", "taro@e.example").await,
            SpfResult::Pass
        );
        let o = check(
            &z,
            "192.0.2.9".parse().unwrap(),
            "jiro@e.example",
            "h.example",
            "mx.test",
        )
        .await;
        assert_eq!(o.result, SpfResult::Fail);
        assert_eq!(
            o.explanation.as_deref(),
            Some("192.0.2.9 is not allowed to send for e.example (jiro)")
        );
    }
}
