//! The client side of the vault socket (used by `mx`, the portal and the CLI).

use std::path::{Path, PathBuf};

use tokio::net::UnixStream;

use crate::acts::{Act, Ask, FrontAct};
use crate::frame::{read_frame, write_frame};
use crate::nouns::{QueueId, SecretKind, TenantId};
use crate::refusal::Refused;
use crate::vault::{Admin, Purpose, Request, Response, RoleToken};

/// The socket file of a data directory's vault.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("vault.sock")
}

/// Longest wait for the vault's answer (a stuck vault must not hang SMTP sessions).
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A connection target; each call opens its own connection.
#[derive(Debug, Clone)]
pub struct VaultClient {
    path: PathBuf,
}

/// A call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The vault could not be reached.
    #[error("the vault is not running (no answer at {0}): start `sekisho serve`")]
    Unreachable(String),
    /// The vault refused (policy: not allowed, not valid), with the kind and its message.
    #[error("{0}")]
    Refused(Refused),
    /// The vault failed, with its message.
    #[error("{0}")]
    Vault(String),
    /// The exchange broke off.
    #[error("vault connection: {0}")]
    Io(#[from] std::io::Error),
}

impl CallError {
    /// The refusal, if the vault refused.
    pub fn refusal(&self) -> Option<&Refused> {
        match self {
            CallError::Refused(r) => Some(r),
            _ => None,
        }
    }
}

fn unexpected(r: &Response) -> CallError {
    CallError::Vault(format!("unexpected answer {}", r.kind()))
}

impl VaultClient {
    /// A client of the vault listening at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Sends one request and returns the response and its payload (within [`CALL_TIMEOUT`]).
    pub async fn call(
        &self,
        req: &Request,
        payload: &[u8],
    ) -> Result<(Response, Vec<u8>), CallError> {
        let exchange = async {
            let mut s = UnixStream::connect(&self.path)
                .await
                .map_err(|_| CallError::Unreachable(self.path.display().to_string()))?;
            write_frame(&mut s, req, payload).await?;
            let got: (Response, Vec<u8>) = read_frame(&mut s).await?;
            Ok::<_, CallError>(got)
        };
        let (resp, body) = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| CallError::Unreachable(self.path.display().to_string()))??;
        match resp {
            Response::Refused { refusal, message } => Err(CallError::Refused(Refused {
                kind: refusal,
                message,
            })),
            Response::Error { message } => Err(CallError::Vault(message)),
            other => Ok((other, body)),
        }
    }

    /// Sends a request answered with `Done`; returns its summary.
    pub async fn done(&self, req: &Request, payload: &[u8]) -> Result<String, CallError> {
        match self.call(req, payload).await? {
            (Response::Done { summary }, _) => Ok(summary),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// A portal user's act, on the session's behalf: the vault checks and performs it.
    pub async fn act<A: Ask + Into<Act>>(
        &self,
        session: &str,
        act: A,
    ) -> Result<A::Answer, CallError> {
        let req = Request::Act {
            session: session.to_string(),
            act: act.into(),
        };
        self.answer::<A>(&req).await
    }

    /// The portal role's own front-door request.
    pub async fn front<A: Ask + Into<FrontAct>>(&self, act: A) -> Result<A::Answer, CallError> {
        self.answer::<A>(&Request::Front(act.into())).await
    }

    async fn answer<A: Ask>(&self, req: &Request) -> Result<A::Answer, CallError> {
        match self.call(req, &[]).await? {
            (Response::Answer, body) => serde_json::from_slice(&body)
                .map_err(|e| CallError::Vault(format!("malformed answer: {e}"))),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// True if the vault answers.
    pub async fn ping(&self) -> bool {
        matches!(
            self.call(&Request::Ping, &[]).await,
            Ok((Response::Pong, _))
        )
    }

    /// The recipient to seal a tenant's content to (created on first use).
    pub async fn tenant_recipient(&self, tenant: TenantId) -> Result<(String, bool), CallError> {
        match self.call(&Request::TenantRecipient { tenant }, &[]).await? {
            (
                Response::Recipient {
                    recipient,
                    customer_held,
                },
                _,
            ) => Ok((recipient, customer_held)),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// A key-changing request; returns the vault's summary.
    pub async fn admin(&self, req: Admin) -> Result<String, CallError> {
        self.done(&Request::Admin(req), &[]).await
    }

    /// Opens a quarantined message: for the portal user of `session` (the vault checks the
    /// session and what that user may open; `principal` is then ignored), for mx with its
    /// role token, or for the local CLI with neither.
    pub async fn open_quarantine(
        &self,
        open: OpenQuarantine<'_>,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, CallError> {
        let req = Request::OpenQuarantine {
            id: open.id.clone(),
            purpose: open.purpose,
            principal: open.principal.to_string(),
            reason: open.reason.to_string(),
            session: open.session.map(str::to_string),
            role_token: open.role_token.cloned(),
            lockbox: open.lockbox,
            break_glass: open.break_glass,
        };
        match self.call(&req, &[]).await? {
            (Response::Opened, body) => Ok(zeroize::Zeroizing::new(body)),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// Seals a tenant's connector secret (write-only); the value is its serialized form.
    pub async fn seal_secret(
        &self,
        tenant: &str,
        principal: &str,
        value: &[u8],
    ) -> Result<String, CallError> {
        let req = Request::SealSecret {
            tenant: tenant.to_string(),
            principal: principal.to_string(),
        };
        self.done(&req, value).await
    }

    /// Obtains a tenant's connector secret in its serialized form (the mx role, with its
    /// role token).
    pub async fn use_secret(
        &self,
        tenant: TenantId,
        kind: SecretKind,
        token: &RoleToken,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, CallError> {
        let req = Request::UseSecret {
            tenant,
            kind,
            role_token: token.clone(),
        };
        match self.call(&req, &[]).await? {
            (Response::Secret, body) => Ok(zeroize::Zeroizing::new(body)),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// The key that signs `domain`'s mail for `tenant` (the mx role, with its role token).
    pub async fn dkim_key(
        &self,
        tenant: TenantId,
        domain: &str,
        token: &RoleToken,
    ) -> Result<Option<crate::vault::DkimKeyRef>, CallError> {
        let req = Request::DkimKey {
            tenant,
            domain: domain.to_string(),
            role_token: token.clone(),
        };
        match self.call(&req, &[]).await? {
            (Response::DkimKey { key }, _) => Ok(key),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// Has the vault sign `digest` with the key `selector` (the mx role).
    pub async fn dkim_sign(
        &self,
        tenant: TenantId,
        domain: &str,
        selector: &str,
        token: &RoleToken,
        digest: &[u8; 32],
    ) -> Result<Vec<u8>, CallError> {
        let req = Request::DkimSign {
            tenant,
            domain: domain.to_string(),
            selector: selector.to_string(),
            role_token: token.clone(),
        };
        match self.call(&req, digest).await? {
            (Response::Signature, sig) => Ok(sig),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// Obtains this node's spool key, as hex (the mx role, with its role token); with
    /// `spool_empty`, an unusable stored key is replaced.
    pub async fn spool_key(
        &self,
        node: &str,
        token: &RoleToken,
        spool_empty: bool,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, CallError> {
        let req = Request::SpoolKey {
            node: node.to_string(),
            role_token: token.clone(),
            spool_empty,
        };
        match self.call(&req, &[]).await? {
            (Response::SpoolKey, body) => Ok(zeroize::Zeroizing::new(body)),
            (other, _) => Err(unexpected(&other)),
        }
    }
}

/// The terms of a content open.
#[derive(Debug, Clone, Copy)]
pub struct OpenQuarantine<'a> {
    /// Which message.
    pub id: &'a QueueId,
    /// Why it is opened.
    pub purpose: Purpose,
    /// On whose behalf (the local CLI's claim; ignored with a session).
    pub principal: &'a str,
    /// The stated reason (recorded).
    pub reason: &'a str,
    /// A portal user's session or digest link.
    pub session: Option<&'a str>,
    /// mx's role token.
    pub role_token: Option<&'a RoleToken>,
    /// The local CLI reading content: the tenant-approved lockbox it opens under.
    pub lockbox: Option<i64>,
    /// The local CLI reading content in an emergency, without a lockbox (alerted).
    pub break_glass: bool,
}
