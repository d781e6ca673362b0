//! Messages of mixed sizes, from empty to 20 MiB, come back byte-identical, before and
//! after a reopen.

mod common;

use common::*;
use ringmail_engine::{Flags, Uid};

#[test]
fn thousands_of_mixed_size_messages_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    // Sizes: mostly small mail, some large, and the extremes.
    let mut sizes: Vec<usize> = (0..3000u64)
        .map(|i| 200 + ((i * 7919) % 12_000) as usize)
        .collect();
    sizes.extend([
        0,
        1,
        31,
        4096,
        4097,
        65_535,
        300 << 10,
        1 << 20,
        5 << 20,
        20 << 20,
    ]);
    let sizes2 = sizes.clone();
    let d2 = d.clone();
    run(&d, move || async move {
        let p = open_with_account(&d2, config(), "u@example.org").await;
        // 32 writers at a time, as a server would have.
        let mut next = 0;
        while next < sizes2.len() {
            let end = (next + 32).min(sizes2.len());
            let futs: Vec<_> = (next..end)
                .map(|i| {
                    let p = p.clone();
                    let body = message(i as u64, sizes2[i]);
                    async move {
                        p.append("u@example.org", "INBOX", &new_message(body))
                            .await
                            .unwrap()
                    }
                })
                .collect();
            let appended = futures_util::future::join_all(futs).await;
            for (k, a) in appended.iter().enumerate() {
                assert_eq!(a.uid, Uid((next + k) as u32 + 1));
            }
            next = end;
        }
        for (i, &s) in sizes2.iter().enumerate() {
            let got = p
                .fetch("u@example.org", "INBOX", Uid(i as u32 + 1))
                .await
                .unwrap();
            assert_eq!(got.len(), s);
            assert!(*got == message(i as u64, s), "message {i} differs");
        }
        let st = p.status("u@example.org", "INBOX").unwrap();
        assert_eq!(st.messages as usize, sizes2.len());
        assert_eq!(st.size, sizes2.iter().map(|&s| s as u64).sum::<u64>());
        assert_eq!(st.unseen as usize, sizes2.len());
        p.close().await.unwrap();
    });
    run(&d.clone(), move || async move {
        let p = open(&d, config()).await;
        assert!(p.recovery_report().is_clean());
        for (i, &s) in sizes.iter().enumerate() {
            let got = p
                .fetch("u@example.org", "INBOX", Uid(i as u32 + 1))
                .await
                .unwrap();
            assert!(
                *got == message(i as u64, s),
                "message {i} differs after reopen"
            );
        }
        let r = p
            .fetch_range("u@example.org", "INBOX", Uid(3), 10, 20)
            .await
            .unwrap();
        assert_eq!(r, message(2, sizes[2])[10..30].to_vec());
        let rep = p.check_integrity().await;
        assert!(rep.errors.is_empty(), "{:?}", rep.errors);
        assert_eq!(rep.blobs_checked, sizes.len());
        // Text mail compresses: the log is much smaller than the raw bytes.
        let stats = p.stats();
        // 3000 messages: the partition trained a dictionary after 2000 and used it since.
        assert_eq!(stats.dictionaries, 1);
        let raw: u64 = sizes.iter().map(|&s| s as u64).sum();
        assert!(
            stats.live_bytes < raw / 2,
            "live {} raw {}",
            stats.live_bytes,
            raw
        );
        assert_eq!(
            Flags(0),
            p.message("u@example.org", "INBOX", Uid(1)).unwrap().flags
        );
        p.close().await.unwrap();
    });
}

#[test]
fn metadata_is_read_without_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(&d.clone(), move || async move {
        let p = open_with_account(&d, config(), "u@example.org").await;
        for (i, meta_len) in [0usize, 10, 5000, 100_000].into_iter().enumerate() {
            let mut m = new_message(message(i as u64, 50_000));
            m.meta = vec![b'm'; meta_len];
            let a = p.append("u@example.org", "INBOX", &m).await.unwrap();
            assert_eq!(
                p.fetch_meta("u@example.org", "INBOX", a.uid).await.unwrap(),
                m.meta
            );
        }
        p.close().await.unwrap();
    });
}
