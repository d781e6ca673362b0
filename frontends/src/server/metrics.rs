//! Prometheus text-format metrics on a small HTTP endpoint (served by shard 0).
//!
//! Counters are relaxed atomics written by every shard: no lock is shared across cores.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpListener;

use super::{Listener, ShardServer};

/// Listener names, in the order of `Listener`'s variants.
const LISTENERS: [&str; 8] = [
    "smtp",
    "submission",
    "smtps",
    "lmtp",
    "pop3",
    "pop3s",
    "imap",
    "imaps",
];

#[derive(Default)]
pub struct Metrics {
    connections: [AtomicU64; LISTENERS.len()],
    messages: AtomicU64,
    bytes: AtomicU64,
    auth_failures: AtomicU64,
}

impl Metrics {
    pub fn connection(&self, l: Listener) {
        self.connections[l as usize].fetch_add(1, Relaxed);
    }
    pub fn delivered(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
    }
    pub fn auth_failure(&self) {
        self.auth_failures.fetch_add(1, Relaxed);
    }
}

async fn render(server: &ShardServer) -> String {
    let m = &server.shared.metrics;
    let mut s = String::new();
    let _ = writeln!(s, "# TYPE ringmail_connections_total counter");
    for (i, name) in LISTENERS.iter().enumerate() {
        let _ = writeln!(
            s,
            "ringmail_connections_total{{listener=\"{name}\"}} {}",
            m.connections[i].load(Relaxed)
        );
    }
    let _ = writeln!(
        s,
        "# TYPE ringmail_messages_delivered_total counter\nringmail_messages_delivered_total {}",
        m.messages.load(Relaxed)
    );
    let _ = writeln!(
        s,
        "# TYPE ringmail_bytes_delivered_total counter\nringmail_bytes_delivered_total {}",
        m.bytes.load(Relaxed)
    );
    let _ = writeln!(
        s,
        "# TYPE ringmail_auth_failures_total counter\nringmail_auth_failures_total {}",
        m.auth_failures.load(Relaxed)
    );
    let stats = server.ctx.node.stats().await;
    let _ = writeln!(s, "# TYPE ringmail_commit_batches_total counter");
    let _ = writeln!(s, "# TYPE ringmail_commit_records_total counter");
    let _ = writeln!(s, "# TYPE ringmail_commit_batch_max gauge");
    let _ = writeln!(s, "# TYPE ringmail_fdatasync_seconds histogram");
    let _ = writeln!(s, "# TYPE ringmail_stored_messages gauge");
    let _ = writeln!(s, "# TYPE ringmail_deferred_compression_bytes gauge");
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
        for (i, le) in ringmail_engine::io::log_writer::SYNC_BUCKETS_MS
            .iter()
            .enumerate()
        {
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
    }
    s
}

pub async fn serve(server: Rc<ShardServer>, addr: SocketAddr) {
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot listen for metrics");
            return;
        }
    };
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
            continue;
        };
        let srv = server.clone();
        glommio::spawn_local(async move {
            let mut buf = [0u8; 2048];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let resp = if req.starts_with("GET /metrics") {
                let body = render(&srv).await;
                format!("HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            } else {
                "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
            };
            let _ = stream.write_all(resp.as_bytes()).await;
            let _ = stream.close().await;
        })
        .detach();
    }
}
