//! Partition objects in a real S3 server (Garage on loopback): written once, read back
//! checked, listed in log order, deleted; damage and absence are told apart from an
//! unreachable store, which is a temporary error that ends when the store returns.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use ringmail_cluster::{ClusterError, Objects};
use ringmail_engine::remote::keys::chunk_prefix;
use ringmail_engine::remote::{Chunk, ObjectKey, Piece};

fn chunk(epoch: u64, first: u64, last: u64) -> Chunk {
    Chunk {
        partition: 2,
        epoch,
        first_lsn: first,
        last_lsn: last,
        pieces: vec![Piece {
            segment: 1,
            offset: 64 + first * 100,
            bytes: vec![first as u8; 100 * (last - first + 1) as usize],
        }],
    }
}

#[test]
fn objects_round_trip_list_in_log_order_and_report_damage() {
    let infra = Infra::start(31300, 1, 1);
    let cfg = infra.config("a", 5);
    block_on(async {
        let o = Objects::new(&cfg).unwrap();
        let prefix = o.prefix().to_string();
        let mut refs = Vec::new();
        // Out of order, as parallel uploads may land; the listing sorts by LSN.
        for (first, last) in [(11, 20), (1, 10), (21, 21)] {
            let c = chunk(7, first, last);
            let key = ObjectKey::Chunk {
                epoch: 7,
                first_lsn: first,
            }
            .key(&prefix, 2);
            refs.push(o.put(&key, Bytes::from(c.encode())).await.unwrap());
        }
        let listed = o.list(&chunk_prefix(&prefix, 2, 7)).await.unwrap();
        let firsts: Vec<u64> = listed
            .iter()
            .map(|(k, _)| match ObjectKey::parse(&prefix, 2, k) {
                Some(ObjectKey::Chunk { first_lsn, .. }) => first_lsn,
                other => panic!("{k}: {other:?}"),
            })
            .collect();
        assert_eq!(firsts, [1, 11, 21]);
        for r in &refs {
            let b = o.get(r).await.unwrap();
            let c = Chunk::decode(&b).unwrap();
            assert_eq!(b.len() as u64, r.len);
            assert_eq!(c.epoch, 7);
        }
        // The manifest's CRC catches an object that is not what was written.
        let mut wrong = refs[0].clone();
        wrong.crc ^= 1;
        assert!(matches!(
            o.get(&wrong).await,
            Err(ClusterError::Damaged { .. })
        ));
        let missing = ObjectKey::Segment { epoch: 1, seq: 99 }.key(&prefix, 2);
        assert!(matches!(
            o.get_raw(&missing).await,
            Err(ClusterError::NotFound { .. })
        ));
        for r in &refs {
            o.delete(&r.key).await.unwrap();
        }
        o.delete(&refs[0].key).await.unwrap();
        assert!(o
            .list(&chunk_prefix(&prefix, 2, 7))
            .await
            .unwrap()
            .is_empty());
    });
}

#[test]
fn an_unreachable_store_is_a_temporary_error_until_it_returns() {
    let infra = Infra::start(31400, 1, 1);
    let cfg = infra.config("a", 5);
    block_on(async {
        let o = Objects::new(&cfg).unwrap();
        let key = ObjectKey::Checkpoint { epoch: 3, seq: 1 }.key(o.prefix(), 0);
        let r = o
            .put(&key, Bytes::from_static(b"checkpoint"))
            .await
            .unwrap();
        infra.signal("S31", "STOP");
        let t = Instant::now();
        let e = o.get(&r).await.unwrap_err();
        assert!(e.is_temporary(), "{e}");
        // Bounded by the configured timeout (2 s) and its retries.
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        infra.signal("S31", "CONT");
        assert_eq!(&o.get(&r).await.unwrap()[..], b"checkpoint");
    });
}

#[test]
fn three_s3_nodes_serve_with_one_down() {
    let infra = Infra::start(31500, 1, 3);
    let cfg = infra.config("a", 5);
    block_on(async {
        let o = Objects::new(&cfg).unwrap();
        let key = ObjectKey::Segment { epoch: 4, seq: 9 }.key(o.prefix(), 1);
        let body = Bytes::from(vec![7u8; 300_000]);
        let r = o.put(&key, body.clone()).await.unwrap();
        // The client talks to node 1; node 3 goes: two of three copies remain.
        infra.signal("S33", "KILL");
        assert_eq!(o.get(&r).await.unwrap(), body);
        let key2 = ObjectKey::Segment { epoch: 4, seq: 10 }.key(o.prefix(), 1);
        let r2 = o.put(&key2, body.clone()).await.unwrap();
        assert_eq!(o.get(&r2).await.unwrap(), body);
    });
}
