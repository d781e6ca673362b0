//! A client connection: plain TCP, or TLS over it (implicit, or after STARTTLS); and its
//! hand-off to another shard.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::Arc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

use super::tls_stream::TlsStream;

/// A client that starts TLS and goes quiet is let go after this.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// A client that stops reading what we send is let go after this (a write waits for
/// room in the socket buffer).
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// What waiting for the client's next bytes ended with.
pub enum Read {
    Data(usize),
    /// The client closed the connection or it failed.
    Closed,
    /// Nothing arrived within the limit.
    TimedOut,
    /// The server is shutting down.
    Stopping,
}

pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
    /// Only during an upgrade.
    Gone,
}

/// A connection on its way to another shard: the socket and, for TLS, the TLS session.
pub struct Detached {
    fd: OwnedFd,
    tls: Option<Box<ServerConnection>>,
    /// The client's address, so the shard it moves to can count it against the per-IP limit.
    pub(crate) peer: Option<std::net::IpAddr>,
}

/// `fut`'s output, or a `TimedOut` error once `limit` has passed.
async fn within<T>(
    limit: std::time::Duration,
    fut: impl std::future::Future<Output = T>,
) -> io::Result<T> {
    glommio::timer::timeout(limit, async { Ok(fut.await) })
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))
}

impl Conn {
    /// The TLS handshake as the server, given at most [`HANDSHAKE_TIMEOUT`].
    pub async fn accept_tls(stream: TcpStream, config: &Arc<ServerConfig>) -> io::Result<Self> {
        let t = within(HANDSHAKE_TIMEOUT, TlsStream::accept(stream, config)).await??;
        Ok(Conn::Tls(Box::new(t)))
    }

    /// The connection as the client first sees it: TLS at once on an implicit-TLS listener.
    /// `None` when that handshake fails (or no certificate is configured).
    pub async fn open(
        stream: TcpStream,
        implicit_tls: bool,
        config: Option<&Arc<ServerConfig>>,
    ) -> Option<Self> {
        if !implicit_tls {
            return Some(Conn::Plain(stream));
        }
        Conn::accept_tls(stream, config?).await.ok()
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }

    /// STARTTLS: the TLS handshake over the plain connection.
    pub async fn upgrade(&mut self, config: &Arc<ServerConfig>) -> io::Result<()> {
        match std::mem::replace(self, Conn::Gone) {
            Conn::Plain(s) => {
                *self = Conn::accept_tls(s, config).await?;
                Ok(())
            }
            other => {
                *self = other;
                Err(io::Error::other("connection is not plain"))
            }
        }
    }

    /// Takes the connection off this shard. Only between reads and writes (nothing of the
    /// socket's is in flight then).
    pub fn detach(self) -> io::Result<Detached> {
        let (tcp, tls) = match self {
            Conn::Plain(s) => (s, None),
            Conn::Tls(t) => {
                let (s, c) = t.into_parts();
                (s, Some(Box::new(c)))
            }
            Conn::Gone => return Err(io::ErrorKind::NotConnected.into()),
        };
        let peer = tcp.peer_addr().ok().map(|a| a.ip());
        // SAFETY: `tcp` owns this descriptor and is alive for the whole borrow; the clone is
        // a new descriptor (dup) for the same socket, which outlives `tcp`'s close below.
        let fd = unsafe { BorrowedFd::borrow_raw(tcp.as_raw_fd()) }.try_clone_to_owned()?;
        drop(tcp);
        Ok(Detached { fd, tls, peer })
    }

    /// Brings a detached connection to life on the current shard.
    pub fn attach(d: Detached) -> Self {
        // SAFETY: the descriptor is ours (an `OwnedFd`) and handed over whole.
        let tcp = unsafe { TcpStream::from_raw_fd(d.fd.into_raw_fd()) };
        match d.tls {
            None => Conn::Plain(tcp),
            Some(c) => Conn::Tls(Box::new(TlsStream::from_parts(tcp, *c))),
        }
    }

    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
            Conn::Gone => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    /// Reads with a time limit, giving up early when `stop` closes (shutdown).
    pub async fn read_or_stop(
        &mut self,
        buf: &mut [u8],
        limit: std::time::Duration,
        stop: &async_channel::Receiver<()>,
    ) -> Read {
        let read = futures_lite::future::or(
            async {
                Some(glommio::timer::timeout(limit, async { Ok(self.read(buf).await) }).await)
            },
            async {
                let _ = stop.recv().await;
                None
            },
        )
        .await;
        match read {
            Some(Ok(Ok(0))) | Some(Ok(Err(_))) => Read::Closed,
            Some(Ok(Ok(n))) => Read::Data(n),
            Some(Err(_)) => Read::TimedOut,
            None => Read::Stopping,
        }
    }

    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        within(WRITE_TIMEOUT, self.write_all_now(buf)).await?
    }

    async fn write_all_now(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Conn::Plain(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
            Conn::Tls(s) => s.write_all(buf).await,
            Conn::Gone => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    pub async fn close(&mut self) {
        let _ = match self {
            Conn::Plain(s) => s.close().await,
            Conn::Tls(s) => s.close().await,
            Conn::Gone => Ok(()),
        };
    }
}
