//! `verify`: every message a server acknowledged is stored, byte for byte.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::client::{ClientError, Conn};
use crate::run::check_stamp;

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

/// Reads every mailbox in `acked` over POP3 (without deleting) and checks each id.
pub fn verify(
    pop3: SocketAddr,
    password: &str,
    acked: &BTreeMap<String, Vec<String>>,
    timeout: Duration,
) -> Verification {
    let mut v = Verification::default();
    for (user, ids) in acked {
        let stored = match read_all(pop3, user, password, timeout) {
            Ok(s) => s,
            Err(e) => {
                v.errors.push(format!("{user}: {e}"));
                continue;
            }
        };
        let mut good = HashSet::new();
        let mut bad = HashSet::new();
        for m in &stored {
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
    v
}

fn read_all(
    pop3: SocketAddr,
    user: &str,
    password: &str,
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, ClientError> {
    let mut c = Conn::connect(pop3, timeout)?;
    c.pop3_login(user, password)?;
    let list = c.pop3_list()?;
    let mut out = Vec::with_capacity(list.len());
    for (n, _) in list {
        out.push(c.pop3_retr(n)?);
    }
    c.quit();
    Ok(out)
}
