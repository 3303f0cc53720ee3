//! The in-memory directory snapshot: which tenant owns a domain, and whether a mailbox exists.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use crate::RecipientPolicy;

/// One tenant in the directory.
#[derive(Debug, Clone)]
pub struct TenantInfo {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Route URL.
    pub route: String,
    /// Recipient verification policy.
    pub policy: RecipientPolicy,
    /// Listed recipients (lower-case).
    pub recipients: HashSet<String>,
    /// The tenant's domains.
    pub domains: Vec<String>,
    /// The tenant's filter policy overrides.
    pub filter: crate::FilterPolicy,
    /// Allowed and blocked senders (tenant-wide and per recipient).
    pub senders: Vec<crate::SenderEntry>,
}

/// Result of looking up a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Accepted for this tenant id.
    Accept(i64),
    /// The tenant exists but does not list this mailbox.
    UnknownUser,
    /// No tenant has the domain.
    NotOurs,
}

/// A consistent snapshot of tenants, domains and recipients.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    generation: i64,
    domains: HashMap<String, i64>,
    tenants: HashMap<i64, TenantInfo>,
    /// Networks of tenants' own mail servers (outbound relay), in a stable order.
    outbound: Vec<(ipnet::IpNet, i64)>,
}

impl Directory {
    /// An empty directory at `generation`.
    pub fn new(generation: i64) -> Self {
        Self {
            generation,
            ..Default::default()
        }
    }

    /// The store generation this snapshot was built from.
    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// True if a tenant of this snapshot is missing from `newer` (it was terminated).
    pub fn lost_tenants(&self, newer: &Directory) -> bool {
        self.tenants.keys().any(|id| newer.tenant(*id).is_none())
    }

    /// Adds a tenant.
    pub fn add_tenant(&mut self, t: TenantInfo) {
        self.tenants.insert(t.id, t);
    }

    /// Adds a domain of a tenant.
    pub fn add_domain(&mut self, domain: String, tenant: i64) {
        let key = domain_key(&domain);
        if let Some(t) = self.tenants.get_mut(&tenant) {
            t.domains.push(domain);
        }
        self.domains.insert(key, tenant);
    }

    /// Lists a recipient of a tenant.
    pub fn add_recipient(&mut self, address: String, tenant: i64) {
        if let Some(t) = self.tenants.get_mut(&tenant) {
            t.recipients.insert(address_key(&address));
        }
    }

    /// Registers a network `tenant`'s mail servers send outbound mail from.
    pub fn add_outbound_network(&mut self, network: ipnet::IpNet, tenant: i64) {
        if self.tenants.contains_key(&tenant) {
            self.outbound.push((network, tenant));
        }
    }

    /// The tenant a client at `ip` relays outbound mail for, if it may: the envelope
    /// sender's domain is one of that tenant's domains (exactly, not a subdomain) and `ip`
    /// is in one of its registered networks. The null sender (a bounce from the tenant's
    /// server) relays for the first tenant whose networks hold `ip`.
    pub fn relay_tenant(&self, ip: std::net::IpAddr, mail_from: &str) -> Option<i64> {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        let holds = |tenant: i64| {
            self.outbound
                .iter()
                .any(|(net, t)| *t == tenant && net.contains(&ip))
        };
        if mail_from.is_empty() {
            return self
                .outbound
                .iter()
                .find(|(net, _)| net.contains(&ip))
                .map(|(_, t)| *t);
        }
        let (_, domain) = mail_from.rsplit_once('@')?;
        let tenant = *self.domains.get(&domain_key(domain))?;
        holds(tenant).then_some(tenant)
    }

    /// Every tenant, by id.
    pub fn tenants(&self) -> impl Iterator<Item = (i64, &TenantInfo)> {
        self.tenants.iter().map(|(id, t)| (*id, t))
    }

    /// One tenant.
    pub fn tenant(&self, id: i64) -> Option<&TenantInfo> {
        self.tenants.get(&id)
    }

    /// Looks up a recipient address.
    pub fn lookup(&self, address: &str) -> Lookup {
        let Some((_, domain)) = address.rsplit_once('@') else {
            return Lookup::NotOurs;
        };
        let Some(t) = self
            .domains
            .get(&domain_key(domain))
            .and_then(|id| self.tenants.get(id))
        else {
            return Lookup::NotOurs;
        };
        let listed = || t.recipients.contains(&address_key(address));
        let accept = match t.policy {
            RecipientPolicy::CatchAll => true,
            RecipientPolicy::Auto => t.recipients.is_empty() || listed(),
            RecipientPolicy::Verify => listed(),
        };
        if accept {
            Lookup::Accept(t.id)
        } else {
            Lookup::UnknownUser
        }
    }
}

/// The current directory snapshot, swapped whole when the store generation moves.
#[derive(Debug, Default)]
pub struct SharedDirectory(RwLock<Arc<Directory>>);

impl SharedDirectory {
    /// A shared directory starting at `d`.
    pub fn new(d: Directory) -> Self {
        Self(RwLock::new(Arc::new(d)))
    }

    /// The current snapshot.
    pub fn get(&self) -> Arc<Directory> {
        self.0.read().expect("directory lock poisoned").clone()
    }

    /// Replaces the snapshot.
    pub fn set(&self, d: Directory) {
        *self.0.write().expect("directory lock poisoned") = Arc::new(d);
    }
}

/// The form a domain is looked up by: IDNA A-labels (UTS #46 mapping, so upper case, full-width
/// and Unicode forms of one name meet), no trailing dot. `例え.JP`, `xn--r8jz45g.jp` and
/// `XN--R8JZ45G.JP.` are one key. A name IDNA refuses is kept in ASCII lower case: it can only
/// match itself.
pub fn domain_key(domain: &str) -> String {
    let d = domain.trim_end_matches('.');
    if d.is_ascii() {
        // What UTS #46 gives an ASCII name (A-labels are checked, not changed), without its
        // cost on every recipient.
        return d.to_ascii_lowercase();
    }
    match idna::domain_to_ascii(d) {
        Ok(ascii) if !ascii.is_empty() => ascii,
        _ => d.to_ascii_lowercase(),
    }
}

/// The form a recipient address is looked up by: the local part in lower case (Unicode
/// lower case for SMTPUTF8 addresses), `@`, and the [`domain_key`] of the domain.
pub fn address_key(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{}@{}", local.to_lowercase(), domain_key(domain)),
        None => address.to_lowercase(),
    }
}
