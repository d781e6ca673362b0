//! Index checkpoints: the partition's whole index as one rkyv archive, read in place.
//!
//! A checkpoint file is a 64-byte header followed by the archive. It records the log
//! position it covers; opening a partition loads the newest valid checkpoint without copying
//! or deserializing it, then replays only the log after that position, so open time depends
//! on the log written since the last checkpoint, not on the mailbox's history.
//!
//! This module holds the engine's only `unsafe` code (see `UNSAFE.md`): access to the
//! archive after it was validated once.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::error::{Error, FormatError, Result};
use crate::format::names::{CHECKPOINT_MAGIC, CHECKPOINT_TMP_SUFFIX, FORMAT_VERSION};
use crate::format::{crc32, Reader, Writer};

/// One message in one mailbox. 40 bytes archived; the index keeps nothing else per message.
#[derive(rkyv::Archive, rkyv::Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub uid: u32,
    /// RFC822.SIZE: the message's size as delivered.
    pub size: u32,
    pub flags: u64,
    pub modseq: u64,
    pub internal_date: i64,
    pub blob: u64,
}

impl From<&ArchivedEntry> for Entry {
    fn from(a: &ArchivedEntry) -> Self {
        Entry {
            uid: a.uid.to_native(),
            size: a.size.to_native(),
            flags: a.flags.to_native(),
            modseq: a.modseq.to_native(),
            internal_date: a.internal_date.to_native(),
            blob: a.blob.to_native(),
        }
    }
}

/// Where a blob's record is in the log, and how many mailbox entries refer to it.
#[derive(rkyv::Archive, rkyv::Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLoc {
    pub id: u64,
    pub offset: u64,
    pub segment: u32,
    /// The whole record's length, header included.
    pub record_len: u32,
    /// The message's size as delivered.
    pub raw_len: u32,
    pub refs: u32,
}

impl From<&ArchivedBlobLoc> for BlobLoc {
    fn from(a: &ArchivedBlobLoc) -> Self {
        BlobLoc {
            id: a.id.to_native(),
            offset: a.offset.to_native(),
            segment: a.segment.to_native(),
            record_len: a.record_len.to_native(),
            raw_len: a.raw_len.to_native(),
            refs: a.refs.to_native(),
        }
    }
}

#[derive(rkyv::Archive, rkyv::Serialize, Debug)]
pub struct MailboxImage {
    pub id: u32,
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    pub special_use: u8,
    /// Sorted by UID.
    pub entries: Vec<Entry>,
}

#[derive(rkyv::Archive, rkyv::Serialize, Debug)]
pub struct AccountImage {
    pub id: u32,
    pub name: String,
    pub quota_bytes: u64,
    pub quota_messages: u64,
    pub next_mailbox: u32,
    pub keywords: Vec<String>,
    pub subscriptions: Vec<String>,
    pub mailboxes: Vec<MailboxImage>,
}

#[derive(rkyv::Archive, rkyv::Serialize, Debug)]
pub struct Image {
    pub partition: u32,
    /// Replay starts here: every record before it is reflected in this image.
    pub log_segment: u64,
    pub log_offset: u64,
    pub next_lsn: u64,
    pub next_blob: u64,
    pub next_account: u32,
    pub last_uidvalidity: u32,
    pub accounts: Vec<AccountImage>,
    /// Sorted by id.
    pub blobs: Vec<BlobLoc>,
    /// Compression dictionaries, sorted by id.
    pub dictionaries: Vec<DictionaryImage>,
}

#[derive(rkyv::Archive, rkyv::Serialize, Debug)]
pub struct DictionaryImage {
    pub id: u32,
    pub bytes: Vec<u8>,
}

pub const HEADER_LEN: usize = 64;
// docs/format.md, "Checkpoint file".
const VERSION_OFF: usize = 8;
const PARTITION_OFF: usize = VERSION_OFF + 4;
const ARCHIVE_LEN_OFF: usize = PARTITION_OFF + 4;
const ARCHIVE_CRC_OFF: usize = ARCHIVE_LEN_OFF + 8;
const RESERVED_OFF: usize = ARCHIVE_CRC_OFF + 4;
const HEADER_CRC_OFF: usize = RESERVED_OFF + 32;
const _: () = assert!(HEADER_CRC_OFF + 4 == HEADER_LEN);

/// A validated checkpoint, held in memory and read in place.
pub struct Checkpoint {
    buf: AlignedVec,
    pub seq: u64,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Checkpoint(seq {}, {} bytes)", self.seq, self.buf.len())
    }
}

fn length_mismatch(header_says: u64, there_are: u64) -> FormatError {
    FormatError::Invalid {
        what: "checkpoint length",
        detail: format!("header says {header_says} bytes of archive, the file has {there_are}"),
    }
}

/// Checks an archive against its header's CRC and that it is a well-formed image (after
/// which it may be read in place unchecked).
fn check_archive(buf: &AlignedVec<16>, crc: u32) -> std::result::Result<(), FormatError> {
    let got = crc32(buf);
    if got != crc {
        return Err(FormatError::Checksum {
            what: "checkpoint archive",
            expected: crc,
            got,
        });
    }
    rkyv::access::<ArchivedImage, rancor::Error>(buf).map_err(|e| FormatError::Invalid {
        what: "checkpoint archive",
        detail: e.to_string(),
    })?;
    Ok(())
}

impl Checkpoint {
    /// Reads, checks and validates a checkpoint file.
    pub fn load(path: &Path, seq: u64, partition: u32) -> Result<Self> {
        let corrupt = |source| Error::Corrupt {
            file: path.to_path_buf(),
            pos: None,
            source,
        };
        let mut f = fs::File::open(path).map_err(|e| Error::io(format!("opening {path:?}"), e))?;
        let mut header = [0u8; HEADER_LEN];
        f.read_exact(&mut header).map_err(|_| {
            corrupt(FormatError::Truncated {
                at: 0,
                wanted: HEADER_LEN,
                available: 0,
            })
        })?;
        let (len, crc) = decode_header(&header, partition).map_err(corrupt)?;
        let file_len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if HEADER_LEN as u64 + len != file_len {
            return Err(corrupt(length_mismatch(
                len,
                file_len.saturating_sub(HEADER_LEN as u64),
            )));
        }
        let mut buf = AlignedVec::<16>::with_capacity(len as usize);
        buf.resize(len as usize, 0);
        f.read_exact(&mut buf).map_err(|_| {
            corrupt(FormatError::Truncated {
                at: HEADER_LEN,
                wanted: len as usize,
                available: 0,
            })
        })?;
        check_archive(&buf, crc).map_err(corrupt)?;
        Ok(Self { buf, seq })
    }

    /// The log segment of a checkpoint's position (the first segment recovery replays),
    /// from the file's bytes, checked as `load` checks them: a new cluster owner fetches the
    /// segments from there on before it opens, and older ones only when a read needs them.
    pub fn log_segment_of(bytes: &[u8], partition: u32) -> Result<u64, FormatError> {
        let header: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(FormatError::Truncated {
                at: 0,
                wanted: HEADER_LEN,
                available: bytes.len(),
            })?;
        let (len, crc) = decode_header(header, partition)?;
        let archive = &bytes[HEADER_LEN..];
        if archive.len() as u64 != len {
            return Err(length_mismatch(len, archive.len() as u64));
        }
        let mut buf = AlignedVec::<16>::with_capacity(archive.len());
        buf.extend_from_slice(archive);
        check_archive(&buf, crc)?;
        let checked = Self { buf, seq: 0 };
        Ok(checked.image().log_segment.to_native())
    }

    /// The archived image, read in place.
    #[allow(unsafe_code)]
    pub fn image(&self) -> &ArchivedImage {
        // SAFETY:
        // - `buf` passed `rkyv::access::<ArchivedImage, _>` validation in `load`, the only
        //   constructor, so it holds a valid `ArchivedImage` at the archive's root position;
        // - `buf` is never mutated after `load` (no `&mut` access to it exists), so the
        //   validation still holds;
        // - `buf` is an `AlignedVec<16>`, satisfying the archive's alignment.
        unsafe { rkyv::access_unchecked::<ArchivedImage>(&self.buf) }
    }

    pub fn archive_len(&self) -> usize {
        self.buf.len()
    }
}

fn decode_header(h: &[u8; HEADER_LEN], partition: u32) -> Result<(u64, u32), FormatError> {
    if h[..8] != CHECKPOINT_MAGIC {
        return Err(FormatError::BadMagic {
            expected: CHECKPOINT_MAGIC.to_vec(),
            got: h[..8].to_vec(),
        });
    }
    let computed = crc32(&h[..HEADER_CRC_OFF]);
    let mut r = Reader::new(&h[VERSION_OFF..]);
    let version = r.u32()?;
    let part = r.u32()?;
    let len = r.u64()?;
    let crc = r.u32()?;
    r.take(32)?;
    let stored = r.u32()?;
    if stored != computed {
        return Err(FormatError::Checksum {
            what: "checkpoint header",
            expected: stored,
            got: computed,
        });
    }
    if !crate::format::names::readable_version(version) {
        return Err(FormatError::UnsupportedVersion {
            got: version,
            supported: FORMAT_VERSION,
        });
    }
    if part != partition {
        return Err(FormatError::Invalid {
            what: "checkpoint partition",
            detail: format!("file is for partition {part}, expected {partition}"),
        });
    }
    if len > 64 << 30 {
        return Err(FormatError::TooLarge {
            at: ARCHIVE_LEN_OFF,
            len,
            max: 64 << 30,
        });
    }
    Ok((len, crc))
}

/// Serializes `image` and writes it durably as `final_path`: write a temporary file,
/// fdatasync it, rename it into place, fsync the directory. A crash at any step leaves
/// either the old set of checkpoints or the new one, never a half-written file under a
/// checkpoint name.
pub fn write(image: &Image, final_path: &Path) -> Result<usize> {
    let archive = rkyv::to_bytes::<rancor::Error>(image)
        .map_err(|e| Error::Config(format!("serializing checkpoint: {e}")))?;
    let mut header = Vec::with_capacity(HEADER_LEN);
    let mut w = Writer::new(&mut header);
    w.raw(&CHECKPOINT_MAGIC);
    w.u32(FORMAT_VERSION);
    w.u32(image.partition);
    w.u64(archive.len() as u64);
    w.u32(crc32(&archive));
    w.raw(&[0u8; 32]);
    let crc = crc32(&header);
    Writer::new(&mut header).u32(crc);

    let mut tmp = PathBuf::from(final_path);
    tmp.set_extension(format!("idx{CHECKPOINT_TMP_SUFFIX}"));
    crate::io::replace_file(final_path, &tmp, &[&header, &archive])?;
    Ok(HEADER_LEN + archive.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_matches_format_md() {
        assert_eq!((VERSION_OFF, PARTITION_OFF, ARCHIVE_LEN_OFF), (8, 12, 16));
        assert_eq!(
            (ARCHIVE_CRC_OFF, RESERVED_OFF, HEADER_CRC_OFF),
            (24, 28, 60)
        );
        assert_eq!(std::mem::size_of::<ArchivedEntry>(), 40);
        assert_eq!(std::mem::size_of::<ArchivedBlobLoc>(), 32);
    }

    fn image() -> Image {
        Image {
            partition: 2,
            log_segment: 3,
            log_offset: 4096,
            next_lsn: 10,
            next_blob: 11,
            next_account: 1,
            last_uidvalidity: 5,
            accounts: vec![AccountImage {
                id: 0,
                name: "a@example.org".into(),
                quota_bytes: 0,
                quota_messages: 0,
                next_mailbox: 1,
                keywords: vec!["$Junk".into()],
                subscriptions: vec!["INBOX".into()],
                mailboxes: vec![MailboxImage {
                    id: 0,
                    name: "INBOX".into(),
                    uidvalidity: 5,
                    uidnext: 3,
                    highest_modseq: 9,
                    special_use: 0,
                    entries: vec![Entry {
                        uid: 2,
                        size: 100,
                        flags: 1,
                        modseq: 9,
                        internal_date: 1,
                        blob: 10,
                    }],
                }],
            }],
            blobs: vec![BlobLoc {
                id: 10,
                offset: 64,
                segment: 3,
                record_len: 200,
                raw_len: 100,
                refs: 1,
            }],
            dictionaries: vec![DictionaryImage {
                id: 1,
                bytes: vec![7; 10],
            }],
        }
    }

    #[test]
    fn write_load_and_reject_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ckpt.idx");
        write(&image(), &p).unwrap();
        let ck = Checkpoint::load(&p, 1, 2).unwrap();
        let im = ck.image();
        assert_eq!(im.accounts[0].mailboxes[0].entries.len(), 1);
        assert_eq!(
            Entry::from(&im.accounts[0].mailboxes[0].entries[0]).size,
            100
        );
        assert!(
            Checkpoint::load(&p, 1, 3).is_err(),
            "wrong partition accepted"
        );
        let bytes = fs::read(&p).unwrap();
        for i in (0..bytes.len()).step_by(7) {
            let mut c = bytes.clone();
            c[i] ^= 0x10;
            fs::write(&p, &c).unwrap();
            assert!(Checkpoint::load(&p, 1, 2).is_err(), "flip at {i}");
        }
        fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        assert!(Checkpoint::load(&p, 1, 2).is_err());
    }
}
