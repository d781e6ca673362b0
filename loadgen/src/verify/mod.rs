//! `verify`: every message a server acknowledged is stored, byte for byte, read back through
//! POP3 (every message of each mailbox, without deleting) or IMAP (the messages whose
//! `X-Loadgen-Id` header names an acknowledged id, found by a header FETCH of the INBOX).

mod imap;
mod pop3;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::stamp::check_stamp;
use crate::tls::Tls;

#[derive(Debug, Default, Serialize)]
pub struct Verification {
    pub checked: usize,
    pub lost: Vec<String>,
    pub corrupted: Vec<String>,
    pub errors: Vec<String>,
}

impl Verification {
    pub fn clean(&self) -> bool {
        self.lost.is_empty() && self.corrupted.is_empty() && self.errors.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Pop3,
    Imap,
}

/// Reads every mailbox in `acked` over plain POP3 (without deleting) and checks each id.
pub fn verify(
    pop3: SocketAddr,
    password: &str,
    acked: &BTreeMap<String, Vec<String>>,
    timeout: Duration,
) -> Verification {
    verify_with(Protocol::Pop3, pop3, None, password, acked, timeout)
}

/// Checks every id of `acked` (user → ids) in the user's mailbox, read through `protocol`.
pub fn verify_with(
    protocol: Protocol,
    target: SocketAddr,
    tls: Option<&Tls>,
    password: &str,
    acked: &BTreeMap<String, Vec<String>>,
    timeout: Duration,
) -> Verification {
    let mut v = Verification::default();
    for (user, ids) in acked {
        let stored = match protocol {
            Protocol::Pop3 => pop3::read_all(target, tls, user, password, timeout),
            Protocol::Imap => imap::read_ids(target, tls, user, password, ids, timeout),
        };
        match stored {
            Ok(stored) => check(&mut v, user, ids, &stored),
            Err(e) => v.errors.push(format!("{user}: {e}")),
        }
    }
    v
}

/// Sorts `ids` into found intact, corrupted (stamped with the id, wrong checksum) and lost.
fn check(v: &mut Verification, user: &str, ids: &[String], stored: &[Vec<u8>]) {
    let mut good = HashSet::new();
    let mut bad = HashSet::new();
    for m in stored {
        match check_stamp(m) {
            Some(Ok(id)) => {
                good.insert(id);
            }
            Some(Err(id)) => {
                bad.insert(id);
            }
            None => {}
        }
    }
    for id in ids {
        v.checked += 1;
        if good.contains(id) {
            continue;
        }
        if bad.contains(id) {
            v.corrupted.push(format!("{user} {id}"));
        } else {
            v.lost.push(format!("{user} {id}"));
        }
    }
}
