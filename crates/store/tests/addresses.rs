//! Domain and address keys: every spelling of one domain (Unicode or A-labels, any case, a
//! trailing dot) is one key, keys are stable under normalising again and under a round trip
//! through Unicode, and the directory finds a tenant's recipients by any of those spellings.

use std::collections::HashSet;

use proptest::prelude::*;
use store::{Directory, Lookup, RecipientPolicy, TenantInfo, address_key, domain_key};

fn tenant(domain: &str, recipients: &[&str]) -> Directory {
    let mut d = Directory::default();
    d.add_tenant(TenantInfo {
        id: 7,
        name: "t".into(),
        route: "smtp://127.0.0.1:2525".into(),
        policy: RecipientPolicy::Verify,
        recipients: HashSet::new(),
        domains: Vec::new(),
        filter: Default::default(),
        senders: Vec::new(),
    });
    d.add_domain(domain.into(), 7);
    for r in recipients {
        d.add_recipient((*r).into(), 7);
    }
    d
}

#[test]
fn every_spelling_of_an_idn_finds_its_tenant() {
    let d = tenant("例え.jp", &["taro@例え.jp"]);
    for rcpt in [
        "taro@例え.jp",
        "Taro@xn--r8jz45g.jp",
        "TARO@XN--R8JZ45G.JP.",
        "taro@例え.JP",
    ] {
        assert_eq!(d.lookup(rcpt), Lookup::Accept(7), "{rcpt}");
    }
    assert_eq!(d.lookup("hanako@xn--r8jz45g.jp"), Lookup::UnknownUser);
    assert_eq!(d.lookup("taro@xn--r8jz45g.com"), Lookup::NotOurs);
    // …and the other way round: a domain registered in A-labels.
    let d = tenant("xn--bcher-kva.example", &["anna@xn--bcher-kva.example"]);
    assert_eq!(d.lookup("Anna@BÜCHER.example"), Lookup::Accept(7));
}

#[test]
fn a_name_idna_refuses_matches_only_itself() {
    assert_eq!(domain_key("a..b"), "a..b");
    assert_eq!(domain_key("Bad_Name.Test."), domain_key("bad_name.test"));
}

/// Labels of ASCII letters and digits, upper case, hyphens inside, and Unicode letters.
fn label() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        6 => prop::char::range('a', 'z'),
        2 => prop::char::range('A', 'Z'),
        2 => prop::char::range('0', '9'),
        1 => prop::sample::select(vec!['é', 'ü', 'ж', 'ß', '例', 'え', 'ｱ', 'Ω']),
    ];
    (prop::collection::vec(c, 1..12), any::<bool>()).prop_map(|(chars, hyphen)| {
        let mut s: String = chars.into_iter().collect();
        if hyphen && s.chars().count() > 2 {
            let at = s.char_indices().nth(1).map_or(0, |(i, _)| i);
            s.insert(at, '-');
        }
        s
    })
}

fn local_part() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        prop::char::range('a', 'z'),
        prop::char::range('A', 'Z'),
        prop::char::range('0', '9'),
        prop::sample::select(vec!['.', '+', '_', '-']),
    ];
    prop::collection::vec(c, 1..10).prop_map(|v| v.into_iter().collect())
}

fn domain() -> impl Strategy<Value = String> {
    (prop::collection::vec(label(), 1..4), any::<bool>()).prop_map(|(labels, dot)| {
        let mut d = labels.join(".");
        d.push_str(".test");
        if dot {
            d.push('.');
        }
        d
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn keys_are_stable(d in domain()) {
        let k = domain_key(&d);
        prop_assert_eq!(domain_key(&k), k.clone());
        prop_assert!(k.is_ascii(), "{} keyed as {}", d, k);
        let (unicode, errors) = idna::domain_to_unicode(&k);
        if errors.is_ok() {
            prop_assert_eq!(domain_key(&unicode), k.clone(), "round trip through {}", unicode);
        }
        // Case-blind in ASCII (`ß` upper-cases to `SS`, another name under IDNA 2008).
        prop_assert_eq!(domain_key(&d.to_ascii_uppercase()), domain_key(&d.to_ascii_lowercase()));
    }

    #[test]
    fn address_keys_split_at_the_last_at(local in local_part(), d in domain()) {
        let a = format!("{local}@{d}");
        let k = address_key(&a);
        prop_assert_eq!(address_key(&k), k.clone());
        prop_assert_eq!(k, format!("{}@{}", local.to_lowercase(), domain_key(&d)));
    }

    #[test]
    fn the_directory_finds_a_recipient_by_any_spelling(local in local_part(), d in domain()) {
        let dir = tenant(&d, &[&format!("{local}@{d}")]);
        let ascii = domain_key(&d);
        prop_assert_eq!(dir.lookup(&format!("{local}@{ascii}")), Lookup::Accept(7));
        prop_assert_eq!(
            dir.lookup(&format!("{}@{}", local.to_uppercase(), d.to_ascii_uppercase())),
            Lookup::Accept(7)
        );
    }
}
