//! One partition: a log, its index, and the async API the rest of ringmail uses.
//!
//! A partition lives on exactly one shard (executor thread) and is used through `Rc`; it is
//! never shared across threads. Every mutating call follows the same three steps, with no
//! `.await` between the first two, so no other task can interleave:
//!
//! 1. plan: validate against the current state and build the [`Mutation`]s;
//! 2. log and apply: append the records to the group-commit batch and apply them;
//! 3. await durability, then report success.
//!
//! Readers on the same shard see a change from step 2 on; a message whose record is not yet
//! durable is read only after it is (`LogWriter::wait_durable`).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::annotations::AccountAnnotations;
use crate::api::MessageInfo;
use crate::checkpoint::Checkpoint;
use crate::compaction::CompactionConfig;
use crate::compress_worker::CompressWorker;
use crate::compression::{Compression, DictionaryConfig, MIN_COMPRESS};
use crate::error::{Error, Result};
use crate::flags::{Flags, SpecialUse};
use crate::ids::{BlobId, PartitionId, SegmentSeq, Uid};
use crate::io::log_writer::{Durability, LogConfig, LogStats, LogWriter};
use crate::io::notify::Notify;
use crate::io::reader::{ReadMode, SegmentReader};
use crate::mutation::{BlobRecord, Mutation};
use crate::recovery::{self, RecoveryMode, RecoveryReport};
use crate::retired::Retired;
use crate::segment::SegmentEpochs;
use crate::state::PartitionState;

mod deferred;
mod maintenance;
mod read;
mod write;

#[derive(Clone, Debug)]
pub struct PartitionConfig {
    /// The ownership epoch new segments are written with (1 on a single node; a cluster
    /// owner writes with the epoch etcd gave its ownership). Segments of every epoch are read.
    pub epoch: u64,
    pub segment_size: u64,
    pub durability: Durability,
    /// Write a checkpoint after this many log bytes (0: only on demand and at close).
    pub checkpoint_bytes: u64,
    pub compaction: CompactionConfig,
    /// Bytes of decompressed messages kept for repeated reads.
    pub cache_bytes: usize,
    /// zstd level for message bodies.
    pub zstd_level: i32,
    pub dictionary: DictionaryConfig,
    /// Deferred compression: bodies of up to this many bytes in all may wait in the log
    /// uncompressed, for a background thread to compress when a core is idle (0: compress
    /// every body before it is logged). See `compress_worker`.
    pub deferred_compression_bytes: u64,
    pub recovery: RecoveryMode,
    pub read_mode: ReadMode,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        Self {
            epoch: 1,
            segment_size: 128 << 20,
            durability: Durability::Sync,
            checkpoint_bytes: 256 << 20,
            compaction: CompactionConfig::default(),
            cache_bytes: 64 << 20,
            zstd_level: 1,
            dictionary: DictionaryConfig::default(),
            // About 20 s of a burst at the rate one partition takes 4 KiB mail on the
            // benchmark machine; a few seconds' worth of disk on any mail server.
            deferred_compression_bytes: 1 << 30,
            recovery: RecoveryMode::Repair,
            read_mode: ReadMode::default(),
        }
    }
}

/// Options for a new account.
#[derive(Clone, Debug, Default)]
pub struct AccountOptions {
    pub quota_bytes: u64,
    pub quota_messages: u64,
    /// Mailboxes to create besides INBOX.
    pub mailboxes: Vec<(String, SpecialUse)>,
}

impl AccountOptions {
    /// INBOX plus the mailboxes clients expect, with their special-use attributes.
    pub fn standard() -> Self {
        Self {
            quota_bytes: 0,
            quota_messages: 0,
            mailboxes: vec![
                ("Sent".into(), SpecialUse::Sent),
                ("Drafts".into(), SpecialUse::Drafts),
                ("Trash".into(), SpecialUse::Trash),
                ("Junk".into(), SpecialUse::Junk),
                ("Archive".into(), SpecialUse::Archive),
            ],
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct PartitionStats {
    pub accounts: usize,
    pub messages: u64,
    pub blobs: usize,
    /// Compression dictionaries trained so far.
    pub dictionaries: usize,
    pub segments: usize,
    pub segment_bytes: u64,
    pub live_bytes: u64,
    pub log: LogStats,
    /// Bytes of the loaded checkpoint archive (the index read in place).
    pub checkpoint_bytes: usize,
    /// Bytes the index holds beyond the checkpoint (changes since it).
    pub overlay_bytes: usize,
    /// Bytes of mail stored raw, waiting for deferred compression.
    pub deferred_bytes: u64,
}

#[derive(Clone, Debug, Default)]
pub struct IntegrityReport {
    pub blobs_checked: usize,
    pub errors: Vec<String>,
    /// The messages whose stored body is unreadable or missing: (account, mailbox, UID).
    pub damaged: Vec<(String, String, Uid)>,
}

struct BodyCache {
    budget: usize,
    used: usize,
    map: HashMap<u64, Rc<Vec<u8>>>,
    order: VecDeque<u64>,
}

impl BodyCache {
    fn get(&self, id: u64) -> Option<Rc<Vec<u8>>> {
        self.map.get(&id).cloned()
    }
    fn insert(&mut self, id: u64, body: Rc<Vec<u8>>) {
        if body.len() > self.budget / 4 || self.map.contains_key(&id) {
            return;
        }
        self.used += body.len();
        self.map.insert(id, body);
        self.order.push_back(id);
        while self.used > self.budget {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(b) = self.map.remove(&old) {
                self.used -= b.len();
            }
        }
    }
}

struct Housekeeping {
    checkpoint_seq: u64,
    /// Segments below this are covered by the newest durable checkpoint.
    covered_below: u64,
    segment_lengths: BTreeMap<u64, u64>,
    bytes_since_checkpoint: u64,
    checkpointing: bool,
    compacting: bool,
    checkpoint: Option<Rc<Checkpoint>>,
    /// No background checkpoint before this (the last one failed).
    checkpoint_retry_at: Option<Instant>,
}

/// Deferred compression starts on a partition this long after its last delivery.
const DEFER_UNTIL_QUIET: Duration = Duration::from_millis(50);
/// After a background checkpoint failed, the next waits at least this long.
const CHECKPOINT_RETRY: Duration = Duration::from_secs(30);
/// Reads [`Partition::fetch_metas`] keeps in flight: one round trip to the device (or one
/// io_uring submission for the page cache) serves that many messages of a scan.
const META_READ_AHEAD: usize = 32;

/// Messages stored raw for the worker to compress (deferred compression).
#[derive(Default)]
struct Deferred {
    /// (blob id, raw length), oldest first.
    queue: VecDeque<(u64, u32)>,
    /// Raw bytes in `queue`: new deliveries defer only while this is under the bound.
    bytes: u64,
}

pub struct Partition {
    id: PartitionId,
    dir: PathBuf,
    cfg: PartitionConfig,
    state: RefCell<PartitionState>,
    log: LogWriter,
    reader: SegmentReader,
    compression: RefCell<Compression>,
    cache: RefCell<BodyCache>,
    hk: RefCell<Housekeeping>,
    poisoned: Cell<bool>,
    report: RecoveryReport,
    /// While a checkpoint is taken: the mutations applied after its image (bodies left out),
    /// replayed onto the state read back from it, so the index can be rebased under load.
    since_image: RefCell<Option<Vec<(Mutation, crate::state::RecordLoc)>>>,
    /// Bumped after every durable commit; IMAP sessions wait on it (IDLE).
    changes: crate::io::changes::Changes,
    /// Expunged messages some IMAP session may still fetch before it is told (RFC 2180
    /// section 4.1.1).
    retired: Rc<RefCell<Retired>>,
    /// Accounts' annotations as last written (`annotations.rs`), read on first use.
    annotations: RefCell<HashMap<u32, Rc<AccountAnnotations>>>,
    /// One annotation write at a time: each writes the account's whole file.
    annotation_writes: glommio::sync::Semaphore,
    /// `None` when deferred compression is off.
    worker: Option<CompressWorker>,
    deferred: RefCell<Deferred>,
    deferred_wake: Notify,
    /// Where records are encoded before they are appended (kept: a message's record grew a
    /// fresh buffer by doubling, a dozen reallocations per delivery).
    encode_buf: RefCell<Vec<u8>>,
    /// Cleared if the compression task stops: deliveries then compress inline again.
    deferring: Cell<bool>,
    last_delivery: Cell<Instant>,
    closing: Cell<bool>,
    /// Cluster mode: this node no longer serves the partition (closed after its ownership
    /// ended or moved); sessions holding it end.
    gone: Cell<bool>,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Partition {
    /// Opens (or creates) the partition stored in `dir`, recovering from its log.
    /// Must run on a glommio executor whose device probe was done (`io::probe_device`).
    pub async fn open(dir: &Path, id: PartitionId, cfg: PartitionConfig) -> Result<Rc<Self>> {
        Self::open_with_tail(dir, id, cfg, None).await
    }

    /// As [`Self::open`], for a cluster owner: every batch is also shipped to `tail` and
    /// acknowledged only once confirmed there (`io/tail.rs`). `cfg.epoch` must be the
    /// ownership's epoch.
    pub async fn open_with_tail(
        dir: &Path,
        id: PartitionId,
        cfg: PartitionConfig,
        tail: Option<crate::io::tail::Tail>,
    ) -> Result<Rc<Self>> {
        // Read-only (fsck): nothing on disk changes, so it also works on a full disk.
        let read_only = cfg.recovery == RecoveryMode::ReadOnly;
        if !read_only {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {dir:?}"), e))?;
        }
        let mut rec = recovery::recover(dir, id.0, cfg.recovery)?;
        // Cluster mode: sealed segments object storage holds count as present; a read that
        // needs one not on the disk fetches it.
        let remote: std::collections::BTreeMap<u64, (u64, u64)> = tail
            .as_ref()
            .map(|t| t.remote_segments.clone())
            .unwrap_or_default();
        for (&seq, &(epoch, len)) in &remote {
            rec.segment_epochs.entry(seq).or_insert(epoch);
            rec.segment_lengths.entry(seq).or_insert(len);
        }
        rec.report
            .missing_segments
            .retain(|s| !remote.contains_key(s));
        rec.report.writer_segment = rec.next_segment;
        rec.report.writer_lsn = rec.next_lsn;
        let remote_sink = tail.as_ref().map(|t| t.sink.clone());
        let log_cfg = LogConfig {
            dir: dir.to_path_buf(),
            partition: id.0,
            epoch: cfg.epoch,
            segment_size: cfg.segment_size,
            durability: cfg.durability,
            tail,
        };
        let log = if read_only {
            LogWriter::read_only(log_cfg, SegmentSeq(rec.next_segment), rec.next_lsn)
        } else {
            LogWriter::start(log_cfg, SegmentSeq(rec.next_segment), rec.next_lsn)
        };
        let mut lengths = rec.segment_lengths;
        lengths.insert(rec.next_segment, 0);
        let mut compression = Compression::new(cfg.zstd_level, cfg.dictionary.clone())
            .map_err(|e| Error::io("creating the zstd compressor", e))?;
        for (id, bytes) in &rec.state.dictionaries {
            compression
                .add_dictionary(*id, bytes)
                .map_err(|e| Error::io("loading a compression dictionary", e))?;
        }
        let worker = if cfg.deferred_compression_bytes > 0 && !read_only {
            match CompressWorker::start(id.0, cfg.zstd_level) {
                Ok(w) => {
                    if let Some((id, bytes)) = rec.state.dictionaries.iter().next_back() {
                        w.add_dictionary(*id, bytes);
                    }
                    Some(w)
                }
                Err(e) => {
                    // Correct without it: every body is compressed inline.
                    tracing::warn!(partition = id.0, error = %e, "no compression thread");
                    None
                }
            }
        } else {
            None
        };
        // The queue of raw bodies is not logged: after a restart, the messages whose record
        // is longer than their body are the likely raw ones (a compressed record of mail
        // worth compressing is shorter). The task reads each and skips those that are not.
        // Only the newest up to the bound are taken, as only that much can have been
        // deferred; this also caps what a store of incompressible mail re-reads per restart.
        let mut deferred = Deferred::default();
        if worker.is_some() {
            for b in rec.state.blobs.sorted().into_iter().rev() {
                if b.raw_len as usize >= MIN_COMPRESS && b.record_len >= b.raw_len {
                    if deferred.bytes + b.raw_len as u64 > cfg.deferred_compression_bytes {
                        break;
                    }
                    deferred.queue.push_front((b.id, b.raw_len));
                    deferred.bytes += b.raw_len as u64;
                }
            }
        }
        let deferring = worker.is_some();
        let covered_below = rec
            .checkpoint
            .as_ref()
            .map(|c| c.image().log_segment.to_native())
            .unwrap_or(0);
        let p = Rc::new(Self {
            id,
            dir: dir.to_path_buf(),
            reader: {
                let r = SegmentReader::new(
                    dir,
                    SegmentEpochs::new(rec.segment_epochs, cfg.epoch),
                    cfg.read_mode,
                );
                match remote_sink {
                    Some(sink) if !remote.is_empty() => {
                        r.with_remote(sink, remote.keys().copied().collect())
                    }
                    _ => r,
                }
            },
            state: RefCell::new(rec.state),
            log,
            compression: RefCell::new(compression),
            cache: RefCell::new(BodyCache {
                budget: cfg.cache_bytes,
                used: 0,
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
            hk: RefCell::new(Housekeeping {
                checkpoint_seq: rec.report.checkpoint.unwrap_or(0),
                covered_below,
                segment_lengths: lengths,
                bytes_since_checkpoint: 0,
                checkpointing: false,
                compacting: false,
                checkpoint: rec.checkpoint,
                checkpoint_retry_at: None,
            }),
            poisoned: Cell::new(false),
            report: rec.report,
            changes: Default::default(),
            retired: Rc::default(),
            annotations: RefCell::new(HashMap::new()),
            annotation_writes: glommio::sync::Semaphore::new(1),
            since_image: RefCell::new(None),
            worker,
            deferred: RefCell::new(deferred),
            deferred_wake: Notify::default(),
            encode_buf: RefCell::new(Vec::new()),
            deferring: Cell::new(deferring),
            last_delivery: Cell::new(Instant::now()),
            closing: Cell::new(false),
            gone: Cell::new(false),
            cfg,
        });
        // Make the new segment exist before anyone waits on it. If it cannot be made (a full
        // disk), the partition opens anyway: reads are served, and writes are refused with
        // a temporary error until the writer's retries make it.
        p.log.wait_started().await;
        match p.log.unavailable() {
            None if !read_only => p.log.sync_point().await?,
            None => {}
            Some(why) => tracing::warn!(
                partition = id.0,
                reason = %why,
                "opened without room for new writes; they are refused until there is"
            ),
        }
        if p.worker.is_some() {
            p.start_deferred_task();
            if !p.deferred.borrow().queue.is_empty() {
                p.deferred_wake.notify();
            }
        }
        Ok(p)
    }

    pub fn id(&self) -> PartitionId {
        self.id
    }

    /// Tests only: holds the log's batches in memory while `hold` is set (a slow disk).
    #[doc(hidden)]
    pub fn hold_log_writes(&self, hold: bool) {
        self.log.hold_writes(hold);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Cluster mode: marks the partition as no longer served here, and wakes every session
    /// waiting on it (IDLE), which then sees [`Self::is_gone`] and ends.
    pub fn mark_gone(&self) {
        self.gone.set(true);
        self.changes.changed();
    }

    /// Whether this node stopped serving the partition (its ownership ended or moved), or
    /// the log was fenced: sessions on it must end, and clients reconnect to the owner.
    pub fn is_gone(&self) -> bool {
        self.gone.get() || self.log.fenced()
    }
}

fn to_info(e: crate::checkpoint::Entry) -> MessageInfo {
    MessageInfo {
        uid: Uid(e.uid),
        flags: Flags(e.flags),
        modseq: crate::ids::ModSeq(e.modseq),
        internal_date: e.internal_date,
        size: e.size,
        blob: BlobId(e.blob),
    }
}

/// A mutation as replay needs it: message bodies are not part of the index.
fn without_body(m: &Mutation) -> Mutation {
    match m {
        Mutation::Blob(b) => Mutation::Blob(BlobRecord {
            blob: b.blob,
            raw_len: b.raw_len,
            meta: Vec::new(),
            codec: b.codec,
            dict: b.dict,
            body: Vec::new(),
            targets: b.targets.clone(),
        }),
        other => other.clone(),
    }
}

fn clone_error(e: &Error, text: &str) -> Error {
    match e {
        Error::Store(s) => Error::Store(s.clone()),
        Error::Poisoned(p) => Error::Poisoned(p.clone()),
        _ => Error::Failed(text.to_string()),
    }
}
