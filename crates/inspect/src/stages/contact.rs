//! First contact: the header From address has never before written to this tenant.
//!
//! Business e-mail compromise starts with a stranger posing as a known party; a first message
//! from an address is worth a little suspicion (and a lot together with impersonation or a
//! lookalike domain). The history holds 64-bit hashes of sender addresses per tenant, fed by
//! mail the gateway delivered (not by spam it refused), and loaded from the store at start.
//! A tenant's history must hold [`MIN_HISTORY`] senders before the rule fires, so a new tenant
//! is not flooded with "first contact" on day one.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use crate::bayes::token_hash;
use crate::evidence::{Evidence, Symbol};
use crate::view::MessageView;
use crate::{Envelope, SyncStage};

/// Senders a tenant's history must hold before first contacts are evidence.
pub const MIN_HISTORY: usize = 50;
/// Most senders remembered per tenant (a bound on memory; past it nothing new is added and
/// the rule stays quiet for unknown senders rather than firing on everyone).
pub const MAX_HISTORY: usize = 1_000_000;

/// The hash under which a sender address is remembered (lower-cased).
pub fn sender_hash(address: &str) -> u64 {
    token_hash(&format!("sender:{}", address.trim().to_ascii_lowercase()))
}

/// Which senders have written to which tenant.
#[derive(Default)]
pub struct SenderHistory {
    tenants: RwLock<HashMap<i64, HashSet<u64>>>,
}

impl SenderHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a known sender hash (loading from the store). False if it was known already.
    pub fn insert(&self, tenant: i64, hash: u64) -> bool {
        let mut t = self.tenants.write().expect("history lock poisoned");
        let set = t.entry(tenant).or_default();
        set.len() < MAX_HISTORY && set.insert(hash)
    }

    /// Records that `address` wrote to `tenant`; the hash if it is new (to be stored).
    pub fn record(&self, tenant: i64, address: &str) -> Option<u64> {
        let h = sender_hash(address);
        if self
            .tenants
            .read()
            .expect("history lock poisoned")
            .get(&tenant)
            .is_some_and(|s| s.contains(&h))
        {
            return None;
        }
        self.insert(tenant, h).then_some(h)
    }

    /// `Some(true)` if known, `Some(false)` if new, `None` when the tenant's history is too
    /// short (or full) to say.
    pub fn knows(&self, tenant: i64, address: &str) -> Option<bool> {
        let t = self.tenants.read().expect("history lock poisoned");
        let set = t.get(&tenant)?;
        if set.len() < MIN_HISTORY {
            return None;
        }
        let known = set.contains(&sender_hash(address));
        if !known && set.len() >= MAX_HISTORY {
            return None;
        }
        Some(known)
    }
}

/// The first-contact stage.
pub struct FirstContact {
    history: Arc<SenderHistory>,
}

impl FirstContact {
    /// A stage reading `history`.
    pub fn new(history: Arc<SenderHistory>) -> Self {
        Self { history }
    }
}

impl SyncStage for FirstContact {
    fn inbound_only(&self) -> bool {
        true
    }

    fn stage_name(&self) -> &'static str {
        "contact"
    }

    fn evidence(&self, msg: &MessageView<'_>, env: &Envelope) -> Vec<Evidence> {
        let (Some(tenant), Some(author)) = (env.tenant, msg.author()) else {
            return Vec::new();
        };
        match self.history.knows(tenant, &author) {
            Some(false) => vec![Evidence::new(
                Symbol::FirstContact,
                "first message from this sender address to the tenant",
            )],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::ViewLimits;

    fn fire(stage: &FirstContact, from: &str, tenant: i64) -> bool {
        let raw = format!("From: {from}\r\nSubject: s\r\n\r\nx\r\n");
        let (view, _) = MessageView::parse(raw.as_bytes(), &ViewLimits::default());
        let env = Envelope {
            tenant: Some(tenant),
            ..Default::default()
        };
        !stage.evidence(&view, &env).is_empty()
    }

    #[test]
    fn fires_for_strangers_once_the_history_is_long_enough() {
        let h = Arc::new(SenderHistory::new());
        let s = FirstContact::new(h.clone());
        assert!(!fire(&s, "new@x.example", 1), "no history: quiet");
        for i in 0..MIN_HISTORY {
            assert!(h.record(1, &format!("friend{i}@x.example")).is_some());
        }
        assert!(
            h.record(1, "FRIEND0@x.example").is_none(),
            "case-insensitive, known"
        );
        assert!(fire(&s, "stranger@x.example", 1));
        assert!(!fire(&s, "Friend <friend3@X.example>", 1));
        assert!(
            !fire(&s, "stranger@x.example", 2),
            "another tenant's history is its own"
        );
    }
}
