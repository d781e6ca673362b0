//! ringmail-engine: a thread-per-core, log-structured message store.
//!
//! The engine stores mail for many accounts. Accounts hash to slots, slots map to
//! partitions, and each partition (one append-only log and its index) lives on one shard,
//! a glommio executor pinned to a core. Nothing is shared across cores: work for an account
//! is sent to its shard ([`node::NodeHandle::on_account`]).
//!
//! ```text
//!  request ──► plan (validate, build Mutation) ──► log: group commit ──► O_DSYNC write ──► ack
//!                                     └──────────► apply to the index (in memory)
//!  open ──► newest checkpoint (rkyv, read in place) ──► replay log after it ──► serve
//! ```
//!
//! - Every change is one checksummed record in the log ([`mutation`], [`segment`]); the
//!   log is the write-ahead log and the message store at once.
//! - An acknowledgement means the record is on disk: writers share one durable write per batch
//!   ([`io::log_writer`]).
//! - The index is a checkpoint archive read in place plus the changes since
//!   ([`index`], [`checkpoint`]); recovery replays only the log after the checkpoint.
//! - Expunged space is reclaimed by compaction ([`compaction`], [`partition::Partition::compact`]).
//!
//! What it does not do: parse mail or speak any protocol (the frontends do), or replicate
//! (a later cluster layer). Limits: messages up to 256 MiB, 56 keywords per account,
//! segments of up to 4 GiB. The on-disk format is specified in `docs/format.md`.

#![deny(unsafe_code)]

pub mod annotations;
pub mod api;
pub mod checkpoint;
pub mod compaction;
mod compress_worker;
pub mod compression;
pub mod error;
pub mod flags;
pub mod format;
/// Entry points for the fuzz targets in `fuzz/` (`docs/fuzzing.md`); not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod ids;
pub mod index;
pub mod io;
pub mod mutation;
pub mod node;
pub mod partition;
pub mod recovery;
pub mod retired;
pub mod segment;
pub mod slots;
pub mod state;

pub use api::{
    AccountInfo, Appended, MailboxInfo, MessageInfo, NewMessage, Recipient, StoreResult,
};
pub use error::{Error, FormatError, Resource, Result, StoreError};
pub use flags::{FlagOp, Flags, SpecialUse};
pub use ids::*;
pub use io::log_writer::Durability;
pub use io::reader::ReadMode;
pub use node::{Node, NodeConfig, NodeHandle, Service, ShardContext};
pub use partition::{AccountOptions, IntegrityReport, Partition, PartitionConfig, PartitionStats};
pub use recovery::{RecoveryMode, RecoveryReport};
