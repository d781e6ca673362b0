//! Opening a partition: load the newest valid checkpoint, replay the log after it.
//!
//! The scan ([`crate::segment::scan_segment`]) is pure; this module applies what it found
//! and, in [`RecoveryMode::Repair`], truncates torn tails. Repair only removes bytes that no
//! scan would ever accept, so recovering twice gives the same state.
//!
//! Reads here are plain blocking reads: they happen once, before the partition serves.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::checkpoint::Checkpoint;
use crate::error::{Error, FormatError, Result};
use crate::format::names::{parse_checkpoint_file, parse_segment_file, segment_file};
use crate::ids::SegmentSeq;
use crate::mutation::Mutation;
use crate::segment::{scan_last_segment_from, scan_segment_from, ScanEnd, SegmentHeader};
use crate::state::{PartitionState, RecordLoc};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Cut torn tails; skip corrupt records in the middle of the log and report them.
    #[default]
    Repair,
    /// Cut torn tails; fail on any corruption elsewhere.
    Strict,
    /// Change nothing on disk: what `check_integrity` and fsck use.
    ReadOnly,
}

/// What recovery found. Empty lists mean a clean log.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    pub checkpoint: Option<u64>,
    pub bad_checkpoints: Vec<String>,
    pub segments_replayed: usize,
    pub records_replayed: u64,
    /// (segment, offset, reason): a torn tail, cut off.
    pub torn_tails: Vec<(u64, u64, String)>,
    /// (segment, start, end, reason): bad bytes between good records, skipped.
    pub corrupt_ranges: Vec<(u64, u64, u64, String)>,
    /// (segment, offset, reason): checksummed records that did not decode or apply.
    pub skipped_records: Vec<(u64, u64, String)>,
    /// Segments the index refers to that do not exist.
    pub missing_segments: Vec<u64>,
    /// (segment, epoch): files with the sequence number of a segment of a later epoch.
    /// Only the later one is read: the earlier is what an owner that lost the partition
    /// wrote after it lost it (a cluster's fencing), never acknowledged.
    pub shadowed_segments: Vec<(u64, u64)>,
    /// Time spent loading and validating the checkpoint, and replaying the log after it.
    pub checkpoint_time: std::time::Duration,
    pub replay_time: std::time::Duration,
    /// The segment the log writes next (a new one: recovery never writes into an existing
    /// segment), and the LSN of its first record.
    pub writer_segment: u64,
    pub writer_lsn: u64,
}

impl RecoveryReport {
    /// True when the log needed no more than cutting a torn tail.
    pub fn is_clean(&self) -> bool {
        self.bad_checkpoints.is_empty()
            && self.corrupt_ranges.is_empty()
            && self.skipped_records.is_empty()
            && self.missing_segments.is_empty()
            && self.shadowed_segments.is_empty()
    }
}

pub struct Recovered {
    pub state: PartitionState,
    pub checkpoint: Option<Rc<Checkpoint>>,
    /// Length of the records in each segment file.
    pub segment_lengths: BTreeMap<u64, u64>,
    /// The epoch of each segment file (format version 2: every epoch's segments are read).
    pub segment_epochs: BTreeMap<u64, u64>,
    pub next_segment: u64,
    pub next_lsn: u64,
    pub report: RecoveryReport,
}

pub struct DirListing {
    /// Sequence numbers, ascending.
    pub segments: Vec<u64>,
    /// The epoch of each segment in `segments`.
    pub epochs: BTreeMap<u64, u64>,
    /// (seq, epoch) of files whose sequence number a later epoch's file also has.
    pub shadowed: Vec<(u64, u64)>,
    pub checkpoints: Vec<u64>,
}

pub fn list_dir(dir: &Path) -> Result<DirListing> {
    let mut epochs: BTreeMap<u64, u64> = BTreeMap::new();
    let mut shadowed = Vec::new();
    let mut checkpoints = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| Error::io(format!("listing {dir:?}"), e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(format!("listing {dir:?}"), e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((ep, seq)) = parse_segment_file(name) {
            match epochs.get(&seq).copied() {
                Some(other) if other > ep => shadowed.push((seq, ep)),
                Some(other) => {
                    shadowed.push((seq, other));
                    epochs.insert(seq, ep);
                }
                None => {
                    epochs.insert(seq, ep);
                }
            }
        } else if let Some(seq) = parse_checkpoint_file(name) {
            checkpoints.push(seq);
        }
    }
    checkpoints.sort_unstable();
    shadowed.sort_unstable();
    Ok(DirListing {
        segments: epochs.keys().copied().collect(),
        epochs,
        shadowed,
        checkpoints,
    })
}

pub fn recover(dir: &Path, partition: u32, mode: RecoveryMode) -> Result<Recovered> {
    if mode != RecoveryMode::ReadOnly {
        remove_temporary_files(dir)?;
    }
    let listing = list_dir(dir)?;
    let mut report = RecoveryReport {
        shadowed_segments: listing.shadowed.clone(),
        ..RecoveryReport::default()
    };
    for (seq, ep) in &listing.shadowed {
        tracing::warn!(
            partition,
            segment = seq,
            epoch = ep,
            "ignoring a segment file that a later epoch's segment of the same number replaced"
        );
    }
    let path_of = |seq: u64| dir.join(segment_file(listing.epochs[&seq], seq));

    let started = std::time::Instant::now();
    let mut checkpoint = None;
    for &seq in listing.checkpoints.iter().rev() {
        let path = dir.join(crate::format::names::checkpoint_file(seq));
        match Checkpoint::load(&path, seq, partition) {
            Ok(ck) => {
                checkpoint = Some(Rc::new(ck));
                break;
            }
            Err(e) => {
                if mode == RecoveryMode::Strict {
                    return Err(e);
                }
                tracing::warn!(partition, checkpoint = seq, error = %e, "skipping unreadable checkpoint");
                report
                    .bad_checkpoints
                    .push(format!("{}: {e}", path.display()));
            }
        }
    }

    if checkpoint.is_none() && !listing.checkpoints.is_empty() && mode != RecoveryMode::ReadOnly {
        // Checkpoints let older segments be deleted: without one, only a log that still
        // starts at LSN 1 is complete. Opening anything less would silently drop mail.
        let complete = match listing.segments.first() {
            Some(&first) => first_lsn(&path_of(first)) == Some(1),
            None => false,
        };
        if !complete {
            return Err(Error::Corrupt {
                file: dir.to_path_buf(),
                pos: None,
                source: FormatError::Invalid {
                    what: "checkpoints",
                    detail: format!(
                        "no checkpoint could be read ({}) and the log no longer starts at its first record; restore the partition from a backup",
                        report.bad_checkpoints.join("; ")
                    ),
                },
            });
        }
    }
    let (mut state, start_seg, start_off, mut next_lsn) = match &checkpoint {
        Some(ck) => {
            let im = ck.image();
            report.checkpoint = Some(ck.seq);
            (
                PartitionState::from_checkpoint(ck.clone()),
                im.log_segment.to_native(),
                im.log_offset.to_native(),
                im.next_lsn.to_native(),
            )
        }
        None => (PartitionState::new(partition), 0, 0, 1),
    };

    report.checkpoint_time = started.elapsed();
    let started = std::time::Instant::now();
    let mut segment_lengths = BTreeMap::new();
    // The segment the last run was writing: the last one whose header reached the disk (a
    // crash while rolling over can leave a newer one that is all zeros).
    let last_written = listing
        .segments
        .iter()
        .rev()
        .copied()
        .find(|&s| first_lsn(&path_of(s)).is_some());
    for &seq in &listing.segments {
        let path = path_of(seq);
        if seq < start_seg {
            // Covered by the checkpoint; only its live messages matter, read on demand.
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            segment_lengths.insert(seq, len);
            continue;
        }
        let from = if seq == start_seg && start_off > 0 {
            start_off
        } else {
            SegmentHeader::LEN as u64
        };
        // The header, then only what the checkpoint does not cover.
        let (bytes, tail) = read_segment(&path, from)?;
        if bytes.len() < SegmentHeader::LEN || bytes[..SegmentHeader::LEN].iter().all(|&b| b == 0) {
            // Created, but the first batch never reached the disk (or made ahead and never
            // used): no records. Removed, or its preallocated blocks would be held; but only
            // when every byte of it is zero and nothing the index holds is in it (a
            // damaged header in front of records is a different matter, kept for fsck).
            let empty = bytes.iter().chain(tail.iter()).all(|&b| b == 0)
                && !(seq == start_seg && start_off > SegmentHeader::LEN as u64)
                && !state.segment_live.contains_key(&(seq as u32));
            if empty && mode != RecoveryMode::ReadOnly {
                fs::remove_file(&path).map_err(|e| Error::io(format!("removing {path:?}"), e))?;
            } else {
                segment_lengths.insert(seq, 0);
            }
            continue;
        }
        let corrupt = |source: FormatError| Error::Corrupt {
            file: path.clone(),
            pos: None,
            source,
        };
        match SegmentHeader::decode(&bytes) {
            Ok(h)
                if h.seq == seq && h.partition == partition && h.epoch == listing.epochs[&seq] => {}
            Ok(h) => {
                let e = corrupt(FormatError::Invalid {
                    what: "segment header",
                    detail: format!(
                        "names segment {} of epoch {} of partition {}",
                        h.seq, h.epoch, h.partition
                    ),
                });
                if mode == RecoveryMode::Strict {
                    return Err(e);
                }
                report
                    .corrupt_ranges
                    .push((seq, 0, SegmentHeader::LEN as u64, e.to_string()));
            }
            Err(FormatError::UnsupportedVersion { got, supported }) => {
                return Err(corrupt(FormatError::UnsupportedVersion { got, supported }));
            }
            Err(e) => {
                if mode == RecoveryMode::Strict {
                    return Err(corrupt(e));
                }
                report
                    .corrupt_ranges
                    .push((seq, 0, SegmentHeader::LEN as u64, e.to_string()));
            }
        }
        let scan = if last_written == Some(seq) {
            scan_last_segment_from(&tail, from, from, next_lsn)
        } else {
            scan_segment_from(&tail, from, from, next_lsn)
        };
        report.segments_replayed += 1;
        for c in &scan.corrupt {
            if mode == RecoveryMode::Strict {
                return Err(corrupt(c.reason.clone()));
            }
            tracing::warn!(partition, segment = seq, start = c.start, end = c.end, reason = %c.reason, "skipping corrupt bytes in the log");
            report
                .corrupt_ranges
                .push((seq, c.start, c.end, c.reason.to_string()));
        }
        for r in &scan.records {
            let payload = r.payload_from(&tail, from);
            let loc = RecordLoc {
                segment: seq as u32,
                offset: r.offset,
                len: r.header.total_len() as u32,
            };
            let applied = Mutation::decode(r.header.kind, payload)
                .map_err(|e| e.to_string())
                .and_then(|m| state.apply(&m, loc).map_err(|e| e.to_string()));
            if let Err(reason) = applied {
                if mode == RecoveryMode::Strict {
                    return Err(corrupt(FormatError::Invalid {
                        what: "record",
                        detail: format!("at offset {}: {reason}", r.offset),
                    }));
                }
                report.skipped_records.push((seq, r.offset, reason));
            }
            report.records_replayed += 1;
            next_lsn = r.header.lsn + 1;
        }
        if let ScanEnd::Torn { at, reason } = &scan.end {
            tracing::info!(partition, segment = seq, at, reason = %reason, "cutting a torn tail");
            report.torn_tails.push((seq, *at, reason.to_string()));
            if mode != RecoveryMode::ReadOnly {
                truncate(&path, scan.valid_len)?;
            }
        } else if mode != RecoveryMode::ReadOnly && from + tail.len() as u64 > scan.valid_len {
            // Only zeros follow the records (padding, or the zeros the last run's writer
            // wrote ahead, with blocks preallocated past them). No segment is written again
            // after a restart, so they would only hold disk space until compaction removed
            // the whole segment.
            truncate(&path, scan.valid_len)?;
        }
        segment_lengths.insert(seq, scan.valid_len);
    }

    report.replay_time = started.elapsed();
    for &seg in state.segment_live.keys() {
        if !segment_lengths.contains_key(&(seg as u64)) {
            report.missing_segments.push(seg as u64);
        }
    }
    if !report.missing_segments.is_empty() && mode == RecoveryMode::Strict {
        return Err(Error::MissingSegment(SegmentSeq(
            report.missing_segments[0],
        )));
    }
    let next_segment = listing.segments.last().copied().unwrap_or(0).max(start_seg) + 1;
    Ok(Recovered {
        state,
        checkpoint,
        segment_lengths,
        segment_epochs: listing.epochs,
        next_segment,
        next_lsn,
        report,
    })
}

/// Removes checkpoints whose writing a crash or a full disk interrupted (`*.idx.tmp`):
/// never read, and they can be large.
fn remove_temporary_files(dir: &Path) -> Result<()> {
    let rd = fs::read_dir(dir).map_err(|e| Error::io(format!("listing {dir:?}"), e))?;
    for ent in rd.flatten() {
        let name = ent.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.ends_with(crate::format::names::CHECKPOINT_TMP_SUFFIX))
        {
            let _ = fs::remove_file(ent.path());
        }
    }
    Ok(())
}

/// Reads a segment's header block and the bytes from `from` to the end.
fn read_segment(path: &Path, from: u64) -> Result<(Vec<u8>, Vec<u8>)> {
    use std::io::{Read, Seek, SeekFrom};
    let io = |e| Error::io(format!("reading {path:?}"), e);
    let mut f = fs::File::open(path).map_err(io)?;
    let mut head = Vec::with_capacity(SegmentHeader::LEN);
    (&mut f)
        .take(SegmentHeader::LEN as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut tail = Vec::with_capacity(len.saturating_sub(from) as usize);
    f.seek(SeekFrom::Start(from)).map_err(io)?;
    f.read_to_end(&mut tail).map_err(io)?;
    Ok((head, tail))
}

fn first_lsn(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut b = [0u8; SegmentHeader::LEN];
    fs::File::open(path).ok()?.read_exact(&mut b).ok()?;
    SegmentHeader::decode(&b).ok().map(|h| h.first_lsn)
}

fn truncate(path: &PathBuf, len: u64) -> Result<()> {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {path:?}"), e))?;
    f.set_len(len)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("truncating {path:?}"), e))
}
