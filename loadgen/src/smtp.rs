//! The `smtp` and `lmtp` workloads: each connection stays open (or, with
//! `--messages-per-connection`, quits and reconnects after that many) and sends one message per
//! request, envelope pipelined, to `--recipients` distinct random users; with `--auth`, it
//! logs in first (AUTH PLAIN, as its own account) and sends from that account's address,
//! as submission requires.

use std::time::Instant;

use rand::rngs::SmallRng;

use crate::client::{data_block, ClientError, Conn};
use crate::run::{record, Config, WorkerResult, Workload};
use crate::stamp::stamp;

/// The sender without `--auth`.
const SENDER: &str = "loadgen@loadgen.example";

/// One message on connection `w` (its `k`-th request); `"deliver"` once acknowledged (for
/// LMTP: by every recipient).
pub(crate) fn deliver(
    cfg: &Config,
    w: usize,
    k: u64,
    conn: &mut Option<Conn>,
    pool: &[Vec<u8>],
    rng: &mut SmallRng,
    res: &mut WorkerResult,
) -> Result<&'static str, ClientError> {
    let lmtp = cfg.workload == Workload::Lmtp;
    let account = cfg.smtp_auth.then(|| cfg.users.get(w as u64));
    if conn.is_none() {
        let t = Instant::now();
        let mut c = Conn::connect_tls(cfg.target_of(w), cfg.timeout, cfg.tls.as_ref())?;
        c.smtp_hello(lmtp)?;
        if let Some(user) = &account {
            c.smtp_auth_plain(user, &cfg.password)?;
        }
        record(res, "connect", t.elapsed());
        *conn = Some(c);
    }
    let c = conn.as_mut().expect("connected above");
    let rcpts = cfg.users.distinct(cfg.recipients.max(1), rng);
    let id = format!("{}-{w}-{k}", cfg.seed);
    let msg = stamp(&id, &pool[(k as usize + w) % pool.len()]);
    let from = account.as_deref().unwrap_or(SENDER);
    c.smtp_send(from, &rcpts, &data_block(&msg), lmtp)?;
    res.bytes += msg.len() as u64;
    for r in rcpts {
        res.acked.push((r, id.clone()));
    }
    let n = cfg.messages_per_connection;
    if n > 0 && (k + 1) % n == 0 {
        // The message is acknowledged already; QUIT's reply only ends the session politely.
        c.quit();
        *conn = None;
    }
    Ok("deliver")
}
