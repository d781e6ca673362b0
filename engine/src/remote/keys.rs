//! Object keys. Zero-padded hex, so a listing sorts in log order.
//!
//! ```text
//! <prefix>/p00003/manifest/<epoch>-<serial>      a published manifest
//! <prefix>/p00003/ckpt/<epoch>-<seq>.idx          a checkpoint file, as on disk
//! <prefix>/p00003/seg/<epoch>-<seq>.log           a sealed segment's bytes up to its last record
//! <prefix>/p00003/tail/<epoch>/<first lsn>.chunk  one group-commit batch
//! ```
//!
//! `<epoch>` is always the epoch of the owner that uploaded the object (a sealed segment
//! re-uploaded by a later owner keeps its own epoch in its header).

use crate::format::names::partition_dir;

/// What kind of object a key names, parsed back from a listing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectKey {
    Manifest { epoch: u64, serial: u64 },
    Checkpoint { epoch: u64, seq: u64 },
    Segment { epoch: u64, seq: u64 },
    Chunk { epoch: u64, first_lsn: u64 },
}

/// The prefix of every object of one partition: `<prefix>/p00003/`.
pub fn partition_prefix(prefix: &str, partition: u32) -> String {
    let dir = partition_dir(partition);
    if prefix.is_empty() {
        format!("{dir}/")
    } else {
        format!("{}/{dir}/", prefix.trim_end_matches('/'))
    }
}

/// The prefix of one epoch's tail chunks: listing it lists the chunks in LSN order.
pub fn chunk_prefix(prefix: &str, partition: u32, epoch: u64) -> String {
    format!("{}tail/{epoch:016x}/", partition_prefix(prefix, partition))
}

impl ObjectKey {
    /// The full key of this object of `partition`.
    pub fn key(&self, prefix: &str, partition: u32) -> String {
        let p = partition_prefix(prefix, partition);
        match self {
            ObjectKey::Manifest { epoch, serial } => {
                format!("{p}manifest/{epoch:016x}-{serial:016x}")
            }
            ObjectKey::Checkpoint { epoch, seq } => format!("{p}ckpt/{epoch:016x}-{seq:016x}.idx"),
            ObjectKey::Segment { epoch, seq } => format!("{p}seg/{epoch:016x}-{seq:016x}.log"),
            ObjectKey::Chunk { epoch, first_lsn } => {
                format!(
                    "{}{first_lsn:016x}.chunk",
                    chunk_prefix(prefix, partition, *epoch)
                )
            }
        }
    }

    /// Parses a key of `partition` under `prefix`; `None` for anything else.
    pub fn parse(prefix: &str, partition: u32, key: &str) -> Option<ObjectKey> {
        let rest = key.strip_prefix(&partition_prefix(prefix, partition))?;
        let (kind, name) = rest.split_once('/')?;
        let pair = |s: &str| -> Option<(u64, u64)> {
            let (a, b) = s.split_once('-')?;
            Some((hex16(a)?, hex16(b)?))
        };
        match kind {
            "manifest" => pair(name).map(|(epoch, serial)| ObjectKey::Manifest { epoch, serial }),
            "ckpt" => pair(name.strip_suffix(".idx")?)
                .map(|(epoch, seq)| ObjectKey::Checkpoint { epoch, seq }),
            "seg" => pair(name.strip_suffix(".log")?)
                .map(|(epoch, seq)| ObjectKey::Segment { epoch, seq }),
            "tail" => {
                let (epoch, lsn) = name.split_once('/')?;
                Some(ObjectKey::Chunk {
                    epoch: hex16(epoch)?,
                    first_lsn: hex16(lsn.strip_suffix(".chunk")?)?,
                })
            }
            _ => None,
        }
    }
}

fn hex16(s: &str) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_in_log_order() {
        let all = [
            ObjectKey::Manifest {
                epoch: 7,
                serial: 3,
            },
            ObjectKey::Checkpoint { epoch: 7, seq: 12 },
            ObjectKey::Segment { epoch: 1, seq: 4 },
            ObjectKey::Chunk {
                epoch: 0x1234,
                first_lsn: 99,
            },
        ];
        for k in all {
            let s = k.key("cluster1", 3);
            assert!(s.starts_with("cluster1/p00003/"), "{s}");
            assert_eq!(ObjectKey::parse("cluster1", 3, &s), Some(k.clone()));
            assert_eq!(ObjectKey::parse("cluster1", 4, &s), None);
        }
        let a = ObjectKey::Chunk {
            epoch: 5,
            first_lsn: 9,
        }
        .key("", 0);
        let b = ObjectKey::Chunk {
            epoch: 5,
            first_lsn: 10,
        }
        .key("", 0);
        assert!(a < b);
        assert!(a.starts_with(&chunk_prefix("", 0, 5)));
        assert_eq!(ObjectKey::parse("", 0, "p00000/tail/5/9.chunk"), None);
    }
}
