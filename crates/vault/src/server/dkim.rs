//! DKIM keys: made, listed, rotated and removed from the local CLI; used only here. mx sends
//! the digest of what it signs and gets the signature back — a compromised mx can sign while
//! it runs, but never carries a key away.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::nouns::{DkimAlgorithm, DkimKeyState, TenantId};
use proto::vault::{DkimKeyInfo, DkimKeyRef, Response, RoleToken};
use store::{DkimKey, NewRecord, SealedDkimKey, StoreError};

use super::{Vault, error, refusal, refused};
use proto::Refused;

/// How long a key opened for signing is kept.
const KEEP_OPEN: Duration = Duration::from_secs(60);

/// Most keys kept open.
const MAX_OPEN: usize = 10_000;

type OpenKey = (i64, String, String);

/// Keys opened for signing, kept a minute: an RSA key's import (it checks the key) costs more
/// than a signature, and every outbound message and every sealed inbound one asks for one or
/// two. Emptied when a key is removed here or its tenant terminated; a removal made by
/// another node's vault reaches this one within the minute, as a rotation reaches mx.
#[derive(Default)]
pub(super) struct OpenedKeys(Mutex<HashMap<OpenKey, (Instant, Arc<keys::dkim::Signer>)>>);

impl OpenedKeys {
    fn get(&self, at: &OpenKey) -> Option<Arc<keys::dkim::Signer>> {
        let held = self.0.lock().expect("poisoned");
        held.get(at)
            .filter(|(when, _)| when.elapsed() < KEEP_OPEN)
            .map(|(_, s)| s.clone())
    }

    fn put(&self, at: OpenKey, signer: Arc<keys::dkim::Signer>) {
        let mut held = self.0.lock().expect("poisoned");
        if held.len() >= MAX_OPEN {
            held.retain(|_, (when, _)| when.elapsed() < KEEP_OPEN);
        }
        if held.len() < MAX_OPEN {
            held.insert(at, (Instant::now(), signer));
        }
    }

    /// Forgets every opened key.
    pub(super) fn clear(&self) {
        self.0.lock().expect("poisoned").clear();
    }
}

/// What a DKIM admin request was about, for its audit record.
pub(super) struct Target {
    pub tenant: String,
    pub domain: String,
    pub selector: String,
    pub principal: String,
}

fn store_refusal(e: StoreError) -> (Response, Vec<u8>) {
    match e {
        StoreError::Invalid(m) => refusal(&Refused::invalid(m)),
        StoreError::Conflict(m) => refusal(&Refused::conflict(m)),
        StoreError::NotFound(m) => refusal(&Refused::not_found(m)),
        other => error(&other.to_string()),
    }
}

fn info(k: &DkimKey) -> DkimKeyInfo {
    DkimKeyInfo {
        name: format!("{}._domainkey.{}", k.selector, k.domain),
        value: keys::dkim::dns_value(k.algorithm, &k.public_key),
        domain: k.domain.clone(),
        selector: k.selector.clone(),
        algorithm: k.algorithm,
        state: k.state,
        created_at: k.created_at,
    }
}

impl Vault {
    /// Makes and seals a key for one of the tenant's domains; answers its DNS record.
    pub(super) async fn dkim_generate(
        &self,
        t: Target,
        algorithm: DkimAlgorithm,
    ) -> (Response, Vec<u8>) {
        let outcome = self.dkim_make(&t, algorithm).await;
        let said = match &outcome {
            Ok(k) => format!("ok: {} {}", k.algorithm, k.state),
            Err(_) => "refused".to_string(),
        };
        self.dkim_record(&t, "dkim-generate", &said).await;
        match outcome {
            Ok(k) => (
                Response::DkimKeys {
                    keys: vec![info(&k)],
                },
                Vec::new(),
            ),
            Err(answer) => answer,
        }
    }

    async fn dkim_make(
        &self,
        t: &Target,
        algorithm: DkimAlgorithm,
    ) -> Result<DkimKey, (Response, Vec<u8>)> {
        let tenant_id = self
            .store
            .tenant_id(&t.tenant)
            .await
            .map_err(store_refusal)?;
        let domain = store::normalize_domain(&t.domain).map_err(store_refusal)?;
        let selector = store::normalize_selector(&t.selector).map_err(store_refusal)?;
        let made = keys::dkim::generate(algorithm).map_err(|e| error(&e))?;
        let mut key = DkimKey {
            tenant_id,
            domain: domain.clone(),
            selector: selector.clone(),
            algorithm,
            public_key: made.public,
            state: DkimKeyState::Pending,
            created_at: store::unix_now(),
        };
        let row = SealedDkimKey {
            tenant_id,
            domain,
            selector,
            algorithm,
            state: key.state,
            sealed: Vec::new(),
        };
        let sealed = crate::seal_dkim(&self.kek(), &row, &made.pkcs8);
        key.state = self
            .store
            .dkim_create(&key, &sealed)
            .await
            .map_err(store_refusal)?;
        Ok(key)
    }

    pub(super) async fn dkim_list(&self, tenant: &str) -> (Response, Vec<u8>) {
        let listed = async {
            let id = self.store.tenant_id(tenant).await?;
            self.store.dkim_list(Some(id)).await
        };
        match listed.await {
            Ok(keys) => (
                Response::DkimKeys {
                    keys: keys.iter().map(info).collect(),
                },
                Vec::new(),
            ),
            Err(e) => store_refusal(e),
        }
    }

    /// Rotation (`remove: false`: the pending key becomes active) or removal of a key.
    pub(super) async fn dkim_change(&self, t: Target, remove: bool) -> (Response, Vec<u8>) {
        let changed = async {
            let id = self.store.tenant_id(&t.tenant).await?;
            match remove {
                false => self.store.dkim_rotate(id, &t.domain, &t.selector).await,
                true => self.store.dkim_remove(id, &t.domain, &t.selector).await,
            }
        };
        let (action, done) = match remove {
            false => ("dkim-rotate", "now signs"),
            true => ("dkim-remove", "removed"),
        };
        match changed.await {
            Ok(()) => {
                self.opened_keys.clear();
                self.dkim_record(&t, action, "ok").await;
                let summary = format!("the key {} of {} {done}", t.selector, t.domain);
                (Response::Done { summary }, Vec::new())
            }
            Err(e) => {
                self.dkim_record(&t, action, "refused").await;
                store_refusal(e)
            }
        }
    }

    async fn dkim_record(&self, t: &Target, action: &str, outcome: &str) {
        let object = format!("{}._domainkey.{}", t.selector, t.domain);
        let tenant_id = self.store.tenant_id(&t.tenant).await.ok();
        self.record(NewRecord {
            principal: &t.principal,
            action,
            object: &object,
            outcome,
            tenant_id,
            ..NewRecord::by(proto::Process::Vault)
        })
        .await;
    }

    /// The key that signs `domain` for `tenant` (mx only).
    pub(super) async fn dkim_key(
        &self,
        tenant: TenantId,
        domain: &str,
        token: &RoleToken,
    ) -> (Response, Vec<u8>) {
        if !self.is_mx(token) {
            return refused("DKIM keys are used only by the mx role");
        }
        match self.store.dkim_sealed(Some((tenant.0, domain))).await {
            Ok(keys) => {
                let key = keys
                    .into_iter()
                    .find(|k| k.state == DkimKeyState::Active)
                    .map(|k| DkimKeyRef {
                        selector: k.selector,
                        algorithm: k.algorithm,
                    });
                (Response::DkimKey { key }, Vec::new())
            }
            Err(e) => error(&e.to_string()),
        }
    }

    /// Signs a digest with a tenant's active or retired key (mx only). Not recorded one by
    /// one (every outbound message): counted in the vault's log at debug level.
    pub(super) async fn dkim_sign(
        &self,
        tenant: TenantId,
        domain: &str,
        selector: &str,
        token: &RoleToken,
        digest: &[u8],
    ) -> (Response, Vec<u8>) {
        if !self.is_mx(token) {
            self.record(NewRecord {
                principal: "unknown",
                action: "dkim-sign",
                object: domain,
                outcome: "refused: not the mx role",
                tenant_id: Some(tenant.0),
                ..NewRecord::by(proto::Process::Vault)
            })
            .await;
            return refused("only the mx role has mail signed");
        }
        let at = (tenant.0, domain.to_string(), selector.to_string());
        let signer = match self.opened_keys.get(&at) {
            Some(s) => s,
            None => match self.open_signing_key(tenant, domain, selector).await {
                Ok(s) => {
                    self.opened_keys.put(at, s.clone());
                    s
                }
                Err(r) => return r,
            },
        };
        match signer.sign_digest(digest) {
            Ok(sig) => (Response::Signature, sig),
            Err(e) => refusal(&Refused::invalid(e)),
        }
    }

    /// Opens the active or retired key `selector` of `domain` for signing.
    async fn open_signing_key(
        &self,
        tenant: TenantId,
        domain: &str,
        selector: &str,
    ) -> Result<Arc<keys::dkim::Signer>, (Response, Vec<u8>)> {
        let keys = match self.store.dkim_sealed(Some((tenant.0, domain))).await {
            Ok(k) => k,
            Err(e) => return Err(error(&e.to_string())),
        };
        let Some(key) = keys
            .iter()
            .find(|k| k.selector == selector && k.state != DkimKeyState::Pending)
        else {
            return Err(refusal(&Refused::not_found(format!(
                "{domain} has no key {selector:?} that signs"
            ))));
        };
        let pkcs8 = crate::open_dkim(&self.kek(), key).map_err(|e| error(&e.to_string()))?;
        keys::dkim::Signer::from_pkcs8(key.algorithm, &pkcs8)
            .map(Arc::new)
            .map_err(|e| refusal(&Refused::invalid(e)))
    }
}
