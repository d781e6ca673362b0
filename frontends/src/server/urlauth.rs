//! URLAUTH on the store: mailbox access keys (kept among the mailbox's annotations) and the
//! resolution of an authorized URL, for IMAP URLFETCH and for BURL on submission. A URL may
//! name another account's message: it is resolved on the shard that owns that account.

use std::rc::Rc;

use ringmail_engine::{Partition, Uid};

use super::ShardServer;
use crate::imap::url::{self, BadUrl, ImapUrl};
use crate::imap::urlauth::{self, Access, Requester, KEY_ENTRY};

/// The mailbox's access key, if it has one (GENURLAUTH makes it: `imap/session/urls.rs`).
async fn stored_key(
    part: &Partition,
    account: &str,
    mailbox: &str,
) -> Result<Option<Vec<u8>>, ringmail_engine::Error> {
    let entries = part.annotations(account, Some(mailbox)).await?;
    Ok(entries.get(KEY_ENTRY).cloned())
}

/// Whether `host` (with or without a port) names this server.
pub fn is_ours(server: &ShardServer, host: &str) -> bool {
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    host.eq_ignore_ascii_case(&server.live().cfg.hostname)
        || host.eq_ignore_ascii_case("localhost")
        || host == "127.0.0.1"
}

/// The octets an authorized URL names, if `who` may have them: the URL is absolute and
/// names this server and an owner, its access identifier admits `who`, it has not expired,
/// and its token verifies under the owner's key for the mailbox. `None` for anything else,
/// without saying which (URLFETCH answers NIL, BURL 554).
pub async fn fetch(server: &ShardServer, full: &str, who: Requester<'_>) -> Option<Vec<u8>> {
    let (rump, mech, token) = urlauth::split(full)?;
    if !mech.eq_ignore_ascii_case("INTERNAL") {
        return None;
    }
    let u: ImapUrl = url::parse(full).ok()?;
    if !is_ours(server, u.host.as_deref()?) {
        return None;
    }
    let owner = u.user.clone()?;
    let (access, _, _) = u.urlauth.as_ref()?;
    if !Access::parse(access)?.allows(&who) {
        return None;
    }
    if let Some(e) = &u.expire {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if urlauth::parse_expire(e)? <= now {
            return None;
        }
    }
    let (rump, token) = (rump.to_string(), token.to_string());
    server
        .on_account(&owner.clone(), move |part: Rc<Partition>| async move {
            Ok(resolve(&part, &owner, &u, &rump, &token).await)
        })
        .await
        .ok()
        .flatten()
}

/// On the owner's shard: checks the token and reads the bytes.
async fn resolve(
    part: &Partition,
    owner: &str,
    u: &ImapUrl,
    rump: &str,
    token: &str,
) -> Option<Vec<u8>> {
    let mailbox = url::store_name(u.mailbox.as_deref()?);
    let mailbox = mailbox.as_str();
    // A mailbox without a key (never used, or reset) authorizes nothing.
    let key = stored_key(part, owner, mailbox).await.ok()??;
    if !urlauth::verify(&key, rump, token) {
        return None;
    }
    read(part, owner, mailbox, u).await.ok()
}

/// The octets `u` names in `mailbox` of `account` (the mailbox already resolved and the
/// caller's access checked): the message, or its section as FETCH BODY[section] returns
/// it, cut to `;PARTIAL=`. For CATENATE (the session's own mail) and URLAUTH (the owner's).
pub async fn read(
    part: &Partition,
    account: &str,
    mailbox: &str,
    u: &ImapUrl,
) -> Result<Vec<u8>, BadUrl> {
    let st = part
        .status(account, mailbox)
        .map_err(|_| BadUrl("no such mailbox"))?;
    if u.uidvalidity.is_some_and(|v| v != st.uidvalidity.0) {
        return Err(BadUrl("UIDVALIDITY does not match"));
    }
    let info = part
        .message(account, mailbox, Uid(u.uid))
        .map_err(|_| BadUrl("no such message"))?;
    let unreadable = |_| BadUrl("the message cannot be read now");
    let raw = part.fetch_blob(info.blob).await.map_err(unreadable)?;
    let meta = match u.section {
        Some(_) => Some(match part.fetch_blob_meta(info.blob).await.ok() {
            Some(m) => crate::mime::MessageMeta::decode(&m)
                .unwrap_or_else(|_| crate::mime::MessageMeta::parse(&raw)),
            None => crate::mime::MessageMeta::parse(&raw),
        }),
        None => None,
    };
    url::cut(&raw, meta.as_ref(), u)
}
