//! The stages.

pub mod auth;
pub mod content;
