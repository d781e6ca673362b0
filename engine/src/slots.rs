//! Accounts → slots → partitions → shards, and the superblock that persists the slot map.
//!
//! An account hashes to one of [`SLOT_COUNT`] slots by a hash that never changes (CRC-32 of
//! its normalized name). The slot → partition map is data in the superblock, not a formula,
//! so a slot can later move to another partition (or node) without rehashing every account.
//! Partitions map to shards as `partition % shards`: the shard count can change between runs.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, FormatError, Result};
use crate::format::names::{
    FORMAT_VERSION, SLOT_COUNT, SUPERBLOCK_FILE, SUPERBLOCK_MAGIC, SUPERBLOCK_TMP_FILE,
};
use crate::format::{crc32, Reader, Writer};
use crate::ids::{PartitionId, ShardId, SlotId};
use crate::state::normalize_account;

pub fn slot_of(account: &str) -> SlotId {
    SlotId(crc32(normalize_account(account).as_bytes()) % SLOT_COUNT)
}

pub fn shard_of(partition: PartitionId, shards: usize) -> ShardId {
    ShardId(partition.0 % shards.max(1) as u32)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMap {
    /// The format version of the data directory: the superblock is never rewritten, so a
    /// version 1 directory keeps saying 1 (its segments and checkpoints may be newer).
    pub version: u32,
    pub partitions: u32,
    pub slots: Vec<PartitionId>,
}

impl SlotMap {
    /// Slots dealt round-robin over `partitions`.
    pub fn new(partitions: u32) -> Self {
        let partitions = partitions.max(1);
        Self {
            version: FORMAT_VERSION,
            partitions,
            slots: (0..SLOT_COUNT)
                .map(|s| PartitionId(s % partitions))
                .collect(),
        }
    }

    pub fn partition_of(&self, account: &str) -> PartitionId {
        // `slots` has SLOT_COUNT entries (checked on decode) and slot_of is below SLOT_COUNT.
        self.slots[slot_of(account).0 as usize]
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        let mut w = Writer::new(&mut v);
        w.raw(&SUPERBLOCK_MAGIC);
        w.u32(self.version);
        w.u32(self.partitions);
        w.u32(SLOT_COUNT);
        for p in &self.slots {
            w.u32(p.0);
        }
        let crc = crc32(&v);
        Writer::new(&mut v).u32(crc);
        v
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() < 4 {
            return Err(FormatError::Truncated {
                at: 0,
                wanted: 4,
                available: bytes.len(),
            });
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let got = crc32(body);
        if stored != got {
            return Err(FormatError::Checksum {
                what: "superblock",
                expected: stored,
                got,
            });
        }
        let mut r = Reader::new(body);
        let magic = r.take(8)?;
        if magic != SUPERBLOCK_MAGIC {
            return Err(FormatError::BadMagic {
                expected: SUPERBLOCK_MAGIC.to_vec(),
                got: magic.to_vec(),
            });
        }
        let version = r.u32()?;
        if !crate::format::names::readable_version(version) {
            return Err(FormatError::UnsupportedVersion {
                got: version,
                supported: FORMAT_VERSION,
            });
        }
        let partitions = r.u32()?;
        let n = r.u32()?;
        if n != SLOT_COUNT || partitions == 0 {
            return Err(FormatError::Invalid {
                what: "superblock",
                detail: format!("{n} slots over {partitions} partitions"),
            });
        }
        let mut slots = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let p = r.u32()?;
            if p >= partitions {
                return Err(FormatError::Invalid {
                    what: "slot map",
                    detail: format!("partition {p} of {partitions}"),
                });
            }
            slots.push(PartitionId(p));
        }
        r.finish()?;
        Ok(Self {
            version,
            partitions,
            slots,
        })
    }

    /// The number of partitions of an existing data directory (`None` if it has none yet).
    pub fn partitions_in(dir: &Path) -> Option<u32> {
        let b = fs::read(dir.join(SUPERBLOCK_FILE)).ok()?;
        SlotMap::decode(&b).ok().map(|m| m.partitions)
    }

    /// Loads the data directory's slot map, or creates it with `partitions` partitions.
    pub fn load_or_create(dir: &Path, partitions: u32) -> Result<Self> {
        let path = dir.join(SUPERBLOCK_FILE);
        match fs::read(&path) {
            Ok(b) => SlotMap::decode(&b).map_err(|source| Error::Corrupt {
                file: path,
                pos: None,
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {dir:?}"), e))?;
                let map = SlotMap::new(partitions);
                let tmp = dir.join(SUPERBLOCK_TMP_FILE);
                let io = |e| Error::io(format!("writing {tmp:?}"), e);
                let mut f = fs::File::create(&tmp).map_err(io)?;
                f.write_all(&map.encode()).map_err(io)?;
                f.sync_all().map_err(io)?;
                fs::rename(&tmp, &path).map_err(io)?;
                crate::io::fsync_dir(dir)?;
                Ok(map)
            }
            Err(e) => Err(Error::io(format!("reading {path:?}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_hash_is_stable_and_case_insensitive() {
        // Changing the hash would move every account: this value is part of the format.
        assert_eq!(slot_of("alice@example.org"), slot_of(" Alice@Example.ORG"));
        assert_eq!(
            slot_of("alice@example.org"),
            SlotId(crc32(b"alice@example.org") % 1024)
        );
    }

    #[test]
    fn superblock_round_trip_and_corruption() {
        let m = SlotMap::new(3);
        let b = m.encode();
        assert_eq!(SlotMap::decode(&b).unwrap(), m);
        for i in (0..b.len()).step_by(13) {
            let mut c = b.clone();
            c[i] ^= 2;
            assert!(SlotMap::decode(&c).is_err());
        }
        let dir = tempfile::tempdir().unwrap();
        let a = SlotMap::load_or_create(dir.path(), 4).unwrap();
        assert_eq!(
            SlotMap::load_or_create(dir.path(), 9).unwrap(),
            a,
            "existing map must win"
        );
    }
}
