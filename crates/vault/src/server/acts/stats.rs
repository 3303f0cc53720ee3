//! Mail-flow statistics and the message trace of a person's scope (a tenant admin's tenant,
//! an operator's whole cluster).

use proto::Refused;
use proto::acts::{
    Count, MailStats, Stats, TlsOutcome, TlsOutcomes, TraceEvent, TraceMessage, TraceSearch,
};

use super::{Caller, Done, MAX_LIST};
use crate::server::Vault;

fn counts(v: Vec<store::Count>) -> Vec<Count> {
    v.into_iter()
        .map(|c| Count {
            name: c.name,
            count: c.count,
        })
        .collect()
}

/// A search field: trimmed, empty as absent, at most `max` characters.
fn field(v: Option<String>, max: usize, what: &str) -> Result<Option<String>, Refused> {
    match v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) {
        Some(v) if v.chars().count() > max => Err(Refused::invalid(format!(
            "{what} is longer than {max} characters"
        ))),
        v => Ok(v),
    }
}

fn trace_view(m: store::TraceMessage) -> TraceMessage {
    TraceMessage {
        id: m.id,
        received_at: m.received_at,
        mail_from: m.mail_from,
        size: m.size,
        client_ip: m.client_ip,
        helo: m.helo,
        tls: m.tls,
        verdict: m.verdict,
        score: m.score,
        symbols: m.symbols,
        events: m
            .events
            .into_iter()
            .map(|e| TraceEvent {
                rcpt: e.rcpt,
                at: e.at,
                event: e.event,
                detail: e.detail,
            })
            .collect(),
    }
}

impl Vault {
    pub(super) async fn stats(&self, c: &Caller, a: Stats) -> Done<MailStats> {
        let tenant = c.admin_scope("statistics are for tenant admins and operators")?;
        if !(1..=744).contains(&a.hours) {
            return Err(Refused::invalid("hours must be 1 to 744 (31 days)").into());
        }
        let m = self
            .store
            .mail_stats(tenant, store::unix_now(), a.hours)
            .await?;
        Ok(MailStats {
            from: m.from,
            hourly: m.hourly,
            verdicts: counts(m.verdicts),
            top_senders: counts(m.top_senders),
            top_symbols: counts(m.top_symbols),
            total: m.total,
            truncated: m.truncated,
        })
    }

    pub(super) async fn tls_outcomes(&self, c: &Caller, a: TlsOutcomes) -> Done<Vec<TlsOutcome>> {
        let tenant = c.admin_scope("outbound TLS outcomes are for tenant admins and operators")?;
        if !(1..=30).contains(&a.days) {
            return Err(Refused::invalid("days must be 1 to 30").into());
        }
        let today = store::unix_now().div_euclid(86_400);
        let since = today - i64::from(a.days) + 1;
        Ok(self
            .store
            .tls_outcomes(since, tenant, MAX_LIST)
            .await?
            .into_iter()
            .map(|o| TlsOutcome {
                domain: o.policy_domain,
                policy: o.policy_type.as_str().into(),
                successful: o.successful,
                failed: o.failed,
                top_failure: o.top_failure,
                last_day: o.last_day,
            })
            .collect())
    }

    pub(super) async fn trace_search(&self, c: &Caller, a: TraceSearch) -> Done<Vec<TraceMessage>> {
        let tenant = c.admin_scope("the message trace is for tenant admins and operators")?;
        if !(1..=MAX_LIST).contains(&a.limit) {
            return Err(Refused::invalid(format!("limit must be 1 to {MAX_LIST}")).into());
        }
        let f = store::TraceFilter {
            rcpt: field(a.rcpt, 254, "rcpt")?,
            mail_from: field(a.from, 254, "from")?,
            id: field(a.id, 64, "id")?,
            tenant,
            limit: a.limit,
        };
        Ok(self
            .store
            .trace(&f)
            .await?
            .into_iter()
            .map(trace_view)
            .collect())
    }
}
