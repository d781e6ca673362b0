//! TLS over a glommio socket, driven by hand: rustls's `ServerConnection` does the
//! protocol, this moves its records to and from the socket.
//!
//! Written here rather than taken from an async adapter because a session's connection must
//! be able to move to another core after login (IMAP, POP3): the socket and the
//! `ServerConnection` (which is `Send`) come apart with [`TlsStream::into_parts`] and go
//! back together on the other shard, with no TLS state left behind.

use std::io::{self, Read, Write};
use std::sync::Arc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

pub struct TlsStream {
    tcp: TcpStream,
    tls: ServerConnection,
    /// Ciphertext read from the socket (reused).
    scratch: Vec<u8>,
    /// Records for the socket (reused).
    out: Vec<u8>,
}

impl TlsStream {
    /// The handshake as the server.
    pub async fn accept(tcp: TcpStream, config: &Arc<ServerConfig>) -> io::Result<Self> {
        let tls = ServerConnection::new(config.clone()).map_err(io::Error::other)?;
        let mut s = Self::from_parts(tcp, tls);
        while s.tls.is_handshaking() {
            s.flush().await?;
            if s.tls.wants_read() && s.read_records().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        s.flush().await?;
        Ok(s)
    }

    pub fn from_parts(tcp: TcpStream, tls: ServerConnection) -> Self {
        Self {
            tcp,
            tls,
            scratch: vec![0; 16 << 10],
            out: Vec::new(),
        }
    }

    pub fn into_parts(self) -> (TcpStream, ServerConnection) {
        (self.tcp, self.tls)
    }

    /// Sends whatever records rustls has queued.
    async fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            self.out.clear();
            self.tls.write_tls(&mut self.out)?;
            self.tcp.write_all(&self.out).await?;
        }
        Ok(())
    }

    /// Reads one batch of records from the socket; 0 at end of stream.
    async fn read_records(&mut self) -> io::Result<usize> {
        let n = self.tcp.read(&mut self.scratch).await?;
        let mut data = &self.scratch[..n];
        while !data.is_empty() {
            // 0: rustls takes no more (the peer sent close_notify); the rest is ignored.
            if self.tls.read_tls(&mut data)? == 0 {
                break;
            }
            if let Err(e) = self.tls.process_new_packets() {
                // Tell the peer why (an alert is queued) before giving up.
                let _ = self.flush().await;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
        Ok(n)
    }

    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // Key updates and the like may want an answer first.
            self.flush().await?;
            if self.read_records().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    pub async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.tls.writer().write(buf)?;
            buf = &buf[n..];
            self.flush().await?;
        }
        Ok(())
    }

    pub async fn close(&mut self) -> io::Result<()> {
        self.tls.send_close_notify();
        self.flush().await?;
        self.tcp.close().await
    }
}
