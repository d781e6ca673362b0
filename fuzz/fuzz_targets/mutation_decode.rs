#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ringmail_engine::fuzzing::mutation_decode(data));
