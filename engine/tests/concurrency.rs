//! A node with several shards and partitions: many concurrent appenders from many threads,
//! routed to the owning shard; everything is there after a restart.

mod common;

use std::sync::Arc;

use common::*;
use ringmail_engine::{AccountOptions, Node, NodeConfig, PartitionConfig, Recipient, Uid};

fn node_config(dir: &std::path::Path) -> NodeConfig {
    NodeConfig {
        shards: 2,
        partitions: 4,
        partition: PartitionConfig {
            // Small segments: writers roll segments while batches are in flight.
            segment_size: 128 << 10,
            ..PartitionConfig::default()
        },
        ..NodeConfig::new(dir)
    }
}

#[test]
fn many_concurrent_appenders_on_several_shards() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(node_config(dir.path())).unwrap();
    let h = node.handle();
    let accounts: Vec<String> = (0..40).map(|i| format!("user{i}@example.org")).collect();
    futures_lite::future::block_on(async {
        for a in &accounts {
            let a2 = a.clone();
            h.on_account(a, move |p| async move {
                p.create_account(&a2, &AccountOptions::default()).await
            })
            .await
            .unwrap();
        }
    });
    let partitions: std::collections::HashSet<_> =
        accounts.iter().map(|a| h.partition_of(a)).collect();
    assert!(
        partitions.len() > 1,
        "accounts should spread over partitions"
    );
    // 8 OS threads, each with 8 concurrent appenders: 64 at once.
    let per_writer = 40;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let h = h.clone();
            let accounts = Arc::new(accounts.clone());
            std::thread::spawn(move || {
                futures_lite::future::block_on(async {
                    let futs = (0..8).map(|w| {
                        let h = h.clone();
                        let accounts = accounts.clone();
                        async move {
                            for k in 0..per_writer {
                                let n = (t * 8 + w) * 1000 + k;
                                let acct = accounts[(n % accounts.len() as u64) as usize].clone();
                                let body = message(n, 500 + (n as usize % 4000));
                                let a2 = acct.clone();
                                h.on_account(&acct, move |p| async move {
                                    p.append(&a2, "INBOX", &new_message(body)).await
                                })
                                .await
                                .unwrap();
                            }
                        }
                    });
                    futures_util::future::join_all(futs).await;
                })
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // A delivery to every account: one stored copy per partition.
    let rcpts: Vec<Recipient> = accounts.iter().map(|a| Recipient::inbox(a)).collect();
    let res =
        futures_lite::future::block_on(h.deliver(&rcpts, &new_message(message(999_999, 3000))));
    assert!(res.iter().all(|r| r.is_ok()));
    let stats = futures_lite::future::block_on(h.stats());
    let total: u64 = stats.iter().map(|s| s.as_ref().unwrap().messages).sum();
    let blobs: usize = stats.iter().map(|s| s.as_ref().unwrap().blobs).sum();
    assert_eq!(total, 64 * per_writer + accounts.len() as u64);
    assert_eq!(blobs as u64, 64 * per_writer + partitions.len() as u64);
    let batches: u64 = stats.iter().map(|s| s.as_ref().unwrap().log.batches).sum();
    let records: u64 = stats.iter().map(|s| s.as_ref().unwrap().log.records).sum();
    assert!(
        batches < records,
        "group commit never batched: {batches} batches for {records} records"
    );
    // A second process (here: a second node) cannot open the same data directory.
    let e = Node::start(node_config(dir.path()))
        .err()
        .expect("the data directory is locked");
    assert!(e.to_string().contains("in use"), "{e}");
    node.shutdown().unwrap();

    let node = Node::start(node_config(dir.path())).unwrap();
    let h = node.handle();
    for r in node.reports.values() {
        assert!(r.is_clean(), "{r:?}");
    }
    futures_lite::future::block_on(async {
        let mut total = 0;
        for a in &accounts {
            let a2 = a.clone();
            let (n, last) = h
                .on_account(a, move |p| async move {
                    let st = p.status(&a2, "INBOX")?;
                    let last = p.fetch(&a2, "INBOX", Uid(st.uidnext.0 - 1)).await?;
                    Ok((st.messages, last.to_vec()))
                })
                .await
                .unwrap();
            assert!(last == message(999_999, 3000));
            total += n as u64;
        }
        assert_eq!(total, 64 * per_writer + accounts.len() as u64);
    });
    node.shutdown().unwrap();
}
