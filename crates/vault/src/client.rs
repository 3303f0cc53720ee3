//! The client side of the vault socket (used by `mx`, the portal and the CLI).

use std::path::{Path, PathBuf};

use tokio::net::UnixStream;

use crate::proto::{Admin, Purpose, Request, Response, RoleToken, read_frame, write_frame};
use crate::{ConnectorSecret, SecretKind};

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
    /// The vault refused (policy: not allowed, not valid), with its message for a person.
    #[error("{0}")]
    Refused(String),
    /// The vault failed, with its message.
    #[error("{0}")]
    Vault(String),
    /// The exchange broke off.
    #[error("vault connection: {0}")]
    Io(#[from] std::io::Error),
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
            Response::Refused { message } => Err(CallError::Refused(message)),
            Response::Error { message } => Err(CallError::Vault(message)),
            other => Ok((other, body)),
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
    pub async fn tenant_recipient(&self, tenant: i64) -> Result<(String, bool), CallError> {
        match self.call(&Request::TenantRecipient { tenant }, &[]).await? {
            (
                Response::Recipient {
                    recipient,
                    customer_held,
                },
                _,
            ) => Ok((recipient, customer_held)),
            (other, _) => Err(CallError::Vault(format!(
                "unexpected answer {}",
                other.kind()
            ))),
        }
    }

    /// A key-changing request; returns the vault's summary.
    pub async fn admin(&self, req: Admin) -> Result<String, CallError> {
        match self.call(&Request::Admin(req), &[]).await? {
            (Response::Done { summary }, _) => Ok(summary),
            (other, _) => Err(CallError::Vault(format!(
                "unexpected answer {}",
                other.kind()
            ))),
        }
    }

    /// Opens a quarantined message.
    pub async fn open_quarantine(
        &self,
        id: &str,
        purpose: Purpose,
        principal: &str,
        reason: &str,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, CallError> {
        self.open_quarantine_for(id, purpose, principal, reason, None)
            .await
    }

    /// Opens a quarantined message for the portal user of `session` (the vault checks the
    /// session and what that user may open; `principal` is then ignored).
    pub async fn open_quarantine_for(
        &self,
        id: &str,
        purpose: Purpose,
        principal: &str,
        reason: &str,
        session: Option<&str>,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, CallError> {
        self.open_quarantine_as(id, purpose, principal, reason, session, None)
            .await
    }

    /// Opens a quarantined message, from a role process with its role token (mx releasing
    /// for the CLI) or for a portal user's `session`.
    pub async fn open_quarantine_as(
        &self,
        id: &str,
        purpose: Purpose,
        principal: &str,
        reason: &str,
        session: Option<&str>,
        role_token: Option<&RoleToken>,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, CallError> {
        let req = Request::OpenQuarantine {
            id: id.to_string(),
            purpose,
            principal: principal.to_string(),
            reason: reason.to_string(),
            session: session.map(str::to_string),
            role_token: role_token.cloned(),
        };
        match self.call(&req, &[]).await? {
            (Response::Opened, body) => Ok(zeroize::Zeroizing::new(body)),
            (other, _) => Err(CallError::Vault(format!(
                "unexpected answer {}",
                other.kind()
            ))),
        }
    }

    /// Seals a tenant's connector secret (write-only).
    pub async fn seal_secret(
        &self,
        tenant: &str,
        principal: &str,
        secret: &ConnectorSecret,
    ) -> Result<String, CallError> {
        let req = Request::SealSecret {
            tenant: tenant.to_string(),
            principal: principal.to_string(),
        };
        match self.call(&req, &secret.to_bytes()).await? {
            (Response::Done { summary }, _) => Ok(summary),
            (other, _) => Err(CallError::Vault(format!(
                "unexpected answer {}",
                other.kind()
            ))),
        }
    }

    /// Obtains a tenant's connector secret (the mx role, with its role token).
    pub async fn use_secret(
        &self,
        tenant: i64,
        kind: SecretKind,
        token: &RoleToken,
    ) -> Result<ConnectorSecret, CallError> {
        let req = Request::UseSecret {
            tenant,
            kind,
            role_token: token.clone(),
        };
        match self.call(&req, &[]).await? {
            (Response::Secret, body) => ConnectorSecret::from_bytes(&zeroize::Zeroizing::new(body))
                .map_err(CallError::Vault),
            (other, _) => Err(CallError::Vault(format!(
                "unexpected answer {}",
                other.kind()
            ))),
        }
    }
}
