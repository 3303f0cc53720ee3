//! The SMTP server session state machine.

use std::net::IpAddr;
use std::sync::Arc;

use smtp_proto::{Error as ProtoError, Request};

use crate::data::{ContentDefects, ContentSink, DataReceiver};
use crate::limits::Limits;
use crate::reply::Reply;

/// What the recipient policy says about one `RCPT TO` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptVerdict {
    /// Accepted for the tenant with this id.
    Accept {
        /// The tenant that owns the recipient's domain.
        tenant: i64,
    },
    /// The domain is a tenant's, but the mailbox is not listed: `550 5.1.1`.
    UnknownUser,
    /// Not a domain Sekisho serves: `550 5.7.1` (relay denied).
    RelayDenied,
    /// The directory cannot answer right now: `451 4.3.0`.
    TempFail,
}

/// Answers whether a recipient is accepted. Implementations are in-memory and synchronous
/// (a snapshot of the directory), which keeps the session free of I/O.
pub trait RecipientPolicy: Send + Sync {
    /// Verdict for one recipient address (as given, without angle brackets).
    fn check(&self, rcpt: &str) -> RcptVerdict;

    /// The tenant whose own mail server this client is, relaying `mail_from`'s mail outbound
    /// (`None`: the client relays for nobody, and recipients outside the tenants are refused).
    fn relay_tenant(&self, _client: IpAddr, _mail_from: &str) -> Option<i64> {
        None
    }
}

/// Static configuration shared by all sessions of a listener.
pub struct SessionConfig {
    /// Host name used in the greeting, EHLO reply and `Received:`.
    pub hostname: String,
    /// The limits.
    pub limits: Limits,
    /// Whether STARTTLS can be offered (a certificate is configured).
    pub starttls: bool,
    /// Recipient checks.
    pub recipients: Arc<dyn RecipientPolicy>,
}

/// The client's connection, as the listener saw it.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Client IP address.
    pub ip: IpAddr,
    /// Client port.
    pub port: u16,
}

/// TLS parameters of the session after STARTTLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// Protocol version, e.g. `TLSv1.3`.
    pub version: String,
    /// Cipher suite name.
    pub cipher: String,
}

/// A complete message transaction, handed to the driver to be spooled.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// Envelope sender; empty for the null reverse-path.
    pub mail_from: String,
    /// Accepted recipients with their tenant ids.
    pub rcpts: Vec<(String, i64)>,
    /// Message content as received (CRLF line endings, dot-unstuffed).
    pub body: Vec<u8>,
    /// `BODY=8BITMIME` was given.
    pub eight_bit: bool,
    /// `SMTPUTF8` was given.
    pub smtputf8: bool,
    /// `REQUIRETLS` was given (RFC 8689): every hop onwards must be TLS with a verified
    /// certificate and itself support REQUIRETLS, or the message is returned.
    pub require_tls: bool,
    /// The HELO/EHLO name.
    pub helo: String,
    /// `ESMTP`, `ESMTPS`, `SMTP`, … as in RFC 3848 for `Received:` `with`.
    pub protocol: &'static str,
    /// TLS parameters, if the session is encrypted.
    pub tls: Option<TlsInfo>,
    /// Outbound mail relayed for this tenant: its recipients are outside every tenant
    /// (tenant id 0) and the client is one of the tenant's own mail servers.
    pub relay_for: Option<i64>,
}

/// What the driver must do next.
#[derive(Debug)]
pub enum Event {
    /// All buffered input is processed: write the pending output, then read more.
    NeedInput,
    /// Write pending output, then upgrade the connection to TLS and call
    /// [`Session::tls_started`].
    StartTls,
    /// A message is complete. Commit it, then call [`Session::queued`]; the session produces
    /// no further event until then.
    Message(Box<Transaction>),
    /// Write pending output and close the connection.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Greeting {
    None,
    Helo,
    Ehlo,
}

/// Where the session is in its command sequence.
enum Phase {
    /// Reading command lines.
    Command,
    /// Inside DATA.
    Data(Box<DataReceiver>),
    /// Inside a BDAT chunk with this many octets left.
    Bdat { left: usize, last: bool },
    /// Discarding a BDAT chunk after a failure.
    BdatDiscard { left: usize },
    /// Discarding the rest of an overlong command line.
    DiscardLine,
    /// Waiting for the driver to report the spool commit.
    AwaitQueue,
    /// Closed: the driver must close.
    Closed,
}

struct Envelope {
    mail_from: String,
    eight_bit: bool,
    smtputf8: bool,
    require_tls: bool,
    rcpts: Vec<(String, i64)>,
    bdat: Option<ContentSink>,
    /// The tenant the client may relay this sender's mail for.
    relay: Option<i64>,
}

/// One SMTP server session. See the crate docs for how a driver uses it.
pub struct Session {
    config: Arc<SessionConfig>,
    peer: PeerInfo,
    input: Vec<u8>,
    pos: usize,
    output: Vec<u8>,
    phase: Phase,
    helo: Greeting,
    helo_name: String,
    tls: Option<TlsInfo>,
    envelope: Option<Envelope>,
    commands: usize,
    errors: usize,
    messages: usize,
}

impl Session {
    /// A new session; writes the `220` greeting to the output.
    pub fn new(config: Arc<SessionConfig>, peer: PeerInfo) -> Self {
        let mut s = Self {
            config,
            peer,
            input: Vec::new(),
            pos: 0,
            output: Vec::with_capacity(512),
            phase: Phase::Command,
            helo: Greeting::None,
            helo_name: String::new(),
            tls: None,
            envelope: None,
            commands: 0,
            errors: 0,
            messages: 0,
        };
        let greeting = format!("{} ESMTP Sekisho", s.config.hostname);
        s.output
            .extend_from_slice(format!("220 {greeting}\r\n").as_bytes());
        s
    }

    /// The client's connection.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// Messages accepted in this session so far.
    pub fn messages(&self) -> usize {
        self.messages
    }

    /// Appends bytes read from the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        // Drop what was consumed, so the buffer holds at most one partial line (or chunk)
        // plus the new bytes.
        if self.pos > 0 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// Takes the bytes to write to the client.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// True if output is waiting to be written.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Writes a reply that the driver decided on (timeouts, shutdown, connection limits)
    /// and closes the session.
    pub fn close_with(&mut self, reply: Reply) {
        reply.write_to(&mut self.output);
        self.phase = Phase::Closed;
    }

    /// Reports that the connection is now TLS; the client must say EHLO again.
    pub fn tls_started(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        self.helo = Greeting::None;
        self.envelope = None;
        self.input.clear();
        self.pos = 0;
    }

    /// Reports the outcome of committing the transaction of the last [`Event::Message`]:
    /// `Ok(queue_id)` once it is durable, `Err(reply)` (a 4xx/5xx) otherwise.
    pub fn queued(&mut self, result: Result<String, Reply>) {
        debug_assert!(matches!(self.phase, Phase::AwaitQueue));
        self.phase = Phase::Command;
        match result {
            Ok(id) => {
                self.messages += 1;
                self.reply(Reply::new(250, "2.0.0", format!("Ok: queued as {id}")));
            }
            Err(reply) => self.reply(reply),
        }
    }

    /// Processes buffered input until an event needs the driver.
    pub fn advance(&mut self) -> Event {
        loop {
            match &mut self.phase {
                Phase::Closed => return Event::Close,
                Phase::AwaitQueue => return Event::NeedInput,
                Phase::Command => {
                    let rest = &self.input[self.pos..];
                    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                        if rest.len() >= self.config.limits.max_command_line {
                            self.pos = self.input.len();
                            self.phase = Phase::DiscardLine;
                            self.line_too_long();
                            continue;
                        }
                        return Event::NeedInput;
                    };
                    if nl + 1 > self.config.limits.max_command_line {
                        self.pos += nl + 1;
                        self.line_too_long();
                        continue;
                    }
                    let line = self.input[self.pos..self.pos + nl + 1].to_vec();
                    self.pos += nl + 1;
                    if let Some(event) = self.command(&line) {
                        return event;
                    }
                }
                Phase::DiscardLine => {
                    let rest = &self.input[self.pos..];
                    match rest.iter().position(|&b| b == b'\n') {
                        Some(nl) => {
                            self.pos += nl + 1;
                            self.phase = Phase::Command;
                        }
                        None => {
                            self.pos = self.input.len();
                            return Event::NeedInput;
                        }
                    }
                }
                Phase::Data(receiver) => {
                    let (used, done) = receiver.ingest(&self.input[self.pos..]);
                    self.pos += used;
                    if !done {
                        return Event::NeedInput;
                    }
                    let Phase::Data(receiver) = std::mem::replace(&mut self.phase, Phase::Command)
                    else {
                        unreachable!("phase checked above")
                    };
                    let (body, defects) = receiver.finish();
                    if let Some(event) = self.content_complete(body, defects) {
                        return event;
                    }
                }
                Phase::Bdat { left, last } => {
                    let rest = &self.input[self.pos..];
                    let take = rest.len().min(*left);
                    let last = *last;
                    *left -= take;
                    let done = *left == 0;
                    if let Some(sink) = self.envelope.as_mut().and_then(|e| e.bdat.as_mut()) {
                        sink.push(&self.input[self.pos..self.pos + take]);
                    }
                    self.pos += take;
                    if !done {
                        return Event::NeedInput;
                    }
                    self.phase = Phase::Command;
                    if let Some(event) = self.bdat_chunk_complete(last) {
                        return event;
                    }
                }
                Phase::BdatDiscard { left } => {
                    let take = (self.input.len() - self.pos).min(*left);
                    *left -= take;
                    self.pos += take;
                    if *left > 0 {
                        return Event::NeedInput;
                    }
                    self.phase = Phase::Command;
                }
            }
        }
    }

    fn line_too_long(&mut self) {
        let max = self.config.limits.max_command_line;
        self.reply(Reply::new(
            500,
            "5.5.2",
            format!("Line too long (limit {max} octets)"),
        ));
    }

    /// Writes a reply, counting errors; closes past the error limit.
    fn reply(&mut self, reply: Reply) {
        reply.write_to(&mut self.output);
        if reply.is_error() {
            self.errors += 1;
            if self.errors > self.config.limits.max_errors && !matches!(self.phase, Phase::Closed) {
                self.close_with(Reply::new(
                    421,
                    "4.7.0",
                    "Too many errors, closing connection",
                ));
            }
        }
    }

    fn command(&mut self, line: &[u8]) -> Option<Event> {
        self.commands += 1;
        if self.commands > self.config.limits.max_commands {
            self.close_with(Reply::new(
                421,
                "4.7.0",
                "Too many commands, closing connection",
            ));
            return Some(Event::Close);
        }
        let parsed = Request::parse(&mut line.iter());
        let request = match parsed {
            Ok(request) => request,
            Err(err) => {
                self.reply(protocol_error(&err));
                return self.closed_event();
            }
        };
        let event = match request {
            Request::Ehlo { host } => {
                self.hello(Greeting::Ehlo, &host);
                None
            }
            Request::Helo { host } => {
                self.hello(Greeting::Helo, &host);
                None
            }
            Request::Lhlo { .. } => {
                self.reply(Reply::new(500, "5.5.1", "LHLO is for LMTP; use EHLO"));
                None
            }
            Request::StartTls => self.starttls(),
            Request::Mail { from } => {
                self.mail(
                    &from.address,
                    from.flags,
                    from.size,
                    from.env_id.is_some(),
                    from.trans_id.is_some(),
                );
                None
            }
            Request::Rcpt { to } => {
                self.rcpt(&to.address, to.orcpt.is_some() || to.flags != 0);
                None
            }
            Request::Data => {
                self.data();
                None
            }
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size, is_last),
            Request::Rset => {
                self.envelope = None;
                self.reply(Reply::new(250, "2.0.0", "Ok"));
                None
            }
            Request::Noop { .. } => {
                self.reply(Reply::new(250, "2.0.0", "Ok"));
                None
            }
            Request::Vrfy { .. } => {
                self.reply(Reply::new(
                    252,
                    "2.5.0",
                    "Cannot VRFY user, but will accept message and attempt delivery",
                ));
                None
            }
            Request::Help { .. } => {
                self.reply(Reply::new(
                    214,
                    "2.0.0",
                    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS",
                ));
                None
            }
            Request::Quit => {
                self.close_with(Reply::new(221, "2.0.0", "Bye"));
                Some(Event::Close)
            }
            Request::Expn { .. }
            | Request::Auth { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => {
                let name = line_command_name(line);
                self.reply(Reply::new(502, "5.5.1", format!("{name} not implemented")));
                None
            }
        };
        event.or_else(|| self.closed_event())
    }

    fn closed_event(&self) -> Option<Event> {
        matches!(self.phase, Phase::Closed).then_some(Event::Close)
    }

    fn hello(&mut self, kind: Greeting, host: &str) {
        if host.is_empty() {
            self.reply(Reply::new(501, "5.5.4", "Syntax: EHLO hostname"));
            return;
        }
        self.helo = kind;
        self.helo_name = sanitize(host, 255);
        self.envelope = None;
        let name = &self.config.hostname;
        let ip = self.peer.ip;
        if kind == Greeting::Helo {
            let text = format!("{name} Hello {} [{ip}]", self.helo_name);
            self.reply(Reply::new(250, "2.0.0", text));
            return;
        }
        // EHLO lines carry no enhanced status code (RFC 2034 section 3).
        let mut lines = vec![format!("{name} Hello {} [{ip}]", self.helo_name)];
        lines.push("PIPELINING".into());
        lines.push(format!("SIZE {}", self.config.limits.max_message_size));
        lines.push("8BITMIME".into());
        lines.push("SMTPUTF8".into());
        lines.push("CHUNKING".into());
        lines.push("ENHANCEDSTATUSCODES".into());
        if self.config.starttls && self.tls.is_none() {
            lines.push("STARTTLS".into());
        }
        // Offered only inside TLS (RFC 8689 §4.1: it may be used only there).
        if self.tls.is_some() {
            lines.push("REQUIRETLS".into());
        }
        lines.push("HELP".into());
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            self.output
                .extend_from_slice(format!("250{sep}{line}\r\n").as_bytes());
        }
    }

    fn starttls(&mut self) -> Option<Event> {
        if self.tls.is_some() {
            self.reply(Reply::new(503, "5.5.1", "TLS already active"));
            return None;
        }
        if !self.config.starttls {
            self.reply(Reply::new(502, "5.5.1", "STARTTLS not available"));
            return None;
        }
        if self.helo != Greeting::Ehlo {
            self.reply(Reply::new(503, "5.5.1", "Send EHLO first"));
            return None;
        }
        self.reply(Reply::new(220, "2.0.0", "Ready to start TLS"));
        // Anything pipelined after STARTTLS was sent in clear text: drop it.
        self.input.clear();
        self.pos = 0;
        Some(Event::StartTls)
    }

    fn mail(&mut self, address: &str, flags: u64, size: usize, envid: bool, transid: bool) {
        if self.helo == Greeting::None {
            self.reply(Reply::new(503, "5.5.1", "Send EHLO/HELO first"));
            return;
        }
        if self.envelope.is_some() {
            self.reply(Reply::new(503, "5.5.1", "Nested MAIL command"));
            return;
        }
        if flags & smtp_proto::MAIL_BODY_BINARYMIME != 0 || envid || transid {
            self.reply(Reply::new(555, "5.5.4", "Unsupported MAIL parameter"));
            return;
        }
        let ehlo_only = smtp_proto::MAIL_BODY_8BITMIME | smtp_proto::MAIL_SMTPUTF8;
        if flags & ehlo_only != 0 && self.helo != Greeting::Ehlo {
            self.reply(Reply::new(555, "5.5.4", "Parameters need EHLO"));
            return;
        }
        if flags & smtp_proto::MAIL_REQUIRETLS != 0 && self.tls.is_none() {
            self.reply(Reply::new(
                530,
                "5.7.10",
                "REQUIRETLS needs a TLS session: STARTTLS first",
            ));
            return;
        }
        let max = self.config.limits.max_message_size;
        if size > max {
            self.reply(Reply::new(
                552,
                "5.3.4",
                format!("Message size exceeds fixed limit of {max} octets"),
            ));
            return;
        }
        if !address.is_empty() && !valid_mailbox(address) {
            self.reply(Reply::new(553, "5.1.7", "Invalid sender address"));
            return;
        }
        self.envelope = Some(Envelope {
            mail_from: address.to_owned(),
            eight_bit: flags & smtp_proto::MAIL_BODY_8BITMIME != 0,
            smtputf8: flags & smtp_proto::MAIL_SMTPUTF8 != 0,
            require_tls: flags & smtp_proto::MAIL_REQUIRETLS != 0,
            rcpts: Vec::new(),
            bdat: None,
            relay: self.config.recipients.relay_tenant(self.peer.ip, address),
        });
        self.reply(Reply::new(250, "2.1.0", "Sender ok"));
    }

    fn rcpt(&mut self, address: &str, dsn_params: bool) {
        let Some(envelope) = self.envelope.as_ref() else {
            self.reply(Reply::new(503, "5.5.1", "Need MAIL before RCPT"));
            return;
        };
        if dsn_params {
            self.reply(Reply::new(555, "5.5.4", "Unsupported RCPT parameter"));
            return;
        }
        if envelope.rcpts.len() >= self.config.limits.max_recipients {
            self.reply(Reply::new(452, "4.5.3", "Too many recipients"));
            return;
        }
        if !valid_mailbox(address) {
            self.reply(Reply::new(553, "5.1.3", "Invalid recipient address"));
            return;
        }
        let verdict = match (self.config.recipients.check(address), envelope.relay) {
            // Outbound: a tenant's own server sends its users' mail to the world.
            (RcptVerdict::RelayDenied, Some(_)) => RcptVerdict::Accept { tenant: 0 },
            (v, _) => v,
        };
        let reply = match verdict {
            RcptVerdict::Accept { tenant }
                if envelope.rcpts.first().is_some_and(|(_, t)| *t != tenant) =>
            {
                // One tenant per transaction: each tenant's policy (and verdict) applies to its
                // own copy, with no backscatter. The client sends these in another transaction
                // (RFC 5321 §4.5.3.1.10 — "452 too many recipients" is retried, never bounced).
                Reply::new(
                    452,
                    "4.5.3",
                    "Recipient of another organisation: send it in a separate transaction",
                )
            }
            RcptVerdict::Accept { tenant } => {
                if let Some(envelope) = self.envelope.as_mut() {
                    let duplicate = envelope
                        .rcpts
                        .iter()
                        .any(|(a, _)| a.eq_ignore_ascii_case(address));
                    if !duplicate {
                        envelope.rcpts.push((address.to_owned(), tenant));
                    }
                }
                Reply::new(250, "2.1.5", "Recipient ok")
            }
            RcptVerdict::UnknownUser => {
                Reply::new(550, "5.1.1", "Recipient address rejected: user unknown")
            }
            RcptVerdict::RelayDenied => Reply::new(550, "5.7.1", "Relay access denied"),
            RcptVerdict::TempFail => {
                Reply::new(451, "4.3.0", "Recipient check failed, try again later")
            }
        };
        self.reply(reply);
    }

    fn transaction_ready(&mut self) -> bool {
        match &self.envelope {
            None => {
                self.reply(Reply::new(503, "5.5.1", "Need MAIL command"));
                false
            }
            Some(e) if e.rcpts.is_empty() => {
                self.reply(Reply::new(554, "5.5.1", "No valid recipients"));
                false
            }
            Some(_) => true,
        }
    }

    fn new_sink(&self) -> ContentSink {
        let limits = &self.config.limits;
        ContentSink::new(
            limits.max_message_size,
            limits.max_body_line,
            limits.bare_line_endings,
            8192,
        )
    }

    fn data(&mut self) {
        if self.envelope.as_ref().is_some_and(|e| e.bdat.is_some()) {
            self.reply(Reply::new(503, "5.5.1", "DATA not allowed after BDAT"));
            return;
        }
        if !self.transaction_ready() {
            return;
        }
        self.reply(Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"));
        self.phase = Phase::Data(Box::new(DataReceiver::new(self.new_sink())));
    }

    fn bdat(&mut self, size: usize, last: bool) -> Option<Event> {
        let ready = match &self.envelope {
            Some(e) if e.bdat.is_some() => true,
            _ => {
                // Errors must still consume the chunk (RFC 3030 section 2).
                let ok = self.transaction_ready();
                if ok {
                    let sink = self.new_sink();
                    if let Some(e) = self.envelope.as_mut() {
                        e.bdat = Some(sink);
                    }
                }
                ok
            }
        };
        self.phase = if ready {
            Phase::Bdat { left: size, last }
        } else {
            Phase::BdatDiscard { left: size }
        };
        if ready && size == 0 {
            // A zero-length chunk completes at once.
            self.phase = Phase::Command;
            return self.bdat_chunk_complete(last);
        }
        None
    }

    fn bdat_chunk_complete(&mut self, last: bool) -> Option<Event> {
        let envelope = self.envelope.as_mut()?;
        let sink = envelope.bdat.as_ref()?;
        if sink.defects.too_big {
            self.envelope = None;
            self.reply(size_reply(self.config.limits.max_message_size));
            return self.closed_event();
        }
        if !last {
            let len = sink.len();
            self.reply(Reply::new(250, "2.0.0", format!("{len} octets received")));
            return None;
        }
        let sink = envelope.bdat.take()?;
        let (body, defects) = sink.finish();
        self.content_complete(body, defects)
    }

    fn content_complete(&mut self, body: Vec<u8>, defects: ContentDefects) -> Option<Event> {
        let envelope = self.envelope.take()?;
        if !defects.is_clean() {
            let reply = if defects.too_big {
                size_reply(self.config.limits.max_message_size)
            } else if defects.line_too_long {
                let max = self.config.limits.max_body_line;
                Reply::new(
                    550,
                    "5.6.0",
                    format!("Message rejected: a line is longer than {max} octets"),
                )
            } else {
                Reply::new(
                    550,
                    "5.6.0",
                    "Message rejected: bare CR or LF line ending (use CRLF)",
                )
            };
            self.reply(reply);
            return self.closed_event();
        }
        self.phase = Phase::AwaitQueue;
        let protocol = match (self.helo, self.tls.is_some()) {
            (Greeting::Ehlo, true) => "ESMTPS",
            (Greeting::Ehlo, false) => "ESMTP",
            (_, true) => "SMTPS",
            _ => "SMTP",
        };
        let relay_for = envelope
            .relay
            .filter(|_| envelope.rcpts.first().is_some_and(|(_, t)| *t == 0));
        Some(Event::Message(Box::new(Transaction {
            relay_for,
            mail_from: envelope.mail_from,
            rcpts: envelope.rcpts,
            body,
            eight_bit: envelope.eight_bit,
            smtputf8: envelope.smtputf8,
            require_tls: envelope.require_tls,
            helo: self.helo_name.clone(),
            protocol,
            tls: self.tls.clone(),
        })))
    }
}

fn size_reply(max: usize) -> Reply {
    Reply::new(
        552,
        "5.3.4",
        format!("Message size exceeds fixed limit of {max} octets"),
    )
}

fn protocol_error(err: &ProtoError) -> Reply {
    match err {
        ProtoError::UnknownCommand => Reply::new(500, "5.5.1", "Command unrecognized"),
        ProtoError::InvalidSenderAddress => Reply::new(501, "5.1.7", "Invalid sender address"),
        ProtoError::InvalidRecipientAddress => {
            Reply::new(501, "5.1.3", "Invalid recipient address")
        }
        ProtoError::SyntaxError { syntax } => {
            Reply::new(501, "5.5.2", format!("Syntax error, expected: {syntax}"))
        }
        ProtoError::InvalidParameter { param } => {
            Reply::new(501, "5.5.4", format!("Invalid parameter {param}"))
        }
        ProtoError::UnsupportedParameter { param } => Reply::new(
            555,
            "5.5.4",
            format!("Unsupported parameter {}", sanitize(param, 64)),
        ),
        ProtoError::ResponseTooLong => Reply::new(500, "5.5.2", "Line too long"),
        ProtoError::NeedsMoreData { .. } | ProtoError::InvalidResponse { .. } => {
            Reply::new(500, "5.5.2", "Syntax error")
        }
    }
}

/// The first word of a command line, for error texts.
fn line_command_name(line: &[u8]) -> String {
    let word: Vec<u8> = line
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric())
        .take(16)
        .copied()
        .collect();
    String::from_utf8_lossy(&word).to_ascii_uppercase()
}

/// Keeps printable characters only, up to `max` of them (for names echoed into replies and
/// headers).
fn sanitize(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// A mailbox we can route: `local@domain` with a non-empty domain and no control characters.
fn valid_mailbox(address: &str) -> bool {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && address.len() <= 320
                && !address.chars().any(|c| c.is_control() || c == ' ')
        }
        None => false,
    }
}
