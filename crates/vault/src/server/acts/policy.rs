//! A tenant's filter policy, kept by its admins: validated against the node's global
//! policy, and loosening it (a threshold raised, a weight lowered, a protected name removed)
//! needs a step-up.

use std::collections::BTreeMap;

use proto::acts::{PolicyAnswer, PolicySet, PolicyView, ProtectedName};
use proto::{Refused, Role};

use super::{Caller, Done};
use crate::server::Vault;

/// The node's global filter policy, as tenant policies see it.
#[derive(Debug, Clone, Default)]
pub struct PolicyDefaults {
    /// Tag threshold.
    pub tag: f64,
    /// Quarantine threshold.
    pub quarantine: f64,
    /// Reject threshold.
    pub reject: f64,
    /// Every symbol's weight, by name.
    pub weights: BTreeMap<String, f64>,
}

/// The tenant admin's tenant (id and name); everyone else is refused.
pub(super) fn tenant_admin_of(c: &Caller) -> Result<(i64, String), Refused> {
    match (c.user.role, c.tenant(), &c.user.tenant) {
        (Role::TenantAdmin, Some(id), Some(name)) => Ok((id, name.clone())),
        _ => Err(Refused::forbidden(
            "the filter policy is the tenant admins'",
        )),
    }
}

fn view(f: store::FilterPolicy) -> PolicyView {
    PolicyView {
        tag: f.tag,
        quarantine: f.quarantine,
        reject: f.reject,
        weights: f.weights,
        protected_names: f
            .protected_names
            .into_iter()
            .map(|n| ProtectedName {
                name: n.name,
                addresses: n.addresses,
            })
            .collect(),
        trusted_arc: f.trusted_arc,
        quarantine_days: f.quarantine_days,
        trace_days: f.trace_days,
    }
}

fn stored(p: &PolicyView) -> store::FilterPolicy {
    store::FilterPolicy {
        tag: p.tag,
        quarantine: p.quarantine,
        reject: p.reject,
        weights: p.weights.clone(),
        protected_names: p
            .protected_names
            .iter()
            .map(|n| store::StoredName {
                name: n.name.trim().to_string(),
                addresses: n.addresses.iter().map(|a| a.to_lowercase()).collect(),
            })
            .collect(),
        trusted_arc: p.trusted_arc.iter().map(|d| d.to_lowercase()).collect(),
        quarantine_days: p.quarantine_days,
        trace_days: p.trace_days,
    }
}

impl PolicyDefaults {
    /// Thresholds and weights in effect under `p`.
    pub fn effective(&self, p: &PolicyView) -> ([f64; 3], BTreeMap<String, f64>) {
        let mut w = self.weights.clone();
        for (k, v) in &p.weights {
            w.insert(k.clone(), *v);
        }
        (
            [
                p.tag.unwrap_or(self.tag),
                p.quarantine.unwrap_or(self.quarantine),
                p.reject.unwrap_or(self.reject),
            ],
            w,
        )
    }

    /// Why `new` is not a valid policy, if it is not.
    pub fn error(&self, new: &PolicyView) -> Option<String> {
        for (k, v) in &new.weights {
            if !self.weights.contains_key(k) {
                return Some(format!("unknown symbol {k:?}"));
            }
            if !v.is_finite() || v.abs() > 10_000.0 {
                return Some(format!("{k}: a weight is a number from -10000 to 10000"));
            }
        }
        let ([t, q, r], _) = self.effective(new);
        if ![t, q, r]
            .iter()
            .all(|x| x.is_finite() && x.abs() <= 100_000.0)
        {
            return Some("thresholds are numbers from -100000 to 100000".into());
        }
        if !(t <= q && q <= r) {
            return Some(format!(
                "thresholds must satisfy tag ≤ quarantine ≤ reject (got {t}, {q}, {r})"
            ));
        }
        if new.protected_names.len() > 500 || new.trusted_arc.len() > 200 || new.weights.len() > 500
        {
            return Some(
                "at most 500 protected names, 200 trusted forwarders and 500 weights".into(),
            );
        }
        if new.protected_names.iter().any(|n| {
            n.name.trim().chars().count() < 3
                || n.name.chars().count() > 200
                || n.addresses.len() > 50
                || n.addresses
                    .iter()
                    .any(|a| store::sender_pattern(a).is_err() || !a.contains('@'))
        }) {
            return Some(
                "a protected name has 3 to 200 characters and at most 50 real addresses (name@example.com)"
                    .into(),
            );
        }
        if new
            .trusted_arc
            .iter()
            .any(|dom| store::sender_pattern(dom).is_err() || dom.contains('@'))
        {
            return Some("a trusted forwarder is a domain (lists.example.com)".into());
        }
        if new
            .quarantine_days
            .is_some_and(|n| !(1..=3650).contains(&n))
        {
            return Some("quarantine_days is 1 to 3650".into());
        }
        if new.trace_days.is_some_and(|n| !(1..=3650).contains(&n)) {
            return Some("trace_days is 1 to 3650".into());
        }
        None
    }

    /// True if `new` lets more through than `old`: a threshold raised, a weight lowered or a
    /// protected name removed.
    pub fn weakens(&self, old: &PolicyView, new: &PolicyView) -> bool {
        let (ot, ow) = self.effective(old);
        let (nt, nw) = self.effective(new);
        ot.iter().zip(nt.iter()).any(|(o, n)| n > o)
            || nw.iter().any(|(k, n)| ow.get(k).is_some_and(|o| n < o))
            || new.protected_names.len() < old.protected_names.len()
    }
}

impl Vault {
    pub(super) async fn policy_get(&self, c: &Caller) -> Done<PolicyAnswer> {
        let (_, name) = tenant_admin_of(c)?;
        let policy = view(self.store.filter_policy(&name).await?);
        let (effective, _) = self.policy.effective(&policy);
        Ok(PolicyAnswer {
            policy,
            effective,
            default_weights: self.policy.weights.clone(),
        })
    }

    /// Replaces the tenant's policy (validated; loosening needs a stepped-up session).
    pub(super) async fn policy_set(&self, c: &Caller, a: PolicySet) -> Done<String> {
        let (tenant_id, name) = tenant_admin_of(c)?;
        if let Some(e) = self.policy.error(&a.policy) {
            return Err(Refused::invalid(e).into());
        }
        let old = view(self.store.filter_policy(&name).await?);
        if self.policy.weakens(&old, &a.policy) && !c.stepped_up {
            return Err(Refused::step_up(
                "this change lets more mail through (a threshold raised, a weight lowered or a protected name removed): confirm with a current code first (POST /api/step-up)",
            )
            .into());
        }
        self.store
            .set_filter_policy(&name, &stored(&a.policy))
            .await?;
        self.reload_mail_path().await;
        self.record_act(
            c,
            "set-filter-policy",
            Some(tenant_id),
            &name,
            "for the whole tenant",
        )
        .await;
        tracing::info!(tenant = %name, "filter policy replaced from the portal");
        Ok(format!("the filter policy of {name} is replaced"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> PolicyDefaults {
        PolicyDefaults {
            tag: 2.0,
            quarantine: 4.0,
            reject: 50.0,
            weights: [("GTUBE".to_string(), 1000.0), ("BAYES_SPAM".into(), 5.0)]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn policies_are_checked_and_loosening_is_told_apart() {
        let d = defaults();
        let mut bad = PolicyView::default();
        bad.weights.insert("NOPE".into(), 1.0);
        assert!(d.error(&bad).unwrap().contains("unknown symbol"));
        let order = PolicyView {
            tag: Some(9.0),
            quarantine: Some(3.0),
            ..Default::default()
        };
        assert!(d.error(&order).unwrap().contains("tag ≤ quarantine"));
        let stricter = PolicyView {
            reject: Some(10.0),
            ..Default::default()
        };
        assert_eq!(d.error(&stricter), None);
        assert!(!d.weakens(&PolicyView::default(), &stricter));
        assert!(d.weakens(&stricter, &PolicyView::default()));
        let mut lower = PolicyView::default();
        lower.weights.insert("BAYES_SPAM".into(), 1.0);
        assert!(d.weakens(&PolicyView::default(), &lower));
    }
}
