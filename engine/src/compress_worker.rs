//! Deferred compression's worker: one thread per partition that compresses bodies the
//! partition stored raw, at `SCHED_IDLE` priority.
//!
//! zstd is the largest single cost of a delivery (a quarter of the shard's CPU for 4 KiB
//! mail). A delivery may instead store the body raw, so its 250 waits only for the raw
//! bytes to be durable, and leave the compression to this thread. `SCHED_IDLE` means the
//! kernel runs it only on a core that has nothing else to run: under a burst it waits, and
//! the shards keep the cores; once the burst is over it catches up. The partition then logs
//! each compressed body as a relocation of its message (see `Partition::compress_deferred`).
//! The thread owns its own compressors; nothing is shared with the shard but the channel.

use std::sync::mpsc;

use futures_channel::oneshot;

use crate::compression::{Compression, DictionaryConfig};
use crate::mutation::BodyCodec;

/// A body to compress, named by its blob id.
pub struct Job {
    pub blob: u64,
    pub body: Vec<u8>,
}

/// A compressed body. `Raw` (with no body) means: leave the stored body as it is
/// (compression did not make it smaller, or failed).
pub struct Done {
    pub blob: u64,
    pub codec: BodyCodec,
    pub dict: u32,
    pub body: Vec<u8>,
}

enum Msg {
    Dictionary {
        id: u32,
        bytes: Vec<u8>,
    },
    Compress {
        jobs: Vec<Job>,
        reply: oneshot::Sender<Vec<Done>>,
    },
}

/// The shard's handle; dropping it ends the thread once its queue is empty.
pub struct CompressWorker {
    tx: mpsc::Sender<Msg>,
}

impl CompressWorker {
    /// Starts the worker of partition `partition`, compressing at zstd `level`.
    pub fn start(partition: u32, level: i32) -> std::io::Result<Self> {
        let mut c = Compression::new(
            level,
            DictionaryConfig {
                enabled: false,
                ..DictionaryConfig::default()
            },
        )?;
        let (tx, rx) = mpsc::channel::<Msg>();
        std::thread::Builder::new()
            .name(format!("ringmail-zstd-{partition}"))
            .spawn(move || {
                idle_priority(partition);
                for msg in rx {
                    match msg {
                        Msg::Dictionary { id, bytes } => {
                            if let Err(e) = c.add_dictionary(id, &bytes) {
                                tracing::warn!(partition, error = %e, "deferred compression: dictionary not prepared");
                            }
                        }
                        Msg::Compress { jobs, reply } => {
                            let done = jobs
                                .into_iter()
                                .map(|j| match c.compress(&j.body) {
                                    Ok((codec, dict, body)) if codec != BodyCodec::Raw => Done {
                                        blob: j.blob,
                                        codec,
                                        dict,
                                        body,
                                    },
                                    // The body stays raw, which is still a valid record.
                                    _ => Done {
                                        blob: j.blob,
                                        codec: BodyCodec::Raw,
                                        dict: 0,
                                        body: Vec::new(),
                                    },
                                })
                                .collect();
                            let _ = reply.send(done);
                        }
                    }
                }
            })?;
        Ok(Self { tx })
    }

    /// Makes dictionary `id` the one new compressions use (the highest id wins). The
    /// dictionary must already be logged, so whatever the worker compresses with it can be
    /// decompressed.
    pub fn add_dictionary(&self, id: u32, bytes: &[u8]) {
        let _ = self.tx.send(Msg::Dictionary {
            id,
            bytes: bytes.to_vec(),
        });
    }

    /// Compresses `jobs`, in order. `None` if the thread is gone.
    pub async fn compress(&self, jobs: Vec<Job>) -> Option<Vec<Done>> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Msg::Compress { jobs, reply }).ok()?;
        rx.await.ok()
    }
}

#[allow(unsafe_code)]
fn idle_priority(partition: u32) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: see UNSAFE.md: a system call on the calling thread with a valid local.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if r != 0 {
        // Still correct at normal priority; it then competes with the shards for the cores.
        tracing::warn!(partition, error = %std::io::Error::last_os_error(), "deferred compression runs at normal priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compresses_in_order_and_uses_the_dictionary() {
        let w = CompressWorker::start(0, 1).unwrap();
        let mail = |i: usize| format!("Subject: note {i}\r\n\r\n").repeat(40).into_bytes();
        let samples: Vec<Vec<u8>> = (0..200).map(mail).collect();
        let dict = zstd::dict::from_samples(&samples, 2048).unwrap();
        let jobs = |n: u64| {
            (0..n)
                .map(|i| Job {
                    blob: i,
                    body: mail(i as usize),
                })
                .chain([Job {
                    blob: 99,
                    body: b"tiny".to_vec(),
                }])
                .collect::<Vec<_>>()
        };
        let out = futures_lite::future::block_on(w.compress(jobs(3))).unwrap();
        let ids: Vec<u64> = out.iter().map(|d| d.blob).collect();
        assert_eq!(ids, [0, 1, 2, 99]);
        assert_eq!(out[0].codec, BodyCodec::Zstd);
        assert!(out[0].body.len() < mail(0).len());
        // Too small to pay for a frame: left raw.
        assert_eq!(out[3].codec, BodyCodec::Raw);
        w.add_dictionary(4, &dict);
        let out = futures_lite::future::block_on(w.compress(jobs(1))).unwrap();
        assert_eq!((out[0].codec, out[0].dict), (BodyCodec::ZstdDict, 4));
        let mut d = Compression::new(1, DictionaryConfig::default()).unwrap();
        let dicts = [(4, std::rc::Rc::new(dict))].into();
        let back = d
            .decompress(out[0].codec, 4, &out[0].body, mail(0).len(), &dicts)
            .unwrap();
        assert_eq!(back, mail(0));
    }
}
