//! The headers every generated message carries, so `verify` (and IMAP `fetch-body`) can
//! prove a stored message is byte-identical: `X-Loadgen-Sum` (CRC-32 of everything after
//! it) then `X-Loadgen-Id`.

/// Adds the id and checksum headers `verify` looks for.
pub fn stamp(id: &str, msg: &[u8]) -> Vec<u8> {
    let mut body = format!("X-Loadgen-Id: {id}\r\n").into_bytes();
    body.extend_from_slice(msg);
    let sum = crc32fast::hash(&body);
    let mut out = format!("X-Loadgen-Sum: {sum:08x}\r\n").into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Checks a retrieved message: its id, if the stamp is intact.
pub fn check_stamp(stored: &[u8]) -> Option<Result<String, String>> {
    let at = memfind(stored, b"X-Loadgen-Sum: ")?;
    let rest = &stored[at + 15..];
    let eol = memfind(rest, b"\r\n")?;
    let sum = std::str::from_utf8(&rest[..eol]).ok()?.to_string();
    let body = &rest[eol + 2..];
    let id_line = memfind(body, b"\r\n").map(|e| &body[..e])?;
    let id = String::from_utf8_lossy(id_line.strip_prefix(b"X-Loadgen-Id: ")?).to_string();
    let got = format!("{:08x}", crc32fast::hash(body));
    Some(if got == sum { Ok(id) } else { Err(id) })
}

fn memfind(h: &[u8], n: &[u8]) -> Option<usize> {
    memchr::memmem::find(h, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps() {
        let s = stamp("1-2-3", b"Subject: x\r\n\r\nbody\r\n");
        let mut stored = b"Received: by server\r\n".to_vec();
        stored.extend_from_slice(&s);
        assert_eq!(check_stamp(&stored), Some(Ok("1-2-3".to_string())));
        let n = stored.len();
        stored[n - 3] = b'X';
        assert_eq!(check_stamp(&stored), Some(Err("1-2-3".to_string())));
        assert_eq!(check_stamp(b"no stamp"), None);
    }
}
