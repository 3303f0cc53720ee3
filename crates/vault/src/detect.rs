//! What the vault watches as it opens sealed content: canary objects that no legitimate flow
//! ever opens, and bulk reads by one principal. Both raise critical alerts at once; a bulk
//! read also throttles the principal's further opens.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

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

/// Days of history a principal's baseline looks back over…
pub const BASELINE_DAYS: i64 = 14;
/// …and how many days with opens it needs before it replaces the configured threshold.
pub const BASELINE_MIN_DAYS: i64 = 3;
/// With a baseline the threshold is this many times the principal's highest ordinary window…
pub const BASELINE_FACTOR: i64 = 3;
/// …never below this…
pub const BASELINE_FLOOR: i64 = 5;
/// …nor above this many times the configured threshold.
pub const BASELINE_CAP: i64 = 10;

impl BulkRule {
    /// The threshold for a principal with history `b`: the configured one until the
    /// principal has [`BASELINE_MIN_DAYS`] ordinary days, then three times the most it ever
    /// opened within one window on such a day (at least [`BASELINE_FLOOR`], at most
    /// [`BASELINE_CAP`] times the configured threshold). A reviewer who opens forty messages
    /// every morning is not alerted for it; a quiet account that suddenly opens twenty is.
    pub fn threshold_for(&self, b: store::Baseline) -> usize {
        if b.days < BASELINE_MIN_DAYS {
            return self.threshold;
        }
        let cap = (self.threshold as i64).saturating_mul(BASELINE_CAP).max(1);
        b.peak
            .saturating_mul(BASELINE_FACTOR)
            .max(BASELINE_FLOOR)
            .min(cap) as usize
    }
}

/// Per-principal open counting, through the store: every vault of a cluster counts the
/// same opens and honours the same throttle.
#[derive(Default)]
pub struct Opens {
    rule: BulkRule,
}

/// The store counter of opens.
const OPEN_KIND: &str = "open";

impl Opens {
    /// Counting under `rule`.
    pub fn new(rule: BulkRule) -> Self {
        Self { rule }
    }

    /// True while `principal`'s opens are refused (on any node). A store that cannot answer
    /// throttles (fail closed).
    pub async fn throttled(&self, store: &store::Store, principal: &str) -> bool {
        store
            .detect_throttled(OPEN_KIND, principal, store::unix_now_ms())
            .await
            .map_or(true, |until| until.is_some())
    }

    /// Counts an open; returns the count in the window and the principal's threshold when
    /// the count crosses it (the principal is then throttled on every node).
    pub async fn note(&self, store: &store::Store, principal: &str) -> Option<(usize, usize)> {
        let now = store::unix_now_ms();
        let threshold = match store
            .detect_baseline(OPEN_KIND, principal, BASELINE_DAYS, now)
            .await
        {
            Ok(b) => self.rule.threshold_for(b),
            Err(e) => {
                tracing::error!(error = %e, "the principal's baseline could not be read");
                self.rule.threshold
            }
        };
        let event = store::DetectEvent {
            kind: OPEN_KIND,
            scope: principal,
            account: principal,
            source: "",
        };
        let trigger = store::Trigger::Events(threshold as i64 + 1);
        match store
            .detect_note(&event, self.rule.window, trigger, now)
            .await
        {
            Ok(Some(count)) => {
                let until = now.saturating_add(self.rule.throttle.as_millis() as i64);
                if let Err(e) = store.detect_throttle(OPEN_KIND, principal, until).await {
                    tracing::error!(error = %e, "the bulk-read throttle could not be stored");
                }
                Some((count.events as usize, threshold))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "the open could not be counted");
                None
            }
        }
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

/// Counts failed logins across the cluster, through the store.
#[derive(Default)]
pub struct LoginFailures {
    rule: LoginStormRule,
}

impl LoginFailures {
    /// Counting under `rule`.
    pub fn new(rule: LoginStormRule) -> Self {
        Self { rule }
    }

    /// The rule in force.
    pub fn rule(&self) -> LoginStormRule {
        self.rule
    }

    /// Counts a failure (`account`, `source` address); when the window holds more than the
    /// threshold, returns (failures, distinct accounts, distinct sources) and starts over.
    pub async fn note(
        &self,
        store: &store::Store,
        account: &str,
        source: &str,
    ) -> Option<(usize, usize, usize)> {
        let event = store::DetectEvent {
            kind: "login-failure",
            scope: "",
            account,
            source,
        };
        let trigger = store::Trigger::Events(self.rule.threshold as i64 + 1);
        match store
            .detect_note(&event, self.rule.window, trigger, store::unix_now_ms())
            .await
        {
            Ok(c) => c.map(|c| (c.events as usize, c.accounts as usize, c.sources as usize)),
            Err(e) => {
                tracing::error!(error = %e, "the failed login could not be counted");
                None
            }
        }
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

/// `HH:MM` as minutes after midnight (`24:00` allowed as the end of a day).
pub fn time_of_day(t: &str) -> Result<u32, String> {
    let (h, m) = t
        .trim()
        .split_once(':')
        .ok_or_else(|| format!("{t:?} is not HH:MM"))?;
    let (h, m): (u32, u32) = (
        h.parse().map_err(|_| format!("{t:?} is not HH:MM"))?,
        m.parse().map_err(|_| format!("{t:?} is not HH:MM"))?,
    );
    if h > 24 || m > 59 || (h == 24 && m != 0) {
        return Err(format!("{t:?} is not a time of day"));
    }
    Ok(h * 60 + m)
}

/// `+HH:MM` / `-HH:MM` as minutes east of UTC (at most ±14:00).
pub fn utc_offset(offset: &str) -> Result<i32, String> {
    let off = offset.trim();
    let (sign, rest) = match off.chars().next() {
        Some('+') => (1, &off[1..]),
        Some('-') => (-1, &off[1..]),
        _ => return Err(format!("utc offset {offset:?}: write +HH:MM or -HH:MM")),
    };
    let minutes = time_of_day(rest).map_err(|_| format!("utc offset {offset:?}: write +HH:MM"))?;
    if minutes > 14 * 60 {
        return Err(format!("utc offset {offset:?} is beyond ±14:00"));
    }
    Ok(sign * minutes as i32)
}

/// Operators' working hours: an operator's (or the local CLI's) content open outside them is
/// raised as `operator-off-hours`. Times are local to `utc_offset_minutes` (Japan: +540).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkingHours {
    /// Start, minutes after local midnight.
    pub start: u32,
    /// End (exclusive), minutes after local midnight; before `start` means past midnight.
    pub end: u32,
    /// Working days, Monday first.
    pub days: [bool; 7],
    /// The local time zone's offset from UTC.
    pub utc_offset_minutes: i32,
}

impl WorkingHours {
    /// Parses `HH:MM-HH:MM`, a day list (`mon-fri`, `mon,wed,sat`, `all`) and `+HH:MM`.
    pub fn parse(hours: &str, days: &str, offset: &str) -> Result<Self, String> {
        let minutes = time_of_day;
        let (a, b) = hours
            .split_once('-')
            .ok_or_else(|| format!("working hours {hours:?}: write HH:MM-HH:MM"))?;
        let (start, end) = (minutes(a)?, minutes(b)?);
        if start == end {
            return Err(format!("working hours {hours:?} are empty"));
        }
        const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let day = |d: &str| -> Result<usize, String> {
            NAMES
                .iter()
                .position(|n| *n == d.trim().to_ascii_lowercase())
                .ok_or_else(|| format!("{d:?} is not a day (mon … sun)"))
        };
        let mut set = [false; 7];
        for part in days.split(',') {
            let part = part.trim();
            if part.eq_ignore_ascii_case("all") {
                set = [true; 7];
            } else if let Some((x, y)) = part.split_once('-') {
                let (x, y) = (day(x)?, day(y)?);
                let mut d = x;
                loop {
                    set[d] = true;
                    if d == y {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            } else {
                set[day(part)?] = true;
            }
        }
        Ok(Self {
            start,
            end,
            days: set,
            utc_offset_minutes: utc_offset(offset)?,
        })
    }

    /// True if `unix` (seconds) falls within the working hours.
    pub fn contains(&self, unix: i64) -> bool {
        let local = unix + i64::from(self.utc_offset_minutes) * 60;
        let minute = (local.rem_euclid(86_400) / 60) as u32;
        // 1970-01-01 was a Thursday (index 3, Monday first).
        let weekday = ((local.div_euclid(86_400) + 3).rem_euclid(7)) as usize;
        if self.start < self.end {
            self.days[weekday] && (self.start..self.end).contains(&minute)
        } else if minute >= self.start {
            self.days[weekday]
        } else {
            // Past midnight: the shift began the day before.
            minute < self.end && self.days[(weekday + 6) % 7]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_hours_follow_the_local_clock_and_days() {
        let w = WorkingHours::parse("09:00-18:00", "mon-fri", "+09:00").unwrap();
        // 2026-12-02 (a Wednesday) 00:30 UTC is 09:30 in Japan.
        let wed_0930_jst = 1_796_171_400;
        assert!(w.contains(wed_0930_jst));
        assert!(!w.contains(wed_0930_jst - 3600)); // 08:30
        assert!(!w.contains(wed_0930_jst + 9 * 3600)); // 18:30
        assert!(!w.contains(wed_0930_jst + 3 * 86_400)); // Saturday 09:30
        let night = WorkingHours::parse("22:00-06:00", "mon", "+00:00").unwrap();
        let mon_2300 = 1_796_079_600; // 2026-11-30 (a Monday) 23:00 UTC
        assert!(night.contains(mon_2300));
        assert!(night.contains(mon_2300 + 2 * 3600)); // Tuesday 01:00, the shift of Monday
        assert!(!night.contains(mon_2300 + 7 * 3600)); // Tuesday 06:00
        for (h, d, o) in [
            ("9-18", "mon", "+00:00"),
            ("09:00-09:00", "mon", "+00:00"),
            ("09:00-18:00", "someday", "+00:00"),
            ("09:00-18:00", "mon", "09:00"),
            ("25:00-26:00", "mon", "+00:00"),
            ("09:00-18:00", "mon", "+15:00"),
        ] {
            assert!(WorkingHours::parse(h, d, o).is_err(), "{h} {d} {o}");
        }
        let all = WorkingHours::parse("00:00-24:00", "all", "-05:30").unwrap();
        assert!(all.contains(0) && all.contains(wed_0930_jst));
    }

    #[test]
    fn networks() {
        assert_eq!(network_of("192.0.2.77"), "192.0.2.0/24");
        assert_eq!(network_of("2001:db8:1:2::5"), "2001:db8:1::/48");
        assert_eq!(network_of("192.0.2.1"), network_of("192.0.2.250"));
        assert_ne!(network_of("192.0.2.1"), network_of("192.0.3.1"));
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

    // The counters live in the store: each test runs on SQLite and on PostgreSQL.
    async fn scratch(engine: store::Engine) -> (tempfile::TempDir, store::Store) {
        let d = tempfile::tempdir().unwrap();
        let (s, _) = store::testing::scratch(engine, d.path()).await;
        (d, s)
    }

    async fn login_failure_storm_crosses_once_and_counts_accounts_and_sources(
        engine: store::Engine,
    ) {
        let (_d, s) = scratch(engine).await;
        let f = LoginFailures::new(LoginStormRule {
            threshold: 3,
            window: Duration::from_secs(60),
        });
        assert_eq!(f.note(&s, "a", "1.2.3.4").await, None);
        assert_eq!(f.note(&s, "b", "1.2.3.4").await, None);
        assert_eq!(f.note(&s, "c", "5.6.7.8").await, None);
        assert_eq!(f.note(&s, "c", "5.6.7.8").await, Some((4, 3, 2)));
        assert_eq!(
            f.note(&s, "d", "9.9.9.9").await,
            None,
            "counting starts over after an alert"
        );
    }

    async fn bulk_opens_cross_the_threshold_once_and_throttle(engine: store::Engine) {
        let (_d, s) = scratch(engine).await;
        let o = Opens::new(BulkRule {
            threshold: 3,
            window: Duration::from_secs(60),
            throttle: Duration::from_secs(60),
        });
        for _ in 0..3 {
            assert_eq!(o.note(&s, "a").await, None);
        }
        assert!(!o.throttled(&s, "a").await);
        assert_eq!(o.note(&s, "b").await, None, "per principal");
        assert_eq!(o.note(&s, "a").await, Some((4, 3)));
        assert!(o.throttled(&s, "a").await && !o.throttled(&s, "b").await);
        // A second vault on the same store (another node) honours the throttle and shares
        // the count.
        let other = Opens::new(o.rule());
        assert!(other.throttled(&s, "a").await);
        for _ in 0..3 {
            assert_eq!(o.note(&s, "c").await, None);
        }
        assert_eq!(
            other.note(&s, "c").await,
            Some((4, 3)),
            "opens on both nodes count"
        );
    }

    async fn opens_outside_the_window_do_not_count(engine: store::Engine) {
        let (_d, s) = scratch(engine).await;
        let o = Opens::new(BulkRule {
            threshold: 1,
            window: Duration::from_millis(300),
            throttle: Duration::from_millis(300),
        });
        assert_eq!(o.note(&s, "a").await, None);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(o.note(&s, "a").await, None);
        assert_eq!(o.note(&s, "a").await, Some((2, 1)));
        assert!(o.throttled(&s, "a").await);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!o.throttled(&s, "a").await, "throttling ends");
    }

    #[test]
    fn a_baseline_replaces_the_threshold_after_three_ordinary_days() {
        let rule = BulkRule {
            threshold: 20,
            ..BulkRule::default()
        };
        let b = |peak, days| store::Baseline { peak, days };
        assert_eq!(rule.threshold_for(b(40, 2)), 20, "too little history");
        assert_eq!(rule.threshold_for(b(40, 3)), 120, "a busy reviewer");
        assert_eq!(
            rule.threshold_for(b(1, 10)),
            5,
            "a quiet account: the floor"
        );
        assert_eq!(rule.threshold_for(b(1000, 10)), 200, "the cap");
        let tiny = BulkRule {
            threshold: 0,
            ..BulkRule::default()
        };
        assert_eq!(tiny.threshold_for(b(3, 5)), 1, "never a panic, never zero");
    }

    /// Ordinary days teach the rule a principal's peak; a day it fired teaches nothing.
    async fn a_principal_s_history_sets_its_threshold(engine: store::Engine) {
        let (_d, s) = scratch(engine).await;
        let rule = BulkRule {
            threshold: 3,
            window: Duration::from_secs(60),
            throttle: Duration::from_secs(60),
        };
        let day = 86_400_000;
        let today = store::unix_now_ms();
        let event = store::DetectEvent {
            kind: "open",
            scope: "user:reviewer",
            account: "user:reviewer",
            source: "",
        };
        // Three ordinary days with 3 opens within a minute…
        for d in (4..=6).rev() {
            for i in 0..3 {
                let at = today - d * day + i;
                let _ = s
                    .detect_note(&event, rule.window, store::Trigger::Events(99), at)
                    .await
                    .unwrap();
            }
        }
        // …and three later days on which the rule fired at 4 (left out of the baseline).
        for d in (1..=3).rev() {
            for i in 0..4 {
                let at = today - d * day + i;
                let _ = s
                    .detect_note(&event, rule.window, store::Trigger::Events(4), at)
                    .await
                    .unwrap();
            }
        }
        let b = s
            .detect_baseline("open", "user:reviewer", 14, today)
            .await
            .unwrap();
        assert_eq!(b, store::Baseline { peak: 3, days: 3 });
        // Its threshold is now 9: nine opens pass, the tenth fires.
        let o = Opens::new(rule);
        for _ in 0..9 {
            assert_eq!(o.note(&s, "user:reviewer").await, None);
        }
        assert_eq!(o.note(&s, "user:reviewer").await, Some((10, 9)));
        // A principal without history keeps the configured threshold.
        for _ in 0..3 {
            assert_eq!(o.note(&s, "user:new").await, None);
        }
        assert_eq!(o.note(&s, "user:new").await, Some((4, 3)));
    }

    store::engine_matrix!(
        a_principal_s_history_sets_its_threshold,
        login_failure_storm_crosses_once_and_counts_accounts_and_sources,
        bulk_opens_cross_the_threshold_once_and_throttle,
        opens_outside_the_window_do_not_count,
    );
}
