//! Regression tests, one per fixed bug; each test's doc says what went wrong.

mod common;

use common::*;
use ringmail_engine::{PartitionConfig, Uid};

const A: &str = "reg@example.org";

/// Tiny segments that raw (deferred-compression) bodies fill fast.
fn raw_tiny_segments() -> PartitionConfig {
    PartitionConfig {
        deferred_compression_bytes: 1 << 30,
        ..tiny_segments()
    }
}

fn tiny_segments() -> PartitionConfig {
    PartitionConfig {
        segment_size: 64 << 10,
        checkpoint_bytes: 0,
        ..PartitionConfig::default()
    }
}

/// The log writer dropped its handle (and the in-memory tail of the last partial block) of a
/// segment as soon as the *appender* had rolled to the next segment, even though records for
/// the old segment were still pending; the next write of the old segment then started from
/// an empty tail. Appenders must roll segments while batches are in flight to hit it.
#[test]
fn segment_roll_while_a_batch_is_in_flight_keeps_the_block_tail() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let p = open_with_account(&d, tiny_segments(), A).await;
        let tasks: Vec<_> = (0..64u64)
            .map(|w| {
                let p = p.clone();
                glommio::spawn_local(async move {
                    for k in 0..20u64 {
                        let n = w * 100 + k;
                        p.append(
                            A,
                            "INBOX",
                            &new_message(message(n, 1500 + (n as usize % 7) * 500)),
                        )
                        .await
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        assert!(p.stats().segments > 10, "the test must roll many segments");
        drop(p);
        let p = open(&d, tiny_segments()).await;
        assert!(p.recovery_report().is_clean(), "{:?}", p.recovery_report());
        assert_eq!(p.status(A, "INBOX").unwrap().messages, 64 * 20);
        let rep = p.check_integrity().await;
        assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    });
}

/// Segments sealed after the partition was opened were missing from its segment table, so
/// compaction never considered them and checkpoints never deleted them.
#[test]
fn compaction_sees_segments_sealed_since_open() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let p = open_with_account(&d, tiny_segments(), A).await;
        for n in 0..300 {
            p.append(A, "INBOX", &new_message(message(n, 3000)))
                .await
                .unwrap();
        }
        let all: Vec<Uid> = (1..=300).map(Uid).collect();
        p.expunge(A, "INBOX", Some(&all[..290])).await.unwrap();
        let before = p.stats().segments;
        p.compact().await.unwrap();
        let after = p.stats().segments;
        assert!(after < before / 2, "segments {before} -> {after}");
        for u in 291..=300u32 {
            assert!(*p.fetch(A, "INBOX", Uid(u)).await.unwrap() == message(u as u64 - 1, 3000));
        }
    });
}

/// MOVE with a UID listed twice created two destination entries sharing one blob whose
/// reference count was still 1; expunging one copy freed the body of the other.
#[test]
fn move_with_duplicate_uids_keeps_reference_counts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let p = open_with_account(&d, tiny_segments(), A).await;
        p.append(A, "INBOX", &new_message(message(1, 2000)))
            .await
            .unwrap();
        let (_, pairs) = p
            .move_messages(A, "INBOX", "Archive", &[Uid(1), Uid(1)])
            .await
            .unwrap();
        assert_eq!(pairs.len(), 1);
        assert_eq!(p.status(A, "Archive").unwrap().messages, 1);
        let (_, copies) = p
            .copy(A, "Archive", "Trash", &[Uid(1), Uid(1)])
            .await
            .unwrap();
        assert_eq!(copies.len(), 1);
        p.expunge(A, "Archive", None).await.unwrap();
        p.expunge(A, "Archive", Some(&[Uid(1)])).await.unwrap();
        assert!(*p.fetch(A, "Trash", Uid(1)).await.unwrap() == message(1, 2000));
        assert!(p.check_integrity().await.errors.is_empty());
    });
}

/// COPY paired the UIDs as the caller listed them with the copies made in UID order: for
/// `[2, 1]` it reported 2 → the copy of 1. The plan now says which copy is whose.
#[test]
fn copy_reports_each_source_with_its_own_copy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let p = open_with_account(&d, tiny_segments(), A).await;
        for i in 1..=2 {
            p.append(A, "INBOX", &new_message(message(i, 500)))
                .await
                .unwrap();
        }
        let (_, pairs) = p
            .copy(A, "INBOX", "Archive", &[Uid(2), Uid(1)])
            .await
            .unwrap();
        assert_eq!(pairs.len(), 2);
        for (from, to) in pairs {
            assert!(
                *p.fetch(A, "INBOX", from).await.unwrap()
                    == *p.fetch(A, "Archive", to).await.unwrap(),
                "{from:?} -> {to:?}"
            );
        }
    });
}

/// Requests the decoder would refuse must be refused before they are logged: a record that
/// cannot be read back is lost at the next restart. So must names that would collide.
#[test]
fn invalid_requests_are_refused_before_logging() {
    use ringmail_engine::{AccountOptions, SpecialUse, StoreError};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let p = open_with_account(&d, tiny_segments(), A).await;
        let long = "x".repeat(5000);
        let e = p.subscribe(A, &long, true).await.unwrap_err();
        assert!(matches!(e.store(), Some(StoreError::InvalidName(_))), "{e}");
        // Renaming a/ onto b/ where b/x already exists.
        for name in ["a", "a/x", "b/x"] {
            p.create_mailbox(A, name, SpecialUse::None).await.unwrap();
        }
        let e = p.rename_mailbox(A, "a", "b").await.unwrap_err();
        assert_eq!(e.store(), Some(&StoreError::MailboxExists));
        let bad = AccountOptions {
            mailboxes: vec![("inbox".into(), SpecialUse::None)],
            ..Default::default()
        };
        let e = p
            .create_account("second@example.org", &bad)
            .await
            .unwrap_err();
        assert_eq!(e.store(), Some(&StoreError::MailboxExists));
        // Nothing was poisoned: the partition still works and reopens cleanly.
        p.create_account("second@example.org", &AccountOptions::default())
            .await
            .unwrap();
        drop(p);
        let p = open(&d, tiny_segments()).await;
        assert!(p.recovery_report().is_clean(), "{:?}", p.recovery_report());
        assert!(p.has_account("second@example.org"));
    });
}

/// With its only checkpoint unreadable and old segments already deleted, a partition opened
/// as if empty, and its next checkpoint deleted the rest of the log. It must refuse instead.
#[test]
fn an_unreadable_checkpoint_without_a_full_log_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let p = open_with_account(&d, tiny_segments(), A).await;
        for n in 0..200 {
            p.append(A, "INBOX", &new_message(message(n, 3000)))
                .await
                .unwrap();
        }
        p.expunge(A, "INBOX", Some(&(1..=150).map(Uid).collect::<Vec<_>>()))
            .await
            .unwrap();
        p.compact().await.unwrap();
        p.close().await.unwrap();
        let pdir = d.join("p0");
        let ck = std::fs::read_dir(&pdir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "idx"))
            .unwrap();
        let mut b = std::fs::read(&ck).unwrap();
        let n = b.len();
        b[n / 2] ^= 0xff;
        std::fs::write(&ck, &b).unwrap();
        let r = ringmail_engine::Partition::open(
            &pdir,
            ringmail_engine::PartitionId(0),
            tiny_segments(),
        )
        .await;
        let e = r.err().expect("must refuse to open");
        assert!(e.to_string().contains("checkpoint"), "{e}");
    });
}

/// `compact` returned the drop in the number of segments, so segments opened by appends made
/// while it ran hid the ones it removed: with deferred compression on (raw bodies fill
/// segments faster) it reported 0 for a compaction that had removed several.
#[test]
fn compact_counts_removed_segments_despite_concurrent_appends() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let p = open_with_account(&d, raw_tiny_segments(), A).await;
        for n in 0..200 {
            p.append(A, "INBOX", &new_message(message(n, 3000)))
                .await
                .unwrap();
        }
        let gone: Vec<Uid> = (1..=200).filter(|u| u % 4 != 0).map(Uid).collect();
        p.expunge(A, "INBOX", Some(&gone)).await.unwrap();
        p.checkpoint().await.unwrap();
        let planned = p.compaction_plan().rewrite;
        assert!(planned.len() >= 4, "plan {planned:?}");
        let before = p.stats().segments;
        // More raw bytes than the segments compaction empties: the count of segments grows.
        let writer = {
            let p = p.clone();
            glommio::spawn_local(async move {
                for n in 1000..1400 {
                    p.append(A, "INBOX", &new_message(message(n, 3000)))
                        .await
                        .unwrap();
                }
            })
        };
        let removed = p.compact().await.unwrap();
        writer.await;
        assert!(
            p.stats().segments >= before,
            "the appends must outgrow the removal"
        );
        assert_eq!(removed, planned.len());
    });
}

/// STORE finds and changes its messages in one walk over the index (checkpoint base, its
/// patches, expunged positions, the tail since) instead of a search per UID, and an index
/// most of whose base was changed is copied out of it: checked against a model over random
/// UID sets, dense and sparse, with expunges and appends between, across a checkpoint and a
/// reopen.
#[test]
fn stores_over_base_tail_and_holes_match_a_model() {
    use rand::{Rng, SeedableRng};
    use ringmail_engine::{FlagOp, Flags};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let model = run(&d.clone(), move || async move {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(20261206);
        let p = open_with_account(&d, config(), A).await;
        let mut model = std::collections::BTreeMap::new();
        for n in 0..3000u64 {
            let uid = p
                .append(A, "INBOX", &new_message(message(n, 200)))
                .await
                .unwrap()
                .uid
                .0;
            model.insert(uid, 0u64);
            if n == 2000 {
                // The first 2000 go into the checkpoint's base; the rest stay in the tail.
                p.checkpoint().await.unwrap();
            }
        }
        // Holes in the base and in the tail.
        let gone: Vec<Uid> = model
            .keys()
            .filter(|u| *u % 7 == 3)
            .map(|&u| Uid(u))
            .collect();
        p.expunge(A, "INBOX", Some(&gone)).await.unwrap();
        for u in &gone {
            model.remove(&u.0);
        }
        for round in 0..60 {
            let flag = [Flags::SEEN, Flags::FLAGGED, Flags::ANSWERED][round % 3];
            let op = if rng.gen_bool(0.5) {
                FlagOp::Add
            } else {
                FlagOp::Remove
            };
            // Dense ranges, sparse picks, UIDs that do not exist.
            let uids: Vec<Uid> = match round % 3 {
                0 => (1..=3200).map(Uid).collect(),
                1 => (0..20).map(|_| Uid(rng.gen_range(1..=3200))).collect(),
                _ => (rng.gen_range(1..1500)..rng.gen_range(1500..=3200))
                    .map(Uid)
                    .collect(),
            };
            p.store(A, "INBOX", &uids, op, flag, &[], None)
                .await
                .unwrap();
            for u in &uids {
                if let Some(f) = model.get_mut(&u.0) {
                    *f = match op {
                        FlagOp::Add => *f | flag.0,
                        _ => *f & !flag.0,
                    };
                }
            }
            if round == 30 {
                p.checkpoint().await.unwrap();
            }
            if round % 10 == 5 {
                // Expunges and appends over an index a dense STORE copied out of its base.
                let gone: Vec<Uid> = model
                    .keys()
                    .filter(|_| rng.gen_bool(0.05))
                    .map(|&u| Uid(u))
                    .collect();
                p.expunge(A, "INBOX", Some(&gone)).await.unwrap();
                for u in &gone {
                    model.remove(&u.0);
                }
                let uid = p
                    .append(A, "INBOX", &new_message(message(round as u64, 200)))
                    .await
                    .unwrap()
                    .uid
                    .0;
                model.insert(uid, 0u64);
            }
            assert_matches_model(&p, &model, &format!("round {round}"));
        }
        p.close().await.unwrap();
        model
    });
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let p = open(&d, config()).await;
        assert_matches_model(&p, &model, "after reopen");
    });
}

/// The INBOX's UIDs and system flags are the model's.
fn assert_matches_model(
    p: &ringmail_engine::Partition,
    model: &std::collections::BTreeMap<u32, u64>,
    when: &str,
) {
    use ringmail_engine::Flags;
    let have: Vec<(u32, u64)> = p
        .messages(A, "INBOX", Uid(1), Uid(u32::MAX))
        .unwrap()
        .iter()
        .map(|m| (m.uid.0, m.flags.0 & Flags::SYSTEM_MASK))
        .collect();
    let want: Vec<(u32, u64)> = model.iter().map(|(&u, &f)| (u, f)).collect();
    assert_eq!(have, want, "{when}");
}

/// A selected mailbox was read whole after every APPEND to tell the session what changed
/// (quadratic filling); `changed_modseq` now says when only new messages came, and a
/// STORE's `previous_change` when the store was the next change after what a reader saw.
#[test]
fn changed_modseq_counts_changes_to_existing_messages_only() {
    use ringmail_engine::{FlagOp, Flags};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let p = open_with_account(&d, config(), A).await;
        let add = |uid: u32, flag: Flags| {
            let p = p.clone();
            async move {
                p.store(A, "INBOX", &[Uid(uid)], FlagOp::Add, flag, &[], None)
                    .await
                    .unwrap()
            }
        };
        for n in 0..3 {
            p.append(A, "INBOX", &new_message(message(n, 300)))
                .await
                .unwrap();
        }
        let st = p.status(A, "INBOX").unwrap();
        let appended = st.changed_modseq;
        assert!(appended < st.highest_modseq, "{st:?}");
        let seen = st.highest_modseq;
        let r = add(2, Flags::SEEN).await;
        let st = p.status(A, "INBOX").unwrap();
        assert_eq!(st.changed_modseq, r.changed[0].modseq);
        assert_eq!(r.previous_change, Some(appended));
        assert!(r.previous_change.unwrap() <= seen);
        // More mail: not a change to what was there.
        p.append(A, "INBOX", &new_message(message(9, 300)))
            .await
            .unwrap();
        let st2 = p.status(A, "INBOX").unwrap();
        assert_eq!(st2.changed_modseq, st.changed_modseq);
        assert!(st2.highest_modseq > st.highest_modseq);
        let r2 = add(1, Flags::FLAGGED).await;
        assert_eq!(r2.previous_change, Some(st.changed_modseq));
        // A STORE that changes nothing is no change and claims nothing.
        let r3 = add(1, Flags::FLAGGED).await;
        assert!(r3.changed.is_empty() && r3.previous_change.is_none());
        p.expunge(A, "INBOX", Some(&[Uid(3)])).await.unwrap();
        let st3 = p.status(A, "INBOX").unwrap();
        assert_eq!(st3.changed_modseq, st3.highest_modseq);
        assert!(st3.changed_modseq > r2.changed[0].modseq);
        p.close().await.unwrap();
        drop(p);
        // After a restart every reader starts over: as if everything had just changed.
        let p = open(&d, config()).await;
        let st4 = p.status(A, "INBOX").unwrap();
        assert_eq!(st4.changed_modseq, st4.highest_modseq);
    });
}

/// A message another IMAP session expunged was gone at once for a session not yet told
/// of it, whose FETCH then failed (RFC 2180 section 4.1.1 lets it be read until then). While
/// a reader's mark is behind, the expunged entry and its body stay readable, through
/// checkpoints and compaction; once the mark catches up, the next checkpoint frees them.
#[test]
fn an_expunged_message_stays_readable_while_a_reader_is_behind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let p = open_with_account(&d, raw_tiny_segments(), A).await;
        let mut bodies = Vec::new();
        for n in 0..120 {
            let body = message(n, 3000);
            p.append(A, "INBOX", &new_message(body.clone()))
                .await
                .unwrap();
            bodies.push(body);
        }
        // Nobody reading: an expunge keeps nothing.
        p.expunge(A, "INBOX", Some(&[Uid(1)])).await.unwrap();
        assert!(p.expunged_message(A, "INBOX", Uid(1)).is_none());

        let mark = p.reader_mark();
        let gone: Vec<Uid> = (2..=120).filter(|u| u % 3 != 0).map(Uid).collect();
        p.expunge(A, "INBOX", Some(&gone)).await.unwrap();
        // Compaction moves the live messages out of the sparse segments and a checkpoint
        // would delete those: not while the reader may still fetch what was in them.
        p.checkpoint().await.unwrap();
        assert!(!p.compaction_plan().rewrite.is_empty());
        p.compact().await.unwrap();
        p.checkpoint().await.unwrap();
        for u in &gone {
            let info = p.expunged_message(A, "INBOX", *u).expect("kept");
            assert_eq!(info.uid, *u);
            let body = p.fetch_blob(info.blob).await.unwrap();
            assert_eq!(body.as_slice(), &bodies[u.0 as usize - 1][..], "uid {u:?}");
            p.fetch_blob_meta(info.blob).await.unwrap();
        }
        assert!(p.message(A, "INBOX", gone[0]).is_err());

        // Caught up: the entries go at once, the emptied segments with the next checkpoint.
        let before = p.stats().segments;
        mark.caught_up(p.retired_seq());
        assert!(p.expunged_message(A, "INBOX", gone[0]).is_none());
        p.checkpoint().await.unwrap();
        assert!(p.stats().segments < before, "{before} segments before");
        let rep = p.check_integrity().await;
        assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    });
}
