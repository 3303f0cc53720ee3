//! The stages.

pub mod auth;
pub mod content;
pub mod malware;
pub mod phish;
