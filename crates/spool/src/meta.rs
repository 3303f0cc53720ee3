//! What the queue knows of a message besides its content, and its binary encoding.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::codec::{CodecError, Reader, Writer};

/// Delivery status of one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RcptStatus {
    /// Not delivered yet.
    Pending,
    /// Delivered (the next hop answered 250).
    Delivered,
    /// Failed permanently (bounced, or the message was deleted).
    Failed,
}

/// One recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RcptState {
    /// The address.
    pub address: String,
    /// The tenant it belongs to.
    pub tenant: i64,
    /// Its delivery status.
    pub status: RcptStatus,
    /// The last reply or error seen for it.
    pub last_reply: String,
}

impl RcptState {
    /// A recipient not yet tried.
    pub fn pending(address: impl Into<String>, tenant: i64) -> Self {
        Self {
            address: address.into(),
            tenant,
            status: RcptStatus::Pending,
            last_reply: String::new(),
        }
    }
}

/// The envelope of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Envelope {
    /// Envelope sender; empty for the null sender.
    pub mail_from: String,
    /// Recipients and their status.
    pub rcpts: Vec<RcptState>,
    /// The client declared 8-bit content.
    pub eight_bit: bool,
    /// The client declared SMTPUTF8.
    pub smtputf8: bool,
    /// Outbound: relayed for the recipients' tenant (their `tenant`, the sender's) to
    /// addresses outside every tenant, delivered by the external route.
    pub outbound: bool,
    /// The client asked for REQUIRETLS (RFC 8689): delivered only over verified TLS to a
    /// next hop that supports it, or returned.
    pub require_tls: bool,
}

/// Queue states (Postfix's names). "Incoming" is a message between DATA and the group commit;
/// it is not in the index until it is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueState {
    /// Ready for delivery (or being delivered).
    Active,
    /// Waiting for its next retry time.
    Deferred,
    /// Held by an operator or policy; not delivered until released.
    Hold,
    /// Its content frame is damaged or missing; kept for the operator to inspect.
    Corrupt,
}

impl QueueState {
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Active => 0,
            Self::Deferred => 1,
            Self::Hold => 2,
            Self::Corrupt => 3,
        }
    }
    pub(crate) fn from_code(c: u8) -> Result<Self, CodecError> {
        Ok(match c {
            0 => Self::Active,
            1 => Self::Deferred,
            2 => Self::Hold,
            3 => Self::Corrupt,
            t => return Err(CodecError::Tag(t)),
        })
    }
}

/// Everything about a queued message except its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageMeta {
    /// Queue id (also the trace id).
    pub id: String,
    /// The envelope.
    pub envelope: Envelope,
    /// Arrival time, Unix seconds.
    pub received_at: i64,
    /// State.
    pub state: QueueState,
    /// Delivery attempts made.
    pub attempts: u32,
    /// Earliest next attempt, Unix seconds.
    pub next_attempt: i64,
    /// Content size in octets.
    pub size: u64,
    /// Why the message is held or deferred (free text for operators).
    pub note: String,
}

impl MessageMeta {
    /// A message entering the queue: active, never tried, due at once.
    pub fn queued(
        id: String,
        envelope: Envelope,
        received_at: i64,
        size: u64,
        note: String,
    ) -> Self {
        Self {
            id,
            envelope,
            received_at,
            state: QueueState::Active,
            attempts: 0,
            next_attempt: 0,
            size,
            note,
        }
    }
}

/// A new queue id: 12 hex digits of milliseconds since the epoch and 10 random hex digits.
/// Ids sort by arrival and do not collide across nodes in practice.
pub fn new_queue_id() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut r = [0u8; 5];
    aws_lc_rs::rand::fill(&mut r).expect("system random generator");
    format!("{:012X}{}", ms & 0xFFFF_FFFF_FFFF, hex::encode_upper(r))
}

pub(crate) fn encode_meta(w: &mut Writer, m: &MessageMeta) {
    w.str(&m.id);
    w.str(&m.envelope.mail_from);
    w.u8(u8::from(m.envelope.eight_bit)
        | (u8::from(m.envelope.smtputf8) << 1)
        | (u8::from(m.envelope.outbound) << 2)
        | (u8::from(m.envelope.require_tls) << 3));
    w.i64(m.received_at);
    w.u8(m.state.code());
    w.u32(m.attempts);
    w.i64(m.next_attempt);
    w.u64(m.size);
    w.str(&m.note);
    w.u32(m.envelope.rcpts.len() as u32);
    for r in &m.envelope.rcpts {
        w.str(&r.address);
        w.i64(r.tenant);
        w.u8(match r.status {
            RcptStatus::Pending => 0,
            RcptStatus::Delivered => 1,
            RcptStatus::Failed => 2,
        });
        w.str(&r.last_reply);
    }
}

pub(crate) fn decode_meta(r: &mut Reader<'_>) -> Result<MessageMeta, CodecError> {
    let id = r.string()?;
    let mail_from = r.string()?;
    let flags = r.u8()?;
    let received_at = r.i64()?;
    let state = QueueState::from_code(r.u8()?)?;
    let attempts = r.u32()?;
    let next_attempt = r.i64()?;
    let size = r.u64()?;
    let note = r.string()?;
    let n = r.u32()? as usize;
    let mut rcpts = Vec::with_capacity(n.min(10_000));
    for _ in 0..n {
        let address = r.string()?;
        let tenant = r.i64()?;
        let status = match r.u8()? {
            0 => RcptStatus::Pending,
            1 => RcptStatus::Delivered,
            2 => RcptStatus::Failed,
            t => return Err(CodecError::Tag(t)),
        };
        let last_reply = r.string()?;
        rcpts.push(RcptState {
            address,
            tenant,
            status,
            last_reply,
        });
    }
    Ok(MessageMeta {
        id,
        envelope: Envelope {
            mail_from,
            rcpts,
            eight_bit: flags & 1 != 0,
            smtputf8: flags & 2 != 0,
            outbound: flags & 4 != 0,
            require_tls: flags & 8 != 0,
        },
        received_at,
        state,
        attempts,
        next_attempt,
        size,
        note,
    })
}
