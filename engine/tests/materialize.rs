//! Opening a partition from what object storage holds (cluster mode): a new owner rebuilds
//! the directory from the manifest's checkpoint, sealed segments and the tail's chunks, and
//! the normal recovery finds every acknowledged change, byte for byte, with the same UIDs.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use common::*;
use ringmail_engine::internals::segment::SegmentHeader;
use ringmail_engine::remote::{
    materialize, Chunk, Manifest, Materials, ObjectRef, SegmentRef, TailRange,
};
use ringmail_engine::{FlagOp, Flags, Partition, PartitionConfig, PartitionId, Tail, Uid};

const A: &str = "owner@example.org";

fn cfg(epoch: u64) -> PartitionConfig {
    PartitionConfig {
        epoch,
        segment_size: 16 << 10,
        ..config()
    }
}

/// UID → (body number, flags) of what was acknowledged.
type Model = BTreeMap<u32, (u64, u64)>;

/// Writes as a cluster owner at epoch 7 (every batch recorded), with a checkpoint after
/// `checkpoint_after` messages if given, and "dies" (no close). Returns the chunks, the
/// model, and the old directory (for its checkpoint file).
fn write_as_owner(dir: &Path, checkpoint_after: Option<u64>) -> (Vec<Chunk>, Model) {
    let d = dir.to_path_buf();
    run(dir, move || async move {
        let rec = Rc::new(Recorder::default());
        let p = Partition::open_with_tail(
            &d.join("p0"),
            PartitionId(0),
            cfg(7),
            Some(Tail::new(Rc::new(RecordingSink(rec.clone())))),
        )
        .await
        .unwrap();
        p.create_account(A, &Default::default()).await.unwrap();
        let mut model = Model::new();
        for n in 0..120u64 {
            let uid = p
                .append(A, "INBOX", &new_message(message(n, 1500 + n as usize * 7)))
                .await
                .unwrap();
            model.insert(uid.uid.0, (n, 0));
            if Some(n) == checkpoint_after {
                p.checkpoint().await.unwrap();
            }
        }
        p.store(
            A,
            "INBOX",
            &[Uid(5), Uid(90)],
            FlagOp::Add,
            Flags::FLAGGED,
            &[],
            None,
        )
        .await
        .unwrap();
        for u in [5, 90] {
            model.get_mut(&u).unwrap().1 = Flags::FLAGGED.0;
        }
        p.expunge(A, "INBOX", Some(&[Uid(7), Uid(100)]))
            .await
            .unwrap();
        model.remove(&7);
        model.remove(&100);
        let chunks = rec.chunks.borrow().clone();
        (chunks, model)
    })
}

/// Opens the rebuilt directory as the next owner (epoch 9) and compares with the model.
fn check(dir: &Path, model: Model) {
    let d = dir.to_path_buf();
    run(dir, move || async move {
        let p = Partition::open(&d.join("p0"), PartitionId(0), cfg(9))
            .await
            .unwrap();
        assert!(p.recovery_report().is_clean(), "{:?}", p.recovery_report());
        let got = p.messages(A, "INBOX", Uid(1), Uid(u32::MAX)).unwrap();
        assert_eq!(
            got.iter().map(|m| m.uid.0).collect::<Vec<_>>(),
            model.keys().copied().collect::<Vec<_>>()
        );
        for m in got {
            let (n, flags) = model[&m.uid.0];
            assert_eq!(m.flags.0, flags, "UID {}", m.uid);
            let body = p.fetch(A, "INBOX", m.uid).await.unwrap();
            assert!(*body == message(n, 1500 + n as usize * 7), "UID {}", m.uid);
        }
        // The new owner writes on, after the old owner's last record.
        p.append(A, "INBOX", &new_message(message(999, 800)))
            .await
            .unwrap();
    });
}

#[test]
fn a_partition_opens_from_its_tail_alone() {
    let old = tempfile::tempdir().unwrap();
    let (chunks, model) = write_as_owner(old.path(), None);
    let last = chunks.last().unwrap().last_lsn;
    let new = tempfile::tempdir().unwrap();
    // The superblock and device probe of a fresh node.
    run(new.path(), || async {});
    let m = materialize(
        &new.path().join("p0"),
        &Manifest::empty(0, 7),
        Materials {
            chunks,
            ..Materials::default()
        },
    )
    .unwrap();
    assert_eq!(m.next_lsn, last + 1);
    assert!(m.rebuilt.len() >= 3, "{:?}", m.rebuilt);
    check(new.path(), model);
}

#[test]
fn a_partition_opens_from_checkpoint_sealed_segments_and_the_tail_after_them() {
    let old = tempfile::tempdir().unwrap();
    let (chunks, model) = write_as_owner(old.path(), Some(60));
    // Every segment's bytes, as rebuilt from the chunks (what an owner uploads on sealing).
    let mut segs: BTreeMap<u64, (u64, Vec<u8>)> = BTreeMap::new();
    for c in &chunks {
        for p in &c.pieces {
            segs.entry(p.segment)
                .or_insert((c.epoch, Vec::new()))
                .1
                .extend_from_slice(&p.bytes);
        }
    }
    let seqs: Vec<u64> = segs.keys().copied().collect();
    assert!(seqs.len() >= 4, "{seqs:?}");
    // The tail starts at the last segment but one; the ones before it are sealed objects.
    let tail_segment = seqs[seqs.len() - 2];
    let from_lsn = SegmentHeader::decode(&segs[&tail_segment].1[..64])
        .unwrap()
        .first_lsn;
    let ckpt_name = std::fs::read_dir(old.path().join("p0"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with("ckpt-"))
        .expect("a checkpoint");
    let ckpt_seq = u64::from_str_radix(&ckpt_name[5..21], 16).unwrap();
    let ckpt = std::fs::read(old.path().join("p0").join(&ckpt_name)).unwrap();
    let sealed: Vec<(SegmentRef, Vec<u8>)> = segs
        .range(..tail_segment)
        .map(|(&seq, (epoch, bytes))| {
            (
                SegmentRef {
                    seq,
                    epoch: *epoch,
                    object: ObjectRef {
                        key: format!("seg-{seq}"),
                        len: bytes.len() as u64,
                        crc: ringmail_engine::crc32(bytes),
                    },
                },
                bytes.clone(),
            )
        })
        .collect();
    let manifest = Manifest {
        checkpoint: Some((
            ckpt_seq,
            ObjectRef {
                key: "ckpt".into(),
                len: ckpt.len() as u64,
                crc: ringmail_engine::crc32(&ckpt),
            },
        )),
        segments: sealed.iter().map(|(s, _)| s.clone()).collect(),
        tail_segment,
        next_segment: seqs.last().unwrap() + 1,
        tail: vec![TailRange { epoch: 7, from_lsn }],
        ..Manifest::empty(0, 7)
    };
    let tail: Vec<Chunk> = chunks
        .iter()
        .filter(|c| c.last_lsn >= from_lsn)
        .cloned()
        .collect();
    let new = tempfile::tempdir().unwrap();
    run(new.path(), || async {});
    // A stale file a fenced owner left, which the manifest does not name: removed.
    std::fs::create_dir_all(new.path().join("p0")).unwrap();
    std::fs::write(
        new.path()
            .join("p0")
            .join(ringmail_engine::internals::format::segment_file(7, 999)),
        b"stale",
    )
    .unwrap();
    // And a sealed segment's fetch that a crash cut short.
    let cut_fetch = new.path().join("p0").join(
        ringmail_engine::internals::format::segment_file(7, seqs[0]).replace(".log", ".fetch"),
    );
    std::fs::write(&cut_fetch, b"half").unwrap();
    let m = materialize(
        &new.path().join("p0"),
        &manifest,
        Materials {
            checkpoint: Some(ckpt),
            segments: sealed,
            chunks: tail,
        },
    )
    .unwrap();
    assert_eq!(m.rebuilt.first().map(|r| r.0), Some(tail_segment));
    assert!(!new
        .path()
        .join("p0")
        .join(ringmail_engine::internals::format::segment_file(7, 999))
        .exists());
    assert!(!cut_fetch.exists());
    check(new.path(), model);
}
