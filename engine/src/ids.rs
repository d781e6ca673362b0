//! Newtypes for every identifier that crosses a module or shard boundary.
//!
//! They are distinct types so a mailbox id can never be passed where a UID is meant.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

id_type!(
    /// One thread-per-core executor of a node.
    ShardId(u32)
);
id_type!(
    /// One log and its index: the unit of ownership that can move between cores and nodes.
    PartitionId(u32)
);
id_type!(
    /// A virtual slot; accounts hash to slots, the slot map assigns slots to partitions.
    SlotId(u32)
);
id_type!(
    /// The sequence number of a segment file within a partition.
    SegmentSeq(u64)
);
id_type!(
    /// An account's id, local to its partition.
    AccountId(u32)
);
id_type!(
    /// A mailbox's id, local to its account; never reused within the account.
    MailboxId(u32)
);
id_type!(
    /// An IMAP UID, unique within one mailbox incarnation (RFC 9051 section 2.3.1.1).
    Uid(u32)
);
id_type!(
    /// An IMAP UIDVALIDITY value; a recreated mailbox gets a new one.
    UidValidity(u32)
);
id_type!(
    /// A CONDSTORE modification sequence (RFC 7162).
    ModSeq(u64)
);
id_type!(
    /// A stored message body. Single-instance storage lets many mailbox entries share one
    /// blob; the id is stable for the life of the blob and serves as the OBJECTID EMAILID.
    BlobId(u64)
);
id_type!(
    /// A record's log sequence number, strictly increasing within a partition.
    Lsn(u64)
);

/// A position in a partition's log: a segment and a byte offset in it.
///
/// Positions order the log: every record of segment `n` precedes every record of `n + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogPos {
    pub segment: SegmentSeq,
    pub offset: u64,
}

impl fmt::Display for LogPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "segment {} offset {}", self.segment, self.offset)
    }
}
