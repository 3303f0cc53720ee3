//! A tenant's own rules: policy overrides, the people whose names outsiders must not use, the
//! forwarders whose ARC seals it trusts, and the senders it (or one recipient) allows or blocks.

use crate::evidence::{Evidence, Symbol};
use crate::policy::Policy;

/// A person of the tenant whose display name is protected against impersonation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedName {
    /// The name as people write it (`Taro Yamada`, `山田 太郎`).
    pub name: String,
    /// Addresses the person really sends from; empty means any address at the tenant's
    /// domains.
    pub addresses: Vec<String>,
}

/// A tenant's rules, resolved for inspection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantRules {
    /// The tenant's policy (global defaults with its overrides), if it has overrides.
    pub policy: Option<Policy>,
    /// Protected names.
    pub protected_names: Vec<ProtectedName>,
    /// Domains whose ARC seal (RFC 8617) the tenant trusts: a mailing list or forwarder that
    /// breaks SPF/DKIM by forwarding, but vouches for the original authentication.
    pub trusted_arc: Vec<String>,
    /// Allowed and blocked senders.
    pub senders: SenderLists,
}

/// One allowed or blocked sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderRule {
    /// The recipient it applies to (lower case); empty for every recipient of the tenant.
    pub rcpt: String,
    /// An address (`a@example.com`) or a domain (`example.com`: also its subdomains).
    pub pattern: String,
    /// Allow (true) or block.
    pub allow: bool,
}

/// A tenant's allowed and blocked senders.
///
/// A message has one verdict, so a list decides only when it decides the same for every
/// recipient: for each recipient, its own matching entries count (block before allow), else
/// the tenant's; the message is allowed (or blocked) only if every recipient's answer is
/// allow (or block). An entry matches the header From address or the envelope sender.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderLists {
    rules: Vec<SenderRule>,
}

fn pattern_matches(pattern: &str, address: &str) -> bool {
    if pattern.contains('@') {
        return pattern == address;
    }
    let domain = address.rsplit_once('@').map_or(address, |(_, d)| d);
    domain == pattern
        || domain
            .strip_suffix(pattern)
            .is_some_and(|rest| rest.ends_with('.'))
}

impl SenderLists {
    /// The lists of these rules (patterns and recipients lower case).
    pub fn new(rules: Vec<SenderRule>) -> Self {
        Self { rules }
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// One recipient's answer: `Some(allow?, pattern)`.
    fn for_rcpt(&self, rcpt: &str, senders: &[&str]) -> Option<(bool, &str)> {
        let matching = |own: bool| {
            let mut hit: Option<(bool, &str)> = None;
            for r in &self.rules {
                if (r.rcpt.is_empty() != own)
                    && (!own || r.rcpt == rcpt)
                    && senders.iter().any(|s| pattern_matches(&r.pattern, s))
                    && hit.is_none_or(|(allow, _)| allow)
                {
                    hit = Some((r.allow, r.pattern.as_str()));
                }
            }
            hit
        };
        matching(true).or_else(|| matching(false))
    }

    /// The lists' evidence for a message from `senders` (header From and envelope sender,
    /// lower case) to `rcpts`, given what inspection found: an allow applies only to an
    /// authenticated message (DMARC pass, or an SPF or DKIM pass that DMARC does not
    /// contradict), so a forged From of an allowed sender gains nothing.
    pub fn evidence(
        &self,
        senders: &[&str],
        rcpts: &[String],
        found: &[Evidence],
    ) -> Option<Evidence> {
        if self.rules.is_empty() || rcpts.is_empty() {
            return None;
        }
        let senders: Vec<&str> = senders.iter().copied().filter(|s| !s.is_empty()).collect();
        let mut answer: Option<(bool, &str)> = None;
        for rcpt in rcpts {
            let a = self.for_rcpt(&rcpt.to_lowercase(), &senders)?;
            match answer {
                Some((allow, _)) if allow != a.0 => return None,
                _ => answer = Some(a),
            }
        }
        let (allow, pattern) = answer?;
        if !allow {
            return Some(Evidence::new(Symbol::SenderBlocked, pattern));
        }
        let has = |s: Symbol| found.iter().any(|e| e.symbol == s);
        let dmarc_failed = has(Symbol::DmarcReject)
            || has(Symbol::DmarcQuarantine)
            || has(Symbol::DmarcPolicyNone);
        let authenticated = has(Symbol::DmarcPass)
            || has(Symbol::ArcTrusted)
            || (!dmarc_failed && (has(Symbol::SpfPass) || has(Symbol::DkimPass)));
        Some(if authenticated {
            Evidence::new(Symbol::SenderAllowed, pattern)
        } else {
            Evidence::new(Symbol::SenderAllowedUnauthenticated, pattern)
        })
    }
}

/// The comparison forms of a name: confusable-folded (UTS #39 skeleton), lower case, letters
/// and digits only; and the same per word, sorted (so `Yamada Taro` matches `Taro Yamada`).
pub fn name_forms(name: &str) -> (String, Vec<String>) {
    let lower = name.to_lowercase();
    let folded: String = unicode_security::skeleton(&lower)
        .flat_map(char::to_lowercase)
        .collect();
    let mut words: Vec<String> = folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    let joined = words.concat();
    words.sort();
    (joined, words)
}

/// True if `display` names the same person as `protected` (order of words, spacing, case and
/// look-alike characters aside). Very short names never match (too many false alarms).
pub fn same_name(display: &str, protected: &str) -> bool {
    let (a, aw) = name_forms(display);
    let (b, bw) = name_forms(protected);
    if b.chars().count() < 4 {
        return false;
    }
    a == b || (bw.len() > 1 && aw == bw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(rcpt: &str, pattern: &str, allow: bool) -> SenderRule {
        SenderRule {
            rcpt: rcpt.into(),
            pattern: pattern.into(),
            allow,
        }
    }

    fn symbol(
        l: &SenderLists,
        senders: &[&str],
        rcpts: &[&str],
        found: &[Symbol],
    ) -> Option<Symbol> {
        let rcpts: Vec<String> = rcpts.iter().map(|r| r.to_string()).collect();
        let found: Vec<Evidence> = found.iter().map(|s| Evidence::new(*s, "")).collect();
        l.evidence(senders, &rcpts, &found).map(|e| e.symbol)
    }

    #[test]
    fn sender_lists_decide_only_when_every_recipient_agrees() {
        let l = SenderLists::new(vec![
            rule("", "partner.example", true),
            rule("", "spam.example", false),
            rule("bob@acme.test", "news@partner.example", false),
            rule("carol@acme.test", "friend@home.example", true),
        ]);
        let pass = [Symbol::SpfPass];
        // Tenant-wide, subdomains included; not a look-alike suffix.
        assert_eq!(
            symbol(&l, &["x@mail.partner.example"], &["dan@acme.test"], &pass),
            Some(Symbol::SenderAllowed)
        );
        assert_eq!(
            symbol(&l, &["x@evilpartner.example"], &["dan@acme.test"], &pass),
            None
        );
        assert_eq!(
            symbol(&l, &["x@spam.example"], &["dan@acme.test"], &[]),
            Some(Symbol::SenderBlocked)
        );
        // A recipient's own entry wins over the tenant's.
        assert_eq!(
            symbol(&l, &["news@partner.example"], &["bob@acme.test"], &pass),
            Some(Symbol::SenderBlocked)
        );
        // Recipients that disagree, or one without any entry: the lists stay out of it.
        assert_eq!(
            symbol(
                &l,
                &["news@partner.example"],
                &["bob@acme.test", "dan@acme.test"],
                &pass
            ),
            None
        );
        assert_eq!(
            symbol(
                &l,
                &["friend@home.example"],
                &["carol@acme.test", "dan@acme.test"],
                &pass
            ),
            None
        );
        assert_eq!(
            symbol(&l, &["friend@home.example"], &["Carol@acme.test"], &pass),
            Some(Symbol::SenderAllowed)
        );
        // Either the header From or the envelope sender matches.
        assert_eq!(
            symbol(
                &l,
                &["a@other.example", "x@spam.example"],
                &["dan@acme.test"],
                &[]
            ),
            Some(Symbol::SenderBlocked)
        );
        assert_eq!(
            symbol(&l, &["a@other.example"], &["dan@acme.test"], &pass),
            None
        );
        assert_eq!(
            symbol(
                &SenderLists::default(),
                &["x@spam.example"],
                &["dan@acme.test"],
                &[]
            ),
            None
        );
    }

    #[test]
    fn an_allow_needs_authentication_that_dmarc_does_not_contradict() {
        let l = SenderLists::new(vec![rule("", "partner.example", true)]);
        let from = ["ceo@partner.example"];
        let to = ["dan@acme.test"];
        assert_eq!(
            symbol(&l, &from, &to, &[]),
            Some(Symbol::SenderAllowedUnauthenticated)
        );
        assert_eq!(
            symbol(&l, &from, &to, &[Symbol::SpfNone, Symbol::DkimNone]),
            Some(Symbol::SenderAllowedUnauthenticated)
        );
        assert_eq!(
            symbol(&l, &from, &to, &[Symbol::DkimPass]),
            Some(Symbol::SenderAllowed)
        );
        assert_eq!(
            symbol(&l, &from, &to, &[Symbol::SpfPass, Symbol::DmarcQuarantine]),
            Some(Symbol::SenderAllowedUnauthenticated)
        );
        assert_eq!(
            symbol(&l, &from, &to, &[Symbol::DmarcPass]),
            Some(Symbol::SenderAllowed)
        );
        assert_eq!(
            symbol(&l, &from, &to, &[Symbol::ArcTrusted]),
            Some(Symbol::SenderAllowed)
        );
    }

    #[test]
    fn names_match_across_order_spacing_case_and_confusables() {
        assert!(same_name("Taro Yamada", "Taro Yamada"));
        assert!(same_name("YAMADA, Taro", "Taro Yamada"));
        assert!(same_name("taro  yamada", "Taro Yamada"));
        assert!(same_name("Tаro Yamada", "Taro Yamada"), "Cyrillic а");
        assert!(same_name("山田太郎", "山田 太郎"));
        assert!(!same_name("Taro Yamamoto", "Taro Yamada"));
        assert!(!same_name("Al", "Al"), "too short to protect");
    }
}
