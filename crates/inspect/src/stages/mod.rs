//! The stages.

pub mod auth;
pub mod content;
pub mod phish;
