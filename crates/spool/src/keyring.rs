//! Per-message data keys: each message is sealed under its own random key, kept in the log only
//! wrapped under the spool key (which the vault hands to mx at start and which never touches
//! the disk in clear). Finishing a message overwrites its wrapped key with zeros, after which
//! none of its frames opens, whoever holds the spool key or the KEK.

use std::sync::Arc;

use keys::SecretKey;

use crate::log::{self, KEY_ID_LEN, KIND_KEY, Location};

/// The key that wraps every message's data key (from the vault; in memory only).
pub type SpoolKey = SecretKey;

/// One message's data key and where its wrapped copy lives.
#[derive(Clone)]
pub(crate) struct DataKey {
    /// Random id, in clear in the key frame and in every frame sealed under the key.
    pub(crate) id: u64,
    /// The key itself.
    pub(crate) key: Arc<SecretKey>,
    /// The key frame holding its wrapped copy.
    pub(crate) at: Location,
}

/// The AAD of a wrapped data key: binds it to its id.
fn key_aad(id: u64) -> [u8; 32] {
    let mut aad = [0u8; 32];
    aad[..24].copy_from_slice(b"sekisho spool data key 2");
    aad[24..].copy_from_slice(&id.to_le_bytes());
    aad
}

/// A fresh data key and its id.
pub(crate) fn generate() -> (u64, SecretKey) {
    let mut id = [0u8; 8];
    aws_lc_rs::rand::fill(&mut id).expect("system random generator");
    (u64::from_le_bytes(id), SecretKey::generate())
}

/// The key frame of data key `id`.
pub(crate) fn key_frame(spool_key: &SpoolKey, id: u64, key: &SecretKey) -> Vec<u8> {
    let mut payload = Vec::with_capacity(log::KEY_PAYLOAD_LEN);
    payload.extend_from_slice(&id.to_le_bytes());
    payload.extend_from_slice(&spool_key.wrap(&key_aad(id), key));
    log::frame(KIND_KEY, &payload)
}

/// What a key frame says.
pub(crate) enum KeySlot {
    /// The key, unwrapped.
    Live(u64, SecretKey),
    /// The key was destroyed: its message is finished.
    Destroyed(u64),
    /// The wrapped key does not open (damaged, or another spool key).
    Unreadable,
}

/// Reads the payload of a key frame.
pub(crate) fn read_key(spool_key: &SpoolKey, payload: &[u8]) -> KeySlot {
    let Some((id, wrapped)) = split_id(payload) else {
        return KeySlot::Unreadable;
    };
    if wrapped.iter().all(|&b| b == 0) {
        return KeySlot::Destroyed(id);
    }
    match spool_key.unwrap_key(&key_aad(id), wrapped) {
        Some(k) => KeySlot::Live(id, k),
        None => KeySlot::Unreadable,
    }
}

fn split_id(payload: &[u8]) -> Option<(u64, &[u8])> {
    if payload.len() < KEY_ID_LEN {
        return None;
    }
    let (id, rest) = payload.split_at(KEY_ID_LEN);
    Some((u64::from_le_bytes(id.try_into().ok()?), rest))
}

fn data_aad(kind: u8, payload_len: usize, key_id: u64) -> [u8; 20] {
    let mut aad = [0u8; 20];
    aad[..12].copy_from_slice(&log::aad(kind, payload_len));
    aad[12..].copy_from_slice(&key_id.to_le_bytes());
    aad
}

/// A message or update frame: `key id | sealed plaintext`, sealed under the data key.
pub(crate) fn data_frame(kind: u8, key_id: u64, key: &SecretKey, plain: &[u8]) -> Vec<u8> {
    let payload_len = KEY_ID_LEN + keys::SALT_LEN + plain.len() + keys::TAG_LEN;
    let mut payload = Vec::with_capacity(payload_len);
    payload.extend_from_slice(&key_id.to_le_bytes());
    payload.extend_from_slice(&key.seal(&data_aad(kind, payload_len, key_id), plain));
    log::frame(kind, &payload)
}

/// The key id a data frame's payload names.
pub(crate) fn data_key_id(payload: &[u8]) -> Option<u64> {
    split_id(payload).map(|(id, _)| id)
}

/// Opens a data frame's payload with its key.
pub(crate) fn open_data(
    kind: u8,
    key: &SecretKey,
    payload: &[u8],
) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    let (id, sealed) = split_id(payload)?;
    key.open(&data_aad(kind, payload.len(), id), sealed)
}
