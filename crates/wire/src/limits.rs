//! Limits of one SMTP session. Every one is explicit, configurable, and crossed by a test.

/// What to do with a bare `LF` or bare `CR` inside message content.
///
/// Bare line endings are how SMTP smuggling works: a downstream server that ends DATA at
/// `<LF>.<LF>` would see a second, forged message. Sekisho never ends DATA there itself; this
/// policy decides whether such content is refused or repaired before it is relayed onward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareLineEndings {
    /// Refuse the message with `550 5.6.0` after its end (the default).
    Reject,
    /// Rewrite each bare `LF` or `CR` to `CRLF` (no line is ever ended at a bare LF for
    /// dot-handling, so the rewritten content cannot end the downstream transaction early).
    Normalize,
}

/// Limits of one SMTP session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line, CRLF included (RFC 5321 minimum is 512).
    pub max_command_line: usize,
    /// Longest line of message content, CRLF excluded.
    pub max_body_line: usize,
    /// Largest message in octets (advertised with SIZE and enforced while receiving).
    pub max_message_size: usize,
    /// Recipients per transaction; more get `452 4.5.3`.
    pub max_recipients: usize,
    /// Commands per session; past it the session is closed with `421 4.7.0`.
    pub max_commands: usize,
    /// Errors (4xx/5xx replies) per session; past it the session is closed with `421 4.7.0`.
    pub max_errors: usize,
    /// Policy for bare CR / LF inside content.
    pub bare_line_endings: BareLineEndings,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_command_line: 2048,
            max_body_line: 64 * 1024,
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 1000,
            max_commands: 10_000,
            max_errors: 20,
            bare_line_endings: BareLineEndings::Reject,
        }
    }
}
