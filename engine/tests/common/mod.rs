//! Helpers shared by the engine's integration tests: a real glommio executor over a real
//! temporary directory, and deterministic message bodies.
#![allow(dead_code)]

use std::path::Path;
use std::rc::Rc;

use ringmail_engine::SlotMap;
use ringmail_engine::{AccountOptions, NewMessage, Partition, PartitionConfig, PartitionId};

/// Runs `f` on a fresh glommio executor after the device probe (see `io::probe_device`).
pub fn run<F, Fut, T>(dir: &Path, f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    let dir = dir.to_path_buf();
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || async move {
            SlotMap::load_or_create(&dir, 1).unwrap();
            ringmail_engine::probe_device(&dir.join("SUPERBLOCK"))
                .await
                .unwrap();
            f().await
        })
        .unwrap()
        .join()
        .unwrap()
}

/// Every body compressed before it is logged, so the log holds exactly the records the test
/// wrote, in order (tests cut and corrupt it at known records).
pub fn config() -> PartitionConfig {
    PartitionConfig {
        segment_size: 8 << 20,
        checkpoint_bytes: 0,
        deferred_compression_bytes: 0,
        ..PartitionConfig::default()
    }
}

/// As `config`, but bodies are stored raw and recompressed in the background, which logs
/// relocations at times of the worker's choosing.
pub fn deferring_config() -> PartitionConfig {
    PartitionConfig {
        deferred_compression_bytes: 1 << 30,
        ..config()
    }
}

pub async fn open(dir: &Path, cfg: PartitionConfig) -> Rc<Partition> {
    Partition::open(&dir.join("p0"), PartitionId(0), cfg)
        .await
        .unwrap()
}

pub async fn open_with_account(dir: &Path, cfg: PartitionConfig, account: &str) -> Rc<Partition> {
    let p = open(dir, cfg).await;
    if !p.has_account(account) {
        p.create_account(account, &AccountOptions::standard())
            .await
            .unwrap();
    }
    p
}

/// A deterministic message of `size` bytes for sequence number `n`: headers, then text
/// that compresses about as well as real mail.
pub fn message(n: u64, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: sender{n}@example.org\r\nTo: rcpt@example.net\r\nSubject: message {n}\r\nMessage-ID: <{n}@test>\r\n\r\n"
    )
    .into_bytes();
    let words = [
        "the ",
        "mail ",
        "server ",
        "stores ",
        "every ",
        "message ",
        "durably ",
        "and ",
        "fast ",
        "on ",
        "disk ",
        "with ",
        "checksums ",
        "of ",
        "all ",
        "records\r\n",
    ];
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while m.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        m.extend_from_slice(words[(x % words.len() as u64) as usize].as_bytes());
    }
    m.truncate(size);
    m
}

pub fn new_message(body: Vec<u8>) -> NewMessage {
    NewMessage {
        body,
        ..NewMessage::default()
    }
}

/// Copies a data directory (tests crash or open a copy, never the original).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A tail sink (cluster mode) that keeps what it is given, and can be held (a slow store)
/// or fenced (another node took over).
#[derive(Default)]
pub struct Recorder {
    pub chunks: std::cell::RefCell<Vec<ringmail_engine::remote::Chunk>>,
    pub hold: std::cell::Cell<bool>,
    pub fenced: std::cell::Cell<bool>,
    pub sealed: std::cell::RefCell<Vec<ringmail_engine::Sealed>>,
    pub checkpoints: std::cell::RefCell<Vec<ringmail_engine::Checkpointed>>,
}

pub struct RecordingSink(pub Rc<Recorder>);

impl ringmail_engine::TailSink for RecordingSink {
    fn ship(&self, chunk: ringmail_engine::remote::Chunk) -> ringmail_engine::ShipFuture {
        let r = self.0.clone();
        Box::pin(async move {
            while r.hold.get() {
                glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
            }
            if r.fenced.get() {
                return Err(ringmail_engine::ShipError::Fenced(
                    "another node took over".into(),
                ));
            }
            r.chunks.borrow_mut().push(chunk);
            Ok(())
        })
    }

    fn sealed(&self, s: ringmail_engine::Sealed) {
        self.0.sealed.borrow_mut().push(s);
    }

    fn checkpointed(&self, c: ringmail_engine::Checkpointed) {
        self.0.checkpoints.borrow_mut().push(c);
    }
}
