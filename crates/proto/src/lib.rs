//! The messages Sekisho's processes send each other, and the nouns they are made of.
//!
//! Every socket between two Sekisho processes carries types from this crate, so both ends
//! are compiled from one definition (no hand-written JSON twins) and a refusal, a role or a
//! severity is an enum on both sides (nobody branches on error text).
//!
//! # Layout
//! - [`nouns`]: the domain's typed nouns — [`TenantId`], [`QueueId`], [`Role`] (people),
//!   [`Process`] (Sekisho's own roles), [`Severity`], [`Scope`].
//! - [`refusal`]: why a request was refused ([`Refusal`]), which the HTTP face maps to a status.
//! - [`frame`]: length-prefixed JSON header + binary payload, with limits.
//! - [`vault`]: what roles and the CLI ask the vault ([`vault::Request`]) and what it answers.
//! - [`acts`]: what a portal user asks through the vault — every read and every
//!   trust-relevant write of the portal is one typed act, checked by the vault.
//! - [`client`]: the vault's client.
//! - [`mx`]: mx's admin socket: requests, answers and client.
//! - [`route`]: where a tenant's mail goes (`smtp://…`, `maildir://…`), parsed once.
//! - [`verdict`]: a verdict's symbols, which of them mark malware, and dates for people.
//!
//! # Security
//! This crate holds no key, opens no store and reads no file. It is the only Sekisho crate
//! the portal depends on (besides web crates), which a test over `cargo metadata` checks: the
//! web-facing process can only ask, in these words, and the vault decides.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod acts;
pub mod client;
pub mod frame;
pub mod mx;
pub mod nouns;
pub mod refusal;
pub mod route;
pub mod symbols;
pub mod vault;
pub mod verdict;

pub use nouns::{
    AlertState, Process, QueueId, RecipientPolicy, Role, Scope, SecretKind, SenderAction,
    SenderScope, Severity, TenantId,
};
pub use refusal::{Refusal, Refused};

/// Compares two secrets in time independent of where they differ (CSRF tokens, role
/// tokens): every byte is looked at, whatever the first difference.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn ct_eq_compares_whole_values() {
        assert!(super::ct_eq(b"abc", b"abc"));
        assert!(!super::ct_eq(b"abc", b"abd"));
        assert!(!super::ct_eq(b"abc", b"ab"));
        assert!(super::ct_eq(b"", b""));
    }
}
