//! Maintenance: checkpoints, compaction, the integrity check, statistics and closing.

use std::rc::Rc;

use crate::checkpoint::{self, Checkpoint};
use crate::compaction::{self, Plan};
use crate::error::{Error, Result, StoreError};
use crate::format::names::checkpoint_file;
use crate::ids::Uid;
use crate::mutation::Mutation;
use crate::recovery::{self, RecoveryMode};
use crate::state::PartitionState;

use super::*;

impl Partition {
    /// Writes a checkpoint of the index and deletes what it makes unnecessary: older
    /// checkpoints and segments with nothing live that it covers.
    pub async fn checkpoint(self: &Rc<Self>) -> Result<()> {
        // A checkpoint already running may have taken its image before the caller's changes:
        // wait for it, then take a new one.
        while self.hk.borrow().checkpointing {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        self.hk.borrow_mut().checkpointing = true;
        let r = self.checkpoint_inner().await;
        self.hk.borrow_mut().checkpointing = false;
        *self.since_image.borrow_mut() = None;
        r
    }

    pub(super) async fn checkpoint_inner(self: &Rc<Self>) -> Result<()> {
        // The log must be durable to the image's position, and on a full disk its active
        // segment may not exist yet: later, then.
        if let Some(why) = self.log.active_unavailable() {
            return Err(StoreError::Unavailable(why).into());
        }
        let end = self.log.end();
        let image = self
            .state
            .borrow()
            .to_image(end.segment.0, end.offset, self.log.next_lsn());
        // The segments this checkpoint needs: those holding its blobs, and the log from its
        // position on. Deletion must go by the image, not by the live state, which may hold
        // changes (expunges, relocations) that are not yet durable.
        let mut needed: std::collections::BTreeSet<u64> =
            image.blobs.iter().map(|b| b.segment as u64).collect();
        // And those of bodies a reader behind may still fetch; the checkpoint after it
        // has caught up deletes them.
        needed.extend(self.retired.borrow().segments());
        // From here on (no await since the image), record what is applied after it.
        *self.since_image.borrow_mut() = Some(Vec::new());
        self.log.wait_durable(end).await?;
        let seq = self.hk.borrow().checkpoint_seq + 1;
        let path = self.dir.join(checkpoint_file(seq));
        let p2 = path.clone();
        glommio::executor()
            .spawn_blocking(move || checkpoint::write(&image, &p2))
            .await?;
        {
            let mut hk = self.hk.borrow_mut();
            hk.checkpoint_seq = seq;
            hk.covered_below = end.segment.0;
            hk.bytes_since_checkpoint = 0;
        }
        // Rebase: read the index from the new checkpoint in place, replay what was applied
        // since its image, and drop the in-memory overlays it now holds. The replay and the
        // swap happen with no await in between, so nothing is applied to the old state after
        // the list was taken.
        let partition = self.id.0;
        let p3 = path.clone();
        let ck = glommio::executor()
            .spawn_blocking(move || Checkpoint::load(&p3, seq, partition))
            .await?;
        let ck = Rc::new(ck);
        let recorded = self.since_image.borrow_mut().take().unwrap_or_default();
        let mut rebased = PartitionState::from_checkpoint(ck.clone());
        match recorded
            .iter()
            .try_for_each(|(m, loc)| rebased.apply(m, *loc))
        {
            Ok(()) => {
                *self.state.borrow_mut() = rebased;
                self.hk.borrow_mut().checkpoint = Some(ck);
            }
            Err(e) => {
                // Should not happen (the same mutations applied to the same state); keep
                // the current state, which is correct, just not compacted in memory.
                tracing::warn!(partition, error = %e, "could not rebase the index on the new checkpoint");
            }
        }
        self.remove_unneeded(seq, end.segment.0, &needed).await?;
        if let Some(tail) = self.log.tail() {
            tail.sink.checkpointed(crate::io::tail::Checkpointed {
                seq,
                path,
                live: needed
                    .iter()
                    .copied()
                    .filter(|&s| s < end.segment.0)
                    .collect(),
                log_segment: end.segment.0,
            });
        }
        Ok(())
    }

    /// Brings the segment table up to date with the segments the writer sealed.
    pub(super) fn sync_segments(&self) {
        let sealed = self.log.take_sealed();
        let mut hk = self.hk.borrow_mut();
        for (seq, len) in sealed {
            hk.segment_lengths.insert(seq, len);
        }
        hk.segment_lengths
            .insert(self.log.active_segment().0, self.log.end().offset);
    }

    pub(super) async fn remove_unneeded(
        &self,
        newest_checkpoint: u64,
        covered_below: u64,
        needed: &std::collections::BTreeSet<u64>,
    ) -> Result<()> {
        self.sync_segments();
        let listing = recovery::list_dir(&self.dir)?;
        for old in listing
            .checkpoints
            .into_iter()
            .filter(|&c| c < newest_checkpoint)
        {
            let _ = std::fs::remove_file(self.dir.join(checkpoint_file(old)));
        }
        let dead: Vec<u64> = self
            .hk
            .borrow()
            .segment_lengths
            .keys()
            .copied()
            .filter(|s| *s < covered_below && !needed.contains(s))
            .collect();
        for s in &dead {
            self.reader.forget(*s).await;
            std::fs::remove_file(self.reader.path(*s))
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| Error::io("removing a compacted segment", e))?;
            self.hk.borrow_mut().segment_lengths.remove(s);
        }
        if !dead.is_empty() {
            crate::io::fsync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// What compaction would do now.
    pub fn compaction_plan(&self) -> Plan {
        self.sync_segments();
        let hk = self.hk.borrow();
        let active = self.log.active_segment().0;
        let usage = compaction::usage(&hk.segment_lengths, &self.state.borrow().segment_live);
        compaction::choose(&usage, hk.covered_below.min(active), &self.cfg.compaction)
    }

    /// Reclaims space of expunged messages: moves the live messages of sparse sealed segments
    /// to the head of the log, checkpoints, and deletes the emptied segments. Safe against
    /// concurrent use and against a crash at any step (see docs/architecture.md).
    /// Returns the number of segments removed.
    pub async fn compact(self: &Rc<Self>) -> Result<usize> {
        {
            let mut hk = self.hk.borrow_mut();
            if hk.compacting {
                return Ok(0);
            }
            hk.compacting = true;
        }
        let r = self.compact_inner().await;
        self.hk.borrow_mut().compacting = false;
        r
    }

    pub(super) async fn compact_inner(self: &Rc<Self>) -> Result<usize> {
        // Segments written since the last checkpoint are not yet covered: checkpoint first.
        self.checkpoint().await?;
        let plan = self.compaction_plan();
        for seq in &plan.rewrite {
            let blobs: Vec<_> = self
                .state
                .borrow()
                .blobs
                .sorted()
                .into_iter()
                .filter(|b| b.segment as u64 == *seq)
                .collect();
            let mut pending = 0u64;
            for loc in blobs {
                let (h, payload) = match self
                    .reader
                    .read_record(loc.segment as u64, loc.offset, loc.record_len, None)
                    .await
                {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::error!(partition = self.id.0, blob = loc.id, error = %e, "cannot read a message to compact; segment kept");
                        continue;
                    }
                };
                let Ok(Mutation::Blob(mut b)) = Mutation::decode(h.kind, &payload) else {
                    continue;
                };
                // Expunged while we read it: nothing to move.
                if self
                    .state
                    .borrow()
                    .blobs
                    .get(loc.id)
                    .is_none_or(|l| l.segment != loc.segment)
                {
                    continue;
                }
                b.targets.clear();
                pending += self.log_and_apply(&[Mutation::Blob(b)])?;
                if pending > 8 << 20 {
                    self.log.sync_point().await?;
                    pending = 0;
                }
                glommio::yield_if_needed().await;
            }
        }
        self.log.sync_point().await?;
        self.checkpoint().await?;
        // Counted by name, not as a difference of segment counts: appends made meanwhile
        // open new segments and would hide the ones removed.
        let hk = self.hk.borrow();
        Ok(plan
            .rewrite
            .iter()
            .filter(|s| !hk.segment_lengths.contains_key(s))
            .count())
    }

    /// Reads and verifies every live message. Used by tests and `ringmail fsck`.
    pub async fn check_integrity(&self) -> IntegrityReport {
        let blobs = self.state.borrow().blobs.sorted();
        let mut rep = IntegrityReport::default();
        let mut bad: Vec<(u64, String)> = Vec::new();
        for loc in blobs {
            rep.blobs_checked += 1;
            let read = match self
                .await_durable(loc.segment, loc.offset + loc.record_len as u64)
                .await
            {
                Ok(()) => self.read_blob(loc).await,
                Err(e) => Err(e),
            };
            match read {
                Ok(b) if b.len() == loc.raw_len as usize => {}
                Ok(b) => bad.push((
                    loc.id,
                    format!("{} bytes, index says {}", b.len(), loc.raw_len),
                )),
                Err(e) => bad.push((loc.id, e.to_string())),
            }
            glommio::yield_if_needed().await;
        }
        let st = self.state.borrow();
        // Each bad body by the messages that show it (account, mailbox, UID).
        for (blob, why) in bad {
            let mut shown = Vec::new();
            for a in st.accounts.values() {
                for m in a.mailboxes.values() {
                    for e in m.index.iter().filter(|e| e.blob == blob) {
                        shown.push(format!("{} {} UID {}", a.name, m.name, e.uid));
                        rep.damaged
                            .push((a.name.clone(), m.name.clone(), Uid(e.uid)));
                    }
                }
            }
            let who = if shown.is_empty() {
                "no message".to_string()
            } else {
                shown.join(", ")
            };
            rep.errors
                .push(format!("{who}: stored body {blob} is unreadable: {why}"));
        }
        for a in st.accounts.values() {
            for m in a.mailboxes.values() {
                for e in m.index.iter() {
                    if st.blobs.get(e.blob).is_none() {
                        rep.errors.push(format!(
                            "{}/{} UID {}: no stored body",
                            a.name, m.name, e.uid
                        ));
                        rep.damaged
                            .push((a.name.clone(), m.name.clone(), Uid(e.uid)));
                    }
                }
            }
        }
        rep
    }

    pub fn stats(&self) -> PartitionStats {
        self.sync_segments();
        let st = self.state.borrow();
        let hk = self.hk.borrow();
        let mut overlay = st.blobs.overlay_bytes();
        let mut messages = 0;
        for a in st.accounts.values() {
            for m in a.mailboxes.values() {
                messages += m.index.len() as u64;
                overlay += m.index.overlay_bytes();
            }
        }
        PartitionStats {
            accounts: st.accounts.len(),
            messages,
            blobs: st.blobs.len(),
            dictionaries: st.dictionaries.len(),
            segments: hk.segment_lengths.len(),
            segment_bytes: hk.segment_lengths.values().sum::<u64>(),
            live_bytes: st.segment_live.values().sum(),
            log: self.log.stats(),
            checkpoint_bytes: hk.checkpoint.as_ref().map(|c| c.archive_len()).unwrap_or(0),
            overlay_bytes: overlay,
            deferred_bytes: self.deferred.borrow().bytes,
        }
    }

    /// Compacts if the log has sparse segments; run after each background checkpoint, so
    /// expunged and recompressed space is given back without an operator's command.
    pub(super) async fn compact_if_due(self: &Rc<Self>) {
        if self.closing.get() || self.compaction_plan().rewrite.is_empty() {
            return;
        }
        match self.compact().await {
            Ok(n) if n > 0 => {
                tracing::debug!(partition = self.id.0, segments = n, "compacted")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(partition = self.id.0, error = %e, "compaction failed"),
        }
    }

    /// Flushes, checkpoints and closes the log. In-flight commits finish first.
    ///
    /// A checkpoint that cannot be written (a full disk, a poisoned partition) is skipped
    /// with a warning: the log holds everything, and the next open replays it.
    pub async fn close(self: &Rc<Self>) -> Result<()> {
        self.closing.set(true);
        self.deferred_wake.notify();
        // First, so that nothing the checkpoint waits for (a background one included) can
        // wait for a segment a full disk will not give.
        self.log.begin_close();
        let read_only = self.cfg.recovery == RecoveryMode::ReadOnly;
        if !read_only && self.log.poisoned().is_none() && !self.poisoned.get() {
            if let Err(e) = self.checkpoint().await {
                tracing::warn!(partition = self.id.0, error = %e, "no checkpoint at close; the next start replays the log");
            }
        }
        self.log.close().await
    }
}
