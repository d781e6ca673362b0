//! The run: configuration, the connections spread over one thread per core (or one
//! thread each), the open/closed-loop scheduler, and the live progress line. The workloads themselves are in `smtp`, `pop3`,
//! `imap` and (connections of several kinds) `mixed`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::client::{ClientError, Conn};
use crate::imap::{self, Mix};
use crate::mailgen::MailGen;
use crate::mixed::{self, Mixed};
use crate::progress::{self, Live};
use crate::report::Report;
use crate::tls::Tls;

pub use crate::stamp::{check_stamp, stamp};
pub use crate::users::Users;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    Smtp,
    Lmtp,
    Pop3,
    Imap,
    /// Connections of several kinds at once: see [`Config::mixed`].
    Mixed,
}

/// How connections are mapped onto OS threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `workers` threads (one per core by default), each running its share of the
    /// connections as coroutines over one epoll loop ([`crate::percore`]).
    PerCore { workers: usize },
    /// One OS thread per connection, blocking on its socket.
    Threads,
}

impl Runtime {
    /// One thread per core the generator may run on.
    pub fn per_core() -> Runtime {
        Runtime::PerCore {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub workload: Workload,
    pub target: SocketAddr,
    /// More servers (the nodes of a cluster): connection `w` goes to the `w`-th of
    /// `target` and these, round robin ([`Config::target_of`]).
    pub more_targets: Vec<SocketAddr>,
    pub users: Users,
    pub password: String,
    pub connections: usize,
    pub runtime: Runtime,
    /// Requests per second over all connections (open loop); `None` is closed loop.
    pub rate: Option<f64>,
    pub duration: Duration,
    /// Run this long first without measuring (logins, caches); errors still count.
    pub warmup: Duration,
    pub seed: u64,
    /// Recipients per message (SMTP/LMTP), distinct users drawn from `users`.
    pub recipients: usize,
    /// SMTP/LMTP: QUIT and reconnect after this many messages (0: keep the connection).
    /// Inbound MX traffic is mostly one message per connection.
    pub messages_per_connection: u64,
    /// Messages to send instead of generated ones.
    pub messages: Vec<Vec<u8>>,
    /// TLS: implicit, or STARTTLS/STLS after the greeting; `None` is plain TCP.
    pub tls: Option<Tls>,
    /// SMTP: AUTH PLAIN as the connection's own account (user `w` for connection `w`),
    /// sending from its address (submission ports).
    pub smtp_auth: bool,
    /// POP3: delete what was retrieved.
    pub pop3_delete: bool,
    /// POP3: DELE this many random messages per session (committed by QUIT).
    pub pop3_dele: usize,
    /// POP3: RETRs per session (login); logins are deliberately slow on real servers.
    pub pop3_retrs: usize,
    /// Generated messages of this size instead of the realistic size distribution.
    pub size: Option<usize>,
    /// IMAP: the commands a selected session sends, with their weights.
    pub imap_mix: Mix,
    /// IMAP: mix commands per login (then LOGOUT and a new session).
    pub imap_commands: usize,
    /// IMAP: before the run, top up every account's INBOX to this many messages (APPEND).
    /// With `expunge` in the mix, mailboxes are not expunged below it.
    pub imap_prefill: usize,
    /// IMAP `idle`: how long to wait for an EXISTS before DONE.
    pub imap_idle: Duration,
    /// For [`Workload::Mixed`]: the kinds of connections, their shares and targets.
    pub mixed: Option<Mixed>,
    pub timeout: Duration,
    /// Print a progress line every second.
    pub progress: bool,
}

impl Config {
    pub fn new(workload: Workload, target: SocketAddr) -> Self {
        Self {
            workload,
            target,
            more_targets: Vec::new(),
            users: Users::parse("bench%d:1-100").expect("valid"),
            password: "bench".into(),
            connections: 10,
            runtime: Runtime::per_core(),
            rate: None,
            duration: Duration::from_secs(10),
            warmup: Duration::ZERO,
            seed: 1,
            recipients: 1,
            messages_per_connection: 0,
            messages: Vec::new(),
            tls: None,
            smtp_auth: false,
            pop3_delete: false,
            pop3_dele: 0,
            pop3_retrs: 5,
            size: None,
            imap_mix: Mix::default(),
            imap_commands: 100,
            imap_prefill: 0,
            imap_idle: Duration::from_millis(100),
            mixed: None,
            timeout: Duration::from_secs(10),
            progress: false,
        }
    }

    /// The server connection `w` talks to.
    pub fn target_of(&self, w: usize) -> SocketAddr {
        match w % (1 + self.more_targets.len()) {
            0 => self.target,
            i => self.more_targets[i - 1],
        }
    }

    /// This configuration for the connections of one kind (of a mixed run): that
    /// workload, against its target.
    pub fn for_kind(&self, kind: Workload) -> Config {
        let mut c = self.clone();
        c.workload = kind;
        if let Some(m) = &self.mixed {
            let all = m.targets_of(kind);
            if let Some((first, rest)) = all.split_first() {
                c.target = *first;
                c.more_targets = rest.to_vec();
            }
        }
        c
    }

    /// Each connection's workload, and the prefix of its rows in the report.
    fn kinds(&self) -> Result<Vec<(Workload, &'static str)>, String> {
        match (&self.mixed, self.workload) {
            (Some(m), Workload::Mixed) => Ok(m
                .roles(self.connections)?
                .into_iter()
                .map(|k| (k, mixed::prefix(k)))
                .collect()),
            (None, Workload::Mixed) => Err("a mixed run needs its kinds of connections".into()),
            (_, w) => Ok(vec![(w, ""); self.connections]),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) stop: AtomicBool,
    pub(crate) done: AtomicU64,
    pub(crate) errors: AtomicU64,
    live: Live,
}

pub(crate) struct WorkerResult {
    /// Put before every command and error name in the report (`imap.` in a mixed run).
    pub(crate) prefix: &'static str,
    pub(crate) hist: BTreeMap<&'static str, Histogram<u64>>,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) acked: Vec<(String, String)>,
    pub(crate) bytes: u64,
    /// The request under way started after the warm-up: its latencies (and those of its
    /// sub-steps, such as a POP3 session's RETRs) are recorded.
    pub(crate) measuring: bool,
}

/// Records a latency, unless the request it belongs to started in the warm-up.
pub(crate) fn record(r: &mut WorkerResult, what: &'static str, d: Duration) {
    if !r.measuring {
        return;
    }
    let h = r.hist.entry(what).or_insert_with(progress::hist);
    let _ = h.record(progress::micros(d));
}

/// A request done: its name for the report, and how long of it was spent waiting on
/// purpose (IMAP IDLE's wait for news), which is not latency.
pub(crate) struct Step {
    pub(crate) name: &'static str,
    pub(crate) waited: Duration,
    /// An IMAP mix command (not a login, SELECT, resync or LOGOUT): also in the `all` row.
    pub(crate) mix: bool,
}

impl From<&'static str> for Step {
    fn from(name: &'static str) -> Step {
        Step {
            name,
            waited: Duration::ZERO,
            mix: false,
        }
    }
}

/// Runs the workload and returns the merged report. Bounded by `warmup` + `duration` plus
/// one timeout, after the IMAP prefill (if any), which is not timed.
pub fn run(cfg: &Config) -> Report {
    assert!(cfg.connections > 0);
    let kinds = match cfg.kinds() {
        Ok(k) => k,
        Err(e) => {
            let mut r = Report::merge(cfg, Vec::new(), Duration::ZERO);
            r.errors.insert(format!("config: {e}"), 1);
            return r;
        }
    };
    let imap_cfg = match cfg.workload {
        Workload::Mixed if kinds.iter().any(|k| k.0 == Workload::Imap) => {
            Some(cfg.for_kind(Workload::Imap))
        }
        Workload::Imap => Some(cfg.clone()),
        _ => None,
    };
    let prefilled = imap_cfg.filter(|c| c.imap_prefill > 0).map(|c| {
        let p = imap::prefill(&c);
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
        live: Live::new(if cfg.progress { cfg.connections } else { 0 }),
    });
    let results = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let jobs: Vec<Job> = kinds
        .into_iter()
        .enumerate()
        .map(|(w, (kind, prefix))| {
            let (cfg, shared) = (cfg.for_kind(kind), shared.clone());
            Box::new(move || worker(&cfg, w, prefix, &shared, start)) as Job
        })
        .collect();
    let threads = spawn(cfg.runtime, jobs, &results);
    let mut last = 0;
    // Completions per second, for the throughput-over-time plot.
    let mut timeline = Vec::new();
    let mut error_timeline = Vec::new();
    let (mut counted, mut counted_errors) = (0, 0);
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
            let errors = shared.errors.load(Ordering::Relaxed);
            error_timeline.push(errors - counted_errors);
            counted_errors = errors;
        }
        if cfg.progress && secs > last {
            last = secs;
            let done = shared.done.load(Ordering::Relaxed);
            let errors = shared.errors.load(Ordering::Relaxed);
            eprintln!("{}", shared.live.line(last, done, errors));
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("runtime: {e}")),
            Err(_) => failures.push("runtime: a worker thread panicked".to_string()),
        }
    }
    let elapsed = start.elapsed().saturating_sub(cfg.warmup);
    let (cpu0, requests0) = measured_from.unwrap_or_default();
    let cpu = cpu_time().saturating_sub(cpu0);
    let results = std::mem::take(&mut *results.lock().expect("threads joined"));
    let mut report = Report::merge(cfg, results, elapsed);
    for (k, n) in prefilled.map(|p| p.errors).unwrap_or_default() {
        *report.errors.entry(format!("prefill: {k}")).or_default() += n;
    }
    for f in failures {
        *report.errors.entry(f).or_default() += 1;
    }
    report.timeline = timeline;
    report.error_timeline = error_timeline;
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

/// One connection's whole run.
type Job = Box<dyn FnOnce() -> WorkerResult + Send>;

/// Starts the threads that run `jobs`, each pushing its results into `results`.
fn spawn(
    runtime: Runtime,
    jobs: Vec<Job>,
    results: &Arc<Mutex<Vec<WorkerResult>>>,
) -> Vec<std::thread::JoinHandle<Result<(), String>>> {
    let push = |results: &Arc<Mutex<Vec<WorkerResult>>>, r: Vec<WorkerResult>| {
        results.lock().expect("no panics while held").extend(r);
    };
    match runtime {
        Runtime::Threads => jobs
            .into_iter()
            .map(|job| {
                let results = results.clone();
                std::thread::spawn(move || {
                    crate::percore::batch_thread();
                    push(&results, vec![job()]);
                    Ok(())
                })
            })
            .collect(),
        Runtime::PerCore { workers } => {
            // Connection w goes to thread w mod workers, so each kind of a mixed run is
            // spread over every thread.
            let workers = workers.clamp(1, jobs.len().max(1));
            let mut shares: Vec<Vec<Job>> = (0..workers).map(|_| Vec::new()).collect();
            for (w, job) in jobs.into_iter().enumerate() {
                shares[w % workers].push(job);
            }
            shares
                .into_iter()
                .enumerate()
                .map(|(t, share)| {
                    let results = results.clone();
                    std::thread::Builder::new()
                        .name(format!("loadgen-{t}"))
                        .spawn(move || {
                            crate::percore::batch_thread();
                            let share = share
                                .into_iter()
                                .map(|j| j as Box<dyn FnOnce() -> WorkerResult>)
                                .collect();
                            let r = crate::percore::run(share).map_err(|e| e.to_string())?;
                            let (ok, panics): (Vec<_>, Vec<_>) =
                                r.into_iter().partition(Result::is_ok);
                            push(&results, ok.into_iter().flatten().collect());
                            match panics.into_iter().filter_map(Result::err).next() {
                                Some(p) => Err(format!("a connection panicked: {p}")),
                                None => Ok(()),
                            }
                        })
                        .expect("a thread can be started")
                })
                .collect()
        }
    }
}

/// A small pool of messages per worker keeps the generator off the request path: each
/// request only stamps one.
fn message_pool(cfg: &Config, w: usize) -> Vec<Vec<u8>> {
    let sends = match cfg.workload {
        Workload::Smtp | Workload::Lmtp => true,
        Workload::Imap => cfg.imap_mix.commands().any(|c| c == imap::Command::Append),
        _ => false,
    };
    if !sends {
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
    }
}

fn worker(
    cfg: &Config,
    w: usize,
    prefix: &'static str,
    shared: &Shared,
    start: Instant,
) -> WorkerResult {
    let mut res = WorkerResult {
        prefix,
        hist: BTreeMap::new(),
        errors: BTreeMap::new(),
        acked: Vec::new(),
        bytes: 0,
        measuring: false,
    };
    let mut rng = SmallRng::seed_from_u64(cfg.seed.wrapping_mul(1_000_003).wrapping_add(w as u64));
    let pool = message_pool(cfg, w);
    // Open loop: this worker's share of the rate, at fixed intended times.
    let interval = cfg
        .rate
        .map(|r| Duration::from_secs_f64(cfg.connections as f64 / r.max(0.001)));
    let mut k: u64 = 0;
    let mut conn: Option<Conn> = None;
    let mut imap = imap::workload::Worker::default();
    let measure_from = start + cfg.warmup;
    let end = measure_from + cfg.duration;
    while !shared.stop.load(Ordering::Relaxed) {
        let intended = match interval {
            Some(iv) => {
                let t =
                    start + iv.mul_f64(k as f64) + iv.mul_f64(w as f64 / cfg.connections as f64);
                // A request due after the end of the run is not made: the run stays
                // bounded by its duration, however low the rate per connection.
                if t >= end {
                    break;
                }
                let now = Instant::now();
                if t > now {
                    crate::percore::sleep(t - now);
                }
                if shared.stop.load(Ordering::Relaxed) {
                    break;
                }
                t
            }
            None => Instant::now(),
        };
        res.measuring = intended >= measure_from;
        let outcome: Result<Step, ClientError> = match cfg.workload {
            Workload::Smtp | Workload::Lmtp => {
                crate::smtp::deliver(cfg, w, k, &mut conn, &pool, &mut rng, &mut res)
                    .map(Step::from)
            }
            Workload::Pop3 => crate::pop3::session(cfg, w, k, &mut rng, &mut res).map(Step::from),
            Workload::Imap => imap.step(cfg, w, &pool, &mut rng, &mut res),
            Workload::Mixed => unreachable!("each connection has one kind"),
        };
        k += 1;
        match outcome {
            Ok(step) => {
                // Latency from the intended start: a stall delays every request behind it,
                // and each of them is charged for it.
                let latency = intended.elapsed().saturating_sub(step.waited);
                if res.measuring {
                    record(&mut res, step.name, latency);
                    if step.mix {
                        record(&mut res, "all", latency);
                    }
                    shared.live.record(w, latency);
                }
                shared.done.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                *res.errors.entry(e.kind()).or_default() += 1;
                shared.errors.fetch_add(1, Ordering::Relaxed);
                conn = None;
                // (A target that refuses connections or TLS is not retried in a tight loop.)
                if matches!(e, ClientError::Connect(_) | ClientError::Tls(_)) {
                    crate::percore::sleep(Duration::from_millis(100));
                }
            }
        }
    }
    if let Some(mut c) = conn {
        c.quit();
    }
    imap.finish();
    res
}
