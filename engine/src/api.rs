//! The types the engine's API speaks: accounts, mailboxes, UIDs, flags, and messages.

use crate::flags::{Flags, SpecialUse};
use crate::ids::{BlobId, ModSeq, Uid, UidValidity};

/// A message to store.
#[derive(Clone, Debug, Default)]
pub struct NewMessage {
    /// The message exactly as delivered (RFC 5322 bytes).
    pub body: Vec<u8>,
    /// Opaque metadata parsed once at delivery (e.g. ENVELOPE and BODYSTRUCTURE), readable
    /// later without touching the body.
    pub meta: Vec<u8>,
    /// System flags (`Flags::SEEN` ...); keyword bits are ignored, use `keywords`.
    pub flags: Flags,
    pub keywords: Vec<String>,
    /// Seconds since the Unix epoch; `None` means now.
    pub internal_date: Option<i64>,
}

/// Where a message was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub uidvalidity: UidValidity,
    pub uid: Uid,
    pub blob: BlobId,
}

/// One recipient mailbox of a delivery.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Recipient {
    pub account: String,
    pub mailbox: String,
}

impl Recipient {
    pub fn inbox(account: &str) -> Self {
        Self {
            account: account.to_string(),
            mailbox: "INBOX".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxInfo {
    pub name: String,
    pub uidvalidity: UidValidity,
    pub uidnext: Uid,
    pub highest_modseq: ModSeq,
    /// The mod-sequence of the last change to messages already in the mailbox (flags,
    /// expunge, move away); new messages do not count. A reader that has seen the mailbox
    /// up to `highest_modseq` X and finds this at most X knows that only messages with UIDs
    /// from its UIDNEXT on came since. Kept in memory: after a restart it starts as
    /// `highest_modseq`.
    pub changed_modseq: ModSeq,
    pub special_use: SpecialUse,
    pub messages: u32,
    pub unseen: u32,
    /// Sum of RFC822.SIZE of the messages (STATUS SIZE).
    pub size: u64,
    pub subscribed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageInfo {
    pub uid: Uid,
    pub flags: Flags,
    pub modseq: ModSeq,
    pub internal_date: i64,
    pub size: u32,
    pub blob: BlobId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountInfo {
    pub name: String,
    pub quota_bytes: u64,
    pub quota_messages: u64,
    pub used_bytes: u64,
    pub used_messages: u64,
}

/// The result of a STORE: the messages changed, and those skipped by UNCHANGEDSINCE.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreResult {
    pub changed: Vec<MessageInfo>,
    pub modified: Vec<Uid>,
    /// When this STORE changed messages and is still the mailbox's last change to existing
    /// messages: the mod-sequence of the change before it. A reader whose picture of the
    /// mailbox was whole up to at least that, and who applies `changed`, has a picture
    /// whole up to this STORE's mod-sequence (new messages aside).
    pub previous_change: Option<ModSeq>,
}
