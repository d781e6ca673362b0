//! The SMTP/LMTP session state machine, sans I/O.
//!
//! ```text
//!            input bytes ──► Session::input
//!  Session::poll(out) ──► replies appended to `out`, or an Event the I/O layer must answer:
//!      CheckRecipient ─► rcpt_result      Authenticate ─► auth_result
//!      Deliver        ─► deliver_result   StartTls     ─► tls_started
//!
//!  Greeting ─EHLO/HELO/LHLO─► Ready ─MAIL─► HaveSender ─RCPT─► HaveRecipients
//!      ─DATA─► ReadingData ─"."─► (Deliver) ─► Ready
//!      ─BDAT─► ReadingChunk ─LAST─► (Deliver) ─► Ready
//! ```
//!
//! Commands may be pipelined (RFC 2920): `poll` works through the buffered input in order
//! and stops only to wait for the answer to an event or for more input. The session never
//! touches sockets, clocks or storage.

use base64::Engine as _;

use super::command::{self, Command};
use super::reply::{r, Reply};
use crate::sasl::scram::{Finish, ServerExchange as ScramExchange, StartError};
use crate::sasl::Secret;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Port 25: mail for local recipients from anyone; no AUTH.
    Inbound,
    /// Ports 587/465 (RFC 6409): AUTH required, after TLS.
    Submission,
    /// RFC 2033: LHLO, one reply per recipient after DATA.
    Lmtp,
}

#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub mode: Mode,
    pub hostname: String,
    pub max_message_size: u64,
    pub max_recipients: usize,
    /// Longest command line accepted (RFC 5321 section 4.5.3.1.4 says 512 at least).
    pub max_line: usize,
    /// The connection is already TLS (implicit TLS, or after STARTTLS).
    pub tls: bool,
    /// STARTTLS can be offered (a certificate is configured).
    pub starttls: bool,
    /// Accept AUTH without TLS (tests and trusted networks only).
    pub danger_auth_without_tls: bool,
    pub vrfy: bool,
    /// Protocol errors before the session is closed with 421.
    pub max_errors: u32,
    /// Failed AUTH attempts before the session is closed with 421.
    pub max_auth_failures: u32,
}

impl SessionConfig {
    pub fn new(mode: Mode, hostname: &str) -> Self {
        Self {
            mode,
            hostname: hostname.to_string(),
            max_message_size: 50 << 20,
            max_recipients: 1000,
            max_line: 4096,
            tls: false,
            starttls: false,
            danger_auth_without_tls: false,
            vrfy: false,
            max_errors: 20,
            max_auth_failures: 3,
        }
    }
}

/// The transaction the client built: recorded for delivery and the Received header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    pub helo: String,
    pub from: String,
    pub rcpts: Vec<String>,
    /// MAIL and RCPT parameters as given (BODY, SMTPUTF8, DSN's RET/ENVID/NOTIFY/ORCPT).
    pub mail_params: Vec<(String, Option<String>)>,
    pub rcpt_params: Vec<Vec<(String, Option<String>)>>,
    pub tls: bool,
    pub auth: Option<String>,
    pub esmtp: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Is this recipient acceptable? Answer with `rcpt_result`.
    CheckRecipient { address: String, vrfy: bool },
    /// Check credentials; answer with `auth_result` (or `auth_unavailable`).
    Authenticate {
        user: String,
        password: Secret,
        mechanism: &'static str,
    },
    /// Store the message; answer with `deliver_result`, one result per recipient.
    Deliver {
        envelope: Envelope,
        message: Vec<u8>,
    },
    /// `220` was written: flush it, start TLS, then call `tls_started`.
    StartTls,
    /// SCRAM: look up the user's keys; answer with `scram_credentials`.
    ScramLookup { user: String },
    /// BURL (RFC 4468): resolve this URLAUTH URL for `user` (the authenticated submitter);
    /// answer with `burl_result`.
    FetchUrl { url: String, user: String },
}

#[derive(Debug)]
enum Waiting {
    Rcpt {
        to: String,
        params: Vec<(String, Option<String>)>,
        vrfy: bool,
    },
    Auth,
    Scram,
    Deliver,
    StartTls,
    Burl {
        last: bool,
    },
}

#[derive(Debug)]
enum State {
    Command,
    Data {
        line_start: bool,
    },
    Chunk {
        remaining: u64,
        last: bool,
    },
    AuthLoginUser,
    AuthLoginPassword {
        user: String,
    },
    AuthPlainResponse,
    ScramClientFirst,
    ScramClientFinal,
    /// The server-final message was sent; the client answers with an empty line.
    ScramDone {
        senders: Vec<String>,
    },
    Wait(Waiting),
}

pub struct Session {
    cfg: SessionConfig,
    state: State,
    input: crate::lines::Input,
    greeted: Option<String>,
    esmtp: bool,
    auth_user: Option<String>,
    allowed_senders: Vec<String>,
    envelope: Option<Envelope>,
    message: Vec<u8>,
    too_big: bool,
    /// Bytes of message the I/O layer can hold for this session now (its memory budget).
    allowance: u64,
    /// The message outgrew `allowance`: it was dropped, and is answered 452 at its end.
    over_budget: bool,
    /// Messages whose content began to arrive (DATA accepted, or a transaction's first
    /// BDAT chunk): the I/O layer gives each its own deadline.
    messages_started: u64,
    bdat_active: bool,
    binarymime: bool,
    errors: u32,
    auth_failures: u32,
    closed: bool,
    skip_line: bool,
    scram: Option<ScramExchange>,
    /// An authentication failed since the I/O layer last asked (it delays the reply).
    auth_failed: bool,
}

impl Session {
    pub fn new(cfg: SessionConfig) -> Self {
        Self {
            cfg,
            state: State::Command,
            input: Default::default(),
            greeted: None,
            esmtp: false,
            auth_user: None,
            allowed_senders: Vec::new(),
            envelope: None,
            message: Vec::new(),
            too_big: false,
            allowance: u64::MAX,
            over_budget: false,
            messages_started: 0,
            bdat_active: false,
            binarymime: false,
            errors: 0,
            auth_failures: 0,
            closed: false,
            skip_line: false,
            scram: None,
            auth_failed: false,
        }
    }

    pub fn greeting(&self, out: &mut Vec<u8>) {
        let proto = if self.cfg.mode == Mode::Lmtp {
            "LMTP"
        } else {
            "ESMTP"
        };
        Reply::new(
            220,
            None,
            format!("{} {proto} ringmail ready", self.cfg.hostname),
        )
        .encode(out, false);
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True while a message body is being received (the I/O layer uses the longer data
    /// timeout then).
    pub fn in_data(&self) -> bool {
        matches!(self.state, State::Data { .. } | State::Chunk { .. })
    }

    /// Whether an authentication failed since the last call: the I/O layer counts it and
    /// delays the reply, whatever the mechanism.
    pub fn take_auth_failure(&mut self) -> bool {
        std::mem::take(&mut self.auth_failed)
    }

    pub fn authenticated_user(&self) -> Option<&str> {
        self.auth_user.as_deref()
    }

    pub fn input(&mut self, data: &[u8]) {
        self.input.push(data);
    }

    /// Bytes received but not yet processed (bounded by the session's limits).
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Bytes of the message being received so far.
    pub fn message_len(&self) -> usize {
        self.message.len()
    }

    /// How many messages began to arrive so far (a new count: a new message's deadline).
    pub fn messages_started(&self) -> u64 {
        self.messages_started
    }

    /// Whether a message is being received: inside DATA, or between the chunks of a BDAT
    /// transaction (the commands in between belong to the message's time).
    pub fn receiving_message(&self) -> bool {
        self.in_data() || self.bdat_active
    }

    /// How many bytes of message the session may hold (the server's memory budget for it).
    /// A message that outgrows it is dropped and answered with a temporary error at its end.
    pub fn set_allowance(&mut self, bytes: u64) {
        self.allowance = bytes;
    }

    pub fn timeout(&mut self, out: &mut Vec<u8>) {
        self.reply(out, r::timeout(&self.cfg.hostname));
        self.closed = true;
    }

    fn reply(&self, out: &mut Vec<u8>, reply: Reply) {
        reply.encode(out, self.esmtp);
    }

    fn error(&mut self, out: &mut Vec<u8>, reply: Reply) {
        self.reply(out, reply);
        self.errors += 1;
        if self.errors >= self.cfg.max_errors {
            self.reply(out, r::too_many_errors());
            self.closed = true;
        }
    }

    /// Takes one line (without its line ending) from the input; `None` if incomplete.
    /// Overlong lines are answered with 500 and skipped up to their end.
    fn take_line(&mut self, out: &mut Vec<u8>) -> Option<Vec<u8>> {
        loop {
            match crate::lines::next_line(&mut self.input, &mut self.skip_line, self.cfg.max_line) {
                crate::lines::Line::Line(l) => return Some(l),
                crate::lines::Line::TooLong => {
                    self.error(out, r::line_too_long());
                    if self.closed {
                        return None;
                    }
                }
                crate::lines::Line::Pending => return None,
            }
        }
    }

    /// Processes buffered input until an event must be answered or more input is needed.
    pub fn poll(&mut self, out: &mut Vec<u8>) -> Option<Event> {
        while !self.closed {
            match &self.state {
                State::Wait(_) => return None,
                State::Command => {
                    let line = self.take_line(out)?;
                    if let Some(ev) = self.command(&line, out) {
                        return Some(ev);
                    }
                }
                State::Data { .. } => {
                    if let Some(ev) = self.data(out) {
                        return Some(ev);
                    }
                    if matches!(self.state, State::Data { .. }) {
                        return None;
                    }
                }
                State::Chunk { .. } => {
                    if let Some(ev) = self.chunk(out) {
                        return Some(ev);
                    }
                    if matches!(self.state, State::Chunk { .. }) {
                        return None;
                    }
                }
                State::AuthLoginUser
                | State::AuthLoginPassword { .. }
                | State::AuthPlainResponse
                | State::ScramClientFirst
                | State::ScramClientFinal
                | State::ScramDone { .. } => {
                    let line = self.take_line(out)?;
                    if let Some(ev) = self.auth_continue(&line, out) {
                        return Some(ev);
                    }
                }
            }
        }
        None
    }

    fn command(&mut self, line: &[u8], out: &mut Vec<u8>) -> Option<Event> {
        let cmd = match command::parse(line) {
            Ok(c) => c,
            Err(reply) => {
                self.error(out, reply);
                return None;
            }
        };
        let lmtp = self.cfg.mode == Mode::Lmtp;
        match cmd {
            Command::Ehlo(h) if !lmtp => self.hello_extended(h, out),
            Command::Lhlo(h) if lmtp => self.hello_extended(h, out),
            Command::Helo(h) if !lmtp => {
                self.reset_transaction();
                self.greeted = Some(h);
                self.esmtp = false;
                self.reply(out, Reply::new(250, None, self.cfg.hostname.clone()));
            }
            Command::Ehlo(_) | Command::Helo(_) | Command::Lhlo(_) => {
                let want = if lmtp { "LHLO" } else { "EHLO or HELO" };
                self.error(
                    out,
                    Reply::new(500, Some((5, 5, 1)), format!("this service expects {want}")),
                );
            }
            Command::Noop => self.reply(out, r::ok()),
            Command::Help => self.reply(out, Reply::new(214, Some((2, 0, 0)), "see RFC 5321")),
            Command::Quit => {
                let r = r::bye(&self.cfg.hostname);
                self.reply(out, r);
                self.closed = true;
            }
            Command::Rset => {
                self.reset_transaction();
                self.reply(out, r::ok());
            }
            Command::Vrfy(addr) => {
                if !self.cfg.vrfy {
                    self.reply(out, r::vrfy_disabled());
                } else {
                    let address = addr.trim_matches(|c| c == '<' || c == '>').to_string();
                    self.state = State::Wait(Waiting::Rcpt {
                        to: address.clone(),
                        params: vec![],
                        vrfy: true,
                    });
                    return Some(Event::CheckRecipient {
                        address,
                        vrfy: true,
                    });
                }
            }
            Command::StartTls => {
                if self.cfg.tls || !self.cfg.starttls {
                    self.error(out, r::not_implemented("STARTTLS"));
                } else {
                    self.reply(out, r::ready_tls());
                    self.state = State::Wait(Waiting::StartTls);
                    return Some(Event::StartTls);
                }
            }
            Command::Auth { mechanism, initial } => {
                return self.auth_start(&mechanism, initial, out)
            }
            Command::Mail { from, params } => self.mail(from, params, out),
            Command::Rcpt { to, params } => {
                let Some(env) = &self.envelope else {
                    self.error(out, r::bad_sequence("need MAIL before RCPT"));
                    return None;
                };
                if env.rcpts.len() >= self.cfg.max_recipients {
                    self.reply(out, r::too_many_recipients());
                    return None;
                }
                for (k, _) in &params {
                    if !matches!(k.as_str(), "NOTIFY" | "ORCPT") {
                        self.error(out, r::param_not_supported(k));
                        return None;
                    }
                }
                self.state = State::Wait(Waiting::Rcpt {
                    to: to.clone(),
                    params,
                    vrfy: false,
                });
                return Some(Event::CheckRecipient {
                    address: to,
                    vrfy: false,
                });
            }
            Command::Data => match &self.envelope {
                None => self.error(out, r::bad_sequence("need MAIL before DATA")),
                Some(e) if e.rcpts.is_empty() => {
                    self.reply(out, Reply::new(554, Some((5, 5, 1)), "no valid recipients"))
                }
                Some(_) if self.bdat_active => self.error(out, r::bad_sequence("DATA after BDAT")),
                Some(_) if self.binarymime => {
                    self.error(out, r::bad_sequence("BODY=BINARYMIME requires BDAT"))
                }
                Some(_) => {
                    self.reply(out, r::start_data());
                    self.message.clear();
                    self.too_big = false;
                    self.messages_started += 1;
                    self.state = State::Data { line_start: true };
                }
            },
            Command::Burl { url, last } => {
                let refuse = match (&self.envelope, &self.auth_user) {
                    _ if self.cfg.mode != Mode::Submission => {
                        Some(Reply::new(502, Some((5, 5, 1)), "BURL is for submission"))
                    }
                    (_, None) => Some(r::bad_sequence("authenticate before BURL")),
                    (None, _) => Some(r::bad_sequence("need MAIL before BURL")),
                    (Some(e), _) if e.rcpts.is_empty() => Some(Reply::new(
                        554,
                        Some((5, 5, 0)),
                        "no recipients have been specified",
                    )),
                    _ => None,
                };
                if let Some(reply) = refuse {
                    self.error(out, reply);
                    return None;
                }
                if !self.bdat_active {
                    self.message.clear();
                    self.too_big = false;
                    self.bdat_active = true;
                    self.messages_started += 1;
                }
                let user = self.auth_user.clone().unwrap_or_default();
                self.state = State::Wait(Waiting::Burl { last });
                return Some(Event::FetchUrl { url, user });
            }
            Command::Bdat { size, last } => {
                // The chunk follows the command at once, so it must be consumed even when the
                // command is refused.
                let refuse = match &self.envelope {
                    None => Some(r::bad_sequence("need MAIL before BDAT")),
                    Some(e) if e.rcpts.is_empty() => {
                        Some(Reply::new(554, Some((5, 5, 1)), "no valid recipients"))
                    }
                    _ => None,
                };
                if !self.bdat_active {
                    self.message.clear();
                    self.too_big = false;
                    self.bdat_active = true;
                    self.messages_started += 1;
                }
                if let Some(reply) = refuse {
                    self.too_big = true;
                    self.state = State::Chunk {
                        remaining: size,
                        last,
                    };
                    self.error(out, reply);
                    self.bdat_active = false;
                    return None;
                }
                self.state = State::Chunk {
                    remaining: size,
                    last,
                };
            }
        }
        None
    }

    fn hello_extended(&mut self, helo: String, out: &mut Vec<u8>) {
        self.reset_transaction();
        self.greeted = Some(helo);
        self.esmtp = true;
        let r = self.ehlo_reply();
        self.reply(out, r);
    }

    fn ehlo_reply(&self) -> Reply {
        let mut lines = vec![format!("{} greets you", self.cfg.hostname)];
        lines.push("PIPELINING".into());
        lines.push(format!("SIZE {}", self.cfg.max_message_size));
        lines.push("8BITMIME".into());
        lines.push("SMTPUTF8".into());
        lines.push("CHUNKING".into());
        lines.push("BINARYMIME".into());
        if self.cfg.mode == Mode::Submission {
            // URLAUTH URLs of this server's IMAP (RFC 4468 section 3).
            lines.push("BURL imap".into());
        }
        lines.push("ENHANCEDSTATUSCODES".into());
        lines.push("DSN".into());
        if self.cfg.starttls && !self.cfg.tls {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN SCRAM-SHA-256".into());
        }
        Reply::multi(250, lines)
    }

    fn auth_offered(&self) -> bool {
        self.cfg.mode == Mode::Submission && (self.cfg.tls || self.cfg.danger_auth_without_tls)
    }

    fn mail(&mut self, from: String, params: Vec<(String, Option<String>)>, out: &mut Vec<u8>) {
        if self.greeted.is_none() {
            return self.error(out, r::bad_sequence("say hello first"));
        }
        if self.envelope.is_some() {
            return self.error(out, r::bad_sequence("nested MAIL command"));
        }
        if self.cfg.mode == Mode::Submission {
            if self.auth_user.is_none() {
                return self.error(out, r::auth_required());
            }
            if !self
                .allowed_senders
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&from))
            {
                return self.error(out, r::sender_not_owned());
            }
        }
        let mut binarymime = false;
        for (k, v) in &params {
            match (k.as_str(), v.as_deref()) {
                ("SIZE", Some(n)) => match n.parse::<u64>() {
                    Ok(n) if n > self.cfg.max_message_size => {
                        let r = r::too_big(self.cfg.max_message_size);
                        return self.reply(out, r);
                    }
                    Ok(_) => {}
                    Err(_) => return self.error(out, r::syntax("SIZE=number")),
                },
                ("BODY", Some(b))
                    if b.eq_ignore_ascii_case("7BIT") || b.eq_ignore_ascii_case("8BITMIME") => {}
                ("BODY", Some(b)) if b.eq_ignore_ascii_case("BINARYMIME") => binarymime = true,
                ("SMTPUTF8", None) => {}
                ("RET", Some(v))
                    if v.eq_ignore_ascii_case("FULL") || v.eq_ignore_ascii_case("HDRS") => {}
                ("ENVID", Some(_)) | ("AUTH", Some(_)) => {}
                (k, _) => return self.error(out, r::param_not_supported(k)),
            }
        }
        self.binarymime = binarymime;
        self.envelope = Some(Envelope {
            helo: self.greeted.clone().unwrap_or_default(),
            from,
            mail_params: params,
            tls: self.cfg.tls,
            auth: self.auth_user.clone(),
            esmtp: self.esmtp,
            ..Envelope::default()
        });
        self.reply(out, r::sender_ok());
    }

    fn reset_transaction(&mut self) {
        self.envelope = None;
        self.message = Vec::new();
        self.too_big = false;
        self.over_budget = false;
        self.bdat_active = false;
        self.binarymime = false;
    }

    /// Answers a `CheckRecipient` event.
    pub fn rcpt_result(&mut self, result: Result<(), Reply>, out: &mut Vec<u8>) {
        let State::Wait(Waiting::Rcpt { to, params, vrfy }) =
            std::mem::replace(&mut self.state, State::Command)
        else {
            return;
        };
        match (result, vrfy) {
            (Ok(()), true) => self.reply(out, Reply::new(250, Some((2, 1, 5)), format!("<{to}>"))),
            (Ok(()), false) => {
                if let Some(env) = &mut self.envelope {
                    env.rcpts.push(to);
                    env.rcpt_params.push(params);
                }
                self.reply(out, r::rcpt_ok());
            }
            (Err(reply), _) => self.reply(out, reply),
        }
    }

    fn data(&mut self, out: &mut Vec<u8>) -> Option<Event> {
        let State::Data { mut line_start } = self.state else {
            return None;
        };
        let (mut sink, input) = self.sink_and_input();
        let p = super::data::unstuff(input.bytes(), &mut line_start, |b| sink.append(b));
        self.input.consume(p.consumed);
        if p.ended {
            self.state = State::Command;
            return self.finish_message(out);
        }
        self.state = State::Data { line_start };
        None
    }

    /// Where message bytes go now, and the input they may come from.
    fn sink_and_input(&mut self) -> (BodySink<'_>, &crate::lines::Input) {
        let sink = BodySink {
            message: &mut self.message,
            too_big: &mut self.too_big,
            over_budget: &mut self.over_budget,
            max: self.cfg.max_message_size,
            allowance: self.allowance,
        };
        (sink, &self.input)
    }

    fn chunk(&mut self, out: &mut Vec<u8>) -> Option<Event> {
        let State::Chunk { remaining, last } = self.state else {
            return None;
        };
        let n = (remaining as usize).min(self.input.len());
        let (mut sink, input) = self.sink_and_input();
        sink.append(&input.bytes()[..n]);
        self.input.consume(n);
        let remaining = remaining - n as u64;
        if remaining > 0 {
            self.state = State::Chunk { remaining, last };
            return None;
        }
        self.state = State::Command;
        if !self.bdat_active {
            // A refused BDAT: its bytes are consumed, the refusal was already sent.
            return None;
        }
        if !last {
            if let Some(r) = self.dropped_reply() {
                self.reply(out, r);
                self.reset_transaction();
            } else {
                let n = self.message.len();
                self.reply(
                    out,
                    Reply::new(250, Some((2, 0, 0)), format!("{n} octets received")),
                );
            }
            return None;
        }
        self.finish_message(out)
    }

    /// Answers a `FetchUrl` event: the URL's octets join the message as a chunk would (with
    /// LAST, the message is delivered next); a URL that could not be resolved fails the
    /// whole transaction (RFC 4468 section 3).
    pub fn burl_result(&mut self, data: Result<Vec<u8>, Reply>, out: &mut Vec<u8>) {
        let State::Wait(Waiting::Burl { last }) = self.state else {
            return;
        };
        match data {
            Ok(bytes) => {
                self.sink_and_input().0.append(&bytes);
                // An empty chunk: `poll` answers it, or delivers with LAST.
                self.state = State::Chunk { remaining: 0, last };
            }
            Err(reply) => {
                self.state = State::Command;
                self.reply(out, reply);
                self.reset_transaction();
            }
        }
    }

    /// Why the message being received was dropped, as the reply to its end.
    fn dropped_reply(&self) -> Option<Reply> {
        if self.too_big {
            Some(r::too_big(self.cfg.max_message_size))
        } else if self.over_budget {
            Some(r::insufficient_storage())
        } else {
            None
        }
    }

    fn finish_message(&mut self, out: &mut Vec<u8>) -> Option<Event> {
        if let Some(r) = self.dropped_reply() {
            self.reply(out, r);
            self.reset_transaction();
            return None;
        }
        let envelope = self.envelope.clone().unwrap_or_default();
        let message = std::mem::take(&mut self.message);
        self.state = State::Wait(Waiting::Deliver);
        Some(Event::Deliver { envelope, message })
    }

    /// Answers a `Deliver` event: one result per recipient, in envelope order; `Ok` holds
    /// an id for the reply text.
    pub fn deliver_result(&mut self, results: Vec<Result<String, Reply>>, out: &mut Vec<u8>) {
        if !matches!(self.state, State::Wait(Waiting::Deliver)) {
            return;
        }
        self.state = State::Command;
        if self.cfg.mode == Mode::Lmtp {
            // RFC 2033 section 4.2: one reply per accepted recipient, in order.
            let rcpts = self
                .envelope
                .as_ref()
                .map(|e| e.rcpts.clone())
                .unwrap_or_default();
            for (i, _) in rcpts.iter().enumerate() {
                match results.get(i) {
                    Some(Ok(id)) => self.reply(out, r::queued(id)),
                    Some(Err(reply)) => self.reply(out, reply.clone()),
                    None => self.reply(out, r::local_error()),
                }
            }
        } else if let Some(Err(reply)) = results.iter().find(|r| r.is_err()) {
            // One reply for all recipients: if any copy failed, the client must retry.
            let all_failed = results.iter().all(|r| r.is_err());
            self.reply(
                out,
                if all_failed {
                    reply.clone()
                } else {
                    r::local_error()
                },
            );
        } else {
            let id = results
                .first()
                .and_then(|r| r.as_ref().ok())
                .cloned()
                .unwrap_or_default();
            self.reply(out, r::queued(&id));
        }
        self.reset_transaction();
    }

    fn auth_start(
        &mut self,
        mechanism: &str,
        initial: Option<String>,
        out: &mut Vec<u8>,
    ) -> Option<Event> {
        if self.cfg.mode != Mode::Submission {
            self.error(out, r::not_implemented("AUTH"));
            return None;
        }
        if !self.auth_offered() {
            self.error(out, r::tls_required());
            return None;
        }
        if self.greeted.is_none() || !self.esmtp {
            self.error(out, r::bad_sequence("send EHLO first"));
            return None;
        }
        if self.auth_user.is_some() {
            self.error(out, r::bad_sequence("already authenticated"));
            return None;
        }
        if self.envelope.is_some() {
            self.error(out, r::bad_sequence("AUTH during a mail transaction"));
            return None;
        }
        match mechanism {
            "PLAIN" => match initial {
                Some(resp) => self.auth_plain(&resp, out),
                None => {
                    self.reply(out, Reply::new(334, None, ""));
                    self.state = State::AuthPlainResponse;
                    None
                }
            },
            "LOGIN" => match initial {
                Some(user) => self.login_user(&user, out),
                None => {
                    self.reply(out, Reply::new(334, None, "VXNlcm5hbWU6"));
                    self.state = State::AuthLoginUser;
                    None
                }
            },
            "SCRAM-SHA-256" => match initial {
                Some(first) => self.scram_first(&first, out),
                None => {
                    self.reply(out, Reply::new(334, None, ""));
                    self.state = State::ScramClientFirst;
                    None
                }
            },
            _ => {
                self.error(
                    out,
                    Reply::new(
                        504,
                        Some((5, 5, 4)),
                        "unrecognized authentication mechanism",
                    ),
                );
                None
            }
        }
    }

    /// AUTH LOGIN got the user name: ask for the password ("Password:").
    fn login_user(&mut self, b64: &str, out: &mut Vec<u8>) -> Option<Event> {
        match decode_b64(b64) {
            Some(user) => {
                self.reply(out, Reply::new(334, None, "UGFzc3dvcmQ6"));
                self.state = State::AuthLoginPassword { user };
            }
            None => self.error(out, r::bad_base64()),
        }
        None
    }

    fn scram_first(&mut self, b64: &str, out: &mut Vec<u8>) -> Option<Event> {
        match ScramExchange::start(b64) {
            Ok((ex, user)) => {
                self.scram = Some(ex);
                self.state = State::Wait(Waiting::Scram);
                Some(Event::ScramLookup { user })
            }
            Err(StartError::BadBase64) => {
                self.error(out, r::bad_base64());
                None
            }
            Err(StartError::Invalid(e)) => {
                self.error(out, Reply::new(501, Some((5, 5, 2)), e.to_string()));
                None
            }
        }
    }

    /// Answers a `ScramLookup` event: the user's keys and sender addresses (`None` for an
    /// unknown user, who then fails at the proof), a fresh server nonce, and a salt to show
    /// unknown users.
    pub fn scram_credentials(
        &mut self,
        found: Option<(crate::sasl::scram::Credentials, Vec<String>)>,
        nonce: &str,
        fake_salt: &[u8],
        out: &mut Vec<u8>,
    ) {
        if !matches!(self.state, State::Wait(Waiting::Scram)) {
            return;
        }
        let Some(ex) = self.scram.as_mut() else {
            return;
        };
        let challenge = ex.challenge(found, nonce, fake_salt);
        self.reply(out, Reply::new(334, None, challenge));
        self.state = State::ScramClientFinal;
    }

    fn auth_continue(&mut self, line: &[u8], out: &mut Vec<u8>) -> Option<Event> {
        let state = std::mem::replace(&mut self.state, State::Command);
        let text = String::from_utf8_lossy(line).trim().to_string();
        if text == "*" {
            self.error(out, r::auth_cancelled());
            return None;
        }
        match state {
            State::ScramClientFirst => self.scram_first(&text, out),
            State::ScramClientFinal => {
                match self.scram.take()?.finish(&text) {
                    Finish::Success {
                        server_final,
                        senders,
                    } => {
                        self.reply(out, Reply::new(334, None, server_final));
                        self.state = State::ScramDone { senders };
                    }
                    Finish::BadBase64 => self.error(out, r::bad_base64()),
                    Finish::Failed => {
                        self.state = State::Wait(Waiting::Auth);
                        self.auth_result(None, out);
                    }
                }
                None
            }
            State::ScramDone { senders } => {
                self.state = State::Wait(Waiting::Auth);
                self.auth_result(Some(senders), out);
                None
            }
            State::AuthPlainResponse => self.auth_plain(&text, out),
            State::AuthLoginUser => self.login_user(&text, out),
            State::AuthLoginPassword { user } => match decode_b64(&text) {
                Some(password) => {
                    self.state = State::Wait(Waiting::Auth);
                    Some(Event::Authenticate {
                        user,
                        password: Secret(password),
                        mechanism: "LOGIN",
                    })
                }
                None => {
                    self.error(out, r::bad_base64());
                    None
                }
            },
            _ => None,
        }
    }

    /// RFC 4616: `[authzid] NUL authcid NUL passwd`.
    fn auth_plain(&mut self, b64: &str, out: &mut Vec<u8>) -> Option<Event> {
        let Some(raw) = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()
        else {
            self.error(out, r::bad_base64());
            return None;
        };
        let parts: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
        let (authz, user, pass) = match parts.as_slice() {
            [a, u, p] => (*a, *u, *p),
            _ => {
                self.error(
                    out,
                    r::syntax("PLAIN response must be authzid NUL user NUL password"),
                );
                return None;
            }
        };
        let (Ok(user), Ok(pass), Ok(authz)) = (
            std::str::from_utf8(user),
            std::str::from_utf8(pass),
            std::str::from_utf8(authz),
        ) else {
            self.error(out, r::syntax("credentials are not UTF-8"));
            return None;
        };
        if !authz.is_empty() && authz != user {
            self.error(out, r::auth_failed());
            return None;
        }
        self.state = State::Wait(Waiting::Auth);
        Some(Event::Authenticate {
            user: user.to_string(),
            password: Secret(pass.to_string()),
            mechanism: "PLAIN",
        })
    }

    /// Answers an `Authenticate` event: on success, the addresses the user may send as.
    pub fn auth_result(&mut self, result: Option<Vec<String>>, out: &mut Vec<u8>) {
        if !matches!(self.state, State::Wait(Waiting::Auth)) {
            return;
        }
        self.state = State::Command;
        match result {
            Some(senders) => {
                self.auth_user = senders.first().cloned();
                self.allowed_senders = senders;
                self.reply(out, r::auth_ok());
            }
            None => {
                self.auth_failures += 1;
                self.auth_failed = true;
                self.reply(out, r::auth_failed());
                if self.auth_failures >= self.cfg.max_auth_failures {
                    self.reply(out, r::too_many_errors());
                    self.closed = true;
                }
            }
        }
    }

    /// Answers an `Authenticate` or `ScramLookup` event when logins from this client are
    /// refused for now (too many failures): a temporary error, and the credentials are not
    /// looked at (RFC 4954 section 6: 454 4.7.0).
    pub fn auth_unavailable(&mut self, out: &mut Vec<u8>) {
        if !matches!(
            self.state,
            State::Wait(Waiting::Auth) | State::Wait(Waiting::Scram)
        ) {
            return;
        }
        self.state = State::Command;
        self.scram = None;
        self.reply(out, r::auth_temporarily_unavailable());
    }

    /// TLS is up: forget everything from before (RFC 3207 section 4.2), including any
    /// plaintext the client sent after STARTTLS.
    pub fn tls_started(&mut self) {
        self.input.clear();
        self.cfg.tls = true;
        self.greeted = None;
        self.esmtp = false;
        self.auth_user = None;
        self.reset_transaction();
        self.state = State::Command;
    }
}

fn decode_b64(s: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()?;
    String::from_utf8(raw).ok()
}

/// Where message bytes go while DATA or BDAT arrives.
struct BodySink<'a> {
    message: &'a mut Vec<u8>,
    too_big: &'a mut bool,
    over_budget: &'a mut bool,
    max: u64,
    allowance: u64,
}

impl BodySink<'_> {
    /// Adds message bytes, unless the message is over the size limit or the memory the
    /// server can give it: then it is dropped whole, and the rest is only counted off (the
    /// reply comes at the end).
    fn append(&mut self, bytes: &[u8]) {
        if *self.too_big || *self.over_budget {
            return;
        }
        let len = self.message.len() as u64 + bytes.len() as u64;
        if len > self.max {
            *self.too_big = true;
            *self.message = Vec::new();
        } else if len > self.allowance {
            *self.over_budget = true;
            *self.message = Vec::new();
        } else {
            self.message.extend_from_slice(bytes);
        }
    }
}
