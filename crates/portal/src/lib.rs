//! The portal role: the HTTPS front door for people (operators, tenant admins, end users,
//! auditors): a JSON API and a server-rendered web UI over the same acts.
//!
//! # Layout
//! - [`listener`]: TLS accept loop (handshakes off the accept path, bounded, with deadlines).
//! - [`front`]: the front door every request passes before any handler — request limits,
//!   per-IP rate limits, probe detection with temporary blocks, security headers.
//! - [`api`]: the JSON API and the one place that decides what a user may see.
//! - [`problem`]: RFC 9457 problem details, the shape of every error.
//! - [`view`]: the safe view of a message (text only, links defanged, attachments listed).
//! - [`web`]: the web UI (Japanese and English, [`i18n`]; charts as SVG, [`charts`]).
//!
//! # Security
//! Faces the Internet, so it is built to be the least valuable process to break into: it holds
//! no key but its TLS key, reads no blob, and cannot verify a password or mint a session —
//! the vault does both, and re-checks the session on every content open, so a compromised
//! portal can act only for users who are really logged in (and every act is recorded). It runs
//! under the same seccomp (no exec) and Landlock (no KEK) confinement as `mx`. Request limits
//! answer 4xx before any handler runs; no request body or secret is logged.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod charts;
pub mod front;
pub mod i18n;
pub mod listener;
pub mod passkeys;
pub mod problem;
pub mod qr;
pub mod tenancy;
pub mod view;
pub mod web;

use std::path::PathBuf;
use std::sync::Arc;

/// What the portal works with.
pub struct Portal {
    /// The vault (logins, sessions, content opens).
    pub vault: vault::client::VaultClient,
    /// The store (quarantine metadata, records, alerts).
    pub store: store::Store,
    /// The node's data directory (its admin socket releases messages into the spool).
    pub data_dir: PathBuf,
    /// The front door's limits and state.
    pub front: front::FrontDoor,
    /// The global filter policy (thresholds and every symbol's weight), which tenants'
    /// policies override.
    pub policy: PolicyDefaults,
    /// Test hooks on (`SEKISHO_TEST_HOOKS=1`): `POST /api/test-hooks/exec` tries to run a
    /// program, to show the sandbox stopping it. Never in production.
    pub test_hooks: bool,
}

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
    pub weights: std::collections::BTreeMap<String, f64>,
}

/// Starts serving on `listener` until `shutdown`.
pub async fn serve(
    portal: Arc<Portal>,
    listener: listener::TlsListener,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    tokio::spawn(front::sync_blocks(portal.clone(), shutdown.clone()));
    let app = api::router(portal);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<listener::ClientAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}
