//! The front door: what every request passes before a handler sees it — the WAF layer, built
//! in. Every limit is a named value with a test that crosses it.
//!
//! - Request limits: URL length, header count and size, body size → 414 / 431 / 413.
//! - Malformed or hostile paths (traversal, encoded dots or slashes, NUL) → 400.
//! - Per-IP rate limit (token bucket) → 429 with `Retry-After`; logins have a tighter bucket.
//! - Probe detection: many 404s or known exploit paths from one address within a minute →
//!   that address is blocked for a while (403), recorded, and a `waf-block` alert raised.
//! - Security headers on every answer: CSP without `unsafe-inline`, HSTS, frame denial,
//!   no sniffing, no referrer, no caching.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Portal;
use crate::listener::ClientAddr;
use crate::problem::Problem;

/// The front door's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest request target (path and query), bytes.
    pub max_url: usize,
    /// Most header fields.
    pub max_headers: usize,
    /// Largest header block (names and values), bytes.
    pub max_header_bytes: usize,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Requests per second per address (sustained), and the burst above it.
    pub rate: f64,
    /// Burst.
    pub burst: f64,
    /// Login attempts per minute per address (sustained); burst is the same number.
    pub logins_per_minute: f64,
    /// Probes (404s, exploit paths, refused requests) from one address within
    /// [`PROBE_WINDOW`] that block it.
    pub probe_threshold: u32,
    /// How long a blocked address stays blocked.
    pub block_for: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_url: 2048,
            max_headers: 64,
            max_header_bytes: 16 * 1024,
            max_body: 64 * 1024,
            rate: 20.0,
            burst: 100.0,
            logins_per_minute: 10.0,
            probe_threshold: 20,
            block_for: Duration::from_secs(600),
        }
    }
}

/// Probes are counted over this window.
pub const PROBE_WINDOW: Duration = Duration::from_secs(60);
/// Most addresses tracked (oldest forgotten first), so a spray of addresses cannot grow memory.
pub const MAX_TRACKED: usize = 100_000;

/// Paths only a scanner asks for.
const EXPLOIT_PATHS: &[&str] = &[
    "/.env",
    "/.git",
    "/wp-admin",
    "/wp-login",
    "/xmlrpc.php",
    "/phpmyadmin",
    "/cgi-bin",
    "/owa/",
    "/ecp/",
    "/autodiscover",
    "/actuator",
    "/server-status",
    "/vendor/phpunit",
    "/boaform",
    "/console",
    "/.aws",
    "/etc/passwd",
];

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, rate_per_s: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate_per_s).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate_per_s))
        }
    }
}

#[derive(Debug, Default)]
struct Peer {
    general: Option<Bucket>,
    login: Option<Bucket>,
    probes: Vec<Instant>,
    blocked_until: Option<Instant>,
    last: Option<Instant>,
}

/// The front door's state: limits and what it knows of each address.
pub struct FrontDoor {
    /// The limits.
    pub limits: Limits,
    peers: Mutex<HashMap<IpAddr, Peer>>,
}

/// What a probe did.
#[derive(Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Counted.
    Counted,
    /// This probe blocked the address.
    Blocked,
}

impl FrontDoor {
    /// A front door with these limits.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            peers: Mutex::new(HashMap::new()),
        }
    }

    fn with_peer<T>(&self, ip: IpAddr, now: Instant, f: impl FnOnce(&mut Peer) -> T) -> T {
        let mut peers = self.peers.lock().expect("front door lock poisoned");
        if peers.len() >= MAX_TRACKED && !peers.contains_key(&ip) {
            // Forget the address seen longest ago.
            if let Some(old) = peers.iter().min_by_key(|(_, p)| p.last).map(|(k, _)| *k) {
                peers.remove(&old);
            }
        }
        let p = peers.entry(ip).or_default();
        p.last = Some(now);
        f(p)
    }

    /// `Some(remaining)` while `ip` is blocked.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        self.with_peer(ip, now, |p| {
            p.blocked_until
                .filter(|u| *u > now)
                .map(|u| u.saturating_duration_since(now))
        })
    }

    /// Takes one request from `ip`'s general bucket; `Err(retry_after)` when empty.
    pub fn rate(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let l = self.limits;
        self.with_peer(ip, now, |p| {
            p.general
                .get_or_insert(Bucket {
                    tokens: l.burst,
                    at: now,
                })
                .take(l.rate, l.burst, now)
        })
    }

    /// Blocks `ip` until `until` (a block another node set, through the store), unless it is
    /// blocked longer already.
    pub fn block_until(&self, ip: IpAddr, until: Instant, now: Instant) {
        self.with_peer(ip, now, |p| {
            if p.blocked_until.is_none_or(|u| u < until) {
                p.blocked_until = Some(until);
            }
        });
    }

    /// Takes one login attempt from `ip`'s login bucket.
    pub fn login_rate(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let per_s = self.limits.logins_per_minute / 60.0;
        let burst = self.limits.logins_per_minute;
        self.with_peer(ip, now, |p| {
            p.login
                .get_or_insert(Bucket {
                    tokens: burst,
                    at: now,
                })
                .take(per_s, burst, now)
        })
    }

    /// Counts a probe from `ip`; blocks it when the window holds the threshold.
    pub fn probe(&self, ip: IpAddr, now: Instant) -> ProbeOutcome {
        let l = self.limits;
        self.with_peer(ip, now, |p| {
            p.probes
                .retain(|t| now.saturating_duration_since(*t) < PROBE_WINDOW);
            p.probes.push(now);
            if p.probes.len() as u32 >= l.probe_threshold
                && p.blocked_until.is_none_or(|u| u <= now)
            {
                p.blocked_until = Some(now + l.block_for);
                p.probes.clear();
                ProbeOutcome::Blocked
            } else {
                ProbeOutcome::Counted
            }
        })
    }
}

/// True for a path only a scanner or an attack would ask for.
pub fn hostile_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains("..")
        || lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains("%00")
        || lower.contains('\\')
        || lower.contains("//")
        || EXPLOIT_PATHS.iter().any(|p| lower.starts_with(p))
}

/// The answer to a request with a NUL character in a field: no text Sekisho keeps may hold
/// one (PostgreSQL refuses it outright; C-string tools cut at it).
pub fn nul_refused() -> Problem {
    Problem::bad_request("a request field contains a NUL character (U+0000): remove it")
}

/// True if a JSON body holds a NUL character (raw or escaped).
pub fn json_has_nul(body: &[u8]) -> bool {
    body.contains(&0) || body.windows(6).any(|w| w == br"\u0000")
}

/// True if a urlencoded form or query holds a NUL character (raw or percent-encoded).
pub fn urlencoded_has_nul(body: &[u8]) -> bool {
    body.contains(&0) || body.windows(3).any(|w| w == b"%00")
}

/// Checks a request's size against the limits (before any handler or body read).
pub fn oversized(req: &Request, l: &Limits) -> Option<Problem> {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > l.max_url {
        return Some(Problem::new(
            StatusCode::URI_TOO_LONG,
            "URL too long",
            format!(
                "the request target has {target} bytes; the limit is {}",
                l.max_url
            ),
        ));
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.as_bytes().len() + 4)
        .sum();
    if headers.len() > l.max_headers || bytes > l.max_header_bytes {
        return Some(Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Headers too large",
            format!(
                "{} header fields of {bytes} bytes; the limits are {} fields and {} bytes",
                headers.len(),
                l.max_headers,
                l.max_header_bytes
            ),
        ));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > l.max_body as u64) {
        return Some(too_large(l.max_body));
    }
    None
}

/// 413 for a body over `max` bytes.
pub fn too_large(max: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Request body too large",
        format!("the limit is {max} bytes"),
    )
}

fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.0.ip())
}

/// Reports a block to the vault, which records it, raises its alert, shares the block with
/// every portal node and counts the storm.
async fn report_block(portal: &Portal, ip: IpAddr) {
    let l = &portal.front.limits;
    tracing::warn!(event = "waf-block", %ip, "blocked after probing requests");
    let block = proto::acts::FrontBlock {
        ip,
        probes: l.probe_threshold,
        window_secs: PROBE_WINDOW.as_secs(),
        block_secs: l.block_for.as_secs(),
    };
    if let Err(e) = portal.vault.front(block).await {
        tracing::error!(error = %e, "the block could not be recorded or shared");
    }
}

/// How often a portal node takes in the blocks other nodes set.
const BLOCK_SYNC_EVERY: Duration = Duration::from_secs(2);

/// Applies blocks set by any portal node (through the store) to this one, until `shutdown`.
pub async fn sync_blocks(portal: Arc<Portal>, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(BLOCK_SYNC_EVERY) => {}
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        match portal.vault.front(proto::acts::FrontBlocks {}).await {
            Ok(blocks) => {
                let now = Instant::now();
                for (ip, until_ms) in blocks {
                    let left = Duration::from_millis((until_ms - now_ms).max(0) as u64);
                    portal.front.block_until(ip, now + left, now);
                }
            }
            Err(e) => tracing::warn!(error = %e, "shared blocks could not be read"),
        }
    }
}

/// The middleware: limits, blocks, rate limits, probe counting, security headers.
pub async fn front_door(State(portal): State<Arc<Portal>>, req: Request, next: Next) -> Response {
    let ip = client_ip(&req);
    let now = Instant::now();
    let front = &portal.front;
    let mut resp = if let Some(left) = front.blocked(ip, now) {
        Problem::forbidden(format!(
            "this address is blocked for {} more seconds after probing requests",
            left.as_secs().max(1)
        ))
        .into_response()
    } else if let Err(wait) = front.rate(ip, now) {
        retry_after(wait)
    } else if let Some(p) = oversized(&req, &front.limits) {
        count_probe(&portal, ip, now).await;
        p.into_response()
    } else if hostile_path(req.uri().path()) {
        count_probe(&portal, ip, now).await;
        Problem::bad_request("this path is not served").into_response()
    } else if req
        .uri()
        .query()
        .is_some_and(|q| urlencoded_has_nul(q.as_bytes()))
    {
        nul_refused().into_response()
    } else if is_login(&req)
        && (front.login_rate(ip, now).is_err() || !cluster_login_allowed(&portal, ip).await)
    {
        retry_after(Duration::from_secs(6))
    } else {
        let r = next.run(req).await;
        if r.status() == StatusCode::NOT_FOUND {
            count_probe(&portal, ip, now).await;
        }
        r
    };
    security_headers(resp.headers_mut());
    resp
}

/// The cluster-wide login limit: attempts from `ip` on every portal node within a minute,
/// counted in the store, stay within what one node's bucket allows in a minute (its burst
/// plus a minute's refill: twice `logins_per_minute`), so more portal nodes give an address
/// no more attempts. A store that cannot count allows the attempt: the per-node bucket and
/// the account lockout still hold.
async fn cluster_login_allowed(portal: &Portal, ip: IpAddr) -> bool {
    match portal
        .vault
        .front(proto::acts::FrontLoginAttempt { ip })
        .await
    {
        Ok(n) => n as f64 <= 2.0 * portal.front.limits.logins_per_minute,
        Err(e) => {
            tracing::warn!(error = %e, "the cluster-wide login count failed");
            true
        }
    }
}

/// A login attempt: the API's, or the web form's.
fn is_login(req: &Request) -> bool {
    req.method() == axum::http::Method::POST
        && matches!(
            req.uri().path(),
            "/api/login" | "/login" | "/api/passkeys/login/begin" | "/api/passkeys/login/finish"
        )
}

async fn count_probe(portal: &Portal, ip: IpAddr, now: Instant) {
    if portal.front.probe(ip, now) == ProbeOutcome::Blocked {
        report_block(portal, ip).await;
    }
}

fn retry_after(wait: Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let mut r = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests",
        format!("slow down: try again in {secs} s"),
    )
    .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// The security headers of every answer.
pub fn security_headers(h: &mut axum::http::HeaderMap) {
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (
            "strict-transport-security",
            "max-age=63072000; includeSubDomains",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[test]
    fn bucket_allows_burst_then_refuses_then_refills() {
        let f = FrontDoor::new(Limits {
            rate: 2.0,
            burst: 3.0,
            ..Limits::default()
        });
        let t = Instant::now();
        for _ in 0..3 {
            assert!(f.rate(ip(1), t).is_ok());
        }
        let wait = f.rate(ip(1), t).unwrap_err();
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        assert!(
            f.rate(ip(2), t).is_ok(),
            "another address has its own bucket"
        );
        assert!(
            f.rate(ip(1), t + Duration::from_millis(600)).is_ok(),
            "refilled"
        );
    }

    #[test]
    fn a_block_from_another_node_holds_until_its_end_and_never_shortens_one() {
        let f = FrontDoor::new(Limits::default());
        let t = Instant::now();
        f.block_until(ip(1), t + Duration::from_secs(30), t);
        assert!(f.blocked(ip(1), t).is_some() && f.blocked(ip(2), t).is_none());
        f.block_until(ip(1), t + Duration::from_secs(5), t);
        assert!(f.blocked(ip(1), t + Duration::from_secs(10)).is_some());
        assert!(f.blocked(ip(1), t + Duration::from_secs(31)).is_none());
    }

    #[test]
    fn probes_block_at_threshold_and_block_expires() {
        let f = FrontDoor::new(Limits {
            probe_threshold: 3,
            block_for: Duration::from_secs(10),
            ..Limits::default()
        });
        let t = Instant::now();
        assert_eq!(f.probe(ip(1), t), ProbeOutcome::Counted);
        assert_eq!(f.probe(ip(1), t), ProbeOutcome::Counted);
        assert!(f.blocked(ip(1), t).is_none());
        assert_eq!(f.probe(ip(1), t), ProbeOutcome::Blocked);
        assert!(f.blocked(ip(1), t).is_some());
        assert!(f.blocked(ip(2), t).is_none());
        assert!(f.blocked(ip(1), t + Duration::from_secs(11)).is_none());
        // Probes spread beyond the window never add up to a block.
        let g = FrontDoor::new(Limits {
            probe_threshold: 2,
            ..Limits::default()
        });
        assert_eq!(g.probe(ip(3), t), ProbeOutcome::Counted);
        assert_eq!(g.probe(ip(3), t + PROBE_WINDOW), ProbeOutcome::Counted);
    }

    #[test]
    fn nul_characters_are_found_raw_escaped_and_percent_encoded() {
        assert!(json_has_nul(br#"{"a":"x\u0000y"}"#) && json_has_nul(b"{\"a\":\"\0\"}"));
        assert!(!json_has_nul(br#"{"a":"x\u0001 %00"}"#));
        assert!(urlencoded_has_nul(b"a=x%00y") && !urlencoded_has_nul(b"a=x%20y&b=%0A"));
    }

    #[test]
    fn hostile_paths() {
        for p in [
            "/../etc/passwd",
            "/api/%2e%2e/x",
            "/a%2fb",
            "/a%00",
            "/.env",
            "/wp-login.php",
            "//api",
            "/a\\b",
        ] {
            assert!(hostile_path(p), "{p}");
        }
        for p in [
            "/",
            "/api/quarantine",
            "/api/quarantine/q-1/release",
            "/enrol",
        ] {
            assert!(!hostile_path(p), "{p}");
        }
    }

    #[test]
    fn size_limits() {
        let l = Limits {
            max_url: 20,
            max_headers: 3,
            max_header_bytes: 100,
            max_body: 10,
            ..Limits::default()
        };
        let req = |uri: &str, headers: &[(&str, &str)]| {
            let mut b = axum::http::Request::builder().uri(uri);
            for (n, v) in headers {
                b = b.header(*n, *v);
            }
            b.body(axum::body::Body::empty()).unwrap()
        };
        assert!(oversized(&req("/ok", &[]), &l).is_none());
        assert_eq!(
            oversized(&req("/aaaaaaaaaaaaaaaaaaaaaaaaa", &[]), &l)
                .unwrap()
                .status,
            StatusCode::URI_TOO_LONG
        );
        let many = [("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")];
        assert_eq!(
            oversized(&req("/", &many), &l).unwrap().status,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let big = "x".repeat(120);
        assert_eq!(
            oversized(&req("/", &[("x", big.as_str())]), &l)
                .unwrap()
                .status,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        assert_eq!(
            oversized(&req("/", &[("content-length", "11")]), &l)
                .unwrap()
                .status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert!(oversized(&req("/", &[("content-length", "10")]), &l).is_none());
    }
}
