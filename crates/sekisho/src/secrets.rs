//! The mx role's connector secrets: obtained from the vault with the mx role token at use,
//! kept only in memory for a short while, never written or logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use egress::secrets::{BoxFuture, ConnectorSecret, SecretKind, SecretSource};
use proto::client::VaultClient;
use proto::vault::RoleToken;

/// Longest time a secret obtained from the vault is reused. A change through the CLI takes
/// effect at once (the directory generation changes and mx drops what it holds), and a value
/// the next hop refuses is dropped too.
pub const CACHE_FOR: Duration = Duration::from_secs(300);

/// Secrets held, by tenant and kind, with the time they were obtained.
type Held = HashMap<(i64, SecretKind), (Instant, Arc<ConnectorSecret>)>;

/// Connector secrets from the vault.
pub struct VaultSecrets {
    vault: VaultClient,
    token: RoleToken,
    cache: Mutex<Held>,
}

impl VaultSecrets {
    /// A source asking `vault` with the mx role `token`.
    pub fn new(vault: VaultClient, token: RoleToken) -> Self {
        Self {
            vault,
            token,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl SecretSource for VaultSecrets {
    fn get(
        &self,
        tenant: i64,
        kind: SecretKind,
    ) -> BoxFuture<'_, Result<Arc<ConnectorSecret>, String>> {
        Box::pin(async move {
            if let Some((at, s)) = self.cache.lock().expect("poisoned").get(&(tenant, kind))
                && at.elapsed() < CACHE_FOR
            {
                return Ok(s.clone());
            }
            let bytes = self
                .vault
                .use_secret(proto::TenantId(tenant), kind, &self.token)
                .await
                .map_err(|e| e.to_string())?;
            let secret = Arc::new(keys::connector::ConnectorSecret::from_bytes(&bytes)?);
            self.cache
                .lock()
                .expect("poisoned")
                .insert((tenant, kind), (Instant::now(), secret.clone()));
            Ok(secret)
        })
    }

    fn forget(&self, tenant: i64) {
        self.cache
            .lock()
            .expect("poisoned")
            .retain(|(t, _), _| *t != tenant);
    }

    fn forget_all(&self) {
        self.cache.lock().expect("poisoned").clear();
    }
}
