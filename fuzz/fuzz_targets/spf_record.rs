//! SPF records as a DNS server hands them over: arbitrary text selected, parsed strictly and,
//! when accepted, every domain-spec expanded with both address families. A record is a
//! `permerror` or evaluable — never a panic, and an expansion stays bounded.
#![no_main]

use inspect::spf::macros::MacroValues;
use inspect::spf::record::{Mechanism, is_spf1, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if !is_spf1(text) {
        return;
    }
    let Ok(record) = parse(text) else {
        return;
    };
    let specs = record
        .directives
        .iter()
        .filter_map(|(_, m)| match m {
            Mechanism::Include(s) | Mechanism::Exists(s) => Some(s),
            Mechanism::A(s, ..) | Mechanism::Mx(s, ..) | Mechanism::Ptr(s) => s.as_ref(),
            Mechanism::All | Mechanism::Ip4(..) | Mechanism::Ip6(..) => None,
        })
        .chain(record.redirect.iter())
        .chain(record.exp.iter());
    for spec in specs {
        for ip in ["192.0.2.1", "2001:db8::1"] {
            let v = MacroValues {
                sender: "local-part+tag@sub.example.org",
                local: "local-part+tag",
                sender_domain: "sub.example.org",
                domain: "sub.example.org",
                ip: ip.parse().unwrap(),
                helo: "mail.example.net",
                validated: "unknown",
                receiver: "mx.example",
                now: 0,
            };
            let expanded = spec.expand(&v);
            // Every macro expands to at most its value (kept parts never grow it) plus the
            // literal text, and a value is at most a few hundred bytes.
            assert!(
                expanded.len() <= text.len() * 600 + 1024,
                "{}",
                expanded.len()
            );
        }
    }
});
