//! What the spool's test files share.

use spool::{Envelope, MessageMeta, QueueState, RcptState, RcptStatus, new_queue_id};

/// An active message from `sender{n}@example.org` to one pending recipient of tenant 1.
pub fn meta(n: usize) -> MessageMeta {
    MessageMeta {
        id: new_queue_id(),
        envelope: Envelope {
            mail_from: format!("sender{n}@example.org"),
            rcpts: vec![RcptState {
                address: format!("rcpt{n}@one.test"),
                tenant: 1,
                status: RcptStatus::Pending,
                last_reply: String::new(),
            }],
            eight_bit: false,
            smtputf8: false,
            outbound: false,
            require_tls: false,
        },
        received_at: 1_700_000_000,
        state: QueueState::Active,
        attempts: 0,
        next_attempt: 0,
        size: 10,
        note: String::new(),
    }
}
