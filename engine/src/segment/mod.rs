//! Segment files: a header, then records back to back, then zero padding.
//!
//! ```text
//! offset 0            64                                              valid_len    file end
//!        | header     | record | record | ... | record               | zeros ...   |
//! ```
//!
//! A segment is written only while it is the partition's active segment; once the writer
//! rolls to the next one it is sealed and never written again (compaction deletes it whole).

pub mod epochs;
pub mod header;
pub mod record;
pub mod scan;

pub use epochs::SegmentEpochs;
pub use header::SegmentHeader;
pub use record::{RecordHeader, RECORD_HEADER_LEN};
pub use scan::{scan_last_segment_from, scan_segment, scan_segment_from, ScanEnd, SegmentScan};
