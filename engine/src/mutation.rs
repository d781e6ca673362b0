//! The typed payloads of log records: one variant per kind of mutation.
//!
//! Every change to a partition is exactly one record, so a record is the unit of atomicity:
//! a MOVE or a delivery to many mailboxes is applied whole or not at all.

use crate::error::FormatError;
use crate::format::names::{
    MAX_DICTIONARY_SIZE, MAX_MESSAGE_SIZE, MAX_META_SIZE, MAX_NAME_LEN, MAX_RECORD_PAYLOAD,
};
use crate::format::{crc32, Reader, Writer};
use crate::ids::{AccountId, BlobId, MailboxId, Uid, UidValidity};

/// How a message body is stored inside a `Blob` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum BodyCodec {
    Raw = 0,
    Zstd = 1,
    /// zstd with the partition's trained dictionary named by `BlobRecord::dict`.
    ZstdDict = 2,
}

impl BodyCodec {
    fn from_u8(v: u8) -> Result<Self, FormatError> {
        match v {
            0 => Ok(Self::Raw),
            1 => Ok(Self::Zstd),
            2 => Ok(Self::ZstdDict),
            _ => Err(FormatError::UnknownKind {
                what: "body codec",
                value: v as u64,
            }),
        }
    }
}

/// Where one delivered or copied message lands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub account: AccountId,
    pub mailbox: MailboxId,
    pub uid: Uid,
    pub flags: u64,
    pub internal_date: i64,
}

/// A stored message body, compressed, with the metadata parsed once at delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRecord {
    pub blob: BlobId,
    /// The size of the body as delivered (RFC822.SIZE).
    pub raw_len: u32,
    pub meta: Vec<u8>,
    pub codec: BodyCodec,
    /// The dictionary the body was compressed with (`ZstdDict`), else 0.
    pub dict: u32,
    pub body: Vec<u8>,
    /// The mailbox entries created together with the blob (empty when compaction relocates
    /// a blob: then the record only says where the bytes now are).
    pub targets: Vec<Target>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Creates the account with its INBOX (mailbox 0), atomically.
    CreateAccount {
        account: AccountId,
        name: String,
        quota_bytes: u64,
        quota_messages: u64,
        inbox_uidvalidity: UidValidity,
    },
    DeleteAccount {
        account: AccountId,
    },
    SetQuota {
        account: AccountId,
        quota_bytes: u64,
        quota_messages: u64,
    },
    CreateMailbox {
        account: AccountId,
        mailbox: MailboxId,
        name: String,
        uidvalidity: UidValidity,
        special_use: u8,
    },
    RenameMailbox {
        account: AccountId,
        mailbox: MailboxId,
        name: String,
    },
    DeleteMailbox {
        account: AccountId,
        mailbox: MailboxId,
    },
    Subscribe {
        account: AccountId,
        name: String,
        subscribed: bool,
    },
    DefineKeyword {
        account: AccountId,
        index: u8,
        name: String,
    },
    /// A zstd dictionary trained on this partition's mail; bodies refer to it by id.
    Dictionary {
        id: u32,
        bytes: Vec<u8>,
    },
    Blob(BlobRecord),
    /// New mailbox entries for an existing blob: COPY, and delivery to more recipients.
    Link {
        blob: BlobId,
        targets: Vec<Target>,
    },
    SetFlags {
        account: AccountId,
        mailbox: MailboxId,
        /// The flags each message has after the change (not the delta), so replay is exact.
        items: Vec<(Uid, u64)>,
    },
    Expunge {
        account: AccountId,
        mailbox: MailboxId,
        uids: Vec<Uid>,
    },
    Move {
        account: AccountId,
        from: MailboxId,
        to: MailboxId,
        /// (UID in `from`, UID in `to`).
        items: Vec<(Uid, Uid)>,
    },
}

/// Record kinds as written in the record header.
pub mod kind {
    pub const CREATE_ACCOUNT: u8 = 1;
    pub const DELETE_ACCOUNT: u8 = 2;
    pub const SET_QUOTA: u8 = 3;
    pub const CREATE_MAILBOX: u8 = 4;
    pub const RENAME_MAILBOX: u8 = 5;
    pub const DELETE_MAILBOX: u8 = 6;
    pub const SUBSCRIBE: u8 = 7;
    pub const DEFINE_KEYWORD: u8 = 8;
    pub const BLOB: u8 = 9;
    pub const LINK: u8 = 10;
    pub const SET_FLAGS: u8 = 11;
    pub const EXPUNGE: u8 = 12;
    pub const MOVE: u8 = 13;
    pub const DICTIONARY: u8 = 14;
}

const TARGET_LEN: usize = 4 + 4 + 4 + 8 + 8;

impl Mutation {
    pub fn kind(&self) -> u8 {
        use kind::*;
        match self {
            Mutation::CreateAccount { .. } => CREATE_ACCOUNT,
            Mutation::DeleteAccount { .. } => DELETE_ACCOUNT,
            Mutation::SetQuota { .. } => SET_QUOTA,
            Mutation::CreateMailbox { .. } => CREATE_MAILBOX,
            Mutation::RenameMailbox { .. } => RENAME_MAILBOX,
            Mutation::DeleteMailbox { .. } => DELETE_MAILBOX,
            Mutation::Subscribe { .. } => SUBSCRIBE,
            Mutation::DefineKeyword { .. } => DEFINE_KEYWORD,
            Mutation::Dictionary { .. } => DICTIONARY,
            Mutation::Blob(_) => BLOB,
            Mutation::Link { .. } => LINK,
            Mutation::SetFlags { .. } => SET_FLAGS,
            Mutation::Expunge { .. } => EXPUNGE,
            Mutation::Move { .. } => MOVE,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        match self {
            Mutation::CreateAccount {
                account,
                name,
                quota_bytes,
                quota_messages,
                inbox_uidvalidity,
            } => {
                w.u32(account.0);
                w.str(name);
                w.u64(*quota_bytes);
                w.u64(*quota_messages);
                w.u32(inbox_uidvalidity.0);
            }
            Mutation::DeleteAccount { account } => w.u32(account.0),
            Mutation::SetQuota {
                account,
                quota_bytes,
                quota_messages,
            } => {
                w.u32(account.0);
                w.u64(*quota_bytes);
                w.u64(*quota_messages);
            }
            Mutation::CreateMailbox {
                account,
                mailbox,
                name,
                uidvalidity,
                special_use,
            } => {
                w.u32(account.0);
                w.u32(mailbox.0);
                w.str(name);
                w.u32(uidvalidity.0);
                w.u8(*special_use);
            }
            Mutation::RenameMailbox {
                account,
                mailbox,
                name,
            } => {
                w.u32(account.0);
                w.u32(mailbox.0);
                w.str(name);
            }
            Mutation::DeleteMailbox { account, mailbox } => {
                w.u32(account.0);
                w.u32(mailbox.0);
            }
            Mutation::Subscribe {
                account,
                name,
                subscribed,
            } => {
                w.u32(account.0);
                w.str(name);
                w.u8(*subscribed as u8);
            }
            Mutation::DefineKeyword {
                account,
                index,
                name,
            } => {
                w.u32(account.0);
                w.u8(*index);
                w.str(name);
            }
            Mutation::Dictionary { id, bytes } => {
                w.u32(*id);
                w.bytes(bytes);
            }
            Mutation::Blob(b) => {
                // The metadata comes first with its own checksum, so FETCH of metadata can
                // read and verify it without reading the body.
                w.u64(b.blob.0);
                w.u32(b.raw_len);
                w.u32(crc32(&b.meta));
                w.bytes(&b.meta);
                w.u8(b.codec as u8);
                w.u32(b.dict);
                w.bytes(&b.body);
                encode_targets(&mut w, &b.targets);
            }
            Mutation::Link { blob, targets } => {
                w.u64(blob.0);
                encode_targets(&mut w, targets);
            }
            Mutation::SetFlags {
                account,
                mailbox,
                items,
            } => {
                w.u32(account.0);
                w.u32(mailbox.0);
                w.u32(items.len() as u32);
                for (uid, flags) in items {
                    w.u32(uid.0);
                    w.u64(*flags);
                }
            }
            Mutation::Expunge {
                account,
                mailbox,
                uids,
            } => {
                w.u32(account.0);
                w.u32(mailbox.0);
                w.u32(uids.len() as u32);
                for uid in uids {
                    w.u32(uid.0);
                }
            }
            Mutation::Move {
                account,
                from,
                to,
                items,
            } => {
                w.u32(account.0);
                w.u32(from.0);
                w.u32(to.0);
                w.u32(items.len() as u32);
                for (a, b) in items {
                    w.u32(a.0);
                    w.u32(b.0);
                }
            }
        }
    }

    pub fn decode(kind: u8, payload: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(payload);
        let m = match kind {
            kind::CREATE_ACCOUNT => Mutation::CreateAccount {
                account: AccountId(r.u32()?),
                name: r.string(MAX_NAME_LEN)?,
                quota_bytes: r.u64()?,
                quota_messages: r.u64()?,
                inbox_uidvalidity: UidValidity(r.u32()?),
            },
            kind::DELETE_ACCOUNT => Mutation::DeleteAccount {
                account: AccountId(r.u32()?),
            },
            kind::SET_QUOTA => Mutation::SetQuota {
                account: AccountId(r.u32()?),
                quota_bytes: r.u64()?,
                quota_messages: r.u64()?,
            },
            kind::CREATE_MAILBOX => Mutation::CreateMailbox {
                account: AccountId(r.u32()?),
                mailbox: MailboxId(r.u32()?),
                name: r.string(MAX_NAME_LEN)?,
                uidvalidity: UidValidity(r.u32()?),
                special_use: r.u8()?,
            },
            kind::RENAME_MAILBOX => Mutation::RenameMailbox {
                account: AccountId(r.u32()?),
                mailbox: MailboxId(r.u32()?),
                name: r.string(MAX_NAME_LEN)?,
            },
            kind::DELETE_MAILBOX => Mutation::DeleteMailbox {
                account: AccountId(r.u32()?),
                mailbox: MailboxId(r.u32()?),
            },
            kind::SUBSCRIBE => Mutation::Subscribe {
                account: AccountId(r.u32()?),
                name: r.string(MAX_NAME_LEN)?,
                subscribed: r.u8()? != 0,
            },
            kind::DEFINE_KEYWORD => Mutation::DefineKeyword {
                account: AccountId(r.u32()?),
                index: r.u8()?,
                name: r.string(MAX_NAME_LEN)?,
            },
            kind::BLOB => {
                let blob = BlobId(r.u64()?);
                let raw_len = r.u32()?;
                if raw_len as u64 > MAX_MESSAGE_SIZE {
                    return Err(FormatError::TooLarge {
                        at: 8,
                        len: raw_len as u64,
                        max: MAX_MESSAGE_SIZE,
                    });
                }
                let meta_crc = r.u32()?;
                let meta = r.bytes(MAX_META_SIZE)?.to_vec();
                let got = crc32(&meta);
                if got != meta_crc {
                    return Err(FormatError::Checksum {
                        what: "message metadata",
                        expected: meta_crc,
                        got,
                    });
                }
                let codec = BodyCodec::from_u8(r.u8()?)?;
                let dict = r.u32()?;
                let body = r.bytes(MAX_RECORD_PAYLOAD)?.to_vec();
                let targets = decode_targets(&mut r)?;
                Mutation::Blob(BlobRecord {
                    blob,
                    raw_len,
                    meta,
                    codec,
                    dict,
                    body,
                    targets,
                })
            }
            kind::DICTIONARY => Mutation::Dictionary {
                id: r.u32()?,
                bytes: r.bytes(MAX_DICTIONARY_SIZE)?.to_vec(),
            },
            kind::LINK => Mutation::Link {
                blob: BlobId(r.u64()?),
                targets: decode_targets(&mut r)?,
            },
            kind::SET_FLAGS => {
                let account = AccountId(r.u32()?);
                let mailbox = MailboxId(r.u32()?);
                let n = r.count(12)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push((Uid(r.u32()?), r.u64()?));
                }
                Mutation::SetFlags {
                    account,
                    mailbox,
                    items,
                }
            }
            kind::EXPUNGE => {
                let account = AccountId(r.u32()?);
                let mailbox = MailboxId(r.u32()?);
                let n = r.count(4)?;
                let mut uids = Vec::with_capacity(n);
                for _ in 0..n {
                    uids.push(Uid(r.u32()?));
                }
                Mutation::Expunge {
                    account,
                    mailbox,
                    uids,
                }
            }
            kind::MOVE => {
                let account = AccountId(r.u32()?);
                let from = MailboxId(r.u32()?);
                let to = MailboxId(r.u32()?);
                let n = r.count(8)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push((Uid(r.u32()?), Uid(r.u32()?)));
                }
                Mutation::Move {
                    account,
                    from,
                    to,
                    items,
                }
            }
            other => {
                return Err(FormatError::UnknownKind {
                    what: "record kind",
                    value: other as u64,
                })
            }
        };
        r.finish()?;
        Ok(m)
    }
}

fn encode_targets(w: &mut Writer<'_>, targets: &[Target]) {
    w.u32(targets.len() as u32);
    for t in targets {
        w.u32(t.account.0);
        w.u32(t.mailbox.0);
        w.u32(t.uid.0);
        w.u64(t.flags);
        w.i64(t.internal_date);
    }
}

fn decode_targets(r: &mut Reader<'_>) -> Result<Vec<Target>, FormatError> {
    let n = r.count(TARGET_LEN)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(Target {
            account: AccountId(r.u32()?),
            mailbox: MailboxId(r.u32()?),
            uid: Uid(r.u32()?),
            flags: r.u64()?,
            internal_date: r.i64()?,
        });
    }
    Ok(v)
}

/// Reads only the metadata section at the start of a `Blob` payload, checking its own CRC.
pub fn decode_blob_meta(payload: &[u8]) -> Result<Vec<u8>, FormatError> {
    let mut r = Reader::new(payload);
    r.u64()?;
    r.u32()?;
    let meta_crc = r.u32()?;
    let meta = r.bytes(MAX_META_SIZE)?;
    let got = crc32(meta);
    if got != meta_crc {
        return Err(FormatError::Checksum {
            what: "message metadata",
            expected: meta_crc,
            got,
        });
    }
    Ok(meta.to_vec())
}

/// The number of payload bytes before the metadata: blob id, raw length, meta CRC, meta length.
pub const BLOB_META_PREFIX: usize = 8 + 4 + 4 + 4;

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Mutation> {
        let t = Target {
            account: AccountId(1),
            mailbox: MailboxId(2),
            uid: Uid(3),
            flags: 5,
            internal_date: -7,
        };
        vec![
            Mutation::CreateAccount {
                account: AccountId(1),
                name: "a@b".into(),
                quota_bytes: 10,
                quota_messages: 20,
                inbox_uidvalidity: UidValidity(3),
            },
            Mutation::DeleteAccount {
                account: AccountId(9),
            },
            Mutation::SetQuota {
                account: AccountId(1),
                quota_bytes: 1,
                quota_messages: 2,
            },
            Mutation::CreateMailbox {
                account: AccountId(1),
                mailbox: MailboxId(4),
                name: "Sent".into(),
                uidvalidity: UidValidity(77),
                special_use: 6,
            },
            Mutation::RenameMailbox {
                account: AccountId(1),
                mailbox: MailboxId(4),
                name: "Old".into(),
            },
            Mutation::DeleteMailbox {
                account: AccountId(1),
                mailbox: MailboxId(4),
            },
            Mutation::Subscribe {
                account: AccountId(1),
                name: "x".into(),
                subscribed: true,
            },
            Mutation::DefineKeyword {
                account: AccountId(1),
                index: 3,
                name: "$Junk".into(),
            },
            Mutation::Blob(BlobRecord {
                blob: BlobId(8),
                raw_len: 5,
                meta: b"meta".to_vec(),
                codec: BodyCodec::Raw,
                dict: 0,
                body: b"hello".to_vec(),
                targets: vec![t.clone(), t.clone()],
            }),
            Mutation::Link {
                blob: BlobId(8),
                targets: vec![t],
            },
            Mutation::Dictionary {
                id: 1,
                bytes: vec![1, 2, 3],
            },
            Mutation::SetFlags {
                account: AccountId(1),
                mailbox: MailboxId(2),
                items: vec![(Uid(1), 3), (Uid(2), 0)],
            },
            Mutation::Expunge {
                account: AccountId(1),
                mailbox: MailboxId(2),
                uids: vec![Uid(1), Uid(5)],
            },
            Mutation::Move {
                account: AccountId(1),
                from: MailboxId(2),
                to: MailboxId(3),
                items: vec![(Uid(1), Uid(10))],
            },
        ]
    }

    #[test]
    fn every_kind_round_trips_and_rejects_truncation() {
        for m in samples() {
            let mut v = Vec::new();
            m.encode(&mut v);
            assert_eq!(Mutation::decode(m.kind(), &v).unwrap(), m);
            for cut in 0..v.len() {
                assert!(
                    Mutation::decode(m.kind(), &v[..cut]).is_err(),
                    "{m:?} cut {cut}"
                );
            }
            v.push(0);
            assert!(Mutation::decode(m.kind(), &v).is_err());
        }
        assert!(Mutation::decode(200, &[]).is_err());
    }

    #[test]
    fn blob_meta_reads_alone() {
        let m = &samples()[8];
        assert!(matches!(m, Mutation::Blob(_)));
        let mut v = Vec::new();
        m.encode(&mut v);
        assert_eq!(decode_blob_meta(&v).unwrap(), b"meta");
        assert_eq!(&v[BLOB_META_PREFIX..BLOB_META_PREFIX + 4], b"meta");
    }
}
