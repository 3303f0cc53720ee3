//! Test hooks (`test-hooks` feature only; release builds contain none of this): routes that
//! make the portal act as an intruder with code execution inside it would, so end-to-end
//! tests can show the kernel, the vault and mx refusing it.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use proto::client::CallError;
use proto::vault::{Admin, Purpose, Request};
use serde::Deserialize;
use serde_json::json;

use super::JsonBody;
use crate::Portal;

/// Adds the hook routes.
pub fn routes(r: Router<Arc<Portal>>) -> Router<Arc<Portal>> {
    r.route("/api/test-hooks/exec", post(exec))
        .route("/api/test-hooks/vault", post(vault))
        .route("/api/test-hooks/probe", post(probe))
}

#[derive(Deserialize)]
struct Exec {
    path: String,
}

/// Plays code execution inside the portal by running `/bin/sh -c "touch PATH"`. The seccomp
/// filter kills the process before the shell exists.
async fn exec(JsonBody(b): JsonBody<Exec>) -> Response {
    let ran = tokio::task::spawn_blocking(move || {
        std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("touch '{}'", b.path))
            .status()
            .is_ok_and(|s| s.success())
    })
    .await
    .unwrap_or(false);
    axum::Json(json!({ "ran": ran })).into_response()
}

#[derive(Deserialize)]
struct Probes {
    probes: Vec<crate::probe::Probe>,
}

/// Tries files and sockets from inside the portal and answers what the kernel said.
async fn probe(JsonBody(b): JsonBody<Probes>) -> Response {
    let results = tokio::task::spawn_blocking(move || crate::probe::run(&b.probes))
        .await
        .unwrap_or_default();
    axum::Json(json!({ "results": results })).into_response()
}

#[derive(Deserialize)]
struct Attack {
    /// `open` (a quarantined message, without a session), `mx-release` (the same through
    /// mx's admin socket), `digest-links`, `spool-key`, `oversized` (a frame over the role
    /// limit) or `terminate` (a tenant).
    attack: String,
    /// The message id or the tenant name.
    target: String,
    /// The node's data directory (where mx's admin socket is), for `mx-release`.
    #[serde(default)]
    data_dir: Option<std::path::PathBuf>,
}

/// Plays an intruder inside the portal speaking the vault's protocol and mx's admin socket
/// directly, as the local CLI would. Both must refuse.
async fn vault(State(p): State<Arc<Portal>>, JsonBody(b): JsonBody<Attack>) -> Response {
    let id = || b.target.parse::<proto::QueueId>();
    if b.attack == "mx-release" {
        // mx's admin socket, without a user's session or the vault's token, as the CLI
        // would ask: the portal has no token, so mx refuses whatever it sends.
        let Ok(id) = id() else {
            return axum::Json(json!({ "error": "not a queue id" })).into_response();
        };
        let req = proto::mx::QuarantineRelease {
            id,
            principal: "cli:root".into(),
            session: None,
            token: None,
        };
        let dir = b.data_dir.clone().unwrap_or_default();
        let mx = proto::mx::MxClient::new(&dir, std::time::Duration::from_secs(10));
        let answer = match mx.ask(req).await {
            Ok(v) => json!({ "answer": v }),
            Err(e) => json!({ "refused": e.to_string() }),
        };
        return axum::Json(answer).into_response();
    }
    if b.attack == "oversized" {
        // A frame no role ever needs: a ping carrying 2 MiB (mail is not the vault's to
        // receive from a role).
        let big = vec![0u8; 2 << 20];
        let answer = match p.vault.call(&Request::Ping, &big).await {
            Ok((r, _)) => json!({ "answer": r.kind() }),
            Err(e) => json!({ "error": e.to_string() }),
        };
        return axum::Json(answer).into_response();
    }
    let req = match b.attack.as_str() {
        "open" => match id() {
            Ok(id) => Request::OpenQuarantine {
                id,
                purpose: Purpose::Read,
                principal: "cli:root".into(),
                reason: "looks interesting".into(),
                session: None,
                role_token: None,
                lockbox: None,
                break_glass: false,
            },
            Err(e) => return axum::Json(json!({ "error": e })).into_response(),
        },
        // Mint a digest link for the item, to release it without anybody's session.
        "digest-links" => Request::DigestLinks {
            items: b
                .target
                .split_once(' ')
                .and_then(|(id, rcpt)| Some(vec![(id.parse().ok()?, rcpt.to_string())]))
                .unwrap_or_default(),
            expires_at: i64::MAX / 2,
            role_token: None,
        },
        // Ask for the node's spool key (mx's alone), with a guessed token.
        "spool-key" => Request::SpoolKey {
            node: b.target,
            role_token: proto::vault::RoleToken("guess".into()),
            spool_empty: false,
        },
        // Have mail signed as a tenant's domain (the DKIM key signs only for mx), with a
        // guessed token: target "TENANT-ID DOMAIN SELECTOR".
        "dkim-sign" => {
            let mut t = b.target.split(' ');
            Request::DkimSign {
                tenant: proto::TenantId(t.next().and_then(|v| v.parse().ok()).unwrap_or(1)),
                domain: t.next().unwrap_or_default().to_string(),
                selector: t.next().unwrap_or_default().to_string(),
                role_token: proto::vault::RoleToken("guess".into()),
            }
        }
        _ => Request::Admin(Admin::TerminateTenant {
            tenant: b.target,
            principal: "cli:root".into(),
        }),
    };
    let digest = match req {
        Request::DkimSign { .. } => vec![0u8; 32],
        _ => Vec::new(),
    };
    let answer = match p.vault.call(&req, &digest).await {
        Ok((r, body)) => json!({ "answer": r.kind(), "bytes": body.len() }),
        Err(CallError::Refused(r)) => json!({ "refused": r.message, "kind": r.kind }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    axum::Json(answer).into_response()
}
