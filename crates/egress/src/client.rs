//! The SMTP client that relays a message to a next hop, with per-recipient results.

use std::sync::Arc;
use std::time::Duration;

use tls::Stream;
use tls::rustls;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use crate::secrets::Credentials;
use crate::tls_report::ResultType;
use proto::route::{SmtpRoute, TlsPolicy};

/// Longest reply accepted from a server (all lines).
pub const MAX_REPLY: usize = 64 * 1024;

/// A reply from the next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Reply code.
    pub code: u16,
    /// Text lines joined with " / " (with the code in front, for traces and DSNs).
    pub text: String,
}

impl Reply {
    /// 2xx.
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.code)
    }
    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
}

/// Why a whole transaction failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Try again later (4xx, connection or TLS trouble, timeout).
    Temporary(String),
    /// Do not try again (5xx to MAIL or DATA, or a policy that cannot be met).
    Permanent(String),
    /// TLS could not be negotiated as the route asks (temporary; counted for TLS-RPT).
    Tls(crate::tls_report::ResultType, String),
}

impl Failure {
    /// The text.
    pub fn text(&self) -> &str {
        match self {
            Failure::Temporary(t) | Failure::Permanent(t) | Failure::Tls(_, t) => t,
        }
    }
    fn from_reply(r: &Reply) -> Self {
        if r.is_permanent() {
            Failure::Permanent(r.text.clone())
        } else {
            Failure::Temporary(r.text.clone())
        }
    }
}

/// A message to send.
pub struct Outgoing<'a> {
    /// Envelope sender.
    pub mail_from: &'a str,
    /// Recipients.
    pub rcpts: Vec<&'a str>,
    /// Content.
    pub body: &'a [u8],
    /// Needs 8BITMIME.
    pub eight_bit: bool,
    /// Needs SMTPUTF8.
    pub smtputf8: bool,
    /// REQUIRETLS (RFC 8689): the next hop must be inside TLS and support it.
    pub require_tls: bool,
}

#[derive(Debug, Default, Clone)]
struct Caps {
    pipelining: bool,
    size: Option<usize>,
    eight_bit: bool,
    smtputf8: bool,
    chunking: bool,
    starttls: bool,
    auth_plain: bool,
    requiretls: bool,
}

/// TLS client configurations, built once.
pub struct TlsClients {
    opportunistic: Arc<rustls::ClientConfig>,
    webpki: Arc<rustls::ClientConfig>,
}

impl TlsClients {
    /// Builds the shared configurations.
    pub fn new() -> Result<Self, tls::TlsError> {
        Ok(Self {
            opportunistic: tls::client_config(&tls::Verify::None)?,
            webpki: tls::client_config(&tls::Verify::WebPki)?,
        })
    }

    fn for_route(
        &self,
        route: &SmtpRoute,
        creds: &Credentials,
    ) -> Result<Arc<rustls::ClientConfig>, Failure> {
        if let Some(auth) = &creds.client_cert {
            let verify = match (route.tls, &route.ca) {
                (TlsPolicy::Required, Some(ca)) => tls::Verify::Ca(ca.clone()),
                (TlsPolicy::Required, None) => tls::Verify::WebPki,
                _ => tls::Verify::None,
            };
            return tls::client_config_auth(&verify, Some(auth))
                .map_err(|e| Failure::Temporary(format!("TLS setup: {e}")));
        }
        match (route.tls, &route.ca) {
            (TlsPolicy::Required, Some(ca)) => tls::client_config(&tls::Verify::Ca(ca.clone()))
                .map_err(|e| Failure::Temporary(format!("TLS setup: {e}"))),
            (TlsPolicy::Required, None) => Ok(self.webpki.clone()),
            _ => Ok(self.opportunistic.clone()),
        }
    }
}

/// An open SMTP client connection, ready for a transaction.
pub struct Client {
    io: BufReader<Stream>,
    caps: Caps,
    timeout: Duration,
    /// TLS version and cipher, if encrypted.
    pub tls: Option<String>,
    /// Our address on the connection.
    pub local: Option<std::net::IpAddr>,
    /// Why an opportunistic connection is in clear text, if it is.
    pub declined: Option<ResultType>,
}

fn temp(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::Temporary(format!("{what}: {e}"))
}

impl Client {
    /// Connects, reads the greeting, says EHLO, upgrades with STARTTLS per the route (with the
    /// client certificate of `creds`, if any) and authenticates with its SMTP AUTH credentials.
    pub async fn connect(
        route: &SmtpRoute,
        helo: &str,
        tls: &TlsClients,
        limit: Duration,
        creds: &Credentials,
    ) -> Result<Self, Failure> {
        let addr = (route.host.as_str(), route.port);
        let tcp = timeout(limit, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                Failure::Temporary(format!(
                    "connect to {}:{} timed out",
                    route.host, route.port
                ))
            })?
            .map_err(|e| temp(&format!("connect to {}:{}", route.host, route.port), e))?;
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().ok().map(|a| a.ip());
        let mut client = Self {
            io: BufReader::new(Stream::Plain(tcp)),
            caps: Caps::default(),
            timeout: limit,
            tls: None,
            local,
            declined: None,
        };
        let greeting = client.read_reply().await?;
        if !greeting.is_ok() {
            return Err(Failure::from_reply(&greeting));
        }
        client.ehlo(helo).await?;
        let want_tls = match route.tls {
            TlsPolicy::None => false,
            TlsPolicy::Opportunistic => client.caps.starttls,
            TlsPolicy::Required => {
                if !client.caps.starttls {
                    return Err(Failure::Tls(
                        ResultType::StarttlsNotSupported,
                        format!(
                            "TLS is required for {} but it does not offer STARTTLS",
                            route.host
                        ),
                    ));
                }
                true
            }
        };
        if route.tls == TlsPolicy::Opportunistic && !want_tls {
            client.declined = Some(ResultType::StarttlsNotSupported);
        }
        if want_tls {
            client = client.starttls(route, tls, creds).await?;
            client.ehlo(helo).await?;
        }
        if let Some(response) = creds.plain_response() {
            client.authenticate(route, &response).await?;
        }
        Ok(client)
    }

    /// SMTP AUTH PLAIN (RFC 4954) over the encrypted connection. A refusal defers the mail
    /// (like Postfix's soft bounce): wrong credentials are an operator's fix, not the sender's.
    async fn authenticate(&mut self, route: &SmtpRoute, response: &str) -> Result<(), Failure> {
        if self.tls.is_none() {
            return Err(Failure::Temporary(
                "refusing to send credentials without TLS".into(),
            ));
        }
        if !self.caps.auth_plain {
            return Err(Failure::Temporary(format!(
                "{} does not offer AUTH PLAIN; cannot authenticate",
                route.host
            )));
        }
        let line = zeroize::Zeroizing::new(format!("AUTH PLAIN {response}\r\n"));
        let r = self.command(line.as_bytes()).await?;
        if r.code != 235 {
            return Err(Failure::Temporary(format!(
                "authentication to {} failed: {}",
                route.host, r.text
            )));
        }
        Ok(())
    }

    async fn starttls(
        mut self,
        route: &SmtpRoute,
        tls: &TlsClients,
        creds: &Credentials,
    ) -> Result<Self, Failure> {
        let r = self.command(b"STARTTLS\r\n").await?;
        if r.code != 220 {
            return Err(Failure::Tls(
                ResultType::StarttlsNotSupported,
                format!("STARTTLS refused: {}", r.text),
            ));
        }
        let config = tls.for_route(route, creds)?;
        let name = tls::server_name(route.tls_name.as_deref().unwrap_or(&route.host))
            .map_err(|e| Failure::Tls(ResultType::ValidationFailure, format!("TLS: {e}")))?;
        let Stream::Plain(tcp) = self.io.into_inner() else {
            return Err(Failure::Temporary("STARTTLS on an encrypted stream".into()));
        };
        let tls_stream = timeout(self.timeout, TlsConnector::from(config).connect(name, tcp))
            .await
            .map_err(|_| {
                Failure::Tls(
                    ResultType::ValidationFailure,
                    "TLS handshake timed out".into(),
                )
            })?
            .map_err(|e| {
                Failure::Tls(
                    crate::tls_report::classify(&e),
                    format!("TLS handshake with {}: {e}", route.host),
                )
            })?;
        let stream = Stream::Client(Box::new(tls_stream));
        Ok(Self {
            tls: stream.tls_params().map(|(v, c)| format!("{v} {c}")),
            io: BufReader::new(stream),
            caps: Caps::default(),
            timeout: self.timeout,
            local: self.local,
            declined: None,
        })
    }

    async fn ehlo(&mut self, helo: &str) -> Result<(), Failure> {
        let (r, lines) = self
            .command_lines(format!("EHLO {helo}\r\n").as_bytes())
            .await?;
        if !r.is_ok() {
            let r = self.command(format!("HELO {helo}\r\n").as_bytes()).await?;
            if !r.is_ok() {
                return Err(Failure::from_reply(&r));
            }
            self.caps = Caps::default();
            return Ok(());
        }
        let mut caps = Caps::default();
        for line in lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let kw = words.next().unwrap_or("").to_ascii_uppercase();
            match kw.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "8BITMIME" => caps.eight_bit = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "CHUNKING" => caps.chunking = true,
                "STARTTLS" => caps.starttls = true,
                "REQUIRETLS" => caps.requiretls = true,
                "AUTH" => caps.auth_plain = words.any(|m| m.eq_ignore_ascii_case("PLAIN")),
                "SIZE" => caps.size = words.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0),
                _ => {}
            }
        }
        self.caps = caps;
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        timeout(self.timeout, async {
            let w = self.io.get_mut();
            w.write_all(bytes).await?;
            w.flush().await
        })
        .await
        .map_err(|_| Failure::Temporary("write timed out".into()))?
        .map_err(|e| temp("write", e))
    }

    async fn command(&mut self, line: &[u8]) -> Result<Reply, Failure> {
        Ok(self.command_lines(line).await?.0)
    }

    async fn command_lines(&mut self, line: &[u8]) -> Result<(Reply, Vec<String>), Failure> {
        self.write(line).await?;
        self.read_reply_lines().await
    }

    async fn read_reply(&mut self) -> Result<Reply, Failure> {
        Ok(self.read_reply_lines().await?.0)
    }

    /// Reads one (possibly multi-line) reply.
    async fn read_reply_lines(&mut self) -> Result<(Reply, Vec<String>), Failure> {
        let mut lines: Vec<String> = Vec::new();
        let mut total = 0;
        let mut raw = Vec::with_capacity(128);
        loop {
            raw.clear();
            let n = timeout(
                self.timeout,
                (&mut self.io)
                    .take((MAX_REPLY - total + 1) as u64)
                    .read_until(b'\n', &mut raw),
            )
            .await
            .map_err(|_| Failure::Temporary("timed out waiting for a reply".into()))?
            .map_err(|e| temp("read", e))?;
            if n == 0 {
                return Err(Failure::Temporary(
                    "connection closed by the next hop".into(),
                ));
            }
            total += n;
            if total > MAX_REPLY {
                return Err(Failure::Temporary("reply too long".into()));
            }
            let line = String::from_utf8_lossy(&raw)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (200..600).contains(c))
                .ok_or_else(|| Failure::Temporary(format!("malformed reply {line:?}")))?;
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if last {
                let text = format!("{code} {}", lines.join(" / "));
                return Ok((Reply { code, text }, lines));
            }
        }
    }

    /// Sends one message. Returns the final reply for each recipient (same order), or a
    /// failure of the whole transaction.
    pub async fn send(&mut self, msg: &Outgoing<'_>) -> Result<Vec<Reply>, Failure> {
        if let Some(max) = self.caps.size
            && msg.body.len() > max
        {
            return Err(Failure::Permanent(format!(
                "552 5.3.4 message size {} exceeds the next hop's limit of {max}",
                msg.body.len()
            )));
        }
        if msg.smtputf8 && !self.caps.smtputf8 {
            return Err(Failure::Permanent(
                "553 5.6.7 the next hop does not support SMTPUTF8".into(),
            ));
        }
        if msg.require_tls && (self.tls.is_none() || !self.caps.requiretls) {
            return Err(Failure::Permanent(
                "550 5.7.30 REQUIRETLS support required: the next hop does not offer REQUIRETLS over TLS".into(),
            ));
        }
        let mut mail = format!("MAIL FROM:<{}>", msg.mail_from);
        if self.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", msg.body.len()));
        }
        if msg.eight_bit && self.caps.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if msg.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        if msg.require_tls {
            mail.push_str(" REQUIRETLS");
        }
        mail.push_str("\r\n");
        let rcpt_lines: Vec<String> = msg
            .rcpts
            .iter()
            .map(|r| format!("RCPT TO:<{r}>\r\n"))
            .collect();
        let data_cmd = if self.caps.chunking {
            format!("BDAT {} LAST\r\n", msg.body.len())
        } else {
            "DATA\r\n".to_string()
        };

        let (mail_reply, rcpt_replies) = if self.caps.pipelining {
            // One write for MAIL and every RCPT (RFC 2920); DATA waits for their replies so
            // that a message is never sent when no recipient was accepted.
            let mut batch = mail.clone().into_bytes();
            for l in &rcpt_lines {
                batch.extend_from_slice(l.as_bytes());
            }
            self.write(&batch).await?;
            let m = self.read_reply().await?;
            let mut rs = Vec::with_capacity(rcpt_lines.len());
            for _ in &rcpt_lines {
                rs.push(self.read_reply().await?);
            }
            (m, rs)
        } else {
            let m = self.command(mail.as_bytes()).await?;
            let mut rs = Vec::new();
            if m.is_ok() {
                for l in &rcpt_lines {
                    rs.push(self.command(l.as_bytes()).await?);
                }
            }
            (m, rs)
        };
        if !mail_reply.is_ok() {
            self.reset().await;
            return Err(Failure::from_reply(&mail_reply));
        }
        if !rcpt_replies.iter().any(Reply::is_ok) {
            self.reset().await;
            return Ok(rcpt_replies);
        }
        let final_reply = if self.caps.chunking {
            let mut chunk = data_cmd.into_bytes();
            chunk.extend_from_slice(msg.body);
            self.write(&chunk).await?;
            self.read_reply().await?
        } else {
            let r = self.command(data_cmd.as_bytes()).await?;
            if r.code != 354 {
                self.reset().await;
                return Err(Failure::from_reply(&r));
            }
            self.write(&dot_stuff(msg.body)).await?;
            self.read_reply().await?
        };
        Ok(rcpt_replies
            .into_iter()
            .map(|r| if r.is_ok() { final_reply.clone() } else { r })
            .collect())
    }

    async fn reset(&mut self) {
        let _ = self.command(b"RSET\r\n").await;
    }

    /// Says QUIT (best effort).
    pub async fn quit(mut self) {
        let _ = timeout(Duration::from_secs(2), async {
            let _ = self.write(b"QUIT\r\n").await;
            let _ = self.read_reply().await;
        })
        .await;
    }
}

/// Dot-stuffs a body for DATA and appends the terminator (adding a final CRLF if missing).
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64 + 5);
    let mut line_start = true;
    for &b in body {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !body.is_empty() && !body.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::dot_stuff;

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n.\r\n"), b"..a\r\nb\r\n..\r\n.\r\n");
        assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
    }
}
