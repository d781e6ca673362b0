//! Finding acknowledged messages over IMAP: EXAMINE INBOX, one `UID FETCH 1:*` of every
//! message's `X-Loadgen-Id` header, then the bodies of those with a wanted id, a hundred
//! UIDs per FETCH.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use crate::client::ClientError;
use crate::imap::conn::ImapConn;
use crate::imap::values::{self, Fetch, Value};
use crate::tls::Tls;

/// The stored messages of `user` whose id is one of `ids`.
pub(super) fn read_ids(
    imap: SocketAddr,
    tls: Option<&Tls>,
    user: &str,
    password: &str,
    ids: &[String],
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, ClientError> {
    let mut c = ImapConn::connect_tls(imap, timeout, tls)?;
    c.login(user, password)?;
    let mut out = Vec::new();
    if c.examine("INBOX")? > 0 {
        let want: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let headers = c.command(
            "fetch-ids",
            "UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (X-Loadgen-Id)])",
        )?;
        let mut uids = Vec::new();
        for r in &headers {
            let Some(f) = fetch(r)? else { continue };
            let header = f
                .items
                .iter()
                .find(|(n, _)| n.starts_with("BODY[HEADER.FIELDS"))
                .map(|(_, v)| v);
            if let (Some(uid), Some(Value::Str(h))) = (f.number("UID"), header) {
                if header_id(h).is_some_and(|id| want.contains(id)) {
                    uids.push(uid);
                }
            }
        }
        for chunk in uids.chunks(100) {
            let set: Vec<String> = chunk.iter().map(u64::to_string).collect();
            let cmd = format!("UID FETCH {} (BODY.PEEK[])", set.join(","));
            for r in &c.command("fetch-bodies", &cmd)? {
                if let Some(Value::Str(b)) = fetch(r)?.as_ref().and_then(|f| f.get("BODY[]")) {
                    out.push(b.to_vec());
                }
            }
        }
    }
    c.logout()?;
    Ok(out)
}

fn fetch(r: &crate::imap::framer::Response) -> Result<Option<Fetch<'_>>, ClientError> {
    values::fetch(&r.raw).map_err(|e| ClientError::Garbage(format!("{e}: {}", r.first_line())))
}

/// The value of the `X-Loadgen-Id` field in a header block.
fn header_id(h: &[u8]) -> Option<&str> {
    const NAME: &[u8] = b"x-loadgen-id:";
    h.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() < NAME.len() || !line[..NAME.len()].eq_ignore_ascii_case(NAME) {
            return None;
        }
        std::str::from_utf8(&line[NAME.len()..]).ok().map(str::trim)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_header_fields() {
        assert_eq!(header_id(b"X-Loadgen-Id: 1-2-3\r\n\r\n"), Some("1-2-3"));
        assert_eq!(header_id(b"x-loadgen-id:7-0-1\r\n\r\n"), Some("7-0-1"));
        assert_eq!(header_id(b"\r\n"), None);
        assert_eq!(header_id(b"X-Loadgen-Sum: 00\r\n"), None);
    }
}
