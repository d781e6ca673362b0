//! A client connection: plain TCP, or TLS over it (implicit, or after STARTTLS).

use std::io;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::server::TlsStream;
use futures_rustls::TlsAcceptor;
use glommio::net::TcpStream;

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
    Tls(Box<TlsStream<TcpStream>>),
    /// Only during an upgrade.
    Gone,
}

impl Conn {
    pub async fn accept_tls(stream: TcpStream, acceptor: &TlsAcceptor) -> io::Result<Self> {
        Ok(Conn::Tls(Box::new(acceptor.accept(stream).await?)))
    }

    /// The connection as the client first sees it: TLS at once on an implicit-TLS listener.
    /// `None` when that handshake fails (or no certificate is configured).
    pub async fn open(
        stream: TcpStream,
        implicit_tls: bool,
        acceptor: Option<&TlsAcceptor>,
    ) -> Option<Self> {
        if !implicit_tls {
            return Some(Conn::Plain(stream));
        }
        Conn::accept_tls(stream, acceptor?).await.ok()
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }

    /// STARTTLS: the TLS handshake over the plain connection.
    pub async fn upgrade(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        match std::mem::replace(self, Conn::Gone) {
            Conn::Plain(s) => {
                *self = Conn::accept_tls(s, acceptor).await?;
                Ok(())
            }
            other => {
                *self = other;
                Err(io::Error::other("connection is not plain"))
            }
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
        match self {
            Conn::Plain(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
            Conn::Tls(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
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
