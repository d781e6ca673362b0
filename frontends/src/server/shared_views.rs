//! Mailbox pictures that IMAP sessions on one shard share: a session that selects a mailbox
//! another session (or its own previous SELECT) holds at the same state takes that picture
//! instead of reading every message from the index again, so SELECT of a big mailbox costs
//! the same as of a small one. Only weak references are kept: a picture lives as long as a
//! session holds it, and a session that changes its picture gets its own copy first.

use std::collections::HashMap;
use std::rc::{Rc, Weak};

use crate::imap::view::Msg;

/// The state of a mailbox a picture shows: every change to a mailbox raises its highest
/// mod-sequence, so equal stamps mean equal messages, flags and mod-sequences.
pub use crate::imap::session::Stamp;

/// Account and UIDVALIDITY: one mailbox of an account for its life.
type Key = (String, u32);

/// Pictures by mailbox, with the state each shows.
#[derive(Default)]
pub struct SharedViews {
    map: HashMap<Key, (Stamp, Weak<Vec<Msg>>)>,
}

/// Entries past this many are swept of pictures no session holds any more.
const SWEEP_AT: usize = 1024;

impl SharedViews {
    pub fn get(&self, account: &str, uidvalidity: u32, stamp: Stamp) -> Option<Rc<Vec<Msg>>> {
        // A lookup by a borrowed key would need a second map type; the clone is a few
        // bytes against the mailbox read it saves.
        let (have, msgs) = self.map.get(&(account.to_string(), uidvalidity))?;
        (*have == stamp).then(|| msgs.upgrade()).flatten()
    }

    pub fn put(&mut self, account: &str, uidvalidity: u32, stamp: Stamp, msgs: &Rc<Vec<Msg>>) {
        let key = (account.to_string(), uidvalidity);
        if let Some((have, old)) = self.map.get(&key) {
            if *have == stamp && old.as_ptr() == Rc::as_ptr(msgs) {
                return;
            }
        }
        self.map.insert(key, (stamp, Rc::downgrade(msgs)));
        if self.map.len() > SWEEP_AT {
            self.map.retain(|_, (_, w)| w.strong_count() > 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(m: u64) -> Stamp {
        Stamp {
            highest_modseq: m,
            uidnext: 3,
            messages: 2,
        }
    }

    #[test]
    fn shares_only_the_same_state_while_held() {
        let mut v = SharedViews::default();
        let msgs = Rc::new(vec![
            Msg {
                uid: 1,
                flags: 0,
                modseq: 1,
            },
            Msg {
                uid: 2,
                flags: 0,
                modseq: 2,
            },
        ]);
        v.put("a", 7, stamp(2), &msgs);
        assert!(Rc::ptr_eq(&v.get("a", 7, stamp(2)).unwrap(), &msgs));
        assert!(v.get("a", 7, stamp(3)).is_none());
        assert!(v.get("a", 8, stamp(2)).is_none());
        assert!(v.get("b", 7, stamp(2)).is_none());
        drop(msgs);
        assert!(v.get("a", 7, stamp(2)).is_none());
        // Sweeping keeps the map bounded by the pictures held.
        let held: Vec<Rc<Vec<Msg>>> = (0..SWEEP_AT as u32 + 10)
            .map(|i| {
                let m = Rc::new(Vec::new());
                v.put("a", 100 + i, stamp(1), &m);
                m
            })
            .collect();
        drop(held);
        let m = Rc::new(Vec::new());
        v.put("c", 1, stamp(1), &m);
        assert_eq!(v.map.len(), 1);
        assert!(v.get("c", 1, stamp(1)).is_some());
    }
}
