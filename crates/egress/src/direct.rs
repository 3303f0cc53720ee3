//! Direct delivery (RFC 5321 §5) to a recipient domain's mail exchangers, under its MTA-STS
//! policy (RFC 8461), with every new connection's TLS outcome counted for TLS reporting
//! (RFC 8460).

use std::net::IpAddr;
use std::sync::Arc;

use proto::route::{SmtpRoute, TlsPolicy};
use spool::MessageMeta;
use store::tls_report::PolicyType;

use crate::client::Failure;
use crate::mta_sts::{Mode, Policy};
use crate::tls_report::{Failed, ResultType, Session};
use crate::{Delivery, MAX_MX_ADDRESSES, MAX_MX_HOSTS, Outcome, mta_sts, mx};

/// How an exchanger's TLS is held to the domain's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// No policy binds: TLS if offered, clear text otherwise.
    Opportunistic,
    /// An enforced policy (or REQUIRETLS): a certificate valid for the name, or no delivery.
    Enforced,
    /// A policy in testing mode listing it: verified, and delivered anyway when that fails
    /// (the failure is reported).
    Probed,
    /// A policy in testing mode not listing it: delivered, and reported.
    Unlisted,
}

/// The exchangers to try, how each is checked, and the policy judged by.
struct Plan {
    hosts: Vec<(String, Check)>,
    policy: (PolicyType, String),
    /// Whether sessions are counted (not when the sender waived the policy).
    counted: bool,
}

impl Delivery {
    /// Direct delivery to `domain`'s mail exchangers in preference order, each of their
    /// addresses in turn, until one answers the transaction (its replies stand, whatever
    /// they are). `Err` is one outcome for every recipient.
    pub(crate) async fn deliver_mx(
        &self,
        meta: &MessageMeta,
        body: &Arc<Vec<u8>>,
        domain: &str,
        idx: &[usize],
    ) -> Result<Vec<Outcome>, Outcome> {
        let Some(resolver) = self.resolver.get() else {
            return Err(Outcome::Temporary(
                "451 4.4.3 direct delivery has no DNS resolver".into(),
            ));
        };
        let answer = resolver.mx(domain).await.map_err(|e| {
            Outcome::Temporary(format!("451 4.4.3 MX lookup for {domain} failed: {e}"))
        })?;
        let hosts = match mx::plan(domain, answer) {
            mx::Plan::Refuse(reply) => return Err(Outcome::Permanent(reply)),
            mx::Plan::Try(hosts) => hosts,
        };
        // RFC 8689 §5: the sender may waive the domain's TLS policy for this message (never
        // together with REQUIRETLS, which asks the opposite).
        let waived = !meta.envelope.require_tls && mta_sts::tls_required_no(body);
        let tenant = idx
            .first()
            .map(|&i| meta.envelope.rcpts[i].tenant)
            .unwrap_or(0);
        let plan = self
            .sts_hosts(domain, tenant, hosts, meta.envelope.require_tls, waived)
            .await?;
        let mut last = format!("451 4.4.1 no mail exchanger of {domain} answered");
        for (host, check) in plan.hosts.iter().take(MAX_MX_HOSTS) {
            let ips = match resolver.addresses(host).await {
                Ok(ips) => ips,
                Err(e) => {
                    last = format!("451 4.4.3 mail exchanger {host}: {e}");
                    continue;
                }
            };
            let usable: Vec<_> = ips
                .into_iter()
                .filter(|ip| mx::reachable(*ip, self.cfg.allow_private_mx))
                .take(MAX_MX_ADDRESSES)
                .collect();
            if usable.is_empty() {
                last =
                    format!("451 4.4.4 mail exchanger {host} has only local or private addresses");
            }
            for ip in usable {
                let attempt = Attempt {
                    domain,
                    host,
                    ip,
                    tenant,
                    plan: &plan,
                };
                match self.try_exchanger(meta, body, idx, &attempt, *check).await {
                    Ok(each) => return Ok(each),
                    Err(Failure::Permanent(p)) => return Err(Outcome::Permanent(p)),
                    Err(f) => last = format!("{} (mail exchanger {host})", f.text()),
                }
            }
        }
        Err(Outcome::Temporary(last))
    }

    /// One exchanger address, checked as `check` says; its TLS outcome counted.
    async fn try_exchanger(
        &self,
        meta: &MessageMeta,
        body: &Arc<Vec<u8>>,
        idx: &[usize],
        a: &Attempt<'_>,
        check: Check,
    ) -> Result<Vec<Outcome>, Failure> {
        let tls = match check {
            Check::Enforced | Check::Probed => TlsPolicy::Required,
            Check::Opportunistic | Check::Unlisted => TlsPolicy::Opportunistic,
        };
        let result = self
            .transact(meta, body, &a.route(tls, &self.cfg), idx)
            .await;
        match (result, check) {
            (Err(Failure::Tls(why, text)), Check::Probed) => {
                // Testing mode: the policy is not met; report it and deliver as without one.
                tracing::info!(domain = a.domain, host = a.host, error = %text, "MTA-STS testing policy not met; delivering anyway (reported)");
                self.count(a, Some((why, None)));
                let again = self
                    .transact(
                        meta,
                        body,
                        &a.route(TlsPolicy::Opportunistic, &self.cfg),
                        idx,
                    )
                    .await?;
                Ok(again.0)
            }
            (Err(Failure::Tls(why, text)), _) => {
                self.count(a, Some((why, None)));
                Err(Failure::Tls(why, text))
            }
            (Err(other), _) => Err(other),
            (Ok((outcomes, session)), check) => {
                if session.fresh {
                    let failure = match (check, session.declined) {
                        (Check::Unlisted, _) => Some(ResultType::ValidationFailure),
                        (_, Some(why)) => Some(why),
                        _ => None,
                    };
                    self.count(a, failure.map(|why| (why, session.local)));
                }
                Ok(outcomes)
            }
        }
    }

    /// Counts one session (for the daily report and `/metrics`).
    fn count(&self, a: &Attempt<'_>, failure: Option<(ResultType, Option<IpAddr>)>) {
        if !a.plan.counted {
            return;
        }
        self.record(
            &Session {
                policy_domain: a.domain,
                tenant: a.tenant,
                policy: &a.plan.policy,
                failure: failure.map(|(result, local)| Failed {
                    result,
                    mx: a.host,
                    sending_ip: local,
                    receiving_ip: Some(a.ip),
                }),
            },
            failure.map(|(why, _)| why),
        );
    }

    fn record(&self, s: &Session<'_>, failure: Option<ResultType>) {
        let policy_row = match s.policy.0 {
            PolicyType::Sts => 0,
            PolicyType::NoPolicyFound => 1,
        };
        let result_col = failure.map_or(0, |why| {
            1 + ResultType::ALL.iter().position(|r| *r == why).unwrap_or(4)
        });
        self.metrics.outbound_tls[policy_row][result_col].inc();
        self.tls_tally
            .record(store::unix_now().div_euclid(86_400), s);
    }

    /// The exchangers to try and how each is checked: under an enforced MTA-STS policy only
    /// the listed ones, each with a certificate valid for its name (RFC 8461 §5); under a
    /// testing one every exchanger, the listed ones verified and reported when that fails;
    /// otherwise every one, opportunistically. A REQUIRETLS message (RFC 8689 §4.2.1) needs
    /// a policy (enforce or testing) that lists the exchangers, whose names it then verifies.
    /// A message whose sender waived the policy (`TLS-Required: No`) goes opportunistically,
    /// and its sessions are not counted against the domain.
    async fn sts_hosts(
        &self,
        domain: &str,
        tenant: i64,
        hosts: Vec<String>,
        require_tls: bool,
        waived: bool,
    ) -> Result<Plan, Outcome> {
        let answer = match self.sts.get() {
            Some(source) if !waived => source.policy(domain).await,
            _ => mta_sts::Answer::default(),
        };
        if let Some(why) = answer.fetch_failed {
            // The domain announces a policy that could not be fetched (RFC 8460 §4.3.2.2):
            // one failed session, judged by the policy still in force, if any.
            let policy = (
                PolicyType::Sts,
                crate::tls_report::applied(answer.policy.as_deref()).1,
            );
            self.record(
                &Session {
                    policy_domain: domain,
                    tenant,
                    policy: &policy,
                    failure: Some(Failed {
                        result: why,
                        mx: "",
                        sending_ip: None,
                        receiving_ip: None,
                    }),
                },
                Some(why),
            );
        }
        let live = answer.policy.filter(|p| p.mode != Mode::None);
        if require_tls && live.is_none() {
            return Err(Outcome::Permanent(format!(
                "550 5.7.30 REQUIRETLS support required: {domain} publishes no MTA-STS policy to verify its exchangers by"
            )));
        }
        let applied = crate::tls_report::applied(live.as_deref());
        let Some(policy) = live else {
            return Ok(Plan {
                hosts: hosts
                    .into_iter()
                    .map(|h| (h, Check::Opportunistic))
                    .collect(),
                policy: applied,
                counted: !waived,
            });
        };
        let enforced = require_tls || policy.mode == Mode::Enforce;
        let hosts = checks(&policy, hosts, enforced);
        if hosts.is_empty() {
            return Err(Outcome::Temporary(format!(
                "451 4.7.5 MTA-STS: no mail exchanger of {domain} is one its policy lists"
            )));
        }
        Ok(Plan {
            hosts,
            policy: applied,
            counted: true,
        })
    }
}

/// Each exchanger's check under a live policy: enforced, only the listed ones; in testing
/// mode, the listed ones probed and the rest delivered to and reported.
fn checks(policy: &Policy, hosts: Vec<String>, enforced: bool) -> Vec<(String, Check)> {
    hosts
        .into_iter()
        .filter_map(|h| match (policy.allows(&h), enforced) {
            (true, true) => Some((h, Check::Enforced)),
            (false, true) => None,
            (true, false) => Some((h, Check::Probed)),
            (false, false) => Some((h, Check::Unlisted)),
        })
        .collect()
}

/// One exchanger address being tried.
struct Attempt<'a> {
    domain: &'a str,
    host: &'a str,
    ip: IpAddr,
    tenant: i64,
    plan: &'a Plan,
}

impl Attempt<'_> {
    fn route(&self, tls: TlsPolicy, cfg: &crate::DeliveryConfig) -> SmtpRoute {
        SmtpRoute {
            host: self.ip.to_string(),
            port: 25,
            tls,
            ca: (tls == TlsPolicy::Required)
                .then(|| cfg.ca_file.clone())
                .flatten(),
            auth: false,
            client_cert: false,
            owner: None,
            tls_name: Some(self.host.trim_end_matches('.').to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn testing_mode_probes_listed_exchangers_and_reports_the_rest() {
        let p = Policy {
            mode: Mode::Testing,
            mx: vec!["mx1.remote.test".into()],
            max_age: 60,
        };
        let hosts = || {
            vec![
                "mx1.remote.test".to_string(),
                "other.remote.test".to_string(),
            ]
        };
        assert_eq!(
            checks(&p, hosts(), false),
            [
                ("mx1.remote.test".to_string(), Check::Probed),
                ("other.remote.test".to_string(), Check::Unlisted)
            ]
        );
        assert_eq!(
            checks(&p, hosts(), true),
            [("mx1.remote.test".to_string(), Check::Enforced)]
        );
    }
}
