//! Workers, the open/closed-loop scheduler, and the message format that `verify` checks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::client::{dot_stuff, ClientError, Conn};
use crate::imap::{self, Mix};
use crate::mailgen::MailGen;
use crate::report::Report;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Smtp,
    Lmtp,
    Pop3,
    Imap,
}

/// Users from a pattern: `bench%d:1-100` is bench1 … bench100; without `%d`, one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Users {
    pub pattern: String,
    pub first: u64,
    pub last: u64,
}

impl Users {
    pub fn parse(s: &str) -> Result<Users, String> {
        match s.rsplit_once(':') {
            Some((p, range)) if p.contains("%d") => {
                let (a, b) = range.split_once('-').ok_or("a user range is FIRST-LAST")?;
                let (first, last) = (
                    a.parse().map_err(|_| "bad range start")?,
                    b.parse().map_err(|_| "bad range end")?,
                );
                if first > last {
                    return Err("the user range is empty".into());
                }
                Ok(Users {
                    pattern: p.to_string(),
                    first,
                    last,
                })
            }
            _ => Ok(Users {
                pattern: s.to_string(),
                first: 0,
                last: 0,
            }),
        }
    }

    pub fn count(&self) -> u64 {
        self.last - self.first + 1
    }

    pub fn get(&self, i: u64) -> String {
        self.pattern
            .replace("%d", &(self.first + i % self.count()).to_string())
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub workload: Workload,
    pub target: SocketAddr,
    pub users: Users,
    pub password: String,
    pub connections: usize,
    /// Requests per second over all connections (open loop); `None` is closed loop.
    pub rate: Option<f64>,
    pub duration: Duration,
    /// Run this long first without measuring (logins, caches); errors still count.
    pub warmup: Duration,
    pub seed: u64,
    /// Recipients per message (SMTP/LMTP).
    pub recipients: usize,
    /// Messages to send instead of generated ones.
    pub messages: Vec<Vec<u8>>,
    /// POP3: delete what was retrieved.
    pub pop3_delete: bool,
    /// POP3: RETRs per session (login); logins are deliberately slow on real servers.
    pub pop3_retrs: usize,
    /// Generated messages of this size instead of the realistic size distribution.
    pub size: Option<usize>,
    /// IMAP: the commands a selected session sends, with their weights.
    pub imap_mix: Mix,
    /// IMAP: mix commands per login (then LOGOUT and a new session).
    pub imap_commands: usize,
    /// IMAP: before the run, top up every account's INBOX to this many messages (APPEND).
    pub imap_prefill: usize,
    pub timeout: Duration,
    /// Print a progress line every second.
    pub progress: bool,
}

impl Config {
    pub fn new(workload: Workload, target: SocketAddr) -> Self {
        Self {
            workload,
            target,
            users: Users::parse("bench%d:1-100").expect("valid"),
            password: "bench".into(),
            connections: 10,
            rate: None,
            duration: Duration::from_secs(10),
            warmup: Duration::ZERO,
            seed: 1,
            recipients: 1,
            messages: Vec::new(),
            pop3_delete: false,
            pop3_retrs: 5,
            size: None,
            imap_mix: Mix::default(),
            imap_commands: 100,
            imap_prefill: 0,
            timeout: Duration::from_secs(10),
            progress: false,
        }
    }
}

/// Adds the id and checksum headers `verify` looks for.
pub fn stamp(id: &str, msg: &[u8]) -> Vec<u8> {
    let mut body = format!("X-Loadgen-Id: {id}\r\n").into_bytes();
    body.extend_from_slice(msg);
    let sum = crc32fast::hash(&body);
    let mut out = format!("X-Loadgen-Sum: {sum:08x}\r\n").into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Checks a retrieved message: its id, if the stamp is intact.
pub fn check_stamp(stored: &[u8]) -> Option<Result<String, String>> {
    let at = memfind(stored, b"X-Loadgen-Sum: ")?;
    let rest = &stored[at + 15..];
    let eol = memfind(rest, b"\r\n")?;
    let sum = std::str::from_utf8(&rest[..eol]).ok()?.to_string();
    let body = &rest[eol + 2..];
    let id_line = memfind(body, b"\r\n").map(|e| &body[..e])?;
    let id = String::from_utf8_lossy(id_line.strip_prefix(b"X-Loadgen-Id: ")?).to_string();
    let got = format!("{:08x}", crc32fast::hash(body));
    Some(if got == sum { Ok(id) } else { Err(id) })
}

fn memfind(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

pub(crate) struct Shared {
    pub(crate) stop: AtomicBool,
    pub(crate) done: AtomicU64,
    pub(crate) errors: AtomicU64,
}

pub(crate) struct WorkerResult {
    pub(crate) hist: BTreeMap<&'static str, Histogram<u64>>,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) acked: Vec<(String, String)>,
    pub(crate) bytes: u64,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

fn record(r: &mut WorkerResult, what: &'static str, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, 3_600_000_000);
    let _ = r.hist.entry(what).or_insert_with(hist).record(us);
}

/// Runs the workload and returns the merged report. Bounded by `warmup` + `duration` plus
/// one timeout, after the IMAP prefill (if any), which is not timed.
pub fn run(cfg: &Config) -> Report {
    assert!(cfg.connections > 0);
    let prefilled = (cfg.workload == Workload::Imap && cfg.imap_prefill > 0).then(|| {
        let p = imap::prefill(cfg);
        if cfg.progress {
            eprintln!(
                "prefill: {} messages appended to {} accounts in {:.1} s, {} errors",
                p.appended,
                p.accounts,
                p.seconds,
                p.errors.values().sum::<u64>()
            );
        }
        p
    });
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let results = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let threads: Vec<_> = (0..cfg.connections)
        .map(|w| {
            let (cfg, shared, results) = (cfg.clone(), shared.clone(), results.clone());
            std::thread::spawn(move || {
                let r = worker(&cfg, w, &shared, start);
                results.lock().expect("no panics while held").push(r);
            })
        })
        .collect();
    let mut last = 0;
    // Completions per second, for the throughput-over-time plot.
    let mut timeline = Vec::new();
    let mut counted = 0;
    let total = cfg.warmup + cfg.duration;
    // The generator's own CPU and requests, from the end of the warm-up.
    let mut measured_from: Option<(Duration, u64)> = None;
    let requests = |s: &Shared| s.done.load(Ordering::Relaxed) + s.errors.load(Ordering::Relaxed);
    loop {
        if measured_from.is_none() && start.elapsed() >= cfg.warmup {
            measured_from = Some((cpu_time(), requests(&shared)));
        }
        if start.elapsed() >= total {
            break;
        }
        let next = if measured_from.is_none() {
            cfg.warmup
        } else {
            total
        };
        std::thread::sleep(Duration::from_millis(100).min(next.saturating_sub(start.elapsed())));
        let secs = start.elapsed().as_secs();
        while timeline.len() < secs as usize {
            let done = shared.done.load(Ordering::Relaxed);
            timeline.push(done - counted);
            counted = done;
        }
        if cfg.progress && secs > last {
            last = secs;
            eprintln!(
                "t={last}s done={} rate={:.0}/s errors={}",
                shared.done.load(Ordering::Relaxed),
                shared.done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(),
                shared.errors.load(Ordering::Relaxed)
            );
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let elapsed = start.elapsed().saturating_sub(cfg.warmup);
    let (cpu0, requests0) = measured_from.unwrap_or_default();
    let cpu = cpu_time().saturating_sub(cpu0);
    let results = std::mem::take(&mut *results.lock().expect("threads joined"));
    let mut report = Report::merge(cfg, results, elapsed);
    for (k, n) in prefilled.map(|p| p.errors).unwrap_or_default() {
        *report.errors.entry(format!("prefill: {k}")).or_default() += n;
    }
    report.timeline = timeline;
    let requests = requests(&shared).saturating_sub(requests0);
    report.client_cpu_us_per_request = cpu.as_secs_f64() * 1e6 / requests.max(1) as f64;
    report
}

/// CPU time (user + system) this process has used, from /proc/self/stat (Linux).
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn worker(cfg: &Config, w: usize, shared: &Shared, start: Instant) -> WorkerResult {
    let mut res = WorkerResult {
        hist: BTreeMap::new(),
        errors: BTreeMap::new(),
        acked: Vec::new(),
        bytes: 0,
    };
    let mut rng = SmallRng::seed_from_u64(cfg.seed.wrapping_mul(1_000_003).wrapping_add(w as u64));
    // A small pool of generated messages per worker keeps the generator off the request
    // path: each request only stamps one.
    let delivers = matches!(cfg.workload, Workload::Smtp | Workload::Lmtp);
    let pool: Vec<Vec<u8>> = if !delivers {
        Vec::new()
    } else if cfg.messages.is_empty() {
        let mut gen = MailGen::new(cfg.seed.wrapping_add(w as u64 * 7919));
        (0..16)
            .map(|_| match cfg.size {
                Some(s) => gen.message_of_size(s),
                None => gen.message(),
            })
            .collect()
    } else {
        cfg.messages.clone()
    };
    // Open loop: this worker's share of the rate, at fixed intended times.
    let interval = cfg
        .rate
        .map(|r| Duration::from_secs_f64(cfg.connections as f64 / r.max(0.001)));
    let mut k: u64 = 0;
    let mut conn: Option<Conn> = None;
    let mut imap_session = None;
    let mut imap_logins = 0;
    let measure_from = start + cfg.warmup;
    while !shared.stop.load(Ordering::Relaxed) {
        let intended = match interval {
            Some(iv) => {
                let t =
                    start + iv.mul_f64(k as f64) + iv.mul_f64(w as f64 / cfg.connections as f64);
                let now = Instant::now();
                if t > now {
                    std::thread::sleep(t - now);
                }
                if shared.stop.load(Ordering::Relaxed) {
                    break;
                }
                t
            }
            None => Instant::now(),
        };
        let outcome = match cfg.workload {
            Workload::Smtp | Workload::Lmtp => {
                deliver(cfg, w, k, &mut conn, &pool, &mut rng, &mut res)
            }
            Workload::Pop3 => pop3_session(cfg, w, k, &mut rng, &mut res),
            Workload::Imap => imap::workload::step(
                cfg,
                w,
                &mut imap_logins,
                &mut imap_session,
                &mut rng,
                &mut res,
            ),
        };
        k += 1;
        match outcome {
            Ok(what) => {
                // Latency from the intended start: a stall delays every request behind it,
                // and each of them is charged for it.
                let latency = intended.elapsed();
                if intended >= measure_from {
                    record(&mut res, what, latency);
                    if cfg.workload == Workload::Imap && !imap::SESSION_STEPS.contains(&what) {
                        record(&mut res, "all", latency);
                    }
                }
                shared.done.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                *res.errors.entry(e.kind()).or_default() += 1;
                shared.errors.fetch_add(1, Ordering::Relaxed);
                conn = None;
                if matches!(e, ClientError::Connect(_)) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
    if let Some(mut c) = conn {
        c.quit();
    }
    imap::workload::finish(imap_session);
    res
}

fn deliver(
    cfg: &Config,
    w: usize,
    k: u64,
    conn: &mut Option<Conn>,
    pool: &[Vec<u8>],
    rng: &mut SmallRng,
    res: &mut WorkerResult,
) -> Result<&'static str, ClientError> {
    let lmtp = cfg.workload == Workload::Lmtp;
    if conn.is_none() {
        let t = Instant::now();
        let mut c = Conn::connect(cfg.target, cfg.timeout)?;
        c.smtp_hello(lmtp)?;
        record(res, "connect", t.elapsed());
        *conn = Some(c);
    }
    let c = conn.as_mut().expect("connected above");
    let rcpts: Vec<String> = (0..cfg.recipients.max(1))
        .map(|_| cfg.users.get(rng.gen_range(0..cfg.users.count())))
        .collect();
    let id = format!("{}-{w}-{k}", cfg.seed);
    let msg = stamp(&id, &pool[(k as usize + w) % pool.len()]);
    c.smtp_send("loadgen@loadgen.example", &rcpts, &dot_stuff(&msg), lmtp)?;
    res.bytes += msg.len() as u64;
    for r in rcpts {
        res.acked.push((r, id.clone()));
    }
    Ok("deliver")
}

fn pop3_session(
    cfg: &Config,
    w: usize,
    k: u64,
    rng: &mut SmallRng,
    res: &mut WorkerResult,
) -> Result<&'static str, ClientError> {
    // Connection w only uses the users w, w + connections, …: POP3 locks a maildrop per
    // session, so two connections never compete for one.
    let n = cfg.connections as u64;
    let slots = (cfg.users.count() / n).max(1);
    let user = cfg.users.get(w as u64 + (k % slots) * n);
    let t = Instant::now();
    let mut c = Conn::connect(cfg.target, cfg.timeout)?;
    c.pop3_login(&user, &cfg.password)?;
    record(res, "login", t.elapsed());
    let list = c.pop3_list()?;
    for i in 0..cfg.pop3_retrs.max(1) {
        if list.is_empty() || (cfg.pop3_delete && i >= list.len()) {
            break;
        }
        // With DELE, take the messages in order (a deleted one cannot be read again).
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
            c.pop3_dele(n)?;
        }
    }
    c.quit();
    Ok("session")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_stamps() {
        let u = Users::parse("bench%d@example.org:1-3").unwrap();
        assert_eq!(
            (u.get(0).as_str(), u.get(2).as_str(), u.get(3).as_str()),
            (
                "bench1@example.org",
                "bench3@example.org",
                "bench1@example.org"
            )
        );
        assert!(Users::parse("b%d:5-1").is_err());
        assert_eq!(
            Users::parse("one@example.org").unwrap().get(7),
            "one@example.org"
        );
        let s = stamp("1-2-3", b"Subject: x\r\n\r\nbody\r\n");
        let mut stored = b"Received: by server\r\n".to_vec();
        stored.extend_from_slice(&s);
        assert_eq!(check_stamp(&stored), Some(Ok("1-2-3".to_string())));
        let n = stored.len();
        stored[n - 3] = b'X';
        assert_eq!(check_stamp(&stored), Some(Err("1-2-3".to_string())));
        assert_eq!(check_stamp(b"no stamp"), None);
    }
}
