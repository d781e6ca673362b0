//! Measures the engine's headline figures in one run and prints them as Markdown for
//! `docs/benchmarks.md`. Every figure is a ratio against a baseline measured in the same run
//! where the issue defines one, because absolute times drift on a shared machine.
//!
//! ```text
//! cargo run --release -p ringmail-benches --bin engine-report -- [--messages N] [--dir DIR] [--seconds S]
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use ringmail_benches::{mailgen::MailGen, rss_bytes, run_on_executor};
use ringmail_engine::{
    AccountOptions, Durability, NewMessage, Partition, PartitionConfig, PartitionId, Uid,
};

struct Args {
    messages: u64,
    dir: PathBuf,
    seconds: u64,
    skip_open: bool,
    only: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        messages: 1_000_000,
        dir: std::env::temp_dir().join("ringmail-engine-report"),
        seconds: 5,
        skip_open: false,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--messages" => {
                a.messages = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--messages N")
            }
            "--dir" => a.dir = it.next().map(PathBuf::from).expect("--dir DIR"),
            "--seconds" => a.seconds = it.next().and_then(|v| v.parse().ok()).expect("--seconds S"),
            "--skip-open" => a.skip_open = true,
            "--only" => a.only = it.next(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn fresh(dir: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    dir.to_path_buf()
}

fn du(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        n += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    n
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Baseline: one writer, one write + one fdatasync per message, to a plain file.
fn naive_append(dir: &Path, msgs: &[Vec<u8>], secs: u64) -> f64 {
    let path = fresh(dir).join("naive.log");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        f.write_all(&msgs[n as usize % msgs.len()]).unwrap();
        f.sync_data().unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

struct AppendResult {
    rate: f64,
    p50: Duration,
    p99: Duration,
    avg_batch: f64,
    raw_bytes: u64,
    log_bytes: u64,
    disk_bytes: u64,
}

/// 64 concurrent appenders on one partition (one shard), durable acknowledgements.
fn group_commit_append(
    dir: &Path,
    msgs: Rc<Vec<Vec<u8>>>,
    secs: u64,
    writers: usize,
) -> AppendResult {
    let dir = fresh(dir);
    let msgs = (*msgs).clone();
    run_on_executor(&dir.clone(), move || async move {
        let p = Partition::open(&dir.join("p0"), PartitionId(0), PartitionConfig::default())
            .await
            .unwrap();
        for w in 0..writers {
            p.create_account(&format!("bench{w}@example.org"), &AccountOptions::default())
                .await
                .unwrap();
        }
        let msgs = Rc::new(msgs);
        let before = p.stats().log;
        let start = Instant::now();
        let deadline = start + Duration::from_secs(secs);
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let p = p.clone();
                let msgs = msgs.clone();
                glommio::spawn_local(async move {
                    let account = format!("bench{w}@example.org");
                    let mut lat = Vec::new();
                    let mut raw = 0u64;
                    let mut i = w;
                    while Instant::now() < deadline {
                        let m = NewMessage {
                            body: msgs[i % msgs.len()].clone(),
                            ..Default::default()
                        };
                        raw += m.body.len() as u64;
                        let t = Instant::now();
                        p.append(&account, "INBOX", &m).await.unwrap();
                        lat.push(t.elapsed());
                        i += writers;
                    }
                    (lat, raw)
                })
            })
            .collect();
        let mut lat = Vec::new();
        let mut raw = 0;
        for t in tasks {
            let (l, r) = t.await;
            lat.extend(l);
            raw += r;
        }
        let elapsed = start.elapsed();
        lat.sort_unstable();
        let after = p.stats();
        let batches = after.log.batches - before.batches;
        let records = after.log.records - before.records;
        p.close().await.unwrap();
        let log_bytes = after.live_bytes;
        AppendResult {
            rate: lat.len() as f64 / elapsed.as_secs_f64(),
            p50: percentile(&lat, 0.5),
            p99: percentile(&lat, 0.99),
            avg_batch: records as f64 / batches.max(1) as f64,
            raw_bytes: raw,
            log_bytes,
            disk_bytes: du(&dir.join("p0")),
        }
    })
}

/// Random fetches of 4 KiB messages by 64 concurrent readers on one partition.
fn random_fetch(
    dir: &Path,
    count: u32,
    secs: u64,
    cache: bool,
    read_mode: ringmail_engine::ReadMode,
) -> f64 {
    let dir = fresh(dir);
    run_on_executor(&dir.clone(), move || async move {
        let cfg = PartitionConfig {
            cache_bytes: if cache {
                PartitionConfig::default().cache_bytes
            } else {
                0
            },
            durability: Durability::DangerNoSync,
            read_mode,
            ..PartitionConfig::default()
        };
        let p = Partition::open(&dir.join("p0"), PartitionId(0), cfg.clone())
            .await
            .unwrap();
        p.create_account("f@example.org", &AccountOptions::default())
            .await
            .unwrap();
        let mut g = MailGen::new(7);
        for _ in 0..count {
            let m = NewMessage {
                body: g.message_of_size(4096),
                ..Default::default()
            };
            p.append("f@example.org", "INBOX", &m).await.unwrap();
        }
        p.close().await.unwrap();
        // Reopen so nothing is warm but what the OS and the cache hold.
        let p = Partition::open(&dir.join("p0"), PartitionId(0), cfg)
            .await
            .unwrap();
        let start = Instant::now();
        let deadline = start + Duration::from_secs(secs);
        let tasks: Vec<_> = (0..64u64)
            .map(|r| {
                let p = p.clone();
                glommio::spawn_local(async move {
                    let mut rng = rand::rngs::SmallRng::seed_from_u64(r);
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let uid = Uid(rng.gen_range(1..=count));
                        let b = p.fetch("f@example.org", "INBOX", uid).await.unwrap();
                        assert!(b.len() >= 4000);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut n = 0;
        for t in tasks {
            n += t.await;
        }
        n as f64 / start.elapsed().as_secs_f64()
    })
}

struct OpenResult {
    open_1: Duration,
    log_1: u64,
    open_4: Duration,
    log_4: u64,
    rss_per_msg: f64,
    archive_per_msg: f64,
    messages: u64,
}

fn open_time(dir: &Path, messages: u64) -> OpenResult {
    let dir = fresh(dir);
    open_time_in(dir, messages)
}

fn open_time_in(dir: PathBuf, messages: u64) -> OpenResult {
    let cfg = PartitionConfig {
        durability: Durability::DangerNoSync,
        checkpoint_bytes: 0,
        cache_bytes: 0,
        segment_size: 1 << 30,
        ..PartitionConfig::default()
    };
    let accounts = 1000u64;
    // Build: `messages` realistic messages over 1000 accounts (the sync mode does not matter
    // for what is measured here: the time to open).
    {
        let (dir, cfg) = (dir.clone(), cfg.clone());
        run_on_executor(&dir.clone(), move || async move {
            let p = Partition::open(&dir.join("p0"), PartitionId(0), cfg)
                .await
                .unwrap();
            for a in 0..accounts {
                p.create_account(&format!("u{a}@example.org"), &AccountOptions::default())
                    .await
                    .unwrap();
            }
            let mut g = MailGen::new(3);
            let pool: Vec<Vec<u8>> = (0..4096).map(|_| g.message()).collect();
            let mut pending = Vec::new();
            for i in 0..messages {
                let p2 = p.clone();
                let m = NewMessage {
                    body: pool[(i % 4096) as usize].clone(),
                    ..Default::default()
                };
                pending.push(glommio::spawn_local(async move {
                    p2.append(&format!("u{}@example.org", i % accounts), "INBOX", &m)
                        .await
                        .unwrap();
                }));
                if pending.len() == 256 {
                    for t in pending.drain(..) {
                        t.await;
                    }
                }
            }
            for t in pending {
                t.await;
            }
            p.close().await.unwrap();
        });
    }
    let measure = |dir: &Path, cfg: &PartitionConfig| -> (Duration, u64, f64, f64, u64) {
        let (dir, cfg) = (dir.to_path_buf(), cfg.clone());
        run_on_executor(&dir.clone(), move || async move {
            // Three opens; report the median.
            let mut times = Vec::new();
            let mut last = None;
            for _ in 0..3 {
                drop(last.take());
                let rss0 = rss_bytes();
                let t = Instant::now();
                let p = Partition::open(&dir.join("p0"), PartitionId(0), cfg.clone())
                    .await
                    .unwrap();
                times.push(t.elapsed());
                let r = p.recovery_report();
                eprintln!(
                    "open: {:?} (checkpoint {:?}, replay {:?}, {} records)",
                    t.elapsed(),
                    r.checkpoint_time,
                    r.replay_time,
                    r.records_replayed
                );
                let rss = rss_bytes().saturating_sub(rss0);
                last = Some((p, rss));
            }
            times.sort();
            let (p, rss) = last.unwrap();
            let s = p.stats();
            let per_rss = rss as f64 / s.messages as f64;
            let per_archive = (s.checkpoint_bytes + s.overlay_bytes) as f64 / s.messages as f64;
            (times[1], s.segment_bytes, per_rss, per_archive, s.messages)
        })
    };
    let (open_1, log_1, rss_per_msg, archive_per_msg, n) = measure(&dir, &cfg);
    // Grow the log behind the checkpoint to about 4x with large incompressible messages
    // (they stay: dead segments would be deleted at the checkpoint), then a checkpoint.
    {
        let (dir, cfg) = (dir.clone(), cfg.clone());
        let grow = log_1 * 3;
        run_on_executor(&dir.clone(), move || async move {
            let p = Partition::open(&dir.join("p0"), PartitionId(0), cfg)
                .await
                .unwrap();
            let mut rng = rand::rngs::SmallRng::seed_from_u64(9);
            let mut written = 0;
            while written < grow {
                let mut body = vec![0u8; 4 << 20];
                rng.fill(&mut body[..]);
                p.append(
                    "u0@example.org",
                    "INBOX",
                    &NewMessage {
                        body,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
                written += 4 << 20;
            }
            p.close().await.unwrap();
        });
    }
    let log_4 = du(&dir.join("p0"));
    let (open_4, _, _, _, _) = measure(&dir, &cfg);
    OpenResult {
        open_1,
        log_1,
        open_4,
        log_4,
        rss_per_msg,
        archive_per_msg,
        messages: n,
    }
}

fn main() {
    let a = args();
    let machine = format!(
        "{} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .unwrap_or("unknown CPU")
            .trim()
    );
    println!("## Engine report ({})\n", machine);
    let mut g = MailGen::new(42);
    let msgs: Vec<Vec<u8>> = (0..4096).map(|_| g.message()).collect();
    let mut sizes: Vec<usize> = msgs.iter().map(|m| m.len()).collect();
    sizes.sort_unstable();
    println!(
        "Messages: realistic text mail from `mailgen` (seed 42): median {} B, mean {} B, max {} B.\n",
        sizes[sizes.len() / 2],
        sizes.iter().sum::<usize>() / sizes.len(),
        sizes.last().unwrap()
    );
    let want = |what: &str| a.only.as_deref().is_none_or(|o| o == what);
    if want("append") {
        let naive = naive_append(&a.dir, &msgs, a.seconds);
        let single = group_commit_append(&a.dir, Rc::new(msgs.clone()), a.seconds, 1);
        let gc = group_commit_append(&a.dir, Rc::new(msgs.clone()), a.seconds, 64);
        println!("### Durable append, one shard\n");
        println!("| writer | messages/s | ratio | p50 | p99 | avg batch |");
        println!("|---|---:|---:|---:|---:|---:|");
        println!("| naive: write + fdatasync per message (baseline) | {naive:.0} | 1.0× | | | 1 |");
        println!(
        "| ringmail, 1 appender (one fdatasync per message) | {:.0} | {:.1}× | {:.2} ms | {:.2} ms | {:.1} |",
        single.rate,
        single.rate / naive,
        single.p50.as_secs_f64() * 1e3,
        single.p99.as_secs_f64() * 1e3,
        single.avg_batch
    );
        println!(
        "| ringmail, 64 concurrent appenders, group commit | {:.0} | {:.1}× | {:.2} ms | {:.2} ms | {:.1} |\n",
        gc.rate,
        gc.rate / naive,
        gc.p50.as_secs_f64() * 1e3,
        gc.p99.as_secs_f64() * 1e3,
        gc.avg_batch
    );
        println!("### On-disk size\n");
        println!(
        "Raw bytes appended {} ; log bytes holding them {} (**{:.3}×** raw); whole partition directory incl. preallocation tail and checkpoint {}.\n",
        gc.raw_bytes,
        gc.log_bytes,
        gc.log_bytes as f64 / gc.raw_bytes as f64,
        gc.disk_bytes
    );
    }
    if want("fetch") {
        use ringmail_engine::ReadMode;
        println!("### Random fetch of 4 KiB messages, one shard, 64 concurrent readers, 50,000 messages (200 MiB)\n");
        println!("Each fetch: look up the UID, read the record, verify its CRC, decompress, return the bytes.\n");
        println!("| reads | engine cache | fetches/s |\n|---|---|---:|");
        for (mode, mname) in [
            (ReadMode::Direct, "O_DIRECT (every read goes to the device)"),
            (ReadMode::PageCache, "page cache (default)"),
        ] {
            for (cache, cname) in [(false, "off"), (true, "64 MiB (default)")] {
                let r = random_fetch(&a.dir, 50_000, a.seconds, cache, mode);
                println!("| {mname} | {cname} | {r:.0} |");
            }
        }
        println!();
    }
    if !a.skip_open && want("open") {
        let o = open_time(&a.dir, a.messages);
        println!(
            "### Open time and index memory, {} messages in 1000 accounts\n",
            o.messages
        );
        println!("| log on disk | open (median of 3) |\n|---|---:|");
        println!(
            "| {:.2} GB | {:.0} ms |",
            o.log_1 as f64 / 1e9,
            o.open_1.as_secs_f64() * 1e3
        );
        println!(
            "| {:.2} GB | {:.0} ms |",
            o.log_4 as f64 / 1e9,
            o.open_4.as_secs_f64() * 1e3
        );
        println!(
            "\nOpen time ratio, 4x log vs 1x: **{:.2}×**. Index memory: {:.1} bytes/message in the checkpoint archive and overlay; process RSS grew {:.1} bytes/message on open.\n",
            o.open_4.as_secs_f64() / o.open_1.as_secs_f64(),
            o.archive_per_msg,
            o.rss_per_msg
        );
    }
    let _ = std::fs::remove_dir_all(&a.dir);
}
