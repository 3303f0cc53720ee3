//! Metrics for every stage of the mail path, rendered in the Prometheus text format at the
//! admin listener's `/metrics`.
//!
//! A deliberate small registry (atomics only) instead of a metrics framework: every metric
//! is declared once in [`Metrics`], so the set of series is fixed and visible in one place.
//!
//! # Security
//! Labels never carry addresses, subjects or any other content: only codes and states.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0, 30.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; 14],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: std::time::Duration) {
        let s = d.as_secs_f64();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if s <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
    /// Observations recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// The verdict labels of `sekisho_verdicts_total`, in the order of [`Metrics::verdicts`].
pub const VERDICTS: [&str; 5] = ["deliver", "tag", "quarantine", "reject", "tempfail"];

/// The policy labels of `sekisho_outbound_tls_sessions_total` (RFC 8460 policy types), in
/// the order of [`Metrics::outbound_tls`].
pub const TLS_POLICIES: [&str; 2] = ["sts", "no-policy-found"];

/// The result labels of `sekisho_outbound_tls_sessions_total`: `success`, then the RFC 8460
/// result types, in the order of [`Metrics::outbound_tls`].
pub const TLS_RESULTS: [&str; 9] = [
    "success",
    "starttls-not-supported",
    "certificate-host-mismatch",
    "certificate-expired",
    "certificate-not-trusted",
    "validation-failure",
    "sts-policy-fetch-error",
    "sts-policy-invalid",
    "sts-webpki-invalid",
];

/// Every metric Sekisho exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// SMTP connections accepted.
    pub smtp_connections: Counter,
    /// SMTP connections refused by a concurrency limit.
    pub smtp_connections_refused: Counter,
    /// SMTP sessions in progress.
    pub smtp_sessions_active: Gauge,
    /// Messages acknowledged with 250.
    pub smtp_messages_accepted: Counter,
    /// Messages refused at or after DATA (size, smuggling, spool failure).
    pub smtp_messages_refused: Counter,
    /// Octets acknowledged.
    pub smtp_bytes_accepted: Counter,
    /// STARTTLS handshakes completed.
    pub smtp_tls_sessions: Counter,
    /// Time from the end of DATA to the 250 (spool commit).
    pub smtp_accept_latency: Histogram,
    /// CPU time of inspection per message (parsing and stages), not counting waits for DNS
    /// or clamd.
    pub inspect_cpu: Histogram,
    /// Recipients delivered.
    pub delivery_delivered: Counter,
    /// Recipient delivery attempts deferred (4xx or connection failure).
    pub delivery_deferred: Counter,
    /// Recipients failed permanently (bounced).
    pub delivery_failed: Counter,
    /// DSNs generated.
    pub delivery_dsn: Counter,
    /// Messages in the queue by state (refreshed on scrape).
    pub queue_active: Gauge,
    /// Deferred messages.
    pub queue_deferred: Gauge,
    /// Held messages.
    pub queue_hold: Gauge,
    /// Corrupt messages.
    pub queue_corrupt: Gauge,
    /// Spool frames synced.
    pub spool_frames: Gauge,
    /// Spool fdatasync calls.
    pub spool_syncs: Gauge,
    /// Trace records that could not be written.
    pub trace_write_errors: Counter,
    /// Verdicts by action: deliver, tag, quarantine, reject, tempfail (in that order).
    pub verdicts: [Counter; 5],
    /// Messages the malware scanner could not be asked about (down, error, deadline).
    pub scanner_unavailable: Counter,
    /// 1 when a malware scanner (clamd) is configured, 0 when only the built-in attachment
    /// policy judges malware.
    pub malware_scanner_configured: Gauge,
    /// Messages whose authentication met a DNS temporary error or its deadline.
    pub auth_dns_temperror: Counter,
    /// Inbound messages authenticated (the denominator of the one above).
    pub auth_checked: Counter,
    /// Outbound TLS sessions by policy type ([`TLS_POLICIES`]) and result ([`TLS_RESULTS`]).
    /// Per recipient domain they are in the store and the portal, not here: a label must not
    /// carry whom the tenants write to.
    pub outbound_tls: [[Counter; 9]; 2],
    /// TLS reports (RFC 8460) sent, by mail or HTTPS.
    pub tls_reports_sent: Counter,
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, v: i64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

fn histogram(o: &mut String, name: &str, help: &str, h: &Histogram) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
        let _ = writeln!(
            o,
            "{name}_bucket{{le=\"{bound}\"}} {}",
            h.buckets[i].load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {}", h.count());
    let _ = writeln!(
        o,
        "{name}_sum {}",
        h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(o, "{name}_count {}", h.count());
}

impl Metrics {
    /// The Prometheus text exposition of all metrics.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        counter(
            &mut o,
            "sekisho_smtp_connections_total",
            "SMTP connections accepted.",
            self.smtp_connections.get(),
        );
        counter(
            &mut o,
            "sekisho_smtp_connections_refused_total",
            "SMTP connections refused by a concurrency limit.",
            self.smtp_connections_refused.get(),
        );
        gauge(
            &mut o,
            "sekisho_smtp_sessions_active",
            "SMTP sessions in progress.",
            self.smtp_sessions_active.get(),
        );
        counter(
            &mut o,
            "sekisho_smtp_messages_accepted_total",
            "Messages acknowledged with 250 after the spool commit.",
            self.smtp_messages_accepted.get(),
        );
        counter(
            &mut o,
            "sekisho_smtp_messages_refused_total",
            "Messages refused at or after DATA.",
            self.smtp_messages_refused.get(),
        );
        counter(
            &mut o,
            "sekisho_smtp_bytes_accepted_total",
            "Octets acknowledged.",
            self.smtp_bytes_accepted.get(),
        );
        counter(
            &mut o,
            "sekisho_smtp_tls_sessions_total",
            "STARTTLS handshakes completed.",
            self.smtp_tls_sessions.get(),
        );
        histogram(
            &mut o,
            "sekisho_smtp_accept_latency_seconds",
            "Time from end of DATA to the 250 reply.",
            &self.smtp_accept_latency,
        );
        histogram(
            &mut o,
            "sekisho_inspect_cpu_seconds",
            "CPU time of inspection per message, without waits for DNS or clamd.",
            &self.inspect_cpu,
        );
        let _ = writeln!(
            o,
            "# HELP sekisho_outbound_tls_sessions_total Outbound TLS sessions by policy type and result (RFC 8460).\n# TYPE sekisho_outbound_tls_sessions_total counter"
        );
        for (policy, row) in TLS_POLICIES.iter().zip(&self.outbound_tls) {
            for (result, c) in TLS_RESULTS.iter().zip(row) {
                let _ = writeln!(
                    o,
                    "sekisho_outbound_tls_sessions_total{{policy=\"{policy}\",result=\"{result}\"}} {}",
                    c.get()
                );
            }
        }
        counter(
            &mut o,
            "sekisho_tls_reports_sent_total",
            "TLS reports (RFC 8460) sent to the domains that ask for them.",
            self.tls_reports_sent.get(),
        );
        let _ = writeln!(
            o,
            "# HELP sekisho_verdicts_total Inspected messages by verdict.\n# TYPE sekisho_verdicts_total counter"
        );
        for (name, c) in VERDICTS.iter().zip(&self.verdicts) {
            let _ = writeln!(
                o,
                "sekisho_verdicts_total{{verdict=\"{name}\"}} {}",
                c.get()
            );
        }
        gauge(
            &mut o,
            "sekisho_malware_scanner_configured",
            if self.malware_scanner_configured.get() > 0 {
                "1: clamd scans mail beside the built-in attachment policy."
            } else {
                "0: malware: built-in policy only (no clamd configured, no virus signatures)."
            },
            self.malware_scanner_configured.get(),
        );
        counter(
            &mut o,
            "sekisho_scanner_unavailable_total",
            "Messages the malware scanner could not be asked about.",
            self.scanner_unavailable.get(),
        );
        counter(
            &mut o,
            "sekisho_auth_checked_total",
            "Inbound messages whose sender was authenticated (SPF, DKIM, DMARC, ARC).",
            self.auth_checked.get(),
        );
        counter(
            &mut o,
            "sekisho_auth_dns_temperror_total",
            "Messages whose SPF, DKIM or DMARC checks met a DNS temporary error or deadline.",
            self.auth_dns_temperror.get(),
        );
        counter(
            &mut o,
            "sekisho_delivery_delivered_total",
            "Recipients delivered.",
            self.delivery_delivered.get(),
        );
        counter(
            &mut o,
            "sekisho_delivery_deferred_total",
            "Recipient attempts deferred.",
            self.delivery_deferred.get(),
        );
        counter(
            &mut o,
            "sekisho_delivery_failed_total",
            "Recipients failed permanently.",
            self.delivery_failed.get(),
        );
        counter(
            &mut o,
            "sekisho_delivery_dsn_total",
            "Delivery status notifications generated.",
            self.delivery_dsn.get(),
        );
        let name = "sekisho_queue_messages";
        let _ = writeln!(
            o,
            "# HELP {name} Messages in the queue by state.\n# TYPE {name} gauge"
        );
        for (state, g) in [
            ("active", &self.queue_active),
            ("deferred", &self.queue_deferred),
            ("hold", &self.queue_hold),
            ("corrupt", &self.queue_corrupt),
        ] {
            let _ = writeln!(o, "{name}{{state=\"{state}\"}} {}", g.get());
        }
        gauge(
            &mut o,
            "sekisho_spool_frames",
            "Spool frames synced since start.",
            self.spool_frames.get(),
        );
        gauge(
            &mut o,
            "sekisho_spool_syncs",
            "Spool fdatasync calls since start.",
            self.spool_syncs.get(),
        );
        counter(
            &mut o,
            "sekisho_trace_write_errors_total",
            "Trace batches that failed to write.",
            self.trace_write_errors.get(),
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.smtp_messages_accepted.add(3);
        m.smtp_accept_latency.observe(Duration::from_millis(3));
        m.queue_deferred.set(2);
        let text = m.render();
        assert!(text.contains("\nsekisho_smtp_messages_accepted_total 3\n"));
        assert!(text.contains("sekisho_smtp_accept_latency_seconds_bucket{le=\"0.002\"} 0\n"));
        assert!(text.contains("sekisho_smtp_accept_latency_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("sekisho_queue_messages{state=\"deferred\"} 2\n"));
        m.verdicts[2].inc();
        let text = m.render();
        assert!(text.contains("sekisho_verdicts_total{verdict=\"quarantine\"} 1\n"));
        assert!(text.contains("sekisho_verdicts_total{verdict=\"deliver\"} 0\n"));
    }
}
