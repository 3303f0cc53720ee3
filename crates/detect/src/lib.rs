//! Detection that runs inside `mx` and the reports built from the audit log: the
//! outbound-burst guard (`outbound`), the alert sinks that carry alerts off the node
//! (`sinks`), and the incident-scope report (`scope`). It holds no keys: what it reads comes
//! from the store, what it sends goes out through egress.

#![forbid(unsafe_code)]

pub mod outbound;
pub mod scope;
pub mod sinks;
