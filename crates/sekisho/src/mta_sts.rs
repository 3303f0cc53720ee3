//! MTA-STS policies for direct delivery (RFC 8461 §3, §5): the `_mta-sts` TXT record through
//! the node's resolver, the policy over HTTPS (certificate checked, no redirects, 64 KiB at
//! most, `text/plain`), kept for its `max_age` and fetched again when the record's id moves.
//! A policy that cannot be fetched leaves a cached one in force; without one, none applies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use egress::mta_sts::{Answer, Policy, PolicySource, parse, txt_id};
use egress::mx::MxResolver;
use egress::secrets::BoxFuture;
use egress::tls_report::ResultType;

use crate::mx_dns::NodeDns;

/// Longest policy body read.
const MAX_POLICY_BYTES: usize = 64 * 1024;
/// Time for the whole HTTPS fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);
/// Most domains whose policy is kept.
const MAX_HELD: usize = 10_000;

struct Held {
    id: String,
    policy: Arc<Policy>,
    until: Instant,
}

/// The node's policy source.
pub struct NodeSts {
    dns: Arc<NodeDns>,
    http: reqwest::Client,
    held: Mutex<HashMap<String, Held>>,
}

/// reqwest's resolver: the node's, so `mta-sts.<domain>` is found where its MX is, and a
/// name at a loopback or private address is refused unless such exchangers are allowed (a
/// policy host is anyone's to name; the gateway must not fetch from its own network).
struct Resolver {
    dns: Arc<NodeDns>,
    allow_private: bool,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (dns, allow) = (self.dns.clone(), self.allow_private);
        let host = name.as_str().to_string();
        Box::pin(async move {
            let ips = dns.addresses(&host).await?;
            let usable: Vec<SocketAddr> = ips
                .into_iter()
                .filter(|ip| egress::mx::reachable(*ip, allow))
                .map(|ip| SocketAddr::new(ip, 443))
                .collect();
            if usable.is_empty() {
                return Err(format!("{host} has only local or private addresses").into());
            }
            Ok(Box::new(usable.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// An HTTPS client for hosts that recipient domains name (MTA-STS policy hosts, TLS-RPT
/// report URLs): the node's resolver, no local or private addresses unless such exchangers
/// are allowed, no redirects, HTTPS only, a bounded time; `ca_file` replaces the Web PKI roots.
pub fn https_client(
    dns: Arc<NodeDns>,
    ca_file: Option<&std::path::Path>,
    allow_private: bool,
) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(FETCH_TIMEOUT)
        .https_only(true)
        .dns_resolver(Arc::new(Resolver { dns, allow_private }));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)?;
        b = b.tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem)?);
    }
    Ok(b.build()?)
}

impl NodeSts {
    /// Fetches through `dns`; `ca_file` replaces the Web PKI roots (a private CA).
    pub fn new(
        dns: Arc<NodeDns>,
        ca_file: Option<&std::path::Path>,
        allow_private: bool,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            http: https_client(dns.clone(), ca_file, allow_private)?,
            dns,
            held: Mutex::new(HashMap::new()),
        })
    }

    fn cached(&self, domain: &str, id: Option<&str>) -> Option<Arc<Policy>> {
        let held = self.held.lock().expect("poisoned");
        let h = held.get(domain)?;
        (h.until > Instant::now() && id.is_none_or(|id| id == h.id)).then(|| h.policy.clone())
    }

    async fn fetch(&self, domain: &str) -> Result<Policy, (ResultType, String)> {
        let url = format!("https://mta-sts.{domain}/.well-known/mta-sts.txt");
        let fetch_error = |e: String| (ResultType::StsPolicyFetchError, e);
        let mut resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| (webpki_or_fetch(&e), format!("{url}: {}", error_chain(&e))))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(fetch_error(format!("{url} answered {}", resp.status())));
        }
        let plain = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("text/plain")
            });
        if !plain {
            return Err((
                ResultType::StsPolicyInvalid,
                format!("{url} is not text/plain"),
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fetch_error(e.to_string()))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_POLICY_BYTES {
                return Err((
                    ResultType::StsPolicyInvalid,
                    format!("{url} is larger than {MAX_POLICY_BYTES} bytes"),
                ));
            }
        }
        parse(&String::from_utf8_lossy(&body))
            .map_err(|e| (ResultType::StsPolicyInvalid, format!("{url}: {e}")))
    }

    async fn lookup(&self, domain: &str) -> Answer {
        let policy = |p| Answer {
            policy: p,
            fetch_failed: None,
        };
        let id = match self.dns.txt(&format!("_mta-sts.{domain}")).await {
            Ok(Some(text)) => txt_id(&text),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(domain, error = %e, "MTA-STS record lookup failed; a cached policy stays in force");
                return policy(self.cached(domain, None));
            }
        };
        let Some(id) = id else {
            // No record: a cached policy stays in force until it expires (RFC 8461 §5.1).
            return policy(self.cached(domain, None));
        };
        if let Some(p) = self.cached(domain, Some(&id)) {
            return policy(Some(p));
        }
        match self.fetch(domain).await {
            Ok(fetched) => {
                let fetched = Arc::new(fetched);
                let mut held = self.held.lock().expect("poisoned");
                if held.len() >= MAX_HELD {
                    held.retain(|_, h| h.until > Instant::now());
                }
                if held.len() < MAX_HELD || held.contains_key(domain) {
                    let until = Instant::now() + Duration::from_secs(fetched.max_age);
                    held.insert(
                        domain.to_string(),
                        Held {
                            id,
                            policy: fetched.clone(),
                            until,
                        },
                    );
                }
                policy(Some(fetched))
            }
            Err((why, e)) => {
                tracing::warn!(domain, error = %e, result = %why, "MTA-STS policy not fetched; a cached one stays in force");
                Answer {
                    policy: self.cached(domain, None),
                    fetch_failed: Some(why),
                }
            }
        }
    }
}

/// Whether a failed fetch was the policy host's certificate (`sts-webpki-invalid`) or
/// anything else (`sts-policy-fetch-error`), by the rustls error in the chain, not its text.
fn webpki_or_fetch(e: &reqwest::Error) -> ResultType {
    let bad_certificate = |s: &(dyn std::error::Error + 'static)| {
        matches!(
            s.downcast_ref::<tls::rustls::Error>(),
            Some(tls::rustls::Error::InvalidCertificate(_))
        )
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(mut s) = source {
        // An I/O error's `source()` skips the error it wraps (and reqwest wraps the TLS
        // layer's I/O error in another): look inside each.
        while let Some(inner) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            s = inner;
        }
        if bad_certificate(s) {
            return ResultType::StsWebpkiInvalid;
        }
        source = s.source();
    }
    ResultType::StsPolicyFetchError
}

/// An error with its causes (reqwest's own text hides them).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl PolicySource for NodeSts {
    fn policy(&self, domain: &str) -> BoxFuture<'_, Answer> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        Box::pin(async move { self.lookup(&domain).await })
    }
}
