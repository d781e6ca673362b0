//! The 64-byte segment header.

use crate::error::FormatError;
use crate::format::names::{FORMAT_VERSION, SEGMENT_MAGIC};
use crate::format::{crc32, Reader, Writer};

/// Bytes 0..64 of every segment file; records start at [`SegmentHeader::LEN`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub partition: u32,
    pub epoch: u64,
    pub seq: u64,
    /// The LSN of the first record in this segment.
    pub first_lsn: u64,
    pub created_unix: u64,
}

// Offsets, chained so that a field can never silently overlap the next.
const MAGIC_OFF: usize = 0;
const VERSION_OFF: usize = MAGIC_OFF + 8;
const PARTITION_OFF: usize = VERSION_OFF + 4;
const EPOCH_OFF: usize = PARTITION_OFF + 4;
const SEQ_OFF: usize = EPOCH_OFF + 8;
const FIRST_LSN_OFF: usize = SEQ_OFF + 8;
const CREATED_OFF: usize = FIRST_LSN_OFF + 8;
const RESERVED_OFF: usize = CREATED_OFF + 8;
const CRC_OFF: usize = RESERVED_OFF + 12;
const END: usize = CRC_OFF + 4;

impl SegmentHeader {
    pub const LEN: usize = END;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut v = Vec::with_capacity(Self::LEN);
        let mut w = Writer::new(&mut v);
        w.raw(&SEGMENT_MAGIC);
        w.u32(FORMAT_VERSION);
        w.u32(self.partition);
        w.u64(self.epoch);
        w.u64(self.seq);
        w.u64(self.first_lsn);
        w.u64(self.created_unix);
        w.raw(&[0u8; 12]);
        let crc = crc32(&v);
        Writer::new(&mut v).u32(crc);
        let mut out = [0u8; Self::LEN];
        out.copy_from_slice(&v);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes);
        let magic = r.take(8)?;
        if magic != SEGMENT_MAGIC {
            return Err(FormatError::BadMagic {
                expected: SEGMENT_MAGIC.to_vec(),
                got: magic.to_vec(),
            });
        }
        let version = r.u32()?;
        let partition = r.u32()?;
        let epoch = r.u64()?;
        let seq = r.u64()?;
        let first_lsn = r.u64()?;
        let created_unix = r.u64()?;
        r.take(12)?;
        let stored = r.u32()?;
        // The length was checked by the reads above, so CRC_OFF is in bounds.
        let computed = crc32(&bytes[..CRC_OFF]);
        if stored != computed {
            return Err(FormatError::Checksum {
                what: "segment header",
                expected: stored,
                got: computed,
            });
        }
        if !crate::format::names::readable_version(version) {
            return Err(FormatError::UnsupportedVersion {
                got: version,
                supported: FORMAT_VERSION,
            });
        }
        Ok(Self {
            partition,
            epoch,
            seq,
            first_lsn,
            created_unix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_format_md() {
        // docs/format.md, "Segment header".
        assert_eq!(
            (
                VERSION_OFF,
                PARTITION_OFF,
                EPOCH_OFF,
                SEQ_OFF,
                FIRST_LSN_OFF
            ),
            (8, 12, 16, 24, 32)
        );
        assert_eq!(
            (CREATED_OFF, RESERVED_OFF, CRC_OFF, SegmentHeader::LEN),
            (40, 48, 60, 64)
        );
    }

    #[test]
    fn round_trip_and_corruption() {
        let h = SegmentHeader {
            partition: 3,
            epoch: 1,
            seq: 42,
            first_lsn: 1000,
            created_unix: 1_700_000_000,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b).unwrap(), h);
        for i in 0..b.len() {
            let mut c = b;
            c[i] ^= 0x40;
            assert!(
                SegmentHeader::decode(&c).is_err(),
                "flip at {i} went unnoticed"
            );
        }
    }
}
