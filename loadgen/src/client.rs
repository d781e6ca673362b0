//! Minimal blocking clients for SMTP/LMTP and POP3, with classified errors; TLS (implicit,
//! or STARTTLS / STLS after the greeting) and SMTP AUTH PLAIN.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;

use crate::socket::Socket;
use crate::tls::{Stream, Tls};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    Connect(String),
    /// The TLS handshake failed, or TLS was refused (STARTTLS not offered).
    Tls(String),
    Timeout,
    Closed,
    /// The server answered with something other than success: the reply's first line.
    Rejected(String),
    /// The reply does not parse as the protocol's.
    Garbage(String),
    /// IMAP: a command completed with NO or BAD, or the server said BYE.
    Refused {
        status: &'static str,
        command: &'static str,
        line: String,
    },
    /// The server answered, but not with what was asked for (a check on the content failed).
    Wrong {
        check: &'static str,
        detail: String,
    },
}

impl ClientError {
    /// A short label for error tables.
    pub fn kind(&self) -> String {
        match self {
            ClientError::Connect(_) => "connect".into(),
            ClientError::Tls(_) => "tls".into(),
            ClientError::Timeout => "timeout".into(),
            ClientError::Closed => "closed".into(),
            ClientError::Rejected(l) if l.starts_with("-ERR") => match (l.find('['), l.find(']')) {
                (Some(a), Some(b)) if a < b => format!("rejected {}", &l[a..=b]),
                _ => "rejected -ERR".into(),
            },
            ClientError::Rejected(l) => {
                format!("rejected {}", l.chars().take(3).collect::<String>())
            }
            ClientError::Garbage(_) => "garbage reply".into(),
            ClientError::Refused {
                status, command, ..
            } => format!("{status} {command}"),
            ClientError::Wrong { check, .. } => check.to_string(),
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect(e) => write!(f, "cannot connect: {e}"),
            ClientError::Tls(e) => write!(f, "TLS: {e}"),
            ClientError::Timeout => write!(f, "the server did not answer in time"),
            ClientError::Closed => write!(f, "the server closed the connection"),
            ClientError::Rejected(l) => write!(f, "the server refused: {l}"),
            ClientError::Garbage(l) => write!(f, "not a protocol reply: {l:?}"),
            ClientError::Refused { command, line, .. } => {
                write!(f, "{command}: the server answered {line:?}")
            }
            ClientError::Wrong { check, detail } => write!(f, "{check}: {detail}"),
        }
    }
}

pub(crate) fn io(e: std::io::Error) -> ClientError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ClientError::Timeout,
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::BrokenPipe => ClientError::Closed,
        // rustls reports protocol errors and alerts as invalid data.
        std::io::ErrorKind::InvalidData => ClientError::Tls(e.to_string()),
        _ => ClientError::Closed,
    }
}

/// Opens a TCP connection with the timeouts set, and TLS on it when `tls` is implicit.
pub(crate) fn open(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&Tls>,
) -> Result<Stream, ClientError> {
    let s = Socket::connect(addr, timeout).map_err(|e| ClientError::Connect(e.to_string()))?;
    match tls {
        Some(t) if !t.starttls => Stream::tls(s, t),
        _ => Ok(Stream::Plain(s)),
    }
}

pub struct Conn {
    r: BufReader<Stream>,
    /// STARTTLS (or STLS) still to do, after the greeting.
    starttls: Option<Tls>,
}

impl Conn {
    /// A connection with `tls`: implicit TLS is up when this returns; STARTTLS happens in
    /// [`Conn::smtp_hello`] or [`Conn::pop3_login`].
    pub fn connect_tls(
        addr: SocketAddr,
        timeout: Duration,
        tls: Option<&Tls>,
    ) -> Result<Conn, ClientError> {
        Ok(Conn {
            r: BufReader::new(open(addr, timeout, tls)?),
            starttls: tls.filter(|t| t.starttls).cloned(),
        })
    }

    pub fn is_tls(&self) -> bool {
        self.r.get_ref().is_tls()
    }

    fn upgrade(&mut self, tls: &Tls) -> Result<(), ClientError> {
        let s = self.r.get_ref().upgrade(tls, self.r.buffer().len())?;
        self.r = BufReader::new(s);
        Ok(())
    }

    pub fn send(&mut self, b: &[u8]) -> Result<(), ClientError> {
        let s = self.r.get_mut();
        s.write_all(b).map_err(io)?;
        s.flush().map_err(io)
    }

    pub fn line(&mut self) -> Result<String, ClientError> {
        let mut buf = Vec::new();
        // Bounded: a server that never sends a newline cannot make us buffer forever.
        let n = (&mut self.r)
            .take(64 << 10)
            .read_until(b'\n', &mut buf)
            .map_err(io)?;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        if buf.last() != Some(&b'\n') {
            return Err(ClientError::Garbage("line too long".into()));
        }
        Ok(String::from_utf8_lossy(&buf).trim_end().to_string())
    }

    /// One SMTP reply (possibly multi-line): its code and last line.
    pub fn smtp_reply(&mut self) -> Result<(u16, String), ClientError> {
        loop {
            let l = self.line()?;
            let code = l
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (200..600).contains(c));
            let Some(code) = code else {
                return Err(ClientError::Garbage(l));
            };
            if l.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, l));
            }
        }
    }

    fn expect_smtp(&mut self, ok: impl Fn(u16) -> bool) -> Result<(), ClientError> {
        let (code, l) = self.smtp_reply()?;
        if ok(code) {
            Ok(())
        } else {
            Err(ClientError::Rejected(l))
        }
    }

    /// Greeting and EHLO (or LHLO); with STARTTLS pending, STARTTLS and EHLO again.
    pub fn smtp_hello(&mut self, lmtp: bool) -> Result<(), ClientError> {
        self.expect_smtp(|c| c == 220)?;
        let hello: &[u8] = if lmtp {
            b"LHLO loadgen.example\r\n"
        } else {
            b"EHLO loadgen.example\r\n"
        };
        self.send(hello)?;
        self.expect_smtp(|c| c == 250)?;
        if let Some(tls) = self.starttls.take() {
            self.send(b"STARTTLS\r\n")?;
            let (code, l) = self.smtp_reply()?;
            if code != 220 {
                return Err(ClientError::Tls(format!("STARTTLS refused: {l}")));
            }
            self.upgrade(&tls)?;
            self.send(hello)?;
            self.expect_smtp(|c| c == 250)?;
        }
        Ok(())
    }

    /// SMTP AUTH PLAIN with an initial response (RFC 4954); 235 is success.
    pub fn smtp_auth_plain(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send(format!("AUTH PLAIN {token}\r\n").as_bytes())?;
        self.expect_smtp(|c| c == 235)
    }

    /// One transaction, envelope pipelined (RFC 2920). `data` is what [`data_block`] makes
    /// of the message (sent in one write, final dot included). Returns when the message is acknowledged (for LMTP: by every recipient).
    pub fn smtp_send(
        &mut self,
        from: &str,
        rcpts: &[String],
        data: &[u8],
        lmtp: bool,
    ) -> Result<(), ClientError> {
        let mut env = format!("MAIL FROM:<{from}>\r\n");
        for r in rcpts {
            env.push_str(&format!("RCPT TO:<{r}>\r\n"));
        }
        env.push_str("DATA\r\n");
        // (`data` is never empty: it ends with CRLF.)
        self.send(env.as_bytes())?;
        self.expect_smtp(|c| c == 250)?;
        for _ in rcpts {
            self.expect_smtp(|c| c == 250 || c == 251)?;
        }
        self.expect_smtp(|c| c == 354)?;
        self.send(data)?;
        for _ in 0..if lmtp { rcpts.len() } else { 1 } {
            self.expect_smtp(|c| c == 250)?;
        }
        Ok(())
    }

    fn pop_ok(&mut self) -> Result<String, ClientError> {
        let l = self.line()?;
        if l.starts_with("+OK") {
            Ok(l)
        } else if l.starts_with("-ERR") {
            Err(ClientError::Rejected(l))
        } else {
            Err(ClientError::Garbage(l))
        }
    }

    /// Greeting (then STLS, if pending), USER and PASS.
    pub fn pop3_login(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        self.pop_ok()?;
        if let Some(tls) = self.starttls.take() {
            self.send(b"STLS\r\n")?;
            let l = self.line()?;
            if !l.starts_with("+OK") {
                return Err(ClientError::Tls(format!("STLS refused: {l}")));
            }
            self.upgrade(&tls)?;
        }
        self.send(format!("USER {user}\r\n").as_bytes())?;
        self.pop_ok()?;
        self.send(format!("PASS {password}\r\n").as_bytes())?;
        self.pop_ok().map(|_| ())
    }

    /// `(number, size)` of every message.
    pub fn pop3_list(&mut self) -> Result<Vec<(u32, u64)>, ClientError> {
        self.send(b"LIST\r\n")?;
        self.pop_ok()?;
        let mut v = Vec::new();
        loop {
            let l = self.line()?;
            if l == "." {
                return Ok(v);
            }
            let mut it = l.split_whitespace();
            match (
                it.next().and_then(|n| n.parse().ok()),
                it.next().and_then(|s| s.parse().ok()),
            ) {
                (Some(n), Some(s)) => v.push((n, s)),
                _ => return Err(ClientError::Garbage(l)),
            }
        }
    }

    /// RETR, with dot-unstuffing; the message's bytes with CRLF line ends.
    pub fn pop3_retr(&mut self, n: u32) -> Result<Vec<u8>, ClientError> {
        self.send(format!("RETR {n}\r\n").as_bytes())?;
        self.pop_ok()?;
        let mut msg = Vec::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let got = (&mut self.r)
                .take(1 << 20)
                .read_until(b'\n', &mut buf)
                .map_err(io)?;
            if got == 0 {
                return Err(ClientError::Closed);
            }
            if buf == b".\r\n" || buf == b".\n" {
                return Ok(msg);
            }
            let line = if buf.first() == Some(&b'.') {
                &buf[1..]
            } else {
                &buf[..]
            };
            msg.extend_from_slice(line);
        }
    }

    pub fn pop3_dele(&mut self, n: u32) -> Result<(), ClientError> {
        self.send(format!("DELE {n}\r\n").as_bytes())?;
        self.pop_ok().map(|_| ())
    }

    /// QUIT, best effort (SMTP, or a POP3 session with nothing to commit).
    pub fn quit(&mut self) {
        let _ = self.send(b"QUIT\r\n");
        let _ = self.line();
    }

    /// POP3 QUIT, checked: the server's +OK says the deletions (if any) are committed.
    pub fn pop3_quit(&mut self) -> Result<(), ClientError> {
        self.send(b"QUIT\r\n")?;
        self.pop_ok().map(|_| ())
    }
}

/// A message as DATA sends it: dot-stuffed, ending with CRLF, then the final `.` line.
pub fn data_block(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 64);
    // A line that starts with a dot gets a second one (RFC 5321 section 4.5.2).
    let mut from = 0;
    if msg.first() == Some(&b'.') {
        out.push(b'.');
    }
    for at in memchr::memmem::find_iter(msg, b"\n.") {
        out.extend_from_slice(&msg[from..=at]);
        out.push(b'.');
        from = at + 1;
    }
    out.extend_from_slice(&msg[from..]);
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_blocks_are_dot_stuffed_and_terminated() {
        assert_eq!(data_block(b"a\r\n"), b"a\r\n.\r\n");
        assert_eq!(data_block(b"a"), b"a\r\n.\r\n");
        assert_eq!(
            data_block(b".x\r\n..y\r\nz.\r\n.\r\n"),
            b"..x\r\n...y\r\nz.\r\n..\r\n.\r\n"
        );
    }
}
