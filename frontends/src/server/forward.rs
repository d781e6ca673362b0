//! Cluster mode: deliveries for accounts another node serves go to that node's cluster port
//! as LMTP (`crate::cluster_link`), one reply per recipient. Each shard keeps its
//! connections to the other nodes open between deliveries.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::dedup::DeliveryKey;
use crate::cluster_link::{delivery_commands, take_reply, DeliveryReplies, Hello, Reply};

/// Connecting, and each reply while opening a connection.
const OPEN_TIMEOUT: Duration = Duration::from_secs(3);
/// A delivery, sent and answered: the owner answers once every copy is durable (in object
/// storage too), which a slow store may hold up for seconds; an owner that stops taking
/// bytes or answering is given up on after this.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// An idle connection older than this is closed rather than reused (the owner may have
/// timed it out).
const MAX_IDLE: Duration = Duration::from_secs(60);
/// Idle connections kept per node and shard.
const MAX_IDLE_LINKS: usize = 32;

/// One delivery to forward.
pub(super) struct Delivery<'a> {
    pub from: &'a str,
    pub key: Option<&'a DeliveryKey>,
    pub accounts: &'a [String],
    pub body: &'a [u8],
}

/// Idle connections to other nodes, by cluster address.
#[derive(Default)]
pub struct Pool {
    idle: RefCell<HashMap<String, Vec<Link>>>,
}

struct Link {
    stream: TcpStream,
    buf: Vec<u8>,
    since: Instant,
}

/// Why a forwarded delivery got no answer.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no answer in time")]
    Timeout,
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

impl Pool {
    /// Delivers `body` to `accounts` on the node at `addr`: each recipient's outcome, in
    /// order (`Ok`: stored and durable there).
    pub(super) async fn deliver(
        &self,
        addr: &str,
        secret: &str,
        hostname: &str,
        d: Delivery<'_>,
    ) -> Vec<Result<(), Reply>> {
        let accounts = d.accounts;
        let link = match self.take(addr) {
            Some(l) => Ok(l),
            None => Link::open(addr, secret, hostname).await,
        };
        let failed = |text: String| {
            let r = Reply { code: 451, text };
            accounts.iter().map(|_| Err(r.clone())).collect()
        };
        let mut link = match link {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(node = addr, error = %e, "cannot reach a node to forward a delivery");
                return failed("4.4.1 the mailbox's server cannot be reached, try again".into());
            }
        };
        match within(REPLY_TIMEOUT, link.deliver(d)).await {
            Ok(outcome) => {
                self.put(addr, link);
                outcome
            }
            Err(e) => {
                // The copy may be stored there: the retry this asks for may duplicate it
                // (a lost reply, which RFC 5321 section 6.1 allows for).
                tracing::warn!(node = addr, error = %e, "a forwarded delivery got no answer");
                failed("4.4.2 lost the connection to the mailbox's server, try again".into())
            }
        }
    }

    /// Asks the node at `addr` to remember its copies of `key` for `addresses`' accounts
    /// (a partly failed delivery, see `server/dedup.rs`). Best effort: if the node cannot be
    /// told, the client's retry may store those copies again.
    pub async fn remember(
        &self,
        addr: &str,
        secret: &str,
        hostname: &str,
        key: &DeliveryKey,
        addresses: &[String],
    ) {
        let link = match self.take(addr) {
            Some(l) => Ok(l),
            None => Link::open(addr, secret, hostname).await,
        };
        let told = match link {
            Ok(mut l) => {
                let line = format!("XREMEMBER {} {}\r\n", key.hex(), addresses.join(" "));
                let r = within(OPEN_TIMEOUT, async {
                    l.send(line.as_bytes()).await?;
                    l.expect_ok().await
                })
                .await;
                if r.is_ok() {
                    self.put(addr, l);
                }
                r
            }
            Err(e) => Err(e),
        };
        if let Err(e) = told {
            tracing::warn!(node = addr, error = %e, "could not ask a node to remember a partly failed delivery");
        }
    }

    /// An idle connection to `addr` that is still open, if any.
    fn take(&self, addr: &str) -> Option<Link> {
        let mut idle = self.idle.borrow_mut();
        let links = idle.get_mut(addr)?;
        while let Some(l) = links.pop() {
            if l.since.elapsed() < MAX_IDLE && l.open_and_quiet() {
                return Some(l);
            }
        }
        None
    }

    fn put(&self, addr: &str, mut link: Link) {
        let mut idle = self.idle.borrow_mut();
        let links = idle.entry(addr.to_string()).or_default();
        if links.len() < MAX_IDLE_LINKS {
            link.since = Instant::now();
            links.push(link);
        }
    }
}

async fn within<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, LinkError>>,
) -> Result<T, LinkError> {
    futures_lite::future::or(f, async {
        glommio::timer::sleep(limit).await;
        Err(LinkError::Timeout)
    })
    .await
}

impl Link {
    async fn open(addr: &str, secret: &str, hostname: &str) -> Result<Link, LinkError> {
        let sa: SocketAddr = addr
            .parse()
            .map_err(|_| LinkError::Protocol(format!("bad cluster address {addr:?}")))?;
        within(OPEN_TIMEOUT, async {
            let stream = TcpStream::connect_timeout(sa, OPEN_TIMEOUT)
                .await
                .map_err(|e| LinkError::Io(std::io::Error::other(e.to_string())))?;
            let _ = stream.set_nodelay(true);
            super::proxy::keep_alive(&stream);
            let mut l = Link {
                stream,
                buf: Vec::new(),
                since: Instant::now(),
            };
            l.send(Hello::Lmtp.line(secret).as_bytes()).await?;
            l.expect_line("+OK").await?;
            l.expect_ok().await?;
            l.send(format!("LHLO {hostname}\r\n").as_bytes()).await?;
            l.expect_ok().await?;
            Ok(l)
        })
        .await
    }

    async fn send(&mut self, b: &[u8]) -> Result<(), LinkError> {
        self.stream.write_all(b).await?;
        Ok(())
    }

    async fn fill(&mut self) -> Result<(), LinkError> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(LinkError::Protocol("connection closed".into()));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn expect_line(&mut self, want: &str) -> Result<(), LinkError> {
        loop {
            if let Some(end) = memchr::memchr(b'\n', &self.buf) {
                let line = String::from_utf8_lossy(&self.buf[..end])
                    .trim_end()
                    .to_string();
                self.buf.drain(..=end);
                return match line == want {
                    true => Ok(()),
                    false => Err(LinkError::Protocol(line)),
                };
            }
            self.fill().await?;
        }
    }

    async fn reply(&mut self) -> Result<Reply, LinkError> {
        loop {
            match take_reply(&mut self.buf) {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => self.fill().await?,
                Err(e) => return Err(LinkError::Protocol(e.to_string())),
            }
        }
    }

    async fn expect_ok(&mut self) -> Result<(), LinkError> {
        let r = self.reply().await?;
        match r.is_ok() {
            true => Ok(()),
            false => Err(LinkError::Protocol(format!("{} {}", r.code, r.text))),
        }
    }

    async fn deliver(&mut self, d: Delivery<'_>) -> Result<Vec<Result<(), Reply>>, LinkError> {
        // One round trip: the commands, the message, then every reply (PIPELINING).
        let key = d.key.map(DeliveryKey::hex);
        self.send(&delivery_commands(
            d.from,
            key.as_deref(),
            d.accounts,
            d.body.len(),
        ))
        .await?;
        self.send(d.body).await?;
        let mut replies = DeliveryReplies::new(d.accounts.len());
        loop {
            let r = self.reply().await?;
            if replies.push(r) {
                return Ok(replies.outcome());
            }
        }
    }

    /// Whether the connection is open with nothing unread: a closed one reads as end of
    /// file, one the owner timed out holds its `421`.
    fn open_and_quiet(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut b = [0u8; 1];
        // SAFETY: a non-blocking peek into a local byte on a socket this link owns.
        let n = unsafe {
            libc::recv(
                self.stream.as_raw_fd(),
                b.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
    }
}
