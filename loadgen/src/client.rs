//! Minimal blocking clients for SMTP/LMTP and POP3, with classified errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    Connect(String),
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
        _ => ClientError::Closed,
    }
}

pub struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, ClientError> {
        let s = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        s.set_nodelay(true).ok();
        s.set_read_timeout(Some(timeout)).ok();
        s.set_write_timeout(Some(timeout)).ok();
        let w = s
            .try_clone()
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        Ok(Conn {
            r: BufReader::new(s),
            w,
        })
    }

    pub fn send(&mut self, b: &[u8]) -> Result<(), ClientError> {
        self.w.write_all(b).map_err(io)
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

    /// Greeting and EHLO (or LHLO).
    pub fn smtp_hello(&mut self, lmtp: bool) -> Result<(), ClientError> {
        self.expect_smtp(|c| c == 220)?;
        self.send(if lmtp {
            b"LHLO loadgen.example\r\n"
        } else {
            b"EHLO loadgen.example\r\n"
        })?;
        self.expect_smtp(|c| c == 250)
    }

    /// One transaction, envelope pipelined (RFC 2920). `data` must be dot-stuffed and end
    /// with CRLF. Returns when the message is acknowledged (for LMTP: by every recipient).
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
        self.send(env.as_bytes())?;
        self.expect_smtp(|c| c == 250)?;
        for _ in rcpts {
            self.expect_smtp(|c| c == 250 || c == 251)?;
        }
        self.expect_smtp(|c| c == 354)?;
        self.send(data)?;
        self.send(b".\r\n")?;
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

    pub fn pop3_login(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        self.pop_ok()?;
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

    pub fn quit(&mut self) {
        let _ = self.send(b"QUIT\r\n");
        let _ = self.line();
    }
}

/// Dot-stuffs a message for DATA and makes sure it ends with CRLF.
pub fn dot_stuff(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 64);
    let mut at_start = true;
    for &b in msg {
        if at_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}
