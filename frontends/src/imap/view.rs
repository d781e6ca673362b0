//! The selected mailbox as one session sees it: message sequence numbers, the flags the
//! client was last told, and \Recent; and the untagged updates that bring the client from
//! that picture to the store's (RFC 9051 section 7.4 and 5.2: EXPUNGE, EXISTS, FETCH FLAGS;
//! RFC 7162 VANISHED).
//!
//! Sequence numbers only change when the client is told: while a command forbids EXPUNGE
//! responses (FETCH, STORE, SEARCH by sequence number), removed messages stay in the view,
//! marked gone, and are reported at the next command that allows it.

use std::collections::BTreeSet;
use std::rc::Rc;

use super::command::{SeqBound, SequenceSet};
use super::encode;

/// One message as the client knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msg {
    pub uid: u32,
    pub flags: u64,
    pub modseq: u64,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SyncOptions {
    /// EXPUNGE (or VANISHED) responses may be sent now.
    pub expunge: bool,
    /// Report expunges as `VANISHED` (QRESYNC enabled).
    pub vanished: bool,
    /// Include `MODSEQ` in flag updates (CONDSTORE enabled).
    pub modseq: bool,
    /// Include `UID` in flag updates (QRESYNC requires it; harmless otherwise).
    pub uid: bool,
    /// Send `RECENT` counts (IMAP4rev1; IMAP4rev2 has no \Recent).
    pub recent: bool,
}

pub struct View {
    pub mailbox: String,
    pub readonly: bool,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    /// Shared with other sessions' views of the same mailbox at the same state (see
    /// [`Self::snapshot`]) until one of them changes it.
    msgs: Rc<Vec<Msg>>,
    /// UIDs removed from the store but not yet reported (positions still occupied).
    gone: BTreeSet<u32>,
    recent: BTreeSet<u32>,
}

/// A sequence set that names messages the mailbox does not have.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidSet;

impl View {
    /// `recent_above`: messages with a higher UID are \Recent to this session.
    pub fn new(
        mailbox: String,
        readonly: bool,
        uidvalidity: u32,
        uidnext: u32,
        highest_modseq: u64,
        msgs: Rc<Vec<Msg>>,
        recent_above: u32,
    ) -> Self {
        let first_recent = msgs.partition_point(|m| m.uid <= recent_above);
        let recent = msgs[first_recent..].iter().map(|m| m.uid).collect();
        Self {
            mailbox,
            readonly,
            uidvalidity,
            uidnext,
            highest_modseq,
            msgs,
            gone: BTreeSet::new(),
            recent,
        }
    }

    pub fn len(&self) -> u32 {
        self.msgs.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    pub fn recent_count(&self) -> u32 {
        self.recent.len() as u32
    }

    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.contains(&uid)
    }

    pub fn is_gone(&self, uid: u32) -> bool {
        self.gone.contains(&uid)
    }

    /// Messages removed from the store and not yet reported.
    pub fn has_gone(&self) -> bool {
        !self.gone.is_empty()
    }

    /// The messages, to share with a view another session makes of the mailbox at the same
    /// state, when this view is the store's picture at [`Self::highest_modseq`] (nothing
    /// removed and unreported). The sharing ends at the first change either makes.
    pub fn snapshot(&self) -> Option<&Rc<Vec<Msg>>> {
        self.gone.is_empty().then_some(&self.msgs)
    }

    /// Message `seq` (1-based).
    pub fn get(&self, seq: u32) -> Option<Msg> {
        self.msgs.get(seq.checked_sub(1)? as usize).copied()
    }

    /// The picture as it is now, shared (cheap to keep while the view moves on).
    pub fn pictured(&self) -> Rc<Vec<Msg>> {
        self.msgs.clone()
    }

    pub fn messages(&self) -> &[Msg] {
        &self.msgs
    }

    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.msgs
            .binary_search_by_key(&uid, |m| m.uid)
            .ok()
            .map(|i| i as u32 + 1)
    }

    /// The first unseen message's sequence number (SELECT's `[UNSEEN n]`).
    pub fn first_unseen(&self, seen_bit: u64) -> Option<u32> {
        self.msgs
            .iter()
            .position(|m| m.flags & seen_bit == 0)
            .map(|i| i as u32 + 1)
    }

    /// The sequence numbers a set names, ascending and without repeats. By sequence number,
    /// a number past the end is an error (RFC 9051 section 9: "invalid message sequence
    /// number"); by UID, UIDs not in the mailbox are ignored. `*` is the last message (UID
    /// mode: its UID), so `n:*` always includes the last one.
    pub fn resolve(
        &self,
        set: &SequenceSet,
        by_uid: bool,
        saved: &[u32],
    ) -> Result<Vec<u32>, InvalidSet> {
        let ranges: Vec<(u32, u32)> = match set {
            SequenceSet::Saved => {
                // `$` holds UIDs (RFC 5182 says the server may keep either; UIDs survive
                // expunges).
                let mut v: Vec<u32> = saved.iter().filter_map(|&u| self.seq_of(u)).collect();
                v.sort_unstable();
                v.dedup();
                return Ok(v);
            }
            SequenceSet::Ranges(r) => r
                .iter()
                .map(|&(a, b)| {
                    let star = if by_uid {
                        self.msgs.last().map_or(0, |m| m.uid)
                    } else {
                        self.len()
                    };
                    let v = |x: SeqBound| match x {
                        SeqBound::Num(n) => n,
                        SeqBound::Star => star,
                    };
                    let (a, b) = (v(a), v(b));
                    (a.min(b), a.max(b))
                })
                .collect(),
        };
        // Merged first, so `1:*,1:*,...` costs one range, not one per repetition.
        let mut ranges = ranges;
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        let ranges = merged;
        let mut out = Vec::new();
        if by_uid {
            for (lo, hi) in ranges {
                let start = self.msgs.partition_point(|m| m.uid < lo);
                let end = self.msgs.partition_point(|m| m.uid <= hi);
                out.extend((start..end).map(|i| i as u32 + 1));
            }
        } else {
            for (lo, hi) in ranges {
                if lo == 0 || hi > self.len() {
                    return Err(InvalidSet);
                }
                out.extend(lo..=hi);
            }
        }
        Ok(out)
    }

    /// Records flags the client was just told (its own STORE's FETCH responses).
    pub fn set_flags(&mut self, uid: u32, flags: u64, modseq: u64) {
        if let Ok(i) = self.msgs.binary_search_by_key(&uid, |m| m.uid) {
            let msgs = Rc::make_mut(&mut self.msgs);
            msgs[i].flags = flags;
            msgs[i].modseq = modseq;
        }
    }

    /// [`Self::set_flags`] for many messages, given in ascending UID order, in one walk.
    pub fn set_flags_sorted(&mut self, changed: impl IntoIterator<Item = Msg>) {
        let mut changed = changed.into_iter().peekable();
        if changed.peek().is_none() {
            return;
        }
        let msgs = Rc::make_mut(&mut self.msgs);
        let mut i = 0;
        for c in changed {
            // Galloping from the last match: a dense walk is linear, a sparse one
            // logarithmic per message.
            let mut step = 1;
            while i + step < msgs.len() && msgs[i + step].uid < c.uid {
                i += step;
                step *= 2;
            }
            let end = (i + step + 1).min(msgs.len());
            i += msgs[i..end].partition_point(|m| m.uid < c.uid);
            match msgs.get_mut(i) {
                Some(m) if m.uid == c.uid => {
                    m.flags = c.flags;
                    m.modseq = c.modseq;
                }
                Some(_) => {}
                None => break,
            }
        }
    }

    /// After this session's own change at `modseq`, which the view has applied: when the
    /// mailbox's change before it (`previous`) was already in the view, the view is whole
    /// up to `modseq` and the next sync need not compare every message.
    pub fn caught_up(&mut self, previous: u64, modseq: u64) {
        if previous <= self.highest_modseq && modseq > self.highest_modseq {
            self.highest_modseq = modseq;
        }
    }

    /// Compares the view with the store's `current` messages (ascending UIDs) and writes
    /// the untagged responses that bring the client up to date. `claimed_above`: new
    /// messages above this UID are \Recent to this session (from `Partition::claim_recent`).
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        current: &[Msg],
        uidnext: u32,
        highest_modseq: u64,
        claimed_above: Option<u32>,
        opt: SyncOptions,
        flags: &dyn Fn(u64, &mut Vec<u8>),
        out: &mut Vec<u8>,
    ) {
        let old_len = self.msgs.len();
        let old_recent = self.recent.len();
        let mut next: Vec<Msg> = Vec::with_capacity(current.len().max(old_len));
        let mut vanished: Vec<u32> = Vec::new();
        let mut removed = 0;
        // Flag updates carry final sequence numbers, so they follow every removal.
        let mut updates = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < self.msgs.len() {
            let m = self.msgs[i];
            match current.get(j) {
                Some(c) if c.uid == m.uid => {
                    if c.flags != m.flags || c.modseq != m.modseq {
                        if c.flags != m.flags || opt.modseq {
                            fetch_flags(&mut updates, next.len() as u32 + 1, c, opt, flags);
                        }
                        next.push(*c);
                    } else {
                        next.push(m);
                    }
                    i += 1;
                    j += 1;
                }
                Some(c) if c.uid < m.uid => j += 1, // not ours to show (older than the view)
                _ => {
                    // Gone from the store.
                    if opt.expunge {
                        removed += 1;
                        if opt.vanished {
                            vanished.push(m.uid);
                        } else {
                            out.extend_from_slice(b"* ");
                            encode::number(out, next.len() as u64 + 1);
                            out.extend_from_slice(b" EXPUNGE\r\n");
                        }
                        self.gone.remove(&m.uid);
                        self.recent.remove(&m.uid);
                    } else {
                        self.gone.insert(m.uid);
                        next.push(m);
                    }
                    i += 1;
                }
            }
        }
        let last = next.last().map_or(0, |m| m.uid);
        for c in &current[j..] {
            if c.uid > last {
                if claimed_above.is_some_and(|a| c.uid > a) {
                    self.recent.insert(c.uid);
                }
                next.push(*c);
            }
        }
        if !vanished.is_empty() {
            out.extend_from_slice(b"* VANISHED ");
            out.extend_from_slice(encode::compress_set(&vanished).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&updates);
        // The client now believes the mailbox holds what it had less what was reported
        // removed; anything beyond that is new.
        let believed = old_len - removed;
        if next.len() > believed {
            out.extend_from_slice(b"* ");
            encode::number(out, next.len() as u64);
            out.extend_from_slice(b" EXISTS\r\n");
            if opt.recent && self.recent.len() != old_recent {
                out.extend_from_slice(b"* ");
                encode::number(out, self.recent.len() as u64);
                out.extend_from_slice(b" RECENT\r\n");
            }
        }
        self.msgs = Rc::new(next);
        self.uidnext = uidnext;
        self.highest_modseq = highest_modseq;
    }
}

impl View {
    /// [`Self::sync`] when the store says nothing but new messages came since the view was
    /// last brought up to date (the mailbox's last change to existing messages is not past
    /// [`Self::highest_modseq`]): `new` holds the messages from [`Self::uidnext`] on, and
    /// the cost is theirs, not the mailbox's.
    pub fn sync_new(
        &mut self,
        new: &[Msg],
        uidnext: u32,
        highest_modseq: u64,
        claimed_above: Option<u32>,
        opt: SyncOptions,
        out: &mut Vec<u8>,
    ) {
        let old_recent = self.recent.len();
        let last = self.msgs.last().map_or(0, |m| m.uid);
        let before = self.msgs.len();
        let first_new = new.partition_point(|c| c.uid <= last);
        if first_new < new.len() {
            let msgs = Rc::make_mut(&mut self.msgs);
            for c in &new[first_new..] {
                if claimed_above.is_some_and(|a| c.uid > a) {
                    self.recent.insert(c.uid);
                }
                msgs.push(*c);
            }
        }
        if self.msgs.len() > before {
            out.extend_from_slice(b"* ");
            encode::number(out, self.msgs.len() as u64);
            out.extend_from_slice(b" EXISTS\r\n");
            if opt.recent && self.recent.len() != old_recent {
                out.extend_from_slice(b"* ");
                encode::number(out, self.recent.len() as u64);
                out.extend_from_slice(b" RECENT\r\n");
            }
        }
        self.uidnext = uidnext;
        self.highest_modseq = highest_modseq;
    }
}

/// `* seq FETCH ([UID n ]FLAGS (...)[ MODSEQ (n)])`: a flag update as `opt` asks.
pub(crate) fn fetch_flags(
    out: &mut Vec<u8>,
    seq: u32,
    m: &Msg,
    opt: SyncOptions,
    flags: &dyn Fn(u64, &mut Vec<u8>),
) {
    out.extend_from_slice(b"* ");
    encode::number(out, seq as u64);
    out.extend_from_slice(b" FETCH (");
    if opt.uid {
        out.extend_from_slice(b"UID ");
        encode::number(out, m.uid as u64);
        out.push(b' ');
    }
    out.extend_from_slice(b"FLAGS ");
    flags(m.flags, out);
    if opt.modseq {
        out.extend_from_slice(b" MODSEQ (");
        encode::number(out, m.modseq);
        out.push(b')');
    }
    out.extend_from_slice(b")\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(uid: u32, flags: u64, modseq: u64) -> Msg {
        Msg { uid, flags, modseq }
    }

    fn flags(f: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(if f & 1 != 0 { b"(\\Seen)" } else { b"()" });
    }

    fn view(uids: &[u32]) -> View {
        View::new(
            "INBOX".into(),
            false,
            7,
            uids.last().map_or(1, |u| u + 1),
            1,
            Rc::new(uids.iter().map(|&u| m(u, 0, 1)).collect()),
            uids.last().copied().unwrap_or(0),
        )
    }

    fn sync(v: &mut View, cur: &[Msg], opt: SyncOptions) -> String {
        let mut out = Vec::new();
        let next = cur.last().map_or(1, |c| c.uid + 1);
        v.sync(cur, next, 9, Some(v.uidnext - 1), opt, &flags, &mut out);
        String::from_utf8(out).unwrap()
    }

    const ALL: SyncOptions = SyncOptions {
        expunge: true,
        vanished: false,
        modseq: false,
        uid: false,
        recent: true,
    };

    #[test]
    fn expunges_are_numbered_as_the_client_sees_them() {
        let mut v = view(&[1, 2, 3, 4, 5]);
        let out = sync(&mut v, &[m(1, 0, 1), m(3, 0, 1), m(5, 0, 1)], ALL);
        // 2 is message 2; after it goes, 4 is message 3.
        assert_eq!(out, "* 2 EXPUNGE\r\n* 3 EXPUNGE\r\n");
        assert_eq!(v.len(), 3);
        assert_eq!(v.seq_of(5), Some(3));
    }

    #[test]
    fn new_messages_flags_and_deferred_expunges() {
        let mut v = view(&[1, 2]);
        let no_expunge = SyncOptions {
            expunge: false,
            ..ALL
        };
        let out = sync(&mut v, &[m(2, 1, 5), m(3, 0, 6)], no_expunge);
        assert_eq!(
            out,
            "* 2 FETCH (FLAGS (\\Seen))\r\n* 3 EXISTS\r\n* 1 RECENT\r\n"
        );
        assert!(v.is_gone(1));
        assert_eq!(v.len(), 3);
        let out = sync(&mut v, &[m(2, 1, 5), m(3, 0, 6)], ALL);
        assert_eq!(out, "* 1 EXPUNGE\r\n");
        assert_eq!(v.len(), 2);
        let vanished = SyncOptions {
            vanished: true,
            modseq: true,
            uid: true,
            ..ALL
        };
        let out = sync(&mut v, &[m(3, 1, 8), m(4, 0, 9)], vanished);
        assert_eq!(
            out,
            "* VANISHED 2\r\n* 1 FETCH (UID 3 FLAGS (\\Seen) MODSEQ (8))\r\n* 2 EXISTS\r\n* 2 RECENT\r\n"
        );
        assert_eq!(sync(&mut v, &[m(3, 1, 8), m(4, 0, 9)], vanished), "");
    }

    #[test]
    fn flags_set_in_one_walk_and_new_messages_alone() {
        let uids: Vec<u32> = (1..=1000).filter(|u| u % 3 != 0).collect();
        let mut v = view(&uids);
        // Dense, sparse, and UIDs the view does not hold.
        let changed: Vec<Msg> = [1, 2, 3, 4, 5, 300, 301, 997, 998, 999, 1000, 5000]
            .iter()
            .map(|&u| m(u, 1, 2))
            .collect();
        v.set_flags_sorted(changed.iter().copied());
        for (seq, &u) in uids.iter().enumerate() {
            let want = changed.iter().any(|c| c.uid == u);
            let got = v.get(seq as u32 + 1).unwrap();
            assert_eq!(got.flags == 1 && got.modseq == 2, want, "uid {u}");
        }
        // Only new messages: EXISTS (and RECENT), no comparison of the rest.
        let before = v.len();
        let mut out = Vec::new();
        v.sync_new(
            &[m(1001, 0, 3), m(1002, 0, 4)],
            1003,
            4,
            Some(1000),
            ALL,
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("* {} EXISTS\r\n* 2 RECENT\r\n", before + 2)
        );
        assert_eq!((v.uidnext, v.highest_modseq), (1003, 4));
        // A change of this session's own, after everything before it was seen.
        v.caught_up(4, 6);
        assert_eq!(v.highest_modseq, 6);
        // One after a change the view has not seen: not caught up.
        v.caught_up(8, 9);
        assert_eq!(v.highest_modseq, 6);
    }

    #[test]
    fn sets_resolve_by_sequence_and_uid() {
        let v = view(&[3, 5, 9]);
        let r = |s: &[u8], uid| {
            let mut p = crate::imap::command::P {
                b: s,
                i: 0,
                tag: String::new(),
            };
            v.resolve(&p.seq_set().unwrap(), uid, &[9])
        };
        assert_eq!(r(b"2:*", false), Ok(vec![2, 3]));
        assert_eq!(r(b"*:2", false), Ok(vec![2, 3]));
        assert_eq!(r(b"4", false), Err(InvalidSet));
        assert_eq!(r(b"4:100", true), Ok(vec![2, 3]));
        assert_eq!(r(b"100:*", true), Ok(vec![3]));
        assert_eq!(r(b"1,3,5", true), Ok(vec![1, 2]));
        assert_eq!(r(b"$", true), Ok(vec![3]));
    }
}
