//! COMPRESS=DEFLATE (RFC 4978): after the tagged OK, each direction of the connection is one
//! raw DEFLATE stream (no zlib header). Every write ends with a sync flush, so the client can
//! decode each response as soon as it arrives.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

pub struct Deflate {
    tx: Compress,
    rx: Decompress,
}

/// The client's stream is not valid DEFLATE.
#[derive(Debug)]
pub struct Corrupt;

impl Default for Deflate {
    fn default() -> Self {
        Self {
            // Level 1: responses are mostly small; speed matters more than the last bytes.
            tx: Compress::new(Compression::fast(), false),
            rx: Decompress::new(false),
        }
    }
}

impl Deflate {
    /// Compresses `data` and sync-flushes, appending to `out`.
    pub fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let mut input = data;
        loop {
            out.reserve(input.len() / 2 + 64);
            let before_in = self.tx.total_in();
            // Only fails on a misuse of the API (no output space is handled by the loop).
            let _ = self.tx.compress_vec(input, out, FlushCompress::Sync);
            let used = (self.tx.total_in() - before_in) as usize;
            input = &input[used..];
            // Done once all input is taken and the flush fit (spare room left over).
            if input.is_empty() && out.len() < out.capacity() {
                return;
            }
        }
    }

    /// Decompresses from `data`, appending at most about `limit` bytes of plaintext to
    /// `out`; returns how much of `data` it used (the rest waits for the next call, so a
    /// small stream that inflates to gigabytes is taken in bounded pieces).
    pub fn decompress(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<usize, Corrupt> {
        let start_in = self.rx.total_in();
        let goal = out.len() + limit;
        let mut input = data;
        while out.len() < goal {
            out.reserve((goal - out.len()).min(64 << 10));
            let room = out.capacity().min(goal) - out.len();
            let before_in = self.rx.total_in();
            let before_out = out.len();
            let mut piece = Vec::with_capacity(room);
            let st = self
                .rx
                .decompress_vec(input, &mut piece, FlushDecompress::Sync)
                .map_err(|_| Corrupt)?;
            out.extend_from_slice(&piece);
            input = &input[(self.rx.total_in() - before_in) as usize..];
            if st == Status::StreamEnd {
                // The client ended its stream: what follows cannot be read.
                return Err(Corrupt);
            }
            if out.len() == before_out && self.rx.total_in() == before_in {
                break; // needs more input
            }
        }
        Ok((self.rx.total_in() - start_in) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_pieces() {
        let mut server = Deflate::default();
        let mut client = Deflate::default();
        let mut wire = Vec::new();
        let big: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        server.compress(b"* OK hello\r\n", &mut wire);
        server.compress(&big, &mut wire);
        // The client decodes byte by byte, as data may arrive.
        let mut plain = Vec::new();
        for c in wire.chunks(7) {
            let mut rest = c;
            while !rest.is_empty() {
                let used = client.decompress(rest, &mut plain, 1 << 20).unwrap();
                rest = &rest[used..];
            }
        }
        assert_eq!(&plain[..12], b"* OK hello\r\n");
        assert_eq!(&plain[12..], &big[..]);
        let mut junk = Deflate::default();
        assert!(junk.decompress(&[0xff; 64], &mut Vec::new(), 1024).is_err());
        // A bomb: 10 MB of one byte, compressed to a few KB, comes out 64 KiB at a time.
        let mut bomb = Vec::new();
        Deflate::default().compress(&vec![b'a'; 10_000_000], &mut bomb);
        assert!(bomb.len() < 100_000);
        let mut d = Deflate::default();
        let mut out = Vec::new();
        let used = d.decompress(&bomb, &mut out, 64 << 10).unwrap();
        assert!(out.len() <= 64 << 10, "{}", out.len());
        assert!(used < bomb.len());
    }
}
