//! A logged-in IMAP or POP3 session whose account another node serves: the connection to
//! that node's cluster port (`crate::cluster_link`), and the relay between it and the client.
//!
//! The client's TLS ends here; the bytes after login go through unchanged both ways, so
//! IDLE, literals and COMPRESS (negotiated with the owner, carried here as opaque bytes)
//! work as they do on the owner. The session ends when either side closes. When the owner
//! goes away without a word (killed, or its route changes in the owner map) the client is
//! told as the owner would have told it (IMAP `* BYE [UNAVAILABLE]`, POP3 `-ERR
//! [SYS/TEMP]`) and can log in again at once.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::conn::{Conn, Read};
use crate::cluster_link::Hello;

/// How long connecting to the owner and its `+OK` may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A client may be silent this long (the owner logs it out sooner: 30 minutes for IMAP).
const CLIENT_IDLE: Duration = Duration::from_secs(31 * 60);
/// An owner that takes no bytes for this long is given up on.
const OWNER_WRITE_TIMEOUT: Duration = Duration::from_secs(120);
/// After the client closed its side, how long the owner's last answers are waited for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Pop3,
}

/// Why a relay ended without the owner's last word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    OwnerGone,
    Moved,
    Stopping,
}

/// What the relay saw of the session: enough to say goodbye properly, and only when the
/// owner did not.
#[derive(Debug)]
pub struct Farewell {
    protocol: Protocol,
    /// The owner said BYE (IMAP) or the client sent QUIT (POP3): the end is the session's own.
    ended: bool,
    /// The last byte the client was sent ended a line (nothing half-sent would be cut).
    at_line_end: bool,
    /// The owner's first line began with `-ERR` (POP3: a refused maildrop ends a proxied
    /// session, and that answer is its goodbye).
    refused: bool,
    /// The owner's first line has been seen whole.
    first_line_seen: bool,
    /// The client asked for COMPRESS: from then on the stream is deflated, and a plain line
    /// would corrupt it.
    compressed: bool,
    /// The start of the client's current line.
    client_line: Vec<u8>,
}

impl Farewell {
    pub fn new(protocol: Protocol) -> Self {
        Self {
            protocol,
            ended: false,
            at_line_end: true,
            refused: false,
            first_line_seen: false,
            compressed: false,
            client_line: Vec::new(),
        }
    }

    pub fn owner_sent(&mut self, b: &[u8]) {
        let Some(&last) = b.last() else {
            return;
        };
        let was_at_line_end = self.at_line_end;
        self.at_line_end = last == b'\n';
        match self.protocol {
            Protocol::Imap => {
                if memchr::memmem::find(b, b"* BYE ").is_some() {
                    self.ended = true;
                }
            }
            Protocol::Pop3 if !self.first_line_seen => {
                // The session's first line answers the login (the maildrop): a refusal
                // there is the session's own end.
                if was_at_line_end {
                    self.refused = b.starts_with(b"-ERR");
                }
                self.first_line_seen = memchr::memchr(b'\n', b).is_some();
            }
            Protocol::Pop3 => {}
        }
    }

    pub fn client_sent(&mut self, b: &[u8]) {
        for &c in b {
            if c == b'\n' {
                let line = std::mem::take(&mut self.client_line);
                let line = line.trim_ascii().to_ascii_uppercase();
                match self.protocol {
                    Protocol::Pop3 if line == b"QUIT" => self.ended = true,
                    Protocol::Imap if line.ends_with(b" COMPRESS DEFLATE") => {
                        self.compressed = true
                    }
                    _ => {}
                }
            } else if self.client_line.len() < 256 {
                self.client_line.push(c);
            }
        }
    }

    /// The line to send the client now, if any.
    pub fn line(&self, why: Why) -> Option<&'static [u8]> {
        if self.ended || self.compressed || self.refused || !self.at_line_end {
            return None;
        }
        Some(match (self.protocol, why) {
            (Protocol::Imap, Why::Stopping) => b"* BYE [UNAVAILABLE] server shutting down\r\n",
            (Protocol::Imap, _) => crate::imap::session::store::MOVED_BYE_LINE,
            (Protocol::Pop3, Why::Stopping) => b"-ERR [SYS/TEMP] server shutting down\r\n",
            (Protocol::Pop3, _) => crate::pop3::MOVED_ERR,
        })
    }
}

/// Why the owner could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("connecting to {0}: {1}")]
    Connect(SocketAddr, io::Error),
    #[error("{0} refused the session: {1}")]
    Refused(SocketAddr, String),
    #[error("{0} did not answer in time")]
    Timeout(SocketAddr),
    #[error("bad cluster address {0:?}")]
    Address(String),
}

/// Connects to the owner's cluster port and opens the session there. Returns the connection
/// and what the owner sent after its `+OK` (for the client).
pub async fn open(
    addr: &str,
    hello: &Hello,
    secret: &str,
) -> Result<(TcpStream, Vec<u8>), ProxyError> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| ProxyError::Address(addr.to_string()))?;
    let opened = async {
        let mut s = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)
            .await
            .map_err(|e| ProxyError::Connect(addr, io::Error::other(e.to_string())))?;
        let _ = s.set_nodelay(true);
        s.write_all(hello.line(secret).as_bytes())
            .await
            .map_err(|e| ProxyError::Connect(addr, e))?;
        s.flush().await.map_err(|e| ProxyError::Connect(addr, e))?;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = memchr::memchr(b'\n', &got) {
                let line = String::from_utf8_lossy(&got[..end]).trim_end().to_string();
                if line == "+OK" {
                    return Ok((s, got.split_off(end + 1)));
                }
                return Err(ProxyError::Refused(addr, line));
            }
            let n = s
                .read(&mut buf)
                .await
                .map_err(|e| ProxyError::Connect(addr, e))?;
            if n == 0 || got.len() > 4096 {
                return Err(ProxyError::Refused(addr, "connection closed".into()));
            }
            got.extend_from_slice(&buf[..n]);
        }
    };
    futures_lite::future::or(opened, async {
        glommio::timer::sleep(CONNECT_TIMEOUT * 2).await;
        Err(ProxyError::Timeout(addr))
    })
    .await
}

/// Keeps a connection to another node checked while it is quiet: a machine that vanished
/// without closing it is noticed within about half a minute (the owner map notices sooner).
pub fn keep_alive(s: &TcpStream) {
    use std::os::fd::{AsRawFd, BorrowedFd};
    // SAFETY: the descriptor is the stream's, alive for this borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(s.as_raw_fd()) };
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    let _ = socket2::SockRef::from(&fd).set_tcp_keepalive(&ka);
}

/// How a write to the owner ended.
enum Flow {
    Written,
    OwnerGone,
    ClientGone,
}

/// Relays between the client and the owner until the session ends. `early`: what the owner
/// already sent; `pending`: what the client already sent (pipelined after its login).
pub async fn relay(
    conn: &mut Conn,
    owner: TcpStream,
    early: Vec<u8>,
    pending: Vec<u8>,
    protocol: Protocol,
) {
    keep_alive(&owner);
    let mut seen = Farewell::new(protocol);
    let (mut from_owner, mut to_owner) = futures_lite::io::split(owner);
    if !early.is_empty() {
        seen.owner_sent(&early);
        if conn.write_all(&early).await.is_err() {
            return;
        }
    }
    let mut cbuf = vec![0u8; 16 << 10];
    let mut obuf = vec![0u8; 64 << 10];
    let mut next = pending;
    let why = loop {
        if !next.is_empty() {
            seen.client_sent(&next);
            let flow = to_owner_relaying(
                conn,
                &mut to_owner,
                &next,
                &mut from_owner,
                &mut obuf,
                &mut seen,
            )
            .await;
            next.clear();
            match flow {
                Flow::Written => {}
                Flow::OwnerGone => break Why::OwnerGone,
                Flow::ClientGone => return,
            }
        }
        enum Ev {
            Client(Read),
            Owner(io::Result<usize>),
        }
        let ev = futures_lite::future::or(
            async { Ev::Client(conn.read_or_stop(&mut cbuf, CLIENT_IDLE).await) },
            async { Ev::Owner(from_owner.read(&mut obuf).await) },
        )
        .await;
        match ev {
            Ev::Owner(Ok(n)) if n > 0 => {
                seen.owner_sent(&obuf[..n]);
                if conn.write_all(&obuf[..n]).await.is_err() {
                    return;
                }
            }
            Ev::Owner(_) => break Why::OwnerGone,
            Ev::Client(Read::Data(n)) => next.extend_from_slice(&cbuf[..n]),
            // The client is done sending (it may have closed only its side, after a last
            // QUIT): the owner is told so, and what it still answers goes to the client.
            Ev::Client(Read::Closed) => {
                let _ = to_owner.close().await;
                let drain = async {
                    while let Ok(n) = from_owner.read(&mut obuf).await {
                        if n == 0 || conn.write_all(&obuf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                futures_lite::future::or(drain, glommio::timer::sleep(DRAIN_TIMEOUT)).await;
                return;
            }
            // The owner sees the close and ends the session its own way.
            Ev::Client(Read::TimedOut) => return,
            Ev::Client(Read::Stopping) => break Why::Stopping,
            Ev::Client(Read::Moved) => break Why::Moved,
        }
    };
    if let Some(line) = seen.line(why) {
        let _ = conn.write_all(line).await;
    }
}

/// Writes `data` to the owner. Most writes fit its socket buffer and are done at once; one
/// that waits (the owner is not reading) has what the owner sends meanwhile passed on to the
/// client: an owner blocked writing to us reads nothing more, so a relay that only waited
/// would wait for ever.
async fn to_owner_relaying<W, R>(
    conn: &mut Conn,
    to_owner: &mut W,
    data: &[u8],
    from_owner: &mut R,
    buf: &mut [u8],
    seen: &mut Farewell,
) -> Flow
where
    W: futures_lite::AsyncWrite + Unpin,
    R: futures_lite::AsyncRead + Unpin,
{
    let write = async {
        match to_owner.write_all(data).await {
            Ok(()) => to_owner.flush().await.is_ok(),
            Err(_) => false,
        }
    };
    let mut write = std::pin::pin!(write);
    let done = |ok| if ok { Flow::Written } else { Flow::OwnerGone };
    if let Some(ok) = futures_lite::future::poll_once(write.as_mut()).await {
        return done(ok);
    }
    let mut deadline = std::pin::pin!(glommio::timer::sleep(OWNER_WRITE_TIMEOUT));
    let mut owner_open = true;
    loop {
        enum Ev {
            Written(bool),
            Read(io::Result<usize>),
            Late,
        }
        let ev = futures_lite::future::or(
            async { Ev::Written(write.as_mut().await) },
            futures_lite::future::or(
                async {
                    match owner_open {
                        true => Ev::Read(from_owner.read(buf).await),
                        false => std::future::pending().await,
                    }
                },
                async {
                    deadline.as_mut().await;
                    Ev::Late
                },
            ),
        )
        .await;
        match ev {
            Ev::Written(ok) => return done(ok),
            Ev::Read(Ok(n)) if n > 0 => {
                seen.owner_sent(&buf[..n]);
                if conn.write_all(&buf[..n]).await.is_err() {
                    return Flow::ClientGone;
                }
            }
            // Closed while we write: the write fails or finishes by itself.
            Ev::Read(_) => owner_open = false,
            Ev::Late => return Flow::OwnerGone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imap_gets_a_bye_only_when_the_owner_gave_none() {
        let mut f = Farewell::new(Protocol::Imap);
        f.owner_sent(b"* 3 EXISTS\r\n");
        assert!(f
            .line(Why::OwnerGone)
            .unwrap()
            .starts_with(b"* BYE [UNAVAILABLE]"));
        f.owner_sent(b"* 1 FETCH (BODY[] {10}\r\n01234");
        // Half a literal went out: a BYE now would be read as its bytes.
        assert_eq!(f.line(Why::OwnerGone), None);
        f.owner_sent(b"56789)\r\n* BYE logging out\r\na OK LOGOUT completed\r\n");
        assert_eq!(f.line(Why::OwnerGone), None);
        let f = Farewell::new(Protocol::Imap);
        assert_eq!(
            f.line(Why::Stopping),
            Some(&b"* BYE [UNAVAILABLE] server shutting down\r\n"[..])
        );
    }

    #[test]
    fn pop3_gets_an_error_unless_the_client_quit() {
        let mut f = Farewell::new(Protocol::Pop3);
        f.client_sent(b"STAT\r\n");
        f.owner_sent(b"+OK 2 320\r\n");
        assert!(f.line(Why::Moved).unwrap().starts_with(b"-ERR [SYS/TEMP]"));
        f.client_sent(b"qu");
        f.client_sent(b"it\r\n");
        assert_eq!(f.line(Why::OwnerGone), None);
        // A refused maildrop is the session's own end.
        let mut f = Farewell::new(Protocol::Pop3);
        f.owner_sent(b"-ERR [IN-USE] maildrop already locked\r\n");
        assert_eq!(f.line(Why::OwnerGone), None);
        let mut f = Farewell::new(Protocol::Pop3);
        f.owner_sent(b"+OK maildrop has 2 messages\r\n");
        f.owner_sent(b"-ERR no such message\r\n");
        // A refusal later in the session is an answer, not its end.
        assert!(f.line(Why::OwnerGone).is_some());
    }

    #[test]
    fn nothing_is_said_into_a_compressed_stream() {
        let mut f = Farewell::new(Protocol::Imap);
        f.client_sent(b"c1 compress deflate\r\n");
        f.owner_sent(b"c1 OK DEFLATE active\r\n");
        assert_eq!(f.line(Why::OwnerGone), None);
        assert_eq!(f.line(Why::Moved), None);
    }
}
