//! A partition in object storage (cluster mode): what is stored there and how it is named.
//!
//! The engine writes and reads these shapes; the cluster crate moves them to and from an
//! S3-compatible store and publishes the manifest through etcd. Everything here is pure
//! (bytes in, bytes out), so the formats are tested without a network.
//!
//! ```text
//! manifest ──► checkpoint object ──► sealed segment objects (fetched when a read needs one)
//!          └─► tail: chunks of the owner's epoch(s), one per group-commit batch, from the
//!              first segment that is not sealed in object storage yet
//! ```
//!
//! Every object is immutable, and its key holds the epoch of the owner that wrote it, so an
//! owner that lost the partition can never overwrite what the new owner relies on.

pub mod chunk;
pub mod keys;
pub mod manifest;
pub mod materialize;

pub use chunk::{Chunk, Piece};

/// The segment a checkpoint file's position is in (from its bytes, fully checked): the
/// segments from it on are replayed at open; older ones are read only for their messages.
pub fn checkpoint_log_segment(
    bytes: &[u8],
    partition: u32,
) -> std::result::Result<u64, crate::error::FormatError> {
    crate::checkpoint::Checkpoint::log_segment_of(bytes, partition)
}

/// The local directory of `partition` in a node's data directory (its cache, in cluster
/// mode).
pub fn local_dir(data_dir: &std::path::Path, partition: u32) -> std::path::PathBuf {
    data_dir.join(crate::format::names::partition_dir(partition))
}
pub use keys::ObjectKey;
pub use manifest::{Manifest, ObjectRef, SegmentRef, TailRange};
pub use materialize::{materialize, Materialized, Materials};
