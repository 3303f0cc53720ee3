//! The dashboard: the tenant's mail over the last day, week or month, as SVG charts.

use super::*;

/// The periods the dashboard shows (`?range=24h|7d|30d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub(super) enum Range {
    /// The last 24 hours, per hour.
    #[default]
    #[serde(rename = "24h")]
    Day,
    /// The last 7 days, per day.
    #[serde(rename = "7d")]
    Week,
    /// The last 30 days, per day.
    #[serde(rename = "30d")]
    Month,
}

impl Range {
    const ALL: [Range; 3] = [Range::Day, Range::Week, Range::Month];

    fn hours(self) -> u32 {
        match self {
            Range::Day => 24,
            Range::Week => 7 * 24,
            Range::Month => 30 * 24,
        }
    }

    fn param(self) -> &'static str {
        match self {
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
        }
    }

    fn name(self, l: Lang) -> &'static str {
        match self {
            Range::Day => l.t("24 hours", "24時間"),
            Range::Week => l.t("7 days", "7日間"),
            Range::Month => l.t("30 days", "30日間"),
        }
    }
}

#[derive(Deserialize)]
pub(super) struct DashboardParams {
    #[serde(default)]
    range: Range,
}

/// The flow chart's columns and their labels: per hour for a day, per calendar day (in the
/// language's time zone) for longer ranges.
fn flow(l: Lang, range: Range, from: i64, hourly: &[i64]) -> (Vec<String>, Vec<i64>) {
    let (offset, _) = l.zone();
    if range == Range::Day {
        let labels = (0..hourly.len())
            .map(|i| {
                let hour = (from + offset + i as i64 * 3600).rem_euclid(86_400) / 3600;
                if i % 3 == 0 {
                    format!("{hour:02}:00")
                } else {
                    String::new()
                }
            })
            .collect();
        return (labels, hourly.to_vec());
    }
    let day = |i: usize| (from + offset + i as i64 * 3600).div_euclid(86_400);
    let first = day(0);
    let mut values: Vec<i64> = Vec::new();
    for (i, v) in hourly.iter().enumerate() {
        let d = (day(i) - first) as usize;
        if values.len() <= d {
            values.resize(d + 1, 0);
        }
        values[d] += v;
    }
    let every = if range == Range::Week { 1 } else { 5 };
    let labels = (0..values.len())
        .map(|d| {
            if d % every == 0 {
                let date = l.time_text((first + d as i64) * 86_400 - offset);
                date.get(5..10).unwrap_or("").to_string()
            } else {
                String::new()
            }
        })
        .collect();
    (labels, values)
}

pub(super) async fn dashboard(
    State(p): State<Arc<Portal>>,
    Query(q): Query<DashboardParams>,
    w: WebSession,
) -> Response {
    let l = w.lang;
    let range = q.range;
    let stats = match api::stats_for(&p, &w.s, range.hours()).await {
        Ok(s) => s,
        Err(e) => return w.error(&e),
    };
    let (labels, columns) = flow(l, range, stats.from, &stats.hourly);
    let pairs = |v: &[proto::acts::Count]| -> Vec<(String, i64)> {
        v.iter().map(|c| (c.name.clone(), c.count)).collect()
    };
    let verdicts: Vec<(String, i64)> = stats
        .verdicts
        .iter()
        .map(|c| (verdict_name(l, &c.name), c.count))
        .collect();
    let scope = match &w.s.user.tenant {
        Some(t) => t.clone(),
        None => l.t("all tenants", "全テナント").to_string(),
    };
    let flow_caption = if range == Range::Day {
        l.t("Mail flow per hour", "時間別メール流量")
    } else {
        l.t("Mail flow per day", "日別メール流量")
    };
    let body = html! {
        nav.ranges aria-label=(l.t("Period", "期間")) {
            @for r in Range::ALL {
                @if r == range {
                    strong aria-current="page" { (r.name(l)) }
                } @else {
                    a href={"/dashboard?range=" (r.param())} { (r.name(l)) }
                }
            }
        }
        p.lead { (scope) " · " (l.t("last", "過去")) " " (range.name(l)) " (" (l.zone().1) ") · "
            (stats.total) " " (l.t("messages", "通")) }
        div.charts {
            figure #chart-flow {
                figcaption { (flow_caption) }
                (crate::charts::columns(flow_caption, &labels, &columns))
            }
            figure #chart-verdicts {
                figcaption { (l.t("Verdicts", "判定の内訳")) }
                (crate::charts::bars(l.t("Verdicts", "判定の内訳"), &verdicts, "verdict"))
            }
            figure #chart-senders {
                figcaption { (l.t("Top senders", "送信者上位")) }
                (crate::charts::bars(l.t("Top senders", "送信者上位"), &pairs(&stats.top_senders), "sender"))
            }
            figure #chart-symbols {
                figcaption { (l.t("Top symbols", "シンボル上位")) }
                (crate::charts::bars(l.t("Top symbols", "シンボル上位"), &pairs(&stats.top_symbols), "symbol"))
            }
        }
    };
    w.page(l.t("Dashboard", "ダッシュボード"), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_per_hour_and_longer_ranges_per_day_in_the_languages_zone() {
        // From 2026-12-06 15:00 UTC: one message each hour.
        let from = 1_796_569_200;
        let (labels, values) = flow(Lang::En, Range::Day, from, &[1; 24]);
        assert_eq!(values.len(), 24);
        assert_eq!((labels[0].as_str(), labels[3].as_str()), ("15:00", "18:00"));
        let (labels, _) = flow(Lang::Ja, Range::Day, from, &[1; 24]);
        assert_eq!(labels[0], "00:00"); // midnight in Japan
        // A week per day: UTC days cut the first day at 15:00 (9 hours), Japan's at 00:00.
        let (labels, values) = flow(Lang::En, Range::Week, from, &[1; 168]);
        assert_eq!(values.len(), 8);
        assert_eq!((values[0], values[1], values[7]), (9, 24, 15));
        assert_eq!(labels[0], "12-06");
        let (labels, values) = flow(Lang::Ja, Range::Week, from, &[1; 168]);
        assert_eq!(values, vec![24; 7]);
        assert_eq!(labels[0], "12-07");
        assert_eq!(values.iter().sum::<i64>(), 168);
        let (labels, values) = flow(Lang::Ja, Range::Month, from, &[2; 720]);
        assert_eq!((values.len(), values[0]), (30, 48));
        assert_eq!(labels.iter().filter(|l| !l.is_empty()).count(), 6);
    }
}
