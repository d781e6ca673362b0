//! Replays the fuzz targets' corpora (`fuzz/corpus/<target>/`, with the hand-written
//! `fuzz/seeds/` and the crash reproducers in `fuzz/regressions/`) through the same
//! functions the fuzzers call, uninstrumented, so every CI run checks them again
//! (`docs/fuzzing.md`). A missing or empty corpus fails.

use std::path::PathBuf;

use ringmail_engine::fuzzing::{self, replay};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[test]
fn fuzz_corpus_segment_scan() {
    replay(&fuzz_dir(), "segment_scan", fuzzing::segment_scan);
}

#[test]
fn fuzz_corpus_mutation_decode() {
    replay(&fuzz_dir(), "mutation_decode", fuzzing::mutation_decode);
}

#[test]
fn fuzz_corpus_annotations_decode() {
    replay(
        &fuzz_dir(),
        "annotations_decode",
        fuzzing::annotations_decode,
    );
}

#[test]
fn fuzz_corpus_slots_decode() {
    replay(&fuzz_dir(), "slots_decode", fuzzing::slots_decode);
}

#[test]
fn fuzz_corpus_checkpoint_archive() {
    replay(
        &fuzz_dir(),
        "checkpoint_archive",
        fuzzing::checkpoint_archive,
    );
}

#[test]
fn fuzz_corpus_replay_refuses_a_missing_corpus() {
    let r = std::panic::catch_unwind(|| replay(&fuzz_dir(), "no_such_target", |_| {}));
    assert!(r.is_err());
}
