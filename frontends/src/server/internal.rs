//! The cluster port: connections from the other nodes of the cluster, each opened by one
//! line (`crate::cluster_link::Hello`) and then served as LMTP (deliveries they forward) or
//! as the IMAP or POP3 session they proxy.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpStream;

use super::conn::{Conn, Read};
use super::metrics::Permit;
use super::ShardServer;
use crate::cluster_link::Hello;

/// The opening line must come this soon.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve(server: Rc<ShardServer>, stream: TcpStream, peer: SocketAddr, permit: Permit) {
    let _ = stream.set_nodelay(true);
    let Some(mut conn) = Conn::open(stream, permit, None, &server.watch, HELLO_TIMEOUT).await
    else {
        return;
    };
    let Some(secret) = server.cluster_secret().map(str::to_string) else {
        conn.close().await;
        return;
    };
    let hello = match read_line(&mut conn).await {
        Some(line) => Hello::parse(&line, &secret),
        None => {
            conn.close().await;
            return;
        }
    };
    let hello = match hello {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(remote = %peer, error = %e, "refused a connection on the cluster port");
            let _ = conn.write_all(format!("-ERR {e}\r\n").as_bytes()).await;
            conn.close().await;
            return;
        }
    };
    match hello {
        Hello::Lmtp => {
            if conn.write_all(b"+OK\r\n").await.is_ok() {
                super::smtp::serve_forwarded(server, conn, peer).await;
            }
        }
        Hello::Imap { account, client } => {
            server.shared.metrics.proxied_in();
            tracing::info!(target: "ringmail::conn", account = %account, client = %client, node = %peer, "proxied IMAP session");
            super::imap::serve_proxied(server, conn, account).await;
        }
        Hello::Pop3 { account, client } => {
            server.shared.metrics.proxied_in();
            tracing::info!(target: "ringmail::conn", account = %account, client = %client, node = %peer, "proxied POP3 session");
            super::pop3::serve_proxied(server, conn, account, client).await;
        }
    }
}

/// The opening line, without its line end. The dialling node sends nothing more until
/// it is answered, so a read never takes bytes of what follows.
async fn read_line(conn: &mut Conn) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    // One deadline for the whole line, however it is split.
    let deadline = std::time::Instant::now() + HELLO_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match conn.read_or_stop(&mut buf, left).await {
            Read::Data(n) => line.extend_from_slice(&buf[..n]),
            _ => return None,
        }
        if let Some(end) = memchr::memchr(b'\n', &line) {
            if end + 1 != line.len() {
                return None;
            }
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Some(line);
        }
        if line.len() > 1024 {
            return None;
        }
    }
}
