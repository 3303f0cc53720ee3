//! DNS for the authentication stage: the resolver (configurable, so tests and operators can
//! point it at a resolver of their choice) and bounded TTL caches shared by all messages.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::{MX, MessageAuthenticator, Parameters, RecordSet, ResolverCache, Txt};

/// Most entries per cache before expired (then arbitrary) entries are evicted.
pub const MAX_CACHE_ENTRIES: usize = 100_000;

/// A bounded cache with per-entry expiry.
pub struct DnsCache<K, V> {
    map: Mutex<HashMap<K, (V, Instant)>>,
    max: usize,
}

impl<K: Hash + Eq, V: Clone> DnsCache<K, V> {
    /// An empty cache holding at most `max` entries.
    pub fn new(max: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            max: max.max(1),
        }
    }

    /// Number of entries (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.map.lock().expect("dns cache poisoned").len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for DnsCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self.map.lock().expect("dns cache poisoned");
        match map.get(name) {
            Some((v, until)) if *until > Instant::now() => Some(v.clone()),
            Some(_) => {
                map.remove(name);
                None
            }
            None => None,
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map
            .lock()
            .expect("dns cache poisoned")
            .remove(name)
            .map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let mut map = self.map.lock().expect("dns cache poisoned");
        if map.len() >= self.max {
            let now = Instant::now();
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= self.max {
                // Still full of live entries: drop everything rather than grow without bound.
                map.clear();
            }
        }
        map.insert(key, (value, valid_until));
    }
}

/// The answers SPF's own evaluator asked for, by type and name.
pub type SpfCache = DnsCache<
    (mail_auth::hickory_resolver::proto::rr::RecordType, Box<str>),
    crate::spf::lookup::Answer<String>,
>;

/// The five caches mail-auth uses, and SPF's.
pub struct DnsCaches {
    /// TXT (SPF, DKIM keys, DMARC).
    pub txt: DnsCache<Box<str>, Txt>,
    /// MX.
    pub mx: DnsCache<Box<str>, RecordSet<MX>>,
    /// A.
    pub ipv4: DnsCache<Box<str>, RecordSet<Ipv4Addr>>,
    /// AAAA.
    pub ipv6: DnsCache<Box<str>, RecordSet<Ipv6Addr>>,
    /// PTR.
    pub ptr: DnsCache<IpAddr, RecordSet<Box<str>>>,
    /// SPF's answers (its own evaluator, `crate::spf`).
    pub spf: std::sync::Arc<SpfCache>,
}

/// Parameters with our caches attached.
pub type Cached<'x, P> = Parameters<
    'x,
    P,
    DnsCache<Box<str>, Txt>,
    DnsCache<Box<str>, RecordSet<MX>>,
    DnsCache<Box<str>, RecordSet<Ipv4Addr>>,
    DnsCache<Box<str>, RecordSet<Ipv6Addr>>,
    DnsCache<IpAddr, RecordSet<Box<str>>>,
>;

impl Default for DnsCaches {
    fn default() -> Self {
        Self {
            txt: DnsCache::new(MAX_CACHE_ENTRIES),
            mx: DnsCache::new(MAX_CACHE_ENTRIES),
            ipv4: DnsCache::new(MAX_CACHE_ENTRIES),
            ipv6: DnsCache::new(MAX_CACHE_ENTRIES),
            ptr: DnsCache::new(MAX_CACHE_ENTRIES),
            spf: std::sync::Arc::new(DnsCache::new(MAX_CACHE_ENTRIES)),
        }
    }
}

impl DnsCaches {
    /// Wraps lookup parameters with these caches.
    pub fn params<P>(&self, p: P) -> Cached<'_, P> {
        Parameters::new(p)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
            .with_ptr_cache(&self.ptr)
    }

    /// Seeds an NXDOMAIN answer for TXT lookups of `name` (for an hour).
    pub fn seed_nxdomain(&self, name: &str) {
        self.spf.insert(
            (
                mail_auth::hickory_resolver::proto::rr::RecordType::TXT,
                crate::spf::lookup::key_of(name),
            ),
            crate::spf::lookup::Answer::Void,
            Instant::now() + Duration::from_secs(3600),
        );
        let err = mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(
            mail_auth::hickory_resolver::proto::op::ResponseCode::NXDomain,
        ));
        self.txt.insert(
            fqdn(name),
            Txt::Error(err),
            Instant::now() + Duration::from_secs(3600),
        );
    }

    /// Seeds a TXT record (SPF, DMARC or DKIM key, told apart by content) for an hour.
    /// Used by tests that run offline with known answers.
    pub fn seed_txt(&self, name: &str, record: &str) -> Result<(), String> {
        if crate::spf::record::is_spf1(record) {
            crate::spf::record::parse(record).map_err(|e| format!("{name}: {e}"))?;
            self.spf.insert(
                (
                    mail_auth::hickory_resolver::proto::rr::RecordType::TXT,
                    crate::spf::lookup::key_of(name),
                ),
                crate::spf::lookup::Answer::Records(vec![record.to_string()]),
                Instant::now() + Duration::from_secs(3600),
            );
            return Ok(());
        }
        let txt: Txt = if record.starts_with("v=DMARC1") {
            mail_auth::dmarc::Dmarc::parse(record.as_bytes()).map(Into::into)
        } else {
            mail_auth::common::verify::DomainKey::parse(record.as_bytes()).map(Into::into)
        }
        .map_err(|e| format!("{name}: {e}"))?;
        self.txt
            .insert(fqdn(name), txt, Instant::now() + Duration::from_secs(3600));
        Ok(())
    }
}

/// The cache key of a name: lower case, with the trailing dot.
fn fqdn(name: &str) -> Box<str> {
    let mut n = name.to_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    n.into_boxed_str()
}

/// Builds the authenticator: the given resolver (`IP:PORT`, UDP and TCP), or the system's
/// `/etc/resolv.conf` when none is given.
pub fn authenticator(
    resolver: Option<SocketAddr>,
    timeout: Duration,
) -> Result<MessageAuthenticator, String> {
    let result = match resolver {
        Some(addr) => {
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            let mut opts = ResolverOpts::default();
            opts.timeout = timeout;
            opts.attempts = 1;
            MessageAuthenticator::new(ResolverConfig::from_name_servers(vec![ns]), opts)
        }
        None => MessageAuthenticator::new_system_conf(),
    };
    result.map_err(|e| format!("DNS resolver: {e}"))
}

/// The resolver behind every lookup (mail-auth's, over hickory).
pub type Authenticator = MessageAuthenticator;

/// What DNS says about a domain's mail exchangers, for direct delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchangers {
    /// Exchangers and their preferences.
    Hosts(Vec<(u16, String)>),
    /// The domain exists and has no MX records.
    NoRecords,
    /// The domain does not exist.
    NoDomain,
}

/// The MX records of `domain` (cached by their TTL), or why they cannot be known now.
pub async fn mail_exchangers(
    auth: &MessageAuthenticator,
    caches: &DnsCaches,
    domain: &str,
) -> Result<Exchangers, String> {
    use mail_auth::hickory_resolver::proto::op::ResponseCode;
    match auth.mx_lookup(domain, Some(&caches.mx)).await {
        Ok(set) => Ok(Exchangers::Hosts(
            set.rrset
                .iter()
                .flat_map(|mx| mx.exchanges.iter().map(|h| (mx.preference, h.to_string())))
                .collect(),
        )),
        Err(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(code))) => {
            Ok(if code == ResponseCode::NXDomain {
                Exchangers::NoDomain
            } else {
                Exchangers::NoRecords
            })
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The TXT record at `name` (its strings joined; several records run together), `None` when
/// the name has none or does not exist. Not cached here (the resolver caches by TTL).
pub async fn txt(auth: &MessageAuthenticator, name: &str) -> Result<Option<String>, String> {
    match auth.txt_raw_lookup(name).await {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(_))) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The addresses of `host`, IPv4 first then IPv6 (cached by their TTL).
pub async fn addresses(
    auth: &MessageAuthenticator,
    caches: &DnsCaches,
    host: &str,
) -> Result<Vec<IpAddr>, String> {
    let mut out: Vec<IpAddr> = Vec::new();
    let mut errors = Vec::new();
    match auth.ipv4_lookup(host, Some(&caches.ipv4)).await {
        Ok(set) => out.extend(set.rrset.iter().copied().map(IpAddr::V4)),
        Err(e) => errors.push(e.to_string()),
    }
    match auth.ipv6_lookup(host, Some(&caches.ipv6)).await {
        Ok(set) => out.extend(set.rrset.iter().copied().map(IpAddr::V6)),
        Err(e) => errors.push(e.to_string()),
    }
    if out.is_empty() {
        return Err(format!("no address for {host} ({})", errors.join("; ")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_expires_and_stays_bounded() {
        let c: DnsCache<Box<str>, u32> = DnsCache::new(2);
        c.insert("a".into(), 1, Instant::now() + Duration::from_secs(60));
        c.insert("b".into(), 2, Instant::now() - Duration::from_secs(1));
        assert_eq!(c.get("a"), Some(1));
        assert_eq!(c.get("b"), None, "expired entries are not returned");
        c.insert("c".into(), 3, Instant::now() + Duration::from_secs(60));
        c.insert("d".into(), 4, Instant::now() + Duration::from_secs(60));
        assert!(c.len() <= 2, "cache grew to {}", c.len());
        assert_eq!(c.get("d"), Some(4));
    }

    #[test]
    fn seeding_parses_records_and_refuses_garbage() {
        let caches = DnsCaches::default();
        caches
            .seed_txt("example.org", "v=spf1 ip4:192.0.2.0/24 -all")
            .unwrap();
        caches
            .seed_txt("_dmarc.example.org", "v=DMARC1; p=reject")
            .unwrap();
        assert_eq!(caches.txt.len(), 1, "DMARC in mail-auth's cache");
        assert_eq!(caches.spf.len(), 1, "SPF in the evaluator's");
        assert!(
            caches
                .seed_txt("sel._domainkey.example.org", "k=rsa; p=!!!")
                .is_err()
        );
    }
}
