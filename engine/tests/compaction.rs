//! Compaction reclaims expunged space without losing anything, under concurrent appends and
//! reads, and a crash at any point of it loses nothing.

mod common;

use std::collections::BTreeMap;
use std::rc::Rc;

use common::*;
use ringmail_engine::{Partition, PartitionConfig, Uid};

const A: &str = "c@example.org";

fn small_segments() -> PartitionConfig {
    PartitionConfig {
        segment_size: 256 << 10,
        checkpoint_bytes: 0,
        // Bodies compressed inline, so segment sizes depend on nothing but the test.
        deferred_compression_bytes: 0,
        ..PartitionConfig::default()
    }
}

async fn fill(p: &Rc<Partition>, from: u64, count: u64) -> BTreeMap<u32, u64> {
    let mut m = BTreeMap::new();
    for n in from..from + count {
        let a = p
            .append(
                A,
                "INBOX",
                &new_message(message(n, 3000 + (n as usize % 5) * 1000)),
            )
            .await
            .unwrap();
        m.insert(a.uid.0, n);
    }
    m
}

/// Checks that exactly `live` is stored (or, while writers add more, at least `live`).
async fn check_with(p: &Rc<Partition>, live: &BTreeMap<u32, u64>, exact: bool) {
    let uids: Vec<u32> = p
        .messages(A, "INBOX", Uid(1), Uid(u32::MAX))
        .unwrap()
        .iter()
        .map(|m| m.uid.0)
        .collect();
    if exact {
        assert_eq!(uids, live.keys().copied().collect::<Vec<_>>());
    } else {
        assert!(live.keys().all(|u| uids.binary_search(u).is_ok()));
    }
    for (&uid, &n) in live {
        let b = p.fetch(A, "INBOX", Uid(uid)).await.unwrap();
        assert!(
            *b == message(n, 3000 + (n as usize % 5) * 1000),
            "UID {uid}"
        );
    }
}

async fn check(p: &Rc<Partition>, live: &BTreeMap<u32, u64>) {
    check_with(p, live, true).await
}

#[test]
fn compaction_under_concurrent_appends_and_reads_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let p = open_with_account(&d, small_segments(), A).await;
        let mut live = fill(&p, 0, 600).await;
        // Expunge 3 of every 4 messages.
        let gone: Vec<Uid> = live
            .keys()
            .filter(|u| *u % 4 != 0)
            .map(|&u| Uid(u))
            .collect();
        p.expunge(A, "INBOX", Some(&gone)).await.unwrap();
        live.retain(|u, _| u % 4 == 0);
        p.checkpoint().await.unwrap();
        let before = p.stats();
        assert!(!p.compaction_plan().is_empty());

        // Compact while writers append and readers fetch.
        let writer = {
            let p = p.clone();
            glommio::spawn_local(async move { fill(&p, 10_000, 200).await })
        };
        let reader = {
            let p = p.clone();
            let live = live.clone();
            glommio::spawn_local(async move {
                for _ in 0..3 {
                    check_with(&p, &live, false).await;
                }
            })
        };
        let removed = p.compact().await.unwrap();
        let added = writer.await;
        reader.await;
        live.extend(added);
        assert!(removed > 0, "nothing compacted");
        let after = p.stats();
        assert!(
            after.segment_bytes < before.segment_bytes,
            "{} !< {}",
            after.segment_bytes,
            before.segment_bytes
        );
        check(&p, &live).await;
        assert!(p.check_integrity().await.errors.is_empty());
        p.close().await.unwrap();

        let p = open(&d, small_segments()).await;
        assert!(p.recovery_report().is_clean(), "{:?}", p.recovery_report());
        check(&p, &live).await;
        p.close().await.unwrap();
    });
}

/// The child: compacts in a loop (expunging and appending in between) until killed.
#[test]
#[ignore = "run by sigkill_during_compaction_loses_nothing"]
fn compaction_child() {
    let Ok(dir) = std::env::var("RINGMAIL_COMPACT_DIR") else {
        return;
    };
    let d = std::path::PathBuf::from(dir);
    run(&d.clone(), move || async move {
        let p = open_with_account(&d, small_segments(), A).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut round = 0u64;
        while std::time::Instant::now() < deadline {
            let base = 1_000_000 * (std::process::id() as u64 % 1000) + round * 1000;
            let added = fill(&p, base, 100).await;
            for (uid, n) in &added {
                println!("ACK {n} {uid}");
            }
            let drop: Vec<Uid> = added
                .keys()
                .filter(|u| *u % 3 != 0)
                .map(|&u| Uid(u))
                .collect();
            // Announced before the expunge: once it is durable the messages may be gone even
            // if the kill comes before we could say so.
            for u in &drop {
                println!("GONE {}", u.0);
            }
            p.expunge(A, "INBOX", Some(&drop)).await.unwrap();
            p.compact().await.unwrap();
            round += 1;
        }
    });
}

#[test]
fn sigkill_during_compaction_loses_nothing() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut live: BTreeMap<u32, u64> = BTreeMap::new();
    for round in 0..4u64 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "compaction_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("RINGMAIL_COMPACT_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let started = std::time::Instant::now();
        let mut lines = 0;
        let stop_after = 300 + 250 * round as usize;
        let handle = |l: String, live: &mut BTreeMap<u32, u64>| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            match parts.as_slice() {
                ["ACK", n, uid] => {
                    live.insert(uid.parse().unwrap(), n.parse().unwrap());
                }
                ["GONE", uid] => {
                    live.remove(&uid.parse::<u32>().unwrap());
                }
                _ => {}
            }
        };
        while lines < stop_after && started.elapsed() < std::time::Duration::from_secs(15) {
            if let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(50)) {
                handle(l, &mut live);
                lines += 1;
            }
        }
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        t.join().unwrap();
        while let Ok(l) = rx.try_recv() {
            handle(l, &mut live);
        }
    }
    let d = dir.path().to_path_buf();
    run(dir.path(), move || async move {
        let p = open(&d, small_segments()).await;
        // An expunge cut off by the kill may not have happened, so a message announced as
        // gone may still be there; every acknowledged message not announced must be.
        let present: std::collections::BTreeSet<u32> = p
            .messages(A, "INBOX", Uid(1), Uid(u32::MAX))
            .unwrap()
            .iter()
            .map(|m| m.uid.0)
            .collect();
        for (&uid, &n) in &live {
            assert!(
                present.contains(&uid),
                "acknowledged UID {uid} lost; report {:?}; dir {:?}",
                p.recovery_report(),
                std::fs::read_dir(d.join("p0"))
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect::<Vec<_>>()
            );
            let b = p.fetch(A, "INBOX", Uid(uid)).await.unwrap();
            assert!(
                *b == message(n, 3000 + (n as usize % 5) * 1000),
                "UID {uid}"
            );
        }
        let rep = p.check_integrity().await;
        assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    });
}
