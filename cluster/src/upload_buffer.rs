//! The buffer a sealed segment is read into for its upload, kept for the next one.
//!
//! A segment is tens of MiB. Reading each into a fresh allocation made the kernel fault in
//! and zero that much new memory per upload (a few percent of a busy node's CPU); one
//! buffer that comes back when the upload's last reference drops avoids it. Reading (not
//! mapping) the file keeps a disk error an error, not a SIGBUS.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Buffers larger than this are not kept.
const KEEP_AT_MOST: usize = 256 << 20;

/// Where the buffer waits between uploads.
#[derive(Clone, Default)]
pub struct UploadBuffer(Arc<Mutex<Option<Vec<u8>>>>);

impl UploadBuffer {
    /// The first `len` bytes of the file at `path` (blocking: call it off the runtime).
    pub fn read(&self, path: &Path, len: u64) -> std::io::Result<Bytes> {
        let mut buf = self.take();
        buf.clear();
        buf.reserve(len as usize);
        std::fs::File::open(path)?.take(len).read_to_end(&mut buf)?;
        if buf.len() as u64 != len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{path:?} holds {} of its {len} sealed bytes", buf.len()),
            ));
        }
        Ok(Bytes::from_owner(Lent {
            buf,
            home: self.clone(),
        }))
    }

    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default()
    }
}

/// The buffer while an upload holds it; it goes back when the last reference drops.
struct Lent {
    buf: Vec<u8>,
    home: UploadBuffer,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if self.buf.capacity() <= KEEP_AT_MOST {
            let buf = std::mem::take(&mut self.buf);
            *self.home.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_comes_back_and_a_short_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        std::fs::write(&path, b"0123456789").unwrap();
        let pool = UploadBuffer::default();
        let a = pool.read(&path, 8).unwrap();
        assert_eq!(&a[..], b"01234567");
        let at = a.as_ptr();
        let copy = a.clone();
        drop(a);
        assert!(
            pool.0.lock().unwrap().is_none(),
            "still lent while a clone lives"
        );
        drop(copy);
        let b = pool.read(&path, 10).unwrap();
        assert_eq!(&b[..], b"0123456789");
        assert_eq!(b.as_ptr(), at, "the same buffer, reused");
        drop(b);
        let e = pool.read(&path, 11).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
