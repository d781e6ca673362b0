//! A blocking IMAP client connection: one command at a time, each read to its tagged
//! completion, with the answers checked (the message asked for is there, a body has the
//! size the server states and, when it carries the loadgen's stamp, its checksum).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::framer::{FrameError, Framer, Response, Status};
use super::values::{self, Value};
use crate::client::{io, ClientError};
use crate::run::check_stamp;

/// The largest response accepted (a FETCH of a whole big message is one response).
const MAX_RESPONSE: usize = 64 << 20;

pub struct ImapConn {
    stream: TcpStream,
    framer: Framer,
    buf: Vec<u8>,
    tag: u64,
    /// The last `* n EXISTS` seen.
    pub exists: Option<u32>,
}

/// What a `UID FETCH … BODY.PEEK[]` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub len: usize,
    /// The stamp's id, when the message carries one (and its checksum matched).
    pub stamp: Option<String>,
}

fn garbage(r: &Response) -> ClientError {
    ClientError::Garbage(r.first_line())
}

fn wrong(check: &'static str, detail: impl Into<String>) -> ClientError {
    ClientError::Wrong {
        check,
        detail: detail.into(),
    }
}

/// A quoted string for LOGIN; anything that cannot be quoted is refused.
fn quoted(s: &str) -> Result<String, ClientError> {
    if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(wrong("unquotable", "a user or password with a line break"));
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

impl ImapConn {
    /// Connects and reads the greeting (`* OK` or `* PREAUTH`).
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<ImapConn, ClientError> {
        let s = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        s.set_nodelay(true).ok();
        s.set_read_timeout(Some(timeout)).ok();
        s.set_write_timeout(Some(timeout)).ok();
        let mut c = ImapConn {
            stream: s,
            framer: Framer::new(MAX_RESPONSE),
            buf: vec![0; 64 << 10],
            tag: 0,
            exists: None,
        };
        let g = c.read()?;
        match (g.is_untagged(), g.status()) {
            (true, Some(Status::Ok | Status::Preauth)) => Ok(c),
            (true, Some(Status::Bye)) => Err(ClientError::Refused {
                status: "BYE",
                command: "greeting",
                line: g.first_line(),
            }),
            _ => Err(garbage(&g)),
        }
    }

    fn read(&mut self) -> Result<Response, ClientError> {
        loop {
            match self.framer.next_response() {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(FrameError::TooLarge(n)) => {
                    return Err(ClientError::Garbage(format!("a response of {n} bytes")))
                }
            }
            let n = self.stream.read(&mut self.buf).map_err(io)?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.framer.feed(&self.buf[..n]);
        }
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("a{}", self.tag)
    }

    fn send(&mut self, b: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(b).map_err(io)
    }

    /// Sends `TAG cmd` and reads to its tagged completion; returns the untagged responses
    /// in between. NO, BAD and BYE are [`ClientError::Refused`] naming `name`.
    pub fn command(&mut self, name: &'static str, cmd: &str) -> Result<Vec<Response>, ClientError> {
        let tag = self.next_tag();
        self.send(format!("{tag} {cmd}\r\n").as_bytes())?;
        self.complete(name, &tag, false).map(|(u, _)| u)
    }

    /// Reads to the completion of `tag`. With `want_continuation`, a `+` ends the wait
    /// (returned as `true`) instead of being an error.
    fn complete(
        &mut self,
        name: &'static str,
        tag: &str,
        want_continuation: bool,
    ) -> Result<(Vec<Response>, bool), ClientError> {
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
                if r.status() == Some(Status::Bye) {
                    bye = Some(r.first_line());
                } else if let Some(n) = values::exists(&r.raw) {
                    self.exists = Some(n);
                }
                untagged.push(r);
                continue;
            }
            if r.is_continuation() {
                if want_continuation {
                    return Ok((untagged, true));
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
                Some(Status::Ok) => Ok((untagged, false)),
                Some(s @ (Status::No | Status::Bad)) => Err(ClientError::Refused {
                    status: s.name(),
                    command: name,
                    line: r.first_line(),
                }),
                _ => Err(garbage(&r)),
            };
        }
    }

    pub fn login(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        let cmd = format!("LOGIN {} {}", quoted(user)?, quoted(password)?);
        self.command("login", &cmd).map(|_| ())
    }

    /// SELECT; the number of messages.
    pub fn select(&mut self, mailbox: &str) -> Result<u32, ClientError> {
        self.exists = None;
        self.command("select", &format!("SELECT {}", quoted(mailbox)?))?;
        self.exists
            .ok_or_else(|| wrong("no EXISTS", "SELECT completed without * n EXISTS"))
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

    /// `UID FETCH uid (items)`: the items the server returned for that UID, merged over its
    /// FETCH responses (another session's flag change can arrive as one more).
    fn uid_fetch<T>(
        &mut self,
        name: &'static str,
        uid: u32,
        items: &str,
        read: impl Fn(&values::Fetch<'_>, &mut Option<T>) -> Result<(), ClientError>,
    ) -> Result<T, ClientError> {
        let untagged = self.command(name, &format!("UID FETCH {uid} {items}"))?;
        let mut out = None;
        for r in &untagged {
            let f = match values::fetch(&r.raw) {
                Ok(Some(f)) => f,
                Ok(None) => continue,
                Err(e) => return Err(ClientError::Garbage(format!("{e}: {}", r.first_line()))),
            };
            if f.number("UID") == Some(uid as u64) {
                read(&f, &mut out)?;
            }
        }
        out.ok_or_else(|| wrong("message missing", format!("{name}: no FETCH of UID {uid}")))
    }

    /// `UID FETCH uid (FLAGS)`: the flags.
    pub fn fetch_flags(&mut self, uid: u32) -> Result<Vec<String>, ClientError> {
        self.uid_fetch("fetch-flags", uid, "(FLAGS)", |f, out| {
            if let Some(v) = f.get("FLAGS") {
                *out = Some(flag_list(v)?);
            }
            Ok(())
        })
    }

    /// `UID FETCH uid (RFC822.SIZE BODY.PEEK[])`: the body must have the stated size, and
    /// the stamp (if any) its checksum.
    pub fn fetch_body(&mut self, uid: u32) -> Result<Body, ClientError> {
        let (size, body) = self.uid_fetch(
            "fetch-body",
            uid,
            "(RFC822.SIZE BODY.PEEK[])",
            |f, out: &mut Option<(Option<u64>, Option<Body>)>| {
                let (size, body) = out.get_or_insert((None, None));
                if let Some(n) = f.number("RFC822.SIZE") {
                    *size = Some(n);
                }
                match f.get("BODY[]") {
                    Some(Value::Str(b)) => {
                        let stamp = match check_stamp(b) {
                            Some(Ok(id)) => Some(id),
                            Some(Err(id)) => {
                                return Err(wrong("checksum mismatch", format!("UID {uid}: {id}")))
                            }
                            None => None,
                        };
                        *body = Some(Body {
                            len: b.len(),
                            stamp,
                        });
                    }
                    Some(Value::Nil) => return Err(wrong("message missing", "BODY[] NIL")),
                    Some(_) => return Err(wrong("message missing", "BODY[] not a string")),
                    None => {}
                }
                Ok(())
            },
        )?;
        let body = body.ok_or_else(|| wrong("message missing", format!("UID {uid}: no BODY[]")))?;
        match size {
            Some(s) if s == body.len as u64 => Ok(body),
            Some(s) => Err(wrong(
                "size mismatch",
                format!("UID {uid}: RFC822.SIZE {s}, BODY[] {} bytes", body.len),
            )),
            None => Err(wrong("no RFC822.SIZE", format!("UID {uid}"))),
        }
    }

    /// `UID STORE uid ±FLAGS (flag)`. With `check_echo`, the flags the server echoes (it
    /// should, without .SILENT) must show the change; only meaningful when no other session
    /// changes the same message at the same time (the echo then may show its change too).
    pub fn store(
        &mut self,
        uid: u32,
        add: bool,
        flag: &str,
        check_echo: bool,
    ) -> Result<(), ClientError> {
        let sign = if add { '+' } else { '-' };
        let untagged = self.command("store", &format!("UID STORE {uid} {sign}FLAGS ({flag})"))?;
        if !check_echo {
            return Ok(());
        }
        for r in &untagged {
            let Ok(Some(f)) = values::fetch(&r.raw) else {
                continue;
            };
            if f.number("UID") != Some(uid as u64) {
                continue; // another message's update
            }
            if let Some(v) = f.get("FLAGS") {
                let has = flag_list(v)?.iter().any(|x| x.eq_ignore_ascii_case(flag));
                if has != add {
                    return Err(wrong(
                        "store not applied",
                        format!("UID {uid} {sign}FLAGS ({flag}): {}", r.first_line()),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn noop(&mut self) -> Result<(), ClientError> {
        self.command("noop", "NOOP").map(|_| ())
    }

    /// APPEND with a synchronizing literal (every server supports it).
    pub fn append(&mut self, mailbox: &str, msg: &[u8]) -> Result<(), ClientError> {
        let tag = self.next_tag();
        let head = format!("{tag} APPEND {} {{{}}}\r\n", quoted(mailbox)?, msg.len());
        self.send(head.as_bytes())?;
        let (_, go_on) = self.complete("append", &tag, true)?;
        if !go_on {
            return Err(wrong("append", "completed before the literal was sent"));
        }
        let mut data = Vec::with_capacity(msg.len() + 2);
        data.extend_from_slice(msg);
        data.extend_from_slice(b"\r\n");
        self.send(&data)?;
        self.complete("append", &tag, false).map(|_| ())
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

fn flag_list(v: &Value<'_>) -> Result<Vec<String>, ClientError> {
    let Value::List(items) = v else {
        return Err(ClientError::Garbage("FLAGS is not a list".into()));
    };
    items
        .iter()
        .map(|x| match x {
            Value::Atom(a) => Ok(String::from_utf8_lossy(a).into_owned()),
            _ => Err(ClientError::Garbage("a flag that is not an atom".into())),
        })
        .collect()
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
