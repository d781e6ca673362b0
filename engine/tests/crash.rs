//! Crash safety: cut or damage the log at many points, reopen, and compare with a model of
//! what was acknowledged. A writer killed with SIGKILL loses nothing it acknowledged.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ringmail_engine::internals::format::segment_file;
use ringmail_engine::internals::segment::scan_segment;
use ringmail_engine::{FlagOp, Flags, Uid};

const ACCOUNT: &str = "crash@example.org";

#[derive(Clone, Debug)]
enum Op {
    Append { n: u64, size: usize },
    Store { uid: u32, flags: u64 },
    Expunge { uid: u32 },
}

/// Model state after applying `ops`: UID → (message number, size, flags).
fn model(ops: &[Op]) -> BTreeMap<u32, (u64, usize, u64)> {
    let mut m = BTreeMap::new();
    let mut next_uid = 1;
    for op in ops {
        match op {
            Op::Append { n, size } => {
                m.insert(next_uid, (*n, *size, 0));
                next_uid += 1;
            }
            Op::Store { uid, flags } => {
                if let Some(e) = m.get_mut(uid) {
                    e.2 = *flags;
                }
            }
            Op::Expunge { uid } => {
                m.remove(uid);
            }
        }
    }
    m
}

fn workload() -> Vec<Op> {
    let mut ops = Vec::new();
    for n in 0..60u64 {
        ops.push(Op::Append {
            n,
            size: 100 + (n as usize * 997) % 9000,
        });
        if n % 4 == 3 {
            ops.push(Op::Store {
                uid: n as u32,
                flags: Flags::SEEN.0 | Flags::FLAGGED.0,
            });
        }
        if n % 10 == 9 {
            ops.push(Op::Expunge { uid: n as u32 - 5 });
        }
    }
    ops
}

/// Writes the workload (each op waits for its acknowledgement) and returns the data dir.
fn write_workload(ops: &[Op]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let ops = ops.to_vec();
    run(&d.clone(), move || async move {
        let p = open_with_account(&d, config(), ACCOUNT).await;
        for op in ops {
            match op {
                Op::Append { n, size } => {
                    p.append(ACCOUNT, "INBOX", &new_message(message(n, size)))
                        .await
                        .unwrap();
                }
                Op::Store { uid, flags } => {
                    p.store(
                        ACCOUNT,
                        "INBOX",
                        &[Uid(uid)],
                        FlagOp::Replace,
                        Flags(flags),
                        &[],
                        None,
                    )
                    .await
                    .unwrap();
                }
                Op::Expunge { uid } => {
                    p.expunge(ACCOUNT, "INBOX", Some(&[Uid(uid)]))
                        .await
                        .unwrap();
                }
            }
        }
        // No close: the process "crashes" here with everything acknowledged on disk.
    });
    dir
}

fn segment_path(dir: &Path) -> PathBuf {
    dir.join("p0").join(segment_file(1, 1))
}

/// Reopens `dir` and checks that the mailbox is exactly `expected`, bodies included.
fn verify(dir: &Path, expected: BTreeMap<u32, (u64, usize, u64)>, expect_clean: bool) {
    let d = dir.to_path_buf();
    run(dir, move || async move {
        let p = open(&d, config()).await;
        let rep = p.recovery_report().clone();
        if expect_clean {
            assert!(rep.is_clean(), "{rep:?}");
        }
        let got = p.messages(ACCOUNT, "INBOX", Uid(1), Uid(u32::MAX)).unwrap();
        let got_uids: Vec<u32> = got.iter().map(|m| m.uid.0).collect();
        let want_uids: Vec<u32> = expected.keys().copied().collect();
        assert_eq!(got_uids, want_uids, "UIDs differ; report {rep:?}");
        for m in got {
            let (n, size, flags) = expected[&m.uid.0];
            assert_eq!(m.flags.0, flags, "flags of UID {}", m.uid);
            let body = p.fetch(ACCOUNT, "INBOX", m.uid).await.unwrap();
            assert!(*body == message(n, size), "body of UID {}", m.uid);
        }
        drop(p);
    });
}

#[test]
fn every_cut_point_of_the_last_segment_keeps_exactly_the_complete_records() {
    let ops = workload();
    let dir = write_workload(&ops);
    let seg = std::fs::read(segment_path(dir.path())).unwrap();
    let scan = scan_segment(&seg, 64, 0);
    // Account creation is 6 records (account with INBOX, 5 more mailboxes); then one per op.
    let setup = 6;
    assert_eq!(scan.records.len(), setup + ops.len());
    let ends: Vec<u64> = scan
        .records
        .iter()
        .map(|r| r.offset + r.header.total_len())
        .collect();
    let mut cuts = Vec::new();
    for &e in &ends[setup - 1..] {
        cuts.extend([e - 1, e, e + 1, e + 17]);
    }
    for (i, cut) in cuts.into_iter().enumerate() {
        let complete = ends.iter().filter(|&&e| e <= cut).count();
        if complete < setup {
            continue;
        }
        let expected = model(&ops[..complete - setup]);
        // Variant 1: the file ends at the cut.
        let t = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), t.path());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(segment_path(t.path()))
            .unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        verify(t.path(), expected.clone(), true);
        // Recovering again changes nothing.
        verify(t.path(), expected.clone(), true);
        // Variant 2: garbage from the cut on, as a torn write can leave.
        if i % 3 == 0 {
            let t = tempfile::tempdir().unwrap();
            copy_dir(dir.path(), t.path());
            let mut b = std::fs::read(segment_path(t.path())).unwrap();
            for (k, byte) in b[cut as usize..].iter_mut().enumerate() {
                *byte = (k as u8).wrapping_mul(31).wrapping_add(7);
            }
            std::fs::write(segment_path(t.path()), &b).unwrap();
            verify(t.path(), expected, true);
        }
    }
}

#[test]
fn a_corrupt_record_in_the_middle_is_reported_and_everything_else_kept() {
    let ops = workload();
    let dir = write_workload(&ops);
    let seg = std::fs::read(segment_path(dir.path())).unwrap();
    let scan = scan_segment(&seg, 64, 0);
    // The append of message 20 (UID 21): no later op touches it.
    let op_index = ops
        .iter()
        .position(|o| matches!(o, Op::Append { n: 20, .. }))
        .unwrap();
    let rec = scan.records[6 + op_index];
    for (what, at) in [("payload", rec.offset + 40), ("header", rec.offset + 5)] {
        let t = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), t.path());
        let mut b = seg.clone();
        b[at as usize] ^= 0x55;
        std::fs::write(segment_path(t.path()), &b).unwrap();
        let mut expected = model(&ops);
        expected.remove(&21);
        verify(t.path(), expected, false);
        let d = t.path().to_path_buf();
        let rep = run(t.path(), move || async move {
            let p = open(&d, config()).await;
            p.recovery_report().clone()
        });
        assert_eq!(rep.corrupt_ranges.len(), 1, "{what}: {rep:?}");
        assert_eq!(rep.corrupt_ranges[0].1, rec.offset, "{what}");
    }
}

/// The child side of the SIGKILL test: appends until killed, printing each acknowledgement.
#[test]
#[ignore = "run by sigkill_during_writes_loses_nothing_acknowledged"]
fn sigkill_child() {
    let Ok(dir) = std::env::var("RINGMAIL_CRASH_DIR") else {
        return;
    };
    let start: u64 = std::env::var("RINGMAIL_CRASH_START")
        .unwrap()
        .parse()
        .unwrap();
    let d = PathBuf::from(dir);
    run(&d.clone(), move || async move {
        let p = open_with_account(&d, deferring_config(), ACCOUNT).await;
        let writers: Vec<_> = (0..16u64)
            .map(|w| {
                let p = p.clone();
                glommio::spawn_local(async move {
                    let deadline = Instant::now() + Duration::from_secs(20);
                    let mut k = 0;
                    while Instant::now() < deadline {
                        let n = start + w + 16 * k;
                        k += 1;
                        let size = 200 + (n as usize * 7919) % 20_000;
                        let a = p
                            .append(ACCOUNT, "INBOX", &new_message(message(n, size)))
                            .await
                            .unwrap();
                        println!("ACK {n} {}", a.uid);
                        if n % 3 == 0 {
                            p.store(
                                ACCOUNT,
                                "INBOX",
                                &[a.uid],
                                FlagOp::Add,
                                Flags::SEEN,
                                &[],
                                None,
                            )
                            .await
                            .unwrap();
                            println!("SEEN {}", a.uid);
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.await;
        }
    });
}

#[test]
fn sigkill_during_writes_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<u32, u64> = BTreeMap::new();
    let mut seen: Vec<u32> = Vec::new();
    for round in 0..3u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sigkill_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("RINGMAIL_CRASH_DIR", dir.path())
            .env("RINGMAIL_CRASH_START", (round * 1_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut round_acks = 0;
        let started = Instant::now();
        // Kill at a different moment each round, once it is busy writing.
        let target = 200 + round as usize * 300;
        while round_acks < target && started.elapsed() < Duration::from_secs(15) {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                let parts: Vec<&str> = line.split_whitespace().collect();
                match parts.as_slice() {
                    ["ACK", n, uid] => {
                        acked.insert(uid.parse().unwrap(), n.parse().unwrap());
                        round_acks += 1;
                    }
                    ["SEEN", uid] => seen.push(uid.parse().unwrap()),
                    _ => {}
                }
            }
        }
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        // Lines already written before the kill are acknowledgements too.
        reader.join().unwrap();
        while let Ok(line) = rx.try_recv() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["ACK", n, uid] => {
                    acked.insert(uid.parse().unwrap(), n.parse().unwrap());
                }
                ["SEEN", uid] => seen.push(uid.parse().unwrap()),
                _ => {}
            }
        }
        assert!(round_acks > 0, "the child wrote nothing in round {round}");
    }
    let d = dir.path().to_path_buf();
    run(dir.path(), move || async move {
        let p = open(&d, config()).await;
        for (&uid, &n) in &acked {
            let size = 200 + (n as usize * 7919) % 20_000;
            let body = p
                .fetch(ACCOUNT, "INBOX", Uid(uid))
                .await
                .unwrap_or_else(|e| panic!("acknowledged UID {uid} (message {n}) lost: {e}"));
            assert!(*body == message(n, size), "UID {uid} differs");
        }
        for uid in seen {
            let m = p.message(ACCOUNT, "INBOX", Uid(uid)).unwrap();
            assert!(
                m.flags.contains(Flags::SEEN),
                "acknowledged \\Seen on UID {uid} lost"
            );
        }
        let rep = p.check_integrity().await;
        assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    });
}
