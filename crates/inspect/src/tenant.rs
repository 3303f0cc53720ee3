//! A tenant's own rules: policy overrides, the people whose names outsiders must not use, and
//! the forwarders whose ARC seals it trusts.

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
