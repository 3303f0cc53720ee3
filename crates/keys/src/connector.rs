//! Connector secrets: the credentials `mx` presents to a tenant's next hop.
//!
//! They are sealed by the vault and never returned by any command or API; `mx` obtains them
//! from the vault when it connects and keeps them only in memory. Every field is zeroized on
//! drop and `Debug` never prints a value.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub use proto::SecretKind;

/// A connector secret's value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ConnectorSecret {
    /// SMTP AUTH (PLAIN) credentials.
    SmtpAuth {
        /// Username (authentication identity).
        username: String,
        /// Password.
        password: String,
    },
    /// Client certificate chain and its private key, both PEM.
    ClientCert {
        /// Certificate chain, leaf first.
        cert_pem: String,
        /// Private key (PKCS#8, PKCS#1 or SEC1).
        key_pem: String,
    },
}

impl fmt::Debug for ConnectorSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectorSecret({}, ..)", self.kind())
    }
}

/// Longest accepted field (a certificate chain fits easily).
pub const MAX_FIELD: usize = 64 * 1024;

impl ConnectorSecret {
    /// Its kind.
    pub fn kind(&self) -> SecretKind {
        match self {
            ConnectorSecret::SmtpAuth { .. } => SecretKind::SmtpAuth,
            ConnectorSecret::ClientCert { .. } => SecretKind::ClientCert,
        }
    }

    /// Checks the shape (non-empty, bounded, no line breaks or NUL in SMTP credentials, PEM
    /// markers present); the TLS layer checks the certificate and key themselves.
    pub fn validate(&self) -> Result<(), String> {
        let bounded = |name: &str, v: &str| {
            if v.is_empty() {
                Err(format!("{name} is empty"))
            } else if v.len() > MAX_FIELD {
                Err(format!("{name} is longer than {MAX_FIELD} bytes"))
            } else {
                Ok(())
            }
        };
        match self {
            ConnectorSecret::SmtpAuth { username, password } => {
                bounded("username", username)?;
                bounded("password", password)?;
                if [username, password]
                    .iter()
                    .any(|v| v.contains(['\r', '\n', '\0']))
                {
                    return Err("username and password cannot contain line breaks or NUL".into());
                }
                Ok(())
            }
            ConnectorSecret::ClientCert { cert_pem, key_pem } => {
                bounded("certificate", cert_pem)?;
                bounded("key", key_pem)?;
                if !cert_pem.contains("-----BEGIN CERTIFICATE-----") {
                    return Err("the certificate file holds no PEM CERTIFICATE block".into());
                }
                if !key_pem.contains("PRIVATE KEY-----") {
                    return Err("the key file holds no PEM PRIVATE KEY block".into());
                }
                Ok(())
            }
        }
    }

    /// Serialized form (what the vault seals), zeroized on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(serde_json::to_vec(self).expect("a connector secret serializes"))
    }

    /// Parses the serialized form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("connector secret: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_values_and_bytes_round_trip() {
        let s = ConnectorSecret::SmtpAuth {
            username: "relay@acme".into(),
            password: "hunter2-secret".into(),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(ConnectorSecret::from_bytes(&s.to_bytes()).unwrap(), s);
        assert_eq!(s.kind().name(), "smtp-auth");
        assert_eq!(
            "client-cert".parse::<SecretKind>(),
            Ok(SecretKind::ClientCert)
        );
        assert!("password".parse::<SecretKind>().is_err());
    }

    #[test]
    fn validation_names_the_problem() {
        let auth = |u: &str, p: &str| ConnectorSecret::SmtpAuth {
            username: u.into(),
            password: p.into(),
        };
        assert!(auth("u", "p").validate().is_ok());
        assert!(auth("", "p").validate().unwrap_err().contains("username"));
        assert!(
            auth("u", "a\r\nMAIL")
                .validate()
                .unwrap_err()
                .contains("line breaks")
        );
        assert!(auth("u", &"x".repeat(MAX_FIELD + 1)).validate().is_err());
        let cert = ConnectorSecret::ClientCert {
            cert_pem: "not pem".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----".into(),
        };
        assert!(cert.validate().unwrap_err().contains("CERTIFICATE"));
        assert!(
            ConnectorSecret::from_bytes(
                br#"{"kind":"smtp-auth","username":"u","password":"p","x":1}"#
            )
            .is_err()
        );
    }
}
