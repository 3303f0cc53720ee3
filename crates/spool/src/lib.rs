//! The spool: Sekisho's durable, encrypted mail queue.
//!
//! Third stage of the mail path (wire → ingress → **spool** → egress). A message is acknowledged
//! with `250` only after [`Spool::submit`] returned, which means its record is on disk and
//! `fdatasync`ed. Many sessions share one sync (**group commit**): a single writer thread takes
//! every record that arrived while the previous sync ran, writes them with one `write` and
//! syncs once, so durability does not cap throughput.
//!
//! # Layout
//! - [`keyring`]: per-message data keys, wrapped under the spool key.
//! - [`codec`]: the binary record encoding; [`meta`]: what the queue knows of a message.
//! - [`log`]: segment files, frames and the group-commit writer thread.
//! - [`queue`]: the in-memory index, states, key destruction and compaction; `replay`:
//!   recovery; `legacy`: reading the first format to migrate it.
//!
//! # On disk
//! `spool/seg-<n>.log` files hold an append-only sequence of frames: a message's key frame and
//! content frame (envelope and body), or a state update. Replaying the segments in order
//! rebuilds the queue. The oldest segment is deleted once none of its messages is live;
//! messages that stay deferred are copied forward by compaction so that old segments do not
//! pin disk space. A frame that fails its checksum or authentication is copied to
//! `spool/corrupt/` and reported; it is never silently dropped.
//!
//! # Security
//! Every message is sealed (AES-256-GCM, a fresh HKDF-derived key per frame) under its own
//! random **data key**. The data key is stored only wrapped under the **spool key**, and the
//! spool key only wrapped under the vault's KEK, outside the data directory: a copy of the data
//! directory opens nothing. When a message is finished (delivered to every recipient, bounced,
//! expired, deleted), its wrapped data key is overwritten with zeros and synced before the
//! queue forgets it: from then on its frames cannot be opened even with the KEK
//! (crypto-erasure; compaction reclaims the space later, erasure does not wait for it).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod codec;
pub mod keyring;
mod legacy;
pub mod log;
pub mod meta;
pub mod queue;
mod replay;

pub use replay::readable_frames;

pub use keyring::SpoolKey;
/// The first format's node key (`keys/spool.key`), read only to migrate.
pub use keys::SecretKey as LegacyNodeKey;
pub use meta::{Envelope, MessageMeta, QueueState, RcptState, RcptStatus, new_queue_id};
pub use queue::{RecoveryReport, Spool, SpoolError, SpoolOptions, SpoolStats};

/// A segment of frames sealed under `spool_key` with one data key, each `(kind, plaintext)`
/// as given: the fuzz targets use it to reach recovery's decoders past the CRC and the seal.
#[cfg(fuzzing)]
pub fn sealed_segment(spool_key: &SpoolKey, frames: &[(u8, &[u8])]) -> Vec<u8> {
    let (id, key) = keyring::generate();
    let mut out = keyring::key_frame(spool_key, id, &key);
    for (kind, plain) in frames {
        out.extend_from_slice(&keyring::data_frame(*kind, id, &key, plain));
    }
    out
}
