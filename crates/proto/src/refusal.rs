//! Why a request was refused: a kind callers branch on, and words for a person.

use serde::{Deserialize, Serialize};

/// The kind of a refusal. The HTTP face maps each to one status code; nobody reads the text
/// to decide what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    /// No live session or token: log in (again). HTTP 401.
    Unauthenticated,
    /// This role, scope or person may not do this. HTTP 403.
    #[default]
    Forbidden,
    /// Allowed, but only after the second factor was confirmed again (step-up). HTTP 403.
    StepUpNeeded,
    /// A second factor (code, passkey) did not check out. HTTP 401.
    WrongFactor,
    /// No such object, or not one the caller may know of. HTTP 404.
    NotFound,
    /// The request itself is not valid (a value out of range, a bad name). HTTP 400.
    Invalid,
    /// It conflicts with the current state (taken, decided already). HTTP 409.
    Conflict,
    /// The principal is throttled after an alert. HTTP 403.
    Throttled,
    /// A role process asked what only the local operator may (recorded as role-overreach).
    NotForRoles,
}

/// A refusal with its message for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// What kind.
    pub kind: Refusal,
    /// What to tell the person (never a secret).
    pub message: String,
}

impl Refused {
    /// A refusal of `kind`.
    pub fn new(kind: Refusal, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Not this role's or person's to do.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Refusal::Forbidden, message)
    }

    /// No such object (for this caller).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Refusal::NotFound, message)
    }

    /// Not a valid request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Refusal::Invalid, message)
    }

    /// Conflicts with the current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(Refusal::Conflict, message)
    }

    /// Needs a step-up first.
    pub fn step_up(message: impl Into<String>) -> Self {
        Self::new(Refusal::StepUpNeeded, message)
    }

    /// The session has ended.
    pub fn unauthenticated() -> Self {
        Self::new(
            Refusal::Unauthenticated,
            "the session has ended: log in again",
        )
    }
}
