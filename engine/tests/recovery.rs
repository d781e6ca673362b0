//! Restart after a checkpoint plus a log tail: only the tail is replayed, and the result is
//! the full state.

mod common;

use common::*;
use ringmail_engine::{FlagOp, Flags, PartitionConfig, Uid};

const A: &str = "r@example.org";

#[test]
fn restart_replays_only_the_tail_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let d1 = d.clone();
    run(&d.clone(), move || async move {
        let d = d1;
        let p = open_with_account(&d, config(), A).await;
        for n in 0..500 {
            p.append(A, "INBOX", &new_message(message(n, 2000)))
                .await
                .unwrap();
        }
        p.store(
            A,
            "INBOX",
            &[Uid(1), Uid(2)],
            FlagOp::Add,
            Flags::SEEN,
            &["$Important".into()],
            None,
        )
        .await
        .unwrap();
        p.checkpoint().await.unwrap();
        // The tail: appends, flag changes, an expunge, a mailbox rename, a MOVE.
        for n in 500..530 {
            p.append(A, "INBOX", &new_message(message(n, 2000)))
                .await
                .unwrap();
        }
        p.store(
            A,
            "INBOX",
            &[Uid(510)],
            FlagOp::Add,
            Flags::ANSWERED,
            &[],
            None,
        )
        .await
        .unwrap();
        p.store(
            A,
            "INBOX",
            &[Uid(2)],
            FlagOp::Remove,
            Flags::SEEN,
            &[],
            None,
        )
        .await
        .unwrap();
        p.expunge(A, "INBOX", Some(&[Uid(3)])).await.unwrap();
        p.create_mailbox(A, "Projects", Default::default())
            .await
            .unwrap();
        p.create_mailbox(A, "Projects/2026", Default::default())
            .await
            .unwrap();
        p.rename_mailbox(A, "Projects", "Work").await.unwrap();
        p.move_messages(A, "INBOX", "Work/2026", &[Uid(4), Uid(5)])
            .await
            .unwrap();
        // Crash: no close, so no final checkpoint.
    });
    run(&d.clone(), move || async move {
        let p = open(&d, config()).await;
        let rep = p.recovery_report();
        assert_eq!(rep.checkpoint, Some(1));
        assert!(rep.is_clean(), "{rep:?}");
        // 30 appends + 6 other records after the checkpoint, plus segment bookkeeping: far
        // fewer than the 500 before it.
        assert!(
            rep.records_replayed >= 36 && rep.records_replayed < 60,
            "{}",
            rep.records_replayed
        );
        let st = p.status(A, "INBOX").unwrap();
        assert_eq!(st.messages, 530 - 3);
        let kw = p.keywords(A).unwrap();
        assert_eq!(kw, vec!["$Important".to_string()]);
        let m1 = p.message(A, "INBOX", Uid(1)).unwrap();
        assert!(m1.flags.contains(Flags::SEEN.union(Flags::keyword(0))));
        let m2 = p.message(A, "INBOX", Uid(2)).unwrap();
        assert!(!m2.flags.contains(Flags::SEEN) && m2.flags.contains(Flags::keyword(0)));
        assert!(p
            .message(A, "INBOX", Uid(510))
            .unwrap()
            .flags
            .contains(Flags::ANSWERED));
        assert!(p.message(A, "INBOX", Uid(3)).is_err());
        let names: Vec<String> = p
            .mailboxes(A)
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert!(names.contains(&"Work".to_string()) && names.contains(&"Work/2026".to_string()));
        assert!(!names.iter().any(|n| n.starts_with("Projects")));
        let moved = p.messages(A, "Work/2026", Uid(1), Uid(u32::MAX)).unwrap();
        assert_eq!(moved.len(), 2);
        let b = p.fetch(A, "Work/2026", moved[1].uid).await.unwrap();
        assert!(*b == message(4, 2000));
        // And a second restart from a fresh checkpoint gives the same.
        p.close().await.unwrap();
        let p = open(&d, config()).await;
        assert_eq!(p.recovery_report().checkpoint, Some(2));
        assert_eq!(p.status(A, "INBOX").unwrap().messages, 527);
        assert!(p.check_integrity().await.errors.is_empty());
    });
}

/// A checkpoint taken while writers keep appending still moves the index onto the new
/// archive: what was applied after its image is replayed onto it, so the in-memory overlays
/// shrink under constant load instead of growing until a restart.
#[test]
fn a_checkpoint_under_load_rebases_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let p = open_with_account(&d, config(), A).await;
        for n in 0..2000 {
            p.append(A, "INBOX", &new_message(message(n, 500)))
                .await
                .unwrap();
        }
        let before = p.stats().overlay_bytes;
        let writer = {
            let p = p.clone();
            glommio::spawn_local(async move {
                for n in 2000..2300 {
                    p.append(A, "INBOX", &new_message(message(n, 500)))
                        .await
                        .unwrap();
                    p.store(
                        A,
                        "INBOX",
                        &[Uid(n as u32 - 1000)],
                        FlagOp::Add,
                        Flags::SEEN,
                        &[],
                        None,
                    )
                    .await
                    .unwrap();
                }
            })
        };
        // Let the writer get going, then checkpoint while it runs.
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        p.checkpoint().await.unwrap();
        let after = p.stats();
        writer.await;
        assert!(
            after.checkpoint_bytes > 0,
            "the index now reads from the checkpoint"
        );
        assert!(
            after.overlay_bytes < before / 4,
            "overlay {} was {}",
            after.overlay_bytes,
            before
        );
        // Everything is there, with the changes made during the checkpoint.
        assert_eq!(p.status(A, "INBOX").unwrap().messages, 2300);
        assert!(p
            .message(A, "INBOX", Uid(1001))
            .unwrap()
            .flags
            .contains(Flags::SEEN));
        assert!(*p.fetch(A, "INBOX", Uid(2300)).await.unwrap() == message(2299, 500));
        assert!(p.check_integrity().await.errors.is_empty());
        drop(p);
        let p = open(&d, config()).await;
        assert_eq!(p.status(A, "INBOX").unwrap().messages, 2300);
        assert!(p
            .message(A, "INBOX", Uid(1299))
            .unwrap()
            .flags
            .contains(Flags::SEEN));
    });
}

/// The segment being written is kept written with zeros a step ahead of its records (so a
/// commit's fdatasync has no extent or size change to journal), never past the segment
/// size; a restart reads those zeros as the segment's clean end, and nothing is lost.
#[test]
fn zeros_written_ahead_are_a_clean_end_after_a_crash() {
    fn segments(d: &std::path::Path) -> Vec<(String, Vec<u8>)> {
        segment_paths(d)
            .into_iter()
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap())
            })
            .collect()
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    // 1 MiB segments: the zeros ahead reach the segment's end and stop there.
    let cfg = || PartitionConfig {
        segment_size: 1 << 20,
        ..config()
    };
    let d1 = d.clone();
    run(&d.clone(), move || async move {
        let p = open_with_account(&d1, cfg(), A).await;
        for n in 0..40 {
            p.append(A, "INBOX", &new_message(message(n, 2000)))
                .await
                .unwrap();
        }
        // Crash: no close.
    });
    let segs = segments(&d);
    let (_, active) = segs.last().unwrap();
    // 40 small records take a few KiB; the file runs on to the segment size in zeros.
    assert_eq!(active.len(), 1 << 20, "zeros ahead up to the segment size");
    let last_nonzero = active.iter().rposition(|&b| b != 0).unwrap();
    assert!(last_nonzero < 256 << 10, "records end at {last_nonzero}");
    let d2 = d.clone();
    run(&d.clone(), move || async move {
        let p = open(&d2, cfg()).await;
        let rep = p.recovery_report();
        assert!(rep.is_clean() && rep.torn_tails.is_empty(), "{rep:?}");
        assert_eq!(p.status(A, "INBOX").unwrap().messages, 40);
        // The crashed run's segment is cut back to its records: neither its zeros nor the
        // blocks preallocated past them hold disk space any more.
        use std::os::unix::fs::MetadataExt;
        let first = segment_paths(&d2).remove(0);
        let m = std::fs::metadata(&first).unwrap();
        assert!(m.len() < 256 << 10, "{} bytes", m.len());
        assert!(
            m.blocks() * 512 <= m.len().next_multiple_of(4096) + 4096,
            "{} bytes allocated for {} bytes",
            m.blocks() * 512,
            m.len()
        );
        // Enough after the restart to roll over into further segments.
        for n in 40..2000 {
            p.append(A, "INBOX", &new_message(message(n, 4000)))
                .await
                .unwrap();
        }
    });
    let segs = segments(&d);
    assert!(segs.len() >= 4, "{} segments", segs.len());
    for (name, bytes) in &segs {
        assert!(
            bytes.len() as u64 <= 1 << 20,
            "{name}: {} bytes, past the segment size",
            bytes.len()
        );
    }
    run(&d.clone(), move || async move {
        let p = open(&d, cfg()).await;
        let rep = p.recovery_report();
        assert!(rep.is_clean() && rep.torn_tails.is_empty(), "{rep:?}");
        assert_eq!(p.status(A, "INBOX").unwrap().messages, 2000);
        let uids = p.messages(A, "INBOX", Uid(1), Uid(u32::MAX)).unwrap();
        for (i, m) in uids.iter().enumerate() {
            let size = if i < 40 { 2000 } else { 4000 };
            assert!(*p.fetch(A, "INBOX", m.uid).await.unwrap() == message(i as u64, size));
        }
        assert!(p.check_integrity().await.errors.is_empty());
    });
}

/// What makes an acknowledgement durable: the active segment is open O_DIRECT and O_DSYNC
/// (each batch's write returns once on disk, device cache flushed), read back from the
/// kernel's own record of the open file; the test-only no-sync mode opens it without
/// O_DSYNC.
#[test]
fn segments_are_written_o_direct_and_o_dsync() {
    // Only this test's files: the other tests of this binary run alongside, in this process.
    fn segment_flags(dir: &std::path::Path) -> Vec<u32> {
        let mut v = Vec::new();
        for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let Ok(target) = std::fs::read_link(e.path()) else {
                continue;
            };
            if !target.starts_with(dir) || !target.to_string_lossy().ends_with(".log") {
                continue;
            }
            let fdinfo = std::fs::read_to_string(format!(
                "/proc/self/fdinfo/{}",
                e.file_name().to_string_lossy()
            ))
            .unwrap_or_default();
            if let Some(f) = fdinfo.lines().find_map(|l| l.strip_prefix("flags:")) {
                let f = u32::from_str_radix(f.trim(), 8).unwrap();
                // The writer's handle, not a reader's.
                if f as i32 & libc::O_ACCMODE != libc::O_RDONLY {
                    v.push(f);
                }
            }
        }
        v
    }
    const O_DIRECT: u32 = libc::O_DIRECT as u32;
    const O_DSYNC: u32 = libc::O_DSYNC as u32;
    for (durability, dsync) in [
        (ringmail_engine::Durability::Sync, true),
        (ringmail_engine::Durability::DangerNoSync, false),
    ] {
        // On the build's disk: glommio opens files on a tmpfs without O_DIRECT.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let d = dir.path().to_path_buf();
        let flags = run(&d.clone(), move || async move {
            let cfg = PartitionConfig {
                durability,
                ..config()
            };
            let p = open_with_account(&d, cfg, A).await;
            p.append(A, "INBOX", &new_message(message(1, 2000)))
                .await
                .unwrap();
            let flags = segment_flags(&d);
            p.close().await.unwrap();
            flags
        });
        assert!(!flags.is_empty(), "no segment file open");
        for f in flags {
            assert!(f & O_DIRECT != 0, "{f:o}");
            assert_eq!(f & O_DSYNC != 0, dsync, "{durability:?}: flags {f:o}");
        }
    }
}

/// The zeros ahead are topped up as records reach them: with segments bigger than one
/// step, sequential and concurrent appends (batches both smaller and larger than the
/// 512 KiB margin) keep between none and 1.5 MiB of zeros after the records, and a restart
/// finds every record.
#[test]
fn zeros_ahead_are_topped_up_step_by_step() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let d1 = d.clone();
    run(&d.clone(), move || async move {
        let p = open_with_account(&d1, config(), A).await;
        // One record per batch: ~3 MiB through many small steps.
        for n in 0..700 {
            p.append(A, "INBOX", &new_message(incompressible(n, 4096)))
                .await
                .unwrap();
        }
        // 300 writers at once: batches of several hundred KiB.
        let all: Vec<_> = (700..1000u64)
            .map(|n| {
                let p = p.clone();
                glommio::spawn_local(async move {
                    p.append(A, "INBOX", &new_message(incompressible(n, 4096)))
                        .await
                        .unwrap();
                })
            })
            .collect();
        futures_util::future::join_all(all).await;
        // Crash: no close.
    });
    let seg = segment_paths(&d).pop().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() as u64 + 1;
    let zeros = bytes.len() as u64 - end;
    assert!(end > 3 << 20, "records end at {end}");
    assert!(
        zeros > 0 && zeros <= (3 << 19) + 4096,
        "{zeros} zero bytes after records ending at {end}"
    );
    run(&d.clone(), move || async move {
        let p = open(&d, config()).await;
        let rep = p.recovery_report();
        assert!(rep.is_clean() && rep.torn_tails.is_empty(), "{rep:?}");
        assert_eq!(p.status(A, "INBOX").unwrap().messages, 1000);
        assert!(p.check_integrity().await.errors.is_empty());
    });
    // The crashed run's segment was cut back to its records (the last of which may end in
    // a few zero bytes of its own).
    let cut = std::fs::metadata(&seg).unwrap().len();
    assert!(
        cut >= end && cut < end + 64,
        "{cut} bytes, records end near {end}"
    );
}

/// A message zstd cannot shrink, so records take their full size in the log.
fn incompressible(n: u64, size: usize) -> Vec<u8> {
    let mut m = format!("Subject: {n}\r\n\r\n").into_bytes();
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while m.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        m.extend_from_slice(&x.to_le_bytes());
    }
    m.truncate(size);
    m
}

/// The segment files of the test partition, oldest first.
/// The partition's segments that hold anything (the next segment, made ahead and still
/// empty, is left out).
fn segment_paths(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(d.join("p0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    v.sort();
    v
}
