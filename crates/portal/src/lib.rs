//! The portal role: the HTTPS front door for people (operators, tenant admins, end users,
//! auditors): a JSON API and a server-rendered web UI over the same acts.
//!
//! # Layout
//! - [`listener`]: TLS accept loop (handshakes off the accept path, bounded, with deadlines).
//! - [`front`]: the front door every request passes before any handler — request limits,
//!   per-IP rate limits, probe detection with temporary blocks, security headers.
//! - [`session`]: who is asking (the vault resolves the cookie or token) and the CSRF check.
//! - [`api`]: the JSON API, one file per resource, each a thin face over the vault's acts.
//! - [`problem`]: RFC 9457 problem details, the shape of every error.
//! - [`view`]: the safe view of a message (text only, links defanged, attachments listed).
//! - [`web`]: the web UI (Japanese and English, [`i18n`]; charts as SVG, [`charts`]).
//!
//! # Security
//! Faces the Internet, so it is built to be the least valuable process to break into: it
//! holds no key but its TLS key, opens no database and reads no blob. It depends on web
//! crates and `proto` alone (a test over `cargo metadata` keeps it so): every read it shows
//! and every change it makes is a typed act the vault checks (session, role, tenant, token
//! scope, step-up) and records, so a compromised portal can act only for people who are
//! really logged in. The kernel confines it to an allow-list (Landlock: its TLS files and
//! nothing else; seccomp: no exec). Request limits answer 4xx before any handler runs; no
//! request body or secret is logged.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod charts;
pub mod front;
pub mod i18n;
pub mod listener;
pub mod passkeys;
#[cfg(feature = "test-hooks")]
pub mod probe;
pub mod problem;
pub mod qr;
pub mod session;
pub mod view;
pub mod web;

use std::sync::Arc;

/// What the portal works with: the vault's client, nothing else. It holds no store handle,
/// no role token and no key but its TLS key; every read and every change is an act the
/// vault checks (releases reach the mail node through the vault).
pub struct Portal {
    /// The vault (logins, sessions, every act, content opens).
    pub vault: proto::client::VaultClient,
    /// The front door's limits and state.
    pub front: front::FrontDoor,
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
