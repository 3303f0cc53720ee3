//! The vault: Sekisho's key hierarchy and the only place that can open sealed content.
//!
//! - The **KEK** (key-encryption key) is a 32-byte key in a 0600 file that only the `vault`
//!   role reads ([`keys::SecretKey`]).
//! - Each tenant has an **age X25519 key pair**. The recipient (public key) is plain in the
//!   store so `mx` can seal to it; the identity (private key) is stored only wrapped with the
//!   KEK, bound by AAD to its tenant. A tenant may instead register its own recipient
//!   (customer-held key): then no identity is stored and nobody here can open its mail.
//! - [`seal`] needs only a recipient (any role); [`open`] needs the identity (vault only).
//! - The roles speak to it in the typed requests of the `proto` crate (`proto::vault`,
//!   `proto::acts`); [`server`] answers them.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod detect;
pub mod export;
pub mod server;

use std::io::{Read, Write};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use zeroize::Zeroizing;

pub use keys::SecretKey as Kek;
pub use keys::connector::{ConnectorSecret, SecretKind};

/// Vault errors, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The input is not valid.
    #[error("{0}")]
    Invalid(String),
    /// Sealing or opening failed.
    #[error("{0}")]
    Crypto(String),
}

/// A freshly generated tenant key pair: the public recipient and the wrapped identity.
pub struct NewTenantKey {
    /// age recipient (`age1…`).
    pub recipient: String,
    /// The identity wrapped with the KEK.
    pub wrapped: Vec<u8>,
}

fn wrap_aad(tenant: i64, recipient: &str) -> Vec<u8> {
    format!("sekisho tenant identity v1 tenant={tenant} recipient={recipient}").into_bytes()
}

/// Generates a tenant's key pair and wraps its identity with `kek`.
pub fn generate_tenant_key(kek: &Kek, tenant: i64) -> NewTenantKey {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let secret = identity.to_string();
    let wrapped = kek.seal(
        &wrap_aad(tenant, &recipient),
        secret.expose_secret().as_bytes(),
    );
    NewTenantKey { recipient, wrapped }
}

/// Unwraps a tenant's identity (vault only: needs the KEK). The AAD binds it to the tenant and
/// recipient, so a wrapped key copied to another tenant's row does not open.
pub fn unwrap_identity(
    kek: &Kek,
    tenant: i64,
    recipient: &str,
    wrapped: &[u8],
) -> Result<age::x25519::Identity, VaultError> {
    let plain = kek
        .open(&wrap_aad(tenant, recipient), wrapped)
        .ok_or_else(|| {
            VaultError::Crypto(
                "the tenant key does not open with this KEK (wrong KEK or altered key)".into(),
            )
        })?;
    let text = std::str::from_utf8(&plain)
        .map_err(|_| VaultError::Crypto("unwrapped tenant key is not text".into()))?;
    age::x25519::Identity::from_str(text)
        .map_err(|e| VaultError::Crypto(format!("unwrapped tenant key: {e}")))
}

/// Re-wraps a tenant identity from `old` to `new` KEK (rotation).
pub fn rewrap(
    old: &Kek,
    new: &Kek,
    tenant: i64,
    recipient: &str,
    wrapped: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let identity = unwrap_identity(old, tenant, recipient, wrapped)?;
    Ok(new.seal(
        &wrap_aad(tenant, recipient),
        identity.to_string().expose_secret().as_bytes(),
    ))
}

fn secret_aad(tenant: i64, kind: SecretKind) -> Vec<u8> {
    format!("sekisho connector secret v1 tenant={tenant} kind={kind}").into_bytes()
}

/// Seals a connector secret with the KEK, bound to its tenant and kind.
pub fn seal_secret(kek: &Kek, tenant: i64, secret: &ConnectorSecret) -> Vec<u8> {
    kek.seal(&secret_aad(tenant, secret.kind()), &secret.to_bytes())
}

/// Opens a sealed connector secret (vault only). A sealed value copied to another tenant's or
/// kind's row does not open.
pub fn open_secret(
    kek: &Kek,
    tenant: i64,
    kind: SecretKind,
    sealed: &[u8],
) -> Result<ConnectorSecret, VaultError> {
    let plain = kek.open(&secret_aad(tenant, kind), sealed).ok_or_else(|| {
        VaultError::Crypto(format!(
            "the {kind} secret does not open with this KEK (wrong KEK or altered value)"
        ))
    })?;
    let secret = ConnectorSecret::from_bytes(&plain).map_err(VaultError::Crypto)?;
    if secret.kind() != kind {
        return Err(VaultError::Crypto(format!(
            "the sealed value is not a {kind} secret"
        )));
    }
    Ok(secret)
}

fn dkim_aad(k: &store::SealedDkimKey) -> Vec<u8> {
    format!(
        "sekisho dkim key v1 tenant={} domain={} selector={} algorithm={}",
        k.tenant_id, k.domain, k.selector, k.algorithm
    )
    .into_bytes()
}

/// Seals a DKIM private key (PKCS#8) with the KEK, bound to its tenant, domain, selector and
/// algorithm: moved to another row, it does not open.
pub fn seal_dkim(kek: &Kek, k: &store::SealedDkimKey, pkcs8: &[u8]) -> Vec<u8> {
    kek.seal(&dkim_aad(k), pkcs8)
}

/// Opens a sealed DKIM key (vault only).
pub fn open_dkim(kek: &Kek, k: &store::SealedDkimKey) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    kek.open(&dkim_aad(k), &k.sealed).ok_or_else(|| {
        VaultError::Crypto(format!(
            "the DKIM key {} of {} does not open with this KEK (wrong KEK or altered value)",
            k.selector, k.domain
        ))
    })
}

/// Re-seals a connector secret from `old` to `new` KEK (rotation).
pub fn rewrap_secret(
    old: &Kek,
    new: &Kek,
    tenant: i64,
    kind: SecretKind,
    sealed: &[u8],
) -> Result<Vec<u8>, VaultError> {
    Ok(seal_secret(
        new,
        tenant,
        &open_secret(old, tenant, kind, sealed)?,
    ))
}

fn audit_aad(key_id: &str) -> Vec<u8> {
    format!("sekisho audit signing key v1 key_id={key_id}").into_bytes()
}

/// A new audit checkpoint signing key, wrapped with the KEK.
pub fn generate_audit_key(kek: &Kek) -> (keys::audit::Signer, store::AuditKey) {
    let (signer, pkcs8) = keys::audit::Signer::generate();
    let key_id = signer.key_id();
    let wrapped = kek.seal(&audit_aad(&key_id), &pkcs8);
    let stored = store::AuditKey {
        public_key: signer.public_key(),
        key_id,
        wrapped,
    };
    (signer, stored)
}

/// Unwraps an audit signing key (vault only).
pub fn unwrap_audit_key(kek: &Kek, k: &store::AuditKey) -> Result<keys::audit::Signer, VaultError> {
    let pkcs8 = kek.open(&audit_aad(&k.key_id), &k.wrapped).ok_or_else(|| {
        VaultError::Crypto(format!(
            "audit key {} does not open with this KEK (wrong KEK or altered key)",
            k.key_id
        ))
    })?;
    let signer = keys::audit::Signer::from_pkcs8(&pkcs8).ok_or_else(|| {
        VaultError::Crypto(format!("audit key {} is not an Ed25519 key", k.key_id))
    })?;
    if signer.public_key() != k.public_key {
        return Err(VaultError::Crypto(format!(
            "audit key {} does not match its public key",
            k.key_id
        )));
    }
    Ok(signer)
}

/// Re-wraps an audit signing key from `old` to `new` KEK (rotation).
pub fn rewrap_audit_key(old: &Kek, new: &Kek, k: &store::AuditKey) -> Result<Vec<u8>, VaultError> {
    let pkcs8 = old.open(&audit_aad(&k.key_id), &k.wrapped).ok_or_else(|| {
        VaultError::Crypto(format!(
            "audit key {} does not open with the old KEK",
            k.key_id
        ))
    })?;
    Ok(new.seal(&audit_aad(&k.key_id), &pkcs8))
}

fn spool_aad(node: &str) -> Vec<u8> {
    format!("sekisho spool key v1 node={node}").into_bytes()
}

/// A new spool key for `node`, and its copy wrapped with the KEK (bound to the node).
pub fn generate_spool_key(kek: &Kek, node: &str) -> (keys::SecretKey, Vec<u8>) {
    let key = keys::SecretKey::generate();
    let wrapped = kek.wrap(&spool_aad(node), &key);
    (key, wrapped)
}

/// Unwraps `node`'s spool key (vault only). A wrapped key copied to another node's row does
/// not open.
pub fn unwrap_spool_key(
    kek: &Kek,
    node: &str,
    wrapped: &[u8],
) -> Result<keys::SecretKey, VaultError> {
    kek.unwrap_key(&spool_aad(node), wrapped).ok_or_else(|| {
        VaultError::Crypto(format!(
            "the spool key of node {node} does not open with this KEK (wrong KEK or altered key)"
        ))
    })
}

/// Re-wraps a spool key from `old` to `new` KEK (rotation).
pub fn rewrap_spool_key(
    old: &Kek,
    new: &Kek,
    node: &str,
    wrapped: &[u8],
) -> Result<Vec<u8>, VaultError> {
    Ok(new.wrap(&spool_aad(node), &unwrap_spool_key(old, node, wrapped)?))
}

/// Checks that `recipient` is an age X25519 recipient (`age1…`).
pub fn parse_recipient(recipient: &str) -> Result<age::x25519::Recipient, VaultError> {
    age::x25519::Recipient::from_str(recipient.trim()).map_err(|e| {
        VaultError::Invalid(format!("{recipient:?} is not an age X25519 recipient: {e}"))
    })
}

/// Seals `plaintext` to `recipient` in the standard age format (binary), readable by
/// `age --decrypt -i identity`.
pub fn seal(recipient: &str, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
    let r = parse_recipient(recipient)?;
    let encryptor = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
        .map_err(|e| VaultError::Crypto(format!("age: {e}")))?;
    let mut out = Vec::with_capacity(plaintext.len() + 256);
    let mut w = encryptor
        .wrap_output(&mut out)
        .map_err(|e| VaultError::Crypto(format!("age: {e}")))?;
    w.write_all(plaintext)
        .and_then(|()| w.finish().map(|_| ()))
        .map_err(|e| VaultError::Crypto(format!("age: {e}")))?;
    Ok(out)
}

/// Opens an age-sealed object with a tenant identity.
pub fn open(
    identity: &age::x25519::Identity,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let d = age::Decryptor::new(sealed)
        .map_err(|e| VaultError::Crypto(format!("sealed object: {e}")))?;
    let mut r = d
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| VaultError::Crypto(format!("sealed object: {e}")))?;
    let mut out = Zeroizing::new(Vec::with_capacity(sealed.len()));
    r.read_to_end(&mut out)
        .map_err(|e| VaultError::Crypto(format!("sealed object: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_keys_seal_open_and_stay_bound_to_their_tenant() {
        let kek = Kek::generate();
        let k = generate_tenant_key(&kek, 7);
        assert!(k.recipient.starts_with("age1"));
        assert!(
            !String::from_utf8_lossy(&k.wrapped).contains("AGE-SECRET-KEY"),
            "the identity is never stored in the clear"
        );
        let sealed = seal(&k.recipient, b"Subject: secret plans\r\n\r\nbody").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        let id = unwrap_identity(&kek, 7, &k.recipient, &k.wrapped).unwrap();
        assert_eq!(
            &open(&id, &sealed).unwrap()[..],
            b"Subject: secret plans\r\n\r\nbody"
        );
        // Another tenant's row, another KEK, or an altered wrap: no identity.
        assert!(unwrap_identity(&kek, 8, &k.recipient, &k.wrapped).is_err());
        assert!(unwrap_identity(&Kek::generate(), 7, &k.recipient, &k.wrapped).is_err());
        let mut bad = k.wrapped.clone();
        bad[20] ^= 1;
        assert!(unwrap_identity(&kek, 7, &k.recipient, &bad).is_err());
        // Another tenant's identity cannot open it.
        let other = generate_tenant_key(&kek, 8);
        let other_id = unwrap_identity(&kek, 8, &other.recipient, &other.wrapped).unwrap();
        assert!(open(&other_id, &sealed).is_err());
    }

    #[test]
    fn rotation_rewraps_under_the_new_kek() {
        let (old, new) = (Kek::generate(), Kek::generate());
        let k = generate_tenant_key(&old, 3);
        let rewrapped = rewrap(&old, &new, 3, &k.recipient, &k.wrapped).unwrap();
        let sealed = seal(&k.recipient, b"x").unwrap();
        let id = unwrap_identity(&new, 3, &k.recipient, &rewrapped).unwrap();
        assert_eq!(&open(&id, &sealed).unwrap()[..], b"x");
        assert!(unwrap_identity(&old, 3, &k.recipient, &rewrapped).is_err());
    }

    #[test]
    fn secrets_are_bound_to_tenant_and_kind_and_rewrap() {
        let (kek, new) = (Kek::generate(), Kek::generate());
        let secret = ConnectorSecret::SmtpAuth {
            username: "relay".into(),
            password: "pa55-unique-word".into(),
        };
        let sealed = seal_secret(&kek, 4, &secret);
        assert!(!sealed.windows(4).any(|w| w == b"pa55"));
        assert_eq!(
            open_secret(&kek, 4, SecretKind::SmtpAuth, &sealed).unwrap(),
            secret
        );
        assert!(open_secret(&kek, 5, SecretKind::SmtpAuth, &sealed).is_err());
        assert!(open_secret(&kek, 4, SecretKind::ClientCert, &sealed).is_err());
        let moved = rewrap_secret(&kek, &new, 4, SecretKind::SmtpAuth, &sealed).unwrap();
        assert!(open_secret(&kek, 4, SecretKind::SmtpAuth, &moved).is_err());
        assert_eq!(
            open_secret(&new, 4, SecretKind::SmtpAuth, &moved).unwrap(),
            secret
        );
    }

    #[test]
    fn recipients_are_checked() {
        assert!(parse_recipient("age1notakey").is_err());
        assert!(seal("ssh-ed25519 AAAA", b"x").is_err());
    }
}
