//! `sekisho acme renew`: the node's certificate from an ACME CA (RFC 8555, e.g. Let's
//! Encrypt) by the `http-01` challenge. Run as root (a systemd timer, `deploy/`): it answers
//! the CA's challenge on `[acme] http_listen` (port 80) for as long as the order takes — a
//! listener that serves `/.well-known/acme-challenge/<token>` and nothing else — writes the
//! new key and chain to `[tls] key` and `cert` (0600, each replaced in one rename), and
//! leaves it to `systemctl reload sekisho` (a path unit in `deploy/`) to put them in service.
//! Nothing is renewed while the certificate on disk covers the names and has more than
//! `renew_before` left.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use serde_json::{Value, json};

use crate::config::{AcmeConfig, Config};

/// How long one order may take (validation and issuance) before it is given up.
const ORDER_PATIENCE: Duration = Duration::from_secs(120);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Renews the certificate if it is missing, does not cover the names, or ends within
/// `renew_before` (`force`: in any case). Returns whether a new one was written.
pub async fn renew(cfg: &Config, force: bool) -> Result<bool> {
    let acme = cfg.acme.as_ref().context(
        "no [acme] directory is configured (e.g. https://acme-v02.api.letsencrypt.org/directory)",
    )?;
    if cfg.tls_generated {
        bail!("set [tls] cert and key: the paths the ACME certificate is written to");
    }
    if !force && let Some(until) = still_good(cfg, acme)? {
        println!(
            "the certificate for {} is good until {}; nothing to renew",
            acme.domains.join(", "),
            proto::verdict::rfc2822(until)
        );
        return Ok(false);
    }
    let mut client = Client::new(acme).await?;
    client.account(acme).await?;
    let (key_pem, chain) = client.order(acme).await?;
    write_private(&cfg.tls_key, key_pem.as_bytes())?;
    write_private(&cfg.tls_cert, chain.as_bytes())?;
    println!(
        "a certificate for {} from {} is written to {}; `systemctl reload sekisho` puts it in service",
        acme.domains.join(", "),
        acme.directory,
        cfg.tls_cert.display()
    );
    Ok(true)
}

/// When the certificate on disk covers every name and lasts beyond `renew_before`: its end.
fn still_good(cfg: &Config, acme: &AcmeConfig) -> Result<Option<i64>> {
    let Ok(pem) = std::fs::read(&cfg.tls_cert) else {
        return Ok(None);
    };
    let Some(der) = tls::load_certs(&cfg.tls_cert)
        .ok()
        .and_then(|c| c.into_iter().next())
    else {
        let _ = pem;
        return Ok(None);
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return Ok(None);
    };
    let until = cert.validity().not_after.timestamp();
    let names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let covered = acme.domains.iter().all(|d| names.contains(d));
    let left = until - store::unix_now();
    Ok((covered && left > acme.renew_before.as_secs() as i64).then_some(until))
}

/// Writes a file only root reads, replacing the old one in one rename.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("acme-new");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The ACME account key: P-256, PKCS#8 in a file only root reads (made on first use).
fn account_key(path: &std::path::Path) -> Result<EcdsaKeyPair> {
    let der = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let doc = EcdsaKeyPair::generate_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .map_err(|_| anyhow::anyhow!("cannot generate the ACME account key"))?;
            write_private(path, doc.as_ref())?;
            doc.as_ref().to_vec()
        }
        Err(e) => return Err(e).with_context(|| format!("{}", path.display())),
    };
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
        .map_err(|_| anyhow::anyhow!("{} is not a P-256 PKCS#8 key", path.display()))
}

/// The account key's public JWK (RFC 7517) and its thumbprint (RFC 7638).
fn jwk(key: &EcdsaKeyPair) -> (Value, String) {
    let point = key.public_key().as_ref(); // 0x04 || X || Y
    let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
    // The thumbprint hashes the required members in lexicographic order, no white space.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    (
        json!({"crv": "P-256", "kty": "EC", "x": x, "y": y}),
        b64(digest.as_ref()),
    )
}

/// An ACME session: the directory, the account key and the current nonce.
struct Client {
    http: reqwest::Client,
    new_nonce: String,
    new_account: String,
    new_order: String,
    key: EcdsaKeyPair,
    jwk: Value,
    thumbprint: String,
    kid: Option<String>,
    nonce: Option<String>,
}

impl Client {
    async fn new(acme: &AcmeConfig) -> Result<Self> {
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(ca) = &acme.ca_file {
            let pem =
                std::fs::read(ca).with_context(|| format!("acme.ca_file {}", ca.display()))?;
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        let http = http.build()?;
        let text = http
            .get(&acme.directory)
            .send()
            .await
            .with_context(|| format!("cannot reach the ACME directory {}", acme.directory))?
            .error_for_status()?
            .text()
            .await?;
        let dir: Value = serde_json::from_str(&text).context("the ACME directory is not JSON")?;
        let field = |name: &str| -> Result<String> {
            dir[name]
                .as_str()
                .map(str::to_string)
                .with_context(|| format!("the ACME directory has no {name}"))
        };
        let key = account_key(&acme.account_key)?;
        let (jwk, thumbprint) = jwk(&key);
        Ok(Self {
            new_nonce: field("newNonce")?,
            new_account: field("newAccount")?,
            new_order: field("newOrder")?,
            http,
            key,
            jwk,
            thumbprint,
            kid: None,
            nonce: None,
        })
    }

    async fn fresh_nonce(&mut self) -> Result<String> {
        if let Some(n) = self.nonce.take() {
            return Ok(n);
        }
        let r = self.http.head(&self.new_nonce).send().await?;
        nonce_of(&r).context("the CA gave no Replay-Nonce")
    }

    /// A JWS-signed POST (`payload` None: POST-as-GET). A `badNonce` is tried once more.
    async fn post(
        &mut self,
        url: &str,
        payload: Option<&Value>,
    ) -> Result<(reqwest::header::HeaderMap, Value, String)> {
        for attempt in 0..2 {
            let nonce = self.fresh_nonce().await?;
            let mut protected = json!({"alg": "ES256", "nonce": nonce, "url": url});
            match &self.kid {
                Some(kid) => protected["kid"] = json!(kid),
                None => protected["jwk"] = self.jwk.clone(),
            }
            let protected = b64(protected.to_string().as_bytes());
            let payload = payload.map_or(String::new(), |p| b64(p.to_string().as_bytes()));
            let signature = self
                .key
                .sign(
                    &SystemRandom::new(),
                    format!("{protected}.{payload}").as_bytes(),
                )
                .map_err(|_| anyhow::anyhow!("cannot sign the ACME request"))?;
            let body = json!({"protected": protected, "payload": payload, "signature": b64(signature.as_ref())});
            let r = self
                .http
                .post(url)
                .header("Content-Type", "application/jose+json")
                .body(body.to_string())
                .send()
                .await?;
            self.nonce = nonce_of(&r);
            let status = r.status();
            let headers = r.headers().clone();
            let text = r.text().await?;
            let doc: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status.is_success() {
                return Ok((headers, doc, text));
            }
            if attempt == 0 && doc["type"] == "urn:ietf:params:acme:error:badNonce" {
                continue;
            }
            bail!(
                "the ACME CA refused {url}: {} {}",
                status.as_u16(),
                doc["detail"].as_str().unwrap_or(&text)
            );
        }
        unreachable!("the loop returns or fails")
    }

    async fn account(&mut self, acme: &AcmeConfig) -> Result<()> {
        let mut req = json!({"termsOfServiceAgreed": true});
        if let Some(c) = &acme.contact {
            req["contact"] = json!([format!("mailto:{c}")]);
        }
        let url = self.new_account.clone();
        let (headers, _, _) = self.post(&url, Some(&req)).await?;
        self.kid = Some(location(&headers).context("the CA gave the account no Location")?);
        Ok(())
    }

    /// Orders the certificate, answers each `http-01` challenge, finalizes with a new key's
    /// CSR and downloads the chain. Returns (key PEM, chain PEM).
    async fn order(&mut self, acme: &AcmeConfig) -> Result<(String, String)> {
        let ids: Vec<Value> = acme
            .domains
            .iter()
            .map(|d| json!({"type": "dns", "value": d}))
            .collect();
        let url = self.new_order.clone();
        let (headers, order, _) = self.post(&url, Some(&json!({"identifiers": ids}))).await?;
        let order_url = location(&headers).context("the CA gave the order no Location")?;
        let tokens: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let responder = Responder::start(acme.http_listen, tokens.clone()).await?;
        let answered = self.answer(&order, &tokens).await;
        responder.stop();
        answered?;
        let cert_key = rcgen::KeyPair::generate()?;
        let csr =
            rcgen::CertificateParams::new(acme.domains.clone())?.serialize_request(&cert_key)?;
        let finalize = order["finalize"]
            .as_str()
            .context("the order has no finalize URL")?
            .to_string();
        self.post(&finalize, Some(&json!({"csr": b64(csr.der())})))
            .await?;
        let done = self.poll(&order_url, &["valid"], &["invalid"]).await?;
        let cert_url = done["certificate"]
            .as_str()
            .context("the valid order has no certificate URL")?;
        let (_, _, chain) = self.post(cert_url, None).await?;
        if !chain.contains("-----BEGIN CERTIFICATE-----") {
            bail!("the CA's certificate download is not PEM");
        }
        Ok((cert_key.serialize_pem(), chain))
    }

    /// For each authorization: publish the key authorization of its `http-01` challenge,
    /// tell the CA, and wait until the CA found it.
    async fn answer(
        &mut self,
        order: &Value,
        tokens: &Mutex<HashMap<String, String>>,
    ) -> Result<()> {
        let authzs: Vec<String> = order["authorizations"]
            .as_array()
            .context("the order has no authorizations")?
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        for authz in authzs {
            let (_, doc, _) = self.post(&authz, None).await?;
            if doc["status"] == "valid" {
                continue;
            }
            let challenge = doc["challenges"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "http-01"))
                .context("the CA offers no http-01 challenge")?;
            let token = challenge["token"]
                .as_str()
                .context("a challenge without a token")?;
            if token.is_empty()
                || !token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                bail!("the CA's challenge token is not base64url");
            }
            let key_auth = format!("{token}.{}", self.thumbprint);
            tokens
                .lock()
                .expect("tokens")
                .insert(token.to_string(), key_auth);
            let url = challenge["url"]
                .as_str()
                .context("a challenge without a URL")?
                .to_string();
            self.post(&url, Some(&json!({}))).await?;
            self.poll(
                &authz,
                &["valid"],
                &["invalid", "deactivated", "expired", "revoked"],
            )
            .await
            .with_context(|| format!("the CA could not validate {}", doc["identifier"]["value"]))?;
        }
        Ok(())
    }

    /// POST-as-GET `url` until its status is one of `done` (returned) or `failed` (an error).
    async fn poll(&mut self, url: &str, done: &[&str], failed: &[&str]) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + ORDER_PATIENCE;
        loop {
            let (_, doc, _) = self.post(url, None).await?;
            let status = doc["status"].as_str().unwrap_or("");
            if done.contains(&status) {
                return Ok(doc);
            }
            if failed.contains(&status) {
                bail!(
                    "{status}: {}",
                    doc["error"]["detail"]
                        .as_str()
                        .or(doc["challenges"][0]["error"]["detail"].as_str())
                        .unwrap_or("no detail")
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!("still {status} after {ORDER_PATIENCE:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn nonce_of(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("Replay-Nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn location(h: &reqwest::header::HeaderMap) -> Option<String> {
    h.get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The `http-01` listener: `/.well-known/acme-challenge/<token>` with a known token answers
/// its key authorization; everything else is 404. It lives only while an order is answered.
struct Responder {
    stop: tokio_util::sync::CancellationToken,
}

impl Responder {
    async fn start(
        listen: std::net::SocketAddr,
        tokens: Arc<Mutex<HashMap<String, String>>>,
    ) -> Result<Self> {
        use axum::extract::Path;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {listen} for the CA's http-01 challenge ([acme] http_listen)"
                )
            })?;
        let app = axum::Router::new().route(
            "/.well-known/acme-challenge/{token}",
            axum::routing::get(move |Path(token): Path<String>| {
                let found = tokens.lock().expect("tokens").get(&token).cloned();
                async move {
                    match found {
                        Some(k) => (axum::http::StatusCode::OK, k),
                        None => (axum::http::StatusCode::NOT_FOUND, String::new()),
                    }
                }
            }),
        );
        let stop = tokio_util::sync::CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await;
        });
        Ok(Self { stop })
    }

    fn stop(self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jwk_thumbprint_is_rfc_7638s() {
        // RFC 7638 §3.1's example is RSA; for EC the same rule: required members, sorted,
        // no white space, SHA-256, base64url. Checked against a hand-built digest.
        let d = tempfile::tempdir().unwrap();
        let key = account_key(&d.path().join("k")).unwrap();
        let (public, thumb) = jwk(&key);
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            public["x"].as_str().unwrap(),
            public["y"].as_str().unwrap()
        );
        let want = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        assert_eq!(thumb, b64(want.as_ref()));
        assert_eq!(thumb.len(), 43);
        // The key is kept: the same account next time.
        let again = account_key(&d.path().join("k")).unwrap();
        assert_eq!(jwk(&again).1, thumb);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join("k"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
