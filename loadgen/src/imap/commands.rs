//! The commands of the IMAP mix, each checking its answer: FETCH (flags, or a body against
//! its size and checksum), STORE (the echoed flags), APPEND (APPENDUID with UIDPLUS),
//! EXPUNGE (the message is gone) and IDLE.

use std::time::{Duration, Instant};

use super::conn::{garbage, quoted, wrong, ImapConn};
use super::values::{self, Value};
use crate::client::ClientError;
use crate::stamp::check_stamp;

/// What a `UID FETCH … BODY.PEEK[]` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub len: usize,
    /// The stamp's id, when the message carries one (and its checksum matched).
    pub stamp: Option<String>,
}

impl ImapConn {
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

    /// APPEND with a synchronizing literal (every server supports it); the new message's
    /// UID when the server says (APPENDUID, RFC 4315).
    pub fn append(&mut self, mailbox: &str, msg: &[u8]) -> Result<Option<u32>, ClientError> {
        let tag = self.next_tag();
        let head = format!("{tag} APPEND {} {{{}}}\r\n", quoted(mailbox)?, msg.len());
        self.send(head.as_bytes())?;
        let c = self.complete("append", &tag, true)?;
        if c.tagged.is_some() {
            return Err(wrong("append", "completed before the literal was sent"));
        }
        let mut data = Vec::with_capacity(msg.len() + 2);
        data.extend_from_slice(msg);
        data.extend_from_slice(b"\r\n");
        self.send(&data)?;
        let c = self.complete("append", &tag, false)?;
        Ok(c.tagged.and_then(|t| values::appenduid(&t.raw)))
    }

    /// `UID EXPUNGE uid` (UIDPLUS) or, without `uid`, `EXPUNGE`: the `* n EXPUNGE`s are
    /// left in [`ImapConn::expunged`].
    pub fn expunge(&mut self, uid: Option<u32>) -> Result<(), ClientError> {
        let cmd = match uid {
            Some(u) => format!("UID EXPUNGE {u}"),
            None => "EXPUNGE".to_string(),
        };
        self.command("expunge", &cmd).map(|_| ())
    }

    /// IDLE (RFC 2177) until an untagged EXISTS arrives or `wait` passes, then DONE; how
    /// long it waited between the server's go-ahead and DONE (the rest is the command's
    /// round trip).
    pub fn idle(&mut self, wait: Duration) -> Result<Duration, ClientError> {
        let tag = self.next_tag();
        self.send(format!("{tag} IDLE\r\n").as_bytes())?;
        let c = self.complete("idle", &tag, true)?;
        if c.tagged.is_some() {
            return Err(wrong("idle", "IDLE completed before DONE"));
        }
        let t = Instant::now();
        let deadline = t + wait;
        while let Some(r) = self.read_by(Some(deadline))? {
            if !r.is_untagged() {
                return Err(garbage(&r));
            }
            if self.note(&r) {
                return Err(ClientError::Refused {
                    status: "BYE",
                    command: "idle",
                    line: r.first_line(),
                });
            }
            if values::exists(&r.raw).is_some() {
                break;
            }
        }
        let waited = t.elapsed();
        self.send(b"DONE\r\n")?;
        self.complete("idle", &tag, false)?;
        Ok(waited)
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
