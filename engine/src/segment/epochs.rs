//! Which ownership epoch wrote each segment.
//!
//! A segment file is named by its epoch and its sequence number (`seg-<epoch>-<seq>.log`).
//! Since format version 2 the epoch belongs to the segment, not to the partition: a
//! partition that changed owners holds segments of several epochs, and every one of them
//! is part of its log. Sequence numbers stay unique within a partition (a new owner starts
//! after the highest one it was handed), so the sequence number alone names a segment
//! inside the engine, and this table gives the file.

use std::collections::BTreeMap;

use crate::format::names::segment_file;

#[derive(Clone, Debug, Default)]
pub struct SegmentEpochs {
    /// The segments that existed when the partition was opened.
    known: BTreeMap<u64, u64>,
    /// The epoch the partition writes with now: every segment made after opening.
    current: u64,
}

impl SegmentEpochs {
    pub fn new(known: BTreeMap<u64, u64>, current: u64) -> Self {
        Self { known, current }
    }

    /// The epoch of segment `seq`.
    pub fn of(&self, seq: u64) -> u64 {
        self.known.get(&seq).copied().unwrap_or(self.current)
    }

    /// The file name of segment `seq`.
    pub fn file(&self, seq: u64) -> String {
        segment_file(self.of(seq), seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_segments_keep_their_epoch_and_new_ones_take_the_current() {
        let e = SegmentEpochs::new(BTreeMap::from([(1, 1), (2, 1), (3, 7)]), 9);
        assert_eq!(e.of(2), 1);
        assert_eq!(e.of(3), 7);
        assert_eq!(e.of(4), 9);
        assert_eq!(e.file(3), segment_file(7, 3));
    }
}
