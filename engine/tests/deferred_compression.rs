//! Deferred compression: bodies stored raw are compressed in the background and logged again,
//! without changing a byte a client reads, across expunges, restarts and compaction.

mod common;

use std::rc::Rc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::future::join_all;
use ringmail_engine::{Partition, PartitionConfig, Uid};

const A: &str = "d@example.org";
const SIZE: usize = 4096;

/// (UID, message number) pairs.
type Pairs = Vec<(u32, u64)>;

/// Waits until the partition has nothing left to compress.
async fn drained(p: &Rc<Partition>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.stats().deferred_bytes > 0 {
        assert!(
            Instant::now() < deadline,
            "deferred compression never drained"
        );
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

/// Appends messages `from..from + n` all at once (every delivery is planned before the first
/// is durable); returns their UIDs.
async fn append_all(p: &Rc<Partition>, from: u64, n: u64, body: fn(u64) -> Vec<u8>) -> Vec<u32> {
    join_all((from..from + n).map(|i| {
        let p = p.clone();
        async move {
            p.append(A, "INBOX", &new_message(body(i)))
                .await
                .unwrap()
                .uid
                .0
        }
    }))
    .await
}

fn mail(n: u64) -> Vec<u8> {
    message(n, SIZE)
}

/// Bytes that zstd cannot shrink.
fn noise(n: u64) -> Vec<u8> {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn check_bodies(p: &Rc<Partition>, uids: &[(u32, u64)], body: fn(u64) -> Vec<u8>) {
    for &(uid, n) in uids {
        let b = p.fetch(A, "INBOX", Uid(uid)).await.unwrap();
        assert!(*b == body(n), "UID {uid} differs");
    }
    let rep = p.check_integrity().await;
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
}

#[test]
fn raw_bodies_are_compressed_in_the_background_and_read_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(dir.path(), move || async move {
        let p = open_with_account(&d, deferring_config(), A).await;
        let records_before = p.stats().log.records;
        let uids = append_all(&p, 0, 300, mail).await;
        let pairs: Vec<(u32, u64)> = uids.iter().copied().zip(0..).collect();
        // Readable at once, whether or not the worker got to them yet.
        check_bodies(&p, &pairs, mail).await;
        drained(&p).await;
        let st = p.stats();
        let raw = 300 * SIZE as u64;
        // Every message was logged raw, then once more compressed.
        assert_eq!(st.log.records - records_before, 600, "{st:?}");
        assert!(st.segment_bytes > raw, "{st:?}");
        assert!(st.live_bytes * 2 < raw, "not compressed: {st:?}");
        check_bodies(&p, &pairs, mail).await;
        p.close().await.unwrap();
        drop(p);

        // Nothing raw is left to find after a restart; compaction gives the raw space back.
        let p = open(&d, deferring_config()).await;
        assert_eq!(p.stats().deferred_bytes, 0);
        p.compact().await.unwrap();
        let st = p.stats();
        assert!(st.segment_bytes < raw, "{st:?}");
        check_bodies(&p, &pairs, mail).await;
    });
}

#[test]
fn with_the_bound_reached_deliveries_compress_inline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(dir.path(), move || async move {
        let cfg = PartitionConfig {
            deferred_compression_bytes: 4 * SIZE as u64,
            ..config()
        };
        let p = open_with_account(&d, cfg, A).await;
        let records_before = p.stats().log.records;
        let uids = append_all(&p, 0, 50, mail).await;
        drained(&p).await;
        let st = p.stats();
        // Four fit under the bound; the other 46 were compressed before they were logged.
        assert_eq!(st.log.records - records_before, 54, "{st:?}");
        assert!(st.live_bytes * 2 < 50 * SIZE as u64, "{st:?}");
        let pairs: Vec<(u32, u64)> = uids.iter().copied().zip(0..).collect();
        check_bodies(&p, &pairs, mail).await;
    });
}

#[test]
fn off_means_every_body_is_compressed_before_it_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(dir.path(), move || async move {
        let p = open_with_account(&d, config(), A).await;
        let records_before = p.stats().log.records;
        append_all(&p, 0, 50, mail).await;
        let st = p.stats();
        assert_eq!(st.deferred_bytes, 0);
        assert_eq!(st.log.records - records_before, 50);
        assert!(st.live_bytes * 2 < 50 * SIZE as u64, "{st:?}");
    });
}

#[test]
fn expunged_while_waiting_messages_are_not_brought_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(dir.path(), move || async move {
        let p = open_with_account(&d, deferring_config(), A).await;
        let uids = append_all(&p, 0, 200, mail).await;
        let (gone, kept): (Pairs, Pairs) = uids
            .iter()
            .copied()
            .zip(0..)
            .partition(|&(_, n)| n % 2 == 0);
        let gone_uids: Vec<Uid> = gone.iter().map(|&(u, _)| Uid(u)).collect();
        p.expunge(A, "INBOX", Some(&gone_uids)).await.unwrap();
        drained(&p).await;
        let left: Vec<u32> = p
            .messages(A, "INBOX", Uid(1), Uid(u32::MAX))
            .unwrap()
            .iter()
            .map(|m| m.uid.0)
            .collect();
        assert_eq!(left, kept.iter().map(|&(u, _)| u).collect::<Vec<_>>());
        assert_eq!(p.stats().blobs, 100);
        check_bodies(&p, &kept, mail).await;
        p.close().await.unwrap();
        drop(p);
        let p = open(&d, deferring_config()).await;
        assert_eq!(p.stats().blobs, 100);
        check_bodies(&p, &kept, mail).await;
    });
}

#[test]
fn after_a_restart_the_newest_raw_bodies_are_queued_up_to_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(dir.path(), move || async move {
        // Incompressible bodies are stored raw even inline: after the restart they look like
        // deferred ones, and the worker finds that they stay raw.
        let p = open_with_account(&d, config(), A).await;
        let uids = append_all(&p, 0, 20, noise).await;
        p.close().await.unwrap();
        drop(p);
        let cfg = PartitionConfig {
            deferred_compression_bytes: 5 * SIZE as u64,
            ..config()
        };
        let p = open(&d, cfg).await;
        // Taken before the task first runs.
        assert_eq!(p.stats().deferred_bytes, 5 * SIZE as u64);
        let records = p.stats().log.records;
        drained(&p).await;
        assert_eq!(p.stats().log.records, records, "nothing to relog");
        let pairs: Vec<(u32, u64)> = uids.iter().copied().zip(0..).collect();
        check_bodies(&p, &pairs, noise).await;
    });
}

#[test]
fn background_checkpoints_compact_without_being_asked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(dir.path(), move || async move {
        let cfg = PartitionConfig {
            segment_size: 256 << 10,
            checkpoint_bytes: 512 << 10,
            ..deferring_config()
        };
        let p = open_with_account(&d, cfg, A).await;
        let mut kept = Vec::new();
        for round in 0..20u64 {
            let uids = append_all(&p, round * 100, 100, mail).await;
            // Keep one in ten.
            let mut gone = Vec::new();
            for (i, &u) in uids.iter().enumerate() {
                let n = round * 100 + i as u64;
                if n % 10 == 0 {
                    kept.push((u, n));
                } else {
                    gone.push(Uid(u));
                }
            }
            p.expunge(A, "INBOX", Some(&gone)).await.unwrap();
        }
        drained(&p).await;
        // 8 MiB went through the log; what is kept is a tenth of it, compressed.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let st = p.stats();
            if st.segment_bytes < 3 << 20 {
                break;
            }
            assert!(Instant::now() < deadline, "never compacted: {st:?}");
            // Log a little, as a running server does, so background checkpoints go on.
            let uids = append_all(&p, 1_000_000, 10, mail).await;
            let g: Vec<Uid> = uids.iter().map(|&u| Uid(u)).collect();
            p.expunge(A, "INBOX", Some(&g)).await.unwrap();
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        check_bodies(&p, &kept, mail).await;
    });
}

/// Waits up to 15 s for the partition to have nothing left to compress; false if it never
/// got there.
async fn drained_soon(p: &Rc<Partition>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while p.stats().deferred_bytes > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// Regression: compaction moves a message (and the index points at its new place) before
/// the batch holding the new record is written; the deferred-compression task read that
/// place at once, found zeros (`bad magic … got [00,00,00,00]`) or the end of the file
/// (`input ends at byte …`), and stopped for good (4 of ~14 SMTP-then-POP3 runs). Reads of a
/// place taken from the index now wait until the log is durable up to the record's end.
#[test]
fn a_message_moved_by_compaction_is_read_only_once_its_record_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(dir.path(), move || async move {
        let cfg = PartitionConfig {
            segment_size: 64 << 10,
            ..deferring_config()
        };
        // Raw bodies, most of them expunged, closed before the task had its 50 ms of quiet.
        let p = open_with_account(&d, cfg.clone(), A).await;
        let uids = append_all(&p, 0, 48, mail).await;
        let (kept, gone): (Pairs, Pairs) = uids
            .iter()
            .copied()
            .zip(0..)
            .partition(|&(_, n)| n % 8 == 0);
        let gone: Vec<Uid> = gone.iter().map(|&(u, _)| Uid(u)).collect();
        p.expunge(A, "INBOX", Some(&gone)).await.unwrap();
        p.close().await.unwrap();
        drop(p);

        // A slow disk: compaction moves the kept raw messages into a batch that waits, while
        // the task's quiet time passes and it looks for them.
        let p = open(&d, cfg).await;
        assert!(p.stats().deferred_bytes > 0);
        p.hold_log_writes(true);
        let compacting = {
            let p = p.clone();
            glommio::spawn_local(async move { p.compact().await })
        };
        glommio::timer::sleep(Duration::from_millis(300)).await;
        p.hold_log_writes(false);
        assert!(compacting.await.unwrap() > 0, "nothing compacted");
        assert!(
            drained_soon(&p).await,
            "deferred compression stopped: {:?}",
            p.stats()
        );
        check_bodies(&p, &kept, mail).await;
        let raw = kept.len() as u64 * SIZE as u64;
        assert!(
            p.stats().live_bytes * 2 < raw,
            "not compressed: {:?}",
            p.stats()
        );
    });
}

/// Regression: any error reading one queued message stopped deferred compression for the
/// partition until a restart. Now that message stays raw (the integrity check reports it)
/// and the rest are compressed, as is later mail.
#[test]
fn a_damaged_message_does_not_stop_deferred_compression() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let d1 = d.clone();
    let uids = run(dir.path(), move || async move {
        let p = open_with_account(&d1, deferring_config(), A).await;
        let uids = append_all(&p, 0, 20, mail).await;
        p.close().await.unwrap();
        uids
    });
    // One flipped byte in message 5's stored body (raw, so findable by its text).
    let mut flipped = 0;
    for e in std::fs::read_dir(d.join("p0")).unwrap() {
        let path = e.unwrap().path();
        let mut b = std::fs::read(&path).unwrap();
        if let Some(i) = b.windows(20).position(|w| w == b"Subject: message 5\r\n") {
            b[i + 40] ^= 1;
            std::fs::write(&path, &b).unwrap();
            flipped += 1;
        }
    }
    assert_eq!(flipped, 1);
    run(&d.clone(), move || async move {
        let p = open(&d, deferring_config()).await;
        assert!(
            drained_soon(&p).await,
            "stopped at the damaged message: {:?}",
            p.stats()
        );
        let good: Pairs = uids
            .iter()
            .copied()
            .zip(0..)
            .filter(|&(_, n)| n != 5)
            .collect();
        for &(uid, n) in &good {
            assert!(*p.fetch(A, "INBOX", Uid(uid)).await.unwrap() == mail(n));
        }
        assert!(p.fetch(A, "INBOX", Uid(uids[5])).await.is_err());
        // Later mail is still deferred, and compressed.
        p.append(A, "INBOX", &new_message(mail(100))).await.unwrap();
        assert!(p.stats().deferred_bytes > 0, "deferring was turned off");
        assert!(drained_soon(&p).await);
    });
}
