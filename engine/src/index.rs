//! Per-mailbox message index and the partition's blob table: a checkpoint base read in
//! place, plus the changes since the checkpoint.
//!
//! ```text
//! MailboxIndex = base (archived entries, sorted by UID, never copied)
//!              - dead (bitset of base positions expunged since the checkpoint)
//!              + patch (base positions whose flags/modseq changed: the new entry)
//!              + tail (entries appended since the checkpoint, UIDs above every base UID)
//! ```
//!
//! The next checkpoint folds everything into a new base. Only changed messages cost memory
//! beyond their 40 archived bytes.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use crate::checkpoint::{ArchivedEntry, BlobLoc, Checkpoint, Entry};
use crate::ids::Uid;

/// Positions of one mailbox's entries inside a checkpoint archive.
#[derive(Clone, Debug)]
pub struct BaseRef {
    pub checkpoint: Rc<Checkpoint>,
    pub account_pos: usize,
    pub mailbox_pos: usize,
}

impl BaseRef {
    fn entries(&self) -> &[ArchivedEntry] {
        // The positions were taken from this very archive when the partition was loaded.
        let im = self.checkpoint.image();
        im.accounts[self.account_pos].mailboxes[self.mailbox_pos]
            .entries
            .as_slice()
    }
}

#[derive(Debug, Default)]
pub struct MailboxIndex {
    base: Option<BaseRef>,
    dead: Vec<u64>,
    dead_count: usize,
    patch: HashMap<u32, Entry>,
    tail: Vec<Entry>,
}

impl MailboxIndex {
    pub fn with_base(base: BaseRef) -> Self {
        Self {
            base: Some(base),
            ..Self::default()
        }
    }

    fn base(&self) -> &[ArchivedEntry] {
        match &self.base {
            Some(b) => b.entries(),
            None => &[],
        }
    }

    fn is_dead(&self, pos: usize) -> bool {
        self.dead
            .get(pos / 64)
            .is_some_and(|w| w & (1 << (pos % 64)) != 0)
    }

    fn kill(&mut self, pos: usize) {
        if self.dead.is_empty() {
            self.dead = vec![0; self.base().len().div_ceil(64)];
        }
        self.dead[pos / 64] |= 1 << (pos % 64);
        self.dead_count += 1;
        self.patch.remove(&(pos as u32));
    }

    fn base_entry(&self, pos: usize) -> Entry {
        match self.patch.get(&(pos as u32)) {
            Some(e) => *e,
            None => Entry::from(&self.base()[pos]),
        }
    }

    /// The live base position holding `uid`.
    fn base_pos(&self, uid: Uid) -> Option<usize> {
        let base = self.base();
        let pos = base
            .binary_search_by_key(&uid.0, |e| e.uid.to_native())
            .ok()?;
        (!self.is_dead(pos)).then_some(pos)
    }

    pub fn len(&self) -> usize {
        self.base().len() - self.dead_count + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, uid: Uid) -> Option<Entry> {
        if let Some(pos) = self.base_pos(uid) {
            return Some(self.base_entry(pos));
        }
        let i = self.tail.binary_search_by_key(&uid.0, |e| e.uid).ok()?;
        Some(self.tail[i])
    }

    /// Replaces the entry with `e.uid`; false if there is none.
    pub fn replace(&mut self, e: Entry) -> bool {
        if let Some(pos) = self.base_pos(Uid(e.uid)) {
            self.patch.insert(pos as u32, e);
            return true;
        }
        match self.tail.binary_search_by_key(&e.uid, |t| t.uid) {
            Ok(i) => {
                self.tail[i] = e;
                true
            }
            Err(_) => false,
        }
    }

    /// Appends an entry; its UID must be above every UID in the index.
    pub fn push(&mut self, e: Entry) {
        debug_assert!(self.last_uid().is_none_or(|u| u.0 < e.uid));
        self.tail.push(e);
    }

    pub fn last_uid(&self) -> Option<Uid> {
        if let Some(e) = self.tail.last() {
            return Some(Uid(e.uid));
        }
        let base = self.base();
        (0..base.len())
            .rev()
            .find(|&p| !self.is_dead(p))
            .map(|p| Uid(base[p].uid.to_native()))
    }

    /// Removes the entries with these UIDs, returning those that existed.
    pub fn remove_many(&mut self, uids: &[Uid]) -> Vec<Entry> {
        let mut removed = Vec::with_capacity(uids.len());
        let mut from_tail = HashSet::new();
        for &uid in uids {
            if let Some(pos) = self.base_pos(uid) {
                removed.push(self.base_entry(pos));
                self.kill(pos);
            } else if self.tail.binary_search_by_key(&uid.0, |e| e.uid).is_ok() {
                from_tail.insert(uid.0);
            }
        }
        if !from_tail.is_empty() {
            self.tail.retain(|e| {
                if from_tail.contains(&e.uid) {
                    removed.push(*e);
                    false
                } else {
                    true
                }
            });
        }
        removed
    }

    /// Every entry, in UID order.
    pub fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        self.range(Uid(0), Uid(u32::MAX))
    }

    /// Entries with `lo <= uid <= hi`, in UID order.
    pub fn range(&self, lo: Uid, hi: Uid) -> impl Iterator<Item = Entry> + '_ {
        let base = self.base();
        let start = base.partition_point(|e| e.uid.to_native() < lo.0);
        let end = base.partition_point(|e| e.uid.to_native() <= hi.0);
        let t_start = self.tail.partition_point(|e| e.uid < lo.0);
        let t_end = self.tail.partition_point(|e| e.uid <= hi.0);
        (start..end.max(start))
            .filter(move |&p| !self.is_dead(p))
            .map(move |p| self.base_entry(p))
            .chain(self.tail[t_start..t_end.max(t_start)].iter().copied())
    }

    /// Bytes of memory this index holds beyond the checkpoint archive.
    pub fn overlay_bytes(&self) -> usize {
        self.dead.capacity() * 8
            + self.patch.capacity() * (4 + std::mem::size_of::<Entry>() + 8)
            + self.tail.capacity() * std::mem::size_of::<Entry>()
    }
}

/// Every live blob of a partition: id → location and reference count.
#[derive(Debug, Default)]
pub struct BlobTable {
    base: Option<Rc<Checkpoint>>,
    /// Changes since the checkpoint: `None` marks a base blob that died.
    overlay: HashMap<u64, Option<BlobLoc>>,
    live: usize,
}

impl BlobTable {
    pub fn with_base(checkpoint: Rc<Checkpoint>) -> Self {
        let live = checkpoint.image().blobs.len();
        Self {
            base: Some(checkpoint),
            overlay: HashMap::new(),
            live,
        }
    }

    fn base_get(&self, id: u64) -> Option<BlobLoc> {
        let base = self.base.as_ref()?.image().blobs.as_slice();
        let i = base.binary_search_by_key(&id, |b| b.id.to_native()).ok()?;
        Some(BlobLoc::from(&base[i]))
    }

    pub fn get(&self, id: u64) -> Option<BlobLoc> {
        match self.overlay.get(&id) {
            Some(v) => *v,
            None => self.base_get(id),
        }
    }

    pub fn set(&mut self, loc: BlobLoc) {
        if self.get(loc.id).is_none() {
            self.live += 1;
        }
        self.overlay.insert(loc.id, Some(loc));
    }

    pub fn remove(&mut self, id: u64) {
        if self.get(id).is_some() {
            self.live -= 1;
        }
        if self.base_get(id).is_some() {
            self.overlay.insert(id, None);
        } else {
            self.overlay.remove(&id);
        }
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Every live blob, in id order.
    pub fn sorted(&self) -> Vec<BlobLoc> {
        let mut v: Vec<BlobLoc> = Vec::with_capacity(self.live);
        if let Some(ck) = &self.base {
            v.extend(
                ck.image()
                    .blobs
                    .iter()
                    .filter(|b| !self.overlay.contains_key(&b.id.to_native()))
                    .map(BlobLoc::from),
            );
        }
        v.extend(self.overlay.values().flatten().copied());
        v.sort_unstable_by_key(|b| b.id);
        v
    }

    pub fn overlay_bytes(&self) -> usize {
        self.overlay.capacity() * (8 + std::mem::size_of::<Option<BlobLoc>>() + 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(uid: u32) -> Entry {
        Entry {
            uid,
            size: uid * 10,
            flags: 0,
            modseq: 1,
            internal_date: 0,
            blob: uid as u64,
        }
    }

    #[test]
    fn overlay_behaves_like_a_sorted_map() {
        let mut ix = MailboxIndex::default();
        for u in [1, 2, 5, 9] {
            ix.push(e(u));
        }
        assert_eq!(ix.len(), 4);
        let mut changed = e(5);
        changed.flags = 7;
        assert!(ix.replace(changed));
        assert!(!ix.replace(e(6)));
        assert_eq!(ix.get(Uid(5)).unwrap().flags, 7);
        let gone = ix.remove_many(&[Uid(2), Uid(3)]);
        assert_eq!(gone.len(), 1);
        let uids: Vec<u32> = ix.iter().map(|e| e.uid).collect();
        assert_eq!(uids, vec![1, 5, 9]);
        let r: Vec<u32> = ix.range(Uid(2), Uid(9)).map(|e| e.uid).collect();
        assert_eq!(r, vec![5, 9]);
        assert_eq!(ix.last_uid(), Some(Uid(9)));
    }
}
