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
