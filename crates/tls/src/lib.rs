//! TLS for Sekisho's SMTP server (ingress STARTTLS) and client (egress STARTTLS).
//!
//! Beside the mail path: [`Stream`] is the connection type both ends use, plain until
//! STARTTLS and encrypted after; [`server_config`] loads (or on first start generates) the
//! node certificate; [`client_config`] builds the verifying or opportunistic client side.
//!
//! # Security
//! The generated node key is written with mode 0600. Opportunistic client TLS does not verify
//! certificates (as RFC 7435 allows: it only protects against passive observers); routes that
//! need authentication use `tls=required`, which verifies against the Web PKI roots or a
//! private CA.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub use rustls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// TLS setup errors.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        source: io::Error,
    },
    /// PEM content is not valid.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        what: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A TCP connection that may have been upgraded with STARTTLS.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS as a server (ingress).
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// TLS as a client (egress).
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// True once TLS is active.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }

    /// `(protocol version, cipher suite)` when TLS is active.
    pub fn tls_params(&self) -> Option<(String, String)> {
        let conn: &rustls::CommonState = match self {
            Stream::Plain(_) => return None,
            Stream::Server(s) => s.get_ref().1,
            Stream::Client(s) => s.get_ref().1,
        };
        let version = conn
            .protocol_version()
            .map(|v| match v {
                rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
                rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        let cipher = conn
            .negotiated_cipher_suite()
            .map(|c| format!("{:?}", c.suite()))
            .unwrap_or_default();
        Some((version, cipher))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn file_err(path: &Path) -> impl FnOnce(io::Error) -> TlsError + '_ {
    move |source| TlsError::File {
        path: path.display().to_string(),
        source,
    }
}

fn pem_err(path: &Path, what: impl ToString) -> TlsError {
    TlsError::Pem {
        path: path.display().to_string(),
        what: what.to_string(),
    }
}

/// Loads all certificates of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = fs::read(path).map_err(file_err(path))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(path, e))?;
    if certs.is_empty() {
        return Err(pem_err(path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// Generates a self-signed certificate for `hostname` into `cert_path`/`key_path` (key mode
/// 0600) unless both exist already. Returns true if it generated them.
pub fn ensure_self_signed(
    hostname: &str,
    cert_path: &Path,
    key_path: &Path,
) -> Result<bool, TlsError> {
    if cert_path.exists() && key_path.exists() {
        return Ok(false);
    }
    if let Some(dir) = cert_path.parent() {
        fs::create_dir_all(dir).map_err(file_err(dir))?;
    }
    let names = vec![hostname.to_string(), "localhost".to_string()];
    let generated = rcgen::generate_simple_self_signed(names)?;
    let mut key = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(key_path)
        .map_err(file_err(key_path))?;
    key.write_all(generated.signing_key.serialize_pem().as_bytes())
        .map_err(file_err(key_path))?;
    fs::write(cert_path, generated.cert.pem()).map_err(file_err(cert_path))?;
    Ok(true)
}

/// Server configuration from a certificate chain and key in PEM files.
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(cert_path)?;
    let key_bytes = fs::read(key_path).map_err(file_err(key_path))?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| pem_err(key_path, e))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// How a client verifies the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Opportunistic: encrypt, but accept any certificate.
    None,
    /// Verify against the Web PKI roots.
    WebPki,
    /// Verify against the CA certificates in this PEM file.
    Ca(std::path::PathBuf),
}

/// A client certificate chain and its private key, for mutual TLS.
pub struct ClientAuth {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientAuth({} certificate(s), key ..)", self.certs.len())
    }
}

impl ClientAuth {
    /// Parses a PEM certificate chain (leaf first) and PEM private key, and checks that
    /// rustls accepts them together (supported key type, key matching the certificate).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let what = |w: &str| Path::new(w).to_path_buf();
        let certs: Vec<_> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| pem_err(&what("client certificate"), e))?;
        if certs.is_empty() {
            return Err(pem_err(
                &what("client certificate"),
                "no CERTIFICATE block found",
            ));
        }
        let key =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| pem_err(&what("client key"), e))?;
        let auth = Self { certs, key };
        auth.apply(
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(RootCertStore::empty()),
        )?;
        Ok(auth)
    }

    fn apply(
        &self,
        builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    ) -> Result<ClientConfig, TlsError> {
        let key = provider()
            .key_provider
            .load_private_key(self.key.clone_key())?;
        let certified = rustls::sign::CertifiedKey::new(self.certs.clone(), key);
        certified.keys_match().map_err(|e| TlsError::Pem {
            path: "client certificate".into(),
            what: format!("the key does not belong to the certificate: {e}"),
        })?;
        Ok(builder.with_client_auth_cert(self.certs.clone(), self.key.clone_key())?)
    }
}

/// Client configuration for the given verification mode.
pub fn client_config(verify: &Verify) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_auth(verify, None)
}

/// Client configuration for the given verification mode, presenting `auth` when the server
/// asks for a client certificate.
pub fn client_config_auth(
    verify: &Verify,
    auth: Option<&ClientAuth>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match verify {
        Verify::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider()))),
        Verify::WebPki => builder.with_root_certificates(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
        Verify::Ca(path) => {
            let mut roots = RootCertStore::empty();
            for c in load_certs(path)? {
                roots
                    .add(c)
                    .map_err(|e| pem_err(path, format!("not a usable CA certificate: {e}")))?;
            }
            builder.with_root_certificates(roots)
        }
    };
    let config = match auth {
        Some(a) => a.apply(builder)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The server name to send (SNI) and verify for `host`.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_string()).map_err(|e| TlsError::Pem {
        path: host.to_string(),
        what: format!("not a valid server name: {e}"),
    })
}

/// Accepts any certificate but still checks the handshake signatures (opportunistic TLS).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_auth_accepts_a_matching_pair_and_names_what_is_wrong() {
        let a = rcgen::generate_simple_self_signed(vec!["client.test".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["other.test".into()]).unwrap();
        let (cert, key) = (a.cert.pem(), a.signing_key.serialize_pem());
        let auth = ClientAuth::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        assert!(!format!("{auth:?}").contains("PRIVATE"));
        assert!(client_config_auth(&Verify::WebPki, Some(&auth)).is_ok());
        let e = ClientAuth::from_pem(cert.as_bytes(), b.signing_key.serialize_pem().as_bytes())
            .unwrap_err();
        assert!(e.to_string().contains("does not belong"), "{e}");
        let e = ClientAuth::from_pem(b"junk", key.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
        assert!(ClientAuth::from_pem(cert.as_bytes(), b"junk").is_err());
    }
}
