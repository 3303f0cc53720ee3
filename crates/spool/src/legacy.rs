//! Reads segments of the first format (`SKS1`: every frame sealed under one node key kept in
//! `keys/spool.key`) so that a node upgraded with mail in its queue migrates it into the
//! current format and then forgets that key. Nothing here writes the first format.

use std::collections::BTreeMap;
use std::path::Path;
use std::{fs, io};

use crate::codec::{CodecError, Reader};
use crate::log::{self, KIND_MESSAGE, KIND_REMOVE, KIND_UPDATE, LEGACY_MAGIC};
use crate::meta::{MessageMeta, decode_meta};
use crate::queue::{RecoveryReport, walk_segment};

/// A live message of a first-format spool: its last state and its content (`None` when its
/// content frame was lost).
pub(crate) struct LegacyMessage {
    pub(crate) meta: MessageMeta,
    pub(crate) body: Option<Vec<u8>>,
}

enum Record {
    Message(MessageMeta, Vec<u8>),
    Update(MessageMeta),
    Remove(String),
}

fn decode(kind: u8, plain: &[u8]) -> Result<Record, CodecError> {
    let mut r = Reader::new(plain);
    Ok(match kind {
        KIND_MESSAGE => {
            let meta = decode_meta(&mut r)?;
            Record::Message(meta, r.bytes()?.to_vec())
        }
        KIND_UPDATE => Record::Update(decode_meta(&mut r)?),
        KIND_REMOVE => Record::Remove(r.string()?),
        t => return Err(CodecError::Tag(t)),
    })
}

/// Replays first-format segments `numbers` (ascending) with the node key; damaged frames are
/// moved aside as in the current format.
pub(crate) fn replay(
    dir: &Path,
    key: &keys::SecretKey,
    numbers: &[u64],
    report: &mut RecoveryReport,
) -> io::Result<BTreeMap<String, LegacyMessage>> {
    let mut live: BTreeMap<String, LegacyMessage> = BTreeMap::new();
    for &n in numbers {
        let buf = fs::read(log::segment_path(dir, n))?;
        walk_segment(dir, n, &buf, LEGACY_MAGIC, report, |kind, payload, _| {
            let aad = log::aad_with(LEGACY_MAGIC, kind, payload.len());
            match key.open(&aad, payload).and_then(|p| decode(kind, &p).ok()) {
                Some(record) => {
                    apply(&mut live, record);
                    true
                }
                None => false,
            }
        })?;
    }
    Ok(live)
}

fn apply(live: &mut BTreeMap<String, LegacyMessage>, record: Record) {
    match record {
        Record::Message(meta, body) => {
            live.insert(
                meta.id.clone(),
                LegacyMessage {
                    meta,
                    body: Some(body),
                },
            );
        }
        Record::Update(meta) => match live.get_mut(&meta.id) {
            Some(m) => m.meta = meta,
            None => {
                live.insert(meta.id.clone(), LegacyMessage { meta, body: None });
            }
        },
        Record::Remove(id) => {
            live.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::codec::Writer;
    use crate::log::{self, KIND_MESSAGE, KIND_REMOVE, KIND_UPDATE, LEGACY_MAGIC};
    use crate::meta::{Envelope, MessageMeta, QueueState, RcptState, encode_meta};
    use crate::{Spool, SpoolKey, SpoolOptions};

    fn legacy_frame(node: &keys::SecretKey, kind: u8, plain: &[u8]) -> Vec<u8> {
        let sealed_len = keys::SALT_LEN + plain.len() + keys::TAG_LEN;
        let sealed = node.seal(&log::aad_with(LEGACY_MAGIC, kind, sealed_len), plain);
        log::frame_with(LEGACY_MAGIC, kind, &sealed)
    }

    fn message(node: &keys::SecretKey, meta: &MessageMeta, body: &[u8]) -> Vec<u8> {
        let mut w = Writer::default();
        encode_meta(&mut w, meta);
        w.bytes(body);
        legacy_frame(node, KIND_MESSAGE, &w.buf)
    }

    fn meta(id: &str) -> MessageMeta {
        let envelope = Envelope {
            mail_from: "a@example.org".into(),
            rcpts: vec![RcptState::pending("r@one.test", 1)],
            eight_bit: false,
            smtputf8: false,
            outbound: false,
            require_tls: false,
        };
        MessageMeta::queued(id.into(), envelope, 1_700_000_000, 4, String::new())
    }

    #[test]
    fn a_first_format_spool_is_migrated_and_its_segments_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let node = keys::SecretKey::generate();
        let (a, b) = (meta("A1"), meta("B1"));
        let mut held = a.clone();
        held.state = QueueState::Hold;
        let mut w = Writer::default();
        encode_meta(&mut w, &held);
        let mut remove = Writer::default();
        remove.str("B1");
        let segment = [
            message(&node, &a, b"OLD-A"),
            message(&node, &b, b"OLD-B"),
            legacy_frame(&node, KIND_UPDATE, &w.buf),
            legacy_frame(&node, KIND_REMOVE, &remove.buf),
        ]
        .concat();
        std::fs::write(log::segment_path(dir.path(), 1), segment).unwrap();
        let spool_key = || SpoolKey::from_bytes([3; 32]);
        let missing = Spool::open(dir.path(), spool_key(), None, SpoolOptions::default());
        assert!(
            missing
                .err()
                .unwrap()
                .to_string()
                .contains("keys/spool.key")
        );

        let (spool, report) = Spool::open(
            dir.path(),
            spool_key(),
            Some(&node),
            SpoolOptions::default(),
        )
        .unwrap();
        assert_eq!((report.messages, report.migrated), (1, 1));
        assert_eq!(spool.get("A1").unwrap().state, QueueState::Hold);
        assert_eq!(spool.body("A1").unwrap(), b"OLD-A");
        assert!(!log::segment_path(dir.path(), 1).exists());
        spool.shutdown();
        drop(spool);
        // Nothing of the first format is left: the node key is no longer needed.
        let (spool, report) =
            Spool::open(dir.path(), spool_key(), None, SpoolOptions::default()).unwrap();
        assert_eq!((report.messages, report.migrated), (1, 0));
        assert_eq!(spool.body("A1").unwrap(), b"OLD-A");
    }
}
