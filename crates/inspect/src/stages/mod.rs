//! The stages.

pub mod content;
