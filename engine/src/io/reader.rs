//! Reads single records from segment files with DMA, verifying both checksums.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{BufferedFile, DmaFile, ReadResult};

use crate::error::{Error, FormatError, Result};
use crate::ids::{LogPos, SegmentSeq};
use crate::segment::SegmentEpochs;
use crate::segment::{RecordHeader, RECORD_HEADER_LEN};

/// How records are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// Through the kernel's page cache (io_uring buffered reads): the OS keeps recently read
    /// compressed records in memory, and a cached read costs no device round trip.
    #[default]
    PageCache,
    /// O_DIRECT: every read goes to the device; memory use is only the engine's own cache.
    Direct,
}

enum SegmentFile {
    Dma(DmaFile),
    Buffered(BufferedFile),
}

impl SegmentFile {
    async fn read_at(&self, pos: u64, size: usize) -> glommio::Result<ReadResult, ()> {
        match self {
            SegmentFile::Dma(f) => f.read_at(pos, size).await,
            SegmentFile::Buffered(f) => f.read_at(pos, size).await,
        }
    }

    async fn close(self) {
        let _ = match self {
            SegmentFile::Dma(f) => f.close().await,
            SegmentFile::Buffered(f) => f.close().await,
        };
    }
}

/// Segment files a reader keeps open: a partition's descriptors stay bounded (the server
/// reserves this many per partition, whatever clients do), however many segments it has.
pub const MAX_OPEN_SEGMENTS: usize = 32;

/// Open read handles of a partition's segments, opened on first use; the least recently
/// opened is closed beyond [`MAX_OPEN_SEGMENTS`].
pub struct SegmentReader {
    dir: PathBuf,
    epochs: SegmentEpochs,
    mode: ReadMode,
    files: RefCell<HashMap<u64, Rc<SegmentFile>>>,
    /// Open order, oldest first.
    order: RefCell<std::collections::VecDeque<u64>>,
    /// Cluster mode: fetches a segment that object storage holds and the disk does not.
    remote: Option<(
        Rc<dyn crate::io::tail::TailSink>,
        std::collections::BTreeSet<u64>,
    )>,
    /// One fetch at a time (two reads of one missing segment fetch it once).
    fetching: glommio::sync::Semaphore,
}

impl SegmentReader {
    pub fn new(dir: &Path, epochs: SegmentEpochs, mode: ReadMode) -> Self {
        Self {
            dir: dir.to_path_buf(),
            epochs,
            mode,
            files: RefCell::new(HashMap::new()),
            order: RefCell::new(std::collections::VecDeque::new()),
            remote: None,
            fetching: glommio::sync::Semaphore::new(1),
        }
    }

    /// Cluster mode: segments in `remote` that are not on the disk are fetched through
    /// `sink` when a read needs them, then kept (the disk is the cache).
    pub fn with_remote(
        mut self,
        sink: Rc<dyn crate::io::tail::TailSink>,
        remote: std::collections::BTreeSet<u64>,
    ) -> Self {
        self.remote = Some((sink, remote));
        self
    }

    async fn open(&self, path: &Path) -> glommio::Result<SegmentFile, ()> {
        match self.mode {
            ReadMode::Direct => DmaFile::open(path).await.map(SegmentFile::Dma),
            ReadMode::PageCache => BufferedFile::open(path).await.map(SegmentFile::Buffered),
        }
    }

    async fn file(&self, seq: u64) -> Result<Rc<SegmentFile>> {
        if let Some(f) = self.files.borrow().get(&seq) {
            return Ok(f.clone());
        }
        let path = self.path(seq);
        let mut opened = self.open(&path).await;
        if let (Err(e), Some((sink, remote))) = (&opened, &self.remote) {
            if not_found(e) && remote.contains(&seq) {
                let _one = self.fetching.acquire_permit(1).await;
                if !path.exists() {
                    if let Some(fetch) = sink.fetch_segment(seq, path.clone()) {
                        fetch.await.map_err(|e| {
                            Error::io(
                                format!("fetching segment {seq} from object storage"),
                                std::io::Error::other(format!("{e:?}")),
                            )
                        })?;
                    }
                }
                opened = self.open(&path).await;
            }
        }
        let f = match opened {
            Ok(f) => Rc::new(f),
            Err(e) => {
                let e: std::io::Error = e.into();
                if e.kind() == std::io::ErrorKind::NotFound {
                    return Err(Error::MissingSegment(SegmentSeq(seq)));
                }
                return Err(Error::io(format!("opening {path:?}"), e));
            }
        };
        let evicted = {
            let mut files = self.files.borrow_mut();
            let mut order = self.order.borrow_mut();
            if files.insert(seq, f.clone()).is_none() {
                order.push_back(seq);
            }
            let mut evicted = Vec::new();
            while files.len() > MAX_OPEN_SEGMENTS {
                let Some(old) = order.pop_front() else { break };
                evicted.extend(files.remove(&old));
            }
            evicted
        };
        for old in evicted {
            // A read in flight holds its own Rc; the file closes when the last one goes.
            if let Ok(old) = Rc::try_unwrap(old) {
                old.close().await;
            }
        }
        Ok(f)
    }

    /// The file of segment `seq` (of whichever epoch wrote it).
    pub fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(self.epochs.file(seq))
    }

    /// Forgets the handle of a segment that compaction deleted.
    pub async fn forget(&self, seq: u64) {
        self.order.borrow_mut().retain(|&s| s != seq);
        let f = self.files.borrow_mut().remove(&seq);
        if let Some(f) = f {
            if let Ok(f) = Rc::try_unwrap(f) {
                f.close().await;
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
        let path = || self.path(segment);
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

/// Whether opening failed because the file is not there.
fn not_found<T>(e: &glommio::GlommioError<T>) -> bool {
    let io = match e {
        glommio::GlommioError::IoError(io) => io,
        glommio::GlommioError::EnhancedIoError { source, .. } => source,
        _ => return false,
    };
    io.kind() == std::io::ErrorKind::NotFound
}
