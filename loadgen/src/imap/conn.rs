//! A blocking IMAP client connection: one command at a time, each read to its tagged
//! completion, with the answers checked (the message asked for is there, a body has the
//! size the server states and, when it carries the loadgen's stamp, its checksum). The
//! commands of the mix are in `commands.rs`.
//!
//! Every untagged `* n EXISTS` and `* n EXPUNGE` is noted on the way, whatever the command,
//! so a session can keep its UID list in step with the mailbox.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::framer::{FrameError, Framer, Response, Status};
use super::values;
use crate::client::{io, open, ClientError};
use crate::tls::{Stream, Tls};

/// The largest response accepted (a FETCH of a whole big message is one response).
const MAX_RESPONSE: usize = 64 << 20;

pub struct ImapConn {
    stream: Stream,
    framer: Framer,
    buf: Vec<u8>,
    tag: u64,
    timeout: Duration,
    /// The last `* n EXISTS` seen (less the EXPUNGEs since).
    pub exists: Option<u32>,
    /// The message numbers of the `* n EXPUNGE`s seen, in order, until taken.
    pub expunged: Vec<u32>,
    /// The server's capabilities, upper-cased, as last announced.
    pub caps: Option<Vec<String>>,
}

/// The result of reading to a command's completion.
pub(crate) struct Completion {
    pub(crate) untagged: Vec<Response>,
    /// The tagged completion (`None` when a `+` continuation ended the wait).
    pub(crate) tagged: Option<Response>,
}

pub(crate) fn garbage(r: &Response) -> ClientError {
    ClientError::Garbage(r.first_line())
}

pub(crate) fn wrong(check: &'static str, detail: impl Into<String>) -> ClientError {
    ClientError::Wrong {
        check,
        detail: detail.into(),
    }
}

/// A quoted string for LOGIN; anything that cannot be quoted is refused.
pub(crate) fn quoted(s: &str) -> Result<String, ClientError> {
    if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(wrong("unquotable", "a user or password with a line break"));
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

impl ImapConn {
    /// Connects (TLS from the first byte when `tls` is implicit), reads the greeting, and
    /// with STARTTLS, upgrades the connection.
    pub fn connect_tls(
        addr: SocketAddr,
        timeout: Duration,
        tls: Option<&Tls>,
    ) -> Result<ImapConn, ClientError> {
        let mut c = ImapConn {
            stream: open(addr, timeout, tls)?,
            framer: Framer::new(MAX_RESPONSE),
            buf: vec![0; 64 << 10],
            tag: 0,
            timeout,
            exists: None,
            expunged: Vec::new(),
            caps: None,
        };
        let g = c.read()?;
        match (g.is_untagged(), g.status()) {
            (true, Some(Status::Ok | Status::Preauth)) => {}
            (true, Some(Status::Bye)) => {
                return Err(ClientError::Refused {
                    status: "BYE",
                    command: "greeting",
                    line: g.first_line(),
                })
            }
            _ => return Err(garbage(&g)),
        }
        c.caps = values::capabilities(&g.raw);
        if let Some(t) = tls.filter(|t| t.starttls) {
            c.command("starttls", "STARTTLS").map_err(|e| match e {
                ClientError::Refused { line, .. } => {
                    ClientError::Tls(format!("STARTTLS refused: {line}"))
                }
                e => e,
            })?;
            c.stream = c.stream.upgrade(t, c.framer.buffered())?;
            c.caps = None; // announced again after TLS
        }
        Ok(c)
    }

    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// Whether the server announced `cap` (upper case).
    pub fn has_cap(&self, cap: &str) -> bool {
        self.caps
            .as_ref()
            .is_some_and(|c| c.iter().any(|x| x == cap))
    }

    /// The next response; with a deadline, `None` once it passes with nothing complete.
    pub(crate) fn read_by(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Response>, ClientError> {
        loop {
            match self.framer.next_response() {
                Ok(Some(r)) => return Ok(Some(r)),
                Ok(None) => {}
                Err(FrameError::TooLarge(n)) => {
                    return Err(ClientError::Garbage(format!("a response of {n} bytes")))
                }
            }
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                self.stream.set_read_timeout(left.min(self.timeout));
            }
            let r = self.stream.read(&mut self.buf);
            if deadline.is_some() {
                self.stream.set_read_timeout(self.timeout);
            }
            let n = match r {
                Ok(n) => n,
                Err(e)
                    if deadline.is_some()
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                {
                    continue; // the deadline check above decides
                }
                Err(e) => return Err(io(e)),
            };
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.framer.feed(&self.buf[..n]);
        }
    }

    pub(crate) fn read(&mut self) -> Result<Response, ClientError> {
        Ok(self.read_by(None)?.expect("no deadline"))
    }

    pub(crate) fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("a{}", self.tag)
    }

    pub(crate) fn send(&mut self, b: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(b).map_err(io)?;
        self.stream.flush().map_err(io)
    }

    /// Notes what an untagged response says about the mailbox; true for `* BYE`.
    pub(crate) fn note(&mut self, r: &Response) -> bool {
        if r.status() == Some(Status::Bye) {
            return true;
        }
        if let Some(n) = values::exists(&r.raw) {
            self.exists = Some(n);
        } else if let Some(n) = values::expunge(&r.raw) {
            self.expunged.push(n);
            if let Some(e) = &mut self.exists {
                *e = e.saturating_sub(1);
            }
        }
        false
    }

    /// Sends `TAG cmd` and reads to its tagged completion; returns the untagged responses
    /// in between. NO, BAD and BYE are [`ClientError::Refused`] naming `name`.
    pub fn command(&mut self, name: &'static str, cmd: &str) -> Result<Vec<Response>, ClientError> {
        self.command_completion(name, cmd).map(|c| c.untagged)
    }

    pub(crate) fn command_completion(
        &mut self,
        name: &'static str,
        cmd: &str,
    ) -> Result<Completion, ClientError> {
        let tag = self.next_tag();
        self.send(format!("{tag} {cmd}\r\n").as_bytes())?;
        self.complete(name, &tag, false)
    }

    /// Reads to the completion of `tag`. With `want_continuation`, a `+` ends the wait
    /// (with `tagged` left `None`) instead of being an error.
    pub(crate) fn complete(
        &mut self,
        name: &'static str,
        tag: &str,
        want_continuation: bool,
    ) -> Result<Completion, ClientError> {
        let mut untagged = Vec::new();
        let mut bye = None;
        loop {
            let r = match self.read() {
                Ok(r) => r,
                Err(ClientError::Closed) if bye.is_some() => {
                    return Err(ClientError::Refused {
                        status: "BYE",
                        command: name,
                        line: bye.unwrap_or_default(),
                    })
                }
                Err(e) => return Err(e),
            };
            if r.is_untagged() {
                if self.note(&r) {
                    bye = Some(r.first_line());
                }
                untagged.push(r);
                continue;
            }
            if r.is_continuation() {
                if want_continuation {
                    return Ok(Completion {
                        untagged,
                        tagged: None,
                    });
                }
                return Err(garbage(&r));
            }
            if r.tag() != Some(tag.as_bytes()) {
                return Err(ClientError::Garbage(format!(
                    "expected the completion of {tag}: {}",
                    r.first_line()
                )));
            }
            return match r.status() {
                Some(Status::Ok) => Ok(Completion {
                    untagged,
                    tagged: Some(r),
                }),
                Some(s @ (Status::No | Status::Bad)) => Err(ClientError::Refused {
                    status: s.name(),
                    command: name,
                    line: r.first_line(),
                }),
                _ => Err(garbage(&r)),
            };
        }
    }

    /// LOGIN; the capabilities the server announces with it replace those of the greeting.
    pub fn login(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        let cmd = format!("LOGIN {} {}", quoted(user)?, quoted(password)?);
        let c = self.command_completion("login", &cmd)?;
        self.caps = c
            .untagged
            .iter()
            .chain(&c.tagged)
            .find_map(|r| values::capabilities(&r.raw));
        Ok(())
    }

    /// CAPABILITY.
    pub fn capability(&mut self) -> Result<(), ClientError> {
        let untagged = self.command("capability", "CAPABILITY")?;
        self.caps = untagged.iter().find_map(|r| values::capabilities(&r.raw));
        if self.caps.is_none() {
            return Err(wrong("no CAPABILITY response", "CAPABILITY"));
        }
        Ok(())
    }

    /// SELECT; the number of messages.
    pub fn select(&mut self, mailbox: &str) -> Result<u32, ClientError> {
        self.open_mailbox("select", "SELECT", mailbox)
    }

    /// EXAMINE (read-only); the number of messages.
    pub fn examine(&mut self, mailbox: &str) -> Result<u32, ClientError> {
        self.open_mailbox("examine", "EXAMINE", mailbox)
    }

    fn open_mailbox(
        &mut self,
        name: &'static str,
        verb: &str,
        mailbox: &str,
    ) -> Result<u32, ClientError> {
        self.exists = None;
        self.command(name, &format!("{verb} {}", quoted(mailbox)?))?;
        self.expunged.clear();
        self.exists
            .ok_or_else(|| wrong("no EXISTS", format!("{verb} completed without * n EXISTS")))
    }

    /// `UID SEARCH criteria`: the UIDs found.
    pub fn uid_search(
        &mut self,
        name: &'static str,
        criteria: &str,
    ) -> Result<Vec<u32>, ClientError> {
        let untagged = self.command(name, &format!("UID SEARCH {criteria}"))?;
        let mut found = None;
        for r in &untagged {
            if let Some(v) = values::search(&r.raw) {
                found.get_or_insert_with(Vec::new).extend(v);
            } else if r.raw.len() > 9 && r.raw[2..9].eq_ignore_ascii_case(b"SEARCH ") {
                return Err(garbage(r));
            }
        }
        found.ok_or_else(|| wrong("no SEARCH response", format!("UID SEARCH {criteria}")))
    }

    /// LOGOUT: `* BYE` then the tagged OK, then the server closes.
    pub fn logout(mut self) -> Result<(), ClientError> {
        let tag = self.next_tag();
        self.send(format!("{tag} LOGOUT\r\n").as_bytes())?;
        loop {
            let r = self.read()?;
            if r.tag() == Some(tag.as_bytes()) {
                return match r.status() {
                    Some(Status::Ok) => Ok(()),
                    _ => Err(ClientError::Refused {
                        status: r.status().map(Status::name).unwrap_or("?"),
                        command: "logout",
                        line: r.first_line(),
                    }),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_strings_are_quoted() {
        assert_eq!(quoted(r#"a"b\c"#).unwrap(), r#""a\"b\\c""#);
        assert!(quoted("a\r\nb").is_err());
    }
}
