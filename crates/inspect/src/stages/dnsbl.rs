//! DNS block lists: the client's IP against IP lists (Spamhaus ZEN style, RFC 5782), and the
//! registrable domains of the message's links against domain lists (SURBL / URIBL / Spamhaus
//! DBL style).
//!
//! A listing is an A record in 127.0.0.0/8. Answers in 127.255.255.0/24 are the list's way of
//! saying "query refused" (e.g. through a public resolver) and are never a listing; a list may
//! also name exactly which answers count. All lookups of a message share one deadline; errors
//! and timeouts are not evidence (a list being down must not make mail spam).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use mail_auth::MessageAuthenticator;

use crate::dns::DnsCaches;
use crate::evidence::{Evidence, Symbol};
use crate::view::MessageView;
use crate::{BoxFuture, Envelope, Findings, Stage};

/// Most link domains looked up per message (a limit: a message with a thousand links costs
/// at most this many queries per list).
pub const MAX_DOMAINS: usize = 10;

/// What a list holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// IP addresses (queried with the reversed address).
    Ip,
    /// Domains (queried with the registrable domain of each link).
    Domain,
}

/// One configured list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsList {
    /// The list's DNS zone, e.g. `zen.spamhaus.org`.
    pub zone: String,
    /// What it holds.
    pub kind: ListKind,
    /// Answers that count as listed; empty means any 127.0.0.0/8 answer outside
    /// 127.255.255.0/24.
    pub listed: Vec<Ipv4Addr>,
}

impl DnsList {
    fn counts(&self, answer: Ipv4Addr) -> bool {
        if self.listed.is_empty() {
            let o = answer.octets();
            o[0] == 127 && !(o[1] == 255 && o[2] == 255)
        } else {
            self.listed.contains(&answer)
        }
    }
}

/// The query name of an IP in a zone (RFC 5782 §2.1 and §2.4).
pub fn ip_query(ip: IpAddr, zone: &str) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.{zone}.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(64 + zone.len());
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str(zone);
            s.push('.');
            s
        }
    }
}

/// The registrable domain of a host (`www.shop.example.co.uk` → `example.co.uk`), by the
/// Public Suffix List; `None` for IP addresses and bare suffixes.
pub fn registrable(host: &str) -> Option<String> {
    if host.parse::<IpAddr>().is_ok() {
        return None;
    }
    let ascii = idna::domain_to_ascii(host).ok()?;
    psl::domain_str(&ascii).map(str::to_string)
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xfe00) == 0xfc00)
        }
    }
}

/// The block-list stage.
pub struct Dnsbl {
    resolver: MessageAuthenticator,
    caches: Arc<DnsCaches>,
    lists: Vec<DnsList>,
    deadline: Duration,
}

impl Dnsbl {
    /// A stage asking `lists` through `resolver`, answers cached in `caches`, each message's
    /// lookups bounded by `deadline`.
    pub fn new(
        resolver: MessageAuthenticator,
        caches: Arc<DnsCaches>,
        lists: Vec<DnsList>,
        deadline: Duration,
    ) -> Self {
        Self {
            resolver,
            caches,
            lists,
            deadline,
        }
    }

    async fn listed(&self, name: String, list: &DnsList) -> Option<Ipv4Addr> {
        let answers = self
            .resolver
            .ipv4_lookup(name.as_str(), Some(&self.caches.ipv4))
            .await
            .ok()?;
        answers.rrset.iter().copied().find(|a| list.counts(*a))
    }

    /// The evidence for one message.
    pub async fn check(&self, msg: &MessageView<'_>, env: &Envelope) -> Vec<Evidence> {
        if self.lists.is_empty() {
            return Vec::new();
        }
        let mut domains: Vec<String> = Vec::new();
        for host in &msg.links().domains {
            if let Some(d) = registrable(host)
                && !domains.contains(&d)
            {
                domains.push(d);
                if domains.len() == MAX_DOMAINS {
                    break;
                }
            }
        }
        let mut queries = Vec::new();
        for list in &self.lists {
            match list.kind {
                ListKind::Ip if is_public(env.client_ip) => queries.push((
                    list,
                    ip_query(env.client_ip, &list.zone),
                    env.client_ip.to_string(),
                )),
                ListKind::Ip => {}
                ListKind::Domain => {
                    for d in &domains {
                        queries.push((list, format!("{d}.{}.", list.zone), d.clone()));
                    }
                }
            }
        }
        let lookups =
            futures_util::future::join_all(queries.into_iter().map(
                |(list, name, what)| async move { (list, what, self.listed(name, list).await) },
            ));
        let Ok(results) = tokio::time::timeout(self.deadline, lookups).await else {
            return Vec::new();
        };
        results
            .into_iter()
            .filter_map(|(list, what, hit)| {
                let answer = hit?;
                let symbol = match list.kind {
                    ListKind::Ip => Symbol::DnsblClient,
                    ListKind::Domain => Symbol::DnsblLink,
                };
                Some(Evidence::new(
                    symbol,
                    format!("{what} listed in {} ({answer})", list.zone),
                ))
            })
            .collect()
    }
}

impl Stage for Dnsbl {
    fn inbound_only(&self) -> bool {
        true
    }

    fn name(&self) -> &'static str {
        "dnsbl"
    }

    fn inspect<'a>(
        &'a self,
        msg: &'a MessageView<'a>,
        env: &'a Envelope,
    ) -> BoxFuture<'a, Findings> {
        Box::pin(async move { self.check(msg, env).await.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names_follow_rfc_5782() {
        assert_eq!(
            ip_query("192.0.2.99".parse().unwrap(), "bl.example"),
            "99.2.0.192.bl.example."
        );
        assert_eq!(
            ip_query("2001:db8:1:2:3:4:567:89ab".parse().unwrap(), "bl.example"),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.example."
        );
    }

    #[test]
    fn registrable_domains_by_the_public_suffix_list() {
        assert_eq!(
            registrable("www.shop.example.co.uk").as_deref(),
            Some("example.co.uk")
        );
        assert_eq!(
            registrable("login.example.com").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            registrable("xn--r8jz45g.jp").as_deref(),
            Some("xn--r8jz45g.jp")
        );
        assert_eq!(registrable("例え.jp").as_deref(), Some("xn--r8jz45g.jp"));
        assert_eq!(registrable("192.0.2.1"), None);
        assert_eq!(registrable("co.uk"), None);
    }

    #[test]
    fn which_answers_count() {
        let any = DnsList {
            zone: "bl.example".into(),
            kind: ListKind::Ip,
            listed: vec![],
        };
        assert!(any.counts("127.0.0.2".parse().unwrap()));
        assert!(any.counts("127.0.0.11".parse().unwrap()));
        assert!(
            !any.counts("127.255.255.254".parse().unwrap()),
            "query refused is not a listing"
        );
        assert!(!any.counts("10.0.0.1".parse().unwrap()));
        let only = DnsList {
            listed: vec!["127.0.0.4".parse().unwrap()],
            ..any
        };
        assert!(only.counts("127.0.0.4".parse().unwrap()));
        assert!(!only.counts("127.0.0.2".parse().unwrap()));
    }

    #[test]
    fn only_public_client_addresses_are_looked_up() {
        assert!(is_public("198.51.99.1".parse().unwrap()));
        assert!(!is_public("10.1.2.3".parse().unwrap()));
        assert!(!is_public("127.0.0.1".parse().unwrap()));
        assert!(!is_public("::1".parse().unwrap()));
    }
}
