//! What the vault watches as it opens sealed content: canary objects that no legitimate flow
//! ever opens, and bulk reads by one principal. Both raise critical alerts at once; a bulk
//! read also throttles the principal's further opens.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bulk-read detection settings.
#[derive(Debug, Clone, Copy)]
pub struct BulkRule {
    /// More opens than this by one principal…
    pub threshold: usize,
    /// …within this window raise an alert…
    pub window: Duration,
    /// …and refuse the principal's opens for this long.
    pub throttle: Duration,
}

impl Default for BulkRule {
    fn default() -> Self {
        Self {
            threshold: 20,
            window: Duration::from_secs(60),
            throttle: Duration::from_secs(600),
        }
    }
}

/// Per-principal open counting.
#[derive(Default)]
pub struct Opens {
    rule: BulkRule,
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
    throttled: Mutex<HashMap<String, Instant>>,
}

impl Opens {
    /// Counting under `rule`.
    pub fn new(rule: BulkRule) -> Self {
        Self {
            rule,
            ..Default::default()
        }
    }

    /// True while `principal`'s opens are refused.
    pub fn throttled(&self, principal: &str) -> bool {
        let mut t = self.throttled.lock().expect("poisoned");
        match t.get(principal) {
            Some(until) if Instant::now() < *until => true,
            Some(_) => {
                t.remove(principal);
                false
            }
            None => false,
        }
    }

    /// Counts an open; returns the count in the window when it crosses the threshold (the
    /// principal is then throttled).
    pub fn note(&self, principal: &str) -> Option<usize> {
        let now = Instant::now();
        let mut recent = self.recent.lock().expect("poisoned");
        let q = recent.entry(principal.to_string()).or_default();
        q.push_back(now);
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.rule.window)
        {
            q.pop_front();
        }
        if q.len() > self.rule.threshold {
            let n = q.len();
            q.clear();
            self.throttled
                .lock()
                .expect("poisoned")
                .insert(principal.to_string(), now + self.rule.throttle);
            return Some(n);
        }
        None
    }

    /// The rule in force.
    pub fn rule(&self) -> BulkRule {
        self.rule
    }
}

/// Login-failure storm settings: more failed portal logins than `threshold` (any accounts,
/// any addresses) within `window` raise one critical alert — password spraying or credential
/// stuffing, which per-account lockout alone does not show.
#[derive(Debug, Clone, Copy)]
pub struct LoginStormRule {
    /// Failures…
    pub threshold: usize,
    /// …within this window.
    pub window: Duration,
}

impl Default for LoginStormRule {
    fn default() -> Self {
        Self {
            threshold: 20,
            window: Duration::from_secs(300),
        }
    }
}

/// Counts failed logins across the node.
#[derive(Default)]
pub struct LoginFailures {
    rule: LoginStormRule,
    recent: Mutex<VecDeque<(Instant, String, String)>>,
}

impl LoginFailures {
    /// Counting under `rule`.
    pub fn new(rule: LoginStormRule) -> Self {
        Self {
            rule,
            ..Default::default()
        }
    }

    /// The rule in force.
    pub fn rule(&self) -> LoginStormRule {
        self.rule
    }

    /// Counts a failure (`account`, `source` address); when the window holds more than the
    /// threshold, returns (failures, distinct accounts, distinct sources) and starts over.
    pub fn note(&self, account: &str, source: &str) -> Option<(usize, usize, usize)> {
        let now = Instant::now();
        let mut q = self.recent.lock().expect("poisoned");
        q.push_back((now, account.to_string(), source.to_string()));
        while q
            .front()
            .is_some_and(|(t, _, _)| now.duration_since(*t) > self.rule.window)
        {
            q.pop_front();
        }
        if q.len() <= self.rule.threshold {
            return None;
        }
        let accounts: HashSet<&str> = q.iter().map(|(_, a, _)| a.as_str()).collect();
        let sources: HashSet<&str> = q.iter().map(|(_, _, s)| s.as_str()).collect();
        let out = (q.len(), accounts.len(), sources.len());
        q.clear();
        Some(out)
    }
}

/// The network a login came from, for "never seen before" (IPv4 /24, IPv6 /48): a person's
/// address changes within their provider's block more often than across blocks.
pub fn network_of(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
        Err(_) => ip.to_string(),
    }
}

/// The canary registry: ids of decoy quarantine items, kept beside the KEK (not in the
/// database, so nobody reading the database can tell them from real mail).
pub struct Canaries {
    path: PathBuf,
    ids: Mutex<HashSet<String>>,
}

impl Canaries {
    /// Loads the registry next to the KEK.
    pub fn load(kek_path: &Path) -> Self {
        let path = kek_path.with_file_name("canaries");
        let ids = std::fs::read_to_string(&path)
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default();
        Self {
            path,
            ids: Mutex::new(ids),
        }
    }

    /// True if `id` is a canary.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.lock().expect("poisoned").contains(id)
    }

    /// Registers a new canary (appended and synced).
    pub fn add(&self, id: &str) -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        writeln!(f, "{id}")?;
        f.sync_all()?;
        self.ids.lock().expect("poisoned").insert(id.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_failure_storm_crosses_once_and_counts_accounts_and_sources() {
        let f = LoginFailures::new(LoginStormRule {
            threshold: 3,
            window: Duration::from_secs(60),
        });
        assert_eq!(f.note("a", "1.2.3.4"), None);
        assert_eq!(f.note("b", "1.2.3.4"), None);
        assert_eq!(f.note("c", "5.6.7.8"), None);
        assert_eq!(f.note("c", "5.6.7.8"), Some((4, 3, 2)));
        assert_eq!(
            f.note("d", "9.9.9.9"),
            None,
            "counting starts over after an alert"
        );
    }

    #[test]
    fn networks() {
        assert_eq!(network_of("192.0.2.77"), "192.0.2.0/24");
        assert_eq!(network_of("2001:db8:1:2::5"), "2001:db8:1::/48");
        assert_eq!(network_of("192.0.2.1"), network_of("192.0.2.250"));
        assert_ne!(network_of("192.0.2.1"), network_of("192.0.3.1"));
    }

    #[test]
    fn bulk_opens_cross_the_threshold_once_and_throttle() {
        let o = Opens::new(BulkRule {
            threshold: 3,
            window: Duration::from_secs(60),
            throttle: Duration::from_secs(60),
        });
        assert_eq!((o.note("a"), o.note("a"), o.note("a")), (None, None, None));
        assert!(!o.throttled("a"));
        assert_eq!(o.note("b"), None, "per principal");
        assert_eq!(o.note("a"), Some(4));
        assert!(o.throttled("a") && !o.throttled("b"));
    }

    #[test]
    fn opens_outside_the_window_do_not_count() {
        let o = Opens::new(BulkRule {
            threshold: 1,
            window: Duration::from_millis(30),
            throttle: Duration::from_millis(30),
        });
        assert_eq!(o.note("a"), None);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(o.note("a"), None);
        assert_eq!(o.note("a"), Some(2));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!o.throttled("a"), "throttling ends");
    }

    #[test]
    fn canaries_persist() {
        let d = tempfile::tempdir().unwrap();
        let kek = d.path().join("kek");
        let c = Canaries::load(&kek);
        assert!(!c.contains("Q1"));
        c.add("Q1").unwrap();
        assert!(Canaries::load(&kek).contains("Q1"));
    }
}
