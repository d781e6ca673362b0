//! Data directories written by each format version, checked in (`tests/fixtures/v<N>`):
//! every later version must open them and find the same mail. They cover the superblock,
//! segments (small ones, so several), a checkpoint, the log after it, compressed and stored
//! bodies, flags, a keyword, an expunge, a copy, a second mailbox and a subscription;
//! version 2's also segments of two ownership epochs (1, then 3 after the checkpoint).
//!
//! A fixture is made once, by the build of its version: `cargo test -p ringmail-engine
//! --test format_fixture -- --ignored write_v2_fixture`; it is never written again.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ringmail_engine::{FlagOp, Flags, PartitionConfig, SpecialUse, Uid};

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";

fn fixture(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/v{version}"))
}

/// The bodies: the n-th message of the fixture.
fn body(n: u64) -> Vec<u8> {
    let size = if n == 100 {
        20_000
    } else {
        300 + n as usize * 200
    };
    message(n, size)
}

/// Small segments, so the fixture holds several and stays small.
fn small() -> PartitionConfig {
    PartitionConfig {
        segment_size: 16 << 10,
        ..config()
    }
}

#[test]
#[ignore = "writes the checked-in fixture; run once per format version"]
fn write_v2_fixture() {
    let dir = fixture(2);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.clone();
    run(&dir, move || async move {
        let p = open_with_account(&d, small(), ALICE).await;
        for n in 1..=3 {
            p.append(ALICE, "INBOX", &new_message(body(n)))
                .await
                .unwrap();
        }
        p.store(
            ALICE,
            "INBOX",
            &[Uid(2)],
            FlagOp::Add,
            Flags::SEEN,
            &[],
            None,
        )
        .await
        .unwrap();
        // The checkpoint holds the above; the log after it the rest, written by a later
        // owner (epoch 3), as after a move in a cluster.
        p.checkpoint().await.unwrap();
        drop(p);
        let p = open(
            &d,
            PartitionConfig {
                epoch: 3,
                ..small()
            },
        )
        .await;
        for n in 4..=6 {
            p.append(ALICE, "INBOX", &new_message(body(n)))
                .await
                .unwrap();
        }
        p.store(
            ALICE,
            "INBOX",
            &[Uid(3)],
            FlagOp::Add,
            Flags::FLAGGED,
            &["$Work".to_string()],
            None,
        )
        .await
        .unwrap();
        p.expunge(ALICE, "INBOX", Some(&[Uid(4)])).await.unwrap();
        p.create_mailbox(ALICE, "Archive/2026", SpecialUse::Archive)
            .await
            .unwrap();
        p.copy(ALICE, "INBOX", "Archive/2026", &[Uid(1)])
            .await
            .unwrap();
        p.subscribe(ALICE, "Archive/2026", true).await.unwrap();
        p.create_account(BOB, &ringmail_engine::AccountOptions::default())
            .await
            .unwrap();
        p.create_mailbox(BOB, "INBOX", SpecialUse::None).await.ok();
        for n in [100, 101] {
            p.append(BOB, "INBOX", &new_message(body(n))).await.unwrap();
        }
        // Closed without a checkpoint at close: the log after the first one is replayed.
        drop(p);
    });
    let _ = std::fs::remove_file(dir.join("LOCK"));
}

#[test]
fn the_v1_fixture_opens_with_its_mail() {
    check_fixture(1);
}

#[test]
fn the_v2_fixture_opens_with_its_mail() {
    check_fixture(2);
    let names: Vec<String> = std::fs::read_dir(fixture(2).join("p0"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for epoch in [1, 3] {
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(&format!("seg-{epoch:08x}-"))),
            "{names:?}"
        );
    }
}

/// Copies the fixture (opening may write: a new segment, a checkpoint) and reads it back.
fn check_fixture(version: u32) {
    let src = fixture(version);
    assert!(
        src.join("SUPERBLOCK").exists(),
        "missing fixture {src:?}: it is checked in"
    );
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&src, tmp.path());
    let d = tmp.path().to_path_buf();
    run(&d.clone(), move || async move {
        // The default configuration, not the one that wrote it.
        let p = open(&d, config()).await;
        assert!(p.recovery_report().is_clean(), "{:?}", p.recovery_report());
        let inbox: Vec<(u32, u64)> = p
            .messages(ALICE, "INBOX", Uid(1), Uid(u32::MAX))
            .unwrap()
            .iter()
            .map(|m| (m.uid.0, m.flags.0 & Flags::SYSTEM_MASK))
            .collect();
        assert_eq!(
            inbox,
            [
                (1, 0),
                (2, Flags::SEEN.0),
                (3, Flags::FLAGGED.0),
                (5, 0),
                (6, 0)
            ]
        );
        for n in [1u32, 2, 3, 5, 6] {
            let b = p.fetch(ALICE, "INBOX", Uid(n)).await.unwrap();
            assert_eq!(b.as_slice(), &body(n as u64)[..], "INBOX UID {n}");
        }
        let m3 = p.message(ALICE, "INBOX", Uid(3)).unwrap();
        let kw = p.keywords(ALICE).unwrap();
        assert_eq!(kw, ["$Work"]);
        assert_ne!(m3.flags.0 & !Flags::SYSTEM_MASK, 0, "the keyword is set");
        let archive = p.status(ALICE, "Archive/2026").unwrap();
        assert_eq!(archive.messages, 1);
        assert_eq!(archive.special_use, SpecialUse::Archive);
        assert!(archive.subscribed);
        let copy = p.fetch(ALICE, "Archive/2026", Uid(1)).await.unwrap();
        assert_eq!(copy.as_slice(), &body(1)[..]);
        let bob: Vec<Vec<u8>> = {
            let mut v = Vec::new();
            for m in p.messages(BOB, "INBOX", Uid(1), Uid(u32::MAX)).unwrap() {
                v.push(p.fetch(BOB, "INBOX", m.uid).await.unwrap().to_vec());
            }
            v
        };
        assert_eq!(bob, [body(100), body(101)]);
        let rep = p.check_integrity().await;
        assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    });
}
