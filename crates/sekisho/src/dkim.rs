//! mx's DKIM signer: which key signs a domain is asked of the vault and kept a minute (also
//! "none", so unsigned domains cost one question a minute); every signature is the vault's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use egress::dkim::DkimSource;
use egress::secrets::BoxFuture;
use proto::client::VaultClient;
use proto::vault::{DkimKeyRef, RoleToken};

/// How long an answer about a domain's key is kept (a rotation reaches mx within it; the
/// retired key still signs meanwhile).
const KEEP_FOR: Duration = Duration::from_secs(60);

/// Most domains whose answer is kept.
const MAX_HELD: usize = 10_000;

type Held = HashMap<(i64, String), (Instant, Option<DkimKeyRef>)>;

pub struct VaultDkim {
    vault: VaultClient,
    token: RoleToken,
    held: Mutex<Held>,
}

impl VaultDkim {
    pub fn new(vault: VaultClient, token: RoleToken) -> Self {
        Self {
            vault,
            token,
            held: Mutex::new(HashMap::new()),
        }
    }
}

impl DkimSource for VaultDkim {
    fn key(&self, tenant: i64, domain: &str) -> BoxFuture<'_, Result<Option<DkimKeyRef>, String>> {
        let at = (tenant, domain.to_string());
        Box::pin(async move {
            if let Some((when, key)) = self.held.lock().expect("poisoned").get(&at)
                && when.elapsed() < KEEP_FOR
            {
                return Ok(key.clone());
            }
            let key = self
                .vault
                .dkim_key(proto::TenantId(tenant), &at.1, &self.token)
                .await
                .map_err(|e| format!("the vault did not say which DKIM key signs: {e}"))?;
            let mut held = self.held.lock().expect("poisoned");
            if held.len() >= MAX_HELD {
                held.retain(|_, (when, _)| when.elapsed() < KEEP_FOR);
            }
            if held.len() < MAX_HELD {
                held.insert(at, (Instant::now(), key.clone()));
            }
            Ok(key)
        })
    }

    fn sign<'a>(
        &'a self,
        tenant: i64,
        domain: &'a str,
        selector: &'a str,
        digest: [u8; 32],
    ) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move {
            let signed = self
                .vault
                .dkim_sign(
                    proto::TenantId(tenant),
                    domain,
                    selector,
                    &self.token,
                    &digest,
                )
                .await;
            if signed.is_err() {
                // Asked again next time (the key may have been removed or rotated).
                self.held
                    .lock()
                    .expect("poisoned")
                    .remove(&(tenant, domain.to_string()));
            }
            signed.map_err(|e| format!("the vault did not sign: {e}"))
        })
    }

    fn forget_all(&self) {
        self.held.lock().expect("poisoned").clear();
    }
}
