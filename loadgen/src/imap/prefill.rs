//! `--prefill N`: before the timed run, every account's INBOX is topped up to N messages by
//! IMAP APPEND, so the workload has messages to read on any server without a separate
//! delivery path. Appended messages carry the loadgen's stamp (id and checksum header), so
//! each `fetch-body` of one checks it byte for byte. Counting what is there first makes it
//! idempotent: a second run appends nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::conn::ImapConn;
use crate::client::ClientError;
use crate::mailgen::MailGen;
use crate::run::Config;
use crate::stamp::stamp;

#[derive(Debug, Default)]
pub struct Prefilled {
    pub appended: u64,
    pub accounts: u64,
    pub seconds: f64,
    /// Error kind → count.
    pub errors: BTreeMap<String, u64>,
}

/// Tops up every account of `cfg.users` to `cfg.imap_prefill` messages, with up to
/// `cfg.connections` accounts at a time.
pub fn prefill(cfg: &Config) -> Prefilled {
    let t = Instant::now();
    let accounts = cfg.users.count();
    let threads = (cfg.connections as u64).clamp(1, accounts);
    let appended = AtomicU64::new(0);
    let errors = Mutex::new(BTreeMap::<String, u64>::new());
    std::thread::scope(|sc| {
        for th in 0..threads {
            let (appended, errors) = (&appended, &errors);
            sc.spawn(move || {
                let mut i = th;
                while i < accounts {
                    match top_up(cfg, i) {
                        Ok(n) => {
                            appended.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => {
                            let mut m = errors.lock().expect("no panics while held");
                            *m.entry(e.kind()).or_default() += 1;
                        }
                    }
                    i += threads;
                }
            });
        }
    });
    Prefilled {
        appended: appended.into_inner(),
        accounts,
        seconds: t.elapsed().as_secs_f64(),
        errors: errors.into_inner().expect("threads joined"),
    }
}

/// Appends to account `i` what it lacks; how many were appended.
fn top_up(cfg: &Config, i: u64) -> Result<u64, ClientError> {
    let user = cfg.users.get(i);
    let mut c = ImapConn::connect_tls(cfg.target_of(i as usize), cfg.timeout, cfg.tls.as_ref())?;
    c.login(&user, &cfg.password)?;
    let have = c.select("INBOX")? as usize;
    let want = cfg.imap_prefill;
    let mut gen = MailGen::new(cfg.seed.wrapping_mul(31).wrapping_add(i));
    for k in have..want {
        let msg = if cfg.messages.is_empty() {
            match cfg.size {
                Some(s) => gen.message_of_size(s),
                None => gen.message(),
            }
        } else {
            cfg.messages[(i as usize + k) % cfg.messages.len()].clone()
        };
        c.append("INBOX", &stamp(&format!("prefill-{user}-{k}"), &msg))?;
    }
    c.logout()?;
    Ok(want.saturating_sub(have) as u64)
}
