//! The SMTP/LMTP connection loop: about one screen around the sans-I/O session.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use glommio::net::TcpStream;
use ringmail_engine::{Error, NewMessage, Recipient, StoreError};

use super::conn::{Conn, Read};
use super::{received, Listener, ShardServer};
use crate::smtp::reply::{r, Reply};
use crate::smtp::{Envelope, Event, Mode, Session, SessionConfig};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub async fn serve(server: Rc<ShardServer>, stream: TcpStream, peer: SocketAddr, kind: Listener) {
    let shared = server.shared.clone();
    let cfg = &shared.cfg;
    let Some(mut conn) = Conn::open(
        stream,
        kind == Listener::Smtps,
        shared.tls.as_ref(),
        &server.watch,
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
    scfg.starttls = shared.tls.is_some();
    scfg.vrfy = cfg.smtp.vrfy;
    scfg.danger_auth_without_tls = cfg.auth.danger_plaintext_without_tls;
    scfg.max_errors = cfg.limits.max_errors;
    scfg.max_auth_failures = cfg.limits.max_auth_failures;
    let mut session = Session::new(scfg);
    let mut out = Vec::with_capacity(4096);
    let mut buf = vec![0u8; 64 << 10];
    session.greeting(&mut out);
    loop {
        while let Some(ev) = session.poll(&mut out) {
            match ev {
                Event::StartTls => {
                    if conn.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                    let Some(acceptor) = &shared.tls else { return };
                    if conn.upgrade(acceptor).await.is_err() {
                        return;
                    }
                    session.tls_started();
                }
                Event::CheckRecipient { address, .. } => {
                    let res = check_recipient(&server, &address, mode).await;
                    session.rcpt_result(res, &mut out);
                }
                Event::Authenticate { user, password } => {
                    let res = server.check_password(user, password).await;
                    session.auth_result(res, &mut out);
                }
                Event::ScramLookup { user } => {
                    let (found, nonce, fake_salt) = server.scram_lookup(&user);
                    session.scram_credentials(found, &nonce, &fake_salt, &mut out);
                }
                Event::Deliver { envelope, message } => {
                    let res = deliver(&server, &envelope, message, mode, &peer).await;
                    session.deliver_result(res, &mut out);
                }
            }
        }
        if session.take_auth_failure() {
            // Whatever the mechanism; the session closes after too many.
            server.auth_failed().await;
        }
        if !out.is_empty() {
            if conn.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if session.is_closed() {
            break;
        }
        let limit = Duration::from_secs(if session.in_data() {
            cfg.limits.data_timeout_secs
        } else {
            cfg.limits.command_timeout_secs
        });
        match conn.read_or_stop(&mut buf, limit).await {
            Read::Closed => break,
            Read::Data(n) => session.input(&buf[..n]),
            Read::TimedOut => {
                session.timeout(&mut out);
                let _ = conn.write_all(&out).await;
                break;
            }
            Read::Stopping => {
                let _ = conn.write_all(b"421 4.3.2 server shutting down\r\n").await;
                break;
            }
        }
    }
    conn.close().await;
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
    match users.resolve(address) {
        Some(u) => match server.ensure_account(&u.address).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "cannot prepare the recipient's account");
                Err(r::local_error())
            }
        },
        None => {
            let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
            if users.is_local_domain(domain) {
                Err(r::no_such_user())
            } else if mode == Mode::Submission {
                Err(r::no_outbound())
            } else {
                Err(r::relay_denied())
            }
        }
    }
}

async fn deliver(
    server: &ShardServer,
    env: &Envelope,
    message: Vec<u8>,
    mode: Mode,
    peer: &SocketAddr,
) -> Vec<Result<String, Reply>> {
    let users = server.users();
    let id = format!(
        "{:x}{:x}",
        server.ctx.shard.0,
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    );
    // Each recipient's account (aliases resolved), delivered once per account.
    let accounts: Vec<Option<String>> = env
        .rcpts
        .iter()
        .map(|a| users.resolve(a).map(|u| u.address.clone()))
        .collect();
    let mut unique: Vec<String> = accounts.iter().flatten().cloned().collect();
    unique.sort();
    unique.dedup();
    // The stored message: the trace header, then the message, in one buffer.
    let mut head = String::with_capacity(512 + message.len());
    received::write_header(
        &mut head,
        env,
        mode,
        peer.ip(),
        &server.shared.cfg.hostname,
        &id,
        SystemTime::now(),
    );
    let mut body = head.into_bytes();
    body.extend_from_slice(&message);
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
    let out = accounts
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
                Err(e) => Err(store_reply(e)),
            }
        })
        .collect();
    server.shared.metrics.delivered(delivered, size * delivered);
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
        if server
            .ctx
            .partitions
            .contains_key(&node.partition_of(&r.account))
        {
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
            let part = &server.ctx.partitions[&p];
            let rcpts: Vec<Recipient> = group.iter().map(|(_, r)| r.clone()).collect();
            let res = part.deliver(&rcpts, &msg).await;
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

/// The one place engine errors become SMTP replies.
fn store_reply(e: &Error) -> Reply {
    match e.store() {
        Some(StoreError::OverQuota { .. }) => Reply::new(552, Some((5, 2, 2)), "mailbox full"),
        Some(StoreError::MessageTooLarge { .. }) => {
            Reply::new(552, Some((5, 3, 4)), "message too large")
        }
        Some(StoreError::NoSuchAccount) | Some(StoreError::NoSuchMailbox) => r::no_such_user(),
        Some(StoreError::ShuttingDown) => Reply::new(421, Some((4, 3, 2)), "server shutting down"),
        _ => {
            tracing::error!(error = %e, "delivery failed");
            r::local_error()
        }
    }
}
