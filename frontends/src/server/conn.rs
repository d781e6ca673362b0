//! A client connection: plain TCP, or TLS over it (implicit, or after STARTTLS); and its
//! hand-off to another shard.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

use super::metrics::Permit;
use super::tls_stream::TlsStream;
use super::watch::{Fired, Watch, Watched};

/// A client that stops reading what we send is let go after this (a write waits for
/// room in the socket buffer).
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a client may take to send one whole unit (a command line, a message, a
/// literal): a base time, plus time for what it sent at a minimum rate. Every read waits at
/// most what is left, so a client that drips a byte at a time runs out of patience however
/// often it sends (a limit per read alone was reset by each byte).
pub struct Patience {
    start: Instant,
    base: Duration,
    /// Bytes per second a long unit must keep up, on average.
    min_rate: u64,
    received: u64,
}

impl Patience {
    pub fn new(base: Duration, min_rate: u64) -> Self {
        Self {
            start: Instant::now(),
            base,
            min_rate: min_rate.max(1),
            received: 0,
        }
    }

    /// A new unit starts now.
    pub fn restart(&mut self, base: Duration) {
        self.start = Instant::now();
        self.base = base;
        self.received = 0;
    }

    pub fn received(&mut self, n: usize) {
        self.received += n as u64;
    }

    /// What is left of the unit's time.
    pub fn remaining(&self) -> Duration {
        let allowed =
            self.base + Duration::from_secs_f64(self.received as f64 / self.min_rate as f64);
        allowed.saturating_sub(self.start.elapsed())
    }
}

/// What waiting for the client's next bytes ended with.
pub enum Read {
    Data(usize),
    /// The client closed the connection or it failed.
    Closed,
    /// Nothing arrived within the limit.
    TimedOut,
    /// The server is shutting down.
    Stopping,
    /// Cluster mode: the session's partition is no longer served on this node (see
    /// [`Conn::end_when`]).
    Moved,
}

/// A client connection on this shard, and its slot in the shard's [`Watch`] (its deadlines).
pub struct Conn {
    stream: Stream,
    watch: Watched,
    /// Counts the connection as open (per listener) until it drops.
    permit: Permit,
    handshake_timeout: Duration,
}

enum Stream {
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
    permit: Permit,
    handshake_timeout: Duration,
}

impl Conn {
    /// The connection as the client first sees it: TLS at once on an implicit-TLS listener,
    /// the whole handshake given at most `handshake_timeout`. `None` when that handshake
    /// fails (or no certificate is configured).
    pub async fn open(
        stream: TcpStream,
        permit: Permit,
        config: Option<&Arc<ServerConfig>>,
        watch: &Watch,
        handshake_timeout: Duration,
    ) -> Option<Self> {
        let watch = watch.watch();
        let stream = if permit.listener().implicit_tls() {
            match Stream::accept_tls(stream, config?, &watch, handshake_timeout).await {
                Ok(s) => s,
                Err(e) => {
                    permit.tls_failed(&e);
                    return None;
                }
            }
        } else {
            Stream::Plain(stream)
        };
        Some(Conn {
            stream,
            watch,
            permit,
            handshake_timeout,
        })
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// STARTTLS: the TLS handshake over the plain connection.
    pub async fn upgrade(&mut self, config: &Arc<ServerConfig>) -> io::Result<()> {
        match std::mem::replace(&mut self.stream, Stream::Gone) {
            Stream::Plain(s) => {
                match Stream::accept_tls(s, config, &self.watch, self.handshake_timeout).await {
                    Ok(s) => self.stream = s,
                    Err(e) => {
                        self.permit.tls_failed(&e);
                        return Err(e);
                    }
                }
                Ok(())
            }
            other => {
                self.stream = other;
                Err(io::Error::other("connection is not plain"))
            }
        }
    }

    /// Takes the connection off this shard. Only between reads and writes (nothing of the
    /// socket's is in flight then).
    pub fn detach(self) -> io::Result<Detached> {
        let (tcp, tls) = match self.stream {
            Stream::Plain(s) => (s, None),
            Stream::Tls(t) => {
                let (s, c) = t.into_parts();
                (s, Some(Box::new(c)))
            }
            Stream::Gone => return Err(io::ErrorKind::NotConnected.into()),
        };
        // Another node's connection (a proxied session) is not counted per address: many
        // clients' sessions come from one node.
        let peer = match self.permit.listener() {
            super::Listener::Cluster => None,
            _ => tcp.peer_addr().ok().map(|a| a.ip()),
        };
        // SAFETY: `tcp` owns this descriptor and is alive for the whole borrow; the clone is
        // a new descriptor (dup) for the same socket, which outlives `tcp`'s close below.
        let fd = unsafe { BorrowedFd::borrow_raw(tcp.as_raw_fd()) }.try_clone_to_owned()?;
        drop(tcp);
        Ok(Detached {
            fd,
            tls,
            peer,
            permit: self.permit,
            handshake_timeout: self.handshake_timeout,
        })
    }

    /// Brings a detached connection to life on the current shard, watched by its `watch`.
    pub fn attach(d: Detached, watch: &Watch) -> Self {
        // SAFETY: the descriptor is ours (an `OwnedFd`) and handed over whole.
        let tcp = unsafe { TcpStream::from_raw_fd(d.fd.into_raw_fd()) };
        let stream = match d.tls {
            None => Stream::Plain(tcp),
            Some(c) => Stream::Tls(Box::new(TlsStream::from_parts(tcp, *c))),
        };
        Conn {
            stream,
            watch: watch.watch(),
            permit: d.permit,
            handshake_timeout: d.handshake_timeout,
        }
    }

    /// Reads with a time limit, giving up early when the server shuts down.
    pub async fn read_or_stop(&mut self, buf: &mut [u8], limit: std::time::Duration) -> Read {
        match self.watch.within(limit, true, self.stream.read(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => Read::Closed,
            Ok(Ok(n)) => Read::Data(n),
            Err(Fired::TimedOut) => Read::TimedOut,
            Err(Fired::Stopping) => Read::Stopping,
            Err(Fired::Moved) => Read::Moved,
        }
    }

    /// Ends the session's waits for the client ([`Read::Moved`]) once `gone` says so.
    pub fn end_when(&self, gone: std::rc::Rc<dyn Fn() -> bool>) {
        self.watch.end_when(gone);
    }

    /// Writes all of `buf`, given at most [`WRITE_TIMEOUT`] (a shutdown does not cut it).
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.watch
            .within(WRITE_TIMEOUT, false, self.stream.write_all(buf))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
    }

    /// Acknowledges what the client sent at once, instead of after the delayed-ACK timer.
    ///
    /// For a wait in the middle of a command: a client that writes an IMAP literal and its
    /// closing CRLF in two writes (Python's imaplib does) holds the second, with Nagle's
    /// algorithm, until the first is acknowledged; the kernel delays that ACK up to 40 ms
    /// while the server has nothing to send. Each APPEND then took 44 ms instead of 0.5 ms.
    /// TCP_QUICKACK sends the pending ACK now (it is not sticky: asked for each wait).
    pub fn quick_ack(&self) {
        let fd = match &self.stream {
            Stream::Plain(s) => s.as_raw_fd(),
            Stream::Tls(t) => t.tcp().as_raw_fd(),
            Stream::Gone => return,
        };
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on a socket this connection owns, reading a local int.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    pub async fn close(&mut self) {
        let _ = match &mut self.stream {
            Stream::Plain(s) => s.close().await,
            Stream::Tls(s) => s.close().await,
            Stream::Gone => Ok(()),
        };
    }
}

impl Stream {
    async fn accept_tls(
        stream: TcpStream,
        config: &Arc<ServerConfig>,
        watch: &Watched,
        limit: Duration,
    ) -> io::Result<Self> {
        let t = watch
            .within(limit, false, TlsStream::accept(stream, config))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        Ok(Stream::Tls(Box::new(t)))
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
            Stream::Gone => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
            Stream::Tls(s) => s.write_all(buf).await,
            Stream::Gone => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }
}
