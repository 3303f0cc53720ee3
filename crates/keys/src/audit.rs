//! The audit log's cryptography: a SHA-256 hash chain over records and Ed25519-signed
//! checkpoints.
//!
//! `hash(n) = SHA-256("sekisho audit record v1\0" ‖ hash(n-1) ‖ canonical(n))`, with
//! `hash(0)` = 32 zero bytes; `canonical(n)` is the record's fields as compact JSON in a fixed
//! order, including a random per-record salt (so the hash of a record, shown to a tenant who
//! may not see the record itself, reveals nothing about it). A checkpoint signs
//! `"sekisho audit checkpoint v1\0" ‖ record_id (8 bytes BE) ‖ at (8 bytes BE) ‖ hash`.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use zeroize::Zeroizing;

/// The `prev_hash` of the first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// The chain hash of a record.
pub fn chain_hash(prev: &[u8], canonical: &[u8]) -> [u8; 32] {
    let mut input = Vec::with_capacity(24 + prev.len() + canonical.len());
    input.extend_from_slice(b"sekisho audit record v1\0");
    input.extend_from_slice(prev);
    input.extend_from_slice(canonical);
    digest(&SHA256, &input)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// A random salt for a new record.
pub fn salt() -> [u8; 16] {
    let mut s = [0u8; 16];
    aws_lc_rs::rand::fill(&mut s).expect("system random generator");
    s
}

/// What a checkpoint signs.
pub fn checkpoint_message(record_id: i64, at: i64, hash: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(28 + 16 + hash.len());
    m.extend_from_slice(b"sekisho audit checkpoint v1\0");
    m.extend_from_slice(&record_id.to_be_bytes());
    m.extend_from_slice(&at.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

/// The id of a public key: the first 8 bytes of its SHA-256, hex.
pub fn key_id(public_key: &[u8]) -> String {
    hex::encode(&digest(&SHA256, public_key).as_ref()[..8])
}

/// True if `signature` is `public_key`'s Ed25519 signature of `message`.
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(message, signature)
        .is_ok()
}

/// The vault's checkpoint signing key.
pub struct Signer {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.key_id())
    }
}

impl Signer {
    /// A fresh key and its PKCS#8 encoding (to be stored wrapped).
    pub fn generate() -> (Self, Zeroizing<Vec<u8>>) {
        let pair = Ed25519KeyPair::generate().expect("Ed25519 key generation");
        let pkcs8 = Zeroizing::new(
            pair.to_pkcs8()
                .expect("Ed25519 PKCS#8 encoding")
                .as_ref()
                .to_vec(),
        );
        (Self { pair }, pkcs8)
    }

    /// A key from its PKCS#8 encoding.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Option<Self> {
        Ed25519KeyPair::from_pkcs8(pkcs8)
            .ok()
            .map(|pair| Self { pair })
    }

    /// The public key (32 bytes).
    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// Its id.
    pub fn key_id(&self) -> String {
        key_id(self.pair.public_key().as_ref())
    }

    /// Signs a checkpoint message.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_and_checkpoints() {
        let h1 = chain_hash(&GENESIS, br#"{"id":1}"#);
        let h2 = chain_hash(&h1, br#"{"id":2}"#);
        assert_ne!(h1, h2);
        assert_eq!(h1, chain_hash(&GENESIS, br#"{"id":1}"#), "deterministic");
        assert_ne!(
            h2,
            chain_hash(&GENESIS, br#"{"id":2}"#),
            "bound to its predecessor"
        );
        let (signer, pkcs8) = Signer::generate();
        let again = Signer::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(signer.public_key(), again.public_key());
        let msg = checkpoint_message(2, 1_700_000_000, &h2);
        let sig = signer.sign(&msg);
        assert!(verify(&signer.public_key(), &msg, &sig));
        assert!(!verify(
            &signer.public_key(),
            &checkpoint_message(2, 1_700_000_000, &h1),
            &sig
        ));
        let (other, _) = Signer::generate();
        assert!(!verify(&other.public_key(), &msg, &sig));
        assert_eq!(signer.key_id().len(), 16);
        assert_ne!(salt(), salt());
    }
}
