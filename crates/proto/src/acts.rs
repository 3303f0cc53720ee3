//! What a portal user asks the vault to show or do, and what the vault answers.
//!
//! The portal holds no store handle: every read it shows and every trust-relevant change it
//! makes is one of these acts, sent with the person's session. The vault resolves the
//! session, checks role, tenant, token scope and step-up, performs the act against the store
//! and records it. Each act is a struct with its answer type ([`Ask::Answer`]), so the two
//! ends agree on shapes at compile time; [`Act`] is their sum on the wire.
//!
//! [`FrontAct`]s are the portal role's own requests (its front door's shared block list and
//! login counter), which need no session and can change nothing but that.

use std::net::IpAddr;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::nouns::{
    AlertState, QueueId, RecipientPolicy, Role, Scope, SenderAction, SenderScope, Severity,
    TenantId,
};

/// An act and the type of its answer.
pub trait Ask: Serialize {
    /// What the vault answers (the frame's payload, as JSON).
    type Answer: Serialize + DeserializeOwned;
}

/// Declares requests: each a struct with its answer type, and their sum `$sum` on the wire,
/// tagged by `$tag`.
macro_rules! asks {
    ($sum:ident, $tag:literal, $sumdoc:literal; $( $(#[$m:meta])* $name:ident $kind:literal {
        $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)?
    } -> $ans:ty; )+) => {
        $(
            $(#[$m])*
            #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
            #[serde(deny_unknown_fields)]
            // Fields are named for what they are; the struct's doc says what the request does.
            #[allow(missing_docs)]
            pub struct $name { $( $(#[$fm])* pub $field: $ty ),* }

            $(#[$m])*
            impl Ask for $name {
                type Answer = $ans;
            }

            $(#[$m])*
            impl From<$name> for $sum {
                fn from(a: $name) -> $sum {
                    $sum::$name(a)
                }
            }
        )+

        #[doc = $sumdoc]
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = $tag, rename_all = "kebab-case")]
        pub enum $sum {
            $( $(#[$m])* $name($name) ),+
        }

        impl $sum {
            /// The request's name (for records and logs; never its content).
            #[allow(unused_doc_comments)]
            pub fn kind(&self) -> &'static str {
                match self {
                    $( $(#[$m])* $sum::$name(_) => $kind ),+
                }
            }
        }
    };
}

pub(crate) use asks;

asks! {
    Act, "act", "Every act a portal user can ask for.";

    /// The newest quarantined messages the user may see (1–500).
    QuarantineList "quarantine-list" { limit: i64 } -> Vec<QuarantineItem>;
    /// One quarantined message's metadata, if the user may see it.
    QuarantineGet "quarantine-get" { id: QueueId } -> QuarantineItem;
    /// Releases a quarantined message for delivery: the vault checks the person, then asks
    /// the mail node, which asks the vault to open it with the same session.
    QuarantineRelease "quarantine-release" { id: QueueId } -> String;
    /// Deletes a quarantined message (its sealed blob and its index entry).
    QuarantineDelete "quarantine-delete" { id: QueueId } -> String;
    /// "Always allow" / "always block" a quarantined message's sender (end users for their
    /// mailbox, tenant admins for the tenant).
    QuarantineSender "quarantine-sender" { id: QueueId, action: SenderAction } -> SenderView;
    /// The sender-list entries the user sees.
    SenderList "sender-list" {} -> Vec<SenderView>;
    /// Adds (or changes) an entry.
    SenderAdd "sender-add" { scope: SenderScope, pattern: String, action: SenderAction } -> SenderView;
    /// Removes an entry the user may remove.
    SenderRemove "sender-remove" { id: i64 } -> String;
    /// Mail-flow statistics of the user's scope over the last `hours` (1–744).
    Stats "stats" { hours: u32 } -> MailStats;
    /// Outbound TLS outcomes per recipient domain over the last `days` (1–30): a tenant
    /// admin's own mail, an operator's whole cluster.
    TlsOutcomes "tls-outcomes" { days: u32 } -> Vec<TlsOutcome>;
    /// Message trace of the user's scope.
    TraceSearch "trace-search" {
        /// Messages to this recipient.
        rcpt: Option<String>,
        /// Messages from this envelope sender.
        from: Option<String>,
        /// One message by queue id.
        id: Option<String>,
        /// Most messages (1–500).
        limit: i64,
    } -> Vec<TraceMessage>;
    /// Lockbox requests the user sees.
    LockboxList "lockbox-list" {} -> Vec<LockboxView>;
    /// An operator asks for time-limited access to a tenant's content.
    LockboxAsk "lockbox-ask" { tenant: String, reason: String, minutes: i64 } -> LockboxView;
    /// Ends a pending or approved access early.
    LockboxRevoke "lockbox-revoke" { id: i64 } -> String;
    /// The user's API tokens (never the tokens).
    TokenList "token-list" {} -> Vec<TokenView>;
    /// Revokes one of the user's tokens.
    TokenRevoke "token-revoke" { id: i64 } -> String;
    /// Detection alerts (operators and auditors).
    AlertList "alert-list" { state: Option<AlertState> } -> Vec<AlertView>;
    /// Tenants (operators: all; tenant admins: their own).
    TenantList "tenant-list" {} -> Vec<TenantView>;
    /// One tenant the user manages.
    TenantGet "tenant-get" { id: TenantId } -> TenantView;
    /// Creates a tenant (operators).
    TenantCreate "tenant-create" { name: String, domains: Vec<String>, route: String } -> TenantView;
    /// Adds a domain (operators).
    DomainAdd "domain-add" { tenant: TenantId, domain: String } -> TenantView;
    /// Changes a tenant's route (an `smtp://` route; after a step-up).
    RouteSet "route-set" { tenant: TenantId, route: String } -> TenantView;
    /// A tenant's recipient policy and listed mailboxes.
    RecipientList "recipient-list" { tenant: TenantId } -> Recipients;
    /// Lists a mailbox; answers it as stored.
    RecipientAdd "recipient-add" { tenant: TenantId, address: String } -> String;
    /// Unlists a mailbox.
    RecipientRemove "recipient-remove" { tenant: TenantId, address: String } -> String;
    /// Sets how RCPT TO is checked.
    RecipientPolicySet "recipient-policy-set" { tenant: TenantId, policy: RecipientPolicy } -> TenantView;
    /// Accounts (operators: all; tenant admins: their tenant's).
    AccountList "account-list" {} -> Vec<Account>;
    /// Invitations not yet taken up (operators: all; tenant admins: their tenant's).
    InvitationList "invitation-list" {} -> Vec<Invitation>;
    /// The tenant admin's filter policy, with the global values.
    PolicyGet "policy-get" {} -> PolicyAnswer;
    /// Replaces the tenant admin's filter policy (loosening needs a step-up).
    PolicySet "policy-set" { policy: PolicyView } -> String;
    /// Which connector secrets the tenant has sealed (never their values).
    SecretList "secret-list" {} -> Vec<SecretInfo>;
    /// What the store says of the cluster's health (operators).
    Health "health" {} -> HealthView;
}

asks! {
    FrontAct, "act", "The portal role's own requests: its front door's state, shared by every portal node.";

    /// Addresses blocked by any portal node, with the end of each block (Unix ms).
    FrontBlocks "front-blocks" {} -> Vec<(IpAddr, i64)>;
    /// A portal node blocked an address for probing: record it, raise its alert, share the
    /// block and count the storm.
    FrontBlock "front-block" {
        /// The address.
        ip: IpAddr,
        /// Probing requests seen.
        probes: u32,
        /// Within this many seconds.
        window_secs: u64,
        /// Blocked for this many seconds.
        block_secs: u64,
    } -> String;
    /// A login attempt from an address: how many there were, on every node, in the last minute.
    FrontLoginAttempt "front-login-attempt" { ip: IpAddr } -> u64;
}

/// A quarantined message's metadata (never its content or subject).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineItem {
    /// Queue id it was received under.
    pub id: QueueId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Tenant name.
    pub tenant: String,
    /// Envelope sender.
    pub mail_from: String,
    /// Envelope recipients.
    pub rcpts: Vec<String>,
    /// Size in octets.
    pub size: i64,
    /// Unix seconds.
    pub received_at: i64,
    /// When retention deletes it.
    pub expires_at: i64,
    /// Verdict action.
    pub verdict: String,
    /// Score.
    pub score: f64,
    /// Symbols with weights.
    pub symbols: String,
}

/// A name and how many messages had it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// Sender, verdict action or symbol.
    pub name: String,
    /// Messages.
    pub count: i64,
}

/// Mail-flow statistics over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailStats {
    /// Start of the window (Unix seconds, on an hour boundary).
    pub from: i64,
    /// Messages per hour, oldest first.
    pub hourly: Vec<i64>,
    /// Messages per verdict action, most frequent first.
    pub verdicts: Vec<Count>,
    /// Most frequent envelope senders.
    pub top_senders: Vec<Count>,
    /// Most frequent evidence symbols.
    pub top_symbols: Vec<Count>,
    /// Messages counted.
    pub total: i64,
    /// Only the newest messages of a very busy window were counted.
    pub truncated: bool,
}

/// One recipient domain's outbound TLS sessions over a span of days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsOutcome {
    /// The recipient (policy) domain.
    pub domain: String,
    /// `sts` when an MTA-STS policy applied to any session, else `no-policy-found`.
    pub policy: String,
    /// Sessions that negotiated TLS as the policy asks.
    pub successful: i64,
    /// Sessions that did not.
    pub failed: i64,
    /// The most frequent failure (an RFC 8460 result type), if any.
    pub top_failure: Option<String>,
    /// The last day with a session (days since 1970-01-01, UTC).
    pub last_day: i64,
}

/// A sender-list entry as the asking user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderView {
    /// Entry id.
    pub id: i64,
    /// `tenant`, `me`, or `recipient` (another recipient's, seen by a tenant admin).
    pub scope: String,
    /// The recipient it applies to (empty for the tenant).
    pub rcpt: String,
    /// An address or a domain.
    pub pattern: String,
    /// Allow or block.
    pub action: SenderAction,
    /// Who added it.
    pub added_by: String,
    /// When (Unix seconds).
    pub added_at: i64,
    /// The asking user may remove it.
    pub removable: bool,
}

/// One recipient event of a traced message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Recipient.
    pub rcpt: String,
    /// Unix seconds.
    pub at: i64,
    /// `accepted`, `delivered`, `deferred`, `bounced`, `quarantined`, `released`, …
    pub event: String,
    /// The next hop's reply or the reason.
    pub detail: String,
}

/// A traced message (envelope and verdict; never content).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceMessage {
    /// Queue id.
    pub id: String,
    /// Unix seconds.
    pub received_at: i64,
    /// Envelope sender.
    pub mail_from: String,
    /// Size in octets.
    pub size: i64,
    /// Client address.
    pub client_ip: String,
    /// HELO name.
    pub helo: String,
    /// TLS version and cipher.
    pub tls: Option<String>,
    /// Verdict action.
    pub verdict: Option<String>,
    /// Score.
    pub score: Option<f64>,
    /// Symbols with weights.
    pub symbols: String,
    /// Events of the asking user's scope, oldest first.
    pub events: Vec<TraceEvent>,
}

/// A lockbox request as the asking user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockboxView {
    /// Request id.
    pub id: i64,
    /// Tenant name.
    pub tenant: String,
    /// The operator.
    pub operator: String,
    /// Why.
    pub reason: String,
    /// Length of the access once approved.
    pub minutes: i64,
    /// Unix seconds.
    pub requested_at: i64,
    /// `requested`, `approved`, `expired`, `denied` or `revoked`.
    pub state: String,
    /// Who decided.
    pub decided_by: String,
    /// End of an approved access.
    pub expires_at: Option<i64>,
}

/// An API token's description (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// Token id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// Created.
    pub created_at: i64,
    /// Expires.
    pub expires_at: i64,
    /// Revoked, if.
    pub revoked_at: Option<i64>,
    /// Last used.
    pub last_used_at: Option<i64>,
}

/// A detection alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertView {
    /// Alert id.
    pub id: i64,
    /// The rule that raised it.
    pub rule: String,
    /// How urgent.
    pub severity: Severity,
    /// Who it is about.
    pub principal: String,
    /// Tenant, if any.
    pub tenant_id: Option<TenantId>,
    /// What happened.
    pub summary: String,
    /// First raised.
    pub first_at: i64,
    /// Last raised.
    pub last_at: i64,
    /// How often.
    pub count: i64,
    /// Triage state.
    pub state: AlertState,
}

/// A tenant as operators and its admins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantView {
    /// Tenant id.
    pub id: TenantId,
    /// Name.
    pub name: String,
    /// Domains.
    pub domains: Vec<String>,
    /// Where its mail goes (credentials are sealed secrets, never in the route).
    pub route: String,
    /// How RCPT TO is checked.
    pub recipient_policy: RecipientPolicy,
    /// Listed recipients.
    pub recipients: i64,
    /// Messages held in quarantine.
    pub quarantined: i64,
}

/// A tenant's recipient policy and listed mailboxes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipients {
    /// How RCPT TO is checked.
    pub policy: RecipientPolicy,
    /// Listed mailboxes, sorted.
    pub recipients: Vec<String>,
}

/// An invitation not yet taken up (never its link: that was shown once, to the inviter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// The login name the account will have.
    pub email: String,
    /// Its role.
    pub role: Role,
    /// Tenant name.
    pub tenant: Option<String>,
    /// Who invited them.
    pub invited_by: String,
    /// When the link stops working (Unix seconds).
    pub expires_at: i64,
}

/// A portal account (never its password or second factor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Account id.
    pub id: i64,
    /// Login name.
    pub email: String,
    /// Role.
    pub role: Role,
    /// Tenant name.
    pub tenant: Option<String>,
    /// Enrolment finished.
    pub active: bool,
    /// Locked after failed logins until (Unix seconds; 0: not locked).
    pub locked_until: i64,
    /// Created.
    pub created_at: i64,
}

/// A person whose display name outsiders must not use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProtectedName {
    /// The name.
    pub name: String,
    /// Their real addresses (empty: any address at the tenant's domains).
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// A tenant's filter policy: overrides of the global policy (absent: the global value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PolicyView {
    /// Tag threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<f64>,
    /// Quarantine threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<f64>,
    /// Reject threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject: Option<f64>,
    /// Symbol weights by name.
    #[serde(default)]
    pub weights: std::collections::BTreeMap<String, f64>,
    /// Protected display names.
    #[serde(default)]
    pub protected_names: Vec<ProtectedName>,
    /// Forwarders whose ARC seal the tenant trusts.
    #[serde(default)]
    pub trusted_arc: Vec<String>,
    /// Days quarantined mail is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_days: Option<u32>,
    /// Days message-trace records are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_days: Option<u32>,
}

/// A tenant's policy with the global values it overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyAnswer {
    /// The tenant's overrides.
    pub policy: PolicyView,
    /// Tag, quarantine and reject thresholds in effect.
    pub effective: [f64; 3],
    /// The global weight of every symbol.
    pub default_weights: std::collections::BTreeMap<String, f64>,
}

/// A sealed connector secret (its value is never shown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// `smtp-auth` or `client-cert`.
    pub kind: String,
    /// Last set.
    pub updated_at: i64,
}

/// One gateway node of the cluster, by its last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Its name.
    pub name: String,
    /// `up`, `stopped` or `down`.
    pub status: String,
    /// Version it runs.
    pub version: String,
    /// Its SMTP listener.
    pub smtp: String,
    /// Messages being delivered.
    pub active: i64,
    /// Messages waiting for a retry.
    pub deferred: i64,
    /// Messages held.
    pub hold: i64,
    /// Seconds since its last heartbeat.
    pub seen_seconds_ago: i64,
}

/// The cluster's health as the store shows it, and this node's queue as its mail path
/// counts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    /// Every node sharing the store.
    pub nodes: Vec<NodeView>,
    /// Open alerts.
    pub open_alerts: i64,
    /// This node's queue (`None`: its mail path did not answer).
    pub queue: Option<crate::mx::QueueCounts>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acts_travel_by_name_and_refuse_unknown_fields() {
        let a: Act = QuarantineList { limit: 5 }.into();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"act":"quarantine-list","limit":5}"#);
        assert_eq!(serde_json::from_str::<Act>(&json).unwrap(), a);
        assert_eq!(a.kind(), "quarantine-list");
        let unit: Act = SenderList {}.into();
        assert_eq!(
            serde_json::to_string(&unit).unwrap(),
            r#"{"act":"sender-list"}"#
        );
        assert!(serde_json::from_str::<Act>(r#"{"act":"sender-list","all":true}"#).is_err());
        assert!(serde_json::from_str::<Act>(r#"{"act":"drop-tables"}"#).is_err());
        // A queue id that is not one never reaches the vault's code.
        assert!(serde_json::from_str::<Act>(r#"{"act":"quarantine-get","id":"../kek"}"#).is_err());
    }
}
