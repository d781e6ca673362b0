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

    /// Decompresses `data`, appending the plaintext to `out`.
    pub fn decompress(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Corrupt> {
        let mut input = data;
        loop {
            out.reserve(input.len() * 4 + 256);
            let before_in = self.rx.total_in();
            let before_out = out.len();
            let st = self
                .rx
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| Corrupt)?;
            let used = (self.rx.total_in() - before_in) as usize;
            input = &input[used..];
            if st == Status::StreamEnd {
                return Ok(());
            }
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
            if used == 0 && out.len() == before_out && out.len() < out.capacity() {
                return Ok(());
            }
        }
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
            client.decompress(c, &mut plain).unwrap();
        }
        assert_eq!(&plain[..12], b"* OK hello\r\n");
        assert_eq!(&plain[12..], &big[..]);
        let mut junk = Deflate::default();
        assert!(junk.decompress(&[0xff; 64], &mut Vec::new()).is_err());
    }
}
