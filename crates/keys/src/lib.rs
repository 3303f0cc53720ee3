//! Symmetric sealing keys: the spool's node key and the vault's key-encryption key (KEK).
//!
//! Each sealed payload gets a fresh random 16-byte salt; HKDF-SHA256(key, salt) yields a
//! one-time AES-256-GCM key, so the all-zero nonce is never reused under a key and there is no
//! limit on the number of payloads sealed with one key. Callers bind every payload to its
//! context with the AAD (spool frame position, tenant and key id, …).
#![forbid(unsafe_code)]

pub mod audit;
pub mod connector;
pub mod dkim;
pub mod password;
pub mod totp;

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::{hkdf, rand};
use zeroize::Zeroizing;

/// Bytes of salt in front of every sealed payload.
pub const SALT_LEN: usize = 16;
/// Bytes of authentication tag after every sealed payload.
pub const TAG_LEN: usize = 16;
/// HKDF info (kept from the spool's first format, so existing spools stay readable).
const INFO: &[u8] = b"sekisho spool frame v1";

/// A 32-byte sealing key, zeroized on drop.
pub struct SecretKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// A key from raw bytes (tests and key rotation).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::fill(&mut k[..]).expect("system random generator");
        Self(k)
    }

    /// Loads the key file at `path`, or creates it (mode 0600, hex) if it does not exist.
    /// A key file readable by group or others is refused.
    pub fn load_or_create(path: &Path) -> io::Result<Self> {
        match fs::File::open(path) {
            Ok(mut f) => {
                let mode = f.metadata()?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(io::Error::other(format!(
                        "{} is accessible by group or others (mode {:o}); chmod 600 it",
                        path.display(),
                        mode & 0o777
                    )));
                }
                let mut text = Zeroizing::new(String::new());
                f.read_to_string(&mut text)?;
                let mut k = Zeroizing::new([0u8; 32]);
                hex::decode_to_slice(text.trim(), &mut k[..]).map_err(|_| {
                    io::Error::other(format!("{} is not a 32-byte hex key", path.display()))
                })?;
                Ok(Self(k))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir)?;
                    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
                }
                let key = Self::generate();
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)?;
                let text = Zeroizing::new(hex::encode(&key.0[..]));
                f.write_all(text.as_bytes())?;
                f.sync_all()?;
                Ok(key)
            }
            Err(e) => Err(e),
        }
    }

    /// A key from 64 hex digits (as [`SecretKey::to_hex`] writes it); `None` otherwise.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut k = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), &mut k[..]).ok()?;
        Some(Self(k))
    }

    /// The key as hex (for handing a fresh random token to a child process), zeroized on drop.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(&self.0[..]))
    }

    fn frame_key(&self, salt: &[u8]) -> LessSafeKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&self.0[..]);
        let okm = prk
            .expand(&[INFO], &AES_256_GCM)
            .expect("HKDF output length is valid for AES-256");
        LessSafeKey::new(UnboundKey::from(okm))
    }

    /// A key derived from this one for one purpose (`label`): HMAC-SHA256(key, label).
    /// Knowing the derived key reveals nothing of this one.
    pub fn derive(&self, label: &str) -> SecretKey {
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.0[..]),
            label.as_bytes(),
        );
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        SecretKey::from_bytes(out)
    }

    /// A key for one purpose (`label`) made from other secret material (HMAC-SHA256 keyed
    /// with the material): whoever lacks the material cannot compute it.
    pub fn from_material(material: &[u8], label: &str) -> SecretKey {
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, material),
            label.as_bytes(),
        );
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        SecretKey::from_bytes(out)
    }

    /// HMAC-SHA256 of `data` under this key (tokens that only the key holder can make).
    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.0[..]),
            data,
        );
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Seals `plaintext` bound to `aad`; returns `salt || ciphertext || tag`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(SALT_LEN + plaintext.len() + TAG_LEN);
        let mut salt = [0u8; SALT_LEN];
        rand::fill(&mut salt).expect("system random generator");
        out.extend_from_slice(&salt);
        let mut body = plaintext.to_vec();
        self.frame_key(&salt)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key([0u8; 12]),
                Aad::from(aad),
                &mut body,
            )
            .expect("AES-GCM seal cannot fail for in-range lengths");
        out.extend_from_slice(&body);
        out
    }

    /// Opens a payload made by [`SecretKey::seal`]; `None` if it was altered or the key differs.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < SALT_LEN + TAG_LEN {
            return None;
        }
        let (salt, ct) = sealed.split_at(SALT_LEN);
        let mut buf = Zeroizing::new(ct.to_vec());
        let len = self
            .frame_key(salt)
            .open_in_place(
                Nonce::assume_unique_for_key([0u8; 12]),
                Aad::from(aad),
                &mut buf,
            )
            .ok()?
            .len();
        buf.truncate(len);
        Some(buf)
    }
}

impl SecretKey {
    /// Bytes of a key wrapped by [`SecretKey::wrap`].
    pub const WRAPPED_LEN: usize = SALT_LEN + 32 + TAG_LEN;

    /// Wraps `key` under this one, bound to `aad`; [`SecretKey::WRAPPED_LEN`] bytes.
    pub fn wrap(&self, aad: &[u8], key: &SecretKey) -> Vec<u8> {
        self.seal(aad, &key.0[..])
    }

    /// Unwraps a key made by [`SecretKey::wrap`]; `None` if it was altered, bound to another
    /// `aad`, or wrapped under another key.
    pub fn unwrap_key(&self, aad: &[u8], wrapped: &[u8]) -> Option<SecretKey> {
        let plain = self.open(aad, wrapped)?;
        let bytes: [u8; 32] = plain[..].try_into().ok()?;
        Some(SecretKey::from_bytes(bytes))
    }
}

/// Compares two secrets in time independent of where they differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    #[allow(deprecated)]
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let key = SecretKey::generate();
        let sealed = key.seal(b"aad", b"secret body");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(&key.open(b"aad", &sealed).unwrap()[..], b"secret body");
        assert!(key.open(b"other aad", &sealed).is_none());
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(key.open(b"aad", &bad).is_none());
        assert!(SecretKey::generate().open(b"aad", &sealed).is_none());
        // A wrapped key opens only under its wrapping key and its AAD.
        let dek = SecretKey::generate();
        let wrapped = key.wrap(b"slot 1", &dek);
        assert_eq!(wrapped.len(), SecretKey::WRAPPED_LEN);
        let back = key.unwrap_key(b"slot 1", &wrapped).unwrap();
        assert_eq!(&back.open(b"", &dek.seal(b"", b"m")).unwrap()[..], b"m");
        assert!(key.unwrap_key(b"slot 2", &wrapped).is_none());
        assert!(dek.unwrap_key(b"slot 1", &wrapped).is_none());
        // Two seals of the same text differ (fresh salt).
        assert_ne!(key.seal(b"aad", b"x"), key.seal(b"aad", b"x"));
    }

    #[test]
    fn key_file_is_created_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/spool.key");
        let a = SecretKey::load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = SecretKey::load_or_create(&path).unwrap();
        assert_eq!(&b.open(b"", &a.seal(b"", b"m")).unwrap()[..], b"m");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = SecretKey::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"));
    }
}
