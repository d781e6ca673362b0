//! Property: random sequences of acknowledged operations, crashed at a random point of the
//! log (a clean cut, a cut inside a record, or garbage after it) and recovered, give the
//! model's state for the operations whose records are whole. Checkpoints taken along the
//! way bound where a crash can fall: never before what a checkpoint covers, which is
//! durable before the checkpoint is written.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use proptest::prelude::*;
use ringmail_engine::internals::format::segment_file;
use ringmail_engine::internals::segment::scan_segment;
use ringmail_engine::{FlagOp, Flags, Uid};

const ACCOUNT: &str = "model@example.org";

#[derive(Clone, Debug)]
enum Op {
    Append {
        size: usize,
    },
    /// On the `pick`-th message that exists (modulo how many), if any.
    Store {
        pick: usize,
        flags: u64,
    },
    Expunge {
        pick: usize,
    },
    Checkpoint,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (50usize..6000).prop_map(|size| Op::Append { size }),
        2 => (any::<usize>(), prop_oneof![Just(0u64), Just(Flags::SEEN.0), Just(Flags::SEEN.0 | Flags::FLAGGED.0), Just(Flags::DELETED.0)])
            .prop_map(|(pick, flags)| Op::Store { pick, flags }),
        1 => any::<usize>().prop_map(|pick| Op::Expunge { pick }),
        1 => Just(Op::Checkpoint),
    ]
}

/// UID → (message number, size, flags).
type Model = BTreeMap<u32, (u64, usize, u64)>;

/// What a run wrote: the model after each record, and where the last checkpoint stands.
struct Written {
    /// `states[k]`: the model once the first `k` records after account setup are applied.
    states: Vec<Model>,
    /// Records of account setup.
    setup: usize,
    /// Records the last checkpoint covers (a crash cannot lose them).
    covered: usize,
}

fn write(dir: &Path, ops: Vec<Op>) -> Written {
    let d = dir.to_path_buf();
    run(dir, move || async move {
        let p = open_with_account(&d, config(), ACCOUNT).await;
        let records = |p: &ringmail_engine::Partition| p.stats().log.records as usize;
        let setup = records(&p);
        let mut model = Model::new();
        let mut states = vec![model.clone()];
        let mut covered = setup;
        let mut next = 1u32;
        for (n, op) in ops.into_iter().enumerate() {
            let before = records(&p);
            let uids: Vec<u32> = model.keys().copied().collect();
            match op {
                Op::Append { size } => {
                    p.append(ACCOUNT, "INBOX", &new_message(message(n as u64, size)))
                        .await
                        .unwrap();
                    model.insert(next, (n as u64, size, 0));
                    next += 1;
                }
                Op::Store { pick, flags } => {
                    if let Some(&uid) = uids.get(pick % uids.len().max(1)) {
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
                        model.get_mut(&uid).unwrap().2 = flags;
                    }
                }
                Op::Expunge { pick } => {
                    if let Some(&uid) = uids.get(pick % uids.len().max(1)) {
                        p.expunge(ACCOUNT, "INBOX", Some(&[Uid(uid)]))
                            .await
                            .unwrap();
                        model.remove(&uid);
                    }
                }
                Op::Checkpoint => {
                    p.checkpoint().await.unwrap();
                    covered = records(&p);
                }
            }
            // An operation that changed nothing wrote nothing; one that did, one record.
            let wrote = records(&p) - before;
            assert!(wrote <= 1, "{wrote} records for one operation");
            if wrote == 1 {
                states.push(model.clone());
            }
        }
        // No close: the process "crashes" with everything acknowledged on disk.
        Written {
            states,
            setup,
            covered,
        }
    })
}

fn verify(dir: &Path, expected: Model) {
    let d = dir.to_path_buf();
    run(dir, move || async move {
        let p = open(&d, config()).await;
        let got = p.messages(ACCOUNT, "INBOX", Uid(1), Uid(u32::MAX)).unwrap();
        let got_uids: Vec<u32> = got.iter().map(|m| m.uid.0).collect();
        let want: Vec<u32> = expected.keys().copied().collect();
        assert_eq!(got_uids, want, "report {:?}", p.recovery_report());
        for m in got {
            let (n, size, flags) = expected[&m.uid.0];
            assert_eq!(
                m.flags.0 & Flags::SYSTEM_MASK,
                flags,
                "flags of UID {}",
                m.uid
            );
            let body = p.fetch(ACCOUNT, "INBOX", m.uid).await.unwrap();
            assert!(*body == message(n, size), "body of UID {}", m.uid);
        }
        let rep = p.check_integrity().await;
        assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_crash_anywhere_after_the_checkpoint_keeps_exactly_the_whole_records(
        ops in proptest::collection::vec(op(), 1..40),
        at in any::<prop::sample::Index>(),
        how in 0u8..3,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let w = write(dir.path(), ops);
        let seg_path = dir.path().join("p0").join(segment_file(1, 1));
        let seg = std::fs::read(&seg_path).unwrap();
        let scan = scan_segment(&seg, 64, 0);
        prop_assert_eq!(scan.records.len(), w.setup + w.states.len() - 1);
        let ends: Vec<u64> = scan.records.iter().map(|r| r.offset + r.header.total_len()).collect();
        // A crash keeps at least what the last checkpoint covers.
        let keep = w.covered.max(w.setup) + at.index(ends.len() + 1 - w.covered.max(w.setup));
        let cut = if keep == 0 { 64 } else { ends[keep - 1] };
        let t = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), t.path());
        let path = t.path().join("p0").join(segment_file(1, 1));
        let mut b = std::fs::read(&path).unwrap();
        match how {
            // The file ends at a record boundary.
            0 => b.truncate(cut as usize),
            // Half of the next record was written.
            1 => {
                let next_end = ends.get(keep).copied().unwrap_or(cut);
                b.truncate(((cut + next_end) / 2) as usize);
            }
            // Garbage after the boundary, as a torn write can leave.
            _ => {
                for (k, byte) in b[cut as usize..].iter_mut().enumerate() {
                    *byte = (k as u8).wrapping_mul(31).wrapping_add(7);
                }
            }
        }
        std::fs::write(&path, &b).unwrap();
        verify(t.path(), w.states[keep - w.setup].clone());
    }
}
