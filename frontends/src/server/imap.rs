//! The IMAP connection: the pre-login exchange on the shard that accepted it, then the
//! hand-off to the shard that owns the account, where the session runs next to its
//! partition (every store call is local; IDLE waits on the partition's change signal).
//!
//! The session after login is `crate::imap::session` (sans I/O, over the engine through
//! `server/imap_store.rs`); this file is its connection: framing with literals and
//! COMPRESS, the pre-login state (STARTTLS, LOGIN, AUTHENTICATE), the hand-off, and IDLE's
//! wait.

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpStream;
use ringmail_engine::Partition;

use super::budget::Hold;
use super::conn::{Conn, Patience, Read};
use super::deflate::Deflate;
use super::imap_store::EngineStore;
use super::login::Logins;
use super::proxy;
use super::{LoginFrom, ShardServer};
use crate::imap::reply::{Code, Failure};
use crate::imap::session::login::{Event as LoginEvent, Login, LoginConfig};
use crate::imap::session::{Link, Session, SessionConfig, Woke};
use crate::imap::{parse_command, Frame, Framer, Limits};

/// Idle sessions are logged out after this long (RFC 9051 section 5.4: at least 30 minutes).
const AUTOLOGOUT: Duration = Duration::from_secs(30 * 60);
/// Answers to pipelined commands go out once this much piled up.
const FLUSH_AT: usize = 256 << 10;

struct Io {
    conn: Conn,
    framer: Framer,
    out: Vec<u8>,
    buf: Vec<u8>,
    /// COMPRESS=DEFLATE, once the client turned it on.
    deflate: Option<Box<Deflate>>,
    /// Compressed input not inflated yet (inflation goes in bounded pieces).
    inflate_pending: Vec<u8>,
    scratch: Vec<u8>,
    /// What this session holds of the server's memory for messages in flight (APPEND).
    hold: Hold,
    /// Bytes per second a long command must keep up (see `Patience`).
    min_rate: u64,
}

impl Io {
    fn new(conn: Conn, framer: Framer, server: &ShardServer) -> Self {
        Self {
            conn,
            framer,
            out: Vec::with_capacity(4096),
            buf: vec![0; 16 << 10],
            deflate: None,
            inflate_pending: Vec::new(),
            scratch: Vec::new(),
            hold: Hold::new(server.shared.budget.clone()),
            min_rate: server.live().cfg.limits.min_data_rate,
        }
    }

    /// The next frame, if the framer has one whole; literals only within the memory the
    /// budget grants.
    fn next_frame(&mut self) -> Option<Frame> {
        let hold = &mut self.hold;
        self.framer.next_frame_with(&mut |n| hold.cover(n) >= n)
    }

    async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let ok = match self.deflate.as_mut() {
            Some(d) => {
                self.scratch.clear();
                d.compress(&self.out, &mut self.scratch);
                self.conn.write_all(&self.scratch).await.is_ok()
            }
            None => self.conn.write_all(&self.out).await.is_ok(),
        };
        self.out.clear();
        ok
    }

    /// Hands `n` bytes just read to the framer (inflating them first under COMPRESS).
    fn received(&mut self, n: usize) -> bool {
        match self.deflate.is_some() {
            true => {
                self.inflate_pending.extend_from_slice(&self.buf[..n]);
                self.inflate_some().is_some()
            }
            false => {
                self.framer.input(&self.buf[..n]);
                true
            }
        }
    }

    /// Inflates at most 64 KiB of pending compressed input into the framer. `None`: the
    /// stream is corrupt; `Some(progress)`: whether anything was taken or produced.
    fn inflate_some(&mut self) -> Option<bool> {
        let Some(d) = self.deflate.as_mut() else {
            return Some(false);
        };
        self.scratch.clear();
        let used = d
            .decompress(&self.inflate_pending, &mut self.scratch, 64 << 10)
            .ok()?;
        self.inflate_pending.drain(..used);
        self.framer.input(&self.scratch);
        Some(used > 0 || !self.scratch.is_empty())
    }

    /// The next whole frame from the client, reading as needed: all of it within `limit`
    /// (plus time for a long literal at the minimum rate), however it is split into reads.
    async fn frame(&mut self, limit: Duration) -> Result<Frame, Read> {
        // Answers to pipelined commands go out as they pile up, not all at the end.
        if self.out.len() >= FLUSH_AT && !self.flush().await {
            return Err(Read::Closed);
        }
        // The previous command's literals are gone: give back what they held.
        self.hold.shrink(self.framer.buffered() as u64);
        let mut patience = Patience::new(limit, self.min_rate);
        loop {
            if let Some(f) = self.next_frame() {
                return Ok(f);
            }
            if self.deflate.is_some() {
                match self.inflate_some() {
                    None => return Err(Read::Closed),
                    Some(true) => continue,
                    Some(false) => {}
                }
            }
            if !self.flush().await {
                return Err(Read::Closed);
            }
            if self.framer.buffered() > 0 {
                // Waiting for the rest of a command: see `Conn::quick_ack`.
                self.conn.quick_ack();
            }
            match self
                .conn
                .read_or_stop(&mut self.buf, patience.remaining())
                .await
            {
                Read::Data(n) => {
                    patience.received(n);
                    if !self.received(n) {
                        return Err(Read::Closed);
                    }
                }
                other => return Err(other),
            }
        }
    }

    fn line(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// A command's tagged failure (untagged, `*`, when the tag could not be read).
    fn failed(&mut self, tag: &str, f: &Failure) {
        f.write(tag, &mut self.out);
    }
}

/// Before login a client gets the patience of any other protocol's command.
fn preauth_timeout(server: &ShardServer) -> Duration {
    Duration::from_secs(server.live().cfg.limits.command_timeout_secs)
}

/// The longest command line outside literals IMAP accepts at least: an ID (RFC 2971) with
/// its 30 fields of 1,024-byte values is about 32 KiB on one line.
const MIN_IMAP_LINE: usize = 40 << 10;

/// The framer's limits after login: a literal (an APPEND) up to the message size limit,
/// and a whole command (MULTIAPPEND included) up to that plus 64 KiB.
fn limits(server: &ShardServer) -> Limits {
    let max = server.live().cfg.limits.max_message_size;
    Limits {
        max_line: server.live().cfg.limits.max_line_length.max(MIN_IMAP_LINE),
        max_literal: max,
        max_nonsync_literal: max,
        max_command: max + (64 << 10),
    }
}

/// Before login nothing needs more than a password or a SASL message: a client that has not
/// authenticated cannot make the server hold megabytes.
fn preauth_limits(server: &ShardServer) -> Limits {
    Limits {
        max_literal: 8 << 10,
        max_nonsync_literal: 8 << 10,
        max_command: 64 << 10,
        ..limits(server)
    }
}

pub async fn serve(
    server: Rc<ShardServer>,
    stream: TcpStream,
    peer: SocketAddr,
    _kind: super::Listener,
    permit: super::metrics::Permit,
) {
    let live = server.live();
    let Some(conn) = Conn::open(
        stream,
        permit,
        live.tls.as_ref(),
        &server.watch,
        Duration::from_secs(live.cfg.limits.tls_handshake_timeout_secs),
    )
    .await
    else {
        return;
    };
    let mut io = Io::new(conn, Framer::new(preauth_limits(&server)), &server);
    let login = Login::new(LoginConfig {
        tls: io.conn.is_tls(),
        starttls: live.tls.is_some(),
        plaintext: live.cfg.auth.danger_plaintext_without_tls,
        max_failures: live.cfg.limits.max_auth_failures,
        capabilities: capabilities(&server),
    });
    io.line(&format!(
        "* OK [CAPABILITY {}] {} ringmail IMAP ready",
        login.capabilities(),
        live.cfg.hostname
    ));
    let from = LoginFrom {
        ip: peer.ip(),
        protocol: "imap",
        tls: io.conn.is_tls(),
    };
    let account = match preauth(&server, &mut io, login, from).await {
        Some(a) => a,
        None => {
            let _ = io.flush().await;
            io.conn.close().await;
            return;
        }
    };
    match server.route(&account) {
        super::Routing::Local => {}
        super::Routing::Remote { node, addr } => {
            return proxied_from_here(&server, io, account, peer, node, addr).await;
        }
        super::Routing::Unavailable => {
            server.shared.metrics.cluster_routing_miss();
            io.line(UNAVAILABLE_BYE);
            let _ = io.flush().await;
            io.conn.close().await;
            return;
        }
    }
    if !io.flush().await {
        return;
    }
    let p = server.ctx.node.partition_of(&account);
    if let Some(part) = server.ctx.partition(p) {
        let pending = io.framer.take_input();
        authenticated(server, part, io.conn, account, pending).await;
        return;
    }
    // The account lives on another core: the connection moves there.
    let pending = io.framer.take_input();
    let who = account.clone();
    server
        .hand_off(&who, io.conn, "IMAP", move |srv, part, conn| {
            authenticated(srv, part, conn, account, pending)
        })
        .await;
}

/// Said (after the login's OK) when no node serves the account's mailbox just now.
const UNAVAILABLE_BYE: &str =
    "* BYE [UNAVAILABLE] this mailbox is moving between servers, log in again shortly";

/// Cluster mode: the account is served by another node. The session goes on there, through
/// this connection (`server/proxy.rs`).
async fn proxied_from_here(
    server: &ShardServer,
    mut io: Io,
    account: String,
    peer: SocketAddr,
    node: String,
    addr: String,
) {
    let Some(secret) = server.cluster_secret() else {
        return;
    };
    let hello = crate::cluster_link::Hello::Imap {
        account: account.clone(),
        client: peer.ip(),
    };
    // The route as decided, before connecting: if it changes meanwhile, the relay ends.
    let left = server.route_left(&account);
    match proxy::open(&addr, &hello, secret).await {
        Ok((owner, early)) => {
            if !io.flush().await {
                return;
            }
            let metrics = server.shared.metrics.clone();
            let _open = metrics.proxied_session("imap");
            io.conn.end_when(left);
            let pending = io.framer.take_input();
            proxy::relay(&mut io.conn, owner, early, pending, proxy::Protocol::Imap).await;
        }
        Err(e) => {
            server.shared.metrics.cluster_routing_miss();
            tracing::warn!(account = %account, node = %node, error = %e, "cannot proxy an IMAP session");
            io.line(UNAVAILABLE_BYE);
            let _ = io.flush().await;
        }
    }
    io.conn.close().await;
}

/// A session another node logged in and proxies here (`server/internal.rs`): it starts in
/// the authenticated state, on the shard that owns the account.
pub async fn serve_proxied(server: Rc<ShardServer>, mut conn: Conn, account: String) {
    let p = server.ctx.node.partition_of(&account);
    if let Some(part) = server.ctx.partition(p) {
        if conn.write_all(b"+OK\r\n").await.is_ok() {
            authenticated(server, part, conn, account, Vec::new()).await;
        }
        return;
    }
    let who = account.clone();
    server
        .hand_off(&who, conn, "IMAP", move |srv, part, mut conn| async move {
            if conn.write_all(b"+OK\r\n").await.is_ok() {
                authenticated(srv, part, conn, account, Vec::new()).await;
            }
        })
        .await;
}

fn capabilities(server: &ShardServer) -> String {
    format!(
        "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS \
         CHILDREN LIST-EXTENDED LIST-STATUS SPECIAL-USE CREATE-SPECIAL-USE STATUS=SIZE MOVE CONDSTORE QRESYNC \
         NOTIFY ESEARCH ESORT CONTEXT=SEARCH CONTEXT=SORT PARTIAL SEARCHRES MULTIAPPEND CATENATE METADATA URLAUTH BINARY UTF8=ACCEPT QUOTA QUOTA=RES-STORAGE \
         QUOTA=RES-MESSAGE OBJECTID COMPRESS=DEFLATE SORT SORT=DISPLAY \
         THREAD=ORDEREDSUBJECT THREAD=REFERENCES APPENDLIMIT={}",
        server.live().cfg.limits.max_message_size
    )
}

/// The not-authenticated state (RFC 9051 section 3.1) on this connection: reads commands
/// for `imap::session::Login` and does what it asks (TLS, lookups) until a login succeeds.
/// The account of the user logged in, or `None` when the connection ends.
async fn preauth(
    server: &ShardServer,
    io: &mut Io,
    mut login: Login,
    from: LoginFrom,
) -> Option<String> {
    let mut logins = Logins::new(from);
    loop {
        io.out.append(login.output());
        let frame = match io.frame(preauth_timeout(server)).await {
            Ok(f) => f,
            Err(Read::TimedOut) => {
                io.line("* BYE autologout: idle too long");
                return None;
            }
            Err(Read::Stopping) => {
                io.line("* BYE server shutting down");
                return None;
            }
            Err(_) => return None,
        };
        let mut event = if login.in_exchange() {
            // A login exchange's line; anything else (a literal, a refused frame) cancels.
            match frame {
                Frame::Command(line) => login.exchange_line(&line),
                _ => login.exchange_line(b"*"),
            }
        } else {
            let bytes = match frame {
                Frame::NeedContinuation => {
                    io.line("+ go ahead");
                    continue;
                }
                Frame::Refused { tag, reason } => {
                    io.failed(&tag, &reason.reply());
                    continue;
                }
                Frame::Busy { tag } => {
                    io.failed(&tag, &busy());
                    continue;
                }
                Frame::Command(b) => b,
            };
            match parse_command(&bytes) {
                Ok((tag, cmd)) => login.command(&tag, cmd),
                Err(e) => {
                    io.failed(&e.tag, &Failure::bad(e.reason));
                    continue;
                }
            }
        };
        while let Some(ev) = event.take() {
            match ev {
                LoginEvent::Need(need, mechanism) => {
                    let answer = logins.answer(server, need, mechanism).await;
                    event = login.answer(answer);
                }
                LoginEvent::StartTls => {
                    io.out.append(login.output());
                    let cfg = server.live().tls.clone()?;
                    if !io.flush().await {
                        return None;
                    }
                    // Nothing sent before the handshake may count after it (RFC 9051
                    // section 11.1).
                    io.framer.reset();
                    if io.conn.upgrade(&cfg).await.is_err() {
                        return None;
                    }
                    logins.from.tls = true;
                    login.tls_started();
                }
                LoginEvent::LoggedIn(senders) => {
                    logins.ended(server, true).await;
                    io.out.append(login.output());
                    // The login's address names the user; their mail is in its account.
                    let a = senders.into_iter().next()?;
                    return Some(
                        server
                            .users()
                            .resolve(&a)
                            .map(|u| u.account().to_string())
                            .unwrap_or(a),
                    );
                }
                LoginEvent::Close => {
                    if let Some(ok) = login.take_login_outcome() {
                        logins.ended(server, ok).await;
                    }
                    io.out.append(login.output());
                    return None;
                }
            }
        }
        if let Some(ok) = login.take_login_outcome() {
            logins.ended(server, ok).await;
        }
    }
}

fn busy() -> Failure {
    Failure::code(Code::Unavailable, "server busy, try again later")
}

// ---- the logged-in session ----------------------------------------------------------------

impl Link for Io {
    async fn send(&mut self, out: &mut Vec<u8>) -> bool {
        self.out.append(out);
        self.flush().await
    }

    fn queue(&mut self, out: &mut Vec<u8>) {
        self.out.append(out);
    }

    fn next_frame(&mut self) -> Option<Frame> {
        Io::next_frame(self)
    }

    async fn wait(&mut self, changed: impl Future<Output = u64>) -> Woke {
        enum W {
            Read(Read),
            Changed,
        }
        let mut changed = std::pin::pin!(changed);
        loop {
            if let Some(f) = self.next_frame() {
                return Woke::Input(f);
            }
            let w = {
                let conn = &mut self.conn;
                let buf = &mut self.buf;
                let changed = changed.as_mut();
                futures_lite::future::or(
                    async { W::Read(conn.read_or_stop(buf, AUTOLOGOUT).await) },
                    async {
                        changed.await;
                        W::Changed
                    },
                )
                .await
            };
            match w {
                W::Changed => return Woke::Changed,
                W::Read(Read::Data(n)) => {
                    if !self.received(n) {
                        return Woke::Closed;
                    }
                }
                W::Read(Read::TimedOut) => return Woke::TimedOut,
                W::Read(Read::Stopping) => return Woke::Stopping,
                W::Read(Read::Moved) => return Woke::Moved,
                W::Read(Read::Closed) => return Woke::Closed,
            }
        }
    }

    fn compressing(&self) -> bool {
        self.deflate.is_some()
    }

    fn start_compress(&mut self) {
        self.deflate = Some(Box::default());
    }
}

fn session_config(server: &ShardServer) -> SessionConfig {
    let live = server.live();
    let l = &live.cfg.limits;
    SessionConfig {
        capabilities: capabilities(server),
        max_message_size: l.max_message_size,
        max_mailbox_name: l.max_mailbox_name,
        max_mailbox_depth: l.max_mailbox_depth,
        max_mailboxes: l.max_mailboxes,
    }
}

async fn authenticated(
    server: Rc<ShardServer>,
    part: Rc<Partition>,
    conn: Conn,
    account: String,
    pending: Vec<u8>,
) {
    let mut framer = Framer::new(limits(&server));
    framer.input(&pending);
    let mut io = Io::new(conn, framer, &server);
    if let Err(e) = server.ensure_account(&account).await {
        io.line(&format!("* BYE [UNAVAILABLE] {e}"));
        let _ = io.flush().await;
        io.conn.close().await;
        return;
    }
    let cfg = session_config(&server);
    // Cluster mode: the session ends when the partition moves away (its client logs in
    // again, at the new owner).
    let watched = part.clone();
    io.conn.end_when(Rc::new(move || watched.is_gone()));
    let store = EngineStore::new(server.clone(), part, account.clone());
    let mut s = Session::new(store, io, cfg, account);
    run(&server, &mut s).await;
    let _ = s.flush().await;
    s.link.conn.close().await;
}

/// Reads the client's commands and hands each to the session, until it ends.
async fn run(server: &ShardServer, s: &mut Session<EngineStore, Io>) {
    loop {
        // Answers to pipelined commands go out together, when the next must be read.
        s.pass_output();
        let frame = match s.link.frame(AUTOLOGOUT).await {
            Ok(f) => f,
            Err(Read::TimedOut) => {
                s.line("* BYE autologout: idle too long");
                return;
            }
            Err(Read::Stopping) => {
                s.line("* BYE [UNAVAILABLE] server shutting down");
                return;
            }
            Err(Read::Moved) => {
                s.line(crate::imap::session::store::MOVED_BYE);
                return;
            }
            Err(_) => return,
        };
        let bytes = match frame {
            Frame::NeedContinuation => {
                s.line("+ go ahead");
                continue;
            }
            Frame::Refused { tag, reason } => {
                s.failed(&tag, &reason.reply());
                continue;
            }
            Frame::Busy { tag } => {
                server.shared.metrics.rejected("server_busy");
                s.failed(&tag, &busy());
                continue;
            }
            Frame::Command(b) => b,
        };
        match parse_command(&bytes) {
            Ok((tag, cmd)) => s.handle(&tag, cmd).await,
            Err(e) => s.failed(&e.tag, &Failure::bad(e.reason)),
        }
        if s.is_closing() {
            return;
        }
    }
}
