//! Recovery: rebuilds the queue's index by replaying the segments in order.
//!
//! Key frames come first: a live one yields its data key, a zeroed one says that every frame
//! under that key belongs to a finished message and is skipped (it cannot be opened anyway). A
//! frame that fails its CRC or authentication is copied to `corrupt/`; it is never silently
//! dropped. Segments of the first format are read with the legacy node key, for migration.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::codec::Reader;
use crate::keyring::{self, DataKey, KeySlot, SpoolKey};
use crate::legacy::{self, LegacyMessage};
use crate::log::{self, KEY_FRAME_LEN, KIND_KEY, KIND_MESSAGE, KIND_UPDATE, Location, Scanned};
use crate::meta::{MessageMeta, QueueState, decode_meta};
use crate::queue::{Entry, Index, RecoveryReport, walk_segment};

/// First-format messages to migrate, and the segments they came from.
#[derive(Default)]
pub(crate) struct Legacy {
    pub(crate) messages: BTreeMap<String, LegacyMessage>,
    pub(crate) segments: Vec<u64>,
}

/// What replay found.
pub(crate) struct Found {
    pub(crate) index: Index,
    pub(crate) report: RecoveryReport,
    /// Every segment number on disk, ascending.
    pub(crate) segments: Vec<u64>,
    /// Live keys of superseded copies (a compaction interrupted before it destroyed them).
    pub(crate) stale: Vec<DataKey>,
    pub(crate) legacy: Legacy,
}

#[derive(Default)]
struct Keys {
    live: HashMap<u64, DataKey>,
    destroyed: HashSet<u64>,
}

/// Replays every segment in `dir`.
pub(crate) fn replay(
    dir: &Path,
    spool_key: &SpoolKey,
    legacy_key: Option<&keys::SecretKey>,
) -> io::Result<Found> {
    let segments = log::list_segments(dir)?;
    let mut found = Found {
        index: Index::default(),
        report: RecoveryReport::default(),
        segments: segments.clone(),
        stale: Vec::new(),
        legacy: Legacy::default(),
    };
    let mut keys = Keys::default();
    for &n in &segments {
        let buf = fs::read(log::segment_path(dir, n))?;
        if log::format_of(&buf) == Some(log::LEGACY_MAGIC) {
            found.legacy.segments.push(n);
            continue;
        }
        found.index.live.entry(n).or_default();
        replay_segment(dir, spool_key, n, &buf, &mut keys, &mut found)?;
    }
    if !found.legacy.segments.is_empty() {
        let key = legacy_key.ok_or_else(|| {
            io::Error::other(format!(
                "the spool in {} holds {} segment(s) of the first format, sealed under keys/spool.key, which is missing: restore it to migrate them",
                dir.display(),
                found.legacy.segments.len()
            ))
        })?;
        found.legacy.messages =
            legacy::replay(dir, key, &found.legacy.segments, &mut found.report)?;
    }
    for e in found.index.entries.values_mut() {
        if e.home.is_none() {
            e.meta.state = QueueState::Corrupt;
            e.meta.note = "content frame lost; see spool/corrupt/".into();
            found.report.corrupt_messages += 1;
        }
    }
    Ok(found)
}

fn replay_segment(
    dir: &Path,
    spool_key: &SpoolKey,
    n: u64,
    buf: &[u8],
    keys: &mut Keys,
    found: &mut Found,
) -> io::Result<()> {
    let mut report = std::mem::take(&mut found.report);
    let result = walk_segment(dir, n, buf, log::MAGIC, &mut report, |kind, payload, at| {
        apply_frame(spool_key, kind, payload, at, keys, found)
    });
    found.report = report;
    result
}

/// Applies one intact frame; false if it cannot be read (it is then moved aside).
fn apply_frame(
    spool_key: &SpoolKey,
    kind: u8,
    payload: &[u8],
    at: Location,
    keys: &mut Keys,
    found: &mut Found,
) -> bool {
    if kind == KIND_KEY {
        if at.len as usize != KEY_FRAME_LEN {
            return false;
        }
        return match keyring::read_key(spool_key, payload) {
            KeySlot::Live(id, key) => {
                keys.live.insert(
                    id,
                    DataKey {
                        id,
                        key: Arc::new(key),
                        at,
                    },
                );
                true
            }
            KeySlot::Destroyed(id) => {
                keys.destroyed.insert(id);
                *found.index.destroyed.entry(at.segment).or_default() += 1;
                true
            }
            KeySlot::Unreadable => false,
        };
    }
    let Some(key_id) = keyring::data_key_id(payload) else {
        return false;
    };
    if keys.destroyed.contains(&key_id) {
        return true; // a finished message's frame: unreadable by design
    }
    let Some(key) = keys.live.get(&key_id).cloned() else {
        return false;
    };
    let Some(plain) = keyring::open_data(kind, &key.key, payload) else {
        return false;
    };
    let mut r = Reader::new(&plain);
    let Ok(meta) = decode_meta(&mut r) else {
        return false;
    };
    // A message frame is read whole: its content must decode too, or the message would be
    // listed and then fail at delivery.
    if kind == KIND_MESSAGE && r.bytes().is_err() {
        return false;
    }
    match kind {
        KIND_MESSAGE => place(found, meta, key, Some(at)),
        KIND_UPDATE => update(found, meta, key),
        _ => return false,
    }
    true
}

/// A message frame: the newest copy is the message's home, older copies' keys are stale.
fn place(found: &mut Found, meta: MessageMeta, key: DataKey, home: Option<Location>) {
    let id = meta.id.clone();
    match found.index.entries.get_mut(&id) {
        Some(e) => {
            e.meta = meta;
            if let Some(old) = e.key.replace(key)
                && old.id != e.key.as_ref().map_or(0, |k| k.id)
            {
                found.stale.push(old);
            }
        }
        None => {
            found.index.entries.insert(
                id.clone(),
                Entry {
                    meta,
                    home: None,
                    key: Some(key),
                    busy: false,
                },
            );
        }
    }
    found.index.set_home(&id, home);
}

/// An update frame: the message's newest state.
fn update(found: &mut Found, meta: MessageMeta, key: DataKey) {
    match found.index.entries.get_mut(&meta.id) {
        Some(e) => e.meta = meta,
        None => {
            // Its content frame was lost: kept as corrupt for the operator.
            found.index.entries.insert(
                meta.id.clone(),
                Entry {
                    meta,
                    home: None,
                    key: Some(key),
                    busy: false,
                },
            );
        }
    }
}

/// Every frame of `dir` that `spool_key` opens, in plaintext: what someone holding the spool
/// key (or the KEK that wraps it) and a copy of the directory can read. For evidence and tests:
/// once a message is finished, none of its frames is among them.
pub fn readable_frames(dir: &Path, spool_key: &SpoolKey) -> io::Result<Vec<Vec<u8>>> {
    let mut keys: HashMap<u64, keys::SecretKey> = HashMap::new();
    let mut out = Vec::new();
    for n in log::list_segments(dir)? {
        let buf = fs::read(log::segment_path(dir, n))?;
        for item in log::scan(&buf) {
            let Scanned::Frame {
                offset,
                kind,
                payload_len,
            } = item
            else {
                continue;
            };
            let start = offset + log::HEADER_LEN;
            let payload = &buf[start..start + payload_len];
            if kind == KIND_KEY {
                if let KeySlot::Live(id, key) = keyring::read_key(spool_key, payload) {
                    keys.insert(id, key);
                }
                continue;
            }
            let plain = keyring::data_key_id(payload)
                .and_then(|id| keys.get(&id))
                .and_then(|key| keyring::open_data(kind, key, payload));
            if let Some(plain) = plain {
                out.push(plain.to_vec());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::codec::Writer;
    use crate::keyring::{self, SpoolKey};
    use crate::log::{self, KIND_MESSAGE};
    use crate::meta::{Envelope, MessageMeta, QueueState, RcptState, RcptStatus, encode_meta};
    use crate::{Spool, SpoolOptions};

    /// Found by the `spool_recover` fuzz target: a message frame that opens under its key and
    /// whose envelope decodes, but whose content does not (only a bug of our own encoder could
    /// write one), was listed as active; delivery then failed on it. Recovery reads the whole
    /// frame: it is moved aside and reported like any damaged frame.
    #[test]
    fn a_message_frame_whose_content_does_not_decode_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let spool_key = SpoolKey::from_bytes([4; 32]);
        let meta = MessageMeta {
            id: "01TESTUNDECODABLE".into(),
            envelope: Envelope {
                mail_from: "a@example.org".into(),
                rcpts: vec![RcptState {
                    address: "b@one.test".into(),
                    tenant: 1,
                    status: RcptStatus::Pending,
                    last_reply: String::new(),
                }],
                eight_bit: false,
                smtputf8: false,
                outbound: false,
                require_tls: false,
            },
            received_at: 1,
            state: QueueState::Active,
            attempts: 0,
            next_attempt: 0,
            size: 3,
            note: String::new(),
        };
        let mut w = Writer::with_capacity(64);
        encode_meta(&mut w, &meta);
        w.u64(1 << 40); // a content length far past the frame's end
        let (id, key) = keyring::generate();
        let mut seg = keyring::key_frame(&spool_key, id, &key);
        seg.extend_from_slice(&keyring::data_frame(KIND_MESSAGE, id, &key, &w.buf));
        std::fs::write(log::segment_path(dir.path(), 1), &seg).unwrap();
        let (spool, report) =
            Spool::open(dir.path(), spool_key, None, SpoolOptions::default()).unwrap();
        assert!(
            spool.get("01TESTUNDECODABLE").is_none(),
            "listed, though unreadable"
        );
        assert_eq!(
            (report.messages, report.damaged_regions),
            (0, 1),
            "{report:?}"
        );
        spool.shutdown();
    }
}
