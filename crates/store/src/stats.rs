//! Mail-flow statistics for dashboards: messages per hour, verdicts, top senders and top
//! symbols over a window, for one tenant or all. Computed from the message trace.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError};

/// Most trace messages one statistics answer reads (the newest in the window).
pub const MAX_STATS_MESSAGES: i64 = 200_000;
/// How many entries the "top" lists hold.
pub const TOP: usize = 10;

/// A name and how often it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    /// Sender, verdict or symbol.
    pub name: String,
    /// Messages.
    pub count: i64,
}

/// Statistics over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MailStats {
    /// Start of the window (Unix seconds, on an hour boundary).
    pub from: i64,
    /// Messages per hour, oldest first: `hourly[i]` counts the hour starting `from + i·3600`.
    pub hourly: Vec<i64>,
    /// Messages per verdict action (`deliver`, `tag`, `quarantine`, `reject`, …; `none` for
    /// messages not inspected), most frequent first.
    pub verdicts: Vec<Count>,
    /// The most frequent envelope senders (`<>` for bounces).
    pub top_senders: Vec<Count>,
    /// The most frequent evidence symbols.
    pub top_symbols: Vec<Count>,
    /// Messages counted.
    pub total: i64,
    /// The window held more than [`MAX_STATS_MESSAGES`]; only the newest were counted.
    pub truncated: bool,
}

fn top(counts: HashMap<String, i64>, n: usize) -> Vec<Count> {
    let mut v: Vec<Count> = counts
        .into_iter()
        .map(|(name, count)| Count { name, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    v.truncate(n);
    v
}

/// The symbol names of a verdict's `NAME(w), NAME(w)` list (as the trace and the quarantine
pub use proto::verdict::symbol_names;

impl Store {
    /// Statistics of the `hours` hours up to `now` (the current hour included), for one
    /// tenant (messages with an event for it) or for all (`None`).
    pub async fn mail_stats(
        &self,
        tenant: Option<i64>,
        now: i64,
        hours: u32,
    ) -> Result<MailStats, StoreError> {
        let hours = hours.clamp(1, 24 * 31);
        let from = (now - now.rem_euclid(3600)) - (i64::from(hours) - 1) * 3600;
        let rows = sqlx::query(
            "SELECT received_at, coalesce(verdict, 'none'), mail_from, symbols FROM trace_messages m
             WHERE received_at >= $1 AND received_at <= $2
               AND ($3 IS NULL OR EXISTS (SELECT 1 FROM trace_events e WHERE e.message_id = m.id AND e.tenant_id = $3))
             ORDER BY received_at DESC LIMIT $4",
        )
        .bind(from)
        .bind(now)
        .bind(tenant)
        .bind(MAX_STATS_MESSAGES + 1)
        .fetch_all(self.pool())
        .await?;
        let truncated = rows.len() as i64 > MAX_STATS_MESSAGES;
        let mut hourly = vec![0; hours as usize];
        let (mut verdicts, mut senders, mut symbols) =
            (HashMap::new(), HashMap::new(), HashMap::new());
        let mut total = 0;
        for r in rows.iter().take(MAX_STATS_MESSAGES as usize) {
            let at: i64 = r.get(0);
            let slot = ((at - from) / 3600) as usize;
            if let Some(h) = hourly.get_mut(slot) {
                *h += 1;
            }
            total += 1;
            *verdicts.entry(r.get::<String, _>(1)).or_insert(0) += 1;
            let sender: String = r.get(2);
            let sender = if sender.is_empty() {
                "<>".to_string()
            } else {
                sender.to_lowercase()
            };
            *senders.entry(sender).or_insert(0) += 1;
            let list: String = r.get(3);
            for s in symbol_names(&list) {
                *symbols.entry(s.to_string()).or_insert(0) += 1;
            }
        }
        Ok(MailStats {
            from,
            hourly,
            verdicts: top(verdicts, usize::MAX),
            top_senders: top(senders, TOP),
            top_symbols: top(symbols, TOP),
            total,
            truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_names_drop_weights_and_blanks() {
        let names: Vec<&str> =
            symbol_names("GTUBE(1000), BAYES_SPAM(3.5),, MISSING_DATE").collect();
        assert_eq!(names, ["GTUBE", "BAYES_SPAM", "MISSING_DATE"]);
        assert_eq!(symbol_names("").count(), 0);
    }

    #[test]
    fn top_orders_by_count_then_name_and_cuts() {
        let m: HashMap<String, i64> = [("b", 2), ("a", 2), ("c", 5), ("d", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let t = top(m, 3);
        let names: Vec<&str> = t.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["c", "a", "b"]);
    }
}
