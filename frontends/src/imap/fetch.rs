//! FETCH responses (RFC 9051 section 7.5.2), rendered from what the store keeps: the index
//! entry, the metadata parsed at delivery, and, only when an item needs it, the message.

use super::command::FetchAttr;
use super::section::{self, Section, SectionText};
use super::{datetime, encode, structure};
use crate::mime::MessageMeta;

/// A FETCH item checked and its section parsed, ready to render for every message.
#[derive(Clone, Debug)]
pub enum Item {
    Flags,
    Uid,
    InternalDate,
    Rfc822Size,
    Envelope,
    Body,
    BodyStructure,
    ModSeq,
    EmailId,
    ThreadId,
    /// RFC822, RFC822.HEADER, RFC822.TEXT (named as asked).
    Rfc822(&'static str, Section, bool),
    Section {
        peek: bool,
        section: Section,
        partial: Option<(u32, u32)>,
    },
    Binary {
        peek: bool,
        size_only: bool,
        section: Section,
        partial: Option<(u32, u32)>,
    },
}

/// What the items need from the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub meta: bool,
    pub body: bool,
    /// A non-PEEK body item: the message becomes \Seen (unless read-only).
    pub sets_seen: bool,
}

fn whole() -> Section {
    Section {
        part: Vec::new(),
        text: SectionText::Full,
    }
}

/// The items to render, with RFC822's forms as the sections they stand for.
pub fn prepare(attrs: &[FetchAttr]) -> Vec<Item> {
    attrs
        .iter()
        .map(|a| match a {
            FetchAttr::Flags => Item::Flags,
            FetchAttr::Uid => Item::Uid,
            FetchAttr::InternalDate => Item::InternalDate,
            FetchAttr::Rfc822Size => Item::Rfc822Size,
            FetchAttr::Envelope => Item::Envelope,
            FetchAttr::Body => Item::Body,
            FetchAttr::BodyStructure => Item::BodyStructure,
            FetchAttr::ModSeq => Item::ModSeq,
            FetchAttr::EmailId => Item::EmailId,
            FetchAttr::ThreadId => Item::ThreadId,
            FetchAttr::Rfc822 => Item::Rfc822("RFC822", whole(), false),
            FetchAttr::Rfc822Header => Item::Rfc822(
                "RFC822.HEADER",
                Section {
                    part: Vec::new(),
                    text: SectionText::Header,
                },
                true,
            ),
            FetchAttr::Rfc822Text => Item::Rfc822(
                "RFC822.TEXT",
                Section {
                    part: Vec::new(),
                    text: SectionText::Text,
                },
                false,
            ),
            FetchAttr::BodySection {
                peek,
                section,
                partial,
            } => Item::Section {
                peek: *peek,
                section: section.clone(),
                partial: *partial,
            },
            FetchAttr::Binary {
                peek,
                size_only,
                section,
                partial,
            } => Item::Binary {
                peek: *peek,
                size_only: *size_only,
                section: section.clone(),
                partial: *partial,
            },
        })
        .collect()
}

pub fn needs(items: &[Item]) -> Needs {
    let mut n = Needs::default();
    for i in items {
        match i {
            Item::Envelope | Item::Body | Item::BodyStructure => n.meta = true,
            Item::Rfc822(_, s, peek) => {
                n.body = true;
                n.meta |= !s.part.is_empty() || s.text != SectionText::Full;
                n.sets_seen |= !peek;
            }
            Item::Section { peek, section, .. } | Item::Binary { peek, section, .. } => {
                n.body = true;
                n.meta |= !section.part.is_empty() || section.text != SectionText::Full;
                n.sets_seen |= !peek;
            }
            _ => {}
        }
    }
    if items.iter().any(|i| matches!(i, Item::Binary { .. })) {
        n.meta = true;
    }
    n
}

/// One message's data for rendering.
pub struct Message<'a> {
    pub seq: u32,
    pub uid: u32,
    pub internal_date: i64,
    pub size: u32,
    pub modseq: u64,
    /// Stable per stored body (OBJECTID EMAILID, RFC 8474).
    pub email_id: u64,
    pub meta: Option<&'a MessageMeta>,
    pub raw: Option<&'a [u8]>,
}

pub use super::section::UnknownCte;

/// Writes `* seq FETCH (...)`. `flags` renders the message's flags; `add_uid` adds UID when
/// the command was a UID FETCH and the items did not ask for it; `add_flags` adds FLAGS (the
/// fetch just set \Seen); `add_modseq` adds MODSEQ for CONDSTORE.
#[allow(clippy::too_many_arguments)]
pub fn write(
    out: &mut Vec<u8>,
    m: &Message,
    items: &[Item],
    flags: &dyn Fn(&mut Vec<u8>),
    add_uid: bool,
    add_flags: bool,
    add_modseq: bool,
) -> Result<(), UnknownCte> {
    out.extend_from_slice(b"* ");
    encode::number(out, m.seq as u64);
    out.extend_from_slice(b" FETCH (");
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b' ');
        }
    };
    let has = |f: &dyn Fn(&Item) -> bool| items.iter().any(f);
    if add_uid && !has(&|i| matches!(i, Item::Uid)) {
        sep(out);
        out.extend_from_slice(b"UID ");
        encode::number(out, m.uid as u64);
    }
    if add_flags && !has(&|i| matches!(i, Item::Flags)) {
        sep(out);
        out.extend_from_slice(b"FLAGS ");
        flags(out);
    }
    let empty = MessageMeta::default();
    let meta = m.meta.unwrap_or(&empty);
    let raw = m.raw.unwrap_or(&[]);
    for item in items {
        sep(out);
        match item {
            Item::Flags => {
                out.extend_from_slice(b"FLAGS ");
                flags(out);
            }
            Item::Uid => {
                out.extend_from_slice(b"UID ");
                encode::number(out, m.uid as u64);
            }
            Item::InternalDate => {
                out.extend_from_slice(b"INTERNALDATE ");
                out.extend_from_slice(datetime::format(m.internal_date).as_bytes());
            }
            Item::Rfc822Size => {
                out.extend_from_slice(b"RFC822.SIZE ");
                encode::number(out, m.size as u64);
            }
            Item::Envelope => {
                out.extend_from_slice(b"ENVELOPE ");
                structure::write_envelope(out, &meta.envelope);
            }
            Item::Body => {
                out.extend_from_slice(b"BODY ");
                structure::write_body_structure(out, &meta.root, false);
            }
            Item::BodyStructure => {
                out.extend_from_slice(b"BODYSTRUCTURE ");
                structure::write_body_structure(out, &meta.root, true);
            }
            Item::ModSeq => {
                out.extend_from_slice(b"MODSEQ (");
                encode::number(out, m.modseq);
                out.push(b')');
            }
            Item::EmailId => {
                out.extend_from_slice(format!("EMAILID (M{:016x})", m.email_id).as_bytes());
            }
            Item::ThreadId => out.extend_from_slice(b"THREADID NIL"),
            Item::Rfc822(name, s, _) => {
                out.extend_from_slice(name.as_bytes());
                out.push(b' ');
                match section::extract(raw, meta, s) {
                    Some(b) => text_literal(out, &b),
                    None => out.extend_from_slice(b"NIL"),
                }
            }
            Item::Section {
                section: s,
                partial,
                ..
            } => {
                out.extend_from_slice(b"BODY[");
                out.extend_from_slice(section::format_section(s).as_bytes());
                out.push(b']');
                let data = section::extract(raw, meta, s);
                write_partial(out, data.as_deref(), *partial);
            }
            Item::Binary {
                size_only,
                section: s,
                partial,
                ..
            } => {
                let data = binary(raw, meta, s)?;
                let name = section::format_section(s);
                if *size_only {
                    out.extend_from_slice(b"BINARY.SIZE[");
                    out.extend_from_slice(name.as_bytes());
                    out.extend_from_slice(b"] ");
                    encode::number(out, data.as_ref().map_or(0, |d| d.len()) as u64);
                } else {
                    out.extend_from_slice(b"BINARY[");
                    out.extend_from_slice(name.as_bytes());
                    out.push(b']');
                    // literal8 for content that may hold NULs (RFC 3516 section 4.2).
                    match partial_slice(data.as_deref(), *partial, out) {
                        None => out.extend_from_slice(b" NIL"),
                        Some(d) => {
                            out.extend_from_slice(if d.contains(&0) { b" ~" } else { b" " });
                            encode::literal(out, d);
                        }
                    }
                }
            }
        }
    }
    if add_modseq && !has(&|i| matches!(i, Item::ModSeq)) {
        sep(out);
        out.extend_from_slice(b"MODSEQ (");
        encode::number(out, m.modseq);
        out.push(b')');
    }
    out.extend_from_slice(b")\r\n");
    Ok(())
}

/// The decoded content of a part for BINARY; the whole message for `BINARY[]`.
fn binary(raw: &[u8], meta: &MessageMeta, s: &Section) -> Result<Option<Vec<u8>>, UnknownCte> {
    if s.part.is_empty() {
        return Ok(Some(raw.to_vec()));
    }
    let Some(p) = section::part(meta, &s.part) else {
        return Ok(None);
    };
    if p.content_type.starts_with("multipart/") {
        return Ok(None);
    }
    let body = section::extract(raw, meta, s).unwrap_or_default();
    let decoded = section::decode_binary(&body, &p.encoding)?;
    // The line ends of a text part sent as it was stored are protocol line ends: CRLF
    // (RFC 9051 4.3.1), also where a client stored bare LFs. Decoded base64 is the content
    // itself, octet for octet, bare LFs included; quoted-printable's line breaks already
    // decode to CRLF (RFC 2045 6.7), and an encoded `=0A` is a bare LF of the content.
    let identity = matches!(
        p.encoding.to_ascii_uppercase().as_str(),
        "" | "7BIT" | "8BIT"
    );
    Ok(Some(if identity && p.content_type.starts_with("text/") {
        section::to_crlf(&decoded).into_owned()
    } else {
        decoded
    }))
}

/// Writes the `<origin>` echo of a partial fetch and returns the slice to send.
fn partial_slice<'a>(
    data: Option<&'a [u8]>,
    partial: Option<(u32, u32)>,
    out: &mut Vec<u8>,
) -> Option<&'a [u8]> {
    let d = data?;
    Some(match partial {
        None => d,
        Some((off, len)) => {
            out.extend_from_slice(format!("<{off}>").as_bytes());
            let a = (off as usize).min(d.len());
            let b = a.saturating_add(len as usize).min(d.len());
            &d[a..b]
        }
    })
}

fn write_partial(out: &mut Vec<u8>, data: Option<&[u8]>, partial: Option<(u32, u32)>) {
    match partial_slice(data, partial, out) {
        // A part that does not exist: NIL (see `section::extract`).
        None => out.extend_from_slice(b" NIL"),
        Some(d) => {
            out.push(b' ');
            text_literal(out, d);
        }
    }
}

/// An ordinary literal, which may not hold NUL (RFC 9051 section 4.3): new mail with NULs
/// is stored re-encoded (`mime::binary`), and any NUL in mail stored before that is sent as
/// 0x80, as Dovecot does. Only BINARY sends NULs, in a literal8.
fn text_literal(out: &mut Vec<u8>, d: &[u8]) {
    if memchr::memchr(0, d).is_none() {
        return encode::literal(out, d);
    }
    let clean: Vec<u8> = d.iter().map(|&c| if c == 0 { 0x80 } else { c }).collect();
    encode::literal(out, &clean);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::command::parse_command;
    use crate::imap::Command;

    fn items(s: &str) -> Vec<Item> {
        let (_, c) = parse_command(format!("a FETCH 1 {s}\r\n").as_bytes()).unwrap();
        let Command::Fetch { attrs, .. } = c else {
            panic!()
        };
        prepare(&attrs)
    }

    fn render(raw: &[u8], spec: &str, add_uid: bool) -> String {
        let meta = MessageMeta::parse(raw);
        let its = items(spec);
        let m = Message {
            seq: 3,
            uid: 42,
            internal_date: 0,
            size: raw.len() as u32,
            modseq: 7,
            email_id: 5,
            meta: Some(&meta),
            raw: Some(raw),
        };
        let mut out = Vec::new();
        write(
            &mut out,
            &m,
            &its,
            &|o| o.extend_from_slice(b"(\\Seen)"),
            add_uid,
            false,
            false,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    const MSG: &[u8] = b"From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n";

    #[test]
    fn items_render_in_order() {
        assert_eq!(
            render(MSG, "(FLAGS RFC822.SIZE INTERNALDATE)", true),
            "* 3 FETCH (UID 42 FLAGS (\\Seen) RFC822.SIZE 41 INTERNALDATE \"01-Jan-1970 00:00:00 +0000\")\r\n"
        );
        assert_eq!(
            render(MSG, "(UID BODY.PEEK[HEADER.FIELDS (Subject)])", true),
            "* 3 FETCH (UID 42 BODY[HEADER.FIELDS (SUBJECT)] {15}\r\nSubject: hi\r\n\r\n)\r\n"
                .replace("(SUBJECT)", "(Subject)")
        );
        assert_eq!(
            render(MSG, "BODY[TEXT]<1.3>", false),
            "* 3 FETCH (BODY[TEXT]<1> {3}\r\nell)\r\n"
        );
        assert_eq!(
            render(MSG, "(BODY[2] BINARY.SIZE[1] MODSEQ)", false),
            "* 3 FETCH (BODY[2] NIL BINARY.SIZE[1] 7 MODSEQ (7))\r\n"
        );
        assert_eq!(
            render(MSG, "RFC822.HEADER", false),
            "* 3 FETCH (RFC822.HEADER {34}\r\nFrom: a@b.example\r\nSubject: hi\r\n\r\n)\r\n"
        );
    }

    /// Regression: decoded base64 of a text part had its bare LFs turned into CRLF, so
    /// BINARY returned other octets than were encoded and BINARY.SIZE was one more per LF.
    #[test]
    fn binary_of_base64_text_is_the_decoded_octets_exactly() {
        const B64: &[u8] = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8Kd29ybGQ=\r\n";
        assert_eq!(
            render(B64, "(BINARY.SIZE[1] BINARY[1])", false),
            "* 3 FETCH (BINARY.SIZE[1] 11 BINARY[1] {11}\r\nhello\nworld)\r\n"
        );
        // Quoted-printable: a line break is CRLF, an encoded =0A a bare LF.
        const QP: &[u8] = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=0Ab\ncd";
        assert_eq!(
            render(QP, "BINARY[1]", false),
            "* 3 FETCH (BINARY[1] {7}\r\na\nb\r\ncd)\r\n"
        );
        // Sent as stored, a text part's bare LFs are line ends: CRLF.
        const RAW: &[u8] = b"Content-Type: text/plain\r\n\r\nx\ny";
        assert_eq!(
            render(RAW, "BINARY[1]", false),
            "* 3 FETCH (BINARY[1] {4}\r\nx\r\ny)\r\n"
        );
    }

    #[test]
    fn needs_say_what_to_read() {
        assert_eq!(needs(&items("(FLAGS UID)")), Needs::default());
        assert_eq!(
            needs(&items("ENVELOPE")),
            Needs {
                meta: true,
                body: false,
                sets_seen: false
            }
        );
        assert_eq!(
            needs(&items("BODY[]")),
            Needs {
                meta: false,
                body: true,
                sets_seen: true
            }
        );
        assert!(!needs(&items("BODY.PEEK[1]")).sets_seen);
        assert!(crate::imap::parse_command(b"a FETCH 1 BINARY[HEADER]").is_err());
    }
}
