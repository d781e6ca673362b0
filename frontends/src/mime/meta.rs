//! The parsed structure of a message: part tree with byte offsets, MIME headers, and the
//! raw envelope headers. Parsed once at delivery (`scan`), stored in a small versioned
//! binary form (little-endian, bounded reads) with the message.
//!
//! Envelope fields are kept as the raw (unfolded) header text, as IMAP ENVELOPE returns them;
//! address lists are parsed by the IMAP layer from that text.

use ringmail_engine::FormatError;
use ringmail_engine::{Reader, Writer};

/// Version of the encoding below; a change bumps it (old metadata is then reparsed).
/// Version 3 encodes as version 2 does, and means more in it: address fields hold every
/// occurrence of their header, and parameters their value as sent (RFC 2047 words not
/// decoded); version 4 keeps header bytes that are not UTF-8 (`raw_text`) where 3
/// replaced them with U+FFFD. Versions 2 and 3 are still read, as they were made.
pub const META_VERSION: u8 = 4;
/// The oldest version still read.
const META_OLDEST: u8 = 2;
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

impl MessageMeta {
    /// Parses `raw` once (see [`scan`](super::scan)). Broken MIME never fails: what cannot
    /// be parsed is described as text, as RFC 2045 says of missing headers.
    pub fn parse(raw: &[u8]) -> MessageMeta {
        super::scan::message(raw)
    }
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
        let envelope = Self::envelope_of(&mut r)?;
        let root = PartMeta::get(&mut r, 0)?;
        r.finish()?;
        Ok(Self { envelope, root })
    }

    /// The envelope alone, for SEARCH, SORT and THREAD: the structure after it is left
    /// unread (the metadata's own checksum was verified when it was read).
    pub fn decode_envelope(bytes: &[u8]) -> Result<EnvelopeMeta, FormatError> {
        Self::envelope_of(&mut Reader::new(bytes))
    }

    fn envelope_of(r: &mut Reader<'_>) -> Result<EnvelopeMeta, FormatError> {
        let v = r.u8()?;
        if !(META_OLDEST..=META_VERSION).contains(&v) {
            return Err(FormatError::UnsupportedVersion {
                got: v as u32,
                supported: META_VERSION as u32,
            });
        }
        EnvelopeMeta::get(r)
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
        assert_eq!(
            MessageMeta::decode_envelope(&m.encode()).unwrap(),
            m.envelope
        );
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
                supported: 4
            })
        ));
        // Version 2 (the same encoding) is read as it is.
        enc[0] = 2;
        assert_eq!(MessageMeta::decode(&enc).unwrap(), m);
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
