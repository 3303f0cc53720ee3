//! Typed nouns of the mail-security domain, the same on both ends of every socket.
//!
//! Each is stored and sent by a stable name (`tenant-admin`, `critical`, `quarantine:read`)
//! and parsed back into the enum at the edge, so an unknown name is an error where it enters
//! rather than a string some later `match` forgets.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A tenant (a customer organisation), by its id in the store.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct TenantId(pub i64);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<i64> for TenantId {
    fn from(v: i64) -> Self {
        TenantId(v)
    }
}

/// A message's queue id (also its quarantine id): 1 to 64 ASCII letters, digits and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct QueueId(String);

impl QueueId {
    /// Longest id.
    pub const MAX_LEN: usize = 64;

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for QueueId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if ok {
            Ok(QueueId(s.to_string()))
        } else {
            Err("not a queue id (1 to 64 letters, digits and -)".into())
        }
    }
}

impl TryFrom<String> for QueueId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<QueueId> for String {
    fn from(q: QueueId) -> String {
        q.0
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Declares a closed set of names: the enum, its stable names, `Display`, `FromStr` and
/// serde by name.
macro_rules! names {
    ($(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "&'static str")]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            /// The stable name (stored, sent, shown).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let known: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    format!("unknown {} {s:?} (known: {})", $what, known.join(", "))
                })
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }

        impl From<$name> for &'static str {
            fn from(v: $name) -> &'static str {
                v.as_str()
            }
        }
    };
}

names! {
    /// A person's role in the portal.
    Role, "role" {
        /// Runs the service for every tenant (metadata; content only through a lockbox).
        Operator = "operator",
        /// Reads audit records and alerts; no mail.
        Auditor = "auditor",
        /// A tenant's IT staff: its policy, routes, recipients, quarantine.
        TenantAdmin = "tenant-admin",
        /// An end user: their own quarantined mail and sender lists.
        User = "user",
    }
}

names! {
    /// One of Sekisho's own processes (who acted, in audit records).
    Process, "process" {
        /// The vault (keys, sessions, the only writer for the portal).
        Vault = "vault",
        /// The mail node: SMTP, inspection, spool, delivery.
        Mx = "mx",
        /// The web portal.
        Portal = "portal",
        /// `sekisho serve`, which starts and restarts the others.
        Supervisor = "supervisor",
        /// The local operator's command line.
        Cli = "cli",
    }
}

names! {
    /// How urgent an alert is.
    Severity, "severity" {
        /// For the record.
        Info = "info",
        /// Look at it today.
        Warning = "warning",
        /// Look at it now: something may be compromised.
        Critical = "critical",
    }
}

names! {
    /// What an API token may do (never more than its user's role allows).
    Scope, "scope" {
        /// List and view quarantined mail.
        QuarantineRead = "quarantine:read",
        /// Release and delete quarantined mail.
        QuarantineWrite = "quarantine:write",
        /// Read sender lists.
        SendersRead = "senders:read",
        /// Change sender lists.
        SendersWrite = "senders:write",
        /// Mail-flow statistics.
        StatsRead = "stats:read",
        /// Message trace.
        TraceRead = "trace:read",
        /// Lockbox requests.
        LockboxRead = "lockbox:read",
        /// Alerts.
        AlertsRead = "alerts:read",
        /// A tenant's recipient list.
        RecipientsRead = "recipients:read",
        /// Change a tenant's recipient list.
        RecipientsWrite = "recipients:write",
    }
}

names! {
    /// Which connector secret (the credentials mx presents to a tenant's next hop).
    SecretKind, "secret kind" {
        /// SMTP AUTH username and password for a smarthost or connector.
        SmtpAuth = "smtp-auth",
        /// TLS client certificate chain and private key (mutual TLS).
        ClientCert = "client-cert",
    }
}

impl SecretKind {
    /// The name used in commands and the store.
    pub fn name(self) -> &'static str {
        self.as_str()
    }
}

names! {
    /// What a sender-list entry does.
    SenderAction, "sender action" {
        /// Never treat as spam (authentication permitting).
        Allow = "allow",
        /// Always hold.
        Block = "block",
    }
}

names! {
    /// Whose sender list an entry goes on.
    SenderScope, "scope" {
        /// The caller's own mailbox.
        Me = "me",
        /// Every recipient of the tenant (tenant admins).
        Tenant = "tenant",
    }
}

names! {
    /// Where an alert is in its triage.
    AlertState, "alert state" {
        /// Nobody has looked yet.
        Open = "open",
        /// Somebody is on it.
        Acknowledged = "acknowledged",
        /// Done.
        Resolved = "resolved",
    }
}

names! {
    /// How RCPT TO is checked for a tenant.
    RecipientPolicy, "recipient policy" {
        /// Every mailbox until the first is listed, then only listed ones.
        Auto = "auto",
        /// Only listed mailboxes.
        Verify = "verify",
        /// Every mailbox of its domains.
        CatchAll = "catch-all",
    }
}

names! {
    /// A DKIM signing algorithm (RFC 6376, RFC 8463).
    DkimAlgorithm, "DKIM algorithm" {
        /// RSA-SHA256 with a 2048-bit key.
        Rsa = "rsa",
        /// Ed25519-SHA256.
        Ed25519 = "ed25519",
    }
}

impl DkimAlgorithm {
    /// The signature's `a=` tag.
    pub fn tag(self) -> &'static str {
        match self {
            DkimAlgorithm::Rsa => "rsa-sha256",
            DkimAlgorithm::Ed25519 => "ed25519-sha256",
        }
    }
}

names! {
    /// Where a DKIM key is in its life. A domain has at most one active key, which signs.
    DkimKeyState, "DKIM key state" {
        /// Made and its record printed; signs nothing until `dkim rotate` makes it active.
        Pending = "pending",
        /// Signs the domain's outbound mail.
        Active = "active",
        /// Replaced by a rotation: signs nothing; keep its record published until mail
        /// signed with it has been read, then `dkim remove` it.
        Retired = "retired",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(*r));
            let json = serde_json::to_string(r).unwrap();
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), *r);
        }
        assert_eq!(
            serde_json::to_string(&Role::TenantAdmin).unwrap(),
            "\"tenant-admin\""
        );
        assert!(
            "admin"
                .parse::<Role>()
                .unwrap_err()
                .contains("tenant-admin")
        );
        assert!(serde_json::from_str::<Severity>("\"fatal\"").is_err());
        assert!(Severity::Critical > Severity::Warning);
        assert_eq!(Scope::ALL.len(), 10);
    }

    #[test]
    fn queue_ids_are_checked_where_they_enter() {
        assert!("Q1-abc".parse::<QueueId>().is_ok());
        for bad in ["", "a/b", "../x", "a b", &"x".repeat(65)] {
            assert!(bad.parse::<QueueId>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<QueueId>("\"../../kek\"").is_err());
    }
}
