//! ENVELOPE, BODY and BODYSTRUCTURE (RFC 9051 section 7.5.2) from the stored
//! [`MessageMeta`](crate::mime::meta::MessageMeta). Address lists are parsed here from the
//! raw header text (RFC 5322 section 3.4), leniently: mail is full of broken addresses and a
//! FETCH must still answer.

use super::encode;
use crate::mime::meta::{EnvelopeMeta, PartMeta, MAX_DEPTH};
use crate::mime::raw_text;

/// ```abnf
/// envelope = "(" env-date SP env-subject SP env-from SP env-sender SP env-reply-to SP
///            env-to SP env-cc SP env-bcc SP env-in-reply-to SP env-message-id ")"
/// ```
///
/// Absent Date/Subject/In-Reply-To/Message-ID are NIL, present-but-empty ones the empty
/// string; address fields that are absent or hold no address are NIL, and Sender and
/// Reply-To then take From's value (RFC 9051 section 7.5.2).
pub fn write_envelope(out: &mut Vec<u8>, env: &EnvelopeMeta) {
    let from = addresses(env.from.as_deref());
    let or_from = |v: Vec<Address>| if v.is_empty() { from.clone() } else { v };
    out.push(b'(');
    nstring8(out, env.date.as_deref());
    out.push(b' ');
    nstring8(out, env.subject.as_deref());
    for list in [
        from.clone(),
        or_from(addresses(env.sender.as_deref())),
        or_from(addresses(env.reply_to.as_deref())),
        addresses(env.to.as_deref()),
        addresses(env.cc.as_deref()),
        addresses(env.bcc.as_deref()),
    ] {
        out.push(b' ');
        write_addresses(out, &list);
    }
    out.push(b' ');
    nstring8(out, env.in_reply_to.as_deref());
    out.push(b' ');
    nstring8(out, env.message_id.as_deref());
    out.push(b')');
}

/// A header-derived `string`, with the 8-bit octets the metadata keeps escaped sent as
/// they came (`mime::raw_text`).
fn string8(out: &mut Vec<u8>, s: &str) {
    encode::string(out, &raw_text::octets(s));
}

fn nstring8(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string8(out, s),
        None => encode::nstring(out, None),
    }
}

/// One `address` structure; group markers are addresses with a NIL host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Address {
    pub(crate) name: Option<String>,
    pub(crate) adl: Option<String>,
    pub(crate) mailbox: Option<String>,
    pub(crate) host: Option<String>,
}

/// `env-from = "(" 1*address ")" / nil`, `address = "(" addr-name SP addr-adl SP
/// addr-mailbox SP addr-host ")"`.
fn write_addresses(out: &mut Vec<u8>, list: &[Address]) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in list {
        out.push(b'(');
        for (i, f) in [&a.name, &a.adl, &a.mailbox, &a.host]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                out.push(b' ');
            }
            nstring8(out, f.as_deref());
        }
        out.push(b')');
    }
    out.push(b')');
}

#[derive(Debug, PartialEq)]
enum Token<'a> {
    /// An atom or dot-atom, a domain literal, or any other run of non-special bytes.
    Word(&'a str),
    /// A quoted string's content, quoted-pairs undone.
    Quoted(String),
    Comment(&'a str),
    Special(u8),
}

/// RFC 5322 lexical tokens. Never fails: an unterminated quote or comment runs to the end.
/// Slicing at ASCII delimiters keeps UTF-8 (and the lossy U+FFFD) intact.
fn tokens(s: &str) -> Vec<Token<'_>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'"' => {
                let v;
                (v, i) = crate::mime::unquote(b, i);
                out.push(Token::Quoted(String::from_utf8_lossy(&v).into_owned()));
            }
            b'(' => {
                let start = i + 1;
                i = comment_end(b, i);
                out.push(Token::Comment(&s[start..i.min(b.len())]));
                i += 1;
            }
            b'[' => {
                let start = i;
                while i < b.len() && b[i] != b']' {
                    i += 1;
                }
                i = (i + 1).min(b.len());
                out.push(Token::Word(&s[start..i]));
            }
            c @ (b'<' | b'>' | b'@' | b',' | b':' | b';') => {
                out.push(Token::Special(c));
                i += 1;
            }
            _ => {
                let start = i;
                while i < b.len() && !b" \t\r\n\"(<>@,:;[".contains(&b[i]) {
                    i += 1;
                }
                out.push(Token::Word(&s[start..i]));
            }
        }
    }
    out
}

/// Display-name words joined by single spaces (RFC 5322 section 3.2.5 `phrase`); encoded
/// words stay as sent, which is what IMAP returns.
fn phrase(toks: &[Token<'_>]) -> Option<String> {
    let words: Vec<&str> = toks
        .iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(*w),
            Token::Quoted(q) => Some(q.as_str()),
            _ => None,
        })
        .collect();
    let p = words.join(" ");
    (!p.is_empty()).then_some(p)
}

/// ```abnf
/// address-list = (address *("," address))
/// address      = mailbox / group
/// group        = display-name ":" [group-list] ";" [CFWS]
/// ```
///
/// Groups become a start marker `(NIL NIL "name" NIL)`, their members, and an end marker
/// `(NIL NIL NIL NIL)`; an unterminated group is closed at the end.
pub(crate) fn addresses(raw: Option<&str>) -> Vec<Address> {
    let Some(raw) = raw else { return Vec::new() };
    let toks = tokens(raw);
    let mut out = Vec::new();
    let (mut start, mut angle, mut group) = (0, false, false);
    for (i, t) in toks.iter().enumerate() {
        match t {
            Token::Special(b'<') => angle = true,
            Token::Special(b'>') => angle = false,
            Token::Special(b',') if !angle => {
                out.extend(mailbox(&toks[start..i]));
                start = i + 1;
            }
            Token::Special(b':') if !angle && !group => {
                group = true;
                out.push(Address {
                    mailbox: Some(phrase(&toks[start..i]).unwrap_or_default()),
                    ..Default::default()
                });
                start = i + 1;
            }
            Token::Special(b';') if !angle && group => {
                out.extend(mailbox(&toks[start..i]));
                out.push(Address::default());
                group = false;
                start = i + 1;
            }
            _ => {}
        }
    }
    out.extend(mailbox(&toks[start..]));
    if group {
        out.push(Address::default());
    }
    out
}

/// ```abnf
/// mailbox    = name-addr / addr-spec
/// name-addr  = [display-name] angle-addr
/// angle-addr = [CFWS] "<" [obs-route] addr-spec ">" [CFWS]
/// obs-route  = obs-domain-list ":"
/// addr-spec  = local-part "@" domain
/// ```
///
/// None for an empty element (as in `a@b,,c@d`). Without a display name, a comment gives
/// the name (`ann@example.org (Ann)`), as UW and Dovecot do. A domain-less address gets an
/// empty host, because a NIL host would make it a group marker.
fn mailbox(toks: &[Token<'_>]) -> Option<Address> {
    let lt = toks.iter().position(|t| *t == Token::Special(b'<'));
    let (name, spec) = match lt {
        Some(lt) => {
            let gt = toks[lt..]
                .iter()
                .position(|t| *t == Token::Special(b'>'))
                .map_or(toks.len(), |p| lt + p);
            (phrase(&toks[..lt]), &toks[lt + 1..gt])
        }
        None => {
            let comment = toks.iter().rev().find_map(|t| match t {
                Token::Comment(c) => Some(c.trim().to_string()),
                _ => None,
            });
            (comment.filter(|c| !c.is_empty()), toks)
        }
    };
    // The source route: `@a,@b:` before the addr-spec.
    let (adl, spec) = match spec.iter().position(|t| *t == Token::Special(b':')) {
        Some(colon) => (Some(text(&spec[..colon])), &spec[colon + 1..]),
        None => (None, spec),
    };
    let at = spec.iter().rposition(|t| *t == Token::Special(b'@'));
    let (local, host) = match at {
        Some(at) => (text(&spec[..at]), text(&spec[at + 1..])),
        None => (text(spec), String::new()),
    };
    if lt.is_none() && local.is_empty() && host.is_empty() {
        return None;
    }
    Some(Address {
        name,
        adl: adl.filter(|a| !a.is_empty()),
        mailbox: Some(local),
        host: Some(host),
    })
}

/// A local part, domain or route with comments and folding removed. Quoted local parts are
/// unquoted, as c-client does: the client re-quotes when it writes the address. Adjacent
/// words keep a space, so garbage such as `To: John Smith` stays readable.
fn text(toks: &[Token<'_>]) -> String {
    let mut s = String::new();
    let mut after_word = false;
    for t in toks {
        let w = match t {
            Token::Word(w) => *w,
            Token::Quoted(q) => q.as_str(),
            Token::Special(c) => {
                s.push(*c as char);
                after_word = false;
                continue;
            }
            Token::Comment(_) => continue,
        };
        if after_word {
            s.push(' ');
        }
        s.push_str(w);
        after_word = true;
    }
    s
}

/// ```abnf
/// body            = "(" (body-type-1part / body-type-mpart) ")"
/// body-type-1part = (body-type-basic / body-type-msg / body-type-text) [SP body-ext-1part]
/// body-type-basic = media-basic SP body-fields
/// body-type-msg   = media-message SP body-fields SP envelope SP body SP body-fld-lines
/// body-type-text  = media-text SP body-fields SP body-fld-lines
/// body-fields     = body-fld-param SP body-fld-id SP body-fld-desc SP body-fld-enc SP
///                   body-fld-octets
/// body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
/// body-ext-1part  = body-fld-md5 [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc]]]
/// body-ext-mpart  = body-fld-param [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc]]]
/// ```
///
/// `extended` selects BODYSTRUCTURE (with the extension data) over BODY. Types, subtypes,
/// disposition types and parameter names are upper-cased (they are case-insensitive and
/// the RFC's examples do so); values go out as written.
pub fn write_body_structure(out: &mut Vec<u8>, part: &PartMeta, extended: bool) {
    write_part(out, part, extended, 0);
}

fn write_part(out: &mut Vec<u8>, part: &PartMeta, extended: bool, depth: usize) {
    // The stored meta is already bounded; this also bounds metadata built elsewhere.
    if depth > MAX_DEPTH + 1 {
        return write_part(out, &empty_text(), extended, 0);
    }
    // RFC 2045 section 5.2: a missing or broken type is text/plain.
    let (ty, sub) = part
        .content_type
        .split_once('/')
        .unwrap_or(("text", "plain"));
    out.push(b'(');
    if ty == "multipart" {
        if part.children.is_empty() {
            // `1*body`: a multipart without parts still needs one.
            write_part(out, &empty_text(), extended, depth + 1);
        }
        for c in &part.children {
            write_part(out, c, extended, depth + 1);
        }
        out.push(b' ');
        upper_string(out, sub);
        if extended {
            out.push(b' ');
            write_params(out, &part.params);
            write_ext_tail(out, part);
        }
    } else {
        upper_string(out, ty);
        out.push(b' ');
        upper_string(out, sub);
        out.push(b' ');
        // A text part without a charset is US-ASCII (RFC 2045 section 5.2); said outright,
        // as Dovecot does, so clients need not know the default.
        if ty.eq_ignore_ascii_case("text")
            && !part
                .params
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("charset"))
        {
            let mut params = part.params.clone();
            params.push(("charset".into(), "us-ascii".into()));
            write_params(out, &params);
        } else {
            write_params(out, &part.params);
        }
        for f in [&part.id, &part.description] {
            out.push(b' ');
            nstring8(out, f.as_deref());
        }
        out.push(b' ');
        upper_string(
            out,
            if part.encoding.is_empty() {
                "7BIT"
            } else {
                &part.encoding
            },
        );
        out.push(b' ');
        encode::number(out, part.end.saturating_sub(part.body_start).into());
        if ty == "message" && matches!(sub, "rfc822" | "global") {
            // The grammar needs an envelope and a body even when the nested message could
            // not be described (cut off at MAX_DEPTH): give empty ones.
            let fallback;
            let (env, body) = match part.embedded.as_deref() {
                Some((env, body)) => (env, body),
                None => {
                    fallback = (EnvelopeMeta::default(), empty_text());
                    (&fallback.0, &fallback.1)
                }
            };
            out.push(b' ');
            write_envelope(out, env);
            out.push(b' ');
            write_part(out, body, extended, depth + 1);
        }
        if ty == "text" || ty == "message" && matches!(sub, "rfc822" | "global") {
            out.push(b' ');
            encode::number(out, part.lines.into());
        }
        if extended {
            // body-fld-md5: Content-MD5 is not kept (and is obsolete, RFC 6151).
            out.extend_from_slice(b" NIL");
            write_ext_tail(out, part);
        }
    }
    out.push(b')');
}

fn empty_text() -> PartMeta {
    PartMeta {
        content_type: "text/plain".into(),
        encoding: "7BIT".into(),
        ..Default::default()
    }
}

fn upper_string(out: &mut Vec<u8>, s: &str) {
    encode::string(out, s.to_ascii_uppercase().as_bytes());
}

/// `body-fld-param = "(" string SP string *(SP string SP string) ")" / nil`: never `()`.
fn write_params(out: &mut Vec<u8>, params: &[(String, String)]) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        upper_string(out, k);
        out.push(b' ');
        string8(out, v);
    }
    out.push(b')');
}

/// `SP body-fld-dsp SP body-fld-lang SP body-fld-loc`, shared by both extension forms:
///
/// ```abnf
/// body-fld-dsp  = "(" string SP body-fld-param ")" / nil
/// body-fld-lang = nstring / "(" string *(SP string) ")"
/// body-fld-loc  = nstring
/// ```
fn write_ext_tail(out: &mut Vec<u8>, part: &PartMeta) {
    out.push(b' ');
    match &part.disposition {
        Some((d, params)) => {
            out.push(b'(');
            upper_string(out, d);
            out.push(b' ');
            write_params(out, params);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    let langs: Vec<&str> = part
        .language
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match langs.as_slice() {
        [] => out.extend_from_slice(b"NIL"),
        [one] => string8(out, one),
        many => {
            out.push(b'(');
            for (i, l) in many.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                string8(out, l);
            }
            out.push(b')');
        }
    }
    out.push(b' ');
    nstring8(out, part.location.as_deref());
}

/// The index of the `)` closing the RFC 5322 comment that opens at `b[i]` (nested comments
/// and quoted-pairs included), or `b.len()` when it is never closed.
pub(crate) fn comment_end(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mime::meta::MessageMeta;

    fn envelope(raw: &[u8]) -> String {
        let mut out = Vec::new();
        write_envelope(&mut out, &MessageMeta::parse(raw).envelope);
        String::from_utf8(out).unwrap()
    }

    fn body(raw: &[u8], extended: bool) -> String {
        let mut out = Vec::new();
        write_body_structure(&mut out, &MessageMeta::parse(raw).root, extended);
        String::from_utf8(out).unwrap()
    }

    fn addrs(raw: &str) -> String {
        let mut out = Vec::new();
        write_addresses(&mut out, &addresses(Some(raw)));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn envelope_fields_in_order_with_defaults() {
        let raw = b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nSubject: =?utf-8?q?caf=C3=A9?= au\r\n\tlait\r\nFrom: \"Doe, John\" <john@example.org>\r\nTo: ann@example.net (Ann Other), <bob@example.net>\r\nReply-To: list@example.org\r\nIn-Reply-To: <0@example.org>\r\nMessage-ID: <1@example.org>\r\n\r\nbody\r\n";
        assert_eq!(
            envelope(raw),
            concat!(
                // Unfolding keeps the folding tab, which a quoted string may hold.
                "(\"Mon, 7 Feb 1994 21:52:25 -0800\" \"=?utf-8?q?caf=C3=A9?= au\tlait\" ",
                r#"(("Doe, John" NIL "john" "example.org")) "#,
                r#"(("Doe, John" NIL "john" "example.org")) "#,
                r#"((NIL NIL "list" "example.org")) "#,
                r#"(("Ann Other" NIL "ann" "example.net")(NIL NIL "bob" "example.net")) "#,
                r#"NIL NIL "<0@example.org>" "<1@example.org>")"#
            )
        );
    }

    #[test]
    fn missing_and_empty_headers() {
        assert_eq!(
            envelope(b"\r\nbody"),
            "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
        );
        // Present but empty: the string fields are "", the address fields NIL.
        assert_eq!(
            envelope(b"Subject:\r\nFrom:\r\nTo: \r\nSender: ,\r\n\r\n"),
            r#"(NIL "" NIL NIL NIL NIL NIL NIL NIL NIL)"#
        );
    }

    #[test]
    fn eight_bit_headers_go_out_as_literals() {
        let raw = "Subject: Grüße\r\nFrom: Jörg <j@example.de>\r\n\r\n".as_bytes();
        assert_eq!(
            envelope(raw),
            "(NIL {7}\r\nGrüße (({5}\r\nJörg NIL \"j\" \"example.de\")) \
             (({5}\r\nJörg NIL \"j\" \"example.de\")) (({5}\r\nJörg NIL \"j\" \"example.de\")) \
             NIL NIL NIL NIL NIL)"
        );
    }

    /// Item 12: header bytes that are not UTF-8 (Latin-1 from old mailers) were replaced with
    /// U+FFFD; they go out as sent, in literals, as Dovecot sends them.
    #[test]
    fn header_bytes_that_are_not_utf8_go_out_as_sent() {
        let raw = b"Subject: Caf\xe9\r\nFrom: J\xf6rg <j@example.de>\r\n\
            Content-Type: application/pdf; name=\"r\xe9sum\xe9.pdf\"\r\n\
            Content-Description: \xa3 list\r\n\r\nx\r\n";
        let meta = MessageMeta::parse(raw);
        let mut out = Vec::new();
        write_envelope(&mut out, &meta.envelope);
        let want: &[u8] = b"(NIL {4}\r\nCaf\xe9 (({4}\r\nJ\xf6rg NIL \"j\" \"example.de\")) ";
        assert!(out.starts_with(want), "{}", String::from_utf8_lossy(&out));
        let mut out = Vec::new();
        write_body_structure(&mut out, &meta.root, false);
        let has = |needle: &[u8]| out.windows(needle.len()).any(|w| w == needle);
        assert!(
            has(b"{10}\r\nr\xe9sum\xe9.pdf"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert!(
            has(b"{6}\r\n\xa3 list"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        // Stored and read back, the bytes are the same.
        let back = MessageMeta::decode(&meta.encode()).unwrap();
        assert_eq!(back, meta);
    }

    #[test]
    fn groups() {
        assert_eq!(
            addrs("undisclosed-recipients:;"),
            r#"((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))"#
        );
        assert_eq!(
            addrs(r#"team: a@b.c, "C; D" <c@d.e>;, f@g.h"#),
            concat!(
                r#"((NIL NIL "team" NIL)(NIL NIL "a" "b.c")(NIL NIL "c" "d.e")"#,
                r#"(NIL NIL NIL NIL)(NIL NIL "f" "g.h"))"#
            )
            .replace(r#"(NIL NIL "c" "d.e")"#, r#"("C; D" NIL "c" "d.e")"#)
        );
        // Unterminated: closed at the end.
        assert_eq!(
            addrs("Friends: x@y.z"),
            r#"((NIL NIL "Friends" NIL)(NIL NIL "x" "y.z")(NIL NIL NIL NIL))"#
        );
    }

    #[test]
    fn awkward_addresses() {
        for (raw, want) in [
            (
                r#""Last, First \"Nick\"" <a@b.c>"#,
                r#"(("Last, First \"Nick\"" NIL "a" "b.c"))"#,
            ),
            (
                "John (the man) Q. Public <jqp@x.org>",
                r#"(("John Q. Public" NIL "jqp" "x.org"))"#,
            ),
            (
                "<@r1.net,@r2.net:a@b.c>",
                r#"((NIL "@r1.net,@r2.net" "a" "b.c"))"#,
            ),
            (
                r#""john doe"@example.org"#,
                r#"((NIL NIL "john doe" "example.org"))"#,
            ),
            ("a@[192.0.2.1]", r#"((NIL NIL "a" "[192.0.2.1]"))"#),
            // No domain: an empty host, since a NIL host would mean a group.
            ("root", r#"((NIL NIL "root" ""))"#),
            ("root (Cron Daemon)", r#"(("Cron Daemon" NIL "root" ""))"#),
            ("<>", r#"((NIL NIL "" ""))"#),
            (",, a@b ,", r#"((NIL NIL "a" "b"))"#),
            ("John Smith", r#"((NIL NIL "John Smith" ""))"#),
            (
                "\"unterminated <x@y",
                r#"((NIL NIL "unterminated <x@y" ""))"#,
            ),
            ("Ann <ann@x (comment", r#"(("Ann" NIL "ann" "x"))"#),
            ("@@@", r#"((NIL NIL "@@" ""))"#),
            (
                "=?utf-8?B?w6k=?= <e@x.org>",
                r#"(("=?utf-8?B?w6k=?=" NIL "e" "x.org"))"#,
            ),
            ("", "NIL"),
            ("(just a comment)", "NIL"),
        ] {
            assert_eq!(addrs(raw), want, "{raw}");
        }
    }

    const NESTED: &[u8] = b"From: ann@example.org\r\nSubject: nested\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\npreamble\r\n--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\nau lait\r\n--inner\r\nContent-Type: text/html; charset=utf-8\r\nContent-Language: en\r\n\r\n<p>hi</p>\r\n--inner--\r\n--outer\r\nContent-Type: message/rfc822\r\nContent-Description: forwarded\r\nContent-Disposition: attachment; filename=\"fwd.eml\"\r\n\r\nFrom: \"Bob\" <bob@example.net>\r\nTo: undisclosed-recipients:;\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=b2\r\n\r\n--b2\r\n\r\ninner text\r\n--b2\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <img@x>\r\n\r\niVBORw0KGgo=\r\n--b2--\r\n--outer--\r\n";

    #[test]
    fn nested_body_structure() {
        let inner_env = concat!(
            r#"(NIL "inner" (("Bob" NIL "bob" "example.net")) (("Bob" NIL "bob" "example.net")) "#,
            r#"(("Bob" NIL "bob" "example.net")) ((NIL NIL "undisclosed-recipients" NIL)"#,
            r#"(NIL NIL NIL NIL)) NIL NIL NIL NIL)"#
        );
        assert_eq!(
            body(NESTED, false),
            [
                r#"((("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 18 1)"#,
                r#"("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "7BIT" 9 0) "ALTERNATIVE")"#,
                r#"("MESSAGE" "RFC822" NIL NIL "forwarded" "7BIT" 252 "#,
                inner_env,
                r#" (("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 0)"#,
                r#"("IMAGE" "PNG" NIL "<img@x>" NIL "BASE64" 12) "MIXED") 14) "MIXED")"#,
            ]
            .concat()
        );
        assert_eq!(
            body(NESTED, true),
            [
                r#"((("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 18 1 NIL NIL NIL NIL)"#,
                r#"("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "7BIT" 9 0 NIL NIL "en" NIL)"#,
                r#" "ALTERNATIVE" ("BOUNDARY" "inner") NIL NIL NIL)"#,
                r#"("MESSAGE" "RFC822" NIL NIL "forwarded" "7BIT" 252 "#,
                inner_env,
                r#" (("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 0 NIL NIL NIL NIL)"#,
                r#"("IMAGE" "PNG" NIL "<img@x>" NIL "BASE64" 12 NIL NIL NIL NIL) "MIXED""#,
                r#" ("BOUNDARY" "b2") NIL NIL NIL) 14"#,
                r#" NIL ("ATTACHMENT" ("FILENAME" "fwd.eml")) NIL NIL)"#,
                r#" "MIXED" ("BOUNDARY" "outer") NIL NIL NIL)"#,
            ]
            .concat()
        );
    }

    #[test]
    fn simple_and_empty_bodies() {
        assert_eq!(
            body(b"Subject: x\r\n\r\n", false),
            r#"("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0)"#
        );
        assert_eq!(
            body(b"", true),
            // An empty message has the RFC 2045 defaults, as any header-less part.
            r#"("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)"#
        );
        assert_eq!(
            body(
                b"Content-Type: application/octet-stream\r\n\r\nab\r\n",
                false
            ),
            r#"("APPLICATION" "OCTET-STREAM" NIL NIL NIL "7BIT" 4)"#
        );
    }

    /// Regression: only the first of repeated To/Cc/Bcc fields counted; Dovecot (and the
    /// message's author) mean all of them.
    #[test]
    fn every_occurrence_of_an_address_field_counts() {
        let raw = b"From: a@x.org\r\nCc: b@x.org\r\nTo: t@x.org\r\nCc: c@x.org,\r\n d@x.org\r\nSubject: s\r\n\r\nbody\r\n";
        let env = envelope(raw);
        assert!(
            env.contains(r#"((NIL NIL "b" "x.org")(NIL NIL "c" "x.org")(NIL NIL "d" "x.org"))"#),
            "{env}"
        );
    }

    /// Regression: an RFC 2047-encoded parameter was decoded into its bytes; it is passed
    /// as sent (RFC 2047 words are not allowed in parameters, and IMAP clients decode them
    /// themselves), while an RFC 2231 one is decoded.
    #[test]
    fn parameters_are_passed_as_sent() {
        let raw = b"Content-Type: text/plain; name=\"=?UTF-8?B?w6k=?=\"; charset=utf-8\r\nContent-Disposition: attachment; filename=\"=?UTF-8?B?w6k=?=\"\r\n\r\nx\r\n";
        let b = body(raw, true);
        assert!(
            b.contains(r#"("NAME" "=?UTF-8?B?w6k=?=" "CHARSET" "utf-8")"#),
            "{b}"
        );
        assert!(
            b.contains(r#"("attachment" ("FILENAME" "=?UTF-8?B?w6k=?="))"#)
                || b.contains(r#"("ATTACHMENT" ("FILENAME" "=?UTF-8?B?w6k=?="))"#),
            "{b}"
        );
        let raw = b"Content-Type: text/plain; name*=utf-8''%C3%A9\r\n\r\nx\r\n";
        let b = body(raw, false);
        assert!(b.contains("(\"NAME\" {2}\r\n\u{e9} "), "{b}");
    }

    /// Regression: a text part without a charset parameter reported no parameters; RFC
    /// 2045 says its charset is US-ASCII, and Dovecot says so in BODYSTRUCTURE.
    #[test]
    fn text_without_a_charset_is_us_ascii() {
        assert_eq!(
            body(b"Content-Type: text/html\r\n\r\nhi\r\n", false),
            r#"("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "7BIT" 4 1)"#
        );
        assert_eq!(
            body(
                b"Content-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n",
                false
            ),
            r#"("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 4 1)"#
        );
    }

    #[test]
    fn degenerate_structures_stay_well_formed() {
        let mut out = Vec::new();
        let empty_multipart = PartMeta {
            content_type: "multipart/mixed".into(),
            ..Default::default()
        };
        write_body_structure(&mut out, &empty_multipart, false);
        assert_eq!(
            out,
            br#"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0) "MIXED")"#
        );

        // message/rfc822 with nothing inside still has an envelope and a body.
        out.clear();
        let hollow = PartMeta {
            content_type: "message/rfc822".into(),
            encoding: "7BIT".into(),
            ..Default::default()
        };
        write_body_structure(&mut out, &hollow, false);
        assert_eq!(
            out,
            &br#"("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 0 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0) 0)"#[..]
        );

        // Metadata deeper than any parse produces is cut off, not recursed into.
        let mut deep = empty_multipart.clone();
        for _ in 0..10_000 {
            deep = PartMeta {
                children: vec![deep],
                ..empty_multipart.clone()
            };
        }
        out.clear();
        write_body_structure(&mut out, &deep, true);
        let opens = out.iter().filter(|&&c| c == b'(').count();
        assert_eq!(opens, out.iter().filter(|&&c| c == b')').count());
        assert!(opens < 200);
        // Dropping a 10,000-deep tree recurses too; take it apart iteratively.
        while let Some(c) = deep.children.pop() {
            deep = c;
        }
    }
}
