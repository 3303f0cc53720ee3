//! Segment files, frames, and the group-commit writer thread.
//!
//! A frame is `magic "SKS2" | kind u8 | 3 zero bytes | payload length u32 | crc32 u32 |
//! payload`. The CRC covers the first 12 header bytes and the payload and finds torn or
//! damaged frames before decryption is tried; the AEAD tag (inside the payload) then proves
//! that the frame was written by this node.
//!
//! A **key frame** ([`KIND_KEY`]) holds one message's data key, wrapped under the spool key:
//! `key id u64 | wrapped key`. Its CRC covers the header and the key id only, because the
//! wrapped key is overwritten with zeros in place when the message is finished
//! ([`LogWriter::destroy`]); the wrap's own tag protects it until then.
//!
//! Segments of the first format (`SKS1`, one node key for every frame) are read only to
//! migrate them ([`LEGACY_MAGIC`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use tokio::sync::oneshot;

/// Frame magic.
pub const MAGIC: &[u8; 4] = b"SKS2";
/// Frame magic of the first format (a node key in the data directory), read to migrate.
pub const LEGACY_MAGIC: &[u8; 4] = b"SKS1";
/// Header length in bytes.
pub const HEADER_LEN: usize = 16;
/// Largest payload accepted when scanning (a larger length field is damage).
pub const MAX_PAYLOAD: usize = 1 << 30;

/// A message: envelope and body.
pub const KIND_MESSAGE: u8 = 1;
/// A new state of a message.
pub const KIND_UPDATE: u8 = 2;
/// A removal (first format only: now a message ends when its key is destroyed).
pub const KIND_REMOVE: u8 = 3;
/// A message's data key, wrapped under the spool key; zeros once destroyed.
pub const KIND_KEY: u8 = 4;
/// Bytes of a key id.
pub const KEY_ID_LEN: usize = 8;
/// Payload length of a key frame.
pub const KEY_PAYLOAD_LEN: usize = KEY_ID_LEN + keys::SecretKey::WRAPPED_LEN;
/// Whole length of a key frame.
pub const KEY_FRAME_LEN: usize = HEADER_LEN + KEY_PAYLOAD_LEN;

/// How many payload bytes the CRC of a frame of `kind` covers.
fn crc_len(magic: &[u8; 4], kind: u8, payload_len: usize) -> usize {
    if magic == MAGIC && kind == KIND_KEY {
        KEY_ID_LEN.min(payload_len)
    } else {
        payload_len
    }
}

/// Where a frame lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Segment number.
    pub segment: u64,
    /// Byte offset of the frame header.
    pub offset: u64,
    /// Total frame length (header and payload).
    pub len: u32,
}

/// Builds a frame around a payload. The AAD for sealing is [`aad`]`(kind, len)`.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    frame_with(MAGIC, kind, payload)
}

/// Builds a frame of the format `magic` (tests of the migration write the first format).
pub fn frame_with(magic: &[u8; 4], kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER_LEN + payload.len());
    f.extend_from_slice(&aad_with(magic, kind, payload.len()));
    let mut crc = crc32fast::Hasher::new();
    crc.update(&f);
    crc.update(&payload[..crc_len(magic, kind, payload.len())]);
    f.extend_from_slice(&crc.finalize().to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// The 12 header bytes that are also the AEAD associated data.
pub fn aad(kind: u8, payload_len: usize) -> [u8; 12] {
    aad_with(MAGIC, kind, payload_len)
}

/// The 12 header bytes of the format `magic`.
pub fn aad_with(magic: &[u8; 4], kind: u8, payload_len: usize) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[..4].copy_from_slice(magic);
    h[4] = kind;
    h[8..12].copy_from_slice(&(payload_len as u32).to_le_bytes());
    h
}

/// The file name of segment `n`.
pub fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("seg-{n:016x}.log"))
}

/// Segment numbers present in `dir`, ascending.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut v = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(hex) = name
            .strip_prefix("seg-")
            .and_then(|n| n.strip_suffix(".log"))
            && let Ok(n) = u64::from_str_radix(hex, 16)
        {
            v.push(n);
        }
    }
    v.sort_unstable();
    Ok(v)
}

/// One item found when scanning a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Scanned {
    /// A frame whose CRC is good.
    Frame {
        /// Offset of its header.
        offset: usize,
        /// Its kind byte.
        kind: u8,
        /// Its payload length.
        payload_len: usize,
    },
    /// Damaged bytes (bad magic, length or CRC, or a torn tail).
    Damaged {
        /// Offset of the damage.
        offset: usize,
        /// Length of the damaged region.
        len: usize,
    },
}

fn frame_at(buf: &[u8], pos: usize, magic: &[u8; 4]) -> Option<(u8, usize)> {
    let header = buf.get(pos..pos + HEADER_LEN)?;
    if &header[..4] != magic {
        return None;
    }
    let len = u32::from_le_bytes(header[8..12].try_into().ok()?) as usize;
    if len > MAX_PAYLOAD {
        return None;
    }
    let payload = buf.get(pos + HEADER_LEN..pos + HEADER_LEN + len)?;
    let want = u32::from_le_bytes(header[12..16].try_into().ok()?);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[..12]);
    crc.update(&payload[..crc_len(magic, header[4], len)]);
    (crc.finalize() == want).then_some((header[4], len))
}

/// Which format a segment is in: the magic of its first frame (`None` when empty).
pub fn format_of(buf: &[u8]) -> Option<&'static [u8; 4]> {
    match buf.get(..4)? {
        m if m == LEGACY_MAGIC => Some(LEGACY_MAGIC),
        _ => Some(MAGIC),
    }
}

/// Splits a segment's bytes into frames and damaged regions.
pub fn scan(buf: &[u8]) -> Vec<Scanned> {
    scan_with(buf, MAGIC)
}

/// Splits a segment of the format `magic` into frames and damaged regions.
pub fn scan_with(buf: &[u8], magic: &[u8; 4]) -> Vec<Scanned> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        if let Some((kind, payload_len)) = frame_at(buf, pos, magic) {
            out.push(Scanned::Frame {
                offset: pos,
                kind,
                payload_len,
            });
            pos += HEADER_LEN + payload_len;
            continue;
        }
        // Resynchronise on the next position where a whole valid frame starts.
        let mut next = pos + 1;
        let resume = loop {
            match buf[next.min(buf.len())..]
                .windows(4)
                .position(|w| w == magic)
            {
                Some(p) => {
                    let at = next + p;
                    if frame_at(buf, at, magic).is_some() {
                        break at;
                    }
                    next = at + 1;
                }
                None => break buf.len(),
            }
        };
        out.push(Scanned::Damaged {
            offset: pos,
            len: resume - pos,
        });
        pos = resume;
    }
    out
}

/// Reads the frame at `loc` and checks its CRC; returns `(kind, payload)`.
pub fn read_frame(dir: &Path, loc: Location) -> io::Result<(u8, Vec<u8>)> {
    let file = File::open(segment_path(dir, loc.segment))?;
    let mut buf = vec![0u8; loc.len as usize];
    file.read_exact_at(&mut buf, loc.offset)?;
    match frame_at(&buf, 0, MAGIC) {
        Some((kind, len)) => Ok((
            kind,
            buf.split_off(HEADER_LEN).into_iter().take(len).collect(),
        )),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "frame at segment {} offset {} is damaged",
                loc.segment, loc.offset
            ),
        )),
    }
}

/// Segments known to the log, shared between the writer and the queue.
#[derive(Debug, Default)]
pub struct Segments {
    /// Segment numbers that exist on disk.
    pub all: Mutex<BTreeSet<u64>>,
    /// The segment being appended to.
    pub current: AtomicU64,
}

struct Append {
    frame: Vec<u8>,
    done: oneshot::Sender<io::Result<Location>>,
}

/// Overwrites the wrapped key of the key frame at `at` with zeros.
struct Destroy {
    at: Location,
    done: oneshot::Sender<io::Result<()>>,
}

enum Op {
    Append(Append),
    Destroy(Destroy),
    /// Start a new segment (the current one holds nothing live and can then be deleted).
    Rotate(oneshot::Sender<io::Result<()>>),
}

impl Op {
    fn bytes(&self) -> usize {
        match self {
            Op::Append(a) => a.frame.len(),
            Op::Destroy(_) | Op::Rotate(_) => 0,
        }
    }
}

/// Handle to the writer thread.
pub struct LogWriter {
    tx: Mutex<Option<mpsc::Sender<Op>>>,
    handle: Mutex<Option<thread::JoinHandle<()>>>,
}

/// Counters of the writer, for metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// `fdatasync` calls.
    pub syncs: AtomicU64,
    /// Frames written.
    pub frames: AtomicU64,
    /// Keys destroyed.
    pub destroyed: AtomicU64,
}

impl LogWriter {
    /// Starts the writer thread appending to a new segment `first` in `dir`.
    pub fn start(
        dir: PathBuf,
        first: u64,
        max_segment: u64,
        segments: Arc<Segments>,
        stats: Arc<WriterStats>,
    ) -> io::Result<Self> {
        let file = create_segment(&dir, first)?;
        let overwrite = open_overwrite(&dir, first)?;
        segments.all.lock().expect("poisoned").insert(first);
        segments.current.store(first, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel::<Op>();
        let handle = thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || {
                let mut w = SegmentWriter {
                    dir,
                    file,
                    overwrite,
                    segment: first,
                    size: 0,
                    max_segment,
                    segments,
                    stats,
                };
                w.run(rx);
            })?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            handle: Mutex::new(Some(handle)),
        })
    }

    fn send(&self, op: Op) -> io::Result<()> {
        let tx = self.tx.lock().expect("poisoned");
        let Some(tx) = tx.as_ref() else {
            return Err(io::Error::other("spool is shut down"));
        };
        tx.send(op)
            .map_err(|_| io::Error::other("spool writer stopped"))
    }

    /// Appends frames (written together); resolves once they are synced to disk, with the
    /// location of the first byte.
    pub async fn append(&self, frame: Vec<u8>) -> io::Result<Location> {
        let (done, wait) = oneshot::channel();
        self.send(Op::Append(Append { frame, done }))?;
        wait.await
            .map_err(|_| io::Error::other("spool writer stopped"))?
    }

    /// Overwrites the wrapped key in the key frame at `at` with zeros; resolves once that is
    /// synced. Needs no free space: the bytes are overwritten where they are.
    pub async fn destroy(&self, at: Location) -> io::Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Op::Destroy(Destroy { at, done }))?;
        wait.await
            .map_err(|_| io::Error::other("spool writer stopped"))?
    }

    /// Starts a new segment after everything sent before (if the current one is not empty).
    pub async fn rotate(&self) -> io::Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Op::Rotate(done))?;
        wait.await
            .map_err(|_| io::Error::other("spool writer stopped"))?
    }

    /// Stops accepting frames, lets the writer finish what it has, and joins it.
    pub fn shutdown(&self) {
        self.tx.lock().expect("poisoned").take();
        if let Some(h) = self.handle.lock().expect("poisoned").take() {
            let _ = h.join();
        }
    }
}

/// Opens segment `n` for overwriting in place: without `O_APPEND`, with which Linux's
/// `pwrite` would append instead.
fn open_overwrite(dir: &Path, n: u64) -> io::Result<File> {
    OpenOptions::new().write(true).open(segment_path(dir, n))
}

/// Overwrites the wrapped key of the key frame at `at` with zeros (not synced).
fn zero_key(file: &File, at: Location) -> io::Result<()> {
    if at.len as usize != KEY_FRAME_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a key frame",
        ));
    }
    let zeros = [0u8; keys::SecretKey::WRAPPED_LEN];
    file.write_all_at(&zeros, at.offset + (HEADER_LEN + KEY_ID_LEN) as u64)
}

/// Overwrites the wrapped keys of the key frames in `group` (all in an older `segment`) and
/// syncs.
fn zero_keys(dir: &Path, segment: u64, group: &[Destroy]) -> io::Result<()> {
    let file = open_overwrite(dir, segment)?;
    group.iter().try_for_each(|d| zero_key(&file, d.at))?;
    file.sync_data()
}

fn create_segment(dir: &Path, n: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(segment_path(dir, n))?;
    // Make the new directory entry durable before any frame in it is acknowledged.
    File::open(dir)?.sync_all()?;
    Ok(file)
}

struct SegmentWriter {
    dir: PathBuf,
    file: File,
    /// The same segment opened without `O_APPEND`, for overwriting keys in place.
    overwrite: File,
    segment: u64,
    size: u64,
    max_segment: u64,
    segments: Arc<Segments>,
    stats: Arc<WriterStats>,
}

/// Most bytes gathered into one batch before writing.
const MAX_BATCH: usize = 8 << 20;

impl SegmentWriter {
    fn run(&mut self, rx: mpsc::Receiver<Op>) {
        let mut buf = Vec::with_capacity(1 << 20);
        while let Ok(first) = rx.recv() {
            let mut bytes = first.bytes();
            let mut batch = vec![first];
            while bytes < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => {
                        bytes += op.bytes();
                        batch.push(op);
                    }
                    Err(_) => break,
                }
            }
            let mut appends = Vec::with_capacity(batch.len());
            let mut destroys = Vec::new();
            let mut rotations = Vec::new();
            for op in batch {
                match op {
                    Op::Append(a) => appends.push(a),
                    Op::Destroy(d) => destroys.push(d),
                    Op::Rotate(done) => rotations.push(done),
                }
            }
            if !appends.is_empty() {
                self.write_batch(&mut buf, appends, &mut destroys);
            }
            if !destroys.is_empty() {
                self.destroy_batch(destroys);
            }
            if !rotations.is_empty() {
                let result = if self.size > 0 { self.rotate() } else { Ok(()) };
                for done in rotations {
                    let _ = done.send(match &result {
                        Ok(()) => Ok(()),
                        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                    });
                }
            }
        }
        let _ = self.file.sync_data();
    }

    /// Zeroes the wrapped keys of a batch, one open and one sync per segment touched.
    fn destroy_batch(&mut self, batch: Vec<Destroy>) {
        let mut by_segment: BTreeMap<u64, Vec<Destroy>> = BTreeMap::new();
        for d in batch {
            by_segment.entry(d.at.segment).or_default().push(d);
        }
        for (segment, group) in by_segment {
            let result = if segment == self.segment {
                group
                    .iter()
                    .try_for_each(|d| zero_key(&self.overwrite, d.at))
                    .and_then(|()| self.file.sync_data())
            } else {
                zero_keys(&self.dir, segment, &group)
            };
            if result.is_ok() {
                self.stats
                    .destroyed
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
            }
            for d in group {
                let _ = d.done.send(match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                });
            }
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        let next = self.segment + 1;
        let file = create_segment(&self.dir, next)?;
        self.overwrite = open_overwrite(&self.dir, next)?;
        self.segments.all.lock().expect("poisoned").insert(next);
        self.segments.current.store(next, Ordering::SeqCst);
        self.file = file;
        self.segment = next;
        self.size = 0;
        Ok(())
    }

    /// Writes a batch of appends and, before the one sync, zeroes the keys in `destroys`
    /// that live in the segment being written (taking them out of `destroys`).
    fn write_batch(&mut self, buf: &mut Vec<u8>, batch: Vec<Append>, destroys: &mut Vec<Destroy>) {
        let total: u64 = batch.iter().map(|a| a.frame.len() as u64).sum();
        if self.size > 0
            && self.size + total > self.max_segment
            && let Err(e) = self.rotate()
        {
            tracing::error!(error = %e, "spool: cannot start a new segment");
        }
        buf.clear();
        let mut locations = Vec::with_capacity(batch.len());
        for a in &batch {
            locations.push(Location {
                segment: self.segment,
                offset: self.size + buf.len() as u64,
                len: a.frame.len() as u32,
            });
            buf.extend_from_slice(&a.frame);
        }
        let (here, elsewhere): (Vec<Destroy>, Vec<Destroy>) = std::mem::take(destroys)
            .into_iter()
            .partition(|d| d.at.segment == self.segment);
        *destroys = elsewhere;
        let result = self
            .file
            .write_all(buf)
            .and_then(|()| {
                here.iter()
                    .try_for_each(|d| zero_key(&self.overwrite, d.at))
            })
            .and_then(|()| self.file.sync_data());
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.size += buf.len() as u64;
                self.stats
                    .frames
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.stats
                    .destroyed
                    .fetch_add(here.len() as u64, Ordering::Relaxed);
                for (a, loc) in batch.into_iter().zip(locations) {
                    let _ = a.done.send(Ok(loc));
                }
                for d in here {
                    let _ = d.done.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "spool: write or sync failed; frames refused");
                for a in batch {
                    let _ = a.done.send(Err(io::Error::new(e.kind(), e.to_string())));
                }
                for d in here {
                    let _ = d.done.send(Err(io::Error::new(e.kind(), e.to_string())));
                }
                // The file may now hold part of the batch: cut it back to what was synced and
                // go on in the same segment (a new segment per failure would leave thousands
                // of empty files on a full disk); only if that fails, start a new one.
                if let Err(e) = self.file.set_len(self.size) {
                    tracing::error!(error = %e, "spool: cannot cut a failed batch off");
                    if let Err(e) = self.rotate() {
                        tracing::error!(error = %e, "spool: cannot start a new segment");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_frames_and_damage() {
        let a = frame(1, b"first payload");
        let b = frame(2, b"second");
        let c = frame(3, b"third one");
        let mut buf = [a.clone(), b.clone(), c.clone()].concat();
        // Damage the middle frame's payload.
        let mid = a.len() + HEADER_LEN + 2;
        buf[mid] ^= 0xff;
        // And add a torn tail.
        buf.extend_from_slice(&frame(4, b"torn")[..10]);
        let items = scan(&buf);
        assert_eq!(
            items,
            vec![
                Scanned::Frame {
                    offset: 0,
                    kind: 1,
                    payload_len: 13
                },
                Scanned::Damaged {
                    offset: a.len(),
                    len: b.len()
                },
                Scanned::Frame {
                    offset: a.len() + b.len(),
                    kind: 3,
                    payload_len: 9
                },
                Scanned::Damaged {
                    offset: a.len() + b.len() + c.len(),
                    len: 10
                },
            ]
        );
    }
}
