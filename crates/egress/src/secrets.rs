//! Connector secrets at the moment of use: SMTP AUTH credentials and a TLS client certificate.
//!
//! Delivery asks a [`SecretSource`] (in `mx`, the vault) for a tenant's secret only when a
//! route says `auth=tenant` or `client_cert=tenant`; the value stays in memory (zeroized when
//! dropped) and never reaches a log, a trace or a DSN.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use keys::connector::{ConnectorSecret, SecretKind};

/// A boxed future (the trait stays object safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where delivery obtains connector secrets.
pub trait SecretSource: Send + Sync {
    /// The tenant's secret of `kind`, or a message for the trace saying why there is none.
    fn get(
        &self,
        tenant: i64,
        kind: SecretKind,
    ) -> BoxFuture<'_, Result<Arc<ConnectorSecret>, String>>;
    /// Drops any cached value of the tenant (after the next hop refused it).
    fn forget(&self, tenant: i64);
    /// Drops every cached value (secrets were changed).
    fn forget_all(&self);
}

/// What a connection presents.
#[derive(Default, Clone)]
pub struct Credentials {
    /// SMTP AUTH PLAIN credentials.
    pub smtp_auth: Option<Arc<ConnectorSecret>>,
    /// TLS client certificate and key.
    pub client_cert: Option<Arc<tls::ClientAuth>>,
}

impl Credentials {
    /// The `AUTH PLAIN` initial response (RFC 4616: empty authorization identity), or `None`.
    pub(crate) fn plain_response(&self) -> Option<zeroize::Zeroizing<String>> {
        use base64::Engine;
        match self.smtp_auth.as_deref() {
            Some(ConnectorSecret::SmtpAuth { username, password }) => {
                let mut raw = zeroize::Zeroizing::new(Vec::with_capacity(
                    username.len() + password.len() + 2,
                ));
                raw.push(0);
                raw.extend_from_slice(username.as_bytes());
                raw.push(0);
                raw.extend_from_slice(password.as_bytes());
                Some(zeroize::Zeroizing::new(
                    base64::engine::general_purpose::STANDARD.encode(&raw[..]),
                ))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_response_follows_rfc_4616() {
        let c = Credentials {
            smtp_auth: Some(Arc::new(ConnectorSecret::SmtpAuth {
                username: "tim".into(),
                password: "tanstaaftanstaaf".into(),
            })),
            client_cert: None,
        };
        // The example of RFC 4616 section 4 (without an authorization identity).
        assert_eq!(
            c.plain_response().unwrap().as_str(),
            "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
        );
        assert!(Credentials::default().plain_response().is_none());
    }
}
