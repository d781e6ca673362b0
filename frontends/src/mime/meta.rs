//! The parsed structure of a message: part tree with byte offsets, MIME headers, and the
//! raw envelope headers. Parsed once at delivery with `mail-parser`, stored in a small
//! versioned binary form (little-endian, bounded reads) with the message.
//!
//! Envelope fields are kept as the raw (unfolded) header text, as IMAP ENVELOPE returns them;
//! address lists are parsed by the IMAP layer from that text.

use mail_parser::{HeaderName, MessageParser, MimeHeaders, PartType};
use ringmail_engine::format::{Reader, Writer};
use ringmail_engine::FormatError;

/// Version of the encoding below; a change bumps it (old metadata is then reparsed).
pub const META_VERSION: u8 = 2;
/// Nesting beyond this is stored as an opaque leaf (a hostile message cannot recurse us).
pub const MAX_DEPTH: usize = 32;
const MAX_STR: u32 = 1 << 20;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvelopeMeta {
    pub date: Option<String>,
    pub subject: Option<String>,
    pub from: Option<String>,
    pub sender: Option<String>,
    pub reply_to: Option<String>,
    pub to: Option<String>,
    pub cc: Option<String>,
    pub bcc: Option<String>,
    pub in_reply_to: Option<String>,
    pub message_id: Option<String>,
    /// References (for THREAD=REFERENCES); not part of ENVELOPE. Since version 2.
    pub references: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartMeta {
    /// Byte offsets in the whole message: the part's header, body, and end.
    pub header_start: u32,
    pub body_start: u32,
    pub end: u32,
    /// Lower-case `type/subtype`; `text/plain` when absent (RFC 2045 section 5.2).
    pub content_type: String,
    pub params: Vec<(String, String)>,
    pub id: Option<String>,
    pub description: Option<String>,
    /// Content-Transfer-Encoding, upper-case; `7BIT` when absent.
    pub encoding: String,
    pub disposition: Option<(String, Vec<(String, String)>)>,
    pub language: Option<String>,
    pub location: Option<String>,
    /// Lines in the body (for text/* and message/rfc822).
    pub lines: u32,
    /// Sub-parts of a multipart.
    pub children: Vec<PartMeta>,
    /// The envelope and structure of a message/rfc822 part.
    pub embedded: Option<Box<(EnvelopeMeta, PartMeta)>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageMeta {
    pub envelope: EnvelopeMeta,
    pub root: PartMeta,
}

/// The raw values of the first header of each of `names` in `block`, unfolded, without the
/// trailing CRLF: one pass over the header bytes, whatever the number of names.
fn raw_headers<const N: usize>(block: &[u8], names: [&str; N]) -> [Option<String>; N] {
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
                v.push_str(&String::from_utf8_lossy(line));
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
            if found[i].is_none() {
                found[i] = Some(
                    String::from_utf8_lossy(line[colon + 1..].trim_ascii_start()).into_owned(),
                );
                current = Some(i);
            }
        }
    }
    found.map(|v| v.map(|v| v.trim_end().to_string()))
}

fn envelope(block: &[u8]) -> EnvelopeMeta {
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

fn count_lines(b: &[u8]) -> u32 {
    memchr::memchr_iter(b'\n', b).count() as u32
}

impl MessageMeta {
    /// Parses `raw` once. Broken MIME never fails: what cannot be parsed is described as
    /// a single text/plain part, as RFC 2045 says of missing headers.
    pub fn parse(raw: &[u8]) -> MessageMeta {
        // Only the MIME headers are parsed: the envelope is kept raw (see `envelope`), so
        // addresses, dates and Received lines are not worth parsing here.
        // Content-ID, -Description and -Location are read raw per part (see `part_meta`), so
        // they are not parsed here as well.
        let parser = MessageParser::new()
            .header_content_type(HeaderName::ContentType)
            .header_content_type(HeaderName::ContentDisposition)
            .header_text(HeaderName::ContentTransferEncoding)
            .header_comma_separated(HeaderName::ContentLanguage)
            .default_header_ignore();
        match parser.parse(raw) {
            Some(m) => {
                let root = part_meta(&m, 0, 0, raw, 0);
                let header_end = (root.body_start as usize).min(raw.len());
                MessageMeta {
                    envelope: envelope(&raw[..header_end]),
                    root,
                }
            }
            None => MessageMeta {
                envelope: EnvelopeMeta::default(),
                root: PartMeta {
                    end: raw.len() as u32,
                    content_type: "text/plain".into(),
                    encoding: "7BIT".into(),
                    lines: count_lines(raw),
                    ..Default::default()
                },
            },
        }
    }
}

/// Describes part `id` of `m`, whose raw bytes start at `base` within `whole`.
fn part_meta(
    m: &mail_parser::Message<'_>,
    id: usize,
    base: u32,
    whole: &[u8],
    depth: usize,
) -> PartMeta {
    let Some(p) = m.parts.get(id) else {
        return PartMeta::default();
    };
    let (hs, bs, end) = (
        base + p.offset_header,
        base + p.offset_body,
        base + p.offset_end,
    );
    let slice = |a: u32, b: u32| {
        &whole[(a as usize).min(whole.len())
            ..(b as usize)
                .min(whole.len())
                .max((a as usize).min(whole.len()))]
    };
    let (content_type, params) = match p.content_type() {
        Some(ct) => (
            format!(
                "{}/{}",
                ct.ctype(),
                ct.subtype()
                    .unwrap_or(if ct.ctype().eq_ignore_ascii_case("text") {
                        "plain"
                    } else {
                        "octet-stream"
                    })
            )
            .to_ascii_lowercase(),
            ct.attributes()
                .unwrap_or(&[])
                .iter()
                .map(|a| (a.name.to_string(), a.value.to_string()))
                .collect(),
        ),
        None => (
            "text/plain".to_string(),
            vec![("charset".to_string(), "us-ascii".to_string())],
        ),
    };
    let body = slice(bs, end);
    // IMAP returns these as written in the header, so take them raw.
    let [id, description, location] = raw_headers(
        slice(hs, bs),
        ["Content-ID", "Content-Description", "Content-Location"],
    );
    let mut meta = PartMeta {
        header_start: hs,
        body_start: bs,
        end,
        lines: if content_type.starts_with("text/") || content_type == "message/rfc822" {
            count_lines(body)
        } else {
            0
        },
        content_type,
        params,
        id,
        description,
        encoding: p
            .content_transfer_encoding()
            .unwrap_or("7bit")
            .to_ascii_uppercase(),
        disposition: p.content_disposition().map(|d| {
            (
                d.ctype().to_string(),
                d.attributes()
                    .unwrap_or(&[])
                    .iter()
                    .map(|a| (a.name.to_string(), a.value.to_string()))
                    .collect(),
            )
        }),
        language: p.content_language().as_text().map(str::to_string),
        location,
        ..Default::default()
    };
    if depth >= MAX_DEPTH {
        return meta;
    }
    match &p.body {
        PartType::Multipart(ids) => {
            meta.children = ids
                .iter()
                .map(|&c| part_meta(m, c as usize, base, whole, depth + 1))
                .collect();
        }
        PartType::Message(inner) => {
            // Depending on how the nested message was parsed, its offsets count from its own
            // first byte (the root then starts at 0) or from the outer message's.
            let relative = inner.parts.first().is_none_or(|r| r.offset_header < bs);
            let root = part_meta(inner, 0, if relative { bs } else { 0 }, whole, depth + 1);
            let env = envelope(slice(root.header_start, root.body_start));
            meta.embedded = Some(Box::new((env, root)));
        }
        _ => {}
    }
    meta
}

fn put_opt(w: &mut Writer<'_>, v: &Option<String>) {
    match v {
        Some(s) => {
            w.u8(1);
            w.str(s);
        }
        None => w.u8(0),
    }
}

fn get_opt(r: &mut Reader<'_>) -> Result<Option<String>, FormatError> {
    Ok(match r.u8()? {
        0 => None,
        _ => Some(r.string(MAX_STR)?),
    })
}

fn put_pairs(w: &mut Writer<'_>, v: &[(String, String)]) {
    w.u32(v.len() as u32);
    for (a, b) in v {
        w.str(a);
        w.str(b);
    }
}

fn get_pairs(r: &mut Reader<'_>) -> Result<Vec<(String, String)>, FormatError> {
    let n = r.count(8)?;
    (0..n)
        .map(|_| Ok((r.string(MAX_STR)?, r.string(MAX_STR)?)))
        .collect()
}

impl EnvelopeMeta {
    fn fields(&self) -> [&Option<String>; 11] {
        [
            &self.date,
            &self.subject,
            &self.from,
            &self.sender,
            &self.reply_to,
            &self.to,
            &self.cc,
            &self.bcc,
            &self.in_reply_to,
            &self.message_id,
            &self.references,
        ]
    }
    fn put(&self, w: &mut Writer<'_>) {
        for f in self.fields() {
            put_opt(w, f);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, FormatError> {
        Ok(Self {
            date: get_opt(r)?,
            subject: get_opt(r)?,
            from: get_opt(r)?,
            sender: get_opt(r)?,
            reply_to: get_opt(r)?,
            to: get_opt(r)?,
            cc: get_opt(r)?,
            bcc: get_opt(r)?,
            in_reply_to: get_opt(r)?,
            message_id: get_opt(r)?,
            references: get_opt(r)?,
        })
    }
}

impl PartMeta {
    fn put(&self, w: &mut Writer<'_>) {
        w.u32(self.header_start);
        w.u32(self.body_start);
        w.u32(self.end);
        w.str(&self.content_type);
        put_pairs(w, &self.params);
        put_opt(w, &self.id);
        put_opt(w, &self.description);
        w.str(&self.encoding);
        match &self.disposition {
            Some((d, p)) => {
                w.u8(1);
                w.str(d);
                put_pairs(w, p);
            }
            None => w.u8(0),
        }
        put_opt(w, &self.language);
        put_opt(w, &self.location);
        w.u32(self.lines);
        w.u32(self.children.len() as u32);
        for c in &self.children {
            c.put(w);
        }
        match &self.embedded {
            Some(e) => {
                w.u8(1);
                e.0.put(w);
                e.1.put(w);
            }
            None => w.u8(0),
        }
    }

    fn get(r: &mut Reader<'_>, depth: usize) -> Result<Self, FormatError> {
        if depth > MAX_DEPTH + 1 {
            return Err(FormatError::Invalid {
                what: "message structure",
                detail: "nested too deeply".into(),
            });
        }
        let mut p = PartMeta {
            header_start: r.u32()?,
            body_start: r.u32()?,
            end: r.u32()?,
            content_type: r.string(MAX_STR)?,
            params: get_pairs(r)?,
            id: get_opt(r)?,
            description: get_opt(r)?,
            encoding: r.string(MAX_STR)?,
            ..Default::default()
        };
        p.disposition = match r.u8()? {
            0 => None,
            _ => Some((r.string(MAX_STR)?, get_pairs(r)?)),
        };
        p.language = get_opt(r)?;
        p.location = get_opt(r)?;
        p.lines = r.u32()?;
        let n = r.count(30)?;
        for _ in 0..n {
            p.children.push(PartMeta::get(r, depth + 1)?);
        }
        if r.u8()? != 0 {
            let env = EnvelopeMeta::get(r)?;
            let root = PartMeta::get(r, depth + 1)?;
            p.embedded = Some(Box::new((env, root)));
        }
        Ok(p)
    }
}

impl MessageMeta {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(256);
        let mut w = Writer::new(&mut v);
        w.u8(META_VERSION);
        self.envelope.put(&mut w);
        self.root.put(&mut w);
        v
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(bytes);
        let v = r.u8()?;
        if v != META_VERSION {
            return Err(FormatError::UnsupportedVersion {
                got: v as u32,
                supported: META_VERSION as u32,
            });
        }
        let envelope = EnvelopeMeta::get(&mut r)?;
        let root = PartMeta::get(&mut r, 0)?;
        r.finish()?;
        Ok(Self { envelope, root })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NESTED: &[u8] = b"From: \"Ann\" <ann@example.org>\r\nTo: bob@example.net, carol@example.net\r\nSubject: =?UTF-8?B?w6l0w6k=?=\r\n long subject\r\nMessage-ID: <1@example.org>\r\nReferences: <a@example.org>\r\n\t<b@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\npreamble\r\n--outer\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n--inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\nworld\r\n--inner\r\nContent-Type: text/html\r\n\r\n<p>hello</p>\r\n--inner--\r\n--outer\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"fwd.eml\"\r\n\r\nFrom: dave@example.com\r\nSubject: inner\r\n\r\ninner body\r\n--outer\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <pdf@x>\r\n\r\nJVBERi0=\r\n--outer--\r\n";

    #[test]
    fn nested_structure_with_offsets() {
        let m = MessageMeta::parse(NESTED);
        assert_eq!(
            m.envelope.from.as_deref(),
            Some("\"Ann\" <ann@example.org>")
        );
        assert_eq!(
            m.envelope.subject.as_deref(),
            Some("=?UTF-8?B?w6l0w6k=?= long subject"),
            "raw and unfolded"
        );
        assert_eq!(m.envelope.message_id.as_deref(), Some("<1@example.org>"));
        assert_eq!(
            m.envelope.references.as_deref(),
            Some("<a@example.org>\t<b@example.org>"),
            "raw and unfolded"
        );
        assert_eq!(m.envelope.date, None);
        let r = &m.root;
        assert_eq!(r.content_type, "multipart/mixed");
        assert_eq!(r.children.len(), 3);
        let alt = &r.children[0];
        assert_eq!(alt.content_type, "multipart/alternative");
        assert_eq!(alt.children[0].content_type, "text/plain");
        assert_eq!(
            alt.children[0].params,
            vec![("charset".to_string(), "utf-8".to_string())]
        );
        let text = &alt.children[0];
        assert_eq!(
            &NESTED[text.body_start as usize..text.end as usize],
            b"hello\r\nworld"
        );
        let msg = &r.children[1];
        assert_eq!(msg.content_type, "message/rfc822");
        assert_eq!(msg.disposition.as_ref().unwrap().0, "attachment");
        let (env, inner) = msg.embedded.as_deref().unwrap();
        assert_eq!(env.subject.as_deref(), Some("inner"));
        assert_eq!(env.references, None);
        assert_eq!(
            &NESTED[inner.body_start as usize..inner.end as usize],
            b"inner body"
        );
        let pdf = &r.children[2];
        assert_eq!(
            (pdf.encoding.as_str(), pdf.id.as_deref()),
            ("BASE64", Some("<pdf@x>"))
        );
        assert_eq!(MessageMeta::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn broken_and_empty_messages_still_describe_something() {
        for raw in [
            &b""[..],
            b"no headers at all",
            b"Subject: x\r\n\r\n",
            b"Content-Type: multipart/mixed\r\n\r\nno boundary",
            b"\x00\xff\xfe",
        ] {
            let m = MessageMeta::parse(raw);
            assert!(!m.root.content_type.is_empty(), "{raw:?}");
            assert_eq!(MessageMeta::decode(&m.encode()).unwrap(), m);
        }
        let m = MessageMeta::parse(b"Subject: only\r\n\r\nbody\r\n");
        assert_eq!(m.root.content_type, "text/plain");
        assert_eq!(m.root.encoding, "7BIT");
    }

    #[test]
    fn older_versions_are_refused() {
        let m = MessageMeta::parse(NESTED);
        let mut enc = m.encode();
        assert_eq!(enc[0], META_VERSION);
        // Version 1 had no References after the Message-ID: the caller reparses.
        enc[0] = 1;
        assert!(matches!(
            MessageMeta::decode(&enc),
            Err(FormatError::UnsupportedVersion {
                got: 1,
                supported: 2
            })
        ));
        // A version-2 encoding of a message without References round-trips too.
        let m = MessageMeta::parse(b"Subject: x\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n");
        assert_eq!(m.envelope.references, None);
        assert_eq!(MessageMeta::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn decoding_rejects_corruption_without_panicking() {
        let enc = MessageMeta::parse(NESTED).encode();
        for cut in 0..enc.len() {
            assert!(MessageMeta::decode(&enc[..cut]).is_err());
        }
        for i in 0..enc.len() {
            let mut c = enc.clone();
            c[i] ^= 0xff;
            let _ = MessageMeta::decode(&c);
        }
        // Deep nesting is cut off, not recursed into.
        let mut deep = String::new();
        for i in 0..100 {
            deep.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
            ));
        }
        let m = MessageMeta::parse(deep.as_bytes());
        MessageMeta::decode(&m.encode()).unwrap();
    }
}
