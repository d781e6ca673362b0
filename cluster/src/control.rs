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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use ringmail_engine::remote::chunk::{candidates, chain};
use ringmail_engine::remote::keys::chunk_prefix;
use ringmail_engine::remote::{materialize, Chunk, Manifest, Materials, ObjectKey, TailRange};
use ringmail_engine::{NodeHandle, PartitionId, ShipError, ShipFuture, Tail, TailSink};

use crate::config::ClusterConfig;
use crate::coordinator::Coordinator;
use crate::error::{ClusterError, Result};
use crate::objects::Objects;

/// How often ownership is reconciled with etcd.
const TICK: Duration = Duration::from_millis(500);

enum Command {
    Ship {
        partition: u32,
        epoch: u64,
        first_lsn: u64,
        bytes: Vec<u8>,
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
    pub releases: u64,
    pub fenced: u64,
    /// Batches shipped (tail chunks stored and confirmed).
    pub shipped: u64,
}

/// A running control plane: its thread, and the channel the shards reach it by.
pub struct ControlPlane {
    commands: async_channel::Sender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
    status: Arc<Mutex<Status>>,
    partitions: u32,
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
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<u32>>();
        let st = status.clone();
        let sink_tx = tx.clone();
        let thread = std::thread::Builder::new()
            .name("ringmail-cluster".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
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
                    let plane = match Plane::join(cfg, data_dir, partitions, st, sink_tx).await {
                        Ok(p) => {
                            let _ = ready_tx.send(Ok(p.partitions));
                            Rc::new(p)
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    plane.serve(rx).await;
                });
            })
            .map_err(|e| ClusterError::Config(format!("starting the control plane: {e}")))?;
        let partitions = ready_rx.recv().map_err(|_| ClusterError::Stopped)??;
        Ok(ControlPlane {
            commands: tx,
            thread: Some(thread),
            status,
            partitions,
        })
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
}

impl TailSink for ClusterSink {
    fn ship(&self, chunk: Chunk) -> ShipFuture {
        let (tx, rx) = oneshot::channel();
        let cmd = Command::Ship {
            partition: self.partition,
            epoch: self.epoch,
            first_lsn: chunk.first_lsn,
            bytes: chunk.encode(),
            reply: tx,
        };
        let sent = self.commands.try_send(cmd).is_ok();
        Box::pin(async move {
            if !sent {
                return Err(ShipError::Fenced("the control plane has stopped".into()));
            }
            rx.await
                .unwrap_or_else(|_| Err(ShipError::Fenced("the control plane has stopped".into())))
        })
    }
}

struct Owned {
    epoch: u64,
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
                    bytes,
                    reply,
                } => {
                    let me = self.clone();
                    tokio::task::spawn_local(async move {
                        let r = me.ship(partition, epoch, first_lsn, bytes).await;
                        let _ = reply.send(r);
                    });
                }
                Command::Run(node) => {
                    *self.node.borrow_mut() = Some(node);
                    if ticker.is_none() {
                        ticker = Some(tokio::task::spawn_local(self.clone().ownership_loop()));
                    }
                }
                Command::Stop(done) => {
                    self.stopping.set(true);
                    if let Some(t) = ticker.take() {
                        t.abort();
                    }
                    let owned: Vec<(u32, u64)> = self
                        .owned
                        .borrow()
                        .iter()
                        .map(|(p, o)| (*p, o.epoch))
                        .collect();
                    for (p, epoch) in owned {
                        self.release(p, epoch).await;
                    }
                    let _ = done.send(());
                    break;
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
        bytes: Vec<u8>,
    ) -> std::result::Result<(), ShipError> {
        let key = ObjectKey::Chunk { epoch, first_lsn }.key(self.objects.prefix(), partition);
        let bytes = Bytes::from(bytes);
        let mut backoff = Duration::from_millis(20);
        let mut warned = None::<Instant>;
        loop {
            if !self.still_owned(partition, epoch) {
                return Err(ShipError::Fenced(format!(
                    "partition {partition}: ownership at epoch {epoch} ended"
                )));
            }
            match self.objects.put(&key, bytes.clone()).await {
                Ok(_) => break,
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
        self.count(|s| s.fenced += 1);
        self.update_status();
        tracing::warn!(
            partition,
            epoch,
            "ownership lost: closing the partition here"
        );
        let node = self.node.borrow().clone();
        if let Some(node) = node {
            tokio::task::spawn_local(async move {
                let _ = node.close_partition(PartitionId(partition)).await;
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
        self.owned.borrow_mut().remove(&partition);
        match self.coord.release(partition, epoch).await {
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
        self.owned.borrow_mut().insert(partition, Owned { epoch });
        match self.open_owned(partition, epoch).await {
            Ok(()) => {
                self.count(|s| s.takeovers += 1);
                self.update_status();
                tracing::info!(
                    partition,
                    epoch,
                    took_ms = started.elapsed().as_millis() as u64,
                    "partition taken over"
                );
                Ok(())
            }
            Err(e) => {
                self.owned.borrow_mut().remove(&partition);
                let _ = self.coord.release(partition, epoch).await;
                Err(e)
            }
        }
    }

    async fn open_owned(self: &Rc<Self>, partition: u32, epoch: u64) -> Result<()> {
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
            let listed = self
                .objects
                .list(&chunk_prefix(&prefix, partition, range_epoch))
                .await?;
            let firsts: Vec<u64> = listed
                .iter()
                .filter_map(|(k, _)| match ObjectKey::parse(&prefix, partition, k) {
                    Some(ObjectKey::Chunk { first_lsn, .. }) => Some(first_lsn),
                    _ => None,
                })
                .collect();
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
        let mut segments = Vec::new();
        for s in &manifest.segments {
            segments.push((s.clone(), self.objects.get(&s.object).await?.to_vec()));
        }
        let dir = ringmail_engine::remote::local_dir(&self.data_dir, partition);
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
        let node = self
            .node
            .borrow()
            .clone()
            .ok_or_else(|| ClusterError::Config("no node to open partitions on".into()))?;
        let commands = self.commands.clone();
        node.open_partition(
            PartitionId(partition),
            epoch,
            Box::new(move || {
                Tail::new(Rc::new(ClusterSink {
                    partition,
                    epoch,
                    commands,
                }))
            }),
        )
        .await
        .map_err(|e| ClusterError::Config(format!("opening partition {partition}: {e}")))?;
        Ok(())
    }
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
