//! A partition's logical state and the one function that changes it: [`PartitionState::apply`].
//!
//! The live write path and recovery share `apply`: a request is first *planned* (validated
//! against the current state and turned into a [`Mutation`]), then the mutation is logged
//! and applied. Replay after a crash applies the same mutations in the same order, so the
//! state after recovery is exactly the state that was acknowledged. Nothing here does I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use crate::checkpoint::{
    AccountImage, BlobLoc, Checkpoint, DictionaryImage, Entry, Image, MailboxImage,
};
use crate::error::StoreError;
use crate::flags::{FlagOp, Flags, SpecialUse};
use crate::format::names::{MAX_MESSAGE_SIZE, MAX_NAME_LEN};
use crate::ids::{AccountId, BlobId, MailboxId, ModSeq, Uid, UidValidity};
use crate::index::{BaseRef, BlobTable, MailboxIndex};
use crate::mutation::{BlobRecord, Mutation, Target};

/// Sorted, without duplicates, and few enough for one record.
fn dedup(uids: &[Uid]) -> Result<Vec<Uid>, StoreError> {
    let mut v = uids.to_vec();
    v.sort_unstable();
    v.dedup();
    if v.len() > crate::format::names::MAX_RECORD_ITEMS as usize / 2 {
        return Err(StoreError::TooManyItems {
            count: v.len(),
            limit: crate::format::names::MAX_RECORD_ITEMS as usize / 2,
        });
    }
    Ok(v)
}

/// A planned change: the mutations to log (none when there is nothing to do) and what the
/// caller reports of them, so no caller takes a `Mutation` apart again.
#[derive(Debug)]
pub struct Plan<T> {
    pub mutations: Vec<Mutation>,
    pub outcome: T,
}

/// What a STORE changes: the UIDs whose flags change, and those UNCHANGEDSINCE refused.
#[derive(Debug)]
pub struct StorePlan {
    pub changed: Vec<Uid>,
    pub modified: Vec<Uid>,
}

/// The hierarchy delimiter of mailbox names.
pub const DELIMITER: char = '/';

#[derive(Debug)]
pub struct MailboxState {
    pub id: MailboxId,
    pub name: String,
    pub uidvalidity: UidValidity,
    pub uidnext: Uid,
    pub highest_modseq: ModSeq,
    /// The mod-sequence of the last change to messages already there (flags, expunge, move
    /// away), as far as this state knows: loaded from a checkpoint it is `highest_modseq`,
    /// as if everything had just changed. Not stored.
    pub changed_modseq: ModSeq,
    /// `changed_modseq` before the last change (same caveat).
    pub previous_change: ModSeq,
    pub special_use: SpecialUse,
    pub index: MailboxIndex,
    pub unseen: u32,
    pub size: u64,
}

impl MailboxState {
    /// Existing messages change, at `highest_modseq`.
    fn changed(&mut self) {
        self.previous_change = self.changed_modseq;
        self.changed_modseq = self.highest_modseq;
    }

    fn count(&mut self, e: &Entry, sign: i64) {
        if e.flags & Flags::SEEN.0 == 0 {
            self.unseen = (self.unseen as i64 + sign) as u32;
        }
        self.size = (self.size as i64 + sign * e.size as i64) as u64;
    }
}

#[derive(Debug)]
pub struct AccountState {
    pub id: AccountId,
    pub name: String,
    pub quota_bytes: u64,
    pub quota_messages: u64,
    pub used_bytes: u64,
    pub used_messages: u64,
    pub next_mailbox: u32,
    pub keywords: Vec<String>,
    pub subscriptions: BTreeSet<String>,
    pub mailboxes: BTreeMap<MailboxId, MailboxState>,
    pub by_name: HashMap<String, MailboxId>,
}

impl AccountState {
    pub fn mailbox_by_name(&self, name: &str) -> Option<&MailboxState> {
        self.mailboxes
            .get(self.by_name.get(&normalize_mailbox(name))?)
    }
    pub fn mailbox(&self, id: MailboxId) -> Result<&MailboxState, StoreError> {
        self.mailboxes.get(&id).ok_or(StoreError::NoSuchMailbox)
    }
    /// The keyword's index, if the account has defined it.
    pub fn keyword_index(&self, name: &str) -> Option<u8> {
        self.keywords
            .iter()
            .position(|k| k.eq_ignore_ascii_case(name))
            .map(|i| i as u8)
    }
}

/// Where the record being applied lies in the log.
#[derive(Clone, Copy, Debug)]
pub struct RecordLoc {
    pub segment: u32,
    pub offset: u64,
    pub len: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record does not apply: {0}")]
pub struct ApplyError(pub String);

fn inc32(v: u32) -> Result<u32, ApplyError> {
    v.checked_add(1)
        .ok_or_else(|| ApplyError(format!("{v} cannot grow")))
}

fn bad<T>(msg: impl Into<String>) -> Result<T, ApplyError> {
    Err(ApplyError(msg.into()))
}

#[derive(Debug)]
pub struct PartitionState {
    pub partition: u32,
    pub accounts: BTreeMap<AccountId, AccountState>,
    pub account_by_name: HashMap<String, AccountId>,
    pub blobs: BlobTable,
    /// Live blob bytes per segment: what compaction weighs against the segment's length.
    pub segment_live: BTreeMap<u32, u64>,
    pub next_account: u32,
    pub next_blob: u64,
    pub last_uidvalidity: u32,
    /// Compression dictionaries by id.
    pub dictionaries: BTreeMap<u32, Rc<Vec<u8>>>,
}

/// Canonical form of a mailbox name: `INBOX` is case-insensitive (RFC 9051 section 5.1).
pub fn normalize_mailbox(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        return "INBOX".into();
    }
    if name.len() > 6 && name[..6].eq_ignore_ascii_case("INBOX/") {
        return format!("INBOX/{}", &name[6..]);
    }
    name.to_string()
}

pub fn normalize_account(name: &str) -> String {
    name.trim().to_ascii_lowercase()
}

pub fn check_mailbox_name(name: &str) -> Result<(), StoreError> {
    let bad = |why: &str| Err(StoreError::InvalidName(why.to_string()));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN as usize {
        return bad("too long");
    }
    if name.starts_with(DELIMITER) || name.ends_with(DELIMITER) || name.contains("//") {
        return bad("empty hierarchy level");
    }
    if name.chars().any(|c| c.is_control() || c == '*' || c == '%') {
        return bad("control or wildcard character");
    }
    Ok(())
}

impl PartitionState {
    pub fn new(partition: u32) -> Self {
        Self {
            partition,
            accounts: BTreeMap::new(),
            account_by_name: HashMap::new(),
            blobs: BlobTable::default(),
            segment_live: BTreeMap::new(),
            next_account: 0,
            next_blob: 1,
            last_uidvalidity: 0,
            dictionaries: BTreeMap::new(),
        }
    }

    /// Builds the state from a checkpoint, referring to its entries in place.
    pub fn from_checkpoint(ck: Rc<Checkpoint>) -> Self {
        let im = ck.image();
        let mut st = Self::new(im.partition.to_native());
        st.next_account = im.next_account.to_native();
        st.next_blob = im.next_blob.to_native();
        st.last_uidvalidity = im.last_uidvalidity.to_native();
        st.blobs = BlobTable::with_base(ck.clone());
        for d in im.dictionaries.iter() {
            st.dictionaries
                .insert(d.id.to_native(), Rc::new(d.bytes.to_vec()));
        }
        for b in im.blobs.iter() {
            *st.segment_live.entry(b.segment.to_native()).or_default() +=
                b.record_len.to_native() as u64;
        }
        for (ai, a) in im.accounts.iter().enumerate() {
            let mut acc = AccountState {
                id: AccountId(a.id.to_native()),
                name: a.name.to_string(),
                quota_bytes: a.quota_bytes.to_native(),
                quota_messages: a.quota_messages.to_native(),
                used_bytes: 0,
                used_messages: 0,
                next_mailbox: a.next_mailbox.to_native(),
                keywords: a.keywords.iter().map(|k| k.to_string()).collect(),
                subscriptions: a.subscriptions.iter().map(|k| k.to_string()).collect(),
                mailboxes: BTreeMap::new(),
                by_name: HashMap::new(),
            };
            for (mi, m) in a.mailboxes.iter().enumerate() {
                let mut mb = MailboxState {
                    id: MailboxId(m.id.to_native()),
                    name: m.name.to_string(),
                    uidvalidity: UidValidity(m.uidvalidity.to_native()),
                    uidnext: Uid(m.uidnext.to_native()),
                    highest_modseq: ModSeq(m.highest_modseq.to_native()),
                    changed_modseq: ModSeq(m.highest_modseq.to_native()),
                    previous_change: ModSeq(m.highest_modseq.to_native()),
                    special_use: SpecialUse::from_u8(m.special_use).unwrap_or_default(),
                    index: MailboxIndex::with_base(BaseRef {
                        checkpoint: ck.clone(),
                        account_pos: ai,
                        mailbox_pos: mi,
                    }),
                    unseen: 0,
                    size: 0,
                };
                for e in m.entries.iter() {
                    if e.flags.to_native() & Flags::SEEN.0 == 0 {
                        mb.unseen += 1;
                    }
                    mb.size += e.size.to_native() as u64;
                }
                acc.used_bytes += mb.size;
                acc.used_messages += m.entries.len() as u64;
                acc.by_name.insert(mb.name.clone(), mb.id);
                acc.mailboxes.insert(mb.id, mb);
            }
            st.account_by_name.insert(acc.name.clone(), acc.id);
            st.accounts.insert(acc.id, acc);
        }
        st
    }

    /// The whole state as a checkpoint image covering the log up to `log_segment/offset`.
    pub fn to_image(&self, log_segment: u64, log_offset: u64, next_lsn: u64) -> Image {
        Image {
            partition: self.partition,
            log_segment,
            log_offset,
            next_lsn,
            next_blob: self.next_blob,
            next_account: self.next_account,
            last_uidvalidity: self.last_uidvalidity,
            accounts: self
                .accounts
                .values()
                .map(|a| AccountImage {
                    id: a.id.0,
                    name: a.name.clone(),
                    quota_bytes: a.quota_bytes,
                    quota_messages: a.quota_messages,
                    next_mailbox: a.next_mailbox,
                    keywords: a.keywords.clone(),
                    subscriptions: a.subscriptions.iter().cloned().collect(),
                    mailboxes: a
                        .mailboxes
                        .values()
                        .map(|m| MailboxImage {
                            id: m.id.0,
                            name: m.name.clone(),
                            uidvalidity: m.uidvalidity.0,
                            uidnext: m.uidnext.0,
                            highest_modseq: m.highest_modseq.0,
                            special_use: m.special_use as u8,
                            entries: m.index.iter().collect(),
                        })
                        .collect(),
                })
                .collect(),
            blobs: self.blobs.sorted(),
            dictionaries: self
                .dictionaries
                .iter()
                .map(|(&id, b)| DictionaryImage {
                    id,
                    bytes: b.to_vec(),
                })
                .collect(),
        }
    }

    // ---- lookups -------------------------------------------------------------------------

    pub fn account_id(&self, name: &str) -> Result<AccountId, StoreError> {
        self.account_by_name
            .get(&normalize_account(name))
            .copied()
            .ok_or(StoreError::NoSuchAccount)
    }

    pub fn account(&self, name: &str) -> Result<&AccountState, StoreError> {
        let id = self.account_id(name)?;
        self.accounts.get(&id).ok_or(StoreError::NoSuchAccount)
    }

    pub fn mailbox(
        &self,
        account: &str,
        mailbox: &str,
    ) -> Result<(&AccountState, &MailboxState), StoreError> {
        let a = self.account(account)?;
        let m = a
            .mailbox_by_name(mailbox)
            .ok_or(StoreError::NoSuchMailbox)?;
        Ok((a, m))
    }

    // ---- planning: validate a request, produce the mutation that carries it out ----------

    pub fn plan_create_account(
        &self,
        name: &str,
        quota_bytes: u64,
        quota_messages: u64,
        now_unix: u64,
    ) -> Result<Plan<(AccountId, UidValidity)>, StoreError> {
        let name = normalize_account(name);
        if name.is_empty()
            || name.len() > MAX_NAME_LEN as usize
            || name.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(StoreError::InvalidName("account name".into()));
        }
        if self.account_by_name.contains_key(&name) {
            return Err(StoreError::AccountExists);
        }
        let (account, inbox_uidvalidity) = (
            AccountId(self.next_account),
            self.next_uidvalidity(now_unix),
        );
        Ok(Plan {
            mutations: vec![Mutation::CreateAccount {
                account,
                name,
                quota_bytes,
                quota_messages,
                inbox_uidvalidity,
            }],
            outcome: (account, inbox_uidvalidity),
        })
    }

    pub fn next_uidvalidity(&self, now_unix: u64) -> UidValidity {
        UidValidity(
            (now_unix as u32)
                .max(self.last_uidvalidity.wrapping_add(1))
                .max(1),
        )
    }

    pub fn plan_create_mailbox(
        &self,
        account: &str,
        name: &str,
        special_use: SpecialUse,
        now_unix: u64,
    ) -> Result<Mutation, StoreError> {
        let a = self.account(account)?;
        let name = normalize_mailbox(name);
        check_mailbox_name(&name)?;
        if a.by_name.contains_key(&name) {
            return Err(StoreError::MailboxExists);
        }
        Ok(Mutation::CreateMailbox {
            account: a.id,
            mailbox: MailboxId(a.next_mailbox),
            name,
            uidvalidity: self.next_uidvalidity(now_unix),
            special_use: special_use as u8,
        })
    }

    pub fn plan_rename_mailbox(
        &self,
        account: &str,
        from: &str,
        to: &str,
    ) -> Result<Mutation, StoreError> {
        let (a, m) = self.mailbox(account, from)?;
        if m.name == "INBOX" {
            // RFC 9051 gives RENAME of INBOX its own meaning (move the messages); the
            // protocol layer does that with CREATE and MOVE.
            return Err(StoreError::InvalidName(
                "INBOX cannot be renamed here".into(),
            ));
        }
        let to = normalize_mailbox(to);
        check_mailbox_name(&to)?;
        if a.by_name.contains_key(&to) {
            return Err(StoreError::MailboxExists);
        }
        if to.starts_with(&format!("{}{DELIMITER}", m.name)) {
            return Err(StoreError::InvalidName(
                "a mailbox cannot move below itself".into(),
            ));
        }
        // Inferior mailboxes move too: none of their new names may exist.
        let prefix = format!("{}{DELIMITER}", m.name);
        for child in a.mailboxes.values().filter(|c| c.name.starts_with(&prefix)) {
            if a.by_name
                .contains_key(&format!("{to}{}", &child.name[m.name.len()..]))
            {
                return Err(StoreError::MailboxExists);
            }
        }
        Ok(Mutation::RenameMailbox {
            account: a.id,
            mailbox: m.id,
            name: to,
        })
    }

    pub fn plan_delete_mailbox(&self, account: &str, name: &str) -> Result<Mutation, StoreError> {
        let (a, m) = self.mailbox(account, name)?;
        if m.name == "INBOX" {
            return Err(StoreError::CannotDeleteInbox);
        }
        Ok(Mutation::DeleteMailbox {
            account: a.id,
            mailbox: m.id,
        })
    }

    /// Keyword names not yet defined in the account, as `DefineKeyword` mutations, and the
    /// flag set for `system` plus `keywords` once they are.
    pub fn plan_keywords(
        &self,
        account: &str,
        system: Flags,
        keywords: &[String],
    ) -> Result<(Vec<Mutation>, Flags), StoreError> {
        let a = self.account(account)?;
        let mut flags = Flags(system.0 & Flags::SYSTEM_MASK);
        let mut defs = Vec::new();
        let mut next = a.keywords.len();
        let mut new_names: Vec<&str> = Vec::new();
        for k in keywords {
            let idx = match a.keyword_index(k) {
                Some(i) => i,
                None => match new_names.iter().position(|n| n.eq_ignore_ascii_case(k)) {
                    Some(p) => (a.keywords.len() + p) as u8,
                    None => {
                        if next >= Flags::MAX_KEYWORDS {
                            return Err(StoreError::TooManyKeywords {
                                limit: Flags::MAX_KEYWORDS,
                            });
                        }
                        if k.is_empty() || k.len() > 255 {
                            return Err(StoreError::InvalidName("keyword".into()));
                        }
                        new_names.push(k);
                        defs.push(Mutation::DefineKeyword {
                            account: a.id,
                            index: next as u8,
                            name: k.clone(),
                        });
                        next += 1;
                        (next - 1) as u8
                    }
                },
            };
            flags = flags.union(Flags::keyword(idx));
        }
        Ok((defs, flags))
    }

    /// Checks quota and size for adding `size` bytes in `count` messages to the account.
    pub fn check_quota(&self, a: &AccountState, size: u64, count: u64) -> Result<(), StoreError> {
        if size > MAX_MESSAGE_SIZE * count.max(1) {
            return Err(StoreError::MessageTooLarge {
                size,
                limit: MAX_MESSAGE_SIZE,
            });
        }
        if a.quota_bytes > 0 && a.used_bytes + size > a.quota_bytes {
            return Err(StoreError::OverQuota {
                what: "storage",
                would_be: a.used_bytes + size,
                limit: a.quota_bytes,
            });
        }
        if a.quota_messages > 0 && a.used_messages + count > a.quota_messages {
            return Err(StoreError::OverQuota {
                what: "message count",
                would_be: a.used_messages + count,
                limit: a.quota_messages,
            });
        }
        Ok(())
    }

    /// The next UID for each target mailbox, in order (several targets may share a mailbox).
    pub fn assign_uids(&self, targets: &mut [Target]) -> Result<(), StoreError> {
        let mut next: HashMap<(AccountId, MailboxId), u32> = HashMap::new();
        for t in targets.iter_mut() {
            let a = self
                .accounts
                .get(&t.account)
                .ok_or(StoreError::NoSuchAccount)?;
            let m = a.mailbox(t.mailbox)?;
            let n = next.entry((t.account, t.mailbox)).or_insert(m.uidnext.0);
            if *n == u32::MAX {
                return Err(StoreError::MailboxFull);
            }
            t.uid = Uid(*n);
            *n += 1;
        }
        Ok(())
    }

    pub fn plan_store(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[Uid],
        op: FlagOp,
        flags: Flags,
        unchanged_since: Option<u64>,
    ) -> Result<Plan<StorePlan>, StoreError> {
        let (a, m) = self.mailbox(account, mailbox)?;
        let uids = &dedup(uids)?;
        let mut items = Vec::new();
        let mut failed = Vec::new();
        for e in m.index.get_sorted(uids) {
            if let Some(since) = unchanged_since {
                if e.modseq > since {
                    failed.push(Uid(e.uid));
                    continue;
                }
            }
            let new = op.apply(Flags(e.flags), flags);
            if new.0 != e.flags {
                items.push((Uid(e.uid), new.0));
            }
        }
        let changed: Vec<Uid> = items.iter().map(|(u, _)| *u).collect();
        let mutations = match items.is_empty() {
            true => Vec::new(),
            false => vec![Mutation::SetFlags {
                account: a.id,
                mailbox: m.id,
                items,
            }],
        };
        Ok(Plan {
            mutations,
            outcome: StorePlan {
                changed,
                modified: failed,
            },
        })
    }

    pub fn plan_expunge(
        &self,
        account: &str,
        mailbox: &str,
        uids: Option<&[Uid]>,
    ) -> Result<Plan<Vec<Uid>>, StoreError> {
        let (a, m) = self.mailbox(account, mailbox)?;
        let uids: Vec<Uid> = match uids {
            Some(u) => dedup(u)?
                .iter()
                .copied()
                .filter(|&u| m.index.get(u).is_some())
                .collect(),
            None => m
                .index
                .iter()
                .filter(|e| e.flags & Flags::DELETED.0 != 0)
                .map(|e| Uid(e.uid))
                .collect(),
        };
        let mutations = match uids.is_empty() {
            true => Vec::new(),
            false => vec![Mutation::Expunge {
                account: a.id,
                mailbox: m.id,
                uids: uids.clone(),
            }],
        };
        Ok(Plan {
            mutations,
            outcome: uids,
        })
    }

    /// COPY: new entries in `to` that share the blobs of `uids` in `from`.
    pub fn plan_copy(
        &self,
        account: &str,
        from: &str,
        to: &str,
        uids: &[Uid],
    ) -> Result<Plan<Vec<(Uid, Uid)>>, StoreError> {
        let (a, src) = self.mailbox(account, from)?;
        let dst = a.mailbox_by_name(to).ok_or(StoreError::NoSuchMailbox)?;
        let uids = &dedup(uids)?;
        let entries: Vec<Entry> = uids.iter().filter_map(|&u| src.index.get(u)).collect();
        let total: u64 = entries.iter().map(|e| e.size as u64).sum();
        self.check_quota(a, total, entries.len() as u64)?;
        let mut next = dst.uidnext.0;
        let mut pairs = Vec::with_capacity(entries.len());
        let mutations = entries
            .into_iter()
            .map(|e| {
                next += 1;
                pairs.push((Uid(e.uid), Uid(next - 1)));
                Mutation::Link {
                    blob: BlobId(e.blob),
                    targets: vec![Target {
                        account: a.id,
                        mailbox: dst.id,
                        uid: Uid(next - 1),
                        flags: e.flags,
                        internal_date: e.internal_date,
                    }],
                }
            })
            .collect();
        Ok(Plan {
            mutations,
            outcome: pairs,
        })
    }

    pub fn plan_move(
        &self,
        account: &str,
        from: &str,
        to: &str,
        uids: &[Uid],
    ) -> Result<Plan<Vec<(Uid, Uid)>>, StoreError> {
        let (a, src) = self.mailbox(account, from)?;
        // To the same mailbox too (RFC 6851 allows it; clients use it to renumber): the
        // messages get new UIDs at its end and the old ones are expunged.
        let dst = a.mailbox_by_name(to).ok_or(StoreError::NoSuchMailbox)?;
        let uids = &dedup(uids)?;
        let mut next = dst.uidnext.0;
        let items: Vec<(Uid, Uid)> = uids
            .iter()
            .filter(|&&u| src.index.get(u).is_some())
            .map(|&u| {
                next += 1;
                (u, Uid(next - 1))
            })
            .collect();
        let mutations = match items.is_empty() {
            true => Vec::new(),
            false => vec![Mutation::Move {
                account: a.id,
                from: src.id,
                to: dst.id,
                items: items.clone(),
            }],
        };
        Ok(Plan {
            mutations,
            outcome: items,
        })
    }

    // ---- apply ---------------------------------------------------------------------------

    /// Applies one logged mutation. Deterministic: replaying the log reproduces the state.
    pub fn apply(&mut self, m: &Mutation, loc: RecordLoc) -> Result<(), ApplyError> {
        match m {
            Mutation::CreateAccount {
                account,
                name,
                quota_bytes,
                quota_messages,
                inbox_uidvalidity,
            } => {
                if self.accounts.contains_key(account) || self.account_by_name.contains_key(name) {
                    return bad(format!("account {name} exists"));
                }
                self.next_account = self.next_account.max(inc32(account.0)?);
                self.last_uidvalidity = self.last_uidvalidity.max(inbox_uidvalidity.0);
                self.account_by_name.insert(name.clone(), *account);
                self.accounts.insert(
                    *account,
                    AccountState {
                        id: *account,
                        name: name.clone(),
                        quota_bytes: *quota_bytes,
                        quota_messages: *quota_messages,
                        used_bytes: 0,
                        used_messages: 0,
                        next_mailbox: 0,
                        keywords: Vec::new(),
                        subscriptions: BTreeSet::new(),
                        mailboxes: BTreeMap::new(),
                        by_name: HashMap::new(),
                    },
                );
                self.apply(
                    &Mutation::CreateMailbox {
                        account: *account,
                        mailbox: MailboxId(0),
                        name: "INBOX".into(),
                        uidvalidity: *inbox_uidvalidity,
                        special_use: 0,
                    },
                    loc,
                )?;
            }
            Mutation::DeleteAccount { account } => {
                let Some(a) = self.accounts.get(account) else {
                    return bad("no such account");
                };
                let ids: Vec<MailboxId> = a.mailboxes.keys().copied().collect();
                for id in ids {
                    self.drop_mailbox(*account, id)?;
                }
                if let Some(a) = self.accounts.remove(account) {
                    self.account_by_name.remove(&a.name);
                }
            }
            Mutation::SetQuota {
                account,
                quota_bytes,
                quota_messages,
            } => {
                let a = self.account_mut(*account)?;
                a.quota_bytes = *quota_bytes;
                a.quota_messages = *quota_messages;
            }
            Mutation::CreateMailbox {
                account,
                mailbox,
                name,
                uidvalidity,
                special_use,
            } => {
                self.last_uidvalidity = self.last_uidvalidity.max(uidvalidity.0);
                let a = self.account_mut(*account)?;
                if a.mailboxes.contains_key(mailbox) || a.by_name.contains_key(name) {
                    return bad(format!("mailbox {name} exists"));
                }
                a.next_mailbox = a.next_mailbox.max(inc32(mailbox.0)?);
                a.by_name.insert(name.clone(), *mailbox);
                a.mailboxes.insert(
                    *mailbox,
                    MailboxState {
                        id: *mailbox,
                        name: name.clone(),
                        uidvalidity: *uidvalidity,
                        uidnext: Uid(1),
                        highest_modseq: ModSeq(1),
                        changed_modseq: ModSeq(1),
                        previous_change: ModSeq(1),
                        special_use: SpecialUse::from_u8(*special_use).unwrap_or_default(),
                        index: MailboxIndex::default(),
                        unseen: 0,
                        size: 0,
                    },
                );
            }
            Mutation::RenameMailbox {
                account,
                mailbox,
                name,
            } => {
                let a = self.account_mut(*account)?;
                let Some(old) = a.mailboxes.get(mailbox).map(|m| m.name.clone()) else {
                    return bad("no such mailbox");
                };
                // Inferior names move with their parent (RFC 9051 section 6.3.6).
                let prefix = format!("{old}{DELIMITER}");
                let moves: Vec<(MailboxId, String)> = a
                    .mailboxes
                    .values()
                    .filter(|m| m.id == *mailbox || m.name.starts_with(&prefix))
                    .map(|m| (m.id, format!("{name}{}", &m.name[old.len()..])))
                    .collect();
                for (id, new) in moves {
                    if let Some(m) = a.mailboxes.get_mut(&id) {
                        a.by_name.remove(&m.name);
                        a.by_name.insert(new.clone(), id);
                        m.name = new;
                    }
                }
            }
            Mutation::DeleteMailbox { account, mailbox } => {
                self.drop_mailbox(*account, *mailbox)?
            }
            Mutation::Subscribe {
                account,
                name,
                subscribed,
            } => {
                let a = self.account_mut(*account)?;
                if *subscribed {
                    a.subscriptions.insert(name.clone());
                } else {
                    a.subscriptions.remove(name);
                }
            }
            Mutation::DefineKeyword {
                account,
                index,
                name,
            } => {
                let a = self.account_mut(*account)?;
                if *index as usize != a.keywords.len() || a.keywords.len() >= Flags::MAX_KEYWORDS {
                    return bad(format!("keyword index {index} out of order"));
                }
                a.keywords.push(name.clone());
            }
            Mutation::Dictionary { id, bytes } => {
                if self.dictionaries.contains_key(id) {
                    return bad(format!("dictionary {id} defined twice"));
                }
                self.dictionaries.insert(*id, Rc::new(bytes.clone()));
            }
            Mutation::Blob(b) => self.apply_blob(b, loc)?,
            Mutation::Link { blob, targets } => {
                let Some(mut l) = self.blobs.get(blob.0) else {
                    return bad("link to unknown blob");
                };
                for t in targets {
                    self.add_entry(t, l.raw_len, blob.0)?;
                }
                l.refs += targets.len() as u32;
                self.blobs.set(l);
            }
            Mutation::SetFlags {
                account,
                mailbox,
                items,
            } => {
                for (_, f) in items {
                    self.check_keywords(*account, *f)?;
                }
                let mb = self.mailbox_mut(*account, *mailbox)?;
                mb.highest_modseq.0 += 1;
                let modseq = mb.highest_modseq.0;
                mb.changed();
                // Planned in UID order; a record made otherwise is put in order first.
                let mut items = items.clone();
                if !items.is_sorted_by_key(|(u, _)| *u) {
                    items.sort_by_key(|(u, _)| *u);
                }
                let uids: Vec<Uid> = items.iter().map(|(u, _)| *u).collect();
                let mut old = Vec::with_capacity(items.len());
                let mut changed = Vec::with_capacity(items.len());
                let mut it = items.iter().peekable();
                for e in mb.index.get_sorted(&uids) {
                    while it.peek().is_some_and(|(u, _)| u.0 < e.uid) {
                        it.next();
                    }
                    let Some(&&(_, flags)) = it.peek() else { break };
                    old.push(e);
                    changed.push(Entry { flags, modseq, ..e });
                }
                for (o, n) in old.iter().zip(&changed) {
                    mb.count(o, -1);
                    mb.count(n, 1);
                }
                mb.index.replace_sorted(&changed);
            }
            Mutation::Expunge {
                account,
                mailbox,
                uids,
            } => {
                let mb = self.mailbox_mut(*account, *mailbox)?;
                mb.highest_modseq.0 += 1;
                mb.changed();
                let removed = mb.index.remove_many(uids);
                for e in &removed {
                    mb.count(e, -1);
                }
                self.release(*account, &removed)?;
            }
            Mutation::Move {
                account,
                from,
                to,
                items,
            } => {
                // Validate everything first: a record is applied whole or not at all.
                {
                    let a = self
                        .accounts
                        .get(account)
                        .ok_or_else(|| ApplyError(format!("no account {account}")))?;
                    let src = a
                        .mailboxes
                        .get(from)
                        .ok_or_else(|| ApplyError(format!("no mailbox {from}")))?;
                    let dst = a
                        .mailboxes
                        .get(to)
                        .ok_or_else(|| ApplyError(format!("no mailbox {to}")))?;
                    let mut next = dst.uidnext.0;
                    let mut seen = std::collections::HashSet::new();
                    for (old, new) in items {
                        if new.0 < next || !seen.insert(old.0) || src.index.get(*old).is_none() {
                            return bad(format!("move item {old} -> {new} is not valid"));
                        }
                        next = inc32(new.0)?;
                    }
                }
                let src = self.mailbox_mut(*account, *from)?;
                src.highest_modseq.0 += 1;
                src.changed();
                let uids: Vec<Uid> = items.iter().map(|(u, _)| *u).collect();
                let removed = src.index.remove_many(&uids);
                for e in &removed {
                    src.count(e, -1);
                }
                let by_uid: HashMap<u32, Entry> = removed.into_iter().map(|e| (e.uid, e)).collect();
                let dst = self.mailbox_mut(*account, *to)?;
                dst.highest_modseq.0 += 1;
                let modseq = dst.highest_modseq.0;
                for (old, new) in items {
                    let Some(e) = by_uid.get(&old.0) else {
                        continue;
                    };
                    let e = Entry {
                        uid: new.0,
                        modseq,
                        ..*e
                    };
                    dst.count(&e, 1);
                    dst.index.push(e);
                    dst.uidnext = Uid(inc32(new.0)?);
                }
            }
        }
        Ok(())
    }

    fn apply_blob(&mut self, b: &BlobRecord, loc: RecordLoc) -> Result<(), ApplyError> {
        let refs = match self.blobs.get(b.blob.0) {
            // A relocation by compaction: same blob, new place.
            Some(old) => {
                self.sub_live(old.segment, old.record_len);
                old.refs
            }
            None => 0,
        };
        self.next_blob = self.next_blob.max(
            b.blob
                .0
                .checked_add(1)
                .ok_or_else(|| ApplyError("blob id overflow".into()))?,
        );
        for t in &b.targets {
            self.add_entry(t, b.raw_len, b.blob.0)?;
        }
        let refs = refs + b.targets.len() as u32;
        if refs > 0 {
            self.blobs.set(BlobLoc {
                id: b.blob.0,
                offset: loc.offset,
                segment: loc.segment,
                record_len: loc.len,
                raw_len: b.raw_len,
                refs,
            });
            *self.segment_live.entry(loc.segment).or_default() += loc.len as u64;
        }
        Ok(())
    }

    /// Keyword bits must name keywords the account has defined (a record whose keyword
    /// definition was lost must not pick up a later keyword's meaning).
    fn check_keywords(&self, account: AccountId, flags: u64) -> Result<(), ApplyError> {
        let defined = self
            .accounts
            .get(&account)
            .map(|a| a.keywords.len())
            .unwrap_or(0);
        let used = flags >> Flags::KEYWORD_BASE;
        if used >> defined != 0 || flags & Flags::SYSTEM_MASK & !0x1f != 0 {
            return bad(format!(
                "flags {flags:#x} use undefined keywords or reserved bits"
            ));
        }
        Ok(())
    }

    fn add_entry(&mut self, t: &Target, size: u32, blob: u64) -> Result<(), ApplyError> {
        self.check_keywords(t.account, t.flags)?;
        let mb = self.mailbox_mut(t.account, t.mailbox)?;
        if t.uid.0 < mb.uidnext.0 {
            return bad(format!("UID {} below UIDNEXT {}", t.uid, mb.uidnext));
        }
        mb.highest_modseq.0 += 1;
        let e = Entry {
            uid: t.uid.0,
            size,
            flags: t.flags,
            modseq: mb.highest_modseq.0,
            internal_date: t.internal_date,
            blob,
        };
        mb.count(&e, 1);
        mb.index.push(e);
        mb.uidnext = Uid(inc32(t.uid.0)?);
        let a = self.account_mut(t.account)?;
        a.used_bytes += size as u64;
        a.used_messages += 1;
        Ok(())
    }

    fn drop_mailbox(&mut self, account: AccountId, mailbox: MailboxId) -> Result<(), ApplyError> {
        let a = self.account_mut(account)?;
        let Some(mb) = a.mailboxes.remove(&mailbox) else {
            return bad("no such mailbox");
        };
        a.by_name.remove(&mb.name);
        let entries: Vec<Entry> = mb.index.iter().collect();
        self.release(account, &entries)
    }

    /// The index entries `m` will remove from a mailbox (EXPUNGE, the source of a MOVE), with
    /// where their bodies lie now: what [`crate::retired`] keeps for readers behind.
    pub fn removed_by(&self, m: &Mutation) -> Vec<(crate::retired::Key, Entry, Option<BlobLoc>)> {
        let (account, mailbox, uids): (AccountId, MailboxId, Vec<Uid>) = match m {
            Mutation::Expunge {
                account,
                mailbox,
                uids,
            } => (*account, *mailbox, uids.clone()),
            Mutation::Move {
                account,
                from,
                items,
                ..
            } => (*account, *from, items.iter().map(|(u, _)| *u).collect()),
            _ => return Vec::new(),
        };
        let Some(mb) = self
            .accounts
            .get(&account)
            .and_then(|a| a.mailboxes.get(&mailbox))
        else {
            return Vec::new();
        };
        let mut uids = uids;
        if !uids.is_sorted() {
            uids.sort_unstable();
        }
        mb.index
            .get_sorted(&uids)
            .map(|e| ((account.0, mailbox.0, e.uid), e, self.blobs.get(e.blob)))
            .collect()
    }

    /// Drops the references of removed entries; a blob nobody refers to is dead.
    fn release(&mut self, account: AccountId, removed: &[Entry]) -> Result<(), ApplyError> {
        for e in removed {
            let Some(mut l) = self.blobs.get(e.blob) else {
                return bad("entry refers to unknown blob");
            };
            l.refs = l.refs.saturating_sub(1);
            if l.refs == 0 {
                self.blobs.remove(l.id);
                self.sub_live(l.segment, l.record_len);
            } else {
                self.blobs.set(l);
            }
        }
        let a = self.account_mut(account)?;
        a.used_bytes = a
            .used_bytes
            .saturating_sub(removed.iter().map(|e| e.size as u64).sum());
        a.used_messages = a.used_messages.saturating_sub(removed.len() as u64);
        Ok(())
    }

    fn sub_live(&mut self, segment: u32, len: u32) {
        if let Some(v) = self.segment_live.get_mut(&segment) {
            *v = v.saturating_sub(len as u64);
            if *v == 0 {
                self.segment_live.remove(&segment);
            }
        }
    }

    fn account_mut(&mut self, id: AccountId) -> Result<&mut AccountState, ApplyError> {
        match self.accounts.get_mut(&id) {
            Some(a) => Ok(a),
            None => bad(format!("no account {id}")),
        }
    }

    fn mailbox_mut(
        &mut self,
        account: AccountId,
        id: MailboxId,
    ) -> Result<&mut MailboxState, ApplyError> {
        match self.account_mut(account)?.mailboxes.get_mut(&id) {
            Some(m) => Ok(m),
            None => bad(format!("no mailbox {id} in account {account}")),
        }
    }
}
