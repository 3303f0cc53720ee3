//! Direct delivery (RFC 5321 §5): the recipient domain's mail exchangers in preference
//! order, the domain's own address when it has none, a null MX (RFC 7505) as a permanent
//! refusal.
//!
//! Delivery asks an [`MxResolver`] (in `mx`, the node's configured DNS resolver) so that this
//! crate holds no DNS client of its own.

use std::net::IpAddr;

use crate::secrets::BoxFuture;

/// What DNS says about a domain's mail exchangers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    /// Exchangers with their preference (any order).
    Hosts(Vec<(u16, String)>),
    /// The domain exists and publishes no MX: its own A/AAAA is the implicit MX.
    NoRecords,
    /// The domain does not exist.
    NoDomain,
}

/// Where delivery looks up mail exchangers and their addresses.
pub trait MxResolver: Send + Sync {
    /// The MX records of `domain`, or why they cannot be known now (a temporary failure).
    fn mx(&self, domain: &str) -> BoxFuture<'_, Result<MxAnswer, String>>;
    /// The addresses of `host` (IPv4 first, then IPv6), or why there are none.
    fn addresses(&self, host: &str) -> BoxFuture<'_, Result<Vec<IpAddr>, String>>;
}

/// The next step for a domain, decided from its MX answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Try these hosts in this order.
    Try(Vec<String>),
    /// Never deliverable: the reply to record (`5xx x.x.x …`).
    Refuse(String),
}

/// Orders a domain's exchangers (lowest preference first; equal preferences keep DNS order),
/// reads a null MX (a single exchanger `.`), and falls back to the domain itself.
pub fn plan(domain: &str, answer: MxAnswer) -> Plan {
    match answer {
        MxAnswer::NoDomain => Plan::Refuse(format!(
            "550 5.1.2 {domain} does not exist (no such domain in DNS)"
        )),
        MxAnswer::NoRecords => Plan::Try(vec![domain.to_string()]),
        MxAnswer::Hosts(hosts) if hosts.is_empty() => Plan::Try(vec![domain.to_string()]),
        MxAnswer::Hosts(hosts) => {
            let null = |h: &str| h.trim_end_matches('.').is_empty();
            if hosts.len() == 1 && null(&hosts[0].1) {
                return Plan::Refuse(format!(
                    "556 5.1.10 {domain} accepts no mail (null MX, RFC 7505)"
                ));
            }
            let mut hosts: Vec<(u16, String)> =
                hosts.into_iter().filter(|(_, h)| !null(h)).collect();
            hosts.sort_by_key(|(p, _)| *p);
            let mut out: Vec<String> = Vec::with_capacity(hosts.len());
            for (_, h) in hosts {
                let h = h.trim_end_matches('.').to_ascii_lowercase();
                if !out.contains(&h) {
                    out.push(h);
                }
            }
            Plan::Try(out)
        }
    }
}

/// Whether mail may go to `ip` on the Internet: never to this host, link-local, multicast or
/// unspecified addresses, and to private networks only when the operator allows it (an MX
/// record is anyone's to write, and must not turn delivery into a way into the local network).
pub fn reachable(ip: IpAddr, allow_private: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() || v4.is_link_local() {
                return false;
            }
            // 100.64.0.0/10: carrier-grade NAT, shared address space (RFC 6598).
            let shared = v4.octets()[0] == 100 && (v4.octets()[1] & 0xC0) == 64;
            allow_private || !(v4.is_loopback() || v4.is_private() || shared)
        }
        IpAddr::V6(v6) => {
            if v6.is_unspecified() || v6.is_multicast() || v6.is_unicast_link_local() {
                return false;
            }
            if let Some(v4) = v6.to_ipv4_mapped() {
                return reachable(IpAddr::V4(v4), allow_private);
            }
            allow_private || !(v6.is_loopback() || v6.is_unique_local())
        }
    }
}

/// The domain of an address (`user@Example.COM` → `example.com`), lower case.
pub fn domain_of(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .filter(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(h: &[(u16, &str)]) -> MxAnswer {
        MxAnswer::Hosts(h.iter().map(|(p, n)| (*p, n.to_string())).collect())
    }

    #[test]
    fn exchangers_go_in_preference_order_and_repeat_once() {
        let p = plan(
            "remote.test",
            hosts(&[
                (20, "mx2.remote.test."),
                (10, "MX1.remote.test."),
                (20, "mx3.remote.test"),
                (30, "mx1.remote.test"),
            ]),
        );
        assert_eq!(
            p,
            Plan::Try(vec![
                "mx1.remote.test".into(),
                "mx2.remote.test".into(),
                "mx3.remote.test".into()
            ])
        );
    }

    #[test]
    fn no_mx_means_the_domain_itself_and_no_domain_or_null_mx_refuse() {
        assert_eq!(
            plan("a.test", MxAnswer::NoRecords),
            Plan::Try(vec!["a.test".into()])
        );
        assert_eq!(plan("a.test", hosts(&[])), Plan::Try(vec!["a.test".into()]));
        let Plan::Refuse(r) = plan("a.test", MxAnswer::NoDomain) else {
            panic!()
        };
        assert!(r.starts_with("550 5.1.2 "), "{r}");
        for null in [".", ""] {
            let Plan::Refuse(r) = plan("a.test", hosts(&[(0, null)])) else {
                panic!()
            };
            assert!(r.starts_with("556 5.1.10 "), "{r}");
        }
        // A "." beside real exchangers is not a null MX: it is skipped.
        assert_eq!(
            plan("a.test", hosts(&[(0, "."), (10, "mx.a.test")])),
            Plan::Try(vec!["mx.a.test".into()])
        );
    }

    #[test]
    fn local_and_private_addresses_only_when_allowed() {
        for (ip, public) in [
            ("192.0.2.1", true),
            ("2001:db8::1", true),
            ("127.0.0.3", false),
            ("10.1.2.3", false),
            ("192.168.0.1", false),
            ("100.64.0.1", false),
            ("::1", false),
            ("fd00::1", false),
            ("::ffff:127.0.0.1", false),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(reachable(ip, false), public, "{ip}");
            assert!(reachable(ip, true), "{ip}");
        }
        for never in [
            "0.0.0.0",
            "169.254.1.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "fe80::1",
            "ff02::1",
        ] {
            assert!(!reachable(never.parse().unwrap(), true), "{never}");
        }
    }

    #[test]
    fn the_domain_of_an_address() {
        assert_eq!(domain_of("Bob@Example.NET").as_deref(), Some("example.net"));
        assert_eq!(domain_of("nobody"), None);
        assert_eq!(domain_of("x@"), None);
    }
}
