//! The group-commit log writer of one partition.
//!
//! Writers append framed records to an in-memory batch and get their record's position at
//! once; a single flusher task writes the batch with one durable (O_DSYNC) DMA write per
//! segment touched, then resolves every writer's sync future. While one batch is being
//! written the next one fills, so under load a batch holds every record that arrived during
//! the previous write: one device flush serves many writers.
//!
//! ```text
//! append ──► pending batch ──(flusher: O_DSYNC write)──► durable ──► wake writers
//! ```
//!
//! Why O_DSYNC and zeros ahead (see [`ZERO_AHEAD`]) together: records then overwrite blocks
//! that are already written, which io_uring issues at once and ext4 makes durable with a
//! device flush alone, no journal commit; the kernel flushes from the write's completion.
//! Write then fdatasync took two trips through io_uring's worker threads per batch (the
//! fdatasync always, the write whenever it extended the file).
//!
//! O_DIRECT writes must be aligned, so each write starts at the block holding the current
//! end of the segment and rewrites that block's already-written head from memory (`tail`).
//! The first failed write or sync poisons the writer: everything after fails fast until the
//! partition is reopened, because what reached the disk is then unknown.
//!
//! Segment files are made ahead, by a task of their own (the preparer): created, their
//! space reserved (fallocate) and their directory entry made durable before any record is
//! given a place in them. A full disk or a shortage of descriptors then shows when the
//! next segment cannot be prepared, and writes that would need it are refused up front
//! ([`StoreError::Unavailable`]: nothing logged, nothing applied), instead of failing in
//! the middle of a batch whose records the index already holds, which could only poison
//! the partition. The preparer retries with back-off, so writing resumes by itself when
//! space returns; until then the space reserved in the active segment is still used.
//!
//! ```text
//! preparer: segment N+1 ──create, fallocate, fsync dir──► Ready ──(roll)──► active
//!              └── ENOSPC / EMFILE ──► Failed{retry at} ──► writes needing N+1 refused
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use futures_util::stream::{FuturesOrdered, StreamExt};
use glommio::io::{DmaFile, OpenOptions};

use super::notify::Notify;
use super::tail::{Sealed, ShipError, Tail};
use super::{align_down, align_up};
use crate::error::{Error, Resource, Result, StoreError};
use crate::format::names::segment_file;
use crate::ids::{LogPos, SegmentSeq};
use crate::remote::{Chunk as RemoteChunk, Piece};
use crate::segment::{RecordHeader, SegmentHeader};
use crate::state::RecordLoc;

/// When an acknowledged write is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Durable before acknowledging (O_DSYNC writes): an acknowledged write survives power
    /// loss.
    #[default]
    Sync,
    /// Never sync. An acknowledged write can be lost by a crash of the machine. For tests and
    /// for measuring what syncing costs only.
    DangerNoSync,
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    pub dir: PathBuf,
    pub partition: u32,
    pub epoch: u64,
    /// A segment rolls over once it would grow past this; a bigger record gets a segment
    /// of its own.
    pub segment_size: u64,
    pub durability: Durability,
    /// Cluster mode: every batch is shipped here and acknowledged only once confirmed
    /// (`io/tail.rs`). `None` on a single node.
    pub tail: Option<Tail>,
}

/// A batch written locally, waiting for its turn to be confirmed by the tail sink (cluster
/// mode); its writers are answered, in order, when it is.
struct Shipment {
    end: LogPos,
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
    /// `None` for a batch without records (a new segment's header alone): its bytes ride
    /// with the next batch that has records.
    chunk: Option<RemoteChunk>,
}

/// Counters for the metrics endpoint and the benchmarks.
#[derive(Clone, Debug, Default)]
pub struct LogStats {
    pub batches: u64,
    pub records: u64,
    pub bytes: u64,
    pub max_batch_records: u64,
    pub sync_time: Duration,
    /// Durable-write latencies per batch (write and device flush together): counts in the
    /// buckets of [`SYNC_BUCKETS_MS`] (the last counts everything above).
    pub sync_histogram: [u64; SYNC_BUCKETS_MS.len() + 1],
    /// Why writes are refused now (the next segment cannot be prepared), if they are.
    pub unavailable: Option<String>,
    /// Writes refused because storage was unavailable.
    pub refused_writes: u64,
    /// Segment preparations that failed (each retried).
    pub prepare_failures: u64,
    pub poisoned: bool,
}

/// The first retry of a failed segment preparation, and the longest wait between retries.
const PREPARE_RETRY_MIN: Duration = Duration::from_millis(100);
const PREPARE_RETRY_MAX: Duration = Duration::from_secs(5);
/// While preparation keeps failing, it is logged at most this often.
const PREPARE_LOG_EVERY: Duration = Duration::from_secs(60);
/// On a nearly full disk a segment reserves less than the segment size, halving down to
/// this: the space left is still used, and a segment rolls over at what it reserved.
const MIN_RESERVE: u64 = 1 << 20;

/// A segment file made ahead of the records that will go in it.
enum Prep {
    /// Asked for; the preparer makes it.
    Wanted,
    /// Made, with this many bytes reserved.
    Ready(Rc<DmaFile>, u64),
    /// Could not be made; retried at `retry_at`.
    Failed {
        why: Resource,
        detail: String,
        retry_at: Instant,
    },
}

/// Upper bounds, in milliseconds, of the durable-write latency histogram.
pub const SYNC_BUCKETS_MS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 100.0, 1000.0];

struct Chunk {
    seq: u64,
    start: u64,
    bytes: Vec<u8>,
    records: u64,
}

struct OpenSegment {
    file: Rc<DmaFile>,
    /// The bytes between the last aligned boundary and the written end.
    tail: Vec<u8>,
    /// Bytes from 0 to here have been written, records or zeros (see [`ZERO_AHEAD`]).
    zeroed: u64,
    /// Bytes reserved for it (the segment size, or less on a nearly full disk).
    capacity: u64,
}

/// How far ahead of the records a segment is kept written with zeros, and in what steps.
///
/// A durable write into blocks that are already written (not just allocated) has no
/// metadata to commit: ext4 flushes the device cache and is done, and io_uring issues the
/// write at once. A write into preallocated, unwritten blocks or past the end of the file
/// changes the extent tree and the size, so it also commits a journal transaction (which
/// doubles what a commit costs in time and CPU) and io_uring hands it to a worker thread.
/// Writing zeros a step ahead, with the batch that comes near the end of what is written,
/// leaves that to one batch in every few hundred. Recovery reads the zeros as the clean end
/// of the segment.
const ZERO_AHEAD: u64 = 1 << 20;

struct Inner {
    cfg: LogConfig,
    active_seq: u64,
    active_end: u64,
    next_lsn: u64,
    pending: Vec<Chunk>,
    pending_waiters: Vec<oneshot::Sender<Result<(), String>>>,
    durable: LogPos,
    pos_waiters: Vec<(LogPos, oneshot::Sender<Result<(), String>>)>,
    poisoned: Option<String>,
    closing: bool,
    /// Segments sealed since the owner last asked, with their final lengths.
    sealed: Vec<(u64, u64)>,
    files: BTreeMap<u64, OpenSegment>,
    stats: LogStats,
    /// Batch buffers already written, kept for the next batches: a fresh one grows by
    /// reallocation and faults its pages in again on every batch.
    spare: Vec<Vec<u8>>,
    /// Segments being made ahead, by sequence (moved to `files` when a batch first
    /// writes them).
    prepared: BTreeMap<u64, Prep>,
    /// Wakes the preparer.
    prep_wake: Notify,
    /// A read-only writer (fsck): nothing is prepared or written.
    read_only: bool,
    /// Stops the preparer (after the flusher, which may still need a segment, is done).
    prep_stop: bool,
    /// Tests only: the flusher writes nothing while set (see [`LogWriter::hold_writes`]).
    held: bool,
    /// Segments given records before they were prepared (a roll that came before the
    /// preparer was done): their capacity was taken to be the segment size, so they must
    /// reserve all of it.
    assumed_full: std::collections::BTreeSet<u64>,
    /// Cluster mode: the LSN of the first record of the batch being filled.
    batch_first_lsn: u64,
    /// Cluster mode: bytes written by batches without records (segment headers), shipped
    /// with the next batch that has records.
    carry: Vec<Piece>,
    /// Cluster mode: batches written locally, not yet handed to the sink, in order.
    shipping: VecDeque<Shipment>,
    /// Cluster mode: when each batch not yet confirmed was queued, oldest first.
    unconfirmed: VecDeque<Instant>,
    /// Stops the shipper once the queue is empty (after the flusher is done).
    ship_stop: bool,
    /// Cluster mode: the ownership ended (the sink said so); the log is poisoned too.
    fenced: bool,
    /// Cluster mode: segments sealed (seq, length, the next segment's first LSN) whose
    /// batches are not all confirmed yet; announced to the sink once they are.
    to_announce: VecDeque<(u64, u64, u64)>,
}

/// Written batch buffers kept for reuse, and the largest kept (a rare huge batch's buffer is
/// given back to the allocator rather than held).
const SPARE_BUFFERS: usize = 2;
const SPARE_MAX_BYTES: usize = 4 << 20;

pub struct LogWriter {
    inner: Rc<RefCell<Inner>>,
    notify: Notify,
    flusher: RefCell<Option<glommio::task::JoinHandle<()>>>,
    preparer: RefCell<Option<glommio::task::JoinHandle<()>>>,
    /// Cluster mode: the task that ships batches and answers their writers.
    shipper: RefCell<Option<glommio::task::JoinHandle<()>>>,
    ship_wake: Notify,
}

impl LogWriter {
    /// Starts a writer that appends to a new segment `seq` (recovery never writes into an
    /// existing segment, so torn bytes of an old one are never built upon).
    pub fn start(cfg: LogConfig, seq: SegmentSeq, next_lsn: u64) -> Self {
        Self::start_with(cfg, seq, next_lsn, false)
    }

    /// A writer that writes nothing: every append is refused. For reading a data directory
    /// without changing it (fsck), also on a full disk.
    pub fn read_only(cfg: LogConfig, seq: SegmentSeq, next_lsn: u64) -> Self {
        Self::start_with(cfg, seq, next_lsn, true)
    }

    fn start_with(cfg: LogConfig, seq: SegmentSeq, next_lsn: u64, read_only: bool) -> Self {
        let header = SegmentHeader {
            partition: cfg.partition,
            epoch: cfg.epoch,
            seq: seq.0,
            first_lsn: next_lsn,
            created_unix: unix_now(),
        };
        let inner = Rc::new(RefCell::new(Inner {
            cfg,
            active_seq: seq.0,
            active_end: SegmentHeader::LEN as u64,
            next_lsn,
            pending: if read_only {
                Vec::new()
            } else {
                vec![Chunk {
                    seq: seq.0,
                    start: 0,
                    bytes: header.encode().to_vec(),
                    records: 0,
                }]
            },
            pending_waiters: Vec::new(),
            durable: LogPos {
                segment: seq,
                offset: 0,
            },
            pos_waiters: Vec::new(),
            poisoned: None,
            closing: false,
            sealed: Vec::new(),
            files: BTreeMap::new(),
            stats: LogStats::default(),
            spare: Vec::new(),
            prepared: if read_only {
                BTreeMap::new()
            } else {
                [(seq.0, Prep::Wanted)].into()
            },
            prep_wake: Notify::default(),
            read_only,
            prep_stop: false,
            held: false,
            assumed_full: Default::default(),
            batch_first_lsn: next_lsn,
            carry: Vec::new(),
            shipping: VecDeque::new(),
            unconfirmed: VecDeque::new(),
            ship_stop: false,
            fenced: false,
            to_announce: VecDeque::new(),
        }));
        let notify = Notify::default();
        let ship_wake = Notify::default();
        let tail = inner.borrow().cfg.tail.clone();
        let (task, preparer, shipper) = if read_only {
            (None, None, None)
        } else {
            let task =
                glommio::spawn_local(flusher(inner.clone(), notify.clone(), ship_wake.clone()))
                    .detach();
            let prep = glommio::spawn_local(preparer(inner.clone(), notify.clone())).detach();
            let ship = tail.map(|t| {
                glommio::spawn_local(shipper(inner.clone(), ship_wake.clone(), t)).detach()
            });
            (Some(task), Some(prep), ship)
        };
        notify.notify();
        Self {
            inner,
            notify,
            flusher: RefCell::new(task),
            preparer: RefCell::new(preparer),
            shipper: RefCell::new(shipper),
            ship_wake,
        }
    }

    /// Whether appending records of these total lengths (one mutation group, in order)
    /// could be written now: refused up front if a segment they would need cannot be
    /// prepared, so that a group is either logged whole or not at all.
    pub fn check_room(&self, lens: impl IntoIterator<Item = u64>) -> Result<()> {
        let mut i = self.inner.borrow_mut();
        if let Some(p) = &i.poisoned {
            return Err(Error::Poisoned(p.clone()));
        }
        if i.read_only {
            return Err(Error::Config("the log was opened read-only".into()));
        }
        let refuse = |i: &Inner, seq: u64| match i.prepared.get(&seq) {
            Some(Prep::Failed { why, .. }) if !i.files.contains_key(&seq) => Err(*why),
            _ => Ok(()),
        };
        if let Some(t) = &i.cfg.tail {
            // The cluster has not confirmed a batch for a while: take nothing new.
            if i.unconfirmed
                .front()
                .is_some_and(|at| at.elapsed() >= t.refuse_after)
            {
                i.stats.refused_writes += 1;
                return Err(Error::Store(StoreError::Unavailable(Resource::Remote)));
            }
        }
        let (mut seq, mut end) = (i.active_seq, i.active_end);
        let mut r = refuse(&i, seq);
        for total in lens {
            if r.is_err() {
                break;
            }
            if end > SegmentHeader::LEN as u64 && end + total > i.capacity(seq) {
                seq += 1;
                end = SegmentHeader::LEN as u64;
                r = refuse(&i, seq);
            }
            // A record bigger than a short segment (a nearly full disk) would be written
            // past what was reserved.
            let cap = i.capacity(seq);
            if r.is_ok() && cap < i.cfg.segment_size && end + total > cap {
                r = Err(Resource::Space);
            }
            end += total;
        }
        r.map_err(|why| {
            i.stats.refused_writes += 1;
            Error::Store(StoreError::Unavailable(why))
        })
    }

    /// Tests only: while `hold` is set, batches wait in memory instead of being written (a
    /// slow disk, at will), so what happens between logging and durability can be tested.
    #[doc(hidden)]
    pub fn hold_writes(&self, hold: bool) {
        self.inner.borrow_mut().held = hold;
        self.notify.notify();
    }

    /// Why the active segment itself cannot be written, if it cannot (its preparation
    /// failed): then not even what fits in it can be logged.
    pub fn active_unavailable(&self) -> Option<Resource> {
        let i = self.inner.borrow();
        match i.prepared.get(&i.active_seq) {
            Some(Prep::Failed { why, .. }) if !i.files.contains_key(&i.active_seq) => Some(*why),
            _ => None,
        }
    }

    /// Why writes are refused now, if they are (a segment cannot be prepared).
    pub fn unavailable(&self) -> Option<Resource> {
        let i = self.inner.borrow();
        [i.active_seq, i.active_seq + 1]
            .iter()
            .find_map(|s| match i.prepared.get(s) {
                Some(Prep::Failed { why, .. }) if !i.files.contains_key(s) => Some(*why),
                _ => None,
            })
    }

    /// Waits until the segment the writer starts in is prepared, or its preparation
    /// failed (then writes are refused until it succeeds).
    pub async fn wait_started(&self) {
        loop {
            {
                let i = self.inner.borrow();
                let seq = i.active_seq;
                if i.read_only
                    || i.files.contains_key(&seq)
                    || !matches!(i.prepared.get(&seq), Some(Prep::Wanted))
                {
                    return;
                }
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Appends one record to the pending batch and returns where it will be. Call
    /// [`Self::sync_point`] and await it before acknowledging anything.
    pub fn append(&self, kind: u8, payload: &[u8]) -> Result<(RecordLoc, u64)> {
        let mut g = self.inner.borrow_mut();
        let i = &mut *g;
        if let Some(p) = &i.poisoned {
            return Err(Error::Poisoned(p.clone()));
        }
        if i.closing {
            return Err(crate::error::StoreError::ShuttingDown.into());
        }
        let total = RecordHeader::encode_len(payload.len());
        if i.read_only {
            return Err(Error::Config("the log was opened read-only".into()));
        }
        if i.active_end > SegmentHeader::LEN as u64
            && i.active_end + total > i.capacity(i.active_seq)
        {
            let sealed = (i.active_seq, i.active_end);
            i.sealed.push(sealed);
            if i.cfg.tail.is_some() {
                let next_lsn = i.next_lsn;
                i.to_announce.push_back((sealed.0, sealed.1, next_lsn));
            }
            i.active_seq += 1;
            // Normally made ahead (see below); if not, asked for now, and then it must
            // reserve the full size the roll counted on.
            let seq = i.active_seq;
            if !matches!(i.prepared.get(&seq), Some(Prep::Ready(..))) {
                i.prepared.entry(seq).or_insert(Prep::Wanted);
                i.assumed_full.insert(seq);
                i.prep_wake.notify();
            }
            let header = SegmentHeader {
                partition: i.cfg.partition,
                epoch: i.cfg.epoch,
                seq: i.active_seq,
                first_lsn: i.next_lsn,
                created_unix: unix_now(),
            };
            i.pending.push(Chunk {
                seq: i.active_seq,
                start: 0,
                bytes: header.encode().to_vec(),
                records: 0,
            });
            i.active_end = SegmentHeader::LEN as u64;
        }
        if i.pending.last().is_none_or(|c| c.seq != i.active_seq) {
            let bytes = i
                .spare
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(64 << 10));
            i.pending.push(Chunk {
                seq: i.active_seq,
                start: i.active_end,
                bytes,
                records: 0,
            });
        }
        // Once the active segment is half full, the next one is made ahead (not before: a
        // partition reserves one segment and a half on average, not two).
        let next = i.active_seq + 1;
        if i.active_end + total > i.capacity(i.active_seq) / 2 && !i.prepared.contains_key(&next) {
            i.prepared.insert(next, Prep::Wanted);
            i.prep_wake.notify();
        }
        let lsn = i.next_lsn;
        i.next_lsn += 1;
        let chunk = i.pending.last_mut().expect("pushed above");
        RecordHeader::write_record(&mut chunk.bytes, kind, lsn, payload);
        chunk.records += 1;
        let loc = RecordLoc {
            segment: u32::try_from(i.active_seq)
                .map_err(|_| Error::Config("segment sequence overflow".into()))?,
            offset: i.active_end,
            len: total as u32,
        };
        i.active_end += total;
        drop(g);
        self.notify.notify();
        Ok((loc, lsn))
    }

    /// A future that resolves once everything appended so far is durable (in cluster mode:
    /// on the local disk, in object storage, and the epoch confirmed after that).
    pub fn sync_point(&self) -> impl std::future::Future<Output = Result<()>> + 'static {
        let (tx, rx) = oneshot::channel();
        let ack_timeout = self.inner.borrow().cfg.tail.as_ref().map(|t| t.ack_timeout);
        {
            let mut i = self.inner.borrow_mut();
            if let Some(p) = &i.poisoned {
                let _ = tx.send(Err(p.clone()));
            } else if i.pending.is_empty() {
                // Nothing pending: wait for whatever is in flight to be durable.
                let end = LogPos {
                    segment: SegmentSeq(i.active_seq),
                    offset: i.active_end,
                };
                if i.durable >= end {
                    let _ = tx.send(Ok(()));
                } else {
                    i.pos_waiters.push((end, tx));
                }
            } else {
                i.pending_waiters.push(tx);
            }
        }
        self.notify.notify();
        async move {
            let answer = match ack_timeout {
                None => rx.await,
                Some(t) => {
                    let timeout = async {
                        glommio::timer::sleep(t).await;
                        Ok(Err(String::new()))
                    };
                    match futures_lite::future::or(rx, timeout).await {
                        Ok(Err(e)) if e.is_empty() => {
                            return Err(StoreError::Unconfirmed.into());
                        }
                        other => other,
                    }
                }
            };
            match answer {
                Ok(Ok(())) => Ok(()),
                Ok(Err(p)) => Err(Error::Poisoned(p)),
                Err(_) => Err(crate::error::StoreError::ShuttingDown.into()),
            }
        }
    }

    /// Waits until the log is durable up to `pos` (used by reads of just-written records).
    pub async fn wait_durable(&self, pos: LogPos) -> Result<()> {
        let rx = {
            let mut i = self.inner.borrow_mut();
            if i.durable >= pos {
                return Ok(());
            }
            if let Some(p) = &i.poisoned {
                return Err(Error::Poisoned(p.clone()));
            }
            let (tx, rx) = oneshot::channel();
            i.pos_waiters.push((pos, tx));
            rx
        };
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(p)) => Err(Error::Poisoned(p)),
            Err(_) => Err(crate::error::StoreError::ShuttingDown.into()),
        }
    }

    /// The position after the last appended record (pending records included).
    pub fn end(&self) -> LogPos {
        let i = self.inner.borrow();
        LogPos {
            segment: SegmentSeq(i.active_seq),
            offset: i.active_end,
        }
    }

    pub fn next_lsn(&self) -> u64 {
        self.inner.borrow().next_lsn
    }

    pub fn active_segment(&self) -> SegmentSeq {
        SegmentSeq(self.inner.borrow().active_seq)
    }

    /// Segments sealed since the last call, with their lengths.
    pub fn take_sealed(&self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.inner.borrow_mut().sealed)
    }

    pub fn stats(&self) -> LogStats {
        let mut s = self.inner.borrow().stats.clone();
        s.poisoned = self.inner.borrow().poisoned.is_some();
        s.unavailable = self.unavailable().map(|r| r.to_string());
        s
    }

    pub fn poisoned(&self) -> Option<String> {
        self.inner.borrow().poisoned.clone()
    }

    /// Cluster mode: the tail sink, if any.
    pub fn tail(&self) -> Option<Tail> {
        self.inner.borrow().cfg.tail.clone()
    }

    /// Cluster mode: whether the tail sink said this node's ownership has ended.
    pub fn fenced(&self) -> bool {
        self.inner.borrow().fenced
    }

    /// From now on appends are refused, and a batch waiting for a segment that cannot be
    /// prepared is given up (its writers and waiters fail) instead of waiting for space:
    /// what the owner's close does first, so nothing it waits for can wait forever.
    pub fn begin_close(&self) {
        self.inner.borrow_mut().closing = true;
        self.notify.notify();
    }

    /// Flushes what is pending, stops the flusher and the preparer, closes the files and
    /// removes the segments prepared but never written. A poisoned writer closes without
    /// an error: its failure was reported when it happened.
    pub async fn close(&self) -> Result<()> {
        if self.inner.borrow().read_only {
            return Ok(());
        }
        self.begin_close();
        let r = self.sync_point().await;
        self.notify.notify();
        let (task, prep) = (
            self.flusher.borrow_mut().take(),
            self.preparer.borrow_mut().take(),
        );
        if let Some(t) = task {
            t.await;
        }
        self.inner.borrow_mut().prep_stop = true;
        self.inner.borrow().prep_wake.notify();
        if let Some(t) = prep {
            t.await;
        }
        self.inner.borrow_mut().ship_stop = true;
        self.ship_wake.notify();
        let ship = self.shipper.borrow_mut().take();
        if let Some(t) = ship {
            t.await;
        }
        let (files, prepared, dir, epoch) = {
            let mut i = self.inner.borrow_mut();
            (
                std::mem::take(&mut i.files),
                std::mem::take(&mut i.prepared),
                i.cfg.dir.clone(),
                i.cfg.epoch,
            )
        };
        for (_, s) in files {
            if let Ok(f) = Rc::try_unwrap(s.file) {
                let _ = f.close().await;
            }
        }
        for (seq, p) in prepared {
            if let Prep::Ready(f, _) = p {
                if let Ok(f) = Rc::try_unwrap(f) {
                    let _ = f.close().await;
                }
                let _ = std::fs::remove_file(dir.join(segment_file(epoch, seq)));
            }
        }
        match r {
            Err(Error::Poisoned(_)) => Ok(()),
            r => r,
        }
    }
}

/// Counts a batch written locally.
fn note_batch(i: &mut Inner, records: u64, bytes: u64, sync_time: Duration) {
    i.stats.batches += 1;
    i.stats.records += records;
    i.stats.bytes += bytes;
    i.stats.max_batch_records = i.stats.max_batch_records.max(records);
    i.stats.sync_time += sync_time;
    let ms = sync_time.as_secs_f64() * 1e3;
    let b = SYNC_BUCKETS_MS
        .iter()
        .position(|&le| ms <= le)
        .unwrap_or(SYNC_BUCKETS_MS.len());
    i.stats.sync_histogram[b] += 1;
}

/// The log is durable up to `end`: answers the batch's writers and everyone waiting for a
/// position up to there.
fn made_durable(i: &mut Inner, end: LogPos, waiters: Vec<oneshot::Sender<Result<(), String>>>) {
    i.durable = end;
    for w in waiters {
        let _ = w.send(Ok(()));
    }
    let durable = i.durable;
    let (ready, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut i.pos_waiters)
        .into_iter()
        .partition(|(p, _)| *p <= durable);
    i.pos_waiters = wait;
    for (_, w) in ready {
        let _ = w.send(Ok(()));
    }
}

/// The tail chunk of a batch just written (cluster mode): its pieces (the buffers the write
/// used, moved), after those carried from batches without records, and its LSNs. `None` when it has no records: its
/// pieces are carried to the next one.
fn remote_chunk(i: &mut Inner, written: Vec<Piece>, records: u64) -> Option<RemoteChunk> {
    i.carry.extend(written);
    if records == 0 {
        return None;
    }
    let first_lsn = i.batch_first_lsn;
    i.batch_first_lsn += records;
    Some(RemoteChunk {
        partition: i.cfg.partition,
        epoch: i.cfg.epoch,
        first_lsn,
        last_lsn: first_lsn + records - 1,
        pieces: std::mem::take(&mut i.carry),
    })
}

/// The log closes with every batch confirmed: its last segments are final, the one being
/// written included, and are announced as sealed. The next owner then opens the partition
/// from whole segments instead of fetching every batch's chunk since the last full one
/// (thousands of objects after a busy while, which made a planned move take seconds).
fn seal_at_close(i: &mut Inner, tail: &Tail) {
    if i.fenced || i.poisoned.is_some() || !i.shipping.is_empty() {
        return;
    }
    if i.active_end > SegmentHeader::LEN as u64 {
        let next_lsn = i.next_lsn;
        i.to_announce
            .push_back((i.active_seq, i.active_end, next_lsn));
    }
    announce_sealed(i, tail, u64::MAX);
}

/// Tells the sink of the sealed segments before segment `before`, whose batches are all
/// confirmed.
fn announce_sealed(i: &mut Inner, tail: &Tail, before: u64) {
    while i.to_announce.front().is_some_and(|s| s.0 < before) {
        let Some((seq, len, next_first_lsn)) = i.to_announce.pop_front() else {
            break;
        };
        tail.sink.sealed(Sealed {
            seq,
            epoch: i.cfg.epoch,
            path: i.cfg.dir.join(segment_file(i.cfg.epoch, seq)),
            len,
            next_first_lsn,
        });
    }
}

/// Ships written batches through the tail sink, several at once, and answers their writers
/// strictly in order as each is confirmed (a later batch never before an earlier one). A
/// fenced ownership poisons the log: nothing more is acknowledged.
async fn shipper(inner: Rc<RefCell<Inner>>, wake: Notify, tail: Tail) {
    type Shipped = (
        LogPos,
        Vec<oneshot::Sender<Result<(), String>>>,
        std::result::Result<(), ShipError>,
        usize,
    );
    let mut flight: FuturesOrdered<std::pin::Pin<Box<dyn std::future::Future<Output = Shipped>>>> =
        FuturesOrdered::new();
    // When the last upload started: the next one waits for `tail.interval` after it.
    let mut last_start: Option<Instant> = None;
    loop {
        let mut due = None;
        {
            let mut i = inner.borrow_mut();
            while flight.len() < tail.in_flight.max(1) && !i.shipping.is_empty() {
                if let Some(at) = last_start.map(|t| t + tail.interval) {
                    if !i.ship_stop && Instant::now() < at {
                        due = Some(at);
                        break;
                    }
                }
                last_start = Some(Instant::now());
                // Every batch written meanwhile goes as one chunk: under load a round trip
                // to the store carries many batches, and the PUT count falls as load rises.
                let (s, merged) = merge_shipments(&mut i.shipping, tail.merge_bytes);
                let sent = s.chunk.map(|c| tail.sink.ship(c));
                flight.push_back(Box::pin(async move {
                    let r = match sent {
                        Some(f) => f.await,
                        None => Ok(()),
                    };
                    (s.end, s.waiters, r, merged)
                }));
            }
            if flight.is_empty() && i.ship_stop {
                seal_at_close(&mut i, &tail);
                break;
            }
        }
        // Woken by a new batch, or when a held one may go.
        let woken = async {
            match due {
                Some(at) => {
                    futures_lite::future::or(
                        wake.wait(),
                        glommio::timer::sleep(at.saturating_duration_since(Instant::now())),
                    )
                    .await
                }
                None => wake.wait().await,
            }
        };
        if flight.is_empty() {
            woken.await;
            continue;
        }
        let next = futures_lite::future::or(async { flight.next().await }, async {
            woken.await;
            None
        })
        .await;
        let Some((end, waiters, result, merged)) = next else {
            continue;
        };
        let fenced = {
            let mut i = inner.borrow_mut();
            for _ in 0..merged {
                i.unconfirmed.pop_front();
            }
            match result {
                Ok(()) => {
                    made_durable(&mut i, end, waiters);
                    // Segments before the one this batch ended in are final and confirmed.
                    announce_sealed(&mut i, &tail, end.segment.0);
                    None
                }
                Err(ShipError::Fenced(why)) => Some(fence(&mut i, &why, waiters)),
            }
        };
        if let Some(msg) = fenced {
            // Batches still in flight are never acknowledged.
            while let Some((_, waiters, _, _)) = flight.next().await {
                for w in waiters {
                    let _ = w.send(Err(msg.clone()));
                }
            }
            return;
        }
    }
}

/// Takes the queued shipments from the front, up to about `max_bytes` of chunk bytes (at
/// least one), as one: their chunks' pieces in order, their writers, the last one's end.
/// Returns it and how many were merged.
fn merge_shipments(queue: &mut VecDeque<Shipment>, max_bytes: usize) -> (Shipment, usize) {
    let mut first = queue.pop_front().expect("not empty");
    let mut merged = 1;
    let size = |c: &Option<RemoteChunk>| {
        c.as_ref()
            .map_or(0, |c| c.pieces.iter().map(|p| p.bytes.len()).sum::<usize>())
    };
    let mut bytes = size(&first.chunk);
    while let Some(next) = queue.front() {
        let more = size(&next.chunk);
        if bytes + more > max_bytes {
            break;
        }
        let next = queue.pop_front().expect("checked");
        merged += 1;
        bytes += more;
        first.end = next.end;
        first.waiters.extend(next.waiters);
        first.chunk = match (first.chunk.take(), next.chunk) {
            (Some(mut a), Some(b)) => {
                a.last_lsn = b.last_lsn;
                // Pieces that continue each other are joined when the chunk is encoded,
                // without copying them here.
                a.pieces.extend(b.pieces);
                Some(a)
            }
            (a, b) => a.or(b),
        };
    }
    (first, merged)
}

/// The ownership ended: the log is poisoned and every writer still waiting fails.
fn fence(i: &mut Inner, why: &str, waiters: Vec<oneshot::Sender<Result<(), String>>>) -> String {
    let msg = format!("this node no longer owns the partition: {why}");
    tracing::warn!(partition = i.cfg.partition, epoch = i.cfg.epoch, reason = %why, "fenced: nothing more is acknowledged");
    i.poisoned = Some(msg.clone());
    i.fenced = true;
    let queued: Vec<_> = i.shipping.drain(..).flat_map(|s| s.waiters).collect();
    let pending = std::mem::take(&mut i.pending_waiters);
    let positions = std::mem::take(&mut i.pos_waiters);
    i.pending.clear();
    i.unconfirmed.clear();
    for w in waiters.into_iter().chain(queued).chain(pending) {
        let _ = w.send(Err(msg.clone()));
    }
    for (_, w) in positions {
        let _ = w.send(Err(msg.clone()));
    }
    msg
}

impl Inner {
    /// Where segment `seq` rolls over: what was reserved for it, once known.
    fn capacity(&self, seq: u64) -> u64 {
        match (self.files.get(&seq), self.prepared.get(&seq)) {
            (Some(s), _) => s.capacity,
            (None, Some(Prep::Ready(_, cap))) => *cap,
            _ => self.cfg.segment_size,
        }
    }
}

impl RecordHeader {
    pub fn encode_len(payload_len: usize) -> u64 {
        crate::segment::RECORD_HEADER_LEN as u64 + payload_len as u64
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether every segment the pending chunks go to has a file: those prepared are moved to
/// `files`; one not prepared yet is asked for. `Err` when one failed (with records for it
/// when `has_records`).
fn segments_ready(i: &mut Inner) -> std::result::Result<bool, (String, bool)> {
    let needed: Vec<(u64, bool)> = {
        let mut v: Vec<(u64, bool)> = Vec::new();
        for c in &i.pending {
            match v.last_mut() {
                Some((seq, recs)) if *seq == c.seq => *recs |= c.records > 0,
                _ => v.push((c.seq, c.records > 0)),
            }
        }
        v
    };
    let mut ready = true;
    for (seq, records) in needed {
        if i.files.contains_key(&seq) {
            continue;
        }
        match i.prepared.remove(&seq) {
            Some(Prep::Ready(file, capacity)) => {
                i.assumed_full.remove(&seq);
                i.files.insert(
                    seq,
                    OpenSegment {
                        file,
                        tail: Vec::new(),
                        zeroed: 0,
                        capacity,
                    },
                );
            }
            Some(Prep::Failed {
                why,
                detail,
                retry_at,
            }) => {
                let msg = format!("segment {seq} cannot be prepared: {why} ({detail})");
                i.prepared.insert(
                    seq,
                    Prep::Failed {
                        why,
                        detail,
                        retry_at,
                    },
                );
                if i.closing {
                    return Err((msg, records));
                }
                ready = false;
            }
            other => {
                i.prepared.insert(seq, other.unwrap_or(Prep::Wanted));
                i.prep_wake.notify();
                ready = false;
            }
        }
    }
    Ok(ready)
}

async fn flusher(inner: Rc<RefCell<Inner>>, notify: Notify, ship_wake: Notify) {
    loop {
        let step = {
            let mut i = inner.borrow_mut();
            if i.pending.is_empty() {
                if i.closing {
                    break;
                }
                None
            } else if i.held && !i.closing {
                None
            } else {
                match segments_ready(&mut i) {
                    Ok(true) => Some((
                        std::mem::take(&mut i.pending),
                        std::mem::take(&mut i.pending_waiters),
                    )),
                    // Waits for the preparer, which notifies.
                    Ok(false) => None,
                    Err((msg, records)) => {
                        // Closing while a segment cannot be made: what waits for it is given
                        // up. Records in it were never acknowledged; but the index holds
                        // them, so the partition must not checkpoint: it is poisoned.
                        i.pending.clear();
                        let waiters = std::mem::take(&mut i.pending_waiters);
                        let positions = std::mem::take(&mut i.pos_waiters);
                        let result = if records {
                            tracing::error!(partition = i.cfg.partition, error = %msg, "closing with records that could not be written (never acknowledged)");
                            i.poisoned = Some(msg.clone());
                            Err(msg)
                        } else {
                            Ok(())
                        };
                        for w in waiters {
                            let _ = w.send(result.clone());
                        }
                        // Positions past what was written are never durable now.
                        let durable = i.durable;
                        for (pos, w) in positions {
                            let r = if pos <= durable {
                                Ok(())
                            } else {
                                Err(result.clone().err().unwrap_or_else(|| "closing".into()))
                            };
                            let _ = w.send(r);
                        }
                        continue;
                    }
                }
            }
        };
        let Some((chunks, waiters)) = step else {
            notify.wait().await;
            continue;
        };
        let last = chunks.last().expect("non-empty");
        let end = LogPos {
            segment: SegmentSeq(last.seq),
            offset: last.start + last.bytes.len() as u64,
        };
        let records: u64 = chunks.iter().map(|c| c.records).sum();
        let bytes: u64 = chunks.iter().map(|c| c.bytes.len() as u64).sum();
        // Cluster mode: the batch's buffers are kept after the write, for its tail chunk.
        let cluster = inner.borrow().cfg.tail.is_some();
        let result = write_batch(&inner, chunks, cluster).await;
        let mut i = inner.borrow_mut();
        let (result, remote) = match result {
            Ok((sync_time, kept)) => {
                let remote = cluster.then(|| remote_chunk(&mut i, kept, records));
                (Ok(sync_time), remote)
            }
            Err(e) => (Err(e), None),
        };
        match result {
            Ok(sync_time) if remote.is_some() => {
                note_batch(&mut i, records, bytes, sync_time);
                i.shipping.push_back(Shipment {
                    end,
                    waiters,
                    chunk: remote.flatten(),
                });
                i.unconfirmed.push_back(Instant::now());
                ship_wake.notify();
            }
            Ok(sync_time) => {
                note_batch(&mut i, records, bytes, sync_time);
                made_durable(&mut i, end, waiters);
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(partition = i.cfg.partition, error = %msg, "log write failed; partition poisoned");
                i.poisoned = Some(msg.clone());
                let pending = std::mem::take(&mut i.pending_waiters);
                let pos = std::mem::take(&mut i.pos_waiters);
                i.pending.clear();
                for w in waiters.into_iter().chain(pending) {
                    let _ = w.send(Err(msg.clone()));
                }
                for (_, w) in pos {
                    let _ = w.send(Err(msg.clone()));
                }
            }
        }
        // A sealed segment's file is done once a batch ended in a later segment; later
        // batches never go back to it.
        let last = end.segment.0;
        i.files.retain(|&seq, _| seq >= last);
    }
}

/// Writes a batch; with [`Durability::Sync`] it is durable when this returns (segments are
/// opened O_DSYNC). Returns how long the writes took, and with `keep` the chunks' bytes
/// (cluster mode: they become the tail chunk without a copy; else they are reused).
async fn write_batch(
    inner: &Rc<RefCell<Inner>>,
    chunks: Vec<Chunk>,
    keep: bool,
) -> Result<(Duration, Vec<Piece>)> {
    let mut kept = Vec::new();
    let cfg = inner.borrow().cfg.clone();
    let mut took = Duration::ZERO;
    // Files this batch made longer (a new segment's first write, the zeros ahead, a record
    // past them). O_DSYNC should make the new size durable with the data, but that path
    // (a size change made at O_DIRECT completion) has had bugs in ext4, e.g. the 2019 fix
    // "iomap that extends beyond EOF should be marked dirty". An fdatasync after such a
    // batch, one in every few hundred, does not depend on it.
    let mut extended: Vec<Rc<DmaFile>> = Vec::new();
    for chunk in chunks {
        let path = cfg.dir.join(segment_file(cfg.epoch, chunk.seq));
        let existing = inner
            .borrow()
            .files
            .get(&chunk.seq)
            .map(|s| (s.file.clone(), s.tail.clone(), s.zeroed, s.capacity));
        // The flusher moved every segment of the batch to `files` (`segments_ready`).
        let Some((file, tail, zeroed, capacity)) = existing else {
            return Err(Error::io(
                format!("writing {path:?}"),
                std::io::Error::other("internal: the segment was not prepared"),
            ));
        };
        let aligned_start = align_down(chunk.start);
        if aligned_start + tail.len() as u64 != chunk.start {
            // Writing now would overwrite the block's head with the wrong bytes.
            return Err(Error::io(
                format!("writing {path:?}"),
                std::io::Error::other(format!(
                    "internal: block tail of {} bytes does not end at offset {}",
                    tail.len(),
                    chunk.start
                )),
            ));
        }
        let data_len = tail.len() + chunk.bytes.len();
        let buf_len = align_up(data_len as u64) as usize;
        let mut buf = file.alloc_dma_buffer(buf_len);
        {
            let b = buf.as_bytes_mut();
            b[..tail.len()].copy_from_slice(&tail);
            b[tail.len()..data_len].copy_from_slice(&chunk.bytes);
            b[data_len..].fill(0);
        }
        let end = chunk.start + chunk.bytes.len() as u64;
        let new_tail_start = (align_down(end) - aligned_start) as usize;
        let new_tail = buf.as_bytes()[new_tail_start..data_len].to_vec();
        let data_end = aligned_start + buf_len as u64;
        // Zeros ahead, in the same sync as this batch (disjoint from its blocks).
        let zero_from = data_end.max(zeroed);
        let zero_to = if zeroed < data_end + ZERO_AHEAD / 2 {
            (zero_from + ZERO_AHEAD).min(align_up(capacity).max(data_end))
        } else {
            zeroed
        };
        let zeros = async {
            if zero_to <= zero_from {
                return Ok(());
            }
            let mut z = file.alloc_dma_buffer((zero_to - zero_from) as usize);
            z.as_bytes_mut().fill(0);
            write_exact(&file, z, zero_from).await
        };
        let started = Instant::now();
        let (written, zeros) =
            futures_lite::future::zip(write_exact(&file, buf, aligned_start), zeros).await;
        took += started.elapsed();
        zeros.map_err(|e| Error::io(format!("writing zeros ahead in {path:?}"), e))?;
        written.map_err(|e| Error::io(format!("writing {path:?}"), e))?;
        inner.borrow_mut().files.insert(
            chunk.seq,
            OpenSegment {
                file: file.clone(),
                tail: new_tail,
                zeroed: zero_to.max(data_end),
                capacity,
            },
        );
        let grew = data_end > zeroed || zero_to > zero_from;
        if grew && !extended.iter().any(|f| Rc::ptr_eq(f, &file)) {
            extended.push(file);
        }
        let mut bytes = chunk.bytes;
        if keep {
            // Held until the chunk is confirmed: not a mostly empty 64 KiB buffer each.
            if bytes.capacity() > 2 * bytes.len() {
                bytes.shrink_to_fit();
            }
            kept.push(Piece {
                segment: chunk.seq,
                offset: chunk.start,
                bytes,
            });
            continue;
        }
        let mut i = inner.borrow_mut();
        if i.spare.len() < SPARE_BUFFERS && bytes.capacity() <= SPARE_MAX_BYTES {
            bytes.clear();
            i.spare.push(bytes);
        }
    }
    if cfg.durability == Durability::Sync {
        let started = Instant::now();
        for f in &extended {
            f.fdatasync()
                .await
                .map_err(|e| Error::io("syncing a segment's new length", e.into()))?;
        }
        took += started.elapsed();
    }
    Ok((took, kept))
}

/// Makes segment files ahead of the records that will go in them (see the module comment):
/// every `Wanted` one, and a `Failed` one again once its retry time has come.
async fn preparer(inner: Rc<RefCell<Inner>>, flusher: Notify) {
    let wake = inner.borrow().prep_wake.clone();
    let mut backoff = PREPARE_RETRY_MIN;
    let mut next_log: Option<Instant> = None;
    let mut failing = false;
    loop {
        let (todo, wait) = {
            let i = inner.borrow();
            if i.prep_stop {
                break;
            }
            let now = Instant::now();
            let mut wait: Option<Instant> = None;
            let todo = i.prepared.iter().find_map(|(&seq, p)| match p {
                Prep::Wanted => Some(seq),
                Prep::Failed { retry_at, .. } if *retry_at <= now => Some(seq),
                Prep::Failed { retry_at, .. } => {
                    wait = Some(wait.map_or(*retry_at, |w: Instant| w.min(*retry_at)));
                    None
                }
                Prep::Ready(..) => None,
            });
            (todo, wait)
        };
        let Some(seq) = todo else {
            match wait {
                Some(at) => {
                    let sleep = at.saturating_duration_since(Instant::now());
                    futures_lite::future::or(wake.wait(), glommio::timer::sleep(sleep)).await;
                }
                None => wake.wait().await,
            }
            continue;
        };
        let (cfg, full) = {
            let i = inner.borrow();
            (i.cfg.clone(), i.assumed_full.contains(&seq))
        };
        let mut result = prepare_segment(&cfg, seq, full).await;
        // Given records while it was being made: it must hold the full size after all.
        if let Ok((f, cap)) = &result {
            if *cap < cfg.segment_size && inner.borrow().assumed_full.contains(&seq) {
                if let Err(e) = f.pre_allocate(cfg.segment_size, true).await {
                    let path = cfg.dir.join(segment_file(cfg.epoch, seq));
                    let why = Resource::of_glommio(&e).unwrap_or(Resource::Device);
                    let io: std::io::Error = e.into();
                    if let Ok((f, _)) = result {
                        let _ = f.close().await;
                    }
                    let _ = std::fs::remove_file(&path);
                    result = Err((why, format!("reserving space for {path:?}: {io}")));
                } else {
                    result = result.map(|(f, _)| (f, cfg.segment_size));
                }
            }
        }
        tracing::debug!(
            partition = cfg.partition,
            segment = seq,
            ok = result.is_ok(),
            "segment preparation"
        );
        let mut i = inner.borrow_mut();
        match result {
            Ok((file, capacity)) => {
                if failing {
                    tracing::info!(
                        partition = cfg.partition,
                        segment = seq,
                        reserved = capacity,
                        "segment prepared: writing resumes"
                    );
                    failing = false;
                    next_log = None;
                }
                backoff = PREPARE_RETRY_MIN;
                i.prepared.insert(seq, Prep::Ready(Rc::new(file), capacity));
            }
            Err((why, detail)) => {
                i.stats.prepare_failures += 1;
                let now = Instant::now();
                if next_log.is_none_or(|t| now >= t) {
                    let level_error = why == Resource::Device || i.assumed_full.contains(&seq);
                    if i.assumed_full.contains(&seq) {
                        tracing::error!(partition = cfg.partition, segment = seq, reason = %why, error = %detail, "records wait for a segment that cannot be prepared; they are written (and acknowledged) when it can be");
                    } else if level_error {
                        tracing::error!(partition = cfg.partition, segment = seq, error = %detail, "cannot prepare the next segment; writes are refused until it can be (retrying)");
                    } else {
                        tracing::warn!(partition = cfg.partition, segment = seq, reason = %why, error = %detail, "cannot prepare the next segment; writes are refused until it can be (retrying)");
                    }
                    next_log = Some(now + PREPARE_LOG_EVERY);
                }
                failing = true;
                i.prepared.insert(
                    seq,
                    Prep::Failed {
                        why,
                        detail,
                        retry_at: now + backoff,
                    },
                );
                backoff = (backoff * 2).min(PREPARE_RETRY_MAX);
            }
        }
        drop(i);
        flusher.notify();
    }
}

/// Creates segment `seq`, reserves its space (the segment size, or on a nearly full disk
/// as much as is left, down to [`MIN_RESERVE`]) and makes its directory entry durable;
/// returns the file and what it reserved. On failure nothing is left: a file that was
/// created is removed (a partial fallocate on a full disk would otherwise keep the blocks
/// it got).
async fn prepare_segment(
    cfg: &LogConfig,
    seq: u64,
    full: bool,
) -> std::result::Result<(DmaFile, u64), (Resource, String)> {
    let path = cfg.dir.join(segment_file(cfg.epoch, seq));
    let classify = |what: &str, e: glommio::GlommioError<()>| {
        let why = Resource::of_glommio(&e).unwrap_or(Resource::Device);
        let io: std::io::Error = e.into();
        (why, format!("{what} {path:?}: {io}"))
    };
    // O_DSYNC: each write returns once durable (see the module comment).
    let dsync = match cfg.durability {
        Durability::Sync => libc::O_DSYNC,
        Durability::DangerNoSync => 0,
    };
    let f = OpenOptions::new()
        .write(true)
        .read(true)
        .create(true)
        .custom_flags(dsync)
        .dma_open(&path)
        .await
        .map_err(|e| classify("creating", e))?;
    // keep_size: the blocks are reserved, but the file's length stays the length written,
    // so recovery reads only what holds records.
    let mut size = cfg.segment_size;
    let allocated = loop {
        match f.pre_allocate(size, true).await {
            Ok(()) => break Ok(size),
            Err(e) => {
                let no_space = Resource::of_glommio(&e) == Some(Resource::Space);
                if no_space
                    && !full
                    && size / 2 >= MIN_RESERVE
                    && size / 2 >= SegmentHeader::LEN as u64 * 2
                {
                    size /= 2;
                    continue;
                }
                break Err(classify("reserving space for", e));
            }
        }
    };
    let reserved = allocated.and_then(|size| {
        super::fsync_dir(&cfg.dir)
            .map(|()| size)
            .map_err(|e| match e {
                Error::Io { source, context } => (
                    source
                        .raw_os_error()
                        .and_then(Resource::of_errno)
                        .unwrap_or(Resource::Device),
                    format!("{context}: {source}"),
                ),
                other => (Resource::Device, other.to_string()),
            })
    });
    match reserved {
        Ok(size) => Ok((f, size)),
        Err(e) => {
            let _ = f.close().await;
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Writes all of `buf` at `pos`: a short write is an error.
async fn write_exact(file: &DmaFile, buf: glommio::io::DmaBuffer, pos: u64) -> std::io::Result<()> {
    let len = buf.len();
    match file.write_at(buf, pos).await {
        Ok(n) if n == len => Ok(()),
        Ok(n) => Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("short write: {n} of {len} bytes"),
        )),
        Err(e) => Err(e.into()),
    }
}
