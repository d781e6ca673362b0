//! The 32-byte record header that frames every mutation in the log.
//!
//! The header carries its own checksum, checked before its length is trusted, and the
//! checksum of the payload, checked before the payload is parsed or decompressed.

use crate::error::FormatError;
use crate::format::names::{MAX_RECORD_PAYLOAD, RECORD_MAGIC};
use crate::format::{crc32, Reader, Writer};

pub const RECORD_HEADER_LEN: usize = HEADER_CRC_OFF + 4;

const MAGIC_OFF: usize = 0;
const LEN_OFF: usize = MAGIC_OFF + 4;
const KIND_OFF: usize = LEN_OFF + 4;
const FLAGS_OFF: usize = KIND_OFF + 1;
const RESERVED_OFF: usize = FLAGS_OFF + 1;
const LSN_OFF: usize = RESERVED_OFF + 6;
const PAYLOAD_CRC_OFF: usize = LSN_OFF + 8;
const HEADER_CRC_OFF: usize = PAYLOAD_CRC_OFF + 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub payload_len: u32,
    pub kind: u8,
    pub flags: u8,
    pub lsn: u64,
    pub payload_crc: u32,
}

impl RecordHeader {
    /// Frames `payload` as one record, appending header and payload to `out`.
    pub fn write_record(out: &mut Vec<u8>, kind: u8, lsn: u64, payload: &[u8]) {
        let h = RecordHeader {
            payload_len: payload.len() as u32,
            kind,
            flags: 0,
            lsn,
            payload_crc: crc32(payload),
        };
        out.extend_from_slice(&h.encode());
        out.extend_from_slice(payload);
    }

    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut v = Vec::with_capacity(RECORD_HEADER_LEN);
        let mut w = Writer::new(&mut v);
        w.raw(&RECORD_MAGIC);
        w.u32(self.payload_len);
        w.u8(self.kind);
        w.u8(self.flags);
        w.raw(&[0u8; 6]);
        w.u64(self.lsn);
        w.u32(self.payload_crc);
        let crc = crc32(&v);
        Writer::new(&mut v).u32(crc);
        let mut out = [0u8; RECORD_HEADER_LEN];
        out.copy_from_slice(&v);
        out
    }

    /// Decodes and verifies a header. Only after this succeeds may `payload_len` be used.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() < RECORD_HEADER_LEN {
            return Err(FormatError::Truncated {
                at: 0,
                wanted: RECORD_HEADER_LEN,
                available: bytes.len(),
            });
        }
        let bytes = &bytes[..RECORD_HEADER_LEN];
        if bytes[..4] != RECORD_MAGIC {
            return Err(FormatError::BadMagic {
                expected: RECORD_MAGIC.to_vec(),
                got: bytes[..4].to_vec(),
            });
        }
        let computed = crc32(&bytes[..HEADER_CRC_OFF]);
        let mut r = Reader::new(&bytes[LEN_OFF..]);
        let payload_len = r.u32()?;
        let kind = r.u8()?;
        let flags = r.u8()?;
        r.take(6)?;
        let lsn = r.u64()?;
        let payload_crc = r.u32()?;
        let stored = r.u32()?;
        if stored != computed {
            return Err(FormatError::Checksum {
                what: "record header",
                expected: stored,
                got: computed,
            });
        }
        if payload_len > MAX_RECORD_PAYLOAD {
            return Err(FormatError::TooLarge {
                at: LEN_OFF,
                len: payload_len as u64,
                max: MAX_RECORD_PAYLOAD as u64,
            });
        }
        Ok(Self {
            payload_len,
            kind,
            flags,
            lsn,
            payload_crc,
        })
    }

    pub fn total_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + self.payload_len as u64
    }

    /// Verifies the payload against the header's checksum.
    pub fn check_payload(&self, payload: &[u8]) -> Result<(), FormatError> {
        let got = crc32(payload);
        if got != self.payload_crc {
            return Err(FormatError::Checksum {
                what: "record payload",
                expected: self.payload_crc,
                got,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_format_md() {
        // docs/format.md, "Record header".
        assert_eq!((LEN_OFF, KIND_OFF, FLAGS_OFF, RESERVED_OFF), (4, 8, 9, 10));
        assert_eq!((LSN_OFF, PAYLOAD_CRC_OFF, HEADER_CRC_OFF), (16, 24, 28));
        assert_eq!(RECORD_HEADER_LEN, 32);
    }

    #[test]
    fn every_bit_flip_in_the_header_is_caught() {
        let mut v = Vec::new();
        RecordHeader::write_record(&mut v, 5, 99, b"payload");
        let h = RecordHeader::decode(&v).unwrap();
        assert_eq!((h.kind, h.lsn, h.payload_len), (5, 99, 7));
        h.check_payload(&v[RECORD_HEADER_LEN..]).unwrap();
        for byte in 0..RECORD_HEADER_LEN {
            for bit in 0..8 {
                let mut c = v.clone();
                c[byte] ^= 1 << bit;
                assert!(RecordHeader::decode(&c).is_err(), "flip {byte}:{bit}");
            }
        }
        let mut c = v.clone();
        c[RECORD_HEADER_LEN + 2] ^= 1;
        assert!(h.check_payload(&c[RECORD_HEADER_LEN..]).is_err());
    }
}
