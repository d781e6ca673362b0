//! A tail chunk: the bytes one group-commit batch wrote to the log, as one object.
//!
//! In cluster mode an owner uploads every batch before it acknowledges it, so the log's tail
//! survives the node. A chunk holds the batch's bytes exactly as they are in the segment
//! files (`pieces`: where they go and what they are), so a new owner rebuilds the segments
//! byte for byte, and the index positions (segment, offset) of the old owner stay true.
//!
//! ```text
//! 0        64
//! | header | piece | piece | ...        piece = segment u64, offset u64, bytes (u32 + data)
//! ```

use crate::error::FormatError;
use crate::format::codec::{Reader, Writer};
use crate::format::crc32;
use crate::format::names::{readable_version, FORMAT_VERSION};

/// First bytes of every tail chunk object.
pub const CHUNK_MAGIC: [u8; 8] = *b"RINGTAIL";
/// Largest body of a chunk (a batch holds at most a few messages of up to 256 MiB each).
pub const MAX_CHUNK_BODY: u32 = 1 << 30;
pub const CHUNK_HEADER_LEN: usize = 64;

/// Bytes written to one segment at one offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    pub segment: u64,
    pub offset: u64,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub partition: u32,
    /// The epoch of the owner that wrote the batch.
    pub epoch: u64,
    /// LSNs of the batch's first and last record: chunks chain by `first_lsn == last_lsn + 1`.
    pub first_lsn: u64,
    pub last_lsn: u64,
    /// In log order; a batch that filled a segment continues in the next one.
    pub pieces: Vec<Piece>,
}

// Header offsets, chained as in the other headers.
const MAGIC_OFF: usize = 0;
const VERSION_OFF: usize = MAGIC_OFF + 8;
const PARTITION_OFF: usize = VERSION_OFF + 4;
const EPOCH_OFF: usize = PARTITION_OFF + 4;
const FIRST_LSN_OFF: usize = EPOCH_OFF + 8;
const LAST_LSN_OFF: usize = FIRST_LSN_OFF + 8;
const PIECES_OFF: usize = LAST_LSN_OFF + 8;
const BODY_LEN_OFF: usize = PIECES_OFF + 4;
const BODY_CRC_OFF: usize = BODY_LEN_OFF + 4;
const RESERVED_OFF: usize = BODY_CRC_OFF + 4;
const HEADER_CRC_OFF: usize = RESERVED_OFF + 8;
const _: () = assert!(HEADER_CRC_OFF + 4 == CHUNK_HEADER_LEN);

/// Bytes of a piece besides its data: segment, offset, length.
const PIECE_OVERHEAD: usize = 8 + 8 + 4;

impl Chunk {
    /// The object's bytes as parts to send one after another, without copying the pieces'
    /// data: the header, then for each run of pieces that continue each other in one
    /// segment, a piece header and the run's data (a run is written as one piece, so
    /// batches merged into one chunk cost no more piece headers than one batch).
    pub fn into_parts(self) -> Vec<Vec<u8>> {
        let mut parts = Vec::with_capacity(1 + 2 * self.pieces.len());
        parts.push(Vec::new()); // the header, once the body's length and CRC are known
        let mut crc = crc32fast::Hasher::new();
        let mut body_len = 0usize;
        let mut runs = 0u32;
        let mut pieces = self.pieces.into_iter().peekable();
        while let Some(first) = pieces.next() {
            let (segment, offset) = (first.segment, first.offset);
            let mut run = vec![first.bytes];
            let mut len = run[0].len();
            while let Some(next) =
                pieces.next_if(|n| n.segment == segment && n.offset == offset + len as u64)
            {
                len += next.bytes.len();
                run.push(next.bytes);
            }
            let mut head = Vec::with_capacity(PIECE_OVERHEAD);
            let mut w = Writer::new(&mut head);
            w.u64(segment);
            w.u64(offset);
            w.u32(len as u32);
            crc.update(&head);
            body_len += head.len() + len;
            parts.push(head);
            for bytes in run {
                crc.update(&bytes);
                parts.push(bytes);
            }
            runs += 1;
        }
        let mut out = Vec::with_capacity(CHUNK_HEADER_LEN);
        let mut w = Writer::new(&mut out);
        w.raw(&CHUNK_MAGIC);
        w.u32(FORMAT_VERSION);
        w.u32(self.partition);
        w.u64(self.epoch);
        w.u64(self.first_lsn);
        w.u64(self.last_lsn);
        w.u32(runs);
        w.u32(body_len as u32);
        w.u32(crc.finalize());
        w.u64(0);
        let header_crc = crc32(&out[..HEADER_CRC_OFF]);
        Writer::new(&mut out).u32(header_crc);
        parts[0] = out;
        parts
    }

    /// The object's bytes in one buffer.
    pub fn encode(&self) -> Vec<u8> {
        self.clone().into_parts().concat()
    }

    pub fn decode(bytes: &[u8]) -> Result<Chunk, FormatError> {
        let mut r = Reader::new(bytes);
        let magic = r.take(8)?;
        if magic != CHUNK_MAGIC {
            return Err(FormatError::BadMagic {
                expected: CHUNK_MAGIC.to_vec(),
                got: magic.to_vec(),
            });
        }
        let version = r.u32()?;
        let partition = r.u32()?;
        let epoch = r.u64()?;
        let first_lsn = r.u64()?;
        let last_lsn = r.u64()?;
        let pieces = r.u32()?;
        let body_len = r.u32()?;
        let body_crc = r.u32()?;
        r.take(8)?;
        let stored = r.u32()?;
        let computed = crc32(&bytes[..HEADER_CRC_OFF]);
        if stored != computed {
            return Err(FormatError::Checksum {
                what: "tail chunk header",
                expected: stored,
                got: computed,
            });
        }
        if !readable_version(version) {
            return Err(FormatError::UnsupportedVersion {
                got: version,
                supported: FORMAT_VERSION,
            });
        }
        if body_len > MAX_CHUNK_BODY {
            return Err(FormatError::TooLarge {
                at: BODY_LEN_OFF,
                len: body_len as u64,
                max: MAX_CHUNK_BODY as u64,
            });
        }
        let body = r.take(body_len as usize)?;
        r.finish()?;
        let computed = crc32(body);
        if computed != body_crc {
            return Err(FormatError::Checksum {
                what: "tail chunk",
                expected: body_crc,
                got: computed,
            });
        }
        if last_lsn < first_lsn {
            return Err(FormatError::Invalid {
                what: "tail chunk",
                detail: format!("LSNs {first_lsn}..{last_lsn} run backwards"),
            });
        }
        let mut r = Reader::new(body);
        if pieces as usize > body.len() / PIECE_OVERHEAD {
            return Err(FormatError::TooLarge {
                at: PIECES_OFF,
                len: pieces as u64,
                max: (body.len() / PIECE_OVERHEAD) as u64,
            });
        }
        let mut out = Vec::with_capacity(pieces as usize);
        for _ in 0..pieces {
            let segment = r.u64()?;
            let offset = r.u64()?;
            let bytes = r.bytes(MAX_CHUNK_BODY)?.to_vec();
            out.push(Piece {
                segment,
                offset,
                bytes,
            });
        }
        r.finish()?;
        Ok(Chunk {
            partition,
            epoch,
            first_lsn,
            last_lsn,
            pieces: out,
        })
    }
}

/// The chunks that continue the log from `lsn`, in order, up to the first gap: `chunks`
/// are (first_lsn, last_lsn) of one epoch's chunks as listed, in any order. Returns the
/// indexes into `chunks`. The first may start before `lsn` if it reaches it (a batch that
/// filled a segment: its earlier pieces are in the sealed segment already); every later one
/// starts where the previous ended.
pub fn chain(lsn: u64, chunks: &[(u64, u64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..chunks.len()).collect();
    order.sort_by_key(|&i| chunks[i]);
    let mut want = lsn;
    let mut out = Vec::new();
    for i in order {
        let (first, last) = chunks[i];
        if last < want || (first < want && !out.is_empty()) {
            // Before the start, or overlapping a chunk already taken: one owner writes its
            // LSNs once, so such a chunk is not part of the log.
            continue;
        }
        if first > want {
            break;
        }
        out.push(i);
        want = last + 1;
    }
    out
}

/// Which of one epoch's listed chunks (by their first LSN, as object keys give it) may
/// continue the log from `from` up to `to` (exclusive; `None`: to the end): the last one
/// starting at or before `from`, and every later one starting before `to`. They can be
/// fetched at once; [`chain`] over what they hold then keeps the gapless prefix.
pub fn candidates(from: u64, to: Option<u64>, firsts: &[u64]) -> Vec<u64> {
    let mut sorted = firsts.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let start = sorted.iter().rposition(|&f| f <= from).unwrap_or(0);
    sorted[start..]
        .iter()
        .copied()
        .filter(|&f| to.is_none_or(|t| f < t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Chunk {
        Chunk {
            partition: 3,
            epoch: 41,
            first_lsn: 100,
            last_lsn: 104,
            pieces: vec![
                Piece {
                    segment: 7,
                    offset: 8000,
                    bytes: vec![1; 300],
                },
                Piece {
                    segment: 8,
                    offset: 0,
                    bytes: vec![2; 64],
                },
            ],
        }
    }

    #[test]
    fn header_layout_matches_format_md() {
        // docs/format.md, "Tail chunk".
        assert_eq!(
            (
                VERSION_OFF,
                PARTITION_OFF,
                EPOCH_OFF,
                FIRST_LSN_OFF,
                LAST_LSN_OFF
            ),
            (8, 12, 16, 24, 32)
        );
        assert_eq!(
            (
                PIECES_OFF,
                BODY_LEN_OFF,
                BODY_CRC_OFF,
                RESERVED_OFF,
                HEADER_CRC_OFF
            ),
            (40, 44, 48, 52, 60)
        );
        let b = sample().encode();
        assert_eq!(&b[..8], b"RINGTAIL");
        assert_eq!(b.len(), 64 + 2 * PIECE_OVERHEAD + 364);
    }

    #[test]
    fn round_trips_and_every_truncation_or_flip_is_refused() {
        let c = sample();
        let b = c.encode();
        assert_eq!(Chunk::decode(&b).unwrap(), c);
        for cut in 0..b.len() {
            assert!(Chunk::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        for i in (0..b.len()).step_by(7) {
            let mut x = b.clone();
            x[i] ^= 0x10;
            assert!(Chunk::decode(&x).is_err(), "flip at {i}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(Chunk::decode(&longer).is_err());
    }

    #[test]
    fn pieces_that_continue_each_other_are_written_as_one() {
        let mut c = sample();
        // Three batches merged: two continue the first piece in segment 7.
        c.pieces.insert(
            1,
            Piece {
                segment: 7,
                offset: 8300,
                bytes: vec![3; 10],
            },
        );
        c.pieces.insert(
            2,
            Piece {
                segment: 7,
                offset: 8310,
                bytes: vec![4; 5],
            },
        );
        let parts = c.clone().into_parts();
        let b = parts.concat();
        assert_eq!(b, c.encode());
        let d = Chunk::decode(&b).unwrap();
        let mut joined = vec![1; 300];
        joined.extend([3; 10]);
        joined.extend([4; 5]);
        assert_eq!(
            d.pieces,
            vec![
                Piece {
                    segment: 7,
                    offset: 8000,
                    bytes: joined
                },
                c.pieces[3].clone()
            ]
        );
        assert_eq!(b.len(), 64 + 2 * PIECE_OVERHEAD + 300 + 15 + 64);
    }

    #[test]
    fn candidates_start_at_the_chunk_holding_the_start() {
        assert_eq!(candidates(5, None, &[9, 1, 4, 7]), vec![4, 7, 9]);
        assert_eq!(candidates(4, Some(9), &[9, 1, 4, 7]), vec![4, 7]);
        assert_eq!(candidates(1, None, &[]), Vec::<u64>::new());
        assert_eq!(candidates(3, None, &[5, 6]), vec![5, 6]);
    }

    #[test]
    fn the_chain_stops_at_the_first_gap() {
        // (first, last) as a listing gives them, unordered.
        let chunks = [(10, 12), (1, 4), (5, 9), (14, 20), (13, 13)];
        assert_eq!(chain(1, &chunks), vec![1, 2, 0, 4, 3]);
        assert_eq!(chain(6, &chunks), vec![2, 0, 4, 3]);
        let gap = [(1, 4), (6, 9)];
        assert_eq!(chain(1, &gap), vec![0]);
        assert_eq!(chain(5, &gap), Vec::<usize>::new());
        assert_eq!(chain(10, &gap), Vec::<usize>::new());
        // A chunk left by a batch that was never acknowledged and overlaps: ignored once
        // the chain has passed its start.
        let overlap = [(1, 4), (3, 8), (5, 6)];
        assert_eq!(chain(1, &overlap), vec![0, 2]);
    }
}
