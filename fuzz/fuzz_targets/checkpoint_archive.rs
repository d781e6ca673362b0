#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ringmail_engine::fuzzing::checkpoint_archive(data));
