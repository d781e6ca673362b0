//! One login exchange, the same for SMTP AUTH, IMAP LOGIN/AUTHENTICATE and POP3
//! USER/PASS/AUTH: which mechanisms exist, what each client message means, when the
//! password or the SCRAM keys must be looked up, and how the exchange ends.
//!
//! The exchange is sans I/O and protocol-blind. A session feeds it the client's lines and
//! the server's answers, and turns each [`Step`] into its protocol's syntax: a challenge is
//! `334 …` in SMTP and `+ …` in IMAP and POP3; a malformed message is SMTP's 501, IMAP's
//! `BAD` and POP3's `-ERR`; only wrong credentials count as a failed login (a malformed
//! message tested no password).

use base64::Engine as _;

use super::scram::{Credentials, Finish, ServerExchange, StartError};
use super::Secret;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A way to log in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// SASL PLAIN (RFC 4616).
    Plain,
    /// The de facto SASL LOGIN (user name, then password, each base64).
    Login,
    /// SCRAM-SHA-256 (RFC 7677): the password never crosses the connection.
    ScramSha256,
    /// A protocol's own plaintext login: IMAP `LOGIN`, POP3 `USER`/`PASS`.
    Command(&'static str),
}

/// The SASL mechanisms every protocol offers, in the order they are listed.
pub const OFFERED: [Mechanism; 3] = [Mechanism::Plain, Mechanism::Login, Mechanism::ScramSha256];

impl Mechanism {
    /// A SASL mechanism by its name (case-insensitive, RFC 4422 section 3.1).
    pub fn from_name(name: &str) -> Option<Self> {
        OFFERED
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// The name for capability lists and the log.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::Command(c) => c,
        }
    }

    /// The offered SASL mechanisms' names, space-separated.
    pub fn offered_names() -> String {
        OFFERED.map(Mechanism::name).join(" ")
    }
}

/// What the server must look up before the exchange can go on.
#[derive(Debug, PartialEq, Eq)]
pub enum Need {
    /// Check this password; answer with [`Answer::Password`].
    Password { user: String, password: Secret },
    /// Find this user's SCRAM keys; answer with [`Answer::ScramKeys`].
    ScramKeys { user: String },
}

impl Need {
    pub fn user(&self) -> &str {
        match self {
            Need::Password { user, .. } | Need::ScramKeys { user } => user,
        }
    }
}

/// The server's answer to a [`Need`].
pub enum Answer {
    /// On success the addresses the user may send as, the account first; `None`: wrong.
    Password(Option<Vec<String>>),
    /// The user's keys and addresses (`None` for an unknown user, who then fails at the
    /// proof, as a known one with a wrong password does), a fresh server nonce, and the
    /// salt to show an unknown user.
    ScramKeys {
        found: Option<(Credentials, Vec<String>)>,
        nonce: String,
        fake_salt: Vec<u8>,
    },
    /// Logins from this client or for this user are refused for now (too many failures):
    /// the credentials were not looked at.
    Blocked,
}

/// Why a client's message is not one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Not base64 (SMTP has its own reply for it, RFC 4954 section 4).
    Base64,
    Message(&'static str),
}

impl Malformed {
    pub fn text(self) -> &'static str {
        match self {
            Malformed::Base64 => "invalid base64",
            Malformed::Message(why) => why,
        }
    }
}

/// What the session does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this challenge (base64, possibly empty) and feed the client's answer to
    /// [`Exchange::input`].
    Challenge(String),
    /// Look this up and feed the answer to [`Exchange::answer`].
    Need(Need),
    /// Logged in: the addresses the user may send as, the account first (never empty).
    Success { user: String, senders: Vec<String> },
    /// Wrong credentials: a failed login, counted.
    Failed { user: String },
    /// Logins are refused for now: a temporary error.
    Blocked,
    /// The client's message was not well formed: a protocol error, not a failed login.
    Malformed(Malformed),
    /// The client sent `*`.
    Cancelled,
}

impl Step {
    /// Whether the exchange is over after this step.
    pub fn is_final(&self) -> bool {
        !matches!(self, Step::Challenge(_) | Step::Need(_))
    }
}

enum Phase {
    PlainResponse,
    LoginUser,
    LoginPassword { user: String },
    ScramFirst,
    ScramKeys(ServerExchange),
    ScramFinal(ServerExchange),
    ScramDone { senders: Vec<String> },
    Checking,
    Done,
}

/// One login in progress.
pub struct Exchange {
    mechanism: Mechanism,
    user: String,
    phase: Phase,
}

impl Exchange {
    /// Starts a SASL exchange; `initial` is the initial response (SASL-IR, RFC 4959; SMTP
    /// AUTH's second argument), where `=` stands for an empty one.
    pub fn start(mechanism: Mechanism, initial: Option<&str>) -> (Self, Step) {
        let phase = match mechanism {
            Mechanism::Plain => Phase::PlainResponse,
            Mechanism::Login => Phase::LoginUser,
            Mechanism::ScramSha256 => Phase::ScramFirst,
            // A command login starts with its credentials: see `password`.
            Mechanism::Command(_) => Phase::Done,
        };
        let mut ex = Exchange {
            mechanism,
            user: String::new(),
            phase,
        };
        let step = match initial {
            Some(ir) => ex.respond(if ir == "=" { "" } else { ir }),
            None if mechanism == Mechanism::Login => Step::Challenge(B64.encode("Username:")),
            None => Step::Challenge(String::new()),
        };
        (ex, step)
    }

    /// A protocol's plaintext login command with its user and password.
    pub fn password(label: &'static str, user: String, password: Secret) -> (Self, Step) {
        let ex = Exchange {
            mechanism: Mechanism::Command(label),
            user: user.clone(),
            phase: Phase::Checking,
        };
        (ex, Step::Need(Need::Password { user, password }))
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The user the client named (empty until it did).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The client's answer to a challenge: one line, without its CRLF.
    pub fn input(&mut self, line: &[u8]) -> Step {
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text == "*" {
            self.phase = Phase::Done;
            return Step::Cancelled;
        }
        self.respond(text)
    }

    fn respond(&mut self, text: &str) -> Step {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::PlainResponse => {
                let Some(raw) = unb64(text) else {
                    return Step::Malformed(Malformed::Base64);
                };
                match super::plain::split(&raw) {
                    Ok((user, password)) => self.check(user, password),
                    Err(why) => Step::Malformed(Malformed::Message(why)),
                }
            }
            Phase::LoginUser => match unb64_text(text) {
                Some(user) => {
                    self.user = user.clone();
                    self.phase = Phase::LoginPassword { user };
                    Step::Challenge(B64.encode("Password:"))
                }
                None => Step::Malformed(Malformed::Base64),
            },
            Phase::LoginPassword { user } => match unb64_text(text) {
                Some(password) => self.check(user, Secret(password)),
                None => Step::Malformed(Malformed::Base64),
            },
            Phase::ScramFirst => match ServerExchange::start(text) {
                Ok((ex, user)) => {
                    self.user = user.clone();
                    self.phase = Phase::ScramKeys(ex);
                    Step::Need(Need::ScramKeys { user })
                }
                Err(StartError::BadBase64) => Step::Malformed(Malformed::Base64),
                Err(StartError::Invalid(_)) => {
                    Step::Malformed(Malformed::Message("invalid SCRAM client-first message"))
                }
            },
            Phase::ScramFinal(ex) => match ex.finish(text) {
                Finish::Success {
                    server_final,
                    senders,
                } => {
                    self.phase = Phase::ScramDone { senders };
                    Step::Challenge(server_final)
                }
                Finish::BadBase64 => Step::Malformed(Malformed::Base64),
                Finish::Failed => Step::Failed {
                    user: self.user.clone(),
                },
            },
            // The client's (empty) answer to the server's final message.
            Phase::ScramDone { senders } if !senders.is_empty() => Step::Success {
                user: self.user.clone(),
                senders,
            },
            Phase::ScramDone { .. } => Step::Failed {
                user: self.user.clone(),
            },
            Phase::ScramKeys(_) | Phase::Checking | Phase::Done => {
                Step::Malformed(Malformed::Message("no authentication exchange in progress"))
            }
        }
    }

    fn check(&mut self, user: String, password: Secret) -> Step {
        self.user = user.clone();
        self.phase = Phase::Checking;
        Step::Need(Need::Password { user, password })
    }

    /// The server's answer to the last [`Step::Need`].
    pub fn answer(&mut self, answer: Answer) -> Step {
        let user = self.user.clone();
        match (std::mem::replace(&mut self.phase, Phase::Done), answer) {
            (_, Answer::Blocked) => Step::Blocked,
            (Phase::Checking, Answer::Password(Some(senders))) if !senders.is_empty() => {
                Step::Success { user, senders }
            }
            (Phase::Checking, Answer::Password(_)) => Step::Failed { user },
            (
                Phase::ScramKeys(mut ex),
                Answer::ScramKeys {
                    found,
                    nonce,
                    fake_salt,
                },
            ) => {
                let challenge = ex.challenge(found, &nonce, &fake_salt);
                self.phase = Phase::ScramFinal(ex);
                Step::Challenge(challenge)
            }
            // An answer to a question not asked: the session is confused; fail closed.
            _ => Step::Failed { user },
        }
    }
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    B64.decode(s.trim()).ok()
}

fn unb64_text(s: &str) -> Option<String> {
    unb64(s).and_then(|b| String::from_utf8(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &[u8]) -> String {
        B64.encode(s)
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(Mechanism::from_name("plain"), Some(Mechanism::Plain));
        assert_eq!(
            Mechanism::from_name("SCRAM-SHA-256"),
            Some(Mechanism::ScramSha256)
        );
        assert_eq!(Mechanism::from_name("CRAM-MD5"), None);
        assert_eq!(Mechanism::offered_names(), "PLAIN LOGIN SCRAM-SHA-256");
    }

    #[test]
    fn plain_with_and_without_initial_response() {
        let (mut ex, step) = Exchange::start(Mechanism::Plain, Some(&b(b"\0bob\0pw")));
        assert_eq!(
            step,
            Step::Need(Need::Password {
                user: "bob".into(),
                password: Secret("pw".into())
            })
        );
        assert_eq!(
            ex.answer(Answer::Password(Some(vec!["bob@x".into()]))),
            Step::Success {
                user: "bob".into(),
                senders: vec!["bob@x".into()]
            }
        );
        let (mut ex, step) = Exchange::start(Mechanism::Plain, None);
        assert_eq!(step, Step::Challenge(String::new()));
        assert!(matches!(
            ex.input(b(b"\0bob\0pw").as_bytes()),
            Step::Need(_)
        ));
        assert_eq!(
            ex.answer(Answer::Password(None)),
            Step::Failed { user: "bob".into() }
        );
    }

    #[test]
    fn malformed_is_not_a_failed_login() {
        for bad in [
            "!!!",
            &b(b"bob\0pw"),
            &b(b"eve\0bob\0pw"),
            &b(b"\0bob\0\xff"),
        ] {
            let (_, step) = Exchange::start(Mechanism::Plain, Some(bad));
            assert!(matches!(step, Step::Malformed(_)), "{bad}: {step:?}");
        }
        // An empty initial response (`=`) is not a PLAIN message either.
        let (_, step) = Exchange::start(Mechanism::Plain, Some("="));
        assert!(matches!(step, Step::Malformed(_)));
        let (_, step) = Exchange::start(Mechanism::ScramSha256, Some("!!!"));
        assert_eq!(step, Step::Malformed(Malformed::Base64));
        let (_, step) = Exchange::start(Mechanism::ScramSha256, Some(&b(b"x,,n=bob")));
        assert!(matches!(step, Step::Malformed(_)));
    }

    #[test]
    fn login_asks_user_then_password() {
        let (mut ex, step) = Exchange::start(Mechanism::Login, None);
        assert_eq!(step, Step::Challenge(b(b"Username:")));
        assert_eq!(
            ex.input(b(b"bob").as_bytes()),
            Step::Challenge(b(b"Password:"))
        );
        assert!(matches!(
            ex.input(b(b"pw").as_bytes()),
            Step::Need(Need::Password { .. })
        ));
        let (mut ex, _) = Exchange::start(Mechanism::Login, Some(&b(b"bob")));
        assert_eq!(ex.input(b"*"), Step::Cancelled);
    }

    #[test]
    fn blocked_answer_ends_the_exchange() {
        let (mut ex, _) = Exchange::password("LOGIN", "bob".into(), Secret("pw".into()));
        assert_eq!(ex.answer(Answer::Blocked), Step::Blocked);
        assert!(Step::Blocked.is_final());
    }

    #[test]
    fn scram_round_trip_and_wrong_password() {
        let creds = Credentials::derive("pencil", b"salty", 4096);
        for (password, ok) in [("pencil", true), ("wrong", false)] {
            let first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
            let (mut ex, step) = Exchange::start(
                Mechanism::ScramSha256,
                Some(&b(format!("n,,{first_bare}").as_bytes())),
            );
            assert_eq!(
                step,
                Step::Need(Need::ScramKeys {
                    user: "user".into()
                })
            );
            let Step::Challenge(server_first) = ex.answer(Answer::ScramKeys {
                found: Some((creds.clone(), vec!["user@x".into()])),
                nonce: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
                fake_salt: vec![1; 16],
            }) else {
                panic!("no challenge")
            };
            let server_first = String::from_utf8(B64.decode(server_first).unwrap()).unwrap();
            let fin = crate::sasl::scram::client_final(password, first_bare, &server_first, "n,,");
            match ex.input(b(fin.as_bytes()).as_bytes()) {
                Step::Challenge(_) if ok => {
                    assert_eq!(
                        ex.input(b""),
                        Step::Success {
                            user: "user".into(),
                            senders: vec!["user@x".into()]
                        }
                    );
                }
                Step::Failed { user } if !ok => assert_eq!(user, "user"),
                other => panic!("{password}: {other:?}"),
            }
        }
    }
}
