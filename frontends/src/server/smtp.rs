//! The SMTP/LMTP connection loop: about one screen around the sans-I/O session.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use glommio::net::TcpStream;
use ringmail_engine::{Error, NewMessage, Recipient, StoreError};

use super::budget::Hold;
use super::conn::Conn;
use super::dedup::DeliveryKey;
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
    run(server, conn, peer, kind.mode(), false).await;
}

/// Deliveries another node forwards here (`server/internal.rs`): LMTP, for partitions this
/// node serves. The message already carries its trace headers.
pub async fn serve_forwarded(server: Rc<ShardServer>, conn: Conn, peer: SocketAddr) {
    run(server, conn, peer, Mode::Lmtp, true).await;
}

/// The session loop. `forwarded`: the connection is another node's, forwarding deliveries
/// it accepted (no trace headers are added, and nothing is forwarded on again).
async fn run(server: Rc<ShardServer>, conn: Conn, peer: SocketAddr, mode: Mode, forwarded: bool) {
    let live = server.live();
    let cfg = &live.cfg;
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
    if forwarded {
        scfg.cluster_peer = true;
        // The node that accepted the message checked its size, then added its trace header
        // and stored NUL-carrying parts as base64 (a third larger): room for both.
        scfg.max_message_size = scfg.max_message_size * 3 / 2 + (1 << 20);
    }
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
                    let res = check_recipient(&server, &address, mode, forwarded).await;
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
                Event::Remember { key, addresses } => {
                    if let Some(k) = DeliveryKey::parse(&key) {
                        let users = server.users();
                        for a in addresses {
                            if let Some(u) = users.resolve(&a) {
                                server.shared.dedup.remember(&k, u.account());
                            }
                        }
                    }
                    session.remembered(&mut d.out);
                }
                Event::Deliver { envelope, message } => {
                    let res =
                        deliver(&server, &live, &envelope, message, mode, &peer, forwarded).await;
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

async fn check_recipient(
    server: &ShardServer,
    address: &str,
    mode: Mode,
    forwarded: bool,
) -> Result<(), Reply> {
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
    let routing = match (forwarded, users.resolve(address)) {
        (false, Some(u)) => server.route(u.account()),
        _ => super::Routing::Local,
    };
    match routing {
        super::Routing::Local => {}
        // Its node checks it (and makes the account) when the message comes.
        super::Routing::Remote { .. } => return Ok(()),
        super::Routing::Unavailable => {
            server.shared.metrics.cluster_routing_miss();
            return refuse(unavailable(), "storage_unavailable");
        }
    }
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

/// The mailbox's partition is moving between nodes (or its node cannot be reached).
fn unavailable() -> Reply {
    Reply::new(
        451,
        Some((4, 3, 0)),
        "mailbox temporarily unavailable, try again",
    )
}

async fn deliver(
    server: &ShardServer,
    live: &super::Live,
    env: &Envelope,
    message: Vec<u8>,
    mode: Mode,
    peer: &SocketAddr,
    forwarded: bool,
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
    if !forwarded {
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
    }
    let recipients: Vec<Recipient> = unique.iter().map(|a| Recipient::inbox(a)).collect();
    // What another node is sent for each account: an address the client gave for it (the
    // node resolves it again, with the same users; an account's own name may not be an
    // address, e.g. a re-added user's `a@example.org#2`). Only needed for another node.
    let addresses: Vec<String> = match server.cluster_secret() {
        None => Vec::new(),
        Some(_) => unique
            .iter()
            .map(|acc| {
                env.rcpts
                    .iter()
                    .zip(&accounts)
                    .find(|(_, a)| a.as_deref() == Some(acc.as_str()))
                    .map_or_else(|| acc.clone(), |(r, _)| r.clone())
            })
            .collect(),
    };
    let targets: Vec<Target> = unique
        .iter()
        .map(|a| target(server, a, forwarded))
        .collect();
    let key = delivery_key(server, env, &message, unique.len(), forwarded);
    let mut body = head.into_bytes();
    // NUL octets (BODY=BINARYMIME): their parts are stored base64 (see `mime::binary`).
    match crate::mime::binary::without_nul(&message) {
        Some(clean) => body.extend_from_slice(&clean),
        None => body.extend_from_slice(&message),
    }
    drop(message);
    let size = body.len() as u64;
    // The one parse of the message: its structure is stored with it for IMAP (by the node
    // that stores it).
    let meta = match targets
        .iter()
        .any(|t| matches!(t, Target::Shard | Target::Node))
    {
        true => crate::mime::MessageMeta::parse(&body).encode(),
        false => Vec::new(),
    };
    let msg = NewMessage {
        body,
        meta,
        ..Default::default()
    };
    let results = deliver_everywhere(
        server,
        &recipients,
        &addresses,
        targets,
        &env.from,
        key,
        msg,
    )
    .await;
    let mut delivered = 0;
    // Counted as delivered by the node that stored them.
    let mut forwarded_here = 0;
    let mut failure: Option<&'static str> = None;
    let mut count_failure = false;
    let out: Vec<Result<String, Reply>> = accounts
        .iter()
        .map(|a| {
            let Some(a) = a else {
                return Err(r::no_such_user());
            };
            let i = unique.binary_search(a).map_err(|_| r::local_error())?;
            let (reply, reason, counted) = match &results[i] {
                Outcome::Stored(ap) => {
                    delivered += 1;
                    return Ok(format!("{id} ({}/{})", ap.uidvalidity, ap.uid));
                }
                Outcome::Forwarded(_) => {
                    delivered += 1;
                    forwarded_here += 1;
                    return Ok(format!("{id} (forwarded)"));
                }
                Outcome::Again => {
                    delivered += 1;
                    forwarded_here += 1;
                    return Ok(format!("{id} (stored before)"));
                }
                Outcome::Failed(e) => {
                    let (reply, reason) = store_reply(e);
                    (reply, reason, true)
                }
                // Counted by the node that refused it.
                Outcome::Refused(r) => {
                    let (reply, reason) = refused_reply(r);
                    (reply, reason, false)
                }
            };
            failure = Some(reason);
            count_failure |= counted;
            Err(reply)
        })
        .collect();
    // SMTP's one reply for all recipients is a 451 now, though some copies are stored: the
    // client will send the message again, and those copies must not be stored twice.
    let partial = !forwarded
        && mode != Mode::Lmtp
        && out.iter().any(Result::is_ok)
        && out.iter().any(Result::is_err);
    if let Some(k) = key.as_ref().filter(|_| partial) {
        remember_stored(server, live, k, &recipients, &addresses, &results).await;
    }
    let stored = delivered - forwarded_here;
    server.shared.metrics.delivered(stored, size * stored);
    if let Some(reason) = failure.filter(|_| count_failure) {
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

/// What became of one recipient's copy.
enum Outcome {
    /// Stored on this node.
    Stored(ringmail_engine::Appended),
    /// Stored by the node that serves the account (at this cluster address).
    Forwarded(String),
    Failed(Error),
    /// The serving node refused it, with this reply.
    Refused(crate::cluster_link::Reply),
    /// Stored on this node by an earlier try of the same delivery (`server/dedup.rs`).
    Again,
}

/// The delivery's key (`server/dedup.rs`), for looking up copies stored by an earlier try
/// of the same delivery, and for remembering them if this one partly fails. Not computed
/// where neither can happen: a single node with nothing remembered, and one recipient.
/// `message`: the bytes as the client sent them.
fn delivery_key(
    server: &ShardServer,
    env: &Envelope,
    message: &[u8],
    accounts: usize,
    forwarded: bool,
) -> Option<DeliveryKey> {
    if forwarded {
        return env
            .mail_params
            .iter()
            .find(|(k, _)| k == "XRINGMAIL-KEY")
            .and_then(|(_, v)| DeliveryKey::parse(v.as_deref()?));
    }
    // In a cluster another node may remember copies (a retry may come with one recipient).
    let cluster = server.cluster_secret().is_some();
    (cluster || accounts > 1 || !server.shared.dedup.is_empty())
        .then(|| DeliveryKey::of(&env.from, message))
}

/// Remembers the copies of a partly failed delivery that were stored: here, and on each
/// node it was forwarded to (`XREMEMBER` on its cluster port).
async fn remember_stored(
    server: &ShardServer,
    live: &super::Live,
    key: &DeliveryKey,
    recipients: &[Recipient],
    addresses: &[String],
    results: &[Outcome],
) {
    let mut remote: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (i, r) in results.iter().enumerate() {
        match r {
            Outcome::Stored(_) => server.shared.dedup.remember(key, &recipients[i].account),
            Outcome::Forwarded(addr) => remote
                .entry(addr.as_str())
                .or_default()
                .push(addresses[i].clone()),
            _ => {}
        }
    }
    let secret = server.cluster_secret().unwrap_or_default();
    for (addr, addrs) in remote {
        server
            .forwards
            .remember(addr, secret, &live.cfg.hostname, key, &addrs)
            .await;
    }
}

/// Where one recipient's copy goes.
enum Target {
    /// A partition on this shard.
    Shard,
    /// A partition on another shard of this node.
    Node,
    /// Another node, at this cluster address.
    Remote(String),
    Unavailable,
}

fn target(server: &ShardServer, account: &str, forwarded: bool) -> Target {
    let p = server.ctx.node.partition_of(account);
    if server.ctx.has_partition(p) {
        return Target::Shard;
    }
    if forwarded {
        // Never forwarded on: a map that lags must not bounce a message between nodes.
        return Target::Node;
    }
    match server.route_partition(p) {
        super::Routing::Local => Target::Node,
        super::Routing::Remote { addr, .. } => Target::Remote(addr),
        super::Routing::Unavailable => Target::Unavailable,
    }
}

/// Delivers to partitions on this shard directly, to the node's other shards through the
/// node, and to other nodes' accounts through their cluster ports, all concurrently;
/// outcomes in recipient order.
async fn deliver_everywhere(
    server: &ShardServer,
    recipients: &[Recipient],
    addresses: &[String],
    targets: Vec<Target>,
    from: &str,
    key: Option<DeliveryKey>,
    msg: NewMessage,
) -> Vec<Outcome> {
    let node = &server.ctx.node;
    let dedup = &server.shared.dedup;
    let mut on_shard: std::collections::BTreeMap<_, Vec<usize>> = Default::default();
    let mut on_node: Vec<usize> = Vec::new();
    let mut remote: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    let mut results: Vec<Option<Outcome>> = (0..recipients.len()).map(|_| None).collect();
    for (i, t) in targets.into_iter().enumerate() {
        let here = matches!(t, Target::Shard | Target::Node);
        if let Some(k) = key.as_ref().filter(|_| here) {
            if dedup.stored(k, &recipients[i].account) {
                results[i] = Some(Outcome::Again);
                continue;
            }
        }
        match t {
            Target::Shard => on_shard
                .entry(node.partition_of(&recipients[i].account))
                .or_default()
                .push(i),
            Target::Node => on_node.push(i),
            Target::Remote(addr) => remote.entry(addr).or_default().push(i),
            Target::Unavailable => {
                let p = node.partition_of(&recipients[i].account);
                results[i] = Some(Outcome::Failed(Error::Store(StoreError::NotHere(p.0))));
            }
        }
    }
    let msg = &msg;
    let shard_fut = async {
        let mut out = Vec::new();
        for (p, group) in on_shard {
            let rcpts: Vec<Recipient> = group.iter().map(|&i| recipients[i].clone()).collect();
            let res = match server.ctx.partition(p) {
                Some(part) => part.deliver(&rcpts, msg).await,
                // Closed since (cluster mode: the ownership ended meanwhile).
                None => rcpts
                    .iter()
                    .map(|_| Err(Error::Store(StoreError::NotHere(p.0))))
                    .collect(),
            };
            out.extend(group.into_iter().zip(res));
        }
        out
    };
    let node_fut = async {
        if on_node.is_empty() {
            return Vec::new();
        }
        let rcpts: Vec<Recipient> = on_node.iter().map(|&i| recipients[i].clone()).collect();
        on_node
            .iter()
            .copied()
            .zip(node.deliver(&rcpts, msg).await)
            .collect()
    };
    let any_remote = !remote.is_empty();
    let remote_fut =
        futures_util::future::join_all(remote.into_iter().map(|(addr, group)| async move {
            let accounts: Vec<String> = group.iter().map(|&i| addresses[i].clone()).collect();
            let live = server.live();
            let res = server
                .forwards
                .deliver(
                    &addr,
                    server.cluster_secret().unwrap_or_default(),
                    &live.cfg.hostname,
                    super::forward::Delivery {
                        from,
                        key: key.as_ref(),
                        accounts: &accounts,
                        body: &msg.body,
                    },
                )
                .await;
            let failed = res.iter().filter(|r| r.is_err()).count() as u64;
            server
                .shared
                .metrics
                .forwarded(res.len() as u64 - failed, failed);
            group
                .into_iter()
                .zip(res)
                .map(|(i, r)| (i, r.map(|()| addr.clone())))
                .collect::<Vec<_>>()
        }));
    let ((shard, on_node), remote) = match any_remote {
        true => {
            futures_lite::future::zip(futures_lite::future::zip(shard_fut, node_fut), remote_fut)
                .await
        }
        false => (
            futures_lite::future::zip(shard_fut, node_fut).await,
            Vec::new(),
        ),
    };
    for (i, r) in shard.into_iter().chain(on_node) {
        results[i] = Some(match r {
            Ok(a) => Outcome::Stored(a),
            Err(e) => Outcome::Failed(e),
        });
    }
    for (i, r) in remote.into_iter().flatten() {
        results[i] = Some(match r {
            Ok(addr) => Outcome::Forwarded(addr),
            Err(reply) => Outcome::Refused(reply),
        });
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Outcome::Failed(Error::Failed("no result".into()))))
        .collect()
}

/// The reply of a node that refused a forwarded copy, passed on as it said it.
fn refused_reply(r: &crate::cluster_link::Reply) -> (Reply, &'static str) {
    let reason = match r.code {
        552 => "over_quota",
        550 | 551 | 553 => "no_such_user",
        _ => "storage_unavailable",
    };
    (Reply::new(r.code, None, r.text.clone()), reason)
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
