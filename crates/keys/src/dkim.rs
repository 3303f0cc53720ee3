//! DKIM signing keys (RFC 6376 RSA-SHA256, RFC 8463 Ed25519-SHA256): made and used only in
//! the vault. mx sends the SHA-256 digest of what it signs and gets the signature back; the
//! private key never leaves the vault, sealed under the KEK at rest.

use aws_lc_rs::digest::{Digest, SHA256};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use proto::nouns::DkimAlgorithm;
use zeroize::Zeroizing;

/// A new key: its PKCS#8 private half (to be sealed at once) and its public half as the
/// DNS record's `p=` bytes.
pub struct NewKey {
    pub pkcs8: Zeroizing<Vec<u8>>,
    pub public: Vec<u8>,
}

/// Makes a key of `algorithm` (RSA keys are 2048 bits).
pub fn generate(algorithm: DkimAlgorithm) -> Result<NewKey, String> {
    let fail = |what: &str| format!("cannot make a DKIM {algorithm} key: {what}");
    match algorithm {
        DkimAlgorithm::Rsa => {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| fail("generate"))?;
            let der: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| fail("PKCS#8"))?;
            let public: PublicKeyX509Der<'static> =
                pair.public_key().as_der().map_err(|_| fail("public key"))?;
            Ok(NewKey {
                pkcs8: Zeroizing::new(der.as_ref().to_vec()),
                public: public.as_ref().to_vec(),
            })
        }
        DkimAlgorithm::Ed25519 => {
            let pair = Ed25519KeyPair::generate().map_err(|_| fail("generate"))?;
            let der: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| fail("PKCS#8"))?;
            Ok(NewKey {
                pkcs8: Zeroizing::new(der.as_ref().to_vec()),
                public: pair.public_key().as_ref().to_vec(),
            })
        }
    }
}

/// The TXT value to publish at `<selector>._domainkey.<domain>`.
pub fn dns_value(algorithm: DkimAlgorithm, public: &[u8]) -> String {
    let p = base64::engine::general_purpose::STANDARD.encode(public);
    format!("v=DKIM1; k={}; p={p}", algorithm.as_str())
}

/// A key opened for signing: parsed once (an RSA key's import checks the key, which costs
/// more than a signature), then used for many digests.
pub enum Signer {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rsa(RsaKeyPair),
    /// Ed25519 over the digest (RFC 8463).
    Ed25519(Ed25519KeyPair),
}

impl Signer {
    /// Opens a PKCS#8 private key of `algorithm`.
    pub fn from_pkcs8(algorithm: DkimAlgorithm, pkcs8: &[u8]) -> Result<Self, String> {
        match algorithm {
            DkimAlgorithm::Rsa => RsaKeyPair::from_pkcs8(pkcs8)
                .map(Signer::Rsa)
                .map_err(|e| format!("RSA key: {e}")),
            DkimAlgorithm::Ed25519 => Ed25519KeyPair::from_pkcs8(pkcs8)
                .map(Signer::Ed25519)
                .map_err(|e| format!("Ed25519 key: {e}")),
        }
    }

    /// Signs the SHA-256 `digest` of a message's canonical signed headers: RSASSA-PKCS1-v1_5
    /// for RSA, and for Ed25519 the digest itself as the signed message (RFC 8463 §3).
    pub fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Signer::Rsa(pair) => {
                let digest = Digest::import_less_safe(digest, &SHA256)
                    .map_err(|_| "the digest is not SHA-256".to_string())?;
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign_digest(&RSA_PKCS1_SHA256, &digest, &mut sig)
                    .map_err(|_| "RSA signing failed".to_string())?;
                Ok(sig)
            }
            Signer::Ed25519(pair) => {
                if digest.len() != 32 {
                    return Err("the digest is not SHA-256".into());
                }
                Ok(pair.sign(digest).as_ref().to_vec())
            }
        }
    }
}

/// Opens `pkcs8` and signs one digest (see [`Signer`]).
pub fn sign_digest(
    algorithm: DkimAlgorithm,
    pkcs8: &[u8],
    digest: &[u8],
) -> Result<Vec<u8>, String> {
    Signer::from_pkcs8(algorithm, pkcs8)?.sign_digest(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ED25519, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    #[test]
    fn each_algorithm_signs_what_its_public_half_verifies_and_nothing_else() {
        let data = b"from:a@example.com\r\ndkim-signature:v=1; b=";
        let digest = aws_lc_rs::digest::digest(&SHA256, data);
        for alg in DkimAlgorithm::ALL.iter().copied() {
            let key = generate(alg).unwrap();
            let sig = sign_digest(alg, &key.pkcs8, digest.as_ref()).unwrap();
            let (verify, signed): (_, &[u8]) = match alg {
                DkimAlgorithm::Rsa => (
                    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, rsa_pkcs1(&key.public)),
                    data,
                ),
                DkimAlgorithm::Ed25519 => (
                    UnparsedPublicKey::new(&ED25519, key.public.clone()),
                    digest.as_ref(),
                ),
            };
            assert!(verify.verify(signed, &sig).is_ok(), "{alg}");
            assert!(verify.verify(b"other", &sig).is_err(), "{alg}");
            assert!(dns_value(alg, &key.public).starts_with(&format!("v=DKIM1; k={alg}; p=")));
            assert!(
                sign_digest(alg, &key.pkcs8, &[0; 20]).is_err(),
                "{alg}: short digest"
            );
        }
    }

    /// The RSAPublicKey inside a SubjectPublicKeyInfo (what aws-lc-rs verifies with): the
    /// BIT STRING's contents after its unused-bits byte.
    fn rsa_pkcs1(spki: &[u8]) -> Vec<u8> {
        let at = spki.windows(2).rposition(|w| w == [0x03, 0x82]).unwrap();
        spki[at + 5..].to_vec()
    }
}
