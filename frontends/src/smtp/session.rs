//! The SMTP/LMTP session state machine, sans I/O.
//!
//! ```text
//!            input bytes ──► Session::input
//!  Session::poll(out) ──► replies appended to `out`, or an Event the I/O layer must answer:
//!      CheckRecipient ─► rcpt_result      Login    ─► login_answer
//!      Deliver        ─► deliver_result   StartTls ─► tls_started
//!      FetchUrl       ─► burl_result
//!
//!  Greeting ─EHLO/HELO/LHLO─► Ready ─MAIL─► HaveSender ─RCPT─► HaveRecipients
//!      ─DATA─► ReadingData ─"."─► (Deliver) ─► Ready
//!      ─BDAT─► ReadingChunk ─LAST─► (Deliver) ─► Ready
//! ```
//!
//! Commands may be pipelined (RFC 2920): `poll` works through the buffered input in order
//! and stops only to wait for the answer to an event or for more input. The session never
//! touches sockets, clocks or storage.

use super::command::{self, Command};
use super::reply::{r, Reply};
use crate::lines::LineSession;
use crate::sasl::{Answer, Exchange, Malformed, Mechanism, Need, Step};

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
    /// Another node of the cluster forwards deliveries on this session: MAIL takes its
    /// delivery key (`XRINGMAIL-KEY=<hex>`, see `server/dedup.rs`).
    pub cluster_peer: bool,
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
            cluster_peer: false,
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
    /// A login needs a password checked or SCRAM keys found (see `sasl::exchange`);
    /// answer with `login_answer`.
    Login { need: Need, mechanism: Mechanism },
    /// Store the message; answer with `deliver_result`, one result per recipient.
    Deliver {
        envelope: Envelope,
        message: Vec<u8>,
    },
    /// `220` was written: flush it, start TLS, then call `tls_started`.
    StartTls,
    /// BURL (RFC 4468): resolve this URLAUTH URL for `user` (the authenticated submitter);
    /// answer with `burl_result`.
    FetchUrl { url: String, user: String },
    /// Cluster port: remember these copies of the delivery `key` as stored here (see
    /// `server/dedup.rs`); answer with `remembered`.
    Remember { key: String, addresses: Vec<String> },
}

#[derive(Debug)]
enum Waiting {
    Rcpt {
        to: String,
        params: Vec<(String, Option<String>)>,
        vrfy: bool,
    },
    Login,
    Deliver,
    Remember,
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
    /// A login exchange waits for the client's next line.
    Sasl,
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
    /// The login in progress (AUTH).
    sasl: Option<Exchange>,
    /// How the last login ended, until the I/O layer asks (it logs it, and delays the
    /// reply to a failure).
    login_outcome: Option<bool>,
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
            sasl: None,
            login_outcome: None,
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

    /// True while a message body is being received (the I/O layer uses the longer data
    /// timeout then).
    pub fn in_data(&self) -> bool {
        matches!(self.state, State::Data { .. } | State::Chunk { .. })
    }

    pub fn authenticated_user(&self) -> Option<&str> {
        self.auth_user.as_deref()
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
                State::Sasl => {
                    let line = self.take_line(out)?;
                    let Some(ex) = self.sasl.as_mut() else {
                        self.state = State::Command;
                        continue;
                    };
                    let step = ex.input(&line);
                    if let Some(ev) = self.sasl_step(step, out) {
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
            Command::XRemember { key, addresses } if self.cfg.cluster_peer => {
                self.state = State::Wait(Waiting::Remember);
                return Some(Event::Remember { key, addresses });
            }
            Command::XRemember { .. } => self.error(out, r::not_implemented("XREMEMBER")),
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
            lines.push(format!("AUTH {}", Mechanism::offered_names()));
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
                ("XRINGMAIL-KEY", Some(_)) if self.cfg.cluster_peer => {}
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
            // LMTP answers the end of a message once per accepted recipient (RFC 2033
            // section 4.2), refused or not: a client counts on as many replies.
            let n = match self.cfg.mode {
                Mode::Lmtp => self.envelope.as_ref().map_or(1, |e| e.rcpts.len().max(1)),
                _ => 1,
            };
            for _ in 0..n {
                self.reply(out, r.clone());
            }
            self.reset_transaction();
            return None;
        }
        let envelope = self.envelope.clone().unwrap_or_default();
        let message = std::mem::take(&mut self.message);
        self.state = State::Wait(Waiting::Deliver);
        Some(Event::Deliver { envelope, message })
    }

    /// Answers a `Remember` event.
    pub fn remembered(&mut self, out: &mut Vec<u8>) {
        if matches!(self.state, State::Wait(Waiting::Remember)) {
            self.state = State::Command;
            self.reply(out, r::ok());
        }
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
        let Some(mechanism) = Mechanism::from_name(mechanism) else {
            self.error(
                out,
                Reply::new(
                    504,
                    Some((5, 5, 4)),
                    "unrecognized authentication mechanism",
                ),
            );
            return None;
        };
        let (ex, step) = Exchange::start(mechanism, initial.as_deref());
        self.sasl = Some(ex);
        self.sasl_step(step, out)
    }

    /// Turns a step of the login exchange into SMTP (RFC 4954): challenges as 334, the
    /// outcome as 235, 535, 454 or a 501 for a malformed message.
    fn sasl_step(&mut self, step: Step, out: &mut Vec<u8>) -> Option<Event> {
        self.state = State::Command;
        if step.is_final() {
            self.sasl = None;
        }
        match step {
            Step::Challenge(c) => {
                self.reply(out, Reply::new(334, None, c));
                self.state = State::Sasl;
            }
            Step::Need(need) => {
                let mechanism = self.sasl.as_ref()?.mechanism();
                self.state = State::Wait(Waiting::Login);
                return Some(Event::Login { need, mechanism });
            }
            Step::Success { senders, .. } => {
                self.auth_user = senders.first().cloned();
                self.allowed_senders = senders;
                self.login_outcome = Some(true);
                self.reply(out, r::auth_ok());
            }
            Step::Failed { .. } => {
                self.auth_failures += 1;
                self.login_outcome = Some(false);
                self.reply(out, r::auth_failed());
                if self.auth_failures >= self.cfg.max_auth_failures {
                    self.reply(out, r::too_many_errors());
                    self.closed = true;
                }
            }
            // RFC 4954 section 6: 454 4.7.0; the credentials were not looked at.
            Step::Blocked => self.reply(out, r::auth_temporarily_unavailable()),
            Step::Malformed(Malformed::Base64) => self.error(out, r::bad_base64()),
            Step::Malformed(why) => self.error(out, Reply::new(501, Some((5, 5, 2)), why.text())),
            Step::Cancelled => self.error(out, r::auth_cancelled()),
        }
        None
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
        self.reply(out, r::timeout(&self.cfg.hostname));
        self.closed = true;
    }

    /// TLS is up: forget everything from before (RFC 3207 section 4.2), including any
    /// plaintext the client sent after STARTTLS.
    fn tls_started(&mut self) {
        self.input.clear();
        self.cfg.tls = true;
        self.greeted = None;
        self.esmtp = false;
        self.auth_user = None;
        self.reset_transaction();
        self.state = State::Command;
    }

    /// Answers a `Login` event.
    fn login_answer(&mut self, answer: Answer, out: &mut Vec<u8>) {
        if !matches!(self.state, State::Wait(Waiting::Login)) {
            return;
        }
        let Some(ex) = self.sasl.as_mut() else {
            self.state = State::Command;
            return;
        };
        let step = ex.answer(answer);
        // An answer leads to a challenge or an outcome, never to another lookup.
        let _ = self.sasl_step(step, out);
    }

    /// How the last login ended (logged in, or failed), once, whatever the mechanism: the
    /// I/O layer logs it, and counts and delays a failure.
    fn take_login_outcome(&mut self) -> Option<bool> {
        self.login_outcome.take()
    }

    fn stopping_reply(&self) -> &'static [u8] {
        b"421 4.3.2 server shutting down\r\n"
    }
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
