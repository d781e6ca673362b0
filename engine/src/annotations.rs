//! Annotations on an account and its mailboxes (IMAP METADATA, RFC 5464): small named
//! values, set rarely and read rarely.
//!
//! They are not part of the log: each account's annotations are one small file,
//! `metadata/account-<id>.bin` in the partition's directory, rewritten whole (temporary
//! file, fdatasync, rename, directory fsync) before a change is acknowledged. A mailbox's
//! annotations are keyed by its UIDVALIDITY, which a RENAME keeps and a new mailbox never
//! reuses: they follow a rename, and a mailbox deleted and created again under its name
//! starts with none (entries of deleted mailboxes are dropped at the account's next write).
//! Format in docs/format.md, "Annotations file".

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::{Reader, Writer};
use crate::FormatError;

pub const MAGIC: [u8; 8] = *b"RMANNOT\0";
pub const VERSION: u32 = 1;
/// The largest value (RFC 5464 asks for at least 1024 bytes).
pub const MAX_VALUE: usize = 64 << 10;
/// Entries on one mailbox or on the account (RFC 5464 asks for at least 10).
pub const MAX_ENTRIES: usize = 100;
/// All of an account's annotations together.
pub const MAX_TOTAL: usize = 1 << 20;

/// Entry name → value. Names are kept lower-case (they are case-insensitive).
pub type Entries = BTreeMap<String, Vec<u8>>;

/// One account's annotations: its own (IMAP's server annotations) and its mailboxes'.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountAnnotations {
    pub account: Entries,
    /// By the mailbox's UIDVALIDITY.
    pub mailboxes: BTreeMap<u32, Entries>,
}

/// Why a change was refused; nothing of it was made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("a value is larger than {max} bytes")]
    TooBig { max: usize },
    #[error("more than {max} entries")]
    TooMany { max: usize },
}

impl AccountAnnotations {
    /// Applies `changes` (`None` removes) to the entries of `target` (`None`: the account),
    /// all or none.
    pub fn apply(
        &mut self,
        target: Option<u32>,
        changes: &[(String, Option<Vec<u8>>)],
    ) -> std::result::Result<(), Refused> {
        if changes
            .iter()
            .any(|(_, v)| v.as_ref().is_some_and(|v| v.len() > MAX_VALUE))
        {
            return Err(Refused::TooBig { max: MAX_VALUE });
        }
        let mut next = match target {
            None => self.account.clone(),
            Some(uv) => self.mailboxes.get(&uv).cloned().unwrap_or_default(),
        };
        for (name, value) in changes {
            match value {
                Some(v) => next.insert(name.to_ascii_lowercase(), v.clone()),
                None => next.remove(&name.to_ascii_lowercase()),
            };
        }
        if next.len() > MAX_ENTRIES {
            return Err(Refused::TooMany { max: MAX_ENTRIES });
        }
        let mut after = self.clone();
        match target {
            None => after.account = next,
            Some(uv) if next.is_empty() => {
                after.mailboxes.remove(&uv);
            }
            Some(uv) => {
                after.mailboxes.insert(uv, next);
            }
        }
        // The account's whole store is a count limit, not a value's size.
        if after.size() > MAX_TOTAL {
            return Err(Refused::TooMany { max: MAX_ENTRIES });
        }
        *self = after;
        Ok(())
    }

    fn size(&self) -> usize {
        let of = |e: &Entries| e.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        of(&self.account) + self.mailboxes.values().map(of).sum::<usize>()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        let mut w = Writer::new(&mut v);
        w.raw(&MAGIC);
        w.u32(VERSION);
        let put = |w: &mut Writer<'_>, e: &Entries| {
            w.u32(e.len() as u32);
            for (k, val) in e {
                w.str(k);
                w.bytes(val);
            }
        };
        put(&mut w, &self.account);
        w.u32(self.mailboxes.len() as u32);
        for (uv, e) in &self.mailboxes {
            w.u32(*uv);
            put(&mut w, e);
        }
        let crc = crc32fast::hash(&v);
        Writer::new(&mut v).u32(crc);
        v
    }

    pub fn decode(b: &[u8]) -> std::result::Result<Self, FormatError> {
        let invalid = |detail: &str| FormatError::Invalid {
            what: "annotations file",
            detail: detail.into(),
        };
        if b.len() < MAGIC.len() + 8 || b[..MAGIC.len()] != MAGIC {
            return Err(invalid("bad magic"));
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(invalid("checksum mismatch"));
        }
        let mut r = Reader::new(&body[MAGIC.len()..]);
        let version = r.u32()?;
        if version != VERSION {
            return Err(FormatError::UnsupportedVersion {
                got: version,
                supported: VERSION,
            });
        }
        let get = |r: &mut Reader<'_>| -> std::result::Result<Entries, FormatError> {
            let n = r.count(8)?;
            let mut e = Entries::new();
            for _ in 0..n {
                let k = r.string(1 << 16)?;
                let v = r.bytes(MAX_VALUE as u32)?.to_vec();
                e.insert(k, v);
            }
            Ok(e)
        };
        let account = get(&mut r)?;
        let n = r.count(8)?;
        let mut mailboxes = BTreeMap::new();
        for _ in 0..n {
            let uv = r.u32()?;
            mailboxes.insert(uv, get(&mut r)?);
        }
        Ok(Self { account, mailboxes })
    }
}

pub fn file(dir: &Path, account: u32) -> PathBuf {
    dir.join("metadata").join(format!("account-{account}.bin"))
}

/// The account's annotations as last written; none if it never had any.
pub fn load(dir: &Path, account: u32) -> Result<AccountAnnotations> {
    let path = file(dir, account);
    match fs::read(&path) {
        Ok(b) => AccountAnnotations::decode(&b).map_err(|e| Error::Corrupt {
            file: path,
            pos: None,
            source: e,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AccountAnnotations::default()),
        Err(e) => Err(Error::io(format!("reading {path:?}"), e)),
    }
}

/// Writes the account's annotations durably (or removes the file when there are none).
pub fn store(dir: &Path, account: u32, a: &AccountAnnotations) -> Result<()> {
    let path = file(dir, account);
    let parent = path.parent().expect("in a directory");
    if a.account.is_empty() && a.mailboxes.is_empty() {
        return match fs::remove_file(&path) {
            Ok(()) => crate::io::fsync_dir(parent),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {path:?}"), e)),
        };
    }
    let fresh = !parent.exists();
    fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {parent:?}"), e))?;
    if fresh {
        crate::io::fsync_dir(parent.parent().expect("the partition's directory"))?;
    }
    let tmp = path.with_extension("bin.tmp");
    crate::io::replace_file(&path, &tmp, &[&a.encode()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_all_or_none_and_round_trip() {
        let mut a = AccountAnnotations::default();
        a.apply(None, &[("/shared/Comment".into(), Some(b"hi".to_vec()))])
            .unwrap();
        a.apply(
            Some(7),
            &[
                ("/private/comment".into(), Some(vec![0, 1, 2])),
                ("/shared/vendor/x/y".into(), Some(Vec::new())),
            ],
        )
        .unwrap();
        assert_eq!(a.account["/shared/comment"], b"hi");
        let back = AccountAnnotations::decode(&a.encode()).unwrap();
        assert_eq!(back, a);

        let before = a.clone();
        let big = vec![b'x'; MAX_VALUE + 1];
        assert_eq!(
            a.apply(
                Some(7),
                &[
                    ("/private/a".into(), Some(b"ok".to_vec())),
                    ("/private/b".into(), Some(big)),
                ]
            ),
            Err(Refused::TooBig { max: MAX_VALUE })
        );
        let many: Vec<_> = (0..=MAX_ENTRIES)
            .map(|i| (format!("/private/n{i}"), Some(b"v".to_vec())))
            .collect();
        assert_eq!(
            a.apply(Some(7), &many),
            Err(Refused::TooMany { max: MAX_ENTRIES })
        );
        assert_eq!(a, before);
        // Removing every entry of a mailbox drops it.
        a.apply(
            Some(7),
            &[
                ("/private/comment".into(), None),
                ("/shared/vendor/x/y".into(), None),
                ("/private/never".into(), None),
            ],
        )
        .unwrap();
        assert!(a.mailboxes.is_empty());

        // The account's whole store is a count limit too.
        let mut full = AccountAnnotations::default();
        let big: Vec<_> = (0..17)
            .map(|i| (format!("/private/b{i}"), Some(vec![b'x'; MAX_VALUE])))
            .collect();
        assert_eq!(
            full.apply(Some(1), &big),
            Err(Refused::TooMany { max: MAX_ENTRIES })
        );

        let mut enc = a.encode();
        let n = enc.len();
        enc[n - 6] ^= 1;
        assert!(AccountAnnotations::decode(&enc).is_err());
        assert!(AccountAnnotations::decode(b"short").is_err());
    }

    #[test]
    fn stored_durably_and_removed_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), 3).unwrap(), AccountAnnotations::default());
        let mut a = AccountAnnotations::default();
        a.apply(Some(1), &[("/shared/comment".into(), Some(b"c".to_vec()))])
            .unwrap();
        store(dir.path(), 3, &a).unwrap();
        assert_eq!(load(dir.path(), 3).unwrap(), a);
        store(dir.path(), 3, &AccountAnnotations::default()).unwrap();
        assert!(!file(dir.path(), 3).exists());
    }
}
