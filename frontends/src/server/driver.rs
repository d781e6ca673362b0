//! The connection loop of the line protocols (SMTP/LMTP and POP3), once: a sans-I/O session
//! says what to write and which events to answer; this writes, waits for the client within
//! the session's deadline, and feeds what arrives. A protocol's own loop only answers its
//! events (`server/smtp.rs`, `server/pop3.rs`); STARTTLS and logins are answered here the
//! same way for every protocol.
//!
//! IMAP's framing (literals, COMPRESS) is its own (`server/imap.rs::Io`), over the same
//! connection, deadlines and logins.

use std::time::Duration;

use super::conn::{Conn, Patience, Read};
use super::login::Logins;
use super::{Live, ShardServer};
use crate::lines::LineSession;
use crate::sasl::{Mechanism, Need};

pub struct Driver {
    pub conn: Conn,
    /// What the session wrote and the client has not been sent yet.
    pub out: Vec<u8>,
    buf: Vec<u8>,
    pub logins: Logins,
    /// The time the unit the client is sending (a command, a message) may take.
    pub patience: Patience,
    pub command_timeout: Duration,
}

impl Driver {
    pub fn new(conn: Conn, logins: Logins, live: &Live, read_buffer: usize) -> Self {
        let limits = &live.cfg.limits;
        let command_timeout = Duration::from_secs(limits.command_timeout_secs);
        Driver {
            conn,
            out: Vec::with_capacity(4096),
            buf: vec![0u8; read_buffer],
            logins,
            patience: Patience::new(command_timeout, limits.min_data_rate),
            command_timeout,
        }
    }

    /// Sends what the session wrote. `false`: the connection is gone.
    pub async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let ok = self.conn.write_all(&self.out).await.is_ok();
        self.out.clear();
        ok
    }

    /// Answers a STARTTLS event: the session's go-ahead is sent, then the handshake.
    /// `false`: the connection is over.
    pub async fn start_tls(&mut self, live: &Live, session: &mut impl LineSession) -> bool {
        if !self.flush().await {
            return false;
        }
        let Some(acceptor) = &live.tls else {
            return false;
        };
        if self.conn.upgrade(acceptor).await.is_err() {
            return false;
        }
        self.logins.from.tls = true;
        session.tls_started();
        true
    }

    /// Answers a login event (see `server/login.rs`).
    pub async fn login(
        &mut self,
        server: &ShardServer,
        session: &mut impl LineSession,
        need: Need,
        mechanism: Mechanism,
    ) {
        let answer = self.logins.answer(server, need, mechanism).await;
        session.login_answer(answer, &mut self.out);
    }

    /// After the session's events are answered: logs a login that ended, sends the output,
    /// and waits for the client's next bytes and feeds them. `false`: the connection is over
    /// (closed by either side, timed out, or the server is stopping).
    pub async fn turn(&mut self, server: &ShardServer, session: &mut impl LineSession) -> bool {
        if let Some(ok) = session.take_login_outcome() {
            self.logins.ended(server, ok).await;
        }
        if !self.flush().await || session.is_closed() {
            return false;
        }
        match self
            .conn
            .read_or_stop(&mut self.buf, self.patience.remaining())
            .await
        {
            Read::Closed => false,
            Read::Data(n) => {
                self.patience.received(n);
                session.input(&self.buf[..n]);
                true
            }
            Read::TimedOut => {
                server.shared.metrics.rejected("timeout");
                session.timeout(&mut self.out);
                let _ = self.flush().await;
                false
            }
            Read::Stopping => {
                let _ = self.conn.write_all(session.stopping_reply()).await;
                false
            }
            Read::Moved => {
                let _ = self.conn.write_all(session.moved_reply()).await;
                false
            }
        }
    }
}
