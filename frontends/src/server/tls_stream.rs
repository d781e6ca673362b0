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
    /// Records for the socket (reused), of which the first `sent` bytes are sent.
    out: Vec<u8>,
    sent: usize,
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

    /// The socket under the TLS session.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub fn from_parts(tcp: TcpStream, tls: ServerConnection) -> Self {
        Self {
            tcp,
            tls,
            scratch: vec![0; 16 << 10],
            out: Vec::new(),
            sent: 0,
        }
    }

    /// Only between commands, after a completed write: records already taken from rustls but
    /// not yet sent would not travel (what rustls still holds does).
    pub fn into_parts(self) -> (TcpStream, ServerConnection) {
        debug_assert!(
            self.sent >= self.out.len(),
            "unsent TLS records at a hand-off"
        );
        (self.tcp, self.tls)
    }

    /// Sends whatever records rustls has queued.
    ///
    /// Safe to cancel (IDLE drops a pending read, which may be flushing an answer to a key
    /// update): records taken from rustls stay in `out` until written, and a socket write
    /// that is pending has written nothing (glommio tries the send, then waits for
    /// writability), so the next flush resumes exactly where this one stopped.
    async fn flush(&mut self) -> io::Result<()> {
        loop {
            if self.sent < self.out.len() {
                let n = self.tcp.write(&self.out[self.sent..]).await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                self.sent += n;
            } else if self.tls.wants_write() {
                self.out.clear();
                self.sent = 0;
                self.tls.write_tls(&mut self.out)?;
            } else {
                return Ok(());
            }
        }
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
