//! Cluster mode's tail: every group-commit batch is shipped (through a `TailSink`) before
//! its writers are answered, the chunks rebuild the segments byte for byte, a fenced owner
//! acknowledges nothing more, and a sink that stops answering turns writes away instead of
//! piling them up.

mod common;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use ringmail_engine::internals::format::segment_file;
use ringmail_engine::{
    Error, FlagOp, Flags, Partition, PartitionConfig, PartitionId, Resource, StoreError, Tail, Uid,
};

const A: &str = "tail@example.org";

fn cfg(epoch: u64) -> PartitionConfig {
    PartitionConfig {
        epoch,
        segment_size: 64 << 10,
        ..config()
    }
}

async fn open_owned(
    dir: &std::path::Path,
    rec: &Rc<Recorder>,
    tail: impl FnOnce(Tail) -> Tail,
) -> Rc<Partition> {
    let t = tail(Tail::new(Rc::new(RecordingSink(rec.clone()))));
    let p = Partition::open_with_tail(&dir.join("p0"), PartitionId(0), cfg(7), Some(t))
        .await
        .unwrap();
    p.create_account(A, &Default::default()).await.unwrap();
    p
}

#[test]
fn every_batch_is_shipped_in_order_and_rebuilds_the_segments_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let (chunks, files) = run(&d.clone(), move || async move {
        let rec = Rc::new(Recorder::default());
        let p = open_owned(&d, &rec, |t| t).await;
        // Concurrent writers, so batches hold several records; small segments, so the
        // log rolls over several times.
        let mut tasks = Vec::new();
        for w in 0..4u64 {
            let p = p.clone();
            tasks.push(glommio::spawn_local(async move {
                for n in 0..40 {
                    p.append(A, "INBOX", &new_message(message(w * 100 + n, 2500)))
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        p.store(A, "INBOX", &[Uid(3)], FlagOp::Add, Flags::SEEN, &[], None)
            .await
            .unwrap();
        p.expunge(A, "INBOX", Some(&[Uid(4)])).await.unwrap();
        let chunks = rec.chunks.borrow().clone();
        let mut files = BTreeMap::new();
        for e in std::fs::read_dir(d.join("p0")).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name.starts_with("seg-") {
                files.insert(
                    name.clone(),
                    std::fs::read(d.join("p0").join(name)).unwrap(),
                );
            }
        }
        (chunks, files)
    });
    assert!(chunks.len() > 3, "{} chunks", chunks.len());
    assert!(
        chunks.iter().any(|c| c.last_lsn > c.first_lsn),
        "some batch held several records"
    );
    // In LSN order without gaps, from the first record, all of epoch 7.
    let mut want = 1;
    for c in &chunks {
        assert_eq!(c.first_lsn, want);
        assert_eq!(c.epoch, 7);
        want = c.last_lsn + 1;
    }
    // The pieces rebuild every segment: its bytes up to the last record, exactly.
    let mut rebuilt: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for c in &chunks {
        for piece in &c.pieces {
            let seg = rebuilt.entry(piece.segment).or_default();
            assert_eq!(seg.len() as u64, piece.offset, "pieces follow each other");
            seg.extend_from_slice(&piece.bytes);
        }
    }
    assert!(rebuilt.len() >= 3, "{} segments", rebuilt.len());
    for (seq, bytes) in &rebuilt {
        let local = &files[&segment_file(7, *seq)];
        assert_eq!(&local[..bytes.len()], &bytes[..], "segment {seq}");
        assert!(
            local[bytes.len()..].iter().all(|&b| b == 0),
            "only zeros after"
        );
    }
}

#[test]
fn an_acknowledgement_waits_for_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let rec = Rc::new(Recorder::default());
        let p = open_owned(&d, &rec, |t| t).await;
        rec.hold.set(true);
        let done = Rc::new(Cell::new(false));
        let (p2, done2) = (p.clone(), done.clone());
        let t = glommio::spawn_local(async move {
            p2.append(A, "INBOX", &new_message(message(1, 900)))
                .await
                .unwrap();
            done2.set(true);
        });
        glommio::timer::sleep(Duration::from_millis(100)).await;
        assert!(!done.get(), "acknowledged before the sink confirmed");
        rec.hold.set(false);
        t.await;
        assert!(done.get());
        assert_eq!(
            rec.chunks.borrow().last().unwrap().last_lsn,
            2,
            "account, message"
        );
    });
}

#[test]
fn a_fenced_owner_acknowledges_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let rec = Rc::new(Recorder::default());
        let p = open_owned(&d, &rec, |t| t).await;
        p.append(A, "INBOX", &new_message(message(1, 900)))
            .await
            .unwrap();
        rec.fenced.set(true);
        let e = p
            .append(A, "INBOX", &new_message(message(2, 900)))
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::Poisoned(ref m) if m.contains("no longer owns")),
            "{e}"
        );
        let e = p
            .store(A, "INBOX", &[Uid(1)], FlagOp::Add, Flags::SEEN, &[], None)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Poisoned(_)), "{e}");
    });
}

#[test]
fn a_sink_that_stops_answering_turns_writes_away_until_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let rec = Rc::new(Recorder::default());
        let p = open_owned(&d, &rec, |mut t| {
            t.refuse_after = Duration::from_millis(100);
            t.ack_timeout = Duration::from_millis(300);
            t
        })
        .await;
        rec.hold.set(true);
        let e = p
            .append(A, "INBOX", &new_message(message(1, 900)))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Store(StoreError::Unconfirmed)), "{e}");
        let e = p
            .append(A, "INBOX", &new_message(message(2, 900)))
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::Store(StoreError::Unavailable(Resource::Remote))),
            "{e}"
        );
        rec.hold.set(false);
        // The held batch is confirmed at last (its message is kept: a retry by the
        // client would be a duplicate, which mail allows), and writes resume.
        let mut tries = 0;
        loop {
            match p.append(A, "INBOX", &new_message(message(3, 900))).await {
                Ok(_) => break,
                Err(Error::Store(StoreError::Unavailable(Resource::Remote))) if tries < 100 => {
                    tries += 1;
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(p.status(A, "INBOX").unwrap().messages, 2);
    });
}

#[test]
fn sealed_segments_and_checkpoints_are_announced_once_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let rec = Rc::new(Recorder::default());
        let p = open_owned(&d, &rec, |t| t).await;
        for n in 0..200 {
            p.append(A, "INBOX", &new_message(message(n, 4000)))
                .await
                .unwrap();
        }
        let sealed = rec.sealed.borrow().clone();
        assert!(sealed.len() >= 2, "{sealed:?}");
        let chunks = rec.chunks.borrow().clone();
        for (i, s) in sealed.iter().enumerate() {
            assert_eq!(s.epoch, 7);
            if i > 0 {
                assert_eq!(s.seq, sealed[i - 1].seq + 1, "in order");
            }
            // Final: the file's records end where the announcement says, and every chunk
            // with bytes in it was confirmed before.
            let bytes = std::fs::read(&s.path).unwrap();
            assert!(bytes[s.len as usize..].iter().all(|&b| b == 0));
            let written: u64 = chunks
                .iter()
                .flat_map(|c| &c.pieces)
                .filter(|p| p.segment == s.seq)
                .map(|p| p.bytes.len() as u64)
                .sum();
            assert_eq!(written, s.len, "segment {}", s.seq);
            let next = chunks
                .iter()
                .flat_map(|c| &c.pieces)
                .find(|p| p.segment == s.seq + 1 && p.offset == 0)
                .expect("the next segment's header was shipped");
            let h = ringmail_engine::internals::segment::SegmentHeader::decode(&next.bytes[..64])
                .unwrap();
            assert_eq!(h.first_lsn, s.next_first_lsn);
        }
        p.checkpoint().await.unwrap();
        let cks = rec.checkpoints.borrow().clone();
        assert_eq!(cks.len(), 1);
        assert!(cks[0].path.exists());
        assert!(cks[0].log_segment > sealed.last().unwrap().seq);
        // Every message is live: every sealed segment is still needed.
        assert_eq!(
            cks[0].live,
            sealed.iter().map(|s| s.seq).collect::<Vec<_>>()
        );
    });
}

#[test]
fn an_interval_between_uploads_batches_batches() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let (chunks, first, took) = run(&d.clone(), move || async move {
        let rec = Rc::new(Recorder::default());
        let p = open_owned(&d, &rec, |mut t| {
            t.in_flight = 1;
            t.interval = Duration::from_millis(150);
            t
        })
        .await;
        // The account's creation was the first upload; the next may start 150 ms after it.
        glommio::timer::sleep(Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        p.append(A, "INBOX", &new_message(message(0, 900)))
            .await
            .unwrap();
        let first = started.elapsed();
        let before = rec.chunks.borrow().len();
        let mut tasks = Vec::new();
        for w in 0..4u64 {
            let p = p.clone();
            tasks.push(glommio::spawn_local(async move {
                for n in 0..10 {
                    p.append(A, "INBOX", &new_message(message(w * 100 + n + 1, 900)))
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        let chunks = rec.chunks.borrow().len() - before;
        (chunks, first, started.elapsed())
    });
    // A batch after a quiet spell goes at once.
    assert!(first < Duration::from_millis(100), "{first:?}");
    // 40 appends by 4 writers, each waiting for its acknowledgement: without the interval
    // about one upload per round of batches; with it, at most one per 150 ms.
    let most = took.as_millis() as usize / 150 + 1;
    assert!(
        chunks <= most,
        "{chunks} uploads in {took:?}: more than one per 150 ms"
    );
    assert!(chunks >= 2, "{chunks}");
}
