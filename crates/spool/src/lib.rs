//! The spool: Sekisho's durable, encrypted mail queue.
//!
//! Third stage of the mail path (wire → ingress → **spool** → egress). A message is acknowledged
//! with `250` only after [`Spool::submit`] returned, which means its record is on disk and
//! `fdatasync`ed. Many sessions share one sync (**group commit**): a single writer thread takes
//! every record that arrived while the previous sync ran, writes them with one `write` and
//! syncs once, so durability does not cap throughput.
//!
//! # Layout
//! - the node key and per-record AEAD sealing come from the `keys` crate ([`NodeKey`]).
//! - [`codec`]: the binary record encoding.
//! - [`log`]: segment files, frames and the group-commit writer thread.
//! - [`queue`]: the in-memory index over the log, recovery, states and compaction.
//!
//! # On disk
//! `spool/seg-<n>.log` files hold an append-only sequence of frames: a message (envelope and
//! body), a state update, or a removal. Replaying the segments in order rebuilds the queue.
//! The oldest segment is deleted once none of its messages is live; messages that stay
//! deferred are copied forward by compaction so that old segments do not pin disk space.
//! A frame that fails its checksum or authentication is copied to `spool/corrupt/` and
//! reported; it is never silently dropped.
//!
//! # Security
//! Every frame payload is sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the
//! node key and a random per-frame salt, so a stolen disk or backup shows no envelope or body.
//! The node key file is created with mode 0600.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod codec;
pub mod log;
pub mod queue;

/// The node's spool key.
pub use keys::SecretKey as NodeKey;
pub use queue::{
    Envelope, MessageMeta, QueueState, RcptState, RcptStatus, RecoveryReport, Spool, SpoolError,
    SpoolOptions, new_queue_id,
};
