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

/// Entries are forgotten when their window has passed: past this many, the tables are pruned
/// (at most once a second, so a flood does not make every failure walk them).
const PRUNE_AT: usize = 10_000;
/// Past this many live entries in a table (a flood from very many addresses, or of made-up
/// user names), it starts over: memory stays bounded, and the flood is logged.
const MAX_ENTRIES: usize = 200_000;
/// Bytes of a user name kept as a key.
const MAX_KEY: usize = 320;

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
    pruned: Option<Instant>,
}

/// The key of an address: IPv6 clients are counted per /64 (one host commonly has a whole
/// /64 to choose from), IPv4 per address.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
        v4 => v4,
    }
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
        if over(t.by_ip.get(&ip_key(ip)), p.per_ip) {
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
        let due = t
            .pruned
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1));
        if t.by_ip.len() + t.by_account.len() > PRUNE_AT && due {
            t.pruned = Some(now);
            t.by_ip.retain(|_, c| c.current(now, p.window) > 0);
            t.by_account.retain(|_, c| c.current(now, p.window) > 0);
            for (name, len) in [
                ("addresses", t.by_ip.len()),
                ("accounts", t.by_account.len()),
            ] {
                if len > MAX_ENTRIES {
                    tracing::warn!(
                        table = name,
                        entries = len,
                        "failed logins from very many sources; their counts start over"
                    );
                }
            }
            if t.by_ip.len() > MAX_ENTRIES {
                t.by_ip.clear();
            }
            if t.by_account.len() > MAX_ENTRIES {
                t.by_account.clear();
            }
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
        let ip_failures = bump(t.by_ip.entry(ip_key(ip)).or_insert(fresh));
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
    let mut k = crate::users::normalize(account);
    if k.len() > MAX_KEY {
        let mut end = MAX_KEY;
        while !k.is_char_boundary(end) {
            end -= 1;
        }
        k.truncate(end);
    }
    k
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
    fn ipv6_clients_count_per_64_and_long_names_are_cut() {
        let t = Throttle::new(policy());
        let t0 = Instant::now();
        for i in 1..=3u16 {
            let ip = IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, i]);
            t.failed(ip, "a@x", t0);
        }
        let neighbour = IpAddr::from([0x2001, 0xdb8, 0, 1, 0xffff, 0, 0, 9]);
        assert_eq!(t.check(neighbour, "b@x", t0), Err(Blocked::Address));
        let other = IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]);
        assert_eq!(t.check(other, "b@x", t0), Ok(()));
        assert_eq!(key(&"é".repeat(400)).len(), MAX_KEY);
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
