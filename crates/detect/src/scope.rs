//! Incident scope: for a time window (and optionally one principal or role), which tenants,
//! accounts and categories of data were opened, used or reachable — with counts and the audit
//! record ids behind every line. The disclosure table an operator must publish
//! (`sekisho incident scope` prints it).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// Tenant id.
    pub tenant_id: i64,
    /// Tenant name.
    pub tenant: String,
    /// `active`, `terminated before the window`, `terminated during the window`,
    /// `terminated after the window`.
    pub status: String,
    /// Data category.
    pub category: &'static str,
    /// `opened`, `used`, `exported`, `released`, `set`, `attempted (refused)`, `reachable`.
    pub access: &'static str,
    /// How many.
    pub count: usize,
    /// Who.
    pub principals: BTreeSet<String>,
    /// The audit records behind it (empty for lines derived from the message trace).
    pub records: Vec<i64>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Window start.
    pub from: i64,
    /// Window end.
    pub to: i64,
    /// Principal filter.
    pub principal: Option<String>,
    /// Role assumed compromised.
    pub role: Option<String>,
    /// Lines, by tenant then category.
    pub lines: Vec<Line>,
    /// Tenants with a line, split by status at the start of the window.
    pub tenants_active: usize,
    /// Tenants already terminated when the window began.
    pub tenants_terminated: usize,
    /// What was out of reach whatever happened in the window, for the disclosure.
    pub unrecoverable: Vec<String>,
}

const BODIES: &str = "message bodies and headers (quarantined)";
const TRANSIT: &str = "message bodies and headers (in transit)";
const SEALED: &str = "sealed messages (unreadable without the tenant key)";
const SECRETS: &str = "connector credentials";
const ACCOUNTS: &str = "portal accounts (logins, sessions, tokens)";
const METADATA: &str = "message metadata (envelopes, verdicts, trace)";
const SETTINGS: &str = "filter policy and sender lists";
const OPERATOR: &str = "operator access (lockbox)";

/// What an audit record means for the report, if anything.
fn classify(r: &store::Record) -> Option<(&'static str, &'static str)> {
    let refused = r.outcome.starts_with("refused")
        || r.outcome.starts_with("error")
        || r.outcome.starts_with("failed");
    let (category, access) = match r.action.as_str() {
        a if a.starts_with("open-quarantine:") => (BODIES, "opened"),
        "export-sealed" => (SEALED, "exported"),
        "use-secret" => (SECRETS, "used"),
        "seal-secret" => (SECRETS, "set"),
        "delete-quarantine" => (BODIES, "deleted"),
        "login" => (ACCOUNTS, "logged in"),
        "step-up" | "token-create" | "token-revoke" | "passkey-add" | "passkey-remove" => {
            (ACCOUNTS, "used")
        }
        "user-invite" | "user-enrolled" => (ACCOUNTS, "created"),
        "set-filter-policy" | "sender-allow" | "sender-block" | "sender-remove" => {
            (SETTINGS, "changed")
        }
        "lockbox-request" => (OPERATOR, "requested"),
        "lockbox-approve" => (OPERATOR, "approved"),
        _ => return None,
    };
    Some((
        category,
        if refused {
            "attempted (refused)"
        } else {
            access
        },
    ))
}

/// Input the report is computed from.
pub struct Facts {
    /// Records in the window.
    pub records: Vec<store::Record>,
    /// Tenants that exist: id, name, created.
    pub tenants: Vec<(i64, String, i64)>,
    /// Terminations: id, name, time, record id.
    pub terminations: Vec<(i64, String, i64, i64)>,
    /// Messages per tenant in the window (trace).
    pub messages: Vec<(i64, i64)>,
}

/// Computes the report.
pub fn scope(f: &Facts, from: i64, to: i64, principal: Option<&str>, role: Option<&str>) -> Report {
    let name = |id: i64| {
        f.tenants
            .iter()
            .find(|t| t.0 == id)
            .map(|t| t.1.clone())
            .or_else(|| {
                f.terminations
                    .iter()
                    .find(|t| t.0 == id)
                    .map(|t| t.1.clone())
            })
            .unwrap_or_else(|| format!("tenant {id}"))
    };
    let status = |id: i64| match f.terminations.iter().find(|t| t.0 == id) {
        Some(t) if t.2 < from => "terminated before the window",
        Some(t) if t.2 <= to => "terminated during the window",
        Some(_) => "terminated after the window",
        None => "active",
    };
    let selected = |r: &store::Record| {
        principal.is_none_or(|p| r.principal == p)
            && role.is_none_or(|ro| r.role == ro || r.principal == ro)
    };
    let mut lines: BTreeMap<(i64, &'static str, &'static str), Line> = BTreeMap::new();
    for r in f.records.iter().filter(|r| selected(r)) {
        let (Some(tenant), Some((category, access))) = (r.tenant_id, classify(r)) else {
            continue;
        };
        let line = lines
            .entry((tenant, category, access))
            .or_insert_with(|| Line {
                tenant_id: tenant,
                tenant: name(tenant),
                status: status(tenant).to_string(),
                category,
                access,
                count: 0,
                principals: BTreeSet::new(),
                records: Vec::new(),
            });
        line.count += 1;
        line.principals.insert(r.principal.clone());
        line.records.push(r.id);
    }
    // A compromised mx holds every message it relays (memory, spool) and every connector
    // secret it fetched.
    if role == Some("mx") {
        for &(tenant, n) in &f.messages {
            lines.insert(
                (tenant, TRANSIT, "reachable"),
                Line {
                    tenant_id: tenant,
                    tenant: name(tenant),
                    status: status(tenant).to_string(),
                    category: TRANSIT,
                    access: "reachable",
                    count: n as usize,
                    principals: BTreeSet::from(["mx".to_string()]),
                    records: Vec::new(),
                },
            );
        }
    }
    // A compromised portal holds no store handle and no key: it can only ask the vault, as
    // the people whose sessions were live. So it reached the message metadata of the tenants
    // whose people logged in during the window — every tenant's if an operator did (operators
    // see every tenant's envelopes; content needs a lockbox the vault checks).
    if role == Some("portal") {
        let logins: Vec<&store::Record> = f
            .records
            .iter()
            .filter(|r| r.action == "login" && r.outcome.starts_with("ok"))
            .filter(|r| (from..=to).contains(&r.at))
            .collect();
        let everyone = logins.iter().any(|r| r.tenant_id.is_none());
        let mut reach = |tenant: i64, category: &'static str, n: i64| {
            lines.insert(
                (tenant, category, "reachable"),
                Line {
                    tenant_id: tenant,
                    tenant: name(tenant),
                    status: status(tenant).to_string(),
                    category,
                    access: "reachable",
                    count: n as usize,
                    principals: BTreeSet::from(["portal".to_string()]),
                    records: Vec::new(),
                },
            );
        };
        for &(tenant, n) in &f.messages {
            if everyone || logins.iter().any(|r| r.tenant_id == Some(tenant)) {
                reach(tenant, METADATA, n);
            }
        }
    }
    let lines: Vec<Line> = lines.into_values().collect();
    let tenants: BTreeSet<(i64, &str)> = lines
        .iter()
        .map(|l| (l.tenant_id, l.status.as_str()))
        .collect();
    let terminated = tenants
        .iter()
        .filter(|t| t.1 == "terminated before the window")
        .count();
    Report {
        from,
        to,
        principal: principal.map(str::to_string),
        role: role.map(str::to_string),
        tenants_active: tenants.len() - terminated,
        tenants_terminated: terminated,
        lines,
        unrecoverable: unrecoverable(from),
    }
}

/// The spool destroys a message's key when the message is finished, so whatever was
/// finished before the window opens for no one — not a thief of the disk, not the KEK's holder.
fn unrecoverable(from: i64) -> Vec<String> {
    vec![format!(
        "mail the spool finished before {from} (Unix time) — delivered, bounced, expired, deleted, or of a tenant terminated by then — is unrecoverable from the spool: each message's key was destroyed when it was finished"
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        id: i64,
        at: i64,
        principal: &str,
        action: &str,
        tenant: i64,
        outcome: &str,
    ) -> store::Record {
        store::Record {
            id,
            at,
            principal: principal.into(),
            role: "vault".into(),
            action: action.into(),
            tenant_id: Some(tenant),
            object: format!("Q{id}"),
            reason: String::new(),
            outcome: outcome.into(),
        }
    }

    #[test]
    fn lines_by_tenant_category_and_access_with_their_records() {
        let facts = Facts {
            records: vec![
                rec(1, 100, "cli:eve", "open-quarantine:read", 1, "ok"),
                rec(2, 101, "cli:eve", "open-quarantine:read", 1, "ok"),
                rec(3, 102, "cli:eve", "open-quarantine:read", 2, "ok"),
                rec(4, 103, "mx", "use-secret", 1, "ok"),
                rec(
                    5,
                    104,
                    "cli:eve",
                    "open-quarantine:read",
                    1,
                    "refused: throttled after a bulk-read alert",
                ),
                rec(6, 105, "cli:bob", "rotate-kek", 1, "ok"),
            ],
            tenants: vec![(1, "acme".into(), 0)],
            terminations: vec![(2, "beta".into(), 150, 9)],
            messages: vec![(1, 7), (2, 3)],
        };
        let r = scope(&facts, 90, 200, Some("cli:eve"), None);
        let got: Vec<_> = r
            .lines
            .iter()
            .map(|l| {
                (
                    l.tenant.as_str(),
                    l.status.as_str(),
                    l.access,
                    l.count,
                    l.records.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("acme", "active", "attempted (refused)", 1, vec![5]),
                ("acme", "active", "opened", 2, vec![1, 2]),
                ("beta", "terminated during the window", "opened", 1, vec![3]),
            ]
        );
        // Assuming mx was compromised: what it used and what passed through it.
        let r = scope(&facts, 90, 200, None, Some("mx"));
        let got: Vec<_> = r
            .lines
            .iter()
            .map(|l| (l.tenant_id, l.category, l.access, l.count))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, SECRETS, "used", 1),
                (1, TRANSIT, "reachable", 7),
                (2, TRANSIT, "reachable", 3)
            ]
        );
        // A tenant terminated before the window is counted apart.
        let r = scope(&facts, 160, 200, None, Some("mx"));
        assert_eq!((r.tenants_active, r.tenants_terminated), (1, 1));
        // Even a compromised mx could not have read mail finished before the window.
        assert!(
            r.unrecoverable[0].contains("finished before 160"),
            "{:?}",
            r.unrecoverable
        );
    }

    #[test]
    fn portal_acts_and_a_compromised_portal_have_their_lines() {
        let mut login = rec(1, 100, "user:bob@acme", "login", 1, "ok");
        login.role = "vault".into();
        let facts = Facts {
            records: vec![
                login,
                rec(
                    2,
                    101,
                    "user:bob@acme",
                    "login",
                    1,
                    "failed: wrong password",
                ),
                rec(3, 102, "user:admin@acme", "set-filter-policy", 1, "ok"),
                rec(4, 103, "user:admin@acme", "lockbox-approve", 1, "ok"),
                rec(5, 104, "user:bob@acme", "delete-quarantine", 1, "ok"),
            ],
            tenants: vec![(1, "acme".into(), 0)],
            terminations: vec![],
            messages: vec![(1, 7)],
        };
        let r = scope(&facts, 90, 200, None, None);
        let got: Vec<_> = r
            .lines
            .iter()
            .map(|l| (l.category, l.access, l.count))
            .collect();
        assert_eq!(
            got,
            vec![
                (SETTINGS, "changed", 1),
                (BODIES, "deleted", 1),
                (OPERATOR, "approved", 1),
                (ACCOUNTS, "attempted (refused)", 1),
                (ACCOUNTS, "logged in", 1),
            ]
        );
        // A compromised portal reached what bob's live session could: acme's metadata, no
        // password hash (it holds no store handle).
        let r = scope(&facts, 90, 200, Some("nobody"), Some("portal"));
        let got: Vec<_> = r.lines.iter().map(|l| (l.category, l.count)).collect();
        assert_eq!(got, vec![(METADATA, 7)]);
        // Nobody logged in: nothing.
        let r = scope(&facts, 150, 200, Some("nobody"), Some("portal"));
        assert!(r.lines.is_empty(), "{:?}", r.lines);
    }
}
