//! Detection counters shared by every node through the store: a rule that counts events in a
//! window (bulk opens by one principal, failed logins, addresses blocked by the WAF) sees the
//! events of the whole cluster, not only of the process it runs in, and a throttle or block
//! set by one node holds on all of them.

use std::time::Duration;

use sqlx::Row;

use crate::{Store, StoreError};

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One event for a counter.
#[derive(Debug, Clone, Copy)]
pub struct DetectEvent<'a> {
    /// The rule's counter (`open`, `login-failure`, `waf-block`).
    pub kind: &'a str,
    /// What is counted separately (a principal; `""` for one cluster-wide count).
    pub scope: &'a str,
    /// The account involved, for distinct counts.
    pub account: &'a str,
    /// The source address, for distinct counts.
    pub source: &'a str,
}

/// When a counter fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// At this many events in the window.
    Events(i64),
    /// At this many distinct sources in the window.
    Sources(i64),
}

/// A counter's window when it fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    /// Events.
    pub events: i64,
    /// Distinct accounts.
    pub accounts: i64,
    /// Distinct sources.
    pub sources: i64,
}

/// A day in milliseconds (baselines are kept per UTC day).
const DAY_MS: i64 = 86_400_000;
/// Events are kept this long at most (longer than any rule's window)…
const EVENTS_KEPT_MS: i64 = 7 * DAY_MS;
/// …and day peaks this many days (longer than any baseline looks back).
const PEAK_DAYS_KEPT: i64 = 60;
/// One insert in this many prunes by age across all scopes.
const PRUNE_EVERY: i64 = 128;

/// Most events one [`Store::detect_note_n`] records (more recipients than this in one
/// message count as this many).
pub const MAX_EVENTS_AT_ONCE: usize = 1000;

/// A scope's history for its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Baseline {
    /// The highest window count on a day the rule did not fire.
    pub peak: i64,
    /// Days with events (and no firing) behind it.
    pub days: i64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Counts `e` at `now_ms`; when the events in `window` (since the counter last fired)
    /// reach `trigger`, returns the window's counts and starts the counter over — once per
    /// burst, whichever node saw its last event.
    pub async fn detect_note(
        &self,
        e: &DetectEvent<'_>,
        window: Duration,
        trigger: Trigger,
        now_ms: i64,
    ) -> Result<Option<WindowCount>, StoreError> {
        self.detect_note_n(e, 1, window, trigger, now_ms).await
    }

    /// [`Store::detect_note`] for `n` events at once (a message's recipients), at most
    /// `MAX_EVENTS_AT_ONCE` (1000).
    pub async fn detect_note_n(
        &self,
        e: &DetectEvent<'_>,
        n: usize,
        window: Duration,
        trigger: Trigger,
        now_ms: i64,
    ) -> Result<Option<WindowCount>, StoreError> {
        let mut tx = self.write_tx().await?;
        let from = now_ms.saturating_sub(ms(window));
        for _ in 0..n.clamp(1, MAX_EVENTS_AT_ONCE) {
            Self::detect_insert(&mut tx, e, from, now_ms).await?;
        }
        let reset: Option<i64> =
            sqlx::query_scalar("SELECT reset_ms FROM detect_marks WHERE kind = $1 AND scope = $2")
                .bind(e.kind)
                .bind(e.scope)
                .fetch_optional(&mut *tx)
                .await?;
        let since = from.max(reset.unwrap_or(0));
        let count = Self::detect_count(&mut tx, e, since).await?;
        let fired = match trigger {
            Trigger::Events(n) => count.events >= n,
            Trigger::Sources(n) => count.sources >= n,
        };
        // The day's peak of this scope, for its baseline (a day the rule fired is marked).
        sqlx::query(
            "INSERT INTO detect_peaks (kind, scope, day, peak, fired) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (kind, scope, day) DO UPDATE SET
                 peak = CASE WHEN detect_peaks.peak > $4 THEN detect_peaks.peak ELSE $4 END,
                 fired = CASE WHEN detect_peaks.fired > $5 THEN detect_peaks.fired ELSE $5 END",
        )
        .bind(e.kind)
        .bind(e.scope)
        .bind(now_ms.div_euclid(DAY_MS))
        .bind(count.events)
        .bind(i64::from(fired))
        .execute(&mut *tx)
        .await?;
        if fired {
            sqlx::query(
                "INSERT INTO detect_marks (kind, scope, reset_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (kind, scope) DO UPDATE SET reset_ms = $3",
            )
            .bind(e.kind)
            .bind(e.scope)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(fired.then_some(count))
    }

    /// Counts `e` at `now_ms` and returns the events of its scope in `window`, this one
    /// included: a rate limit every node shares (`count > limit` refuses).
    pub async fn rate_hit(
        &self,
        e: &DetectEvent<'_>,
        window: Duration,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.write_tx().await?;
        let from = now_ms.saturating_sub(ms(window));
        Self::detect_insert(&mut tx, e, from, now_ms).await?;
        let count = Self::detect_count(&mut tx, e, from).await?;
        tx.commit().await?;
        Ok(count.events)
    }

    /// Prunes `e`'s scope to the window starting after `from` and adds `e`.
    async fn detect_insert(
        tx: &mut crate::Tx,
        e: &DetectEvent<'_>,
        from: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM detect_events WHERE kind = $1 AND scope = $2 AND at_ms <= $3")
            .bind(e.kind)
            .bind(e.scope)
            .bind(from)
            .execute(&mut **tx)
            .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO detect_events (kind, scope, account, source, at_ms) VALUES ($1, $2, $3, $4, $5)
             RETURNING id",
        )
        .bind(e.kind)
        .bind(e.scope)
        .bind(e.account)
        .bind(e.source)
        .bind(now_ms)
        .fetch_one(&mut **tx)
        .await?;
        // Now and then, everything older than any rule looks back, in every scope.
        if id % PRUNE_EVERY == 0 {
            sqlx::query("DELETE FROM detect_events WHERE at_ms <= $1")
                .bind(now_ms.saturating_sub(EVENTS_KEPT_MS))
                .execute(&mut **tx)
                .await?;
            sqlx::query("DELETE FROM detect_peaks WHERE day < $1")
                .bind(now_ms.div_euclid(DAY_MS) - PEAK_DAYS_KEPT)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// The events of `e`'s scope after `since`.
    async fn detect_count(
        tx: &mut crate::Tx,
        e: &DetectEvent<'_>,
        since: i64,
    ) -> Result<WindowCount, StoreError> {
        let r = sqlx::query(
            "SELECT count(*), count(DISTINCT account), count(DISTINCT source) FROM detect_events
             WHERE kind = $1 AND scope = $2 AND at_ms > $3",
        )
        .bind(e.kind)
        .bind(e.scope)
        .bind(since)
        .fetch_one(&mut **tx)
        .await?;
        Ok(WindowCount {
            events: r.get(0),
            accounts: r.get(1),
            sources: r.get(2),
        })
    }

    /// The history of `scope` of `kind` over the `days` days before `now_ms`'s day (today
    /// not included, nor days on which the rule fired).
    pub async fn detect_baseline(
        &self,
        kind: &str,
        scope: &str,
        days: i64,
        now_ms: i64,
    ) -> Result<Baseline, StoreError> {
        let today = now_ms.div_euclid(DAY_MS);
        let r = sqlx::query(
            "SELECT coalesce(max(peak), 0), count(*) FROM detect_peaks
             WHERE kind = $1 AND scope = $2 AND day < $3 AND day >= $4 AND fired = 0",
        )
        .bind(kind)
        .bind(scope)
        .bind(today)
        .bind(today - days)
        .fetch_one(self.pool())
        .await?;
        Ok(Baseline {
            peak: r.get(0),
            days: r.get(1),
        })
    }

    /// Throttles (or blocks) `scope` of `kind` on every node until `until_ms`.
    pub async fn detect_throttle(
        &self,
        kind: &str,
        scope: &str,
        until_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO detect_marks (kind, scope, until_ms) VALUES ($1, $2, $3)
             ON CONFLICT (kind, scope) DO UPDATE SET until_ms = $3",
        )
        .bind(kind)
        .bind(scope)
        .bind(until_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Until when `scope` of `kind` is throttled, if it is at `now_ms`.
    pub async fn detect_throttled(
        &self,
        kind: &str,
        scope: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let until: Option<i64> =
            sqlx::query_scalar("SELECT until_ms FROM detect_marks WHERE kind = $1 AND scope = $2")
                .bind(kind)
                .bind(scope)
                .fetch_optional(self.pool())
                .await?;
        Ok(until.filter(|u| *u > now_ms))
    }

    /// Every scope of `kind` throttled at `now_ms`, with its end.
    pub async fn detect_throttles(
        &self,
        kind: &str,
        now_ms: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT scope, until_ms FROM detect_marks WHERE kind = $1 AND until_ms > $2 ORDER BY scope",
        )
        .bind(kind)
        .bind(now_ms)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
