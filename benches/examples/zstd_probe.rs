//! Probe: zstd cost and ratio of the settings a partition could use, on generated mail of
//! the benchmark's size, with the cache disturbed between messages as a busy server
//! disturbs it (DISTURB=0: not). Rounds are interleaved; the best round per setting is
//! printed, after the training time of each dictionary.
//! `cargo run --release -p ringmail-benches --example zstd_probe [SIZE]`
use ringmail_benches::mailgen::MailGen;
use std::time::Instant;

fn main() {
    let size: usize = std::env::args().nth(1).map_or(4096, |s| s.parse().unwrap());
    let mut g = MailGen::new(42);
    let samples: Vec<Vec<u8>> = (0..2000).map(|_| g.message_of_size(size)).collect();
    let mut dicts = Vec::new();
    for (n, dsize) in [(2000, 64 << 10), (500, 64 << 10), (500, 32 << 10)] {
        let t = Instant::now();
        let d = zstd::dict::from_samples(&samples[..n], dsize).unwrap();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "train {n} samples, {} KiB dictionary: {ms:.0} ms",
            dsize >> 10
        );
        dicts.push((format!("{n}/{}K", dsize >> 10), d));
    }
    let msgs: Vec<Vec<u8>> = (0..2000).map(|_| g.message_of_size(size)).collect();
    let raw: usize = msgs.iter().map(|m| m.len()).sum();
    let mut out = vec![0u8; 1 << 20];
    // Written between messages to evict the compressor's tables, as the server's other work
    // does; empty with DISTURB=0.
    let disturb = std::env::var("DISTURB").map_or(true, |v| v != "0");
    let mut junk = vec![0u8; if disturb { 4 << 20 } else { 0 }];
    let mut configs: Vec<(String, zstd::bulk::Compressor<'static>)> = Vec::new();
    for level in [-5, -3, -1, 1] {
        configs.push((
            format!("no dict, level {level}"),
            zstd::bulk::Compressor::new(level).unwrap(),
        ));
    }
    for (name, d) in &dicts {
        for level in [-3, -1, 1] {
            let ed: &'static _ = Box::leak(Box::new(zstd::dict::EncoderDictionary::copy(d, level)));
            let c = zstd::bulk::Compressor::with_prepared_dictionary(ed).unwrap();
            configs.push((format!("dict {name}, level {level}"), c));
        }
    }
    let mut best = vec![f64::MAX; configs.len()];
    let mut ratio = vec![0.0; configs.len()];
    for _round in 0..7 {
        for (k, (_, c)) in configs.iter_mut().enumerate() {
            let mut el = 0.0;
            let mut o = 0;
            for (i, m) in msgs.iter().enumerate() {
                for b in junk.iter_mut().step_by(64) {
                    *b = b.wrapping_add(i as u8);
                }
                let t = Instant::now();
                o += c.compress_to_buffer(m, &mut out).unwrap();
                el += t.elapsed().as_secs_f64();
            }
            best[k] = best[k].min(el * 1e6 / msgs.len() as f64);
            ratio[k] = o as f64 / raw as f64;
        }
    }
    println!("mean message {} B", raw / msgs.len());
    for (k, (name, _)) in configs.iter().enumerate() {
        println!("{name:40} {:6.1} us/msg  ratio {:.3}", best[k], ratio[k]);
    }
}
