//! Messages with NUL octets, as IMAP's literal8 (RFC 3516) and SMTP's BINARYMIME can bring,
//! made storable for every client.
//!
//! An IMAP literal may hold any octet but NUL (RFC 9051 section 4.3: `CHAR8`); only a
//! literal8 (`~{n}`), which only BINARY fetches may send, can carry NUL. A message stored as
//! received with NULs in it could then not be sent as BODY[] at all. So, as Dovecot does, a
//! leaf part whose body holds a NUL and has no transfer encoding (7bit, 8bit, binary) is
//! stored base64-encoded, with its `Content-Transfer-Encoding` changed to match: BODY[]
//! and BODY[n] are then ordinary text, and BINARY[n] decodes them back to the very octets
//! that were sent. A NUL anywhere else (a header, a preamble, a part that claims to be
//! encoded already) is replaced by 0x80, as Dovecot's parser does.

use super::{MessageMeta, PartMeta};

/// The message to store in place of `raw`, if `raw` has a NUL octet; `None` when it can be
/// stored as it is (most mail: one `memchr` over it).
pub fn without_nul(raw: &[u8]) -> Option<Vec<u8>> {
    memchr::memchr(0, raw)?;
    let meta = MessageMeta::parse(raw);
    let mut leaves = Vec::new();
    binary_leaves(raw, &meta.root, &mut leaves, 0);
    let mut out = Vec::with_capacity(raw.len() * 4 / 3 + 256);
    let mut at = 0;
    for p in leaves {
        let (h, b, e) = (
            p.header_start as usize,
            p.body_start as usize,
            p.end as usize,
        );
        if h < at || b < h || e < b || e > raw.len() {
            // Offsets a parse made do not overlap or run past the message; if they ever
            // did, the part is left as it is (its NULs become 0x80 below).
            continue;
        }
        out.extend_from_slice(&raw[at..h]);
        header_as_base64(&raw[h..b], &mut out);
        base64_lines(&raw[b..e], &mut out);
        at = e;
    }
    out.extend_from_slice(&raw[at..]);
    for c in out.iter_mut().filter(|c| **c == 0) {
        *c = 0x80;
    }
    Some(out)
}

/// The leaf parts, in message order, whose body has a NUL and no transfer encoding.
fn binary_leaves<'m>(raw: &[u8], p: &'m PartMeta, out: &mut Vec<&'m PartMeta>, depth: usize) {
    // Parses are bounded in depth themselves; this is only a second guard.
    if depth > 64 {
        return;
    }
    if !p.children.is_empty() {
        for c in &p.children {
            binary_leaves(raw, c, out, depth + 1);
        }
        return;
    }
    if let Some(inner) = &p.embedded {
        binary_leaves(raw, &inner.1, out, depth + 1);
        return;
    }
    let body = raw
        .get(p.body_start as usize..p.end as usize)
        .unwrap_or_default();
    let unencoded = matches!(p.encoding.as_str(), "" | "7BIT" | "8BIT" | "BINARY");
    if unencoded && memchr::memchr(0, body).is_some() {
        out.push(p);
    }
}

/// A part's header block (its fields and the blank line after them), with any
/// `Content-Transfer-Encoding` field replaced by `base64`.
fn header_as_base64(header: &[u8], out: &mut Vec<u8>) {
    // The blank line that ends the block: the last line (CRLF or LF) with nothing on it.
    let blank = if header.ends_with(b"\r\n\r\n") {
        header.len() - 2
    } else if header.ends_with(b"\n\n") {
        header.len() - 1
    } else if header == b"\r\n" || header == b"\n" || header.is_empty() {
        0
    } else {
        header.len()
    };
    let (fields, end) = header.split_at(blank);
    let mut skipping = false;
    for line in fields.split_inclusive(|&c| c == b'\n') {
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            let name = line.split(|&c| c == b':').next().unwrap_or_default();
            skipping = name
                .trim_ascii()
                .eq_ignore_ascii_case(b"content-transfer-encoding");
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    if !fields.is_empty() && !fields.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n");
    out.extend_from_slice(if end.is_empty() { b"\r\n" } else { end });
}

/// `body` in base64, in lines of 76 characters (RFC 2045 section 6.8), each ending in CRLF.
fn base64_lines(body: &[u8], out: &mut Vec<u8>) {
    use base64::Engine as _;
    for chunk in body.chunks(57) {
        let s = base64::engine::general_purpose::STANDARD.encode(chunk);
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(b: &[u8]) -> Vec<u8> {
        crate::imap::section::decode_binary(b, "BASE64").unwrap()
    }

    #[test]
    fn mail_without_nul_is_stored_as_it_is() {
        assert_eq!(without_nul(b"Subject: x\r\n\r\nplain\r\n"), None);
    }

    #[test]
    fn a_single_part_with_nul_becomes_base64() {
        let raw = b"Subject: bin\r\nContent-Transfer-Encoding: binary\r\n\r\na\x00b\nc";
        let out = without_nul(raw).unwrap();
        assert!(!out.contains(&0));
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("Subject: bin\r\nContent-Transfer-Encoding: base64\r\n\r\n"));
        assert_eq!(text.matches("Content-Transfer-Encoding").count(), 1);
        let meta = MessageMeta::parse(&out);
        assert_eq!(meta.root.encoding, "BASE64");
        let body = &out[meta.root.body_start as usize..meta.root.end as usize];
        assert_eq!(decode(body), b"a\x00b\nc");
    }

    #[test]
    fn only_the_parts_with_nul_change_in_nested_mail() {
        let raw: &[u8] = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nclean\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\x02\xff\r\n--b--\r\n";
        let out = without_nul(raw).unwrap();
        assert!(!out.contains(&0));
        let text = String::from_utf8_lossy(&out).to_string();
        assert!(
            text.contains("Content-Type: text/plain\r\n\r\nclean\r\n--b"),
            "{text}"
        );
        assert!(
            text.contains("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC/w==\r\n\r\n--b--"),
            "{text}"
        );
    }

    #[test]
    fn a_nul_outside_any_body_is_replaced() {
        let raw = b"Subject: a\x00b\r\nContent-Transfer-Encoding: base64\r\n\r\nAA\x00A\r\n";
        let out = without_nul(raw).unwrap();
        assert_eq!(
            out,
            b"Subject: a\x80b\r\nContent-Transfer-Encoding: base64\r\n\r\nAA\x80A\r\n"
        );
    }
}
