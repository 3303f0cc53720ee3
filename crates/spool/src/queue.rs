//! The queue: an in-memory index over the log, with recovery, states and compaction.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use thiserror::Error;

use crate::NodeKey;
use crate::codec::{CodecError, Reader, Writer};
use crate::log::{self, Location, LogWriter, Scanned, Segments, WriterStats};

const KIND_MESSAGE: u8 = 1;
const KIND_UPDATE: u8 = 2;
const KIND_REMOVE: u8 = 3;

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
    fn code(self) -> u8 {
        match self {
            Self::Active => 0,
            Self::Deferred => 1,
            Self::Hold => 2,
            Self::Corrupt => 3,
        }
    }
    fn from_code(c: u8) -> Result<Self, CodecError> {
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

fn encode_meta(w: &mut Writer, m: &MessageMeta) {
    w.str(&m.id);
    w.str(&m.envelope.mail_from);
    w.u8(u8::from(m.envelope.eight_bit)
        | (u8::from(m.envelope.smtputf8) << 1)
        | (u8::from(m.envelope.outbound) << 2));
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

fn decode_meta(r: &mut Reader<'_>) -> Result<MessageMeta, CodecError> {
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
        },
        received_at,
        state,
        attempts,
        next_attempt,
        size,
        note,
    })
}

enum Record {
    Message(MessageMeta, Vec<u8>),
    Update(MessageMeta),
    Remove(String),
}

fn decode_record(kind: u8, plain: &[u8]) -> Result<Record, CodecError> {
    let mut r = Reader::new(plain);
    Ok(match kind {
        KIND_MESSAGE => {
            let meta = decode_meta(&mut r)?;
            let body = r.bytes()?.to_vec();
            Record::Message(meta, body)
        }
        KIND_UPDATE => Record::Update(decode_meta(&mut r)?),
        KIND_REMOVE => Record::Remove(r.string()?),
        t => return Err(CodecError::Tag(t)),
    })
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
}

struct Entry {
    meta: MessageMeta,
    home: Option<Location>,
    busy: bool,
}

#[derive(Default)]
struct Index {
    entries: HashMap<String, Entry>,
    /// Live messages per segment (by the segment of their content frame).
    live: BTreeMap<u64, usize>,
}

impl Index {
    fn set_home(&mut self, id: &str, home: Option<Location>) {
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

    fn remove(&mut self, id: &str) -> bool {
        self.set_home(id, None);
        self.entries.remove(id).is_some()
    }
}

struct Inner {
    dir: PathBuf,
    key: NodeKey,
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

impl Spool {
    /// Opens (or creates) the spool in `dir`, replays its segments and starts the writer.
    pub fn open(
        dir: &Path,
        key: NodeKey,
        opts: SpoolOptions,
    ) -> io::Result<(Self, RecoveryReport)> {
        fs::create_dir_all(dir.join("corrupt"))?;
        let mut index = Index::default();
        let mut report = RecoveryReport::default();
        let existing = log::list_segments(dir)?;
        for &n in &existing {
            replay_segment(dir, &key, n, &mut index, &mut report)?;
        }
        for e in index.entries.values_mut() {
            if e.home.is_none() {
                e.meta.state = QueueState::Corrupt;
                e.meta.note = "content frame lost; see spool/corrupt/".into();
                report.corrupt_messages += 1;
            }
        }
        report.messages = index.entries.len();
        let segments = Arc::new(Segments::default());
        segments
            .all
            .lock()
            .expect("poisoned")
            .extend(existing.iter().copied());
        let first = existing.last().map_or(1, |n| n + 1);
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
                key,
                writer,
                segments,
                stats,
                index: Mutex::new(index),
            }),
        };
        spool.reclaim()?;
        Ok((spool, report))
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.inner.index.lock().expect("spool index poisoned")
    }

    fn seal_frame(&self, kind: u8, plain: &[u8]) -> Vec<u8> {
        let sealed_len = keys::SALT_LEN + plain.len() + keys::TAG_LEN;
        let sealed = self.inner.key.seal(&log::aad(kind, sealed_len), plain);
        log::frame(kind, &sealed)
    }

    async fn append(&self, kind: u8, plain: &[u8]) -> Result<Location, SpoolError> {
        let frame = self.seal_frame(kind, plain);
        Ok(self.inner.writer.append(frame).await?)
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
        let mut w = Writer::with_capacity(body.len() + 256);
        encode_meta(&mut w, &meta);
        w.bytes(body);
        let loc = self.append(KIND_MESSAGE, &w.buf).await?;
        let id = meta.id.clone();
        let mut index = self.index();
        index.entries.insert(
            id.clone(),
            Entry {
                meta,
                home: None,
                busy: claim,
            },
        );
        index.set_home(&id, Some(loc));
        Ok(())
    }

    /// Records a new state for a queued message (after a delivery attempt, hold, release …).
    pub async fn update(&self, meta: MessageMeta) -> Result<(), SpoolError> {
        let mut w = Writer::with_capacity(256);
        encode_meta(&mut w, &meta);
        self.append(KIND_UPDATE, &w.buf).await?;
        let gone = match self.index().entries.get_mut(&meta.id) {
            Some(e) => {
                e.meta = meta.clone();
                false
            }
            None => true,
        };
        if gone {
            // Removed while the update was being written: repeat the removal after it, so
            // that replay does not bring the message back.
            self.append_remove(&meta.id).await?;
        }
        Ok(())
    }

    async fn append_remove(&self, id: &str) -> Result<(), SpoolError> {
        let mut w = Writer::default();
        w.str(id);
        self.append(KIND_REMOVE, &w.buf).await?;
        Ok(())
    }

    /// Removes a message for good (delivered to all, bounced, or deleted).
    pub async fn remove(&self, id: &str) -> Result<(), SpoolError> {
        if !self.index().entries.contains_key(id) {
            return Err(SpoolError::NotFound(id.into()));
        }
        self.append_remove(id).await?;
        self.index().remove(id);
        self.reclaim()?;
        Ok(())
    }

    /// The content of a queued message.
    pub fn body(&self, id: &str) -> Result<Vec<u8>, SpoolError> {
        let home = self
            .index()
            .entries
            .get(id)
            .ok_or_else(|| SpoolError::NotFound(id.into()))?
            .home
            .ok_or_else(|| SpoolError::Damaged(format!("{id} has no content frame")))?;
        let (kind, payload) = log::read_frame(&self.inner.dir, home)?;
        let plain = self
            .inner
            .key
            .open(&log::aad(kind, payload.len()), &payload)
            .ok_or_else(|| SpoolError::Damaged(format!("{id}: authentication failed")))?;
        match decode_record(kind, &plain) {
            Ok(Record::Message(_, body)) => Ok(body),
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
            let live = self.index().live.get(&oldest).copied().unwrap_or(0);
            if live > 0 {
                break;
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
            self.index().live.remove(&oldest);
            removed += 1;
        }
        if removed > 0 {
            fs::File::open(&self.inner.dir)?.sync_all()?;
        }
        Ok(removed)
    }

    /// Copies the live, unclaimed messages of the oldest segment forward if it is at least
    /// `behind` segments older than the current one, then reclaims. Returns messages moved.
    pub async fn compact(&self, behind: u64) -> Result<usize, SpoolError> {
        let current = self.inner.segments.current.load(Ordering::SeqCst);
        let oldest = match self.inner.segments.all.lock().expect("poisoned").first() {
            Some(&n) if n + behind <= current => n,
            _ => return Ok(0),
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
        let mut moved = 0;
        for id in ids {
            let result = self.rewrite(&id).await;
            self.unclaim(&id);
            result?;
            moved += 1;
        }
        self.reclaim()?;
        Ok(moved)
    }

    async fn rewrite(&self, id: &str) -> Result<(), SpoolError> {
        let body = self.body(id)?;
        let meta = self
            .get(id)
            .ok_or_else(|| SpoolError::NotFound(id.into()))?;
        let mut w = Writer::with_capacity(body.len() + 256);
        encode_meta(&mut w, &meta);
        w.bytes(&body);
        let loc = self.append(KIND_MESSAGE, &w.buf).await?;
        let gone = !self.index().entries.contains_key(id);
        if gone {
            self.append_remove(id).await?;
        } else {
            self.index().set_home(id, Some(loc));
        }
        Ok(())
    }

    /// Stops the writer after it has synced everything it was given.
    pub fn shutdown(&self) {
        self.inner.writer.shutdown();
    }
}

fn replay_segment(
    dir: &Path,
    key: &NodeKey,
    n: u64,
    index: &mut Index,
    report: &mut RecoveryReport,
) -> io::Result<()> {
    let buf = fs::read(log::segment_path(dir, n))?;
    index.live.entry(n).or_default();
    for item in log::scan(&buf) {
        let (offset, len) = match item {
            Scanned::Frame {
                offset,
                kind,
                payload_len,
            } => {
                let payload =
                    &buf[offset + log::HEADER_LEN..offset + log::HEADER_LEN + payload_len];
                let record = key
                    .open(&log::aad(kind, payload_len), payload)
                    .and_then(|plain| decode_record(kind, &plain).ok());
                let loc = Location {
                    segment: n,
                    offset: offset as u64,
                    len: (log::HEADER_LEN + payload_len) as u32,
                };
                match record {
                    Some(record) => {
                        apply(index, record, loc);
                        continue;
                    }
                    None => (offset, log::HEADER_LEN + payload_len),
                }
            }
            Scanned::Damaged { offset, len } => (offset, len),
        };
        let path = dir
            .join("corrupt")
            .join(format!("seg-{n:016x}-at-{offset}.bin"));
        fs::write(&path, &buf[offset..offset + len])?;
        tracing::error!(
            segment = n,
            offset,
            len,
            moved_to = %path.display(),
            "spool: damaged frame moved aside"
        );
        report.damaged_regions += 1;
        report.damaged_bytes += len;
    }
    Ok(())
}

fn apply(index: &mut Index, record: Record, loc: Location) {
    match record {
        Record::Message(meta, _) => {
            let id = meta.id.clone();
            match index.entries.get_mut(&id) {
                Some(e) => e.meta = meta,
                None => {
                    index.entries.insert(
                        id.clone(),
                        Entry {
                            meta,
                            home: None,
                            busy: false,
                        },
                    );
                }
            }
            index.set_home(&id, Some(loc));
        }
        Record::Update(meta) => match index.entries.get_mut(&meta.id) {
            Some(e) => e.meta = meta,
            None => {
                index.entries.insert(
                    meta.id.clone(),
                    Entry {
                        meta,
                        home: None,
                        busy: false,
                    },
                );
            }
        },
        Record::Remove(id) => {
            index.remove(&id);
        }
    }
}
