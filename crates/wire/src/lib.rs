//! Sans-IO SMTP server session for Sekisho's MX ingress.
//!
//! This crate is the first stage of the mail path (**wire** → ingress → spool → egress). It
//! knows every protocol rule and every limit of an SMTP server session but performs no I/O:
//! the driver (the `ingress` crate) feeds it bytes with [`Session::feed`], calls
//! [`Session::advance`] and writes [`Session::take_output`] to the socket. When a message is
//! complete the session yields [`Event::Message`] and pauses until the driver reports the spool
//! commit with [`Session::queued`]; only then is the `250` written.
//!
//! # Layout
//! - [`session`]: the state machine ([`Session`], [`Event`], [`Transaction`]).
//! - [`data`]: the DATA body receiver (dot-unstuffing, CRLF.CRLF, bare CR/LF detection).
//! - [`limits`]: every limit, with its default.
//! - [`reply`]: reply codes with enhanced status codes.
//!
//! # Security
//! This code parses bytes from anonymous Internet clients. Every buffer is bounded by a
//! [`Limits`] field; only `<CRLF>.<CRLF>` ends DATA (SMTP smuggling defence); bytes pipelined
//! after `STARTTLS` are discarded (command injection defence, CVE-2011-0411).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod data;
pub mod limits;
pub mod reply;
pub mod session;

pub use limits::{BareLineEndings, Limits};
pub use reply::Reply;
pub use session::{
    Event, PeerInfo, RcptVerdict, RecipientPolicy, Session, SessionConfig, TlsInfo, Transaction,
};
