//! Portal accounts as the vault keeps them: enrolment links, password + TOTP login with
//! lockout, and sessions the vault alone can mint.
//!
//! The portal never sees a password hash or a TOTP secret: it forwards what the user typed and
//! gets back a session token. Tokens (sessions, enrolment links) are random; the store keeps
//! only their HMAC under a key derived from the KEK, so a row written by anyone but the vault
//! matches no token, and a stolen database yields no usable session. Rotating the KEK therefore
//! ends every session (everyone logs in again) — a feature after a suspected compromise.

use keys::{password, totp};
use store::{NewRecord, User, unix_now};

use super::{Vault, error, read_pins, refusal, refused};
use proto::vault::{Response, SessionUser};
use proto::{QueueId, Refusal, Refused, Role, Scope, TenantId};

/// A session ends this long after its last use.
pub const SESSION_IDLE: i64 = 30 * 60;
pub use proto::vault::{SESSION_ABSOLUTE, STEP_UP_SECONDS};
/// An invitation link is valid this long.
pub const INVITE_TTL: i64 = 72 * 3600;
/// The first-operator link printed at start is valid this long.
pub const FIRST_TTL: i64 = 24 * 3600;
/// Failed logins before the account locks (then each further failure doubles the lock).
pub const LOCK_AFTER: i64 = 5;
/// The first lock's length.
pub const LOCK_BASE: i64 = 30;
/// The longest lock.
pub const LOCK_MAX: i64 = 3600;
/// The issuer name authenticator apps show.
const ISSUER: &str = "Sekisho";

/// The lock after `failures` failed logins in a row (0 while under [`LOCK_AFTER`]).
pub fn lock_for(failures: i64) -> i64 {
    if failures < LOCK_AFTER {
        0
    } else {
        (LOCK_BASE << (failures - LOCK_AFTER).min(20)).min(LOCK_MAX)
    }
}

pub(super) fn totp_aad(user_id: i64) -> Vec<u8> {
    format!("sekisho totp v1 user={user_id}").into_bytes()
}

pub(super) fn random_token(prefix: &str) -> String {
    format!("{prefix}{}", &*keys::SecretKey::generate().to_hex())
}

/// How many recovery codes an account gets.
pub const RECOVERY_CODES: usize = 10;

/// A recovery code: 50 random bits as `xxxxx-xxxxx` (base32, lower case).
fn recovery_code() -> String {
    let key = keys::SecretKey::generate();
    let b32 = totp::base32(&key.mac(b"recovery code")[..7]).to_ascii_lowercase();
    format!("{}-{}", &b32[..5], &b32[5..10])
}

/// The comparison form of what a person typed as a recovery code, if it can be one.
fn recovery_form(code: &str) -> Option<String> {
    let c: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (c.len() == 10 && c.chars().any(|c| c.is_ascii_alphabetic())).then_some(c)
}

pub(super) fn session_user(u: &User) -> SessionUser {
    SessionUser {
        id: u.id,
        email: u.email.clone(),
        role: u.role,
        tenant_id: u.tenant_id.map(TenantId),
        tenant: u.tenant.clone(),
        scopes: None,
        link: None,
    }
}

/// What a digest link grants: releasing one quarantined item on behalf of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTerms {
    /// The item's tenant.
    pub tenant_id: i64,
    /// Quarantine id.
    pub id: QueueId,
    /// The recipient (lower case).
    pub rcpt: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Digest links: `dg1_<tenant>.<id>.<hex(rcpt)>.<expires>.<HMAC>`, the MAC under the
/// KEK-derived portal-token key, so only the vault makes or accepts them.
pub const LINK_PREFIX: &str = "dg1_";

pub use proto::vault::MAX_DIGEST_LINKS;

pub use proto::verdict::{MALWARE_SYMBOLS, malware_flagged};

/// The one rule of what a portal user may open: tenant admins their tenant's messages, end
/// users the messages addressed to them; operators and auditors no content at all (an
/// operator's access to content needs a tenant-approved lockbox).
pub fn may_open(user: &SessionUser, tenant_id: i64, rcpts: &[String]) -> bool {
    let own = user.tenant_id == Some(TenantId(tenant_id));
    match user.role {
        Role::TenantAdmin => own,
        Role::User => own && rcpts.iter().any(|r| r.eq_ignore_ascii_case(&user.email)),
        Role::Operator | Role::Auditor => false,
    }
}

impl Vault {
    pub(super) fn mac_hex(&self, label: &str, token: &str) -> String {
        let key = self.kek().derive("sekisho portal tokens v1");
        hex::encode(key.mac(format!("{label}:{token}").as_bytes()))
    }

    pub(super) fn csrf(&self, token: &str) -> String {
        self.mac_hex("csrf", token)
    }

    pub(super) fn open_totp(&self, u: &User) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        self.kek().open(&totp_aad(u.id), &u.totp_sealed)
    }

    pub(super) async fn login_record(
        &self,
        principal: &str,
        ip: &str,
        tenant: Option<i64>,
        outcome: &str,
    ) {
        if !outcome.starts_with("ok") {
            self.note_login_failure(principal, ip).await;
        } else {
            self.note_login_network(principal, ip, tenant).await;
        }
        self.record(NewRecord {
            principal,
            action: "login",
            tenant_id: tenant,
            reason: &format!("from {ip}"),
            outcome,
            ..NewRecord::by(proto::Process::Vault)
        })
        .await;
    }

    /// The portal user named by a request's session (`None` without one) and the principal
    /// to record: the user's, or `claimed` for a request without a session. A portal request
    /// names its user by session, and the vault checks it, not the caller.
    pub(super) async fn session_of(
        &self,
        session: Option<&str>,
        claimed: &str,
    ) -> Result<(Option<SessionUser>, String), (Response, Vec<u8>)> {
        if let Some(token) = session.filter(|t| t.starts_with(LINK_PREFIX)) {
            return match self.parse_link(token) {
                Some(l) => Ok((
                    Some(SessionUser {
                        id: 0,
                        email: l.rcpt.clone(),
                        role: Role::User,
                        tenant_id: Some(TenantId(l.tenant_id)),
                        tenant: None,
                        scopes: Some(vec![Scope::QuarantineWrite]),
                        link: Some(l.id),
                    }),
                    format!("link:{}", l.rcpt),
                )),
                None => Err(refused(
                    "this link is not valid or has expired: log in to the portal to review your quarantine",
                )),
            };
        }
        match session {
            Some(token) => match self.resolve_session(token).await {
                Some(u) => {
                    let principal = u.principal();
                    Ok((Some(u), principal))
                }
                None => Err(refusal(&Refused::unauthenticated())),
            },
            None => Ok((None, claimed.to_string())),
        }
    }

    /// The quarantined item `id`, if it exists and — for a portal user — is theirs to `verb`;
    /// a refusal is recorded in `rec` (whose tenant is set once the item is known).
    pub(super) async fn authorised_item(
        &self,
        id: &str,
        user: Option<&SessionUser>,
        verb: &str,
        rec: &mut NewRecord<'_>,
    ) -> Result<store::QuarantineItem, (Response, Vec<u8>)> {
        let item = match self.store.quarantine_get(id).await {
            Ok(i) => i,
            Err(e) => {
                rec.outcome = "refused: not found";
                self.record(rec.clone()).await;
                return Err(refused(&e.to_string()));
            }
        };
        rec.tenant_id = Some(item.tenant_id);
        if let Some(link) = user.and_then(|u| u.link.as_ref())
            && (link.as_str() != id || verb != "release")
        {
            rec.outcome = "refused: not this link's message";
            self.record(rec.clone()).await;
            return Err(refused(
                "a digest link releases only the message it was sent for",
            ));
        }
        let scope = if verb == "open" {
            Scope::QuarantineRead
        } else {
            Scope::QuarantineWrite
        };
        if let Some(u) = user
            && !u.allows(scope)
        {
            rec.outcome = "refused: token scope";
            self.record(rec.clone()).await;
            return Err(refused(&format!("this API token lacks the {scope} scope")));
        }
        if let Some(u) = user
            && !may_open(u, item.tenant_id, &item.rcpts)
            && self.lockbox_grant(u, item.tenant_id).await.is_none()
        {
            if u.role == Role::Operator {
                self.alert(store::NewAlert {
                    by: proto::Process::Vault,
                    rule: "operator-without-lockbox",
                    severity: proto::Severity::Warning,
                    dedupe_key: &format!("operator-without-lockbox:{}:{}", u.email, item.tenant_id),
                    principal: &u.principal(),
                    tenant_id: Some(item.tenant_id),
                    summary: &format!(
                        "operator {} tried to {verb} a message of tenant {} without an approved lockbox",
                        u.email, item.tenant
                    ),
                })
                .await;
            }
            if u.role == Role::Operator {
                rec.outcome = "refused: no approved lockbox";
                self.record(rec.clone()).await;
                return Err(refused(&format!(
                    "operators {verb} a tenant's mail only through a lockbox the tenant approved (request one at /lockbox)"
                )));
            }
            rec.outcome = "refused: not this user's message";
            self.record(rec.clone()).await;
            return Err(refused(&format!(
                "{id} is not a message {} may {verb}",
                u.email
            )));
        }
        Ok(item)
    }

    fn link_mac(&self, l: &LinkTerms) -> String {
        self.mac_hex(
            "digest-link",
            &format!("{}:{}:{}:{}", l.tenant_id, l.id, l.rcpt, l.expires_at),
        )
    }

    /// A digest link's terms, if its MAC is the vault's and it has not expired.
    pub(super) fn parse_link(&self, token: &str) -> Option<LinkTerms> {
        if token.len() > 1024 {
            return None;
        }
        let rest = token.strip_prefix(LINK_PREFIX)?;
        let mut parts = rest.split('.');
        let (tenant, id, rcpt, expires, mac) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if parts.next().is_some() {
            return None;
        }
        let terms = LinkTerms {
            tenant_id: tenant.parse().ok()?,
            id: id.parse().ok()?,
            rcpt: String::from_utf8(hex::decode(rcpt).ok()?).ok()?,
            expires_at: expires.parse().ok()?,
        };
        let genuine = keys::ct_eq(mac.as_bytes(), self.link_mac(&terms).as_bytes());
        (genuine && terms.expires_at > unix_now()).then_some(terms)
    }

    /// Signs release links for a digest (canaries and pairs whose recipient is not the
    /// item's get none).
    pub(super) async fn digest_links(
        &self,
        items: &[(QueueId, String)],
        expires_at: i64,
    ) -> (Response, Vec<u8>) {
        if items.len() > MAX_DIGEST_LINKS {
            return refused(&format!("at most {MAX_DIGEST_LINKS} links per request"));
        }
        let mut tokens = Vec::with_capacity(items.len());
        for (id, rcpt) in items {
            let item = match self.store.quarantine_get(id.as_str()).await {
                Ok(i) if !self.canaries.contains(id.as_str()) => i,
                _ => {
                    tokens.push(None);
                    continue;
                }
            };
            let Some(rcpt) = item.rcpts.iter().find(|r| r.eq_ignore_ascii_case(rcpt)) else {
                tokens.push(None);
                continue;
            };
            let terms = LinkTerms {
                tenant_id: item.tenant_id,
                id: id.clone(),
                rcpt: rcpt.to_lowercase(),
                expires_at,
            };
            tokens.push(Some(format!(
                "{LINK_PREFIX}{}.{}.{}.{}.{}",
                terms.tenant_id,
                terms.id,
                hex::encode(terms.rcpt.as_bytes()),
                terms.expires_at,
                self.link_mac(&terms)
            )));
        }
        let n = tokens.iter().flatten().count();
        self.record(NewRecord {
            principal: "mx",
            action: "digest-links",
            reason: &format!("{n} release link(s) valid until {expires_at}"),
            outcome: "ok",
            ..NewRecord::by(proto::Process::Vault)
        })
        .await;
        (Response::Links { tokens }, Vec::new())
    }

    /// What a digest link releases.
    pub(super) async fn digest_link(&self, token: &str) -> (Response, Vec<u8>) {
        let Some(l) = self.parse_link(token) else {
            return refused(
                "this link is not valid or has expired: log in to the portal to review your quarantine",
            );
        };
        let item = match self.store.quarantine_get(l.id.as_str()).await {
            Ok(i) if i.tenant_id == l.tenant_id => super::acts::item_view(i),
            _ => None,
        };
        (
            Response::Link {
                id: l.id,
                rcpt: l.rcpt,
                tenant_id: TenantId(l.tenant_id),
                expires_at: l.expires_at,
                item,
            },
            Vec::new(),
        )
    }

    /// Releases what a digest link names, with the link as the credential: the mail node asks
    /// this vault to open it with the link (recorded as `link:<recipient>`; malware refused).
    pub(super) async fn digest_release(&self, token: &str) -> (Response, Vec<u8>) {
        let Some(l) = self.parse_link(token) else {
            return refused(
                "this link is not valid or has expired: log in to the portal to review your quarantine",
            );
        };
        let principal = format!("link:{}", l.rcpt);
        match self.release_through_mx(&l.id, &principal, token).await {
            Ok(summary) => (Response::Done { summary }, Vec::new()),
            Err(super::acts::Fail::Refused(r)) => refusal(&r),
            Err(super::acts::Fail::Internal(m)) => error(&m),
        }
    }

    /// A tenant's audit export for a stepped-up person (see `Request::AuditExportBy`).
    pub(super) async fn audit_export_by(
        &self,
        session: &str,
        tenant: Option<&str>,
        from: i64,
        to: i64,
    ) -> (Response, Vec<u8>) {
        let Some(u) = self.resolve_session(session).await else {
            return refusal(&Refused::unauthenticated());
        };
        if u.scopes.is_some() {
            return refused("an API token cannot export: log in");
        }
        let principal = u.principal();
        let name = match (u.role, &u.tenant, tenant) {
            (Role::TenantAdmin, Some(own), None) => own.clone(),
            (Role::TenantAdmin, Some(own), Some(t)) if t == own => own.clone(),
            (Role::Auditor | Role::Operator, _, Some(t)) => t.to_string(),
            (Role::Auditor | Role::Operator, _, None) => {
                return refused("name the tenant whose records to export");
            }
            _ => {
                return refused(
                    "audit exports are for tenant admins (their own tenant), auditors and operators",
                );
            }
        };
        let tenant_id = match self.store.tenant_id(&name).await {
            Ok(id) => id,
            Err(e) => return refused(&e.to_string()),
        };
        let mut rec = NewRecord {
            principal: &principal,
            action: "audit-export",
            tenant_id: Some(tenant_id),
            ..NewRecord::by(proto::Process::Vault)
        };
        if !self.stepped_up(session).await {
            rec.outcome = "refused: step-up needed";
            self.record(rec).await;
            return refused(
                "exporting needs a step-up: confirm with a current code from your authenticator first",
            );
        }
        let keys = match read_pins(&self.kek_path) {
            Ok(k) => k,
            Err(_) => match self.store.audit_keys().await {
                Ok(k) => k.into_iter().map(|k| (k.key_id, k.public_key)).collect(),
                Err(e) => return error(&e.to_string()),
            },
        };
        let mut out = Vec::new();
        match crate::export::write(&self.store, &keys, tenant_id, &name, from, to, &mut out).await {
            Ok(n) => {
                if out.len() > proto::frame::MAX_PAYLOAD - 1024 {
                    return refused(
                        "the export is too large for one answer: narrow the time window",
                    );
                }
                let reason = format!("{n} record(s) from {from} to {to}");
                rec.reason = &reason;
                rec.outcome = "ok";
                self.record(rec).await;
                (Response::Opened, out)
            }
            Err(e) => error(&e.to_string()),
        }
    }

    pub(super) fn step_up_mac(&self, session_mac: &str, until: i64) -> String {
        self.mac_hex("step-up", &format!("{session_mac}:{until}"))
    }

    /// True if the session was re-confirmed with the second factor and that has not run out.
    pub(super) async fn stepped_up(&self, token: &str) -> bool {
        let session_mac = self.mac_hex("session", token);
        match self.store.session_step_up_of(&session_mac).await {
            Ok((until, mac)) => {
                until > unix_now()
                    && keys::ct_eq(
                        mac.as_bytes(),
                        self.step_up_mac(&session_mac, until).as_bytes(),
                    )
            }
            Err(_) => false,
        }
    }

    /// Re-confirms a session with a current code.
    pub(super) async fn step_up(&self, token: &str, code: &str) -> (Response, Vec<u8>) {
        let Some(u) = self.resolve_session(token).await else {
            return refusal(&Refused::unauthenticated());
        };
        if u.scopes.is_some() {
            return refused("an API token cannot step up: log in");
        }
        let principal = u.principal();
        let mut rec = NewRecord {
            principal: &principal,
            action: "step-up",
            tenant_id: u.tenant_id.map(|t| t.0),
            ..NewRecord::by(proto::Process::Vault)
        };
        let now = unix_now();
        let user = match self.store.user_by_id(u.id).await {
            Ok(Some(user)) => user,
            _ => return refusal(&Refused::unauthenticated()),
        };
        let step = self
            .open_totp(&user)
            .and_then(|s| totp::verify(&s, code, now, user.totp_last_step));
        let Some(step) = step.filter(|_| user.locked_until <= now) else {
            self.note_failed_factor(&user, now).await;
            rec.outcome = "failed: wrong or reused code";
            self.record(rec).await;
            return refusal(&Refused::new(
                Refusal::WrongFactor,
                "wrong or reused code: wait for the next one",
            ));
        };
        let session_mac = self.mac_hex("session", token);
        let until = now + STEP_UP_SECONDS;
        let mac = self.step_up_mac(&session_mac, until);
        if let Err(e) = self
            .store
            .session_step_up(&session_mac, user.id, step, until, &mac)
            .await
        {
            return error(&e.to_string());
        }
        rec.outcome = "ok";
        self.record(rec).await;
        (
            Response::Done {
                summary: format!("confirmed for {} minutes", STEP_UP_SECONDS / 60),
            },
            Vec::new(),
        )
    }

    /// Makes an API token for the user of an interactive session.
    pub(super) async fn token_create(
        &self,
        session: &str,
        name: &str,
        mut scopes: Vec<Scope>,
        days: i64,
    ) -> (Response, Vec<u8>) {
        let Some(u) = self.resolve_session(session).await else {
            return refusal(&Refused::unauthenticated());
        };
        if u.scopes.is_some() {
            return refused("an API token cannot make tokens: log in");
        }
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return refusal(&Refused::invalid("name the token in 1 to 100 characters"));
        }
        if !(1..=365).contains(&days) {
            return refusal(&Refused::invalid("days must be 1 to 365"));
        }
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            let all: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
            return refusal(&Refused::invalid(format!(
                "scopes must be some of {}",
                all.join(", ")
            )));
        }
        let token = random_token("st1_");
        let now = unix_now();
        let t = match self
            .store
            .api_token_insert(
                u.id,
                name,
                &self.mac_hex("api-token", &token),
                &scopes,
                now,
                now + days * 86_400,
            )
            .await
        {
            Ok(t) => t,
            Err(store::StoreError::Invalid(m)) => return refusal(&Refused::invalid(m)),
            Err(e) => return error(&e.to_string()),
        };
        let principal = u.principal();
        let object = format!("token:{}", t.id);
        let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        let reason = format!("{name}: {} for {days} days", names.join(" "));
        self.record(NewRecord {
            principal: &principal,
            role: proto::Process::Vault,
            action: "token-create",
            tenant_id: u.tenant_id.map(|t| t.0),
            object: &object,
            reason: &reason,
            outcome: "ok",
        })
        .await;
        (
            Response::ApiToken {
                id: t.id,
                token,
                expires_at: t.expires_at,
            },
            Vec::new(),
        )
    }

    /// The MAC that makes a lockbox approval valid: over its id, tenant, operator and expiry.
    pub(super) fn lockbox_mac(&self, lb: &store::Lockbox) -> String {
        self.mac_hex(
            "lockbox",
            &format!(
                "{}:{}:{}:{}",
                lb.id,
                lb.tenant_id,
                lb.operator_id,
                lb.expires_at.unwrap_or(0)
            ),
        )
    }

    /// The lockbox that lets operator `u` open tenant `tenant`'s content now, if any: approved
    /// by the vault (its MAC checks), unexpired, not revoked.
    pub(super) async fn lockbox_grant(&self, u: &SessionUser, tenant: i64) -> Option<i64> {
        if u.role != Role::Operator {
            return None;
        }
        let active = self
            .store
            .lockbox_active(u.id, tenant, unix_now())
            .await
            .ok()?;
        active
            .iter()
            .find(|lb| keys::ct_eq(lb.approval_mac.as_bytes(), self.lockbox_mac(lb).as_bytes()))
            .map(|lb| lb.id)
    }

    /// A tenant admin approves or denies an operator's lockbox request.
    pub(super) async fn lockbox_decide(
        &self,
        id: i64,
        approve: bool,
        session: &str,
    ) -> (Response, Vec<u8>) {
        let Some(u) = self.resolve_session(session).await else {
            return refusal(&Refused::unauthenticated());
        };
        if u.scopes.is_some() {
            return refused("an API token cannot decide lockbox requests: log in");
        }
        if u.role != Role::TenantAdmin {
            return refused("lockbox requests are approved by the tenant's admins");
        }
        let principal = u.principal();
        let mut rec = NewRecord {
            principal: &principal,
            action: if approve {
                "lockbox-approve"
            } else {
                "lockbox-deny"
            },
            tenant_id: u.tenant_id.map(|t| t.0),
            ..NewRecord::by(proto::Process::Vault)
        };
        let object = id.to_string();
        rec.object = &object;
        let lb = match self.store.lockbox_get(id).await {
            Ok(lb)
                if u.role == Role::TenantAdmin && u.tenant_id == Some(TenantId(lb.tenant_id)) =>
            {
                lb
            }
            _ => {
                rec.outcome = "refused: not this admin's tenant";
                self.record(rec).await;
                return refusal(&Refused::not_found(format!(
                    "no lockbox request {id} for {}",
                    u.email
                )));
            }
        };
        if lb.state != "requested" {
            rec.outcome = "refused: decided already";
            self.record(rec).await;
            return refused(&format!("lockbox request {id} is {} already", lb.state));
        }
        let now = unix_now();
        let (state, expires, mac) = if approve {
            let mut terms = lb.clone();
            terms.expires_at = Some(now + lb.minutes * 60);
            ("approved", terms.expires_at, self.lockbox_mac(&terms))
        } else {
            ("denied", None, String::new())
        };
        let reason = format!("{} for {} minutes: {}", lb.operator, lb.minutes, lb.reason);
        rec.reason = &reason;
        if let Err(e) = self
            .store
            .lockbox_decide(id, state, &principal, now, expires, &mac)
            .await
        {
            rec.outcome = "refused: decided already";
            self.record(rec).await;
            return refused(&e.to_string());
        }
        rec.outcome = "ok";
        self.record(rec).await;
        (
            Response::Done {
                summary: format!("lockbox request {id} {state}"),
            },
            Vec::new(),
        )
    }

    /// Deletes a quarantined message for `principal`, or for the user of `session` if it is
    /// theirs to open. Deleting a canary raises its alert like opening one.
    pub(super) async fn delete_quarantine(
        &self,
        id: &str,
        principal: &str,
        session: Option<&str>,
    ) -> (Response, Vec<u8>) {
        let (user, principal) = match self.session_of(session, principal).await {
            Ok(x) => x,
            Err(r) => return r,
        };
        let principal = principal.as_str();
        let mut rec = NewRecord {
            principal,
            action: "delete-quarantine",
            object: id,
            ..NewRecord::by(proto::Process::Vault)
        };
        let item = match self
            .authorised_item(id, user.as_ref(), "delete", &mut rec)
            .await
        {
            Ok(i) => i,
            Err(r) => return r,
        };
        if self.canaries.contains(id) {
            self.alert(store::NewAlert {
                by: proto::Process::Vault,
                rule: "canary-touched",
                severity: proto::Severity::Critical,
                dedupe_key: &format!("canary:{id}"),
                principal,
                tenant_id: Some(item.tenant_id),
                summary: &format!(
                    "{principal} deleted canary item {id}: no legitimate flow touches it"
                ),
            })
            .await;
            if let Some(u) = &user {
                self.suspend_sessions(u, "canary-touched").await;
            }
        }
        if let Err(e) = self.blobs.delete(&item.blob).await {
            let outcome = format!("error: {e}");
            rec.outcome = &outcome;
            self.record(rec).await;
            return error(&e.to_string());
        }
        if let Err(e) = self.store.quarantine_remove(id).await {
            return error(&e.to_string());
        }
        rec.outcome = "ok";
        self.record(rec).await;
        (
            Response::Done {
                summary: format!("{id} deleted"),
            },
            Vec::new(),
        )
    }

    /// Ends every session of `user` after a critical alert (`why`: the rule), recorded.
    pub(super) async fn suspend_sessions(&self, user: &SessionUser, why: &str) {
        let tokens = self.store.api_tokens_revoke_user(user.id, unix_now()).await;
        let outcome = match (self.store.sessions_close_user(user.id).await, tokens) {
            (Ok(n), Ok(t)) => format!("ok: {n} session(s) ended, {t} API token(s) revoked"),
            (Err(e), _) | (_, Err(e)) => format!("error: {e}"),
        };
        tracing::warn!(principal = %user.principal(), rule = why, "portal sessions suspended");
        self.record(NewRecord {
            principal: "vault",
            role: proto::Process::Vault,
            action: "suspend-sessions",
            tenant_id: user.tenant_id.map(|t| t.0),
            object: &user.principal(),
            reason: &format!("automatic response to a {why} alert"),
            outcome: &outcome,
        })
        .await;
    }

    /// Counts a failed login; a storm of them raises one critical alert.
    async fn note_login_failure(&self, principal: &str, ip: &str) {
        let Some((n, accounts, sources)) =
            self.login_failures.note(&self.store, principal, ip).await
        else {
            return;
        };
        let rule = self.login_failures.rule();
        self.alert(store::NewAlert {
            by: proto::Process::Vault,
            rule: "login-failure-storm",
            severity: proto::Severity::Critical,
            dedupe_key: "login-failure-storm",
            principal: &format!("ip:{ip}"),
            tenant_id: None,
            summary: &format!(
                "{n} failed portal logins within {}s (threshold {}) against {accounts} account(s) from {sources} address(es), the last from {ip}: password spraying or credential stuffing",
                rule.window.as_secs(),
                rule.threshold
            ),
        })
        .await;
    }

    /// A successful login from a network this account never logged in from before raises a
    /// warning (the first login of an account sets its baseline).
    async fn note_login_network(&self, principal: &str, ip: &str, tenant: Option<i64>) {
        let Ok(seen) = self.store.login_sources(principal, 1000).await else {
            return;
        };
        let net = crate::detect::network_of(ip);
        if seen.is_empty() || seen.iter().any(|s| crate::detect::network_of(s) == net) {
            return;
        }
        self.alert(store::NewAlert {
            by: proto::Process::Vault,
            rule: "login-new-network",
            severity: proto::Severity::Warning,
            dedupe_key: &format!("login-new-network:{principal}:{net}"),
            principal,
            tenant_id: tenant,
            summary: &format!(
                "{principal} logged in from {ip} ({net}), a network it never logged in from before"
            ),
        })
        .await;
    }

    /// A first-operator link, only while there is no account.
    pub(super) async fn first_enrolment(&self, force: bool) -> (Response, Vec<u8>) {
        let now = unix_now();
        // (With accounts, the store refuses below, saying so.)
        if !force
            && self.store.user_count().await.is_ok_and(|n| n == 0)
            && let Ok(Some(until)) = self.store.first_enrolment_until(now).await
        {
            return refused(&format!(
                "a first-operator enrolment link printed earlier (by this node or another) is live for {} more minute(s); `sekisho user first-link` issues a new one and voids it",
                (until - now + 59) / 60
            ));
        }
        let token = random_token("e1_");
        match self
            .store
            .enrolment_create(
                &self.mac_hex("enrol", &token),
                "operator",
                Role::Operator,
                None,
                "first-start",
                now,
                now + FIRST_TTL,
                true,
            )
            .await
        {
            Ok(()) => (Response::Enrolment { token }, Vec::new()),
            Err(store::StoreError::Conflict(m)) => refusal(&Refused::conflict(m)),
            Err(e) => refused(&e.to_string()),
        }
    }

    /// An invitation link for a new account.
    pub(super) async fn invite(
        &self,
        email: &str,
        role: Role,
        tenant: Option<&str>,
        principal: &str,
    ) -> Result<String, String> {
        if !email.contains('@') || email.len() > 254 || email.chars().any(char::is_whitespace) {
            return Err(format!("{email:?} is not an e-mail address"));
        }
        let tenant_id = match tenant {
            Some(t) => Some(self.store.tenant_id(t).await.map_err(|e| e.to_string())?),
            None => None,
        };
        let token = random_token("e1_");
        let now = unix_now();
        self.store
            .enrolment_create(
                &self.mac_hex("enrol", &token),
                email,
                role,
                tenant_id,
                principal,
                now,
                now + INVITE_TTL,
                false,
            )
            .await
            .map_err(|e| e.to_string())?;
        self.record(NewRecord {
            principal,
            role: proto::Process::Vault,
            action: "user-invite",
            tenant_id,
            object: &format!("user:{}", email.to_ascii_lowercase()),
            reason: role.as_str(),
            outcome: "ok",
        })
        .await;
        Ok(token)
    }

    /// A portal user's invitation: the vault decides who may invite whom.
    pub(super) async fn invite_by(
        &self,
        session: &str,
        email: &str,
        role: Role,
        tenant: Option<String>,
    ) -> (Response, Vec<u8>) {
        let Some(u) = self.resolve_session(session).await else {
            return refusal(&Refused::unauthenticated());
        };
        if u.scopes.is_some() {
            return refusal(&Refused::invalid(
                "an API token cannot invite people: log in",
            ));
        }
        let tenant = match u.role {
            Role::Operator => tenant,
            Role::TenantAdmin if matches!(role, Role::User | Role::TenantAdmin) => {
                if tenant
                    .as_ref()
                    .is_some_and(|t| Some(t) != u.tenant.as_ref())
                {
                    return refusal(&Refused::invalid(
                        "tenant admins invite people of their own tenant only",
                    ));
                }
                u.tenant.clone()
            }
            Role::TenantAdmin => {
                return refusal(&Refused::invalid(
                    "tenant admins invite users and tenant admins only",
                ));
            }
            _ => {
                return refusal(&Refused::invalid(
                    "only operators and tenant admins invite people",
                ));
            }
        };
        if matches!(role, Role::User | Role::TenantAdmin) != tenant.is_some() {
            return refusal(&Refused::invalid(
                "users and tenant admins belong to a tenant; operators and auditors to none",
            ));
        }
        match self
            .invite(email, role, tenant.as_deref(), &u.principal())
            .await
        {
            Ok(token) => (Response::Enrolment { token }, Vec::new()),
            Err(e) => refusal(&Refused::invalid(e)),
        }
    }

    /// Enrolment step 1: sets the password, makes the TOTP secret (shown once).
    pub(super) async fn enrol_start(&self, token: &str, pass: &[u8]) -> (Response, Vec<u8>) {
        let mac = self.mac_hex("enrol", token);
        let e = match self.store.enrolment_get(&mac, unix_now()).await {
            Ok(Some(e)) => e,
            Ok(None) => {
                return refused(
                    "this enrolment link is not valid (used, expired or mistyped): ask for a new one",
                );
            }
            Err(e) => return error(&e.to_string()),
        };
        let Ok(pass) = std::str::from_utf8(pass) else {
            return refused("the password is not valid UTF-8");
        };
        if let Err(e) = password::acceptable(pass) {
            return refused(&e.to_string());
        }
        let pass = zeroize::Zeroizing::new(pass.to_string());
        let hash = match tokio::task::spawn_blocking(move || password::hash(&pass)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return refused(&e.to_string()),
            Err(e) => return error(&e.to_string()),
        };
        let secret = totp::generate();
        let kek = self.kek();
        let sealed_for = |id: i64| kek.seal(&totp_aad(id), &secret);
        match self
            .store
            .enrolment_set_user(&mac, &e, &hash, sealed_for, unix_now())
            .await
        {
            Ok(_) => (
                Response::Totp {
                    secret: totp::base32(&secret),
                    uri: totp::uri(ISSUER, &e.email, &secret),
                },
                Vec::new(),
            ),
            Err(e) => refused(&e.to_string()),
        }
    }

    /// Enrolment step 2: a code from the authenticator proves it holds the secret.
    pub(super) async fn enrol_confirm(&self, token: &str, code: &str) -> (Response, Vec<u8>) {
        let mac = self.mac_hex("enrol", token);
        let now = unix_now();
        let e = match self.store.enrolment_get(&mac, now).await {
            Ok(Some(e)) => e,
            Ok(None) => {
                return refused(
                    "this enrolment link is not valid (used, expired or mistyped): ask for a new one",
                );
            }
            Err(e) => return error(&e.to_string()),
        };
        let user = match e.user_id {
            Some(id) => self.store.user_by_id(id).await.ok().flatten(),
            None => None,
        };
        let Some(user) = user else {
            return refused("set a password first (step 1 of the enrolment)");
        };
        let Some(secret) = self.open_totp(&user) else {
            return error("the account's second factor cannot be opened");
        };
        let Some(step) = totp::verify(&secret, code, now, None) else {
            return refused(
                "the code does not match: check the authenticator's clock and enter the current code",
            );
        };
        if let Err(e) = self.store.enrolment_finish(&mac, user.id, step).await {
            return error(&e.to_string());
        }
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
        let macs: Vec<String> = codes
            .iter()
            .map(|c| Self::recovery_mac(&secret, user.id, &recovery_form(c).unwrap_or_default()))
            .collect();
        if let Err(e) = self.store.recovery_codes_set(user.id, &macs).await {
            return error(&e.to_string());
        }
        self.record(NewRecord {
            principal: &format!("user:{}", user.email),
            role: proto::Process::Vault,
            action: "user-enrolled",
            tenant_id: user.tenant_id,
            object: &format!("user:{}", user.email),
            reason: user.role.as_str(),
            outcome: "ok",
        })
        .await;
        (
            Response::Activated {
                summary: format!("account {} ({}) is active", user.email, user.role),
                login: user.email.clone(),
                recovery_codes: codes,
            },
            Vec::new(),
        )
    }

    /// A recovery code's MAC, under a key made from the account's own TOTP secret: the vault
    /// alone can compute it (the secret is sealed), and it survives KEK rotation (which
    /// re-wraps the secret and keeps it), unlike a KEK-derived key would.
    /// Counts a failed second factor (code or passkey) towards the account's lockout.
    pub(super) async fn note_failed_factor(&self, user: &User, now: i64) {
        let lock = lock_for(user.failed_logins + 1);
        let _ = self
            .store
            .user_login_failed(user.id, if lock > 0 { now + lock } else { 0 })
            .await;
    }

    fn recovery_mac(totp_secret: &[u8], user_id: i64, form: &str) -> String {
        let key = keys::SecretKey::from_material(totp_secret, "sekisho recovery codes v1");
        hex::encode(key.mac(format!("{user_id}:{form}").as_bytes()))
    }

    /// Password + TOTP → a session. One answer for every wrong input, so it tells an attacker
    /// nothing about which part was wrong or whether the account exists.
    pub(super) async fn login(
        &self,
        email: &str,
        code: &str,
        ip: &str,
        pass: &[u8],
    ) -> (Response, Vec<u8>) {
        // The same words whatever was wrong, locked accounts included: a different answer (or a
        // faster one) for a locked account would tell which accounts exist.
        const WRONG: &str = "wrong e-mail address, password or code (after repeated failures an account is locked for a while)";
        let email = email.trim().to_ascii_lowercase();
        let principal = format!("user:{email}");
        let pass = zeroize::Zeroizing::new(String::from_utf8_lossy(pass).into_owned());
        let now = unix_now();
        let user = match self.store.user_by_email(&email).await {
            Ok(u) => u.filter(|u| u.active),
            Err(e) => return error(&e.to_string()),
        };
        let Some(user) = user else {
            let _ = tokio::task::spawn_blocking(move || password::verify_nothing(&pass)).await;
            self.login_record(&principal, ip, None, "failed: unknown account")
                .await;
            return refused(WRONG);
        };
        if user.locked_until > now {
            let _ = tokio::task::spawn_blocking(move || password::verify_nothing(&pass)).await;
            self.login_record(&principal, ip, user.tenant_id, "refused: locked")
                .await;
            return refused(WRONG);
        }
        let phc = user.password_hash.clone();
        let pass_ok = tokio::task::spawn_blocking(move || password::verify(&pass, &phc))
            .await
            .unwrap_or(false);
        // The second factor: a current code, or one of the account's unused recovery codes
        // (only tried when the password is right, so a wrong password uses up nothing).
        let mut by_recovery = false;
        let step = match recovery_form(code) {
            Some(form) if pass_ok => {
                by_recovery = match self.open_totp(&user) {
                    Some(secret) => {
                        let mac = Self::recovery_mac(&secret, user.id, &form);
                        self.store
                            .recovery_code_use(user.id, &mac, now)
                            .await
                            .unwrap_or(false)
                    }
                    None => false,
                };
                by_recovery.then_some(user.totp_last_step.unwrap_or(0))
            }
            Some(_) => None,
            None => self
                .open_totp(&user)
                .and_then(|s| totp::verify(&s, code, now, user.totp_last_step)),
        };
        let (true, Some(step)) = (pass_ok, step) else {
            self.note_failed_factor(&user, now).await;
            let why = if pass_ok {
                "failed: wrong or reused code"
            } else {
                "failed: wrong password"
            };
            self.login_record(&principal, ip, user.tenant_id, why).await;
            return refused(WRONG);
        };
        let token = random_token("s1_");
        if let Err(e) = self
            .store
            .session_open(
                user.id,
                step,
                &self.mac_hex("session", &token),
                ip,
                now,
                now + SESSION_ABSOLUTE,
            )
            .await
        {
            return error(&e.to_string());
        }
        if by_recovery {
            let left = self.store.recovery_codes_left(user.id).await.unwrap_or(0);
            self.login_record(
                &principal,
                ip,
                user.tenant_id,
                &format!("ok: recovery code ({left} left)"),
            )
            .await;
            self.alert(store::NewAlert {
                by: proto::Process::Vault,
                rule: "recovery-code-login",
                severity: proto::Severity::Warning,
                dedupe_key: &format!("recovery-code-login:{email}"),
                principal: &principal,
                tenant_id: user.tenant_id,
                summary: &format!(
                    "{email} logged in with a recovery code from {ip} ({left} left): a lost authenticator, or a stolen code"
                ),
            })
            .await;
        } else {
            self.login_record(&principal, ip, user.tenant_id, "ok")
                .await;
        }
        let csrf = self.csrf(&token);
        (
            Response::Session {
                token,
                csrf,
                user: session_user(&user),
            },
            Vec::new(),
        )
    }

    /// The live user of a session token, or of an API token (with its scopes).
    pub(super) async fn resolve_session(&self, token: &str) -> Option<SessionUser> {
        if token.starts_with("st1_") && token.len() <= 128 {
            let mac = self.mac_hex("api-token", token);
            return match self.store.api_token_resolve(&mac, unix_now()).await {
                Ok(Some((t, u))) => Some(SessionUser {
                    scopes: Some(t.scopes),
                    ..session_user(&u)
                }),
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %e, "token lookup failed");
                    None
                }
            };
        }
        if !token.starts_with("s1_") || token.len() > 128 {
            return None;
        }
        let mac = self.mac_hex("session", token);
        match self
            .store
            .session_resolve(&mac, unix_now(), SESSION_IDLE)
            .await
        {
            Ok(u) => u.as_ref().map(session_user),
            Err(e) => {
                tracing::error!(error = %e, "session lookup failed");
                None
            }
        }
    }

    pub(super) async fn session(&self, token: &str) -> (Response, Vec<u8>) {
        match self.resolve_session(token).await {
            Some(user) => (
                Response::User {
                    user,
                    csrf: self.csrf(token),
                    stepped_up: self.stepped_up(token).await,
                },
                Vec::new(),
            ),
            None => refusal(&Refused::unauthenticated()),
        }
    }

    pub(super) async fn logout(&self, token: &str) -> (Response, Vec<u8>) {
        let user = self.resolve_session(token).await;
        let _ = self
            .store
            .session_close(&self.mac_hex("session", token))
            .await;
        if let Some(u) = user {
            self.record(NewRecord {
                principal: &u.principal(),
                action: "logout",
                tenant_id: u.tenant_id.map(|t| t.0),
                outcome: "ok",
                ..NewRecord::by(proto::Process::Vault)
            })
            .await;
        }
        (
            Response::Done {
                summary: "logged out".into(),
            },
            Vec::new(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_doubles_and_caps() {
        assert_eq!(lock_for(LOCK_AFTER - 1), 0);
        assert_eq!(lock_for(LOCK_AFTER), LOCK_BASE);
        assert_eq!(lock_for(LOCK_AFTER + 1), 2 * LOCK_BASE);
        assert_eq!(lock_for(LOCK_AFTER + 100), LOCK_MAX);
    }

    #[test]
    fn who_may_open_what() {
        let u = |role: &str, tenant: Option<i64>| SessionUser {
            id: 1,
            email: "ann@a.example".into(),
            role: role.parse().unwrap(),
            tenant_id: tenant.map(TenantId),
            tenant: None,
            scopes: None,
            link: None,
        };
        let to_ann = vec!["Ann@a.example".to_string()];
        let to_bob = vec!["bob@a.example".to_string()];
        assert!(may_open(&u("tenant-admin", Some(1)), 1, &to_bob));
        assert!(
            !may_open(&u("tenant-admin", Some(1)), 2, &to_bob),
            "other tenant"
        );
        assert!(may_open(&u("user", Some(1)), 1, &to_ann));
        assert!(
            !may_open(&u("user", Some(1)), 1, &to_bob),
            "someone else's mail"
        );
        assert!(!may_open(&u("user", Some(2)), 1, &to_ann), "other tenant");
        assert!(!may_open(&u("operator", None), 1, &to_ann), "no lockbox");
        assert!(!may_open(&u("auditor", None), 1, &to_ann));
    }
}
