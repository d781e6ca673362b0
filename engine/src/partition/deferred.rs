//! Deferred compression: bodies stored uncompressed under load are compressed later, when
//! the partition is quiet, on the compression worker.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use crate::compress_worker::Job;
use crate::error::{Error, Result};
use crate::mutation::{BlobRecord, BodyCodec, Mutation};

use super::*;

impl Partition {
    /// Runs the partition's side of deferred compression: whenever raw bodies are queued,
    /// hands them to the worker and logs what comes back. Holds the partition weakly, so an
    /// unused partition still drops.
    pub(super) fn start_deferred_task(self: &Rc<Self>) {
        let me = Rc::downgrade(self);
        let wake = self.deferred_wake.clone();
        // The shard's part (a read and a small write per message) yields to sessions.
        let tq = glommio::executor().create_task_queue(
            glommio::Shares::Static(100),
            glommio::Latency::NotImportant,
            "deferred-zstd",
        );
        let task = async move {
            let mut backoff = Duration::ZERO;
            loop {
                wake.wait().await;
                loop {
                    let Some(p) = me.upgrade() else { return };
                    if p.closing.get() {
                        return;
                    }
                    if p.deferred.borrow().queue.is_empty() {
                        break;
                    }
                    // Only once deliveries pause: reading a body back and logging it again
                    // costs the shard about what compressing it inline would.
                    let quiet = p.last_delivery.get().elapsed();
                    if quiet < DEFER_UNTIL_QUIET {
                        drop(p);
                        glommio::timer::sleep(DEFER_UNTIL_QUIET - quiet).await;
                        continue;
                    }
                    match p.compress_deferred().await {
                        Ok(()) => backoff = Duration::ZERO,
                        Err(e)
                            if matches!(e, Error::Poisoned(_))
                                || p.closing.get()
                                || !p.deferring.get() =>
                        {
                            // Nothing can be logged any more; what is left stays raw, which
                            // is still correct, and the queue is rebuilt after a restart.
                            tracing::warn!(partition = p.id.0, error = %e, "deferred compression stopped");
                            p.deferring.set(false);
                            return;
                        }
                        Err(e) => {
                            // Never stopped for good by one failure (a full disk, a lost
                            // worker thread): retried, less and less often.
                            backoff = (backoff * 2)
                                .clamp(Duration::from_millis(100), Duration::from_secs(30));
                            if backoff <= Duration::from_millis(100) {
                                tracing::warn!(partition = p.id.0, error = %e, "deferred compression failed; retrying");
                            }
                            drop(p);
                            glommio::timer::sleep(backoff).await;
                        }
                    }
                }
            }
        };
        match glommio::spawn_local_into(task, tq) {
            Ok(t) => {
                t.detach();
            }
            Err(e) => {
                self.deferring.set(false);
                tracing::warn!(partition = self.id.0, error = %e, "no deferred compression task")
            }
        }
    }

    /// Compresses one batch of queued raw bodies and logs each as a relocation of its
    /// message: same blob, same raw length, a compressed body. The raw record becomes dead
    /// space for checkpoints and compaction to reclaim.
    pub(super) async fn compress_deferred(self: &Rc<Self>) -> Result<()> {
        let batch: Vec<(u64, u32)> = {
            let mut d = self.deferred.borrow_mut();
            let mut take = 0u64;
            let mut out = Vec::new();
            while let Some(&(id, raw)) = d.queue.front() {
                if !out.is_empty() && (take + raw as u64 > 1 << 20 || out.len() >= 256) {
                    break;
                }
                d.queue.pop_front();
                take += raw as u64;
                out.push((id, raw));
            }
            out
        };
        let mut jobs = Vec::with_capacity(batch.len());
        // The records as read, without their bodies, and where they were.
        let mut read_back: HashMap<u64, (BlobRecord, u32, u64)> = HashMap::new();
        let mut released = 0u64;
        for &(id, raw) in &batch {
            let rec = match self.read_live(id).await {
                Ok(Some((loc, h, payload))) => match Mutation::decode(h.kind, &payload) {
                    Ok(Mutation::Blob(b)) if b.blob.0 == id && b.codec == BodyCodec::Raw => {
                        Some((b, loc))
                    }
                    _ => None,
                },
                Ok(None) => None,
                Err(e @ (Error::Poisoned(_) | Error::Store(_))) => {
                    // Nothing of this batch was logged: all of it goes back on the queue
                    // (its bytes still counted), but what was already let go.
                    let mut q = self.deferred.borrow_mut();
                    q.bytes = q.bytes.saturating_sub(released);
                    for (rest_id, (b, _, _)) in read_back.drain() {
                        q.queue.push_back((rest_id, b.raw_len));
                    }
                    let pos = batch.iter().position(|&(b, _)| b == id).unwrap_or(0);
                    for &item in &batch[pos..] {
                        q.queue.push_back(item);
                    }
                    return Err(e);
                }
                Err(e) => {
                    // This one stays raw, which is correct; the read error is the
                    // integrity check's to report, and the others go on.
                    tracing::warn!(partition = self.id.0, blob = id, error = %e, "cannot read a message to compress it; it stays uncompressed");
                    None
                }
            };
            match rec {
                Some((mut b, loc)) => {
                    jobs.push(Job {
                        blob: id,
                        body: std::mem::take(&mut b.body),
                    });
                    read_back.insert(id, (b, loc.segment, loc.offset));
                }
                None => released += raw as u64,
            }
        }
        {
            let mut q = self.deferred.borrow_mut();
            q.bytes = q.bytes.saturating_sub(released);
        }
        if jobs.is_empty() {
            return Ok(());
        }
        let Some(done) = self.worker.as_ref().expect("worker").compress(jobs).await else {
            // The thread is gone for good: from now on bodies are compressed inline, and
            // what was waiting stays raw (correct; recompressed after a restart).
            self.deferring.set(false);
            let mut q = self.deferred.borrow_mut();
            q.queue.clear();
            q.bytes = 0;
            return Err(Error::io(
                "deferred compression",
                std::io::Error::other("the compression thread is gone"),
            ));
        };
        let mut logged = 0u64;
        let mut released = 0u64;
        for d in done {
            let Some((mut b, segment, offset)) = read_back.remove(&d.blob) else {
                continue;
            };
            released += b.raw_len as u64;
            if d.codec == BodyCodec::Raw || self.closing.get() {
                continue;
            }
            // Expunged or moved since it was read: the record compressed is not the live one.
            let same = self
                .state
                .borrow()
                .blobs
                .get(d.blob)
                .is_some_and(|l| l.segment == segment && l.offset == offset);
            if !same {
                // Moved by compaction meanwhile: compress it from its new place later.
                if self.state.borrow().blobs.get(d.blob).is_some() {
                    let mut q = self.deferred.borrow_mut();
                    q.queue.push_back((d.blob, b.raw_len));
                    q.bytes += b.raw_len as u64;
                }
                continue;
            }
            b.codec = d.codec;
            b.dict = d.dict;
            b.body = d.body;
            b.targets.clear();
            let raw = b.raw_len;
            match self.log_and_apply(&[Mutation::Blob(b)]) {
                Ok(n) => logged += n,
                Err(e) => {
                    // Not logged (storage unavailable, say): this one and the rest of the
                    // batch go back on the queue, for when the log takes writes again.
                    {
                        let mut q = self.deferred.borrow_mut();
                        q.queue.push_front((d.blob, raw));
                        released -= raw as u64;
                        for (id, (rest, _, _)) in read_back.drain() {
                            q.queue.push_back((id, rest.raw_len));
                        }
                        q.bytes = q.bytes.saturating_sub(released);
                    }
                    if logged > 0 {
                        self.log.sync_point().await?;
                        self.count_log_bytes(logged);
                    }
                    return Err(e);
                }
            }
        }
        if logged > 0 {
            self.log.sync_point().await?;
            self.count_log_bytes(logged);
        }
        // Only now: a caller that sees nothing deferred also sees the relocations logged.
        {
            let mut q = self.deferred.borrow_mut();
            q.bytes = q.bytes.saturating_sub(released);
        }
        glommio::yield_if_needed().await;
        Ok(())
    }

    /// Bytes of mail stored raw and waiting for the compression thread.
    pub fn deferred_bytes(&self) -> u64 {
        self.deferred.borrow().bytes
    }
}
