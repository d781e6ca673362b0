//! Compaction policy: which sealed segments to rewrite. Pure, so it is tested without disk.
//!
//! Expunged messages leave dead bytes in sealed segments. A segment qualifies when it is
//! sealed, wholly covered by the latest checkpoint (so none of its non-message records is
//! needed for replay), and its live message bytes fell under `live_ratio` of its length.
//! Carrying out a plan re-appends the live messages through the normal group-commit path,
//! checkpoints, and deletes the segment (see `Partition::compact`).

use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompactionConfig {
    /// Rewrite a segment whose live bytes are below this fraction of its length.
    pub live_ratio: f64,
    /// At most this many live bytes are moved per compaction run.
    pub max_bytes_per_run: u64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            live_ratio: 0.5,
            max_bytes_per_run: 256 << 20,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentUsage {
    pub seq: u64,
    /// Bytes of the segment file that hold records.
    pub len: u64,
    /// Bytes of records of live messages.
    pub live: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Segments with nothing live: delete once the checkpoint no longer needs them.
    pub delete: Vec<u64>,
    /// Segments whose live messages are to be moved to the head of the log.
    pub rewrite: Vec<u64>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.rewrite.is_empty()
    }
}

/// Chooses what to compact. `covered_below`: segments below this sequence are covered by
/// the latest checkpoint; `usage` lists every segment file.
pub fn choose(usage: &[SegmentUsage], covered_below: u64, cfg: &CompactionConfig) -> Plan {
    let mut plan = Plan::default();
    let mut candidates: Vec<(f64, &SegmentUsage)> = Vec::new();
    for u in usage.iter().filter(|u| u.seq < covered_below) {
        if u.live == 0 {
            plan.delete.push(u.seq);
        } else {
            let ratio = u.live as f64 / u.len.max(1) as f64;
            if ratio < cfg.live_ratio {
                candidates.push((ratio, u));
            }
        }
    }
    // Emptiest first: the most space back for the fewest bytes moved.
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.seq.cmp(&b.1.seq)));
    let mut budget = cfg.max_bytes_per_run;
    for (_, u) in candidates {
        if u.live > budget && !plan.rewrite.is_empty() {
            break;
        }
        budget = budget.saturating_sub(u.live);
        plan.rewrite.push(u.seq);
    }
    plan.rewrite.sort_unstable();
    plan
}

/// Builds the usage table from segment lengths and the live bytes per segment.
pub fn usage(lengths: &BTreeMap<u64, u64>, live: &BTreeMap<u32, u64>) -> Vec<SegmentUsage> {
    lengths
        .iter()
        .map(|(&seq, &len)| SegmentUsage {
            seq,
            len,
            live: u32::try_from(seq)
                .ok()
                .and_then(|s| live.get(&s))
                .copied()
                .unwrap_or(0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(seq: u64, len: u64, live: u64) -> SegmentUsage {
        SegmentUsage { seq, len, live }
    }

    #[test]
    fn only_covered_sparse_segments_are_chosen() {
        let cfg = CompactionConfig::default();
        let usage = [
            u(1, 100, 0),
            u(2, 100, 10),
            u(3, 100, 90),
            u(4, 100, 5),
            u(5, 100, 0),
        ];
        let p = choose(&usage, 5, &cfg);
        assert_eq!(p.delete, vec![1]);
        assert_eq!(p.rewrite, vec![2, 4]);
        assert!(choose(&usage, 1, &cfg).is_empty());
    }

    #[test]
    fn budget_limits_a_run_but_never_to_nothing() {
        let cfg = CompactionConfig {
            live_ratio: 0.9,
            max_bytes_per_run: 15,
        };
        let p = choose(&[u(1, 100, 10), u(2, 100, 20), u(3, 100, 30)], 9, &cfg);
        assert_eq!(p.rewrite, vec![1]);
        let p = choose(&[u(1, 100, 50)], 9, &cfg);
        assert_eq!(p.rewrite, vec![1]);
    }
}
