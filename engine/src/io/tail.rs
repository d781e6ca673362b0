//! Where a cluster owner's log batches go before they are acknowledged.
//!
//! In cluster mode every group-commit batch, once durable on the local disk, is shipped as a
//! tail chunk ([`crate::remote::Chunk`]) to object storage, and the owner's epoch is read
//! back from etcd after that; only then are the batch's writers answered. The cluster crate
//! implements [`TailSink`]; on a single node there is none and nothing of this runs.
//!
//! ```text
//! flusher: O_DSYNC write ──► shipping queue ──► shipper: sink.ship (several in flight)
//!                                                   └──► in order: durable, wake writers
//! ```

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use crate::remote::Chunk;

/// Why a batch could not be shipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShipError {
    /// This node no longer owns the partition (another node's epoch is current): nothing
    /// more may be acknowledged, and the partition must be closed.
    Fenced(String),
}

pub type ShipFuture = Pin<Box<dyn Future<Output = Result<(), ShipError>>>>;

/// Ships a partition's batches. `ship` resolves once the chunk is stored and the owner's
/// epoch was confirmed after that; it retries temporary failures itself (a store or etcd
/// that is down) and only gives up when the ownership has ended.
///
/// `sealed` and `checkpointed` tell the sink what it may now store whole and name in the
/// manifest instead of chunks; they return at once (the sink does the work in the
/// background, in order per partition).
pub trait TailSink {
    fn ship(&self, chunk: Chunk) -> ShipFuture;

    /// A segment is sealed and every batch written to it was confirmed.
    fn sealed(&self, _segment: Sealed) {}

    /// A checkpoint file is durable.
    fn checkpointed(&self, _checkpoint: Checkpointed) {}

    /// Segment `seq` is not on the local disk: fetch it from object storage into `path`
    /// (whole, then renamed into place), if it is one the manifest names. `None`: not a
    /// remote segment.
    fn fetch_segment(&self, _seq: u64, _path: std::path::PathBuf) -> Option<ShipFuture> {
        None
    }
}

/// A sealed segment, final on the local disk and confirmed in its chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub seq: u64,
    /// The epoch that wrote it (its file name's).
    pub epoch: u64,
    pub path: std::path::PathBuf,
    /// Bytes up to the end of its last record.
    pub len: u64,
    /// The LSN of the first record after it (the next segment's first).
    pub next_first_lsn: u64,
}

/// A checkpoint file, durable on the local disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpointed {
    pub seq: u64,
    pub path: std::path::PathBuf,
    /// Sealed segments the partition still needs below `log_segment` (holding live
    /// messages); every segment from `log_segment` on is needed too.
    pub live: Vec<u64>,
    /// The segment of the checkpoint's log position.
    pub log_segment: u64,
}

/// A partition's tail sink and how the log treats it.
#[derive(Clone)]
pub struct Tail {
    pub sink: Rc<dyn TailSink>,
    /// Sealed segments object storage holds that may not be on the local disk: seq →
    /// (epoch, length). Read through `sink.fetch_segment` when a read needs one.
    pub remote_segments: std::collections::BTreeMap<u64, (u64, u64)>,
    /// New writes are refused (temporarily unavailable) while the oldest batch in flight
    /// has waited this long: a store or etcd that is down stops the intake instead of
    /// piling up unconfirmed changes.
    pub refuse_after: Duration,
    /// A writer waits this long for its batch's confirmation, then gets
    /// [`crate::StoreError::Unconfirmed`] (the batch keeps being shipped).
    pub ack_timeout: Duration,
    /// Chunks shipped at once. While they are in flight, the batches written meanwhile wait
    /// and then go together, as one chunk of up to `merge_bytes`.
    pub in_flight: usize,
    pub merge_bytes: usize,
    /// At least this long between the starts of two chunks' uploads: batches written
    /// meanwhile wait and go together (fewer PUTs, a longer wait for each writer).
    pub interval: Duration,
}

impl Tail {
    pub fn new(sink: Rc<dyn TailSink>) -> Self {
        Self {
            sink,
            remote_segments: Default::default(),
            refuse_after: Duration::from_secs(2),
            ack_timeout: Duration::from_secs(20),
            in_flight: 2,
            merge_bytes: 16 << 20,
            interval: Duration::ZERO,
        }
    }
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tail")
            .field("refuse_after", &self.refuse_after)
            .field("ack_timeout", &self.ack_timeout)
            .field("in_flight", &self.in_flight)
            .field("interval", &self.interval)
            .finish()
    }
}
