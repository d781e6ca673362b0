//! Expunged messages kept readable for the readers that have not been told yet.
//!
//! An IMAP session learns of another session's EXPUNGE only at its next command that allows
//! it, and until then its sequence numbers still name the message: RFC 2180 section 4.1.1
//! lets it go on fetching it, as Dovecot does. So while some reader may still hold a picture
//! from before an expunge, the removed index entries are kept here, and the bodies that
//! died with them keep their place in the log (checkpoints count their segments as needed).
//!
//! Readers hold a [`ReaderMark`]: the retirement sequence up to which they were told of
//! every expunge in what they show. An entry is dropped once no mark is below it, or when
//! it is older than [`MAX_AGE`] or more than [`MAX_ENTRIES`] are kept (a session that never
//! catches up must not hold disk space for ever: its FETCH then fails as it did before).
//! Nothing here is written down: after a restart no session holds a picture.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::checkpoint::{BlobLoc, Entry};

/// How long an expunged message stays readable for a reader that has not caught up (IMAP's
/// inactivity timeout is 30 minutes, RFC 9051 section 5.4).
pub const MAX_AGE: Duration = Duration::from_secs(30 * 60);
/// How many expunged messages are kept at most (about 100 bytes each).
pub const MAX_ENTRIES: usize = 250_000;
/// How many bytes of log the bodies that died with kept entries may hold back from
/// compaction: a reader that stays behind must not keep a busy partition's space.
pub const MAX_DEAD_BYTES: u64 = 1 << 30;

/// An expunged message: (account, mailbox, UID) in the partition's ids.
pub type Key = (u32, u32, u32);

#[derive(Debug, Default)]
pub struct Retired {
    /// Retirements so far; each removed entry gets the next number.
    seq: u64,
    /// Marks of live readers: sequence → how many readers are there.
    marks: BTreeMap<u64, usize>,
    order: VecDeque<(u64, Instant, Key)>,
    entries: HashMap<Key, Kept>,
    /// Bodies that died with kept entries: blob id → (where, how many entries keep it).
    dead: HashMap<u64, (BlobLoc, usize)>,
    /// Their records' bytes.
    dead_bytes: u64,
}

#[derive(Debug, Clone, Copy)]
struct Kept {
    entry: Entry,
    /// The retirement that kept it (a UID retired again replaces it).
    at: u64,
    /// Set when the body died with the entry (no other mailbox refers to it).
    dead_blob: bool,
}

impl Retired {
    /// Whether any reader could still need what is removed now.
    pub fn has_readers(&self) -> bool {
        !self.marks.is_empty()
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Keeps a removed entry; `dead` is where its body lies when the body died with it.
    pub fn retire(&mut self, key: Key, entry: Entry, dead: Option<BlobLoc>, now: Instant) {
        self.seq += 1;
        if let Some(loc) = dead {
            let e = self.dead.entry(loc.id).or_insert((loc, 0));
            if e.1 == 0 {
                self.dead_bytes += loc.record_len as u64;
            }
            e.1 += 1;
        }
        let kept = Kept {
            entry,
            at: self.seq,
            dead_blob: dead.is_some(),
        };
        if let Some(old) = self.entries.insert(key, kept) {
            // The same UID again (a move back and forth): the older body reference goes.
            self.unref(old);
        }
        self.order.push_back((self.seq, now, key));
        self.prune(now);
    }

    /// The expunged message, if it is still kept.
    pub fn entry(&self, key: Key) -> Option<Entry> {
        self.entries.get(&key).map(|k| k.entry)
    }

    /// Where a body that died with a kept entry lies.
    pub fn dead_blob(&self, id: u64) -> Option<BlobLoc> {
        self.dead.get(&id).map(|(loc, _)| *loc)
    }

    /// The segments holding bodies that died with kept entries: they may not be deleted.
    pub fn segments(&self) -> impl Iterator<Item = u64> + '_ {
        self.dead.values().map(|(loc, _)| loc.segment as u64)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn add_mark(&mut self, at: u64) {
        *self.marks.entry(at).or_default() += 1;
    }

    fn remove_mark(&mut self, at: u64) {
        if let Some(n) = self.marks.get_mut(&at) {
            *n -= 1;
            if *n == 0 {
                self.marks.remove(&at);
            }
        }
    }

    fn unref(&mut self, old: Kept) {
        if !old.dead_blob {
            return;
        }
        if let Some((loc, n)) = self.dead.get_mut(&old.entry.blob) {
            *n -= 1;
            if *n == 0 {
                self.dead_bytes -= loc.record_len as u64;
                self.dead.remove(&old.entry.blob);
            }
        }
    }

    /// Drops what no reader needs, what is too old, and what is over the limit.
    pub fn prune(&mut self, now: Instant) {
        let needed_above = self.marks.keys().next().copied().unwrap_or(u64::MAX);
        while let Some(&(at, when, key)) = self.order.front() {
            let unneeded = at <= needed_above || self.marks.is_empty();
            let expired = now.saturating_duration_since(when) > MAX_AGE;
            let over = self.order.len() > MAX_ENTRIES || self.dead_bytes > MAX_DEAD_BYTES;
            if !(unneeded || expired || over) {
                break;
            }
            self.order.pop_front();
            // A later retirement of the same key replaced this one: that one stays.
            if self.entries.get(&key).is_some_and(|k| k.at == at) {
                if let Some(old) = self.entries.remove(&key) {
                    self.unref(old);
                }
            }
        }
    }
}

/// A reader's claim on expunged messages it may still show. Dropping it releases them.
pub struct ReaderMark {
    retired: Rc<RefCell<Retired>>,
    at: Cell<u64>,
}

impl ReaderMark {
    /// A mark for a reader whose picture is the store's now.
    pub fn new(retired: Rc<RefCell<Retired>>) -> Self {
        let at = {
            let mut r = retired.borrow_mut();
            let at = r.seq();
            r.add_mark(at);
            at
        };
        Self {
            retired,
            at: Cell::new(at),
        }
    }

    /// The reader was told of every expunge up to `seq` (from `Retired::seq` when it read
    /// the store): what was retired before no longer needs keeping for it.
    pub fn caught_up(&self, seq: u64) {
        let old = self.at.get();
        if seq <= old {
            return;
        }
        let mut r = self.retired.borrow_mut();
        r.remove_mark(old);
        r.add_mark(seq);
        self.at.set(seq);
        r.prune(Instant::now());
    }
}

impl Drop for ReaderMark {
    fn drop(&mut self) {
        if let Ok(mut r) = self.retired.try_borrow_mut() {
            r.remove_mark(self.at.get());
            r.prune(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uid: u32, blob: u64) -> Entry {
        Entry {
            uid,
            size: 10,
            flags: 0,
            modseq: 1,
            internal_date: 0,
            blob,
        }
    }

    fn loc(id: u64, segment: u32) -> BlobLoc {
        BlobLoc {
            id,
            offset: 0,
            segment,
            record_len: 64,
            raw_len: 10,
            refs: 0,
        }
    }

    #[test]
    fn kept_while_a_reader_is_behind_and_dropped_when_it_catches_up() {
        let r = Rc::new(RefCell::new(Retired::default()));
        let now = Instant::now();
        let behind = ReaderMark::new(r.clone());
        r.borrow_mut()
            .retire((1, 1, 5), entry(5, 50), Some(loc(50, 3)), now);
        let later = ReaderMark::new(r.clone());
        r.borrow_mut().retire((1, 1, 6), entry(6, 60), None, now);
        assert_eq!(r.borrow().entry((1, 1, 5)).unwrap().blob, 50);
        assert_eq!(r.borrow().dead_blob(50).unwrap().segment, 3);
        assert_eq!(r.borrow().segments().collect::<Vec<_>>(), vec![3]);
        // The reader that came after the first retirement holds only the second.
        let seq = r.borrow().seq();
        behind.caught_up(seq);
        assert!(r.borrow().entry((1, 1, 5)).is_none());
        assert!(r.borrow().dead_blob(50).is_none());
        assert!(r.borrow().entry((1, 1, 6)).is_some());
        drop(later);
        assert!(r.borrow().is_empty());
        drop(behind);
        assert!(!r.borrow().has_readers());
    }

    #[test]
    fn nothing_is_kept_without_readers_or_past_its_age() {
        let r = Rc::new(RefCell::new(Retired::default()));
        let now = Instant::now();
        r.borrow_mut().retire((1, 1, 1), entry(1, 1), None, now);
        assert!(r.borrow().is_empty());
        let _m = ReaderMark::new(r.clone());
        r.borrow_mut()
            .retire((1, 1, 2), entry(2, 2), Some(loc(2, 1)), now);
        assert_eq!(r.borrow().len(), 1);
        r.borrow_mut().prune(now + MAX_AGE + Duration::from_secs(1));
        assert!(r.borrow().is_empty());
        assert!(r.borrow().dead_blob(2).is_none());
    }

    #[test]
    fn dead_bodies_are_kept_up_to_a_byte_limit() {
        let r = Rc::new(RefCell::new(Retired::default()));
        let now = Instant::now();
        let _m = ReaderMark::new(r.clone());
        let big = |id: u64| BlobLoc {
            record_len: (MAX_DEAD_BYTES / 3 + 1) as u32,
            ..loc(id, 1)
        };
        for id in 1..=3 {
            r.borrow_mut()
                .retire((1, 1, id as u32), entry(id as u32, id), Some(big(id)), now);
        }
        // The oldest went to stay under the limit.
        assert!(r.borrow().entry((1, 1, 1)).is_none());
        assert!(r.borrow().entry((1, 1, 3)).is_some());
        assert!(r.borrow().dead_bytes <= MAX_DEAD_BYTES);
    }

    #[test]
    fn a_uid_retired_twice_keeps_the_latest_and_its_body() {
        let r = Rc::new(RefCell::new(Retired::default()));
        let now = Instant::now();
        let m = ReaderMark::new(r.clone());
        r.borrow_mut()
            .retire((1, 1, 7), entry(7, 70), Some(loc(70, 1)), now);
        let m2 = ReaderMark::new(r.clone());
        r.borrow_mut()
            .retire((1, 1, 7), entry(7, 71), Some(loc(71, 2)), now);
        assert!(r.borrow().dead_blob(70).is_none());
        drop(m);
        // The first retirement is pruned; the entry of the second stays for m2.
        assert_eq!(r.borrow().entry((1, 1, 7)).unwrap().blob, 71);
        assert!(r.borrow().dead_blob(71).is_some());
        drop(m2);
        assert!(r.borrow().is_empty());
    }
}
