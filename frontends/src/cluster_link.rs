//! What nodes of a cluster say to each other on their cluster ports (sans I/O).
//!
//! A connection opens with one line from the node that dials, naming what it wants:
//!
//! ```text
//! RINGMAIL/1 <secret> LMTP                        deliveries for partitions the peer serves
//! RINGMAIL/1 <secret> IMAP <account> <client-ip>  a session, logged in on the dialling node
//! RINGMAIL/1 <secret> POP3 <account> <client-ip>  likewise
//! ```
//!
//! The peer answers `+OK` and speaks the protocol from there on: LMTP from its greeting, an
//! IMAP session in the authenticated state (no greeting: the client already had one), a
//! POP3 session opening the maildrop (its first line answers the client's PASS). Anything
//! else is answered `-ERR <why>` and closed. The secret (made once per cluster, kept in
//! etcd) stands for the login the dialling node already checked, as a master password does
//! for a Dovecot proxy.
//!
//! A delivery goes as one pipelined LMTP transaction (RFC 2033, with PIPELINING and
//! CHUNKING): `MAIL FROM`, a `RCPT TO` per account, `BDAT <size> LAST` and the message,
//! answered by one reply per command and then one per accepted recipient.

use std::net::IpAddr;

/// The first line's word for this version of the exchange.
pub const VERSION: &str = "RINGMAIL/1";

/// What a connection to a cluster port is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hello {
    Lmtp,
    Imap { account: String, client: IpAddr },
    Pop3 { account: String, client: IpAddr },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("not a cluster greeting")]
    Malformed,
    #[error("wrong cluster secret")]
    Secret,
}

impl Hello {
    /// The line that opens a connection, CRLF included.
    pub fn line(&self, secret: &str) -> String {
        match self {
            Hello::Lmtp => format!("{VERSION} {secret} LMTP\r\n"),
            Hello::Imap { account, client } => {
                format!("{VERSION} {secret} IMAP {account} {client}\r\n")
            }
            Hello::Pop3 { account, client } => {
                format!("{VERSION} {secret} POP3 {account} {client}\r\n")
            }
        }
    }

    /// Reads an opening line (without its CRLF), checking the secret.
    pub fn parse(line: &[u8], secret: &str) -> Result<Hello, HelloError> {
        let line = std::str::from_utf8(line).map_err(|_| HelloError::Malformed)?;
        let mut words = line.split(' ');
        if words.next() != Some(VERSION) {
            return Err(HelloError::Malformed);
        }
        let given = words.next().ok_or(HelloError::Malformed)?;
        if !same(given.as_bytes(), secret.as_bytes()) {
            return Err(HelloError::Secret);
        }
        let kind = words.next().ok_or(HelloError::Malformed)?;
        let mut session = || -> Result<(String, IpAddr), HelloError> {
            let account = words.next().filter(|a| !a.is_empty());
            let client = words.next().and_then(|c| c.parse().ok());
            match (account, client, words.next()) {
                (Some(a), Some(c), None) => Ok((a.to_string(), c)),
                _ => Err(HelloError::Malformed),
            }
        };
        match kind {
            "LMTP" => Ok(Hello::Lmtp),
            "IMAP" => session().map(|(account, client)| Hello::Imap { account, client }),
            "POP3" => session().map(|(account, client)| Hello::Pop3 { account, client }),
            _ => Err(HelloError::Malformed),
        }
    }
}

/// Compares without stopping at the first difference: how long a wrong secret takes to be
/// refused says nothing about how much of it was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One SMTP/LMTP reply: its code and the text of its last line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// The peer's answer is not an SMTP reply.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an SMTP reply")]
pub struct NotSmtp;

/// Takes one whole reply (all its lines) from the front of `buf`, if it holds one.
pub fn take_reply(buf: &mut Vec<u8>) -> Result<Option<Reply>, NotSmtp> {
    let mut start = 0;
    loop {
        let Some(end) = memchr::memchr(b'\n', &buf[start..]).map(|i| start + i) else {
            return Ok(None);
        };
        let line = &buf[start..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(NotSmtp);
        }
        let last = line.get(3) != Some(&b'-');
        if last {
            let code = std::str::from_utf8(&line[..3])
                .ok()
                .and_then(|c| c.parse().ok())
                .ok_or(NotSmtp)?;
            let text = String::from_utf8_lossy(line.get(4..).unwrap_or_default()).into_owned();
            buf.drain(..=end);
            return Ok(Some(Reply { code, text }));
        }
        start = end + 1;
    }
}

/// The commands of one forwarded delivery, up to the message itself (sent right after).
/// `key`: the delivery's key, for copies an earlier try stored (`server/dedup.rs`).
pub fn delivery_commands(
    from: &str,
    key: Option<&str>,
    accounts: &[String],
    size: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + accounts.len() * 48);
    out.extend_from_slice(format!("MAIL FROM:<{from}> BODY=BINARYMIME SMTPUTF8").as_bytes());
    if let Some(k) = key {
        out.extend_from_slice(format!(" XRINGMAIL-KEY={k}").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    for a in accounts {
        out.extend_from_slice(format!("RCPT TO:<{a}>\r\n").as_bytes());
    }
    out.extend_from_slice(format!("BDAT {size} LAST\r\n").as_bytes());
    out
}

/// Follows the replies to [`delivery_commands`]: one for MAIL, one per RCPT, then one per
/// accepted recipient (or one for the whole message when none was accepted or MAIL failed).
#[derive(Debug)]
pub struct DeliveryReplies {
    rcpts: usize,
    mail: Option<Reply>,
    rcpt: Vec<Reply>,
    data: Vec<Reply>,
}

impl DeliveryReplies {
    pub fn new(rcpts: usize) -> Self {
        Self {
            rcpts,
            mail: None,
            rcpt: Vec::new(),
            data: Vec::new(),
        }
    }

    fn data_expected(&self) -> usize {
        let accepted = self.rcpt.iter().filter(|r| r.is_ok()).count();
        match self.mail.as_ref().is_some_and(|m| m.is_ok()) && accepted > 0 {
            true => accepted,
            false => 1,
        }
    }

    /// Takes the next reply; whether all have come.
    pub fn push(&mut self, r: Reply) -> bool {
        if self.mail.is_none() {
            self.mail = Some(r);
        } else if self.rcpt.len() < self.rcpts {
            self.rcpt.push(r);
        } else {
            self.data.push(r);
        }
        self.rcpt.len() == self.rcpts && self.data.len() >= self.data_expected()
    }

    /// Each recipient's outcome, in order: `Ok` when its copy is stored, else the reply that
    /// refused it.
    pub fn outcome(self) -> Vec<Result<(), Reply>> {
        let accepted_all = self.mail.as_ref().is_some_and(|m| m.is_ok());
        let mut data = self.data.into_iter();
        let whole = |r: &Reply| r.clone();
        let single = if !accepted_all || !self.rcpt.iter().any(|r| r.is_ok()) {
            data.next()
        } else {
            None
        };
        self.rcpt
            .iter()
            .map(|r| {
                if !accepted_all {
                    return Err(self.mail.clone().unwrap_or_else(|| r.clone()));
                }
                if !r.is_ok() {
                    return Err(r.clone());
                }
                match data.next() {
                    Some(d) if d.is_ok() => Ok(()),
                    Some(d) => Err(d),
                    None => Err(single.as_ref().map(whole).unwrap_or_else(|| r.clone())),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hello_reads_back_and_checks_the_secret() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for h in [
            Hello::Lmtp,
            Hello::Imap {
                account: "a@example.org".into(),
                client: ip,
            },
            Hello::Pop3 {
                account: "b@example.org".into(),
                client: "::1".parse().unwrap(),
            },
        ] {
            let line = h.line("s3cret");
            let bare = line.strip_suffix("\r\n").unwrap().as_bytes();
            assert_eq!(Hello::parse(bare, "s3cret"), Ok(h.clone()));
            assert_eq!(Hello::parse(bare, "s3creT"), Err(HelloError::Secret));
            assert_eq!(Hello::parse(bare, "s3cre"), Err(HelloError::Secret));
        }
        for bad in [
            "RINGMAIL/1 s LMTPX",
            "RINGMAIL/2 s LMTP",
            "RINGMAIL/1 s IMAP a",
            "RINGMAIL/1 s IMAP a notanip",
            "RINGMAIL/1 s POP3 a 1.2.3.4 extra",
            "",
        ] {
            assert_eq!(
                Hello::parse(bad.as_bytes(), "s"),
                Err(HelloError::Malformed)
            );
        }
    }

    fn feed(r: &mut DeliveryReplies, replies: &str) -> bool {
        let mut buf = replies.as_bytes().to_vec();
        let mut done = false;
        while let Some(reply) = take_reply(&mut buf).unwrap() {
            done = r.push(reply);
        }
        assert!(buf.is_empty());
        done
    }

    #[test]
    fn replies_map_to_recipients() {
        let mut r = DeliveryReplies::new(3);
        assert!(!feed(
            &mut r,
            "250 ok\r\n250 ok\r\n451 4.3.0 later\r\n250 ok\r\n"
        ));
        assert!(!feed(&mut r, "250 stored\r\n"));
        assert!(feed(&mut r, "552 5.2.2 full\r\n"));
        let out = r.outcome();
        assert_eq!(out[0], Ok(()));
        assert_eq!(out[1].as_ref().unwrap_err().code, 451);
        assert_eq!(out[2].as_ref().unwrap_err().code, 552);
    }

    #[test]
    fn no_accepted_recipient_gets_one_reply_for_the_message() {
        let mut r = DeliveryReplies::new(2);
        assert!(feed(
            &mut r,
            "250 ok\r\n550 no\r\n451 later\r\n554 5.5.1 no valid recipients\r\n"
        ));
        let out = r.outcome();
        assert_eq!(out[0].as_ref().unwrap_err().code, 550);
        assert_eq!(out[1].as_ref().unwrap_err().code, 451);
        // A refused MAIL fails every recipient with its reply.
        let mut r = DeliveryReplies::new(1);
        assert!(feed(
            &mut r,
            "452 busy\r\n503 need MAIL\r\n503 need MAIL\r\n"
        ));
        assert_eq!(r.outcome()[0].as_ref().unwrap_err().code, 452);
    }

    #[test]
    fn multiline_and_partial_replies() {
        let mut buf = b"250-first\r\n250-second\r\n250 last\r\n25".to_vec();
        let r = take_reply(&mut buf).unwrap().unwrap();
        assert_eq!((r.code, r.text.as_str()), (250, "last"));
        assert_eq!(take_reply(&mut buf), Ok(None));
        assert_eq!(buf, b"25");
        let mut bad = b"hello\r\n".to_vec();
        assert!(take_reply(&mut bad).is_err());
    }

    #[test]
    fn commands_pipeline_one_delivery() {
        let c = delivery_commands("s@x", None, &["a@y".into(), "b@y".into()], 10);
        assert_eq!(
            c,
            b"MAIL FROM:<s@x> BODY=BINARYMIME SMTPUTF8\r\nRCPT TO:<a@y>\r\nRCPT TO:<b@y>\r\nBDAT 10 LAST\r\n"
        );
        let c = delivery_commands("", Some("00ff"), &["a@y".into()], 1);
        assert!(c.starts_with(b"MAIL FROM:<> BODY=BINARYMIME SMTPUTF8 XRINGMAIL-KEY=00ff\r\n"));
    }
}
