//! The stages.

pub mod auth;
pub mod bayes;
pub mod contact;
pub mod content;
pub mod dnsbl;
pub mod headers;
pub mod malware;
pub mod phish;
