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
use std::hash::{BuildHasherDefault, Hasher};
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

/// Hashes a base position for `patch`: the positions are small integers chosen by nobody
/// outside, so a multiply is enough (SipHash, the default, was a tenth of a STORE's time).
#[derive(Default)]
pub struct PositionHasher(u64);

impl Hasher for PositionHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Patch = HashMap<u32, Entry, BuildHasherDefault<PositionHasher>>;

/// Patches below this many entries never make an index copy its base (see
/// [`MailboxIndex::materialize`]).
const MATERIALIZE_MIN: usize = 1024;

#[derive(Debug, Default)]
pub struct MailboxIndex {
    base: Option<BaseRef>,
    dead: Vec<u64>,
    dead_count: usize,
    patch: Patch,
    tail: Vec<Entry>,
}

/// The first position at or after `from` whose UID is at least `uid`, in a slice sorted by
/// UID: an exponential then binary search, so a walk over k UIDs of n entries costs
/// O(k log(n/k)), a dense walk O(n).
fn gallop<T>(items: &[T], from: usize, uid: u32, key: impl Fn(&T) -> u32) -> usize {
    let mut lo = from;
    let mut step = 1;
    let mut hi = from;
    while hi < items.len() && key(&items[hi]) < uid {
        lo = hi + 1;
        hi = from + step;
        step *= 2;
    }
    let hi = hi.min(items.len());
    lo + items[lo..hi].partition_point(|e| key(e) < uid)
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
        if self.patch.is_empty() {
            return Entry::from(&self.base()[pos]);
        }
        match self.patch.get(&(pos as u32)) {
            Some(e) => *e,
            None => Entry::from(&self.base()[pos]),
        }
    }

    /// The entries of `uids` (ascending) that exist, in order, found in one walk (see
    /// [`gallop`]) instead of a search per UID.
    pub fn get_sorted<'a>(&'a self, uids: &'a [Uid]) -> impl Iterator<Item = Entry> + 'a {
        let base = self.base();
        let (mut b, mut t) = (0, 0);
        uids.iter().filter_map(move |&u| {
            b = gallop(base, b, u.0, |e| e.uid.to_native());
            if b < base.len() && base[b].uid.to_native() == u.0 {
                return (!self.is_dead(b)).then(|| self.base_entry(b));
            }
            t = gallop(&self.tail, t, u.0, |e| e.uid);
            self.tail.get(t).filter(|e| e.uid == u.0).copied()
        })
    }

    /// Replaces the entries with these UIDs (ascending) in one walk; UIDs not in the index
    /// are ignored.
    pub fn replace_sorted(&mut self, entries: &[Entry]) {
        if self.base.is_some()
            && self.patch.len() + entries.len() > self.base().len() / 4 + MATERIALIZE_MIN
        {
            self.materialize();
        }
        let (mut b, mut t) = (0, 0);
        for e in entries {
            let base = self.base();
            b = gallop(base, b, e.uid, |x| x.uid.to_native());
            if b < base.len() && base[b].uid.to_native() == e.uid {
                if !self.is_dead(b) {
                    self.patch.insert(b as u32, *e);
                }
                continue;
            }
            t = gallop(&self.tail, t, e.uid, |x| x.uid);
            if let Some(x) = self.tail.get_mut(t).filter(|x| x.uid == e.uid) {
                *x = *e;
            }
        }
    }

    /// Copies the base out of the checkpoint into `tail`: once a large share of the base is
    /// patched, a sorted vector costs less memory than the patch (40 bytes an entry against
    /// about twice that in a hash map) and a change is a write in place instead of a hash
    /// insert (a STORE on every message of a 200,000-message mailbox spent most of its time
    /// there). The next checkpoint makes a base again.
    fn materialize(&mut self) {
        let mut all = Vec::with_capacity(self.len());
        all.extend(self.iter());
        self.tail = all;
        self.base = None;
        self.dead = Vec::new();
        self.dead_count = 0;
        self.patch = Patch::default();
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
        if self.base.is_some() && self.patch.len() > self.base().len() / 4 + MATERIALIZE_MIN {
            self.materialize();
        }
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
