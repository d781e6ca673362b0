//! The `pop3` workload: a session per request. Connection `w` logs in to its own accounts
//! in turn (POP3 locks a maildrop per session), then LIST, `--retrs-per-login` RETRs of
//! random messages, optionally DELE, and QUIT (checked: its +OK commits the deletions).
//!
//! Deleting is opt-in, as it drains the mailboxes: `--delete` deletes what was retrieved
//! (taken in order), `--dele-per-login N` deletes N random messages of each session.

use std::time::Instant;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::client::{ClientError, Conn};
use crate::run::{record, Config, WorkerResult};

pub(crate) fn session(
    cfg: &Config,
    w: usize,
    k: u64,
    rng: &mut SmallRng,
    res: &mut WorkerResult,
) -> Result<&'static str, ClientError> {
    // Connection w only uses the users w, w + connections, …, so two connections never
    // compete for one maildrop.
    let n = cfg.connections as u64;
    let slots = (cfg.users.count() / n).max(1);
    let user = cfg.users.get(w as u64 + (k % slots) * n);
    let t = Instant::now();
    let mut c = Conn::connect_tls(cfg.target_of(w), cfg.timeout, cfg.tls.as_ref())?;
    c.pop3_login(&user, &cfg.password)?;
    record(res, "login", t.elapsed());
    let t = Instant::now();
    let list = c.pop3_list()?;
    record(res, "list", t.elapsed());
    let mut deleted = Vec::new();
    for i in 0..cfg.pop3_retrs.max(1) {
        if list.is_empty() || (cfg.pop3_delete && i >= list.len()) {
            break;
        }
        // With --delete, take the messages in order (a deleted one cannot be read again).
        let (n, _) = if cfg.pop3_delete {
            list[i]
        } else {
            list[rng.gen_range(0..list.len())]
        };
        let t = Instant::now();
        let m = c.pop3_retr(n)?;
        record(res, "retr", t.elapsed());
        res.bytes += m.len() as u64;
        if cfg.pop3_delete {
            deleted.push(n);
            dele(&mut c, n, res)?;
        }
    }
    if cfg.pop3_dele > 0 {
        let left: Vec<u32> = list
            .iter()
            .map(|m| m.0)
            .filter(|n| !deleted.contains(n))
            .collect();
        for &n in left.choose_multiple(rng, cfg.pop3_dele) {
            dele(&mut c, n, res)?;
        }
    }
    let t = Instant::now();
    c.pop3_quit()?;
    record(res, "quit", t.elapsed());
    Ok("session")
}

fn dele(c: &mut Conn, n: u32, res: &mut WorkerResult) -> Result<(), ClientError> {
    let t = Instant::now();
    c.pop3_dele(n)?;
    record(res, "dele", t.elapsed());
    Ok(())
}
