//! The POP3 connection loop around the sans-I/O session.
//!
//! The session starts on the shard that accepted it; once the user is authenticated it
//! moves, connection and TLS state included, to the shard that owns the account, so the
//! maildrop lock and every RETR are local to the partition.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use glommio::net::TcpStream;
use ringmail_engine::{Error, Uid};

use super::conn::Conn;
use super::driver::Driver;
use super::login::Logins;
use super::metrics::Permit;
use super::{Listener, LoginFrom, ShardServer};
use crate::lines::LineSession;
use crate::pop3::{DotStuffer, Event, MaildropEntry, Pop3Config, Session};

pub async fn serve(
    server: Rc<ShardServer>,
    stream: TcpStream,
    peer: SocketAddr,
    _kind: Listener,
    permit: Permit,
) {
    let live = server.live();
    let cfg = &live.cfg;
    let Some(conn) = Conn::open(
        stream,
        permit,
        live.tls.as_ref(),
        &server.watch,
        Duration::from_secs(cfg.limits.tls_handshake_timeout_secs),
    )
    .await
    else {
        return;
    };
    let mut pcfg = Pop3Config::new(&cfg.hostname);
    pcfg.tls = conn.is_tls();
    pcfg.starttls = live.tls.is_some();
    pcfg.danger_auth_without_tls = cfg.auth.danger_plaintext_without_tls;
    pcfg.max_line = cfg.limits.max_line_length;
    pcfg.max_auth_failures = cfg.limits.max_auth_failures;
    pcfg.max_errors = cfg.limits.max_errors;
    let session = Session::new(pcfg);
    let mut out = Vec::with_capacity(4096);
    session.greeting(&mut out);
    let from = LoginFrom {
        ip: peer.ip(),
        protocol: "pop3",
        tls: conn.is_tls(),
    };
    run(server, conn, session, out, None, from).await;
}

/// The session loop. `resume`: an event to handle before anything else (the maildrop to
/// open, when the session was just handed over from another shard).
async fn run(
    server: Rc<ShardServer>,
    conn: Conn,
    mut session: Session,
    out: Vec<u8>,
    mut resume: Option<Event>,
    from: LoginFrom,
) {
    let live = server.live();
    let mut d = Driver::new(conn, Logins::new(from), &live, 16 << 10);
    d.out = out;
    // The account whose maildrop lock this session holds.
    let mut locked: Option<String> = None;
    'session: loop {
        while let Some(ev) = resume.take().or_else(|| session.poll(&mut d.out)) {
            match ev {
                Event::StartTls => {
                    if !d.start_tls(&live, &mut session).await {
                        break 'session;
                    }
                }
                Event::Login { need, mechanism } => {
                    d.login(&server, &mut session, need, mechanism).await
                }
                Event::OpenMaildrop { account } => {
                    // The login's address names the user; their mail is in its account.
                    let account = server
                        .users()
                        .resolve(&account)
                        .map(|u| u.account().to_string())
                        .unwrap_or(account);
                    let p = server.ctx.node.partition_of(&account);
                    // Cluster mode: another node may serve the account (never asked of a
                    // session proxied here: the node that logged it in routed it already).
                    let routing = match session.is_proxied() {
                        true => super::Routing::Local,
                        false => server.route(&account),
                    };
                    match routing {
                        super::Routing::Local => {}
                        super::Routing::Remote { node, addr } => {
                            if let Some(ok) = session.take_login_outcome() {
                                d.logins.ended(&server, ok).await;
                            }
                            if !d.flush().await {
                                break 'session;
                            }
                            let pending = session.take_input();
                            let from = d.logins.from;
                            if proxied_from_here(
                                &server,
                                &mut d.conn,
                                &account,
                                from,
                                node,
                                addr,
                                pending,
                            )
                            .await
                            {
                                break 'session;
                            }
                            session.maildrop_opened(Err(UNAVAILABLE.into()), &mut d.out);
                            continue;
                        }
                        super::Routing::Unavailable => {
                            server.shared.metrics.cluster_routing_miss();
                            session.maildrop_opened(Err(UNAVAILABLE.into()), &mut d.out);
                            continue;
                        }
                    }
                    if !server.ctx.has_partition(p) {
                        // The session moves to the core that owns the account, so that
                        // every RETR is a local read. (The login was logged here.)
                        if let Some(ok) = session.take_login_outcome() {
                            d.logins.ended(&server, ok).await;
                        }
                        if !d.flush().await {
                            break 'session;
                        }
                        let who = account.clone();
                        let resume = Some(Event::OpenMaildrop { account });
                        let from = d.logins.from;
                        server
                            .hand_off(&who, d.conn, "POP3", move |srv, _, conn| {
                                run(srv, conn, session, Vec::new(), resume, from)
                            })
                            .await;
                        return;
                    }
                    let r = open_maildrop(&server, &account).await;
                    if r.is_ok() {
                        // Cluster mode: the session ends when the partition moves away.
                        if let Some(part) = server.ctx.partition(p) {
                            d.conn.end_when(Rc::new(move || part.is_gone()));
                        }
                        locked = Some(account);
                    }
                    session.maildrop_opened(r, &mut d.out);
                }
                Event::Retrieve { id } => {
                    let Some(account) = locked.clone() else {
                        break 'session;
                    };
                    // The session is on the owning shard (see `hand_off`).
                    let p = server.ctx.node.partition_of(&account);
                    let Some(part) = server.ctx.partition(p) else {
                        break 'session;
                    };
                    match part.fetch(&account, "INBOX", Uid(id)).await {
                        Ok(body) => {
                            let Some(n) = session.message_start(Ok(&body), &mut d.out) else {
                                continue;
                            };
                            if !stream_message(&mut d.conn, &mut d.out, &body[..n]).await {
                                break 'session;
                            }
                        }
                        Err(e) => {
                            tracing::error!(account = %account, uid = id, error = %e, "cannot read a stored message");
                            session.message_start(Err(super::read_failure(&e)), &mut d.out);
                        }
                    }
                }
                Event::Commit { delete } => {
                    let Some(account) = locked.take() else {
                        break 'session;
                    };
                    let a = account.clone();
                    let r = server
                        .on_account(&account, move |p| async move {
                            let uids: Vec<Uid> = delete.into_iter().map(Uid).collect();
                            if uids.is_empty() {
                                Ok(())
                            } else {
                                p.expunge(&a, "INBOX", Some(&uids)).await.map(|_| ())
                            }
                        })
                        .await;
                    // The session runs on the shard that took the lock (see `hand_off`): it
                    // lets go here, also when the partition is no longer served on this node.
                    server.sessions.unlock_maildrop(&account);
                    session.committed(r.map_err(|e: Error| e.to_string()), &mut d.out);
                }
            }
        }
        // A whole command line must arrive within the timeout, however it is split.
        if session.buffered() == 0 {
            d.patience.restart(d.command_timeout);
        }
        if !d.turn(&server, &mut session).await {
            break;
        }
    }
    // A session that ends without QUIT commits nothing, but must let go of the maildrop.
    if let Some(account) = locked {
        server.sessions.unlock_maildrop(&account);
    }
    d.conn.close().await;
}

/// Said for a login whose maildrop no node serves just now.
const UNAVAILABLE: &str = "[SYS/TEMP] this mailbox is moving between servers, try again shortly";

/// Cluster mode: the account is served by another node; the session goes on there, through
/// this connection (`server/proxy.rs`). `false`: that node could not be reached (nothing
/// was sent to the client).
async fn proxied_from_here(
    server: &ShardServer,
    conn: &mut Conn,
    account: &str,
    from: LoginFrom,
    node: String,
    addr: String,
    pending: Vec<u8>,
) -> bool {
    let Some(secret) = server.cluster_secret() else {
        return false;
    };
    let hello = crate::cluster_link::Hello::Pop3 {
        account: account.to_string(),
        client: from.ip,
    };
    // The route as decided, before connecting: if it changes meanwhile, the relay ends.
    let left = server.route_left(account);
    match super::proxy::open(&addr, &hello, secret).await {
        Ok((owner, early)) => {
            let metrics = server.shared.metrics.clone();
            let _open = metrics.proxied_session("pop3");
            conn.end_when(left);
            super::proxy::relay(conn, owner, early, pending, super::proxy::Protocol::Pop3).await;
            true
        }
        Err(e) => {
            server.shared.metrics.cluster_routing_miss();
            tracing::warn!(account = %account, node = %node, error = %e, "cannot proxy a POP3 session");
            false
        }
    }
}

/// A session another node logged in and proxies here (`server/internal.rs`): it opens the
/// maildrop first, and its answer is the client's answer to the login.
pub async fn serve_proxied(
    server: Rc<ShardServer>,
    mut conn: Conn,
    account: String,
    client: std::net::IpAddr,
) {
    let live = server.live();
    let mut pcfg = Pop3Config::new(&live.cfg.hostname);
    // The client's TLS ended on the node that proxies the session.
    pcfg.tls = true;
    pcfg.max_line = live.cfg.limits.max_line_length;
    pcfg.max_auth_failures = live.cfg.limits.max_auth_failures;
    pcfg.max_errors = live.cfg.limits.max_errors;
    let session = Session::proxied(pcfg, account);
    if conn.write_all(b"+OK\r\n").await.is_err() {
        return;
    }
    let from = LoginFrom {
        ip: client,
        protocol: "pop3",
        tls: true,
    };
    run(server, conn, session, Vec::new(), None, from).await;
}

/// Appends `body` dot-stuffed to `out`, sending `out` whenever it holds 64 KiB, so a large
/// message is never copied whole; a small one goes out with its status line in one write.
async fn stream_message(conn: &mut Conn, out: &mut Vec<u8>, body: &[u8]) -> bool {
    const PIECE: usize = 64 << 10;
    let mut d = DotStuffer::default();
    for chunk in body.chunks(PIECE) {
        d.feed(chunk, out);
        if out.len() >= PIECE {
            if conn.write_all(out).await.is_err() {
                return false;
            }
            out.clear();
        }
    }
    d.finish(out);
    true
}

/// Locks the maildrop and lists INBOX. UIDL is `<UIDVALIDITY>.<UID>`: stable across
/// sessions and restarts, and the same message IMAP sees.
async fn open_maildrop(server: &ShardServer, account: &str) -> Result<Vec<MaildropEntry>, String> {
    server
        .ensure_account(account)
        .await
        .map_err(|e| format!("[SYS/TEMP] {e}"))?;
    let a = account.to_string();
    server
        .on_account(account, move |p| async move {
            // The lock is kept on the shard that owns the account, where this runs.
            let srv = super::local_server().ok_or_else(|| {
                ringmail_engine::Error::Config("no server on the owning shard".into())
            })?;
            if !srv.sessions.try_lock_maildrop(&a) {
                return Ok(Err(
                    "[IN-USE] maildrop already locked by another session".to_string()
                ));
            }
            let listed = p
                .status(&a, "INBOX")
                .and_then(|st| Ok((st, p.messages(&a, "INBOX", Uid(1), Uid(u32::MAX))?)));
            let (st, list) = match listed {
                Ok(x) => x,
                Err(e) => {
                    srv.sessions.unlock_maildrop(&a);
                    return Err(e);
                }
            };
            Ok(Ok(list
                .into_iter()
                .map(|m| MaildropEntry {
                    id: m.uid.0,
                    uidl: format!("{}.{}", st.uidvalidity, m.uid),
                    size: m.size as u64,
                })
                .collect()))
        })
        .await
        .map_err(|e| format!("[SYS/TEMP] {e}"))?
}
