//! Replays the frontends' fuzz targets' corpora (`fuzz/corpus/<target>/`, with the
//! hand-written `fuzz/seeds/` and the crash reproducers in `fuzz/regressions/`) through the
//! same functions the fuzzers call, uninstrumented, so every CI run checks them again
//! (`docs/fuzzing.md`). A missing or empty corpus fails.

use std::path::PathBuf;

use ringmail::fuzzing;
use ringmail_engine::fuzzing::replay;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[test]
fn fuzz_corpus_imap_command() {
    replay(&fuzz_dir(), "imap_command", fuzzing::imap_command);
}

#[test]
fn fuzz_corpus_imap_framer() {
    replay(&fuzz_dir(), "imap_framer", fuzzing::imap_framer);
}

#[test]
fn fuzz_corpus_smtp_command() {
    replay(&fuzz_dir(), "smtp_command", fuzzing::smtp_command);
}

#[test]
fn fuzz_corpus_smtp_data() {
    replay(&fuzz_dir(), "smtp_data", fuzzing::smtp_data);
}

#[test]
fn fuzz_corpus_pop3_command() {
    replay(&fuzz_dir(), "pop3_command", fuzzing::pop3_command);
}

#[test]
fn fuzz_corpus_mime_parse() {
    replay(&fuzz_dir(), "mime_parse", fuzzing::mime_parse);
}

#[test]
fn fuzz_corpus_meta_decode() {
    replay(&fuzz_dir(), "meta_decode", fuzzing::meta_decode);
}

/// The targets replayed here and in `engine/tests/fuzz_corpus.rs`.
const REPLAYED: [&str; 12] = [
    "annotations_decode",
    "checkpoint_archive",
    "imap_command",
    "imap_framer",
    "meta_decode",
    "mime_parse",
    "mutation_decode",
    "pop3_command",
    "segment_scan",
    "slots_decode",
    "smtp_command",
    "smtp_data",
];

/// The targets in `fuzz/fuzz_targets/` are the ones replayed (a new target cannot go
/// without its replay unnoticed).
#[test]
fn fuzz_corpus_replays_every_target() {
    let dir = std::fs::read_dir(fuzz_dir().join("fuzz_targets")).expect("fuzz/fuzz_targets");
    let mut targets: Vec<String> = dir
        .map(|t| {
            let path = t.expect("listing fuzz targets").path();
            path.file_stem()
                .expect("a target file")
                .to_string_lossy()
                .to_string()
        })
        .collect();
    targets.sort();
    assert_eq!(targets, REPLAYED);
}
