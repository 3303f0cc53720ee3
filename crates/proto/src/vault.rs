//! The vault's protocol: one request and one response per exchange over its Unix socket,
//! each a [`crate::frame`].

use serde::{Deserialize, Serialize};

use crate::acts::Act;
use crate::nouns::{DkimAlgorithm, DkimKeyState, QueueId, Role, Scope, SecretKind, TenantId};
use crate::refusal::Refusal;

/// A session ends this long after login, used or not (the cookie's Max-Age).
pub const SESSION_ABSOLUTE: i64 = 12 * 3600;
/// How long a step-up (re-confirming the second factor) lasts.
pub const STEP_UP_SECONDS: i64 = 5 * 60;
/// Longest password (argon2 input) the vault takes.
pub const MAX_PASSWORD: usize = 1024;
/// Most links one `DigestLinks` request may ask for.
pub const MAX_DIGEST_LINKS: usize = 10_000;

/// Why content is opened (recorded with every open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// A person reads it.
    Read,
    /// It is released for delivery.
    Release,
}

impl Purpose {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Purpose::Read => "read",
            Purpose::Release => "release",
        }
    }
}

/// A role's token: a random secret the supervisor hands to a role and to the vault (through
/// their stdin, never the environment or a file). `Debug` does not print it.
#[derive(
    Clone, PartialEq, Eq, Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop,
)]
#[serde(transparent)]
pub struct RoleToken(pub String);

impl std::fmt::Debug for RoleToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoleToken(..)")
    }
}

/// What a role asks the vault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Liveness.
    Ping,
    /// The recipient to seal the tenant's content to; the key pair is created on first use.
    TenantRecipient {
        /// Tenant id.
        tenant: TenantId,
    },
    /// Opens a quarantined message; the plaintext comes back as the payload.
    OpenQuarantine {
        /// Quarantine id.
        id: QueueId,
        /// Why.
        purpose: Purpose,
        /// On whose behalf (`cli:alice`, `portal:bob@acme`).
        principal: String,
        /// The stated reason (recorded).
        reason: String,
        /// The portal user's session token: the vault then opens only what that user may
        /// see and records the user as the principal.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        /// The mx role's token: a role process (mx, portal) opens without a session only
        /// with it; the local CLI needs none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role_token: Option<RoleToken>,
        /// The local CLI reading content: the tenant-approved lockbox it opens under.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lockbox: Option<i64>,
        /// The local CLI reading content without a lockbox, in an emergency: opened, recorded
        /// and raised as a critical `break-glass` alert (the reason says why).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        break_glass: bool,
    },
    /// Seals a tenant's connector secret (write-only: nothing ever reads it back out). The
    /// value is the payload: a serialized `ConnectorSecret` (keys crate).
    SealSecret {
        /// Tenant name.
        tenant: String,
        /// Who asked.
        principal: String,
    },
    /// The mx role obtains a tenant's connector secret to connect with; the value comes back as
    /// the payload. Only a caller holding the mx role token (handed to both roles by the
    /// supervisor, never written anywhere) is answered.
    UseSecret {
        /// Tenant id.
        tenant: TenantId,
        /// Which secret.
        kind: SecretKind,
        /// The mx role token.
        role_token: RoleToken,
    },
    /// The mx role obtains its node's spool key at start (hex, as the payload): the key that
    /// wraps every queued message's data key. Created on first use, kept only wrapped under
    /// the KEK. Answered only for the mx role token.
    SpoolKey {
        /// The node (`[server] node_name`): each node's spool has its own key.
        node: String,
        /// The mx role token.
        role_token: RoleToken,
        /// mx's spool holds nothing sealed: if the stored key does not open (a database
        /// restored from before a KEK rotation), the vault may replace it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        spool_empty: bool,
    },
    /// mx asks which key signs a tenant's domain → `DkimKey` (never the key itself).
    /// Answered only for the mx role token.
    DkimKey {
        /// The sender's tenant.
        tenant: TenantId,
        /// The `From` domain.
        domain: String,
        /// The mx role token.
        role_token: RoleToken,
    },
    /// mx asks the vault to sign: the payload is the SHA-256 digest of the canonical signed
    /// headers; the signature comes back as the payload (`Signature`). The private key never
    /// leaves the vault. Answered only for the mx role token, for a key that is not pending.
    DkimSign {
        /// The sender's tenant.
        tenant: TenantId,
        /// The signing domain.
        domain: String,
        /// The key's selector.
        selector: String,
        /// The mx role token.
        role_token: RoleToken,
    },
    /// A key-changing request.
    Admin(Admin),
    /// Portal: first step of an enrolment link — the new password is the payload; answers
    /// `Totp` with the second-factor secret to show once.
    EnrolStart {
        /// The enrolment token from the link.
        token: String,
    },
    /// Portal: second step — a code from the authenticator activates the account.
    EnrolConfirm {
        /// The enrolment token.
        token: String,
        /// A current TOTP code.
        code: String,
    },
    /// Portal: password (payload) and TOTP code → `Session`.
    Login {
        /// Login name.
        email: String,
        /// A current TOTP code.
        code: String,
        /// Where the request came from (recorded).
        client_ip: String,
    },
    /// Portal: the live user of a session token → `User`.
    Session {
        /// The session token from the cookie.
        token: String,
    },
    /// Portal: ends a session.
    Logout {
        /// The session token.
        token: String,
    },
    /// Deletes a quarantined message (sealed blob and index entry) → `Done`.
    DeleteQuarantine {
        /// Quarantine id.
        id: QueueId,
        /// On whose behalf (ignored when `session` is given).
        principal: String,
        /// The portal user's session: the vault then deletes only what that user may open.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
    },
    /// A tenant admin's decision on an operator's lockbox request → `Done`. The vault checks
    /// that the session is an admin of the request's tenant and seals the approval's terms.
    LockboxDecide {
        /// Request id.
        id: i64,
        /// Approve (true) or deny.
        approve: bool,
        /// The deciding tenant admin's session.
        session: String,
    },
    /// Re-confirms a session with a current TOTP code (step-up) for `STEP_UP_SECONDS`
    /// → `Done`. A wrong code counts as a failed login (lockout).
    ///
    /// (the vault's constant)
    StepUp {
        /// The session.
        session: String,
        /// The current code.
        code: String,
    },
    /// A portal user invites a person → `Enrolment`: tenant admins users and tenant admins of
    /// their own tenant, operators anyone.
    InviteBy {
        /// The inviting user's interactive session.
        session: String,
        /// The new account's login name.
        email: String,
        /// Its role.
        role: Role,
        /// Its tenant (operators name it; a tenant admin's own is used).
        tenant: Option<String>,
    },
    /// A tenant admin seals a connector secret of their tenant (the value is the payload, as
    /// for `SealSecret`) → `Done`. Needs a stepped-up interactive session.
    SealSecretBy {
        /// The tenant admin's session.
        session: String,
    },
    /// Creates an API token for the user of an interactive `session` → `ApiToken`.
    TokenCreate {
        /// The session (API tokens cannot make tokens).
        session: String,
        /// A name for people.
        name: String,
        /// Scopes .
        scopes: Vec<Scope>,
        /// Lifetime in days (1–365).
        days: i64,
    },
    /// Portal at start: a first-operator enrolment link, only while no account exists and no
    /// earlier first-operator link is live → `Enrolment` (else `Refused`, saying which): in a
    /// cluster the first node to start prints the link, and later starts do not void it.
    FirstEnrolment,
    /// mx (with its role token) or the local CLI: signed one-click release links for a
    /// quarantine digest, one per (quarantine id, recipient), valid until `expires_at` →
    /// `Links` (`None` where the recipient is not the item's, or the item is gone).
    DigestLinks {
        /// (quarantine id, recipient) pairs.
        items: Vec<(QueueId, String)>,
        /// Unix seconds.
        expires_at: i64,
        /// mx's role token.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role_token: Option<RoleToken>,
    },
    /// Portal: a tenant's audit export (`sekisho-audit-export-v1` JSON Lines) as the payload
    /// of `Opened`, for a stepped-up interactive session: tenant admins their own tenant's,
    /// auditors and operators the named tenant's.
    AuditExportBy {
        /// The person's session.
        session: String,
        /// The tenant (auditors and operators; a tenant admin's own is used).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        /// From (Unix seconds).
        from: i64,
        /// To (Unix seconds).
        to: i64,
    },
    /// Portal: releases what a digest link names (the link is the credential; the vault
    /// checks it, the mail node queues the message) → `Done`.
    DigestRelease {
        /// The link's token.
        token: String,
    },
    /// Portal: what a digest link releases, if it is genuine and current → `Link`. The link
    /// itself is then passed as the `session` of the release.
    DigestLink {
        /// The link's token.
        token: String,
    },
    /// Portal: starts a passkey ceremony → `Challenge` (the browser's options). `login`
    /// needs no session; `step-up` the session to re-confirm; `register` a stepped-up one.
    PasskeyBegin {
        /// What for.
        purpose: PasskeyPurpose,
        /// The person's session (register, step-up).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
    },
    /// Portal: finishes a ceremony with the browser's answer (its JSON is the payload) →
    /// login: `Session`; register and step-up: `Done`. Each ceremony is finished once.
    PasskeyFinish {
        /// The ceremony id `PasskeyBegin` answered.
        ceremony: String,
        /// The same session as at the start (register, step-up).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        /// A name for the new passkey (register).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Where the request came from (recorded).
        client_ip: String,
    },
    /// Portal: the session user's passkeys → `Passkeys`.
    PasskeyList {
        /// An interactive session.
        session: String,
    },
    /// Portal: a user's act (a read or a change), on the session's behalf → `Answer` with
    /// the act's answer as the payload. The vault resolves the session, checks the role,
    /// tenant, token scope and step-up the act needs, performs it and records it.
    Act {
        /// The person's session or API token.
        session: String,
        /// What.
        act: Act,
    },
    /// Portal: its front door's shared state (blocks, login counts) → `Answer`.
    Front(crate::acts::FrontAct),
    /// Portal: removes one of the session user's passkeys (needs a step-up) → `Done`.
    PasskeyRemove {
        /// A stepped-up interactive session.
        session: String,
        /// Passkey id.
        id: i64,
    },
}

/// What a passkey ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PasskeyPurpose {
    /// Add a passkey to the signed-in account.
    Register,
    /// Sign in (a discoverable credential names its account).
    Login,
    /// Re-confirm a session instead of a TOTP code.
    StepUp,
}

impl PasskeyPurpose {
    /// The name stored with a ceremony.
    pub fn as_str(self) -> &'static str {
        match self {
            PasskeyPurpose::Register => "register",
            PasskeyPurpose::Login => "login",
            PasskeyPurpose::StepUp => "step-up",
        }
    }
}

/// A registered passkey as people see it (never its key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyInfo {
    /// Id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Registered (Unix seconds).
    pub created_at: i64,
    /// Last used to sign in or confirm.
    pub last_used_at: Option<i64>,
}

/// Requests that change keys (a separate enum keeps the hot path's match small).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "admin", rename_all = "kebab-case")]
pub enum Admin {
    /// Re-wraps every tenant key under a new KEK and destroys the old one.
    RotateKek {
        /// Who asked.
        principal: String,
    },
    /// Plants a canary quarantine item for a tenant.
    PlantCanary {
        /// Tenant name.
        tenant: String,
        /// Who asked.
        principal: String,
        /// When retention removes it (Unix seconds).
        expires_at: i64,
    },
    /// Plants a canary `smtp-auth` secret for a tenant whose route never authenticates, so no
    /// legitimate delivery ever asks for it.
    PlantCanarySecret {
        /// Tenant name.
        tenant: String,
        /// Who asked.
        principal: String,
    },
    /// Terminates a tenant: destroys its key pair (crypto-shred), deletes its sealed blobs and
    /// every row about it, then rotates the KEK so no earlier copy of its wrapped key opens.
    TerminateTenant {
        /// Tenant name.
        tenant: String,
        /// Who asked.
        principal: String,
    },
    /// A new first-operator enrolment link while no account exists → `Enrolment`; it voids
    /// any earlier one (the local operator lost it, or it was printed by another node).
    FirstLink {
        /// Who asked.
        principal: String,
    },
    /// Makes a DKIM key for one of a tenant's domains → `DkimKeys` with the new one (its DNS
    /// record): active if the domain has none, else pending until `DkimRotate`.
    DkimGenerate {
        /// Tenant name.
        tenant: String,
        /// One of the tenant's domains.
        domain: String,
        /// The selector (one DNS label).
        selector: String,
        /// RSA-2048 or Ed25519.
        algorithm: DkimAlgorithm,
        /// Who asked.
        principal: String,
    },
    /// Lists a tenant's DKIM keys → `DkimKeys`.
    DkimList {
        /// Tenant name.
        tenant: String,
    },
    /// Makes a pending key its domain's active one; the one before is retired.
    DkimRotate {
        /// Tenant name.
        tenant: String,
        /// The domain.
        domain: String,
        /// The pending key's selector.
        selector: String,
        /// Who asked.
        principal: String,
    },
    /// Deletes a pending or retired key (after its record is withdrawn from DNS).
    DkimRemove {
        /// Tenant name.
        tenant: String,
        /// The domain.
        domain: String,
        /// The key's selector.
        selector: String,
        /// Who asked.
        principal: String,
    },
    /// Makes a one-time enrolment link for a new portal account → `Enrolment`.
    Invite {
        /// The account's login name.
        email: String,
        /// Its role.
        role: Role,
        /// Its tenant (tenant admins and users).
        tenant: Option<String>,
        /// Who asked.
        principal: String,
    },
}

impl Request {
    /// The request's name (for records and logs; never its content).
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::TenantRecipient { .. } => "tenant-recipient",
            Request::OpenQuarantine { .. } => "open-quarantine",
            Request::SealSecret { .. } => "seal-secret",
            Request::UseSecret { .. } => "use-secret",
            Request::SpoolKey { .. } => "spool-key",
            Request::DkimKey { .. } => "dkim-key",
            Request::DkimSign { .. } => "dkim-sign",
            Request::Admin(_) => "admin",
            Request::EnrolStart { .. } => "enrol-start",
            Request::EnrolConfirm { .. } => "enrol-confirm",
            Request::Login { .. } => "login",
            Request::Session { .. } => "session",
            Request::Logout { .. } => "logout",
            Request::DeleteQuarantine { .. } => "delete-quarantine",
            Request::LockboxDecide { .. } => "lockbox-decide",
            Request::StepUp { .. } => "step-up",
            Request::TokenCreate { .. } => "token-create",
            Request::InviteBy { .. } => "invite-by",
            Request::SealSecretBy { .. } => "seal-secret-by",
            Request::FirstEnrolment => "first-enrolment",
            Request::DigestLinks { .. } => "digest-links",
            Request::AuditExportBy { .. } => "audit-export-by",
            Request::DigestLink { .. } => "digest-link",
            Request::DigestRelease { .. } => "digest-release",
            Request::PasskeyBegin { .. } => "passkey-begin",
            Request::PasskeyFinish { .. } => "passkey-finish",
            Request::PasskeyList { .. } => "passkey-list",
            Request::PasskeyRemove { .. } => "passkey-remove",
            Request::Act { act, .. } => act.kind(),
            Request::Front(f) => f.kind(),
        }
    }
}

/// Which key signs a domain: enough for mx to write the signature's tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimKeyRef {
    /// `s=`.
    pub selector: String,
    /// `a=`.
    pub algorithm: DkimAlgorithm,
}

/// A DKIM key as listed: its public half as the DNS record to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimKeyInfo {
    /// The signing domain.
    pub domain: String,
    /// The selector.
    pub selector: String,
    /// RSA-2048 or Ed25519.
    pub algorithm: DkimAlgorithm,
    /// Pending, active or retired.
    pub state: DkimKeyState,
    /// Where the record goes: `<selector>._domainkey.<domain>`.
    pub name: String,
    /// The TXT value to publish there.
    pub value: String,
    /// When it was made (Unix seconds).
    pub created_at: i64,
}

/// The user behind a session, as the vault vouches for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUser {
    /// Account id.
    pub id: i64,
    /// Login name.
    pub email: String,
    /// `operator`, `auditor`, `tenant-admin` or `user`.
    pub role: Role,
    /// The tenant (tenant admins and users).
    pub tenant_id: Option<TenantId>,
    /// The tenant's name.
    pub tenant: Option<String>,
    /// For an API token: the scopes it is narrowed to (`None`: an interactive session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<Scope>>,
    /// For a digest link: the one quarantine id it may release (the user is the recipient the
    /// link was sent to; `id` is 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<QueueId>,
}

impl SessionUser {
    /// True unless this is an API token without `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.as_ref().is_none_or(|s| s.contains(&scope))
    }

    /// True for an interactive session (not an API token, not a digest link).
    pub fn interactive(&self) -> bool {
        self.scopes.is_none() && self.link.is_none()
    }

    /// The principal name in audit records.
    pub fn principal(&self) -> String {
        format!("user:{}", self.email)
    }
}

/// What the vault answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Response {
    /// Alive.
    Pong,
    /// Seal to this recipient.
    Recipient {
        /// age recipient.
        recipient: String,
        /// The tenant holds the private key itself.
        customer_held: bool,
    },
    /// The plaintext is the payload.
    Opened,
    /// The connector secret is the payload.
    Secret,
    /// The spool key is the payload (hex).
    SpoolKey,
    /// The key that signs a domain's mail, if it has one.
    DkimKey {
        /// `None`: the domain is not signed.
        key: Option<DkimKeyRef>,
    },
    /// The signature is the payload.
    Signature,
    /// DKIM keys (public halves), with the DNS record each needs.
    DkimKeys {
        /// By domain and selector.
        keys: Vec<DkimKeyInfo>,
    },
    /// Done, with a summary for a person.
    Done {
        /// What was done.
        summary: String,
    },
    /// The second-factor secret of a new account, shown to its user once.
    Totp {
        /// base32 secret.
        secret: String,
        /// `otpauth://` URI (for a QR code).
        uri: String,
    },
    /// An account activated, with its one-time recovery codes (shown to its user once).
    Activated {
        /// What happened.
        summary: String,
        /// The account's login name (to log in with from now on).
        login: String,
        /// The recovery codes.
        recovery_codes: Vec<String>,
    },
    /// A new API token, shown once.
    ApiToken {
        /// Token id.
        id: i64,
        /// The token (`Authorization: Bearer …`).
        token: String,
        /// Expiry (Unix seconds).
        expires_at: i64,
    },
    /// A new session.
    Session {
        /// The session token (cookie value).
        token: String,
        /// The CSRF token bound to it.
        csrf: String,
        /// Who.
        user: SessionUser,
    },
    /// The live user of a session.
    User {
        /// Who.
        user: SessionUser,
        /// The CSRF token bound to the session.
        csrf: String,
        /// The session was re-confirmed with the second factor within the last few minutes.
        #[serde(default)]
        stepped_up: bool,
    },
    /// An enrolment link's token.
    Enrolment {
        /// The token (goes into the link).
        token: String,
    },
    /// Digest link tokens, in the order asked.
    Links {
        /// One per pair (`None`: no link for it).
        tokens: Vec<Option<String>>,
    },
    /// A digest link's terms.
    Link {
        /// The quarantine id it releases.
        id: QueueId,
        /// The recipient it was sent to.
        rcpt: String,
        /// The item's tenant.
        tenant_id: TenantId,
        /// Unix seconds.
        expires_at: i64,
        /// The item's metadata (for the confirmation page); `None` once it left quarantine.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<crate::acts::QuarantineItem>,
    },
    /// A passkey ceremony started: hand `options` (JSON) to the browser and `ceremony` back.
    Challenge {
        /// The ceremony id.
        ceremony: String,
        /// `PublicKeyCredentialCreationOptions` / `…RequestOptions`, as `{"publicKey": …}`.
        options: String,
    },
    /// A user's passkeys.
    Passkeys {
        /// Oldest first.
        items: Vec<PasskeyInfo>,
    },
    /// Refused (policy), with its kind and a message for a person.
    Refused {
        /// What kind of refusal.
        #[serde(default)]
        refusal: Refusal,
        /// Why.
        message: String,
    },
    /// An act's answer: its JSON is the payload (see [`crate::acts::Ask`]).
    Answer,
    /// Failed, with a message for a person.
    Error {
        /// What went wrong.
        message: String,
    },
}

impl Response {
    /// The variant's name, for error messages: never the fields, which may carry a session
    /// token or an enrolment link.
    pub fn kind(&self) -> &'static str {
        match self {
            Response::Pong => "pong",
            Response::Recipient { .. } => "recipient",
            Response::Opened => "opened",
            Response::Secret => "secret",
            Response::SpoolKey => "spool-key",
            Response::DkimKey { .. } => "dkim-key",
            Response::Signature => "signature",
            Response::DkimKeys { .. } => "dkim-keys",
            Response::Done { .. } => "done",
            Response::Totp { .. } => "totp",
            Response::Activated { .. } => "activated",
            Response::ApiToken { .. } => "api-token",
            Response::Session { .. } => "session",
            Response::User { .. } => "user",
            Response::Enrolment { .. } => "enrolment",
            Response::Links { .. } => "links",
            Response::Link { .. } => "link",
            Response::Challenge { .. } => "challenge",
            Response::Passkeys { .. } => "passkeys",
            Response::Refused { .. } => "refused",
            Response::Answer => "answer",
            Response::Error { .. } => "error",
        }
    }
}
