//! SEARCH (RFC 9051 section 6.4.4, RFC 3501 section 6.4.4) with ESEARCH result options
//! (RFC 4731), the saved result `$` (RFC 5182) and the MODSEQ key (RFC 7162): the key
//! grammar, a pure evaluator over one message at a time, and the response encoders.
//!
//! The server asks [`needs`] which data the keys read, so it loads the parsed metadata or
//! the message bytes only for searches that look at headers or bodies.

use std::cell::OnceCell;

use mail_parser::parsers::MessageStream;
use mail_parser::{HeaderValue, Message, MessageParser, PartType};

use super::command::{SeqBound, SequenceSet, P, R};
use super::partial::PartialRange;
use super::{datetime, encode};
use crate::mime::PackedEnvelope;

/// Nesting bound for NOT / OR / parenthesized lists: deeper input is a parse error, so
/// neither the parser nor the evaluator can be driven into a stack overflow.
pub const MAX_DEPTH: usize = 64;

/// A calendar day, counted in days since 1970-01-01 (negative before).
pub type Day = i64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchKey {
    All,
    Answered,
    Deleted,
    Draft,
    Flagged,
    Seen,
    Recent,
    /// RECENT and UNSEEN.
    New,
    /// Not RECENT.
    Old,
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unseen,
    Keyword(String),
    Unkeyword(String),
    Bcc(String),
    Body(String),
    Cc(String),
    From(String),
    Subject(String),
    Text(String),
    To(String),
    /// `HEADER field-name string`; an empty string matches any message having the field.
    Header(String, String),
    /// Internal date (calendar day in UTC) before / on / since the day.
    Before(Day),
    On(Day),
    Since(Day),
    /// The Date: header's own calendar day (its time and zone disregarded).
    SentBefore(Day),
    SentOn(Day),
    SentSince(Day),
    /// RFC822.SIZE strictly larger / smaller than n.
    Larger(u64),
    Smaller(u64),
    /// Message sequence numbers (or `$`, the saved result).
    Seq(SequenceSet),
    Uid(SequenceSet),
    Not(Box<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    /// A parenthesized list: all must match.
    And(Vec<SearchKey>),
    /// `MODSEQ [entry-name entry-type] n` (RFC 7162): mod-sequence at least n. The
    /// per-flag entry is parsed and ignored (one mod-sequence per message here).
    ModSeq(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnOpt {
    Min,
    Max,
    All,
    Count,
    Save,
    /// A page of the result (RFC 9394).
    Partial(PartialRange),
    /// RFC 5267: a hint that the program will be used again (nothing to do).
    Context,
    /// RFC 5267: keep the result up to date with ADDTO / REMOVEFROM.
    Update,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchCommand {
    /// As given; the caller answers `NO [BADCHARSET (UTF-8 US-ASCII)]` unless
    /// [`charset_supported`] (strings are kept, lossily decoded as UTF-8, so parsing does
    /// not fail first with a BAD).
    pub charset: Option<String>,
    /// `None`: a classic `* SEARCH` response. `RETURN ()` is normalized to `[All]`.
    pub ret: Option<Vec<ReturnOpt>>,
    /// Implicitly ANDed.
    pub keys: Vec<SearchKey>,
}

/// Search strings are matched as UTF-8, which US-ASCII is a subset of.
pub fn charset_supported(charset: &str) -> bool {
    charset.eq_ignore_ascii_case("UTF-8") || charset.eq_ignore_ascii_case("US-ASCII")
}

fn lossy(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `RETURN (opt ...) ` if that is what comes next (SEARCH, RFC 4731; SORT, RFC 5267),
/// with the space after it.
///
/// ```text
/// search-return-opts = SP "RETURN" SP "(" [search-return-opt *(SP search-return-opt)] ")"
/// search-return-opt  = "MIN" / "MAX" / "ALL" / "COUNT" / "SAVE" / "PARTIAL" SP partial-range
/// ```
/// One PARTIAL or one ALL at most, not both (RFC 9394 section 3.1).
pub(crate) fn parse_return_opts(p: &mut P) -> R<Option<Vec<ReturnOpt>>> {
    if !word_then_sp(p, "RETURN") {
        return Ok(None);
    }
    if !p.eat(b'(') {
        return p.err("RETURN needs a list of options");
    }
    let mut v = Vec::new();
    while !p.eat(b')') {
        if !v.is_empty() {
            p.sp()?;
        }
        let o = match p.atom()?.to_ascii_uppercase().as_str() {
            "MIN" => ReturnOpt::Min,
            "MAX" => ReturnOpt::Max,
            "ALL" => ReturnOpt::All,
            "COUNT" => ReturnOpt::Count,
            "SAVE" => ReturnOpt::Save,
            "CONTEXT" => ReturnOpt::Context,
            "UPDATE" => ReturnOpt::Update,
            "PARTIAL" => {
                p.sp()?;
                ReturnOpt::Partial(PartialRange::parse(p)?)
            }
            o => return p.err(format!("unknown return option {o}")),
        };
        let paging = |o: &ReturnOpt| matches!(o, ReturnOpt::All | ReturnOpt::Partial(_));
        if paging(&o) && v.iter().any(paging) {
            return p.err("one PARTIAL or one ALL at most");
        }
        if !v.contains(&o) {
            v.push(o);
        }
    }
    // RFC 4731: an empty list means ALL.
    if v.is_empty() {
        v.push(ReturnOpt::All);
    }
    p.sp()?;
    Ok(Some(v))
}

/// The PARTIAL return option, if asked for.
pub fn partial_of(ret: &[ReturnOpt]) -> Option<PartialRange> {
    ret.iter().find_map(|o| match o {
        ReturnOpt::Partial(r) => Some(*r),
        _ => None,
    })
}

/// Consumes `word` followed by a space if that is what comes next.
fn word_then_sp(p: &mut P, word: &str) -> bool {
    let save = p.i;
    if p.atom().is_ok_and(|a| a.eq_ignore_ascii_case(word)) && p.eat(b' ') {
        return true;
    }
    p.i = save;
    false
}

/// ```text
/// search          = "SEARCH" [search-return-opts] SP search-program
/// search-return-opts = SP "RETURN" SP "(" [search-return-opt *(SP search-return-opt)] ")"
/// search-program  = ["CHARSET" SP charset SP] search-key *(SP search-key)
/// ```
/// Called after `SEARCH `; stops at the CRLF (the caller checks the end).
pub(crate) fn parse_search(p: &mut P) -> R<SearchCommand> {
    let ret = parse_return_opts(p)?;
    let charset = if word_then_sp(p, "CHARSET") {
        Some(lossy(p.astring()?))
    } else {
        None
    };
    if charset.is_some() {
        p.sp()?;
    }
    Ok(SearchCommand {
        charset,
        ret,
        keys: parse_search_key_list(p)?,
    })
}

/// `search-key *(SP search-key)` up to the end of the command (also SORT's tail).
pub(crate) fn parse_search_key_list(p: &mut P) -> R<Vec<SearchKey>> {
    let mut keys = vec![parse_key(p, 0)?];
    while !p.at_end() {
        p.sp()?;
        keys.push(parse_key(p, 0)?);
    }
    Ok(keys)
}

fn arg(p: &mut P) -> R<String> {
    p.sp()?;
    Ok(lossy(p.astring()?))
}

/// `date = date-text / DQUOTE date-text DQUOTE`.
fn date_arg(p: &mut P) -> R<Day> {
    p.sp()?;
    let text = if p.peek() == Some(b'"') {
        p.quoted()?
    } else {
        p.atom()?.into_bytes()
    };
    parse_date(&text).map_or_else(|| p.err("bad date (expected d-Mon-yyyy)"), Ok)
}

const MONTHS: [&[u8]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];

/// `date-text = date-day "-" date-month "-" date-year` (1*2DIGIT, `Jan`.., 4DIGIT).
fn parse_date(s: &[u8]) -> Option<Day> {
    let mut it = s.split(|&c| c == b'-');
    let (d, m, y) = (it.next()?, it.next()?, it.next()?);
    let digits = |b: &[u8], n: std::ops::RangeInclusive<usize>| {
        (n.contains(&b.len()) && b.iter().all(u8::is_ascii_digit))
            .then(|| std::str::from_utf8(b).ok()?.parse::<u32>().ok())
            .flatten()
    };
    let (d, y) = (digits(d, 1..=2)?, digits(y, 4..=4)?);
    let m = MONTHS.iter().position(|n| n.eq_ignore_ascii_case(m))? as u32 + 1;
    if it.next().is_some() || d == 0 || d > days_in_month(y as i64, m) {
        return None;
    }
    Some(datetime::days_from_civil(y as i64, m, d))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// One `search-key` (RFC 9051 section 9, plus RFC 7162 `search-modsequence` and RFC 5182
/// `$`); `depth` counts enclosing NOT / OR / parentheses.
fn parse_key(p: &mut P, depth: usize) -> R<SearchKey> {
    use SearchKey as K;
    if depth >= MAX_DEPTH {
        return p.err("search keys nested too deeply");
    }
    match p.peek() {
        Some(b'(') => {
            p.i += 1;
            let mut v = vec![parse_key(p, depth + 1)?];
            while !p.eat(b')') {
                p.sp()?;
                v.push(parse_key(p, depth + 1)?);
            }
            return Ok(K::And(v));
        }
        Some(b'0'..=b'9' | b'*' | b'$') => return Ok(K::Seq(p.seq_set()?)),
        _ => {}
    }
    let word = p.atom()?.to_ascii_uppercase();
    Ok(match word.as_str() {
        "ALL" => K::All,
        "ANSWERED" => K::Answered,
        "DELETED" => K::Deleted,
        "DRAFT" => K::Draft,
        "FLAGGED" => K::Flagged,
        "SEEN" => K::Seen,
        "RECENT" => K::Recent,
        "NEW" => K::New,
        "OLD" => K::Old,
        "UNANSWERED" => K::Unanswered,
        "UNDELETED" => K::Undeleted,
        "UNDRAFT" => K::Undraft,
        "UNFLAGGED" => K::Unflagged,
        "UNSEEN" => K::Unseen,
        // flag-keyword = atom (system flags are not keywords)
        "KEYWORD" | "UNKEYWORD" => {
            p.sp()?;
            let k = p.atom()?;
            if word == "KEYWORD" {
                K::Keyword(k)
            } else {
                K::Unkeyword(k)
            }
        }
        "BCC" => K::Bcc(arg(p)?),
        "BODY" => K::Body(arg(p)?),
        "CC" => K::Cc(arg(p)?),
        "FROM" => K::From(arg(p)?),
        "SUBJECT" => K::Subject(arg(p)?),
        "TEXT" => K::Text(arg(p)?),
        "TO" => K::To(arg(p)?),
        // "HEADER" SP header-fld-name SP astring
        "HEADER" => {
            let name = arg(p)?;
            K::Header(name, arg(p)?)
        }
        "BEFORE" => K::Before(date_arg(p)?),
        "ON" => K::On(date_arg(p)?),
        "SINCE" => K::Since(date_arg(p)?),
        "SENTBEFORE" => K::SentBefore(date_arg(p)?),
        "SENTON" => K::SentOn(date_arg(p)?),
        "SENTSINCE" => K::SentSince(date_arg(p)?),
        // number64 in RFC 9051
        "LARGER" | "SMALLER" => {
            p.sp()?;
            let n = p.number()?;
            if word == "LARGER" {
                K::Larger(n)
            } else {
                K::Smaller(n)
            }
        }
        "UID" => {
            p.sp()?;
            K::Uid(p.seq_set()?)
        }
        "NOT" => {
            p.sp()?;
            K::Not(Box::new(parse_key(p, depth + 1)?))
        }
        "OR" => {
            p.sp()?;
            let a = parse_key(p, depth + 1)?;
            p.sp()?;
            K::Or(Box::new(a), Box::new(parse_key(p, depth + 1)?))
        }
        // search-modsequence = "MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer
        // entry-name = DQUOTE "/flags/" attr-flag DQUOTE; entry-type-req = "priv" / "shared" / "all"
        "MODSEQ" => {
            p.sp()?;
            if p.peek() == Some(b'"') {
                p.quoted()?;
                p.sp()?;
                let t = p.atom()?.to_ascii_lowercase();
                if !matches!(t.as_str(), "priv" | "shared" | "all") {
                    return p.err("MODSEQ entry type is priv, shared or all");
                }
                p.sp()?;
            }
            match p.number()? {
                n @ 0..=0x7fff_ffff_ffff_ffff => K::ModSeq(n),
                _ => return p.err("mod-sequence out of range"),
            }
        }
        other => return p.err(format!("unknown search key {other}")),
    })
}

/// One message as the evaluator sees it.
pub struct Candidate<'a> {
    pub seq: u32,
    pub uid: u32,
    /// IMAP spellings, system flags and keywords (`\Seen`, `$Junk`); compared ignoring case.
    pub flags: &'a [&'a str],
    pub recent: bool,
    /// Unix seconds.
    pub internal_date: i64,
    pub size: u32,
    pub modseq: u64,
    /// Needed when [`Needs::meta`] (unless `raw` is given, which then serves instead).
    pub envelope: Option<&'a PackedEnvelope>,
    /// Needed when [`Needs::raw`]; when present, all header keys read it too.
    pub raw: Option<&'a [u8]>,
}

/// The mailbox around the candidates.
pub struct Context<'a> {
    /// The number of messages (what `*` means in a sequence set).
    pub max_seq: u32,
    /// The UID of the last message (what `*` means in a UID set), not UIDNEXT - 1.
    pub max_uid: u32,
    /// The saved result (`$`) as UIDs, ascending.
    pub saved: &'a [u32],
}

/// What the keys read beyond flags, sizes, dates and numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Envelope headers (FROM, TO, CC, BCC, SUBJECT, SENT*, HEADER of an envelope field).
    pub meta: bool,
    /// The message bytes (BODY, TEXT, HEADER of other fields).
    pub raw: bool,
    /// A MODSEQ key is present: the response carries the highest mod-sequence (RFC 7162).
    pub modseq: bool,
}

const ENVELOPE_FIELDS: [&str; 10] = [
    "date",
    "subject",
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "in-reply-to",
    "message-id",
];

/// Which data `matches` will read for these keys, so the server loads only that.
pub fn needs(keys: &[SearchKey]) -> Needs {
    fn walk(k: &SearchKey, n: &mut Needs) {
        use SearchKey as K;
        match k {
            K::Bcc(_)
            | K::Cc(_)
            | K::From(_)
            | K::Subject(_)
            | K::To(_)
            | K::SentBefore(_)
            | K::SentOn(_)
            | K::SentSince(_) => n.meta = true,
            K::Header(name, _) if ENVELOPE_FIELDS.contains(&name.to_ascii_lowercase().as_str()) => {
                n.meta = true
            }
            K::Header(..) | K::Body(_) | K::Text(_) => n.raw = true,
            K::ModSeq(_) => n.modseq = true,
            K::Not(k) => walk(k, n),
            K::Or(a, b) => {
                walk(a, n);
                walk(b, n);
            }
            K::And(v) => v.iter().for_each(|k| walk(k, n)),
            _ => {}
        }
    }
    let mut n = Needs::default();
    keys.iter().for_each(|k| walk(k, &mut n));
    n
}

/// Case-insensitive matching folds both sides: Unicode lower-casing, which includes ASCII.
fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// Whether the decoded, folded header value `v` contains `needle` (folded already):
/// `fold(&decode_header(v)).contains(needle)`, without decoding or allocating when `v` is
/// plain ASCII on one line with no encoded word, as most envelope headers are (decoding
/// then only trims blanks, and folding only lowers ASCII letters). A SEARCH on SUBJECT
/// over 200,000 messages spent most of its time decoding.
fn value_contains(v: &str, needle: &str) -> bool {
    let plain = v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) && !v.contains("=?");
    if !plain {
        return fold(&decode_header(v.as_bytes())).contains(needle);
    }
    // An ASCII value lowers to ASCII, which holds no other character.
    if !needle.is_ascii() {
        return false;
    }
    let (hay, n) = (v.trim_matches([' ', '\t']).as_bytes(), needle.as_bytes());
    n.is_empty()
        || hay
            .windows(n.len())
            .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

/// An unstructured header value with RFC 2047 encoded words decoded and folding removed.
pub(crate) fn decode_header(v: &[u8]) -> String {
    // The unstructured parser ends a value at a LF not followed by white space.
    let mut b = v.to_vec();
    if !b.ends_with(b"\n") {
        b.push(b'\n');
    }
    match MessageStream::new(&b).parse_unstructured() {
        HeaderValue::Text(t) => t.into_owned(),
        _ => String::new(),
    }
}

fn sent_day(d: &mail_parser::DateTime) -> Option<Day> {
    let (y, m, day) = (i64::from(d.year), u32::from(d.month), u32::from(d.day));
    ((1..=12).contains(&m) && day >= 1 && day <= days_in_month(y, m))
        .then(|| datetime::days_from_civil(y, m, day))
}

/// What the text keys search in a message, parsed once per candidate.
struct Parsed {
    /// (lower-case name, folded decoded value) of each top-level header field.
    headers: Vec<(String, String)>,
    /// Folded decoded text of the text parts, nested messages included.
    body: String,
    sent: Option<Day>,
}

impl Parsed {
    fn new(raw: &[u8]) -> Parsed {
        let Some(m) = MessageParser::default().parse(raw) else {
            return Parsed {
                headers: Vec::new(),
                body: fold(&String::from_utf8_lossy(raw)),
                sent: None,
            };
        };
        let headers = m
            .headers()
            .iter()
            .map(|h| {
                let v = raw
                    .get(h.offset_start as usize..h.offset_end as usize)
                    .unwrap_or_default();
                (
                    h.name.as_str().to_ascii_lowercase(),
                    fold(&decode_header(v)),
                )
            })
            .collect();
        let mut body = String::new();
        collect_text(&m, &mut body, 0);
        Parsed {
            headers,
            body: fold(&body),
            sent: m.date().and_then(sent_day),
        }
    }
}

fn collect_text(m: &Message, out: &mut String, depth: usize) {
    for part in &m.parts {
        match &part.body {
            PartType::Text(t) | PartType::Html(t) => {
                out.push_str(t);
                out.push('\n');
            }
            // mail-parser bounds its own nesting; this bound is only a second guard.
            PartType::Message(inner) if depth < 8 => collect_text(inner, out, depth + 1),
            _ => {}
        }
    }
}

/// An address field's addresses as ENVELOPE has them, folded for matching:
/// `name <mailbox@host>, ...` (RFC 2047 words in names decoded).
fn address_text(raw: &str) -> String {
    let mut s = String::new();
    for a in crate::imap::structure::addresses(Some(raw))
        .iter()
        .filter(|a| a.host.is_some())
    {
        if let Some(n) = &a.name {
            s.push_str(&decode_header(n.as_bytes()));
            s.push(' ');
        }
        s.push('<');
        s.push_str(a.mailbox.as_deref().unwrap_or(""));
        if let Some(h) = a.host.as_deref().filter(|h| !h.is_empty()) {
            s.push('@');
            s.push_str(h);
        }
        s.push_str(">, ");
    }
    fold(&s)
}

struct Eval<'e, 'a> {
    c: &'e Candidate<'a>,
    ctx: &'e Context<'e>,
    parsed: OnceCell<Parsed>,
}

impl Eval<'_, '_> {
    fn parsed(&self) -> Option<&Parsed> {
        let raw = self.c.raw?;
        Some(self.parsed.get_or_init(|| Parsed::new(raw)))
    }

    fn flag(&self, name: &str) -> bool {
        self.c.flags.iter().any(|f| f.eq_ignore_ascii_case(name))
    }

    /// Substring search in header `name` (any occurrence when the bytes are at hand).
    fn header(&self, name: &str, needle: &str) -> bool {
        let (name, needle) = (name.to_ascii_lowercase(), fold(needle));
        if let Some(p) = self.parsed() {
            return p
                .headers
                .iter()
                .any(|(n, v)| *n == name && v.contains(&needle));
        }
        self.c
            .envelope
            .and_then(|e| e.header(&name))
            .is_some_and(|v| value_contains(v, &needle))
    }

    /// An address field (FROM, TO, CC, BCC): the substring search of [`Self::header`], or a
    /// match in the addresses as ENVELOPE parses them, `name <mailbox@host>` with comments
    /// and folding gone, so `<user-from (comment)@ (comment) domain.org>` is found by
    /// `FROM user-from@domain.org`.
    fn address(&self, name: &str, needle: &str) -> bool {
        if self.header(name, needle) {
            return true;
        }
        let needle = fold(needle);
        let found = |value: &str| address_text(value).contains(&needle);
        if let Some(p) = self.parsed() {
            return p.headers.iter().any(|(n, v)| n == name && found(v));
        }
        self.c
            .envelope
            .and_then(|e| e.header(name))
            .is_some_and(found)
    }

    fn sent(&self) -> Option<Day> {
        if let Some(p) = self.parsed() {
            return p.sent;
        }
        let date = self.c.envelope?.date()?;
        let mut b = date.as_bytes().to_vec();
        b.push(b'\n');
        match MessageStream::new(&b).parse_date() {
            HeaderValue::DateTime(d) => sent_day(&d),
            _ => None,
        }
    }

    fn in_set(&self, set: &SequenceSet, n: u32, max: u32) -> bool {
        match set {
            // `$` holds UIDs whichever command saved it (RFC 5182).
            SequenceSet::Saved => self.ctx.saved.binary_search(&self.c.uid).is_ok(),
            SequenceSet::Ranges(v) => v.iter().any(|&(a, b)| {
                let val = |x| match x {
                    SeqBound::Num(n) => n,
                    SeqBound::Star => max,
                };
                let (a, b) = (val(a), val(b));
                (a.min(b)..=a.max(b)).contains(&n)
            }),
        }
    }

    fn eval(&self, k: &SearchKey) -> bool {
        use SearchKey as K;
        let c = self.c;
        // Internal dates compare by their calendar day in UTC.
        let day = c.internal_date.div_euclid(86_400);
        match k {
            K::All => true,
            K::Answered => self.flag("\\Answered"),
            K::Deleted => self.flag("\\Deleted"),
            K::Draft => self.flag("\\Draft"),
            K::Flagged => self.flag("\\Flagged"),
            K::Seen => self.flag("\\Seen"),
            K::Recent => c.recent,
            K::New => c.recent && !self.flag("\\Seen"),
            K::Old => !c.recent,
            K::Unanswered => !self.flag("\\Answered"),
            K::Undeleted => !self.flag("\\Deleted"),
            K::Undraft => !self.flag("\\Draft"),
            K::Unflagged => !self.flag("\\Flagged"),
            K::Unseen => !self.flag("\\Seen"),
            K::Keyword(f) => self.flag(f),
            K::Unkeyword(f) => !self.flag(f),
            K::Bcc(s) => self.address("bcc", s),
            K::Cc(s) => self.address("cc", s),
            K::From(s) => self.address("from", s),
            K::Subject(s) => self.header("subject", s),
            K::To(s) => self.address("to", s),
            K::Header(n, s) => self.header(n, s),
            K::Body(s) => self.parsed().is_some_and(|p| p.body.contains(&fold(s))),
            K::Text(s) => self.parsed().is_some_and(|p| {
                let s = fold(s);
                p.body.contains(&s)
                    || p.headers
                        .iter()
                        .any(|(n, v)| n.contains(&s) || v.contains(&s))
            }),
            K::Before(d) => day < *d,
            K::On(d) => day == *d,
            K::Since(d) => day >= *d,
            // An unparseable Date: matches none of these.
            K::SentBefore(d) => self.sent().is_some_and(|s| s < *d),
            K::SentOn(d) => self.sent().is_some_and(|s| s == *d),
            K::SentSince(d) => self.sent().is_some_and(|s| s >= *d),
            K::Larger(n) => u64::from(c.size) > *n,
            K::Smaller(n) => u64::from(c.size) < *n,
            K::Seq(s) => self.in_set(s, c.seq, self.ctx.max_seq),
            K::Uid(s) => self.in_set(s, c.uid, self.ctx.max_uid),
            K::Not(k) => !self.eval(k),
            K::Or(a, b) => self.eval(a) || self.eval(b),
            K::And(v) => v.iter().all(|k| self.eval(k)),
            K::ModSeq(n) => c.modseq >= *n,
        }
    }
}

/// Whether the candidate matches all `keys`.
pub fn matches(keys: &[SearchKey], c: &Candidate, ctx: &Context) -> bool {
    let e = Eval {
        c,
        ctx,
        parsed: OnceCell::new(),
    };
    // Keys that read headers or bodies go last, so a message already failing a flag or
    // date test is never parsed.
    let costly = |k: &&SearchKey| {
        let n = needs(std::slice::from_ref(*k));
        n.meta || n.raw
    };
    keys.iter().filter(|k| !costly(k)).all(|k| e.eval(k))
        && keys.iter().filter(costly).all(|k| e.eval(k))
}

/// The hits a SAVE keeps (RFC 5182 section 2.4, RFC 9394 section 3.2) and whose highest
/// mod-sequence is reported (RFC 7162 section 3.1.5): with COUNT or ALL, or with none of
/// MIN, MAX and PARTIAL, all of them; else the PARTIAL page and the MIN / MAX hits. `hits`
/// in result order (sort order for SORT).
pub fn returned_hits(hits: &[u32], ret: &[ReturnOpt]) -> Vec<u32> {
    let has = |o| ret.contains(&o);
    let partial = partial_of(ret);
    if has(ReturnOpt::All)
        || has(ReturnOpt::Count)
        || !(has(ReturnOpt::Min) || has(ReturnOpt::Max) || partial.is_some())
    {
        return hits.to_vec();
    }
    let mut v = partial.map_or_else(Vec::new, |r| r.select(hits).to_vec());
    if let (true, Some(&m)) = (has(ReturnOpt::Min), hits.first()) {
        if !v.contains(&m) {
            v.push(m);
        }
    }
    if let (true, Some(&m)) = (has(ReturnOpt::Max), hits.last()) {
        if !v.contains(&m) {
            v.push(m);
        }
    }
    v
}

/// `* SEARCH 2 3 5 (MODSEQ n)` CRLF. `modseq` (the hits' highest, when a MODSEQ key was
/// used) is left out when nothing matched, as the RFC 7162 grammar requires.
pub fn write_search(out: &mut Vec<u8>, hits: &[u32], modseq: Option<u64>) {
    out.extend_from_slice(b"* SEARCH");
    for h in hits {
        out.extend_from_slice(format!(" {h}").as_bytes());
    }
    if let (Some(m), false) = (modseq, hits.is_empty()) {
        out.extend_from_slice(format!(" (MODSEQ {m})").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// `* ESEARCH (TAG "a1") [UID] [MIN n] [MAX n] [COUNT n] [ALL set] [PARTIAL (range set)]
/// [MODSEQ n]` CRLF, for `hits` in result order (ascending for SEARCH, sort order for SORT:
/// MIN and MAX are then the first and last sorted, RFC 5267 section 3.1). MIN, MAX, ALL and
/// MODSEQ are absent when nothing matched (RFC 4731); PARTIAL is always there, `NIL` when
/// its page is empty (RFC 9394); an empty `ret` means ALL; a SAVE alone writes nothing (RFC
/// 5182 section 2.4).
pub fn write_esearch(
    out: &mut Vec<u8>,
    tag: &str,
    uid: bool,
    hits: &[u32],
    ret: &[ReturnOpt],
    modseq: Option<u64>,
) {
    let all = [ReturnOpt::All];
    let ret = if ret.is_empty() { &all[..] } else { ret };
    if ret.iter().all(|&o| o == ReturnOpt::Save) {
        return;
    }
    let has = |o| ret.contains(&o);
    out.extend_from_slice(b"* ESEARCH (TAG ");
    super::encode::string(out, tag.as_bytes());
    out.push(b')');
    if uid {
        out.extend_from_slice(b" UID");
    }
    let mut s = String::new();
    if let (Some(min), Some(max)) = (hits.first(), hits.last()) {
        if has(ReturnOpt::Min) {
            s += &format!(" MIN {min}");
        }
        if has(ReturnOpt::Max) {
            s += &format!(" MAX {max}");
        }
    }
    if has(ReturnOpt::Count) {
        s += &format!(" COUNT {}", hits.len());
    }
    if has(ReturnOpt::All) && !hits.is_empty() {
        s += &format!(" ALL {}", encode::compress_set(hits));
    }
    if let Some(r) = partial_of(ret) {
        let mut range = Vec::new();
        r.write(&mut range);
        let page = r.select(hits);
        let set = if page.is_empty() {
            "NIL".to_string()
        } else {
            encode::compress_set(page)
        };
        s += &format!(" PARTIAL ({} {set})", String::from_utf8_lossy(&range));
    }
    if let (Some(m), false) = (modseq, hits.is_empty()) {
        s += &format!(" MODSEQ {m}");
    }
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use SearchKey as K;

    fn parse(s: &str) -> R<SearchCommand> {
        parse_bytes(s.as_bytes())
    }

    fn parse_bytes(s: &[u8]) -> R<SearchCommand> {
        let b = [s, b"\r\n"].concat();
        let mut p = P {
            b: &b,
            i: 0,
            tag: "t1".into(),
        };
        let r = parse_search(&mut p)?;
        p.end()?;
        Ok(r)
    }

    fn keys(s: &str) -> Vec<SearchKey> {
        parse(s).unwrap_or_else(|e| panic!("{e:?} in {s:?}")).keys
    }

    fn one(s: &str) -> SearchKey {
        let mut k = keys(s);
        assert_eq!(k.len(), 1, "{s}");
        k.pop().unwrap()
    }

    fn set(v: &[(SeqBound, SeqBound)]) -> SequenceSet {
        SequenceSet::Ranges(v.to_vec())
    }

    use SeqBound::{Num, Star};

    #[test]
    fn every_key_parses() {
        let day = datetime::days_from_civil(1994, 2, 1);
        let s = |x: &str| x.to_string();
        for (text, want) in [
            ("ALL", K::All),
            ("answered", K::Answered),
            ("DELETED", K::Deleted),
            ("DRAFT", K::Draft),
            ("FLAGGED", K::Flagged),
            ("SEEN", K::Seen),
            ("RECENT", K::Recent),
            ("NEW", K::New),
            ("OLD", K::Old),
            ("UNANSWERED", K::Unanswered),
            ("UNDELETED", K::Undeleted),
            ("UNDRAFT", K::Undraft),
            ("UNFLAGGED", K::Unflagged),
            ("UNSEEN", K::Unseen),
            ("KEYWORD $Junk", K::Keyword(s("$Junk"))),
            ("UNKEYWORD foo", K::Unkeyword(s("foo"))),
            ("BCC bob", K::Bcc(s("bob"))),
            ("BODY \"two words\"", K::Body(s("two words"))),
            ("CC {5}\r\nal ce", K::Cc(s("al ce"))),
            ("FROM \"a \\\"q\\\" \\\\b\"", K::From(s("a \"q\" \\b"))),
            ("SUBJECT {4+}\r\nGrü", K::Subject(s("Grü"))),
            ("TEXT x", K::Text(s("x"))),
            ("TO \"\"", K::To(s(""))),
            ("HEADER X-Spam \"\"", K::Header(s("X-Spam"), s(""))),
            (
                "HEADER \"List-Id\" lists",
                K::Header(s("List-Id"), s("lists")),
            ),
            ("BEFORE 1-Feb-1994", K::Before(day)),
            ("ON \"01-feb-1994\"", K::On(day)),
            ("SINCE 1-FEB-1994", K::Since(day)),
            ("SENTBEFORE 1-Feb-1994", K::SentBefore(day)),
            ("SENTON 1-Feb-1994", K::SentOn(day)),
            ("SENTSINCE 1-Feb-1994", K::SentSince(day)),
            ("LARGER 10000", K::Larger(10000)),
            ("SMALLER 5000000000", K::Smaller(5_000_000_000)),
            ("UID 1:*", K::Uid(set(&[(Num(1), Star)]))),
            ("UID $", K::Uid(SequenceSet::Saved)),
            ("$", K::Seq(SequenceSet::Saved)),
            (
                "2,4:6,*",
                K::Seq(set(&[(Num(2), Num(2)), (Num(4), Num(6)), (Star, Star)])),
            ),
            ("NOT SEEN", K::Not(Box::new(K::Seen))),
            (
                "OR SEEN FLAGGED",
                K::Or(Box::new(K::Seen), Box::new(K::Flagged)),
            ),
            ("(SEEN FLAGGED)", K::And(vec![K::Seen, K::Flagged])),
            ("MODSEQ 0", K::ModSeq(0)),
            (
                "MODSEQ \"/flags/\\\\draft\" all 620162338",
                K::ModSeq(620_162_338),
            ),
        ] {
            assert_eq!(one(text), want, "{text}");
        }
    }

    #[test]
    fn nesting_and_program() {
        assert_eq!(
            keys("OR (FROM a NOT TO b) OR 1:3 UID 9 DELETED"),
            vec![
                K::Or(
                    Box::new(K::And(vec![
                        K::From("a".into()),
                        K::Not(Box::new(K::To("b".into())))
                    ])),
                    Box::new(K::Or(
                        Box::new(K::Seq(set(&[(Num(1), Num(3))]))),
                        Box::new(K::Uid(set(&[(Num(9), Num(9))])))
                    ))
                ),
                K::Deleted
            ]
        );
        let c = parse("RETURN (MIN COUNT SAVE) CHARSET utf-8 UNSEEN").unwrap();
        assert_eq!(c.charset.as_deref(), Some("utf-8"));
        assert_eq!(
            c.ret,
            Some(vec![ReturnOpt::Min, ReturnOpt::Count, ReturnOpt::Save])
        );
        assert_eq!(c.keys, vec![K::Unseen]);
        assert_eq!(
            parse("RETURN () ALL").unwrap().ret,
            Some(vec![ReturnOpt::All])
        );
        assert_eq!(
            parse("return (max) ALL").unwrap().ret,
            Some(vec![ReturnOpt::Max])
        );
        let c = parse("ALL").unwrap();
        assert_eq!((c.charset, c.ret), (None, None));
        // An unsupported charset parses; the caller answers NO [BADCHARSET].
        let c = parse_bytes(b"CHARSET KOI8-R SUBJECT {2}\r\n\xf0\xf2").unwrap();
        assert!(!charset_supported(c.charset.as_deref().unwrap()));
        assert!(charset_supported("us-ascii"));
    }

    #[test]
    fn bad_input_is_an_error_not_a_crash() {
        for bad in [
            "",
            "FROB",
            "FROM",
            "FROM ",
            "HEADER Subject",
            "LARGER x",
            "BEFORE 31-Feb-2020",
            "BEFORE 1-Foo-2020",
            "BEFORE 1-Feb-20",
            "BEFORE 001-Feb-2020",
            "ON \"1-Feb-2020",
            "UID",
            "0",
            "1:",
            "NOT",
            "OR SEEN",
            "(SEEN",
            "()",
            "SEEN)",
            "SEEN  FLAGGED",
            "KEYWORD \\Seen",
            "MODSEQ \"/flags/x\" nope 5",
            "MODSEQ 9223372036854775808",
            "RETURN (PARTIAL 1:*) ALL",
            "RETURN ALL",
            "RETURN (MIN)",
            "CHARSET",
            "SUBJECT {10}\r\nshort",
        ] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(e.tag, "t1");
            assert!(!e.reason.is_empty());
        }
        for bomb in [
            "NOT ".repeat(10_000) + "ALL",
            "(".repeat(10_000) + "ALL" + &")".repeat(10_000),
            "OR ".repeat(10_000) + &"ALL ".repeat(10_000) + "ALL",
        ] {
            assert!(parse(&bomb).unwrap_err().reason.contains("deeply"));
        }
        // Right at the bound is fine.
        let ok = "NOT ".repeat(MAX_DEPTH - 1) + "ALL";
        assert!(parse(&ok).is_ok());
    }

    const MAIL: &[u8] = b"From: =?UTF-8?Q?J=C3=B6rg?= <jorg@example.org>\r\n\
To: team@example.com,\r\n  boss@example.com\r\n\
Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\r\n\
Date: Tue, 1 Feb 1994 23:30:00 -0800\r\n\
X-Spam: \r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\n\
Stra=C3=9Fe und MA=C3=91ANA, caf=C3=A9.\r\n";

    fn msg<'a>(
        flags: &'a [&'a str],
        envelope: Option<&'a PackedEnvelope>,
        raw: Option<&'a [u8]>,
    ) -> Candidate<'a> {
        Candidate {
            seq: 3,
            uid: 30,
            flags,
            recent: true,
            // 1994-02-01 12:00:00 UTC
            internal_date: datetime::days_from_civil(1994, 2, 1) * 86_400 + 43_200,
            size: 2000,
            modseq: 700,
            envelope,
            raw,
        }
    }

    const CTX: Context = Context {
        max_seq: 5,
        max_uid: 50,
        saved: &[10, 30, 40],
    };

    fn hit(q: &str, c: &Candidate) -> bool {
        matches(&keys(q), c, &CTX)
    }

    #[test]
    fn flags_dates_sizes_sets() {
        let flags = ["\\Seen", "$Junk"];
        let c = msg(&flags, None, None);
        for (q, want) in [
            ("ALL", true),
            ("SEEN", true),
            ("UNSEEN", false),
            ("seen keyword $junk", true),
            ("KEYWORD $Phishing", false),
            ("UNKEYWORD $Phishing", true),
            ("ANSWERED", false),
            ("UNANSWERED UNDELETED UNDRAFT UNFLAGGED", true),
            ("DELETED", false),
            ("RECENT", true),
            ("NEW", false),
            ("OLD", false),
            ("ON 1-Feb-1994", true),
            ("BEFORE 1-Feb-1994", false),
            ("BEFORE 2-Feb-1994", true),
            ("SINCE 1-Feb-1994", true),
            ("SINCE 2-Feb-1994", false),
            ("LARGER 1999", true),
            ("LARGER 2000", false),
            ("SMALLER 2001", true),
            ("SMALLER 2000", false),
            ("3", true),
            ("1:2,4:*", false),
            ("*", false),
            ("*:3", true),
            ("UID 30", true),
            ("UID 31:*", false),
            ("UID 25:35", true),
            ("$", true),
            ("UID $", true),
            ("NOT SEEN", false),
            ("OR DELETED SEEN", true),
            ("OR DELETED NOT SEEN", false),
            ("(SEEN RECENT) NOT (SEEN DELETED)", true),
            ("MODSEQ 700", true),
            ("MODSEQ \"/flags/\\\\seen\" priv 701", false),
        ] {
            assert_eq!(hit(q, &c), want, "{q}");
        }
        // `*` is the last message: n:* includes it even when n is beyond it.
        let last = Candidate {
            seq: 5,
            uid: 50,
            ..msg(&flags, None, None)
        };
        for q in ["*", "9:*", "UID 559:*", "UID *", "NOT $"] {
            assert!(hit(q, &last), "{q}");
        }
        let fresh = msg(&[], None, None);
        assert!(hit("NEW", &fresh));
        assert!(!hit("OLD", &fresh));
        let old = Candidate {
            recent: false,
            ..msg(&[], None, None)
        };
        assert!(hit("OLD UNSEEN", &old) && !hit("NEW", &old));
    }

    /// Regression: FROM/TO/CC/BCC matched only the header's text, so an address written
    /// with comments and folding (as ENVELOPE parses it) was not found by its plain form.
    #[test]
    fn addresses_match_as_envelope_parses_them() {
        let mail: &[u8] = b"From: <user-from (comment)@ (comment) domain.org>\r\nTo: x@y.org\r\nCc: =?UTF-8?Q?J=C3=B6rg?= <jorg (x) @example.org>\r\nSubject: s\r\n\r\nbody\r\n";
        let meta = PackedEnvelope::pack(&crate::mime::MessageMeta::parse(mail).envelope);
        for (label, c) in [
            ("raw", msg(&[], None, Some(mail))),
            ("meta", msg(&[], Some(&meta), None)),
        ] {
            for (q, want) in [
                ("FROM user-from@domain.org", true),
                ("FROM comment", true),
                ("FROM nobody@domain.org", false),
                ("CC jorg@example.org", true),
                ("CC jörg", true),
                ("TO x@y.org", true),
            ] {
                assert_eq!(hit(q, &c), want, "{label}: {q}");
            }
        }
    }

    /// The plain-ASCII shortcut of header matching answers as decoding and folding do.
    #[test]
    fn header_values_match_as_decoded_whichever_path() {
        let alphabet: Vec<char> = " \taAbBzZ09()<>\"\\@.,;:=?-_\u{e9}\u{212a}k"
            .chars()
            .collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..20_000 {
            let v: String = (0..next(12))
                .map(|_| alphabet[next(alphabet.len())])
                .collect();
            let raw: String = (0..next(4))
                .map(|_| alphabet[next(alphabet.len())])
                .collect();
            let needle = fold(&raw);
            assert_eq!(
                value_contains(&v, &needle),
                fold(&decode_header(v.as_bytes())).contains(&needle),
                "{v:?} / {needle:?}"
            );
        }
    }

    #[test]
    fn headers_and_bodies() {
        let meta = PackedEnvelope::pack(&crate::mime::MessageMeta::parse(MAIL).envelope);
        for (label, c) in [
            ("raw", msg(&[], None, Some(MAIL))),
            ("meta", msg(&[], Some(&meta), None)),
        ] {
            for (q, want) in [
                ("FROM jörg", true),
                ("FROM JÖRG", true),
                ("FROM JORG@EXAMPLE", true),
                ("FROM team", false),
                ("TO boss@", true),
                ("CC x", false),
                ("BCC \"\"", false),
                ("SUBJECT \"grüße aus köln\"", true),
                ("SUBJECT R3LDvMOf", false),
                ("HEADER subject köln", true),
                ("HEADER Date \"\"", true),
                ("SENTON 1-Feb-1994", true),
                ("SENTBEFORE 2-Feb-1994", true),
                ("SENTBEFORE 1-Feb-1994", false),
                ("SENTSINCE 2-Feb-1994", false),
                ("NOT FROM nobody", true),
            ] {
                assert_eq!(hit(q, &c), want, "{label}: {q}");
            }
        }
        let c = msg(&[], None, Some(MAIL));
        for (q, want) in [
            ("BODY straße", true),
            ("BODY \"mañana, CAFÉ\"", true),
            ("BODY C3=9F", false),
            ("BODY jörg", false),
            ("TEXT jörg", true),
            ("TEXT STRASSE", false),
            ("TEXT café", true),
            ("HEADER X-Spam \"\"", true),
            ("HEADER X-Ham \"\"", false),
            ("HEADER content-type utf-8", true),
        ] {
            assert_eq!(hit(q, &c), want, "{q}");
        }
        // Without the bytes, body keys cannot match; `needs` tells the server to load them.
        assert!(!hit("BODY straße", &msg(&[], Some(&meta), None)));
        let bad_date = b"Date: someday\r\nSubject: x\r\n\r\nbody\r\n";
        let c = msg(&[], None, Some(bad_date));
        assert!(!hit("SENTBEFORE 1-Jan-2100", &c) && !hit("SENTSINCE 1-Jan-1900", &c));
    }

    #[test]
    fn needs_follow_the_keys() {
        let n = |q: &str| needs(&keys(q));
        assert_eq!(n("SEEN 1:5 LARGER 4"), Needs::default());
        assert_eq!(
            n("OR SEEN FROM x"),
            Needs {
                meta: true,
                ..Needs::default()
            }
        );
        assert_eq!(
            n("HEADER message-id x"),
            Needs {
                meta: true,
                ..Needs::default()
            }
        );
        assert_eq!(
            n("HEADER List-Id x"),
            Needs {
                raw: true,
                ..Needs::default()
            }
        );
        assert_eq!(
            n("NOT (BODY x)"),
            Needs {
                raw: true,
                ..Needs::default()
            }
        );
        assert_eq!(
            n("SENTON 1-Jan-2000 NOT MODSEQ 4"),
            Needs {
                meta: true,
                raw: false,
                modseq: true
            }
        );
    }

    fn out(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn partial_pages_results_and_saves_as_rfc_9394_says() {
        use ReturnOpt::*;
        let page = |s: &str| {
            let c = parse(&format!("RETURN ({s}) ALL")).unwrap();
            c.ret.unwrap()
        };
        let r = page("PARTIAL 2:4 COUNT");
        assert_eq!(
            partial_of(&r).map(|p| (p.lo, p.hi, p.from_end)),
            Some((2, 4, false))
        );
        assert_eq!(partial_of(&page("PARTIAL -100:-1")).unwrap().hi, 100);
        for bad in [
            "PARTIAL 1:5 PARTIAL 6:9",
            "PARTIAL 1:5 ALL",
            "ALL PARTIAL 1:5",
            "PARTIAL",
            "PARTIAL 0:5",
            "PARTIAL 1:*",
            "PARTIAL -1:5",
        ] {
            assert!(parse(&format!("RETURN ({bad}) ALL")).is_err(), "{bad}");
        }
        let hits = [5, 7, 9, 10, 11, 20];
        let w =
            |ret: &[ReturnOpt], hits: &[u32]| out(|o| write_esearch(o, "t", true, hits, ret, None));
        assert_eq!(
            w(&page("PARTIAL 2:4"), &hits),
            "* ESEARCH (TAG \"t\") UID PARTIAL (2:4 7,9:10)\r\n"
        );
        assert_eq!(
            w(&page("MIN PARTIAL -2:-1 COUNT"), &hits),
            "* ESEARCH (TAG \"t\") UID MIN 5 COUNT 6 PARTIAL (-1:-2 11,20)\r\n"
        );
        assert_eq!(
            w(&page("PARTIAL 7:9"), &hits),
            "* ESEARCH (TAG \"t\") UID PARTIAL (7:9 NIL)\r\n"
        );
        assert_eq!(
            w(&page("PARTIAL 1:9 COUNT"), &[]),
            "* ESEARCH (TAG \"t\") UID COUNT 0 PARTIAL (1:9 NIL)\r\n"
        );
        // SAVE keeps the page, plus MIN / MAX; with COUNT, everything.
        assert_eq!(returned_hits(&hits, &page("SAVE PARTIAL 2:3")), [7, 9]);
        assert_eq!(
            returned_hits(&hits, &page("SAVE PARTIAL 2:3 MIN MAX")),
            [7, 9, 5, 20]
        );
        assert_eq!(returned_hits(&hits, &page("SAVE PARTIAL 2:3 COUNT")), hits);
        assert_eq!(returned_hits(&hits, &[Save, Min]), [5]);
        // Sort order: MIN and MAX are first and last; ranges only for ascending runs.
        let sorted = [5, 3, 4, 2, 7, 8, 9];
        assert_eq!(
            w(&[Min, Max, All], &sorted),
            "* ESEARCH (TAG \"t\") UID MIN 5 MAX 9 ALL 5,3:4,2,7:9\r\n"
        );
    }

    #[test]
    fn responses_encode() {
        use ReturnOpt::*;
        assert_eq!(
            out(|o| write_search(o, &[2, 3, 5], None)),
            "* SEARCH 2 3 5\r\n"
        );
        assert_eq!(
            out(|o| write_search(o, &[2, 3, 5], Some(917_162_500))),
            "* SEARCH 2 3 5 (MODSEQ 917162500)\r\n"
        );
        assert_eq!(out(|o| write_search(o, &[], Some(9))), "* SEARCH\r\n");
        let hits = [2, 3, 5];
        assert_eq!(
            out(|o| write_esearch(o, "a1", true, &hits, &[Min, Count, All], None)),
            "* ESEARCH (TAG \"a1\") UID MIN 2 COUNT 3 ALL 2:3,5\r\n"
        );
        assert_eq!(
            out(|o| write_esearch(o, "A282", false, &hits, &[Max, Min], Some(12))),
            "* ESEARCH (TAG \"A282\") MIN 2 MAX 5 MODSEQ 12\r\n"
        );
        assert_eq!(
            out(|o| write_esearch(o, "a", false, &hits, &[], None)),
            "* ESEARCH (TAG \"a\") ALL 2:3,5\r\n"
        );
        assert_eq!(
            out(|o| write_esearch(o, "a", true, &[], &[Min, Max, All, Count], Some(3))),
            "* ESEARCH (TAG \"a\") UID COUNT 0\r\n"
        );
        assert_eq!(
            out(|o| write_esearch(o, "a", false, &[], &[All], None)),
            "* ESEARCH (TAG \"a\")\r\n"
        );
        assert_eq!(
            out(|o| write_esearch(o, "a", false, &hits, &[Save], None)),
            ""
        );
        assert_eq!(
            out(|o| write_esearch(o, "a", false, &hits, &[Save, Count], None)),
            "* ESEARCH (TAG \"a\") COUNT 3\r\n"
        );
        assert_eq!(returned_hits(&hits, &[Save]), vec![2, 3, 5]);
        assert_eq!(returned_hits(&hits, &[Save, Min]), vec![2]);
        assert_eq!(returned_hits(&hits, &[Min, Max]), vec![2, 5]);
        assert_eq!(returned_hits(&[4], &[Min, Max]), vec![4]);
        assert_eq!(returned_hits(&hits, &[Min, Count]), vec![2, 3, 5]);
        assert_eq!(returned_hits(&[], &[Max]), Vec::<u32>::new());
    }
}
