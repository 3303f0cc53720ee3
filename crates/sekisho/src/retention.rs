//! Message-trace retention: envelope addresses, delivery events and verdicts are kept for the
//! tenant's `trace_days` (default `[trace] retention`, 90 days), then purged, and each purge is
//! recorded per tenant (`trace-purge`) like quarantine retention (`retention-purge`).

use std::time::Duration;

use store::{Directory, MailStore};

/// The cutoff (Unix seconds) of every tenant at `now`.
pub fn cutoffs(dir: &Directory, default: Duration, now: i64) -> Vec<(i64, i64)> {
    dir.tenants()
        .map(|(id, t)| {
            let keep = t
                .filter
                .trace_days
                .map_or(default.as_secs(), |d| u64::from(d) * 86400);
            (id, now - keep as i64)
        })
        .collect()
}

/// Purges trace records past retention and records what went, per tenant. Returns how many
/// events were purged.
pub async fn purge_trace(
    store: &MailStore,
    dir: &Directory,
    default: Duration,
) -> anyhow::Result<u64> {
    let now = store::unix_now();
    let cutoffs = cutoffs(dir, default, now);
    let purged = store
        .trace_purge(&cutoffs, now - default.as_secs() as i64)
        .await?;
    let mut total = 0;
    for (tenant, n) in purged {
        total += n;
        let cutoff = cutoffs
            .iter()
            .find(|c| c.0 == tenant)
            .map_or(now - default.as_secs() as i64, |c| c.1);
        let reason = format!("{n} trace event(s) from before {cutoff} (Unix time) past retention");
        store
            .record(&store::NewRecord {
                principal: "retention",
                action: "trace-purge",
                tenant_id: (tenant != 0).then_some(tenant),
                reason: &reason,
                outcome: "ok",
                ..store::NewRecord::by(proto::Process::Mx)
            })
            .await?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_days_override_the_default() {
        let mut dir = Directory::new(1);
        for (id, days) in [(1, None), (2, Some(7))] {
            dir.add_tenant(store::TenantInfo {
                id,
                name: format!("t{id}"),
                route: String::new(),
                policy: store::RecipientPolicy::ALL[0],
                recipients: Default::default(),
                domains: Vec::new(),
                filter: store::FilterPolicy {
                    trace_days: days,
                    ..Default::default()
                },
                senders: Vec::new(),
            });
        }
        let mut got = cutoffs(&dir, Duration::from_secs(90 * 86400), 100 * 86400);
        got.sort_unstable();
        assert_eq!(got, vec![(1, 10 * 86400), (2, 93 * 86400)]);
    }
}
