//! On-disk format primitives: names and constants, little-endian codec, checksums.
//!
//! `docs/format.md` is the normative description; the offsets here are checked against it by
//! the unit tests of each structure.

pub mod codec;
pub mod names;

pub use codec::{Reader, Writer};

/// The checksum every on-disk structure uses: CRC-32 (IEEE), as computed by `crc32fast`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}
