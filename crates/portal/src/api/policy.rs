//! The tenant admin's filter policy: overrides of the global policy. The vault validates a
//! new policy against the global one and asks for a step-up when it lets more mail through.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use proto::acts::{PolicyGet, PolicySet, PolicyView, ProtectedName};
use serde::Deserialize;

use super::{JsonBody, MessageAnswer, ProblemDoc};
use crate::Portal;
use crate::problem::Problem;
use crate::session::Session;

/// A person whose display name outsiders must not use.
#[derive(serde::Serialize, Deserialize, utoipa::ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct ProtectedNameDoc {
    /// The name (`Taro Yamada`, `山田 太郎`).
    #[schema(max_length = 200)]
    pub name: String,
    /// Their real addresses (empty: any address at the tenant's domains).
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// A tenant's filter policy: overrides of the node's global policy (absent: the global value).
#[derive(serde::Serialize, Deserialize, utoipa::ToSchema, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    /// Tag threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<f64>,
    /// Quarantine threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<f64>,
    /// Reject threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject: Option<f64>,
    /// Symbol weights by name.
    #[serde(default)]
    pub weights: std::collections::BTreeMap<String, f64>,
    /// Protected display names (impersonation).
    #[serde(default)]
    pub protected_names: Vec<ProtectedNameDoc>,
    /// Forwarders whose ARC seal the tenant trusts (domains).
    #[serde(default)]
    pub trusted_arc: Vec<String>,
    /// Days quarantined mail is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_days: Option<u32>,
    /// Days message-trace records (envelopes, delivery events) are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_days: Option<u32>,
}

/// The tenant's policy with the global values it overrides.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct PolicyAnswer {
    /// The tenant's overrides.
    pub policy: PolicyDoc,
    /// The thresholds in effect (`tag`, `quarantine`, `reject`).
    pub effective: std::collections::BTreeMap<String, f64>,
    /// The global weight of every symbol.
    pub default_weights: std::collections::BTreeMap<String, f64>,
}

impl From<PolicyView> for PolicyDoc {
    fn from(f: PolicyView) -> Self {
        Self {
            tag: f.tag,
            quarantine: f.quarantine,
            reject: f.reject,
            weights: f.weights,
            protected_names: f
                .protected_names
                .into_iter()
                .map(|n| ProtectedNameDoc {
                    name: n.name,
                    addresses: n.addresses,
                })
                .collect(),
            trusted_arc: f.trusted_arc,
            quarantine_days: f.quarantine_days,
            trace_days: f.trace_days,
        }
    }
}

impl From<PolicyDoc> for PolicyView {
    fn from(f: PolicyDoc) -> Self {
        Self {
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
}

#[utoipa::path(get, path = "/api/policy", tag = "policy", security(("session" = [])),
    responses(
        (status = 200, description = "the tenant's overrides, the thresholds in effect and the global weights", body = PolicyAnswer),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "tenant admins only", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn policy_get(
    State(p): State<Arc<Portal>>,
    s: Session,
) -> Result<Response, Problem> {
    let answer = policy_of(&p, &s).await?;
    let [t, q, r] = answer.effective;
    Ok(axum::Json(PolicyAnswer {
        effective: [("tag", t), ("quarantine", q), ("reject", r)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        default_weights: answer.default_weights,
        policy: answer.policy.into(),
    })
    .into_response())
}

#[utoipa::path(put, path = "/api/policy", tag = "policy", request_body = PolicyDoc, security(("session" = [])),
    responses(
        (status = 200, description = "replaced; the mail path uses it at once", body = MessageAnswer),
        (status = 400, description = "not a valid policy (unknown symbol, thresholds out of order, …)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "tenant admins only; a policy that lets more through needs a step-up first; CSRF", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn policy_put(
    State(p): State<Arc<Portal>>,
    s: Session,
    JsonBody(new): JsonBody<PolicyDoc>,
) -> Result<Response, Problem> {
    let message = policy_replace(&p, &s, new.into()).await?;
    Ok(axum::Json(MessageAnswer { message }).into_response())
}

/// The tenant's current policy (its overrides), the thresholds in effect and the global
/// weights (tenant admins; the vault refuses everyone else).
pub(crate) async fn policy_of(
    p: &Portal,
    s: &Session,
) -> Result<proto::acts::PolicyAnswer, Problem> {
    s.ask(p, PolicyGet {}).await
}

/// Replaces the tenant's policy; the vault validates it and asks for a step-up when it lets
/// more mail through.
pub(crate) async fn policy_replace(
    p: &Portal,
    s: &Session,
    new: PolicyView,
) -> Result<String, Problem> {
    s.ask(p, PolicySet { policy: new }).await
}
