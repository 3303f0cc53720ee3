//! Passwords of people (portal users, later SMTP AUTH users): Argon2id, never stored or
//! compared in the clear.
//!
//! Stored as PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) with a fresh random
//! salt each; parameters travel with the hash, so raising them later only needs
//! [`needs_rehash`] at the next successful login. Verification of an unknown account runs
//! [`verify_nothing`], which costs the same as a real check, so response times do not tell
//! which accounts exist.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// Shortest accepted password (NIST SP 800-63B asks for at least 8; we ask for more).
pub const MIN_LEN: usize = 12;
/// Longest accepted password (bounds the hashing work an attacker can ask for).
pub const MAX_LEN: usize = proto::vault::MAX_PASSWORD;

/// Password errors, worded for the person choosing one.
#[derive(Debug, PartialEq, Eq)]
pub enum PasswordError {
    /// Too short or too long.
    Length,
    /// The hash could not be made.
    Hash(String),
}

impl std::fmt::Display for PasswordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordError::Length => write!(
                f,
                "a password must be {MIN_LEN} to {MAX_LEN} characters long"
            ),
            PasswordError::Hash(e) => write!(f, "password hashing failed: {e}"),
        }
    }
}

impl std::error::Error for PasswordError {}

fn hasher() -> Argon2<'static> {
    // Argon2id v1.3, m = 19 MiB, t = 2, p = 1: OWASP's recommended minimum.
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// Checks the length rules.
pub fn acceptable(password: &str) -> Result<(), PasswordError> {
    let n = password.chars().count();
    if (MIN_LEN..=MAX_LEN).contains(&n) {
        Ok(())
    } else {
        Err(PasswordError::Length)
    }
}

/// Hashes an acceptable password to a PHC string with a fresh salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    acceptable(password)?;
    hasher()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// True if `password` matches the stored PHC string (constant-time comparison inside).
/// A malformed stored hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_LEN * 4 {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(h) => hasher().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// Spends the time of one verification and returns false: for accounts that do not exist.
pub fn verify_nothing(password: &str) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| {
        hasher()
            .hash_password(b"sekisho timing equaliser")
            .map(|h| h.to_string())
            .unwrap_or_default()
    });
    let _ = verify(password, dummy);
    false
}

/// True if the stored hash is not Argon2id with at least today's parameters (rehash it at
/// the next successful login).
pub fn needs_rehash(phc: &str) -> bool {
    let Ok(h) = PasswordHash::new(phc) else {
        return true;
    };
    let want = Params::default();
    let param = |name: &str| h.params.get_decimal(name).unwrap_or(0);
    h.algorithm.as_str() != "argon2id"
        || param("m") < want.m_cost()
        || param("t") < want.t_cost()
        || param("p") < want.p_cost()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash("correct horse battery").unwrap();
        let b = hash("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "every hash has its own salt");
        assert!(!a.contains("correct"));
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse batterY", &a));
        assert!(!verify("correct horse battery", "not a hash"));
        assert!(!needs_rehash(&a));
        assert!(!verify_nothing("correct horse battery"));
    }

    #[test]
    fn length_limits_and_weak_parameters() {
        assert_eq!(hash("short"), Err(PasswordError::Length));
        assert_eq!(hash(&"x".repeat(MAX_LEN + 1)), Err(PasswordError::Length));
        assert!(
            hash(&"パスワード".repeat(3)).is_ok(),
            "characters, not bytes, count"
        );
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"correct horse battery")
        .unwrap()
        .to_string();
        assert!(
            verify("correct horse battery", &weak),
            "old parameters still verify"
        );
        assert!(needs_rehash(&weak));
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::default())
            .hash_password(b"correct horse battery")
            .unwrap()
            .to_string();
        assert!(needs_rehash(&argon2i));
        assert!(needs_rehash("garbage"));
    }
}
