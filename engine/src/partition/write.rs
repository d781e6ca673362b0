//! The write path: plan, log and apply, then acknowledge once durable (group commit);
//! every request that changes an account.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use crate::api::{Appended, MailboxInfo, MessageInfo, NewMessage, Recipient, StoreResult};
use crate::compression::MIN_COMPRESS;
use crate::error::{Error, Result, StoreError};
use crate::flags::{FlagOp, Flags, SpecialUse};
use crate::format::names::{MAX_MESSAGE_SIZE, MAX_META_SIZE};
use crate::ids::{BlobId, Uid, UidValidity};
use crate::mutation::{BlobRecord, BodyCodec, Mutation, Target};
use crate::state::normalize_mailbox;

use super::*;
use crate::state::Plan;

impl Partition {
    /// Logs and applies `muts`; no `.await` inside, so the plan they came from still holds.
    pub(super) fn log_and_apply(&self, muts: &[Mutation]) -> Result<u64> {
        if self.poisoned.get() {
            return Err(Error::Poisoned(
                "an earlier mutation failed to apply".into(),
            ));
        }
        let mut st = self.state.borrow_mut();
        let mut buf = self.encode_buf.borrow_mut();
        // All of the group's records first, so that it is refused whole (storage
        // unavailable) before any of it is logged or applied.
        buf.clear();
        let mut ends = Vec::with_capacity(muts.len());
        for m in muts {
            m.encode(&mut buf);
            ends.push(buf.len());
        }
        let lens = ends
            .iter()
            .scan(0, |start, &end| {
                let len = end - *start;
                *start = end;
                Some(crate::segment::RecordHeader::encode_len(len))
            })
            .collect::<Vec<_>>();
        self.log.check_room(lens)?;
        let mut bytes = 0;
        let mut start = 0;
        for (m, end) in muts.iter().zip(ends) {
            let (loc, _) = self.log.append(m.kind(), &buf[start..end])?;
            start = end;
            bytes += loc.len as u64;
            let removed = if self.retired.borrow().has_readers() {
                st.removed_by(m)
            } else {
                Vec::new()
            };
            if let Err(e) = st.apply(m, loc) {
                // The record is in the log but the state disagrees with it: a bug. Stop
                // accepting writes; recovery will skip and report the record.
                self.poisoned.set(true);
                tracing::error!(partition = self.id.0, error = %e, "mutation failed to apply");
                return Err(Error::Poisoned(e.to_string()));
            }
            if let Some(rec) = self.since_image.borrow_mut().as_mut() {
                rec.push((without_body(m), loc));
            }
            if !removed.is_empty() {
                let now = Instant::now();
                let mut retired = self.retired.borrow_mut();
                for (key, entry, at) in removed {
                    // A body other mailboxes still refer to stays in the blob table.
                    let dead = at.filter(|l| st.blobs.get(l.id).is_none());
                    retired.retire(key, entry, dead, now);
                }
            }
        }
        if buf.capacity() > 1 << 20 {
            // A large message's buffer is not kept.
            *buf = Vec::new();
        }
        Ok(bytes)
    }

    pub(super) async fn commit(self: &Rc<Self>, muts: &[Mutation]) -> Result<()> {
        let bytes = self.log_and_apply(muts)?;
        self.log.sync_point().await?;
        self.after_commit(bytes);
        Ok(())
    }

    pub(super) fn after_commit(self: &Rc<Self>, bytes: u64) {
        self.changes.changed();
        self.count_log_bytes(bytes);
    }

    /// Counts bytes logged toward the next background checkpoint, and starts it when due.
    /// After it, compaction runs if the checkpoint left sparse segments.
    pub(super) fn count_log_bytes(self: &Rc<Self>, bytes: u64) {
        let due = {
            let mut hk = self.hk.borrow_mut();
            hk.bytes_since_checkpoint += bytes;
            self.cfg.checkpoint_bytes > 0
                && hk.bytes_since_checkpoint >= self.cfg.checkpoint_bytes
                && !hk.checkpointing
                && hk.checkpoint_retry_at.is_none_or(|t| Instant::now() >= t)
        };
        if due {
            let me = self.clone();
            glommio::spawn_local(async move {
                if let Err(e) = me.checkpoint().await {
                    // Not again with every commit (a full disk fails each the same way):
                    // after a pause, said once per pause.
                    me.hk.borrow_mut().checkpoint_retry_at =
                        Some(Instant::now() + CHECKPOINT_RETRY);
                    tracing::warn!(partition = me.id.0, error = %e, retry_secs = CHECKPOINT_RETRY.as_secs(), "background checkpoint failed");
                    return;
                }
                me.hk.borrow_mut().checkpoint_retry_at = None;
                me.compact_if_due().await;
            })
            .detach();
        }
    }

    pub async fn create_account(self: &Rc<Self>, name: &str, opts: &AccountOptions) -> Result<()> {
        let muts = {
            let st = self.state.borrow();
            let now = now_unix();
            let create =
                st.plan_create_account(name, opts.quota_bytes, opts.quota_messages, now)?;
            let mut muts = create.mutations;
            let (account, inbox_uidvalidity) = create.outcome;
            let mut uv = inbox_uidvalidity.0;
            let mut seen = std::collections::HashSet::from(["INBOX".to_string()]);
            for (mb, _) in &opts.mailboxes {
                crate::state::check_mailbox_name(&normalize_mailbox(mb))?;
                if !seen.insert(normalize_mailbox(mb)) {
                    return Err(StoreError::MailboxExists.into());
                }
            }
            for (i, (mb, special)) in opts.mailboxes.iter().enumerate() {
                uv += 1;
                muts.push(Mutation::CreateMailbox {
                    account,
                    mailbox: crate::ids::MailboxId(i as u32 + 1),
                    name: normalize_mailbox(mb),
                    uidvalidity: UidValidity(uv),
                    special_use: *special as u8,
                });
            }
            muts
        };
        self.commit(&muts).await
    }

    pub async fn delete_account(self: &Rc<Self>, name: &str) -> Result<()> {
        let id = self.state.borrow().account_id(name)?;
        self.commit(&[Mutation::DeleteAccount { account: id }])
            .await?;
        // Its annotations go too (an account id is never given out again).
        self.annotations.borrow_mut().remove(&id.0);
        let _ = std::fs::remove_file(crate::annotations::file(&self.dir, id.0));
        Ok(())
    }

    /// The value of annotation `name` of `mailbox`; if it has none, `make()`'s, stored
    /// first. Checked and set under the write lock, so concurrent callers get one value.
    pub async fn annotation_or_insert(
        &self,
        account: &str,
        mailbox: Option<&str>,
        name: &str,
        make: impl FnOnce() -> Vec<u8>,
    ) -> Result<Vec<u8>> {
        let _one = self
            .annotation_writes
            .acquire_permit(1)
            .await
            .map_err(|_| Error::Store(StoreError::ShuttingDown))?;
        if let Some(v) = self.annotations(account, mailbox).await?.get(name) {
            return Ok(v.clone());
        }
        let v = make();
        self.set_annotations_locked(account, mailbox, &[(name.to_string(), Some(v.clone()))])
            .await?;
        Ok(v)
    }

    /// Sets (`Some`) or removes (`None`) annotations of `mailbox` (the account's own when
    /// `None`), all or none, and returns once they are on disk.
    pub async fn set_annotations(
        &self,
        account: &str,
        mailbox: Option<&str>,
        changes: &[(String, Option<Vec<u8>>)],
    ) -> Result<()> {
        let _one = self
            .annotation_writes
            .acquire_permit(1)
            .await
            .map_err(|_| Error::Store(StoreError::ShuttingDown))?;
        self.set_annotations_locked(account, mailbox, changes).await
    }

    /// [`Self::set_annotations`] with the write lock held.
    pub(super) async fn set_annotations_locked(
        &self,
        account: &str,
        mailbox: Option<&str>,
        changes: &[(String, Option<Vec<u8>>)],
    ) -> Result<()> {
        let (id, uv) = self.annotation_target(account, mailbox)?;
        let mut next = (*self.account_annotations(id).await?).clone();
        {
            // Entries of mailboxes deleted since go now.
            let st = self.state.borrow();
            let a = st.account(account)?;
            let live: std::collections::HashSet<u32> =
                a.mailboxes.values().map(|m| m.uidvalidity.0).collect();
            next.mailboxes.retain(|uv, _| live.contains(uv));
        }
        next.apply(uv, changes).map_err(|e| match e {
            crate::annotations::Refused::TooBig { max } => StoreError::AnnotationTooBig { max },
            crate::annotations::Refused::TooMany { max } => StoreError::TooManyAnnotations { max },
        })?;
        let dir = self.dir.clone();
        let write = next.clone();
        glommio::executor()
            .spawn_blocking(move || crate::annotations::store(&dir, id, &write))
            .await?;
        self.annotations.borrow_mut().insert(id, Rc::new(next));
        // Sessions waiting for changes (IDLE with NOTIFY) look again.
        self.changes.changed();
        Ok(())
    }

    pub async fn set_quota(
        self: &Rc<Self>,
        name: &str,
        quota_bytes: u64,
        quota_messages: u64,
    ) -> Result<()> {
        let m = {
            let st = self.state.borrow();
            Mutation::SetQuota {
                account: st.account_id(name)?,
                quota_bytes,
                quota_messages,
            }
        };
        self.commit(&[m]).await
    }

    pub async fn create_mailbox(
        self: &Rc<Self>,
        account: &str,
        name: &str,
        special_use: SpecialUse,
    ) -> Result<MailboxInfo> {
        let m = self
            .state
            .borrow()
            .plan_create_mailbox(account, name, special_use, now_unix())?;
        self.commit(&[m]).await?;
        self.status(account, name)
    }

    pub async fn rename_mailbox(
        self: &Rc<Self>,
        account: &str,
        from: &str,
        to: &str,
    ) -> Result<()> {
        let m = self.state.borrow().plan_rename_mailbox(account, from, to)?;
        self.commit(&[m]).await
    }

    pub async fn delete_mailbox(self: &Rc<Self>, account: &str, name: &str) -> Result<()> {
        let m = self.state.borrow().plan_delete_mailbox(account, name)?;
        self.commit(&[m]).await
    }

    pub async fn subscribe(
        self: &Rc<Self>,
        account: &str,
        name: &str,
        subscribed: bool,
    ) -> Result<()> {
        let m = {
            let st = self.state.borrow();
            let name = normalize_mailbox(name);
            crate::state::check_mailbox_name(&name)?;
            Mutation::Subscribe {
                account: st.account_id(account)?,
                name,
                subscribed,
            }
        };
        self.commit(&[m]).await
    }

    pub(super) fn compress(&self, body: &[u8]) -> Result<(BodyCodec, u32, Vec<u8>)> {
        self.compression
            .borrow_mut()
            .compress(body)
            .map_err(|e| Error::io("compressing a message", e))
    }

    /// Samples stored mail and, once there is enough, trains the partition's dictionary in
    /// the background (on the blocking pool) and logs it.
    pub(super) fn maybe_train(self: &Rc<Self>, body: &[u8]) {
        let Some(samples) = self.compression.borrow_mut().offer_sample(body) else {
            return;
        };
        let me = self.clone();
        glommio::spawn_local(async move {
            let size = me.compression.borrow().dictionary_size();
            let trained = glommio::executor()
                .spawn_blocking(move || zstd::dict::from_samples(&samples, size))
                .await;
            let result = match trained {
                Ok(bytes) => {
                    let id = me
                        .state
                        .borrow()
                        .dictionaries
                        .keys()
                        .last()
                        .copied()
                        .unwrap_or(0)
                        + 1;
                    let r = me
                        .commit(&[Mutation::Dictionary {
                            id,
                            bytes: bytes.clone(),
                        }])
                        .await;
                    r.and_then(|_| {
                        if let Some(w) = &me.worker {
                            w.add_dictionary(id, &bytes);
                        }
                        me.compression
                            .borrow_mut()
                            .add_dictionary(id, &bytes)
                            .map_err(|e| Error::io("preparing a dictionary", e))
                    })
                }
                Err(e) => Err(Error::io("training a dictionary", e)),
            };
            if let Err(e) = result {
                tracing::warn!(partition = me.id.0, error = %e, "no compression dictionary");
            }
            me.compression.borrow_mut().training_done();
        })
        .detach();
    }

    /// Stores one message in one mailbox.
    pub async fn append(
        self: &Rc<Self>,
        account: &str,
        mailbox: &str,
        msg: &NewMessage,
    ) -> Result<Appended> {
        let r = Recipient {
            account: account.to_string(),
            mailbox: mailbox.to_string(),
        };
        self.deliver(std::slice::from_ref(&r), msg)
            .await
            .pop()
            .expect("one result per recipient")
    }

    /// Stores one message for many recipients of this partition: the body is written once
    /// and shared (single-instance storage). Returns one result per recipient, in order;
    /// the successful ones are durable when this returns.
    pub async fn deliver(
        self: &Rc<Self>,
        recipients: &[Recipient],
        msg: &NewMessage,
    ) -> Vec<Result<Appended>> {
        let size = msg.body.len() as u64;
        let fail_all = |e: Error| -> Vec<Result<Appended>> {
            let s = e.to_string();
            recipients
                .iter()
                .map(|_| Err(clone_error(&e, &s)))
                .collect()
        };
        if size > MAX_MESSAGE_SIZE {
            return fail_all(
                StoreError::MessageTooLarge {
                    size,
                    limit: MAX_MESSAGE_SIZE,
                }
                .into(),
            );
        }
        if msg.meta.len() > MAX_META_SIZE as usize {
            return fail_all(Error::Config("message metadata too large".into()));
        }
        self.last_delivery.set(Instant::now());
        let defer = self.deferring.get()
            && msg.body.len() >= MIN_COMPRESS
            && self.deferred.borrow().bytes + size <= self.cfg.deferred_compression_bytes;
        let (codec, dict, body) = if defer {
            (BodyCodec::Raw, 0, msg.body.clone())
        } else {
            match self.compress(&msg.body) {
                Ok(x) => x,
                Err(e) => return fail_all(e),
            }
        };
        let date = msg.internal_date.unwrap_or(now_unix() as i64);
        // Plan, log and apply with no await in between.
        let (muts, results) = {
            let st = self.state.borrow();
            let mut results: Vec<Result<(usize, UidValidity)>> =
                Vec::with_capacity(recipients.len());
            let mut targets = Vec::new();
            let mut defs: Vec<Mutation> = Vec::new();
            let mut extra: HashMap<u32, (u64, u64)> = HashMap::new();
            for r in recipients {
                let res = (|| -> Result<(Target, UidValidity)> {
                    let (a, m) = st.mailbox(&r.account, &r.mailbox)?;
                    let add = extra.entry(a.id.0).or_default();
                    st.check_quota(a, add.0 + size, add.1 + 1)?;
                    let (new_defs, flags) =
                        st.plan_keywords(&r.account, msg.flags, &msg.keywords)?;
                    // Keywords defined for an earlier recipient of the same account are
                    // already in `defs`.
                    for d in new_defs {
                        if !defs.contains(&d) {
                            defs.push(d);
                        }
                    }
                    add.0 += size;
                    add.1 += 1;
                    Ok((
                        Target {
                            account: a.id,
                            mailbox: m.id,
                            uid: Uid(0),
                            flags: flags.0,
                            internal_date: date,
                        },
                        m.uidvalidity,
                    ))
                })();
                results.push(res.map(|(t, uv)| {
                    targets.push(t);
                    (targets.len() - 1, uv)
                }));
            }
            if targets.is_empty() {
                // Every recipient failed: their errors are the results.
                return results
                    .into_iter()
                    .filter_map(|r| r.err())
                    .map(Err)
                    .collect();
            }
            if let Err(e) = st.assign_uids(&mut targets) {
                return fail_all(e.into());
            }
            let blob = BlobId(st.next_blob);
            let results: Vec<Result<Appended>> = results
                .into_iter()
                .map(|r| {
                    r.map(|(i, uv)| Appended {
                        uidvalidity: uv,
                        uid: targets[i].uid,
                        blob,
                    })
                })
                .collect();
            defs.push(Mutation::Blob(BlobRecord {
                blob,
                raw_len: size as u32,
                meta: msg.meta.clone(),
                codec,
                dict,
                body,
                targets,
            }));
            (defs, results)
        };
        // Count a raw body against the bound before the await, so deliveries planned
        // meanwhile see it.
        let deferred_blob = match muts.last() {
            Some(Mutation::Blob(b)) if defer => {
                self.deferred.borrow_mut().bytes += size;
                Some(b.blob.0)
            }
            _ => None,
        };
        if let Err(e) = self.commit(&muts).await {
            if deferred_blob.is_some() {
                let mut q = self.deferred.borrow_mut();
                q.bytes = q.bytes.saturating_sub(size);
            }
            let s = e.to_string();
            return results
                .into_iter()
                .map(|r| r.and_then(|_| Err(clone_error(&e, &s))))
                .collect();
        }
        if let Some(blob) = deferred_blob {
            self.deferred
                .borrow_mut()
                .queue
                .push_back((blob, size as u32));
            self.deferred_wake.notify();
        }
        self.maybe_train(&msg.body);
        results
    }

    /// STORE: changes flags of `uids`. With `unchanged_since` (CONDSTORE), messages modified
    /// after it are left alone and listed in `modified`.
    #[allow(clippy::too_many_arguments)]
    pub async fn store(
        self: &Rc<Self>,
        account: &str,
        mailbox: &str,
        uids: &[Uid],
        op: FlagOp,
        flags: Flags,
        keywords: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<StoreResult> {
        let (muts, modified, changed_uids) = {
            let st = self.state.borrow();
            let (mut muts, flags) = if op == FlagOp::Remove {
                // Removing a keyword the account never defined is a no-op, not a definition.
                let a = st.account(account)?;
                let mut f = Flags(flags.0 & Flags::SYSTEM_MASK);
                for k in keywords {
                    if let Some(i) = a.keyword_index(k) {
                        f = f.union(Flags::keyword(i));
                    }
                }
                (Vec::new(), f)
            } else {
                st.plan_keywords(account, flags, keywords)?
            };
            let plan = st.plan_store(account, mailbox, uids, op, flags, unchanged_since)?;
            muts.extend(plan.mutations);
            (muts, plan.outcome.modified, plan.outcome.changed)
        };
        if !muts.is_empty() {
            self.commit(&muts).await?;
        }
        let st = self.state.borrow();
        let (_, m) = st.mailbox(account, mailbox)?;
        let changed: Vec<MessageInfo> = m.index.get_sorted(&changed_uids).map(to_info).collect();
        // Every changed entry carries this STORE's mod-sequence unless a later change took
        // some of them; then it is not the last change.
        let previous_change = match changed.first() {
            Some(c) if c.modseq == m.changed_modseq => Some(m.previous_change),
            _ => None,
        };
        Ok(StoreResult {
            changed,
            modified,
            previous_change,
        })
    }

    /// Expunges `uids`, or every message flagged `\Deleted` when `None`. Returns the UIDs
    /// removed.
    pub async fn expunge(
        self: &Rc<Self>,
        account: &str,
        mailbox: &str,
        uids: Option<&[Uid]>,
    ) -> Result<Vec<Uid>> {
        let plan = self.state.borrow().plan_expunge(account, mailbox, uids)?;
        self.commit_plan(plan).await
    }

    /// COPY within the account: the copies share the originals' stored bodies.
    /// Returns the destination's UIDVALIDITY and (source UID, new UID) pairs.
    pub async fn copy(
        self: &Rc<Self>,
        account: &str,
        from: &str,
        to: &str,
        uids: &[Uid],
    ) -> Result<(UidValidity, Vec<(Uid, Uid)>)> {
        self.transfer(account, from, to, uids, false).await
    }

    /// MOVE within the account, atomically (one record).
    pub async fn move_messages(
        self: &Rc<Self>,
        account: &str,
        from: &str,
        to: &str,
        uids: &[Uid],
    ) -> Result<(UidValidity, Vec<(Uid, Uid)>)> {
        self.transfer(account, from, to, uids, true).await
    }

    async fn transfer(
        self: &Rc<Self>,
        account: &str,
        from: &str,
        to: &str,
        uids: &[Uid],
        moving: bool,
    ) -> Result<(UidValidity, Vec<(Uid, Uid)>)> {
        let (plan, uv) = {
            let st = self.state.borrow();
            let plan = match moving {
                true => st.plan_move(account, from, to, uids)?,
                false => st.plan_copy(account, from, to, uids)?,
            };
            (plan, st.mailbox(account, to)?.1.uidvalidity)
        };
        Ok((uv, self.commit_plan(plan).await?))
    }

    /// Logs a plan's mutations, if any, and returns its outcome once they are durable.
    async fn commit_plan<T>(self: &Rc<Self>, plan: Plan<T>) -> Result<T> {
        if !plan.mutations.is_empty() {
            self.commit(&plan.mutations).await?;
        }
        Ok(plan.outcome)
    }
}
