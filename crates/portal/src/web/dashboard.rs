//! The dashboard: the tenant's mail in the last day, as SVG charts.

use super::*;

pub(super) async fn dashboard(State(p): State<Arc<Portal>>, w: WebSession) -> Response {
    let l = w.lang;
    let stats = match api::stats_for(&p, &w.s, DASHBOARD_HOURS).await {
        Ok(s) => s,
        Err(e) => return w.error(&e),
    };
    let labels: Vec<String> = (0..stats.hourly.len())
        .map(|i| {
            let t = stats.from + i as i64 * 3600;
            let hour = t.rem_euclid(86_400) / 3600;
            if i % 3 == 0 {
                format!("{hour:02}:00")
            } else {
                String::new()
            }
        })
        .collect();
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
    let body = html! {
        p.lead { (scope) " · " (l.t("last 24 hours (UTC)", "過去24時間(UTC)")) " · "
            (stats.total) " " (l.t("messages", "通")) }
        div.charts {
            figure #chart-flow {
                figcaption { (l.t("Mail flow per hour", "時間別メール流量")) }
                (crate::charts::columns(l.t("Mail flow per hour", "時間別メール流量"), &labels, &stats.hourly))
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
