//! The control-plane thread: etcd and object storage on a tokio runtime of their own,
//! talking to the engine's shards over channels.
//!
//! ```text
//!  shard (glommio) ── ClusterSink::ship ──► channel ──► control thread (tokio, one thread)
//!                                                        ├─ PUT the tail chunk (retried)
//!                                                        ├─ confirm: one etcd read per tick
//!                                                        │  for every waiting batch
//!                                                        └─ reply ──► shard acknowledges
//!  control thread: every tick, reconcile ownership with etcd
//!      unowned and placed here ──► acquire (new epoch) ──► manifest, checkpoint, tail chunks
//!      ──► materialize ──► publish the takeover manifest ──► NodeHandle::open_partition
//!      owned but fenced or placed elsewhere ──► NodeHandle::close_partition (──► release)
//! ```
//!
//! Placement: a partition belongs on the node an operator assigned it to (`cluster move`),
//! if that node is a live member; otherwise on the live, non-draining member that ranks
//! first for it by rendezvous hashing, so a node's loss moves only its own partitions.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use object_store::PutPayload;

use crate::upload_buffer::UploadBuffer;
use ringmail_engine::remote::chunk::{candidates, chain};
use ringmail_engine::remote::keys::chunk_prefix;
use ringmail_engine::remote::{
    materialize, Chunk, Manifest, Materials, ObjectKey, SegmentRef, TailRange,
};
use ringmail_engine::{
    Checkpointed, NodeHandle, PartitionId, Sealed, ShipError, ShipFuture, Tail, TailSink,
};

use crate::config::ClusterConfig;
use crate::coordinator::Coordinator;
use crate::error::{ClusterError, Result};
use crate::objects::Objects;
use crate::routes::RouteBoard;

/// A tokio runtime on the calling thread, as the etcd and S3 clients need (the control
/// plane's, and the lease keep-alive's).
pub(crate) fn local_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// 32 random bytes, hex: the cluster's secret if this node is the first to ask.
fn new_secret() -> Result<String> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| ClusterError::Config(format!("reading /dev/urandom: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// How often ownership is reconciled with etcd.
const TICK: Duration = Duration::from_millis(500);

enum Command {
    Ship {
        partition: u32,
        epoch: u64,
        first_lsn: u64,
        /// The chunk's object, in parts ([`Chunk::into_parts`]).
        parts: Vec<Vec<u8>>,
        reply: oneshot::Sender<std::result::Result<(), ShipError>>,
    },
    Sealed {
        partition: u32,
        epoch: u64,
        segment: Sealed,
        pending: PendingGuard,
    },
    Checkpointed {
        partition: u32,
        epoch: u64,
        checkpoint: Checkpointed,
        pending: PendingGuard,
    },
    Fetch {
        partition: u32,
        seq: u64,
        path: PathBuf,
        reply: oneshot::Sender<std::result::Result<(), ShipError>>,
    },
    Run(NodeHandle),
    Stop(oneshot::Sender<()>),
}

/// What `cluster status` and the metrics show of this node.
#[derive(Clone, Debug, Default)]
pub struct Status {
    pub node: String,
    pub lease_alive: bool,
    /// Partition → epoch of this node's ownerships.
    pub owned: BTreeMap<u32, u64>,
    pub takeovers: u64,
    /// Takeovers of a partition its previous owner handed over (a move or a drain), and of
    /// one whose owner's lease ended (a failover).
    pub moves_in: u64,
    pub failovers: u64,
    pub releases: u64,
    pub fenced: u64,
    /// Batches shipped (tail chunks stored and confirmed).
    pub shipped: u64,
    /// Manifests published.
    pub published: u64,
    /// Objects deleted by garbage collection.
    pub collected: u64,
}

/// A running control plane: its thread, and the channel the shards reach it by.
pub struct ControlPlane {
    commands: async_channel::Sender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
    status: Arc<Mutex<Status>>,
    partitions: u32,
    routes: Arc<RouteBoard>,
    secret: String,
}

impl ControlPlane {
    /// Starts the control-plane thread: joins the cluster (lease, member key) and reads the
    /// cluster's partition count (or sets it to `partitions` if this node is the first).
    /// Nothing is owned until [`Self::run`] hands it the node.
    pub fn start(cfg: ClusterConfig, data_dir: PathBuf, partitions: u32) -> Result<ControlPlane> {
        cfg.validate().map_err(ClusterError::Config)?;
        let (tx, rx) = async_channel::unbounded::<Command>();
        let status = Arc::new(Mutex::new(Status {
            node: cfg.node.clone(),
            ..Status::default()
        }));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(u32, String)>>();
        let st = status.clone();
        let routes = Arc::new(RouteBoard::new(&cfg.node));
        let board = routes.clone();
        let sink_tx = tx.clone();
        let thread = std::thread::Builder::new()
            .name("ringmail-cluster".into())
            .spawn(move || {
                let rt = match local_runtime() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(ClusterError::Config(format!(
                            "starting the control plane's runtime: {e}"
                        ))));
                        return;
                    }
                };
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async move {
                    let joined = async {
                        let p = Plane::join(cfg, data_dir, partitions, st, sink_tx).await?;
                        let secret = p.coord.secret(&new_secret()?).await?;
                        Ok::<_, ClusterError>((p, secret))
                    };
                    let plane = match joined.await {
                        Ok((p, secret)) => {
                            let _ = ready_tx.send(Ok((p.partitions, secret)));
                            Rc::new(p)
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let watcher = plane.clone();
                    tokio::task::spawn_local(
                        async move { watcher.coord.watch_routes(board).await },
                    );
                    plane.serve(rx).await;
                });
            })
            .map_err(|e| ClusterError::Config(format!("starting the control plane: {e}")))?;
        let (partitions, secret) = ready_rx.recv().map_err(|_| ClusterError::Stopped)??;
        // The owner map's first snapshot, before any client is accepted (a node that routed
        // by an empty map would answer "try again" for every other node's account).
        let deadline = Instant::now() + Duration::from_secs(5);
        while routes.version() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(ControlPlane {
            commands: tx,
            thread: Some(thread),
            status,
            partitions,
            routes,
            secret,
        })
    }

    /// The owner map, kept current by a watch in etcd.
    pub fn routes(&self) -> Arc<RouteBoard> {
        self.routes.clone()
    }

    /// What this node shows on the other nodes' cluster ports, and checks on its own.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The cluster's partition count (every node's data directory must have it).
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Starts owning partitions, opening them on `node`.
    pub fn run(&self, node: NodeHandle) {
        let _ = self.commands.try_send(Command::Run(node));
    }

    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The status as the control plane keeps it up to date, for readers on other threads
    /// (the metrics endpoint).
    pub fn status_handle(&self) -> Arc<Mutex<Status>> {
        self.status.clone()
    }

    /// Closes every partition this node owns (each flushed, shipped and checkpointed),
    /// releases them and leaves the cluster. Call before the node shuts down.
    pub fn stop(mut self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.try_send(Command::Stop(tx)).is_ok() {
            let _ = futures_lite::future::block_on(rx);
        }
        self.commands.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The engine's tail sink in cluster mode: ships a partition's batches through the
/// control-plane thread.
pub struct ClusterSink {
    partition: u32,
    epoch: u64,
    commands: async_channel::Sender<Command>,
    /// The ownership's count of publications asked for and not done.
    pending: Arc<AtomicUsize>,
}

impl ClusterSink {
    /// Sends the command `make` builds around a reply channel; resolves with the reply.
    fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<std::result::Result<(), ShipError>>) -> Command,
    ) -> ShipFuture {
        let (tx, rx) = oneshot::channel();
        let sent = self.commands.try_send(make(tx)).is_ok();
        let stopped = || Err(ShipError::Fenced("the control plane has stopped".into()));
        Box::pin(async move {
            if !sent {
                return stopped();
            }
            rx.await.unwrap_or_else(|_| stopped())
        })
    }
}

impl TailSink for ClusterSink {
    fn ship(&self, chunk: Chunk) -> ShipFuture {
        self.ask(|reply| Command::Ship {
            partition: self.partition,
            epoch: self.epoch,
            first_lsn: chunk.first_lsn,
            parts: chunk.into_parts(),
            reply,
        })
    }

    fn sealed(&self, segment: Sealed) {
        let _ = self.commands.try_send(Command::Sealed {
            partition: self.partition,
            epoch: self.epoch,
            segment,
            pending: PendingGuard::new(&self.pending),
        });
    }

    fn fetch_segment(&self, seq: u64, path: PathBuf) -> Option<ShipFuture> {
        Some(self.ask(|reply| Command::Fetch {
            partition: self.partition,
            seq,
            path,
            reply,
        }))
    }

    fn checkpointed(&self, checkpoint: Checkpointed) {
        let _ = self.commands.try_send(Command::Checkpointed {
            partition: self.partition,
            epoch: self.epoch,
            checkpoint,
            pending: PendingGuard::new(&self.pending),
        });
    }
}

/// What a takeover found in object storage.
struct Opened {
    /// The epoch of the owner that published the manifest opened from (0: none).
    previous: u64,
    checkpoint: bool,
    /// Sealed segments the manifest names, and how many were fetched to open.
    segments: usize,
    fetched: usize,
    chunks: usize,
}

/// What this node last published for a partition it owns.
#[derive(Clone)]
struct Published {
    manifest: Manifest,
    serial: u64,
    /// The first LSN of segments that may become the tail's start (after a sealed one,
    /// and this owner's first).
    first_lsn_of: BTreeMap<u64, u64>,
}

struct Owned {
    epoch: u64,
    /// Publications asked for by the partition (sealed segments, checkpoints) and not done
    /// yet: a release waits for them, so the next owner finds the last checkpoint.
    pending: Arc<AtomicUsize>,
}

struct Plane {
    cfg: ClusterConfig,
    data_dir: PathBuf,
    partitions: u32,
    coord: Coordinator,
    objects: Objects,
    status: Arc<Mutex<Status>>,
    commands: async_channel::Sender<Command>,
    node: RefCell<Option<NodeHandle>>,
    owned: RefCell<BTreeMap<u32, Owned>>,
    /// Batches stored, waiting for the next epoch check.
    confirming: RefCell<Vec<(u32, u64, oneshot::Sender<bool>)>>,
    confirm_wake: tokio::sync::Notify,
    stopping: Cell<bool>,
    published: RefCell<BTreeMap<u32, Published>>,
    /// `RINGMAIL_FAILPOINTS=1`: the test failpoints are armed.
    failpoints: bool,
    /// One publication at a time per partition, in the order they were asked for.
    publish_locks: RefCell<BTreeMap<u32, Rc<tokio::sync::Mutex<()>>>>,
    /// Sealed segments are read into this for their upload.
    upload_buffer: UploadBuffer,
    /// Partitions whose ownership was lost and that are still closing here.
    closing: Rc<Cell<usize>>,
}

impl Plane {
    async fn join(
        cfg: ClusterConfig,
        data_dir: PathBuf,
        partitions: u32,
        status: Arc<Mutex<Status>>,
        commands: async_channel::Sender<Command>,
    ) -> Result<Plane> {
        let coord = Coordinator::join(&cfg).await?;
        let partitions = coord.layout(partitions.max(1)).await?;
        let objects = Objects::new(&cfg)?;
        Ok(Plane {
            cfg,
            data_dir,
            partitions,
            coord,
            objects,
            status,
            commands,
            node: RefCell::new(None),
            owned: RefCell::new(BTreeMap::new()),
            confirming: RefCell::new(Vec::new()),
            confirm_wake: tokio::sync::Notify::new(),
            stopping: Cell::new(false),
            published: RefCell::new(BTreeMap::new()),
            failpoints: std::env::var("RINGMAIL_FAILPOINTS").is_ok_and(|v| v == "1"),
            publish_locks: RefCell::new(BTreeMap::new()),
            upload_buffer: UploadBuffer::default(),
            closing: Rc::new(Cell::new(0)),
        })
    }

    fn update_status(&self) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.lease_alive = self.coord.lease_alive();
        s.owned = self
            .owned
            .borrow()
            .iter()
            .map(|(p, o)| (*p, o.epoch))
            .collect();
    }

    fn count(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    async fn serve(self: Rc<Self>, rx: async_channel::Receiver<Command>) {
        tokio::task::spawn_local(self.clone().confirmer());
        let mut ticker: Option<tokio::task::JoinHandle<()>> = None;
        while let Ok(cmd) = rx.recv().await {
            match cmd {
                Command::Ship {
                    partition,
                    epoch,
                    first_lsn,
                    parts,
                    reply,
                } => {
                    let me = self.clone();
                    tokio::task::spawn_local(async move {
                        let r = me.ship(partition, epoch, first_lsn, parts).await;
                        let _ = reply.send(r);
                    });
                }
                Command::Sealed {
                    partition,
                    epoch,
                    segment,
                    pending: done,
                } => {
                    let me = self.clone();
                    tokio::task::spawn_local(async move {
                        if let Err(e) = me.store_sealed(partition, epoch, segment).await {
                            tracing::warn!(partition, error = %e, "a sealed segment was not published; its chunks stay the tail");
                        }
                        drop(done);
                    });
                }
                Command::Checkpointed {
                    partition,
                    epoch,
                    checkpoint,
                    pending: done,
                } => {
                    let me = self.clone();
                    tokio::task::spawn_local(async move {
                        if let Err(e) = me.store_checkpoint(partition, epoch, checkpoint).await {
                            tracing::warn!(partition, error = %e, "a checkpoint was not published; the previous one stays");
                        }
                        drop(done);
                    });
                }
                Command::Fetch {
                    partition,
                    seq,
                    path,
                    reply,
                } => {
                    let me = self.clone();
                    tokio::task::spawn_local(async move {
                        let r = me.fetch_segment(partition, seq, path).await.map_err(|e| {
                            tracing::warn!(partition, segment = seq, error = %e, "cannot fetch a segment");
                            ShipError::Fenced(e.to_string())
                        });
                        let _ = reply.send(r);
                    });
                }
                Command::Run(node) => {
                    *self.node.borrow_mut() = Some(node);
                    if ticker.is_none() {
                        ticker = Some(tokio::task::spawn_local(self.clone().ownership_loop()));
                        tokio::task::spawn_local(self.clone().collector());
                    }
                }
                Command::Stop(done) => {
                    self.stopping.set(true);
                    if let Some(t) = ticker.take() {
                        t.abort();
                    }
                    // In a task: closing a partition publishes its checkpoint through this
                    // loop, which must go on meanwhile. The caller closes the channel after.
                    let me = self.clone();
                    tokio::task::spawn_local(async move {
                        let owned: Vec<(u32, u64)> = me
                            .owned
                            .borrow()
                            .iter()
                            .map(|(p, o)| (*p, o.epoch))
                            .collect();
                        for (p, epoch) in owned {
                            me.release(p, epoch).await;
                        }
                        let _ = done.send(());
                    });
                }
            }
        }
        // Revoking the lease ends whatever ownership is left at once (instead of a TTL
        // later) and removes this node from the members.
        let _ = self.coord.leave().await;
    }

    fn still_owned(&self, partition: u32, epoch: u64) -> bool {
        self.owned
            .borrow()
            .get(&partition)
            .is_some_and(|o| o.epoch == epoch)
            && self.coord.lease_alive()
    }

    /// Stores one batch's chunk, then waits for the epoch check after it.
    async fn ship(
        self: &Rc<Self>,
        partition: u32,
        epoch: u64,
        first_lsn: u64,
        parts: Vec<Vec<u8>>,
    ) -> std::result::Result<(), ShipError> {
        let key = ObjectKey::Chunk { epoch, first_lsn }.key(self.objects.prefix(), partition);
        let bytes: PutPayload = parts.into_iter().map(Bytes::from).collect();
        let mut backoff = Duration::from_millis(20);
        let mut warned = None::<Instant>;
        loop {
            if !self.still_owned(partition, epoch) {
                return Err(ShipError::Fenced(format!(
                    "partition {partition}: ownership at epoch {epoch} ended"
                )));
            }
            match self.objects.put(&key, bytes.clone()).await {
                Ok(_) => {
                    self.failpoint_hold_confirm().await;
                    break;
                }
                Err(e) => {
                    if warned.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(partition, error = %e, "cannot store the log's tail; retrying (writes wait)");
                        warned = Some(Instant::now());
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        let (tx, rx) = oneshot::channel();
        self.confirming.borrow_mut().push((partition, epoch, tx));
        self.confirm_wake.notify_one();
        match rx.await {
            Ok(true) => {
                self.count(|s| s.shipped += 1);
                Ok(())
            }
            _ => Err(ShipError::Fenced(format!(
                "partition {partition}: epoch {epoch} is no longer the owner's in etcd"
            ))),
        }
    }

    /// Tests only (`RINGMAIL_FAILPOINTS=1`): while `<data>/FAILPOINT-hold-confirm` exists, a
    /// stored batch waits before its epoch check, so a test can pause the process there and
    /// let another node take over (docs/cluster.md, fencing).
    async fn failpoint_hold_confirm(&self) {
        if !self.failpoints {
            return;
        }
        let path = self.data_dir.join("FAILPOINT-hold-confirm");
        let mut said = false;
        while path.exists() {
            if !said {
                tracing::warn!("failpoint: holding a stored batch before its epoch check");
                said = true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Answers the stored batches: one linearizable etcd read for all that wait.
    async fn confirmer(self: Rc<Self>) {
        loop {
            let waiting = std::mem::take(&mut *self.confirming.borrow_mut());
            if waiting.is_empty() {
                self.confirm_wake.notified().await;
                continue;
            }
            let asks: Vec<(u32, u64)> = waiting.iter().map(|(p, e, _)| (*p, *e)).collect();
            let answer = loop {
                if !self.coord.lease_alive() {
                    break vec![false; asks.len()];
                }
                match self.coord.confirm(&asks).await {
                    Ok(v) => break v,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot confirm the owner's epoch; retrying (writes wait)");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            };
            for ((p, e, tx), ok) in waiting.into_iter().zip(answer) {
                if !ok {
                    self.lost(p, e);
                }
                let _ = tx.send(ok);
            }
        }
    }

    /// The ownership of `partition` at `epoch` ended without this node giving it up.
    fn lost(self: &Rc<Self>, partition: u32, epoch: u64) {
        let was = self
            .owned
            .borrow()
            .get(&partition)
            .is_some_and(|o| o.epoch == epoch);
        if !was {
            return;
        }
        self.owned.borrow_mut().remove(&partition);
        self.published.borrow_mut().remove(&partition);
        self.count(|s| s.fenced += 1);
        self.update_status();
        tracing::warn!(
            partition,
            epoch,
            "ownership lost: closing the partition here"
        );
        let node = self.node.borrow().clone();
        if let Some(node) = node {
            let closing = self.closing.clone();
            closing.set(closing.get() + 1);
            tokio::task::spawn_local(async move {
                let _ = node.close_partition(PartitionId(partition)).await;
                closing.set(closing.get() - 1);
            });
        }
    }

    async fn ownership_loop(self: Rc<Self>) {
        loop {
            if let Err(e) = self.reconcile().await {
                tracing::warn!(error = %e, "cannot reconcile partition ownership; retrying");
            }
            self.update_status();
            tokio::time::sleep(TICK).await;
        }
    }

    /// Where each partition belongs now.
    fn placement(
        &self,
        members: &BTreeSet<String>,
        draining: &BTreeSet<String>,
        assigned: &BTreeMap<u32, String>,
    ) -> Vec<Option<String>> {
        let live: Vec<&String> = members.iter().filter(|m| !draining.contains(*m)).collect();
        let live: Vec<&String> = if live.is_empty() {
            members.iter().collect()
        } else {
            live
        };
        (0..self.partitions)
            .map(|p| {
                if let Some(a) = assigned.get(&p).filter(|a| members.contains(*a)) {
                    return Some(a.clone());
                }
                live.iter()
                    .max_by_key(|n| rendezvous(p, n))
                    .map(|n| (*n).clone())
            })
            .collect()
    }

    async fn reconcile(self: &Rc<Self>) -> Result<()> {
        if self.stopping.get() {
            return Ok(());
        }
        if !self.coord.lease_alive() {
            // Past the lease, another node may own everything this one had.
            let owned: Vec<(u32, u64)> = self
                .owned
                .borrow()
                .iter()
                .map(|(p, o)| (*p, o.epoch))
                .collect();
            for (p, e) in owned {
                self.lost(p, e);
            }
            // Gone for good (etcd said so): join again with a new lease, and own partitions
            // again from the next tick on. A node that was only cut off keeps trying its
            // lease until etcd answers either way.
            // Not before the lost partitions are closed here: a takeover of one of them
            // would rebuild its directory while the old copy still writes there.
            if self.coord.lease_expired()
                && self.owned.borrow().is_empty()
                && self.closing.get() == 0
            {
                self.coord.rejoin().await?;
                self.update_status();
                return Ok(());
            }
            return Err(ClusterError::Etcd(
                "this node's lease is not confirmed".into(),
            ));
        }
        let members = self.coord.members().await?;
        let draining = self.coord.draining().await?;
        let assigned = self.coord.assignments().await?;
        let owners = self.coord.owners().await?;
        let place = self.placement(&members, &draining, &assigned);
        let me = self.cfg.node.clone();
        for p in 0..self.partitions {
            let mine = self.owned.borrow().get(&p).map(|o| o.epoch);
            let owner = owners.get(&p);
            match mine {
                Some(epoch) => {
                    let current =
                        owner.is_some_and(|o| o.epoch == epoch && o.lease == self.coord.lease());
                    if !current {
                        self.lost(p, epoch);
                    } else if place[p as usize].as_deref().is_some_and(|n| n != me) {
                        // Planned move: hand it over cleanly.
                        self.release(p, epoch).await;
                    }
                }
                None if owner.is_none() && place[p as usize].as_deref() == Some(me.as_str()) => {
                    if let Err(e) = self.take_over(p).await {
                        tracing::warn!(partition = p, error = %e, "takeover failed; retrying");
                    }
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Closes `partition` here (flushed, shipped, checkpointed) and releases the owner key,
    /// so the node it belongs on can take it at once.
    async fn release(self: &Rc<Self>, partition: u32, epoch: u64) {
        let node = self.node.borrow().clone();
        if let Some(node) = node {
            if let Err(e) = node.close_partition(PartitionId(partition)).await {
                tracing::warn!(partition, error = %e, "closing a partition to release it");
            }
        }
        // The close's checkpoint (and any sealed segment) is published before the next
        // owner may start, so it opens from the checkpoint instead of the whole tail.
        let pending = self
            .owned
            .borrow()
            .get(&partition)
            .map(|o| o.pending.clone());
        if let Some(pending) = pending {
            let deadline = Instant::now() + Duration::from_secs(30);
            while pending.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        self.owned.borrow_mut().remove(&partition);
        self.published.borrow_mut().remove(&partition);
        match self.coord.release(partition, epoch, true).await {
            Ok(_) => {
                self.count(|s| s.releases += 1);
                tracing::info!(partition, epoch, "released");
            }
            Err(e) => tracing::warn!(partition, error = %e, "releasing: the lease will end it"),
        }
        self.update_status();
    }

    /// Acquires `partition`, rebuilds it from object storage, publishes the takeover and
    /// opens it on its shard.
    async fn take_over(self: &Rc<Self>, partition: u32) -> Result<()> {
        let Some(epoch) = self.coord.acquire(partition).await? else {
            return Ok(());
        };
        let started = Instant::now();
        self.owned.borrow_mut().insert(
            partition,
            Owned {
                epoch,
                pending: Arc::new(AtomicUsize::new(0)),
            },
        );
        match self.open_owned(partition, epoch).await {
            Ok(opened) => {
                // A move if the previous owner handed it over; a failover if its lease ended.
                let handed_over = match opened.previous {
                    0 => None,
                    // Unknown (etcd did not answer) counts as neither.
                    prev => match self.coord.released_epoch(partition).await {
                        Ok(r) => Some(r == Some(prev)),
                        Err(_) => None,
                    },
                };
                self.count(|s| {
                    s.takeovers += 1;
                    match handed_over {
                        Some(true) => s.moves_in += 1,
                        Some(false) => s.failovers += 1,
                        None => {}
                    }
                });
                self.update_status();
                tracing::info!(
                    partition,
                    epoch,
                    failover = handed_over == Some(false),
                    took_ms = started.elapsed().as_millis() as u64,
                    checkpoint = opened.checkpoint,
                    sealed_segments = opened.segments,
                    fetched_segments = opened.fetched,
                    tail_chunks = opened.chunks,
                    "partition taken over"
                );
                Ok(())
            }
            Err(e) => {
                self.owned.borrow_mut().remove(&partition);
                // Never served: not a handover the next owner should count as a move.
                let _ = self.coord.release(partition, epoch, false).await;
                Err(e)
            }
        }
    }

    async fn open_owned(self: &Rc<Self>, partition: u32, epoch: u64) -> Result<Opened> {
        let prefix = self.objects.prefix().to_string();
        let (manifest, serial) = match self.coord.manifest_pointer(partition).await? {
            Some((serial, key)) => {
                let b = self.objects.get_raw(&key).await?;
                let m = Manifest::decode(&b).map_err(|e| ClusterError::Damaged {
                    key: key.clone(),
                    detail: e.to_string(),
                })?;
                (m, serial)
            }
            // No owner ever published: none ever acknowledged anything.
            None => (Manifest::empty(partition, epoch), 0),
        };
        // The tail: each range's chunks, fetched together, kept while they chain.
        let mut chunks: Vec<Chunk> = Vec::new();
        for (range_epoch, from, to) in manifest.tail_ranges() {
            let firsts = self.objects.chunk_firsts(partition, range_epoch).await?;
            let want = candidates(from, to, &firsts);
            let fetched = futures_util::future::try_join_all(want.iter().map(|&f| {
                let key = ObjectKey::Chunk {
                    epoch: range_epoch,
                    first_lsn: f,
                }
                .key(&prefix, partition);
                let objects = self.objects.clone();
                async move {
                    let b = objects.get_raw(&key).await?;
                    Chunk::decode(&b).map_err(|e| ClusterError::Damaged {
                        key,
                        detail: e.to_string(),
                    })
                }
            }))
            .await?;
            let spans: Vec<(u64, u64)> =
                fetched.iter().map(|c| (c.first_lsn, c.last_lsn)).collect();
            let order = chain(from, &spans);
            let reached = order.last().map_or(from, |&i| spans[i].1 + 1);
            if let Some(to) = to {
                if reached < to {
                    return Err(ClusterError::Damaged {
                        key: chunk_prefix(&prefix, partition, range_epoch),
                        detail: format!("the tail has a gap: LSNs {reached}..{to} are missing"),
                    });
                }
            }
            let mut fetched: Vec<Option<Chunk>> = fetched.into_iter().map(Some).collect();
            for i in order {
                if let Some(c) = fetched[i].take() {
                    if to.is_none_or(|t| c.first_lsn < t) {
                        chunks.push(c);
                    }
                }
            }
        }
        let checkpoint = match &manifest.checkpoint {
            Some((_, r)) => Some(self.objects.get(r).await?.to_vec()),
            None => None,
        };
        // Only the segments recovery replays (from the checkpoint's position on) are fetched
        // now, and only those not cached on the disk already; older ones are fetched when a
        // read needs one (`fetch_segment`), so opening does not grow with the history.
        let replay_from = match &checkpoint {
            Some(b) => {
                ringmail_engine::remote::checkpoint_log_segment(b, partition).map_err(|e| {
                    ClusterError::Damaged {
                        key: format!("partition {partition}'s checkpoint"),
                        detail: e.to_string(),
                    }
                })?
            }
            None => 0,
        };
        let dir = ringmail_engine::remote::local_dir(&self.data_dir, partition);
        let mut segments = Vec::new();
        let mut remote = BTreeMap::new();
        for s in &manifest.segments {
            let local = dir.join(ringmail_engine::internals::format::segment_file(
                s.epoch, s.seq,
            ));
            let cached = std::fs::metadata(&local).is_ok_and(|m| m.len() == s.object.len);
            if s.seq >= replay_from && !cached {
                segments.push((s.clone(), self.objects.get(&s.object).await?.to_vec()));
            } else {
                remote.insert(s.seq, (s.epoch, s.object.len));
            }
        }
        let opened = Opened {
            // A partition nobody published yet had no previous owner.
            previous: if serial == 0 { 0 } else { manifest.epoch },
            checkpoint: checkpoint.is_some(),
            segments: manifest.segments.len(),
            fetched: segments.len(),
            chunks: chunks.len(),
        };
        let m = manifest.clone();
        let mat = tokio::task::spawn_blocking(move || {
            materialize(
                &dir,
                &m,
                Materials {
                    checkpoint,
                    segments,
                    chunks,
                },
            )
        })
        .await
        .map_err(|e| ClusterError::Config(format!("materializing: {e}")))?
        .map_err(|e| ClusterError::Damaged {
            key: format!("partition {partition}"),
            detail: e.to_string(),
        })?;
        // The takeover manifest: this owner's chunks continue the log from here. Ranges
        // that hold nothing are dropped.
        let mut next = manifest.clone();
        next.epoch = epoch;
        next.serial = serial + 1;
        next.created_unix = unix_now();
        next.tail.retain(|r| r.from_lsn < mat.next_lsn);
        next.tail.push(TailRange {
            epoch,
            from_lsn: mat.next_lsn,
        });
        if let Some(&(seq, _)) = mat.rebuilt.last() {
            next.next_segment = next.next_segment.max(seq + 1);
        }
        let key = ObjectKey::Manifest {
            epoch,
            serial: next.serial,
        }
        .key(&prefix, partition);
        self.objects.put(&key, Bytes::from(next.encode())).await?;
        self.coord
            .publish(partition, epoch, next.serial, &key)
            .await?;
        self.count(|s| s.published += 1);
        let own_first = mat.rebuilt.last().map_or(next.tail_segment, |r| r.0 + 1);
        let serial = next.serial;
        self.published.borrow_mut().insert(
            partition,
            Published {
                manifest: next,
                serial,
                first_lsn_of: BTreeMap::from([(own_first, mat.next_lsn)]),
            },
        );
        let node = self
            .node
            .borrow()
            .clone()
            .ok_or_else(|| ClusterError::Config("no node to open partitions on".into()))?;
        let commands = self.commands.clone();
        let pending = self
            .owned
            .borrow()
            .get(&partition)
            .map(|o| o.pending.clone())
            .ok_or(ClusterError::Fenced { partition, epoch })?;
        let in_flight = self.cfg.ship_in_flight.max(1);
        let interval = Duration::from_millis(self.cfg.ship_interval_ms);
        let report = node
            .open_partition(
                PartitionId(partition),
                epoch,
                Box::new(move || {
                    let mut t = Tail::new(Rc::new(ClusterSink {
                        partition,
                        epoch,
                        commands,
                        pending,
                    }));
                    t.remote_segments = remote;
                    t.in_flight = in_flight;
                    t.interval = interval;
                    // A batch held back by the interval is not a sign of a store that is down.
                    t.refuse_after += interval;
                    t.ack_timeout += interval;
                    t
                }),
            )
            .await
            .map_err(|e| ClusterError::Config(format!("opening partition {partition}: {e}")))?;
        // Where this owner's log really starts: the tail can start there once everything
        // before it is in sealed segments. Segments between hold no records (an earlier
        // owner's, opened and closed before it wrote): `advance_tail` steps over them.
        if let Some(p) = self.published.borrow_mut().get_mut(&partition) {
            p.first_lsn_of
                .entry(report.writer_segment)
                .or_insert(report.writer_lsn);
        }
        if let Err(e) = self.coord.mark_serving(partition, epoch).await {
            tracing::warn!(partition, error = %e, "cannot say in etcd that the partition is served");
        }
        // The segments rebuilt from an earlier owner's chunks are stored whole, so the tail
        // can start after them (in the background: the partition serves meanwhile).
        if !mat.rebuilt.is_empty() {
            let me = self.clone();
            let dir = ringmail_engine::remote::local_dir(&self.data_dir, partition);
            tokio::task::spawn_local(async move {
                for (seq, seg_epoch) in mat.rebuilt {
                    let path = dir.join(ringmail_engine::internals::format::segment_file(
                        seg_epoch, seq,
                    ));
                    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    let s = Sealed {
                        seq,
                        epoch: seg_epoch,
                        path,
                        len,
                        next_first_lsn: 0,
                    };
                    if let Err(e) = me.store_sealed(partition, epoch, s).await {
                        tracing::warn!(partition, segment = seq, error = %e, "a rebuilt segment was not stored; its chunks stay the tail");
                        return;
                    }
                }
            });
        }
        Ok(opened)
    }

    /// Fetches sealed segment `seq` of an owned partition into `path` (a read needs it):
    /// written beside it, synced, then renamed into place.
    async fn fetch_segment(self: &Rc<Self>, partition: u32, seq: u64, path: PathBuf) -> Result<()> {
        let r = self
            .published
            .borrow()
            .get(&partition)
            .and_then(|p| p.manifest.segments.iter().find(|s| s.seq == seq).cloned())
            .ok_or_else(|| ClusterError::NotFound {
                key: format!("segment {seq} of partition {partition}"),
            })?;
        let bytes = self.objects.get(&r.object).await?;
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let tmp = path.with_extension("fetch");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_data()?;
            std::fs::rename(&tmp, &path)
        })
        .await
        .map_err(|e| ClusterError::Config(e.to_string()))?
        .map_err(|e| ClusterError::Config(format!("writing a fetched segment: {e}")))?;
        tracing::info!(
            partition,
            segment = seq,
            "fetched a sealed segment a read needed"
        );
        Ok(())
    }

    fn publish_lock(&self, partition: u32) -> Rc<tokio::sync::Mutex<()>> {
        self.publish_locks
            .borrow_mut()
            .entry(partition)
            .or_default()
            .clone()
    }

    /// Changes the partition's manifest with `change` and publishes it (stored, then named
    /// in etcd under this node's epoch). One at a time per partition.
    async fn update_manifest(
        self: &Rc<Self>,
        partition: u32,
        epoch: u64,
        change: impl FnOnce(&mut Published),
    ) -> Result<()> {
        let lock = self.publish_lock(partition);
        let _held = lock.lock().await;
        let mut p = self
            .published
            .borrow()
            .get(&partition)
            .filter(|p| p.manifest.epoch == epoch)
            .cloned()
            .ok_or(ClusterError::Fenced { partition, epoch })?;
        change(&mut p);
        advance_tail(&mut p);
        tracing::debug!(
            partition,
            tail_segment = p.manifest.tail_segment,
            segments = ?p.manifest.segments.iter().map(|s| s.seq).collect::<Vec<_>>(),
            tail_ranges = p.manifest.tail.len(),
            first_lsn_of = ?p.first_lsn_of,
            "manifest"
        );
        p.serial += 1;
        p.manifest.serial = p.serial;
        p.manifest.created_unix = unix_now();
        let key = ObjectKey::Manifest {
            epoch,
            serial: p.serial,
        }
        .key(self.objects.prefix(), partition);
        self.objects
            .put(&key, Bytes::from(p.manifest.encode()))
            .await?;
        match self.coord.publish(partition, epoch, p.serial, &key).await {
            Ok(()) => {}
            Err(e @ ClusterError::Fenced { .. }) => {
                self.lost(partition, epoch);
                return Err(e);
            }
            Err(e) => return Err(e),
        }
        self.count(|s| s.published += 1);
        if self.still_owned(partition, epoch) {
            self.published.borrow_mut().insert(partition, p);
        }
        Ok(())
    }

    /// Stores a sealed segment whole and names it in the manifest.
    async fn store_sealed(self: &Rc<Self>, partition: u32, epoch: u64, s: Sealed) -> Result<()> {
        if !self.still_owned(partition, epoch) {
            return Ok(());
        }
        let (path, len, buffer) = (s.path.clone(), s.len, self.upload_buffer.clone());
        // Read (and its CRC computed) off the runtime: the disk must not stall the other
        // partitions' acknowledgements or the lease's keep-alive.
        let (bytes, crc) = tokio::task::spawn_blocking(move || {
            let b = buffer.read(&path, len)?;
            let crc = crc32fast::hash(&b);
            Ok::<_, std::io::Error>((b, crc))
        })
        .await
        .map_err(|e| ClusterError::Config(e.to_string()))?
        .map_err(|e| ClusterError::Config(format!("reading {:?}: {e}", s.path)))?;
        let key = ObjectKey::Segment { epoch, seq: s.seq }.key(self.objects.prefix(), partition);
        let object = self.objects.put_with_crc(&key, bytes, crc).await?;
        tracing::debug!(
            partition,
            segment = s.seq,
            len,
            next_first_lsn = s.next_first_lsn,
            "sealed segment stored"
        );
        self.update_manifest(partition, epoch, |p| {
            if s.next_first_lsn > 0 {
                p.first_lsn_of.insert(s.seq + 1, s.next_first_lsn);
            }
            let m = &mut p.manifest;
            m.segments.retain(|x| x.seq != s.seq);
            m.segments.push(SegmentRef {
                seq: s.seq,
                epoch: s.epoch,
                object,
            });
            m.segments.sort_by_key(|x| x.seq);
            m.next_segment = m.next_segment.max(s.seq + 1);
        })
        .await
    }

    /// Stores a checkpoint and names it in the manifest, with only the segments it needs.
    async fn store_checkpoint(
        self: &Rc<Self>,
        partition: u32,
        epoch: u64,
        c: Checkpointed,
    ) -> Result<()> {
        if !self.still_owned(partition, epoch) {
            return Ok(());
        }
        let path = c.path.clone();
        let bytes = match tokio::task::spawn_blocking(move || std::fs::read(&path)).await {
            Ok(Ok(b)) => b,
            // Replaced by a newer checkpoint already, which publishes itself.
            _ => return Ok(()),
        };
        let key = ObjectKey::Checkpoint { epoch, seq: c.seq }.key(self.objects.prefix(), partition);
        let object = self.objects.put(&key, Bytes::from(bytes)).await?;
        self.update_manifest(partition, epoch, |p| {
            let m = &mut p.manifest;
            m.checkpoint = Some((c.seq, object));
            m.segments
                .retain(|x| x.seq >= c.log_segment || c.live.contains(&x.seq));
        })
        .await
    }

    /// Deletes, now and then, the objects of owned partitions that no published manifest
    /// names, once they are older than the grace period.
    async fn collector(self: Rc<Self>) {
        let every = Duration::from_secs(self.cfg.gc_interval_secs.max(1));
        loop {
            tokio::time::sleep(every).await;
            let owned: Vec<(u32, u64)> = self
                .owned
                .borrow()
                .iter()
                .map(|(p, o)| (*p, o.epoch))
                .collect();
            for (p, epoch) in owned {
                if let Err(e) = self.collect(p, epoch).await {
                    tracing::warn!(partition = p, error = %e, "garbage collection");
                }
            }
        }
    }

    async fn collect(self: &Rc<Self>, partition: u32, epoch: u64) -> Result<()> {
        let Some(p) = self.published.borrow().get(&partition).cloned() else {
            return Ok(());
        };
        if p.manifest.epoch != epoch {
            return Ok(());
        }
        let prefix = self.objects.prefix().to_string();
        let listed = self
            .objects
            .list_dated(&ringmail_engine::remote::keys::partition_prefix(
                &prefix, partition,
            ))
            .await?;
        let now = unix_now() as i64;
        let grace = self.cfg.gc_grace_secs as i64;
        let named = named_objects(&p.manifest, &prefix, partition, &listed);
        let mut deleted = 0;
        for (key, _, stored) in listed {
            if named.contains(&key) || now - stored < grace {
                continue;
            }
            // Only what this layout names; anything else under the prefix is left alone.
            if ObjectKey::parse(&prefix, partition, &key).is_none() {
                continue;
            }
            if !self.still_owned(partition, epoch) {
                return Ok(());
            }
            self.objects.delete(&key).await?;
            deleted += 1;
        }
        if deleted > 0 {
            self.count(|s| s.collected += deleted);
            tracing::info!(partition, deleted, "garbage collected");
        }
        Ok(())
    }
}

/// A publication counted as pending until this drops (when the control plane is done
/// with it, or the command is dropped unprocessed).
struct PendingGuard(Arc<AtomicUsize>);

impl PendingGuard {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Moves the tail's start past every segment the manifest now holds whole.
fn advance_tail(p: &mut Published) {
    let m = &mut p.manifest;
    let held: BTreeSet<u64> = m.segments.iter().map(|s| s.seq).collect();
    let mut x = m.tail_segment;
    loop {
        while held.contains(&x) {
            x += 1;
        }
        // A segment no record was written in is never sealed: if the next segment whose
        // first LSN is known starts at the same LSN as this one, there is nothing between.
        match (p.first_lsn_of.get(&x), p.first_lsn_of.range(x + 1..).next()) {
            (Some(a), Some((&y, b))) if a == b => x = y,
            _ => break,
        }
    }
    if x == m.tail_segment {
        return;
    }
    let Some(&from) = p.first_lsn_of.get(&x) else {
        return;
    };
    m.tail_segment = x;
    m.next_segment = m.next_segment.max(x);
    // Ranges that end at or before the new start hold nothing any more.
    let ends: Vec<Option<u64>> = m.tail_ranges().map(|(_, _, end)| end).collect();
    let keep: Vec<TailRange> = m
        .tail
        .iter()
        .zip(ends)
        .filter(|(_, end)| end.is_none_or(|e| e > from))
        .map(|(r, _)| *r)
        .collect();
    m.tail = keep;
    if let Some(first) = m.tail.first_mut() {
        first.from_lsn = first.from_lsn.max(from);
    }
    p.first_lsn_of.retain(|&seq, _| seq > x);
}

/// The keys a manifest needs: itself, its checkpoint and segments, and the chunks of its
/// tail (from the one holding each range's start).
fn named_objects(
    m: &Manifest,
    prefix: &str,
    partition: u32,
    listed: &[(String, u64, i64)],
) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    named.insert(
        ObjectKey::Manifest {
            epoch: m.epoch,
            serial: m.serial,
        }
        .key(prefix, partition),
    );
    if let Some((_, o)) = &m.checkpoint {
        named.insert(o.key.clone());
    }
    for s in &m.segments {
        named.insert(s.object.key.clone());
    }
    for (epoch, from, to) in m.tail_ranges() {
        let firsts = crate::objects::chunk_firsts_in(
            listed.iter().map(|(k, _, _)| k.as_str()),
            prefix,
            partition,
            epoch,
        );
        for f in candidates(from, to, &firsts) {
            named.insert(
                ObjectKey::Chunk {
                    epoch,
                    first_lsn: f,
                }
                .key(prefix, partition),
            );
        }
    }
    named
}

/// Rendezvous (highest random weight) hashing: the node that ranks first for a partition.
fn rendezvous(partition: u32, node: &str) -> u64 {
    // FNV-1a over the node's name and the partition: stable across builds and machines.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain(partition.to_le_bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // A final mix, so that names differing in one byte spread well.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(seq: u64) -> SegmentRef {
        SegmentRef {
            seq,
            epoch: 2,
            object: ringmail_engine::remote::ObjectRef {
                key: format!("s{seq}"),
                len: 1,
                crc: 0,
            },
        }
    }

    /// An earlier owner's segment 1 held no record (it was opened and closed before any
    /// write); this owner writes from segment 2 at the same LSN. Once 2 and 3 are sealed the
    /// tail starts at 4: it once stayed at 1 for ever, and every takeover fetched every
    /// chunk since.
    #[test]
    fn the_tail_steps_over_segments_that_hold_no_records() {
        let mut m = Manifest::empty(0, 2);
        m.tail_segment = 1;
        m.tail = vec![TailRange {
            epoch: 2,
            from_lsn: 1,
        }];
        let mut p = Published {
            manifest: m,
            serial: 1,
            first_lsn_of: BTreeMap::from([(1, 1), (2, 1)]),
        };
        p.manifest.segments.push(seg(2));
        p.first_lsn_of.insert(3, 500);
        advance_tail(&mut p);
        assert_eq!(p.manifest.tail_segment, 3);
        p.manifest.segments.push(seg(3));
        p.first_lsn_of.insert(4, 900);
        advance_tail(&mut p);
        assert_eq!(p.manifest.tail_segment, 4);
        assert_eq!(p.manifest.tail[0].from_lsn, 900);
        // A gap of a segment that did hold records is not stepped over.
        let mut q = Published {
            manifest: Manifest::empty(0, 2),
            serial: 1,
            first_lsn_of: BTreeMap::from([(1, 1), (2, 40)]),
        };
        q.manifest.tail_segment = 1;
        q.manifest.segments.push(seg(2));
        q.first_lsn_of.insert(3, 90);
        advance_tail(&mut q);
        assert_eq!(q.manifest.tail_segment, 1);
    }

    #[test]
    fn rendezvous_spreads_partitions_and_a_loss_moves_only_the_lost_nodes() {
        let nodes = ["n1", "n2", "n3"];
        fn first(p: u32, among: &[&'static str]) -> &'static str {
            among.iter().max_by_key(|n| rendezvous(p, n)).unwrap()
        }
        let mut count = BTreeMap::new();
        for p in 0..300 {
            *count.entry(first(p, &nodes)).or_insert(0) += 1;
        }
        for n in nodes {
            assert!((70..=130).contains(&count[n]), "{count:?}");
        }
        for p in 0..300 {
            let before = first(p, &nodes);
            let after = first(p, &["n1", "n3"]);
            if before != "n2" {
                assert_eq!(
                    before, after,
                    "partition {p} moved although its node stayed"
                );
            }
        }
    }
}
