//! The memory that messages being received may hold, node-wide.
//!
//! A message is held whole in memory until it is stored (parsed once, compressed, written in
//! one record), so without a bound, clients that send large messages and hold back the
//! final dot can make the server hold anything: 20 connections sending 40 MiB each grew it
//! by 3.5 GB before this existed. Each session may hold [`FREE_PER_SESSION`] without
//! asking, which covers most mail; beyond that it takes bytes from this budget in
//! [`STEP`]-sized pieces as the message grows, and gives them back when the message is
//! stored or dropped. When the budget is spent, the message being received is dropped and
//! answered with a temporary error (SMTP 452 4.3.1, IMAP `NO [LIMIT]`), so its sender
//! retries later, and the server's memory stays bounded: about the budget, plus
//! `FREE_PER_SESSION` per connection, times the copies one delivery makes (see
//! `docs/operations.md`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes of message a session holds without asking the budget.
pub const FREE_PER_SESSION: u64 = 256 << 10;
/// Bytes taken from the budget at a time (one atomic operation per this much message).
pub const STEP: u64 = 1 << 20;

pub struct Budget {
    limit: AtomicU64,
    used: AtomicU64,
}

impl Budget {
    pub fn new(limit: u64) -> Self {
        Self {
            limit: AtomicU64::new(limit),
            used: AtomicU64::new(0),
        }
    }

    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, n: u64) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                (u + n <= limit).then_some(u + n)
            })
            .is_ok()
    }

    fn give(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// What one session holds of the budget; given back when it drops.
pub struct Hold {
    budget: Arc<Budget>,
    taken: u64,
}

impl Hold {
    pub fn new(budget: Arc<Budget>) -> Self {
        Self { budget, taken: 0 }
    }

    /// How many message bytes the session may hold now, after trying to cover `want`:
    /// `want` or more when the budget had room, less when it did not.
    pub fn cover(&mut self, want: u64) -> u64 {
        while FREE_PER_SESSION + self.taken < want {
            if !self.budget.take(STEP) {
                break;
            }
            self.taken += STEP;
        }
        FREE_PER_SESSION + self.taken
    }

    /// Gives back all but what `keep` bytes need.
    pub fn shrink(&mut self, keep: u64) {
        let need = keep.saturating_sub(FREE_PER_SESSION).div_ceil(STEP) * STEP;
        if need < self.taken {
            self.budget.give(self.taken - need);
            self.taken = need;
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.budget.give(self.taken);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_share_the_budget_and_give_it_back() {
        let b = Arc::new(Budget::new(3 * STEP));
        let mut a = Hold::new(b.clone());
        assert_eq!(a.cover(1000), FREE_PER_SESSION, "small mail costs nothing");
        assert_eq!(b.used(), 0);
        assert!(a.cover(FREE_PER_SESSION + 2 * STEP) >= FREE_PER_SESSION + 2 * STEP);
        assert_eq!(b.used(), 2 * STEP);
        let mut c = Hold::new(b.clone());
        let got = c.cover(FREE_PER_SESSION + 5 * STEP);
        assert_eq!(got, FREE_PER_SESSION + STEP, "only what was left");
        assert_eq!(b.used(), 3 * STEP);
        a.shrink(0);
        assert_eq!(b.used(), STEP);
        assert!(c.cover(FREE_PER_SESSION + 3 * STEP) >= FREE_PER_SESSION + 3 * STEP);
        drop(c);
        drop(a);
        assert_eq!(b.used(), 0);
    }
}
