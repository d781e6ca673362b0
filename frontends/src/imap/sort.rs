//! SORT (RFC 5256 sections 2 and 3) with the DISPLAYFROM / DISPLAYTO keys (RFC 5957): the
//! command grammar, the sort over the messages a search selected, base subject extraction
//! (RFC 5256 section 2.1, shared with THREAD) and the response encoder.
//!
//! Strings compare with i;ascii-casemap (RFC 4790 section 9.2, the default collation):
//! octet by octet after mapping `a`-`z` to upper case. Messages that compare equal on every
//! criterion keep the order they were given in, which the caller makes the mailbox order.

use std::cmp::Ordering;

use mail_parser::parsers::MessageStream;
use mail_parser::HeaderValue;

use super::command::{P, R};
use super::search::{decode_header, parse_search_key_list, SearchKey};
use super::structure;
use crate::mime::PackedEnvelope;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// INTERNALDATE.
    Arrival,
    /// addr-mailbox of the first Cc address.
    Cc,
    /// The sent date (RFC 5256 section 2.2): Date: in UTC, else INTERNALDATE.
    Date,
    /// addr-mailbox of the first From address.
    From,
    /// RFC822.SIZE.
    Size,
    /// The base subject (RFC 5256 section 2.1).
    Subject,
    /// addr-mailbox of the first To address.
    To,
    /// The display name of the first From address (RFC 5957).
    DisplayFrom,
    /// The display name of the first To address (RFC 5957).
    DisplayTo,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortCriterion {
    pub reverse: bool,
    pub key: SortKey,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortCommand {
    /// ESORT (RFC 5267 section 3): `RETURN (...)` asks for an ESEARCH response in sort
    /// order; `None` for the classic `* SORT`.
    pub ret: Option<Vec<super::search::ReturnOpt>>,
    pub criteria: Vec<SortCriterion>,
    /// As given; the caller answers `NO [BADCHARSET (UTF-8 US-ASCII)]` unless
    /// [`charset_supported`](super::search::charset_supported).
    pub charset: String,
    /// Implicitly ANDed, as for SEARCH.
    pub keys: Vec<SearchKey>,
}

/// ```text
/// sort            = ["UID" SP] "SORT" [search-return-opts] SP sort-criteria SP search-criteria
/// sort-criteria   = "(" sort-criterion *(SP sort-criterion) ")"
/// sort-criterion  = ["REVERSE" SP] sort-key
/// sort-key        = "ARRIVAL" / "CC" / "DATE" / "FROM" / "SIZE" / "SUBJECT" / "TO" /
///                   "DISPLAYFROM" / "DISPLAYTO"
/// search-criteria = charset 1*(SP search-key)
/// ```
/// Called after `SORT `; stops at the CRLF (the caller checks the end).
pub(crate) fn parse_sort(p: &mut P) -> R<SortCommand> {
    let ret = super::search::parse_return_opts(p)?;
    if !p.eat(b'(') {
        return p.err("SORT needs a parenthesized list of sort criteria");
    }
    if p.peek() == Some(b')') {
        return p.err("SORT needs at least one sort criterion");
    }
    let mut criteria = vec![criterion(p)?];
    while !p.eat(b')') {
        p.sp()?;
        criteria.push(criterion(p)?);
    }
    p.sp()?;
    let charset = parse_charset(p)?;
    if p.at_end() {
        return p.err("SORT needs a charset and search keys");
    }
    p.sp()?;
    Ok(SortCommand {
        ret,
        criteria,
        charset,
        keys: parse_search_key_list(p)?,
    })
}

fn criterion(p: &mut P) -> R<SortCriterion> {
    let mut word = p.atom()?.to_ascii_uppercase();
    let reverse = word == "REVERSE";
    if reverse {
        p.sp()?;
        word = p.atom()?.to_ascii_uppercase();
    }
    let key = match word.as_str() {
        "ARRIVAL" => SortKey::Arrival,
        "CC" => SortKey::Cc,
        "DATE" => SortKey::Date,
        "FROM" => SortKey::From,
        "SIZE" => SortKey::Size,
        "SUBJECT" => SortKey::Subject,
        "TO" => SortKey::To,
        "DISPLAYFROM" => SortKey::DisplayFrom,
        "DISPLAYTO" => SortKey::DisplayTo,
        other => return p.err(format!("unknown sort criterion {other}")),
    };
    Ok(SortCriterion { reverse, key })
}

/// `charset = atom / quoted` (a literal is accepted too), lossily decoded.
pub(crate) fn parse_charset(p: &mut P) -> R<String> {
    if p.at_end() {
        return p.err("expected a charset");
    }
    let b = p.astring()?;
    Ok(String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// One message as SORT sees it.
#[derive(Clone, Copy)]
pub struct SortItem<'a> {
    /// What the response lists: the sequence number, or the UID for UID SORT.
    pub id: u32,
    pub size: u32,
    /// Unix seconds.
    pub internal_date: i64,
    pub envelope: &'a PackedEnvelope,
}

/// The value one criterion compares.
enum Value {
    Num(i64),
    /// Already mapped for i;ascii-casemap.
    Text(Vec<u8>),
}

fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Num(a), Value::Num(b)) => a.cmp(b),
        (Value::Text(a), Value::Text(b)) => a.cmp(b),
        // One criterion always yields the same kind.
        (Value::Num(_), Value::Text(_)) => Ordering::Less,
        (Value::Text(_), Value::Num(_)) => Ordering::Greater,
    }
}

/// i;ascii-casemap: `a`-`z` become upper case, everything else compares as octets.
pub(crate) fn casemap(s: &str) -> Vec<u8> {
    s.bytes().map(|b| b.to_ascii_uppercase()).collect()
}

fn value(item: &SortItem, key: SortKey) -> Value {
    let env = item.envelope;
    match key {
        SortKey::Arrival => Value::Num(item.internal_date),
        SortKey::Date => Value::Num(sent_date(item.envelope, item.internal_date)),
        SortKey::Size => Value::Num(item.size.into()),
        SortKey::Subject => Value::Text(casemap(&base_subject(env.subject().unwrap_or_default()))),
        SortKey::From => Value::Text(casemap(&first_mailbox(env.from()))),
        SortKey::To => Value::Text(casemap(&first_mailbox(env.to()))),
        SortKey::Cc => Value::Text(casemap(&first_mailbox(env.cc()))),
        SortKey::DisplayFrom => Value::Text(casemap(&display_name(env.from()))),
        SortKey::DisplayTo => Value::Text(casemap(&display_name(env.to()))),
    }
}

/// Sorts `items` (given in mailbox order) by `criteria`, RFC 5256 section 3: each criterion
/// in turn, REVERSE turning that one around, and messages equal on all of them left in the
/// order given. Every message's values are computed once, not per comparison.
pub fn sort(items: &mut [SortItem], criteria: &[SortCriterion]) {
    let mut keyed: Vec<(Vec<Value>, SortItem)> = items
        .iter()
        .map(|it| (criteria.iter().map(|c| value(it, c.key)).collect(), *it))
        .collect();
    // A stable sort: ties stay in mailbox order whatever the criteria's directions.
    keyed.sort_by(|(a, _), (b, _)| {
        for ((x, y), c) in a.iter().zip(b).zip(criteria) {
            let o = cmp_values(x, y);
            let o = if c.reverse { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
    for (slot, (_, it)) in items.iter_mut().zip(keyed) {
        *slot = it;
    }
}

/// `* SORT 2 3 6` CRLF (`* SORT` CRLF when nothing matched).
pub fn write_sort(out: &mut Vec<u8>, ids: &[u32]) {
    out.extend_from_slice(b"* SORT");
    for id in ids {
        out.push(b' ');
        out.extend_from_slice(id.to_string().as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// The Date: header as Unix seconds (UTC), when present, parseable and plausible.
fn header_date(v: &str) -> Option<i64> {
    let mut b = Vec::with_capacity(v.len() + 1);
    b.extend_from_slice(v.as_bytes());
    b.push(b'\n');
    match MessageStream::new(&b).parse_date() {
        HeaderValue::DateTime(d) if d.is_valid() => Some(d.to_timestamp()),
        _ => None,
    }
}

/// The sent date (RFC 5256 section 2.2): the Date: header in UTC, or the internal date when
/// that is missing or cannot be parsed.
pub fn sent_date(envelope: &PackedEnvelope, internal_date: i64) -> i64 {
    envelope
        .date()
        .and_then(header_date)
        .unwrap_or(internal_date)
}

/// addr-mailbox of the first address as ENVELOPE gives it (for a group, its name), or ""
/// when the field is absent or holds no address.
fn first_mailbox(raw: Option<&str>) -> String {
    structure::addresses(raw)
        .into_iter()
        .next()
        .and_then(|a| a.mailbox)
        .unwrap_or_default()
}

/// RFC 5957 section 3: the first address's display name with encoded words decoded, else
/// `mailbox@host`, else the mailbox (a group's name, or a domain-less address), else "".
fn display_name(raw: Option<&str>) -> String {
    let Some(a) = structure::addresses(raw).into_iter().next() else {
        return String::new();
    };
    if let Some(name) = &a.name {
        let d = decode_header(name.as_bytes());
        let d = d.trim();
        if !d.is_empty() {
            return d.to_string();
        }
    }
    match (a.mailbox, a.host) {
        (Some(m), Some(h)) if !h.is_empty() => format!("{m}@{h}"),
        (Some(m), _) => m,
        (None, _) => String::new(),
    }
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// `subj-blob = "[" *BLOBCHAR "]" *WSP` at the start of `s`: the text after it. Any
/// character but the brackets counts as a BLOBCHAR, so list tags in UTF-8 are blobs too.
fn strip_blob(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('[')?;
    let end = rest.find(['[', ']'])?;
    if rest.as_bytes()[end] != b']' {
        return None;
    }
    Some(rest[end + 1..].trim_start_matches(' '))
}

/// One `subj-leader = (*subj-blob subj-refwd) / WSP` at the start of `s`, where
/// `subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"`. Sets `reply` for a refwd.
fn strip_leader<'s>(s: &'s str, reply: &mut bool) -> Option<&'s str> {
    if let Some(r) = s.strip_prefix(' ') {
        return Some(r);
    }
    let mut r = s;
    while r.starts_with('[') {
        r = strip_blob(r)?;
    }
    r = if starts_with_ci(r, "re") {
        &r[2..]
    } else if starts_with_ci(r, "fwd") {
        &r[3..]
    } else if starts_with_ci(r, "fw") {
        &r[2..]
    } else {
        return None;
    };
    r = r.trim_start_matches(' ');
    if r.starts_with('[') {
        r = strip_blob(r)?;
    }
    let r = r.strip_prefix(':')?;
    *reply = true;
    Some(r)
}

/// The base subject (RFC 5256 section 2.1) and whether extraction removed a subj-refwd, a
/// `(fwd)` trailer or a `[fwd: ...]` wrapper (the message is a reply or forward, which the
/// REFERENCES algorithm asks). Linear in the subject's length.
pub(crate) fn base_subject_reply(raw: &str) -> (String, bool) {
    // (1) Decode encoded words; tabs and continuations become a space; runs of spaces one.
    let decoded = decode_header(raw.as_bytes());
    let mut s = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        let c = if matches!(c, '\t' | '\r' | '\n') {
            ' '
        } else {
            c
        };
        if c == ' ' && s.ends_with(' ') {
            continue;
        }
        s.push(c);
    }
    let mut reply = false;
    let mut t: &str = &s;
    loop {
        // (2) Trailers: `(fwd)` and white space, repeatedly.
        loop {
            if let Some(r) = t.strip_suffix(' ') {
                t = r;
            } else if t.len() >= 5 && t.as_bytes()[t.len() - 5..].eq_ignore_ascii_case(b"(fwd)") {
                t = &t[..t.len() - 5];
                reply = true;
            } else {
                break;
            }
        }
        // (3) Leaders, repeatedly; (4) a blob, when what follows is not empty; (5) again.
        while let Some(r) = strip_leader(t, &mut reply) {
            t = r;
        }
        // The leader just failed on `blob* X`. Removing a blob leaves `blob* X` with the
        // same X, on which (3) fails again, so (4) and (5) come down to removing the blobs
        // one by one for as long as something is left after them.
        while let Some(r) = strip_blob(t) {
            if r.is_empty() {
                break;
            }
            t = r;
        }
        // (6) `[fwd:` ... `]`: remove both and start again from (2).
        if starts_with_ci(t, "[fwd:") && t.ends_with(']') && t.len() >= 6 {
            t = &t[5..t.len() - 1];
            reply = true;
        } else {
            break;
        }
    }
    (t.to_string(), reply)
}

/// The base subject of a raw Subject: value (RFC 5256 section 2.1), case preserved.
pub fn base_subject(raw: &str) -> String {
    base_subject_reply(raw).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::datetime;
    use crate::mime::meta::EnvelopeMeta;

    fn parse(s: &str) -> R<SortCommand> {
        let b = [s.as_bytes(), b"\r\n"].concat();
        let mut p = P {
            b: &b,
            i: 0,
            tag: "t1".into(),
        };
        let r = parse_sort(&mut p)?;
        p.end()?;
        Ok(r)
    }

    fn c(reverse: bool, key: SortKey) -> SortCriterion {
        SortCriterion { reverse, key }
    }

    #[test]
    fn esort_return_options_come_first() {
        use crate::imap::search::ReturnOpt;
        let c = parse("RETURN (MIN MAX) (REVERSE DATE) UTF-8 ALL").unwrap();
        assert_eq!(c.ret, Some(vec![ReturnOpt::Min, ReturnOpt::Max]));
        assert_eq!(c.criteria.len(), 1);
        let c = parse("RETURN () (SUBJECT) UTF-8 ALL").unwrap();
        assert_eq!(c.ret, Some(vec![ReturnOpt::All]));
        assert_eq!(parse("(SUBJECT) UTF-8 ALL").unwrap().ret, None);
        assert!(parse("RETURN (PARTIAL 1:10) (ARRIVAL) UTF-8 ALL").is_ok());
        assert!(parse("RETURN (ALL PARTIAL 1:10) (ARRIVAL) UTF-8 ALL").is_err());
        assert!(parse("RETURN MIN (ARRIVAL) UTF-8 ALL").is_err());
    }

    #[test]
    fn commands_parse() {
        use SortKey::*;
        let s = parse("(SUBJECT) UTF-8 SINCE 1-Feb-1994").unwrap();
        assert_eq!(s.criteria, vec![c(false, Subject)]);
        assert_eq!(s.charset, "UTF-8");
        assert_eq!(
            s.keys,
            vec![SearchKey::Since(datetime::days_from_civil(1994, 2, 1))]
        );
        let s = parse("(subject REVERSE date) \"us-ascii\" ALL UNSEEN").unwrap();
        assert_eq!(s.criteria, vec![c(false, Subject), c(true, Date)]);
        assert_eq!(s.charset, "us-ascii");
        assert_eq!(s.keys, vec![SearchKey::All, SearchKey::Unseen]);
        let s = parse(
            "(ARRIVAL CC DATE FROM SIZE SUBJECT TO DISPLAYFROM REVERSE DISPLAYTO) UTF-8 TEXT \"not in mailbox\"",
        )
        .unwrap();
        assert_eq!(
            s.criteria,
            vec![
                c(false, Arrival),
                c(false, Cc),
                c(false, Date),
                c(false, From),
                c(false, Size),
                c(false, Subject),
                c(false, To),
                c(false, DisplayFrom),
                c(true, DisplayTo)
            ]
        );
        assert_eq!(s.keys, vec![SearchKey::Text("not in mailbox".into())]);
        // An unknown charset parses; the caller answers NO [BADCHARSET].
        assert_eq!(parse("(DATE) KOI8-R ALL").unwrap().charset, "KOI8-R");
    }

    #[test]
    fn bad_commands_are_errors() {
        for bad in [
            "",
            "DATE UTF-8 ALL",
            "() UTF-8 ALL",
            "(DATE",
            "(DATE)",
            "(DATE) ALL",
            "(DATE) UTF-8",
            "(DATE) UTF-8 ",
            "(WEIGHT) UTF-8 ALL",
            "(REVERSE) UTF-8 ALL",
            "(REVERSE REVERSE DATE) UTF-8 ALL",
            "(DATE  FROM) UTF-8 ALL",
            "(DATE )UTF-8 ALL",
            "(DATE) UTF-8 FROB",
            "(DATE) UTF-8 ALL)",
        ] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(e.tag, "t1");
            assert!(!e.reason.is_empty());
        }
        assert!(parse("(WEIGHT) UTF-8 ALL")
            .unwrap_err()
            .reason
            .contains("WEIGHT"));
        assert!(parse("() UTF-8 ALL")
            .unwrap_err()
            .reason
            .contains("at least one"));
    }

    #[test]
    fn base_subjects() {
        for (raw, want, reply) in [
            ("", "", false),
            ("subject", "subject", false),
            ("  Subject  with\t\tspaces  ", "Subject with spaces", false),
            ("Re: subject", "subject", true),
            ("RE: Re: re: subject", "subject", true),
            ("Fw: subject", "subject", true),
            ("FWD: subject", "subject", true),
            ("fwd : subject", "subject", true),
            ("Re[2]: subject", "subject", true),
            ("Re [2] : subject", "subject", true),
            ("[list] subject", "subject", false),
            ("[list] Re: subject", "subject", true),
            ("Re: [list] subject", "subject", true),
            ("[list] [other] Re: [x] Fwd: subject", "subject", true),
            ("subject (fwd)", "subject", true),
            ("subject (FWD) (fwd)  ", "subject", true),
            ("[fwd: subject]", "subject", true),
            ("[Fwd: Re: subject]", "subject", true),
            ("Re: [fwd: Re: subject] (fwd)", "subject", true),
            ("[fwd: [fwd: subject] (fwd)]", "subject", true),
            // A blob that is all there is stays.
            ("[list]", "[list]", false),
            ("[a] [b]", "[b]", false),
            ("Re: [list]", "[list]", true),
            // Leaders are removed even when nothing is left.
            ("Re:", "", true),
            ("Re: (fwd)", "", true),
            // Not leaders.
            ("Reply needed", "Reply needed", false),
            ("Re subject", "Re subject", false),
            ("Fwd subject", "Fwd subject", false),
            ("Regarding: x", "Regarding: x", false),
            ("[unterminated Re: x", "[unterminated Re: x", false),
            ("subject [fwd: x]", "subject [fwd: x]", false),
            ("[fwd: x", "[fwd: x", false),
            ("[fwd:]", "", true),
            // Encoded words are decoded first, so their text can be a leader.
            ("=?UTF-8?Q?Re=3A_caf=C3=A9?=", "café", true),
            ("Re: =?utf-8?B?R3LDvMOfZQ==?= (fwd)", "Grüße", true),
            ("=?utf-8?q?a?= =?utf-8?q?b?=", "ab", false),
            ("[Liste für alle] Re: Grüße", "Grüße", true),
        ] {
            assert_eq!(
                base_subject_reply(raw),
                (want.to_string(), reply),
                "{raw:?}"
            );
            assert_eq!(base_subject(raw), want);
        }
    }

    #[test]
    fn hostile_subjects_are_linear() {
        let many_blobs = "[a]".repeat(200_000) + " x";
        assert_eq!(base_subject(&many_blobs), "x");
        let many_blobs_only = "[a]".repeat(200_000);
        assert_eq!(base_subject(&many_blobs_only), "[a]");
        let nested = "[fwd: ".repeat(50_000) + "x" + &"]".repeat(50_000);
        assert_eq!(base_subject(&nested), "x");
        let leaders = "Re: [b] ".repeat(100_000) + "x";
        assert_eq!(base_subject(&leaders), "x");
        let trailers = "x".to_string() + &" (fwd)".repeat(100_000);
        assert_eq!(base_subject(&trailers), "x");
    }

    fn meta(headers: &[(&str, &str)]) -> PackedEnvelope {
        let mut e = EnvelopeMeta::default();
        for (k, v) in headers {
            let v = Some(v.to_string());
            match *k {
                "date" => e.date = v,
                "subject" => e.subject = v,
                "from" => e.from = v,
                "to" => e.to = v,
                "cc" => e.cc = v,
                _ => panic!("{k}"),
            }
        }
        PackedEnvelope::pack(&e)
    }

    fn sorted(metas: &[(u32, i64, PackedEnvelope)], criteria: &[SortCriterion]) -> Vec<u32> {
        let mut items: Vec<SortItem> = metas
            .iter()
            .enumerate()
            .map(|(i, (size, internal_date, meta))| SortItem {
                id: i as u32 + 1,
                size: *size,
                internal_date: *internal_date,
                envelope: meta,
            })
            .collect();
        sort(&mut items, criteria);
        items.iter().map(|i| i.id).collect()
    }

    #[test]
    fn sorts_by_every_key() {
        use SortKey::*;
        let day = 86_400;
        let msgs = [
            // 1
            (
                300,
                5 * day,
                meta(&[
                    ("date", "Mon, 7 Feb 1994 21:52:25 -0800"),
                    ("subject", "Re: beta"),
                    ("from", "\"Zed\" <carol@example.org>"),
                    ("to", "bob@example.org"),
                    ("cc", "Xavier <xavier@example.org>"),
                ]),
            ),
            // 2
            (
                100,
                3 * day,
                meta(&[
                    ("date", "Tue, 8 Feb 1994 05:00:00 +0000"),
                    ("subject", "alpha"),
                    ("from", "=?utf-8?q?Andr=C3=A9?= <zoe@example.org>"),
                    ("to", "Ann <ann@example.org>"),
                ]),
            ),
            // 3: no Date (internal date used), no To.
            (
                200,
                day,
                meta(&[
                    ("subject", "[list] Beta (fwd)"),
                    ("from", "ALICE@example.org"),
                    ("cc", "yvonne@example.org"),
                ]),
            ),
            // 4: unparseable Date, same size and subject as 2.
            (
                100,
                4 * day,
                meta(&[
                    ("date", "someday"),
                    ("subject", "ALPHA"),
                    ("from", "bob@example.org"),
                    ("to", "undisclosed-recipients:;"),
                ]),
            ),
        ];
        // Message 1's Date is 1994-02-08 05:52:25 UTC, after message 2's 05:00.
        let date1994 = datetime::days_from_civil(1994, 2, 8) * day;
        assert_eq!(sent_date(&msgs[0].2, 0), date1994 + 5 * 3600 + 52 * 60 + 25);
        assert_eq!(sent_date(&msgs[3].2, 77), 77);
        for (criteria, want) in [
            (vec![c(false, Arrival)], vec![3, 2, 4, 1]),
            (vec![c(true, Arrival)], vec![1, 4, 2, 3]),
            (vec![c(false, Date)], vec![3, 4, 2, 1]),
            (vec![c(true, Date)], vec![1, 2, 4, 3]),
            (vec![c(false, Size)], vec![2, 4, 3, 1]),
            // Ties keep mailbox order, also reversed.
            (vec![c(true, Size)], vec![1, 3, 2, 4]),
            (vec![c(false, Subject)], vec![2, 4, 1, 3]),
            (vec![c(true, Subject)], vec![1, 3, 2, 4]),
            (vec![c(false, Subject), c(true, Date)], vec![2, 4, 1, 3]),
            (vec![c(false, Subject), c(true, Arrival)], vec![4, 2, 1, 3]),
            (vec![c(false, Size), c(true, Arrival)], vec![4, 2, 3, 1]),
            // Mailbox: alice, carol, zoe, bob; case does not matter.
            (vec![c(false, From)], vec![3, 4, 1, 2]),
            (vec![c(true, From)], vec![2, 1, 4, 3]),
            // No To sorts first; a group sorts by its name.
            (vec![c(false, To)], vec![3, 2, 1, 4]),
            (vec![c(false, Cc)], vec![2, 4, 1, 3]),
            (vec![c(true, Cc)], vec![3, 1, 2, 4]),
            // Display: "Zed", "André", "ALICE@example.org", "bob@example.org".
            (vec![c(false, DisplayFrom)], vec![3, 2, 4, 1]),
            (vec![c(true, DisplayFrom)], vec![1, 4, 2, 3]),
            // Display: "bob@example.org", "Ann", "", "undisclosed-recipients".
            (vec![c(false, DisplayTo)], vec![3, 2, 1, 4]),
        ] {
            assert_eq!(sorted(&msgs, &criteria), want, "{criteria:?}");
        }
        assert_eq!(sorted(&[], &[c(false, Date)]), Vec::<u32>::new());
    }

    #[test]
    fn casemap_is_upper_case_octets() {
        // '_' (0x5F) sorts after 'A' in i;ascii-casemap (upper case), before it in lower case.
        let msgs = [
            (1, 0, meta(&[("subject", "_x")])),
            (1, 0, meta(&[("subject", "ax")])),
            (1, 0, meta(&[("subject", "AX")])),
        ];
        assert_eq!(sorted(&msgs, &[c(false, SortKey::Subject)]), vec![2, 3, 1]);
    }

    #[test]
    fn display_names() {
        for (raw, want) in [
            (None, ""),
            (Some(""), ""),
            (Some("\"Doe, John\" <john@example.org>"), "Doe, John"),
            (Some("=?utf-8?q?J=C3=B6rg?= <j@example.org>, a@b"), "Jörg"),
            (Some("\"\" <x@example.org>"), "x@example.org"),
            (Some("x@example.org (The X)"), "The X"),
            (Some("root"), "root"),
            (Some("team: a@b;"), "team"),
        ] {
            assert_eq!(display_name(raw), want, "{raw:?}");
        }
        assert_eq!(first_mailbox(Some("\"A B\" <ab@example.org>")), "ab");
        assert_eq!(first_mailbox(Some(",")), "");
    }

    #[test]
    fn responses_encode() {
        let mut out = Vec::new();
        write_sort(&mut out, &[2, 3, 6]);
        assert_eq!(out, b"* SORT 2 3 6\r\n");
        out.clear();
        write_sort(&mut out, &[]);
        assert_eq!(out, b"* SORT\r\n");
    }
}
