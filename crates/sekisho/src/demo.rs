//! `serve --demo`: a complete tour. Besides the demo tenant (made in `serve`), the supervisor
//! invites the tenant's admin and an end user (one-time links printed with their login
//! names), and mx, once it listens, sends itself one sample message of each verdict —
//! delivered, tagged, quarantined, rejected — through its own SMTP listener, so that every
//! page of the portal and `trace` have something to show. The samples go once per data
//! directory (a marker file records it).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::config::Config;
use crate::serve::DEMO_DOMAIN;

/// The demo tenant's admin (login name).
pub fn admin() -> String {
    format!("admin@{DEMO_DOMAIN}")
}

/// The demo tenant's end user (login name; the samples are addressed to them).
pub fn user() -> String {
    format!("alice@{DEMO_DOMAIN}")
}

/// How to run this binary again, as the person who started it typed it: `cargo run
/// --release --` under cargo, else the command name as given (`sekisho` found on `PATH`,
/// `./target/release/sekisho`, a full path). Nothing is looked up on disk: mx and the portal
/// print it from inside their sandboxes (the supervisor hands the roles its argv[0]).
pub fn invocation() -> String {
    invocation_from(
        std::env::var_os("CARGO").is_some(),
        std::env::args().next().as_deref(),
    )
}

fn invocation_from(under_cargo: bool, arg0: Option<&str>) -> String {
    if under_cargo {
        let release = if cfg!(debug_assertions) {
            ""
        } else {
            " --release"
        };
        return format!("cargo run{release} --");
    }
    match arg0 {
        Some(a) if !a.is_empty() && !a.chars().any(char::is_whitespace) => a.to_string(),
        _ => "sekisho".into(),
    }
}

/// Invites the demo tenant's admin and end user while they have no active account (each
/// start prints fresh links; earlier ones stay valid until they expire).
pub async fn invite_people(cfg: &Config) {
    let store = match crate::serve::open_store(cfg).await {
        Ok(s) => s,
        Err(e) => return tracing::warn!(error = %e, "demo: no invitations"),
    };
    let vault = proto::client::VaultClient::new(proto::client::socket_path(&cfg.data_dir));
    for (email, role, what) in [
        (admin(), proto::Role::TenantAdmin, "tenant admin"),
        (user(), proto::Role::User, "end user"),
    ] {
        if matches!(store.user_by_email(&email).await, Ok(Some(u)) if u.active) {
            continue;
        }
        let req = proto::vault::Request::Admin(proto::vault::Admin::Invite {
            email: email.clone(),
            role,
            tenant: Some(crate::serve::DEMO_TENANT.into()),
            principal: crate::cli_principal(),
        });
        match vault.call(&req, &[]).await {
            Ok((proto::vault::Response::Enrolment { token }, _)) => println!(
                "demo: {what} of '{}', login name {email}: enrol with {}/enrol#{token}",
                crate::serve::DEMO_TENANT,
                crate::users::portal_url(cfg)
            ),
            Ok((other, _)) => tracing::warn!(answer = other.kind(), "demo: no invitation"),
            Err(e) => tracing::warn!(error = %e, "demo: no invitation for {email}"),
        }
    }
    store.close().await;
}

/// One sample message and the verdict it is there to show.
struct Sample {
    shows: &'static str,
    from: &'static str,
    text: &'static str,
}

/// The samples: scored by the default policy whatever the DNS answers (authentication adds
/// at most a point or two), each well inside its verdict's band.
const SAMPLES: &[Sample] = &[
    Sample {
        shows: "delivered",
        from: "bob@colleague.example",
        text: "From: Bob Tanaka <bob@colleague.example>\nSubject: Lunch on Thursday?\n\
Content-Type: text/plain; charset=utf-8\n\nHi Alice,\n\nshall we try the new soba place near \
the station on Thursday at noon? I can book a table for four if Ken and Yui want to join.\n\nBob\n",
    },
    Sample {
        shows: "tagged",
        from: "deals@offers-daily.example",
        text: "From: Special Offers <deals@offers-daily.example>\nSubject: LIMITED TIME OFFER - \
ACT NOW\nContent-Type: text/html; charset=utf-8\n\n<html><body><p>Dear friend, you have been \
selected! Act now: this limited time offer expires today. Click here to claim your FREE gift \
card - 100% satisfaction guaranteed, no credit check, risk free.</p>\n<p><a \
href=\"http://198.51.100.7/claim?id=7\">Claim now</a></p></body></html>\n",
    },
    Sample {
        shows: "quarantined",
        from: "service@paypa1-account-verify.com",
        text: "From: PayPal <service@paypa1-account-verify.com>\nSubject: Your account has been \
limited\nContent-Type: text/plain; charset=utf-8\n\nWe noticed unusual activity in your \
account. Please confirm your identity within 24 hours or your account will be suspended:\n\n\
  https://secure-review.example/confirm\n\nPayPal Customer Service\n",
    },
    Sample {
        shows: "rejected",
        from: "test@filter-check.example",
        text: "From: Filter check <test@filter-check.example>\nSubject: A test of the spam \
filter (GTUBE)\n\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\n",
    },
];

/// The marker that the samples went (in the data directory).
fn marker(cfg: &Config) -> std::path::PathBuf {
    cfg.data_dir.join("demo-samples-sent")
}

/// Sends the samples to mx's own listener once per data directory, and says what became of
/// each and how to look at them.
pub async fn send_samples(cfg: &Config, smtp: SocketAddr) {
    if marker(cfg).exists() {
        return;
    }
    let to = if smtp.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), smtp.port())
    } else {
        smtp
    };
    let mut said = Vec::new();
    for s in SAMPLES {
        match send(to, s.from, &user(), s.text).await {
            Ok(reply) => said.push(format!("{} ({reply})", s.shows)),
            Err(e) => {
                tracing::warn!(error = %e, sample = s.shows, "demo: sample not sent");
                return;
            }
        }
    }
    if let Err(e) = std::fs::write(marker(cfg), b"") {
        tracing::warn!(error = %e, "demo: samples sent, but the marker was not written");
    }
    println!(
        "demo: sample mail to {} sent, one of each verdict: {}",
        user(),
        said.join(", ")
    );
    println!(
        "      {} trace {} --rcpt {} (and the portal's trace, quarantine and dashboard)",
        invocation(),
        cfg.cli_flags(),
        user()
    );
}

/// One message over SMTP; the final reply's first line (`250 …`, `554 …`).
async fn send(addr: SocketAddr, from: &str, to: &str, text: &str) -> Result<String> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    reply(&mut r, 220).await?;
    let date = proto::verdict::rfc2822(store::unix_now());
    let id = format!("<demo-{}@{DEMO_DOMAIN}>", store::unix_now_ms());
    for (cmd, want) in [
        ("EHLO demo-sender.example".to_string(), 250),
        (format!("MAIL FROM:<{from}>"), 250),
        (format!("RCPT TO:<{to}>"), 250),
        ("DATA".to_string(), 354),
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).await?;
        reply(&mut r, want).await?;
    }
    let body = format!("To: {to}\nDate: {date}\nMessage-ID: {id}\nMIME-Version: 1.0\n{text}")
        .replace('\n', "\r\n")
        .replace("\r\n.", "\r\n..");
    w.write_all(body.as_bytes()).await?;
    w.write_all(b".\r\n").await?;
    let last = reply_line(&mut r).await?;
    let _ = w.write_all(b"QUIT\r\n").await;
    Ok(last)
}

/// Reads one reply and requires its code.
async fn reply(r: &mut (impl AsyncBufReadExt + Unpin), want: u16) -> Result<()> {
    let line = reply_line(r).await?;
    if !line.starts_with(&want.to_string()) {
        bail!("expected {want}, the server said {line:?}");
    }
    Ok(())
}

/// The first line of one (possibly multi-line) reply, without its line end.
async fn reply_line(r: &mut (impl AsyncBufReadExt + Unpin)) -> Result<String> {
    let mut first = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            bail!("the server closed the connection");
        }
        let line = line.trim_end().to_string();
        let last = line.as_bytes().get(3) != Some(&b'-');
        let first = first.get_or_insert(line);
        if last {
            return Ok(first.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_steps_name_the_binary_as_it_was_run() {
        let cargo = invocation_from(true, Some("target/release/sekisho"));
        assert!(
            cargo.starts_with("cargo run") && cargo.ends_with(" --"),
            "{cargo}"
        );
        assert_eq!(invocation_from(false, Some("sekisho")), "sekisho");
        assert_eq!(
            invocation_from(false, Some("./target/release/sekisho")),
            "./target/release/sekisho"
        );
        assert_eq!(
            invocation_from(false, Some("/opt/my tools/sekisho")),
            "sekisho"
        );
        assert_eq!(invocation_from(false, None), "sekisho");
    }
}
