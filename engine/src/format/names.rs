//! Every magic number, version, file name and size limit of the on-disk format, in one place.

/// The format version written into every file header. Bump it on any format change.
///
/// Version 2 made the ownership epoch a property of each segment (every segment is read,
/// whichever epoch wrote it) and added the manifest and tail chunks of cluster mode.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest version this build still reads: a version 1 data directory opens unchanged.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// Whether a file header's version is one this build reads.
pub fn readable_version(version: u32) -> bool {
    (OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version)
}

/// First bytes of the node superblock file.
pub const SUPERBLOCK_MAGIC: [u8; 8] = *b"RINGSUPR";
/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RINGSEG\0";
/// First bytes of every record header.
pub const RECORD_MAGIC: [u8; 4] = *b"RMr1";
/// First bytes of every checkpoint file.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"RINGCKPT";

/// The node-level file: format version, partition count and the slot map.
pub const SUPERBLOCK_FILE: &str = "SUPERBLOCK";
/// Written beside a superblock being replaced, then renamed over it.
pub const SUPERBLOCK_TMP_FILE: &str = "SUPERBLOCK.tmp";

/// Locked (flock) by the process that has the data directory open.
pub const LOCK_FILE: &str = "LOCK";

/// The number of virtual slots accounts hash to. Fixed for the life of a data directory.
pub const SLOT_COUNT: u32 = 1024;

/// Largest message body the engine stores (uncompressed).
pub const MAX_MESSAGE_SIZE: u64 = 256 << 20;
/// Largest record payload on disk; anything larger in a header is corruption.
pub const MAX_RECORD_PAYLOAD: u32 = 300 << 20;
/// Largest opaque metadata (parsed MIME structure) stored with a message.
pub const MAX_META_SIZE: u32 = 4 << 20;
/// Largest compression dictionary.
pub const MAX_DICTIONARY_SIZE: u32 = 1 << 20;
/// Largest name (account, mailbox, keyword) in a record.
pub const MAX_NAME_LEN: u32 = 4096;
/// Most items (UIDs, targets) in one record.
pub const MAX_RECORD_ITEMS: u32 = 16 << 20;

/// The directory of one partition inside the data directory.
pub fn partition_dir(partition: u32) -> String {
    format!("p{partition:05}")
}

/// A segment file's name: `seg-<epoch>-<seq>.log`, both zero-padded hex so names sort.
pub fn segment_file(epoch: u64, seq: u64) -> String {
    format!("seg-{epoch:08x}-{seq:016x}.log")
}

/// Parses a segment file name back into `(epoch, seq)`.
pub fn parse_segment_file(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    let (epoch, seq) = rest.split_once('-')?;
    if epoch.len() != 8 || seq.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(epoch, 16).ok()?,
        u64::from_str_radix(seq, 16).ok()?,
    ))
}

/// A checkpoint file's name: `ckpt-<seq>.idx`, where seq increases with every checkpoint.
pub fn checkpoint_file(seq: u64) -> String {
    format!("ckpt-{seq:016x}.idx")
}

/// Parses a checkpoint file name back into its sequence number.
pub fn parse_checkpoint_file(name: &str) -> Option<u64> {
    let seq = name.strip_prefix("ckpt-")?.strip_suffix(".idx")?;
    if seq.len() != 16 {
        return None;
    }
    u64::from_str_radix(seq, 16).ok()
}

/// A checkpoint being written; renamed to its final name once durable.
pub const CHECKPOINT_TMP_SUFFIX: &str = ".tmp";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        assert_eq!(parse_segment_file(&segment_file(3, 77)), Some((3, 77)));
        assert_eq!(parse_checkpoint_file(&checkpoint_file(9)), Some(9));
        assert!(segment_file(1, 9) < segment_file(1, 10));
        assert_eq!(parse_segment_file("seg-1-2.log"), None);
        assert_eq!(parse_checkpoint_file("ckpt-00.idx"), None);
    }
}
