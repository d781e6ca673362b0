#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ringmail::fuzzing::meta_decode(data));
