//! The part tree of a raw message, found without decoding any body.
//!
//! mail-parser's `Message` decodes every text part to UTF-8 and every base64 or
//! quoted-printable part to bytes; the metadata needs none of that, only headers and
//! offsets, and the decoding was most of the parse (the parse was 11 % of a delivering
//! shard's CPU). So the tree is walked here with mail-parser's own primitives — its header
//! parser (Content-Type and its parameters, RFC 2047 and 2231 included) and its boundary
//! search on a `MessageStream` — which keeps its grammar and its offsets.

use super::meta::{EnvelopeMeta, MessageMeta, PartMeta, MAX_DEPTH};
use mail_parser::parsers::MessageStream;
use mail_parser::{GetHeader, Header, HeaderName, HeaderValue, MessageParser};
use std::sync::OnceLock;

/// Only the MIME headers are parsed: the envelope is kept raw (see `envelope`), and
/// Content-ID, -Description and -Location are read raw per part (IMAP returns them as
/// written). Built once: building it fills a hash map.
fn parser() -> &'static MessageParser {
    static PARSER: OnceLock<MessageParser> = OnceLock::new();
    PARSER.get_or_init(|| {
        MessageParser::new()
            .header_content_type(HeaderName::ContentType)
            .header_content_type(HeaderName::ContentDisposition)
            .header_text(HeaderName::ContentTransferEncoding)
            .header_comma_separated(HeaderName::ContentLanguage)
            .default_header_ignore()
    })
}

/// Describes `raw`. Broken MIME never fails: what cannot be parsed is described as text,
/// as RFC 2045 says of missing headers.
pub fn message(raw: &[u8]) -> MessageMeta {
    let mut w = Walk {
        s: MessageStream::new(raw),
        raw,
    };
    let (mut root, _) = w.part(None, false, 0);
    // Trailing bytes after a closing boundary still belong to the message.
    root.end = raw.len() as u32;
    let header_end = (root.body_start as usize).min(raw.len());
    MessageMeta {
        envelope: envelope(&raw[..header_end]),
        root,
    }
}

struct Walk<'x> {
    s: MessageStream<'x>,
    raw: &'x [u8],
}

impl<'x> Walk<'x> {
    fn slice(&self, from: usize, to: usize) -> &'x [u8] {
        let to = to.min(self.raw.len());
        &self.raw[from.min(to)..to]
    }

    /// The part that starts at the stream's position and runs to the next `--boundary`
    /// (the enclosing multipart's) or, without one, to the end. Leaves the stream just past
    /// that boundary; says whether it was found. `in_digest`: the default type is then
    /// message/rfc822 (RFC 2046 section 5.1.5).
    fn part(&mut self, boundary: Option<&[u8]>, in_digest: bool, depth: usize) -> (PartMeta, bool) {
        let hs = self.s.offset();
        let mut headers: Vec<Header<'x>> = Vec::new();
        let complete = self.s.parse_headers(parser(), &mut headers);
        let bs = match (complete, headers.is_empty()) {
            (true, _) => self.s.offset(),
            // Nothing that reads as a header: it is all body.
            (false, true) => {
                self.s = MessageStream::new(self.raw);
                self.s.skip_bytes(hs);
                hs
            }
            // Headers to the end, no body.
            (false, false) => self.raw.len(),
        };
        let mut meta = describe(&headers, self.slice(hs, bs), in_digest);
        meta.header_start = hs as u32;
        meta.body_start = bs as u32;
        let (ty, sub) = meta.content_type.split_once('/').unwrap_or(("", ""));
        let encoded = matches!(meta.encoding.as_str(), "BASE64" | "QUOTED-PRINTABLE");
        let boundary_param = headers
            .header_value(&HeaderName::ContentType)
            .and_then(HeaderValue::as_content_type)
            .and_then(|ct| ct.attribute("boundary"))
            .filter(|b| !b.is_empty());

        let (end, found) = if depth >= MAX_DEPTH {
            // Deeper nesting stays an opaque leaf: a hostile message cannot recurse us.
            self.leaf_end(boundary)
        } else if let Some(own) = boundary_param.filter(|_| ty == "multipart") {
            if self.s.seek_next_part(own.as_bytes()) {
                self.s.skip_crlf();
                let digest = sub == "digest";
                loop {
                    let (child, child_found) = self.part(Some(own.as_bytes()), digest, depth + 1);
                    meta.children.push(child);
                    if !child_found || self.s.is_multipart_end() || self.s.is_eof() {
                        break;
                    }
                }
                // The epilogue runs to the enclosing boundary.
                match boundary {
                    Some(b) => match self.s.seek_next_part_offset(b) {
                        Some(at) => (at, true),
                        None => {
                            // Runs to the end, so the stream goes there too: the enclosing
                            // part must not find its boundary inside this one.
                            self.s.seek_end();
                            (self.raw.len(), false)
                        }
                    },
                    None => (self.raw.len(), true),
                }
            } else {
                // No first boundary: the body is one opaque part.
                self.leaf_end(boundary)
            }
        } else if ty == "message" && matches!(sub, "rfc822" | "global") && !encoded {
            let (inner, found) = self.part(boundary, false, depth + 1);
            let env = envelope(self.slice(inner.header_start as usize, inner.body_start as usize));
            let end = inner.end as usize;
            meta.embedded = Some(Box::new((env, inner)));
            (end, found)
        } else {
            self.leaf_end(boundary)
        };
        meta.end = end as u32;
        if ty == "text" || meta.content_type == "message/rfc822" {
            meta.lines = count_lines(self.slice(bs, end));
        }
        (meta, found)
    }

    /// Where a part without sub-parts ends: before the line break ahead of `--boundary`.
    /// Leaves the stream just past the delimiter, or at the end when there is none.
    ///
    /// What mail-parser's `seek_part_end` returns, with the delimiter found by memmem rather
    /// than byte by byte (that loop was a fifth of the walk's time): the first `--boundary`
    /// at or after the stream's position, wherever it is in its line; the part ends at the
    /// line break before it (its CR included), or at the dashes when they do not start a
    /// line.
    fn leaf_end(&mut self, boundary: Option<&[u8]>) -> (usize, bool) {
        let start = self.s.offset();
        let Some(b) = boundary else {
            self.s.seek_end();
            return (self.raw.len(), true);
        };
        let mut delimiter = Vec::with_capacity(b.len() + 2);
        delimiter.extend_from_slice(b"--");
        delimiter.extend_from_slice(b);
        let Some(at) = memchr::memmem::find(&self.raw[start..], &delimiter).map(|i| start + i)
        else {
            self.s.seek_end();
            return (self.raw.len(), false);
        };
        self.s.skip_bytes(at + delimiter.len() - start);
        if at > start && self.raw[at - 1] != b'\n' {
            return (at, true);
        }
        let end = match memchr::memrchr(b'\n', &self.raw[start..at]) {
            Some(i) if i > 0 && self.raw[start + i - 1] == b'\r' => start + i - 1,
            Some(i) => start + i,
            None => start,
        };
        (end, true)
    }
}

/// A part's MIME headers; offsets, lines and sub-parts are the caller's.
// A `Vec`, not a slice: mail-parser's `GetHeader` (the last of a repeated header wins) is
// implemented for `Vec` only.
#[allow(clippy::ptr_arg)]
fn describe(headers: &Vec<Header<'_>>, block: &[u8], in_digest: bool) -> PartMeta {
    let value = |name: HeaderName<'static>| headers.header_value(&name);
    let (content_type, params) =
        match value(HeaderName::ContentType).and_then(HeaderValue::as_content_type) {
            Some(ct) => {
                let sub = ct
                    .subtype()
                    .unwrap_or(if ct.ctype().eq_ignore_ascii_case("text") {
                        "plain"
                    } else {
                        "octet-stream"
                    });
                let mut t = String::with_capacity(ct.ctype().len() + 1 + sub.len());
                t.push_str(ct.ctype());
                t.push('/');
                t.push_str(sub);
                t.make_ascii_lowercase();
                (t, pairs(ct.attributes()))
            }
            None if in_digest => ("message/rfc822".to_string(), Vec::new()),
            None => (
                "text/plain".to_string(),
                vec![("charset".to_string(), "us-ascii".to_string())],
            ),
        };
    let [id, description, location, raw_type, raw_disposition] = raw_headers(
        block,
        [
            "Content-ID",
            "Content-Description",
            "Content-Location",
            "Content-Type",
            "Content-Disposition",
        ],
        [false; 5],
    );
    PartMeta {
        content_type,
        params: as_sent(params, raw_type.as_deref()),
        id,
        description,
        encoding: value(HeaderName::ContentTransferEncoding)
            .and_then(HeaderValue::as_text)
            .unwrap_or("7bit")
            .to_ascii_uppercase(),
        disposition: value(HeaderName::ContentDisposition)
            .and_then(HeaderValue::as_content_type)
            .map(|d| {
                (
                    d.ctype().to_string(),
                    as_sent(pairs(d.attributes()), raw_disposition.as_deref()),
                )
            }),
        language: value(HeaderName::ContentLanguage)
            .and_then(HeaderValue::as_text)
            .map(str::to_string),
        location,
        ..Default::default()
    }
}

fn pairs(a: Option<&[mail_parser::Attribute<'_>]>) -> Vec<(String, String)> {
    a.unwrap_or(&[])
        .iter()
        .map(|a| (a.name.to_string(), a.value.to_string()))
        .collect()
}

/// Parameters as the message wrote them where mail-parser decoded RFC 2047 words inside
/// them (which RFC 2047 section 5 does not allow there, and which IMAP returns as sent, as
/// Dovecot does): each parameter without `*` takes its value from `raw`, the header's own
/// text. RFC 2231 parameters (`name*=`) keep their decoded value.
fn as_sent(params: Vec<(String, String)>, raw: Option<&str>) -> Vec<(String, String)> {
    // Only where mail-parser changed a value: RFC 2047 words it decoded, and 8-bit bytes
    // it replaced (`raw_text` kept them in `raw`; they are above U+10FF00).
    let Some(raw) = raw.filter(|r| r.contains("=?") || r.chars().any(|c| c >= '\u{10FF80}')) else {
        return params;
    };
    let sent = raw_params(raw);
    params
        .into_iter()
        .map(|(k, v)| {
            match sent
                .iter()
                .find(|(n, _)| !k.contains('*') && n.eq_ignore_ascii_case(&k))
            {
                Some((_, raw_v)) => (k, raw_v.clone()),
                None => (k, v),
            }
        })
        .collect()
}

/// `type/sub; name=value; name="quoted \" value"` → the (name, value) pairs, quotes and
/// escapes removed, nothing else decoded.
fn raw_params(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = value.as_bytes();
    let mut i = memchr::memchr(b';', b).map_or(b.len(), |p| p + 1);
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t' || b[i] == b';') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b';' {
            i += 1;
        }
        let name = value[start..i].trim().to_string();
        if i >= b.len() || b[i] == b';' {
            continue;
        }
        i += 1; // '='
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        let mut v = Vec::new();
        if b.get(i) == Some(&b'"') {
            (v, i) = super::unquote(b, i);
        } else {
            while i < b.len() && b[i] != b';' {
                v.push(b[i]);
                i += 1;
            }
            while v.last().is_some_and(|c| c.is_ascii_whitespace()) {
                v.pop();
            }
        }
        if !name.is_empty() {
            out.push((name, super::raw_text::text(&v).into_owned()));
        }
    }
    out
}

fn count_lines(b: &[u8]) -> u32 {
    memchr::memchr_iter(b'\n', b).count() as u32
}

/// The raw values of the first header of each of `names` in `block`, unfolded, without the
/// trailing CRLF: one pass over the header bytes, whatever the number of names. Where
/// `join` is set, every occurrence counts, joined with `, ` (a message with two Cc: fields
/// has the addresses of both, as Dovecot reads it).
fn raw_headers<const N: usize>(
    block: &[u8],
    names: [&str; N],
    join: [bool; N],
) -> [Option<String>; N] {
    let mut found: [Option<String>; N] = std::array::from_fn(|_| None);
    // The header being collected (its index in `names`).
    let mut current: Option<usize> = None;
    let mut from = 0;
    let ends = memchr::memchr_iter(b'\n', block).chain(std::iter::once(block.len()));
    for end in ends {
        let line = &block[from.min(end)..end];
        from = end + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
            if let Some(v) = current.and_then(|i| found[i].as_mut()) {
                v.push_str(&super::raw_text::text(line));
            }
            continue;
        }
        current = None;
        if line.is_empty() {
            break;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = line[..colon].trim_ascii_end();
        if let Some(i) = names
            .iter()
            .position(|n| n.as_bytes().eq_ignore_ascii_case(name))
        {
            let value = super::raw_text::text(line[colon + 1..].trim_ascii_start());
            match &mut found[i] {
                None => {
                    found[i] = Some(value.into_owned());
                    current = Some(i);
                }
                Some(v) if join[i] => {
                    v.truncate(v.trim_end().len());
                    if !v.is_empty() {
                        v.push_str(", ");
                    }
                    v.push_str(&value);
                    current = Some(i);
                }
                Some(_) => {}
            }
        }
    }
    for v in found.iter_mut().flatten() {
        v.truncate(v.trim_end().len());
    }
    found
}

/// The envelope headers of the header block `block`, raw.
pub(super) fn envelope(block: &[u8]) -> EnvelopeMeta {
    let [date, subject, from, sender, reply_to, to, cc, bcc, in_reply_to, message_id, references] =
        raw_headers(
            block,
            [
                "Date",
                "Subject",
                "From",
                "Sender",
                "Reply-To",
                "To",
                "Cc",
                "Bcc",
                "In-Reply-To",
                "Message-ID",
                "References",
            ],
            // The address fields: every occurrence.
            [
                false, false, true, true, true, true, true, true, false, false, false,
            ],
        );
    EnvelopeMeta {
        date,
        subject,
        from,
        sender,
        reply_to,
        to,
        cc,
        bcc,
        in_reply_to,
        message_id,
        references,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MimeHeaders, PartType};
    use ringmail_loadgen::mailgen::MailGen;

    /// A part as offsets, type and sub-parts: what the walk must agree on with
    /// mail-parser's full (decoding) parse.
    #[derive(Debug, PartialEq)]
    struct Shape {
        at: (u32, u32, u32),
        ty: String,
        children: Vec<Shape>,
    }

    fn ours(p: &PartMeta) -> Shape {
        let mut children: Vec<Shape> = p.children.iter().map(ours).collect();
        if let Some((_, inner)) = p.embedded.as_deref() {
            children.push(ours(inner));
        }
        Shape {
            at: (p.header_start, p.body_start, p.end),
            ty: p.content_type.clone(),
            children,
        }
    }

    fn theirs(m: &mail_parser::Message<'_>, id: usize, base: u32) -> Shape {
        let p = &m.parts[id];
        let ty = p.content_type().map_or("text/plain".to_string(), |ct| {
            format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")).to_ascii_lowercase()
        });
        let bs = base + p.offset_body;
        let children = match &p.body {
            PartType::Multipart(ids) => ids.iter().map(|&c| theirs(m, c as usize, base)).collect(),
            PartType::Message(inner) => {
                // Its offsets count from its own first byte or from the outer message's.
                let relative = inner.parts[0].offset_header < bs;
                vec![theirs(inner, 0, if relative { bs } else { 0 })]
            }
            _ => Vec::new(),
        };
        Shape {
            at: (base + p.offset_header, bs, base + p.offset_end),
            ty,
            children,
        }
    }

    fn agree(raw: &[u8]) {
        let full = MessageParser::default().parse(raw).expect("parses");
        let mut want = theirs(&full, 0, 0);
        want.at.2 = raw.len() as u32;
        assert_eq!(
            ours(&message(raw).root),
            want,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }

    const NESTED: &[u8] = b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\npreamble\r\n--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\nworld\r\n--inner\r\nContent-Type: text/html\r\n\r\n<p>hello</p>\r\n--inner--\r\nepilogue\r\n--outer\r\nContent-Type: message/rfc822\r\n\r\nFrom: dave@example.com\r\nContent-Type: multipart/mixed; boundary=\"deep\"\r\n\r\n--deep\r\n\r\ndeep text\r\n--deep--\r\n--outer\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--outer--\r\ntrailer\r\n";

    #[test]
    fn offsets_and_tree_agree_with_the_full_parse() {
        agree(NESTED);
        agree(b"Subject: plain\r\n\r\nbody\r\n");
        agree(b"Subject: no body\r\n");
        agree(b"Content-Type: multipart/mixed; boundary=b\r\n\r\nno boundary at all\r\n");
        agree(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nunclosed\r\n");
        agree(b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nbare LF\n--b--\n");
        let mut gen = MailGen::new(7);
        for _ in 0..200 {
            agree(&gen.message());
        }
    }

    /// The memmem search ends a leaf where mail-parser's byte loop does, and leaves the
    /// stream at the same place, from every start in inputs dense in dashes and line breaks.
    #[test]
    fn leaf_end_agrees_with_seek_part_end() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..3000 {
            let raw: Vec<u8> = (0..next() % 48)
                .map(|_| b"-\r\nab"[(next() % 5) as usize])
                .collect();
            let boundary: &[u8] = [&b"a"[..], b"ab", b"-a", b"b-"][(next() % 4) as usize];
            for start in 0..=raw.len() {
                let mut theirs = MessageStream::new(&raw);
                theirs.skip_bytes(start);
                let (end, found) = theirs.seek_part_end(Some(boundary));
                let mut w = Walk {
                    s: MessageStream::new(&raw),
                    raw: &raw,
                };
                w.s.skip_bytes(start);
                assert_eq!(
                    w.leaf_end(Some(boundary)),
                    (end.min(raw.len()), found),
                    "{:?} from {start}, boundary {:?}",
                    String::from_utf8_lossy(&raw),
                    String::from_utf8_lossy(boundary)
                );
                assert_eq!(w.s.offset(), theirs.offset());
            }
        }
    }

    #[test]
    fn digest_parts_default_to_messages() {
        let raw = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nFrom: x@example.org\r\nSubject: one\r\n\r\nfirst\r\n--d\r\nContent-Type: text/plain\r\n\r\nnote\r\n--d--\r\n";
        let m = message(raw);
        let [first, note] = &m.root.children[..] else {
            panic!("two parts: {:?}", m.root)
        };
        assert_eq!(first.content_type, "message/rfc822");
        let (env, inner) = first.embedded.as_deref().expect("parsed inline");
        assert_eq!(env.subject.as_deref(), Some("one"));
        assert_eq!(
            &raw[inner.body_start as usize..inner.end as usize],
            b"first"
        );
        assert_eq!(note.content_type, "text/plain");
        assert!(note.embedded.is_none());
    }

    #[test]
    fn an_encoded_message_part_stays_opaque() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nRnJvbTogeAoKYm9keQo=\r\n--b--\r\n";
        let part = &message(raw).root.children[0];
        assert_eq!(
            (part.content_type.as_str(), part.encoding.as_str()),
            ("message/rfc822", "BASE64")
        );
        assert!(part.embedded.is_none());
        assert_eq!(
            &raw[part.body_start as usize..part.end as usize],
            b"RnJvbTogeAoKYm9keQo="
        );
    }

    #[test]
    fn nesting_past_the_limit_is_a_leaf() {
        let mut raw = Vec::new();
        for i in 0..MAX_DEPTH + 5 {
            raw.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n")
                    .as_bytes(),
            );
        }
        raw.extend_from_slice(b"\r\nleaf\r\n");
        let mut depth = 0;
        let mut p = &message(&raw).root;
        while let Some(c) = p.children.first() {
            p = c;
            depth += 1;
        }
        assert_eq!(depth, MAX_DEPTH);
    }

    /// Every part's offsets lie within the message and in order, whatever was cut off.
    /// Found by the `mime_parse` fuzz target (fuzz/regressions/mime_parse/): a multipart
    /// reusing its parent's boundary ran to the end of the message while its parent ended
    /// before it (the parent searched for its own delimiter from where the child's
    /// search had failed), so BODY[1.1] reached past BODY[1].
    #[test]
    fn a_part_never_ends_after_its_parent() {
        fn check(p: &PartMeta, end: u32) {
            assert!(p.end <= end, "{p:?} ends after {end}");
            for c in &p.children {
                check(c, p.end);
            }
        }
        let raw = b"Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n--outer\r\n\
            Content-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n--inner\r\n\
            Content-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n--inner\r\n\r\n\
            a\r\n--inner--\r\n--outer\r\n\r\nb\r\n--outer--\r\n";
        let m = message(raw);
        check(&m.root, raw.len() as u32);
        assert_eq!(
            m.root.children[0].children[0].content_type,
            "multipart/alternative"
        );
    }

    #[test]
    fn truncated_messages_have_sane_offsets() {
        fn check(p: &PartMeta, len: u32) {
            assert!(p.header_start <= p.body_start && p.body_start <= p.end && p.end <= len);
            p.children.iter().for_each(|c| check(c, len));
            if let Some((_, inner)) = p.embedded.as_deref() {
                check(inner, len);
            }
        }
        for cut in 0..NESTED.len() {
            check(&message(&NESTED[..cut]).root, cut as u32);
        }
    }
}
