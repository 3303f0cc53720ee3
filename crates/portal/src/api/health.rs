//! The node's health as the portal sees it (operators): which parts answer, the queue's
//! counts, the cluster's nodes and open alerts.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use proto::acts::{Health, NodeView};
use proto::mx::QueueState;

use super::ProblemDoc;
use crate::Portal;
use crate::problem::Problem;
use crate::session::Session;

/// The node's health as the portal sees it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct HealthDoc {
    /// Sekisho's version.
    pub version: String,
    /// The mail node answered on its admin socket.
    pub mx: bool,
    /// The vault answered.
    pub vault: bool,
    /// The store answered.
    pub store: bool,
    /// Queued messages by state (`active`, `deferred`, `hold`, `corrupt`).
    pub queue: std::collections::BTreeMap<String, i64>,
    /// Bytes queued.
    pub queue_bytes: u64,
    /// Age of the oldest queued message in seconds.
    pub oldest_queued_seconds: Option<i64>,
    /// Open alerts.
    pub open_alerts: i64,
    /// Every gateway node sharing the store, as its last heartbeat says.
    pub nodes: Vec<NodeDoc>,
}

/// One gateway node of the cluster.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct NodeDoc {
    /// Its name.
    pub name: String,
    /// `up`, `stopped` or `down` (no heartbeat for a while).
    pub status: String,
    /// Sekisho version it runs.
    pub version: String,
    /// Its SMTP listener.
    pub smtp: String,
    /// Queue: active, deferred, held messages.
    pub active: i64,
    /// Deferred messages.
    pub deferred: i64,
    /// Held messages.
    pub hold: i64,
    /// Seconds since its last heartbeat.
    pub seen_seconds_ago: i64,
}

/// Health of the node: each part asked, the queue summarised (counts only), the cluster's
/// nodes and open alerts as the store (through the vault) says. Operators only.
pub(crate) async fn health_of(p: &Portal, s: &Session) -> Result<HealthDoc, Problem> {
    // The vault refuses everyone but operators; its answer also says it and the store are
    // up, and carries the mail node's queue counts (the portal cannot reach the mail node).
    let store = match s.ask(p, Health {}).await {
        Err(e) if e.status != StatusCode::SERVICE_UNAVAILABLE => return Err(e),
        other => other.ok(),
    };
    let vault = store.is_some() || p.vault.ping().await;
    let (open_alerts, nodes, queue) = match store.clone() {
        Some(h) => (
            h.open_alerts,
            h.nodes.into_iter().map(NodeDoc::from).collect(),
            h.queue,
        ),
        None => (0, Vec::new(), None),
    };
    let counts = queue.clone().unwrap_or_default();
    Ok(HealthDoc {
        nodes,
        version: env!("CARGO_PKG_VERSION").to_string(),
        mx: queue.is_some(),
        vault,
        store: store.is_some(),
        queue: counts
            .by_state
            .iter()
            .map(|(state, n)| (queue_state(*state).to_string(), *n))
            .collect(),
        queue_bytes: counts.bytes,
        oldest_queued_seconds: counts.oldest_seconds,
        open_alerts,
    })
}

fn queue_state(s: QueueState) -> &'static str {
    match s {
        QueueState::Active => "active",
        QueueState::Deferred => "deferred",
        QueueState::Hold => "hold",
        QueueState::Corrupt => "corrupt",
    }
}

impl From<NodeView> for NodeDoc {
    fn from(n: NodeView) -> Self {
        NodeDoc {
            name: n.name,
            status: n.status,
            version: n.version,
            smtp: n.smtp,
            active: n.active,
            deferred: n.deferred,
            hold: n.hold,
            seen_seconds_ago: n.seen_seconds_ago,
        }
    }
}

#[utoipa::path(get, path = "/api/health", tag = "operations", security(("session" = [])),
    responses(
        (status = 200, description = "version, which parts answer, the queue by state, open alerts", body = HealthDoc),
        (status = 401, description = "no live session", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "operators only", body = ProblemDoc, content_type = "application/problem+json"),))]
pub(crate) async fn health(State(p): State<Arc<Portal>>, s: Session) -> Result<Response, Problem> {
    Ok(axum::Json(health_of(&p, &s).await?).into_response())
}
