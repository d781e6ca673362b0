//! The manifest: which objects make up a partition, published by its owner.
//!
//! etcd holds only a pointer to the newest manifest object (etcd values stay small); the
//! manifest names the checkpoint, every sealed segment the checkpoint may still point
//! into, and where the tail starts. A new owner opens the partition from it: checkpoint, then
//! the tail chunks (and sealed segments after the checkpoint's position), and fetches older
//! sealed segments only when a read needs one.
//!
//! ```text
//! magic "RINGMANI", version u32, partition u32, epoch u64, serial u64, created_unix u64,
//! checkpoint   u8 (0 none, 1 present), then seq u64 + object
//! segments     list<seq u64, epoch u64, object>             ascending seq
//! tail_segment u64                                          where the tail's chunks start
//! next_segment u64                                          no segment below it is made again
//! tail         list<epoch u64, from_lsn u64>                ascending, at least one
//! crc          u32                                          CRC-32 of everything before it
//! object       = key str, len u64, crc u32 (of the whole object)
//! ```

use crate::error::FormatError;
use crate::format::codec::{Reader, Writer};
use crate::format::crc32;
use crate::format::names::{readable_version, FORMAT_VERSION};

/// First bytes of every manifest object.
pub const MANIFEST_MAGIC: [u8; 8] = *b"RINGMANI";
/// Longest object key.
pub const MAX_KEY_LEN: u32 = 1024;

/// An immutable object: its key, length and CRC-32, checked when it is fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    pub key: String,
    pub len: u64,
    pub crc: u32,
}

/// A sealed segment in object storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRef {
    pub seq: u64,
    /// The epoch of the owner that wrote the segment (its header's, and its local file's).
    pub epoch: u64,
    pub object: ObjectRef,
}

/// From `from_lsn` on (up to the next range's start), the log's tail is the chunks of
/// `epoch`. Each owner starts a range when it takes the partition over: chunks an earlier
/// owner wrote at or past that LSN were never acknowledged and are not part of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TailRange {
    pub epoch: u64,
    pub from_lsn: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub partition: u32,
    /// The epoch of the owner that published it.
    pub epoch: u64,
    /// +1 per publication of the partition, across owners.
    pub serial: u64,
    pub created_unix: u64,
    /// The checkpoint file (its local sequence number and the object).
    pub checkpoint: Option<(u64, ObjectRef)>,
    pub segments: Vec<SegmentRef>,
    /// The tail starts at the beginning of this segment (all before it are in `segments`
    /// or dead; some after it may be in `segments` too, stored before an earlier one).
    pub tail_segment: u64,
    /// The next owner starts its segments at or after this, so sequence numbers stay unique.
    pub next_segment: u64,
    pub tail: Vec<TailRange>,
}

impl Manifest {
    /// The manifest of a partition nobody has written yet.
    pub fn empty(partition: u32, epoch: u64) -> Manifest {
        Manifest {
            partition,
            epoch,
            serial: 0,
            created_unix: 0,
            checkpoint: None,
            segments: Vec::new(),
            tail_segment: 1,
            next_segment: 1,
            tail: vec![TailRange { epoch, from_lsn: 1 }],
        }
    }

    /// Each tail range as (epoch, first LSN, end LSN exclusive; `None` for the last).
    pub fn tail_ranges(&self) -> impl Iterator<Item = (u64, u64, Option<u64>)> + '_ {
        self.tail.iter().enumerate().map(|(i, r)| {
            (
                r.epoch,
                r.from_lsn,
                self.tail.get(i + 1).map(|next| next.from_lsn),
            )
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.raw(&MANIFEST_MAGIC);
        w.u32(FORMAT_VERSION);
        w.u32(self.partition);
        w.u64(self.epoch);
        w.u64(self.serial);
        w.u64(self.created_unix);
        match &self.checkpoint {
            None => w.u8(0),
            Some((seq, o)) => {
                w.u8(1);
                w.u64(*seq);
                object(&mut w, o);
            }
        }
        w.u32(self.segments.len() as u32);
        for s in &self.segments {
            w.u64(s.seq);
            w.u64(s.epoch);
            object(&mut w, &s.object);
        }
        w.u64(self.tail_segment);
        w.u64(self.next_segment);
        w.u32(self.tail.len() as u32);
        for t in &self.tail {
            w.u64(t.epoch);
            w.u64(t.from_lsn);
        }
        let crc = crc32(&out);
        Writer::new(&mut out).u32(crc);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Manifest, FormatError> {
        if bytes.len() < 4 {
            return Err(FormatError::Truncated {
                at: 0,
                wanted: 4,
                available: bytes.len(),
            });
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        let mut r = Reader::new(body);
        let magic = r.take(8)?;
        if magic != MANIFEST_MAGIC {
            return Err(FormatError::BadMagic {
                expected: MANIFEST_MAGIC.to_vec(),
                got: magic.to_vec(),
            });
        }
        let computed = crc32(body);
        if stored != computed {
            return Err(FormatError::Checksum {
                what: "manifest",
                expected: stored,
                got: computed,
            });
        }
        let version = r.u32()?;
        if !readable_version(version) || version < 2 {
            return Err(FormatError::UnsupportedVersion {
                got: version,
                supported: FORMAT_VERSION,
            });
        }
        let partition = r.u32()?;
        let epoch = r.u64()?;
        let serial = r.u64()?;
        let created_unix = r.u64()?;
        let checkpoint = match r.u8()? {
            0 => None,
            1 => {
                let seq = r.u64()?;
                Some((seq, read_object(&mut r)?))
            }
            other => {
                return Err(FormatError::Invalid {
                    what: "manifest checkpoint",
                    detail: format!("presence byte {other}"),
                })
            }
        };
        let n = r.count(8 + 8 + 4 + 8 + 4)?;
        let mut segments: Vec<SegmentRef> = Vec::with_capacity(n);
        for _ in 0..n {
            let seq = r.u64()?;
            let epoch = r.u64()?;
            let object = read_object(&mut r)?;
            if segments.last().is_some_and(|l| l.seq >= seq) {
                return Err(invalid("segments are not in ascending order"));
            }
            segments.push(SegmentRef { seq, epoch, object });
        }
        let tail_segment = r.u64()?;
        let next_segment = r.u64()?;
        let n = r.count(16)?;
        let mut tail: Vec<TailRange> = Vec::with_capacity(n);
        for _ in 0..n {
            let epoch = r.u64()?;
            let from_lsn = r.u64()?;
            if tail
                .last()
                .is_some_and(|l| l.epoch >= epoch || l.from_lsn > from_lsn)
            {
                return Err(invalid("tail ranges are not in ascending order"));
            }
            tail.push(TailRange { epoch, from_lsn });
        }
        r.finish()?;
        if tail.is_empty() {
            return Err(invalid("no tail range"));
        }
        // A sealed segment at or after `tail_segment` is allowed: an owner seals and stores
        // segments in order, but the tail only moves past a segment once every one before
        // it is stored too, so for a while the chunks and the object hold the same bytes.
        if segments.last().is_some_and(|s| s.seq >= next_segment) || tail_segment > next_segment {
            return Err(invalid("a segment at or after next_segment"));
        }
        Ok(Manifest {
            partition,
            epoch,
            serial,
            created_unix,
            checkpoint,
            segments,
            tail_segment,
            next_segment,
            tail,
        })
    }
}

fn invalid(detail: &str) -> FormatError {
    FormatError::Invalid {
        what: "manifest",
        detail: detail.to_string(),
    }
}

fn object(w: &mut Writer<'_>, o: &ObjectRef) {
    w.str(&o.key);
    w.u64(o.len);
    w.u32(o.crc);
}

fn read_object(r: &mut Reader<'_>) -> Result<ObjectRef, FormatError> {
    Ok(ObjectRef {
        key: r.string(MAX_KEY_LEN)?,
        len: r.u64()?,
        crc: r.u32()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str) -> ObjectRef {
        ObjectRef {
            key: key.into(),
            len: 4096,
            crc: 0xdead_beef,
        }
    }

    fn sample() -> Manifest {
        Manifest {
            partition: 3,
            epoch: 90,
            serial: 17,
            created_unix: 1_800_000_000,
            checkpoint: Some((4, obj("p00003/ckpt/x"))),
            segments: vec![
                SegmentRef {
                    seq: 2,
                    epoch: 12,
                    object: obj("p00003/seg/a"),
                },
                SegmentRef {
                    seq: 5,
                    epoch: 90,
                    object: obj("p00003/seg/b"),
                },
            ],
            tail_segment: 6,
            next_segment: 7,
            tail: vec![
                TailRange {
                    epoch: 12,
                    from_lsn: 400,
                },
                TailRange {
                    epoch: 90,
                    from_lsn: 410,
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_damage_is_refused() {
        let m = sample();
        let b = m.encode();
        assert_eq!(&b[..8], b"RINGMANI");
        assert_eq!(Manifest::decode(&b).unwrap(), m);
        for cut in 0..b.len() {
            assert!(Manifest::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..b.len() {
            let mut x = b.clone();
            x[i] ^= 0x01;
            assert!(Manifest::decode(&x).is_err(), "flip at {i}");
        }
        let e = Manifest::empty(9, 5);
        assert_eq!(Manifest::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn inconsistent_manifests_are_refused() {
        let mut m = sample();
        m.tail.reverse();
        assert!(Manifest::decode(&m.encode()).is_err());
        let mut m = sample();
        m.tail.clear();
        assert!(Manifest::decode(&m.encode()).is_err());
        let mut m = sample();
        m.next_segment = 5;
        assert!(Manifest::decode(&m.encode()).is_err());
        let mut m = sample();
        m.tail_segment = 5;
        assert!(
            Manifest::decode(&m.encode()).is_ok(),
            "stored ahead of the tail"
        );
        let mut m = sample();
        m.segments.swap(0, 1);
        assert!(Manifest::decode(&m.encode()).is_err());
    }

    #[test]
    fn tail_ranges_end_where_the_next_begins() {
        let m = sample();
        let r: Vec<_> = m.tail_ranges().collect();
        assert_eq!(r, vec![(12, 400, Some(410)), (90, 410, None)]);
    }
}
