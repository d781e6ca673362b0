//! Remembers passwords that passed argon2, for a while, so clients that log in often (mail
//! clients polling with POP3, IMAP clients opening a connection per folder) do not cost a
//! deliberately slow hash each time. Like Dovecot's auth cache.
//!
//! Only successes are kept, as an HMAC-SHA256 of user and password under a key made at
//! start and never stored, so the memory holds no password. The cache empties when
//! `users.toml` is reloaded (a changed password or a removed user takes effect at once).
//! One cache per shard: nothing is shared across cores.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::users::Users;

/// Beyond this many entries the cache starts over (a flood of distinct logins cannot grow it).
const MAX_ENTRIES: usize = 100_000;

pub struct AuthCache {
    key: [u8; 32],
    ttl: Duration,
    /// The user list the entries were verified against.
    users: Option<Arc<Users>>,
    entries: HashMap<String, Entry>,
}

struct Entry {
    digest: [u8; 32],
    senders: Vec<String>,
    at: Instant,
}

impl AuthCache {
    pub fn new(ttl: Duration) -> Self {
        use password_hash::rand_core::{OsRng, RngCore};
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        Self {
            key,
            ttl,
            users: None,
            entries: HashMap::new(),
        }
    }

    fn digest(&self, user: &str, password: &str) -> [u8; 32] {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        m.update(user.as_bytes());
        m.update(&[0]);
        m.update(password.as_bytes());
        m.finalize().into_bytes().into()
    }

    fn check_users(&mut self, users: &Arc<Users>) {
        if !self.users.as_ref().is_some_and(|u| Arc::ptr_eq(u, users)) {
            self.entries.clear();
            self.users = Some(users.clone());
        }
    }

    /// The senders of a login verified within the TTL with this very password.
    pub fn get(&mut self, users: &Arc<Users>, user: &str, password: &str) -> Option<Vec<String>> {
        if self.ttl.is_zero() {
            return None;
        }
        self.check_users(users);
        let d = self.digest(user, password);
        let e = self.entries.get(user)?;
        // Constant-time enough: the digest is keyed, an attacker learns nothing from timing.
        if e.digest != d || e.at.elapsed() > self.ttl {
            return None;
        }
        Some(e.senders.clone())
    }

    pub fn put(&mut self, users: &Arc<Users>, user: &str, password: &str, senders: &[String]) {
        if self.ttl.is_zero() {
            return;
        }
        self.check_users(users);
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
        }
        let digest = self.digest(user, password);
        self.entries.insert(
            user.to_string(),
            Entry {
                digest,
                senders: senders.to_vec(),
                at: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_only_the_right_password_and_forgets_on_reload() {
        let users = Arc::new(Users::default());
        let mut c = AuthCache::new(Duration::from_secs(60));
        assert_eq!(c.get(&users, "bob", "pw"), None);
        c.put(&users, "bob", "pw", &["bob@x".into()]);
        assert_eq!(c.get(&users, "bob", "pw"), Some(vec!["bob@x".to_string()]));
        assert_eq!(c.get(&users, "bob", "other"), None);
        assert_eq!(c.get(&users, "eve", "pw"), None);
        let reloaded = Arc::new(Users::default());
        assert_eq!(c.get(&reloaded, "bob", "pw"), None);
        let mut off = AuthCache::new(Duration::ZERO);
        off.put(&users, "bob", "pw", &[]);
        assert_eq!(off.get(&users, "bob", "pw"), None);
    }
}
