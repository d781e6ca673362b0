//! FETCH body sections (RFC 9051 section 6.4.5): parsing the text between the brackets of
//! `BODY[...]`/`BINARY[...]`, locating the section's bytes in the raw message through the
//! stored [`MessageMeta`], and removing the Content-Transfer-Encoding for BINARY (RFC 3516).

use std::borrow::Cow;

use super::encode;
use crate::mime::meta::{MessageMeta, PartMeta};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// Part numbers, 1-based; empty for the whole message.
    pub part: Vec<u32>,
    pub text: SectionText,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SectionText {
    /// No specifier: the whole message, or the body of the addressed part.
    Full,
    Header,
    /// Field names as the client wrote them; matched ASCII-case-insensitively.
    HeaderFields {
        not: bool,
        fields: Vec<String>,
    },
    Text,
    /// The MIME header of a part; only after a part number.
    Mime,
}

/// Parses the text between the brackets.
///
/// ```abnf
/// section-spec    = section-msgtext / (section-part ["." section-text])
/// section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list / "TEXT"
/// section-part    = nz-number *("." nz-number)
/// section-text    = section-msgtext / "MIME"
/// header-list     = "(" header-fld-name *(SP header-fld-name) ")"
/// header-fld-name = astring
/// ```
///
/// Keywords are case-insensitive. Field names must be RFC 5322 field names (`ftext`), as
/// atoms or quoted strings; anything else cannot match a header, so it is rejected.
pub fn parse_section(s: &str) -> Result<Section, String> {
    let mut part = Vec::new();
    let mut rest = s;
    loop {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            break;
        }
        let n = &rest[..digits];
        match n.parse::<u32>() {
            Ok(v) if !n.starts_with('0') => part.push(v),
            _ => return Err(format!("bad part number {n:?}")),
        }
        rest = &rest[digits..];
        if rest.is_empty() {
            return Ok(Section {
                part,
                text: SectionText::Full,
            });
        }
        rest = rest
            .strip_prefix('.')
            .ok_or_else(|| format!("bad section {s:?}"))?;
    }
    let upper = rest.to_ascii_uppercase();
    let text = match upper.as_str() {
        "" if part.is_empty() => SectionText::Full,
        "HEADER" => SectionText::Header,
        "TEXT" => SectionText::Text,
        "MIME" if !part.is_empty() => SectionText::Mime,
        _ => {
            let (not, list) = if upper.starts_with("HEADER.FIELDS.NOT ") {
                (true, &rest[18..])
            } else if upper.starts_with("HEADER.FIELDS ") {
                (false, &rest[14..])
            } else {
                return Err(format!("bad section {s:?}"));
            };
            SectionText::HeaderFields {
                not,
                fields: header_list(list)?,
            }
        }
    };
    Ok(Section { part, text })
}

/// `header-list`, each name an atom or a quoted string (literals cannot occur inside the
/// brackets the command parser hands us).
fn header_list(s: &str) -> Result<Vec<String>, String> {
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("bad header list {s:?}"))?;
    let b = inner.as_bytes();
    let mut fields = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' {
            i += 1;
            continue;
        }
        let name = if b[i] == b'"' {
            let mut v = Vec::new();
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                v.extend(b.get(i));
                i += 1;
            }
            if i >= b.len() {
                return Err("unterminated quoted field name".into());
            }
            i += 1;
            v
        } else {
            let start = i;
            while i < b.len() && !b" ()\"".contains(&b[i]) {
                i += 1;
            }
            b[start..i].to_vec()
        };
        // RFC 5322 `field-name = 1*ftext`, bounded like a header line (998 octets).
        let ftext = |c: &u8| (33..=126).contains(c) && *c != b':';
        if name.is_empty() || name.len() > 998 || !name.iter().all(ftext) {
            return Err(format!("bad header field name in {s:?}"));
        }
        fields.push(String::from_utf8_lossy(&name).into_owned());
        if i < b.len() && b[i] != b' ' {
            return Err(format!("bad header list {s:?}"));
        }
    }
    if fields.is_empty() {
        return Err("empty header list".into());
    }
    Ok(fields)
}

/// The section as echoed in the FETCH response (`BODY[` this `]`): keywords upper-case,
/// field names as the client gave them (as atoms when they can be).
pub fn format_section(s: &Section) -> String {
    let mut out: Vec<u8> = Vec::new();
    for (i, n) in s.part.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        out.extend_from_slice(n.to_string().as_bytes());
    }
    if !s.part.is_empty() && s.text != SectionText::Full {
        out.push(b'.');
    }
    match &s.text {
        SectionText::Full => {}
        SectionText::Header => out.extend_from_slice(b"HEADER"),
        SectionText::Text => out.extend_from_slice(b"TEXT"),
        SectionText::Mime => out.extend_from_slice(b"MIME"),
        SectionText::HeaderFields { not, fields } => {
            out.extend_from_slice(if *not {
                b"HEADER.FIELDS.NOT ("
            } else {
                b"HEADER.FIELDS ("
            });
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                // Names are short printable ASCII (parse_section), so never a literal.
                encode::astring(&mut out, f.as_bytes());
            }
            out.push(b')');
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The part at `path`, numbered as in RFC 9051 section 6.4.5: the parts of a multipart in
/// order; part 1 of a non-multipart message is its body; the numbering of a message/rfc822
/// part continues into the message it holds. The empty path gives the root.
pub fn part<'a>(meta: &'a MessageMeta, path: &[u32]) -> Option<&'a PartMeta> {
    let mut cur = &meta.root;
    // Whether `cur` is the top part of a message (where a lone non-multipart is part 1).
    let mut message_top = true;
    for &n in path {
        let idx = (n as usize).checked_sub(1)?;
        if !message_top {
            if let Some(e) = cur.embedded.as_deref() {
                cur = &e.1;
                message_top = true;
            }
        }
        if cur.content_type.starts_with("multipart/") {
            cur = cur.children.get(idx)?;
        } else if !(message_top && idx == 0) {
            return None;
        }
        message_top = false;
    }
    Some(cur)
}

/// The bytes of section `s` of the message `raw`, described by `meta` (RFC 9051 section
/// 6.4.5). HEADER, HEADER.FIELDS[.NOT] and TEXT after a part number need a message/rfc822
/// part and refer to the message inside it.
///
/// None when the section does not exist (no such part, or HEADER/TEXT of a part that is not
/// a message). RFC 9051 does not say what to answer then; the data item is an `nstring`,
/// so the caller should answer `NIL`, e.g. `BODY[4.2] NIL`, as common servers (Gmail among
/// them) do, and the same for BINARY (BINARY.SIZE: 0). MIME of part 1 of a non-multipart
/// message is that message's header, since part 1 is then the message's own body.
pub fn extract<'a>(raw: &'a [u8], meta: &MessageMeta, s: &Section) -> Option<Cow<'a, [u8]>> {
    let at = |a: u32, b: u32| -> &'a [u8] {
        let a = (a as usize).min(raw.len());
        &raw[a..(b as usize).clamp(a, raw.len())]
    };
    let p = part(meta, &s.part)?;
    // The message whose header or text is asked for: the whole one, or a nested one.
    let message = || -> Option<(&PartMeta, u32)> {
        if s.part.is_empty() {
            return Some((&meta.root, raw.len() as u32));
        }
        let e = p.embedded.as_deref()?;
        Some((&e.1, p.end))
    };
    Some(match &s.text {
        SectionText::Full if s.part.is_empty() => Cow::Borrowed(raw),
        SectionText::Full => Cow::Borrowed(at(p.body_start, p.end)),
        SectionText::Mime => Cow::Borrowed(at(p.header_start, p.body_start)),
        SectionText::Header => {
            let (m, _) = message()?;
            Cow::Borrowed(at(m.header_start, m.body_start))
        }
        SectionText::Text => {
            let (m, end) = message()?;
            Cow::Borrowed(at(m.body_start, end))
        }
        SectionText::HeaderFields { not, fields } => {
            let (m, _) = message()?;
            Cow::Owned(header_fields(
                at(m.header_start, m.body_start),
                fields,
                *not,
            ))
        }
    })
}

/// The fields of `header` whose names are (or with `not`, are not) in `names`, with their
/// continuation lines, then the blank line if the header had one: subsetting keeps the
/// delimiting blank line (RFC 9051 section 6.4.5).
fn header_fields(header: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|&c| c == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            out.extend_from_slice(b"\r\n");
            break;
        }
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            // A line without a colon is no field at all: never returned.
            keep = match line.iter().position(|&c| c == b':') {
                Some(colon) => {
                    let name = line[..colon].trim_ascii_end();
                    names
                        .iter()
                        .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
                        != not
                }
                None => false,
            };
        }
        if keep {
            out.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out
}

/// BINARY asked for a part whose Content-Transfer-Encoding we cannot remove: the caller
/// answers `NO [UNKNOWN-CTE]` (RFC 3516 section 4.3, RFC 9051 section 7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownCte;

/// The content of a part body with its Content-Transfer-Encoding (`encoding`, any case)
/// removed, for BINARY[] (RFC 3516). Decoding is lenient, as RFC 2045 advises: characters
/// outside the base64 alphabet are skipped, and a quoted-printable `=` not followed by two
/// hex digits is kept as it is; quoted-printable line breaks decode to CRLF. Text parts sent
/// without a transfer encoding should then go through [`to_crlf`].
pub fn decode_binary(part_body: &[u8], encoding: &str) -> Result<Vec<u8>, UnknownCte> {
    match encoding.to_ascii_uppercase().as_str() {
        "" | "7BIT" | "8BIT" | "BINARY" => Ok(part_body.to_vec()),
        "BASE64" => Ok(base64(part_body)),
        "QUOTED-PRINTABLE" => Ok(quoted_printable(part_body)),
        _ => Err(UnknownCte),
    }
}

/// RFC 2045 section 6.8: non-alphabet characters are ignored, and `=` padding ends the data.
fn base64(b: &[u8]) -> Vec<u8> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine;
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    let mut clean: Vec<u8> = b
        .iter()
        .copied()
        .take_while(|&c| c != b'=')
        .filter(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
        .collect();
    // A lone sixth-of-a-byte cannot be decoded: drop it rather than fail.
    if clean.len() % 4 == 1 {
        clean.pop();
    }
    LENIENT.decode(&clean).unwrap_or_default()
}

/// RFC 2045 section 6.7: `=XX` octets, `=` at the end of a line is a soft line break, and
/// trailing blanks on a line are transport padding and are dropped.
fn quoted_printable(b: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    for line in b.split_inclusive(|&c| c == b'\n') {
        let (text, eol) = match line.strip_suffix(b"\r\n") {
            Some(t) => (t, &b"\r\n"[..]),
            None => match line.strip_suffix(b"\n") {
                Some(t) => (t, &b"\n"[..]),
                None => (line, &b""[..]),
            },
        };
        let text = text.trim_ascii_end();
        let (text, eol) = match text.strip_suffix(b"=") {
            Some(t) => (t, &b""[..]),
            None => (text, eol),
        };
        let mut i = 0;
        while i < text.len() {
            let decoded = match text[i..] {
                [b'=', h, l, ..] => hex(h).zip(hex(l)).map(|(h, l)| (h << 4) | l),
                _ => None,
            };
            match decoded {
                Some(c) => {
                    out.push(c);
                    i += 3;
                }
                None => {
                    out.push(text[i]);
                    i += 1;
                }
            }
        }
        // A hard line break stands for CRLF (RFC 2045 section 6.7), however the stored
        // message ended the line.
        if !eol.is_empty() {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// Bare LFs as CRLF: BINARY must send text parts with CRLF line ends whatever the stored or
/// decoded form (RFC 9051 section 7.5.2, BINARY[]).
pub fn to_crlf(b: &[u8]) -> Cow<'_, [u8]> {
    if !memchr::memchr_iter(b'\n', b).any(|i| i == 0 || b[i - 1] != b'\r') {
        return Cow::Borrowed(b);
    }
    let mut out = Vec::with_capacity(b.len() + b.len() / 32);
    let mut prev = 0;
    for &c in b {
        if c == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(c);
        prev = c;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(s: &str) -> Section {
        parse_section(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn parses_and_formats_sections() {
        for (input, part, text, echo) in [
            ("", vec![], SectionText::Full, ""),
            ("header", vec![], SectionText::Header, "HEADER"),
            ("TEXT", vec![], SectionText::Text, "TEXT"),
            ("1", vec![1], SectionText::Full, "1"),
            ("1.2.mime", vec![1, 2], SectionText::Mime, "1.2.MIME"),
            ("3.Header", vec![3], SectionText::Header, "3.HEADER"),
            (
                "header.fields (From To)",
                vec![],
                SectionText::HeaderFields {
                    not: false,
                    fields: vec!["From".into(), "To".into()],
                },
                "HEADER.FIELDS (From To)",
            ),
            (
                r#"2.HEADER.FIELDS.NOT ("X-A" x%b)"#,
                vec![2],
                SectionText::HeaderFields {
                    not: true,
                    fields: vec!["X-A".into(), "x%b".into()],
                },
                r#"2.HEADER.FIELDS.NOT (X-A "x%b")"#,
            ),
        ] {
            let s = sec(input);
            assert_eq!(s, Section { part, text }, "{input:?}");
            assert_eq!(format_section(&s), echo);
        }
        for bad in [
            "0",
            "1.0",
            "01",
            "4294967296",
            "1.",
            ".1",
            "MIME",
            "HEADER.MIME",
            "1.2.FOO",
            "HEADER.FIELDS",
            "HEADER.FIELDS ()",
            "HEADER.FIELDS From",
            "HEADER.FIELDS (a:b)",
            r#"HEADER.FIELDS ("a b")"#,
            r#"HEADER.FIELDS ("From)"#,
            r#"HEADER.FIELDS (From"x")"#,
            "HEADER.FIELDS (From))",
        ] {
            assert!(parse_section(bad).is_err(), "{bad:?}");
        }
    }

    const MSG: &[u8] = b"From: ann@example.org\r\nSubject: test\r\n  folded subject\r\nX-A: 1\r\nTo: bob@example.net\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\nplain\r\n--inner\r\nContent-Type: text/html\r\n\r\n<b>html</b>\r\n--inner--\r\n--outer\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC/w==\r\n--outer\r\nContent-Type: message/rfc822\r\n\r\nFrom: carl@example.com\r\nSubject: inner\r\n continued\r\n\r\ninner body\r\n--outer--\r\n";

    fn get<'a>(raw: &'a [u8], s: &str) -> Option<Cow<'a, [u8]>> {
        extract(raw, &MessageMeta::parse(raw), &sec(s))
    }

    fn text(raw: &[u8], s: &str) -> String {
        let b = get(raw, s).unwrap_or_else(|| panic!("{s:?} missing"));
        String::from_utf8(b.into_owned()).unwrap()
    }

    #[test]
    fn extracts_sections_of_a_nested_message() {
        let header_end = MSG.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(get(MSG, "").unwrap(), MSG);
        assert_eq!(text(MSG, "HEADER").as_bytes(), &MSG[..header_end]);
        assert_eq!(text(MSG, "TEXT").as_bytes(), &MSG[header_end..]);
        assert_eq!(
            text(MSG, "1"),
            "--inner\r\nContent-Type: text/plain\r\n\r\nplain\r\n--inner\r\nContent-Type: text/html\r\n\r\n<b>html</b>\r\n--inner--"
        );
        assert_eq!(text(MSG, "1.1"), "plain");
        assert_eq!(text(MSG, "1.2"), "<b>html</b>");
        assert_eq!(text(MSG, "1.1.MIME"), "Content-Type: text/plain\r\n\r\n");
        assert_eq!(text(MSG, "2"), "AAEC/w==");
        assert_eq!(
            text(MSG, "2.MIME"),
            "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        );
        assert_eq!(
            text(MSG, "3"),
            "From: carl@example.com\r\nSubject: inner\r\n continued\r\n\r\ninner body"
        );
        assert_eq!(text(MSG, "3.MIME"), "Content-Type: message/rfc822\r\n\r\n");
        assert_eq!(
            text(MSG, "3.HEADER"),
            "From: carl@example.com\r\nSubject: inner\r\n continued\r\n\r\n"
        );
        assert_eq!(text(MSG, "3.TEXT"), "inner body");
        // The message inside is not multipart: its part 1 is its body.
        assert_eq!(text(MSG, "3.1"), "inner body");
        assert_eq!(
            text(MSG, "3.HEADER.FIELDS (SUBJECT)"),
            "Subject: inner\r\n continued\r\n\r\n"
        );
        for missing in [
            "4",
            "1.3",
            "1.1.1",
            "2.1",
            "3.2",
            "3.1.1",
            "2.HEADER",
            "1.TEXT",
            "1.1.HEADER",
            "9.MIME",
        ] {
            assert_eq!(get(MSG, missing), None, "{missing:?}");
        }
    }

    #[test]
    fn header_fields_keep_folding_and_the_blank_line() {
        assert_eq!(
            text(MSG, "HEADER.FIELDS (subject X-A Nonexistent)"),
            "Subject: test\r\n  folded subject\r\nX-A: 1\r\n\r\n"
        );
        assert_eq!(
            text(MSG, "HEADER.FIELDS.NOT (Subject Content-Type)"),
            "From: ann@example.org\r\nX-A: 1\r\nTo: bob@example.net\r\n\r\n"
        );
        assert_eq!(text(MSG, "HEADER.FIELDS (Cc)"), "\r\n");
        // Names match up to the colon, whatever blanks precede it.
        let raw = b"Subject : spaced\r\nnot a field\r\nSubjectX: no\r\n\r\nbody";
        assert_eq!(
            text(raw, "HEADER.FIELDS (SUBJECT)"),
            "Subject : spaced\r\n\r\n"
        );
        assert_eq!(
            text(raw, "HEADER.FIELDS.NOT (SUBJECT)"),
            "SubjectX: no\r\n\r\n"
        );
    }

    #[test]
    fn single_part_and_bodiless_messages() {
        let raw = b"Subject: x\r\n\r\nhello\r\n";
        assert_eq!(text(raw, "1"), "hello\r\n");
        assert_eq!(text(raw, "1.MIME"), "Subject: x\r\n\r\n");
        assert_eq!(text(raw, "TEXT"), "hello\r\n");
        assert_eq!((get(raw, "2"), get(raw, "1.1")), (None, None));
        // No body and no blank line: the header fetches have no blank line either.
        let raw = b"Subject: x\r\nTo: y\r\n";
        assert_eq!(text(raw, "HEADER"), "Subject: x\r\nTo: y\r\n");
        assert_eq!(text(raw, "HEADER.FIELDS (To)"), "To: y\r\n");
        assert_eq!(text(raw, "TEXT"), "");
        assert_eq!(text(raw, "1"), "");
        // A message that is a message/rfc822: part 1 is the message inside.
        let raw = b"Subject: outer\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\nbody";
        assert_eq!(text(raw, "1"), "Subject: in\r\n\r\nbody");
        assert_eq!(text(raw, "1.HEADER"), "Subject: in\r\n\r\n");
        assert_eq!(text(raw, "1.1"), "body");
        assert_eq!(
            text(raw, "HEADER.FIELDS (subject)"),
            "Subject: outer\r\n\r\n"
        );
        assert_eq!(get(raw, "1.2"), None);
        // Metadata that does not fit the bytes (a bug elsewhere) must not panic.
        let meta = MessageMeta::parse(MSG);
        for s in ["", "TEXT", "HEADER", "3.TEXT", "1.1", "2.MIME"] {
            let _ = extract(b"short", &meta, &sec(s));
        }
    }

    #[test]
    fn finds_parts_for_binary() {
        let meta = MessageMeta::parse(MSG);
        assert_eq!(part(&meta, &[]).unwrap().content_type, "multipart/mixed");
        assert_eq!(part(&meta, &[2]).unwrap().encoding, "BASE64");
        assert_eq!(part(&meta, &[3, 1]).unwrap().content_type, "text/plain");
        assert_eq!(part(&meta, &[0]), None);
        assert_eq!(part(&meta, &[5]), None);
        let body = get(MSG, "2").unwrap();
        assert_eq!(decode_binary(&body, "BASE64"), Ok(vec![0, 1, 2, 255]));
    }

    #[test]
    fn decodes_transfer_encodings() {
        for (enc, input, want) in [
            ("base64", &b"AAEC\r\n/w==\r\n"[..], &b"\x00\x01\x02\xff"[..]),
            ("BASE64", b"aGVsbG8", b"hello"),
            ("base64", b"aGV*sbG8=\r\n= trailing junk", b"hello"),
            ("base64", b"QUJDR", b"ABC"),
            ("base64", b"", b""),
            (
                "Quoted-Printable",
                b"caf=C3=A9 au lait  \r\nsoft=\r\nbreak =3d=3D=\t\r\nend",
                "café au lait\r\nsoftbreak ==end".as_bytes(),
            ),
            ("quoted-printable", b"a=ZZb=4\r\n=", b"a=ZZb=4\r\n"),
            // A line break is CRLF in the content (RFC 2045 section 6.7), stored as LF or not.
            (
                "quoted-printable",
                b"lf\nonly=\nline\n",
                b"lf\r\nonlyline\r\n",
            ),
            ("7bit", b"as is=41\r\n", b"as is=41\r\n"),
            ("8BIT", b"\xe9\r\n", b"\xe9\r\n"),
            ("binary", b"\x00\xff", b"\x00\xff"),
        ] {
            assert_eq!(
                decode_binary(input, enc),
                Ok(want.to_vec()),
                "{enc} {input:?}"
            );
        }
        assert_eq!(decode_binary(b"begin 644 x", "x-uuencode"), Err(UnknownCte));
    }

    #[test]
    fn text_lines_become_crlf() {
        assert!(matches!(to_crlf(b"a\r\nb"), Cow::Borrowed(_)));
        assert_eq!(to_crlf(b"\na\nb\r\nc\n").as_ref(), b"\r\na\r\nb\r\nc\r\n");
    }
}
