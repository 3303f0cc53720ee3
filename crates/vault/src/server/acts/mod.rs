//! Portal acts: the vault's side of `proto::acts`.
//!
//! The portal holds no store handle. Every read it shows and every change it makes arrives
//! here as a typed act with the person's session; this module resolves the session, refuses
//! what the person's role, tenant, token scope or missing step-up does not allow, performs
//! the act on the store and records it. The rules live here, once — so a bug in the portal,
//! or a compromised portal, can still do only what a logged-in person may.
//!
//! One file per resource; each handler takes the [`Caller`] and its act, and returns the
//! act's answer or a [`Fail`].

mod accounts;
mod alerts;
mod front;
mod health;
mod lockbox;
mod policy;
mod quarantine;
mod senders;
mod stats;
mod tenants;
mod tokens;

pub use policy::PolicyDefaults;
pub use quarantine::{item_view, visible};

use proto::acts::{Act, Ask};
use proto::vault::{Response, SessionUser};
use proto::{Refused, Role, Scope};
use store::StoreError;

use super::Vault;

/// Most items one list answer holds.
pub const MAX_LIST: i64 = 500;

/// Who asks: the person behind the session, as the vault resolved it.
pub(super) struct Caller {
    /// The person.
    pub user: SessionUser,
    /// Their session (passed on when the mail node asks to open a message for them).
    pub session: String,
    /// Re-confirmed with the second factor within the last few minutes.
    pub stepped_up: bool,
}

impl Caller {
    /// The principal in audit records.
    fn principal(&self) -> String {
        self.user.principal()
    }

    /// The caller's tenant as a store id, if they belong to one.
    fn tenant(&self) -> Option<i64> {
        self.user.tenant_id.map(|t| t.0)
    }

    /// The tenant a tenant admin's request is narrowed to; `None` for operators (every
    /// tenant). Other roles are refused with `refusal`.
    fn admin_scope(&self, refusal: &str) -> Result<Option<i64>, Refused> {
        match (self.user.role, self.tenant()) {
            (Role::Operator, _) => Ok(None),
            (Role::TenantAdmin, Some(t)) => Ok(Some(t)),
            _ => Err(Refused::forbidden(refusal)),
        }
    }

    fn operator_only(&self, what: &str) -> Result<(), Refused> {
        if self.user.role == Role::Operator {
            Ok(())
        } else {
            Err(Refused::forbidden(format!("{what} is for operators")))
        }
    }
}

/// Why an act did not happen.
pub(in crate::server) enum Fail {
    /// Refused by a rule (the person can act on the message).
    Refused(Refused),
    /// Something broke (the message is for the log).
    Internal(String),
}

impl From<Refused> for Fail {
    fn from(r: Refused) -> Self {
        Fail::Refused(r)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(m) => Fail::Refused(Refused::invalid(m)),
            StoreError::Conflict(m) => Fail::Refused(Refused::conflict(m)),
            StoreError::NotFound(m) => Fail::Refused(Refused::not_found(m)),
            other => Fail::Internal(other.to_string()),
        }
    }
}

/// An act's result.
pub(in crate::server) type Done<T> = Result<T, Fail>;

/// The frame of a failed act.
fn failed(f: Fail) -> (Response, Vec<u8>) {
    match f {
        Fail::Refused(r) => super::refusal(&r),
        Fail::Internal(m) => {
            tracing::error!(error = %m, "a portal act failed");
            super::error("the store did not answer; try again shortly")
        }
    }
}

/// The frame of an act's answer (its JSON is the payload).
fn answer<A: Ask>(r: Done<A::Answer>) -> (Response, Vec<u8>) {
    match r.and_then(|v| serde_json::to_vec(&v).map_err(|e| Fail::Internal(e.to_string()))) {
        Ok(body) => (Response::Answer, body),
        Err(f) => failed(f),
    }
}

/// The scope an API token needs for an act; `None`: tokens may not ask it at all.
fn scope_of(act: &Act) -> Option<Scope> {
    Some(match act {
        Act::QuarantineList(_) | Act::QuarantineGet(_) => Scope::QuarantineRead,
        Act::QuarantineRelease(_) | Act::QuarantineDelete(_) => Scope::QuarantineWrite,
        Act::QuarantineSender(_) | Act::SenderAdd(_) | Act::SenderRemove(_) => Scope::SendersWrite,
        Act::SenderList(_) => Scope::SendersRead,
        Act::Stats(_) | Act::TlsOutcomes(_) => Scope::StatsRead,
        Act::TraceSearch(_) => Scope::TraceRead,
        Act::LockboxList(_) => Scope::LockboxRead,
        Act::AlertList(_) => Scope::AlertsRead,
        Act::RecipientList(_) => Scope::RecipientsRead,
        Act::RecipientAdd(_) | Act::RecipientRemove(_) => Scope::RecipientsWrite,
        _ => return None,
    })
}

/// The refusal of an act for an API token without the scope it needs.
fn token_refusal(user: &SessionUser, act: &Act) -> Option<Refused> {
    user.scopes.as_ref()?;
    match scope_of(act) {
        None => Some(Refused::forbidden(
            "API tokens cannot do this: log in to the portal",
        )),
        Some(s) if !user.allows(s) => Some(Refused::forbidden(format!(
            "this API token lacks the {s} scope"
        ))),
        Some(_) => None,
    }
}

impl Vault {
    async fn caller(&self, session: &str) -> Result<Caller, Refused> {
        let user = self
            .resolve_session(session)
            .await
            .ok_or_else(Refused::unauthenticated)?;
        let stepped_up = user.interactive() && self.stepped_up(session).await;
        Ok(Caller {
            user,
            session: session.to_string(),
            stepped_up,
        })
    }

    /// Answers a portal user's act.
    pub(super) async fn act(&self, session: &str, act: Act) -> (Response, Vec<u8>) {
        let c = match self.caller(session).await {
            Ok(c) => c,
            Err(r) => return super::refusal(&r),
        };
        if let Some(r) = token_refusal(&c.user, &act) {
            return super::refusal(&r);
        }
        use proto::acts::*;
        match act {
            Act::QuarantineList(a) => answer::<QuarantineList>(self.quarantine_list(&c, a).await),
            Act::QuarantineGet(a) => answer::<QuarantineGet>(self.quarantine_get(&c, a).await),
            Act::QuarantineRelease(a) => {
                answer::<QuarantineRelease>(self.quarantine_release(&c, a).await)
            }
            Act::QuarantineDelete(a) => {
                answer::<QuarantineDelete>(self.quarantine_delete(&c, a).await)
            }
            Act::QuarantineSender(a) => {
                answer::<QuarantineSender>(self.quarantine_sender(&c, a).await)
            }
            Act::SenderList(_) => answer::<SenderList>(self.sender_list(&c).await),
            Act::SenderAdd(a) => answer::<SenderAdd>(self.sender_add(&c, a).await),
            Act::SenderRemove(a) => answer::<SenderRemove>(self.sender_remove(&c, a).await),
            Act::Stats(a) => answer::<Stats>(self.stats(&c, a).await),
            Act::TlsOutcomes(a) => answer::<TlsOutcomes>(self.tls_outcomes(&c, a).await),
            Act::TraceSearch(a) => answer::<TraceSearch>(self.trace_search(&c, a).await),
            Act::LockboxList(_) => answer::<LockboxList>(self.lockbox_list(&c).await),
            Act::LockboxAsk(a) => answer::<LockboxAsk>(self.lockbox_ask(&c, a).await),
            Act::LockboxRevoke(a) => answer::<LockboxRevoke>(self.lockbox_revoke(&c, a).await),
            Act::TokenList(_) => answer::<TokenList>(self.token_list(&c).await),
            Act::TokenRevoke(a) => answer::<TokenRevoke>(self.token_revoke(&c, a).await),
            Act::AlertList(a) => answer::<AlertList>(self.alert_list(&c, a).await),
            Act::TenantList(_) => answer::<TenantList>(self.tenant_list(&c).await),
            Act::TenantGet(a) => answer::<TenantGet>(self.tenant_get(&c, a).await),
            Act::TenantCreate(a) => answer::<TenantCreate>(self.tenant_create(&c, a).await),
            Act::DomainAdd(a) => answer::<DomainAdd>(self.domain_add(&c, a).await),
            Act::RouteSet(a) => answer::<RouteSet>(self.route_set(&c, a).await),
            Act::RecipientList(a) => answer::<RecipientList>(self.recipient_list(&c, a).await),
            Act::RecipientAdd(a) => answer::<RecipientAdd>(self.recipient_add(&c, a).await),
            Act::RecipientRemove(a) => {
                answer::<RecipientRemove>(self.recipient_remove(&c, a).await)
            }
            Act::RecipientPolicySet(a) => {
                answer::<RecipientPolicySet>(self.recipient_policy_set(&c, a).await)
            }
            Act::AccountList(_) => answer::<AccountList>(self.account_list(&c).await),
            Act::InvitationList(_) => answer::<InvitationList>(self.invitation_list(&c).await),
            Act::PolicyGet(_) => answer::<PolicyGet>(self.policy_get(&c).await),
            Act::PolicySet(a) => answer::<PolicySet>(self.policy_set(&c, a).await),
            Act::SecretList(_) => answer::<SecretList>(self.secret_list(&c).await),
            Act::Health(_) => answer::<Health>(self.health(&c).await),
        }
    }

    /// Records a person's act through the portal.
    async fn record_act(
        &self,
        c: &Caller,
        action: &str,
        tenant: Option<i64>,
        object: &str,
        reason: &str,
    ) {
        self.record(store::NewRecord {
            principal: &c.principal(),
            role: proto::Process::Portal,
            action,
            tenant_id: tenant,
            object,
            reason,
            outcome: "ok",
        })
        .await;
    }

    /// Asks the node's mail path to reload its directory now (it does within a second
    /// anyway); a mail node that is down is no reason to fail the act.
    async fn reload_mail_path(&self) {
        let Some(mx) = &self.mx else { return };
        let reload = proto::mx::Reload {
            token: self.mx_token.clone(),
        };
        if let Err(e) = mx.ask(reload).await {
            tracing::debug!(error = %e, "the mail node was not asked to reload");
        }
    }

    /// Asks the node's mail path to release a quarantined message for `session` (a person's
    /// session or a digest link): mx asks this vault to open it with that session, so the
    /// person's right to it is checked again there.
    pub(in crate::server) async fn release_through_mx(
        &self,
        id: &proto::QueueId,
        principal: &str,
        session: &str,
    ) -> Done<String> {
        let mx = self
            .mx
            .as_ref()
            .ok_or_else(|| Fail::Internal("no mail node to release through".into()))?;
        let release = proto::mx::QuarantineRelease {
            id: id.clone(),
            principal: principal.to_string(),
            session: Some(session.to_string()),
            token: self.mx_token.clone(),
        };
        match mx.ask(release).await {
            Ok(r) => Ok(format!("{} released for delivery", r.released)),
            Err(proto::mx::MxError::Refused(r)) => Err(r.into()),
            Err(e) => Err(Fail::Internal(e.to_string())),
        }
    }
}
