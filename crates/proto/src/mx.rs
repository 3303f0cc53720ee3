//! mx's admin socket (`<data dir>/admin.sock`): one JSON request per line, one JSON reply per
//! line (`{"ok": true, "data": …}` or `{"ok": false, "error": …, "refusal": …}`).
//!
//! The local CLI may ask everything here. A role process (the portal) may ask only what
//! [`MxRequest::for_roles`] says: a reload, the queue's counts (no addresses), and a release
//! for a logged-in user's session, which the vault checks again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::acts::{Ask, asks};
use crate::nouns::{QueueId, TenantId};
use crate::refusal::{Refusal, Refused};
use crate::vault::RoleToken;

/// Longest request or reply line.
pub const MAX_LINE: u64 = 64 << 20;

asks! {
    MxRequest, "cmd", "A request on mx's admin socket.";

    /// Reload the directory (tenants, routes, policies) and classifier models now.
    Reload "reload" {
        /// The role token (the vault's request); none from the local CLI.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<RoleToken>,
    } -> Reloaded;
    /// Every queued message.
    QueueList "queue-list" {} -> Vec<QueueEntry>;
    /// One queued message.
    QueueShow "queue-show" { id: QueueId } -> QueueEntry;
    /// How many messages are queued in each state (no addresses).
    QueueSummary "queue-summary" {
        /// The role token (the vault's request); none from the local CLI.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<RoleToken>,
    } -> QueueCounts;
    /// Make deferred messages due now.
    QueueFlush "queue-flush" {} -> Flushed;
    /// Delete one message (its pending recipients are recorded as deleted, no DSN).
    QueueDelete "queue-delete" { id: QueueId } -> Deleted;
    /// Put a message on hold.
    QueueHold "queue-hold" { id: QueueId } -> Held;
    /// Release a held message.
    QueueRelease "queue-release" { id: QueueId } -> Released;
    /// The spool's keys and segments: live and destroyed data keys, segments awaiting
    /// compaction (evidence that finished mail is unreadable).
    SpoolStats "spool-stats" {} -> SpoolFigures;
    /// Send the quarantine digests of everything quarantined since the last run, now.
    DigestSend "digest-send" {} -> DigestSent;
    /// Release a quarantined message: the vault opens it for this principal (or for the
    /// user of `session`, which it checks), and it is delivered with its original envelope.
    QuarantineRelease "quarantine-release" {
        /// Quarantine id.
        id: QueueId,
        /// On whose behalf (the local CLI's claim; the session's user otherwise).
        principal: String,
        /// A portal user's session or digest link.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        /// The role token (the vault's request); none from the local CLI.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<RoleToken>,
    } -> Released;
}

impl MxRequest {
    /// What a role process (not the local operator) may ask: with the role token that only
    /// the vault and mx hold (`genuine` checks it), a reload, the queue's counts, and a
    /// release carrying a user's session (the vault checks the session again when mx asks
    /// it to open the message). Without the token — the portal has none — nothing.
    /// Listing, showing, deleting, holding or flushing mail, sessionless releases and digests
    /// are the local CLI's.
    pub fn for_roles(&self, genuine: impl Fn(&RoleToken) -> bool) -> bool {
        let ok = |t: &Option<RoleToken>| t.as_ref().is_some_and(&genuine);
        match self {
            MxRequest::Reload(r) => ok(&r.token),
            MxRequest::QueueSummary(r) => ok(&r.token),
            MxRequest::QuarantineRelease(r) => r.session.is_some() && ok(&r.token),
            _ => false,
        }
    }
}

/// The directory and models were reloaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloaded {
    /// The directory had changed.
    pub reloaded: bool,
    /// Classifier models loaded anew.
    pub bayes_models: usize,
}

/// A queue state (Postfix's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueState {
    /// Ready for delivery (or being delivered).
    Active,
    /// Waiting for its next retry.
    Deferred,
    /// Held by an operator or policy.
    Hold,
    /// Its content is damaged or missing; kept for the operator.
    Corrupt,
}

/// A recipient's delivery status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RcptStatus {
    /// Not delivered yet.
    Pending,
    /// Delivered.
    Delivered,
    /// Failed permanently.
    Failed,
}

/// One recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRcpt {
    /// The address.
    pub address: String,
    /// Its tenant.
    pub tenant: TenantId,
    /// Its status.
    pub status: RcptStatus,
    /// The last reply or error seen for it.
    pub last_reply: String,
}

/// A queued message's envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEnvelope {
    /// Envelope sender (empty: the null sender).
    pub mail_from: String,
    /// Recipients.
    pub rcpts: Vec<QueueRcpt>,
    /// 8BITMIME.
    pub eight_bit: bool,
    /// SMTPUTF8.
    pub smtputf8: bool,
    /// Relayed for a tenant to the world.
    pub outbound: bool,
}

/// A queued message (metadata; never content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    /// Queue id.
    pub id: String,
    /// The envelope.
    pub envelope: QueueEnvelope,
    /// Arrival (Unix seconds).
    pub received_at: i64,
    /// State.
    pub state: QueueState,
    /// Delivery attempts made.
    pub attempts: u32,
    /// Earliest next attempt.
    pub next_attempt: i64,
    /// Content size in octets.
    pub size: u64,
    /// Why it is held or deferred.
    pub note: String,
}

/// How many messages are queued, by state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct QueueCounts {
    /// Messages per state.
    pub by_state: BTreeMap<QueueState, i64>,
    /// Bytes queued.
    pub bytes: u64,
    /// Age of the oldest queued message (seconds).
    pub oldest_seconds: Option<i64>,
}

/// What the spool holds (`sekisho spool stats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolFigures {
    /// Messages in the queue.
    pub messages: usize,
    /// Data keys that still open their message.
    pub live_keys: usize,
    /// Destroyed data keys whose zeroed slots are still on disk.
    pub destroyed_keys: u64,
    /// Keys destroyed since mx started.
    pub destroyed_since_start: u64,
    /// Segment files.
    pub segments: usize,
    /// Older segments holding finished mail that wait for compaction.
    pub segments_awaiting_compaction: usize,
}

/// Deferred messages made due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flushed {
    /// How many.
    pub flushed: usize,
}

/// A message deleted from the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// Its id.
    pub deleted: String,
}

/// A message put on hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// Its id.
    pub held: String,
}

/// A message released (from hold, or from quarantine into the queue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    /// Its id.
    pub released: String,
}

/// What one digest run sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DigestSent {
    /// Digests queued (one per recipient).
    pub digests: usize,
    /// Quarantined items listed in them.
    pub items: usize,
}

/// The socket path of a node.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// A reply line.
#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    /// Success.
    pub ok: bool,
    /// The answer (on success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// What went wrong (on failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The kind of refusal (on failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
}

impl Reply {
    /// A successful reply carrying `answer`.
    pub fn answer<T: Serialize>(answer: &T) -> Self {
        match serde_json::to_value(answer) {
            Ok(v) => Reply {
                ok: true,
                data: Some(v),
                error: None,
                refusal: None,
            },
            Err(e) => Reply::failed(format!("answer not serialisable: {e}")),
        }
    }

    /// A failure (not a refusal: something went wrong).
    pub fn failed(error: impl Into<String>) -> Self {
        Reply {
            ok: false,
            data: None,
            error: Some(error.into()),
            refusal: None,
        }
    }

    /// A refusal.
    pub fn refused(r: &Refused) -> Self {
        Reply {
            ok: false,
            data: None,
            error: Some(r.message.clone()),
            refusal: Some(r.kind),
        }
    }
}

/// A request to mx that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum MxError {
    /// No node answers at the socket.
    #[error(
        "no running node at {0} (cannot connect to its admin socket); start it with `sekisho serve`"
    )]
    Unreachable(String),
    /// The kernel refused the connection: the socket is mx's and its group's, and this
    /// process's user is neither (a role that may not ask mx, or a user that is not root).
    #[error("permission denied connecting to the admin socket of {0} (run the CLI as root)")]
    NotPermitted(String),
    /// mx refused.
    #[error("{0}")]
    Refused(Refused),
    /// mx failed, with its message.
    #[error("{0}")]
    Failed(String),
    /// The exchange broke off or timed out.
    #[error("mx admin socket: {0}")]
    Io(#[from] std::io::Error),
}

/// The client of a node's admin socket.
#[derive(Debug, Clone)]
pub struct MxClient {
    data_dir: PathBuf,
    timeout: std::time::Duration,
}

impl MxClient {
    /// The node whose data directory is `data_dir`; each call waits at most `timeout`.
    pub fn new(data_dir: &Path, timeout: std::time::Duration) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            timeout,
        }
    }

    /// Sends one request and returns its typed answer.
    pub async fn ask<A: Ask + Into<MxRequest>>(&self, req: A) -> Result<A::Answer, MxError> {
        let req: MxRequest = req.into();
        let path = socket_path(&self.data_dir);
        let line = serde_json::to_string(&req).map_err(|e| MxError::Failed(e.to_string()))?;
        let exchange = async {
            let stream = UnixStream::connect(&path).await.map_err(|e| {
                let dir = self.data_dir.display().to_string();
                match e.kind() {
                    std::io::ErrorKind::PermissionDenied => MxError::NotPermitted(dir),
                    _ => MxError::Unreachable(dir),
                }
            })?;
            let (r, mut w) = stream.into_split();
            w.write_all(format!("{line}\n").as_bytes()).await?;
            let mut answer = String::new();
            BufReader::new(r.take(MAX_LINE))
                .read_line(&mut answer)
                .await?;
            Ok::<_, MxError>(answer)
        };
        let answer = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                MxError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the node did not answer within {:?}", self.timeout),
                ))
            })??;
        let reply: Reply = serde_json::from_str(&answer)
            .map_err(|e| MxError::Failed(format!("malformed reply from the node: {e}")))?;
        match reply {
            Reply {
                ok: true,
                data: Some(v),
                ..
            } => serde_json::from_value(v)
                .map_err(|e| MxError::Failed(format!("malformed answer from the node: {e}"))),
            Reply {
                refusal: Some(kind),
                error,
                ..
            } => Err(MxError::Refused(Refused::new(
                kind,
                error.unwrap_or_default(),
            ))),
            Reply { error, .. } => Err(MxError::Failed(
                error.unwrap_or_else(|| "unknown error".into()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_keep_their_wire_names() {
        let r: MxRequest = QueueShow {
            id: "Q1".parse().unwrap(),
        }
        .into();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"cmd":"queue-show","id":"Q1"}"#
        );
        let genuine = |t: &RoleToken| t.0 == "node-token";
        let r: MxRequest = serde_json::from_str(r#"{"cmd":"reload"}"#).unwrap();
        assert!(!r.for_roles(genuine), "no token: not from a role");
        let r: MxRequest =
            serde_json::from_str(r#"{"cmd":"reload","token":"node-token"}"#).unwrap();
        assert!(r.for_roles(genuine));
        let r: MxRequest = serde_json::from_str(r#"{"cmd":"reload","token":"guess"}"#).unwrap();
        assert!(!r.for_roles(genuine));
        let listing: MxRequest = serde_json::from_str(r#"{"cmd":"queue-list"}"#).unwrap();
        assert!(!listing.for_roles(genuine), "a role never lists the queue");
        let sessionless: MxRequest = serde_json::from_str(
            r#"{"cmd":"quarantine-release","id":"Q1","principal":"cli:root","token":"node-token"}"#,
        )
        .unwrap();
        assert!(!sessionless.for_roles(genuine));
    }
}
