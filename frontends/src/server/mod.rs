//! The I/O layer: listeners on every shard, the session loops, and the engine calls.
//!
//! Every shard binds every listener with SO_REUSEPORT, so the kernel spreads connections
//! over the cores. An SMTP/LMTP session runs where it was accepted; a delivery is sent to
//! the shards that own the recipients' accounts (`NodeHandle::deliver`), and the reply waits
//! until every copy is durable.

mod auth_cache;
mod budget;
mod conn;
mod dedup;
mod deflate;
mod driver;
mod forward;
mod imap;
mod imap_store;
mod internal;
pub mod listeners;
pub mod live;
mod login;
mod meta_cache;
mod metrics;
mod pop3;
mod proxy;
pub mod received;
pub mod reload;
mod sessions;
pub mod shared_views;
mod smtp;
mod throttle;
mod tls_stream;
mod urlauth;
mod watch;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::net::TcpListener;
use ringmail_engine::{AccountOptions, NodeConfig, Service, ShardContext, StoreError};

use crate::config::Config;
use crate::mime::{MessageMeta, PackedEnvelope};
use crate::smtp::Mode;
use crate::users::Users;
pub use budget::Budget;
use conn::Conn;
use listeners::Bound;
use live::{Cached, Versioned};
pub use metrics::Metrics;
pub use reload::Running;
use throttle::Throttle;

/// What every shard shares: the configuration and users the main thread may replace,
/// node-wide limits, and relaxed atomic counters.
pub struct Shared {
    pub metrics: Arc<Metrics>,
    /// The configuration and TLS certificate (replaced on SIGHUP).
    pub live: Versioned<Live>,
    /// The users (replaced when `users.toml` changes).
    pub users: Versioned<Users>,
    /// Failed logins per address and account.
    pub throttle: Throttle,
    /// Bytes of messages being received, node-wide.
    pub budget: Arc<Budget>,
    /// How many client connections the descriptor limit leaves room for.
    pub max_connections: usize,
    /// Starts every delivery id of this run: ids stay unique across restarts and nodes.
    pub run_id: String,
    /// Each shard takes its listening sockets from here when it starts.
    sockets: Mutex<Vec<Option<Vec<Bound>>>>,
    metrics_socket: Mutex<Option<(SocketAddr, OwnedFd)>>,
    /// Cluster mode: the control plane's counters (set once it has joined).
    pub cluster: std::sync::OnceLock<Arc<Mutex<ringmail_cluster::Status>>>,
    /// Cluster mode: copies of deliveries to several nodes stored here (retries find them).
    pub dedup: dedup::Dedup,
    /// Cluster mode: the owner map, and the secret nodes show each other.
    pub routes: std::sync::OnceLock<(Arc<ringmail_cluster::RouteBoard>, String)>,
}

/// The parts of the configuration a reload replaces. A session takes them once, when it
/// starts, and keeps them: a reload never changes a connection in flight.
pub struct Live {
    pub cfg: Config,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Where a login attempt comes from, for the throttle and the log.
#[derive(Clone, Copy, Debug)]
pub struct LoginFrom {
    pub ip: IpAddr,
    pub protocol: &'static str,
    pub tls: bool,
}

/// A user's SCRAM keys and sender addresses (if the user exists), a fresh server nonce, and
/// the salt to show an unknown user.
pub type ScramLookup = (
    Option<(crate::sasl::scram::Credentials, Vec<String>)>,
    String,
    Vec<u8>,
);

/// One shard's server state. Lives on its shard only.
pub struct ShardServer {
    pub shared: Arc<Shared>,
    pub ctx: Rc<ShardContext>,
    live: Cached<Live>,
    users: Cached<Users>,
    auth_cache: RefCell<auth_cache::AuthCache>,
    /// Decoded message metadata, for IMAP FETCH (32 MiB per shard).
    pub meta_cache: RefCell<meta_cache::ShardCache<MessageMeta>>,
    /// Packed envelopes, for SEARCH, SORT and THREAD (`envelope_cache_mib`).
    pub envelopes: RefCell<meta_cache::ShardCache<PackedEnvelope>>,
    /// Pictures of selected mailboxes IMAP sessions share.
    pub views: RefCell<shared_views::SharedViews>,
    /// POP3 maildrop locks and IMAP \Recent claims of this shard's accounts.
    pub sessions: sessions::SessionState,
    known_accounts: RefCell<HashSet<String>>,
    per_ip: RefCell<HashMap<IpAddr, usize>>,
    /// Every connection's deadlines, and the shutdown signal for their reads.
    pub watch: watch::Watch,
    next_delivery: Cell<u64>,
    /// This shard's copy of the owner map, and the board's version it was taken at.
    routes: RefCell<Option<(u64, Rc<ringmail_cluster::Routes>)>>,
    /// Connections to other nodes' cluster ports for forwarded deliveries, kept for reuse.
    pub forwards: forward::Pool,
}

/// Where a logged-in session or a delivery for an account goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routing {
    /// This node serves the account (or there is no cluster).
    Local,
    /// Another node does, reachable at this cluster address.
    Remote { node: String, addr: String },
    /// No node does now (a takeover under way): try again shortly.
    Unavailable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Smtp,
    Submission,
    Smtps,
    Lmtp,
    Pop3,
    Pop3s,
    Imap,
    Imaps,
    /// The cluster port: other nodes' forwarded deliveries and proxied sessions.
    Cluster,
}

thread_local! {
    /// This shard's server, for sessions handed over from another shard.
    static LOCAL: RefCell<Option<Rc<ShardServer>>> = const { RefCell::new(None) };
}

/// The server of the shard this runs on.
fn local_server() -> Option<Rc<ShardServer>> {
    LOCAL.with(|l| l.borrow().clone())
}

impl ShardServer {
    /// The configuration and certificate as they are now.
    pub fn live(&self) -> Rc<Arc<Live>> {
        self.live.get(&self.shared.live)
    }

    /// The users as they are now.
    pub fn users(&self) -> Rc<Arc<Users>> {
        self.users.get(&self.shared.users)
    }

    /// A delivery id, unique across restarts, shards and nodes.
    pub fn delivery_id(&self) -> String {
        let n = self.next_delivery.get() + 1;
        self.next_delivery.set(n);
        format!("{}{:x}{:x}", self.shared.run_id, self.ctx.shard.0, n)
    }

    /// Checks a password on the blocking pool (argon2 is slow on purpose): on success, the
    /// addresses the user may send as.
    pub async fn check_password(
        &self,
        user: String,
        password: crate::sasl::Secret,
    ) -> Option<Vec<String>> {
        let user = self.login_name(user);
        let users = self.users();
        if let Some(s) = self.auth_cache.borrow_mut().get(&users, &user, &password.0) {
            return Some(s);
        }
        let (u, p) = (Arc::clone(&users), password.0.clone());
        let name = user.clone();
        let r = glommio::executor()
            .spawn_blocking(move || u.authenticate(&name, &p))
            .await;
        if let Some(s) = &r {
            self.auth_cache
                .borrow_mut()
                .put(&users, &user, &password.0, s);
        }
        r
    }

    /// What a SCRAM exchange needs from the server: the user's keys (if any), a fresh nonce,
    /// and the salt shown for unknown users, the same on every attempt so probing cannot
    /// tell them from real ones.
    pub fn scram_lookup(&self, user: &str) -> ScramLookup {
        let user = &self.login_name(user.to_string());
        let found = self.users().scram(user);
        let fake_salt = ringmail_engine::crc32(user.as_bytes())
            .to_le_bytes()
            .repeat(4);
        (found, smtp::random_b64(18), fake_salt)
    }

    /// The address a login name stands for: with `[auth] default_domain` set, a name
    /// without `@` is that domain's user.
    fn login_name(&self, user: String) -> String {
        match &self.live().cfg.auth.default_domain {
            Some(d) if !user.contains('@') && !user.is_empty() => format!("{user}@{d}"),
            _ => user,
        }
    }

    /// Before any credential is checked: whether logins from this address, or to this
    /// account, are refused for now (too many failures; see `throttle`). The refusal is
    /// logged and counted; the caller answers with its protocol's temporary error.
    pub fn login_blocked(&self, from: &LoginFrom, user: &str) -> bool {
        let user = &self.login_name(user.to_string());
        match self.shared.throttle.check(from.ip, user, Instant::now()) {
            Ok(()) => false,
            Err(why) => {
                self.shared.metrics.auth_throttled(from.protocol);
                tracing::info!(
                    target: "ringmail::login",
                    protocol = from.protocol,
                    remote = %from.ip,
                    user = ?user,
                    blocked = ?why,
                    "login refused: too many failures"
                );
                true
            }
        }
    }

    /// After a login attempt of any protocol and mechanism: logs it and, on failure, counts
    /// it against the address and the account and slows the client down before it hears.
    pub async fn login_result(&self, from: &LoginFrom, mechanism: &str, user: &str, ok: bool) {
        if ok {
            tracing::info!(
                target: "ringmail::login",
                protocol = from.protocol,
                mechanism,
                remote = %from.ip,
                user = ?user,
                tls = from.tls,
                "login"
            );
            return;
        }
        self.shared.metrics.auth_failure(from.protocol);
        let user = &self.login_name(user.to_string());
        let rec = self.shared.throttle.failed(from.ip, user, Instant::now());
        tracing::info!(
            target: "ringmail::login",
            protocol = from.protocol,
            mechanism,
            remote = %from.ip,
            user = ?user,
            failures = rec.ip_failures,
            "login failed"
        );
        if let Some(why) = rec.now_blocked {
            let live = self.live();
            tracing::warn!(
                target: "ringmail::login",
                remote = %from.ip,
                user = ?user,
                blocked = ?why,
                window_secs = live.cfg.auth.failure_window_secs,
                "too many failed logins: refusing logins for the rest of the window"
            );
        }
        let delay = self.live().cfg.limits.auth_failure_delay_ms;
        glommio::timer::sleep(Duration::from_millis(delay)).await;
    }

    /// Runs `f` on the partition that owns `account`: directly when that partition is on this
    /// shard, else as a job sent to its shard.
    pub async fn on_account<R, F, Fut>(
        &self,
        account: &str,
        f: F,
    ) -> Result<R, ringmail_engine::Error>
    where
        R: Send + 'static,
        F: FnOnce(Rc<ringmail_engine::Partition>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<R, ringmail_engine::Error>> + 'static,
    {
        let p = self.ctx.node.partition_of(account);
        match self.ctx.partition(p) {
            Some(part) => f(part).await,
            None => self.ctx.node.on_partition(p, f).await,
        }
    }

    /// Serves a request on the partition that owns its account: directly when that
    /// partition is on this shard, else on its shard.
    pub async fn request(
        &self,
        request: ringmail_engine::Request,
    ) -> Result<ringmail_engine::Response, ringmail_engine::Error> {
        let p = self.ctx.node.partition_of(request.account());
        match self.ctx.partition(p) {
            Some(part) => part.serve(request).await,
            None => self.ctx.node.request(request).await,
        }
    }

    /// Moves a logged-in session to the shard that owns `account`: the connection (socket
    /// and TLS state) is detached here and `start` runs there, next to the account's
    /// partition, as a task of its own. On failure the connection is dropped. The session
    /// counts against the per-IP limit of the shard it lives on: there from the move until
    /// it ends (here, its count is released when the caller returns).
    pub(crate) async fn hand_off<S, Fut>(&self, account: &str, conn: Conn, protocol: &str, start: S)
    where
        S: FnOnce(Rc<ShardServer>, Rc<ringmail_engine::Partition>, Conn) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let Ok(conn) = conn.detach() else {
            return;
        };
        let p = self.ctx.node.partition_of(account);
        let r = self
            .ctx
            .node
            .on_partition(p, move |part| async move {
                let srv = local_server().ok_or_else(|| {
                    ringmail_engine::Error::Config("no server on the owning shard".into())
                })?;
                let peer = conn.peer;
                if let Some(ip) = peer {
                    srv.count(ip);
                }
                let here = srv.clone();
                glommio::spawn_local(async move {
                    let conn = Conn::attach(conn, &srv.watch);
                    start(srv, part, conn).await;
                    if let Some(ip) = peer {
                        here.release(ip);
                    }
                })
                .detach();
                Ok(())
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(protocol, error = %e, "hand-off failed; the connection is dropped");
        }
    }

    /// The owner map as this shard last saw it (`None` without a cluster).
    fn routes(&self) -> Option<Rc<ringmail_cluster::Routes>> {
        let (board, _) = self.shared.routes.get()?;
        let version = board.version();
        let mut c = self.routes.borrow_mut();
        match c.as_ref() {
            Some((v, r)) if *v == version => Some(r.clone()),
            _ => {
                // A copy of the shard's own (the map changes when partitions move): no
                // reference count shared between cores is touched per request.
                let r = Rc::new(ringmail_cluster::Routes::clone(&board.current()));
                *c = Some((version, r.clone()));
                Some(r)
            }
        }
    }

    /// The secret of the cluster's ports (`None` without a cluster).
    pub fn cluster_secret(&self) -> Option<&str> {
        self.shared.routes.get().map(|(_, s)| s.as_str())
    }

    /// Where `partition`'s requests go, by the owner map (no etcd request).
    pub fn route_partition(&self, partition: ringmail_engine::PartitionId) -> Routing {
        let Some(routes) = self.routes() else {
            return Routing::Local;
        };
        match routes.route(partition.0) {
            ringmail_cluster::Route::Here => Routing::Local,
            // The map may lag behind a takeover this node just made.
            _ if self.ctx.has_partition(partition) => Routing::Local,
            ringmail_cluster::Route::Node { node, addr } => Routing::Remote {
                node: node.to_string(),
                addr: addr.to_string(),
            },
            ringmail_cluster::Route::Nowhere => Routing::Unavailable,
        }
    }

    /// Where `account`'s sessions and deliveries go.
    pub fn route(&self, account: &str) -> Routing {
        self.route_partition(self.ctx.node.partition_of(account))
    }

    /// For a session proxied to the node serving `account` now: true once the owner map
    /// no longer names that node at that epoch (its owner failed, or the partition moved,
    /// even if back to the same node), so the relay can end.
    pub fn route_left(&self, account: &str) -> Rc<dyn Fn() -> bool> {
        let p = self.ctx.node.partition_of(account).0;
        let board = self.shared.routes.get().map(|(b, _)| b.clone());
        let now = board
            .as_ref()
            .and_then(|b| b.current().serving(p).map(|(n, e)| (n.to_string(), e)));
        // Looked at once a second per session: compared in place, nothing allocated.
        Rc::new(move || {
            let Some(b) = board.as_ref() else {
                return false;
            };
            b.current().serving(p) != now.as_ref().map(|(n, e)| (n.as_str(), *e))
        })
    }

    /// Creates the user's mail account in the engine on first use.
    pub async fn ensure_account(&self, user: &str) -> Result<(), ringmail_engine::Error> {
        if self.known_accounts.borrow().contains(user) {
            return Ok(());
        }
        let r = self
            .request(ringmail_engine::Request::EnsureAccount {
                account: user.to_string(),
                options: AccountOptions::standard(),
            })
            .await
            .map(|_| ());
        if r.is_ok() {
            self.known_accounts.borrow_mut().insert(user.to_string());
        }
        r
    }

    fn admit(&self, ip: IpAddr, max: usize) -> bool {
        let mut m = self.per_ip.borrow_mut();
        let n = m.entry(ip).or_default();
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    /// Counts a session that was admitted on another shard and moved here.
    fn count(&self, ip: IpAddr) {
        *self.per_ip.borrow_mut().entry(ip).or_default() += 1;
    }

    fn release(&self, ip: IpAddr) {
        let mut m = self.per_ip.borrow_mut();
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// What a client is told when a stored message cannot be read: the kind of failure, never
/// a path or the engine's internals (those go to the log, with account, mailbox and UID).
/// With a POP3 response code (RFC 3206) first.
pub fn read_failure(e: &ringmail_engine::Error) -> String {
    match e {
        ringmail_engine::Error::Corrupt { .. } | ringmail_engine::Error::MissingSegment(_) => {
            "[SYS/PERM] this message is damaged in storage and cannot be read".into()
        }
        ringmail_engine::Error::Store(StoreError::NoSuchMessage) => {
            "no such message (expunged)".into()
        }
        _ => "[SYS/TEMP] this message cannot be read now, try again later".into(),
    }
}

/// Descriptors kept for storage, whatever the clients do: per partition, its directory, the
/// active and next segment and the reader's open segments; plus the process's own (logs,
/// the users file, TLS files, the blocking pool, glommio's rings and eventfds).
fn storage_reserve(partitions: usize, shards: usize) -> usize {
    64 + shards * 8 + partitions * (4 + ringmail_engine::MAX_OPEN_SEGMENTS)
}

/// How many client connections the descriptor limit leaves room for, after the storage
/// reserve (each connection holds one descriptor, two for a moment while it moves between
/// shards). The configured limit, if any, when it is lower.
fn connection_limit(configured: usize, nofile: u64, reserve: usize) -> usize {
    let room = (nofile as usize).saturating_sub(reserve) * 9 / 10;
    match configured {
        0 => room.max(1),
        n => n.min(room.max(1)),
    }
}

/// Raises a resource's soft limit to its hard one (as much as the operator allowed) and
/// returns it (`RLIM_INFINITY` for no limit).
pub fn raise_soft_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the local struct only.
    unsafe {
        if libc::getrlimit(resource, &mut l) != 0 {
            return 0;
        }
        if l.rlim_cur < l.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: l.rlim_max,
                rlim_max: l.rlim_max,
            };
            if libc::setrlimit(resource, &raised) == 0 {
                l.rlim_cur = l.rlim_max;
            }
        }
    }
    l.rlim_cur
}

/// Creates the data directory if it is missing, but only its last component: a mistyped
/// path must not quietly become a new, empty store.
fn prepare_data_dir(dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    if dir.exists() {
        return Err(format!("{} exists and is not a directory", dir.display()));
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(format!(
            "the data directory {} does not exist, nor does its parent {}: check the path \
             (only the last component is created)",
            dir.display(),
            parent.display()
        ));
    }
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("creating the data directory {}: {e}", dir.display()))?;
    tracing::info!(data = %dir.display(), "created a new, empty data directory");
    Ok(())
}

/// Warns when the data directory can be read by other local users (made by an older
/// version, or by hand): mail is private.
fn check_data_dir_mode(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(dir) {
        let mode = m.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                data = %dir.display(),
                mode = format!("{mode:o}"),
                "the data directory is open to other local users; `chmod 700` it"
            );
        }
    }
}

/// Starts the engine and every listener; returns the running server. Everything that can
/// be wrong in the configuration (a listener that cannot bind, a port another process
/// shares, a broken `users.toml`, a missing certificate) fails here, before any client is
/// accepted.
pub fn start(cfg: Config, source: reload::Source) -> Result<Running, String> {
    prepare_data_dir(&cfg.data)?;
    check_data_dir_mode(&cfg.data);
    let users = Users::load(&cfg.data).map_err(|e| {
        format!("{e}; fix it (or move it away to start with no users) and start again")
    })?;
    let users_mtime = Users::mtime(&cfg.data);
    let tls = crate::tls::server_config(&cfg)?;
    let shards = if cfg.cores == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        cfg.cores
    };
    let cluster_port = cfg.cluster.as_ref().and_then(|c| c.listen);
    let sockets =
        listeners::bind_all(&cfg.listen, cluster_port, shards).map_err(|e| e.to_string())?;
    let partitions =
        ringmail_engine::SlotMap::partitions_in(&cfg.data).unwrap_or(if cfg.partitions == 0 {
            shards as u32
        } else {
            cfg.partitions
        }) as usize;
    let nofile = match raise_soft_limit(libc::RLIMIT_NOFILE) {
        0 => 1024,
        n => n,
    };
    let max_connections = connection_limit(
        cfg.limits.max_connections,
        nofile,
        storage_reserve(partitions, shards),
    );
    tracing::info!(
        nofile,
        max_connections,
        "client connections are limited by open files (LimitNOFILE= raises it)"
    );
    let shared = Arc::new(Shared {
        metrics: Arc::new(Metrics::default()),
        throttle: Throttle::new(reload::throttle_policy(&cfg)),
        budget: Arc::new(Budget::new(cfg.limits.max_inflight_message_mib << 20)),
        max_connections,
        run_id: run_id(),
        sockets: Mutex::new(sockets.per_shard.into_iter().map(Some).collect()),
        metrics_socket: Mutex::new(sockets.metrics),
        cluster: std::sync::OnceLock::new(),
        routes: std::sync::OnceLock::new(),
        dedup: dedup::Dedup::default(),
        users: Versioned::new(users),
        live: Versioned::new(Live {
            cfg: cfg.clone(),
            tls: Some(tls),
        }),
    });
    let for_shards = shared.clone();
    let service: Service = Arc::new(move |ctx: Rc<ShardContext>| {
        let shared = for_shards.clone();
        Box::pin(async move { run_shard(shared, ctx).await })
    });
    let mut ncfg = NodeConfig::new(cfg.data.clone());
    ncfg.shards = shards;
    ncfg.partitions = cfg.partitions;
    // Cluster mode: the cluster's partition count comes from etcd, and partitions open as
    // this node comes to own them.
    let control = match &cfg.cluster {
        Some(c) => {
            let proposed = if cfg.partitions == 0 {
                shards as u32
            } else {
                cfg.partitions
            };
            let cp = ringmail_cluster::ControlPlane::start(c.clone(), cfg.data.clone(), proposed)
                .map_err(|e| format!("joining the cluster: {e}"))?;
            if let Some(local) = ringmail_engine::SlotMap::partitions_in(&cfg.data) {
                if local != cp.partitions() {
                    return Err(format!(
                        "{} has {local} partitions but the cluster has {}: use an empty data directory for this node",
                        cfg.data.display(),
                        cp.partitions()
                    ));
                }
            }
            ncfg.partitions = cp.partitions();
            ncfg.open_at_start = false;
            let _ = shared.cluster.set(cp.status_handle());
            let _ = shared.routes.set((cp.routes(), cp.secret().to_string()));
            Some(cp)
        }
        None => None,
    };
    ncfg.partition.deferred_compression_bytes = cfg.deferred_compression_mib << 20;
    ncfg.partition.segment_size = cfg.segment_mib.clamp(1, 4096) << 20;
    if cfg.spin_before_park_us > 0 {
        ncfg.spin_before_park = Some(Duration::from_micros(cfg.spin_before_park_us));
    }
    let node = ringmail_engine::Node::start_with(ncfg, Some(service)).map_err(|e| e.to_string())?;
    if let Some(cp) = &control {
        cp.run(node.handle());
    }
    Ok(Running::new(
        control,
        node,
        shared,
        cfg,
        source,
        users_mtime,
    ))
}

/// Ten base-32 characters (50 random bits) that start this run's delivery ids.
fn run_id() -> String {
    use password_hash::rand_core::{OsRng, RngCore};
    const DIGITS: &[u8; 32] = b"0123456789bcdfghjkmnpqrstvwxyzBC";
    let mut n = OsRng.next_u64();
    (0..10)
        .map(|_| {
            let d = DIGITS[(n & 31) as usize] as char;
            n >>= 5;
            d
        })
        .collect()
}

async fn run_shard(shared: Arc<Shared>, ctx: Rc<ShardContext>) {
    let sockets = shared
        .sockets
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(ctx.shard.0 as usize)
        .and_then(Option::take)
        .unwrap_or_default();
    let live = Cached::new(&shared.live);
    let ttl = live.get(&shared.live).cfg.auth.cache_ttl_secs;
    let envelope_mib = live.get(&shared.live).cfg.envelope_cache_mib;
    let server = Rc::new(ShardServer {
        users: Cached::new(&shared.users),
        live,
        auth_cache: RefCell::new(auth_cache::AuthCache::new(Duration::from_secs(ttl))),
        meta_cache: RefCell::new(meta_cache::ShardCache::new(32 << 20)),
        envelopes: RefCell::new(meta_cache::ShardCache::new((envelope_mib << 20) as usize)),
        views: RefCell::default(),
        sessions: sessions::SessionState::default(),
        shared: shared.clone(),
        ctx: ctx.clone(),
        known_accounts: RefCell::new(HashSet::new()),
        per_ip: RefCell::new(HashMap::new()),
        watch: watch::Watch::default(),
        next_delivery: Cell::new(0),
        routes: RefCell::new(None),
        forwards: forward::Pool::default(),
    });
    glommio::spawn_local(server.watch.clone().run(ctx.stop.clone())).detach();
    LOCAL.with(|l| *l.borrow_mut() = Some(server.clone()));
    let mut tasks = Vec::new();
    for b in sockets {
        // SAFETY: the descriptor is a listening TCP socket this shard now owns alone.
        let listener = unsafe { TcpListener::from_raw_fd(b.fd.into_raw_fd()) };
        tasks.push(glommio::spawn_local(accept_loop(
            server.clone(),
            listener,
            b.addr,
            b.kind,
        )));
    }
    let metrics_socket = shared
        .metrics_socket
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some((addr, fd)) = metrics_socket {
        // SAFETY: as above; only one shard takes it.
        let listener = unsafe { TcpListener::from_raw_fd(fd.into_raw_fd()) };
        tasks.push(glommio::spawn_local(metrics::serve(
            server.clone(),
            listener,
            addr,
        )));
    }
    for t in tasks {
        t.await;
    }
    // Not left to the thread's exit: dropping the server drops its partitions, whose files
    // log as they go, and logging from a thread-local destructor aborts the process.
    LOCAL.with(|l| l.borrow_mut().take());
}

/// Each protocol's way of saying "not now" before closing; on implicit-TLS listeners
/// nothing can be said before a handshake, so the connection is just closed.
fn refusal(kind: Listener, why: &str) -> Vec<u8> {
    match kind {
        Listener::Smtp | Listener::Submission | Listener::Lmtp => {
            format!("421 4.7.0 {why}, try again later\r\n").into_bytes()
        }
        Listener::Pop3 => format!("-ERR [SYS/TEMP] {why}, try again later\r\n").into_bytes(),
        Listener::Imap => format!("* BYE [UNAVAILABLE] {why}, try again later\r\n").into_bytes(),
        Listener::Smtps | Listener::Pop3s | Listener::Imaps | Listener::Cluster => Vec::new(),
    }
}

async fn accept_loop(
    server: Rc<ShardServer>,
    listener: TcpListener,
    addr: SocketAddr,
    kind: Listener,
) {
    if server.ctx.shard.0 == 0 {
        tracing::info!(%addr, listener = kind.name(), "listening");
    }
    let stop = server.ctx.stop.clone();
    let mut backoff = Duration::ZERO;
    let mut said = metrics::Limiter::new(Duration::from_secs(60));
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            let _ = stop.recv().await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(s)) => {
                backoff = Duration::ZERO;
                s
            }
            Some(Err(e)) => {
                // Out of descriptors (or memory): waiting is the only cure, and a tight loop
                // of failing accepts would take the core from the sessions that can finish.
                server.shared.metrics.accept_error();
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                if let Some(suppressed) = said.allow() {
                    tracing::warn!(%addr, error = %e, suppressed, "accept failed; backing off");
                }
                glommio::timer::sleep(backoff).await;
                continue;
            }
        };
        let peer = match stream.peer_addr() {
            Ok(p) => p,
            Err(_) => continue,
        };
        let live = server.live();
        let why = if server.shared.metrics.open_connections() >= server.shared.max_connections {
            Some(("too many connections", "connection_limit"))
        } else if kind != Listener::Cluster
            && !server.admit(peer.ip(), live.cfg.limits.max_connections_per_ip)
        {
            Some((
                "too many connections from your address",
                "connection_limit_per_ip",
            ))
        } else {
            None
        };
        if let Some((why, reason)) = why {
            server.shared.metrics.rejected(reason);
            tracing::info!(
                target: "ringmail::conn",
                listener = kind.name(),
                remote = %peer.ip(),
                "connection refused: {why}"
            );
            let refusal = refusal(kind, why);
            glommio::spawn_local(async move {
                let mut s = stream;
                use futures_lite::AsyncWriteExt;
                let _ = s.write_all(&refusal).await;
                let _ = s.close().await;
            })
            .detach();
            continue;
        }
        let permit = server.shared.metrics.open(kind);
        tracing::info!(
            target: "ringmail::conn",
            listener = kind.name(),
            remote = %peer,
            tls = kind.implicit_tls(),
            "connection"
        );
        let srv = server.clone();
        glommio::spawn_local(async move {
            let _ = stream.set_nodelay(true);
            match kind {
                Listener::Pop3 | Listener::Pop3s => {
                    pop3::serve(srv.clone(), stream, peer, kind, permit).await
                }
                Listener::Imap | Listener::Imaps => {
                    imap::serve(srv.clone(), stream, peer, kind, permit).await
                }
                // Another node's connection: not a client, not counted per address.
                Listener::Cluster => {
                    internal::serve(srv.clone(), stream, peer, permit).await;
                    return;
                }
                _ => smtp::serve(srv.clone(), stream, peer, kind, permit).await,
            }
            srv.release(peer.ip());
        })
        .detach();
    }
}

impl Listener {
    pub fn implicit_tls(self) -> bool {
        matches!(self, Listener::Smtps | Listener::Pop3s | Listener::Imaps)
    }

    pub fn mode(self) -> Mode {
        match self {
            Listener::Smtp => Mode::Inbound,
            Listener::Submission | Listener::Smtps => Mode::Submission,
            Listener::Lmtp | Listener::Cluster => Mode::Lmtp,
            // POP3 and IMAP listeners never reach the SMTP session.
            Listener::Pop3 | Listener::Pop3s | Listener::Imap | Listener::Imaps => Mode::Inbound,
        }
    }
}
