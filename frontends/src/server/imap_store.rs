//! The engine's partition as an IMAP session's [`MailStore`]: one account of a partition on
//! this shard, with the shard's caches of parsed metadata and envelopes, and the session
//! state kept next to the account (`server/sessions.rs`, `server/shared_views.rs`).

use std::future::Future;
use std::rc::Rc;

use ringmail_engine::Entries;
use ringmail_engine::ReaderMark;
use ringmail_engine::{
    AccountInfo, Appended, BlobId, FlagOp, Flags, MailboxInfo, MessageInfo, NewMessage, Partition,
    SpecialUse, StoreResult, Uid, UidValidity,
};

use super::ShardServer;
use crate::imap::session::store::Result;
use crate::imap::session::{MailStore, Stamp};
use crate::imap::url::{BadUrl, ImapUrl};
use crate::imap::urlauth::Requester;
use crate::imap::view::Msg;
use crate::mime::{MessageMeta, PackedEnvelope};

pub struct EngineStore {
    server: Rc<ShardServer>,
    part: Rc<Partition>,
    account: String,
}

impl EngineStore {
    pub fn new(server: Rc<ShardServer>, part: Rc<Partition>, account: String) -> Self {
        EngineStore {
            server,
            part,
            account,
        }
    }
}

fn msg_of(m: &MessageInfo) -> Msg {
    Msg {
        uid: m.uid.0,
        flags: m.flags.0,
        modseq: m.modseq.0,
    }
}

impl MailStore for EngineStore {
    type Mark = ReaderMark;

    fn mailboxes(&self) -> Result<Vec<MailboxInfo>> {
        self.part.mailboxes(&self.account)
    }
    fn subscriptions(&self) -> Result<Vec<String>> {
        self.part.subscriptions(&self.account)
    }
    fn keywords(&self) -> Result<Vec<String>> {
        self.part.keywords(&self.account)
    }
    fn account_info(&self) -> Result<AccountInfo> {
        self.part.account_info(&self.account)
    }
    async fn create_mailbox(&self, name: &str, special_use: SpecialUse) -> Result<MailboxInfo> {
        self.part
            .create_mailbox(&self.account, name, special_use)
            .await
    }
    async fn rename_mailbox(&self, from: &str, to: &str) -> Result<()> {
        self.part.rename_mailbox(&self.account, from, to).await
    }
    async fn delete_mailbox(&self, name: &str) -> Result<()> {
        self.part.delete_mailbox(&self.account, name).await
    }
    async fn subscribe(&self, name: &str, subscribed: bool) -> Result<()> {
        self.part.subscribe(&self.account, name, subscribed).await
    }

    fn status(&self, mailbox: &str) -> Result<MailboxInfo> {
        self.part.status(&self.account, mailbox)
    }
    fn messages(&self, mailbox: &str, from: Uid) -> Result<Vec<Msg>> {
        self.part
            .messages_as(&self.account, mailbox, from, Uid(u32::MAX), |m| msg_of(&m))
    }
    fn messages_of(&self, mailbox: &str, uids: &[Uid]) -> Result<Vec<MessageInfo>> {
        self.part.messages_of(&self.account, mailbox, uids)
    }
    fn message(&self, mailbox: &str, uid: Uid) -> Result<MessageInfo> {
        self.part.message(&self.account, mailbox, uid)
    }
    fn expunged_message(&self, mailbox: &str, uid: Uid) -> Option<MessageInfo> {
        self.part.expunged_message(&self.account, mailbox, uid)
    }
    async fn append(&self, mailbox: &str, message: &NewMessage) -> Result<Appended> {
        self.part.append(&self.account, mailbox, message).await
    }
    async fn store(
        &self,
        mailbox: &str,
        uids: &[Uid],
        op: FlagOp,
        flags: Flags,
        keywords: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<StoreResult> {
        self.part
            .store(
                &self.account,
                mailbox,
                uids,
                op,
                flags,
                keywords,
                unchanged_since,
            )
            .await
    }
    async fn expunge(&self, mailbox: &str, uids: Option<&[Uid]>) -> Result<Vec<Uid>> {
        self.part.expunge(&self.account, mailbox, uids).await
    }
    async fn copy(
        &self,
        from: &str,
        to: &str,
        uids: &[Uid],
    ) -> Result<(UidValidity, Vec<(Uid, Uid)>)> {
        self.part.copy(&self.account, from, to, uids).await
    }
    async fn move_messages(
        &self,
        from: &str,
        to: &str,
        uids: &[Uid],
    ) -> Result<(UidValidity, Vec<(Uid, Uid)>)> {
        self.part.move_messages(&self.account, from, to, uids).await
    }

    async fn fetch(&self, mailbox: &str, uid: Uid) -> Result<Rc<Vec<u8>>> {
        self.part.fetch(&self.account, mailbox, uid).await
    }
    async fn fetch_blob(&self, blob: BlobId) -> Result<Rc<Vec<u8>>> {
        self.part.fetch_blob(blob).await
    }
    /// The message's metadata: from the shard's cache, else as stored at delivery, else (an
    /// older version, or none) parsed from the message.
    async fn meta_of(&self, blob: BlobId, raw: Option<&[u8]>) -> Option<Rc<MessageMeta>> {
        let key = (self.part.id().0, blob.0);
        if let Some(m) = self.server.meta_cache.borrow().get(key) {
            return Some(m);
        }
        let stored = self.part.fetch_blob_meta(blob).await.ok();
        let (meta, len) = match stored.as_deref().map(MessageMeta::decode) {
            Some(Ok(m)) => (m, stored.as_ref().map_or(0, |b| b.len())),
            _ => {
                let m = match raw {
                    Some(r) => MessageMeta::parse(r),
                    None => MessageMeta::parse(&self.part.fetch_blob(blob).await.ok()?),
                };
                // What a stored copy would weigh.
                let len = m.encode().len();
                (m, len)
            }
        };
        let meta = Rc::new(meta);
        // The decoded form holds about three times the encoded size in strings and vectors.
        self.server
            .meta_cache
            .borrow_mut()
            .insert(key, meta.clone(), len * 3 + 192);
        Some(meta)
    }

    /// The envelopes of `chunk`'s messages, for SEARCH, SORT and THREAD: from the shard's
    /// cache, else read from their records many at a time (else, for metadata of an older
    /// version or none, parsed from the message). `None` for a message that cannot be read.
    async fn envelopes_of(
        &self,
        mailbox: &str,
        chunk: &[(u32, MessageInfo)],
    ) -> Vec<Option<Rc<PackedEnvelope>>> {
        let part = self.part.id().0;
        let mut out: Vec<Option<Rc<PackedEnvelope>>> = {
            let cache = self.server.envelopes.borrow();
            chunk
                .iter()
                .map(|(_, i)| cache.get((part, i.blob.0)))
                .collect()
        };
        let missing: Vec<usize> = (0..chunk.len()).filter(|&k| out[k].is_none()).collect();
        if missing.is_empty() {
            return out;
        }
        let uids: Vec<Uid> = missing.iter().map(|&k| chunk[k].1.uid).collect();
        let stored = self.part.fetch_metas(&self.account, mailbox, &uids).await;
        for (&k, stored) in missing.iter().zip(stored) {
            let info = &chunk[k].1;
            let envelope = match stored.map(|b| MessageMeta::decode_envelope(&b)) {
                Ok(Ok(e)) => e,
                _ => match self.part.fetch(&self.account, mailbox, info.uid).await {
                    Ok(raw) => MessageMeta::parse(&raw).envelope,
                    Err(_) => continue,
                },
            };
            let packed = Rc::new(PackedEnvelope::pack(&envelope));
            self.server.envelopes.borrow_mut().insert(
                (part, info.blob.0),
                packed.clone(),
                packed.weight(),
            );
            out[k] = Some(packed);
        }
        out
    }

    async fn read_url(&self, mailbox: &str, url: &ImapUrl) -> std::result::Result<Vec<u8>, BadUrl> {
        super::urlauth::read(&self.part, &self.account, mailbox, url).await
    }
    async fn fetch_url(&self, url: &str, who: Requester<'_>) -> Option<Vec<u8>> {
        super::urlauth::fetch(&self.server, url, who).await
    }
    fn is_ours(&self, host: &str) -> bool {
        super::urlauth::is_ours(&self.server, host)
    }

    fn change_generation(&self) -> u64 {
        self.part.change_generation()
    }
    fn changed_after(&self, seen: u64) -> impl Future<Output = u64> {
        let part = self.part.clone();
        async move { part.changed_after(seen).await }
    }
    fn retired_seq(&self) -> u64 {
        self.part.retired_seq()
    }
    fn hold_expunged(&self) -> ReaderMark {
        self.part.reader_mark()
    }
    fn caught_up(&self, mark: &ReaderMark, seq: u64) {
        mark.caught_up(seq)
    }

    fn claim_recent(&self, st: &MailboxInfo) -> u32 {
        self.server.sessions.claim_recent(&self.account, st)
    }
    fn recent_boundary(&self, st: &MailboxInfo) -> u32 {
        self.server.sessions.recent_boundary(&self.account, st)
    }
    fn forget_mailbox(&self, uidvalidity: u32) {
        self.server
            .sessions
            .forget_mailbox(&self.account, uidvalidity)
    }
    fn shared_picture(&self, uidvalidity: u32, stamp: Stamp) -> Option<Rc<Vec<Msg>>> {
        self.server
            .views
            .borrow()
            .get(&self.account, uidvalidity, stamp)
    }
    fn share_picture(&self, uidvalidity: u32, stamp: Stamp, msgs: &Rc<Vec<Msg>>) {
        self.server
            .views
            .borrow_mut()
            .put(&self.account, uidvalidity, stamp, msgs)
    }

    async fn annotations(&self, mailbox: Option<&str>) -> Result<Entries> {
        self.part.annotations(&self.account, mailbox).await
    }
    async fn set_annotations(
        &self,
        mailbox: Option<&str>,
        changes: &[(String, Option<Vec<u8>>)],
    ) -> Result<()> {
        self.part
            .set_annotations(&self.account, mailbox, changes)
            .await
    }
    async fn annotation_or_insert(
        &self,
        mailbox: Option<&str>,
        name: &str,
        make: fn() -> Vec<u8>,
    ) -> Result<Vec<u8>> {
        self.part
            .annotation_or_insert(&self.account, mailbox, name, make)
            .await
    }

    fn rejected(&self, why: &'static str) {
        self.server.shared.metrics.rejected(why)
    }
}
