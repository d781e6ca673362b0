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

use crate::annotations::{AccountAnnotations, Entries};
use crate::api::{
    AccountInfo, Appended, MailboxInfo, MessageInfo, NewMessage, Recipient, StoreResult,
};
use crate::checkpoint::{self, Checkpoint};
use crate::compaction::{self, CompactionConfig, Plan};
use crate::compress_worker::{CompressWorker, Job};
use crate::compression::{Compression, DictionaryConfig, MIN_COMPRESS};
use crate::error::{Error, Result, StoreError};
use crate::flags::{FlagOp, Flags, SpecialUse};
use crate::format::names::{checkpoint_file, segment_file, MAX_MESSAGE_SIZE, MAX_META_SIZE};
use crate::ids::{BlobId, LogPos, PartitionId, SegmentSeq, Uid, UidValidity};
use crate::io::log_writer::{Durability, LogConfig, LogStats, LogWriter};
use crate::io::notify::Notify;
use crate::io::reader::{ReadMode, SegmentReader};
use crate::mutation::{
    decode_blob_meta, BlobRecord, BodyCodec, Mutation, Target, BLOB_META_PREFIX,
};
use crate::recovery::{self, RecoveryMode, RecoveryReport};
use crate::retired::{ReaderMark, Retired};
use crate::state::{normalize_mailbox, AccountState, MailboxState, PartitionState};

#[derive(Clone, Debug)]
pub struct PartitionConfig {
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
        // Read-only (fsck): nothing on disk changes, so it also works on a full disk.
        let read_only = cfg.recovery == RecoveryMode::ReadOnly;
        if !read_only {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {dir:?}"), e))?;
        }
        let rec = recovery::recover(dir, id.0, cfg.epoch, cfg.recovery)?;
        let log_cfg = LogConfig {
            dir: dir.to_path_buf(),
            partition: id.0,
            epoch: cfg.epoch,
            segment_size: cfg.segment_size,
            durability: cfg.durability,
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
            reader: SegmentReader::new(dir, cfg.epoch, cfg.read_mode),
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

    // ---- the write path ------------------------------------------------------------------

    /// Logs and applies `muts`; no `.await` inside, so the plan they came from still holds.
    fn log_and_apply(&self, muts: &[Mutation]) -> Result<u64> {
        if self.poisoned.get() {
            return Err(Error::Poisoned(
                "an earlier mutation failed to apply".into(),
            ));
        }
        let mut st = self.state.borrow_mut();
        let mut buf = self.encode_buf.borrow_mut();
        // All of the group's records first, so that it is refused whole (storage
        // unavailable) before any of it is logged or applied.
        buf.clear();
        let mut ends = Vec::with_capacity(muts.len());
        for m in muts {
            m.encode(&mut buf);
            ends.push(buf.len());
        }
        let lens = ends
            .iter()
            .scan(0, |start, &end| {
                let len = end - *start;
                *start = end;
                Some(crate::segment::RecordHeader::encode_len(len))
            })
            .collect::<Vec<_>>();
        self.log.check_room(lens)?;
        let mut bytes = 0;
        let mut start = 0;
        for (m, end) in muts.iter().zip(ends) {
            let (loc, _) = self.log.append(m.kind(), &buf[start..end])?;
            start = end;
            bytes += loc.len as u64;
            let removed = if self.retired.borrow().has_readers() {
                st.removed_by(m)
            } else {
                Vec::new()
            };
            if let Err(e) = st.apply(m, loc) {
                // The record is in the log but the state disagrees with it: a bug. Stop
                // accepting writes; recovery will skip and report the record.
                self.poisoned.set(true);
                tracing::error!(partition = self.id.0, error = %e, "mutation failed to apply");
                return Err(Error::Poisoned(e.to_string()));
            }
            if let Some(rec) = self.since_image.borrow_mut().as_mut() {
                rec.push((without_body(m), loc));
            }
            if !removed.is_empty() {
                let now = Instant::now();
                let mut retired = self.retired.borrow_mut();
                for (key, entry, at) in removed {
                    // A body other mailboxes still refer to stays in the blob table.
                    let dead = at.filter(|l| st.blobs.get(l.id).is_none());
                    retired.retire(key, entry, dead, now);
                }
            }
        }
        if buf.capacity() > 1 << 20 {
            // A large message's buffer is not kept.
            *buf = Vec::new();
        }
        Ok(bytes)
    }

    async fn commit(self: &Rc<Self>, muts: &[Mutation]) -> Result<()> {
        let bytes = self.log_and_apply(muts)?;
        self.log.sync_point().await?;
        self.after_commit(bytes);
        Ok(())
    }

    fn after_commit(self: &Rc<Self>, bytes: u64) {
        self.changes.changed();
        self.count_log_bytes(bytes);
    }

    /// Counts bytes logged toward the next background checkpoint, and starts it when due.
    /// After it, compaction runs if the checkpoint left sparse segments.
    fn count_log_bytes(self: &Rc<Self>, bytes: u64) {
        let due = {
            let mut hk = self.hk.borrow_mut();
            hk.bytes_since_checkpoint += bytes;
            self.cfg.checkpoint_bytes > 0
                && hk.bytes_since_checkpoint >= self.cfg.checkpoint_bytes
                && !hk.checkpointing
                && hk.checkpoint_retry_at.is_none_or(|t| Instant::now() >= t)
        };
        if due {
            let me = self.clone();
            glommio::spawn_local(async move {
                if let Err(e) = me.checkpoint().await {
                    // Not again with every commit (a full disk fails each the same way):
                    // after a pause, said once per pause.
                    me.hk.borrow_mut().checkpoint_retry_at =
                        Some(Instant::now() + CHECKPOINT_RETRY);
                    tracing::warn!(partition = me.id.0, error = %e, retry_secs = CHECKPOINT_RETRY.as_secs(), "background checkpoint failed");
                    return;
                }
                me.hk.borrow_mut().checkpoint_retry_at = None;
                me.compact_if_due().await;
            })
            .detach();
        }
    }

    // ---- accounts ------------------------------------------------------------------------

    pub async fn create_account(self: &Rc<Self>, name: &str, opts: &AccountOptions) -> Result<()> {
        let muts = {
            let st = self.state.borrow();
            let now = now_unix();
            let create =
                st.plan_create_account(name, opts.quota_bytes, opts.quota_messages, now)?;
            let mut muts = create.mutations;
            let (account, inbox_uidvalidity) = create.outcome;
            let mut uv = inbox_uidvalidity.0;
            let mut seen = std::collections::HashSet::from(["INBOX".to_string()]);
            for (mb, _) in &opts.mailboxes {
                crate::state::check_mailbox_name(&normalize_mailbox(mb))?;
                if !seen.insert(normalize_mailbox(mb)) {
                    return Err(StoreError::MailboxExists.into());
                }
            }
            for (i, (mb, special)) in opts.mailboxes.iter().enumerate() {
                uv += 1;
                muts.push(Mutation::CreateMailbox {
                    account,
                    mailbox: crate::ids::MailboxId(i as u32 + 1),
                    name: normalize_mailbox(mb),
                    uidvalidity: UidValidity(uv),
                    special_use: *special as u8,
                });
            }
            muts
        };
        self.commit(&muts).await
    }

    pub async fn delete_account(self: &Rc<Self>, name: &str) -> Result<()> {
        let id = self.state.borrow().account_id(name)?;
        self.commit(&[Mutation::DeleteAccount { account: id }])
            .await?;
        // Its annotations go too (an account id is never given out again).
        self.annotations.borrow_mut().remove(&id.0);
        let _ = std::fs::remove_file(crate::annotations::file(&self.dir, id.0));
        Ok(())
    }

    // ---- annotations (IMAP METADATA) ------------------------------------------------------

    async fn account_annotations(&self, id: u32) -> Result<Rc<AccountAnnotations>> {
        if let Some(a) = self.annotations.borrow().get(&id) {
            return Ok(a.clone());
        }
        let dir = self.dir.clone();
        let a = Rc::new(
            glommio::executor()
                .spawn_blocking(move || crate::annotations::load(&dir, id))
                .await?,
        );
        Ok(self.annotations.borrow_mut().entry(id).or_insert(a).clone())
    }

    /// The annotations of `mailbox`, or of the account itself when `None`.
    pub async fn annotations(&self, account: &str, mailbox: Option<&str>) -> Result<Entries> {
        let (id, uv) = self.annotation_target(account, mailbox)?;
        let a = self.account_annotations(id).await?;
        Ok(match uv {
            None => a.account.clone(),
            Some(uv) => a.mailboxes.get(&uv).cloned().unwrap_or_default(),
        })
    }

    fn annotation_target(
        &self,
        account: &str,
        mailbox: Option<&str>,
    ) -> Result<(u32, Option<u32>)> {
        let st = self.state.borrow();
        let id = st.account_id(account)?.0;
        let uv = match mailbox {
            None => None,
            Some(m) => Some(st.mailbox(account, m)?.1.uidvalidity.0),
        };
        Ok((id, uv))
    }

    /// The value of annotation `name` of `mailbox`; if it has none, `make()`'s, stored
    /// first. Checked and set under the write lock, so concurrent callers get one value.
    pub async fn annotation_or_insert(
        &self,
        account: &str,
        mailbox: Option<&str>,
        name: &str,
        make: impl FnOnce() -> Vec<u8>,
    ) -> Result<Vec<u8>> {
        let _one = self
            .annotation_writes
            .acquire_permit(1)
            .await
            .map_err(|_| Error::Store(StoreError::ShuttingDown))?;
        if let Some(v) = self.annotations(account, mailbox).await?.get(name) {
            return Ok(v.clone());
        }
        let v = make();
        self.set_annotations_locked(account, mailbox, &[(name.to_string(), Some(v.clone()))])
            .await?;
        Ok(v)
    }

    /// Sets (`Some`) or removes (`None`) annotations of `mailbox` (the account's own when
    /// `None`), all or none, and returns once they are on disk.
    pub async fn set_annotations(
        &self,
        account: &str,
        mailbox: Option<&str>,
        changes: &[(String, Option<Vec<u8>>)],
    ) -> Result<()> {
        let _one = self
            .annotation_writes
            .acquire_permit(1)
            .await
            .map_err(|_| Error::Store(StoreError::ShuttingDown))?;
        self.set_annotations_locked(account, mailbox, changes).await
    }

    /// [`Self::set_annotations`] with the write lock held.
    async fn set_annotations_locked(
        &self,
        account: &str,
        mailbox: Option<&str>,
        changes: &[(String, Option<Vec<u8>>)],
    ) -> Result<()> {
        let (id, uv) = self.annotation_target(account, mailbox)?;
        let mut next = (*self.account_annotations(id).await?).clone();
        {
            // Entries of mailboxes deleted since go now.
            let st = self.state.borrow();
            let a = st.account(account)?;
            let live: std::collections::HashSet<u32> =
                a.mailboxes.values().map(|m| m.uidvalidity.0).collect();
            next.mailboxes.retain(|uv, _| live.contains(uv));
        }
        next.apply(uv, changes).map_err(|e| match e {
            crate::annotations::Refused::TooBig { max } => StoreError::AnnotationTooBig { max },
            crate::annotations::Refused::TooMany { max } => StoreError::TooManyAnnotations { max },
        })?;
        let dir = self.dir.clone();
        let write = next.clone();
        glommio::executor()
            .spawn_blocking(move || crate::annotations::store(&dir, id, &write))
            .await?;
        self.annotations.borrow_mut().insert(id, Rc::new(next));
        // Sessions waiting for changes (IDLE with NOTIFY) look again.
        self.changes.changed();
        Ok(())
    }

    pub async fn set_quota(
        self: &Rc<Self>,
        name: &str,
        quota_bytes: u64,
        quota_messages: u64,
    ) -> Result<()> {
        let m = {
            let st = self.state.borrow();
            Mutation::SetQuota {
                account: st.account_id(name)?,
                quota_bytes,
                quota_messages,
            }
        };
        self.commit(&[m]).await
    }

    pub fn account_info(&self, name: &str) -> Result<AccountInfo> {
        let st = self.state.borrow();
        let a = st.account(name)?;
        Ok(AccountInfo {
            name: a.name.clone(),
            quota_bytes: a.quota_bytes,
            quota_messages: a.quota_messages,
            used_bytes: a.used_bytes,
            used_messages: a.used_messages,
        })
    }

    /// A number that changes after every durable commit (see [`Partition::changed_after`]).
    pub fn change_generation(&self) -> u64 {
        self.changes.generation()
    }

    /// Waits until something was committed after generation `seen`; returns the new one.
    pub async fn changed_after(&self, seen: u64) -> u64 {
        self.changes.after(seen).await
    }

    pub fn has_account(&self, name: &str) -> bool {
        self.state.borrow().account_id(name).is_ok()
    }

    pub fn accounts(&self) -> Vec<String> {
        self.state
            .borrow()
            .accounts
            .values()
            .map(|a| a.name.clone())
            .collect()
    }

    /// The account's keyword names; keyword `k` is flag bit `Flags::keyword(k)`.
    pub fn keywords(&self, account: &str) -> Result<Vec<String>> {
        Ok(self.state.borrow().account(account)?.keywords.clone())
    }

    // ---- mailboxes -----------------------------------------------------------------------

    pub async fn create_mailbox(
        self: &Rc<Self>,
        account: &str,
        name: &str,
        special_use: SpecialUse,
    ) -> Result<MailboxInfo> {
        let m = self
            .state
            .borrow()
            .plan_create_mailbox(account, name, special_use, now_unix())?;
        self.commit(&[m]).await?;
        self.status(account, name)
    }

    pub async fn rename_mailbox(
        self: &Rc<Self>,
        account: &str,
        from: &str,
        to: &str,
    ) -> Result<()> {
        let m = self.state.borrow().plan_rename_mailbox(account, from, to)?;
        self.commit(&[m]).await
    }

    pub async fn delete_mailbox(self: &Rc<Self>, account: &str, name: &str) -> Result<()> {
        let m = self.state.borrow().plan_delete_mailbox(account, name)?;
        self.commit(&[m]).await
    }

    pub async fn subscribe(
        self: &Rc<Self>,
        account: &str,
        name: &str,
        subscribed: bool,
    ) -> Result<()> {
        let m = {
            let st = self.state.borrow();
            let name = normalize_mailbox(name);
            crate::state::check_mailbox_name(&name)?;
            Mutation::Subscribe {
                account: st.account_id(account)?,
                name,
                subscribed,
            }
        };
        self.commit(&[m]).await
    }

    pub fn subscriptions(&self, account: &str) -> Result<Vec<String>> {
        Ok(self
            .state
            .borrow()
            .account(account)?
            .subscriptions
            .iter()
            .cloned()
            .collect())
    }

    fn info(a: &AccountState, m: &MailboxState) -> MailboxInfo {
        MailboxInfo {
            name: m.name.clone(),
            uidvalidity: m.uidvalidity,
            uidnext: m.uidnext,
            highest_modseq: m.highest_modseq,
            changed_modseq: m.changed_modseq,
            special_use: m.special_use,
            messages: m.index.len() as u32,
            unseen: m.unseen,
            size: m.size,
            subscribed: a.subscriptions.contains(&m.name),
        }
    }

    pub fn mailboxes(&self, account: &str) -> Result<Vec<MailboxInfo>> {
        let st = self.state.borrow();
        let a = st.account(account)?;
        let mut v: Vec<MailboxInfo> = a.mailboxes.values().map(|m| Self::info(a, m)).collect();
        v.sort_by(|x, y| x.name.cmp(&y.name));
        Ok(v)
    }

    pub fn status(&self, account: &str, mailbox: &str) -> Result<MailboxInfo> {
        let st = self.state.borrow();
        let (a, m) = st.mailbox(account, mailbox)?;
        Ok(Self::info(a, m))
    }

    /// Messages with `lo <= uid <= hi`, in UID order.
    pub fn messages(
        &self,
        account: &str,
        mailbox: &str,
        lo: Uid,
        hi: Uid,
    ) -> Result<Vec<MessageInfo>> {
        self.messages_as(account, mailbox, lo, hi, |m| m)
    }

    /// [`Self::messages`], each made into what the caller keeps of it as it is read, so a
    /// big mailbox is not first copied whole.
    pub fn messages_as<T>(
        &self,
        account: &str,
        mailbox: &str,
        lo: Uid,
        hi: Uid,
        f: impl FnMut(MessageInfo) -> T,
    ) -> Result<Vec<T>> {
        let st = self.state.borrow();
        let (_, m) = st.mailbox(account, mailbox)?;
        let whole = lo.0 <= 1 && hi.0 == u32::MAX;
        let mut out = Vec::with_capacity(if whole { m.index.len() } else { 0 });
        out.extend(m.index.range(lo, hi).map(to_info).map(f));
        Ok(out)
    }

    /// The messages of `uids` (ascending) that exist, in order, found in one walk.
    pub fn messages_of(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[Uid],
    ) -> Result<Vec<MessageInfo>> {
        let st = self.state.borrow();
        let (_, m) = st.mailbox(account, mailbox)?;
        if uids.is_sorted() {
            return Ok(m.index.get_sorted(uids).map(to_info).collect());
        }
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        Ok(m.index.get_sorted(&sorted).map(to_info).collect())
    }

    /// A reader's mark on expunged messages: while it is held and behind, a message another
    /// session expunges stays readable through [`Self::expunged_message`].
    pub fn reader_mark(&self) -> ReaderMark {
        ReaderMark::new(self.retired.clone())
    }

    /// The retirement sequence now, for [`ReaderMark::caught_up`].
    pub fn retired_seq(&self) -> u64 {
        self.retired.borrow().seq()
    }

    /// A message expunged from `mailbox` that a reader behind may still fetch (its body
    /// through [`Self::fetch_blob`]), if it is still kept.
    pub fn expunged_message(&self, account: &str, mailbox: &str, uid: Uid) -> Option<MessageInfo> {
        let st = self.state.borrow();
        let id = st.account_id(account).ok()?;
        let (_, m) = st.mailbox(account, mailbox).ok()?;
        self.retired
            .borrow()
            .entry((id.0, m.id.0, uid.0))
            .map(to_info)
    }

    pub fn message(&self, account: &str, mailbox: &str, uid: Uid) -> Result<MessageInfo> {
        let st = self.state.borrow();
        let (_, m) = st.mailbox(account, mailbox)?;
        m.index
            .get(uid)
            .map(to_info)
            .ok_or_else(|| StoreError::NoSuchMessage.into())
    }

    // ---- messages ------------------------------------------------------------------------

    fn compress(&self, body: &[u8]) -> Result<(BodyCodec, u32, Vec<u8>)> {
        self.compression
            .borrow_mut()
            .compress(body)
            .map_err(|e| Error::io("compressing a message", e))
    }

    /// Samples stored mail and, once there is enough, trains the partition's dictionary in
    /// the background (on the blocking pool) and logs it.
    fn maybe_train(self: &Rc<Self>, body: &[u8]) {
        let Some(samples) = self.compression.borrow_mut().offer_sample(body) else {
            return;
        };
        let me = self.clone();
        glommio::spawn_local(async move {
            let size = me.compression.borrow().dictionary_size();
            let trained = glommio::executor()
                .spawn_blocking(move || zstd::dict::from_samples(&samples, size))
                .await;
            let result = match trained {
                Ok(bytes) => {
                    let id = me
                        .state
                        .borrow()
                        .dictionaries
                        .keys()
                        .last()
                        .copied()
                        .unwrap_or(0)
                        + 1;
                    let r = me
                        .commit(&[Mutation::Dictionary {
                            id,
                            bytes: bytes.clone(),
                        }])
                        .await;
                    r.and_then(|_| {
                        if let Some(w) = &me.worker {
                            w.add_dictionary(id, &bytes);
                        }
                        me.compression
                            .borrow_mut()
                            .add_dictionary(id, &bytes)
                            .map_err(|e| Error::io("preparing a dictionary", e))
                    })
                }
                Err(e) => Err(Error::io("training a dictionary", e)),
            };
            if let Err(e) = result {
                tracing::warn!(partition = me.id.0, error = %e, "no compression dictionary");
            }
            me.compression.borrow_mut().training_done();
        })
        .detach();
    }

    /// Stores one message in one mailbox.
    pub async fn append(
        self: &Rc<Self>,
        account: &str,
        mailbox: &str,
        msg: &NewMessage,
    ) -> Result<Appended> {
        let r = Recipient {
            account: account.to_string(),
            mailbox: mailbox.to_string(),
        };
        self.deliver(std::slice::from_ref(&r), msg)
            .await
            .pop()
            .expect("one result per recipient")
    }

    /// Stores one message for many recipients of this partition: the body is written once
    /// and shared (single-instance storage). Returns one result per recipient, in order;
    /// the successful ones are durable when this returns.
    pub async fn deliver(
        self: &Rc<Self>,
        recipients: &[Recipient],
        msg: &NewMessage,
    ) -> Vec<Result<Appended>> {
        let size = msg.body.len() as u64;
        let fail_all = |e: Error| -> Vec<Result<Appended>> {
            let s = e.to_string();
            recipients
                .iter()
                .map(|_| Err(clone_error(&e, &s)))
                .collect()
        };
        if size > MAX_MESSAGE_SIZE {
            return fail_all(
                StoreError::MessageTooLarge {
                    size,
                    limit: MAX_MESSAGE_SIZE,
                }
                .into(),
            );
        }
        if msg.meta.len() > MAX_META_SIZE as usize {
            return fail_all(Error::Config("message metadata too large".into()));
        }
        self.last_delivery.set(Instant::now());
        let defer = self.deferring.get()
            && msg.body.len() >= MIN_COMPRESS
            && self.deferred.borrow().bytes + size <= self.cfg.deferred_compression_bytes;
        let (codec, dict, body) = if defer {
            (BodyCodec::Raw, 0, msg.body.clone())
        } else {
            match self.compress(&msg.body) {
                Ok(x) => x,
                Err(e) => return fail_all(e),
            }
        };
        let date = msg.internal_date.unwrap_or(now_unix() as i64);
        // Plan, log and apply with no await in between.
        let (muts, results) = {
            let st = self.state.borrow();
            let mut results: Vec<Result<(usize, UidValidity)>> =
                Vec::with_capacity(recipients.len());
            let mut targets = Vec::new();
            let mut defs: Vec<Mutation> = Vec::new();
            let mut extra: HashMap<u32, (u64, u64)> = HashMap::new();
            for r in recipients {
                let res = (|| -> Result<(Target, UidValidity)> {
                    let (a, m) = st.mailbox(&r.account, &r.mailbox)?;
                    let add = extra.entry(a.id.0).or_default();
                    st.check_quota(a, add.0 + size, add.1 + 1)?;
                    let (new_defs, flags) =
                        st.plan_keywords(&r.account, msg.flags, &msg.keywords)?;
                    // Keywords defined for an earlier recipient of the same account are
                    // already in `defs`.
                    for d in new_defs {
                        if !defs.contains(&d) {
                            defs.push(d);
                        }
                    }
                    add.0 += size;
                    add.1 += 1;
                    Ok((
                        Target {
                            account: a.id,
                            mailbox: m.id,
                            uid: Uid(0),
                            flags: flags.0,
                            internal_date: date,
                        },
                        m.uidvalidity,
                    ))
                })();
                results.push(res.map(|(t, uv)| {
                    targets.push(t);
                    (targets.len() - 1, uv)
                }));
            }
            if targets.is_empty() {
                // Every recipient failed: their errors are the results.
                return results
                    .into_iter()
                    .filter_map(|r| r.err())
                    .map(Err)
                    .collect();
            }
            if let Err(e) = st.assign_uids(&mut targets) {
                return fail_all(e.into());
            }
            let blob = BlobId(st.next_blob);
            let results: Vec<Result<Appended>> = results
                .into_iter()
                .map(|r| {
                    r.map(|(i, uv)| Appended {
                        uidvalidity: uv,
                        uid: targets[i].uid,
                        blob,
                    })
                })
                .collect();
            defs.push(Mutation::Blob(BlobRecord {
                blob,
                raw_len: size as u32,
                meta: msg.meta.clone(),
                codec,
                dict,
                body,
                targets,
            }));
            (defs, results)
        };
        // Count a raw body against the bound before the await, so deliveries planned
        // meanwhile see it.
        let deferred_blob = match muts.last() {
            Some(Mutation::Blob(b)) if defer => {
                self.deferred.borrow_mut().bytes += size;
                Some(b.blob.0)
            }
            _ => None,
        };
        if let Err(e) = self.commit(&muts).await {
            if deferred_blob.is_some() {
                let mut q = self.deferred.borrow_mut();
                q.bytes = q.bytes.saturating_sub(size);
            }
            let s = e.to_string();
            return results
                .into_iter()
                .map(|r| r.and_then(|_| Err(clone_error(&e, &s))))
                .collect();
        }
        if let Some(blob) = deferred_blob {
            self.deferred
                .borrow_mut()
                .queue
                .push_back((blob, size as u32));
            self.deferred_wake.notify();
        }
        self.maybe_train(&msg.body);
        results
    }

    /// STORE: changes flags of `uids`. With `unchanged_since` (CONDSTORE), messages modified
    /// after it are left alone and listed in `modified`.
    #[allow(clippy::too_many_arguments)]
    pub async fn store(
        self: &Rc<Self>,
        account: &str,
        mailbox: &str,
        uids: &[Uid],
        op: FlagOp,
        flags: Flags,
        keywords: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<StoreResult> {
        let (muts, modified, changed_uids) = {
            let st = self.state.borrow();
            let (mut muts, flags) = if op == FlagOp::Remove {
                // Removing a keyword the account never defined is a no-op, not a definition.
                let a = st.account(account)?;
                let mut f = Flags(flags.0 & Flags::SYSTEM_MASK);
                for k in keywords {
                    if let Some(i) = a.keyword_index(k) {
                        f = f.union(Flags::keyword(i));
                    }
                }
                (Vec::new(), f)
            } else {
                st.plan_keywords(account, flags, keywords)?
            };
            let plan = st.plan_store(account, mailbox, uids, op, flags, unchanged_since)?;
            muts.extend(plan.mutations);
            (muts, plan.outcome.modified, plan.outcome.changed)
        };
        if !muts.is_empty() {
            self.commit(&muts).await?;
        }
        let st = self.state.borrow();
        let (_, m) = st.mailbox(account, mailbox)?;
        let changed: Vec<MessageInfo> = m.index.get_sorted(&changed_uids).map(to_info).collect();
        // Every changed entry carries this STORE's mod-sequence unless a later change took
        // some of them; then it is not the last change.
        let previous_change = match changed.first() {
            Some(c) if c.modseq == m.changed_modseq => Some(m.previous_change),
            _ => None,
        };
        Ok(StoreResult {
            changed,
            modified,
            previous_change,
        })
    }

    /// Expunges `uids`, or every message flagged `\Deleted` when `None`. Returns the UIDs
    /// removed.
    pub async fn expunge(
        self: &Rc<Self>,
        account: &str,
        mailbox: &str,
        uids: Option<&[Uid]>,
    ) -> Result<Vec<Uid>> {
        let plan = self.state.borrow().plan_expunge(account, mailbox, uids)?;
        if !plan.mutations.is_empty() {
            self.commit(&plan.mutations).await?;
        }
        Ok(plan.outcome)
    }

    /// COPY within the account: the copies share the originals' stored bodies.
    /// Returns the destination's UIDVALIDITY and (source UID, new UID) pairs.
    pub async fn copy(
        self: &Rc<Self>,
        account: &str,
        from: &str,
        to: &str,
        uids: &[Uid],
    ) -> Result<(UidValidity, Vec<(Uid, Uid)>)> {
        let (plan, uv) = {
            let st = self.state.borrow();
            let plan = st.plan_copy(account, from, to, uids)?;
            (plan, st.mailbox(account, to)?.1.uidvalidity)
        };
        if !plan.mutations.is_empty() {
            self.commit(&plan.mutations).await?;
        }
        Ok((uv, plan.outcome))
    }

    /// MOVE within the account, atomically (one record).
    pub async fn move_messages(
        self: &Rc<Self>,
        account: &str,
        from: &str,
        to: &str,
        uids: &[Uid],
    ) -> Result<(UidValidity, Vec<(Uid, Uid)>)> {
        let (plan, uv) = {
            let st = self.state.borrow();
            let plan = st.plan_move(account, from, to, uids)?;
            (plan, st.mailbox(account, to)?.1.uidvalidity)
        };
        if !plan.mutations.is_empty() {
            self.commit(&plan.mutations).await?;
        }
        Ok((uv, plan.outcome))
    }

    /// The message's bytes, exactly as delivered.
    pub async fn fetch(&self, account: &str, mailbox: &str, uid: Uid) -> Result<Rc<Vec<u8>>> {
        let blob = self.message(account, mailbox, uid)?.blob;
        self.fetch_blob(blob).await
    }

    /// A byte range of the message, clamped to its end.
    pub async fn fetch_range(
        &self,
        account: &str,
        mailbox: &str,
        uid: Uid,
        start: u64,
        len: u64,
    ) -> Result<Vec<u8>> {
        let body = self.fetch(account, mailbox, uid).await?;
        let size = body.len() as u64;
        if start > size {
            return Err(StoreError::BadRange {
                start,
                end: start.saturating_add(len),
                size,
            }
            .into());
        }
        let end = start.saturating_add(len).min(size);
        Ok(body[start as usize..end as usize].to_vec())
    }

    /// The metadata of each of `uids`, as [`Self::fetch_meta`] gives it, in the same order;
    /// up to [`META_READ_AHEAD`] reads run at once, so a scan over a mailbox does not wait
    /// for each record in turn.
    pub async fn fetch_metas(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[Uid],
    ) -> Vec<Result<Vec<u8>>> {
        use futures_util::stream::{self, StreamExt};
        stream::iter(uids)
            .map(|&uid| self.fetch_meta(account, mailbox, uid))
            .buffered(META_READ_AHEAD)
            .collect()
            .await
    }

    /// The metadata stored with the message at delivery; reads no body bytes beyond the
    /// first disk block.
    pub async fn fetch_meta(&self, account: &str, mailbox: &str, uid: Uid) -> Result<Vec<u8>> {
        let blob = self.message(account, mailbox, uid)?.blob;
        self.fetch_blob_meta(blob).await
    }

    /// [`Self::fetch_meta`] of a stored body.
    pub async fn fetch_blob_meta(&self, blob: BlobId) -> Result<Vec<u8>> {
        let loc = self.blob_loc(blob)?;
        self.await_durable(loc.segment, loc.offset + loc.record_len as u64)
            .await?;
        let first = 4096 - crate::segment::RECORD_HEADER_LEN;
        let (_, head) = self
            .reader
            .read_record(loc.segment as u64, loc.offset, loc.record_len, Some(first))
            .await?;
        let meta_len = head
            .get(BLOB_META_PREFIX - 4..BLOB_META_PREFIX)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .unwrap_or(0);
        let head = if BLOB_META_PREFIX + meta_len > head.len() {
            self.reader
                .read_record(
                    loc.segment as u64,
                    loc.offset,
                    loc.record_len,
                    Some(BLOB_META_PREFIX + meta_len),
                )
                .await?
                .1
        } else {
            head
        };
        decode_blob_meta(&head[..(BLOB_META_PREFIX + meta_len).min(head.len())]).map_err(|e| {
            Error::Corrupt {
                file: self
                    .dir
                    .join(segment_file(self.cfg.epoch, loc.segment as u64)),
                pos: Some(LogPos {
                    segment: SegmentSeq(loc.segment as u64),
                    offset: loc.offset,
                }),
                source: e,
            }
        })
    }

    fn blob_loc(&self, blob: BlobId) -> Result<crate::checkpoint::BlobLoc> {
        self.state
            .borrow()
            .blobs
            .get(blob.0)
            .or_else(|| self.retired.borrow().dead_blob(blob.0))
            .ok_or_else(|| StoreError::NoSuchMessage.into())
    }

    /// The record of message body `id` where the index has it now, read once the log is
    /// durable up to its end: a location in the index may belong to a record still in the
    /// batch being written (compaction and deferred compression move messages, and update
    /// the index, before their batch is on disk). Reading it earlier found zeros or the end
    /// of the file, which stopped deferred compression for good.
    async fn read_live(
        &self,
        id: u64,
    ) -> Result<
        Option<(
            crate::checkpoint::BlobLoc,
            crate::segment::RecordHeader,
            Vec<u8>,
        )>,
    > {
        for _ in 0..3 {
            let Some(loc) = self.state.borrow().blobs.get(id) else {
                return Ok(None);
            };
            self.await_durable(loc.segment, loc.offset + loc.record_len as u64)
                .await?;
            match self
                .reader
                .read_record(loc.segment as u64, loc.offset, loc.record_len, None)
                .await
            {
                // Moved again, and its old segment deleted, while we waited.
                Err(Error::MissingSegment(_)) => continue,
                r => return r.map(|(h, p)| Some((loc, h, p))),
            }
        }
        Ok(None)
    }

    async fn await_durable(&self, segment: u32, end: u64) -> Result<()> {
        self.log
            .wait_durable(LogPos {
                segment: SegmentSeq(segment as u64),
                offset: end,
            })
            .await
    }

    /// Reads, verifies and decompresses a stored message.
    pub async fn fetch_blob(&self, blob: BlobId) -> Result<Rc<Vec<u8>>> {
        if let Some(b) = self.cache.borrow().get(blob.0) {
            return Ok(b);
        }
        let mut attempt = 0;
        loop {
            let loc = self.blob_loc(blob)?;
            self.await_durable(loc.segment, loc.offset + loc.record_len as u64)
                .await?;
            match self.read_blob(loc).await {
                // Compaction may have moved the blob and deleted its old segment while we
                // waited; the table then has the new place.
                Err(Error::MissingSegment(_)) if attempt == 0 => attempt += 1,
                Err(e) => return Err(e),
                Ok(body) => {
                    let body = Rc::new(body);
                    self.cache.borrow_mut().insert(blob.0, body.clone());
                    return Ok(body);
                }
            }
        }
    }

    async fn read_blob(&self, loc: crate::checkpoint::BlobLoc) -> Result<Vec<u8>> {
        let (h, payload) = self
            .reader
            .read_record(loc.segment as u64, loc.offset, loc.record_len, None)
            .await?;
        let pos = LogPos {
            segment: SegmentSeq(loc.segment as u64),
            offset: loc.offset,
        };
        let corrupt = |source| Error::Corrupt {
            file: self
                .dir
                .join(segment_file(self.cfg.epoch, loc.segment as u64)),
            pos: Some(pos),
            source,
        };
        let m = Mutation::decode(h.kind, &payload).map_err(corrupt)?;
        let Mutation::Blob(b) = m else {
            return Err(corrupt(crate::error::FormatError::Invalid {
                what: "record kind",
                detail: format!("expected a message, found kind {}", h.kind),
            }));
        };
        if b.blob.0 != loc.id {
            return Err(corrupt(crate::error::FormatError::Invalid {
                what: "blob id",
                detail: format!("expected {}, found {}", loc.id, b.blob.0),
            }));
        }
        let st = self.state.borrow();
        self.compression
            .borrow_mut()
            .decompress(
                b.codec,
                b.dict,
                &b.body,
                b.raw_len as usize,
                &st.dictionaries,
            )
            .map_err(corrupt)
    }

    // ---- maintenance ---------------------------------------------------------------------

    /// Writes a checkpoint of the index and deletes what it makes unnecessary: older
    /// checkpoints and segments with nothing live that it covers.
    pub async fn checkpoint(self: &Rc<Self>) -> Result<()> {
        // A checkpoint already running may have taken its image before the caller's changes:
        // wait for it, then take a new one.
        while self.hk.borrow().checkpointing {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        self.hk.borrow_mut().checkpointing = true;
        let r = self.checkpoint_inner().await;
        self.hk.borrow_mut().checkpointing = false;
        *self.since_image.borrow_mut() = None;
        r
    }

    async fn checkpoint_inner(self: &Rc<Self>) -> Result<()> {
        // The log must be durable to the image's position, and on a full disk its active
        // segment may not exist yet: later, then.
        if let Some(why) = self.log.active_unavailable() {
            return Err(StoreError::Unavailable(why).into());
        }
        let end = self.log.end();
        let image = self
            .state
            .borrow()
            .to_image(end.segment.0, end.offset, self.log.next_lsn());
        // The segments this checkpoint needs: those holding its blobs, and the log from its
        // position on. Deletion must go by the image, not by the live state, which may hold
        // changes (expunges, relocations) that are not yet durable.
        let mut needed: std::collections::BTreeSet<u64> =
            image.blobs.iter().map(|b| b.segment as u64).collect();
        // And those of bodies a reader behind may still fetch; the checkpoint after it
        // has caught up deletes them.
        needed.extend(self.retired.borrow().segments());
        // From here on (no await since the image), record what is applied after it.
        *self.since_image.borrow_mut() = Some(Vec::new());
        self.log.wait_durable(end).await?;
        let seq = self.hk.borrow().checkpoint_seq + 1;
        let path = self.dir.join(checkpoint_file(seq));
        let p2 = path.clone();
        glommio::executor()
            .spawn_blocking(move || checkpoint::write(&image, &p2))
            .await?;
        {
            let mut hk = self.hk.borrow_mut();
            hk.checkpoint_seq = seq;
            hk.covered_below = end.segment.0;
            hk.bytes_since_checkpoint = 0;
        }
        // Rebase: read the index from the new checkpoint in place, replay what was applied
        // since its image, and drop the in-memory overlays it now holds. The replay and the
        // swap happen with no await in between, so nothing is applied to the old state after
        // the list was taken.
        let partition = self.id.0;
        let p3 = path.clone();
        let ck = glommio::executor()
            .spawn_blocking(move || Checkpoint::load(&p3, seq, partition))
            .await?;
        let ck = Rc::new(ck);
        let recorded = self.since_image.borrow_mut().take().unwrap_or_default();
        let mut rebased = PartitionState::from_checkpoint(ck.clone());
        match recorded
            .iter()
            .try_for_each(|(m, loc)| rebased.apply(m, *loc))
        {
            Ok(()) => {
                *self.state.borrow_mut() = rebased;
                self.hk.borrow_mut().checkpoint = Some(ck);
            }
            Err(e) => {
                // Should not happen (the same mutations applied to the same state); keep
                // the current state, which is correct, just not compacted in memory.
                tracing::warn!(partition, error = %e, "could not rebase the index on the new checkpoint");
            }
        }
        self.remove_unneeded(seq, end.segment.0, &needed).await
    }

    /// Brings the segment table up to date with the segments the writer sealed.
    fn sync_segments(&self) {
        let sealed = self.log.take_sealed();
        let mut hk = self.hk.borrow_mut();
        for (seq, len) in sealed {
            hk.segment_lengths.insert(seq, len);
        }
        hk.segment_lengths
            .insert(self.log.active_segment().0, self.log.end().offset);
    }

    async fn remove_unneeded(
        &self,
        newest_checkpoint: u64,
        covered_below: u64,
        needed: &std::collections::BTreeSet<u64>,
    ) -> Result<()> {
        self.sync_segments();
        let listing = recovery::list_dir(&self.dir, self.cfg.epoch)?;
        for old in listing
            .checkpoints
            .into_iter()
            .filter(|&c| c < newest_checkpoint)
        {
            let _ = std::fs::remove_file(self.dir.join(checkpoint_file(old)));
        }
        let dead: Vec<u64> = self
            .hk
            .borrow()
            .segment_lengths
            .keys()
            .copied()
            .filter(|s| *s < covered_below && !needed.contains(s))
            .collect();
        for s in &dead {
            self.reader.forget(*s).await;
            std::fs::remove_file(self.dir.join(segment_file(self.cfg.epoch, *s)))
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| Error::io("removing a compacted segment", e))?;
            self.hk.borrow_mut().segment_lengths.remove(s);
        }
        if !dead.is_empty() {
            crate::io::fsync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// What compaction would do now.
    pub fn compaction_plan(&self) -> Plan {
        self.sync_segments();
        let hk = self.hk.borrow();
        let active = self.log.active_segment().0;
        let usage = compaction::usage(&hk.segment_lengths, &self.state.borrow().segment_live);
        compaction::choose(&usage, hk.covered_below.min(active), &self.cfg.compaction)
    }

    /// Reclaims space of expunged messages: moves the live messages of sparse sealed segments
    /// to the head of the log, checkpoints, and deletes the emptied segments. Safe against
    /// concurrent use and against a crash at any step (see docs/architecture.md).
    /// Returns the number of segments removed.
    pub async fn compact(self: &Rc<Self>) -> Result<usize> {
        {
            let mut hk = self.hk.borrow_mut();
            if hk.compacting {
                return Ok(0);
            }
            hk.compacting = true;
        }
        let r = self.compact_inner().await;
        self.hk.borrow_mut().compacting = false;
        r
    }

    async fn compact_inner(self: &Rc<Self>) -> Result<usize> {
        // Segments written since the last checkpoint are not yet covered: checkpoint first.
        self.checkpoint().await?;
        let plan = self.compaction_plan();
        for seq in &plan.rewrite {
            let blobs: Vec<_> = self
                .state
                .borrow()
                .blobs
                .sorted()
                .into_iter()
                .filter(|b| b.segment as u64 == *seq)
                .collect();
            let mut pending = 0u64;
            for loc in blobs {
                let (h, payload) = match self
                    .reader
                    .read_record(loc.segment as u64, loc.offset, loc.record_len, None)
                    .await
                {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::error!(partition = self.id.0, blob = loc.id, error = %e, "cannot read a message to compact; segment kept");
                        continue;
                    }
                };
                let Ok(Mutation::Blob(mut b)) = Mutation::decode(h.kind, &payload) else {
                    continue;
                };
                // Expunged while we read it: nothing to move.
                if self
                    .state
                    .borrow()
                    .blobs
                    .get(loc.id)
                    .is_none_or(|l| l.segment != loc.segment)
                {
                    continue;
                }
                b.targets.clear();
                pending += self.log_and_apply(&[Mutation::Blob(b)])?;
                if pending > 8 << 20 {
                    self.log.sync_point().await?;
                    pending = 0;
                }
                glommio::yield_if_needed().await;
            }
        }
        self.log.sync_point().await?;
        self.checkpoint().await?;
        // Counted by name, not as a difference of segment counts: appends made meanwhile
        // open new segments and would hide the ones removed.
        let hk = self.hk.borrow();
        Ok(plan
            .rewrite
            .iter()
            .filter(|s| !hk.segment_lengths.contains_key(s))
            .count())
    }

    /// Reads and verifies every live message. Used by tests and `ringmail fsck`.
    pub async fn check_integrity(&self) -> IntegrityReport {
        let blobs = self.state.borrow().blobs.sorted();
        let mut rep = IntegrityReport::default();
        let mut bad: Vec<(u64, String)> = Vec::new();
        for loc in blobs {
            rep.blobs_checked += 1;
            let read = match self
                .await_durable(loc.segment, loc.offset + loc.record_len as u64)
                .await
            {
                Ok(()) => self.read_blob(loc).await,
                Err(e) => Err(e),
            };
            match read {
                Ok(b) if b.len() == loc.raw_len as usize => {}
                Ok(b) => bad.push((
                    loc.id,
                    format!("{} bytes, index says {}", b.len(), loc.raw_len),
                )),
                Err(e) => bad.push((loc.id, e.to_string())),
            }
            glommio::yield_if_needed().await;
        }
        let st = self.state.borrow();
        // Each bad body by the messages that show it (account, mailbox, UID).
        for (blob, why) in bad {
            let mut shown = Vec::new();
            for a in st.accounts.values() {
                for m in a.mailboxes.values() {
                    for e in m.index.iter().filter(|e| e.blob == blob) {
                        shown.push(format!("{} {} UID {}", a.name, m.name, e.uid));
                        rep.damaged
                            .push((a.name.clone(), m.name.clone(), Uid(e.uid)));
                    }
                }
            }
            let who = if shown.is_empty() {
                "no message".to_string()
            } else {
                shown.join(", ")
            };
            rep.errors
                .push(format!("{who}: stored body {blob} is unreadable: {why}"));
        }
        for a in st.accounts.values() {
            for m in a.mailboxes.values() {
                for e in m.index.iter() {
                    if st.blobs.get(e.blob).is_none() {
                        rep.errors.push(format!(
                            "{}/{} UID {}: no stored body",
                            a.name, m.name, e.uid
                        ));
                        rep.damaged
                            .push((a.name.clone(), m.name.clone(), Uid(e.uid)));
                    }
                }
            }
        }
        rep
    }

    pub fn stats(&self) -> PartitionStats {
        self.sync_segments();
        let st = self.state.borrow();
        let hk = self.hk.borrow();
        let mut overlay = st.blobs.overlay_bytes();
        let mut messages = 0;
        for a in st.accounts.values() {
            for m in a.mailboxes.values() {
                messages += m.index.len() as u64;
                overlay += m.index.overlay_bytes();
            }
        }
        PartitionStats {
            accounts: st.accounts.len(),
            messages,
            blobs: st.blobs.len(),
            dictionaries: st.dictionaries.len(),
            segments: hk.segment_lengths.len(),
            segment_bytes: hk.segment_lengths.values().sum::<u64>(),
            live_bytes: st.segment_live.values().sum(),
            log: self.log.stats(),
            checkpoint_bytes: hk.checkpoint.as_ref().map(|c| c.archive_len()).unwrap_or(0),
            overlay_bytes: overlay,
            deferred_bytes: self.deferred.borrow().bytes,
        }
    }

    // ---- deferred compression -------------------------------------------------------------

    /// Runs the partition's side of deferred compression: whenever raw bodies are queued,
    /// hands them to the worker and logs what comes back. Holds the partition weakly, so an
    /// unused partition still drops.
    fn start_deferred_task(self: &Rc<Self>) {
        let me = Rc::downgrade(self);
        let wake = self.deferred_wake.clone();
        // The shard's part (a read and a small write per message) yields to sessions.
        let tq = glommio::executor().create_task_queue(
            glommio::Shares::Static(100),
            glommio::Latency::NotImportant,
            "deferred-zstd",
        );
        let task = async move {
            let mut backoff = Duration::ZERO;
            loop {
                wake.wait().await;
                loop {
                    let Some(p) = me.upgrade() else { return };
                    if p.closing.get() {
                        return;
                    }
                    if p.deferred.borrow().queue.is_empty() {
                        break;
                    }
                    // Only once deliveries pause: reading a body back and logging it again
                    // costs the shard about what compressing it inline would.
                    let quiet = p.last_delivery.get().elapsed();
                    if quiet < DEFER_UNTIL_QUIET {
                        drop(p);
                        glommio::timer::sleep(DEFER_UNTIL_QUIET - quiet).await;
                        continue;
                    }
                    match p.compress_deferred().await {
                        Ok(()) => backoff = Duration::ZERO,
                        Err(e)
                            if matches!(e, Error::Poisoned(_))
                                || p.closing.get()
                                || !p.deferring.get() =>
                        {
                            // Nothing can be logged any more; what is left stays raw, which
                            // is still correct, and the queue is rebuilt after a restart.
                            tracing::warn!(partition = p.id.0, error = %e, "deferred compression stopped");
                            p.deferring.set(false);
                            return;
                        }
                        Err(e) => {
                            // Never stopped for good by one failure (a full disk, a lost
                            // worker thread): retried, less and less often.
                            backoff = (backoff * 2)
                                .clamp(Duration::from_millis(100), Duration::from_secs(30));
                            if backoff <= Duration::from_millis(100) {
                                tracing::warn!(partition = p.id.0, error = %e, "deferred compression failed; retrying");
                            }
                            drop(p);
                            glommio::timer::sleep(backoff).await;
                        }
                    }
                }
            }
        };
        match glommio::spawn_local_into(task, tq) {
            Ok(t) => {
                t.detach();
            }
            Err(e) => {
                self.deferring.set(false);
                tracing::warn!(partition = self.id.0, error = %e, "no deferred compression task")
            }
        }
    }

    /// Compresses one batch of queued raw bodies and logs each as a relocation of its
    /// message: same blob, same raw length, a compressed body. The raw record becomes dead
    /// space for checkpoints and compaction to reclaim.
    async fn compress_deferred(self: &Rc<Self>) -> Result<()> {
        let batch: Vec<(u64, u32)> = {
            let mut d = self.deferred.borrow_mut();
            let mut take = 0u64;
            let mut out = Vec::new();
            while let Some(&(id, raw)) = d.queue.front() {
                if !out.is_empty() && (take + raw as u64 > 1 << 20 || out.len() >= 256) {
                    break;
                }
                d.queue.pop_front();
                take += raw as u64;
                out.push((id, raw));
            }
            out
        };
        let mut jobs = Vec::with_capacity(batch.len());
        // The records as read, without their bodies, and where they were.
        let mut read_back: HashMap<u64, (BlobRecord, u32, u64)> = HashMap::new();
        let mut released = 0u64;
        for &(id, raw) in &batch {
            let rec = match self.read_live(id).await {
                Ok(Some((loc, h, payload))) => match Mutation::decode(h.kind, &payload) {
                    Ok(Mutation::Blob(b)) if b.blob.0 == id && b.codec == BodyCodec::Raw => {
                        Some((b, loc))
                    }
                    _ => None,
                },
                Ok(None) => None,
                Err(e @ (Error::Poisoned(_) | Error::Store(_))) => {
                    // Nothing of this batch was logged: all of it goes back on the queue
                    // (its bytes still counted), but what was already let go.
                    let mut q = self.deferred.borrow_mut();
                    q.bytes = q.bytes.saturating_sub(released);
                    for (rest_id, (b, _, _)) in read_back.drain() {
                        q.queue.push_back((rest_id, b.raw_len));
                    }
                    let pos = batch.iter().position(|&(b, _)| b == id).unwrap_or(0);
                    for &item in &batch[pos..] {
                        q.queue.push_back(item);
                    }
                    return Err(e);
                }
                Err(e) => {
                    // This one stays raw, which is correct; the read error is the
                    // integrity check's to report, and the others go on.
                    tracing::warn!(partition = self.id.0, blob = id, error = %e, "cannot read a message to compress it; it stays uncompressed");
                    None
                }
            };
            match rec {
                Some((mut b, loc)) => {
                    jobs.push(Job {
                        blob: id,
                        body: std::mem::take(&mut b.body),
                    });
                    read_back.insert(id, (b, loc.segment, loc.offset));
                }
                None => released += raw as u64,
            }
        }
        {
            let mut q = self.deferred.borrow_mut();
            q.bytes = q.bytes.saturating_sub(released);
        }
        if jobs.is_empty() {
            return Ok(());
        }
        let Some(done) = self.worker.as_ref().expect("worker").compress(jobs).await else {
            // The thread is gone for good: from now on bodies are compressed inline, and
            // what was waiting stays raw (correct; recompressed after a restart).
            self.deferring.set(false);
            let mut q = self.deferred.borrow_mut();
            q.queue.clear();
            q.bytes = 0;
            return Err(Error::io(
                "deferred compression",
                std::io::Error::other("the compression thread is gone"),
            ));
        };
        let mut logged = 0u64;
        let mut released = 0u64;
        for d in done {
            let Some((mut b, segment, offset)) = read_back.remove(&d.blob) else {
                continue;
            };
            released += b.raw_len as u64;
            if d.codec == BodyCodec::Raw || self.closing.get() {
                continue;
            }
            // Expunged or moved since it was read: the record compressed is not the live one.
            let same = self
                .state
                .borrow()
                .blobs
                .get(d.blob)
                .is_some_and(|l| l.segment == segment && l.offset == offset);
            if !same {
                // Moved by compaction meanwhile: compress it from its new place later.
                if self.state.borrow().blobs.get(d.blob).is_some() {
                    let mut q = self.deferred.borrow_mut();
                    q.queue.push_back((d.blob, b.raw_len));
                    q.bytes += b.raw_len as u64;
                }
                continue;
            }
            b.codec = d.codec;
            b.dict = d.dict;
            b.body = d.body;
            b.targets.clear();
            let raw = b.raw_len;
            match self.log_and_apply(&[Mutation::Blob(b)]) {
                Ok(n) => logged += n,
                Err(e) => {
                    // Not logged (storage unavailable, say): this one and the rest of the
                    // batch go back on the queue, for when the log takes writes again.
                    {
                        let mut q = self.deferred.borrow_mut();
                        q.queue.push_front((d.blob, raw));
                        released -= raw as u64;
                        for (id, (rest, _, _)) in read_back.drain() {
                            q.queue.push_back((id, rest.raw_len));
                        }
                        q.bytes = q.bytes.saturating_sub(released);
                    }
                    if logged > 0 {
                        self.log.sync_point().await?;
                        self.count_log_bytes(logged);
                    }
                    return Err(e);
                }
            }
        }
        if logged > 0 {
            self.log.sync_point().await?;
            self.count_log_bytes(logged);
        }
        // Only now: a caller that sees nothing deferred also sees the relocations logged.
        {
            let mut q = self.deferred.borrow_mut();
            q.bytes = q.bytes.saturating_sub(released);
        }
        glommio::yield_if_needed().await;
        Ok(())
    }

    /// Bytes of mail stored raw and waiting for the compression thread.
    pub fn deferred_bytes(&self) -> u64 {
        self.deferred.borrow().bytes
    }

    /// Compacts if the log has sparse segments; run after each background checkpoint, so
    /// expunged and recompressed space is given back without an operator's command.
    async fn compact_if_due(self: &Rc<Self>) {
        if self.closing.get() || self.compaction_plan().rewrite.is_empty() {
            return;
        }
        match self.compact().await {
            Ok(n) if n > 0 => {
                tracing::debug!(partition = self.id.0, segments = n, "compacted")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(partition = self.id.0, error = %e, "compaction failed"),
        }
    }

    /// Flushes, checkpoints and closes the log. In-flight commits finish first.
    ///
    /// A checkpoint that cannot be written (a full disk, a poisoned partition) is skipped
    /// with a warning: the log holds everything, and the next open replays it.
    pub async fn close(self: &Rc<Self>) -> Result<()> {
        self.closing.set(true);
        self.deferred_wake.notify();
        // First, so that nothing the checkpoint waits for (a background one included) can
        // wait for a segment a full disk will not give.
        self.log.begin_close();
        let read_only = self.cfg.recovery == RecoveryMode::ReadOnly;
        if !read_only && self.log.poisoned().is_none() && !self.poisoned.get() {
            if let Err(e) = self.checkpoint().await {
                tracing::warn!(partition = self.id.0, error = %e, "no checkpoint at close; the next start replays the log");
            }
        }
        self.log.close().await
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
