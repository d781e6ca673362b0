//! What IMAP decoded of messages, kept per shard, so SEARCH on headers, SORT, THREAD and
//! FETCH ENVELOPE/BODYSTRUCTURE do not read and decode the same records again and again:
//! whole metadata (structure and envelope) for FETCH, and packed envelopes for the commands
//! that scan a mailbox. Keyed by partition and blob id: a blob's metadata never changes and
//! its id is never reused, so nothing here can go stale.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

type Key = (u32, u64);

pub struct ShardCache<V> {
    budget: usize,
    used: usize,
    map: HashMap<Key, (Rc<V>, usize)>,
    order: VecDeque<Key>,
}

impl<V> ShardCache<V> {
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            used: 0,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, key: Key) -> Option<Rc<V>> {
        self.map.get(&key).map(|(m, _)| m.clone())
    }

    /// `cost`: about what the value holds in memory, with the entry's own bookkeeping.
    pub fn insert(&mut self, key: Key, value: Rc<V>, cost: usize) {
        let cost = cost + 64;
        if cost > self.budget / 8 || self.map.contains_key(&key) {
            return;
        }
        self.used += cost;
        self.map.insert(key, (value, cost));
        self.order.push_back(key);
        // First in, first out: cheap, and what a scan over a mailbox needs.
        while self.used > self.budget {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some((_, c)) = self.map.remove(&old) {
                self.used -= c;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_within_its_budget() {
        let mut c = ShardCache::new(10_000);
        let m = Rc::new(());
        for i in 0..100 {
            c.insert((0, i), m.clone(), 100);
        }
        assert!(c.used <= 10_000);
        assert!(c.get((0, 99)).is_some());
        assert!(c.get((0, 0)).is_none());
        assert!(c.get((1, 99)).is_none());
    }
}
