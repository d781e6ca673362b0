//! Turning what object storage holds into a partition directory the normal recovery opens.
//!
//! A new owner fetches the manifest's checkpoint, the sealed segments recovery will replay
//! (from the checkpoint's log position on) and the tail's chunks, and hands them here. The
//! tail's segments are rebuilt from the chunks' pieces byte for byte, so the checkpoint's
//! positions (segment, offset) stay true. Older sealed segments stay remote until a read
//! needs one. Then `Partition::open_with_tail` recovers as after any restart.
//!
//! Local files that the manifest does not name (a previous ownership's cache, a fenced
//! owner's leftovers) are removed first: the manifest is the partition.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, FormatError, Result};
use crate::format::names::{
    checkpoint_file, parse_checkpoint_file, parse_segment_file, segment_file,
};
use crate::remote::{Chunk, Manifest, SegmentRef};

/// What was fetched for opening a partition from its manifest.
#[derive(Debug, Default)]
pub struct Materials {
    /// The checkpoint file's bytes, if the manifest names one.
    pub checkpoint: Option<Vec<u8>>,
    /// Sealed segments fetched now (their bytes up to the last record).
    pub segments: Vec<(SegmentRef, Vec<u8>)>,
    /// The tail's chunks in chain order (`remote::chunk::chain` over each tail range).
    pub chunks: Vec<Chunk>,
}

/// What the rebuilt directory holds, for the new owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Materialized {
    /// The LSN after the last record found (the next owner's tail range starts here).
    pub next_lsn: u64,
    /// Segments rebuilt from the tail, with their writer's epoch: not sealed in object
    /// storage yet (the new owner uploads them).
    pub rebuilt: Vec<(u64, u64)>,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io(format!("creating {path:?}")))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_data())
        .map_err(io(format!("writing {path:?}")))
}

/// Rebuilds `dir` (the partition's directory, created if missing) from `manifest` and what
/// was fetched for it. Sealed segments already in `dir` (a cache) that the manifest names
/// with the same epoch and length are kept.
pub fn materialize(dir: &Path, manifest: &Manifest, m: Materials) -> Result<Materialized> {
    fs::create_dir_all(dir).map_err(io(format!("creating {dir:?}")))?;
    let named: BTreeMap<u64, &SegmentRef> = manifest.segments.iter().map(|s| (s.seq, s)).collect();
    // Clear what the manifest does not name; keep cached sealed segments that match.
    for ent in fs::read_dir(dir).map_err(io(format!("listing {dir:?}")))? {
        let ent = ent.map_err(io(format!("listing {dir:?}")))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        let keep = match parse_segment_file(name) {
            Some((epoch, seq)) => named.get(&seq).is_some_and(|s| {
                s.epoch == epoch && ent.metadata().is_ok_and(|md| md.len() == s.object.len)
            }),
            // Checkpoints come from the manifest only; a half-written file (a write or a
            // segment fetch cut short by a crash) is never kept.
            None => {
                parse_checkpoint_file(name).is_none()
                    && !name.ends_with(".tmp")
                    && !name.ends_with(".fetch")
            }
        };
        if !keep {
            fs::remove_file(ent.path()).map_err(io(format!("removing {:?}", ent.path())))?;
        }
    }
    if let (Some((seq, _)), Some(bytes)) = (&manifest.checkpoint, &m.checkpoint) {
        write_file(&dir.join(checkpoint_file(*seq)), bytes)?;
    }
    for (s, bytes) in &m.segments {
        write_file(&dir.join(segment_file(s.epoch, s.seq)), bytes)?;
    }
    // The tail: each piece continues its segment where the previous one ended.
    let mut tail: BTreeMap<u64, (u64, Vec<u8>)> = BTreeMap::new();
    let mut next_lsn = manifest.tail.first().map_or(1, |t| t.from_lsn);
    for c in &m.chunks {
        if c.last_lsn < next_lsn {
            continue;
        }
        for p in &c.pieces {
            if p.segment < manifest.tail_segment {
                continue;
            }
            let (_, bytes) = tail.entry(p.segment).or_insert((c.epoch, Vec::new()));
            if bytes.len() as u64 != p.offset {
                return Err(Error::Corrupt {
                    file: dir.to_path_buf(),
                    pos: None,
                    source: FormatError::Invalid {
                        what: "tail chunks",
                        detail: format!(
                            "segment {} continues at {} but the chunk of LSN {} writes at {}",
                            p.segment,
                            bytes.len(),
                            c.first_lsn,
                            p.offset
                        ),
                    },
                });
            }
            bytes.extend_from_slice(&p.bytes);
        }
        next_lsn = c.last_lsn + 1;
    }
    let mut rebuilt = Vec::new();
    for (seq, (epoch, bytes)) in &tail {
        write_file(&dir.join(segment_file(*epoch, *seq)), bytes)?;
        rebuilt.push((*seq, *epoch));
    }
    crate::io::fsync_dir(dir)?;
    Ok(Materialized { next_lsn, rebuilt })
}
