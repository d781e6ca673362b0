//! Entry points for the fuzz targets in `fuzz/` (see `docs/fuzzing.md`), one function per
//! target, each taking the fuzzer's bytes.
//!
//! They live here, always compiled, so the targets do not depend on which modules are
//! public, and so the workspace's tests replay the checked-in corpora through the same
//! functions (`engine/tests/fuzz_corpus.rs`). Each calls the real decoder and asserts what
//! must hold of its result; a panic is a finding.
//!
//! Checksums stop a fuzzer at the first check (it cannot guess a CRC), so where a whole
//! file or section is checksummed, one bit of the input's first byte asks for the checksum
//! to be made right before decoding, and the decoder behind it is reached.

use std::path::{Path, PathBuf};

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::annotations::AccountAnnotations;
use crate::checkpoint::{ArchivedImage, BlobLoc, Entry};
use crate::format::crc32;
use crate::mutation::{decode_blob_meta, kind, Mutation, BLOB_META_PREFIX};
use crate::segment::{
    scan_last_segment_from, scan_segment_from, RecordHeader, ScanEnd, SegmentHeader, SegmentScan,
};
use crate::slots::SlotMap;

/// Runs `f` on every input kept for `target` under `fuzz_dir`: `corpus/<target>/`, and
/// `seeds/<target>/` and `regressions/<target>/` where they exist, as the workspace's tests
/// do in CI. Returns how many ran. Panics, naming the file, when one fails, and when the
/// corpus is missing or empty: a replay that finds nothing to run must not pass.
pub fn replay(fuzz_dir: &Path, target: &str, f: fn(&[u8])) -> usize {
    let files = |kind: &str| -> Vec<PathBuf> {
        let dir = fuzz_dir.join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut v: Vec<PathBuf> = entries
            .map(|e| e.expect("reading a corpus").path())
            .collect();
        v.sort();
        v
    };
    let corpus = files("corpus");
    assert!(
        !corpus.is_empty(),
        "no corpus for {target} in {}",
        fuzz_dir.join("corpus").display()
    );
    let all: Vec<PathBuf> = corpus
        .into_iter()
        .chain(files("seeds"))
        .chain(files("regressions"))
        .collect();
    for path in &all {
        let data = std::fs::read(path).expect("reading a corpus file");
        if std::panic::catch_unwind(|| f(&data)).is_err() {
            panic!("fuzz target {target} fails on {}", path.display());
        }
    }
    all.len()
}

/// The recovery scan (`segment::scan`) over a segment's bytes.
///
/// The first byte chooses: bit 0, scan as the log's last segment; bit 1, build the segment
/// from the rest as a little program ([`build_segment`]: valid records with real
/// checksums, garbage, zeros, stale records, bit flips, cuts), else the rest is the
/// segment's bytes as they are (with a valid segment header, records start after it at the
/// header's first LSN). Checked: records are whole, checksummed, in order and with rising
/// LSNs; every gap between them is reported as one corrupt range; the scan ends where the
/// last record ends, on zeros only if it says Clean; scanning a suffix from the same start
/// gives the same answer; the repaired segment (zeros from `valid_len` on) scans to the
/// same records and a clean end (recovery run twice changes nothing); a segment built of
/// valid records only is read whole. Every record's payload also goes through
/// `Mutation::decode`, as recovery does.
pub fn segment_scan(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let last = mode & 1 != 0;
    let (bytes, start, min_lsn, expected) = if mode & 2 != 0 {
        let b = build_segment(rest);
        (
            b.bytes,
            SegmentHeader::LEN as u64,
            b.first_lsn,
            b.clean_records,
        )
    } else {
        match SegmentHeader::decode(rest) {
            Ok(h) => {
                assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
                (rest.to_vec(), SegmentHeader::LEN as u64, h.first_lsn, None)
            }
            Err(_) => (rest.to_vec(), 0, u64::from(mode >> 2), None),
        }
    };
    let scan = |b: &[u8], base: u64| {
        if last {
            scan_last_segment_from(b, base, start, min_lsn)
        } else {
            scan_segment_from(b, base, start, min_lsn)
        }
    };
    let s = scan(&bytes, 0);
    check_scan(&bytes, start, min_lsn, &s);
    if let Some(n) = expected {
        assert_eq!(
            s.records.len(),
            n,
            "a segment of valid records is read whole"
        );
        assert_eq!(s.end, ScanEnd::Clean);
        assert!(s.corrupt.is_empty());
    }
    // The same bytes from the start offset on (what recovery reads past a checkpoint).
    let from = (start as usize).min(bytes.len());
    if from as u64 == start {
        assert_eq!(scan(&bytes[from..], start), s, "a suffix scans the same");
    }
    // Repair: cut at valid_len (zeros after it) and scan again.
    let mut repaired = bytes.clone();
    if let Some(tail) = repaired.get_mut(s.valid_len as usize..) {
        tail.fill(0);
    }
    let again = scan(&repaired, 0);
    assert_eq!(
        again.records, s.records,
        "recovery run twice changes nothing"
    );
    // The same ranges; a reason may differ (a bad header's length can reach past the cut).
    let ranges = |s: &SegmentScan| -> Vec<(u64, u64)> {
        s.corrupt.iter().map(|c| (c.start, c.end)).collect()
    };
    assert_eq!(ranges(&again), ranges(&s));
    assert_eq!(again.valid_len, s.valid_len);
    assert_eq!(again.end, ScanEnd::Clean);
}

fn check_scan(bytes: &[u8], start: u64, min_lsn: u64, s: &SegmentScan) {
    let mut pos = start;
    let mut next_lsn = min_lsn;
    let mut gaps = 0;
    for r in &s.records {
        assert!(r.offset >= pos, "records in order, not overlapping");
        if r.offset > pos {
            assert_eq!(
                s.corrupt.get(gaps).map(|c| (c.start, c.end)),
                Some((pos, r.offset))
            );
            gaps += 1;
        }
        assert!(r.header.lsn >= next_lsn, "LSNs rise");
        let payload = r.payload(bytes);
        assert_eq!(payload.len(), r.header.payload_len as usize);
        assert!(r.header.check_payload(payload).is_ok());
        let _ = Mutation::decode(r.header.kind, payload);
        pos = r.offset + r.header.total_len();
        next_lsn = r.header.lsn + 1;
    }
    assert_eq!(
        s.corrupt.len(),
        gaps,
        "every corrupt range lies between records"
    );
    assert_eq!(s.valid_len, pos);
    match &s.end {
        ScanEnd::Clean => assert!(bytes
            .get(pos as usize..)
            .unwrap_or_default()
            .iter()
            .all(|&b| b == 0)),
        ScanEnd::Torn { at, .. } => {
            assert_eq!(*at, pos);
            assert!((*at as usize) < bytes.len());
        }
    }
}

/// A length byte, then up to that many bytes.
fn take(p: &mut impl Iterator<Item = u8>) -> Vec<u8> {
    let n = p.next().unwrap_or(0) as usize;
    p.take(n).collect()
}

/// A segment made by [`build_segment`].
pub struct BuiltSegment {
    pub bytes: Vec<u8>,
    pub first_lsn: u64,
    /// The number of records, if nothing but valid records was written.
    pub clean_records: Option<usize>,
}

/// Builds a segment (header, then records) from a program: each step is an opcode byte
/// and its operands, read from `program` until it runs out.
///
/// | op % 6 | operands | writes |
/// |---|---|---|
/// | 0 | kind, len, len bytes | a valid record with the next LSN |
/// | 1 | len, len bytes | those bytes (garbage) |
/// | 2 | n | 16·n zero bytes |
/// | 3 | len, len bytes | a valid record with an LSN below the segment's first (stale) |
/// | 4 | 2 bytes position, bit | flips that bit of the segment so far |
/// | 5 | 2 bytes position | cuts the segment there |
///
/// The opcode's high bits skip LSNs (a gap in LSNs is allowed).
pub fn build_segment(program: &[u8]) -> BuiltSegment {
    let mut p = program.iter().copied();
    let first_lsn = 100 + u64::from(p.next().unwrap_or(0));
    let header = SegmentHeader {
        partition: 0,
        epoch: 1,
        seq: 1,
        first_lsn,
        created_unix: 0,
    };
    let mut bytes = header.encode().to_vec();
    let mut lsn = first_lsn;
    let mut records = 0;
    let mut clean = true;
    while let Some(op) = p.next() {
        match op % 6 {
            0 => {
                let k = p.next().unwrap_or(0) % 16;
                let payload = take(&mut p);
                RecordHeader::write_record(&mut bytes, k, lsn, &payload);
                lsn += 1 + u64::from(op / 6 % 4);
                records += 1;
            }
            1 => {
                clean = false;
                bytes.extend(take(&mut p));
            }
            2 => {
                clean = false;
                let n = 16 * p.next().unwrap_or(0) as usize;
                bytes.resize(bytes.len() + n, 0);
            }
            3 => {
                clean = false;
                let payload = take(&mut p);
                let stale = first_lsn - 1 - u64::from(op / 6);
                RecordHeader::write_record(&mut bytes, 1, stale, &payload);
            }
            4 => {
                clean = false;
                let at = usize::from(u16::from_le_bytes([
                    p.next().unwrap_or(0),
                    p.next().unwrap_or(0),
                ]));
                let bit = p.next().unwrap_or(0) % 8;
                let len = bytes.len();
                bytes[at % len] ^= 1 << bit;
            }
            _ => {
                clean = false;
                let at = usize::from(u16::from_le_bytes([
                    p.next().unwrap_or(0),
                    p.next().unwrap_or(0),
                ]));
                bytes.truncate((at % bytes.len()).max(SegmentHeader::LEN));
            }
        }
    }
    // The zeros a segment file ends with.
    bytes.resize(bytes.len() + 512, 0);
    BuiltSegment {
        bytes,
        first_lsn,
        clean_records: clean.then_some(records),
    }
}

/// `Mutation::decode(kind, payload)` and `decode_blob_meta`: the first byte is the record
/// kind, bit 0 of the second asks for a `Blob` payload's metadata checksum to be made
/// right, the rest is the payload. Checked: what decodes has that kind, encodes back to the
/// same bytes (a `Subscribe` flag other than 0 or 1 aside) and decodes again to itself; a
/// `Blob`'s metadata read alone is the metadata of the whole decode.
pub fn mutation_decode(data: &[u8]) {
    let [k, flags, payload @ ..] = data else {
        return;
    };
    let mut payload = payload.to_vec();
    if flags & 1 != 0 && *k == kind::BLOB {
        fix_blob_meta_crc(&mut payload);
    }
    let meta = decode_blob_meta(&payload);
    let Ok(m) = Mutation::decode(*k, &payload) else {
        return;
    };
    assert_eq!(m.kind(), *k);
    let mut encoded = Vec::new();
    m.encode(&mut encoded);
    if !matches!(m, Mutation::Subscribe { .. }) {
        assert_eq!(encoded, payload, "decode then encode gives the bytes back");
    }
    assert_eq!(Mutation::decode(*k, &encoded).as_ref(), Ok(&m));
    if let Mutation::Blob(b) = &m {
        assert_eq!(meta.as_ref(), Ok(&b.meta));
    }
}

/// Sets the metadata CRC of a `Blob` payload to the CRC of its metadata, where the
/// metadata's length fits in the payload.
fn fix_blob_meta_crc(payload: &mut [u8]) {
    let Some(len) = payload.get(BLOB_META_PREFIX - 4..BLOB_META_PREFIX) else {
        return;
    };
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let Some(meta) = payload.get(BLOB_META_PREFIX..BLOB_META_PREFIX.saturating_add(len)) else {
        return;
    };
    let crc = crc32(meta).to_le_bytes();
    payload[BLOB_META_PREFIX - 8..BLOB_META_PREFIX - 4].copy_from_slice(&crc);
}

/// The input's rest, with its last four bytes made the CRC of what precedes them when bit 0
/// of its first byte is set (files checksummed whole: annotations, the superblock).
fn with_trailing_crc(data: &[u8]) -> Option<Vec<u8>> {
    let (&flags, rest) = data.split_first()?;
    let mut v = rest.to_vec();
    if flags & 1 != 0 && v.len() >= 4 {
        let body = v.len() - 4;
        let crc = crc32(&v[..body]).to_le_bytes();
        v[body..].copy_from_slice(&crc);
    }
    Some(v)
}

/// `AccountAnnotations::decode` (an account's METADATA file). Checked: what decodes
/// encodes to a file that decodes to the same annotations.
pub fn annotations_decode(data: &[u8]) {
    let Some(bytes) = with_trailing_crc(data) else {
        return;
    };
    if let Ok(a) = AccountAnnotations::decode(&bytes) {
        assert_eq!(AccountAnnotations::decode(&a.encode()).as_ref(), Ok(&a));
    }
}

/// `SlotMap::decode` (the `SUPERBLOCK` file). Checked: what decodes encodes back to the
/// same bytes, and every slot names one of its partitions.
pub fn slots_decode(data: &[u8]) {
    let Some(bytes) = with_trailing_crc(data) else {
        return;
    };
    if let Ok(m) = SlotMap::decode(&bytes) {
        assert_eq!(m.encode(), bytes);
        let p = m.partition_of("fuzz@example.org");
        assert!(p.0 < m.partitions);
    }
}

/// A checkpoint's archive (the bytes after its 64-byte header) through the validation
/// `Checkpoint::load` runs before the index reads it in place. Checked: validation never
/// panics, and everything in an archive that passes can be read.
pub fn checkpoint_archive(data: &[u8]) {
    let mut buf = AlignedVec::<16>::with_capacity(data.len());
    buf.extend_from_slice(data);
    let Ok(image) = rkyv::access::<ArchivedImage, rancor::Error>(&buf) else {
        return;
    };
    let mut sum = image.next_lsn.to_native() ^ image.log_offset.to_native();
    for a in image.accounts.iter() {
        sum = sum.wrapping_add(a.name.len() as u64);
        for k in a.keywords.iter().chain(a.subscriptions.iter()) {
            sum = sum.wrapping_add(k.as_str().len() as u64);
        }
        for m in a.mailboxes.iter() {
            sum = sum.wrapping_add(m.name.as_str().len() as u64);
            for e in m.entries.iter() {
                sum = sum.wrapping_add(Entry::from(e).modseq);
            }
        }
    }
    for b in image.blobs.iter() {
        sum = sum.wrapping_add(BlobLoc::from(b).offset);
    }
    for d in image.dictionaries.iter() {
        sum = sum.wrapping_add(d.bytes.iter().map(|&b| u64::from(b)).sum::<u64>());
    }
    std::hint::black_box(sum);
}
