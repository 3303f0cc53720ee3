//! Alert sinks outside the store: `mx` forwards every new alert to a signed webhook and/or to
//! syslog. (The vault opens no network connection, so the forwarding happens here.)
//!
//! Webhook body: the alert as JSON. Headers: `X-Sekisho-Timestamp` (Unix seconds) and
//! `X-Sekisho-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`, so a
//! receiver can check origin and freshness. Syslog: one RFC 5424 datagram per alert to a Unix
//! socket (`/dev/log`), facility authpriv. Delivery is at least once per sink: the last
//! forwarded alert id is kept in the store and only advanced after the sink took it.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use aws_lc_rs::hmac;
use store::{Alert, MailStore};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

/// Where and how alerts are forwarded over HTTP.
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

/// What every alert sink runs with: the store, this node's name, and when to stop.
#[derive(Clone)]
pub struct SinkCtx {
    /// The (shared) store.
    pub store: MailStore,
    /// This node's name in the node list.
    pub node: String,
    /// Stops the sink.
    pub shutdown: CancellationToken,
}

/// Calls `send` for every alert newer than the sink's mark, once a second, until `shutdown`;
/// the mark (`meta` key `key`) advances only past alerts `send` accepted.
async fn forward_alerts<F, Fut>(ctx: SinkCtx, key: &str, send: F)
where
    F: Fn(Alert) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let store = &ctx.store;
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if !ctx.store.is_first_up(&ctx.node).await {
            continue;
        }
        let Ok(sent) = store.meta_get(key).await else {
            continue;
        };
        let Ok(alerts) = store.alerts_after(sent).await else {
            continue;
        };
        for a in alerts {
            let id = a.id;
            if let Err(e) = send(a).await {
                tracing::warn!(sink = key, alert = id, error = %e, "alert sink failed; will retry");
                break;
            }
            if let Err(e) = store.meta_set(key, id).await {
                tracing::error!(error = %e, "alert sink: store");
                break;
            }
        }
    }
}

/// Forwards new alerts to the webhook until `shutdown`.
pub async fn forward(ctx: SinkCtx, hook: Webhook) {
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
    forward_alerts(ctx, "alerts_webhook_sent", |a| {
        let (client, hook) = (client.clone(), hook.clone());
        async move {
            let body = serde_json::to_vec(&a).map_err(|e| e.to_string())?;
            let now = store::unix_now();
            let r = client
                .post(hook.url.clone())
                .header("content-type", "application/json")
                .header("x-sekisho-timestamp", now.to_string())
                .header("x-sekisho-signature", signature(&hook.secret, now, &body))
                .body(body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if r.status().is_success() {
                Ok(())
            } else {
                Err(format!("receiver answered {}", r.status()))
            }
        }
    })
    .await;
}

/// Where alert e-mails go.
#[derive(Debug, Clone)]
pub struct AlertMail {
    /// Recipients.
    pub to: Vec<String>,
    /// The From address.
    pub from: String,
}

/// One alert as an e-mail: the subject says severity, rule and principal; the body every
/// field and what to do next. Alerts name principals, tenants and objects, never content.
pub fn alert_email(a: &Alert, mail: &AlertMail, hostname: &str) -> Vec<u8> {
    let subject = format!(
        "[Sekisho {}] {}: {}",
        a.severity,
        a.rule,
        if a.principal.is_empty() {
            "-"
        } else {
            &a.principal
        }
    );
    let time = |t: i64| egress::time_rfc2822(t);
    let text = format!(
        "Sekisho raised an alert on {hostname}.\n\n\
         Rule:      {}\n\
         Severity:  {}\n\
         Principal: {}\n\
         Tenant:    {}\n\
         First:     {}\n\
         Last:      {} ({} time(s))\n\
         Alert id:  {}\n\n\
         {}\n\n\
         Review it with `sekisho alerts list` or on the portal's alerts page; acknowledge with\n\
         `sekisho alerts ack {}`.\n",
        a.rule,
        a.severity,
        a.principal,
        a.tenant_id.map_or("-".to_string(), |t| t.to_string()),
        time(a.first_at),
        time(a.last_at),
        a.count,
        a.id,
        a.summary,
        a.id,
    );
    egress::notice::build(
        &mail.from,
        &mail.to,
        &subject,
        &text,
        &format!("alert-{}.{}@{hostname}", a.id, a.first_at),
        a.last_at,
    )
}

/// Sends every new alert by e-mail through this node's own queue until `shutdown`.
pub async fn forward_email(
    ctx: SinkCtx,
    delivery: std::sync::Arc<egress::Delivery>,
    mail: AlertMail,
    hostname: String,
) {
    forward_alerts(ctx, "alerts_email_sent", |a| {
        let content = alert_email(&a, &mail, &hostname);
        let (delivery, to) = (delivery.clone(), mail.to.clone());
        async move {
            delivery
                .submit_local(&content, &to, &format!("alert {} e-mail", a.id))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await;
}

/// One alert as an RFC 5424 syslog message (facility authpriv).
pub fn syslog_line(a: &Alert, hostname: &str) -> String {
    let severity = match a.severity {
        proto::Severity::Critical => 2,
        proto::Severity::Warning => 4,
        proto::Severity::Info => 6,
    };
    let time = time::OffsetDateTime::from_unix_timestamp(a.last_at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into());
    let escape = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace(']', "\\]")
    };
    format!(
        "<{}>1 {time} {hostname} sekisho - alert [sekisho@32473 id=\"{}\" rule=\"{}\" severity=\"{}\" principal=\"{}\" count=\"{}\"] {}",
        10 * 8 + severity,
        a.id,
        escape(&a.rule),
        escape(a.severity.as_str()),
        escape(&a.principal),
        a.count,
        a.summary.replace(['\r', '\n'], " ")
    )
}

/// Forwards new alerts to the syslog socket at `path` until `shutdown`.
pub async fn forward_syslog(ctx: SinkCtx, path: PathBuf, hostname: String) {
    forward_alerts(ctx, "alerts_syslog_sent", |a| {
        let (path, line) = (path.clone(), syslog_line(&a, &hostname));
        async move {
            let sock = tokio::net::UnixDatagram::unbound().map_err(|e| e.to_string())?;
            sock.send_to(line.as_bytes(), &path)
                .await
                .map(|_| ())
                .map_err(|e| format!("{}: {e}", path.display()))
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_email_names_rule_severity_principal_and_what_to_do() {
        let a = Alert {
            id: 7,
            rule: "bulk-open".into(),
            severity: proto::Severity::Critical,
            dedupe_key: "bulk-open:user:bob".into(),
            principal: "user:bob@acme.test".into(),
            tenant_id: Some(3),
            summary: "user:bob@acme.test opened 21 sealed messages within 60s".into(),
            first_at: 1_800_000_000,
            last_at: 1_800_000_060,
            count: 2,
            state: proto::AlertState::Open,
            updated_by: String::new(),
        };
        let mail = AlertMail {
            to: vec!["soc@example.net".into()],
            from: "sekisho-alerts@gw.example".into(),
        };
        let m = alert_email(&a, &mail, "gw.example");
        let parsed = mail_parser::MessageParser::default().parse(&m).unwrap();
        assert_eq!(
            parsed.subject(),
            Some("[Sekisho critical] bulk-open: user:bob@acme.test")
        );
        let body = parsed.body_text(0).unwrap();
        for want in [
            "opened 21 sealed messages",
            "Tenant:    3",
            "(2 time(s))",
            "sekisho alerts ack 7",
        ] {
            assert!(body.contains(want), "{want}: {body}");
        }
        assert_eq!(parsed.message_id(), Some("alert-7.1800000000@gw.example"));
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_and_body() {
        // Computed independently: python3 -c 'import hmac,hashlib;
        //   print(hmac.new(b"k", b"1.{}", hashlib.sha256).hexdigest())'
        assert_eq!(
            signature(b"k", 1, b"{}"),
            "sha256=3dd49b2593d0f9a349e9e71c4bde3e2b862c2be4003fe9b4ba81332029310158"
        );
        assert_ne!(signature(b"k", 2, b"{}"), signature(b"k", 1, b"{}"));
    }

    #[test]
    fn syslog_lines_are_rfc_5424_with_structured_data() {
        let a = Alert {
            id: 7,
            rule: "bulk-open".into(),
            severity: proto::Severity::Critical,
            dedupe_key: "k".into(),
            principal: "cli:\"eve\"".into(),
            tenant_id: Some(1),
            summary: "line one\nline two".into(),
            first_at: 0,
            last_at: 1_795_478_400,
            count: 3,
            state: proto::AlertState::Open,
            updated_by: String::new(),
        };
        assert_eq!(
            syslog_line(&a, "gw1"),
            "<82>1 2026-11-24T00:00:00Z gw1 sekisho - alert [sekisho@32473 id=\"7\" rule=\"bulk-open\" severity=\"critical\" principal=\"cli:\\\"eve\\\"\" count=\"3\"] line one line two"
        );
    }
}
