//! Format version 2: the ownership epoch belongs to each segment. A partition whose owner
//! changed holds segments of several epochs, and all of them are its log; a file that a
//! later epoch's segment of the same number replaced is ignored.

mod common;

use std::path::Path;

use common::*;
use ringmail_engine::internals::format::segment_file;
use ringmail_engine::{PartitionConfig, Uid};

const A: &str = "epochs@example.org";

fn at_epoch(epoch: u64) -> PartitionConfig {
    PartitionConfig { epoch, ..config() }
}

/// Opens the partition at `epoch`, appends messages `range` and "crashes" (no close, so no
/// checkpoint: the next open replays every segment).
fn write_at(dir: &Path, epoch: u64, range: std::ops::Range<u64>) {
    let d = dir.to_path_buf();
    run(dir, move || async move {
        let p = open_with_account(&d, at_epoch(epoch), A).await;
        for n in range {
            p.append(A, "INBOX", &new_message(message(n, 3000)))
                .await
                .unwrap();
        }
    });
}

fn check(dir: &Path, epoch: u64, want: std::ops::Range<u64>) -> ringmail_engine::RecoveryReport {
    let d = dir.to_path_buf();
    run(dir, move || async move {
        let p = open(&d, at_epoch(epoch)).await;
        let got = p.messages(A, "INBOX", Uid(1), Uid(u32::MAX)).unwrap();
        assert_eq!(got.len() as u64, want.end - want.start);
        for (m, n) in got.iter().zip(want) {
            let body = p.fetch(A, "INBOX", m.uid).await.unwrap();
            assert!(*body == message(n, 3000), "body of UID {}", m.uid);
        }
        p.recovery_report().clone()
    })
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("p0"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("seg-"))
        .collect();
    names.sort();
    names
}

#[test]
fn segments_of_every_epoch_are_read() {
    let dir = tempfile::tempdir().unwrap();
    write_at(dir.path(), 1, 0..3);
    write_at(dir.path(), 5, 3..5);
    // A lower epoch than an earlier owner's: still every segment counts (the epoch orders
    // owners, the sequence number orders the log).
    write_at(dir.path(), 2, 5..6);
    let names = segment_files(dir.path());
    for ep in [1, 2, 5] {
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(&format!("seg-{ep:08x}-"))),
            "no segment of epoch {ep} in {names:?}"
        );
    }
    let rep = check(dir.path(), 1, 0..6);
    assert!(rep.is_clean(), "{rep:?}");
    assert!(rep.shadowed_segments.is_empty());
}

#[test]
fn a_segment_replaced_by_a_later_epoch_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    write_at(dir.path(), 1, 0..2);
    // What a fenced owner might leave: a copy of segment 1 under a lower epoch, with a
    // different first record. The later epoch's file is the log.
    let p0 = dir.path().join("p0");
    let real = p0.join(segment_file(1, 1));
    assert!(real.exists(), "{:?}", segment_files(dir.path()));
    let mut stale = std::fs::read(&real).unwrap();
    stale.truncate(64);
    std::fs::write(p0.join(segment_file(0, 1)), &stale).unwrap();
    let rep = check(dir.path(), 1, 0..2);
    assert_eq!(rep.shadowed_segments, vec![(1, 0)]);
    assert!(
        p0.join(segment_file(0, 1)).exists(),
        "kept for the operator"
    );
}

#[test]
fn a_header_naming_another_epoch_than_its_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_at(dir.path(), 1, 0..2);
    write_at(dir.path(), 1, 2..3);
    let p0 = dir.path().join("p0");
    // Segment 2 renamed as if epoch 3 had written it: its header still says epoch 1.
    std::fs::rename(p0.join(segment_file(1, 2)), p0.join(segment_file(3, 2))).unwrap();
    let d = dir.path().to_path_buf();
    let rep = run(dir.path(), move || async move {
        let p = open(&d, config()).await;
        p.recovery_report().clone()
    });
    assert!(
        rep.corrupt_ranges
            .iter()
            .any(|(seg, _, _, why)| *seg == 2 && why.contains("epoch 1")),
        "{rep:?}"
    );
}
