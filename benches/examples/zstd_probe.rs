//! Probe: zstd cost and ratio per level, with and without a trained dictionary, on
//! realistic generated mail. `cargo run --release -p ringmail-benches --example zstd_probe`
use ringmail_benches::mailgen::MailGen;
use std::time::Instant;
fn main() {
    let mut g = MailGen::new(42);
    let train: Vec<Vec<u8>> = (0..2000).map(|_| g.message()).collect();
    let samples: Vec<Vec<u8>> = train
        .iter()
        .map(|m| m[..m.len().min(8 << 10)].to_vec())
        .collect();
    let dict = zstd::dict::from_samples(&samples, 64 << 10).unwrap();
    let msgs: Vec<Vec<u8>> = (0..4000).map(|_| g.message()).collect();
    let raw: usize = msgs.iter().map(|m| m.len()).sum();
    let mut out = vec![0u8; 1 << 20];
    for use_dict in [false, true] {
        for level in [-5, -3, -1, 1, 3] {
            let ed = zstd::dict::EncoderDictionary::copy(&dict, level);
            let mut c = if use_dict {
                zstd::bulk::Compressor::with_prepared_dictionary(&ed).unwrap()
            } else {
                zstd::bulk::Compressor::new(level).unwrap()
            };
            let mut best = f64::MAX;
            let mut o = 0;
            for _ in 0..3 {
                let t = Instant::now();
                o = msgs
                    .iter()
                    .map(|m| c.compress_to_buffer(m, &mut out).unwrap())
                    .sum::<usize>();
                best = best.min(t.elapsed().as_secs_f64() * 1e6 / msgs.len() as f64);
            }
            println!(
                "dict {use_dict} level {level}: {best:.1} us/msg, ratio {:.3} (mean {} B)",
                o as f64 / raw as f64,
                raw / msgs.len()
            );
        }
    }
}
