//! Prometheus text-format metrics, and the liveness and readiness probes, on a small HTTP
//! endpoint served by shard 0.
//!
//! Counters are relaxed atomics written by every shard: no lock is shared across cores.
//!
//! - `GET /metrics`: every counter and gauge, each with `# HELP` and `# TYPE`.
//! - `GET /healthz`: 200 while the process serves HTTP at all (liveness).
//! - `GET /readyz`: 200 when every partition is open, not poisoned and writable; 503 with
//!   the reasons otherwise (readiness: take the node out of a load balancer).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpListener;

use super::{Listener, ShardServer};

/// Reasons a connection, a recipient, a message or a login was turned away.
pub const REJECT_REASONS: [&str; 11] = [
    "connection_limit",
    "connection_limit_per_ip",
    "relay_denied",
    "no_such_user",
    "message_too_large",
    "over_quota",
    "server_busy",
    "storage_unavailable",
    "login_throttled",
    "too_many_errors",
    "timeout",
];

/// Protocols that authenticate.
pub const AUTH_PROTOCOLS: [&str; 3] = ["smtp", "pop3", "imap"];

#[derive(Default)]
pub struct Metrics {
    connections: [AtomicU64; Listener::ALL.len()],
    /// Open now, per listener (incremented at accept, decremented when the connection
    /// closes, on whichever shard it ended up).
    open: [AtomicU64; Listener::ALL.len()],
    tls_failures: [AtomicU64; Listener::ALL.len()],
    messages: AtomicU64,
    bytes: AtomicU64,
    auth_failures: [AtomicU64; AUTH_PROTOCOLS.len()],
    rejections: [AtomicU64; REJECT_REASONS.len()],
    accept_errors: AtomicU64,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    cluster: ClusterCounters,
}

/// Cluster mode: what this node did for accounts other nodes serve.
#[derive(Default)]
struct ClusterCounters {
    /// Sessions proxied to another node: open now and ever, per protocol (IMAP, POP3).
    proxied_open: [AtomicU64; 2],
    proxied: [AtomicU64; 2],
    /// Sessions other nodes proxied to this one.
    proxied_in: AtomicU64,
    /// Recipients whose copy was forwarded to their owner, stored or refused.
    forwarded: AtomicU64,
    forward_failed: AtomicU64,
    /// Sessions and recipients no node served when they came (or whose node was unreachable).
    routing_misses: AtomicU64,
}

/// A session proxied to another node, counted open until it drops.
pub struct Proxied {
    metrics: Arc<Metrics>,
    i: usize,
}

impl Drop for Proxied {
    fn drop(&mut self) {
        self.metrics.cluster.proxied_open[self.i].fetch_sub(1, Relaxed);
    }
}

/// One open connection, counted until it drops (it travels with the connection when a
/// session moves to another shard).
pub struct Permit {
    metrics: Arc<Metrics>,
    kind: Listener,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.metrics.open[self.kind as usize].fetch_sub(1, Relaxed);
    }
}

impl Permit {
    pub fn listener(&self) -> Listener {
        self.kind
    }

    /// A TLS handshake on this connection failed or timed out: counted, and logged at
    /// debug level (clients that probe and hang up are common).
    pub fn tls_failed(&self, e: &std::io::Error) {
        self.metrics.tls_failure(self.kind);
        tracing::debug!(listener = self.kind.name(), error = %e, "TLS handshake failed");
    }
}

fn index(names: &[&str], name: &str) -> usize {
    // Callers pass the constants above; an unknown name lands on the last slot rather than
    // panicking in a connection task.
    names
        .iter()
        .position(|n| *n == name)
        .unwrap_or(names.len() - 1)
}

impl Metrics {
    /// A new connection on `kind`: counted, and open until the permit drops.
    pub fn open(self: &Arc<Self>, kind: Listener) -> Permit {
        self.connections[kind as usize].fetch_add(1, Relaxed);
        self.open[kind as usize].fetch_add(1, Relaxed);
        Permit {
            metrics: self.clone(),
            kind,
        }
    }
    pub fn open_connections(&self) -> usize {
        self.open.iter().map(|o| o.load(Relaxed)).sum::<u64>() as usize
    }
    pub fn tls_failure(&self, l: Listener) {
        self.tls_failures[l as usize].fetch_add(1, Relaxed);
    }
    pub fn delivered(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
    }
    pub fn auth_failure(&self, protocol: &str) {
        self.auth_failures[index(&AUTH_PROTOCOLS, protocol)].fetch_add(1, Relaxed);
    }
    pub fn auth_throttled(&self, _protocol: &str) {
        self.rejected("login_throttled");
    }
    pub fn rejected(&self, reason: &str) {
        self.rejections[index(&REJECT_REASONS, reason)].fetch_add(1, Relaxed);
    }
    pub fn accept_error(&self) {
        self.accept_errors.fetch_add(1, Relaxed);
    }
    pub fn proxied_session(self: &Arc<Self>, protocol: &str) -> Proxied {
        let i = usize::from(protocol == "pop3");
        self.cluster.proxied[i].fetch_add(1, Relaxed);
        self.cluster.proxied_open[i].fetch_add(1, Relaxed);
        Proxied {
            metrics: self.clone(),
            i,
        }
    }
    pub fn proxied_in(&self) {
        self.cluster.proxied_in.fetch_add(1, Relaxed);
    }
    pub fn forwarded(&self, stored: u64, failed: u64) {
        self.cluster.forwarded.fetch_add(stored + failed, Relaxed);
        self.cluster.forward_failed.fetch_add(failed, Relaxed);
    }
    pub fn cluster_routing_miss(&self) {
        self.cluster.routing_misses.fetch_add(1, Relaxed);
    }
    pub fn reloaded(&self, ok: bool) {
        if ok {
            self.reloads.fetch_add(1, Relaxed);
        } else {
            self.reload_failures.fetch_add(1, Relaxed);
        }
    }
}

/// Lets a repeated log line through at most once per interval, counting the ones held back.
pub struct Limiter {
    every: Duration,
    next: Option<Instant>,
    suppressed: u64,
}

impl Limiter {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            next: None,
            suppressed: 0,
        }
    }

    /// `Some(lines held back since the last one)` when this one may be logged.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.next.is_some_and(|n| now < n) {
            self.suppressed += 1;
            return None;
        }
        self.next = Some(now + self.every);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Writes one metric's `# HELP` and `# TYPE` lines.
fn head(s: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn labelled(s: &mut String, name: &str, label: &str, values: &[(&str, u64)]) {
    for (v, n) in values {
        let _ = writeln!(s, "{name}{{{label}=\"{v}\"}} {n}");
    }
}

fn per_listener(a: &[AtomicU64; Listener::ALL.len()]) -> Vec<(&'static str, u64)> {
    Listener::ALL
        .iter()
        .map(|l| (l.name(), a[*l as usize].load(Relaxed)))
        .collect()
}

async fn render(server: &ShardServer) -> String {
    let m = &server.shared.metrics;
    let mut s = String::new();
    let c = "ringmail_connections_total";
    head(
        &mut s,
        c,
        "counter",
        "Client connections accepted, per listener.",
    );
    labelled(&mut s, c, "listener", &per_listener(&m.connections));
    let c = "ringmail_connections_open";
    head(
        &mut s,
        c,
        "gauge",
        "Client connections open now, per listener.",
    );
    labelled(&mut s, c, "listener", &per_listener(&m.open));
    let c = "ringmail_connections_max";
    head(
        &mut s,
        c,
        "gauge",
        "Client connections the open-file limit leaves room for (more are refused).",
    );
    let _ = writeln!(s, "{c} {}", server.shared.max_connections);
    let c = "ringmail_tls_handshake_failures_total";
    head(
        &mut s,
        c,
        "counter",
        "TLS handshakes that failed or timed out, per listener.",
    );
    labelled(&mut s, c, "listener", &per_listener(&m.tls_failures));
    let c = "ringmail_accept_errors_total";
    head(
        &mut s,
        c,
        "counter",
        "accept() failures (e.g. out of file descriptors); accepting backs off.",
    );
    let _ = writeln!(s, "{c} {}", m.accept_errors.load(Relaxed));
    let c = "ringmail_messages_delivered_total";
    head(
        &mut s,
        c,
        "counter",
        "Message copies stored, one per recipient.",
    );
    let _ = writeln!(s, "{c} {}", m.messages.load(Relaxed));
    let c = "ringmail_bytes_delivered_total";
    head(&mut s, c, "counter", "Bytes of message copies stored.");
    let _ = writeln!(s, "{c} {}", m.bytes.load(Relaxed));
    let c = "ringmail_auth_failures_total";
    head(&mut s, c, "counter", "Failed logins, per protocol.");
    let v: Vec<(&str, u64)> = AUTH_PROTOCOLS
        .iter()
        .zip(&m.auth_failures)
        .map(|(p, n)| (*p, n.load(Relaxed)))
        .collect();
    labelled(&mut s, c, "protocol", &v);
    let c = "ringmail_rejections_total";
    head(
        &mut s,
        c,
        "counter",
        "Connections, recipients, messages and logins turned away, per reason.",
    );
    let v: Vec<(&str, u64)> = REJECT_REASONS
        .iter()
        .zip(&m.rejections)
        .map(|(p, n)| (*p, n.load(Relaxed)))
        .collect();
    labelled(&mut s, c, "reason", &v);
    let c = "ringmail_inflight_message_bytes";
    head(
        &mut s,
        c,
        "gauge",
        "Bytes of messages being received, held against limits.max_inflight_message_mib.",
    );
    let _ = writeln!(s, "{c} {}", server.shared.budget.used());
    let c = "ringmail_config_reloads_total";
    head(
        &mut s,
        c,
        "counter",
        "Configuration reloads (SIGHUP), by result.",
    );
    labelled(
        &mut s,
        c,
        "result",
        &[
            ("ok", m.reloads.load(Relaxed)),
            ("failed", m.reload_failures.load(Relaxed)),
        ],
    );
    partition_metrics(server, &mut s).await;
    if let Some(status) = server.shared.cluster.get() {
        cluster_metrics(&status.lock().unwrap_or_else(|e| e.into_inner()), &mut s);
        routing_metrics(&m.cluster, &mut s);
    }
    s
}

/// Cluster mode: sessions and deliveries for accounts on other nodes.
fn routing_metrics(c: &ClusterCounters, s: &mut String) {
    let per_protocol =
        |a: &[AtomicU64; 2]| [("imap", a[0].load(Relaxed)), ("pop3", a[1].load(Relaxed))];
    let n = "ringmail_cluster_proxied_sessions_total";
    head(
        s,
        n,
        "counter",
        "Logins here proxied to the node that serves the account.",
    );
    labelled(s, n, "protocol", &per_protocol(&c.proxied));
    let n = "ringmail_cluster_proxied_sessions_open";
    head(s, n, "gauge", "Sessions being proxied to another node now.");
    labelled(s, n, "protocol", &per_protocol(&c.proxied_open));
    let rows: [(&str, &str, u64); 4] = [
        (
            "ringmail_cluster_proxied_in_total",
            "Sessions other nodes proxied to this one.",
            c.proxied_in.load(Relaxed),
        ),
        (
            "ringmail_cluster_forwarded_recipients_total",
            "Recipients whose copy went to the node that serves them.",
            c.forwarded.load(Relaxed),
        ),
        (
            "ringmail_cluster_forward_failures_total",
            "Forwarded recipients the serving node did not store (answered 4xx/5xx, or unreachable).",
            c.forward_failed.load(Relaxed),
        ),
        (
            "ringmail_cluster_routing_misses_total",
            "Sessions and recipients no node served when they came, or whose node could not be reached.",
            c.routing_misses.load(Relaxed),
        ),
    ];
    for (name, help, v) in rows {
        head(s, name, "counter", help);
        let _ = writeln!(s, "{name} {v}");
    }
}

/// Cluster mode: this node's view of its ownerships and what its control plane did.
fn cluster_metrics(st: &ringmail_cluster::Status, s: &mut String) {
    let rows: [(&str, &str, &str, u64); 10] = [
        (
            "ringmail_cluster_lease_alive",
            "gauge",
            "1 while this node's etcd lease is confirmed; 0: it serves nothing.",
            u64::from(st.lease_alive),
        ),
        (
            "ringmail_cluster_partitions_owned",
            "gauge",
            "Partitions this node owns now.",
            st.owned.len() as u64,
        ),
        (
            "ringmail_cluster_takeovers_total",
            "counter",
            "Partitions this node came to own (failovers, moves and starts).",
            st.takeovers,
        ),
        (
            "ringmail_cluster_moves_in_total",
            "counter",
            "Takeovers of a partition its previous owner handed over (cluster move, drain, a clean stop).",
            st.moves_in,
        ),
        (
            "ringmail_cluster_failovers_total",
            "counter",
            "Takeovers of a partition whose previous owner's lease ended (it died, or was cut off).",
            st.failovers,
        ),
        (
            "ringmail_cluster_releases_total",
            "counter",
            "Partitions this node handed over (moves, drains, a clean stop).",
            st.releases,
        ),
        (
            "ringmail_cluster_fenced_total",
            "counter",
            "Ownerships that ended without this node giving them up (another node took over).",
            st.fenced,
        ),
        (
            "ringmail_cluster_chunks_shipped_total",
            "counter",
            "Tail chunks stored in object storage and confirmed in etcd.",
            st.shipped,
        ),
        (
            "ringmail_cluster_manifests_published_total",
            "counter",
            "Manifests published (sealed segments, checkpoints, takeovers).",
            st.published,
        ),
        (
            "ringmail_cluster_objects_collected_total",
            "counter",
            "Objects deleted from object storage by garbage collection.",
            st.collected,
        ),
    ];
    for (name, kind, help, v) in rows {
        head(s, name, kind, help);
        let _ = writeln!(s, "{name} {v}");
    }
}

async fn partition_metrics(server: &ShardServer, s: &mut String) {
    let stats = server.ctx.node.stats().await;
    let heads = [
        (
            "ringmail_commit_batches_total",
            "counter",
            "Group-commit batches written.",
        ),
        (
            "ringmail_commit_records_total",
            "counter",
            "Records written in group-commit batches.",
        ),
        (
            "ringmail_commit_batch_max",
            "gauge",
            "Most records in one batch so far.",
        ),
        (
            "ringmail_fdatasync_seconds",
            "histogram",
            "Durable-write latency per batch (write and device flush).",
        ),
        ("ringmail_stored_messages", "gauge", "Messages stored."),
        (
            "ringmail_deferred_compression_bytes",
            "gauge",
            "Bytes of mail stored raw, waiting for background compression.",
        ),
        (
            "ringmail_partition_writable",
            "gauge",
            "1 while the partition accepts writes; 0 while storage is full or unavailable.",
        ),
        (
            "ringmail_partition_poisoned",
            "gauge",
            "1 after a write of unknown outcome: the partition refuses writes until restart.",
        ),
        (
            "ringmail_storage_unavailable_total",
            "counter",
            "Writes refused while the disk was full or out of descriptors (temporary errors).",
        ),
    ];
    for (name, kind, help) in heads {
        head(s, name, kind, help);
    }
    for (p, st) in stats.iter().enumerate() {
        let Ok(st) = st else { continue };
        let l = &st.log;
        let _ = writeln!(
            s,
            "ringmail_commit_batches_total{{partition=\"{p}\"}} {}",
            l.batches
        );
        let _ = writeln!(
            s,
            "ringmail_commit_records_total{{partition=\"{p}\"}} {}",
            l.records
        );
        let _ = writeln!(
            s,
            "ringmail_commit_batch_max{{partition=\"{p}\"}} {}",
            l.max_batch_records
        );
        let mut cum = 0;
        for (i, le) in ringmail_engine::SYNC_BUCKETS_MS.iter().enumerate() {
            cum += l.sync_histogram[i];
            let _ = writeln!(
                s,
                "ringmail_fdatasync_seconds_bucket{{partition=\"{p}\",le=\"{}\"}} {cum}",
                le / 1000.0
            );
        }
        let _ = writeln!(
            s,
            "ringmail_fdatasync_seconds_bucket{{partition=\"{p}\",le=\"+Inf\"}} {}",
            l.batches
        );
        let _ = writeln!(
            s,
            "ringmail_fdatasync_seconds_sum{{partition=\"{p}\"}} {}",
            l.sync_time.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "ringmail_fdatasync_seconds_count{{partition=\"{p}\"}} {}",
            l.batches
        );
        let _ = writeln!(
            s,
            "ringmail_stored_messages{{partition=\"{p}\"}} {}",
            st.messages
        );
        let _ = writeln!(
            s,
            "ringmail_deferred_compression_bytes{{partition=\"{p}\"}} {}",
            st.deferred_bytes
        );
        let _ = writeln!(
            s,
            "ringmail_partition_writable{{partition=\"{p}\"}} {}",
            u8::from(l.unavailable.is_none() && !l.poisoned)
        );
        let _ = writeln!(
            s,
            "ringmail_partition_poisoned{{partition=\"{p}\"}} {}",
            u8::from(l.poisoned)
        );
        let _ = writeln!(
            s,
            "ringmail_storage_unavailable_total{{partition=\"{p}\"}} {}",
            l.refused_writes
        );
    }
}

/// `/readyz`: every partition open, not poisoned and writable.
async fn readiness(server: &ShardServer) -> Result<(), String> {
    let mut problems = Vec::new();
    for (p, st) in server.ctx.node.stats().await.iter().enumerate() {
        match st {
            Err(e) => problems.push(format!("partition {p}: {e}")),
            Ok(st) if st.log.poisoned => problems.push(format!("partition {p}: poisoned")),
            Ok(st) => {
                if let Some(why) = &st.log.unavailable {
                    problems.push(format!("partition {p}: not writable ({why})"));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn answer(server: &ShardServer, request: &str) -> String {
    let path = request
        .strip_prefix("GET ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("");
    match path {
        "/metrics" => response("200 OK", "text/plain; version=0.0.4", &render(server).await),
        "/healthz" => response("200 OK", "text/plain", "ok\n"),
        "/readyz" => match readiness(server).await {
            Ok(()) => response("200 OK", "text/plain", "ready\n"),
            Err(why) => response("503 Service Unavailable", "text/plain", &format!("{why}\n")),
        },
        _ => response("404 Not Found", "text/plain", ""),
    }
}

pub async fn serve(server: Rc<ShardServer>, listener: TcpListener, addr: SocketAddr) {
    tracing::info!(%addr, "serving metrics, /healthz and /readyz");
    let stop = server.ctx.stop.clone();
    loop {
        let s = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            let _ = stop.recv().await;
            None
        })
        .await;
        let Some(Ok(mut stream)) = s else {
            if s.is_none() {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let srv = server.clone();
        glommio::spawn_local(async move {
            // The request head, however it is split, within a few KiB and seconds.
            let mut buf = Vec::with_capacity(1024);
            let head = async {
                let mut chunk = [0u8; 1024];
                while buf.len() < 4096 && memchr::memmem::find(&buf, b"\r\n\r\n").is_none() {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            };
            futures_lite::future::or(head, glommio::timer::sleep(Duration::from_secs(5))).await;
            let req = String::from_utf8_lossy(&buf);
            let resp = answer(&srv, &req).await;
            let _ = stream.write_all(resp.as_bytes()).await;
            let _ = stream.close().await;
        })
        .detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_lets_one_line_through_per_interval_and_counts_the_rest() {
        let mut l = Limiter::new(Duration::from_secs(3600));
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        l.next = Some(Instant::now());
        assert_eq!(l.allow(), Some(2));
    }

    #[test]
    fn permits_count_open_connections() {
        let m = Arc::new(Metrics::default());
        let a = m.open(Listener::Imap);
        let b = m.open(Listener::Smtp);
        assert_eq!(m.open_connections(), 2);
        drop(a);
        assert_eq!(m.open_connections(), 1);
        assert_eq!(m.connections[Listener::Imap as usize].load(Relaxed), 1);
        drop(b);
        assert_eq!(m.open_connections(), 0);
        m.rejected("relay_denied");
        m.rejected("no such reason");
        assert_eq!(m.rejections[2].load(Relaxed), 1);
        assert_eq!(m.rejections[REJECT_REASONS.len() - 1].load(Relaxed), 1);
    }
}
