//! The glommio side of the engine: DMA files, the group-commit log writer, segment reads.
//!
//! Everything above this module (format, state, index, recovery scan, compaction policy)
//! is plain code over bytes; this is where it meets io_uring.

pub mod changes;
pub mod log_writer;
pub mod notify;
pub mod reader;
pub mod tail;

use std::fs;
use std::path::Path;

use crate::error::{Error, Result};

/// fsyncs a directory so that a file created or renamed in it survives a crash.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    let f = fs::File::open(dir).map_err(|e| Error::io(format!("opening directory {dir:?}"), e))?;
    f.sync_all()
        .map_err(|e| Error::io(format!("syncing directory {dir:?}"), e))
}

/// Writes `parts` as `path` durably and all at once: a temporary file `tmp`, fdatasync,
/// rename into place, directory fsync. A crash leaves the old file or the new one, never a
/// half-written one under `path`; a failure removes `tmp` (a full disk gets its space back)
/// and says which resource ran out when one did.
pub fn replace_file(path: &Path, tmp: &Path, parts: &[&[u8]]) -> Result<()> {
    use std::io::Write;
    let io = |what: &str, e: std::io::Error| {
        let _ = fs::remove_file(tmp);
        match e.raw_os_error().and_then(crate::error::Resource::of_errno) {
            Some(r) => Error::Store(crate::error::StoreError::Unavailable(r)),
            None => Error::io(format!("{what} {tmp:?}"), e),
        }
    };
    let mut f = fs::File::create(tmp).map_err(|e| io("creating", e))?;
    for p in parts {
        f.write_all(p).map_err(|e| io("writing", e))?;
    }
    f.sync_data().map_err(|e| io("syncing", e))?;
    drop(f);
    fs::rename(tmp, path).map_err(|e| io("renaming", e))?;
    match path.parent() {
        Some(dir) => fsync_dir(dir),
        None => Ok(()),
    }
}

/// The DMA write alignment the engine uses for every segment file.
pub const ALIGN: u64 = 4096;

pub fn align_down(v: u64) -> u64 {
    v & !(ALIGN - 1)
}

pub fn align_up(v: u64) -> u64 {
    (v + ALIGN - 1) & !(ALIGN - 1)
}

/// Opens a non-empty file on the data device with DMA before any other DMA file.
///
/// glommio decides whether the device supports io_uring polled I/O by reading the first DMA
/// file it opens on it; on a new, empty file that probe wrongly succeeds and later reads fail
/// with EOPNOTSUPP. Reading the superblock first makes the probe true.
pub async fn probe_device(non_empty_file: &Path) -> Result<()> {
    let f = glommio::io::DmaFile::open(non_empty_file)
        .await
        .map_err(|e| Error::io(format!("opening {non_empty_file:?}"), e.into()))?;
    f.read_at(0, 512)
        .await
        .map_err(|e| Error::io(format!("reading {non_empty_file:?}"), e.into()))?;
    f.close()
        .await
        .map_err(|e| Error::io(format!("closing {non_empty_file:?}"), e.into()))?;
    Ok(())
}
