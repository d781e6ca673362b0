//! The SMTP/LMTP connection loop: about one screen around the sans-I/O session.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use glommio::net::TcpStream;
use ringmail_engine::{Error, NewMessage, Recipient, StoreError};

use super::budget::Hold;
use super::conn::Conn;
use super::driver::Driver;
use super::login::Logins;
use super::metrics::Permit;
use super::{received, Listener, LoginFrom, ShardServer};
use crate::smtp::reply::{r, Reply};
use crate::smtp::{Envelope, Event, Mode, Session, SessionConfig};

pub async fn serve(
    server: Rc<ShardServer>,
    stream: TcpStream,
    peer: SocketAddr,
    kind: Listener,
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
    let mode = kind.mode();
    let mut scfg = SessionConfig::new(mode, &cfg.hostname);
    scfg.max_message_size = cfg.limits.max_message_size;
    scfg.max_recipients = cfg.limits.max_recipients;
    scfg.max_line = cfg.limits.max_line_length;
    scfg.tls = conn.is_tls();
    scfg.starttls = live.tls.is_some();
    scfg.vrfy = cfg.smtp.vrfy;
    scfg.danger_auth_without_tls = cfg.auth.danger_plaintext_without_tls;
    scfg.max_errors = cfg.limits.max_errors;
    scfg.max_auth_failures = cfg.limits.max_auth_failures;
    let mut session = Session::new(scfg);
    let logins = Logins::new(LoginFrom {
        ip: peer.ip(),
        protocol: "smtp",
        tls: conn.is_tls(),
    });
    let mut d = Driver::new(conn, logins, &live, 64 << 10);
    let mut hold = Hold::new(server.shared.budget.clone());
    let data_timeout = Duration::from_secs(cfg.limits.data_timeout_secs);
    let mut messages_started = 0;
    session.greeting(&mut d.out);
    loop {
        while let Some(ev) = session.poll(&mut d.out) {
            match ev {
                Event::StartTls => {
                    if !d.start_tls(&live, &mut session).await {
                        return;
                    }
                }
                Event::Login { need, mechanism } => {
                    d.login(&server, &mut session, need, mechanism).await
                }
                Event::CheckRecipient { address, .. } => {
                    let res = check_recipient(&server, &address, mode).await;
                    session.rcpt_result(res, &mut d.out);
                }
                Event::FetchUrl { url, user } => {
                    let who = crate::imap::urlauth::Requester::Submission(&user);
                    let data = super::urlauth::fetch(&server, &url, who)
                        .await
                        .ok_or_else(|| {
                            Reply::new(554, Some((5, 6, 6)), "IMAP URL resolution failed")
                        });
                    session.burl_result(data, &mut d.out);
                }
                Event::Deliver { envelope, message } => {
                    let res = deliver(&server, &live, &envelope, message, mode, &peer).await;
                    session.deliver_result(res, &mut d.out);
                }
            }
        }
        // A command line, or a whole message (DATA to its dot, or every chunk of a BDAT
        // transaction), must arrive within its time, however it is split into reads.
        if session.messages_started() != messages_started {
            messages_started = session.messages_started();
            d.patience.restart(data_timeout);
        } else if !session.receiving_message() && session.buffered() == 0 {
            d.patience.restart(d.command_timeout);
        }
        hold.shrink((session.message_len() + session.buffered()) as u64);
        if !d.turn(&server, &mut session).await {
            break;
        }
        // The most the message can grow to with what has arrived.
        let want = (session.message_len() + session.buffered()) as u64;
        session.set_allowance(hold.cover(want));
    }
    d.conn.close().await;
}

pub(super) fn random_b64(n: usize) -> String {
    use base64::Engine as _;
    use password_hash::rand_core::{OsRng, RngCore};
    let mut b = vec![0u8; n];
    OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::STANDARD.encode(b)
}

async fn check_recipient(server: &ShardServer, address: &str, mode: Mode) -> Result<(), Reply> {
    let users = server.users();
    let refuse = |reply: Reply, reason: &str| {
        server.shared.metrics.rejected(reason);
        tracing::info!(
            target: "ringmail::delivery",
            rcpt = ?address,
            reason,
            "recipient refused"
        );
        Err(reply)
    };
    match users.resolve(address) {
        Some(u) => match server.ensure_account(u.account()).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let (reply, reason) = store_reply(&e);
                refuse(reply, reason)
            }
        },
        None => {
            let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
            if users.is_local_domain(domain) {
                refuse(r::no_such_user(), "no_such_user")
            } else if mode == Mode::Submission {
                refuse(r::no_outbound(), "relay_denied")
            } else {
                refuse(r::relay_denied(), "relay_denied")
            }
        }
    }
}

async fn deliver(
    server: &ShardServer,
    live: &super::Live,
    env: &Envelope,
    message: Vec<u8>,
    mode: Mode,
    peer: &SocketAddr,
) -> Vec<Result<String, Reply>> {
    let users = server.users();
    let id = server.delivery_id();
    // Each recipient's account (aliases resolved), delivered once per account.
    let accounts: Vec<Option<String>> = env
        .rcpts
        .iter()
        .map(|a| users.resolve(a).map(|u| u.account().to_string()))
        .collect();
    let mut unique: Vec<String> = accounts.iter().flatten().cloned().collect();
    unique.sort();
    unique.dedup();
    // The stored message: the trace header, then the message, in one buffer (the received
    // bytes are freed at once: a large message is held twice only for this copy).
    let mut head = String::with_capacity(512 + message.len());
    // Every delivery here is final: the reverse-path goes on top (RFC 5321 section 4.4).
    received::write_return_path(&mut head, &env.from);
    received::write_header(
        &mut head,
        env,
        mode,
        peer.ip(),
        &live.cfg.hostname,
        &id,
        SystemTime::now(),
    );
    let mut body = head.into_bytes();
    // NUL octets (BODY=BINARYMIME): their parts are stored base64 (see `mime::binary`).
    match crate::mime::binary::without_nul(&message) {
        Some(clean) => body.extend_from_slice(&clean),
        None => body.extend_from_slice(&message),
    }
    drop(message);
    let size = body.len() as u64;
    let recipients: Vec<Recipient> = unique.iter().map(|a| Recipient::inbox(a)).collect();
    // The one parse of the message: its structure is stored with it for IMAP.
    let meta = crate::mime::MessageMeta::parse(&body).encode();
    let msg = NewMessage {
        body,
        meta,
        ..Default::default()
    };
    let results = deliver_local_first(server, &recipients, msg).await;
    let mut delivered = 0;
    let mut failure: Option<&'static str> = None;
    let out: Vec<Result<String, Reply>> = accounts
        .iter()
        .map(|a| {
            let Some(a) = a else {
                return Err(r::no_such_user());
            };
            let i = unique.binary_search(a).map_err(|_| r::local_error())?;
            match &results[i] {
                Ok(ap) => {
                    delivered += 1;
                    Ok(format!("{id} ({}/{})", ap.uidvalidity, ap.uid))
                }
                Err(e) => {
                    let (reply, reason) = store_reply(e);
                    failure = Some(reason);
                    Err(reply)
                }
            }
        })
        .collect();
    server.shared.metrics.delivered(delivered, size * delivered);
    if let Some(reason) = failure {
        server.shared.metrics.rejected(reason);
    }
    tracing::info!(
        target: "ringmail::delivery",
        id = %id,
        from = ?env.from,
        rcpts = ?env.rcpts,
        size,
        delivered,
        failed = env.rcpts.len() as u64 - delivered,
        reason = failure.unwrap_or(""),
        remote = %peer.ip(),
        "delivery"
    );
    out
}

/// Delivers to partitions on this shard directly and to the others through the node, all
/// concurrently; results in recipient order.
async fn deliver_local_first(
    server: &ShardServer,
    recipients: &[Recipient],
    msg: NewMessage,
) -> Vec<Result<ringmail_engine::Appended, Error>> {
    let node = &server.ctx.node;
    let mut local: Vec<(usize, Recipient)> = Vec::new();
    let mut remote: Vec<(usize, Recipient)> = Vec::new();
    for (i, r) in recipients.iter().enumerate() {
        if server.ctx.has_partition(node.partition_of(&r.account)) {
            local.push((i, r.clone()));
        } else {
            remote.push((i, r.clone()));
        }
    }
    let remote_rcpts: Vec<Recipient> = remote.iter().map(|(_, r)| r.clone()).collect();
    let local_fut = async {
        let mut out = Vec::new();
        let mut by_part: std::collections::BTreeMap<_, Vec<(usize, Recipient)>> =
            std::collections::BTreeMap::new();
        for (i, r) in &local {
            by_part
                .entry(node.partition_of(&r.account))
                .or_default()
                .push((*i, r.clone()));
        }
        for (p, group) in by_part {
            let rcpts: Vec<Recipient> = group.iter().map(|(_, r)| r.clone()).collect();
            let res = match server.ctx.partition(p) {
                Some(part) => part.deliver(&rcpts, &msg).await,
                // Closed since (cluster mode: the ownership ended meanwhile).
                None => rcpts
                    .iter()
                    .map(|_| {
                        Err(ringmail_engine::Error::Store(
                            ringmail_engine::StoreError::NotHere(p.0),
                        ))
                    })
                    .collect(),
            };
            out.extend(group.into_iter().map(|(i, _)| i).zip(res));
        }
        out
    };
    let remote_fut = async {
        if remote_rcpts.is_empty() {
            return Vec::new();
        }
        node.deliver(&remote_rcpts, &msg).await
    };
    let (l, r) = futures_lite::future::zip(local_fut, remote_fut).await;
    let mut results: Vec<Option<Result<ringmail_engine::Appended, Error>>> =
        (0..recipients.len()).map(|_| None).collect();
    for (i, res) in l {
        results[i] = Some(res);
    }
    for ((i, _), res) in remote.into_iter().zip(r) {
        results[i] = Some(res);
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::Failed("no result".into()))))
        .collect()
}

/// The one place engine errors become SMTP replies (and the reason they are counted under).
/// Only an error of unknown kind is logged here: the others are the client's or a
/// temporary state the engine reports itself, once.
fn store_reply(e: &Error) -> (Reply, &'static str) {
    match e.store() {
        Some(StoreError::OverQuota { .. }) => (
            Reply::new(552, Some((5, 2, 2)), "mailbox full"),
            "over_quota",
        ),
        Some(StoreError::MessageTooLarge { .. }) => (
            Reply::new(552, Some((5, 3, 4)), "message too large"),
            "message_too_large",
        ),
        Some(StoreError::NoSuchAccount) | Some(StoreError::NoSuchMailbox) => {
            (r::no_such_user(), "no_such_user")
        }
        Some(StoreError::ShuttingDown) => (
            Reply::new(421, Some((4, 3, 2)), "server shutting down"),
            "storage_unavailable",
        ),
        // Cluster mode: the mailbox's partition is moving, or the cluster did not confirm
        // the write in time (it may still be stored: a retry may duplicate, as mail allows).
        Some(StoreError::NotHere(_)) | Some(StoreError::Unconfirmed) => (
            Reply::new(
                451,
                Some((4, 3, 0)),
                "mailbox temporarily unavailable, try again",
            ),
            "storage_unavailable",
        ),
        Some(StoreError::Unavailable(why)) => (
            match why {
                ringmail_engine::Resource::Space => r::insufficient_storage(),
                _ => r::local_error(),
            },
            "storage_unavailable",
        ),
        _ => {
            // Once a minute per shard: a poisoned partition fails every delivery the same way.
            thread_local! {
                static SAID: std::cell::RefCell<super::metrics::Limiter> =
                    std::cell::RefCell::new(super::metrics::Limiter::new(Duration::from_secs(60)));
            }
            if let Some(suppressed) = SAID.with(|l| l.borrow_mut().allow()) {
                tracing::error!(error = %e, suppressed, "delivery failed");
            }
            (r::local_error(), "storage_unavailable")
        }
    }
}
