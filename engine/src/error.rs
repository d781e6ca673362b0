//! The engine's errors, one enum per layer, joined in [`Error`].
//!
//! - [`FormatError`]: bytes read from disk that do not parse (corruption or a foreign file).
//! - [`StoreError`]: a request the store refuses (no such mailbox, quota, limits).
//! - [`StoreError::Unavailable`]: a resource ran out for now (disk space, descriptors);
//!   writes are refused before anything is logged, and resume by themselves.
//! - [`Error::Io`]: the operating system failed us; if a write of unknown outcome failed,
//!   the partition is then poisoned.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::ids::{LogPos, SegmentSeq};

/// Bytes that do not parse as the format says. Carries the evidence: offsets and values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    #[error("input ends at byte {at}: wanted {wanted} bytes, {available} left")]
    Truncated {
        at: usize,
        wanted: usize,
        available: usize,
    },
    #[error("length {len} at byte {at} exceeds the limit of {max}")]
    TooLarge { at: usize, len: u64, max: u64 },
    #[error("{count} unexpected bytes after the end of the structure at byte {at}")]
    TrailingBytes { at: usize, count: usize },
    #[error("string at byte {at} is not UTF-8")]
    InvalidUtf8 { at: usize },
    #[error("bad magic: expected {expected:02x?}, got {got:02x?}")]
    BadMagic { expected: Vec<u8>, got: Vec<u8> },
    #[error("unsupported format version {got} (this build reads versions 1 to {supported})")]
    UnsupportedVersion { got: u32, supported: u32 },
    #[error("checksum mismatch in {what}: expected {expected:08x}, got {got:08x}")]
    Checksum {
        what: &'static str,
        expected: u32,
        got: u32,
    },
    #[error("unknown {what} {value}")]
    UnknownKind { what: &'static str, value: u64 },
    #[error("invalid value in {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
}

/// A request the store refuses. These never poison anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("no such account")]
    NoSuchAccount,
    #[error("the account already exists")]
    AccountExists,
    #[error("no such mailbox")]
    NoSuchMailbox,
    #[error("a mailbox of that name already exists")]
    MailboxExists,
    #[error("the mailbox name is invalid: {0}")]
    InvalidName(String),
    #[error("INBOX cannot be deleted")]
    CannotDeleteInbox,
    #[error("no message with that UID")]
    NoSuchMessage,
    #[error("over quota: {what} would be {would_be}, the limit is {limit}")]
    OverQuota {
        what: &'static str,
        would_be: u64,
        limit: u64,
    },
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    MessageTooLarge { size: u64, limit: u64 },
    #[error("too many keywords in this account (limit {limit})")]
    TooManyKeywords { limit: usize },
    #[error("byte range {start}..{end} is outside a message of {size} bytes")]
    BadRange { start: u64, end: u64, size: u64 },
    #[error("the modification sequence changed since {unchanged_since}")]
    Modified { unchanged_since: u64 },
    #[error("{count} items in one request; the limit is {limit}")]
    TooManyItems { count: usize, limit: usize },
    #[error("the mailbox has used up its UIDs; create a new mailbox")]
    MailboxFull,
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error("an annotation value is larger than {max} bytes")]
    AnnotationTooBig { max: usize },
    #[error("more than {max} annotations")]
    TooManyAnnotations { max: usize },
    /// Nothing was written: try again later. Writing resumes by itself once the resource
    /// is back.
    #[error("storage is temporarily unavailable: {0}")]
    Unavailable(Resource),
    /// Cluster mode: the change was logged locally but object storage and etcd did not
    /// confirm it in time. It is kept and may still become durable: a retry may duplicate.
    #[error("the change was not confirmed by the cluster in time; try again later")]
    Unconfirmed,
    /// Cluster mode: partition N is not open on this node (another node owns it, or it is
    /// moving): try again, or at its owner.
    #[error("partition {0} is not served by this node now")]
    NotHere(u32),
}

/// What ran out when storage is temporarily unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Resource {
    #[error("the disk is full")]
    Space,
    #[error("out of file descriptors")]
    Descriptors,
    #[error("out of memory")]
    Memory,
    /// Another error of the device or file system while preparing a segment (logged).
    #[error("the device failed")]
    Device,
    /// Cluster mode: object storage or etcd has not confirmed the log's tail for a while.
    #[error("the cluster's object storage or etcd cannot be reached")]
    Remote,
}

impl Resource {
    /// The resource an OS error says ran out, if it is one that comes back by itself.
    pub fn of_errno(errno: i32) -> Option<Resource> {
        match errno {
            libc::ENOSPC | libc::EDQUOT => Some(Resource::Space),
            libc::EMFILE | libc::ENFILE => Some(Resource::Descriptors),
            libc::ENOMEM => Some(Resource::Memory),
            _ => None,
        }
    }

    /// As [`Self::of_errno`], for an error from glommio (whose conversion to `io::Error`
    /// keeps only the kind, so the errno is read before it).
    pub fn of_glommio(e: &glommio::GlommioError<()>) -> Option<Resource> {
        match e {
            glommio::GlommioError::IoError(s)
            | glommio::GlommioError::EnhancedIoError { source: s, .. } => {
                Self::of_errno(s.raw_os_error()?)
            }
            _ => None,
        }
    }
}

/// The engine's umbrella error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("corrupt data in {file} at {pos:?}: {source}")]
    Corrupt {
        file: PathBuf,
        pos: Option<LogPos>,
        source: FormatError,
    },
    #[error("I/O error {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// An earlier write or fdatasync failed, so what is on disk is unknown. Every later
    /// operation fails with this until the partition is reopened (restart the server).
    #[error("the partition is poisoned by an earlier I/O failure ({0}); restart to recover")]
    Poisoned(String),
    #[error("segment {0} is missing but the index refers to it; run fsck")]
    MissingSegment(SegmentSeq),
    /// An engine failure reported across threads, where only its text survives.
    #[error("the operation failed: {0}")]
    Failed(String),
    #[error("configuration error: {0}")]
    Config(String),
    #[error("the data directory {} is in use by another ringmail process", .0.display())]
    DataDirInUse(std::path::PathBuf),
}

impl Error {
    pub fn io(context: impl fmt::Display, source: io::Error) -> Self {
        Error::Io {
            context: context.to_string(),
            source,
        }
    }

    /// Whether the operation was refused by the store's rules (the client's fault), as
    /// opposed to a failure of the engine itself.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Error::Store(_))
    }

    pub fn store(&self) -> Option<&StoreError> {
        match self {
            Error::Store(e) => Some(e),
            _ => None,
        }
    }
}

impl From<glommio::GlommioError<()>> for Error {
    fn from(e: glommio::GlommioError<()>) -> Self {
        let io: io::Error = e.into();
        Error::io("in the I/O runtime", io)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
