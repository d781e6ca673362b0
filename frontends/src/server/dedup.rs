//! Recognising the retry of a delivery some of whose copies were stored.
//!
//! SMTP has one reply per message. When some recipients' copies are stored and another's
//! cannot be (its node died or its partition moves, in a cluster; its mailbox is full, on
//! any node), the client is told 451 and sends the whole message again, to every recipient.
//! So that the copies already stored are not stored a second time, a delivery has a key: a
//! digest of the envelope sender and the message as the client sent it (before any trace
//! header), the same on a retry through any node. When a delivery ends partly failed, the
//! node that took it remembers the key with each account whose copy was stored: its own
//! copies here, the others on their nodes (`XREMEMBER` on their cluster ports). A copy
//! whose key and account are remembered is answered as stored, without storing it.
//!
//! Only partly failed deliveries are remembered, so a message sent twice on purpose (the
//! same bytes: no Date, no Message-ID) is stored twice as before. This keeps the last
//! [`CAPACITY`] such copies, for at most [`MAX_AGE`]: enough for the retries of mail servers
//! (Postfix tries again after 5 to 60 minutes). A node that restarts forgets them.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Copies remembered per node (about 40 bytes each).
pub const CAPACITY: usize = 1 << 20;
/// How long a copy is remembered at most.
pub const MAX_AGE: Duration = Duration::from_secs(6 * 3600);

/// A delivery's key: the same for the same sender and message bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryKey(pub [u8; 16]);

impl DeliveryKey {
    pub fn of(from: &str, message: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(from.as_bytes());
        h.update([0u8]);
        h.update(message);
        let d = h.finalize();
        let mut k = [0u8; 16];
        k.copy_from_slice(&d[..16]);
        DeliveryKey(k)
    }

    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 32 || !s.is_ascii() {
            return None;
        }
        let mut k = [0u8; 16];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(DeliveryKey(k))
    }

    /// The key of one account's copy.
    fn copy(&self, account: &str) -> u64 {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(account.as_bytes());
        let d = h.finalize();
        u64::from_le_bytes(d[..8].try_into().unwrap_or_default())
    }
}

/// The copies this node stored of keyed deliveries.
#[derive(Default)]
pub struct Dedup {
    inner: Mutex<Remembered>,
    /// Copies remembered (for the lock-free look before every delivery).
    count: std::sync::atomic::AtomicUsize,
}

#[derive(Default)]
struct Remembered {
    set: HashSet<u64>,
    order: VecDeque<(Instant, u64)>,
}

impl Dedup {
    /// Whether `account`'s copy of the delivery `key` was stored here already.
    pub fn stored(&self, key: &DeliveryKey, account: &str) -> bool {
        let c = key.copy(account);
        let mut r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        r.expire(Instant::now());
        r.set.contains(&c)
    }

    /// Nothing is remembered (no key needs computing on a single node).
    pub fn is_empty(&self) -> bool {
        // Without the lock: nearly always zero, looked at on every delivery of every shard.
        if self.count.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return true;
        }
        let mut r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        r.expire(Instant::now());
        self.count
            .store(r.set.len(), std::sync::atomic::Ordering::Relaxed);
        r.set.is_empty()
    }

    /// Remembers that `account`'s copy of `key` is stored.
    pub fn remember(&self, key: &DeliveryKey, account: &str) {
        let c = key.copy(account);
        let now = Instant::now();
        let mut r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        r.expire(now);
        if r.set.insert(c) {
            r.order.push_back((now, c));
        }
        while r.order.len() > CAPACITY {
            if let Some((_, old)) = r.order.pop_front() {
                r.set.remove(&old);
            }
        }
        self.count
            .store(r.set.len(), std::sync::atomic::Ordering::Relaxed);
    }
}

impl Remembered {
    fn expire(&mut self, now: Instant) {
        while let Some(&(t, c)) = self.order.front() {
            if now.duration_since(t) < MAX_AGE {
                break;
            }
            self.order.pop_front();
            self.set.remove(&c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_recognised_by_sender_message_and_account() {
        let d = Dedup::default();
        let k = DeliveryKey::of("bob@example.org", b"Subject: x\r\n\r\nhi\r\n");
        assert!(!d.stored(&k, "a@example.org"));
        d.remember(&k, "a@example.org");
        assert!(d.stored(&k, "a@example.org"));
        assert!(!d.stored(&k, "b@example.org"));
        // Another sender, or another byte, is another delivery.
        let k2 = DeliveryKey::of("eve@example.org", b"Subject: x\r\n\r\nhi\r\n");
        let k3 = DeliveryKey::of("bob@example.org", b"Subject: x\r\n\r\nhi!\r\n");
        assert!(!d.stored(&k2, "a@example.org"));
        assert!(!d.stored(&k3, "a@example.org"));
        assert_eq!(DeliveryKey::parse(&k.hex()), Some(k));
        assert_eq!(DeliveryKey::parse("zz"), None);
        assert_eq!(DeliveryKey::parse(&"g".repeat(32)), None);
    }
}
