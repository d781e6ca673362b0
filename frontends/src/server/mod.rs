//! The I/O layer: listeners on every shard, the session loops, and the engine calls.
//!
//! Every shard binds every listener with SO_REUSEPORT, so the kernel spreads connections
//! over the cores. An SMTP/LMTP session runs where it was accepted; a delivery is sent to
//! the shards that own the recipients' accounts (`NodeHandle::deliver`), and the reply waits
//! until every copy is durable.

mod auth_cache;
mod conn;
mod deflate;
mod imap;
mod meta_cache;
mod metrics;
mod pop3;
pub mod received;
mod smtp;
mod tls_stream;
mod watch;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use glommio::net::TcpListener;
use ringmail_engine::{AccountOptions, Node, NodeConfig, Service, ShardContext, StoreError};

use crate::config::Config;
use crate::smtp::Mode;
use crate::users::Users;
use conn::Conn;
pub use metrics::Metrics;

/// What every shard shares: read-only configuration and relaxed atomic counters.
pub struct Shared {
    pub cfg: Config,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub metrics: Arc<Metrics>,
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
    users: RefCell<UsersCache>,
    auth_cache: RefCell<auth_cache::AuthCache>,
    /// Decoded message metadata, for IMAP (32 MiB per shard).
    pub meta_cache: RefCell<meta_cache::MetaCache>,
    known_accounts: RefCell<HashSet<String>>,
    per_ip: RefCell<HashMap<IpAddr, usize>>,
    /// Every connection's deadlines, and the shutdown signal for their reads.
    pub watch: watch::Watch,
}

struct UsersCache {
    users: Arc<Users>,
    mtime: Option<SystemTime>,
    checked: Instant,
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
    /// The users, re-read at most once a second when `users.toml` changed.
    pub fn users(&self) -> Arc<Users> {
        let mut c = self.users.borrow_mut();
        if c.checked.elapsed() >= Duration::from_secs(1) {
            c.checked = Instant::now();
            let m = Users::mtime(&self.shared.cfg.data);
            if m != c.mtime {
                match Users::load(&self.shared.cfg.data) {
                    Ok(u) => {
                        c.users = Arc::new(u);
                        c.mtime = m;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot reload users; keeping the previous list")
                    }
                }
            }
        }
        c.users.clone()
    }

    /// Checks a password on the blocking pool (argon2 is slow on purpose): on success, the
    /// addresses the user may send as.
    pub async fn check_password(
        &self,
        user: String,
        password: crate::smtp::Secret,
    ) -> Option<Vec<String>> {
        let users = self.users();
        if let Some(s) = self.auth_cache.borrow_mut().get(&users, &user, &password.0) {
            return Some(s);
        }
        let (u, p) = (users.clone(), password.0.clone());
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
        let found = self.users().scram(user);
        let fake_salt = ringmail_engine::format::crc32(user.as_bytes())
            .to_le_bytes()
            .repeat(4);
        (found, smtp::random_b64(18), fake_salt)
    }

    /// After a failed authentication of any mechanism: count it and slow the client down.
    pub async fn auth_failed(&self) {
        self.shared.metrics.auth_failure();
        glommio::timer::sleep(Duration::from_millis(
            self.shared.cfg.limits.auth_failure_delay_ms,
        ))
        .await;
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
        match self.ctx.partitions.get(&p) {
            Some(part) => f(part.clone()).await,
            None => self.ctx.node.on_partition(p, f).await,
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

    /// Creates the user's mail account in the engine on first use.
    pub async fn ensure_account(&self, user: &str) -> Result<(), ringmail_engine::Error> {
        if self.known_accounts.borrow().contains(user) {
            return Ok(());
        }
        let u = user.to_string();
        let r = self
            .on_account(user, move |p| async move {
                if p.has_account(&u) {
                    return Ok(());
                }
                match p.create_account(&u, &AccountOptions::standard()).await {
                    Err(e) if e.store() == Some(&StoreError::AccountExists) => Ok(()),
                    r => r,
                }
            })
            .await;
        if r.is_ok() {
            self.known_accounts.borrow_mut().insert(user.to_string());
        }
        r
    }

    fn admit(&self, ip: IpAddr) -> bool {
        let mut m = self.per_ip.borrow_mut();
        let n = m.entry(ip).or_default();
        if *n >= self.shared.cfg.limits.max_connections_per_ip {
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

/// Starts the engine and every listener; returns the running node.
pub fn start(cfg: Config) -> Result<Node, String> {
    let tls = crate::tls::server_config(&cfg)?;
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        tls: Some(tls),
        metrics: Arc::new(Metrics::default()),
    });
    let service: Service = Arc::new(move |ctx: Rc<ShardContext>| {
        let shared = shared.clone();
        Box::pin(async move { run_shard(shared, ctx).await })
    });
    let mut ncfg = NodeConfig::new(cfg.data.clone());
    ncfg.shards = cfg.cores;
    ncfg.partitions = cfg.partitions;
    ncfg.partition.deferred_compression_bytes = cfg.deferred_compression_mib << 20;
    if cfg.spin_before_park_us > 0 {
        ncfg.spin_before_park = Some(Duration::from_micros(cfg.spin_before_park_us));
    }

    Node::start_with(ncfg, Some(service)).map_err(|e| e.to_string())
}

async fn run_shard(shared: Arc<Shared>, ctx: Rc<ShardContext>) {
    let users = Users::load(&shared.cfg.data).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot read users; starting with none");
        Users::default()
    });
    let server = Rc::new(ShardServer {
        users: RefCell::new(UsersCache {
            users: Arc::new(users),
            mtime: Users::mtime(&shared.cfg.data),
            checked: Instant::now(),
        }),
        auth_cache: RefCell::new(auth_cache::AuthCache::new(Duration::from_secs(
            shared.cfg.auth.cache_ttl_secs,
        ))),
        meta_cache: RefCell::new(meta_cache::MetaCache::new(32 << 20)),
        shared: shared.clone(),
        ctx: ctx.clone(),
        known_accounts: RefCell::new(HashSet::new()),
        per_ip: RefCell::new(HashMap::new()),
        watch: watch::Watch::default(),
    });
    glommio::spawn_local(server.watch.clone().run(ctx.stop.clone())).detach();
    LOCAL.with(|l| *l.borrow_mut() = Some(server.clone()));
    let l = &shared.cfg.listen;
    let mut tasks = Vec::new();
    for (addr, kind) in [
        (l.smtp, Listener::Smtp),
        (l.submission, Listener::Submission),
        (l.smtps, Listener::Smtps),
        (l.lmtp, Listener::Lmtp),
        (l.pop3, Listener::Pop3),
        (l.pop3s, Listener::Pop3s),
        (l.imap, Listener::Imap),
        (l.imaps, Listener::Imaps),
    ] {
        if let Some(addr) = addr {
            tasks.push(glommio::spawn_local(accept_loop(
                server.clone(),
                addr,
                kind,
            )));
        }
    }
    if ctx.shard.0 == 0 {
        if let Some(addr) = l.metrics {
            tasks.push(glommio::spawn_local(metrics::serve(server.clone(), addr)));
        }
    }
    for t in tasks {
        t.await;
    }
    // Not left to the thread's exit: dropping the server drops its partitions, whose files
    // log as they go, and logging from a thread-local destructor aborts the process.
    LOCAL.with(|l| l.borrow_mut().take());
}

async fn accept_loop(server: Rc<ShardServer>, addr: SocketAddr, kind: Listener) {
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot listen");
            return;
        }
    };
    if server.ctx.shard.0 == 0 {
        tracing::info!(%addr, listener = ?kind, "listening");
    }
    let stop = server.ctx.stop.clone();
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            let _ = stop.recv().await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                tracing::warn!(%addr, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let peer = match stream.peer_addr() {
            Ok(p) => p,
            Err(_) => continue,
        };
        if !server.admit(peer.ip()) {
            // Each protocol's own way of saying so; on implicit-TLS listeners nothing can be
            // said before a handshake, so the connection is just closed.
            let refusal: &'static [u8] = match kind {
                Listener::Smtp | Listener::Submission | Listener::Lmtp => {
                    b"421 4.7.0 too many connections from your address\r\n"
                }
                Listener::Pop3 => b"-ERR [SYS/TEMP] too many connections from your address\r\n",
                Listener::Imap => b"* BYE [UNAVAILABLE] too many connections from your address\r\n",
                Listener::Smtps | Listener::Pop3s | Listener::Imaps => b"",
            };
            glommio::spawn_local(async move {
                let mut s = stream;
                use futures_lite::AsyncWriteExt;
                let _ = s.write_all(refusal).await;
                let _ = s.close().await;
            })
            .detach();
            continue;
        }
        server.shared.metrics.connection(kind);
        let srv = server.clone();
        glommio::spawn_local(async move {
            let _ = stream.set_nodelay(true);
            match kind {
                Listener::Pop3 | Listener::Pop3s => {
                    pop3::serve(srv.clone(), stream, peer, kind == Listener::Pop3s).await
                }
                Listener::Imap | Listener::Imaps => {
                    imap::serve(srv.clone(), stream, peer, kind == Listener::Imaps).await
                }
                _ => smtp::serve(srv.clone(), stream, peer, kind).await,
            }
            srv.release(peer.ip());
        })
        .detach();
    }
}

impl Listener {
    pub fn mode(self) -> Mode {
        match self {
            Listener::Smtp => Mode::Inbound,
            Listener::Submission | Listener::Smtps => Mode::Submission,
            Listener::Lmtp => Mode::Lmtp,
            // POP3 and IMAP listeners never reach the SMTP session.
            Listener::Pop3 | Listener::Pop3s | Listener::Imap | Listener::Imaps => Mode::Inbound,
        }
    }
}
