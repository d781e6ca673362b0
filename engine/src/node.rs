//! A node: one glommio executor per shard, each owning its partitions, and the request path
//! between them.
//!
//! ```text
//!   any thread or shard ── NodeHandle::on_account(account, job) ──► bounded channel of the
//!   owning shard ──► job runs on that shard's executor with its Rc<Partition> ──► reply
//!   through a oneshot channel
//! ```
//!
//! A job is a closure that builds a future on the owning shard, so requests are typed by
//! their closure and no partition state ever crosses a thread. The channels are bounded: a
//! full queue makes the sender wait (backpressure); a closed one is `ShuttingDown`.
//!
//! Shutdown: [`Node::shutdown`] closes every queue; each shard finishes the queued and
//! running jobs (a gate tracks them), then checkpoints and closes its partitions.

use crate::request::{Request, Response};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use glommio::{LocalExecutorBuilder, Placement};

use crate::api::{Appended, NewMessage, Recipient};
use crate::error::{Error, Result, StoreError};
use crate::format::names::{partition_dir, SUPERBLOCK_FILE};
use crate::ids::{PartitionId, ShardId};
use crate::partition::{Partition, PartitionConfig, PartitionStats};
use crate::recovery::RecoveryReport;
use crate::slots::{shard_of, SlotMap};

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    /// Executor threads; 0 means one per available core.
    pub shards: usize,
    /// Partitions of a new data directory; 0 means one per shard. An existing directory
    /// keeps the count it was created with.
    pub partitions: u32,
    /// Pin shard `i` to CPU `i`.
    pub pin: bool,
    pub partition: PartitionConfig,
    /// Capacity of each shard's request queue.
    pub queue_depth: usize,
    /// How long an idle shard spins before it sleeps: a busy server avoids a sleep and a
    /// wake-up per event, at the price of CPU while idle.
    pub spin_before_park: Option<std::time::Duration>,
    /// Open every partition at start (a single node). In a cluster none is: the control
    /// plane opens each one it comes to own ([`NodeHandle::open_partition`]).
    pub open_at_start: bool,
}

impl NodeConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            shards: 0,
            partitions: 0,
            pin: false,
            partition: PartitionConfig::default(),
            queue_depth: 1024,
            spin_before_park: None,
            open_at_start: true,
        }
    }
}

type Job = Box<dyn FnOnce(Rc<ShardContext>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// A service run on every shard once its partitions are open (the frontends' listeners).
/// It must return soon after `ShardContext::stop` closes.
pub type Service = Arc<dyn Fn(Rc<ShardContext>) -> Pin<Box<dyn Future<Output = ()>>> + Send + Sync>;

/// What a job or service sees on its shard.
pub struct ShardContext {
    pub shard: ShardId,
    /// The partitions open on this shard: all of the shard's at start on a single node;
    /// in a cluster, those this node owns now (opened and closed while running).
    partitions: std::cell::RefCell<BTreeMap<PartitionId, Rc<Partition>>>,
    pub node: NodeHandle,
    /// Closed when the node starts shutting down: services stop accepting work.
    pub stop: async_channel::Receiver<()>,
}

impl ShardContext {
    /// Partition `p`, if it is open on this shard.
    pub fn partition(&self, p: PartitionId) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(&p).cloned()
    }

    pub fn has_partition(&self, p: PartitionId) -> bool {
        self.partitions.borrow().contains_key(&p)
    }

    /// The partitions open on this shard now.
    pub fn open_partitions(&self) -> Vec<(PartitionId, Rc<Partition>)> {
        self.partitions
            .borrow()
            .iter()
            .map(|(p, part)| (*p, part.clone()))
            .collect()
    }
}

struct HandleInner {
    senders: Vec<async_channel::Sender<Job>>,
    map: SlotMap,
    data_dir: PathBuf,
    partition: PartitionConfig,
}

/// A cheap, thread-safe handle for sending work to the shard that owns an account.
#[derive(Clone)]
pub struct NodeHandle {
    inner: Arc<HandleInner>,
}

pub struct Node {
    /// Held for the node's life: an exclusive lock on the data directory.
    _lock: std::fs::File,
    handle: NodeHandle,
    threads: Vec<glommio::ExecutorJoinHandle<Result<()>>>,
    stop: async_channel::Sender<()>,
    services_done: std::sync::mpsc::Receiver<()>,
    services: usize,
    pub reports: BTreeMap<PartitionId, RecoveryReport>,
}

impl Node {
    /// Opens the data directory (recovering every partition) and starts the shards.
    pub fn start(cfg: NodeConfig) -> Result<Node> {
        Self::start_with(cfg, None)
    }

    /// Like [`Node::start`], and runs `service` on every shard once its partitions are open.
    pub fn start_with(cfg: NodeConfig, service: Option<Service>) -> Result<Node> {
        let shards = if cfg.shards == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            cfg.shards
        };
        let partitions = if cfg.partitions == 0 {
            shards as u32
        } else {
            cfg.partitions
        };
        let lock = lock_data_dir(&cfg.data_dir)?;
        let map = SlotMap::load_or_create(&cfg.data_dir, partitions)?;
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..shards {
            let (tx, rx) = async_channel::bounded::<Job>(cfg.queue_depth.max(1));
            senders.push(tx);
            receivers.push(rx);
        }
        let handle = NodeHandle {
            inner: Arc::new(HandleInner {
                senders,
                map: map.clone(),
                data_dir: cfg.data_dir.clone(),
                partition: cfg.partition.clone(),
            }),
        };
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        // Each shard holds a sender until its service ends, and drops it unused if it never
        // started one: shutdown hears from every service that ran, and waits for no other.
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready_rx) =
            std::sync::mpsc::channel::<Result<Vec<(PartitionId, RecoveryReport)>>>();
        let mut threads = Vec::new();
        for (i, rx) in receivers.into_iter().enumerate() {
            let owned: Vec<PartitionId> = (0..map.partitions)
                .map(PartitionId)
                .filter(|p| shard_of(*p, shards).0 as usize == i)
                .collect();
            let cfg = cfg.clone();
            let handle = handle.clone();
            let ready = ready_tx.clone();
            let (stop, done, service) = (stop_rx.clone(), done_tx.clone(), service.clone());
            let placement = if cfg.pin {
                Placement::Fixed(i)
            } else {
                Placement::Unbound
            };
            let mut builder = LocalExecutorBuilder::new(placement);
            if let Some(spin) = cfg.spin_before_park {
                builder = builder.spin_before_park(spin);
            }
            let t = builder
                .name(&format!("ringmail-shard-{i}"))
                .spawn(move || {
                    shard_main(
                        ShardId(i as u32),
                        cfg,
                        owned,
                        handle,
                        rx,
                        ready,
                        stop,
                        service,
                        done,
                    )
                })
                .map_err(|e| Error::io("starting a shard", e.into()))?;
            threads.push(t);
        }
        drop(ready_tx);
        drop(done_tx);
        let mut reports = BTreeMap::new();
        let mut failure = None;
        for _ in 0..shards {
            match ready_rx.recv() {
                Ok(Ok(r)) => reports.extend(r),
                Ok(Err(e)) => failure = failure.or(Some(e)),
                Err(_) => {
                    failure = failure.or(Some(Error::Config("a shard exited during start".into())))
                }
            }
        }
        let node = Node {
            _lock: lock,
            handle,
            threads,
            stop: stop_tx,
            services_done: done_rx,
            services: if service.is_some() { shards } else { 0 },
            reports,
        };
        if let Some(e) = failure {
            let _ = node.shutdown();
            return Err(e);
        }
        Ok(node)
    }

    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Stops accepting work, finishes what is queued and running, checkpoints and closes
    /// every partition, and joins the shard threads.
    pub fn shutdown(self) -> Result<()> {
        // Services first (they may still send work to other shards), then the queues.
        self.stop.close();
        for _ in 0..self.services {
            match self
                .services_done
                .recv_timeout(std::time::Duration::from_secs(60))
            {
                Ok(()) => {}
                // Every service that ran has ended (a shard that failed to open ran none).
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    tracing::warn!("a shard's service did not stop within 60 s");
                    break;
                }
            }
        }
        for s in &self.handle.inner.senders {
            s.close();
        }
        let mut first = Ok(());
        for t in self.threads {
            let r = match t.join() {
                Ok(r) => r,
                Err(e) => Err(Error::io("joining a shard", e.into())),
            };
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

/// Takes an exclusive lock on `<data>/LOCK` (flock), so two processes never open one data
/// directory: both would write the same logs.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    // Only the last component: a mistyped path must not become a new, empty store.
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("creating {dir:?}"), e)),
    }
    let path = dir.join(crate::format::names::LOCK_FILE);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {path:?}"), e))?;
    // SAFETY: flock on a file descriptor we own and keep open; no memory is involved.
    #[allow(unsafe_code)]
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        return Err(Error::DataDirInUse(dir.to_path_buf()));
    }
    Ok(f)
}

#[allow(clippy::too_many_arguments)]
async fn shard_main(
    shard: ShardId,
    cfg: NodeConfig,
    owned: Vec<PartitionId>,
    node: NodeHandle,
    rx: async_channel::Receiver<Job>,
    ready: std::sync::mpsc::Sender<Result<Vec<(PartitionId, RecoveryReport)>>>,
    stop: async_channel::Receiver<()>,
    service: Option<Service>,
    done: std::sync::mpsc::Sender<()>,
) -> Result<()> {
    let opened = async {
        crate::io::probe_device(&cfg.data_dir.join(SUPERBLOCK_FILE)).await?;
        let mut partitions = BTreeMap::new();
        let mut reports = Vec::new();
        for p in owned.into_iter().filter(|_| cfg.open_at_start) {
            let dir = cfg.data_dir.join(partition_dir(p.0));
            let part = Partition::open(&dir, p, cfg.partition.clone()).await?;
            reports.push((p, part.recovery_report().clone()));
            partitions.insert(p, part);
        }
        Ok::<_, Error>((partitions, reports))
    }
    .await;
    let partitions = match opened {
        Ok((p, r)) => {
            let _ = ready.send(Ok(r));
            p
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    let ctx = Rc::new(ShardContext {
        shard,
        partitions: std::cell::RefCell::new(partitions),
        node,
        stop,
    });
    if let Some(service) = service {
        let fut = service(ctx.clone());
        glommio::spawn_local(async move {
            fut.await;
            let _ = done.send(());
        })
        .detach();
    }
    let gate = glommio::sync::Gate::new();
    while let Ok(job) = rx.recv().await {
        let fut = job(ctx.clone());
        if gate.spawn(fut).map(|t| t.detach()).is_err() {
            break;
        }
    }
    let _ = gate.close().await;
    let mut first = Ok(());
    for (_, p) in ctx.open_partitions() {
        let r = p.close().await;
        if first.is_ok() {
            first = r;
        }
    }
    first
}

impl NodeHandle {
    pub fn slot_map(&self) -> &SlotMap {
        &self.inner.map
    }

    pub fn shards(&self) -> usize {
        self.inner.senders.len()
    }

    pub fn partition_of(&self, account: &str) -> PartitionId {
        self.inner.map.partition_of(account)
    }

    /// Runs `f` with partition `p` on the shard that owns it and returns its result.
    pub async fn on_partition<R, F, Fut>(&self, p: PartitionId, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(Rc<Partition>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R>> + 'static,
    {
        let (tx, rx) = futures_channel::oneshot::channel::<Result<R>>();
        let job: Job = Box::new(move |ctx: Rc<ShardContext>| {
            Box::pin(async move {
                let r = match ctx.partition(p) {
                    Some(part) => f(part).await,
                    None => Err(Error::Store(StoreError::NotHere(p.0))),
                };
                let _ = tx.send(r);
            })
        });
        let shard = shard_of(p, self.inner.senders.len()).0 as usize;
        self.inner.senders[shard]
            .send(job)
            .await
            .map_err(|_| Error::Store(StoreError::ShuttingDown))?;
        rx.await
            .map_err(|_| Error::Store(StoreError::ShuttingDown))?
    }

    /// Opens partition `p` on its shard as this node's ownership at `epoch` (cluster mode):
    /// the directory was made from object storage first (`remote::materialize`), and
    /// `tail` builds, on the shard, the sink its batches are shipped to.
    pub async fn open_partition(
        &self,
        p: PartitionId,
        epoch: u64,
        tail: Box<dyn FnOnce() -> crate::io::tail::Tail + Send>,
    ) -> Result<RecoveryReport> {
        let (tx, rx) = futures_channel::oneshot::channel::<Result<RecoveryReport>>();
        let job: Job = Box::new(move |ctx: Rc<ShardContext>| {
            Box::pin(async move {
                let r = async {
                    if ctx.has_partition(p) {
                        return Err(Error::Config(format!("partition {p} is already open")));
                    }
                    let cfg = PartitionConfig {
                        epoch,
                        ..ctx.node.inner.partition.clone()
                    };
                    let dir = ctx.node.inner.data_dir.join(partition_dir(p.0));
                    let part = Partition::open_with_tail(&dir, p, cfg, Some(tail())).await?;
                    let report = part.recovery_report().clone();
                    ctx.partitions.borrow_mut().insert(p, part);
                    Ok(report)
                }
                .await;
                let _ = tx.send(r);
            })
        });
        self.send_to_shard(p, job).await?;
        rx.await
            .map_err(|_| Error::Store(StoreError::ShuttingDown))?
    }

    /// Closes partition `p` on its shard (cluster mode: the ownership ended or moves).
    /// Requests for it fail with [`StoreError::NotHere`] from now on; those running finish.
    pub async fn close_partition(&self, p: PartitionId) -> Result<()> {
        let (tx, rx) = futures_channel::oneshot::channel::<Result<()>>();
        let job: Job = Box::new(move |ctx: Rc<ShardContext>| {
            Box::pin(async move {
                let part = ctx.partitions.borrow_mut().remove(&p);
                let r = match part {
                    Some(part) => {
                        part.mark_gone();
                        part.close().await
                    }
                    None => Ok(()),
                };
                let _ = tx.send(r);
            })
        });
        self.send_to_shard(p, job).await?;
        rx.await
            .map_err(|_| Error::Store(StoreError::ShuttingDown))?
    }

    async fn send_to_shard(&self, p: PartitionId, job: Job) -> Result<()> {
        let shard = shard_of(p, self.inner.senders.len()).0 as usize;
        self.inner.senders[shard]
            .send(job)
            .await
            .map_err(|_| Error::Store(StoreError::ShuttingDown))
    }

    /// Runs `f` on the partition that owns `account`.
    pub async fn on_account<R, F, Fut>(&self, account: &str, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(Rc<Partition>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R>> + 'static,
    {
        self.on_partition(self.partition_of(account), f).await
    }

    /// Runs `f` on every partition, in partition order.
    pub async fn on_all<R, F, Fut>(&self, f: F) -> Vec<Result<R>>
    where
        R: Send + 'static,
        F: Fn(Rc<Partition>) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Result<R>> + 'static,
    {
        let mut out = Vec::new();
        for p in 0..self.inner.map.partitions {
            let f = f.clone();
            out.push(self.on_partition(PartitionId(p), f).await);
        }
        out
    }

    /// Delivers one message to many recipients: one stored copy per partition involved,
    /// partitions written concurrently. Results come back in recipient order; every `Ok`
    /// is durable.
    pub async fn deliver(
        &self,
        recipients: &[Recipient],
        msg: &NewMessage,
    ) -> Vec<Result<Appended>> {
        let mut groups: BTreeMap<PartitionId, Vec<usize>> = BTreeMap::new();
        for (i, r) in recipients.iter().enumerate() {
            groups
                .entry(self.partition_of(&r.account))
                .or_default()
                .push(i);
        }
        let futs = groups.into_iter().map(|(p, idx)| {
            let rcpts: Vec<Recipient> = idx.iter().map(|&i| recipients[i].clone()).collect();
            let msg = msg.clone();
            async move {
                let n = rcpts.len();
                let request = Request::Deliver {
                    recipients: rcpts,
                    message: msg,
                };
                let r = match self
                    .on_partition(p, move |part| async move { part.serve(request).await })
                    .await
                {
                    Ok(Response::Delivered(v)) => Ok(v),
                    Ok(other) => Err(Error::Failed(format!(
                        "a delivery was answered with {other:?}"
                    ))),
                    Err(e) => Err(e),
                };
                (idx, r, n)
            }
        });
        let done = futures_util::future::join_all(futs).await;
        let mut out: Vec<Option<Result<Appended>>> = (0..recipients.len()).map(|_| None).collect();
        for (idx, r, n) in done {
            match r {
                Ok(v) => {
                    for (i, r) in idx.into_iter().zip(v) {
                        out[i] = Some(r.map_err(Error::from_sendable));
                    }
                }
                Err(e) => {
                    let s = e.to_string_error();
                    for i in idx.into_iter().take(n) {
                        out[i] = Some(Err(Error::from_sendable(s.clone())));
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| r.expect("every recipient has a result"))
            .collect()
    }

    pub async fn stats(&self) -> Vec<Result<PartitionStats>> {
        self.on_all(|p| async move { Ok(p.stats()) }).await
    }
}

/// An error in a form that can cross threads (the engine's `Error` holds `io::Error`s).
#[derive(Clone, Debug)]
pub enum SendableError {
    Store(StoreError),
    Other(String),
}

impl Error {
    pub fn to_string_error(&self) -> SendableError {
        match self {
            Error::Store(s) => SendableError::Store(s.clone()),
            e => SendableError::Other(e.to_string()),
        }
    }
    pub fn from_sendable(e: SendableError) -> Error {
        match e {
            SendableError::Store(s) => Error::Store(s),
            SendableError::Other(s) => Error::Failed(s),
        }
    }
}
