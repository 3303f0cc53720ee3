//! The alert webhook sink: `mx` forwards every new alert as a signed HTTP POST.
//!
//! Body: the alert as JSON. Headers: `X-Sekisho-Timestamp` (Unix seconds) and
//! `X-Sekisho-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`, so a
//! receiver can check origin and freshness. Delivery is at least once: the last forwarded
//! alert id is kept in the store and only advanced after a 2xx answer. (The vault opens no
//! network connection, so the forwarding happens here.)

use std::time::Duration;

use aws_lc_rs::hmac;
use store::Store;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

/// Where and how alerts are forwarded.
#[derive(Clone)]
pub struct Webhook {
    /// The receiver.
    pub url: url::Url,
    /// The HMAC key.
    pub secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Webhook({}, secret ..)", self.url)
    }
}

/// The signature header value for `body` sent at `timestamp`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("sha256={}", hex::encode(ctx.sign().as_ref()))
}

const SENT: &str = "alerts_webhook_sent";

/// Forwards new alerts until `shutdown`.
pub async fn forward(store: Store, hook: Webhook, shutdown: CancellationToken) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "alert webhook disabled: no HTTP client");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let sent = match store.meta_get(SENT).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "alert webhook: store");
                continue;
            }
        };
        let Ok(alerts) = store.alerts_after(sent).await else {
            continue;
        };
        for a in alerts {
            let body = match serde_json::to_vec(&a) {
                Ok(b) => b,
                Err(_) => continue,
            };
            let now = store::unix_now();
            let result = client
                .post(hook.url.clone())
                .header("content-type", "application/json")
                .header("x-sekisho-timestamp", now.to_string())
                .header("x-sekisho-signature", signature(&hook.secret, now, &body))
                .body(body)
                .send()
                .await;
            match result {
                Ok(r) if r.status().is_success() => {
                    if let Err(e) = store.meta_set(SENT, a.id).await {
                        tracing::error!(error = %e, "alert webhook: store");
                        break;
                    }
                }
                Ok(r) => {
                    tracing::warn!(status = %r.status(), alert = a.id, "alert webhook refused; will retry");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, alert = a.id, "alert webhook unreachable; will retry");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_hmac_sha256_of_timestamp_and_body() {
        // Computed independently: python3 -c 'import hmac,hashlib;
        //   print(hmac.new(b"k", b"1.{}", hashlib.sha256).hexdigest())'
        assert_eq!(
            super::signature(b"k", 1, b"{}"),
            "sha256=3dd49b2593d0f9a349e9e71c4bde3e2b862c2be4003fe9b4ba81332029310158"
        );
        assert_ne!(
            super::signature(b"k", 2, b"{}"),
            super::signature(b"k", 1, b"{}")
        );
    }
}
