//! WebAuthn passkeys (webauthn-rs): registration by a signed-in, stepped-up user; sign-in
//! with a discoverable credential (user verification required, so one passkey is two
//! factors: the device and its PIN or biometric); and step-up with a passkey instead of a code.
//!
//! The vault is the relying party: it makes every challenge and checks every answer; the portal
//! only carries JSON between the browser and the vault. What the vault leaves in the store is
//! MAC'd so that writing to the database neither adds a passkey nor alters a ceremony:
//! - a ceremony's state under the KEK-derived portal key (ceremonies live minutes, so KEK
//!   rotation ending them is fine);
//! - a passkey row under a key made from the account's own sealed TOTP secret, which KEK
//!   rotation re-wraps and keeps, so passkeys survive rotation and no other account's key
//!   vouches for the row.

// The error side of these helpers is the vault's answer itself, made at most once per request.
#![allow(clippy::result_large_err)]

use base64::Engine as _;
use store::{NewRecord, User, unix_now};
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

use super::portal::{STEP_UP_SECONDS, random_token};
use super::{Vault, error, refused};
use proto::vault::{PasskeyInfo, PasskeyPurpose, Response, SessionUser};

/// A ceremony must be finished this soon after it began.
pub const CEREMONY_TTL: i64 = 5 * 60;
/// The longest passkey name.
pub const MAX_NAME: usize = 64;
/// The largest browser answer the vault parses (real ones are a few KiB).
pub const MAX_ANSWER: usize = 64 * 1024;

/// Sign-in failures all read the same, like password logins.
const WRONG: &str =
    "the passkey was not accepted: sign in with your password and code, or try another passkey";

/// The relying party: the portal's public origin and its host as the RP ID (`any_port`: the
/// host's origins on every port, for a portal whose public URL was not configured).
pub fn relying_party(origin: &Url, any_port: bool) -> Result<Webauthn, String> {
    let host = origin
        .host_str()
        .filter(|h| origin.scheme() == "https" && h.parse::<std::net::IpAddr>().is_err())
        .ok_or_else(|| {
            format!("passkeys need an https:// URL with a host name (not an address): {origin}")
        })?;
    WebauthnBuilder::new(host, origin)
        .and_then(|b| b.rp_name("Sekisho").allow_any_port(any_port).build())
        .map_err(|e| format!("passkeys for {origin}: {e}"))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What a registration ceremony keeps.
#[derive(serde::Serialize, serde::Deserialize)]
struct RegisterState {
    handle: Uuid,
    session_mac: String,
    reg: PasskeyRegistration,
}

/// What a step-up ceremony keeps.
#[derive(serde::Serialize, serde::Deserialize)]
struct StepUpState {
    session_mac: String,
    auth: PasskeyAuthentication,
}

/// A passkey name as stored: trimmed, printable, bounded; a default when none was given.
fn passkey_name(name: Option<&str>) -> Result<String, &'static str> {
    let n = name.map(str::trim).unwrap_or("");
    if n.chars().count() > MAX_NAME {
        return Err("a passkey name has at most 64 characters");
    }
    if n.chars().any(char::is_control) {
        return Err("a passkey name cannot contain control characters");
    }
    Ok(if n.is_empty() {
        "passkey".into()
    } else {
        n.into()
    })
}

impl Vault {
    fn webauthn(&self) -> Result<&Webauthn, (Response, Vec<u8>)> {
        self.webauthn
            .as_ref()
            .ok_or_else(|| refused("passkeys are not set up on this node (no portal URL)"))
    }

    /// The key that vouches for an account's passkey rows (none: no second factor to make it from).
    fn passkey_key(&self, u: &User) -> Option<keys::SecretKey> {
        let secret = self.open_totp(u)?;
        Some(keys::SecretKey::from_material(
            &secret,
            "sekisho passkey rows v1",
        ))
    }

    fn passkey_mac(key: &keys::SecretKey, user_id: i64, p: &store::StoredPasskey) -> String {
        hex::encode(
            key.mac(
                format!("{user_id}\n{}\n{}\n{}", p.cred_id, p.user_handle, p.passkey).as_bytes(),
            ),
        )
    }

    /// An account's passkeys whose rows the vault itself wrote (others are skipped, loudly).
    async fn verified_passkeys(&self, u: &User) -> Vec<(store::StoredPasskey, Passkey)> {
        let Some(key) = self.passkey_key(u) else {
            return Vec::new();
        };
        let rows = self.store.passkeys_of(u.id).await.unwrap_or_default();
        rows.into_iter()
            .filter_map(|p| {
                let ok = keys::ct_eq(
                    p.mac.as_bytes(),
                    Self::passkey_mac(&key, u.id, &p).as_bytes(),
                );
                if !ok {
                    tracing::error!(
                        passkey = p.id,
                        user = u.id,
                        "a passkey row fails its MAC: not written by the vault"
                    );
                    return None;
                }
                let pk = serde_json::from_str::<Passkey>(&p.passkey).ok()?;
                Some((p, pk))
            })
            .collect()
    }

    fn ceremony_mac(&self, id_mac: &str, purpose: &str, user: Option<i64>, state: &str) -> String {
        self.mac_hex(
            "webauthn-ceremony",
            &format!("{id_mac}\n{purpose}\n{user:?}\n{state}"),
        )
    }

    async fn interactive(&self, session: Option<&str>) -> Result<SessionUser, (Response, Vec<u8>)> {
        let Some(token) = session else {
            return Err(refused("log in first"));
        };
        match self.resolve_session(token).await {
            None => Err(refused("the session has ended: log in again")),
            Some(u) if u.scopes.is_some() => Err(refused(
                "an API token cannot use passkeys: log in in the portal",
            )),
            Some(u) => Ok(u),
        }
    }

    /// Starts a ceremony.
    pub(super) async fn passkey_begin(
        &self,
        purpose: PasskeyPurpose,
        session: Option<&str>,
    ) -> (Response, Vec<u8>) {
        match self.try_passkey_begin(purpose, session).await {
            Ok(r) => r,
            Err(r) => r,
        }
    }

    async fn try_passkey_begin(
        &self,
        purpose: PasskeyPurpose,
        session: Option<&str>,
    ) -> Result<(Response, Vec<u8>), (Response, Vec<u8>)> {
        let wa = self.webauthn()?;
        let now = unix_now();
        let (options, state, user_id) = match purpose {
            PasskeyPurpose::Login => {
                let (rcr, auth) = wa
                    .start_discoverable_authentication()
                    .map_err(|e| error(&format!("passkey challenge: {e}")))?;
                // A plain (modal) request: the browser lists the passkeys it holds for this
                // site; conditional (autofill) mediation is left to a later UI.
                let mut v = serde_json::to_value(&rcr).map_err(|e| error(&e.to_string()))?;
                if let Some(o) = v.as_object_mut() {
                    o.remove("mediation");
                }
                (v, serde_json::to_string(&auth), None)
            }
            PasskeyPurpose::Register => {
                let token = session.unwrap_or_default();
                let u = self.interactive(session).await?;
                if !self.stepped_up(token).await {
                    return Err(refused(
                        "adding a passkey needs a step-up: confirm with a current code first",
                    ));
                }
                let user = self.live_user(u.id).await?;
                let existing = self.verified_passkeys(&user).await;
                let handle = existing
                    .first()
                    .and_then(|(p, _)| Uuid::parse_str(&p.user_handle).ok())
                    .unwrap_or_else(Uuid::new_v4);
                let exclude = existing.iter().map(|(_, k)| k.cred_id().clone()).collect();
                let (ccr, reg) = wa
                    .start_passkey_registration(handle, &user.email, &user.email, Some(exclude))
                    .map_err(|e| error(&format!("passkey challenge: {e}")))?;
                // A passkey proper: discoverable, so that sign-in needs no user name.
                let mut v = serde_json::to_value(&ccr).map_err(|e| error(&e.to_string()))?;
                if let Some(sel) = v
                    .pointer_mut("/publicKey/authenticatorSelection")
                    .and_then(|s| s.as_object_mut())
                {
                    sel.insert("residentKey".into(), "required".into());
                    sel.insert("requireResidentKey".into(), true.into());
                }
                let state = RegisterState {
                    handle,
                    session_mac: self.mac_hex("session", token),
                    reg,
                };
                (v, serde_json::to_string(&state), Some(user.id))
            }
            PasskeyPurpose::StepUp => {
                let token = session.unwrap_or_default();
                let u = self.interactive(session).await?;
                let user = self.live_user(u.id).await?;
                let creds: Vec<Passkey> = self
                    .verified_passkeys(&user)
                    .await
                    .into_iter()
                    .map(|(_, k)| k)
                    .collect();
                if creds.is_empty() {
                    return Err(refused(
                        "no passkey is registered for this account: confirm with a code",
                    ));
                }
                let (rcr, auth) = wa
                    .start_passkey_authentication(&creds)
                    .map_err(|e| error(&format!("passkey challenge: {e}")))?;
                let v = serde_json::to_value(&rcr).map_err(|e| error(&e.to_string()))?;
                let state = StepUpState {
                    session_mac: self.mac_hex("session", token),
                    auth,
                };
                (v, serde_json::to_string(&state), Some(user.id))
            }
        };
        let state = state.map_err(|e| error(&e.to_string()))?;
        let ceremony = random_token("wc1_");
        let id_mac = self.mac_hex("ceremony", &ceremony);
        let mac = self.ceremony_mac(&id_mac, purpose.as_str(), user_id, &state);
        self.store
            .ceremony_put(
                &id_mac,
                purpose.as_str(),
                user_id,
                &state,
                &mac,
                now,
                now + CEREMONY_TTL,
            )
            .await
            .map_err(|e| match e {
                store::StoreError::Invalid(m) => refused(&m),
                e => error(&e.to_string()),
            })?;
        Ok((
            Response::Challenge {
                ceremony,
                options: options.to_string(),
            },
            Vec::new(),
        ))
    }

    async fn live_user(&self, id: i64) -> Result<User, (Response, Vec<u8>)> {
        match self.store.user_by_id(id).await {
            Ok(Some(u)) if u.active => Ok(u),
            Ok(_) => Err(refused("the session has ended: log in again")),
            Err(e) => Err(error(&e.to_string())),
        }
    }

    /// Finishes a ceremony with the browser's answer.
    pub(super) async fn passkey_finish(
        &self,
        ceremony: &str,
        session: Option<&str>,
        name: Option<&str>,
        ip: &str,
        answer: &[u8],
    ) -> (Response, Vec<u8>) {
        match self
            .try_passkey_finish(ceremony, session, name, ip, answer)
            .await
        {
            Ok(r) => r,
            Err(r) => r,
        }
    }

    async fn try_passkey_finish(
        &self,
        ceremony: &str,
        session: Option<&str>,
        name: Option<&str>,
        ip: &str,
        answer: &[u8],
    ) -> Result<(Response, Vec<u8>), (Response, Vec<u8>)> {
        let wa = self.webauthn()?;
        if answer.len() > MAX_ANSWER {
            return Err(refused("the passkey answer is too large"));
        }
        let expired = || refused("this passkey request has expired or was used: start again");
        if !ceremony.starts_with("wc1_") || ceremony.len() > 128 {
            return Err(expired());
        }
        let now = unix_now();
        let id_mac = self.mac_hex("ceremony", ceremony);
        let c = self
            .store
            .ceremony_take(&id_mac, now)
            .await
            .map_err(|e| error(&e.to_string()))?
            .ok_or_else(expired)?;
        let want = self.ceremony_mac(&id_mac, &c.purpose, c.user_id, &c.state);
        if !keys::ct_eq(c.mac.as_bytes(), want.as_bytes()) {
            tracing::error!("a passkey ceremony fails its MAC: not written by the vault");
            return Err(expired());
        }
        match c.purpose.as_str() {
            "login" => {
                let cred: PublicKeyCredential = serde_json::from_slice(answer)
                    .map_err(|_| refused("the browser's passkey answer is not valid"))?;
                let state: DiscoverableAuthentication =
                    serde_json::from_str(&c.state).map_err(|e| error(&e.to_string()))?;
                self.passkey_login(wa, &cred, state, ip, now).await
            }
            "register" => {
                let name = passkey_name(name).map_err(refused)?;
                let cred: RegisterPublicKeyCredential = serde_json::from_slice(answer)
                    .map_err(|_| refused("the browser's passkey answer is not valid"))?;
                let state: RegisterState =
                    serde_json::from_str(&c.state).map_err(|e| error(&e.to_string()))?;
                self.passkey_register(wa, &cred, state, c.user_id, session, &name, now)
                    .await
            }
            "step-up" => {
                let cred: PublicKeyCredential = serde_json::from_slice(answer)
                    .map_err(|_| refused("the browser's passkey answer is not valid"))?;
                let state: StepUpState =
                    serde_json::from_str(&c.state).map_err(|e| error(&e.to_string()))?;
                self.passkey_step_up(wa, &cred, state, c.user_id, session, now)
                    .await
            }
            _ => Err(expired()),
        }
    }

    /// The session of a register/step-up finish must be the one that began the ceremony.
    async fn same_session(
        &self,
        session: Option<&str>,
        session_mac: &str,
        user_id: Option<i64>,
    ) -> Result<SessionUser, (Response, Vec<u8>)> {
        let u = self.interactive(session).await?;
        let mac = self.mac_hex("session", session.unwrap_or_default());
        if !keys::ct_eq(mac.as_bytes(), session_mac.as_bytes()) || Some(u.id) != user_id {
            return Err(refused(
                "this passkey request belongs to another session: start again",
            ));
        }
        Ok(u)
    }

    #[allow(clippy::too_many_arguments)]
    async fn passkey_register(
        &self,
        wa: &Webauthn,
        cred: &RegisterPublicKeyCredential,
        state: RegisterState,
        user_id: Option<i64>,
        session: Option<&str>,
        name: &str,
        now: i64,
    ) -> Result<(Response, Vec<u8>), (Response, Vec<u8>)> {
        let u = self
            .same_session(session, &state.session_mac, user_id)
            .await?;
        let principal = u.principal();
        let mut rec = NewRecord {
            principal: &principal,
            action: "passkey-add",
            tenant_id: u.tenant_id.map(|t| t.0),
            ..NewRecord::by(proto::Process::Vault)
        };
        let pk = match wa.finish_passkey_registration(cred, &state.reg) {
            Ok(pk) => pk,
            Err(e) => {
                let why = format!("failed: {e}");
                rec.outcome = &why;
                self.record(rec).await;
                return Err(refused(
                    "the passkey could not be registered: the browser's answer did not verify",
                ));
            }
        };
        let user = self.live_user(u.id).await?;
        let key = self
            .passkey_key(&user)
            .ok_or_else(|| error("the account's second factor cannot be opened"))?;
        let mut row = store::StoredPasskey {
            id: 0,
            user_id: user.id,
            cred_id: b64(pk.cred_id()),
            user_handle: state.handle.to_string(),
            name: name.into(),
            passkey: serde_json::to_string(&pk).map_err(|e| error(&e.to_string()))?,
            mac: String::new(),
            created_at: now,
            last_used_at: None,
        };
        row.mac = Self::passkey_mac(&key, user.id, &row);
        let stored = self
            .store
            .passkey_insert(
                user.id,
                &row.cred_id,
                &row.user_handle,
                &row.name,
                &row.passkey,
                &row.mac,
                now,
            )
            .await
            .map_err(|e| match e {
                store::StoreError::Invalid(m) => refused(&m),
                e => error(&e.to_string()),
            })?;
        let reason = format!("passkey {} {:?}", stored.id, stored.name);
        rec.reason = &reason;
        rec.outcome = "ok";
        self.record(rec).await;
        Ok((
            Response::Done {
                summary: format!("passkey {:?} added", stored.name),
            },
            Vec::new(),
        ))
    }

    /// Stores a passkey's new counter (and flags) after a successful assertion.
    async fn passkey_used(
        &self,
        user: &User,
        mut row: store::StoredPasskey,
        mut pk: Passkey,
        result: &webauthn_rs::prelude::AuthenticationResult,
        now: i64,
    ) {
        pk.update_credential(result);
        let Some(key) = self.passkey_key(user) else {
            return;
        };
        if let Ok(json) = serde_json::to_string(&pk) {
            row.passkey = json;
            row.mac = Self::passkey_mac(&key, user.id, &row);
            if let Err(e) = self
                .store
                .passkey_used(row.id, &row.passkey, &row.mac, now)
                .await
            {
                tracing::error!(error = %e, "passkey use could not be noted");
            }
        }
    }

    async fn passkey_login(
        &self,
        wa: &Webauthn,
        cred: &PublicKeyCredential,
        state: DiscoverableAuthentication,
        ip: &str,
        now: i64,
    ) -> Result<(Response, Vec<u8>), (Response, Vec<u8>)> {
        let anonymous = "user:(passkey)";
        let Ok((handle, cred_id)) = wa.identify_discoverable_authentication(cred) else {
            self.login_record(anonymous, ip, None, "failed: no user handle")
                .await;
            return Err(refused(WRONG));
        };
        let row = self
            .store
            .passkey_by_cred(&b64(cred_id))
            .await
            .map_err(|e| error(&e.to_string()))?;
        let user = match &row {
            Some(r) => self.store.user_by_id(r.user_id).await.ok().flatten(),
            None => None,
        };
        let (Some(row), Some(user)) = (row, user.filter(|u| u.active)) else {
            self.login_record(anonymous, ip, None, "failed: unknown passkey")
                .await;
            return Err(refused(WRONG));
        };
        let principal = format!("user:{}", user.email);
        let found = self
            .verified_passkeys(&user)
            .await
            .into_iter()
            .find(|(p, _)| p.id == row.id && p.user_handle == handle.to_string());
        let Some((row, pk)) = found else {
            self.login_record(
                &principal,
                ip,
                user.tenant_id,
                "failed: passkey row not the vault's",
            )
            .await;
            return Err(refused(WRONG));
        };
        if user.locked_until > now {
            self.login_record(&principal, ip, user.tenant_id, "refused: locked")
                .await;
            return Err(refused(WRONG));
        }
        let result = match wa.finish_discoverable_authentication_v2(cred, state, &pk) {
            Ok(r) => r,
            Err(e) => {
                self.note_failed_factor(&user, now).await;
                self.login_record(
                    &principal,
                    ip,
                    user.tenant_id,
                    &format!("failed: passkey {e}"),
                )
                .await;
                return Err(refused(WRONG));
            }
        };
        self.passkey_used(&user, row.clone(), pk, &result, now)
            .await;
        let token = random_token("s1_");
        self.store
            .session_open(
                user.id,
                user.totp_last_step.unwrap_or(0),
                &self.mac_hex("session", &token),
                ip,
                now,
                now + super::portal::SESSION_ABSOLUTE,
            )
            .await
            .map_err(|e| error(&e.to_string()))?;
        self.login_record(
            &principal,
            ip,
            user.tenant_id,
            &format!("ok: passkey {}", row.id),
        )
        .await;
        let csrf = self.csrf(&token);
        Ok((
            Response::Session {
                token,
                csrf,
                user: super::portal::session_user(&user),
            },
            Vec::new(),
        ))
    }

    async fn passkey_step_up(
        &self,
        wa: &Webauthn,
        cred: &PublicKeyCredential,
        state: StepUpState,
        user_id: Option<i64>,
        session: Option<&str>,
        now: i64,
    ) -> Result<(Response, Vec<u8>), (Response, Vec<u8>)> {
        let u = self
            .same_session(session, &state.session_mac, user_id)
            .await?;
        let principal = u.principal();
        let mut rec = NewRecord {
            principal: &principal,
            action: "step-up",
            tenant_id: u.tenant_id.map(|t| t.0),
            ..NewRecord::by(proto::Process::Vault)
        };
        let user = self.live_user(u.id).await?;
        let result = wa.finish_passkey_authentication(cred, &state.auth);
        let used = result.as_ref().ok().map(|r| b64(r.cred_id()));
        let found = match &used {
            Some(id) => self
                .verified_passkeys(&user)
                .await
                .into_iter()
                .find(|(p, _)| &p.cred_id == id),
            None => None,
        };
        let (Ok(result), Some((row, pk))) = (result, found) else {
            self.note_failed_factor(&user, now).await;
            rec.outcome = "failed: passkey did not verify";
            self.record(rec).await;
            return Err(refused(
                "the passkey was not accepted: try again or use a code",
            ));
        };
        self.passkey_used(&user, row.clone(), pk, &result, now)
            .await;
        let session_mac = state.session_mac;
        let until = now + STEP_UP_SECONDS;
        let mac = self.step_up_mac(&session_mac, until);
        self.store
            .session_step_up(
                &session_mac,
                user.id,
                user.totp_last_step.unwrap_or(0),
                until,
                &mac,
            )
            .await
            .map_err(|e| error(&e.to_string()))?;
        let reason = format!("passkey {}", row.id);
        rec.reason = &reason;
        rec.outcome = "ok";
        self.record(rec).await;
        Ok((
            Response::Done {
                summary: format!("confirmed for {} minutes", STEP_UP_SECONDS / 60),
            },
            Vec::new(),
        ))
    }

    /// The session user's passkeys.
    pub(super) async fn passkey_list(&self, session: &str) -> (Response, Vec<u8>) {
        let u = match self.interactive(Some(session)).await {
            Ok(u) => u,
            Err(r) => return r,
        };
        match self.store.passkeys_of(u.id).await {
            Ok(rows) => (
                Response::Passkeys {
                    items: rows
                        .into_iter()
                        .map(|p| PasskeyInfo {
                            id: p.id,
                            name: p.name,
                            created_at: p.created_at,
                            last_used_at: p.last_used_at,
                        })
                        .collect(),
                },
                Vec::new(),
            ),
            Err(e) => error(&e.to_string()),
        }
    }

    /// Removes one of the session user's passkeys (stepped up).
    pub(super) async fn passkey_remove(&self, session: &str, id: i64) -> (Response, Vec<u8>) {
        let u = match self.interactive(Some(session)).await {
            Ok(u) => u,
            Err(r) => return r,
        };
        if !self.stepped_up(session).await {
            return refused("removing a passkey needs a step-up: confirm first");
        }
        let principal = u.principal();
        match self.store.passkey_delete(id, u.id).await {
            Ok(()) => {
                self.record(NewRecord {
                    principal: &principal,
                    action: "passkey-remove",
                    tenant_id: u.tenant_id.map(|t| t.0),
                    reason: &format!("passkey {id}"),
                    outcome: "ok",
                    ..NewRecord::by(proto::Process::Vault)
                })
                .await;
                (
                    Response::Done {
                        summary: format!("passkey {id} removed"),
                    },
                    Vec::new(),
                )
            }
            Err(store::StoreError::NotFound(m)) => refused(&m),
            Err(e) => error(&e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_printable() {
        assert_eq!(passkey_name(None).unwrap(), "passkey");
        assert_eq!(passkey_name(Some("  laptop ")).unwrap(), "laptop");
        assert!(passkey_name(Some("a\u{7}b")).is_err());
        assert!(passkey_name(Some(&"x".repeat(65))).is_err());
        assert_eq!(
            passkey_name(Some(&"鍵".repeat(64)))
                .unwrap()
                .chars()
                .count(),
            64
        );
    }

    #[test]
    fn the_relying_party_needs_an_https_host_name() {
        let ok = Url::parse("https://portal.example.com").unwrap();
        assert!(relying_party(&ok, false).is_ok());
        let local = Url::parse("https://localhost:9443").unwrap();
        assert!(relying_party(&local, true).is_ok());
        for bad in ["http://portal.example.com", "https://127.0.0.1:9443"] {
            let e = relying_party(&Url::parse(bad).unwrap(), false).unwrap_err();
            assert!(e.contains("host name"), "{bad}: {e}");
        }
    }
}
