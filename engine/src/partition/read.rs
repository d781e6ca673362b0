//! Reads: mailboxes, messages and annotations from the in-memory index, and message
//! bodies from the log (cached, and only once durable).

use std::rc::Rc;

use crate::annotations::{AccountAnnotations, Entries};
use crate::api::{AccountInfo, MailboxInfo, MessageInfo};
use crate::error::{Error, Result, StoreError};
use crate::ids::{BlobId, LogPos, SegmentSeq, Uid};
use crate::mutation::{decode_blob_meta, Mutation, BLOB_META_PREFIX};
use crate::retired::ReaderMark;
use crate::state::{AccountState, MailboxState};

use super::*;

impl Partition {
    pub(super) async fn account_annotations(&self, id: u32) -> Result<Rc<AccountAnnotations>> {
        if let Some(a) = self.annotations.borrow().get(&id) {
            return Ok(a.clone());
        }
        let dir = self.dir.clone();
        let a = Rc::new(
            glommio::executor()
                .spawn_blocking(move || crate::annotations::load(&dir, id))
                .await?,
        );
        Ok(self.annotations.borrow_mut().entry(id).or_insert(a).clone())
    }

    /// The annotations of `mailbox`, or of the account itself when `None`.
    pub async fn annotations(&self, account: &str, mailbox: Option<&str>) -> Result<Entries> {
        let (id, uv) = self.annotation_target(account, mailbox)?;
        let a = self.account_annotations(id).await?;
        Ok(match uv {
            None => a.account.clone(),
            Some(uv) => a.mailboxes.get(&uv).cloned().unwrap_or_default(),
        })
    }

    pub(super) fn annotation_target(
        &self,
        account: &str,
        mailbox: Option<&str>,
    ) -> Result<(u32, Option<u32>)> {
        let st = self.state.borrow();
        let id = st.account_id(account)?.0;
        let uv = match mailbox {
            None => None,
            Some(m) => Some(st.mailbox(account, m)?.1.uidvalidity.0),
        };
        Ok((id, uv))
    }

    pub fn account_info(&self, name: &str) -> Result<AccountInfo> {
        let st = self.state.borrow();
        let a = st.account(name)?;
        Ok(AccountInfo {
            name: a.name.clone(),
            quota_bytes: a.quota_bytes,
            quota_messages: a.quota_messages,
            used_bytes: a.used_bytes,
            used_messages: a.used_messages,
        })
    }

    /// A number that changes after every durable commit (see [`Partition::changed_after`]).
    pub fn change_generation(&self) -> u64 {
        self.changes.generation()
    }

    /// Waits until something was committed after generation `seen`; returns the new one.
    pub async fn changed_after(&self, seen: u64) -> u64 {
        self.changes.after(seen).await
    }

    pub fn has_account(&self, name: &str) -> bool {
        self.state.borrow().account_id(name).is_ok()
    }

    pub fn accounts(&self) -> Vec<String> {
        self.state
            .borrow()
            .accounts
            .values()
            .map(|a| a.name.clone())
            .collect()
    }

    /// The account's keyword names; keyword `k` is flag bit `Flags::keyword(k)`.
    pub fn keywords(&self, account: &str) -> Result<Vec<String>> {
        Ok(self.state.borrow().account(account)?.keywords.clone())
    }

    pub fn subscriptions(&self, account: &str) -> Result<Vec<String>> {
        Ok(self
            .state
            .borrow()
            .account(account)?
            .subscriptions
            .iter()
            .cloned()
            .collect())
    }

    pub(super) fn info(a: &AccountState, m: &MailboxState) -> MailboxInfo {
        MailboxInfo {
            name: m.name.clone(),
            uidvalidity: m.uidvalidity,
            uidnext: m.uidnext,
            highest_modseq: m.highest_modseq,
            changed_modseq: m.changed_modseq,
            special_use: m.special_use,
            messages: m.index.len() as u32,
            unseen: m.unseen,
            size: m.size,
            subscribed: a.subscriptions.contains(&m.name),
        }
    }

    pub fn mailboxes(&self, account: &str) -> Result<Vec<MailboxInfo>> {
        let st = self.state.borrow();
        let a = st.account(account)?;
        let mut v: Vec<MailboxInfo> = a.mailboxes.values().map(|m| Self::info(a, m)).collect();
        v.sort_by(|x, y| x.name.cmp(&y.name));
        Ok(v)
    }

    pub fn status(&self, account: &str, mailbox: &str) -> Result<MailboxInfo> {
        let st = self.state.borrow();
        let (a, m) = st.mailbox(account, mailbox)?;
        Ok(Self::info(a, m))
    }

    /// Messages with `lo <= uid <= hi`, in UID order.
    pub fn messages(
        &self,
        account: &str,
        mailbox: &str,
        lo: Uid,
        hi: Uid,
    ) -> Result<Vec<MessageInfo>> {
        self.messages_as(account, mailbox, lo, hi, |m| m)
    }

    /// [`Self::messages`], each made into what the caller keeps of it as it is read, so a
    /// big mailbox is not first copied whole.
    pub fn messages_as<T>(
        &self,
        account: &str,
        mailbox: &str,
        lo: Uid,
        hi: Uid,
        f: impl FnMut(MessageInfo) -> T,
    ) -> Result<Vec<T>> {
        let st = self.state.borrow();
        let (_, m) = st.mailbox(account, mailbox)?;
        let whole = lo.0 <= 1 && hi.0 == u32::MAX;
        let mut out = Vec::with_capacity(if whole { m.index.len() } else { 0 });
        out.extend(m.index.range(lo, hi).map(to_info).map(f));
        Ok(out)
    }

    /// The messages of `uids` (ascending) that exist, in order, found in one walk.
    pub fn messages_of(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[Uid],
    ) -> Result<Vec<MessageInfo>> {
        let st = self.state.borrow();
        let (_, m) = st.mailbox(account, mailbox)?;
        if uids.is_sorted() {
            return Ok(m.index.get_sorted(uids).map(to_info).collect());
        }
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        Ok(m.index.get_sorted(&sorted).map(to_info).collect())
    }

    /// A reader's mark on expunged messages: while it is held and behind, a message another
    /// session expunges stays readable through [`Self::expunged_message`].
    pub fn reader_mark(&self) -> ReaderMark {
        ReaderMark::new(self.retired.clone())
    }

    /// The retirement sequence now, for [`ReaderMark::caught_up`].
    pub fn retired_seq(&self) -> u64 {
        self.retired.borrow().seq()
    }

    /// A message expunged from `mailbox` that a reader behind may still fetch (its body
    /// through [`Self::fetch_blob`]), if it is still kept.
    pub fn expunged_message(&self, account: &str, mailbox: &str, uid: Uid) -> Option<MessageInfo> {
        let st = self.state.borrow();
        let id = st.account_id(account).ok()?;
        let (_, m) = st.mailbox(account, mailbox).ok()?;
        self.retired
            .borrow()
            .entry((id.0, m.id.0, uid.0))
            .map(to_info)
    }

    pub fn message(&self, account: &str, mailbox: &str, uid: Uid) -> Result<MessageInfo> {
        let st = self.state.borrow();
        let (_, m) = st.mailbox(account, mailbox)?;
        m.index
            .get(uid)
            .map(to_info)
            .ok_or_else(|| StoreError::NoSuchMessage.into())
    }

    /// The message's bytes, exactly as delivered.
    pub async fn fetch(&self, account: &str, mailbox: &str, uid: Uid) -> Result<Rc<Vec<u8>>> {
        let blob = self.message(account, mailbox, uid)?.blob;
        self.fetch_blob(blob).await
    }

    /// A byte range of the message, clamped to its end.
    pub async fn fetch_range(
        &self,
        account: &str,
        mailbox: &str,
        uid: Uid,
        start: u64,
        len: u64,
    ) -> Result<Vec<u8>> {
        let body = self.fetch(account, mailbox, uid).await?;
        let size = body.len() as u64;
        if start > size {
            return Err(StoreError::BadRange {
                start,
                end: start.saturating_add(len),
                size,
            }
            .into());
        }
        let end = start.saturating_add(len).min(size);
        Ok(body[start as usize..end as usize].to_vec())
    }

    /// The metadata of each of `uids`, as [`Self::fetch_meta`] gives it, in the same order;
    /// up to `META_READ_AHEAD` reads run at once, so a scan over a mailbox does not wait
    /// for each record in turn.
    pub async fn fetch_metas(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[Uid],
    ) -> Vec<Result<Vec<u8>>> {
        use futures_util::stream::{self, StreamExt};
        stream::iter(uids)
            .map(|&uid| self.fetch_meta(account, mailbox, uid))
            .buffered(META_READ_AHEAD)
            .collect()
            .await
    }

    /// The metadata stored with the message at delivery; reads no body bytes beyond the
    /// first disk block.
    pub async fn fetch_meta(&self, account: &str, mailbox: &str, uid: Uid) -> Result<Vec<u8>> {
        let blob = self.message(account, mailbox, uid)?.blob;
        self.fetch_blob_meta(blob).await
    }

    /// [`Self::fetch_meta`] of a stored body.
    pub async fn fetch_blob_meta(&self, blob: BlobId) -> Result<Vec<u8>> {
        let loc = self.blob_loc(blob)?;
        self.await_durable(loc.segment, loc.offset + loc.record_len as u64)
            .await?;
        let first = 4096 - crate::segment::RECORD_HEADER_LEN;
        let (_, head) = self
            .reader
            .read_record(loc.segment as u64, loc.offset, loc.record_len, Some(first))
            .await?;
        let meta_len = head
            .get(BLOB_META_PREFIX - 4..BLOB_META_PREFIX)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .unwrap_or(0);
        let head = if BLOB_META_PREFIX + meta_len > head.len() {
            self.reader
                .read_record(
                    loc.segment as u64,
                    loc.offset,
                    loc.record_len,
                    Some(BLOB_META_PREFIX + meta_len),
                )
                .await?
                .1
        } else {
            head
        };
        decode_blob_meta(&head[..(BLOB_META_PREFIX + meta_len).min(head.len())]).map_err(|e| {
            Error::Corrupt {
                file: self.reader.path(loc.segment as u64),
                pos: Some(LogPos {
                    segment: SegmentSeq(loc.segment as u64),
                    offset: loc.offset,
                }),
                source: e,
            }
        })
    }

    pub(super) fn blob_loc(&self, blob: BlobId) -> Result<crate::checkpoint::BlobLoc> {
        self.state
            .borrow()
            .blobs
            .get(blob.0)
            .or_else(|| self.retired.borrow().dead_blob(blob.0))
            .ok_or_else(|| StoreError::NoSuchMessage.into())
    }

    /// The record of message body `id` where the index has it now, read once the log is
    /// durable up to its end: a location in the index may belong to a record still in the
    /// batch being written (compaction and deferred compression move messages, and update
    /// the index, before their batch is on disk). Reading it earlier found zeros or the end
    /// of the file, which stopped deferred compression for good.
    pub(super) async fn read_live(
        &self,
        id: u64,
    ) -> Result<
        Option<(
            crate::checkpoint::BlobLoc,
            crate::segment::RecordHeader,
            Vec<u8>,
        )>,
    > {
        for _ in 0..3 {
            let Some(loc) = self.state.borrow().blobs.get(id) else {
                return Ok(None);
            };
            self.await_durable(loc.segment, loc.offset + loc.record_len as u64)
                .await?;
            match self
                .reader
                .read_record(loc.segment as u64, loc.offset, loc.record_len, None)
                .await
            {
                // Moved again, and its old segment deleted, while we waited.
                Err(Error::MissingSegment(_)) => continue,
                r => return r.map(|(h, p)| Some((loc, h, p))),
            }
        }
        Ok(None)
    }

    pub(super) async fn await_durable(&self, segment: u32, end: u64) -> Result<()> {
        self.log
            .wait_durable(LogPos {
                segment: SegmentSeq(segment as u64),
                offset: end,
            })
            .await
    }

    /// Reads, verifies and decompresses a stored message.
    pub async fn fetch_blob(&self, blob: BlobId) -> Result<Rc<Vec<u8>>> {
        if let Some(b) = self.cache.borrow().get(blob.0) {
            return Ok(b);
        }
        let mut attempt = 0;
        loop {
            let loc = self.blob_loc(blob)?;
            self.await_durable(loc.segment, loc.offset + loc.record_len as u64)
                .await?;
            match self.read_blob(loc).await {
                // Compaction may have moved the blob and deleted its old segment while we
                // waited; the table then has the new place.
                Err(Error::MissingSegment(_)) if attempt == 0 => attempt += 1,
                Err(e) => return Err(e),
                Ok(body) => {
                    let body = Rc::new(body);
                    self.cache.borrow_mut().insert(blob.0, body.clone());
                    return Ok(body);
                }
            }
        }
    }

    pub(super) async fn read_blob(&self, loc: crate::checkpoint::BlobLoc) -> Result<Vec<u8>> {
        let (h, payload) = self
            .reader
            .read_record(loc.segment as u64, loc.offset, loc.record_len, None)
            .await?;
        let pos = LogPos {
            segment: SegmentSeq(loc.segment as u64),
            offset: loc.offset,
        };
        let corrupt = |source| Error::Corrupt {
            file: self.reader.path(loc.segment as u64),
            pos: Some(pos),
            source,
        };
        let m = Mutation::decode(h.kind, &payload).map_err(corrupt)?;
        let Mutation::Blob(b) = m else {
            return Err(corrupt(crate::error::FormatError::Invalid {
                what: "record kind",
                detail: format!("expected a message, found kind {}", h.kind),
            }));
        };
        if b.blob.0 != loc.id {
            return Err(corrupt(crate::error::FormatError::Invalid {
                what: "blob id",
                detail: format!("expected {}, found {}", loc.id, b.blob.0),
            }));
        }
        let st = self.state.borrow();
        self.compression
            .borrow_mut()
            .decompress(
                b.codec,
                b.dict,
                &b.body,
                b.raw_len as usize,
                &st.dictionaries,
            )
            .map_err(corrupt)
    }
}
