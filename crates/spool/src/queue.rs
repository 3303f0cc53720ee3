//! The queue: an in-memory index over the log, with states, key destruction and compaction.
//! Recovery (rebuilding the index from the log) is in [`crate::replay`].

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use thiserror::Error;

use crate::codec::Writer;
use crate::keyring::{self, DataKey, SpoolKey};
use crate::log::{self, KEY_FRAME_LEN, KIND_MESSAGE, KIND_UPDATE, Location, LogWriter};
use crate::log::{Segments, WriterStats};
use crate::meta::{MessageMeta, QueueState, RcptStatus, decode_meta, encode_meta};

/// Why a spool operation failed.
#[derive(Debug, Error)]
pub enum SpoolError {
    /// Disk I/O failed (the message is not acknowledged).
    #[error("spool I/O: {0}")]
    Io(#[from] io::Error),
    /// No such message in the queue.
    #[error("no message {0} in the queue")]
    NotFound(String),
    /// A stored frame could not be opened or decoded.
    #[error("spool frame damaged: {0}")]
    Damaged(String),
}

/// Tunables of the spool.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// Segment size at which the writer starts a new segment.
    pub max_segment_bytes: u64,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        Self {
            max_segment_bytes: 64 << 20,
        }
    }
}

/// What recovery found when the spool was opened.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// Messages restored to the queue.
    pub messages: usize,
    /// Damaged regions moved to `corrupt/`.
    pub damaged_regions: usize,
    /// Bytes in those regions.
    pub damaged_bytes: usize,
    /// Messages whose content frame was lost (kept in state `corrupt`).
    pub corrupt_messages: usize,
    /// Keys destroyed at recovery: messages found finished (every recipient done) and copies
    /// left behind by an interrupted compaction.
    pub keys_destroyed: usize,
    /// Messages migrated from the first format (sealed under a node key on disk).
    pub migrated: usize,
}

/// What the spool holds, for `sekisho spool stats`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SpoolStats {
    /// Messages in the queue.
    pub messages: usize,
    /// Data keys that still open their message (one per queued message, plus any whose
    /// destruction failed and waits to be tried again).
    pub live_keys: usize,
    /// Data keys destroyed whose zeroed slots are still on disk (their messages unreadable).
    pub destroyed_keys: u64,
    /// Keys destroyed since start.
    pub destroyed_since_start: u64,
    /// Segment files on disk.
    pub segments: usize,
    /// Older segments that hold finished (unreadable) mail but cannot be deleted yet because
    /// a queued message lives in them; compaction copies those forward.
    pub segments_awaiting_compaction: usize,
}

pub(crate) struct Entry {
    pub(crate) meta: MessageMeta,
    pub(crate) home: Option<Location>,
    pub(crate) key: Option<DataKey>,
    pub(crate) busy: bool,
}

#[derive(Default)]
pub(crate) struct Index {
    pub(crate) entries: HashMap<String, Entry>,
    /// Live messages per segment (by the segment of their content frame).
    pub(crate) live: BTreeMap<u64, usize>,
    /// Destroyed key slots per segment.
    pub(crate) destroyed: BTreeMap<u64, u64>,
    /// Keys of finished messages whose destruction failed: tried again by [`Spool::compact`].
    pub(crate) undestroyed: Vec<DataKey>,
}

impl Index {
    pub(crate) fn set_home(&mut self, id: &str, home: Option<Location>) {
        if let Some(e) = self.entries.get_mut(id) {
            if let Some(old) = e.home
                && let Some(n) = self.live.get_mut(&old.segment)
            {
                *n = n.saturating_sub(1);
            }
            e.home = home;
            if let Some(new) = home {
                *self.live.entry(new.segment).or_default() += 1;
            }
        }
    }

    /// Takes a message out of the index; its key, to destroy.
    pub(crate) fn take(&mut self, id: &str) -> Option<Option<DataKey>> {
        self.set_home(id, None);
        self.entries.remove(id).map(|e| e.key)
    }
}

struct Inner {
    dir: PathBuf,
    /// The directory held open: its free space is asked of the descriptor, without a path
    /// lookup for every message.
    dir_handle: std::fs::File,
    key: SpoolKey,
    writer: LogWriter,
    segments: Arc<Segments>,
    stats: Arc<WriterStats>,
    index: Mutex<Index>,
}

/// The durable queue. Cheap to clone.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

/// Size from which an idle current segment is closed for reclaim.
pub const RETIRE_AT: u64 = 1 << 20;

/// Whether a message has nothing left to do.
pub(crate) fn finished(meta: &MessageMeta) -> bool {
    !meta
        .envelope
        .rcpts
        .iter()
        .any(|r| r.status == RcptStatus::Pending)
}

/// Copies damaged bytes of segment `n` at `offset` to `corrupt/` and counts them.
pub(crate) fn move_aside(
    dir: &Path,
    n: u64,
    offset: usize,
    bytes: &[u8],
    report: &mut RecoveryReport,
) -> io::Result<()> {
    let path = dir
        .join("corrupt")
        .join(format!("seg-{n:016x}-at-{offset}.bin"));
    fs::write(&path, bytes)?;
    tracing::error!(
        segment = n,
        offset,
        len = bytes.len(),
        moved_to = %path.display(),
        "spool: damaged frame moved aside"
    );
    report.damaged_regions += 1;
    report.damaged_bytes += bytes.len();
    Ok(())
}

/// Applies every intact frame of segment `n` (its bytes `buf`, of the format `magic`) with
/// `apply(kind, payload, location)`; a frame `apply` cannot read (it returns false) and every
/// damaged region are moved aside.
pub(crate) fn walk_segment(
    dir: &Path,
    n: u64,
    buf: &[u8],
    magic: &[u8; 4],
    report: &mut RecoveryReport,
    mut apply: impl FnMut(u8, &[u8], Location) -> bool,
) -> io::Result<()> {
    for item in log::scan_with(buf, magic) {
        let (offset, len) = match item {
            log::Scanned::Frame {
                offset,
                kind,
                payload_len,
            } => {
                let start = offset + log::HEADER_LEN;
                let len = log::HEADER_LEN + payload_len;
                let at = Location {
                    segment: n,
                    offset: offset as u64,
                    len: len as u32,
                };
                if apply(kind, &buf[start..start + payload_len], at) {
                    continue;
                }
                (offset, len)
            }
            log::Scanned::Damaged { offset, len } => (offset, len),
        };
        move_aside(dir, n, offset, &buf[offset..offset + len], report)?;
    }
    Ok(())
}

impl Spool {
    /// Opens (or creates) the spool in `dir` with the spool key, replays its segments and
    /// starts the writer. Segments of the first format are migrated with `legacy` (the node
    /// key of `keys/spool.key`), which the caller may destroy once this returns.
    pub fn open(
        dir: &Path,
        key: SpoolKey,
        legacy: Option<&keys::SecretKey>,
        opts: SpoolOptions,
    ) -> io::Result<(Self, RecoveryReport)> {
        fs::create_dir_all(dir.join("corrupt"))?;
        let found = crate::replay::replay(dir, &key, legacy)?;
        let segments = Arc::new(Segments::default());
        segments
            .all
            .lock()
            .expect("poisoned")
            .extend(found.segments.iter().copied());
        let first = found.segments.last().map_or(1, |n| n + 1);
        let stats = Arc::new(WriterStats::default());
        let writer = LogWriter::start(
            dir.to_path_buf(),
            first,
            opts.max_segment_bytes,
            segments.clone(),
            stats.clone(),
        )?;
        let spool = Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                dir_handle: std::fs::File::open(dir)?,
                key,
                writer,
                segments,
                stats,
                index: Mutex::new(found.index),
            }),
        };
        let mut report = found.report;
        spool.settle(found.stale, found.legacy, &mut report)?;
        report.messages = spool.index().entries.len();
        spool.reclaim()?;
        Ok((spool, report))
    }

    /// After replay: destroys the keys of finished messages and of stale copies, and moves
    /// first-format messages into the current format (then deletes their segments).
    fn settle(
        &self,
        stale: Vec<DataKey>,
        legacy: crate::replay::Legacy,
        report: &mut RecoveryReport,
    ) -> io::Result<()> {
        let done: Vec<String> = self
            .index()
            .entries
            .values()
            .filter(|e| e.home.is_some() && finished(&e.meta))
            .map(|e| e.meta.id.clone())
            .collect();
        let mut doomed = stale;
        for id in done {
            if let Some(Some(k)) = self.index().take(&id) {
                doomed.push(k);
            }
        }
        report.keys_destroyed = doomed.len();
        for k in doomed {
            block_on(self.destroy_key(&k))?;
        }
        for m in legacy.messages.into_values() {
            if self.index().entries.contains_key(&m.meta.id) || finished(&m.meta) {
                continue;
            }
            match m.body {
                Some(body) => block_on(self.submit(m.meta, &body, false))
                    .map_err(|e| io::Error::other(e.to_string()))?,
                None => report.corrupt_messages += 1,
            }
            report.migrated += 1;
        }
        self.forget_segments(&legacy.segments)
    }

    fn forget_segments(&self, numbers: &[u64]) -> io::Result<()> {
        if numbers.is_empty() {
            return Ok(());
        }
        for &n in numbers {
            match fs::remove_file(log::segment_path(&self.inner.dir, n)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.inner.segments.all.lock().expect("poisoned").remove(&n);
        }
        fs::File::open(&self.inner.dir)?.sync_all()
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.inner.index.lock().expect("spool index poisoned")
    }

    /// Writes a message under a fresh data key: its key frame and its content frame in one
    /// append. Returns the key and the content frame's location.
    async fn write_message(
        &self,
        meta: &MessageMeta,
        body: &[u8],
    ) -> Result<(DataKey, Location), SpoolError> {
        let (key_id, key) = keyring::generate();
        let mut w = Writer::with_capacity(body.len() + 256);
        encode_meta(&mut w, meta);
        w.bytes(body);
        let mut frames = keyring::key_frame(&self.inner.key, key_id, &key);
        frames.extend_from_slice(&keyring::data_frame(KIND_MESSAGE, key_id, &key, &w.buf));
        let total = frames.len();
        let at = self.inner.writer.append(frames).await?;
        let key_at = Location {
            len: KEY_FRAME_LEN as u32,
            ..at
        };
        let home = Location {
            segment: at.segment,
            offset: at.offset + KEY_FRAME_LEN as u64,
            len: (total - KEY_FRAME_LEN) as u32,
        };
        let key = DataKey {
            id: key_id,
            key: Arc::new(key),
            at: key_at,
        };
        Ok((key, home))
    }

    /// Commits a new message. When this returns `Ok`, the message is on disk and synced; the
    /// caller may acknowledge it. If `claim` is true, the message is returned already claimed
    /// for delivery by the caller (see [`Spool::claim_due`]).
    pub async fn submit(
        &self,
        meta: MessageMeta,
        body: &[u8],
        claim: bool,
    ) -> Result<(), SpoolError> {
        let (key, home) = self.write_message(&meta, body).await?;
        let id = meta.id.clone();
        let mut index = self.index();
        index.entries.insert(
            id.clone(),
            Entry {
                meta,
                home: None,
                key: Some(key),
                busy: claim,
            },
        );
        index.set_home(&id, Some(home));
        Ok(())
    }

    /// Records a new state for a queued message (after a delivery attempt, hold, release …),
    /// sealed under the message's data key.
    pub async fn update(&self, meta: MessageMeta) -> Result<(), SpoolError> {
        let mut w = Writer::with_capacity(256);
        encode_meta(&mut w, &meta);
        loop {
            let Some(key) = self
                .index()
                .entries
                .get(&meta.id)
                .and_then(|e| e.key.clone())
            else {
                // Finished meanwhile: its key is gone, and with it anything written under it.
                return Ok(());
            };
            let frame = keyring::data_frame(KIND_UPDATE, key.id, &key.key, &w.buf);
            if let Err(e) = self.inner.writer.append(frame).await {
                // Not durable (a full disk): the queue still schedules by the new state, so a
                // deferred message is not tried again at once; a restart before the next
                // successful write goes back to the last durable state (at least once).
                if let Some(entry) = self.index().entries.get_mut(&meta.id) {
                    entry.meta = meta;
                }
                return Err(e.into());
            }
            let mut index = self.index();
            let Some(e) = index.entries.get_mut(&meta.id) else {
                return Ok(());
            };
            // Compaction moved the message under a new key while this was written: the update
            // is written again under that key, or replay would miss it.
            if e.key.as_ref().is_some_and(|k| k.id == key.id) {
                e.meta = meta;
                return Ok(());
            }
        }
    }

    async fn destroy_key(&self, key: &DataKey) -> io::Result<()> {
        self.inner.writer.destroy(key.at).await?;
        *self.index().destroyed.entry(key.at.segment).or_default() += 1;
        Ok(())
    }

    /// Finishes a message for good (delivered to all, bounced, expired or deleted): its data
    /// key is overwritten on disk, after which none of its frames opens. If that write fails,
    /// the message still leaves the queue (it is never picked again) and the destruction is
    /// tried again by [`Spool::compact`]; a restart before then delivers it again.
    pub async fn remove(&self, id: &str) -> Result<(), SpoolError> {
        let key = self
            .index()
            .take(id)
            .ok_or_else(|| SpoolError::NotFound(id.into()))?;
        if let Some(key) = key
            && let Err(e) = self.destroy_key(&key).await
        {
            self.index().undestroyed.push(key);
            return Err(e.into());
        }
        self.reclaim()?;
        Ok(())
    }

    /// The content of a queued message.
    pub fn body(&self, id: &str) -> Result<Vec<u8>, SpoolError> {
        let (home, key) = {
            let index = self.index();
            let e = index
                .entries
                .get(id)
                .ok_or_else(|| SpoolError::NotFound(id.into()))?;
            let home = e
                .home
                .ok_or_else(|| SpoolError::Damaged(format!("{id} has no content frame")))?;
            let key = e
                .key
                .clone()
                .ok_or_else(|| SpoolError::Damaged(format!("{id} has no data key")))?;
            (home, key)
        };
        let (kind, payload) = log::read_frame(&self.inner.dir, home)?;
        let plain = keyring::open_data(kind, &key.key, &payload)
            .ok_or_else(|| SpoolError::Damaged(format!("{id}: authentication failed")))?;
        let mut r = crate::codec::Reader::new(&plain);
        match kind {
            KIND_MESSAGE => {
                decode_meta(&mut r).map_err(|e| SpoolError::Damaged(format!("{id}: {e}")))?;
                let body = r
                    .bytes()
                    .map_err(|e| SpoolError::Damaged(format!("{id}: {e}")))?;
                Ok(body.to_vec())
            }
            _ => Err(SpoolError::Damaged(format!("{id}: not a message frame"))),
        }
    }

    /// One message's metadata.
    pub fn get(&self, id: &str) -> Option<MessageMeta> {
        self.index().entries.get(id).map(|e| e.meta.clone())
    }

    /// All queued messages, oldest first.
    pub fn list(&self) -> Vec<MessageMeta> {
        let mut v: Vec<_> = self
            .index()
            .entries
            .values()
            .map(|e| e.meta.clone())
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Number of messages per state.
    pub fn counts(&self) -> HashMap<QueueState, usize> {
        let mut m = HashMap::new();
        for e in self.index().entries.values() {
            *m.entry(e.meta.state).or_default() += 1;
        }
        m
    }

    /// Claims up to `limit` messages that are due for delivery at `now` (active, or deferred
    /// with their retry time reached) and not claimed already.
    pub fn claim_due(&self, now: i64, limit: usize) -> Vec<MessageMeta> {
        let mut index = self.index();
        let mut due: Vec<_> = index
            .entries
            .values()
            .filter(|e| {
                !e.busy
                    && matches!(e.meta.state, QueueState::Active | QueueState::Deferred)
                    && e.meta.next_attempt <= now
            })
            .map(|e| (e.meta.next_attempt, e.meta.id.clone()))
            .collect();
        due.sort_unstable();
        due.truncate(limit);
        due.into_iter()
            .filter_map(|(_, id)| {
                let e = index.entries.get_mut(&id)?;
                e.busy = true;
                Some(e.meta.clone())
            })
            .collect()
    }

    /// Returns a claimed message to the queue.
    pub fn unclaim(&self, id: &str) {
        if let Some(e) = self.index().entries.get_mut(id) {
            e.busy = false;
        }
    }

    /// Makes every deferred message due now; returns how many.
    pub async fn flush(&self) -> Result<usize, SpoolError> {
        let deferred: Vec<_> = self
            .index()
            .entries
            .values()
            .filter(|e| e.meta.state == QueueState::Deferred && !e.busy)
            .map(|e| e.meta.clone())
            .collect();
        let n = deferred.len();
        for mut m in deferred {
            m.next_attempt = 0;
            self.update(m).await?;
        }
        Ok(n)
    }

    /// Frames synced and `fdatasync` calls made so far (frames / syncs = group commit size).
    pub fn sync_stats(&self) -> (u64, u64) {
        (
            self.inner.stats.frames.load(Ordering::Relaxed),
            self.inner.stats.syncs.load(Ordering::Relaxed),
        )
    }

    /// Number of segment files on disk.
    pub fn segment_count(&self) -> usize {
        self.inner.segments.all.lock().expect("poisoned").len()
    }

    /// Whether the spool's file system has at least `reserve` bytes free: below that, new
    /// mail is refused (`452 4.3.1`) so that the records that move queued mail along (retry
    /// times, recipients done) still fit. Finishing a message needs no room at all.
    pub fn has_room(&self, reserve: u64) -> bool {
        match nix::sys::statvfs::fstatvfs(&self.inner.dir_handle) {
            // The widths of these C types differ between platforms.
            #[allow(clippy::unnecessary_cast)]
            Ok(v) => {
                (v.blocks_available() as u64).saturating_mul(v.fragment_size() as u64) >= reserve
            }
            Err(_) => true,
        }
    }

    /// Live and destroyed keys and segments, for `sekisho spool stats`.
    pub fn stats(&self) -> SpoolStats {
        let current = self.inner.segments.current.load(Ordering::SeqCst);
        let segments = self.segment_count();
        let index = self.index();
        let keyed = index.entries.values().filter(|e| e.key.is_some()).count();
        SpoolStats {
            messages: index.entries.len(),
            live_keys: keyed + index.undestroyed.len(),
            destroyed_keys: index.destroyed.values().sum(),
            destroyed_since_start: self.inner.stats.destroyed.load(Ordering::Relaxed),
            segments,
            segments_awaiting_compaction: index
                .destroyed
                .iter()
                .filter(|&(&n, &d)| {
                    n < current && d > 0 && index.live.get(&n).copied().unwrap_or(0) > 0
                })
                .count(),
        }
    }

    /// Deletes the oldest segments that hold no live message (in order, so that a segment
    /// never disappears while an older one that its records refer to remains).
    pub fn reclaim(&self) -> io::Result<usize> {
        let current = self.inner.segments.current.load(Ordering::SeqCst);
        let mut removed = 0;
        loop {
            let oldest = {
                let all = self.inner.segments.all.lock().expect("poisoned");
                match all.first() {
                    Some(&n) if n < current => n,
                    _ => break,
                }
            };
            {
                let index = self.index();
                let pinned = index.undestroyed.iter().any(|k| k.at.segment == oldest);
                if pinned || index.live.get(&oldest).copied().unwrap_or(0) > 0 {
                    break;
                }
            }
            match fs::remove_file(log::segment_path(&self.inner.dir, oldest)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.inner
                .segments
                .all
                .lock()
                .expect("poisoned")
                .remove(&oldest);
            let mut index = self.index();
            index.live.remove(&oldest);
            index.destroyed.remove(&oldest);
            removed += 1;
        }
        if removed > 0 {
            fs::File::open(&self.inner.dir)?.sync_all()?;
        }
        Ok(removed)
    }

    /// Tries again to destroy keys whose destruction failed, copies the live, unclaimed
    /// messages of the oldest segment forward (under new keys) if it is at least `behind`
    /// segments older than the current one, then reclaims. Returns messages moved.
    pub async fn compact(&self, behind: u64) -> Result<usize, SpoolError> {
        let undestroyed = std::mem::take(&mut self.index().undestroyed);
        for key in undestroyed {
            if self.destroy_key(&key).await.is_err() {
                self.index().undestroyed.push(key);
            }
        }
        self.retire_current().await?;
        let current = self.inner.segments.current.load(Ordering::SeqCst);
        // (The lock on the segment list is released before reclaim takes it again.)
        let first = self
            .inner
            .segments
            .all
            .lock()
            .expect("poisoned")
            .first()
            .copied();
        let oldest = match first {
            Some(n) if n + behind <= current => n,
            _ => return Ok(self.reclaim().map(|_| 0)?),
        };
        let ids: Vec<String> = {
            let mut index = self.index();
            index
                .entries
                .values_mut()
                .filter(|e| !e.busy && e.home.is_some_and(|h| h.segment == oldest))
                .map(|e| {
                    e.busy = true;
                    e.meta.id.clone()
                })
                .collect()
        };
        // Every message taken above is given back, also after a failure: one left taken would
        // never be delivered (no retry claims a busy message).
        let (mut moved, mut failed) = (0, None);
        for id in ids {
            if failed.is_none() {
                match self.rewrite(&id).await {
                    Ok(()) => moved += 1,
                    Err(e) => failed = Some(e),
                }
            }
            self.unclaim(&id);
        }
        if let Some(e) = failed {
            return Err(e);
        }
        self.reclaim()?;
        Ok(moved)
    }

    /// A current segment of at least [`RETIRE_AT`] that holds no live message is closed, so
    /// that reclaim can delete it: otherwise finished mail would pin up to a whole segment of
    /// disk (as much as a small spool file system) until more mail arrives.
    async fn retire_current(&self) -> io::Result<()> {
        let current = self.inner.segments.current.load(Ordering::SeqCst);
        let live = self.index().live.get(&current).copied().unwrap_or(0);
        let size = fs::metadata(log::segment_path(&self.inner.dir, current))
            .map(|m| m.len())
            .unwrap_or(0);
        if live == 0 && size >= RETIRE_AT {
            self.inner.writer.rotate().await?;
        }
        Ok(())
    }

    /// Copies a message forward under a new data key, then destroys the old key.
    async fn rewrite(&self, id: &str) -> Result<(), SpoolError> {
        let body = self.body(id)?;
        let meta = self
            .get(id)
            .ok_or_else(|| SpoolError::NotFound(id.into()))?;
        let (key, home) = self.write_message(&meta, &body).await?;
        let old = {
            let mut index = self.index();
            match index.entries.get_mut(id) {
                Some(e) => {
                    let old = e.key.replace(key);
                    index.set_home(id, Some(home));
                    old
                }
                // Finished while it was copied: the new copy goes the way of the old.
                None => Some(key),
            }
        };
        if let Some(old) = old {
            self.destroy_key(&old).await?;
        }
        Ok(())
    }

    /// Stops the writer after it has synced everything it was given.
    pub fn shutdown(&self) {
        self.inner.writer.shutdown();
    }
}

/// Runs a spool future to completion from synchronous code (recovery, before the spool is
/// shared): the writer thread does the work, this thread only waits for its answer.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Thread(std::thread::Thread);
    impl Wake for Thread {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Thread(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}
