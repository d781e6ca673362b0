//! ringmail-engine: a thread-per-core, log-structured message store.
//!
//! The engine stores mail for many accounts. Accounts hash to slots, slots map to
//! partitions, and each partition (one append-only log and its index) lives on one shard,
//! a glommio executor pinned to a core. Nothing is shared across cores: work for an account
//! is sent to its shard ([`NodeHandle::on_account`]).
//!
//! ```text
//!  request ──► plan (validate, build Mutation) ──► log: group commit ──► O_DSYNC write ──► ack
//!                                     └──────────► apply to the index (in memory)
//!  open ──► newest checkpoint (rkyv, read in place) ──► replay log after it ──► serve
//! ```
//!
//! - Every change is one checksummed record in the log (`mutation.rs`, `segment/`); the
//!   log is the write-ahead log and the message store at once.
//! - An acknowledgement means the record is on disk: writers share one durable write per batch
//!   (`io/log_writer.rs`).
//! - The index is a checkpoint archive read in place plus the changes since
//!   (`index.rs`, `checkpoint.rs`); recovery replays only the log after the checkpoint.
//! - Expunged space is reclaimed by compaction (`compaction.rs`, [`Partition::compact`]).
//!
//! What it does not do: parse mail or speak any protocol (the frontends do), or replicate
//! (a later cluster layer). Limits: messages up to 256 MiB, 56 keywords per account,
//! segments of up to 4 GiB. The on-disk format is specified in `docs/format.md`.
//!
//! The API is what the crate root exports: [`Node`] and [`NodeHandle`] (start the shards,
//! route work to the shard that owns an account), [`Partition`] (accounts, mailboxes,
//! messages, flags, annotations, maintenance), the types they speak ([`NewMessage`],
//! [`MailboxInfo`], [`MessageInfo`], [`Flags`], [`Uid`], ...), and [`Error`]. The modules
//! are private; `internals` (hidden) lends a few of them to the workspace's benches and crash
//! tests and is not part of the API.

#![deny(unsafe_code)]

// The engine's API is the facade below; its modules are internal (benches, crash tests
// and fuzz targets reach some through `internals`).
mod annotations;
mod api;
mod checkpoint;
mod compaction;
mod compress_worker;
mod compression;
mod error;
mod flags;
mod format;
/// Entry points for the fuzz targets in `fuzz/` (`docs/fuzzing.md`); not an API.
#[doc(hidden)]
pub mod fuzzing;
mod ids;
mod index;
mod io;
mod mutation;
mod node;
mod partition;
mod recovery;
/// A partition in object storage (cluster mode): manifests, tail chunks, object keys.
pub mod remote;
mod request;
mod retired;
mod segment;
mod slots;
mod state;

pub use annotations::Entries;
pub use api::{
    AccountInfo, Appended, MailboxInfo, MessageInfo, NewMessage, Recipient, StoreResult,
};
pub use error::{Error, FormatError, Resource, Result, StoreError};
pub use flags::{FlagOp, Flags, SpecialUse};
pub use format::{crc32, Reader, Writer};
pub use ids::*;
pub use io::log_writer::Durability;
pub use io::log_writer::SYNC_BUCKETS_MS;
pub use io::probe_device;
pub use io::reader::ReadMode;
pub use io::reader::MAX_OPEN_SEGMENTS;
pub use io::tail::{Checkpointed, Sealed, ShipError, ShipFuture, Tail, TailSink};
pub use node::SendableError;
pub use node::{Node, NodeConfig, NodeHandle, Service, ShardContext};
pub use partition::{AccountOptions, IntegrityReport, Partition, PartitionConfig, PartitionStats};
pub use recovery::{RecoveryMode, RecoveryReport};
pub use request::{Request, Response};
pub use retired::ReaderMark;
pub use slots::SlotMap;
pub use state::normalize_account;

/// The engine's insides, for the workspace's own benches, crash tests and fuzz targets:
/// not part of the API, and free to change with any version.
#[doc(hidden)]
pub mod internals {
    pub mod checkpoint {
        pub use crate::checkpoint::{write, AccountImage, Checkpoint, Entry, Image, MailboxImage};
    }
    pub mod compression {
        pub use crate::compression::Compression;
    }
    pub mod format {
        pub use crate::format::names::segment_file;
    }
    pub mod mutation {
        pub use crate::mutation::{BlobRecord, BodyCodec, Mutation, Target};
    }
    pub mod segment {
        pub use crate::segment::{scan_segment, RecordHeader, SegmentHeader, RECORD_HEADER_LEN};
    }
    pub mod state {
        pub use crate::state::PartitionState;
    }
}
