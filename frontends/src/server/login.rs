//! The server's side of every login (SMTP AUTH, IMAP LOGIN/AUTHENTICATE, POP3 USER/PASS
//! and AUTH): it answers the exchange's lookups through the failure throttle, and logs and
//! counts each outcome. The protocol sessions only carry the exchange (`sasl::exchange`).

use super::{LoginFrom, ShardServer};
use crate::sasl::{Answer, Mechanism, Need};

/// The logins of one connection.
pub struct Logins {
    pub from: LoginFrom,
    /// The login being checked (user, mechanism), for the log when its outcome is known.
    attempt: Option<(String, &'static str)>,
}

impl Logins {
    pub fn new(from: LoginFrom) -> Self {
        Logins {
            from,
            attempt: None,
        }
    }

    /// Looks up what the exchange needs, unless logins from this client or for this user
    /// are refused for now: then the credentials are not looked at.
    pub async fn answer(
        &mut self,
        server: &ShardServer,
        need: Need,
        mechanism: Mechanism,
    ) -> Answer {
        if server.login_blocked(&self.from, need.user()) {
            self.attempt = None;
            return Answer::Blocked;
        }
        self.attempt = Some((need.user().to_string(), mechanism.name()));
        match need {
            Need::Password { user, password } => {
                Answer::Password(server.check_password(user, password).await)
            }
            Need::ScramKeys { user } => {
                let (found, nonce, fake_salt) = server.scram_lookup(&user);
                Answer::ScramKeys {
                    found,
                    nonce,
                    fake_salt,
                }
            }
        }
    }

    /// The login being checked ended: it is logged, and a failure counts against the
    /// client and the user (and is answered late: see `ShardServer::login_result`).
    pub async fn ended(&mut self, server: &ShardServer, ok: bool) {
        if let Some((user, mechanism)) = self.attempt.take() {
            server.login_result(&self.from, mechanism, &user, ok).await;
        }
    }
}
