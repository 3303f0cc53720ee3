//! TLS reporting, the node's side (RFC 8460): delivery's session counts written to the store
//! every few seconds, and the daily reports sent. For each policy domain with sessions on a
//! finished UTC day, one node claims the report in the store (so two nodes never both send
//! it), reads the domain's `_smtp._tls` record, and sends the gzipped JSON report to each of
//! its `mailto:` (queued like a DSN) and `https:` destinations (POSTed through the same
//! guarded client as MTA-STS fetches). Rate limits: one report per domain and day, at most
//! three destinations, at most `max_per_run` reports per run. Tenants that opted out are
//! left out of every report.

use std::sync::Arc;
use std::time::Duration;

use egress::tls_report::{Destination, destinations, gzip, report_json, report_mail};
use store::{MailStore, unix_now};
use tokio_util::sync::CancellationToken;

use crate::config::TlsReportConfig;
use crate::mx_dns::NodeDns;

/// How often the session counts go to the store.
const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// Days of session counts kept (the portal shows the last week; reports go out the next day).
const KEEP_DAYS: i64 = 30;

/// What the job needs.
pub struct Reporter {
    /// This node's name (who claimed a report).
    pub node: String,
    /// The shared store.
    pub store: MailStore,
    /// Delivery (its tally; report mail is queued through it).
    pub delivery: Arc<egress::Delivery>,
    /// The node's resolver, for `_smtp._tls` records.
    pub dns: Arc<NodeDns>,
    /// The guarded HTTPS client for `https:` destinations.
    pub http: reqwest::Client,
    /// `[tls_reports]`; `None`: counts are kept (portal, metrics), no report is sent.
    pub cfg: Option<TlsReportConfig>,
    /// For `sekisho_tls_reports_sent_total`.
    pub metrics: Arc<telemetry::Metrics>,
}

impl Reporter {
    /// Flushes counts every few seconds and sends the reports due every `every`, until
    /// `shutdown` (then one last flush).
    pub async fn run(self, shutdown: CancellationToken) {
        let every = self.cfg.as_ref().map(|c| c.every);
        let mut next_pass = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.flush().await;
                    return;
                }
                _ = tokio::time::sleep(FLUSH_EVERY) => {}
            }
            self.flush().await;
            if let Some(every) = every
                && tokio::time::Instant::now() >= next_pass
            {
                next_pass = tokio::time::Instant::now() + every;
                self.pass().await;
            }
        }
    }

    async fn flush(&self) {
        let tally = self.delivery.tls_tally();
        let (rows, dropped) = tally.take();
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "TLS session counts dropped: too many distinct ones between flushes"
            );
        }
        if let Err(e) = self.store.tls_sessions_add(&rows).await {
            tracing::warn!(error = %e, "TLS session counts not written; kept for the next try");
            tally.restore(rows);
        }
    }

    /// One run: old counts pruned, then the reports due sent (at most `max_per_run`).
    async fn pass(&self) {
        let Some(cfg) = &self.cfg else { return };
        let today = unix_now().div_euclid(86_400);
        if let Err(e) = self.store.tls_sessions_prune(today - KEEP_DAYS).await {
            tracing::warn!(error = %e, "old TLS session counts not pruned");
        }
        let due = match self.store.tls_reports_due(today, cfg.max_per_run).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "TLS reports due not read");
                return;
            }
        };
        for (day, domain) in due {
            match self.store.tls_report_claim(day, &domain, &self.node).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "TLS report not claimed");
                    return;
                }
            }
            let outcome = self.report(cfg, day, &domain).await;
            tracing::info!(domain, day, outcome, "TLS report");
            if let Err(e) = self.store.tls_report_outcome(day, &domain, &outcome).await {
                tracing::warn!(error = %e, "TLS report outcome not recorded");
            }
        }
    }

    /// Sends `domain`'s report for `day`; says what came of it.
    async fn report(&self, cfg: &TlsReportConfig, day: i64, domain: &str) -> String {
        let rows = match self.store.tls_sessions_reportable(day, domain).await {
            Ok(r) if r.is_empty() => return "not sent: every session's tenant opted out".into(),
            Ok(r) => r,
            Err(e) => return format!("not sent: counts not read: {e}"),
        };
        let record = match self.dns.txt(&format!("_smtp._tls.{domain}")).await {
            Ok(Some(r)) => r,
            Ok(None) => return "not sent: no TLSRPT record".into(),
            Err(e) => return format!("not sent: TLSRPT record lookup failed: {e}"),
        };
        let dests = match destinations(&record) {
            Some(d) if !d.is_empty() => d,
            _ => return "not sent: no usable rua in the TLSRPT record".into(),
        };
        let id = format!("{}.{}", day, spool::new_queue_id().to_ascii_lowercase());
        let json = report_json(&cfg.submitter, &id, day, domain, &rows);
        let gz = gzip(&json);
        let mut said = Vec::new();
        for d in dests {
            said.push(match self.send(cfg, &d, domain, day, &id, &gz).await {
                Ok(()) => {
                    self.metrics.tls_reports_sent.inc();
                    format!("sent to {}", show(&d))
                }
                Err(e) => format!("not sent to {}: {e}", show(&d)),
            });
        }
        said.join("; ")
    }

    async fn send(
        &self,
        cfg: &TlsReportConfig,
        d: &Destination,
        domain: &str,
        day: i64,
        id: &str,
        gz: &[u8],
    ) -> Result<(), String> {
        match d {
            Destination::Mailto(to) => {
                let mail = report_mail(&cfg.submitter, &cfg.from, to, domain, day, id, gz);
                self.delivery
                    .submit_local(
                        &mail,
                        std::slice::from_ref(to),
                        &format!("TLS report for {domain}"),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Destination::Https(url) => {
                let resp = self
                    .http
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/tlsrpt+gzip")
                    .body(gz.to_vec())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("it answered {}", resp.status()))
                }
            }
        }
    }
}

fn show(d: &Destination) -> String {
    match d {
        Destination::Mailto(a) => format!("mailto:{a}"),
        Destination::Https(u) => u.clone(),
    }
}
