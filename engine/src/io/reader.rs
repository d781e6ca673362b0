//! Reads single records from segment files with DMA, verifying both checksums.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::DmaFile;

use crate::error::{Error, FormatError, Result};
use crate::format::names::segment_file;
use crate::ids::{LogPos, SegmentSeq};
use crate::segment::{RecordHeader, RECORD_HEADER_LEN};

/// Open read handles of a partition's segments, opened on first use.
pub struct SegmentReader {
    dir: PathBuf,
    epoch: u64,
    files: RefCell<HashMap<u64, Rc<DmaFile>>>,
}

impl SegmentReader {
    pub fn new(dir: &Path, epoch: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            epoch,
            files: RefCell::new(HashMap::new()),
        }
    }

    async fn file(&self, seq: u64) -> Result<Rc<DmaFile>> {
        if let Some(f) = self.files.borrow().get(&seq) {
            return Ok(f.clone());
        }
        let path = self.dir.join(segment_file(self.epoch, seq));
        let f = match DmaFile::open(&path).await {
            Ok(f) => Rc::new(f),
            Err(e) => {
                let e: std::io::Error = e.into();
                if e.kind() == std::io::ErrorKind::NotFound {
                    return Err(Error::MissingSegment(SegmentSeq(seq)));
                }
                return Err(Error::io(format!("opening {path:?}"), e));
            }
        };
        self.files.borrow_mut().insert(seq, f.clone());
        Ok(f)
    }

    /// Forgets the handle of a segment that compaction deleted.
    pub async fn forget(&self, seq: u64) {
        let f = self.files.borrow_mut().remove(&seq);
        if let Some(f) = f {
            if let Ok(f) = Rc::try_unwrap(f) {
                let _ = f.close().await;
            }
        }
    }

    /// Reads `len` bytes of the record at `segment`/`offset` and returns its verified header
    /// and `prefix` bytes of its payload (all of it when `prefix` is `None`).
    pub async fn read_record(
        &self,
        segment: u64,
        offset: u64,
        len: u32,
        prefix: Option<usize>,
    ) -> Result<(RecordHeader, Vec<u8>)> {
        let pos = LogPos {
            segment: SegmentSeq(segment),
            offset,
        };
        let path = || self.dir.join(segment_file(self.epoch, segment));
        let corrupt = |source| Error::Corrupt {
            file: path(),
            pos: Some(pos),
            source,
        };
        let file = self.file(segment).await?;
        let want = match prefix {
            Some(p) => (RECORD_HEADER_LEN + p).min(len as usize),
            None => len as usize,
        };
        let data = file
            .read_at(offset, want)
            .await
            .map_err(|e| Error::io(format!("reading {:?}", path()), e.into()))?;
        let h = RecordHeader::decode(&data).map_err(corrupt)?;
        if h.total_len() != len as u64 {
            return Err(corrupt(FormatError::Invalid {
                what: "record length",
                detail: format!("index says {len}, header says {}", h.total_len()),
            }));
        }
        if data.len() < want {
            return Err(corrupt(FormatError::Truncated {
                at: data.len(),
                wanted: want,
                available: data.len(),
            }));
        }
        let payload = &data[RECORD_HEADER_LEN..want];
        if prefix.is_none() {
            h.check_payload(payload).map_err(corrupt)?;
        }
        Ok((h, payload.to_vec()))
    }
}
