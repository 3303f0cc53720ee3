//! The vault role's request handling: the only code that unwraps tenant identities.

mod acts;
mod dkim;
mod handouts;
mod passkey;
pub mod portal;
mod quarantine;

pub use acts::{PolicyDefaults, visible};
pub use portal::{
    LOCK_AFTER, MALWARE_SYMBOLS, RECOVERY_CODES, SESSION_ABSOLUTE, SESSION_IDLE, STEP_UP_SECONDS,
    malware_flagged, may_open,
};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use store::blobs::BlobStore;
use store::{NewRecord, SealedSecret, Store, TenantKey};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::{
    ConnectorSecret, Kek, SecretKind, generate_tenant_key, open, open_secret, seal_secret,
    unwrap_identity,
};
use proto::frame::{MAX_PAYLOAD, MAX_ROLE_PAYLOAD, read_frame_within, write_frame};
use proto::vault::{Admin, Purpose, Request, Response, RoleToken};
use proto::{Refusal, Refused};

/// What the vault works with.
pub struct Vault {
    /// The store (tenant keys, quarantine metadata, records).
    pub store: Store,
    /// Sealed blobs.
    pub blobs: Arc<dyn BlobStore>,
    /// The key-encryption key in use.
    kek: std::sync::RwLock<Arc<Kek>>,
    /// Where the KEK lives (rotation replaces the file).
    kek_path: PathBuf,
    /// One key change at a time.
    changing: tokio::sync::Mutex<()>,
    /// The token the mx role presents to obtain connector secrets (none: nobody obtains them).
    mx_token: Option<RoleToken>,
    /// The audit checkpoint signing key.
    audit: keys::audit::Signer,
    /// Bulk-read detection.
    opens: crate::detect::Opens,
    /// Decoy quarantine items.
    canaries: crate::detect::Canaries,
    /// Failed-login storm detection.
    login_failures: crate::detect::LoginFailures,
    working_hours: Option<crate::detect::WorkingHours>,
    /// The WebAuthn relying party (none: no portal, so no passkeys).
    webauthn: Option<webauthn_rs::Webauthn>,
    /// The node's global filter policy (tenant policies are checked against it).
    policy: acts::PolicyDefaults,
    /// The node's mail path, asked to reload after a portal act changed the directory.
    mx: Option<proto::mx::MxClient>,
    /// The newest audit record pinned beside the KEK.
    head: tokio::sync::Mutex<Option<(i64, Vec<u8>)>>,
    /// The roles' uids, when each runs under its own user.
    role_uids: Option<RoleUids>,
    /// Strangers recently recorded.
    strangers: Strangers,
    /// DKIM keys opened for signing (kept a minute).
    opened_keys: dkim::OpenedKeys,
}

/// The roles' users (uids), when each runs under its own: the kernel then tells the vault
/// who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleUids {
    /// The vault's own.
    pub vault: u32,
    /// mx's.
    pub mx: u32,
    /// The portal's.
    pub portal: u32,
}

/// Who is at the other end of the vault socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The local CLI (root, or the node's own user when the roles share it).
    Operator,
    /// mx or the portal.
    Role,
    /// Any other local user: refused.
    Stranger,
}

/// The file beside the KEK that pins the audit keys the vault created (`key_id public-hex`
/// per line): a key added to the database by anyone else is not trusted by `audit verify`.
pub fn pin_path(kek_path: &Path) -> PathBuf {
    kek_path.with_file_name("audit-keys")
}

/// The file beside the KEK that pins the newest audit record the vault has seen
/// (`record-id hash-hex`): `audit verify` finds a deleted or rewritten tail with it even where
/// no signed checkpoint covers it yet.
pub fn head_path(kek_path: &Path) -> PathBuf {
    kek_path.with_file_name("audit-head")
}

/// Reads the pinned head (`None`: nothing pinned yet).
pub fn read_head(kek_path: &Path) -> std::io::Result<Option<(i64, Vec<u8>)>> {
    let text = match std::fs::read_to_string(head_path(kek_path)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let parsed = text
        .split_once(' ')
        .and_then(|(id, h)| Some((id.trim().parse().ok()?, hex::decode(h.trim()).ok()?)));
    parsed
        .map(Some)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not a pinned head"))
}

/// Writes the pinned head (a new file renamed over the old: never half written).
fn write_head(kek_path: &Path, id: i64, hash: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let path = head_path(kek_path);
    let tmp = path.with_extension("new");
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{id} {}", hex::encode(hash))?;
    // No fsync: a crash can leave an older pin, which only checks less, never wrongly.
    std::fs::rename(&tmp, &path)
}

/// Reads pinned audit public keys.
pub fn read_pins(kek_path: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let text = std::fs::read_to_string(pin_path(kek_path))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (id, key) = l.split_once(' ')?;
            Some((id.to_string(), hex::decode(key.trim()).ok()?))
        })
        .collect())
}

fn pin(kek_path: &Path, k: &store::AuditKey) -> Result<(), String> {
    use std::io::Write;
    if read_pins(kek_path).is_ok_and(|p| p.iter().any(|(id, _)| *id == k.key_id)) {
        return Ok(());
    }
    let public = hex::encode(&k.public_key);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(pin_path(kek_path))
        .and_then(|mut f| {
            writeln!(f, "{} {public}", k.key_id)?;
            f.sync_all()
        })
        .map_err(|e| format!("audit key pin {}: {e}", pin_path(kek_path).display()))
}

/// The newest audit signing key, created (and pinned) on first use.
async fn audit_signer(
    store: &Store,
    kek: &Kek,
    kek_path: &Path,
) -> Result<keys::audit::Signer, String> {
    let keys = store.audit_keys().await.map_err(|e| e.to_string())?;
    if let Some(k) = keys.iter().rev().find(|k| !k.wrapped.is_empty()) {
        match crate::unwrap_audit_key(kek, k) {
            Ok(signer) => {
                pin(kek_path, k)?;
                return Ok(signer);
            }
            Err(e) => {
                // A database restored from before a KEK rotation: its key cannot sign any
                // more. Retire it (its public key still verifies its checkpoints) and start
                // a new one; the record says so.
                tracing::warn!(key = %k.key_id, error = %e, "audit signing key unusable; replacing it");
                store
                    .audit_key_retire(&k.key_id)
                    .await
                    .map_err(|e| e.to_string())?;
                let reason = format!("key {} does not open with this KEK", k.key_id);
                let _ = store
                    .record(&NewRecord {
                        principal: "vault",
                        action: "audit-key-replaced",
                        object: &k.key_id,
                        reason: &reason,
                        outcome: "ok",
                        ..NewRecord::by(proto::Process::Vault)
                    })
                    .await;
            }
        }
    }
    let (signer, stored) = crate::generate_audit_key(kek);
    store
        .audit_key_put(&stored)
        .await
        .map_err(|e| e.to_string())?;
    pin(kek_path, &stored)?;
    Ok(signer)
}

/// Everything wrapped with the KEK: tenant identities, connector secrets, audit signing keys.
struct KekMaterial {
    keys: Vec<TenantKey>,
    secrets: Vec<SealedSecret>,
    audit_keys: Vec<store::AuditKey>,
    /// Portal users' sealed TOTP secrets (user id, sealed).
    totps: Vec<(i64, Vec<u8>)>,
    /// The nodes' spool keys.
    spool_keys: Vec<store::WrappedSpoolKey>,
    /// Tenants' DKIM signing keys.
    dkim: Vec<store::SealedDkimKey>,
}

impl KekMaterial {
    async fn load(store: &Store) -> Result<Self, String> {
        Ok(Self {
            keys: store
                .wrapped_tenant_keys()
                .await
                .map_err(|e| e.to_string())?,
            secrets: store.sealed_secrets().await.map_err(|e| e.to_string())?,
            // Retired keys (empty wrap) only verify old checkpoints; nothing to re-wrap.
            audit_keys: store
                .audit_keys()
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|k| !k.wrapped.is_empty())
                .collect(),
            totps: store
                .user_list(None)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|u| !u.totp_sealed.is_empty())
                .map(|u| (u.id, u.totp_sealed))
                .collect(),
            spool_keys: store.spool_keys().await.map_err(|e| e.to_string())?,
            dkim: store.dkim_sealed(None).await.map_err(|e| e.to_string())?,
        })
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
            && self.secrets.is_empty()
            && self.audit_keys.is_empty()
            && self.totps.is_empty()
            && self.spool_keys.is_empty()
            && self.dkim.is_empty()
    }

    fn kind(s: &SealedSecret) -> Result<SecretKind, String> {
        s.kind
            .parse()
            .map_err(|e| format!("tenant {}: {e}", s.tenant_id))
    }

    /// True if `kek` opens every item.
    fn opens_with(&self, kek: &Kek) -> bool {
        self.keys.iter().all(|t| {
            unwrap_identity(
                kek,
                t.tenant_id,
                &t.recipient,
                t.wrapped.as_deref().unwrap_or(&[]),
            )
            .is_ok()
        }) && self.secrets.iter().all(|s| {
            Self::kind(s).is_ok_and(|k| open_secret(kek, s.tenant_id, k, &s.sealed).is_ok())
        }) && self
            .audit_keys
            .iter()
            .all(|k| crate::unwrap_audit_key(kek, k).is_ok())
            && self
                .totps
                .iter()
                .all(|(id, sealed)| kek.open(&portal::totp_aad(*id), sealed).is_some())
            && self
                .spool_keys
                .iter()
                .all(|k| crate::unwrap_spool_key(kek, &k.node, &k.wrapped).is_ok())
            && self.dkim.iter().all(|k| crate::open_dkim(kek, k).is_ok())
    }

    /// Re-wraps every item from `old` to `new`.
    fn rewrap(&mut self, old: &Kek, new: &Kek) -> Result<(), String> {
        for k in &mut self.keys {
            let wrapped = k.wrapped.as_deref().unwrap_or(&[]);
            k.wrapped = Some(
                crate::rewrap(old, new, k.tenant_id, &k.recipient, wrapped)
                    .map_err(|e| format!("tenant {}: {e}", k.tenant_id))?,
            );
        }
        for s in &mut self.secrets {
            s.sealed = crate::rewrap_secret(old, new, s.tenant_id, Self::kind(s)?, &s.sealed)
                .map_err(|e| format!("tenant {} {}: {e}", s.tenant_id, s.kind))?;
        }
        for k in &mut self.audit_keys {
            k.wrapped = crate::rewrap_audit_key(old, new, k).map_err(|e| e.to_string())?;
        }
        for (id, sealed) in &mut self.totps {
            let aad = portal::totp_aad(*id);
            let plain = old
                .open(&aad, sealed)
                .ok_or_else(|| format!("user {id}: the second factor does not open"))?;
            *sealed = new.seal(&aad, &plain);
        }
        for k in &mut self.spool_keys {
            k.wrapped = crate::rewrap_spool_key(old, new, &k.node, &k.wrapped)
                .map_err(|e| format!("node {}: {e}", k.node))?;
        }
        for k in &mut self.dkim {
            let plain = crate::open_dkim(old, k).map_err(|e| e.to_string())?;
            k.sealed = crate::seal_dkim(new, k, &plain);
        }
        Ok(())
    }
}

/// Checks that the KEK at `kek_path` opens everything `store` holds wrapped under a KEK
/// (tenant keys, connector secrets, audit keys, second factors, spool keys) — before a
/// restored store is used. No KEK is created: a missing file is an error.
pub async fn check_kek(store: &Store, kek_path: &Path) -> Result<(), String> {
    if !kek_path.is_file() {
        return Err(format!(
            "no KEK at {}: restore the vault's directory from its own backup first (a data backup never contains the KEK)",
            kek_path.display()
        ));
    }
    let kek =
        Kek::load_or_create(kek_path).map_err(|e| format!("KEK {}: {e}", kek_path.display()))?;
    if KekMaterial::load(store).await?.opens_with(&kek) {
        Ok(())
    } else {
        Err(format!(
            "the KEK at {} does not open this backup's keys: it is not the KEK the backup was made under (or one rotated since)",
            kek_path.display()
        ))
    }
}

/// The file a rotation writes the new KEK to before it commits.
fn next_path(kek_path: &Path) -> PathBuf {
    kek_path.with_extension("next")
}

impl Vault {
    /// Opens the vault: loads (or creates) the KEK at `kek_path`, finishing a rotation that was
    /// interrupted after its database commit (the new KEK is then in `<kek>.next`).
    pub async fn open(
        store: Store,
        blobs: Arc<dyn BlobStore>,
        kek_path: &Path,
    ) -> Result<Self, String> {
        let load =
            |p: &Path| Kek::load_or_create(p).map_err(|e| format!("KEK {}: {e}", p.display()));
        let next = next_path(kek_path);
        let mut kek = load(kek_path)?;
        if next.exists() {
            let candidate = load(&next)?;
            let material = KekMaterial::load(&store).await?;
            if !material.is_empty() && material.opens_with(&candidate) && !material.opens_with(&kek)
            {
                std::fs::rename(&next, kek_path).map_err(|e| e.to_string())?;
                kek = candidate;
                tracing::warn!("completed an interrupted KEK rotation");
            } else {
                std::fs::remove_file(&next).map_err(|e| e.to_string())?;
            }
        }
        let audit = audit_signer(&store, &kek, kek_path).await?;
        Ok(Self {
            store,
            blobs,
            audit,
            opens: crate::detect::Opens::default(),
            canaries: crate::detect::Canaries::load(kek_path),
            login_failures: crate::detect::LoginFailures::default(),
            working_hours: None,
            kek: std::sync::RwLock::new(Arc::new(kek)),
            kek_path: kek_path.to_path_buf(),
            changing: tokio::sync::Mutex::new(()),
            mx_token: None,
            role_uids: None,
            strangers: Strangers::default(),
            opened_keys: dkim::OpenedKeys::default(),
            webauthn: None,
            policy: acts::PolicyDefaults::default(),
            mx: None,
            head: tokio::sync::Mutex::new(read_head(kek_path).unwrap_or(None)),
        })
    }

    /// Accepts passkeys for the portal at `origin` (its public https:// URL; the host is the
    /// WebAuthn RP ID; `any_port`: on every port of that host).
    pub fn set_passkey_origin(&mut self, origin: &url::Url, any_port: bool) -> Result<(), String> {
        self.webauthn = Some(passkey::relying_party(origin, any_port)?);
        Ok(())
    }

    /// Sets the node's global filter policy (tenant policies are checked against it).
    pub fn set_policy_defaults(&mut self, policy: acts::PolicyDefaults) {
        self.policy = policy;
    }

    /// Names the node whose mail path reloads after a portal act changed the directory.
    pub fn set_mail_node(&mut self, data_dir: &Path) {
        self.mx = Some(proto::mx::MxClient::new(
            data_dir,
            std::time::Duration::from_secs(5),
        ));
    }

    /// Sets the bulk-read rule.
    pub fn set_bulk_rule(&mut self, rule: crate::detect::BulkRule) {
        self.opens = crate::detect::Opens::new(rule);
    }

    /// Sets the login-failure storm rule.
    pub fn set_login_storm_rule(&mut self, rule: crate::detect::LoginStormRule) {
        self.login_failures = crate::detect::LoginFailures::new(rule);
    }

    /// Sets operators' working hours (content opens by operators and the CLI outside them
    /// raise `operator-off-hours`).
    pub fn set_working_hours(&mut self, hours: Option<crate::detect::WorkingHours>) {
        self.working_hours = hours;
    }

    /// Raises an alert (logged as an error line and stored; failures are logged).
    async fn alert(&self, a: store::NewAlert<'_>) {
        tracing::error!(
            severity = a.severity.as_str(),
            rule = a.rule,
            principal = a.principal,
            "alert: {}",
            a.summary
        );
        if let Err(e) = self.store.alert_raise(&a).await {
            tracing::error!(error = %e, "the alert could not be stored");
        }
    }

    /// Plants a decoy quarantine item for `tenant`: sealed like real mail, listed like real
    /// mail, registered as a canary only beside the KEK. Opening it raises a critical alert.
    async fn plant_canary(
        &self,
        tenant: &str,
        principal: &str,
        expires_at: i64,
    ) -> Result<String, String> {
        let id = self
            .store
            .tenant_id(tenant)
            .await
            .map_err(|e| e.to_string())?;
        let key = self.recipient(id).await?;
        let domain = self
            .store
            .list_tenants()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|t| t.id == id)
            .and_then(|t| t.domains.into_iter().next())
            .unwrap_or_else(|| "example.com".into());
        let qid = spool::new_queue_id();
        let tag = &qid[qid.len() - 6..];
        let rcpt = format!("accounts@{domain}");
        let sender = format!("billing@invoices-{}.example", tag.to_lowercase());
        let body = format!(
            "From: \"Accounts Receivable\" <{sender}>\r\nTo: <{rcpt}>\r\nSubject: Overdue invoice INV-{tag}\r\nDate: {}\r\nMessage-ID: <{qid}@invoices.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDear customer,\r\n\r\nour records show invoice INV-{tag} as overdue. Please settle it through the payment portal at your earliest convenience.\r\n\r\nRegards,\r\nAccounts Receivable\r\n",
            store::unix_now()
        );
        let sealed = crate::seal(&key.recipient, body.as_bytes()).map_err(|e| e.to_string())?;
        let blob = format!("{id}/{qid}.age");
        self.blobs
            .put(&blob, sealed)
            .await
            .map_err(|e| e.to_string())?;
        let now = store::unix_now();
        self.store
            .quarantine_insert(&store::QuarantineItem {
                id: qid.clone(),
                tenant_id: id,
                tenant: String::new(),
                mail_from: sender,
                rcpts: vec![rcpt],
                size: body.len() as i64,
                received_at: now,
                expires_at,
                verdict: "quarantine".into(),
                score: 9.4,
                symbols: "BAYES_SPAM(5.00) FIRST_CONTACT(1.50) URL_IN_TEXT(0.40) SPF_NONE(1.00) DMARC_NONE(1.50)".into(),
                blob,
                sealed_to: key.recipient,
                eight_bit: false,
                smtputf8: false,
                require_tls: false,
            })
            .await
            .map_err(|e| e.to_string())?;
        self.canaries
            .add(&qid)
            .map_err(|e| format!("canary registry: {e}"))?;
        // The record says a canary was planted for the tenant, not which item it is.
        self.record(NewRecord {
            principal,
            action: "plant-canary",
            tenant_id: Some(id),
            outcome: "ok",
            ..NewRecord::by(proto::Process::Vault)
        })
        .await;
        Ok(format!(
            "a canary quarantine item was planted for {tenant}; opening it raises a critical alert"
        ))
    }

    /// Plants a decoy `smtp-auth` secret for a tenant whose route does not authenticate: it
    /// is listed like a real one, and whoever obtains it raises a critical alert.
    async fn plant_canary_secret(&self, tenant: &str, principal: &str) -> Result<String, String> {
        let t = self
            .store
            .list_tenants()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|t| t.name == tenant)
            .ok_or_else(|| format!("no tenant {tenant:?}"))?;
        if t.route.contains("auth=tenant") {
            return Err(format!(
                "{tenant}'s route authenticates with its smtp-auth secret: a canary there would be used by every delivery"
            ));
        }
        if self
            .store
            .secret_get(t.id, SecretKind::SmtpAuth.name())
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            return Err(format!("{tenant} has an smtp-auth secret already"));
        }
        let password = Kek::generate().to_hex();
        let domain = t
            .domains
            .first()
            .cloned()
            .unwrap_or_else(|| "example.com".into());
        let decoy = ConnectorSecret::SmtpAuth {
            username: format!("relay@{domain}"),
            password: password[..24].to_string(),
        };
        self.store
            .secret_put(&SealedSecret {
                tenant_id: t.id,
                kind: SecretKind::SmtpAuth.name().to_string(),
                sealed: seal_secret(&self.kek(), t.id, &decoy),
            })
            .await
            .map_err(|e| e.to_string())?;
        self.canaries
            .add(&format!("secret:{}:{}", t.id, SecretKind::SmtpAuth.name()))
            .map_err(|e| format!("canary registry: {e}"))?;
        self.record(NewRecord {
            principal,
            action: "plant-canary",
            tenant_id: Some(t.id),
            outcome: "ok",
            ..NewRecord::by(proto::Process::Vault)
        })
        .await;
        Ok(format!(
            "a canary smtp-auth secret was planted for {tenant}; obtaining it raises a critical alert"
        ))
    }

    /// True if `token` is mx's role token (compared in constant time).
    fn is_mx(&self, token: &RoleToken) -> bool {
        self.mx_token
            .as_ref()
            .is_some_and(|m| keys::ct_eq(m.0.as_bytes(), token.0.as_bytes()))
    }

    /// Accepts `token` from the mx role for connector secrets.
    pub fn set_mx_token(&mut self, token: RoleToken) {
        self.mx_token = Some(token);
    }

    /// Tells callers apart by their uid: the roles' users are roles, root is the operator,
    /// anyone else a stranger.
    pub fn set_role_uids(&mut self, uids: RoleUids) {
        self.role_uids = Some(uids);
    }

    /// Who `s` comes from, as the kernel says (a peer it cannot tell is a role: fail closed).
    pub fn peer(&self, s: &UnixStream) -> Peer {
        if let Some(u) = self.role_uids {
            let Ok(uid) = s.peer_cred().map(|c| c.uid()) else {
                return Peer::Role;
            };
            return if uid == u.mx || uid == u.portal {
                Peer::Role
            } else if uid == 0 {
                Peer::Operator
            } else {
                Peer::Stranger
            };
        }
        if peer_is_role(s) {
            Peer::Role
        } else {
            Peer::Operator
        }
    }

    fn kek(&self) -> Arc<Kek> {
        self.kek.read().expect("kek lock poisoned").clone()
    }

    /// Re-wraps every tenant key under a fresh KEK; the old KEK file is replaced (destroyed).
    /// Order: new KEK to `<kek>.next` (fsync) → database commit → rename over the old file, so
    /// a crash at any point leaves a KEK that opens every stored key (see [`Vault::open`]).
    async fn rotate(&self) -> Result<String, String> {
        let old = self.kek();
        let next = next_path(&self.kek_path);
        let _ = std::fs::remove_file(&next);
        let new = Kek::load_or_create(&next).map_err(|e| format!("new KEK: {e}"))?;
        let mut material = KekMaterial::load(&self.store).await?;
        material.rewrap(&old, &new)?;
        self.store
            .rewrap_kek_material(
                &material.keys,
                &material.secrets,
                &material.audit_keys,
                &material.totps,
                &material.spool_keys,
                &material.dkim,
            )
            .await
            .map_err(|e| e.to_string())?;
        std::fs::rename(&next, &self.kek_path).map_err(|e| e.to_string())?;
        if let Some(dir) = self.kek_path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| e.to_string())?;
        }
        *self.kek.write().expect("kek lock poisoned") = Arc::new(new);
        Ok(format!(
            "{} tenant key(s), {} connector secret(s), {} audit key(s), {} second factor(s) and {} spool key(s) re-wrapped, {} DKIM key(s) re-sealed; portal sessions ended",
            material.keys.len(),
            material.secrets.len(),
            material.audit_keys.len(),
            material.totps.len(),
            material.spool_keys.len(),
            material.dkim.len()
        ))
    }

    async fn admin(&self, req: Admin) -> (Response, Vec<u8>) {
        let _one = self.changing.lock().await;
        match req {
            Admin::RotateKek { principal } => {
                let result = self.rotate().await;
                let outcome = match &result {
                    Ok(n) => format!("ok: {n}"),
                    Err(e) => format!("error: {e}"),
                };
                self.record(NewRecord {
                    principal: &principal,
                    action: "rotate-kek",
                    outcome: &outcome,
                    ..NewRecord::by(proto::Process::Vault)
                })
                .await;
                match result {
                    Ok(_) => (Response::Done { summary: outcome }, Vec::new()),
                    Err(e) => error(&e),
                }
            }
            Admin::PlantCanary {
                tenant,
                principal,
                expires_at,
            } => match self.plant_canary(&tenant, &principal, expires_at).await {
                Ok(summary) => (Response::Done { summary }, Vec::new()),
                Err(e) => error(&e),
            },
            Admin::PlantCanarySecret { tenant, principal } => {
                match self.plant_canary_secret(&tenant, &principal).await {
                    Ok(summary) => (Response::Done { summary }, Vec::new()),
                    Err(e) => error(&e),
                }
            }
            Admin::TerminateTenant { tenant, principal } => {
                match self.terminate(&tenant, &principal).await {
                    Ok(summary) => (Response::Done { summary }, Vec::new()),
                    Err(e) => error(&e),
                }
            }
            Admin::FirstLink { principal } => {
                let answer = self.first_enrolment(true).await;
                if matches!(answer.0, Response::Enrolment { .. }) {
                    self.record(NewRecord {
                        principal: &principal,
                        action: "first-link",
                        outcome: "ok: earlier first-operator links voided",
                        ..NewRecord::by(proto::Process::Vault)
                    })
                    .await;
                }
                answer
            }
            Admin::DkimGenerate {
                tenant,
                domain,
                selector,
                algorithm,
                principal,
            } => {
                let t = dkim::Target {
                    tenant,
                    domain,
                    selector,
                    principal,
                };
                self.dkim_generate(t, algorithm).await
            }
            Admin::DkimList { tenant } => self.dkim_list(&tenant).await,
            Admin::DkimRotate {
                tenant,
                domain,
                selector,
                principal,
            } => {
                let t = dkim::Target {
                    tenant,
                    domain,
                    selector,
                    principal,
                };
                self.dkim_change(t, false).await
            }
            Admin::DkimRemove {
                tenant,
                domain,
                selector,
                principal,
            } => {
                let t = dkim::Target {
                    tenant,
                    domain,
                    selector,
                    principal,
                };
                self.dkim_change(t, true).await
            }
            Admin::Invite {
                email,
                role,
                tenant,
                principal,
            } => match self
                .invite(&email, role, tenant.as_deref(), &principal)
                .await
            {
                Ok(token) => (Response::Enrolment { token }, Vec::new()),
                Err(e) => refused(&e),
            },
        }
    }

    async fn terminate(&self, tenant: &str, principal: &str) -> Result<String, String> {
        let id = self
            .store
            .tenant_id(tenant)
            .await
            .map_err(|e| e.to_string())?;
        let (counts, blobs) = self
            .store
            .terminate_tenant(id)
            .await
            .map_err(|e| e.to_string())?;
        // Its DKIM keys are gone from the store; none stays open here either.
        self.opened_keys.clear();
        let mut blob_errors = 0;
        for b in &blobs {
            if self.blobs.delete(b).await.is_err() {
                blob_errors += 1;
            }
        }
        // The tenant's wrapped identity may survive in backups and old database pages: a new
        // KEK makes every earlier wrap of it unopenable here.
        let rotated = self.rotate().await;
        let summary = format!(
            "tenant {tenant} (id {id}) terminated: key pair destroyed; {} quarantined message(s) and their sealed blobs deleted{}; {} connector secret(s), {} domain(s), {} recipient(s), {} trace record(s), {} Bayes record(s) deleted; KEK {}",
            counts.quarantined,
            if blob_errors > 0 {
                format!(" ({blob_errors} blob(s) could not be deleted)")
            } else {
                String::new()
            },
            counts.secrets,
            counts.domains,
            counts.recipients,
            counts.trace_records,
            counts.bayes_records,
            match &rotated {
                Ok(n) => format!("rotated (remaining: {n})"),
                Err(e) => format!("NOT rotated: {e}"),
            }
        );
        self.record(NewRecord {
            principal,
            role: proto::Process::Vault,
            action: "terminate-tenant",
            tenant_id: Some(id),
            object: tenant,
            reason: &summary,
            outcome: if rotated.is_ok() && blob_errors == 0 {
                "ok"
            } else {
                "partial"
            },
        })
        .await;
        rotated.map(|_| summary)
    }
}

impl Vault {
    pub(crate) async fn record(&self, r: NewRecord<'_>) {
        if let Err(e) = self.store.record(&r).await {
            tracing::error!(error = %e, action = r.action, "vault record could not be written");
        }
        self.pin_head().await;
    }

    /// Pins the audit log's newest record beside the KEK, after checking that the record it
    /// pinned before is still there, unchanged. A log that lost or rewrote its pinned tail is
    /// raised as a critical `audit-tail` alert at once (and `audit verify` names it).
    pub async fn pin_head(&self) {
        let mut pinned = self.head.lock().await;
        let Ok(Some((id, hash))) = self.store.audit_head().await else {
            return;
        };
        let problem = match pinned.as_ref() {
            Some((pid, _)) if id < *pid => Some(format!(
                "the audit log ends at record {id} but the vault pinned record {pid}: its newest records were deleted"
            )),
            Some((pid, phash)) => match self.store.audit_records(*pid, 1).await {
                Ok(r)
                    if r.first().is_some_and(|r| {
                        r.record.id == *pid && hex::decode(&r.hash).ok().as_ref() == Some(phash)
                    }) =>
                {
                    None
                }
                Ok(_) => Some(format!(
                    "audit record {pid} is not the one the vault pinned: the log's tail was rewritten"
                )),
                Err(_) => return,
            },
            None => None,
        };
        if let Some(summary) = problem {
            tracing::error!(severity = "critical", event = "audit-tail", "{summary}");
            if let Err(e) = self
                .store
                .alert_raise(&store::NewAlert {
                    by: proto::Process::Vault,
                    rule: "audit-tail",
                    severity: proto::Severity::Critical,
                    dedupe_key: "audit-tail",
                    principal: "vault",
                    tenant_id: None,
                    summary: &summary,
                })
                .await
            {
                tracing::error!(error = %e, "the audit-tail alert could not be stored");
            }
            // The alert (itself in the log) is the evidence; watching goes on from the log
            // as it now is, so one tampering is raised once.
            let Ok(Some((id, hash))) = self.store.audit_head().await else {
                return;
            };
            if let Err(e) = write_head(&self.kek_path, id, &hash) {
                tracing::error!(error = %e, "the audit head could not be pinned");
            }
            *pinned = Some((id, hash));
            return;
        }
        if pinned.as_ref().is_some_and(|(pid, _)| *pid == id) {
            return;
        }
        match write_head(&self.kek_path, id, &hash) {
            Ok(()) => *pinned = Some((id, hash)),
            Err(e) => tracing::error!(error = %e, "the audit head could not be pinned"),
        }
    }

    /// Answers one request (the payload of `Opened` is the plaintext).
    pub async fn handle(&self, req: Request, payload: Vec<u8>) -> (Response, Vec<u8>) {
        match req {
            Request::Ping => (Response::Pong, Vec::new()),
            Request::TenantRecipient { tenant } => match self.recipient(tenant.0).await {
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
                session,
                role_token: _,
                lockbox,
                break_glass,
            } => {
                let cli = CliAccess {
                    lockbox,
                    break_glass,
                };
                self.open_quarantine(
                    id.as_str(),
                    purpose,
                    &principal,
                    &reason,
                    session.as_deref(),
                    cli,
                )
                .await
            }
            Request::SealSecret { tenant, principal } => {
                self.seal_secret(&tenant, &principal, &zeroize::Zeroizing::new(payload))
                    .await
            }
            Request::UseSecret {
                tenant,
                kind,
                role_token,
            } => self.use_secret(tenant.0, kind, &role_token).await,
            Request::SpoolKey {
                node,
                role_token,
                spool_empty,
            } => self.spool_key(&node, &role_token, spool_empty).await,
            Request::DkimKey {
                tenant,
                domain,
                role_token,
            } => self.dkim_key(tenant, &domain, &role_token).await,
            Request::DkimSign {
                tenant,
                domain,
                selector,
                role_token,
            } => {
                self.dkim_sign(tenant, &domain, &selector, &role_token, &payload)
                    .await
            }
            Request::Admin(a) => self.admin(a).await,
            Request::DeleteQuarantine {
                id,
                principal,
                session,
            } => {
                self.delete_quarantine(id.as_str(), &principal, session.as_deref())
                    .await
            }
            Request::EnrolStart { token } => self.enrol_start(&token, &payload).await,
            Request::EnrolConfirm { token, code } => self.enrol_confirm(&token, &code).await,
            Request::Login {
                email,
                code,
                client_ip,
            } => {
                let pass = zeroize::Zeroizing::new(payload);
                self.login(&email, &code, &client_ip, &pass).await
            }
            Request::Session { token } => self.session(&token).await,
            Request::Logout { token } => self.logout(&token).await,
            Request::FirstEnrolment => self.first_enrolment(false).await,
            Request::DigestLinks {
                items, expires_at, ..
            } => self.digest_links(&items, expires_at).await,
            Request::DigestLink { token } => self.digest_link(&token).await,
            Request::DigestRelease { token } => self.digest_release(&token).await,
            Request::AuditExportBy {
                session,
                tenant,
                from,
                to,
            } => {
                self.audit_export_by(&session, tenant.as_deref(), from, to)
                    .await
            }
            Request::StepUp { session, code } => self.step_up(&session, &code).await,
            Request::PasskeyBegin { purpose, session } => {
                self.passkey_begin(purpose, session.as_deref()).await
            }
            Request::PasskeyFinish {
                ceremony,
                session,
                name,
                client_ip,
            } => {
                self.passkey_finish(
                    &ceremony,
                    session.as_deref(),
                    name.as_deref(),
                    &client_ip,
                    &payload,
                )
                .await
            }
            Request::PasskeyList { session } => self.passkey_list(&session).await,
            Request::PasskeyRemove { session, id } => self.passkey_remove(&session, id).await,
            Request::TokenCreate {
                session,
                name,
                scopes,
                days,
            } => self.token_create(&session, &name, scopes, days).await,
            Request::SealSecretBy { session } => {
                let payload = zeroize::Zeroizing::new(payload);
                match self.resolve_session(&session).await {
                    None => refusal(&Refused::unauthenticated()),
                    Some(u) if u.scopes.is_some() => {
                        refused("an API token cannot change secrets: log in")
                    }
                    Some(u) => match (u.role, &u.tenant) {
                        (proto::Role::TenantAdmin, Some(tenant)) => {
                            if self.stepped_up(&session).await {
                                self.seal_secret(tenant, &u.principal(), &payload).await
                            } else {
                                refusal(&Refused::step_up(
                                    "changing a secret needs a step-up: confirm with a current code first",
                                ))
                            }
                        }
                        _ => refused("connector secrets are set by the tenant's admins"),
                    },
                }
            }
            Request::InviteBy {
                session,
                email,
                role,
                tenant,
            } => self.invite_by(&session, &email, role, tenant).await,
            Request::LockboxDecide {
                id,
                approve,
                session,
            } => self.lockbox_decide(id, approve, &session).await,
            Request::Act { session, act } => self.act(&session, act).await,
            Request::Front(f) => self.front(f).await,
        }
    }
}

/// How the local CLI asks to read content: under a tenant-approved lockbox, or breaking the
/// glass.
#[derive(Debug, Clone, Copy, Default)]
pub struct CliAccess {
    /// The lockbox it opens under.
    pub lockbox: Option<i64>,
    /// No lockbox: opened, recorded and raised as a critical alert.
    pub break_glass: bool,
}

impl Vault {
    /// Whether the local CLI may read `item`: under an approved, current lockbox of its tenant
    /// (the approval sealed by this vault), or by breaking the glass (recorded and alerted).
    async fn cli_read_allowed(
        &self,
        item: &store::QuarantineItem,
        principal: &str,
        reason: &str,
        cli: &CliAccess,
        rec: &mut NewRecord<'_>,
    ) -> Result<(), (Response, Vec<u8>)> {
        if let Some(id) = cli.lockbox {
            let granted = match self.store.lockbox_get(id).await {
                Ok(lb) => {
                    lb.tenant_id == item.tenant_id
                        && lb.state == "approved"
                        && lb.open_at(store::unix_now())
                        && keys::ct_eq(lb.approval_mac.as_bytes(), self.lockbox_mac(&lb).as_bytes())
                }
                Err(_) => false,
            };
            if granted {
                return Ok(());
            }
            rec.outcome = "refused: lockbox does not grant it";
            self.record(rec.clone()).await;
            return Err(refused(&format!(
                "lockbox {id} does not grant access to {}'s mail now (not approved by the tenant, expired, or another tenant's)",
                item.tenant
            )));
        }
        if cli.break_glass {
            let summary = format!(
                "{principal} broke the glass: opened {} of tenant {} from the CLI without a lockbox (reason {reason:?})",
                item.id, item.tenant
            );
            self.alert(store::NewAlert {
                by: proto::Process::Vault,
                rule: "break-glass",
                severity: proto::Severity::Critical,
                dedupe_key: &format!("break-glass:{principal}"),
                principal,
                tenant_id: Some(item.tenant_id),
                summary: &summary,
            })
            .await;
            self.record(NewRecord {
                action: "break-glass",
                outcome: "ok: opened without a lockbox, alerted",
                ..rec.clone()
            })
            .await;
            return Ok(());
        }
        rec.outcome = "refused: no lockbox";
        self.record(rec.clone()).await;
        Err(refused(
            "reading a tenant's mail needs a lockbox the tenant approved (--lockbox ID; operators request one in the portal, `sekisho lockbox list` shows them) or, in an emergency, --break-glass (recorded and raised as a critical alert)",
        ))
    }
}

fn refused(message: &str) -> (Response, Vec<u8>) {
    refusal(&Refused::forbidden(message))
}

/// The frame of a typed refusal.
fn refusal(r: &Refused) -> (Response, Vec<u8>) {
    (
        Response::Refused {
            refusal: r.kind,
            message: r.message.clone(),
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

impl Vault {
    /// Signs a checkpoint of the chain's head if it moved by `every` records or `interval`
    /// passed since the last one. Returns the record id signed, if any.
    pub async fn checkpoint(
        &self,
        every: i64,
        interval: std::time::Duration,
        last: &mut Option<(i64, std::time::Instant)>,
    ) -> Result<Option<i64>, String> {
        let Some((head, hash)) = self.store.audit_head().await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let due = match last {
            None => true,
            Some((signed, at)) => {
                head > *signed && (head - *signed >= every || at.elapsed() >= interval)
            }
        };
        if !due {
            return Ok(None);
        }
        let at = store::unix_now();
        let msg = keys::audit::checkpoint_message(head, at, &hash);
        self.store
            .audit_checkpoint_put(
                head,
                at,
                &hash,
                &self.audit.key_id(),
                &self.audit.sign(&msg),
            )
            .await
            .map_err(|e| e.to_string())?;
        *last = Some((head, std::time::Instant::now()));
        Ok(Some(head))
    }
}

/// Signs checkpoints until `shutdown` (and once more at shutdown).
pub async fn checkpoints(
    vault: Arc<Vault>,
    every: i64,
    interval: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut last = None;
    if let Ok(Some(c)) = vault
        .store
        .audit_checkpoints()
        .await
        .map(|c| c.last().cloned())
    {
        last = Some((c.record_id, std::time::Instant::now()));
    }
    loop {
        let stop = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => false,
        };
        let every = if stop { 1 } else { every };
        // Records other roles appended are pinned within a tick.
        vault.pin_head().await;
        if let Err(e) = vault.checkpoint(every, interval, &mut last).await {
            tracing::error!(error = %e, "audit checkpoint failed");
        }
        if stop {
            return;
        }
    }
}

/// Binds the vault socket (a stale socket file is replaced). Mode 0600 when the roles share
/// the vault's user; 0666 when each runs under its own (`open`), for the portal's user must
/// connect: the vault then tells callers apart by their uid ([`Vault::peer`]).
pub fn bind(path: &Path, open: bool) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)?;
    let mode = if open { 0o666 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
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

/// True if the peer of `s` is one of the node's role processes (mx, portal): a sibling of
/// the vault under the same supervisor. Those run exposed to the network; a compromised one
/// must not be able to act as the local operator. When the peer cannot be told, it is taken
/// to be a role (fail closed).
pub fn peer_is_role(s: &UnixStream) -> bool {
    let Some(pid) = s.peer_cred().ok().and_then(|c| c.pid()) else {
        return true;
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let ppid = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse::<u32>().ok());
    ppid.is_none_or(|p| p == std::os::unix::process::parent_id())
}

impl Vault {
    /// What a role process (not the local CLI) may not ask: administrative requests, sealing
    /// secrets, and opening or deleting content without a user's session (mx alone may open
    /// without one, with its role token). `None`: allowed.
    pub fn refused_for_role(&self, req: &Request) -> Option<&'static str> {
        let mx = |t: &Option<RoleToken>| t.as_ref().is_some_and(|t| self.is_mx(t));
        match req {
            Request::Admin(_) => {
                Some("administrative requests come from the local CLI, not from a role")
            }
            Request::SealSecret { .. } => {
                Some("secrets are sealed from the local CLI, not from a role")
            }
            Request::OpenQuarantine {
                session: None,
                role_token,
                ..
            } if !mx(role_token) => {
                Some("a role opens content only for a logged-in user's session")
            }
            Request::DeleteQuarantine { session: None, .. } => {
                Some("a role deletes content only for a logged-in user's session")
            }
            Request::DigestLinks { role_token, .. } if !mx(role_token) => {
                Some("only mx signs digest links")
            }
            Request::SpoolKey { role_token, .. } if !self.is_mx(role_token) => {
                Some("only mx obtains its spool key")
            }
            Request::DkimKey { role_token, .. } | Request::DkimSign { role_token, .. }
                if !self.is_mx(role_token) =>
            {
                Some("only mx has mail signed")
            }
            _ => None,
        }
    }
}

/// A local user that is neither root nor a role connected: refused, recorded (at most once
/// a minute per user, so a loop cannot flood the audit log) and raised (the alert counts
/// every attempt).
async fn refuse_stranger(s: &mut UnixStream, vault: &Vault, uid: u32) -> std::io::Result<()> {
    let who = format!("uid {uid}");
    tracing::warn!(uid, "refused a stranger at the vault socket");
    if vault.strangers.first_in_a_minute(uid) {
        vault
            .record(NewRecord {
                principal: &who,
                action: "connect",
                outcome: "refused: not root and not a role",
                ..NewRecord::by(proto::Process::Vault)
            })
            .await;
    }
    vault
        .alert(store::NewAlert {
            by: proto::Process::Vault,
            rule: "vault-stranger",
            severity: proto::Severity::Warning,
            dedupe_key: &format!("vault-stranger:{uid}"),
            principal: &who,
            tenant_id: None,
            summary: &format!(
                "local user {uid}, neither root nor a Sekisho role, connected to the vault's socket"
            ),
        })
        .await;
    let (resp, body) = refusal(&Refused::new(
        Refusal::Forbidden,
        "the vault answers root (the CLI) and the node's roles only",
    ));
    write_frame(s, &resp, &body).await
}

/// When each stranger (by uid) was last recorded.
#[derive(Default)]
pub struct Strangers(std::sync::Mutex<std::collections::HashMap<u32, std::time::Instant>>);

impl Strangers {
    /// Most strangers remembered (older ones are forgotten first).
    const MAX: usize = 1024;

    /// True the first time `uid` is seen in a minute.
    fn first_in_a_minute(&self, uid: u32) -> bool {
        let now = std::time::Instant::now();
        let mut seen = self.0.lock().expect("poisoned");
        seen.retain(|_, t| now.duration_since(*t) < std::time::Duration::from_secs(60));
        if seen.contains_key(&uid) || seen.len() >= Self::MAX {
            return false;
        }
        seen.insert(uid, now);
        true
    }
}

/// A role sent a frame the protocol never needs (over its size limit, or not a request):
/// recorded and raised like any other overreach.
async fn oversized_from_role(vault: &Vault, e: &std::io::Error) {
    let why = format!("a malformed or oversized frame: {e}");
    tracing::warn!("refused a role's frame: {why}");
    raise_overreach(
        vault,
        "frame",
        "refused: malformed or over the role limit",
        &why,
        &format!("a role process (mx or portal) sent the vault {why}; the role may be compromised"),
    )
    .await;
}

/// Records a role's overreach and raises the critical `role-overreach` alert for `action`.
async fn raise_overreach(vault: &Vault, action: &str, outcome: &str, why: &str, summary: &str) {
    vault
        .record(NewRecord {
            principal: "role",
            action,
            outcome,
            reason: why,
            ..NewRecord::by(proto::Process::Vault)
        })
        .await;
    vault
        .alert(store::NewAlert {
            by: proto::Process::Vault,
            rule: "role-overreach",
            severity: proto::Severity::Critical,
            dedupe_key: &format!("role-overreach:{action}"),
            principal: "role",
            tenant_id: None,
            summary,
        })
        .await;
}

/// How long the vault waits for a peer's whole request.
const REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

async fn exchange(mut s: UnixStream, vault: &Vault) -> std::io::Result<()> {
    // A stranger is answered before a byte of its request is read (a frame may be large).
    let peer = vault.peer(&s);
    if peer == Peer::Stranger {
        let uid = s.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
        return refuse_stranger(&mut s, vault, uid).await;
    }
    // A role sends passwords and secrets, never mail: its requests are small, and every
    // peer's request arrives within the deadline or the connection is dropped.
    let limit = match peer {
        Peer::Role => MAX_ROLE_PAYLOAD,
        _ => MAX_PAYLOAD,
    };
    let read = tokio::time::timeout(REQUEST_DEADLINE, read_frame_within(&mut s, limit))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "a peer's request did not arrive in time",
            )
        })?;
    let (req, payload): (Request, Vec<u8>) = match read {
        Err(e) if peer == Peer::Role && e.kind() == std::io::ErrorKind::InvalidData => {
            oversized_from_role(vault, &e).await;
            return Err(e);
        }
        other => other?,
    };
    let overreach = match peer {
        Peer::Role => vault.refused_for_role(&req),
        _ => None,
    };
    let (resp, body) = match overreach {
        Some(why) => {
            tracing::warn!(request = req.kind(), "refused a role's request: {why}");
            let summary = format!(
                "a role process (mx or portal) sent the vault a {} request it may not send: {why}; the role may be compromised",
                req.kind()
            );
            raise_overreach(
                vault,
                req.kind(),
                "refused: not from the local CLI",
                why,
                &summary,
            )
            .await;
            refusal(&Refused::new(Refusal::NotForRoles, why))
        }
        None => vault.handle(req, payload).await,
    };
    let body = zeroize::Zeroizing::new(body);
    write_frame(&mut s, &resp, &body).await
}

#[cfg(test)]
mod tests {
    use super::Strangers;

    #[test]
    fn a_stranger_is_recorded_once_a_minute_and_the_memory_is_bounded() {
        let s = Strangers::default();
        assert!(s.first_in_a_minute(1000));
        assert!(
            !s.first_in_a_minute(1000),
            "the same user again within the minute"
        );
        assert!(s.first_in_a_minute(1001));
        for uid in 0..(Strangers::MAX as u32 * 2) {
            s.first_in_a_minute(2000 + uid);
        }
        assert!(s.0.lock().unwrap().len() <= Strangers::MAX);
    }
}
