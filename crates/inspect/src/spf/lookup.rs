//! The DNS that SPF asks: a trait (so tests answer from memory) and its implementation over
//! the node's resolver, with a bounded TTL cache.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_auth::ResolverCache;
use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::hickory_resolver::proto::rr::{Name, RData, RecordType};

use crate::BoxFuture;

/// What a query gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// Records.
    Records(Vec<T>),
    /// No such name, or no records of the type ("void", §4.6.4).
    Void,
    /// The server failed or did not answer in time.
    Failed,
}

impl<T> Answer<T> {
    /// The records mapped.
    pub fn map<U>(self, f: impl Fn(T) -> U) -> Answer<U> {
        match self {
            Answer::Records(r) if r.is_empty() => Answer::Void,
            Answer::Records(r) => Answer::Records(r.into_iter().map(f).collect()),
            Answer::Void => Answer::Void,
            Answer::Failed => Answer::Failed,
        }
    }
}

/// The queries SPF makes. Names are as written (a trailing dot or not).
pub trait Lookup: Sync {
    /// TXT records, each record's strings joined.
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Answer<String>>;
    /// A records.
    fn a<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Answer<Ipv4Addr>>;
    /// AAAA records.
    fn aaaa<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Answer<Ipv6Addr>>;
    /// MX exchanges, by preference.
    fn mx<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Answer<String>>;
    /// PTR names of an address.
    fn ptr<'a>(&'a self, ip: IpAddr) -> BoxFuture<'a, Answer<String>>;
}

/// How long a failure is remembered (a failing server is not asked again at once).
const FAILED_FOR: Duration = Duration::from_secs(5);
/// How long a void answer without a TTL is remembered.
const VOID_FOR: Duration = Duration::from_secs(300);

/// One raw answer: rdata as text (TXT joined, names lower-case without the trailing dot).
type Raw = Answer<String>;

/// SPF's DNS over the node's resolver.
pub struct Resolver {
    resolver: TokioResolver,
    cache: Arc<crate::dns::SpfCache>,
}

impl Resolver {
    /// Queries through `resolver`, remembering answers in `cache`.
    pub fn new(resolver: TokioResolver, cache: Arc<crate::dns::SpfCache>) -> Self {
        Self { resolver, cache }
    }

    async fn query(&self, name: &str, kind: RecordType) -> Raw {
        let key = (kind, key_of(name));
        if let Some(hit) = self.cache.get(&key) {
            return hit;
        }
        // From raw labels: a label may hold any octet a macro put there (`:`, `/`, spaces),
        // which the resolver's name parser refuses (RFC 2181 §11 allows them).
        let labels = key
            .1
            .split('.')
            .filter(|l| !l.is_empty())
            .map(str::as_bytes);
        let Ok(qname) = Name::from_labels(labels) else {
            return Answer::Void;
        };
        let (answer, until) = match self.resolver.lookup(qname, kind).await {
            Ok(lookup) => {
                let texts: Vec<String> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| rdata_text(&r.data))
                    .collect();
                let answer = if texts.is_empty() {
                    Answer::Void
                } else {
                    Answer::Records(texts)
                };
                (answer, lookup.valid_until())
            }
            Err(e) => match mail_auth::Error::from(e) {
                mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(_)) => {
                    (Answer::Void, Instant::now() + VOID_FOR)
                }
                _ => (Answer::Failed, Instant::now() + FAILED_FOR),
            },
        };
        self.cache.insert(key, answer.clone(), until);
        answer
    }
}

/// The cache key of a name: lower case, with the trailing dot.
pub fn key_of(name: &str) -> Box<str> {
    let mut n = name.to_ascii_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    n.into_boxed_str()
}

fn rdata_text(d: &RData) -> Option<String> {
    // Raw labels joined (not the escaped presentation form: `\:` would be queried as is).
    let name = |n: &Name| {
        n.iter()
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(".")
    };
    match d {
        RData::TXT(t) => Some(
            t.txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        ),
        RData::A(a) => Some(a.0.to_string()),
        RData::AAAA(a) => Some(a.0.to_string()),
        RData::MX(mx) => Some(format!("{:05} {}", mx.preference, name(&mx.exchange))),
        RData::PTR(p) => Some(name(&p.0)),
        _ => None,
    }
}

impl Lookup for Resolver {
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Answer<String>> {
        Box::pin(self.query(name, RecordType::TXT))
    }

    fn a<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Answer<Ipv4Addr>> {
        Box::pin(async move {
            let raw = self.query(name, RecordType::A).await;
            parsed(raw)
        })
    }

    fn aaaa<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Answer<Ipv6Addr>> {
        Box::pin(async move {
            let raw = self.query(name, RecordType::AAAA).await;
            parsed(raw)
        })
    }

    fn mx<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Answer<String>> {
        Box::pin(async move {
            match self.query(name, RecordType::MX).await {
                Answer::Records(mut r) => {
                    // "PPPPP name": sorting the text sorts by preference.
                    r.sort();
                    Answer::Records(
                        r.into_iter()
                            .filter_map(|x| x.split_once(' ').map(|(_, n)| n.to_string()))
                            .collect(),
                    )
                }
                other => other,
            }
        })
    }

    fn ptr<'a>(&'a self, ip: IpAddr) -> BoxFuture<'a, Answer<String>> {
        Box::pin(async move { self.query(&reverse_name(ip), RecordType::PTR).await })
    }
}

fn parsed<T: std::str::FromStr>(raw: Raw) -> Answer<T> {
    match raw {
        Answer::Records(r) => {
            let v: Vec<T> = r.iter().filter_map(|x| x.parse().ok()).collect();
            if v.is_empty() {
                Answer::Void
            } else {
                Answer::Records(v)
            }
        }
        Answer::Void => Answer::Void,
        Answer::Failed => Answer::Failed,
    }
}

/// The name of `ip` in `in-addr.arpa` or `ip6.arpa`.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut out = String::new();
            for o in a.octets().iter().rev() {
                out.push_str(&format!("{:x}.{:x}.", o & 0xf, o >> 4));
            }
            out.push_str("ip6.arpa");
            out
        }
    }
}
