//! The recovery scan: a pure function from a segment's bytes to its valid records.
//!
//! It never changes anything; [`crate::recovery`] decides what to repair from its result, so
//! running recovery twice finds the same answer.
//!
//! ```text
//! pos = start
//! loop:
//!     if the rest is all zero bytes:          end Clean
//!     if a valid record starts at pos:        take it, pos += its length
//!     else if a valid record with a higher LSN starts later (found by its magic):
//!         if this is the log's last segment and a zero sector lies between:
//!                                             end Torn at pos (a torn last batch)
//!         else:                               note the bad range as Corrupt, pos = there
//!     else:                                   end Torn at pos
//! ```
//!
//! Why zero sectors end the last segment: the writer keeps a segment written with zeros
//! ahead of its records, so a batch torn by a power cut (its sectors persisted in any
//! order) can leave a hole of zeros with some of its later records intact after it. Only
//! the last batch can be torn (each batch is durable before the next is written, and
//! before anyone is answered), and a completed batch never leaves a zero sector between
//! records, so everything after such a hole is unacknowledged: the log ends there.
//! Elsewhere a bad range is damage to acknowledged data, and the records after it are kept.

use memchr::memmem;

use super::record::{RecordHeader, RECORD_HEADER_LEN};
use crate::error::FormatError;
use crate::format::names::RECORD_MAGIC;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScannedRecord {
    pub offset: u64,
    pub header: RecordHeader,
}

impl ScannedRecord {
    pub fn payload<'a>(&self, segment: &'a [u8]) -> &'a [u8] {
        self.payload_from(segment, 0)
    }

    /// The payload, from bytes that hold the segment from file offset `base` on.
    pub fn payload_from<'a>(&self, segment: &'a [u8], base: u64) -> &'a [u8] {
        let start = (self.offset - base) as usize + RECORD_HEADER_LEN;
        // The scan verified that the payload lies inside the segment.
        &segment[start..start + self.header.payload_len as usize]
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// Only zero bytes (block padding, or zeros the writer wrote ahead) follow the last record.
    Clean,
    /// Non-zero bytes that are not a valid record follow the last record: a torn write.
    Torn { at: u64, reason: FormatError },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptRange {
    pub start: u64,
    pub end: u64,
    pub reason: FormatError,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentScan {
    pub records: Vec<ScannedRecord>,
    /// The end of the last valid record: where a repaired segment ends.
    pub valid_len: u64,
    pub end: ScanEnd,
    /// Bad bytes between valid records (mid-log corruption), skipped.
    pub corrupt: Vec<CorruptRange>,
}

/// Scans `bytes` (a whole segment file) from `start`, which must be a record boundary.
/// `min_lsn` is the LSN the first record must at least have.
pub fn scan_segment(bytes: &[u8], start: u64, min_lsn: u64) -> SegmentScan {
    scan_segment_from(bytes, 0, start, min_lsn)
}

/// Like [`scan_segment`], for `bytes` holding the segment from file offset `base` on (so
/// recovery need not read what a checkpoint already covers). Offsets in the result are file
/// offsets.
pub fn scan_segment_from(bytes: &[u8], base: u64, start: u64, min_lsn: u64) -> SegmentScan {
    scan(bytes, base, start, min_lsn, false)
}

/// Like [`scan_segment_from`], for the log's last segment, where a bad range that holds a
/// zero sector is a torn last batch and ends the log (see the module comment).
pub fn scan_last_segment_from(bytes: &[u8], base: u64, start: u64, min_lsn: u64) -> SegmentScan {
    scan(bytes, base, start, min_lsn, true)
}

/// The sector size a torn write is assumed to leave whole (the smallest there is).
const SECTOR: usize = 512;

/// Whether a whole sector of zeros (aligned in the file, whose offset `bytes[0]` has is
/// `base`) lies in `bytes[from..to]`.
fn has_zero_sector(bytes: &[u8], base: usize, from: usize, to: usize) -> bool {
    let mut s = (base + from).next_multiple_of(SECTOR) - base;
    while s + SECTOR <= to {
        if bytes[s..s + SECTOR].iter().all(|&b| b == 0) {
            return true;
        }
        s += SECTOR;
    }
    false
}

fn scan(bytes: &[u8], base: u64, start: u64, min_lsn: u64, last: bool) -> SegmentScan {
    let b = base as usize;
    let mut records = Vec::new();
    let mut corrupt = Vec::new();
    let mut pos = (start - base) as usize;
    let mut next_lsn = min_lsn;
    let mut valid_len = start;
    let end = loop {
        if pos >= bytes.len() || bytes[pos..].iter().all(|&b| b == 0) {
            break ScanEnd::Clean;
        }
        match record_at(bytes, pos, next_lsn) {
            Ok(h) => {
                records.push(ScannedRecord {
                    offset: (pos + b) as u64,
                    header: h,
                });
                pos += h.total_len() as usize;
                valid_len = (pos + b) as u64;
                next_lsn = h.lsn + 1;
            }
            Err(reason) => match resync(bytes, pos + 1, next_lsn) {
                Some(q) if last && has_zero_sector(bytes, b, pos, q) => {
                    break ScanEnd::Torn {
                        at: (pos + b) as u64,
                        reason,
                    }
                }
                Some(q) => {
                    corrupt.push(CorruptRange {
                        start: (pos + b) as u64,
                        end: (q + b) as u64,
                        reason,
                    });
                    pos = q;
                }
                None => {
                    break ScanEnd::Torn {
                        at: (pos + b) as u64,
                        reason,
                    }
                }
            },
        }
    };
    SegmentScan {
        records,
        valid_len,
        end,
        corrupt,
    }
}

fn record_at(bytes: &[u8], pos: usize, min_lsn: u64) -> Result<RecordHeader, FormatError> {
    let h = RecordHeader::decode(&bytes[pos..])?;
    let start = pos + RECORD_HEADER_LEN;
    let end = start + h.payload_len as usize;
    if end > bytes.len() {
        // Positions in the error are within the record (as the header's are): the scan
        // reports the record's own offset in the file.
        return Err(FormatError::Truncated {
            at: RECORD_HEADER_LEN,
            wanted: h.payload_len as usize,
            available: bytes.len() - start,
        });
    }
    h.check_payload(&bytes[start..end])?;
    if h.lsn < min_lsn {
        // A stale record left behind by an earlier, torn write: not part of this log.
        return Err(FormatError::Invalid {
            what: "record LSN",
            detail: format!("{} is below the expected {}", h.lsn, min_lsn),
        });
    }
    Ok(h)
}

/// Finds the next offset at or after `from` where a valid record with LSN >= `min_lsn` starts.
fn resync(bytes: &[u8], from: usize, min_lsn: u64) -> Option<usize> {
    let finder = memmem::Finder::new(&RECORD_MAGIC);
    let mut at = from;
    while at < bytes.len() {
        let found = at + finder.find(&bytes[at..])?;
        if record_at(bytes, found, min_lsn).is_ok() {
            return Some(found);
        }
        at = found + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(payloads: &[&[u8]]) -> (Vec<u8>, Vec<u64>) {
        let mut v = vec![0u8; 64];
        let mut offs = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            offs.push(v.len() as u64);
            RecordHeader::write_record(&mut v, 1, 10 + i as u64, p);
        }
        let end = v.len();
        v.resize(end + 4096, 0);
        (v, offs)
    }

    #[test]
    fn scanning_from_an_offset_matches_scanning_the_whole() {
        let (v, offs) = segment(&[b"a", b"bb", b"ccc"]);
        let whole = scan_segment(&v, offs[1], 11);
        let part = scan_segment_from(&v[offs[1] as usize..], offs[1], offs[1], 11);
        assert_eq!(whole, part);
        assert_eq!(
            part.records[1].payload_from(&v[offs[1] as usize..], offs[1]),
            b"ccc"
        );
    }

    #[test]
    fn clean_segment() {
        let (v, offs) = segment(&[b"a", b"bb", b"ccc"]);
        let s = scan_segment(&v, 64, 10);
        assert_eq!(s.records.len(), 3);
        assert_eq!(s.end, ScanEnd::Clean);
        assert_eq!(s.records[2].payload(&v), b"ccc");
        assert_eq!(s.valid_len, offs[2] + 32 + 3);
        assert!(s.corrupt.is_empty());
    }

    #[test]
    fn every_truncation_point_is_a_prefix() {
        let (v, offs) = segment(&[b"hello", b"world!", b"third record"]);
        let full = offs[2] as usize + 32 + 12;
        for cut in 64..=full {
            let mut c = v[..cut].to_vec();
            c.resize(full + 100, 0);
            let s = scan_segment(&c, 64, 10);
            let whole = offs.iter().filter(|&&o| {
                let i = offs.iter().position(|x| *x == o).unwrap();
                let len = [5, 6, 12][i];
                o as usize + 32 + len <= cut
            });
            assert_eq!(s.records.len(), whole.count(), "cut at {cut}");
            assert!(s.corrupt.is_empty());
        }
    }

    #[test]
    fn mid_log_corruption_is_skipped_and_reported() {
        let (mut v, offs) = segment(&[b"one", b"two", b"three"]);
        v[offs[1] as usize + 33] ^= 0xff;
        let s = scan_segment(&v, 64, 10);
        let lsns: Vec<u64> = s.records.iter().map(|r| r.header.lsn).collect();
        assert_eq!(lsns, vec![10, 12]);
        assert_eq!(s.corrupt.len(), 1);
        assert_eq!(s.corrupt[0].start, offs[1]);
        assert_eq!(s.end, ScanEnd::Clean);
    }

    #[test]
    fn garbage_tail_is_torn() {
        let (mut v, offs) = segment(&[b"one"]);
        let end = offs[0] as usize + 32 + 3;
        v[end..end + 10].copy_from_slice(b"GARBAGE!!!");
        let s = scan_segment(&v, 64, 10);
        assert_eq!(s.records.len(), 1);
        assert!(matches!(s.end, ScanEnd::Torn { at, .. } if at == end as u64));
        assert_eq!(s.valid_len, end as u64);
    }

    #[test]
    fn a_hole_of_zeros_ends_the_last_segment_but_is_skipped_elsewhere() {
        // Records long enough that the second spans whole sectors.
        let (one, two, three) = (vec![b'1'; 100], vec![b'2'; 1500], vec![b'3'; 100]);
        let (mut v, offs) = segment(&[&one, &two, &three]);
        // A torn write: a sector inside the second record never reached the disk.
        let hole = (offs[1] as usize + 32).next_multiple_of(SECTOR);
        v[hole..hole + SECTOR].fill(0);
        let last = scan_last_segment_from(&v, 0, 64, 10);
        assert_eq!(last.records.len(), 1);
        assert!(last.corrupt.is_empty());
        assert!(matches!(last.end, ScanEnd::Torn { at, .. } if at == offs[1]));
        assert_eq!(last.valid_len, offs[1]);
        // In an earlier segment the same bytes are damage: reported, the rest kept.
        let earlier = scan_segment(&v, 64, 10);
        assert_eq!(earlier.records.len(), 2);
        assert_eq!(earlier.corrupt.len(), 1);
        // Damage that is not a zero sector is skipped even in the last segment.
        let (mut v, offs) = segment(&[&one, &two, &three]);
        v[offs[1] as usize + 40] ^= 0xff;
        let last = scan_last_segment_from(&v, 0, 64, 10);
        assert_eq!(last.records.len(), 2);
        assert_eq!(last.corrupt.len(), 1);
        assert_eq!(last.end, ScanEnd::Clean);
        // Sectors are aligned in the file: the same hole seen from a later base.
        let (mut v, offs) = segment(&[&one, &two, &three]);
        v[hole..hole + SECTOR].fill(0);
        let from = offs[0] as usize;
        let part = scan_last_segment_from(&v[from..], from as u64, from as u64, 10);
        assert_eq!(part.valid_len, offs[1]);
    }

    /// Found by the `segment_scan` fuzz target: a torn record's reason gave its position in
    /// the bytes read, not in the record, so it changed with where the read started (a
    /// recovery reading past a checkpoint reported a different position).
    #[test]
    fn a_torn_records_reason_does_not_depend_on_where_the_read_started() {
        let (mut v, offs) = segment(&[b"one", b"two"]);
        v.truncate(offs[1] as usize + 32 + 1);
        let whole = scan_segment(&v, 64, 10);
        let part = scan_segment_from(&v[offs[0] as usize..], offs[0], 64, 10);
        assert_eq!(whole, part);
        assert!(matches!(
            whole.end,
            ScanEnd::Torn { at, reason: FormatError::Truncated { at: 32, .. } } if at == offs[1]
        ));
    }

    #[test]
    fn stale_records_with_old_lsns_are_not_resurrected() {
        let (mut v, offs) = segment(&[b"one", b"two"]);
        // Damage the first record: the second (LSN 11) is still found, but not when the
        // scan expects LSNs from 12 on.
        v[offs[0] as usize + 33] ^= 1;
        assert_eq!(scan_segment(&v, 64, 10).records.len(), 1);
        assert_eq!(scan_segment(&v, 64, 12).records.len(), 0);
    }
}
