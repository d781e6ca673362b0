//! Decoded message metadata (ENVELOPE, structure) kept per shard, so SEARCH on headers,
//! SORT, THREAD and FETCH ENVELOPE/BODYSTRUCTURE do not read and decode the same records
//! again and again. Keyed by partition and blob id: a blob's metadata never changes and its
//! id is never reused, so nothing here can go stale.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use crate::mime::MessageMeta;

type Key = (u32, u64);

pub struct MetaCache {
    budget: usize,
    used: usize,
    map: HashMap<Key, (Rc<MessageMeta>, usize)>,
    order: VecDeque<Key>,
}

impl MetaCache {
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            used: 0,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, key: Key) -> Option<Rc<MessageMeta>> {
        self.map.get(&key).map(|(m, _)| m.clone())
    }

    /// `cost`: about what the decoded form holds in memory (the encoded size is a fair
    /// proxy, times the overhead of its strings and vectors).
    pub fn insert(&mut self, key: Key, meta: Rc<MessageMeta>, encoded_len: usize) {
        let cost = encoded_len * 3 + 256;
        if cost > self.budget / 8 || self.map.contains_key(&key) {
            return;
        }
        self.used += cost;
        self.map.insert(key, (meta, cost));
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
        let mut c = MetaCache::new(10_000);
        let m = Rc::new(MessageMeta::default());
        for i in 0..100 {
            c.insert((0, i), m.clone(), 100);
        }
        assert!(c.used <= 10_000);
        assert!(c.get((0, 99)).is_some());
        assert!(c.get((0, 0)).is_none());
        assert!(c.get((1, 99)).is_none());
    }
}
