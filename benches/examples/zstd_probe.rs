use ringmail_benches::mailgen::MailGen;
use std::time::Instant;
fn main() {
    let mut g = MailGen::new(42);
    for size in [1000usize, 4000, 16000, 100000] {
        let msgs: Vec<Vec<u8>> = (0..2000).map(|_| g.message_of_size(size)).collect();
        for level in [-5, 1, 3] {
            let mut c = zstd::bulk::Compressor::new(level).unwrap();
            let mut out = vec![0u8; 400 << 10];
            let t = Instant::now();
            let o: usize = msgs
                .iter()
                .map(|m| c.compress_to_buffer(m, &mut out).unwrap())
                .sum();
            let e = t.elapsed().as_secs_f64() * 1e6 / 2000.0;
            let raw: usize = msgs.iter().map(|m| m.len()).sum();
            println!(
                "size {size} level {level}: {:.1}us/msg {:.0} MB/s ratio {:.3}",
                e,
                raw as f64 / 2000.0 / e,
                o as f64 / raw as f64
            );
        }
        let t = Instant::now();
        let mut s = 0u32;
        for m in &msgs {
            s ^= crc32fast::hash(m);
        }
        println!(
            "  crc32 {:.2}us/msg {s}",
            t.elapsed().as_secs_f64() * 1e6 / 2000.0
        );
    }
}
