//! The session's seams in memory, for transcript tests without sockets or an engine: a
//! [`MemoryStore`] (one account's mailboxes as maps; clones share it, as sessions of one
//! account share a partition) and a [`ScriptLink`] (input frames queued, output collected).
//!
//! The store keeps the engine's rules where the session can see them: UIDs and
//! mod-sequences only grow, INBOX cannot be deleted, names are unique, keywords get the
//! next flag bit. It keeps no expunged message for sessions behind (`expunged_message`
//! says none), so tests of that live with the engine.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::rc::Rc;

use ringmail_engine::Entries;
use ringmail_engine::{
    AccountInfo, Appended, BlobId, Error, FlagOp, Flags, MailboxInfo, MessageInfo, ModSeq,
    NewMessage, SpecialUse, StoreError, StoreResult, Uid, UidValidity,
};

use super::store::{Link, MailStore, Result, Stamp, Woke};
use crate::imap::url::{BadUrl, ImapUrl};
use crate::imap::urlauth::Requester;
use crate::imap::view::Msg;
use crate::imap::Frame;
use crate::mime::{MessageMeta, PackedEnvelope};

struct Mailbox {
    uidvalidity: u32,
    uidnext: u32,
    highest_modseq: u64,
    changed_modseq: u64,
    special_use: SpecialUse,
    messages: BTreeMap<u32, MessageInfo>,
}

#[derive(Default)]
struct Account {
    mailboxes: BTreeMap<String, Mailbox>,
    subscriptions: BTreeSet<String>,
    keywords: Vec<String>,
    bodies: HashMap<u64, Rc<Vec<u8>>>,
    next_blob: u64,
    next_uidvalidity: u32,
    annotations: HashMap<Option<String>, Entries>,
    /// Per UIDVALIDITY: the lowest UID not yet \Recent to a session.
    recent: HashMap<u32, u32>,
}

/// One account's mail in memory.
#[derive(Clone)]
pub struct MemoryStore {
    account: Rc<RefCell<Account>>,
    generation: Rc<Cell<u64>>,
}

fn store_err(e: StoreError) -> Error {
    Error::Store(e)
}

impl Default for MemoryStore {
    fn default() -> Self {
        let store = MemoryStore {
            account: Rc::new(RefCell::new(Account {
                next_uidvalidity: 1000,
                ..Default::default()
            })),
            generation: Rc::new(Cell::new(0)),
        };
        store.add_mailbox("INBOX", SpecialUse::None);
        store
    }
}

impl MemoryStore {
    fn add_mailbox(&self, name: &str, special_use: SpecialUse) -> MailboxInfo {
        let mut a = self.account.borrow_mut();
        a.next_uidvalidity += 1;
        let uidvalidity = a.next_uidvalidity;
        a.mailboxes.insert(
            name.to_string(),
            Mailbox {
                uidvalidity,
                uidnext: 1,
                highest_modseq: 1,
                changed_modseq: 1,
                special_use,
                messages: BTreeMap::new(),
            },
        );
        drop(a);
        self.changed();
        self.status(name).expect("just made")
    }

    fn changed(&self) {
        self.generation.set(self.generation.get() + 1);
    }

    fn info(a: &Account, name: &str, m: &Mailbox) -> MailboxInfo {
        MailboxInfo {
            name: name.to_string(),
            uidvalidity: UidValidity(m.uidvalidity),
            uidnext: Uid(m.uidnext),
            highest_modseq: ModSeq(m.highest_modseq),
            changed_modseq: ModSeq(m.changed_modseq),
            special_use: m.special_use,
            messages: m.messages.len() as u32,
            unseen: m
                .messages
                .values()
                .filter(|i| !i.flags.contains(Flags::SEEN))
                .count() as u32,
            size: m.messages.values().map(|i| i.size as u64).sum(),
            subscribed: a.subscriptions.contains(name),
        }
    }

    /// Runs `f` on a mailbox, or fails with NONEXISTENT.
    fn with<T>(&self, name: &str, f: impl FnOnce(&mut Mailbox) -> T) -> Result<T> {
        let mut a = self.account.borrow_mut();
        let m = a
            .mailboxes
            .get_mut(name)
            .ok_or(store_err(StoreError::NoSuchMailbox))?;
        Ok(f(m))
    }

    fn keyword_flags(&self, keywords: &[String]) -> Flags {
        let mut a = self.account.borrow_mut();
        let mut f = Flags::empty();
        for k in keywords {
            let i = match a.keywords.iter().position(|x| x.eq_ignore_ascii_case(k)) {
                Some(i) => i,
                None => {
                    a.keywords.push(k.clone());
                    a.keywords.len() - 1
                }
            };
            f = f.union(Flags::keyword(i as u8));
        }
        f
    }

    /// Adds `body` to `mailbox` as another session or a delivery would.
    pub fn deliver(&self, mailbox: &str, body: &[u8]) -> Uid {
        let m = NewMessage {
            body: body.to_vec(),
            ..Default::default()
        };
        futures_lite::future::block_on(self.append(mailbox, &m))
            .expect("mailbox exists")
            .uid
    }

    fn add(&self, to: &str, mut info: MessageInfo) -> Result<Uid> {
        let uid = self.with(to, |m| {
            let uid = m.uidnext;
            m.uidnext += 1;
            m.highest_modseq += 1;
            info.uid = Uid(uid);
            info.modseq = ModSeq(m.highest_modseq);
            m.messages.insert(uid, info);
            Uid(uid)
        })?;
        self.changed();
        Ok(uid)
    }
}

impl MailStore for MemoryStore {
    type Mark = ();

    fn mailboxes(&self) -> Result<Vec<MailboxInfo>> {
        let a = self.account.borrow();
        Ok(a.mailboxes
            .iter()
            .map(|(n, m)| Self::info(&a, n, m))
            .collect())
    }
    fn subscriptions(&self) -> Result<Vec<String>> {
        Ok(self
            .account
            .borrow()
            .subscriptions
            .iter()
            .cloned()
            .collect())
    }
    fn keywords(&self) -> Result<Vec<String>> {
        Ok(self.account.borrow().keywords.clone())
    }
    fn account_info(&self) -> Result<AccountInfo> {
        let a = self.account.borrow();
        let all = a.mailboxes.values().flat_map(|m| m.messages.values());
        Ok(AccountInfo {
            name: "user@example.org".into(),
            quota_bytes: 0,
            quota_messages: 0,
            used_bytes: all.clone().map(|i| i.size as u64).sum(),
            used_messages: all.count() as u64,
        })
    }
    async fn create_mailbox(&self, name: &str, special_use: SpecialUse) -> Result<MailboxInfo> {
        if self.account.borrow().mailboxes.contains_key(name) {
            return Err(store_err(StoreError::MailboxExists));
        }
        Ok(self.add_mailbox(name, special_use))
    }
    async fn rename_mailbox(&self, from: &str, to: &str) -> Result<()> {
        let mut a = self.account.borrow_mut();
        if a.mailboxes.contains_key(to) {
            return Err(store_err(StoreError::MailboxExists));
        }
        let m = a
            .mailboxes
            .remove(from)
            .ok_or(store_err(StoreError::NoSuchMailbox))?;
        a.mailboxes.insert(to.to_string(), m);
        // Inferiors move with it.
        let below: Vec<String> = a
            .mailboxes
            .keys()
            .filter(|n| n.starts_with(&format!("{from}/")))
            .cloned()
            .collect();
        for n in below {
            let m = a.mailboxes.remove(&n).expect("listed");
            a.mailboxes.insert(format!("{to}{}", &n[from.len()..]), m);
        }
        drop(a);
        self.changed();
        Ok(())
    }
    async fn delete_mailbox(&self, name: &str) -> Result<()> {
        if name == "INBOX" {
            return Err(store_err(StoreError::CannotDeleteInbox));
        }
        let gone = self.account.borrow_mut().mailboxes.remove(name);
        gone.ok_or(store_err(StoreError::NoSuchMailbox))?;
        self.changed();
        Ok(())
    }
    async fn subscribe(&self, name: &str, subscribed: bool) -> Result<()> {
        let mut a = self.account.borrow_mut();
        match subscribed {
            true => a.subscriptions.insert(name.to_string()),
            false => a.subscriptions.remove(name),
        };
        drop(a);
        self.changed();
        Ok(())
    }

    fn status(&self, mailbox: &str) -> Result<MailboxInfo> {
        let a = self.account.borrow();
        let m = a
            .mailboxes
            .get(mailbox)
            .ok_or(store_err(StoreError::NoSuchMailbox))?;
        Ok(Self::info(&a, mailbox, m))
    }
    fn messages(&self, mailbox: &str, from: Uid) -> Result<Vec<Msg>> {
        self.with(mailbox, |m| {
            m.messages
                .range(from.0..)
                .map(|(_, i)| Msg {
                    uid: i.uid.0,
                    flags: i.flags.0,
                    modseq: i.modseq.0,
                })
                .collect()
        })
    }
    fn messages_of(&self, mailbox: &str, uids: &[Uid]) -> Result<Vec<MessageInfo>> {
        self.with(mailbox, |m| {
            let mut v: Vec<MessageInfo> = uids
                .iter()
                .filter_map(|u| m.messages.get(&u.0).copied())
                .collect();
            v.sort_by_key(|i| i.uid);
            v.dedup_by_key(|i| i.uid);
            v
        })
    }
    fn message(&self, mailbox: &str, uid: Uid) -> Result<MessageInfo> {
        self.with(mailbox, |m| m.messages.get(&uid.0).copied())?
            .ok_or(store_err(StoreError::NoSuchMessage))
    }
    fn expunged_message(&self, _mailbox: &str, _uid: Uid) -> Option<MessageInfo> {
        None
    }
    async fn append(&self, mailbox: &str, message: &NewMessage) -> Result<Appended> {
        let flags = message.flags.union(self.keyword_flags(&message.keywords));
        let blob = {
            let mut a = self.account.borrow_mut();
            a.next_blob += 1;
            let id = a.next_blob;
            a.bodies.insert(id, Rc::new(message.body.clone()));
            BlobId(id)
        };
        let info = MessageInfo {
            uid: Uid(0),
            flags,
            modseq: ModSeq(0),
            // Each later message a second younger, so ARRIVAL orders them.
            internal_date: message
                .internal_date
                .unwrap_or(1_700_000_000 + blob.0 as i64),
            size: message.body.len() as u32,
            blob,
        };
        let uid = self.add(mailbox, info)?;
        let uidvalidity = UidValidity(self.status(mailbox)?.uidvalidity.0);
        Ok(Appended {
            uidvalidity,
            uid,
            blob,
        })
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
        let flags = flags.union(self.keyword_flags(keywords));
        let r = self.with(mailbox, |m| {
            let mut r = StoreResult::default();
            for u in uids {
                let Some(i) = m.messages.get_mut(&u.0) else {
                    continue;
                };
                if unchanged_since.is_some_and(|s| i.modseq.0 > s) {
                    r.modified.push(*u);
                    continue;
                }
                let new = op.apply(i.flags, flags);
                if new != i.flags {
                    m.highest_modseq += 1;
                    m.changed_modseq = m.highest_modseq;
                    i.flags = new;
                    i.modseq = ModSeq(m.highest_modseq);
                    r.changed.push(*i);
                }
            }
            r
        })?;
        if !r.changed.is_empty() {
            self.changed();
        }
        Ok(r)
    }
    async fn expunge(&self, mailbox: &str, uids: Option<&[Uid]>) -> Result<Vec<Uid>> {
        let gone = self.with(mailbox, |m| {
            let gone: Vec<u32> = match uids {
                Some(u) => u
                    .iter()
                    .map(|u| u.0)
                    .filter(|u| m.messages.contains_key(u))
                    .collect(),
                None => m
                    .messages
                    .values()
                    .filter(|i| i.flags.contains(Flags::DELETED))
                    .map(|i| i.uid.0)
                    .collect(),
            };
            for u in &gone {
                m.messages.remove(u);
            }
            if !gone.is_empty() {
                m.highest_modseq += 1;
                m.changed_modseq = m.highest_modseq;
            }
            gone
        })?;
        if !gone.is_empty() {
            self.changed();
        }
        Ok(gone.into_iter().map(Uid).collect())
    }
    async fn copy(
        &self,
        from: &str,
        to: &str,
        uids: &[Uid],
    ) -> Result<(UidValidity, Vec<(Uid, Uid)>)> {
        let uidvalidity = self.status(to)?.uidvalidity;
        let mut pairs = Vec::new();
        for info in self.messages_of(from, uids)? {
            pairs.push((info.uid, self.add(to, info)?));
        }
        Ok((uidvalidity, pairs))
    }
    async fn move_messages(
        &self,
        from: &str,
        to: &str,
        uids: &[Uid],
    ) -> Result<(UidValidity, Vec<(Uid, Uid)>)> {
        let r = self.copy(from, to, uids).await?;
        let moved: Vec<Uid> = r.1.iter().map(|p| p.0).collect();
        self.expunge(from, Some(&moved)).await?;
        Ok(r)
    }

    async fn fetch(&self, mailbox: &str, uid: Uid) -> Result<Rc<Vec<u8>>> {
        let blob = self.message(mailbox, uid)?.blob;
        self.fetch_blob(blob).await
    }
    async fn fetch_blob(&self, blob: BlobId) -> Result<Rc<Vec<u8>>> {
        self.account
            .borrow()
            .bodies
            .get(&blob.0)
            .cloned()
            .ok_or(store_err(StoreError::NoSuchMessage))
    }
    async fn meta_of(&self, blob: BlobId, raw: Option<&[u8]>) -> Option<Rc<MessageMeta>> {
        Some(Rc::new(match raw {
            Some(r) => MessageMeta::parse(r),
            None => MessageMeta::parse(&self.fetch_blob(blob).await.ok()?),
        }))
    }
    async fn envelopes_of(
        &self,
        mailbox: &str,
        chunk: &[(u32, MessageInfo)],
    ) -> Vec<Option<Rc<PackedEnvelope>>> {
        let mut out = Vec::new();
        for (_, info) in chunk {
            let raw = self.fetch(mailbox, info.uid).await.ok();
            out.push(raw.map(|r| Rc::new(PackedEnvelope::pack(&MessageMeta::parse(&r).envelope))));
        }
        out
    }
    async fn read_url(&self, mailbox: &str, u: &ImapUrl) -> std::result::Result<Vec<u8>, BadUrl> {
        let st = self
            .status(mailbox)
            .map_err(|_| BadUrl("no such mailbox"))?;
        if u.uidvalidity.is_some_and(|v| v != st.uidvalidity.0) {
            return Err(BadUrl("UIDVALIDITY does not match"));
        }
        let raw = self
            .fetch(mailbox, Uid(u.uid))
            .await
            .map_err(|_| BadUrl("no such message"))?;
        let meta = MessageMeta::parse(&raw);
        crate::imap::url::cut(&raw, Some(&meta), u)
    }
    async fn fetch_url(&self, _url: &str, _who: Requester<'_>) -> Option<Vec<u8>> {
        None
    }
    fn is_ours(&self, host: &str) -> bool {
        host.eq_ignore_ascii_case("localhost")
    }

    fn change_generation(&self) -> u64 {
        self.generation.get()
    }
    fn changed_after(&self, seen: u64) -> impl Future<Output = u64> {
        let generation = self.generation.clone();
        std::future::poll_fn(move |_| match generation.get() {
            g if g > seen => std::task::Poll::Ready(g),
            // Tests never wait for a change that has not happened: the link gives up.
            _ => std::task::Poll::Pending,
        })
    }
    fn retired_seq(&self) -> u64 {
        0
    }
    fn hold_expunged(&self) {}
    fn caught_up(&self, _mark: &(), _seq: u64) {}

    fn claim_recent(&self, st: &MailboxInfo) -> u32 {
        let mut a = self.account.borrow_mut();
        let r = a.recent.entry(st.uidvalidity.0).or_insert(0);
        let before = *r;
        *r = st.uidnext.0.saturating_sub(1);
        before
    }
    fn recent_boundary(&self, st: &MailboxInfo) -> u32 {
        let a = self.account.borrow();
        a.recent.get(&st.uidvalidity.0).copied().unwrap_or(0)
    }
    fn forget_mailbox(&self, uidvalidity: u32) {
        self.account.borrow_mut().recent.remove(&uidvalidity);
    }
    fn shared_picture(&self, _uidvalidity: u32, _stamp: Stamp) -> Option<Rc<Vec<Msg>>> {
        None
    }
    fn share_picture(&self, _uidvalidity: u32, _stamp: Stamp, _msgs: &Rc<Vec<Msg>>) {}

    async fn annotations(&self, mailbox: Option<&str>) -> Result<Entries> {
        if let Some(m) = mailbox {
            self.status(m)?;
        }
        let a = self.account.borrow();
        Ok(a.annotations
            .get(&mailbox.map(str::to_string))
            .cloned()
            .unwrap_or_default())
    }
    async fn set_annotations(
        &self,
        mailbox: Option<&str>,
        changes: &[(String, Option<Vec<u8>>)],
    ) -> Result<()> {
        if let Some(m) = mailbox {
            self.status(m)?;
        }
        let mut a = self.account.borrow_mut();
        let e = a
            .annotations
            .entry(mailbox.map(str::to_string))
            .or_default();
        for (k, v) in changes {
            match v {
                Some(v) => e.insert(k.clone(), v.clone()),
                None => e.remove(k),
            };
        }
        drop(a);
        self.changed();
        Ok(())
    }
    async fn annotation_or_insert(
        &self,
        mailbox: Option<&str>,
        name: &str,
        make: fn() -> Vec<u8>,
    ) -> Result<Vec<u8>> {
        let mut a = self.account.borrow_mut();
        let e = a
            .annotations
            .entry(mailbox.map(str::to_string))
            .or_default();
        Ok(e.entry(name.to_string()).or_insert_with(make).clone())
    }
}

/// A connection in memory: frames the test queued, and everything the session sent.
#[derive(Default)]
pub struct ScriptLink {
    /// Frames there at once (pipelined).
    pub input: VecDeque<Frame>,
    /// Frames that arrive only while the session waits in IDLE, after `on_wait` ran.
    pub later: VecDeque<Frame>,
    /// Runs when the session first waits (e.g. another session changes the mailbox).
    pub on_wait: Option<Box<dyn FnOnce()>>,
    pub sent: Vec<u8>,
    pub compressing: bool,
}

impl Link for ScriptLink {
    async fn send(&mut self, out: &mut Vec<u8>) -> bool {
        self.sent.append(out);
        true
    }
    fn queue(&mut self, out: &mut Vec<u8>) {
        self.sent.append(out);
    }
    fn next_frame(&mut self) -> Option<Frame> {
        self.input.pop_front()
    }
    async fn wait(&mut self, changed: impl Future<Output = u64>) -> Woke {
        if let Some(hook) = self.on_wait.take() {
            hook();
        }
        // A change that happened wakes the IDLE first; with neither a change nor input,
        // the script is over: the client went away.
        if futures_lite::future::poll_once(changed).await.is_some() {
            return Woke::Changed;
        }
        match self.later.pop_front() {
            Some(f) => Woke::Input(f),
            None => Woke::Closed,
        }
    }
    fn compressing(&self) -> bool {
        self.compressing
    }
    fn start_compress(&mut self) {
        self.compressing = true;
    }
}
