//! The not-authenticated state (RFC 9051 section 3.1), sans I/O: CAPABILITY, NOOP, ID,
//! LOGOUT, STARTTLS, and LOGIN or AUTHENTICATE through the login exchange every protocol
//! shares (`sasl::exchange`). The connection asks it what to do with each command; it
//! answers with responses in its buffer and, where I/O or a lookup is needed, an event.

use super::state::{self, State};
use crate::imap::reply::{Code, Failure};
use crate::imap::Command;
use crate::sasl::{Answer, Exchange, Mechanism, Need, Step};

/// What the not-authenticated state needs to know of the server and the connection.
#[derive(Clone, Debug)]
pub struct LoginConfig {
    /// The connection is TLS (implicit, or after STARTTLS).
    pub tls: bool,
    /// STARTTLS can be offered (a certificate is configured).
    pub starttls: bool,
    /// Logins without TLS are allowed (tests and trusted networks only).
    pub plaintext: bool,
    /// Failed logins before the connection is closed.
    pub max_failures: u32,
    /// The CAPABILITY list after login, for the tagged OK of a login.
    pub capabilities: String,
}

/// What the connection must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The OK to STARTTLS is written: send it, start TLS, then call `tls_started`.
    StartTls,
    /// Look this up for the login exchange and answer with `answer`.
    Need(Need, Mechanism),
    /// Logged in as this user: their addresses, the account's first. The tagged OK is
    /// written; the session after login takes over.
    LoggedIn(Vec<String>),
    /// The connection ends (LOGOUT, too many failed logins); the BYE is written.
    Close,
}

/// A login exchange waiting for the client's next line or the server's lookup.
struct Pending {
    tag: String,
    exchange: Exchange,
}

pub struct Login {
    cfg: LoginConfig,
    out: Vec<u8>,
    failures: u32,
    pending: Option<Pending>,
    /// How the last login ended, until the connection asks (it logs it).
    outcome: Option<bool>,
}

impl Login {
    pub fn new(cfg: LoginConfig) -> Self {
        Login {
            cfg,
            out: Vec::new(),
            failures: 0,
            pending: None,
            outcome: None,
        }
    }

    /// The greeting's capabilities, and CAPABILITY's, before login.
    pub fn capabilities(&self) -> String {
        let mut c = String::from("IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE");
        if !self.cfg.tls && self.cfg.starttls {
            c.push_str(" STARTTLS");
        }
        if self.may_login() {
            for m in crate::sasl::exchange::OFFERED {
                c.push_str(" AUTH=");
                c.push_str(m.name());
            }
        } else {
            c.push_str(" LOGINDISABLED");
        }
        c
    }

    fn may_login(&self) -> bool {
        self.cfg.tls || self.cfg.plaintext
    }

    /// The responses written so far, to send.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    fn line(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn failed(&mut self, tag: &str, f: &Failure) {
        f.write(tag, &mut self.out);
    }

    /// Whether a login exchange waits for the client's next line (not a command).
    pub fn in_exchange(&self) -> bool {
        self.pending.is_some()
    }

    /// How the last login ended (logged in, or failed), once: the connection logs it, and
    /// counts and delays a failure.
    pub fn take_login_outcome(&mut self) -> Option<bool> {
        self.outcome.take()
    }

    /// TLS is up: logins may be allowed now; STARTTLS is not offered again.
    pub fn tls_started(&mut self) {
        self.cfg.tls = true;
    }

    /// One command of the not-authenticated state.
    pub fn command(&mut self, tag: &str, cmd: Command) -> Option<Event> {
        match cmd {
            Command::Capability => {
                let c = self.capabilities();
                self.line(&format!("* CAPABILITY {c}"));
                self.line(&format!("{tag} OK CAPABILITY completed"));
            }
            Command::Noop => self.line(&format!("{tag} OK NOOP completed")),
            Command::Logout => {
                self.line("* BYE logging out");
                self.line(&format!("{tag} OK LOGOUT completed"));
                return Some(Event::Close);
            }
            Command::Id(_) => {
                self.line("* ID (\"name\" \"ringmail\")");
                self.line(&format!("{tag} OK ID completed"));
            }
            Command::StartTls if self.cfg.tls || !self.cfg.starttls => {
                self.failed(tag, &Failure::bad("STARTTLS not available"));
            }
            Command::StartTls => {
                self.line(&format!("{tag} OK begin TLS negotiation now"));
                return Some(Event::StartTls);
            }
            Command::Login { .. } | Command::Authenticate { .. } if !self.may_login() => {
                self.failed(
                    tag,
                    &Failure::code(
                        Code::PrivacyRequired,
                        "use STARTTLS or the implicit-TLS port first",
                    ),
                );
            }
            Command::Login { user, password } => {
                let (exchange, step) = Exchange::password("LOGIN", user, password);
                return self.begin(tag, exchange, step);
            }
            Command::Authenticate { mechanism, initial } => {
                let Some(mechanism) = Mechanism::from_name(&mechanism) else {
                    self.failed(tag, &Failure::code(Code::Cannot, "unsupported mechanism"));
                    return None;
                };
                let (exchange, step) = Exchange::start(mechanism, initial.as_deref());
                return self.begin(tag, exchange, step);
            }
            other => {
                // Every command this state admits is answered above.
                let refused = state::check(&other, State::NotAuthenticated)
                    .err()
                    .unwrap_or_else(|| Failure::bad("not valid in this state"));
                self.failed(tag, &refused);
            }
        }
        None
    }

    fn begin(&mut self, tag: &str, exchange: Exchange, step: Step) -> Option<Event> {
        self.pending = Some(Pending {
            tag: tag.to_string(),
            exchange,
        });
        self.step(step)
    }

    /// The client's line during a login exchange (`*` cancels it).
    pub fn exchange_line(&mut self, line: &[u8]) -> Option<Event> {
        let step = self.pending.as_mut()?.exchange.input(line);
        self.step(step)
    }

    /// The server's answer to an [`Event::Need`].
    pub fn answer(&mut self, answer: Answer) -> Option<Event> {
        let step = self.pending.as_mut()?.exchange.answer(answer);
        self.step(step)
    }

    /// Turns a step of the login exchange into IMAP: challenges as `+`, the outcome as
    /// the tagged reply.
    fn step(&mut self, step: Step) -> Option<Event> {
        let p = self.pending.as_ref()?;
        let (tag, mechanism) = (p.tag.clone(), p.exchange.mechanism());
        if step.is_final() {
            self.pending = None;
        }
        match step {
            Step::Challenge(c) => self.line(&format!("+ {c}")),
            Step::Need(need) => return Some(Event::Need(need, mechanism)),
            Step::Success { senders, .. } => {
                self.outcome = Some(true);
                let c = self.cfg.capabilities.clone();
                self.line(&format!("{tag} OK [CAPABILITY {c}] logged in"));
                return Some(Event::LoggedIn(senders));
            }
            Step::Failed { .. } => {
                self.outcome = Some(false);
                self.failures += 1;
                self.failed(
                    &tag,
                    &Failure::code(Code::AuthenticationFailed, "invalid credentials"),
                );
                if self.failures >= self.cfg.max_failures {
                    self.line("* BYE too many failed logins");
                    return Some(Event::Close);
                }
            }
            Step::Blocked => self.failed(
                &tag,
                &Failure::code(Code::Unavailable, "too many failed logins, try again later"),
            ),
            Step::Malformed(why) => self.failed(&tag, &Failure::bad(why.text())),
            Step::Cancelled => self.failed(&tag, &Failure::bad("authentication cancelled")),
        }
        None
    }
}
