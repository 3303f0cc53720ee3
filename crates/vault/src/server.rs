//! The vault role's request handling: the only code that unwraps tenant identities.

use std::path::Path;
use std::sync::Arc;

use store::blobs::BlobStore;
use store::{NewRecord, Store, TenantKey};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::proto::{Purpose, Request, Response, read_frame, write_frame};
use crate::{Kek, generate_tenant_key, open, unwrap_identity};

/// What the vault works with.
pub struct Vault {
    /// The store (tenant keys, quarantine metadata, records).
    pub store: Store,
    /// Sealed blobs.
    pub blobs: Arc<dyn BlobStore>,
    /// The key-encryption key.
    pub kek: Kek,
}

impl Vault {
    async fn record(&self, r: NewRecord<'_>) {
        if let Err(e) = self.store.record(&r).await {
            tracing::error!(error = %e, action = r.action, "vault record could not be written");
        }
    }

    /// Answers one request (the payload of `Opened` is the plaintext).
    pub async fn handle(&self, req: Request) -> (Response, Vec<u8>) {
        match req {
            Request::Ping => (Response::Pong, Vec::new()),
            Request::TenantRecipient { tenant } => match self.recipient(tenant).await {
                Ok(k) => (
                    Response::Recipient {
                        recipient: k.recipient,
                        customer_held: k.wrapped.is_none(),
                    },
                    Vec::new(),
                ),
                Err(message) => (Response::Error { message }, Vec::new()),
            },
            Request::OpenQuarantine {
                id,
                purpose,
                principal,
                reason,
            } => {
                self.open_quarantine(&id, purpose, &principal, &reason)
                    .await
            }
        }
    }

    async fn recipient(&self, tenant: i64) -> Result<TenantKey, String> {
        if let Some(k) = self
            .store
            .tenant_key(tenant)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(k);
        }
        let new = generate_tenant_key(&self.kek, tenant);
        let k = self
            .store
            .put_tenant_key(&TenantKey {
                tenant_id: tenant,
                recipient: new.recipient,
                wrapped: Some(new.wrapped),
            })
            .await
            .map_err(|e| e.to_string())?;
        self.record(NewRecord {
            principal: "vault",
            role: "vault",
            action: "create-key",
            tenant_id: Some(tenant),
            object: &k.recipient,
            outcome: "ok",
            ..Default::default()
        })
        .await;
        Ok(k)
    }

    async fn open_quarantine(
        &self,
        id: &str,
        purpose: Purpose,
        principal: &str,
        reason: &str,
    ) -> (Response, Vec<u8>) {
        let action = format!("open-quarantine:{}", purpose.name());
        let mut rec = NewRecord {
            principal,
            role: "vault",
            action: &action,
            object: id,
            reason,
            ..Default::default()
        };
        if reason.trim().is_empty() {
            rec.outcome = "refused: no reason";
            self.record(rec).await;
            return refused("a reason is required to open sealed content");
        }
        let item = match self.store.quarantine_get(id).await {
            Ok(i) => i,
            Err(e) => {
                rec.outcome = "refused: not found";
                self.record(rec).await;
                return refused(&e.to_string());
            }
        };
        rec.tenant_id = Some(item.tenant_id);
        let key = match self.store.tenant_key(item.tenant_id).await {
            Ok(Some(k)) => k,
            Ok(None) => {
                rec.outcome = "error: tenant key destroyed";
                self.record(rec).await;
                return refused(
                    "the tenant's key no longer exists (terminated): the message cannot be opened by anyone",
                );
            }
            Err(e) => return error(&e.to_string()),
        };
        let Some(wrapped) = key.wrapped.as_deref() else {
            rec.outcome = "refused: customer-held key";
            self.record(rec).await;
            return refused(
                "this tenant holds its own key (customer-held): the operator side cannot open its mail; the tenant decrypts the sealed blob with its own age identity",
            );
        };
        if key.recipient != item.sealed_to {
            rec.outcome = "error: sealed to another key";
            self.record(rec).await;
            return refused("the message was sealed to a key the tenant no longer has");
        }
        let result = unwrap_identity(&self.kek, item.tenant_id, &key.recipient, wrapped)
            .map_err(|e| e.to_string())
            .and_then(|identity| {
                let sealed = self.blobs.get(&item.blob).map_err(|e| e.to_string())?;
                open(&identity, &sealed).map_err(|e| e.to_string())
            });
        match result {
            Ok(plain) => {
                rec.outcome = "ok";
                self.record(rec).await;
                (Response::Opened, plain.to_vec())
            }
            Err(message) => {
                let outcome = format!("error: {message}");
                rec.outcome = &outcome;
                self.record(rec).await;
                error(&message)
            }
        }
    }
}

fn refused(message: &str) -> (Response, Vec<u8>) {
    (
        Response::Refused {
            message: message.to_string(),
        },
        Vec::new(),
    )
}

fn error(message: &str) -> (Response, Vec<u8>) {
    (
        Response::Error {
            message: message.to_string(),
        },
        Vec::new(),
    )
}

/// Binds the vault socket (mode 0600; a stale socket file is replaced).
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Serves requests until `shutdown`.
pub async fn serve(listener: UnixListener, vault: Arc<Vault>, shutdown: CancellationToken) {
    loop {
        let conn = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = listener.accept() => c,
        };
        let Ok((stream, _)) = conn else { continue };
        let v = vault.clone();
        tokio::spawn(async move {
            if let Err(e) = exchange(stream, &v).await {
                tracing::debug!(error = %e, "vault connection ended");
            }
        });
    }
}

async fn exchange(mut s: UnixStream, vault: &Vault) -> std::io::Result<()> {
    let (req, _payload): (Request, Vec<u8>) = read_frame(&mut s).await?;
    let (resp, body) = vault.handle(req).await;
    write_frame(&mut s, &resp, &body).await
}
