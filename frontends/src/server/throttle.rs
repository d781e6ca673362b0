//! Failed logins counted per remote address and per account, node-wide.
//!
//! A per-connection limit does not stop a guesser who opens many connections (150 parallel
//! connections from one address made 104 guesses a second before this existed). So every
//! failure is counted against the client's address and the account it tried, over a
//! window: an address past its limit is refused logins until its failures age out of the
//! window, whatever it sends, and so is an account past its own (higher) limit, which
//! guessers spread over many addresses reach. Refusals are temporary errors, checked before
//! any password, and never say whether the account exists.
//!
//! The table is shared by the shards under a mutex: it is touched once per login, next to
//! an argon2 verification that costs a thousand times more.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries are forgotten when their window has passed; past this many the table is pruned.
const PRUNE_AT: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Failures from one address within `window` before it is refused; 0: no limit.
    pub per_ip: u32,
    /// Failures for one account within `window` before it is refused; 0: no limit.
    pub per_account: u32,
    pub window: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    Address,
    Account,
}

#[derive(Clone, Copy)]
struct Count {
    failures: u32,
    /// When the first failure of the current window happened.
    since: Instant,
}

impl Count {
    fn current(&self, now: Instant, window: Duration) -> u32 {
        if now.duration_since(self.since) >= window {
            0
        } else {
            self.failures
        }
    }
}

#[derive(Default)]
struct Tables {
    by_ip: HashMap<IpAddr, Count>,
    by_account: HashMap<String, Count>,
}

pub struct Throttle {
    policy: Mutex<Policy>,
    tables: Mutex<Tables>,
}

/// What recording a failure changed: whether the address or the account just reached its
/// limit (to be logged once, when it happens).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    pub ip_failures: u32,
    pub account_failures: u32,
    pub now_blocked: Option<Blocked>,
}

impl Throttle {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy: Mutex::new(policy),
            tables: Mutex::new(Tables::default()),
        }
    }

    /// A reload changes the limits; the counts stay.
    pub fn set_policy(&self, p: Policy) {
        *self.policy.lock().unwrap_or_else(|e| e.into_inner()) = p;
    }

    fn policy(&self) -> Policy {
        *self.policy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a login from `ip` for `account` (as the client typed it) may be checked.
    pub fn check(&self, ip: IpAddr, account: &str, now: Instant) -> Result<(), Blocked> {
        let p = self.policy();
        let t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let over = |c: Option<&Count>, limit: u32| {
            limit > 0 && c.is_some_and(|c| c.current(now, p.window) >= limit)
        };
        if over(t.by_ip.get(&ip), p.per_ip) {
            return Err(Blocked::Address);
        }
        if over(t.by_account.get(&key(account)), p.per_account) {
            return Err(Blocked::Account);
        }
        Ok(())
    }

    pub fn failed(&self, ip: IpAddr, account: &str, now: Instant) -> Recorded {
        let p = self.policy();
        let mut t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if t.by_ip.len() + t.by_account.len() > PRUNE_AT {
            t.by_ip.retain(|_, c| c.current(now, p.window) > 0);
            t.by_account.retain(|_, c| c.current(now, p.window) > 0);
        }
        let bump = |c: &mut Count| {
            if c.current(now, p.window) == 0 {
                *c = Count {
                    failures: 0,
                    since: now,
                };
            }
            c.failures += 1;
            c.failures
        };
        let fresh = Count {
            failures: 0,
            since: now,
        };
        let ip_failures = bump(t.by_ip.entry(ip).or_insert(fresh));
        let account_failures = if account.is_empty() {
            0
        } else {
            bump(t.by_account.entry(key(account)).or_insert(fresh))
        };
        let now_blocked = if p.per_ip > 0 && ip_failures == p.per_ip {
            Some(Blocked::Address)
        } else if p.per_account > 0 && account_failures == p.per_account {
            Some(Blocked::Account)
        } else {
            None
        };
        Recorded {
            ip_failures,
            account_failures,
            now_blocked,
        }
    }
}

fn key(account: &str) -> String {
    crate::users::normalize(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            per_ip: 3,
            per_account: 5,
            window: Duration::from_secs(60),
        }
    }

    #[test]
    fn an_address_is_refused_at_its_limit_until_the_window_passes() {
        let t = Throttle::new(policy());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 1..=3 {
            assert_eq!(t.check(ip, "a@x", t0), Ok(()));
            let r = t.failed(ip, &format!("u{i}@x"), t0);
            assert_eq!(r.ip_failures, i);
            assert_eq!(r.now_blocked, (i == 3).then_some(Blocked::Address));
        }
        assert_eq!(t.check(ip, "anyone@x", t0), Err(Blocked::Address));
        assert_eq!(t.check(other, "anyone@x", t0), Ok(()));
        assert_eq!(t.check(ip, "a@x", t0 + Duration::from_secs(61)), Ok(()));
    }

    #[test]
    fn an_account_is_refused_when_guesses_come_from_many_addresses() {
        let t = Throttle::new(policy());
        let t0 = Instant::now();
        for i in 0..5u8 {
            let ip = IpAddr::from([192, 0, 2, i]);
            assert_eq!(t.check(ip, "Victim@X", t0), Ok(()));
            t.failed(ip, "victim@x", t0);
        }
        let fresh = IpAddr::from([198, 51, 100, 1]);
        assert_eq!(t.check(fresh, "VICTIM@x", t0), Err(Blocked::Account));
        assert_eq!(t.check(fresh, "someone@x", t0), Ok(()));
        t.set_policy(Policy {
            per_account: 0,
            ..policy()
        });
        assert_eq!(t.check(fresh, "victim@x", t0), Ok(()));
    }
}
