//! The node's watch on the parts its checks depend on (the malware scanner, DNS): when one
//! stops answering, the counters the ingress keeps move, and this raises an alert for the
//! operator — once per outage, repeats counted on it — and logs when mail stops failing. The
//! mail meanwhile gets what the policy says (`451 4.7.1` for mail that needs a scan,
//! `temperror` in `Authentication-Results` for DNS), never a silent pass.

use std::sync::Arc;
use std::time::{Duration, Instant};

use store::MailStore;
use telemetry::{Counter, Metrics};
use tokio_util::sync::CancellationToken;

/// How often the counters are read.
pub const WATCH_EVERY: Duration = Duration::from_secs(5);
/// While a part stays down, its alert is repeated (counted on the same alert) this often.
pub const REPEAT_EVERY: Duration = Duration::from_secs(60);

/// A part the watch follows.
struct Part {
    /// Its name in alerts and logs.
    name: &'static str,
    /// The alert rule raised while it is down.
    rule: &'static str,
    /// What its failure does to mail, for the alert's summary.
    effect: &'static str,
    /// The counter of messages that met the failure.
    counter: fn(&Metrics) -> &Counter,
    /// The counter of messages that needed the part, when one failure alone does not say
    /// the part is down (a remote domain's broken DNS gives a temperror for its mail only):
    /// then the part is down when at least [`MIN_FAILURES`] messages and half of those that
    /// needed it failed within one look.
    needed: Option<fn(&Metrics) -> &Counter>,
    last: u64,
    last_needed: u64,
    down: bool,
    raised: Option<Instant>,
}

/// Failures within one look that can say a shared part is down (see [`Part::needed`]).
pub const MIN_FAILURES: u64 = 3;

impl Part {
    /// Reads the counters: `Some(n)` if the part is down, `n` messages having met the failure
    /// since the last look.
    fn step(&mut self, m: &Metrics) -> Option<u64> {
        let now = (self.counter)(m).get();
        let failed = now - self.last.min(now);
        self.last = now;
        let down = match self.needed {
            None => failed > 0,
            Some(needed) => {
                let now = needed(m).get();
                let asked = now - self.last_needed.min(now);
                self.last_needed = now;
                failed >= MIN_FAILURES && failed * 2 >= asked
            }
        };
        down.then_some(failed)
    }
}

fn parts() -> Vec<Part> {
    vec![
        Part {
            name: "malware scanner",
            rule: "scanner-down",
            effect: "mail that needs a scan gets 451 4.7.1 (or is delivered marked, by policy) until it answers",
            counter: |m| &m.scanner_unavailable,
            needed: None,
            last: 0,
            last_needed: 0,
            down: false,
            raised: None,
        },
        Part {
            name: "DNS resolver",
            rule: "dns-down",
            effect: "SPF, DKIM and DMARC give temperror and the mail is judged without them",
            counter: |m| &m.auth_dns_temperror,
            needed: Some(|m| &m.auth_checked),
            last: 0,
            last_needed: 0,
            down: false,
            raised: None,
        },
    ]
}

/// Runs until `stop`.
pub async fn watch(store: MailStore, metrics: Arc<Metrics>, node: String, stop: CancellationToken) {
    let mut parts = parts();
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for p in &mut parts {
            match p.step(&metrics) {
                Some(n) => {
                    if !p.down {
                        tracing::warn!(
                            part = p.name,
                            messages = n,
                            "a part the checks need is not answering"
                        );
                    }
                    p.down = true;
                    if p.raised.is_none_or(|at| at.elapsed() >= REPEAT_EVERY) {
                        p.raised = Some(Instant::now());
                        raise(&store, &node, p, n).await;
                    }
                }
                None if p.down => {
                    p.down = false;
                    p.raised = None;
                    tracing::info!(part = p.name, "no failure of the part since the last look");
                }
                None => {}
            }
        }
    }
}

async fn raise(store: &MailStore, node: &str, p: &Part, n: u64) {
    let summary = format!(
        "{} on node {node} did not answer for {n} message(s) in the last {}s: {}",
        p.name,
        WATCH_EVERY.as_secs(),
        p.effect
    );
    let alert = store::NewAlert {
        by: proto::Process::Mx,
        rule: p.rule,
        severity: proto::Severity::Warning,
        dedupe_key: &format!("{}:{node}", p.rule),
        principal: node,
        tenant_id: None,
        summary: &summary,
    };
    if let Err(e) = store.alert_raise(&alert).await {
        tracing::error!(error = %e, part = p.name, "the alert for a part that is down could not be raised");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_scanner_failure_is_down_but_dns_needs_most_of_the_mail_failing() {
        let m = Metrics::default();
        let mut p = parts();
        let (scanner, dns) = p.split_at_mut(1);
        let (scanner, dns) = (&mut scanner[0], &mut dns[0]);
        m.scanner_unavailable.inc();
        assert_eq!(scanner.step(&m), Some(1));
        assert_eq!(scanner.step(&m), None, "nothing new: up again");
        // A remote domain's broken DNS: 3 temperrors among 100 messages is not our resolver.
        m.auth_checked.add(100);
        m.auth_dns_temperror.add(3);
        assert_eq!(dns.step(&m), None);
        // Our resolver gone: every message fails.
        m.auth_checked.add(10);
        m.auth_dns_temperror.add(10);
        assert_eq!(dns.step(&m), Some(10));
        // Two failures alone are not enough to say so.
        m.auth_checked.add(2);
        m.auth_dns_temperror.add(2);
        assert_eq!(dns.step(&m), None);
    }
}
