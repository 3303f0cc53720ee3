//! Phishing and BEC: lookalike and homoglyph domains of the tenant's own domains and of
//! protected brands, Reply-To diverting replies elsewhere, links whose text shows another
//! domain than they lead to, and links to domains on a known-bad feed (hot-reloaded).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use mail_parser::Address;

use crate::evidence::{Evidence, Symbol};
use crate::links::normalize;
use crate::stages::dnsbl::registrable;
use crate::view::MessageView;
use crate::{Envelope, SyncStage};

/// How often the feed file's modification time is checked.
pub const FEED_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// A set of known-bad domains.
#[derive(Debug, Default)]
pub struct BadDomains {
    set: HashSet<String>,
}

impl BadDomains {
    /// Parses a feed: eth-phishing-detect style JSON (`{"blacklist": [...]}`) or plain text
    /// with one domain per line (`#` comments).
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim_start();
        let domains: Vec<String> = if trimmed.starts_with('{') {
            let v: serde_json::Value =
                serde_json::from_str(text).map_err(|e| format!("feed JSON: {e}"))?;
            v.get("blacklist")
                .and_then(|b| b.as_array())
                .ok_or("feed JSON has no \"blacklist\" array")?
                .iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        } else {
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        };
        Ok(Self {
            set: domains.into_iter().map(|d| normalize(&d)).collect(),
        })
    }

    /// Number of domains.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// The listed domain that `domain` is or is below, if any.
    pub fn matches(&self, domain: &str) -> Option<&str> {
        let mut d = domain;
        loop {
            if let Some(hit) = self.set.get(d) {
                return Some(hit);
            }
            match d.split_once('.') {
                Some((_, rest)) if rest.contains('.') => d = rest,
                _ => return None,
            }
        }
    }
}

struct Feed {
    path: Option<PathBuf>,
    domains: RwLock<BadDomains>,
    checked: Mutex<(Instant, Option<SystemTime>)>,
}

/// The phishing stage.
pub struct Phishing {
    feed: Feed,
    brands: Vec<String>,
    /// Whether the [`super::brands::COMMON`] brands are protected too.
    common: bool,
}

/// The domain of an address.
fn domain_of(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, d)| normalize(d))
        .filter(|d| !d.is_empty())
}

/// Optimal string alignment distance (Damerau–Levenshtein with adjacent transpositions).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

pub(crate) fn skeleton(s: &str) -> String {
    unicode_security::skeleton(s).collect()
}

/// How a domain imitates a protected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imitation {
    /// It looks identical (confusable characters).
    Confusable,
    /// It is an edit or two away.
    Typo,
    /// It contains the protected name as written (`paypal-secure.example`): also the shape of
    /// many a real partner or subsidiary, so it needs a link lure to compose.
    Combo,
    /// It contains the name misspelt or in look-alikes (`paypa1-account-verify.example`).
    DisguisedCombo,
}

/// Why `candidate` imitates `protected`, if it does. Equal domains and subdomains of the
/// protected domain are the real thing, not imitations.
pub fn lookalike(candidate: &str, protected: &str) -> Option<String> {
    imitation(candidate, protected).map(|(_, why)| why)
}

/// How and why `candidate` imitates `protected`, if it does.
pub fn imitation(candidate: &str, protected: &str) -> Option<(Imitation, String)> {
    if candidate == protected || candidate.ends_with(&format!(".{protected}")) {
        return None;
    }
    if skeleton(candidate) == skeleton(protected) {
        return Some((
            Imitation::Confusable,
            format!("{candidate} looks identical to {protected} (confusable characters)"),
        ));
    }
    let max = if protected.len() >= 8 { 2 } else { 1 };
    let near = candidate
        .chars()
        .count()
        .abs_diff(protected.chars().count())
        <= max;
    let distance = if near {
        edit_distance(candidate, protected)
    } else {
        usize::MAX
    };
    if distance <= max {
        return Some((
            Imitation::Typo,
            format!("{candidate} is {distance} edit(s) from {protected}"),
        ));
    }
    // Combosquatting: the brand's name inside another domain ("paypal-secure.example"),
    // also when that name is itself misspelt or written with look-alikes
    // ("paypa1-account-verify.example": a homoglyph inside a combosquat).
    let brand = protected.split('.').next().unwrap_or("");
    let first = candidate.split('.').next().unwrap_or("");
    if brand.chars().count() < 5 || first == brand {
        return None;
    }
    if first.contains(brand) {
        return Some((
            Imitation::Combo,
            format!("{candidate} contains the name {brand} of {protected}"),
        ));
    }
    let folded_brand = fold(brand);
    let imitated = fold(first).contains(&folded_brand)
        || first.split(['-', '_']).any(|part| {
            brand.len() >= 6
                && part != brand
                && part.chars().count().abs_diff(brand.chars().count()) <= 1
                && edit_distance(part, brand) <= 1
        });
    imitated.then(|| {
        (
            Imitation::DisguisedCombo,
            format!("{candidate} contains an imitation of the name {brand} of {protected}"),
        )
    })
}

/// A name as it reads: confusable characters by their skeleton, and the digits that stand
/// for letters in domain names (`0` o, `1` l, `3` e, `5` s) as those letters.
pub(crate) fn fold(name: &str) -> String {
    skeleton(name)
        .chars()
        .map(|c| match c {
            '0' => 'o',
            '1' => 'l',
            '3' => 'e',
            '5' => 's',
            c => c,
        })
        .collect()
}

impl Phishing {
    /// A stage protecting `brands` (plus each message's tenant domains), with an optional
    /// feed file of known-bad domains.
    pub fn new(feed: Option<PathBuf>, brands: Vec<String>) -> Result<Self, String> {
        let stage = Self {
            feed: Feed {
                path: feed,
                domains: RwLock::new(BadDomains::default()),
                checked: Mutex::new((Instant::now(), None)),
            },
            brands: brands.iter().map(|b| normalize(b)).collect(),
            common: false,
        };
        stage.reload(true)?;
        Ok(stage)
    }

    /// Also protects the commonly imitated brands ([`super::brands::COMMON`]) against
    /// deceptive spellings that come with a lure.
    pub fn with_common_brands(mut self, on: bool) -> Self {
        self.common = on;
        self
    }

    /// Reloads the feed if its file changed (or `force`).
    fn reload(&self, force: bool) -> Result<(), String> {
        let Some(path) = &self.feed.path else {
            return Ok(());
        };
        let mut checked = self.feed.checked.lock().expect("feed lock poisoned");
        if !force && checked.0.elapsed() < FEED_CHECK_INTERVAL {
            return Ok(());
        }
        checked.0 = Instant::now();
        let modified = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if !force && checked.1 == Some(modified) {
            return Ok(());
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let domains = BadDomains::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        *self.feed.domains.write().expect("feed lock poisoned") = domains;
        checked.1 = Some(modified);
        Ok(())
    }

    /// Domains on the feed now.
    pub fn feed_len(&self) -> usize {
        self.feed.domains.read().expect("feed lock poisoned").len()
    }

    /// The evidence for one message.
    pub fn check(&self, msg: &MessageView<'_>, env: &Envelope) -> Vec<Evidence> {
        if let Err(e) = self.reload(false) {
            // A broken feed file must not stop mail: keep the last good list.
            tracing::warn!(error = %e, "phishing feed not reloaded");
        }
        let mut out = Vec::new();
        let Some(m) = &msg.parsed else { return out };
        let first_address = |a: Option<&Address<'_>>| {
            a.and_then(|a| a.first())
                .and_then(|a| a.address.as_deref())
                .map(str::to_string)
        };
        let from = first_address(m.from()).and_then(|a| domain_of(&a));
        let reply_to = first_address(m.reply_to()).and_then(|a| domain_of(&a));

        let mut protected: Vec<String> =
            env.protected_domains.iter().map(|d| normalize(d)).collect();
        protected.extend(self.brands.iter().cloned());
        let mut identities: Vec<(&str, String)> = Vec::new();
        if let Some(d) = &from {
            identities.push(("From", d.clone()));
        }
        if let Some(d) = &reply_to {
            identities.push(("Reply-To", d.clone()));
        }
        if let Some(d) = domain_of(&env.mail_from) {
            identities.push(("MAIL FROM", d));
        }
        let configured = identities.iter().find_map(|(who, d)| {
            protected
                .iter()
                .find_map(|p| imitation(d, p).map(|(kind, why)| (p.clone(), kind, why)))
                .map(|(p, kind, why)| (*who, p, kind, why))
        });
        // A common brand counts only with a lure (decided below, with the links).
        let common = configured.is_none() && self.common;
        let imitated = configured.or_else(|| {
            common
                .then(|| {
                    identities.iter().find_map(|(who, d)| {
                        super::brands::imitated(d)
                            .map(|(b, kind, why)| (*who, b.domain.to_string(), kind, why))
                    })
                })
                .flatten()
        });
        if !common && let Some((who, _, _, why)) = &imitated {
            out.push(Evidence::new(
                Symbol::LookalikeDomain,
                format!("{who}: {why}"),
            ));
        }
        if let Some(rules) = &env.rules
            && let Some(author) = m.from().and_then(|a| a.first())
            && let Some(display) = author.name.as_deref()
        {
            let address = author.address.as_deref().unwrap_or("").to_ascii_lowercase();
            let own_domain = from
                .as_ref()
                .is_some_and(|d| env.protected_domains.iter().any(|p| normalize(p) == *d));
            if let Some(p) = rules.protected_names.iter().find(|p| {
                crate::tenant::same_name(display, &p.name)
                    && if p.addresses.is_empty() {
                        !own_domain
                    } else {
                        !p.addresses.iter().any(|a| a.eq_ignore_ascii_case(&address))
                    }
            }) {
                out.push(Evidence::new(
                    Symbol::Impersonation,
                    format!(
                        "display name is {:?}, a protected name, but the address is {}",
                        p.name,
                        from.as_deref()
                            .map_or("unknown".to_string(), |d| format!("at {d}"))
                    ),
                ));
            }
        }
        if let (Some(f), Some(r)) = (&from, &reply_to)
            && f != r
            && !r.ends_with(&format!(".{f}"))
            && !f.ends_with(&format!(".{r}"))
        {
            out.push(Evidence::new(
                Symbol::ReplyToMismatch,
                format!("From {f}, Reply-To {r}"),
            ));
        }

        let links = &msg.links().domains;
        let home = from
            .as_deref()
            .filter(|_| crate::stages::bulk::offers_unsubscribe(msg));
        let mismatch = misleading(msg.links(), home, &protected);
        if let Some(m) = mismatch {
            out.push(Evidence::new(Symbol::LinkTextMismatch, m.to_string()));
        }
        let feed = self.feed.domains.read().expect("feed lock poisoned");
        let listed = links
            .iter()
            .chain(from.iter())
            .chain(reply_to.iter())
            .find_map(|d| feed.matches(d).map(|hit| (d.clone(), hit.to_string())));
        if let Some((d, hit)) = listed {
            out.push(Evidence::new(
                Symbol::PhishFeedDomain,
                format!("{d} is on the phishing feed ({hit})"),
            ));
        }
        let lookalike_link = links.iter().find_map(|d| {
            protected
                .iter()
                .find_map(|p| lookalike(d, p))
                .or_else(|| {
                    self.common
                        .then(|| super::brands::imitated(d).map(|(_, _, why)| why))
                        .flatten()
                })
                .map(|w| (d, w))
        });
        if let Some((d, why)) = &lookalike_link {
            out.push(Evidence::new(
                Symbol::LookalikeLink,
                format!("link to {d}: {why}"),
            ));
        }
        if let Some((who, brand, kind, why)) = &imitated {
            let display = m
                .from()
                .and_then(|a| a.first())
                .and_then(|a| a.name.as_deref())
                .unwrap_or("");
            // A display name that names the brand lures only from a disguised domain: a
            // partner's "Acme Supplies <sales@acme-supplies.example>" is a plain combination.
            let lure = if *kind != Imitation::Combo && names_brand(display, brand) {
                Some(format!("the display name {display:?} names {brand}"))
            } else if mismatch.is_some() {
                Some("a link's text shows another domain than it leads to".to_string())
            } else {
                lookalike_link
                    .as_ref()
                    .map(|(d, _)| format!("a link leads to {d}"))
            };
            if let Some(lure) = lure {
                if common {
                    out.push(Evidence::new(
                        Symbol::LookalikeDomain,
                        format!("{who}: {why}"),
                    ));
                }
                out.push(Evidence::new(
                    Symbol::LookalikeLure,
                    format!("{who} imitates {brand}, and {lure}"),
                ));
            }
        }
        out
    }
}

/// Whether a display name names the brand of `domain` (its first label, compared as it
/// reads: "PayPal", "PAYPAL Service", "Pаypal" with a Cyrillic а).
fn names_brand(display: &str, domain: &str) -> bool {
    let brand = fold(domain.split('.').next().unwrap_or(""));
    let shown: String = fold(&display.to_lowercase())
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect();
    brand.chars().count() >= 3 && shown.contains(&brand)
}

impl SyncStage for Phishing {
    fn inbound_only(&self) -> bool {
        true
    }

    fn stage_name(&self) -> &'static str {
        "phish"
    }

    fn evidence(&self, msg: &MessageView<'_>, env: &Envelope) -> Vec<Evidence> {
        self.check(msg, env)
    }
}

/// The first anchor that misleads: its text shows another domain than it leads to. In a
/// newsletter (`home` is its author's domain, given only when the message offers a way to
/// unsubscribe) a link to that registrable domain is the sender counting clicks — a tracker
/// showing where it forwards to — and misleads only when its text names a protected domain or
/// brand: a phisher's own domain passing itself off as the bank.
fn misleading<'a>(
    links: &'a crate::links::Links,
    home: Option<&str>,
    protected: &[String],
) -> Option<&'a crate::links::Mismatch> {
    let home = home.and_then(registrable);
    links.mismatches.iter().find(|m| {
        let own = home.is_some() && registrable(&m.target) == home;
        let shown = registrable(&m.shown);
        !own || protected
            .iter()
            .any(|p| shown.is_some() && registrable(p) == shown)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::ViewLimits;

    fn env(protected: &[&str]) -> Envelope {
        Envelope {
            client_ip: "192.0.2.1".parse().unwrap(),
            helo: "mail.sender.example".into(),
            mail_from: "bounce@sender.example".into(),
            rcpts: vec!["cfo@acme.example".into()],
            protected_domains: protected.iter().map(|s| s.to_string()).collect(),
            tenant: None,
            ..Default::default()
        }
    }

    fn stage(feed: Option<PathBuf>) -> Phishing {
        Phishing::new(feed, vec!["paypal.com".into()]).unwrap()
    }

    fn symbols(stage: &Phishing, raw: &str, protected: &[&str]) -> Vec<Symbol> {
        let (view, _) = MessageView::parse(raw.as_bytes(), &ViewLimits::default());
        let mut s: Vec<_> = stage
            .check(&view, &env(protected))
            .into_iter()
            .map(|e| e.symbol)
            .collect();
        s.sort();
        s
    }

    fn msg(from: &str, extra: &str, body: &str) -> String {
        format!("From: {from}\r\n{extra}Subject: s\r\nContent-Type: text/html\r\n\r\n{body}\r\n")
    }

    #[test]
    fn distances_and_lookalikes() {
        assert_eq!(edit_distance("acme.example", "acme.example"), 0);
        assert_eq!(edit_distance("acme.example", "acrne.example"), 2);
        assert_eq!(edit_distance("paypal.com", "paypa1.com"), 1);
        assert_eq!(
            edit_distance("abcd", "abdc"),
            1,
            "transposition counts once"
        );
        assert!(lookalike("paypa1.com", "paypal.com").is_some());
        // Punycode is decoded before comparing.
        let idn = idna::domain_to_ascii("pаypal.com").unwrap();
        assert!(idn.starts_with("xn--"));
        assert!(lookalike(&normalize(&idn), "paypal.com").is_some());
        assert!(
            lookalike("pаypal.com", "paypal.com")
                .unwrap()
                .contains("confusable")
        ); // Cyrillic а
        assert!(
            lookalike("paypal-secure-login.example", "paypal.com")
                .unwrap()
                .contains("contains the name")
        );
        assert!(
            lookalike("mail.paypal.com", "paypal.com").is_none(),
            "subdomain is the real thing"
        );
        assert!(lookalike("paypal.com", "paypal.com").is_none());
        assert!(lookalike("example.org", "paypal.com").is_none());
        // A homoglyph inside a combosquat, and a misspelt name inside one.
        for imitation in [
            "paypa1-account-verify.com",
            "secure-paypai.example",
            "paypol-login.example",
        ] {
            assert!(
                lookalike(imitation, "paypal.com").is_some_and(|w| w.contains("imitation")),
                "{imitation}"
            );
        }
        // Ordinary words near a short brand name, and unrelated names, are not imitations.
        assert!(lookalike("apply-now.example", "apple.com").is_none());
        assert!(lookalike("applied.example", "apple.com").is_none());
        assert!(lookalike("payroll-service.example", "paypal.com").is_none());
        assert!(lookalike("paypool-games.example", "paypal.com").is_none());
    }

    #[test]
    fn a_lookalike_sender_with_a_lure_composes() {
        let s = stage(None);
        let sorted = |mut v: Vec<Symbol>| {
            v.sort();
            v
        };
        // The new user's PayPal phish: display name "PayPal", link text showing paypal.com.
        let phish = msg(
            "PayPal <service@paypa1-account-verify.com>",
            "",
            r#"<a href="https://login.attacker.example/">https://www.paypal.com/signin</a>"#,
        );
        assert_eq!(
            symbols(&s, &phish, &[]),
            sorted(vec![
                Symbol::LookalikeDomain,
                Symbol::LinkTextMismatch,
                Symbol::LookalikeLure
            ])
        );
        let named = msg(
            "Pay Pal Service <service@paypa1-account-verify.com>",
            "",
            "<p>hi</p>",
        );
        assert_eq!(
            symbols(&s, &named, &[]),
            vec![Symbol::LookalikeDomain, Symbol::LookalikeLure]
        );
        // A plain combination with the brand's name (a partner's shape) is not lured by a
        // display name that names the brand, only by a deceptive link.
        let partner = msg(
            "PayPal Partners <news@paypal-partners.example>",
            "",
            "<p>hi</p>",
        );
        assert_eq!(symbols(&s, &partner, &[]), vec![Symbol::LookalikeDomain]);
        let deceptive = msg(
            "PayPal Partners <news@paypal-partners.example>",
            "",
            r#"<a href="https://x.attacker.example/">https://www.paypal.com/</a>"#,
        );
        assert!(symbols(&s, &deceptive, &[]).contains(&Symbol::LookalikeLure));
        // A lookalike without a lure, and a lure without a lookalike, do not compose.
        let bare = msg(
            "Billing <service@paypa1-account-verify.com>",
            "",
            "<p>hi</p>",
        );
        assert_eq!(symbols(&s, &bare, &[]), vec![Symbol::LookalikeDomain]);
        let real = msg("PayPal <service@paypal.com>", "", "<p>hi</p>");
        assert_eq!(symbols(&s, &real, &[]), vec![]);
        // The lure counts in the default policy: held even when SPF, DKIM and DMARC pass.
        let policy = crate::Policy::default();
        let mut evidence: Vec<Evidence> = symbols(&s, &phish, &[])
            .into_iter()
            .map(|s| Evidence::new(s, ""))
            .collect();
        for pass in [Symbol::SpfPass, Symbol::DkimPass, Symbol::DmarcPass] {
            evidence.push(Evidence::new(pass, ""));
        }
        let verdict = policy.decide(evidence);
        assert!(
            matches!(
                verdict.action,
                crate::Action::Quarantine | crate::Action::Reject
            ),
            "{:?} at {}",
            verdict.action,
            verdict.score
        );
    }

    #[test]
    fn lookalike_sender_fires_only_for_imitations() {
        let s = stage(None);
        let real = msg("ceo@acme.example", "", "<p>hi</p>");
        assert_eq!(symbols(&s, &real, &["acme.example"]), vec![]);
        let fake = msg("ceo@acrne.example", "", "<p>hi</p>");
        assert_eq!(
            symbols(&s, &fake, &["acme.example"]),
            vec![Symbol::LookalikeDomain]
        );
        // Not protected for this tenant: no evidence.
        assert_eq!(symbols(&s, &fake, &["other.example"]), vec![]);
        let brand = msg("service@paypa1.com", "", "<p>hi</p>");
        assert_eq!(symbols(&s, &brand, &[]), vec![Symbol::LookalikeDomain]);
    }

    #[test]
    fn display_name_impersonation_of_protected_people() {
        let s = stage(None);
        let rules = std::sync::Arc::new(crate::TenantRules {
            protected_names: vec![
                crate::ProtectedName {
                    name: "Taro Yamada".into(),
                    addresses: vec!["taro.yamada@acme.example".into()],
                },
                crate::ProtectedName {
                    name: "山田 花子".into(),
                    addresses: vec![],
                },
            ],
            ..Default::default()
        });
        let check = |from: &str| {
            let raw = msg(from, "", "x");
            let (view, _) = MessageView::parse(raw.as_bytes(), &ViewLimits::default());
            let e = Envelope {
                rules: Some(rules.clone()),
                ..env(&["acme.example"])
            };
            s.check(&view, &e)
                .into_iter()
                .map(|e| e.symbol)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            check("\"Taro Yamada\" <ceo.office@freemail.example>"),
            vec![Symbol::Impersonation]
        );
        assert_eq!(
            check("\"YAMADA Taro\" <taro.yamada@acme.example>"),
            vec![],
            "his real address"
        );
        assert_eq!(
            check("=?UTF-8?B?5bGx55SwIOiKseWtkA==?= <hanako@freemail.example>"),
            vec![Symbol::Impersonation],
            "山田 花子 from outside"
        );
        assert_eq!(
            check("=?UTF-8?B?5bGx55SwIOiKseWtkA==?= <hanako@acme.example>"),
            vec![],
            "no addresses listed: any address at the tenant's domains is hers"
        );
        assert_eq!(check("\"Jiro Suzuki\" <j@freemail.example>"), vec![]);
        // Without the tenant's rules nothing is protected.
        assert_eq!(
            symbols(
                &s,
                &msg("\"Taro Yamada\" <x@freemail.example>", "", "x"),
                &[]
            ),
            vec![]
        );
    }

    #[test]
    fn reply_to_elsewhere_fires_and_same_org_does_not() {
        let s = stage(None);
        let diverted = msg(
            "ceo@acme.example",
            "Reply-To: ceo@freemail.example\r\n",
            "x",
        );
        assert_eq!(symbols(&s, &diverted, &[]), vec![Symbol::ReplyToMismatch]);
        let same = msg(
            "ceo@acme.example",
            "Reply-To: team@lists.acme.example\r\n",
            "x",
        );
        assert_eq!(symbols(&s, &same, &[]), vec![]);
    }

    #[test]
    fn link_text_showing_another_domain_fires() {
        let s = stage(None);
        let bad = msg(
            "a@bank.example",
            "",
            r#"<a href="https://login.evil.example/x">https://www.bank.example/login</a>"#,
        );
        assert_eq!(symbols(&s, &bad, &[]), vec![Symbol::LinkTextMismatch]);
        let bare = msg(
            "a@bank.example",
            "",
            r#"<a href='http://evil.example'><b>www.bank.example</b></a>"#,
        );
        assert_eq!(symbols(&s, &bare, &[]), vec![Symbol::LinkTextMismatch]);
        let honest = msg(
            "a@bank.example",
            "",
            r#"<a href="https://www.bank.example/login">www.bank.example</a> <a href="https://bank.example/">Click here</a>"#,
        );
        assert_eq!(symbols(&s, &honest, &[]), vec![]);
    }

    #[test]
    fn common_brands_are_protected_out_of_the_box_against_deceptive_lures_only() {
        let s = Phishing::new(None, Vec::new())
            .unwrap()
            .with_common_brands(true);
        let sorted = |mut v: Vec<Symbol>| {
            v.sort();
            v
        };
        // The new user's PayPal phish, with nothing configured.
        let phish = msg(
            "PayPal <service@paypa1-account-verify.com>",
            "",
            r#"<a href="https://paypa1-account-verify.com/login">https://www.paypal.com/signin</a>"#,
        );
        assert_eq!(
            symbols(&s, &phish, &[]),
            sorted(vec![
                Symbol::LookalikeDomain,
                Symbol::LinkTextMismatch,
                Symbol::LookalikeLure,
                Symbol::LookalikeLink
            ])
        );
        // The same deceptive domain without a lure: nothing from the common list.
        let quiet = msg("Orders <orders@paypa1-account-verify.com>", "", "<p>hi</p>");
        assert_eq!(symbols(&s, &quiet, &[]), vec![]);
        // The brand's own services and plain combinations are never judged by it.
        let ses = msg(
            "Amazon Web Services <no-reply@amazonses.com>",
            "",
            r#"<a href="https://r.amazonses.com/c">Your invoice</a>"#,
        );
        assert_eq!(symbols(&s, &ses, &[]), vec![]);
        // Switched off, the phish keeps only its misleading link.
        let off = Phishing::new(None, Vec::new()).unwrap();
        assert_eq!(symbols(&off, &phish, &[]), vec![Symbol::LinkTextMismatch]);
    }

    #[test]
    fn a_click_tracker_at_the_senders_own_domain_is_not_a_lure() {
        let s = stage(None);
        // A newsletter counting clicks at home: text shows the site, href is the sender's.
        let tracked = msg(
            "Daily Comic <2.2029-x@mail4.comicsmedia.example>",
            "",
            r#"<a href="http://mail4.comicsmedia.example:80/Click?q=84-CC">Comic.example</a>
            <a href="http://mail4.comicsmedia.example/u">Unsubscribe</a>"#,
        );
        assert_eq!(symbols(&s, &tracked, &[]), vec![]);
        // Without a way out it is no newsletter: the same anchor counts.
        let no_way_out = msg(
            "Account team <no-reply@account-notices.example>",
            "",
            r#"<a href="https://account-notices.example/login">https://www.bank.example/</a>"#,
        );
        assert_eq!(
            symbols(&s, &no_way_out, &[]),
            vec![Symbol::LinkTextMismatch]
        );
        // The same shape naming a protected brand is a phisher's own domain posing as it.
        let posing = msg(
            "Alerts <alerts@secure-notices.example>",
            "",
            r#"<a href="https://login.secure-notices.example/">www.paypal.com</a>
            <a href="https://secure-notices.example/u">unsubscribe</a>"#,
        );
        assert_eq!(symbols(&s, &posing, &[]), vec![Symbol::LinkTextMismatch]);
        // A later misleading anchor is still found after an own-domain tracker.
        let later = msg(
            "News <news@shop.example>",
            "",
            r#"<a href="http://t.shop.example/c?1">shop-deals.example</a> <a href="http://evil.example/">www.bank.example</a>
            <a href="http://t.shop.example/u">Unsubscribe</a>"#,
        );
        let found = symbols(&s, &later, &[]);
        assert_eq!(found, vec![Symbol::LinkTextMismatch]);
    }

    #[test]
    fn feed_domains_fire_and_the_feed_reloads() {
        let dir = std::env::temp_dir().join(format!("sekisho-feed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("feed.txt");
        std::fs::write(&path, "# test feed\nbad.example\n").unwrap();
        let s = stage(Some(path.clone()));
        assert_eq!(s.feed_len(), 1);
        let m = msg(
            "a@sender.example",
            "",
            r#"<a href="https://wallet.bad.example/claim">claim</a>"#,
        );
        assert_eq!(symbols(&s, &m, &[]), vec![Symbol::PhishFeedDomain]);
        let clean = msg(
            "a@sender.example",
            "",
            r#"<a href="https://good.example/">x</a>"#,
        );
        assert_eq!(symbols(&s, &clean, &[]), vec![]);
        // A changed feed is picked up (forced here instead of waiting for the interval).
        std::fs::write(&path, "good.example\n").unwrap();
        s.reload(true).unwrap();
        assert_eq!(symbols(&s, &clean, &[]), vec![Symbol::PhishFeedDomain]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_shared_eth_phishing_feed_loads() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/corpora/phishing/eth-phishing-detect/config.json");
        let s = stage(Some(path));
        assert!(s.feed_len() > 1000, "only {} domains", s.feed_len());
    }
}
