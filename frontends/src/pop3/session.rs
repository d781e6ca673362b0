//! The POP3 session state machine, sans I/O.
//!
//! ```text
//!  AUTHORIZATION ─USER/PASS, AUTH─► (Login) ─► (OpenMaildrop: lock + list) ─►
//!  TRANSACTION ─STAT/LIST/UIDL/RETR/TOP/DELE/RSET/NOOP─► … ─QUIT─► (Commit) ─► UPDATE, closed
//! ```
//!
//! Deletions are only marks until QUIT; a connection that drops commits nothing (RFC 1939
//! section 6). Responses carry RFC 2449/3206 response codes (`[AUTH]`, `[IN-USE]`,
//! `[SYS/TEMP]`).

use crate::lines::LineSession;
use crate::sasl::{Answer, Exchange, Mechanism, Need, Secret, Step};

#[derive(Clone, Debug)]
pub struct Pop3Config {
    pub hostname: String,
    /// The connection is TLS (implicit, or after STLS).
    pub tls: bool,
    /// STLS can be offered.
    pub starttls: bool,
    /// Allow USER/PASS and AUTH without TLS (tests and trusted networks only).
    pub danger_auth_without_tls: bool,
    pub max_line: usize,
    pub max_auth_failures: u32,
    pub max_errors: u32,
}

impl Pop3Config {
    pub fn new(hostname: &str) -> Self {
        Self {
            hostname: hostname.to_string(),
            tls: false,
            starttls: false,
            danger_auth_without_tls: false,
            max_line: 4096,
            max_auth_failures: 3,
            max_errors: 20,
        }
    }
}

/// One message of the maildrop, in the order the session numbers them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaildropEntry {
    /// The engine's UID of the message in INBOX.
    pub id: u32,
    /// The UIDL value: stable across sessions and restarts.
    pub uidl: String,
    pub size: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// `+OK` was written: flush, start TLS, then `tls_started`.
    StartTls,
    /// A login needs a password checked or SCRAM keys found (see `sasl::exchange`);
    /// answer with `login_answer`.
    Login { need: Need, mechanism: Mechanism },
    /// Lock and list the user's INBOX; answer with `maildrop_opened`.
    OpenMaildrop { account: String },
    /// Fetch a message; answer with `message`.
    Retrieve { id: u32 },
    /// QUIT in TRANSACTION: expunge these, then `committed`. The lock is released by the
    /// I/O layer when the session ends, whatever happened.
    Commit { delete: Vec<u32> },
}

#[derive(Debug)]
enum Wait {
    Login,
    Open,
    Retrieve { top: Option<u32> },
    Commit { count: usize },
    StartTls,
}

#[derive(Debug)]
enum State {
    Authorization {
        user: Option<String>,
    },
    /// A login exchange waits for the client's next line.
    Sasl,
    OpenPending {
        account: String,
    },
    Transaction,
    Wait(Wait),
}

pub struct Session {
    cfg: Pop3Config,
    state: State,
    input: crate::lines::Input,
    maildrop: Vec<MaildropEntry>,
    deleted: Vec<bool>,
    auth_failures: u32,
    errors: u32,
    closed: bool,
    skip_line: bool,
    /// The login in progress (USER/PASS or AUTH).
    sasl: Option<Exchange>,
    /// How the last login ended, until the I/O layer asks (see the SMTP session).
    login_outcome: Option<bool>,
    /// Logged in on another node of the cluster, which proxies it here: a maildrop that
    /// cannot be opened ends the session (the client logs in again through that node).
    proxied: bool,
}

/// The session's partition is no longer served on this node (cluster mode).
pub const MOVED_ERR: &[u8] =
    b"-ERR [SYS/TEMP] this mailbox is now served by another node, log in again\r\n";

fn ok(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"+OK ");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn err(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"-ERR ");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `body` as a multi-line response body: dot-stuffed, CRLF-terminated, then `.`.
pub fn dot_stuff(body: &[u8], out: &mut Vec<u8>) {
    let mut d = DotStuffer::default();
    d.feed(body, out);
    d.finish(out);
}

/// Dot-stuffing over a message given in pieces, so a large message can go out as it is
/// read, never copied whole.
pub struct DotStuffer {
    at_line_start: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self {
            at_line_start: true,
        }
    }
}

impl DotStuffer {
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) {
        while !chunk.is_empty() {
            if self.at_line_start && chunk[0] == b'.' {
                out.push(b'.');
            }
            match memchr::memchr(b'\n', chunk) {
                Some(i) => {
                    out.extend_from_slice(&chunk[..=i]);
                    chunk = &chunk[i + 1..];
                    self.at_line_start = true;
                }
                None => {
                    out.extend_from_slice(chunk);
                    self.at_line_start = false;
                    return;
                }
            }
        }
    }

    /// Ends the last line if it was open, then the terminating `.` line.
    pub fn finish(self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// The header block, the empty line, and the first `lines` lines of the body (TOP).
pub fn top(body: &[u8], lines: u32) -> &[u8] {
    let header_end = memchr::memmem::find(body, b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| memchr::memmem::find(body, b"\n\n").map(|i| i + 2))
        .unwrap_or(body.len());
    let mut end = header_end;
    for _ in 0..lines {
        match memchr::memchr(b'\n', &body[end..]) {
            Some(i) => end += i + 1,
            None => {
                end = body.len();
                break;
            }
        }
    }
    &body[..end]
}

impl Session {
    pub fn new(cfg: Pop3Config) -> Self {
        Self {
            cfg,
            state: State::Authorization { user: None },
            input: Default::default(),
            maildrop: Vec::new(),
            deleted: Vec::new(),
            auth_failures: 0,
            errors: 0,
            closed: false,
            skip_line: false,
            sasl: None,
            login_outcome: None,
            proxied: false,
        }
    }

    /// A session another node logged in and proxies here: it opens `account`'s maildrop
    /// first, and its answer is the client's answer to the login.
    pub fn proxied(cfg: Pop3Config, account: String) -> Self {
        Self {
            state: State::OpenPending { account },
            proxied: true,
            ..Self::new(cfg)
        }
    }

    pub fn is_proxied(&self) -> bool {
        self.proxied
    }

    /// Takes what the client sent and the session has not read (commands pipelined after
    /// the login), for the node the session is proxied to.
    pub fn take_input(&mut self) -> Vec<u8> {
        let b = self.input.bytes().to_vec();
        self.input.clear();
        b
    }

    pub fn greeting(&self, out: &mut Vec<u8>) {
        ok(out, &format!("{} ringmail POP3 ready", self.cfg.hostname));
    }

    /// Bytes received but not yet processed (a partial command line).
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    pub fn in_transaction(&self) -> bool {
        !matches!(self.state, State::Authorization { .. } | State::Sasl)
    }

    fn auth_allowed(&self) -> bool {
        self.cfg.tls || self.cfg.danger_auth_without_tls
    }

    fn error(&mut self, out: &mut Vec<u8>, text: &str) {
        err(out, text);
        self.errors += 1;
        if self.errors >= self.cfg.max_errors {
            err(out, "too many errors, closing connection");
            self.closed = true;
        }
    }

    fn take_line(&mut self, out: &mut Vec<u8>) -> Option<Vec<u8>> {
        loop {
            match crate::lines::next_line(&mut self.input, &mut self.skip_line, self.cfg.max_line) {
                crate::lines::Line::Line(l) => return Some(l),
                crate::lines::Line::TooLong => {
                    self.error(out, "line too long");
                    if self.closed {
                        return None;
                    }
                }
                crate::lines::Line::Pending => return None,
            }
        }
    }

    pub fn poll(&mut self, out: &mut Vec<u8>) -> Option<Event> {
        while !self.closed {
            match &self.state {
                State::Wait(_) => return None,
                State::OpenPending { account } => {
                    let account = account.clone();
                    self.state = State::Wait(Wait::Open);
                    return Some(Event::OpenMaildrop { account });
                }
                State::Sasl => {
                    let line = self.take_line(out)?;
                    let Some(ex) = self.sasl.as_mut() else {
                        self.state = State::Authorization { user: None };
                        continue;
                    };
                    let step = ex.input(&line);
                    if let Some(ev) = self.sasl_step(step, out) {
                        return Some(ev);
                    }
                }
                State::Authorization { .. } | State::Transaction => {
                    let line = self.take_line(out)?;
                    if let Some(ev) = self.command(&line, out) {
                        return Some(ev);
                    }
                }
            }
        }
        None
    }

    fn capa(&self, out: &mut Vec<u8>) {
        ok(out, "capability list follows");
        let sasl = format!("SASL {}", Mechanism::offered_names());
        let mut caps = vec![
            "TOP",
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "EXPIRE NEVER",
            "UTF8",
            "IMPLEMENTATION ringmail",
        ];
        if self.auth_allowed() && !self.in_transaction() {
            caps.push("USER");
            caps.push(&sasl);
        }
        if self.cfg.starttls && !self.cfg.tls && !self.in_transaction() {
            caps.push("STLS");
        }
        for c in caps {
            out.extend_from_slice(c.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }

    fn command(&mut self, line: &[u8], out: &mut Vec<u8>) -> Option<Event> {
        use super::command::Command as C;
        let cmd = match super::command::parse(line) {
            Ok(c) => c,
            Err(e) => {
                self.error(out, e);
                return None;
            }
        };
        let transaction = matches!(self.state, State::Transaction);
        match (cmd, transaction) {
            (C::Capa, _) => self.capa(out),
            (C::Noop, true) => ok(out, ""),
            (C::Quit, false) => {
                ok(out, &format!("{} signing off", self.cfg.hostname));
                self.closed = true;
            }
            (C::Quit, true) => {
                let delete: Vec<u32> = self
                    .maildrop
                    .iter()
                    .zip(&self.deleted)
                    .filter(|(_, d)| **d)
                    .map(|(m, _)| m.id)
                    .collect();
                self.state = State::Wait(Wait::Commit {
                    count: delete.len(),
                });
                return Some(Event::Commit { delete });
            }
            (C::Stls, false) => {
                if self.cfg.tls || !self.cfg.starttls {
                    self.error(out, "STLS not available");
                } else {
                    ok(out, "begin TLS negotiation");
                    self.state = State::Wait(Wait::StartTls);
                    return Some(Event::StartTls);
                }
            }
            (C::Utf8, false) => ok(out, "UTF8 enabled"),
            (C::User(u), false) => {
                if !self.auth_allowed() {
                    self.error(out, "[AUTH] plaintext authentication requires STLS first");
                } else {
                    self.state = State::Authorization { user: Some(u) };
                    ok(out, "send PASS");
                }
            }
            (C::Pass(p), false) => {
                let State::Authorization { user: Some(user) } =
                    std::mem::replace(&mut self.state, State::Authorization { user: None })
                else {
                    self.error(out, "USER first");
                    return None;
                };
                let (ex, step) = Exchange::password("USER", user, Secret(p));
                self.sasl = Some(ex);
                return self.sasl_step(step, out);
            }
            (C::Apop(..), false) => self.error(out, "APOP is not enabled"),
            (C::Auth(None, _), false) => {
                ok(out, "SASL mechanisms follow");
                for m in crate::sasl::exchange::OFFERED {
                    out.extend_from_slice(m.name().as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b".\r\n");
            }
            (C::Auth(Some(m), ir), false) => {
                if !self.auth_allowed() {
                    self.error(out, "[AUTH] authentication requires STLS first");
                    return None;
                }
                let Some(mechanism) = Mechanism::from_name(&m) else {
                    self.error(out, "unsupported SASL mechanism");
                    return None;
                };
                let (ex, step) = Exchange::start(mechanism, ir.as_deref());
                self.sasl = Some(ex);
                return self.sasl_step(step, out);
            }
            (C::Stat, true) => {
                let (n, size) = self
                    .live()
                    .fold((0, 0), |(n, s), (_, m)| (n + 1, s + m.size));
                ok(out, &format!("{n} {size}"));
            }
            (C::List(None), true) => {
                ok(out, "scan listing follows");
                let lines: Vec<String> = self
                    .live()
                    .map(|(i, m)| format!("{} {}\r\n", i + 1, m.size))
                    .collect();
                for l in lines {
                    out.extend_from_slice(l.as_bytes());
                }
                out.extend_from_slice(b".\r\n");
            }
            (C::Uidl(None), true) => {
                ok(out, "unique-id listing follows");
                let lines: Vec<String> = self
                    .live()
                    .map(|(i, m)| format!("{} {}\r\n", i + 1, m.uidl))
                    .collect();
                for l in lines {
                    out.extend_from_slice(l.as_bytes());
                }
                out.extend_from_slice(b".\r\n");
            }
            (C::List(Some(n)), true) => {
                if let Some(m) = self.message(n, out) {
                    ok(out, &format!("{n} {}", m.size));
                }
            }
            (C::Uidl(Some(n)), true) => {
                if let Some(m) = self.message(n, out) {
                    ok(out, &format!("{n} {}", m.uidl));
                }
            }
            (C::Retr(n), true) => {
                if let Some(m) = self.message(n, out) {
                    self.state = State::Wait(Wait::Retrieve { top: None });
                    return Some(Event::Retrieve { id: m.id });
                }
            }
            (C::Top(n, lines), true) => {
                if let Some(m) = self.message(n, out) {
                    self.state = State::Wait(Wait::Retrieve { top: Some(lines) });
                    return Some(Event::Retrieve { id: m.id });
                }
            }
            (C::Dele(n), true) => {
                if self.message(n, out).is_some() {
                    self.deleted[n as usize - 1] = true;
                    ok(out, &format!("message {n} deleted"));
                }
            }
            (C::Rset, true) => {
                self.deleted.iter_mut().for_each(|d| *d = false);
                ok(
                    out,
                    &format!("maildrop has {} messages", self.maildrop.len()),
                );
            }
            (_, true) => self.error(out, "command not valid in the TRANSACTION state"),
            (_, false) => self.error(out, "command not valid in the AUTHORIZATION state"),
        }
        None
    }

    fn live(&self) -> impl Iterator<Item = (usize, &MaildropEntry)> {
        self.maildrop
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.deleted[*i])
    }

    /// Message `n` (1-based) if it exists and is not deleted; else writes the error.
    fn message(&mut self, n: u32, out: &mut Vec<u8>) -> Option<MaildropEntry> {
        let i = n as usize - 1;
        match self.maildrop.get(i) {
            None => {
                self.error(out, "no such message");
                None
            }
            Some(_) if self.deleted[i] => {
                self.error(out, "message already deleted");
                None
            }
            Some(m) => Some(m.clone()),
        }
    }

    /// Turns a step of the login exchange into POP3 (RFC 5034): challenges as `+ `, the
    /// outcome as the maildrop opening or an `-ERR` with its response code.
    fn sasl_step(&mut self, step: Step, out: &mut Vec<u8>) -> Option<Event> {
        self.state = State::Authorization { user: None };
        if step.is_final() {
            self.sasl = None;
        }
        match step {
            Step::Challenge(c) => {
                out.extend_from_slice(format!("+ {c}\r\n").as_bytes());
                self.state = State::Sasl;
            }
            Step::Need(need) => {
                let mechanism = self.sasl.as_ref()?.mechanism();
                self.state = State::Wait(Wait::Login);
                return Some(Event::Login { need, mechanism });
            }
            // The login's first address is the account's.
            // (The exchange never succeeds without one.)
            Step::Success { senders, .. } => {
                if let Some(account) = senders.into_iter().next() {
                    self.login_outcome = Some(true);
                    self.state = State::OpenPending { account };
                }
            }
            Step::Failed { .. } => {
                self.auth_failures += 1;
                self.login_outcome = Some(false);
                err(out, "[AUTH] invalid credentials");
                if self.auth_failures >= self.cfg.max_auth_failures {
                    err(out, "too many failed logins, closing connection");
                    self.closed = true;
                }
            }
            // The credentials were not looked at.
            Step::Blocked => err(out, "[SYS/TEMP] too many failed logins, try again later"),
            Step::Malformed(why) => self.error(out, why.text()),
            Step::Cancelled => self.error(out, "authentication cancelled"),
        }
        None
    }

    /// Answers `OpenMaildrop`: the messages, or a `-ERR` text (e.g. `[IN-USE] ...`).
    pub fn maildrop_opened(
        &mut self,
        result: Result<Vec<MaildropEntry>, String>,
        out: &mut Vec<u8>,
    ) {
        if !matches!(self.state, State::Wait(Wait::Open)) {
            return;
        }
        match result {
            Ok(m) => {
                let size: u64 = m.iter().map(|e| e.size).sum();
                ok(
                    out,
                    &format!("maildrop has {} messages ({size} octets)", m.len()),
                );
                self.deleted = vec![false; m.len()];
                self.maildrop = m;
                self.state = State::Transaction;
            }
            Err(e) => {
                err(out, &e);
                self.state = State::Authorization { user: None };
                self.closed |= self.proxied;
            }
        }
    }

    /// Answers `Retrieve` with the message's bytes.
    pub fn message_bytes(&mut self, result: Result<&[u8], String>, out: &mut Vec<u8>) {
        let body = result.as_ref().ok().copied();
        if let Some(n) = self.message_start(result, out) {
            dot_stuff(&body.unwrap_or_default()[..n], out);
        }
    }

    /// Answers `Retrieve` with the status line only (`Err`: the whole `-ERR` text, response
    /// code first); on success returns how many bytes of the message to send (all, or what TOP keeps), which the caller sends dot-stuffed
    /// ([`DotStuffer`]) as it goes.
    pub fn message_start(
        &mut self,
        result: Result<&[u8], String>,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        let State::Wait(Wait::Retrieve { top: t }) = self.state else {
            return None;
        };
        self.state = State::Transaction;
        match result {
            Ok(body) => {
                let n = match t {
                    Some(lines) => top(body, lines).len(),
                    None => body.len(),
                };
                ok(
                    out,
                    if t.is_some() {
                        "top of message follows"
                    } else {
                        "message follows"
                    },
                );
                Some(n)
            }
            // The I/O layer's text, response code first ([SYS/TEMP], [SYS/PERM]).
            Err(e) => {
                err(out, &e);
                None
            }
        }
    }

    /// Answers `Commit`.
    pub fn committed(&mut self, result: Result<(), String>, out: &mut Vec<u8>) {
        let State::Wait(Wait::Commit { count }) = self.state else {
            return;
        };
        match result {
            Ok(()) => ok(
                out,
                &format!(
                    "{} signing off ({count} messages deleted)",
                    self.cfg.hostname
                ),
            ),
            Err(e) => err(
                out,
                &format!("[SYS/TEMP] some deleted messages not removed: {e}"),
            ),
        }
        self.closed = true;
    }
}

impl LineSession for Session {
    fn input(&mut self, data: &[u8]) {
        self.input.push(data);
    }

    fn is_closed(&self) -> bool {
        self.closed
    }

    fn timeout(&mut self, out: &mut Vec<u8>) {
        err(out, "[SYS/TEMP] autologout: idle for too long");
        self.closed = true;
    }

    fn tls_started(&mut self) {
        self.input.clear();
        self.cfg.tls = true;
        self.state = State::Authorization { user: None };
    }

    /// Answers a `Login` event.
    fn login_answer(&mut self, answer: Answer, out: &mut Vec<u8>) {
        if !matches!(self.state, State::Wait(Wait::Login)) {
            return;
        }
        let Some(ex) = self.sasl.as_mut() else {
            self.state = State::Authorization { user: None };
            return;
        };
        let step = ex.answer(answer);
        // An answer leads to a challenge or an outcome, never to another lookup.
        let _ = self.sasl_step(step, out);
    }

    /// How the last login ended, once (see the SMTP session).
    fn take_login_outcome(&mut self) -> Option<bool> {
        self.login_outcome.take()
    }

    fn stopping_reply(&self) -> &'static [u8] {
        b"-ERR [SYS/TEMP] server shutting down\r\n"
    }

    fn moved_reply(&self) -> &'static [u8] {
        MOVED_ERR
    }
}
