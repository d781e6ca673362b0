//! criterion benches for the engine's hot paths. Each one checks its own answer.
//!
//! `cargo bench -p ringmail-benches --bench engine`

use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ringmail_benches::mailgen::MailGen;
use ringmail_benches::run_on_executor;
use ringmail_engine::internals::checkpoint::{
    self, AccountImage, Checkpoint, Entry, Image, MailboxImage,
};
use ringmail_engine::internals::mutation::{BlobRecord, BodyCodec, Mutation, Target};
use ringmail_engine::internals::segment::{scan_segment, RecordHeader, RECORD_HEADER_LEN};
use ringmail_engine::internals::state::PartitionState;
use ringmail_engine::{
    AccountId, AccountOptions, BlobId, MailboxId, NewMessage, Partition, PartitionConfig,
    PartitionId, Uid,
};

fn messages(n: usize) -> Vec<Vec<u8>> {
    let mut g = MailGen::new(42);
    (0..n).map(|_| g.message()).collect()
}

fn blob(body: Vec<u8>) -> Mutation {
    Mutation::Blob(BlobRecord {
        blob: BlobId(7),
        raw_len: body.len() as u32,
        meta: vec![0; 200],
        codec: BodyCodec::Raw,
        dict: 0,
        body,
        targets: vec![Target {
            account: AccountId(1),
            mailbox: MailboxId(0),
            uid: Uid(9),
            flags: 0,
            internal_date: 0,
        }],
    })
}

fn records(c: &mut Criterion) {
    let m = blob(MailGen::new(1).message_of_size(4096));
    let mut framed = Vec::new();
    let mut payload = Vec::new();
    m.encode(&mut payload);
    RecordHeader::write_record(&mut framed, m.kind(), 1, &payload);
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Bytes(framed.len() as u64));
    g.bench_function("encode_frame_4k", |b| {
        let mut out = Vec::with_capacity(8192);
        let mut p = Vec::with_capacity(8192);
        b.iter(|| {
            out.clear();
            p.clear();
            m.encode(&mut p);
            RecordHeader::write_record(&mut out, m.kind(), 1, &p);
            assert_eq!(out.len(), framed.len());
        })
    });
    g.bench_function("verify_decode_4k", |b| {
        b.iter(|| {
            let h = RecordHeader::decode(&framed).unwrap();
            let p = &framed[RECORD_HEADER_LEN..];
            h.check_payload(p).unwrap();
            let d = Mutation::decode(h.kind, p).unwrap();
            assert!(matches!(d, Mutation::Blob(_)));
        })
    });
    // Recovery's scan over 1 MiB of records.
    let mut seg = vec![0u8; 64];
    let mut lsn = 1;
    while seg.len() < 1 << 20 {
        RecordHeader::write_record(&mut seg, m.kind(), lsn, &payload);
        lsn += 1;
    }
    seg.resize(seg.len() + 4096, 0);
    g.throughput(Throughput::Bytes(seg.len() as u64));
    g.bench_function("scan_1mib", |b| {
        b.iter(|| assert_eq!(scan_segment(&seg, 64, 1).records.len() as u64, lsn - 1))
    });
    g.finish();
}

fn compression(c: &mut Criterion) {
    let msgs = messages(512);
    let raw: usize = msgs.iter().map(|m| m.len()).sum();
    let mut g2 = MailGen::new(99);
    let samples: Vec<Vec<u8>> = (0..2000)
        .map(|_| g2.message())
        .map(|m| m[..m.len().min(8192)].to_vec())
        .collect();
    let dict = zstd::dict::from_samples(&samples, 64 << 10).unwrap();
    let mut g = c.benchmark_group("compression");
    g.throughput(Throughput::Bytes(raw as u64));
    for (name, level, use_dict) in [
        ("zstd1", 1, false),
        ("zstd3", 3, false),
        ("zstd1_dict", 1, true),
    ] {
        let mut comp =
            ringmail_engine::internals::compression::Compression::new(level, Default::default())
                .unwrap();
        if use_dict {
            comp.add_dictionary(1, &dict).unwrap();
        }
        g.bench_function(name, |b| {
            b.iter(|| {
                let n: usize = msgs.iter().map(|m| comp.compress(m).unwrap().2.len()).sum();
                assert!(n < raw);
            })
        });
    }
    let mut comp =
        ringmail_engine::internals::compression::Compression::new(1, Default::default()).unwrap();
    comp.add_dictionary(1, &dict).unwrap();
    let packed: Vec<_> = msgs.iter().map(|m| comp.compress(m).unwrap()).collect();
    let dicts = [(1u32, Rc::new(dict.clone()))].into_iter().collect();
    g.bench_function("unzstd1_dict", |b| {
        b.iter(|| {
            for ((codec, d, body), m) in packed.iter().zip(&msgs) {
                let out = comp.decompress(*codec, *d, body, m.len(), &dicts).unwrap();
                assert_eq!(out.len(), m.len());
            }
        })
    });
    g.finish();
}

fn index(c: &mut Criterion) {
    // A 1,000,000-message mailbox in a checkpoint, read in place.
    let n = 1_000_000u32;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt");
    let image = Image {
        partition: 0,
        log_segment: 1,
        log_offset: 64,
        next_lsn: 1,
        next_blob: n as u64 + 1,
        next_account: 1,
        last_uidvalidity: 1,
        accounts: vec![AccountImage {
            id: 0,
            name: "a".into(),
            quota_bytes: 0,
            quota_messages: 0,
            next_mailbox: 1,
            keywords: vec![],
            subscriptions: vec![],
            mailboxes: vec![MailboxImage {
                id: 0,
                name: "INBOX".into(),
                uidvalidity: 1,
                uidnext: n + 1,
                highest_modseq: 1,
                special_use: 0,
                entries: (1..=n)
                    .map(|u| Entry {
                        uid: u,
                        size: 100,
                        flags: 0,
                        modseq: 1,
                        internal_date: 0,
                        blob: u as u64,
                    })
                    .collect(),
            }],
        }],
        blobs: vec![],
        dictionaries: vec![],
    };
    checkpoint::write(&image, &path).unwrap();
    let mut g = c.benchmark_group("index");
    g.sample_size(10);
    g.bench_function("load_checkpoint_1m", |b| {
        b.iter(|| {
            let ck = Rc::new(Checkpoint::load(&path, 1, 0).unwrap());
            let st = PartitionState::from_checkpoint(ck);
            assert_eq!(st.accounts.len(), 1);
        })
    });
    let ck = Rc::new(Checkpoint::load(&path, 1, 0).unwrap());
    let st = PartitionState::from_checkpoint(ck);
    let mb = st
        .accounts
        .values()
        .next()
        .unwrap()
        .mailboxes
        .values()
        .next()
        .unwrap();
    g.sample_size(50);
    g.bench_function("lookup_uid_1m", |b| {
        let mut u = 1u32;
        b.iter(|| {
            u = u.wrapping_mul(2_654_435_761) % n + 1;
            assert_eq!(mb.index.get(Uid(u)).unwrap().uid, u);
        })
    });
    g.finish();
}

/// Durable appends on one shard: 64 concurrent appenders with group commit.
fn group_commit(c: &mut Criterion) {
    let msgs = Rc::new(messages(1024));
    let mut g = c.benchmark_group("append");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(1));
    g.bench_function("group_commit_64_appenders", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().to_path_buf();
            let msgs: Vec<Vec<u8>> = (*msgs).clone();
            run_on_executor(&d.clone(), move || async move {
                let p = Partition::open(&d.join("p0"), PartitionId(0), PartitionConfig::default())
                    .await
                    .unwrap();
                p.create_account("b@example.org", &AccountOptions::default())
                    .await
                    .unwrap();
                let msgs = Rc::new(msgs);
                let start = Instant::now();
                let tasks: Vec<_> = (0..64u64)
                    .map(|w| {
                        let (p, msgs) = (p.clone(), msgs.clone());
                        glommio::spawn_local(async move {
                            let mut i = w;
                            while i < iters {
                                let m = NewMessage {
                                    body: msgs[(i % 1024) as usize].clone(),
                                    ..Default::default()
                                };
                                p.append("b@example.org", "INBOX", &m).await.unwrap();
                                i += 64;
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await;
                }
                let e = start.elapsed();
                assert_eq!(
                    p.status("b@example.org", "INBOX").unwrap().messages as u64,
                    iters
                );
                e
            })
        })
    });
    g.bench_function("naive_fdatasync_per_message", |b| {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut f = std::fs::File::create(dir.path().join("naive")).unwrap();
        let mut i = 0;
        b.iter_batched(
            || {
                i += 1;
                msgs[i % 1024].clone()
            },
            |m| {
                f.write_all(&m).unwrap();
                f.sync_data().unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, records, compression, index, group_commit);
criterion_main!(benches);
