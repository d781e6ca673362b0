//! Membership, ownership and publication through etcd.
//!
//! A node joins with a lease (TTL `lease_ttl_secs`) kept alive in the background, and puts
//! its member key under it. It owns a partition by creating the partition's owner key under
//! the same lease, in a transaction that succeeds only if the key does not exist. The key's
//! create revision is the ownership **epoch**: every change of owner creates the key anew,
//! so epochs only grow. When the node dies, its lease expires, etcd deletes its keys, and
//! another node can create them.
//!
//! A lease alone does not stop a paused owner (etcd's own documentation says so), so the
//! epoch is also a fencing token: publishing a manifest is a transaction conditioned on
//! the owner key's create revision, and an owner acknowledges a write only after
//! [`Coordinator::confirm`] read its epoch back *after* the write reached object storage.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};

use crate::config::ClusterConfig;
use crate::error::{ClusterError, Result};
use crate::etcd_keys::EtcdKeys;

/// Who owns a partition, as etcd says now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub node: String,
    pub epoch: u64,
    pub lease: i64,
}

/// Up to this many partitions' owner keys are read one by one in a transaction when
/// confirming epochs (etcd allows 128 operations per transaction by default).
const CONFIRM_TXN_KEYS: usize = 64;

/// A node's view of its own lease: when etcd last confirmed it.
#[derive(Debug)]
struct LeaseState {
    /// When the keep-alive last answered with a live lease.
    confirmed: Instant,
    /// etcd answered that the lease no longer exists: every ownership under it has ended.
    expired: bool,
}

/// One client per etcd endpoint, and the one in use: a request that finds its member
/// unreachable (or without a leader) moves on to the next, so losing a member costs a
/// retry, not an error.
struct Endpoints {
    clients: Vec<Client>,
    current: AtomicUsize,
}

impl Endpoints {
    /// One lazy client per endpoint: nothing is dialled until the first request.
    async fn connect(endpoints: &[String]) -> Result<Endpoints> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2))
            .with_require_leader(true);
        let mut clients = Vec::new();
        for ep in endpoints {
            clients.push(Client::connect([ep], Some(opts.clone())).await?);
        }
        Ok(Endpoints {
            clients,
            current: AtomicUsize::new(0),
        })
    }

    fn client(&self) -> (usize, Client) {
        let i = self.current.load(Ordering::Relaxed) % self.clients.len();
        (i, self.clients[i].clone())
    }

    /// The member at `failed` did not answer: use the next one (unless another request
    /// moved on already).
    fn failed(&self, failed: usize) {
        let _ = self.current.compare_exchange(
            failed,
            (failed + 1) % self.clients.len(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

pub struct Coordinator {
    etcd: Arc<Endpoints>,
    keys: EtcdKeys,
    node: String,
    /// The lease this node's keys live under (a new one after the last expired).
    lease: std::sync::atomic::AtomicI64,
    ttl: Duration,
    state: Arc<Mutex<LeaseState>>,
    /// Set to stop the current lease's keep-alive thread.
    keepalive: Mutex<Arc<AtomicBool>>,
    /// etcd's client URLs (the keep-alive thread connects on its own).
    endpoints: Vec<String>,
    /// The member key's value, less its lease (for a rejoin).
    member: Mutex<Option<serde_json::Value>>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("node", &self.node)
            .field("lease", &self.lease())
            .finish()
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.stop_keepalive();
    }
}

impl Coordinator {
    /// Connects, takes a lease and registers this node as a member. Must run inside a
    /// tokio runtime (the keep-alive is a task of it).
    pub async fn join(cfg: &ClusterConfig) -> Result<Coordinator> {
        let me = Self::observe(cfg).await?;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut member = serde_json::json!({ "started": started });
        if let Some(a) = cfg.advertised() {
            member["internal"] = a.into();
        }
        *me.member.lock().expect("member") = Some(member);
        me.take_lease().await?;
        tracing::info!(node = %cfg.node, lease = me.lease(), ttl_secs = me.ttl.as_secs(), "joined the cluster");
        Ok(me)
    }

    /// A new lease, the member key under it, and its keep-alive.
    async fn take_lease(&self) -> Result<()> {
        let secs = self.ttl.as_secs() as i64;
        let lease = self
            .call(|mut c| async move { c.lease_grant(secs, None).await })
            .await?
            .id();
        let key = self.keys.node(&self.node);
        let mut member = self
            .member
            .lock()
            .expect("member")
            .clone()
            .unwrap_or_default();
        member["lease"] = lease.into();
        let value = member.to_string();
        self.call(|mut c| {
            let (key, value) = (key.clone(), value.clone());
            async move {
                c.put(key, value, Some(PutOptions::new().with_lease(lease)))
                    .await
            }
        })
        .await?;
        self.lease.store(lease, Ordering::Release);
        *self.state.lock().expect("lease state") = LeaseState {
            confirmed: Instant::now(),
            expired: false,
        };
        let stop = spawn_keep_alive(self.endpoints.clone(), lease, self.ttl, self.state.clone())
            .inspect_err(|_| self.state.lock().expect("lease state").expired = true)?;
        std::mem::replace(&mut *self.keepalive.lock().expect("keep-alive"), stop)
            .store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Whether etcd said this node's lease is gone (every ownership under it has ended).
    pub fn lease_expired(&self) -> bool {
        self.state.lock().expect("lease state").expired
    }

    /// Joins again with a new lease after the last one expired (the node was cut off or
    /// stalled past its TTL): its partitions were dropped and may be owned elsewhere now;
    /// from here on it can own partitions again.
    pub async fn rejoin(&self) -> Result<()> {
        self.take_lease().await?;
        tracing::warn!(node = %self.node, lease = self.lease(), "joined the cluster again with a new lease");
        Ok(())
    }

    /// Connects without joining: no lease, no member key, no ownership (the operator's
    /// `ringmail cluster` commands). Must run inside a tokio runtime.
    pub async fn observe(cfg: &ClusterConfig) -> Result<Coordinator> {
        cfg.validate().map_err(ClusterError::Config)?;
        let ttl = cfg.lease_ttl();
        let etcd = Arc::new(Endpoints::connect(&cfg.etcd).await?);
        let keys = EtcdKeys::new(&cfg.name);
        Ok(Coordinator {
            etcd: etcd.clone(),
            keys,
            node: cfg.node.clone(),
            lease: std::sync::atomic::AtomicI64::new(0),
            ttl,
            // An observer has no lease: it can never own anything.
            state: Arc::new(Mutex::new(LeaseState {
                confirmed: Instant::now(),
                expired: true,
            })),
            keepalive: Mutex::new(Arc::new(AtomicBool::new(true))),
            endpoints: cfg.etcd.clone(),
            member: Mutex::new(None),
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Runs one etcd request, again (up to three times in all) if the connection failed: the
    /// client balances over every endpoint, so a dead member costs a retry, not an error.
    /// Every request here is safe to repeat (reads, and transactions conditioned on what
    /// they change).
    async fn call<T, F, Fut>(&self, mut f: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        // Every member once, then once more around after a pause.
        let attempts = 2 * self.etcd.clients.len();
        let mut attempt = 0;
        loop {
            let (i, client) = self.etcd.client();
            match f(client).await {
                Ok(v) => return Ok(v),
                Err(e) if attempt + 1 < attempts && connection_failed(&e) => {
                    self.etcd.failed(i);
                    attempt += 1;
                    if attempt % self.etcd.clients.len() == 0 {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub fn lease(&self) -> i64 {
        self.lease.load(Ordering::Acquire)
    }

    pub fn keys(&self) -> &EtcdKeys {
        &self.keys
    }

    /// Whether this node may still believe its lease is alive: etcd confirmed it less than
    /// a TTL ago (measured from when the keep-alive was sent, so a late answer does not
    /// extend it). Past that, another node may own this node's partitions.
    pub fn lease_alive(&self) -> bool {
        let s = self.state.lock().expect("lease state");
        !s.expired && s.confirmed.elapsed() < self.ttl
    }

    /// Tests: stops the keep-alive, as a paused or cut-off node would.
    #[doc(hidden)]
    pub fn stop_keepalive(&self) {
        self.keepalive
            .lock()
            .expect("keep-alive")
            .store(true, Ordering::Relaxed);
    }

    /// The cluster's partition count: the stored one, or `partitions` if this node is the
    /// first (written once; every node must agree, or accounts would hash differently).
    /// With `partitions` 0 it only reads (0: no layout yet).
    pub async fn layout(&self, partitions: u32) -> Result<u32> {
        let key = self.keys.layout();
        if partitions == 0 {
            let r = self
                .call(|mut c| {
                    let key = key.clone();
                    async move { c.get(key, None).await }
                })
                .await?;
            let Some(kv) = r.kvs().first() else {
                return Ok(0);
            };
            return serde_json::from_slice::<serde_json::Value>(kv.value())
                .ok()
                .and_then(|j| j.get("partitions")?.as_u64())
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    ClusterError::Config("the cluster's layout in etcd is unreadable".into())
                });
        }
        let value = format!("{{\"partitions\":{partitions}}}");
        let r = self
            .call(|mut c| {
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key.clone(), value.clone(), None)])
                    .or_else([TxnOp::get(key.clone(), None)]);
                async move { c.txn(txn).await }
            })
            .await?;
        if r.succeeded() {
            return Ok(partitions);
        }
        let v = first_value(&r).unwrap_or_default();
        let parsed: Option<u32> = serde_json::from_slice::<serde_json::Value>(&v)
            .ok()
            .and_then(|j| j.get("partitions")?.as_u64())
            .and_then(|n| u32::try_from(n).ok());
        parsed.ok_or_else(|| {
            ClusterError::Config(format!(
                "the cluster's layout in etcd is unreadable: {:?}",
                String::from_utf8_lossy(&v)
            ))
        })
    }

    /// Tries to become the owner of `partition`: the new epoch, or `None` if another node
    /// owns it now. Repeating it after a lost reply finds the ownership it made.
    pub async fn acquire(&self, partition: u32) -> Result<Option<u64>> {
        if !self.lease_alive() {
            return Err(ClusterError::Etcd(
                "this node's lease is not confirmed".into(),
            ));
        }
        let key = self.keys.owner(partition);
        let (node, lease) = (self.node.clone(), self.lease());
        let r = self
            .call(|mut c| {
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(
                        key.clone(),
                        node.clone(),
                        Some(PutOptions::new().with_lease(lease)),
                    )])
                    .or_else([TxnOp::get(key.clone(), None)]);
                async move { c.txn(txn).await }
            })
            .await?;
        if r.succeeded() {
            // The put happened at the transaction's revision: the key's create revision.
            let epoch = r
                .header()
                .map(|h| h.revision())
                .filter(|&rev| rev > 0)
                .ok_or_else(|| {
                    ClusterError::Etcd("a transaction reply without a revision".into())
                })?;
            return Ok(Some(epoch as u64));
        }
        for op in r.op_responses() {
            if let TxnOpResponse::Get(g) = op {
                if let Some(kv) = g.kvs().first() {
                    if kv.lease() == self.lease() && kv.value() == self.node.as_bytes() {
                        return Ok(Some(kv.create_revision() as u64));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Gives up `partition` if this node still owns it at `epoch` (a planned move: the
    /// manifest is published first). Returns whether it did.
    /// `handed_over`: the partition was served and closed cleanly (recorded in
    /// `released/<p>`, so the next owner counts a move rather than a failover).
    pub async fn release(&self, partition: u32, epoch: u64, handed_over: bool) -> Result<bool> {
        let key = self.keys.owner(partition);
        let released = self.keys.released(partition);
        let lease = self.lease();
        let r = self
            .call(|mut c| {
                let txn = Txn::new()
                    .when([
                        Compare::create_revision(key.clone(), CompareOp::Equal, epoch as i64),
                        Compare::lease(key.clone(), CompareOp::Equal, lease),
                    ])
                    .and_then(match handed_over {
                        true => vec![
                            TxnOp::delete(key.clone(), None),
                            TxnOp::put(released.clone(), epoch.to_string(), None),
                        ],
                        false => vec![TxnOp::delete(key.clone(), None)],
                    });
                async move { c.txn(txn).await }
            })
            .await?;
        Ok(r.succeeded())
    }

    /// The epoch of `partition`'s last ownership that was handed over cleanly (released, not
    /// ended by a lost lease), if any: a takeover tells a planned move from a failover by it.
    pub async fn released_epoch(&self, partition: u32) -> Result<Option<u64>> {
        let key = self.keys.released(partition);
        let r = self
            .call(|mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await?;
        Ok(r.kvs()
            .first()
            .and_then(|kv| std::str::from_utf8(kv.value()).ok()?.parse().ok()))
    }

    /// The secret nodes show each other on their cluster ports: made by the first node that
    /// asks (from `proposal`), read by every other. Whoever can read etcd can read it, as
    /// they can everything else of the cluster.
    pub async fn secret(&self, proposal: &str) -> Result<String> {
        let key = self.keys.secret();
        let r = self
            .call(|mut c| {
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key.clone(), proposal.to_string(), None)])
                    .or_else([TxnOp::get(key.clone(), None)]);
                async move { c.txn(txn).await }
            })
            .await?;
        if r.succeeded() {
            return Ok(proposal.to_string());
        }
        r.op_responses()
            .iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
                _ => None,
            })
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or_else(|| ClusterError::Etcd("the cluster's secret could not be read".into()))
    }

    /// Keeps `board` current with the owner map: a snapshot of the `serving/` and `nodes/`
    /// keys, then a watch of both from that snapshot's revision. Runs until the task is
    /// dropped; a broken watch (a lost member, a compacted revision) starts over.
    pub async fn watch_routes(&self, board: Arc<crate::routes::RouteBoard>) {
        let mut failures = 0u32;
        loop {
            if let Err(e) = self.follow_routes(&board).await {
                failures += 1;
                if failures == 1 || failures % 60 == 0 {
                    tracing::warn!(error = %e, "watching the owner map; starting over");
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn follow_routes(&self, board: &crate::routes::RouteBoard) -> Result<()> {
        use crate::routes::Routes;
        let (servings, nodes) = (self.keys.servings(), self.keys.nodes());
        let r = self
            .call(|mut c| {
                let ops = [
                    TxnOp::get(servings.clone(), Some(GetOptions::new().with_prefix())),
                    TxnOp::get(nodes.clone(), Some(GetOptions::new().with_prefix())),
                ];
                async move { c.txn(Txn::new().and_then(ops)).await }
            })
            .await?;
        let mut routes = Routes::new(&self.node);
        for op in r.op_responses() {
            if let TxnOpResponse::Get(g) = op {
                for kv in g.kvs() {
                    routes.apply(&self.keys, kv.key(), Some(kv.value()));
                }
            }
        }
        routes.revision = r.header().map(|h| h.revision()).unwrap_or(0);
        board.replace(routes.clone());
        let (i, mut client) = self.etcd.client();
        let from = etcd_client::WatchOptions::new()
            .with_prefix()
            .with_start_revision(routes.revision + 1);
        let watched = async {
            let mut stream = client.watch(servings.clone(), Some(from.clone())).await?;
            stream.watch(nodes.clone(), Some(from)).await?;
            Ok::<_, etcd_client::Error>(stream)
        };
        let mut stream = match watched.await {
            Ok(s) => s,
            Err(e) => {
                self.etcd.failed(i);
                return Err(e.into());
            }
        };
        loop {
            let resp = match stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    self.etcd.failed(i);
                    return Err(e.into());
                }
            };
            if resp.canceled() {
                return Err(ClusterError::Etcd(format!(
                    "the owner map's watch was cancelled: {}",
                    resp.cancel_reason()
                )));
            }
            let mut changed = false;
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let value = match ev.event_type() {
                    etcd_client::EventType::Put => Some(kv.value()),
                    etcd_client::EventType::Delete => None,
                };
                changed |= routes.apply(&self.keys, kv.key(), value);
            }
            if let Some(h) = resp.header() {
                routes.revision = routes.revision.max(h.revision());
            }
            if changed {
                board.replace(routes.clone());
            }
        }
        Err(ClusterError::Etcd("the owner map's watch ended".into()))
    }

    /// Reads back whether each `(partition, epoch)` is still this node's ownership, in one
    /// linearizable read. An owner acknowledges a write only after this said yes *after* the
    /// write was stored: a takeover ordered before the read makes it say no, and one
    /// ordered after it finds the write.
    pub async fn confirm(&self, ownerships: &[(u32, u64)]) -> Result<Vec<bool>> {
        let mut wanted: Vec<u32> = ownerships.iter().map(|(p, _)| *p).collect();
        wanted.sort_unstable();
        wanted.dedup();
        // Few partitions waiting (the usual case): their keys alone, in one transaction, so
        // the read does not grow with the cluster's partition count. Many: one range read.
        let owners = if wanted.len() <= CONFIRM_TXN_KEYS {
            self.owners_of(&wanted).await?
        } else {
            self.owners().await?
        };
        Ok(ownerships
            .iter()
            .map(|(p, epoch)| {
                owners
                    .get(p)
                    .is_some_and(|o| o.epoch == *epoch && o.lease == self.lease())
            })
            .collect())
    }

    /// The owners of `partitions` (those that have one), in one linearizable transaction.
    pub async fn owners_of(&self, partitions: &[u32]) -> Result<BTreeMap<u32, Owner>> {
        let keys: Vec<String> = partitions.iter().map(|p| self.keys.owner(*p)).collect();
        let r = self
            .call(|mut c| {
                let ops: Vec<TxnOp> = keys.iter().map(|k| TxnOp::get(k.clone(), None)).collect();
                async move { c.txn(Txn::new().and_then(ops)).await }
            })
            .await?;
        let prefix = self.keys.owners();
        Ok(r.op_responses()
            .iter()
            .filter_map(|op| match op {
                TxnOpResponse::Get(g) => Some(g.kvs()),
                _ => None,
            })
            .flatten()
            .filter_map(|kv| owner_entry(&prefix, kv))
            .collect())
    }

    /// Every key under `prefix` (only the keys with `keys_only`), in one read.
    async fn get_prefix(&self, prefix: &str, keys_only: bool) -> Result<etcd_client::GetResponse> {
        self.call(|mut c| {
            let prefix = prefix.to_string();
            let mut opts = GetOptions::new().with_prefix();
            if keys_only {
                opts = opts.with_keys_only();
            }
            async move { c.get(prefix, Some(opts)).await }
        })
        .await
    }

    /// Every owned partition, as etcd says now.
    pub async fn owners(&self) -> Result<BTreeMap<u32, Owner>> {
        let prefix = self.keys.owners();
        let r = self.get_prefix(&prefix, false).await?;
        Ok(r.kvs()
            .iter()
            .filter_map(|kv| owner_entry(&prefix, kv))
            .collect())
    }

    /// Names `key` (serial `serial`) as `partition`'s manifest, if this node still owns it
    /// at `epoch`; [`ClusterError::Fenced`] otherwise.
    pub async fn publish(&self, partition: u32, epoch: u64, serial: u64, key: &str) -> Result<()> {
        let owner = self.keys.owner(partition);
        let pointer = self.keys.manifest(partition);
        let value = format!("{serial} {key}");
        let lease = self.lease();
        let r = self
            .call(|mut c| {
                let txn = Txn::new()
                    .when([
                        Compare::create_revision(owner.clone(), CompareOp::Equal, epoch as i64),
                        Compare::lease(owner.clone(), CompareOp::Equal, lease),
                    ])
                    .and_then([TxnOp::put(pointer.clone(), value.clone(), None)]);
                async move { c.txn(txn).await }
            })
            .await?;
        if r.succeeded() {
            Ok(())
        } else {
            Err(ClusterError::Fenced { partition, epoch })
        }
    }

    /// The published manifest of `partition`: (serial, object key).
    pub async fn manifest_pointer(&self, partition: u32) -> Result<Option<(u64, String)>> {
        let key = self.keys.manifest(partition);
        let r = self
            .call(|mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await?;
        let Some(kv) = r.kvs().first() else {
            return Ok(None);
        };
        let v = String::from_utf8_lossy(kv.value());
        let parsed = v
            .split_once(' ')
            .and_then(|(s, k)| Some((s.parse::<u64>().ok()?, k.to_string())));
        parsed.map(Some).ok_or_else(|| {
            ClusterError::Config(format!(
                "partition {partition}: unreadable manifest pointer {v:?}"
            ))
        })
    }

    /// Seconds left of a lease (`None`: it has expired).
    pub async fn lease_ttl_left(&self, lease: i64) -> Result<Option<i64>> {
        let r = self
            .call(|mut c| async move { c.lease_time_to_live(lease, None).await })
            .await?;
        Ok((r.ttl() > 0).then_some(r.ttl()))
    }

    /// Each member and the lease it joined with.
    pub async fn member_leases(&self) -> Result<BTreeMap<String, i64>> {
        let prefix = self.keys.nodes();
        let r = self.get_prefix(&prefix, false).await?;
        Ok(r.kvs()
            .iter()
            .filter_map(|kv| Some((EtcdKeys::name_in(&prefix, kv.key())?, kv.lease())))
            .collect())
    }

    /// The member nodes (those whose lease is alive).
    pub async fn members(&self) -> Result<BTreeSet<String>> {
        self.names_under(self.keys.nodes()).await
    }

    /// Nodes being drained.
    pub async fn draining(&self) -> Result<BTreeSet<String>> {
        self.names_under(self.keys.drains()).await
    }

    async fn names_under(&self, prefix: String) -> Result<BTreeSet<String>> {
        let r = self.get_prefix(&prefix, true).await?;
        Ok(r.kvs()
            .iter()
            .filter_map(|kv| EtcdKeys::name_in(&prefix, kv.key()))
            .collect())
    }

    /// Where operators asked partitions to move.
    pub async fn assignments(&self) -> Result<BTreeMap<u32, String>> {
        let prefix = self.keys.assigns();
        let r = self.get_prefix(&prefix, false).await?;
        Ok(r.kvs()
            .iter()
            .filter_map(|kv| {
                Some((
                    EtcdKeys::partition_in(&prefix, kv.key())?,
                    String::from_utf8_lossy(kv.value()).into_owned(),
                ))
            })
            .collect())
    }

    /// Asks for `partition` to move to `node` (`ringmail cluster move`).
    pub async fn assign(&self, partition: u32, node: &str) -> Result<()> {
        let key = self.keys.assign(partition);
        self.call(|mut c| {
            let (key, node) = (key.clone(), node.to_string());
            async move { c.put(key, node, None).await }
        })
        .await?;
        Ok(())
    }

    /// Says that this node serves `partition` at `epoch` now (opened, after its takeover
    /// manifest was published), under the lease, if the ownership is still current.
    pub async fn mark_serving(&self, partition: u32, epoch: u64) -> Result<()> {
        let owner = self.keys.owner(partition);
        let key = self.keys.serving(partition);
        let value = format!("{} {epoch}", self.node);
        let lease = self.lease();
        self.call(|mut c| {
            let txn = Txn::new()
                .when([Compare::create_revision(
                    owner.clone(),
                    CompareOp::Equal,
                    epoch as i64,
                )])
                .and_then([TxnOp::put(
                    key.clone(),
                    value.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            async move { c.txn(txn).await }
        })
        .await?;
        Ok(())
    }

    /// Which node serves each partition, by its own word, and at which epoch.
    pub async fn serving(&self) -> Result<BTreeMap<u32, (String, u64)>> {
        let prefix = self.keys.servings();
        let r = self.get_prefix(&prefix, false).await?;
        Ok(r.kvs()
            .iter()
            .filter_map(|kv| {
                let p = EtcdKeys::partition_in(&prefix, kv.key())?;
                let v = String::from_utf8_lossy(kv.value());
                let (node, epoch) = v.split_once(' ')?;
                Some((p, (node.to_string(), epoch.parse().ok()?)))
            })
            .collect())
    }

    /// Withdraws a move request.
    pub async fn unassign(&self, partition: u32) -> Result<()> {
        let key = self.keys.assign(partition);
        self.call(|mut c| {
            let key = key.clone();
            async move { c.delete(key, None).await }
        })
        .await?;
        Ok(())
    }

    /// Marks `node` as draining (or not): its partitions move to the others.
    pub async fn set_draining(&self, node: &str, draining: bool) -> Result<()> {
        let key = self.keys.drain(node);
        if draining {
            self.call(|mut c| {
                let key = key.clone();
                async move { c.put(key, "", None).await }
            })
            .await?;
        } else {
            self.call(|mut c| {
                let key = key.clone();
                async move { c.delete(key, None).await }
            })
            .await?;
        }
        Ok(())
    }

    /// Leaves the cluster: revokes the lease, which ends every ownership of this node at
    /// once (call after publishing and releasing what should move cleanly).
    pub async fn leave(&self) -> Result<()> {
        self.stop_keepalive();
        let lease = self.lease();
        self.call(|mut c| async move { c.lease_revoke(lease).await })
            .await?;
        Ok(())
    }
}

/// Starts keeping `lease` alive on a thread of its own, with a runtime and etcd connections
/// of its own: a control plane busy with a large takeover (thousands of chunks fetched and
/// written) must not let its lease lapse, which would end every ownership of the node.
/// Returns the flag that stops it.
fn spawn_keep_alive(
    endpoints: Vec<String>,
    lease: i64,
    ttl: Duration,
    state: Arc<Mutex<LeaseState>>,
) -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::Builder::new()
        .name("ringmail-lease".into())
        .spawn(move || {
            let rt = match crate::control::local_runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the lease keep-alive's runtime");
                    // Nothing will keep the lease: say so, and the node joins again.
                    state.lock().expect("lease state").expired = true;
                    return;
                }
            };
            rt.block_on(async move {
                let etcd = match Endpoints::connect(&endpoints).await {
                    Ok(e) => Arc::new(e),
                    Err(e) => {
                        tracing::error!(error = %e, "lease keep-alive: cannot connect to etcd");
                        state.lock().expect("lease state").expired = true;
                        return;
                    }
                };
                let watch_stop = async {
                    while !stopped.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                };
                tokio::select! {
                    _ = keep_alive(etcd, lease, ttl, state) => {}
                    _ = watch_stop => {}
                }
            });
        })
        .map_err(|e| ClusterError::Config(format!("starting the lease keep-alive: {e}")))?;
    Ok(stop)
}

/// Keeps the lease alive: a keep-alive every third of the TTL, recording when etcd last
/// confirmed it. Reconnects the keep-alive stream after an error; stops when etcd says the
/// lease is gone.
async fn keep_alive(
    etcd: Arc<Endpoints>,
    lease: i64,
    ttl: Duration,
    state: Arc<Mutex<LeaseState>>,
) {
    let every = (ttl / 3).max(Duration::from_millis(200));
    loop {
        let (i, mut client) = etcd.client();
        let (mut keeper, mut stream) = match client.lease_keep_alive(lease).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(lease, error = %e, "lease keep-alive: cannot reach etcd");
                etcd.failed(i);
                tokio::time::sleep(every / 4).await;
                continue;
            }
        };
        loop {
            let sent = Instant::now();
            let answer = match keeper.keep_alive().await {
                Ok(()) => tokio::time::timeout(every, stream.message()).await,
                Err(e) => Ok(Err(e)),
            };
            match answer {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {
                    let mut s = state.lock().expect("lease state");
                    s.confirmed = s.confirmed.max(sent);
                }
                Ok(Ok(Some(_))) => {
                    tracing::error!(lease, "etcd says this node's lease has expired");
                    state.lock().expect("lease state").expired = true;
                    return;
                }
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                    tracing::warn!(lease, "lease keep-alive: no answer; trying the next member");
                    etcd.failed(i);
                    break;
                }
            }
            let spent = sent.elapsed();
            if spent < every {
                tokio::time::sleep(every - spent).await;
            }
        }
    }
}

/// Whether a request failed for want of a connection (worth repeating on another
/// endpoint), as opposed to an answer.
fn connection_failed(e: &etcd_client::Error) -> bool {
    use tonic::Code;
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => {
            matches!(
                s.code(),
                Code::Unavailable | Code::Unknown | Code::Cancelled
            )
        }
        _ => false,
    }
}

/// A partition's owner from its owner key (`None` for a key that names no partition).
fn owner_entry(prefix: &str, kv: &etcd_client::KeyValue) -> Option<(u32, Owner)> {
    Some((
        EtcdKeys::partition_in(prefix, kv.key())?,
        Owner {
            node: String::from_utf8_lossy(kv.value()).into_owned(),
            epoch: kv.create_revision() as u64,
            lease: kv.lease(),
        },
    ))
}

/// The value of the first key a transaction's `or_else` read.
fn first_value(r: &TxnResponse) -> Option<Vec<u8>> {
    r.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
        _ => None,
    })
}
