//! The IMAP command grammar as types (RFC 9051 section 9), parsed from one framed command
//! (literals inline). Commands whose arguments are not parsed (SETQUOTA) are reported as
//! `Unsupported` so the session can answer `BAD` honestly.

use super::list::{Returns, Selection};
use super::section::{self, Section, SectionText};
use crate::sasl::Secret;

#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    pub tag: String,
    pub at: usize,
    pub reason: String,
}

/// `seq-number` or `*` (RFC 9051: sequence-set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqBound {
    Num(u32),
    Star,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SequenceSet {
    Ranges(Vec<(SeqBound, SeqBound)>),
    /// `$`: the saved search result (RFC 5182).
    Saved,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    Size,
    HighestModSeq,
    /// OBJECTID (RFC 8474).
    MailboxId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchAttr {
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
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    /// `BODY[section]<partial>` / `BODY.PEEK[...]` (e.g. `1.2.MIME`, `HEADER.FIELDS (From
    /// To)`), partial as (offset, length).
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<(u32, u32)>,
    },
    /// `BINARY[section]` / `BINARY.PEEK` / `BINARY.SIZE` (RFC 3516): part numbers only.
    Binary {
        peek: bool,
        size_only: bool,
        section: Section,
        partial: Option<(u32, u32)>,
    },
}

/// A capability ENABLE names (RFC 5161): the ones this server can turn on, or another
/// (which ENABLE ignores, as the RFC asks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capability {
    CondStore,
    QResync,
    Utf8Accept,
    Imap4Rev2,
    Other(String),
}

impl Capability {
    fn from_name(name: &str) -> Self {
        match name.to_ascii_uppercase().as_str() {
            "CONDSTORE" => Capability::CondStore,
            "QRESYNC" => Capability::QResync,
            "UTF8=ACCEPT" => Capability::Utf8Accept,
            "IMAP4REV2" => Capability::Imap4Rev2,
            other => Capability::Other(other.to_string()),
        }
    }

    /// The name for the ENABLED response.
    pub fn name(&self) -> &str {
        match self {
            Capability::CondStore => "CONDSTORE",
            Capability::QResync => "QRESYNC",
            Capability::Utf8Accept => "UTF8=ACCEPT",
            Capability::Imap4Rev2 => "IMAP4REV2",
            Capability::Other(o) => o,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct AppendMessage {
    pub flags: Vec<String>,
    pub date: Option<String>,
    pub message: AppendData,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendData {
    /// The message, as a literal or literal8.
    Literal(Vec<u8>),
    /// CATENATE (RFC 4469): the message made of these, in order.
    Catenate(Vec<CatPart>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatPart {
    /// `TEXT literal`: octets as sent.
    Text(Vec<u8>),
    /// `URL astring`: an IMAP URL (RFC 5092) to a message or part on this server.
    Url(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qresync {
    pub uidvalidity: u32,
    pub modseq: u64,
    pub known_uids: Option<SequenceSet>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    Add,
    Remove,
    Replace,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Capability,
    Noop,
    Logout,
    StartTls,
    Login {
        user: String,
        password: Secret,
    },
    Authenticate {
        mechanism: String,
        initial: Option<String>,
    },
    Enable(Vec<Capability>),
    Select {
        mailbox: String,
        readonly: bool,
        condstore: bool,
        /// QRESYNC (RFC 7162 section 3.2.5): known UIDVALIDITY, known modseq, known UIDs.
        qresync: Option<Qresync>,
    },
    /// CREATE, with the special-use attributes of `USE (...)` (RFC 6154 section 3; the
    /// create-params of RFC 4466), `\` included, as sent.
    Create {
        mailbox: String,
        special_use: Vec<String>,
    },
    Delete(String),
    Rename {
        from: String,
        to: String,
    },
    Subscribe(String),
    Unsubscribe(String),
    List {
        reference: String,
        patterns: Vec<String>,
        lsub: bool,
        /// LIST-EXTENDED selection options (RFC 5258).
        select: Selection,
        /// Return options; STATUS (RFC 5819) separately.
        ret: Returns,
        status: Option<Vec<StatusItem>>,
    },
    Namespace,
    Status {
        mailbox: String,
        items: Vec<StatusItem>,
    },
    /// One or more messages (MULTIAPPEND, RFC 3502), stored all or none.
    Append {
        mailbox: String,
        messages: Vec<AppendMessage>,
    },
    Idle,
    Check,
    Close,
    Unselect,
    Expunge {
        uids: Option<SequenceSet>,
    },
    Fetch {
        uid: bool,
        set: SequenceSet,
        attrs: Vec<FetchAttr>,
        changed_since: Option<u64>,
        /// QRESYNC's VANISHED modifier (RFC 7162 section 3.2.6): report expunged UIDs too.
        vanished: bool,
        /// RFC 9394: only this page of the messages the set (and CHANGEDSINCE) selects.
        partial: Option<crate::imap::partial::PartialRange>,
    },
    Store {
        uid: bool,
        set: SequenceSet,
        op: StoreOp,
        silent: bool,
        flags: Vec<String>,
        unchanged_since: Option<u64>,
    },
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: String,
    },
    Move {
        uid: bool,
        set: SequenceSet,
        mailbox: String,
    },
    Id(Vec<(String, Option<String>)>),
    Search {
        uid: bool,
        search: crate::imap::search::SearchCommand,
    },
    /// SORT (RFC 5256, RFC 5957 keys).
    Sort {
        uid: bool,
        sort: crate::imap::sort::SortCommand,
    },
    /// THREAD (RFC 5256).
    Thread {
        uid: bool,
        thread: crate::imap::thread::ThreadCommand,
    },
    GetQuotaRoot(String),
    GetQuota(String),
    /// RFC 5465.
    Notify(crate::imap::notify::Notify),
    /// RFC 5267: stop updating these search contexts (their tags).
    CancelUpdate(Vec<String>),
    /// URLAUTH (RFC 4467): (URL rump, mechanism) pairs.
    GenUrlAuth(Vec<(String, String)>),
    /// RESETKEY [mailbox [mechanism...]]: the mailbox, or every key when `None`.
    ResetKey(Option<String>, Vec<String>),
    UrlFetch(Vec<String>),
    /// METADATA (RFC 5464).
    GetMetadata(crate::imap::metadata::GetMetadata),
    SetMetadata(crate::imap::metadata::SetMetadata),
    Compress(String),
    /// A command this parser does not know the arguments of yet.
    Unsupported(String),
}

/// ```text
/// append-data-ext = "CATENATE" SP "(" cat-part *(SP cat-part) ")"
/// cat-part        = text-literal / url
/// text-literal    = "TEXT" SP literal
/// url             = "URL" SP astring
/// ```
fn catenate(p: &mut P) -> R<Vec<CatPart>> {
    if !p.atom()?.eq_ignore_ascii_case("CATENATE") {
        return p.err("APPEND needs the message as a literal or CATENATE");
    }
    p.sp()?;
    if !p.eat(b'(') {
        return p.err("CATENATE takes a list of parts");
    }
    let mut parts = Vec::new();
    loop {
        let kind = p.atom()?.to_ascii_uppercase();
        p.sp()?;
        parts.push(match kind.as_str() {
            "TEXT" => {
                // literal8 is not allowed here (RFC 4469 section 5).
                if p.peek() != Some(b'{') {
                    return p.err("TEXT takes a literal");
                }
                CatPart::Text(p.literal()?)
            }
            "URL" => CatPart::Url(p.astr()?),
            _ => return p.err(format!("unknown CATENATE part {kind}")),
        });
        if p.eat(b')') {
            return Ok(parts);
        }
        p.sp()?;
    }
}

/// What follows a FETCH's attributes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FetchModifiers {
    pub(crate) changed_since: Option<u64>,
    pub(crate) vanished: bool,
    pub(crate) partial: Option<crate::imap::partial::PartialRange>,
}

/// The grammar cursor over one framed command, shared by the command parsers of
/// `imap/*` (SEARCH keys, SORT criteria).
pub(crate) struct P<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) i: usize,
    pub(crate) tag: String,
}

pub(crate) type R<T> = Result<T, ParseError>;

impl<'a> P<'a> {
    /// A cursor at the start of `b` (one framed command, or a piece of one in tests).
    pub(crate) fn new(b: &'a [u8]) -> Self {
        P {
            b,
            i: 0,
            tag: String::new(),
        }
    }
    pub(crate) fn err<T>(&self, reason: impl Into<String>) -> R<T> {
        Err(ParseError {
            tag: self.tag.clone(),
            at: self.i,
            reason: reason.into(),
        })
    }
    pub(crate) fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    pub(crate) fn sp(&mut self) -> R<()> {
        if self.peek() == Some(b' ') {
            self.i += 1;
            Ok(())
        } else {
            self.err("expected a space")
        }
    }
    pub(crate) fn at_end(&self) -> bool {
        matches!(&self.b[self.i..], b"\r\n" | b"\n" | b"")
    }
    pub(crate) fn end(&self) -> R<()> {
        if self.at_end() {
            Ok(())
        } else {
            self.err("unexpected text at the end of the command")
        }
    }
    pub(crate) fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    /// ATOM-CHAR run (RFC 9051: any CHAR except atom-specials).
    pub(crate) fn atom(&mut self) -> R<String> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c <= b' ' || c >= 0x7f || b"(){%*\"\\]".contains(&c) {
                break;
            }
            self.i += 1;
        }
        if self.i == start {
            return self.err("expected an atom");
        }
        Ok(String::from_utf8_lossy(&self.b[start..self.i]).to_string())
    }
    /// astring = 1*ASTRING-CHAR / string (atom, quoted or literal); `]` allowed in atoms.
    pub(crate) fn astring(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            _ => {
                let start = self.i;
                while let Some(c) = self.peek() {
                    if c <= b' ' || c == 0x7f || b"(){%*\"\\".contains(&c) {
                        break;
                    }
                    self.i += 1;
                }
                if self.i == start {
                    return self.err("expected a string");
                }
                Ok(self.b[start..self.i].to_vec())
            }
        }
    }
    pub(crate) fn astr(&mut self) -> R<String> {
        let b = self.astring()?;
        String::from_utf8(b).or_else(|_| self.err("string is not UTF-8"))
    }
    /// A mailbox name, with `INBOX` in any case normalized later by the store.
    pub(crate) fn mailbox(&mut self) -> R<String> {
        self.astr()
    }
    /// list-mailbox: like astring but with `%` and `*` allowed.
    pub(crate) fn list_mailbox(&mut self) -> R<String> {
        match self.peek() {
            Some(b'"') | Some(b'{') => self.astr(),
            _ => {
                let start = self.i;
                while let Some(c) = self.peek() {
                    if c <= b' ' || c == 0x7f || b"(){\"\\".contains(&c) {
                        break;
                    }
                    self.i += 1;
                }
                if self.i == start {
                    return self.err("expected a mailbox pattern");
                }
                Ok(String::from_utf8_lossy(&self.b[start..self.i]).to_string())
            }
        }
    }
    pub(crate) fn quoted(&mut self) -> R<Vec<u8>> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') => return self.err("unterminated quoted string"),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(c);
                            self.i += 1;
                        }
                        _ => return self.err("invalid escape in quoted string"),
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }
    /// `{n}` or `{n+}`, CRLF, then n octets (the framer guaranteed they are here).
    pub(crate) fn literal(&mut self) -> R<Vec<u8>> {
        self.i += 1;
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let n: usize = std::str::from_utf8(&self.b[start..self.i])
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or_else(|| self.err("bad literal size"), Ok)?;
        self.eat(b'+');
        if !self.eat(b'}') {
            return self.err("bad literal");
        }
        self.eat(b'\r');
        if !self.eat(b'\n') {
            return self.err("literal must be followed by CRLF");
        }
        if self.b.len() < self.i + n {
            return self.err("literal shorter than announced");
        }
        let v = self.b[self.i..self.i + n].to_vec();
        self.i += n;
        Ok(v)
    }
    pub(crate) fn number(&mut self) -> R<u64> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        std::str::from_utf8(&self.b[start..self.i])
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or_else(|| self.err("expected a number"), Ok)
    }
    pub(crate) fn nz32(&mut self) -> R<u32> {
        match self.number()? {
            n @ 1..=0xffff_ffff => Ok(n as u32),
            _ => self.err("expected a non-zero 32-bit number"),
        }
    }
    /// sequence-set (RFC 9051 section 9).
    pub(crate) fn seq_set(&mut self) -> R<SequenceSet> {
        if self.eat(b'$') {
            return Ok(SequenceSet::Saved);
        }
        let mut v = Vec::new();
        loop {
            let a = self.seq_bound()?;
            let b = if self.eat(b':') { self.seq_bound()? } else { a };
            v.push((a, b));
            if !self.eat(b',') {
                return Ok(SequenceSet::Ranges(v));
            }
        }
    }
    pub(crate) fn seq_bound(&mut self) -> R<SeqBound> {
        if self.eat(b'*') {
            Ok(SeqBound::Star)
        } else {
            Ok(SeqBound::Num(self.nz32()?))
        }
    }
    /// `(flag flag ...)` or a single flag.
    pub(crate) fn flag_list(&mut self) -> R<Vec<String>> {
        let paren = self.eat(b'(');
        let mut v = Vec::new();
        loop {
            if paren && self.eat(b')') {
                return Ok(v);
            }
            if !v.is_empty() || (!paren && !v.is_empty()) {
                self.sp()?;
            }
            let bs = self.eat(b'\\');
            let f = if bs && self.eat(b'*') {
                "*".to_string()
            } else {
                self.atom()?
            };
            v.push(if bs { format!("\\{f}") } else { f });
            if !paren {
                return Ok(v);
            }
        }
    }
    pub(crate) fn section(&mut self) -> R<String> {
        let start = self.i;
        let mut depth = 0;
        while let Some(c) = self.peek() {
            match c {
                b'(' => depth += 1,
                b')' => depth -= 1,
                b']' if depth == 0 => break,
                b'\r' | b'\n' => return self.err("unterminated section"),
                _ => {}
            }
            self.i += 1;
        }
        if !self.eat(b']') {
            return self.err("unterminated section");
        }
        Ok(String::from_utf8_lossy(&self.b[start..self.i - 1]).to_string())
    }
    pub(crate) fn partial(&mut self) -> R<Option<(u32, u32)>> {
        if !self.eat(b'<') {
            return Ok(None);
        }
        let off = self.number()? as u32;
        if !self.eat(b'.') {
            return self.err("partial is <offset.length>");
        }
        let len = self.nz32()?;
        if !self.eat(b'>') {
            return self.err("unterminated partial");
        }
        Ok(Some((off, len)))
    }
    pub(crate) fn fetch_att(&mut self) -> R<FetchAttr> {
        let name = {
            let start = self.i;
            while let Some(c) = self.peek() {
                if c.is_ascii_alphanumeric() || c == b'.' || c == b'8' {
                    self.i += 1;
                } else {
                    break;
                }
            }
            String::from_utf8_lossy(&self.b[start..self.i]).to_ascii_uppercase()
        };
        Ok(match name.as_str() {
            "FLAGS" => FetchAttr::Flags,
            "UID" => FetchAttr::Uid,
            "INTERNALDATE" => FetchAttr::InternalDate,
            "RFC822.SIZE" => FetchAttr::Rfc822Size,
            "ENVELOPE" => FetchAttr::Envelope,
            "BODYSTRUCTURE" => FetchAttr::BodyStructure,
            "MODSEQ" => FetchAttr::ModSeq,
            "EMAILID" => FetchAttr::EmailId,
            "THREADID" => FetchAttr::ThreadId,
            "RFC822" => FetchAttr::Rfc822,
            "RFC822.HEADER" => FetchAttr::Rfc822Header,
            "RFC822.TEXT" => FetchAttr::Rfc822Text,
            "BODY" | "BODY.PEEK" if self.eat(b'[') => {
                let section = self.parsed_section()?;
                FetchAttr::BodySection {
                    peek: name == "BODY.PEEK",
                    section,
                    partial: self.partial()?,
                }
            }
            "BODY" => FetchAttr::Body,
            "BINARY" | "BINARY.PEEK" | "BINARY.SIZE" if self.eat(b'[') => {
                let section = self.parsed_section()?;
                if section.text != SectionText::Full {
                    return self.err("BINARY takes part numbers only");
                }
                let partial = if name == "BINARY.SIZE" {
                    None
                } else {
                    self.partial()?
                };
                FetchAttr::Binary {
                    peek: name != "BINARY",
                    size_only: name == "BINARY.SIZE",
                    section,
                    partial,
                }
            }
            other => return self.err(format!("unknown FETCH item {other:?}")),
        })
    }
    /// A FETCH section (`1.2.MIME`, `HEADER.FIELDS (From)`), checked and parsed once.
    fn parsed_section(&mut self) -> R<Section> {
        let text = self.section()?;
        section::parse_section(&text).or_else(|e| self.err(e))
    }

    pub(crate) fn fetch_atts(&mut self) -> R<Vec<FetchAttr>> {
        if self.eat(b'(') {
            let mut v = vec![self.fetch_att()?];
            while !self.eat(b')') {
                self.sp()?;
                v.push(self.fetch_att()?);
            }
            return Ok(v);
        }
        let save = self.i;
        let word = self.atom().map(|a| a.to_ascii_uppercase());
        match word.as_deref() {
            // Macros (RFC 9051 section 6.4.5).
            Ok("ALL") => Ok(vec![
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
                FetchAttr::Envelope,
            ]),
            Ok("FAST") => Ok(vec![
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
            ]),
            Ok("FULL") => Ok(vec![
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
                FetchAttr::Envelope,
                FetchAttr::Body,
            ]),
            _ => {
                self.i = save;
                Ok(vec![self.fetch_att()?])
            }
        }
    }
    /// `"(" status-att *(SP status-att) ")"`
    pub(crate) fn status_items(&mut self) -> R<Vec<StatusItem>> {
        if !self.eat(b'(') {
            return self.err("expected status items");
        }
        let mut items = Vec::new();
        while !self.eat(b')') {
            if !items.is_empty() {
                self.sp()?;
            }
            items.push(match self.atom()?.to_ascii_uppercase().as_str() {
                "MESSAGES" => StatusItem::Messages,
                "RECENT" => StatusItem::Recent,
                "UIDNEXT" => StatusItem::UidNext,
                "UIDVALIDITY" => StatusItem::UidValidity,
                "UNSEEN" => StatusItem::Unseen,
                "DELETED" => StatusItem::Deleted,
                "SIZE" => StatusItem::Size,
                "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
                "MAILBOXID" => StatusItem::MailboxId,
                other => return self.err(format!("unknown status item {other}")),
            });
        }
        Ok(items)
    }
    /// fetch-modifiers (RFC 7162, RFC 9394): `(CHANGEDSINCE n [VANISHED] [PARTIAL range])`,
    /// in any order, each once.
    pub(crate) fn fetch_modifiers(&mut self) -> R<FetchModifiers> {
        let mut m = FetchModifiers::default();
        if self.peek() != Some(b' ') || self.b.get(self.i + 1) != Some(&b'(') {
            return Ok(m);
        }
        self.i += 2;
        loop {
            match self.atom()?.to_ascii_uppercase().as_str() {
                "CHANGEDSINCE" if m.changed_since.is_none() => {
                    self.sp()?;
                    m.changed_since = Some(self.number()?);
                }
                "VANISHED" if !m.vanished => m.vanished = true,
                "PARTIAL" if m.partial.is_none() => {
                    self.sp()?;
                    m.partial = Some(crate::imap::partial::PartialRange::parse(self)?);
                }
                "CHANGEDSINCE" | "VANISHED" | "PARTIAL" => {
                    return self.err("a FETCH modifier is given once")
                }
                m => return self.err(format!("unsupported modifier {m}")),
            }
            if self.eat(b')') {
                break;
            }
            self.sp()?;
        }
        if m.vanished && m.changed_since.is_none() {
            return self.err("VANISHED needs CHANGEDSINCE");
        }
        Ok(m)
    }
    pub(crate) fn modifier(&mut self, name: &str) -> R<Option<u64>> {
        if self.peek() != Some(b' ') || self.b.get(self.i + 1) != Some(&b'(') {
            return Ok(None);
        }
        self.i += 2;
        let m = self.atom()?.to_ascii_uppercase();
        if m != name {
            return self.err(format!("unsupported modifier {m}"));
        }
        self.sp()?;
        let n = self.number()?;
        if !self.eat(b')') {
            return self.err("unterminated modifier");
        }
        Ok(Some(n))
    }
}

/// Parses one framed command (`tag SP command CRLF`, literals inline).
pub fn parse_command(bytes: &[u8]) -> Result<(String, Command), ParseError> {
    let mut p = P::new(bytes);
    let tag = p.atom().or_else(|_| p.err("missing tag"))?;
    if tag.contains('+') {
        return p.err("invalid tag");
    }
    p.tag = tag.clone();
    p.sp()?;
    let mut verb = p.atom()?.to_ascii_uppercase();
    let uid = verb == "UID";
    if uid {
        p.sp()?;
        verb = p.atom()?.to_ascii_uppercase();
    }
    let cmd = match (uid, verb.as_str()) {
        (false, "CAPABILITY") => Command::Capability,
        (false, "NOOP") => Command::Noop,
        (false, "LOGOUT") => Command::Logout,
        (false, "STARTTLS") => Command::StartTls,
        (false, "NAMESPACE") => Command::Namespace,
        (false, "IDLE") => Command::Idle,
        (false, "CHECK") => Command::Check,
        (false, "CLOSE") => Command::Close,
        (false, "UNSELECT") => Command::Unselect,
        (false, "EXPUNGE") => Command::Expunge { uids: None },
        (true, "EXPUNGE") => {
            p.sp()?;
            Command::Expunge {
                uids: Some(p.seq_set()?),
            }
        }
        (false, "LOGIN") => {
            p.sp()?;
            let user = p.astr()?;
            p.sp()?;
            let password = Secret(p.astr()?);
            Command::Login { user, password }
        }
        (false, "AUTHENTICATE") => {
            p.sp()?;
            let mechanism = p.atom()?.to_ascii_uppercase();
            // SASL-IR (RFC 4959): "=" is an empty initial response.
            let initial = if p.eat(b' ') {
                let ir = p.atom()?;
                Some(if ir == "=" { String::new() } else { ir })
            } else {
                None
            };
            Command::Authenticate { mechanism, initial }
        }
        (false, "ENABLE") => {
            let mut v = Vec::new();
            while p.eat(b' ') {
                v.push(Capability::from_name(&p.atom()?));
            }
            if v.is_empty() {
                return p.err("ENABLE needs a capability");
            }
            Command::Enable(v)
        }
        (false, "SELECT" | "EXAMINE") => {
            p.sp()?;
            let mailbox = p.mailbox()?;
            let mut condstore = false;
            let mut qresync = None;
            if p.eat(b' ') {
                if !p.eat(b'(') {
                    return p.err("expected select parameters");
                }
                while !p.eat(b')') {
                    p.eat(b' ');
                    let a = p.atom()?.to_ascii_uppercase();
                    match a.as_str() {
                        "CONDSTORE" => condstore = true,
                        "QRESYNC" => {
                            // "(" uidvalidity SP mod-sequence-value [SP known-uids] ")"
                            p.sp()?;
                            if !p.eat(b'(') {
                                return p.err("QRESYNC takes a list");
                            }
                            let uidvalidity = p.nz32()?;
                            p.sp()?;
                            let modseq = p.number()?;
                            let known_uids = if p.eat(b' ') {
                                Some(p.seq_set()?)
                            } else {
                                None
                            };
                            // The optional sequence match data is accepted and not used:
                            // known UIDs and the modseq already bound what we send.
                            if p.eat(b' ') {
                                let mut depth = 0;
                                while let Some(c) = p.peek() {
                                    if c == b'(' {
                                        depth += 1;
                                    } else if c == b')' {
                                        if depth == 0 {
                                            break;
                                        }
                                        depth -= 1;
                                    }
                                    p.i += 1;
                                }
                            }
                            if !p.eat(b')') {
                                return p.err("unterminated QRESYNC parameter");
                            }
                            qresync = Some(Qresync {
                                uidvalidity,
                                modseq,
                                known_uids,
                            });
                        }
                        _ => return p.err(format!("unsupported SELECT parameter {a}")),
                    }
                }
            }
            Command::Select {
                mailbox,
                readonly: verb == "EXAMINE",
                condstore,
                qresync,
            }
        }
        (false, "CREATE") => {
            p.sp()?;
            let mailbox = p.mailbox()?;
            let mut special_use = Vec::new();
            if p.eat(b' ') {
                // create-params = SP "(" create-param *(SP create-param) ")"
                if !p.eat(b'(') {
                    return p.err("expected CREATE parameters");
                }
                loop {
                    let name = p.atom()?.to_ascii_uppercase();
                    if name != "USE" {
                        return p.err(format!("unknown CREATE parameter {name}"));
                    }
                    p.sp()?;
                    if p.peek() != Some(b'(') {
                        return p.err("USE takes a list of attributes");
                    }
                    for a in p.flag_list()? {
                        if !a.starts_with('\\') || a == "\\*" {
                            return p.err("a special-use attribute starts with a backslash");
                        }
                        special_use.push(a);
                    }
                    if p.eat(b')') {
                        break;
                    }
                    p.sp()?;
                }
            }
            Command::Create {
                mailbox,
                special_use,
            }
        }
        (false, "DELETE") => {
            p.sp()?;
            Command::Delete(p.mailbox()?)
        }
        (false, "RENAME") => {
            p.sp()?;
            let from = p.mailbox()?;
            p.sp()?;
            Command::Rename {
                from,
                to: p.mailbox()?,
            }
        }
        (false, "SUBSCRIBE") => {
            p.sp()?;
            Command::Subscribe(p.mailbox()?)
        }
        (false, "UNSUBSCRIBE") => {
            p.sp()?;
            Command::Unsubscribe(p.mailbox()?)
        }
        (false, "LIST" | "LSUB") => {
            p.sp()?;
            let mut select = Vec::new();
            if verb == "LIST" && p.eat(b'(') {
                while !p.eat(b')') {
                    p.eat(b' ');
                    select.push(p.atom()?.to_ascii_uppercase());
                }
                p.sp()?;
            }
            let select = Selection::parse(&select).or_else(|e| p.err(e))?;
            let reference = p.mailbox()?;
            p.sp()?;
            let patterns = if p.eat(b'(') {
                let mut v = vec![p.list_mailbox()?];
                while !p.eat(b')') {
                    p.sp()?;
                    v.push(p.list_mailbox()?);
                }
                v
            } else {
                vec![p.list_mailbox()?]
            };
            let mut ret = Vec::new();
            let mut status = None;
            // list-return-opts = "RETURN" SP "(" [return-option *(SP return-option)] ")"
            if verb == "LIST" && p.eat(b' ') {
                if !p.atom()?.eq_ignore_ascii_case("RETURN") {
                    return p.err("expected RETURN");
                }
                p.sp()?;
                if !p.eat(b'(') {
                    return p.err("expected return options");
                }
                while !p.eat(b')') {
                    p.eat(b' ');
                    let o = p.atom()?.to_ascii_uppercase();
                    if o == "STATUS" {
                        p.sp()?;
                        status = Some(p.status_items()?);
                    } else {
                        ret.push(o);
                    }
                }
            }
            let ret = Returns::parse(&ret).or_else(|e| p.err(e))?;
            Command::List {
                reference,
                patterns,
                lsub: verb == "LSUB",
                select,
                ret,
                status,
            }
        }
        (false, "STATUS") => {
            p.sp()?;
            let mailbox = p.mailbox()?;
            p.sp()?;
            let items = p.status_items()?;
            Command::Status { mailbox, items }
        }
        (false, "APPEND") => {
            p.sp()?;
            let mailbox = p.mailbox()?;
            let mut messages = Vec::new();
            // append = "APPEND" SP mailbox 1*append-message (RFC 3502)
            while p.eat(b' ') {
                let flags = if p.peek() == Some(b'(') {
                    let f = p.flag_list()?;
                    p.sp()?;
                    f
                } else {
                    Vec::new()
                };
                let date = if p.peek() == Some(b'"') {
                    let d = String::from_utf8_lossy(&p.quoted()?).to_string();
                    p.sp()?;
                    Some(d)
                } else {
                    None
                };
                let message = if p.peek().is_some_and(|c| c == b'c' || c == b'C') {
                    AppendData::Catenate(catenate(&mut p)?)
                } else {
                    // literal8 (RFC 3516): the message may hold any octet.
                    p.eat(b'~');
                    if p.peek() != Some(b'{') {
                        return p.err("APPEND needs the message as a literal");
                    }
                    AppendData::Literal(p.literal()?)
                };
                messages.push(AppendMessage {
                    flags,
                    date,
                    message,
                });
            }
            if messages.is_empty() {
                return p.err("APPEND needs a message");
            }
            Command::Append { mailbox, messages }
        }
        (_, "FETCH") => {
            p.sp()?;
            let set = p.seq_set()?;
            p.sp()?;
            let attrs = p.fetch_atts()?;
            let m = p.fetch_modifiers()?;
            Command::Fetch {
                uid,
                set,
                attrs,
                changed_since: m.changed_since,
                vanished: m.vanished,
                partial: m.partial,
            }
        }
        (_, "STORE") => {
            p.sp()?;
            let set = p.seq_set()?;
            let unchanged_since = p.modifier("UNCHANGEDSINCE")?;
            p.sp()?;
            let item = p.atom()?.to_ascii_uppercase();
            let (op, rest) = match item.as_bytes().first() {
                Some(b'+') => (StoreOp::Add, &item[1..]),
                Some(b'-') => (StoreOp::Remove, &item[1..]),
                _ => (StoreOp::Replace, &item[..]),
            };
            let silent = match rest {
                "FLAGS" => false,
                "FLAGS.SILENT" => true,
                _ => return p.err("STORE item is [+|-]FLAGS[.SILENT]"),
            };
            p.sp()?;
            let flags = if p.peek() == Some(b'(') {
                p.flag_list()?
            } else {
                let mut v = p.flag_list()?;
                while p.eat(b' ') {
                    v.extend(p.flag_list()?);
                }
                v
            };
            Command::Store {
                uid,
                set,
                op,
                silent,
                flags,
                unchanged_since,
            }
        }
        (_, "COPY" | "MOVE") => {
            p.sp()?;
            let set = p.seq_set()?;
            p.sp()?;
            let mailbox = p.mailbox()?;
            if verb == "COPY" {
                Command::Copy { uid, set, mailbox }
            } else {
                Command::Move { uid, set, mailbox }
            }
        }
        (false, "ID") => {
            p.sp()?;
            let mut v = Vec::new();
            if !p.eat(b'(') {
                let nil = p.atom()?;
                if !nil.eq_ignore_ascii_case("NIL") {
                    return p.err("ID takes a list or NIL");
                }
            } else {
                while !p.eat(b')') {
                    if !v.is_empty() {
                        p.sp()?;
                    }
                    let k = String::from_utf8_lossy(&p.astring()?).to_string();
                    p.sp()?;
                    let val = if p.peek() == Some(b'"') || p.peek() == Some(b'{') {
                        Some(String::from_utf8_lossy(&p.astring()?).to_string())
                    } else {
                        p.atom().ok().filter(|a| !a.eq_ignore_ascii_case("NIL"))
                    };
                    v.push((k, val));
                }
            }
            Command::Id(v)
        }
        (false, "GETQUOTAROOT") => {
            p.sp()?;
            Command::GetQuotaRoot(p.mailbox()?)
        }
        (false, "GETQUOTA") => {
            p.sp()?;
            Command::GetQuota(p.astr()?)
        }
        (false, "NOTIFY") => {
            p.sp()?;
            Command::Notify(crate::imap::notify::parse(&mut p)?)
        }
        (false, "CANCELUPDATE") => {
            let mut tags = Vec::new();
            while p.eat(b' ') {
                if p.peek() != Some(b'"') {
                    return p.err("CANCELUPDATE takes quoted tags");
                }
                tags.push(String::from_utf8_lossy(&p.quoted()?).into_owned());
            }
            if tags.is_empty() {
                return p.err("CANCELUPDATE needs a tag");
            }
            Command::CancelUpdate(tags)
        }
        (false, "GENURLAUTH") => {
            let mut v = Vec::new();
            while p.eat(b' ') {
                let rump = p.astr()?;
                p.sp()?;
                v.push((rump, p.atom()?.to_ascii_uppercase()));
            }
            if v.is_empty() {
                return p.err("GENURLAUTH needs a URL and a mechanism");
            }
            Command::GenUrlAuth(v)
        }
        (false, "RESETKEY") => {
            let mut mailbox = None;
            let mut mechs = Vec::new();
            if p.eat(b' ') {
                mailbox = Some(p.mailbox()?);
                while p.eat(b' ') {
                    mechs.push(p.atom()?.to_ascii_uppercase());
                }
            }
            Command::ResetKey(mailbox, mechs)
        }
        (false, "URLFETCH") => {
            let mut v = Vec::new();
            while p.eat(b' ') {
                v.push(p.astr()?);
            }
            if v.is_empty() {
                return p.err("URLFETCH needs a URL");
            }
            Command::UrlFetch(v)
        }
        (false, "GETMETADATA") => {
            p.sp()?;
            Command::GetMetadata(crate::imap::metadata::parse_get(&mut p)?)
        }
        (false, "SETMETADATA") => {
            p.sp()?;
            Command::SetMetadata(crate::imap::metadata::parse_set(&mut p)?)
        }
        (false, "COMPRESS") => {
            p.sp()?;
            Command::Compress(p.atom()?.to_ascii_uppercase())
        }
        (_, "SEARCH") => {
            p.sp()?;
            Command::Search {
                uid,
                search: crate::imap::search::parse_search(&mut p)?,
            }
        }
        (_, "SORT") => {
            p.sp()?;
            Command::Sort {
                uid,
                sort: crate::imap::sort::parse_sort(&mut p)?,
            }
        }
        (_, "THREAD") => {
            p.sp()?;
            Command::Thread {
                uid,
                thread: crate::imap::thread::parse_thread(&mut p)?,
            }
        }
        (_, "SETQUOTA") => {
            // Arguments are not parsed yet; skip to the end.
            p.i = p.b.len();
            Command::Unsupported(verb.clone())
        }
        _ => return p.err(format!("unknown command {verb}")),
    };
    p.end()?;
    Ok((tag, cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each of `bad` is a parse error.
    fn refused(bad: &[&[u8]]) {
        for b in bad {
            assert!(parse_command(b).is_err(), "{}", String::from_utf8_lossy(b));
        }
    }

    fn ok(s: &[u8]) -> Command {
        parse_command(s)
            .unwrap_or_else(|e| panic!("{e:?} in {:?}", String::from_utf8_lossy(s)))
            .1
    }

    #[test]
    fn append_takes_catenate_parts() {
        let c = ok(b"a APPEND Drafts (\\Seen) CATENATE (URL \"/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER\" TEXT {4+}\r\nab\r\n URL /Drafts/;UID=30)\r\n");
        let Command::Append { messages, .. } = c else {
            panic!("{c:?}")
        };
        assert_eq!(messages[0].flags, ["\\Seen"]);
        assert_eq!(
            messages[0].message,
            AppendData::Catenate(vec![
                CatPart::Url("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER".into()),
                CatPart::Text(b"ab\r\n".to_vec()),
                CatPart::Url("/Drafts/;UID=30".into()),
            ])
        );
        // MULTIAPPEND mixes both kinds.
        let c = ok(b"a APPEND x {1+}\r\na catenate (TEXT {1+}\r\nb)\r\n");
        let Command::Append { messages, .. } = c else {
            panic!("{c:?}")
        };
        assert_eq!(messages.len(), 2);
        refused(&[
            &b"a APPEND x CATENATE ()\r\n"[..],
            b"a APPEND x CATENATE (TEXT \"abc\")\r\n",
            b"a APPEND x CATENATE (TEXT ~{1+}\r\na)\r\n",
            b"a APPEND x CATENATE (FILE /etc/passwd)\r\n",
            b"a APPEND x CATENATE (URL /x/;UID=1\r\n",
            b"a APPEND x CATENATE URL /x/;UID=1\r\n",
        ]);
    }

    #[test]
    fn create_takes_special_use_attributes() {
        let create = |m: &str, a: &[&str]| Command::Create {
            mailbox: m.into(),
            special_use: a.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(ok(b"a CREATE x\r\n"), create("x", &[]));
        assert_eq!(
            ok(b"a CREATE Drafts (USE (\\Drafts))\r\n"),
            create("Drafts", &["\\Drafts"])
        );
        assert_eq!(
            ok(b"a CREATE y (use (\\Sent \\Junk))\r\n"),
            create("y", &["\\Sent", "\\Junk"])
        );
        assert_eq!(ok(b"a CREATE z (USE ())\r\n"), create("z", &[]));
        refused(&[
            &b"a CREATE x ()\r\n"[..],
            b"a CREATE x (FOO)\r\n",
            b"a CREATE x (USE \\Drafts)\r\n",
            b"a CREATE x (USE (Drafts))\r\n",
            b"a CREATE x (USE (\\Drafts)\r\n",
            b"a CREATE x USE (\\Drafts)\r\n",
        ]);
    }

    #[test]
    fn commands_parse() {
        assert_eq!(ok(b"a1 CAPABILITY\r\n"), Command::Capability);
        assert_eq!(
            ok(b"a2 login \"bob\" {6}\r\nsecret\r\n"),
            Command::Login {
                user: "bob".into(),
                password: Secret("secret".into())
            }
        );
        assert_eq!(
            ok(b"a3 SELECT INBOX (CONDSTORE)\r\n"),
            Command::Select {
                mailbox: "INBOX".into(),
                readonly: false,
                condstore: true,
                qresync: None
            }
        );
        assert_eq!(
            ok(b"a4 LIST \"\" \"*\"\r\n"),
            Command::List {
                reference: "".into(),
                patterns: vec!["*".into()],
                lsub: false,
                select: Selection::default(),
                ret: Returns::default(),
                status: None
            }
        );
        assert_eq!(
            ok(b"a5 LIST \"\" %\r\n"),
            Command::List {
                reference: "".into(),
                patterns: vec!["%".into()],
                lsub: false,
                select: Selection::default(),
                ret: Returns::default(),
                status: None
            }
        );
        assert_eq!(
            ok(b"a5 LIST (SUBSCRIBED) \"\" (INBOX \"S*\") RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n"),
            Command::List {
                reference: "".into(),
                patterns: vec!["INBOX".into(), "S*".into()],
                lsub: false,
                select: Selection {
                    subscribed: true,
                    ..Default::default()
                },
                ret: Returns {
                    children: true,
                    ..Default::default()
                },
                status: Some(vec![StatusItem::Messages, StatusItem::Unseen])
            }
        );
        assert_eq!(
            ok(b"a5 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n"),
            Command::Select {
                mailbox: "INBOX".into(),
                readonly: false,
                condstore: false,
                qresync: Some(Qresync {
                    uidvalidity: 67890007,
                    modseq: 20050715194045000,
                    known_uids: Some(SequenceSet::Ranges(vec![
                        (SeqBound::Num(41), SeqBound::Num(41)),
                        (SeqBound::Num(43), SeqBound::Num(211)),
                        (SeqBound::Num(214), SeqBound::Num(541))
                    ]))
                })
            }
        );
        assert_eq!(
            ok(b"a6 STATUS Sent (MESSAGES UIDNEXT SIZE)\r\n"),
            Command::Status {
                mailbox: "Sent".into(),
                items: vec![StatusItem::Messages, StatusItem::UidNext, StatusItem::Size]
            }
        );
        assert_eq!(
            ok(b"a7 APPEND Drafts (\\Seen $Draft) \" 7-Feb-1994 21:52:25 -0800\" {5+}\r\nhello\r\n"),
            Command::Append { mailbox: "Drafts".into(), messages: vec![AppendMessage { flags: vec!["\\Seen".into(), "$Draft".into()], date: Some(" 7-Feb-1994 21:52:25 -0800".into()), message: AppendData::Literal(b"hello".to_vec()) }] }
        );
        assert_eq!(
            ok(b"a7 APPEND Drafts {1+}\r\na (\\Seen) {2+}\r\nbc\r\n"),
            Command::Append {
                mailbox: "Drafts".into(),
                messages: vec![
                    AppendMessage {
                        flags: vec![],
                        date: None,
                        message: AppendData::Literal(b"a".to_vec())
                    },
                    AppendMessage {
                        flags: vec!["\\Seen".into()],
                        date: None,
                        message: AppendData::Literal(b"bc".to_vec())
                    }
                ]
            }
        );
        assert_eq!(
            ok(b"a8 UID FETCH 1:*,5 (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100> BINARY.SIZE[1]) (CHANGEDSINCE 9)\r\n"),
            Command::Fetch {
                uid: true,
                set: SequenceSet::Ranges(vec![(SeqBound::Num(1), SeqBound::Star), (SeqBound::Num(5), SeqBound::Num(5))]),
                attrs: vec![
                    FetchAttr::Flags,
                    FetchAttr::BodySection { peek: true, section: section::parse_section("HEADER.FIELDS (From To)").unwrap(), partial: Some((0, 100)) },
                    FetchAttr::Binary { peek: true, size_only: true, section: section::parse_section("1").unwrap(), partial: None }
                ],
                changed_since: Some(9),
                vanished: false,
                partial: None
            }
        );
        assert_eq!(
            ok(b"a9 FETCH 2 FAST\r\n"),
            Command::Fetch {
                uid: false,
                set: SequenceSet::Ranges(vec![(SeqBound::Num(2), SeqBound::Num(2))]),
                attrs: vec![
                    FetchAttr::Flags,
                    FetchAttr::InternalDate,
                    FetchAttr::Rfc822Size
                ],
                changed_since: None,
                vanished: false,
                partial: None
            }
        );
        assert_eq!(
            ok(b"b1 STORE $ (UNCHANGEDSINCE 3) +FLAGS.SILENT (\\Deleted)\r\n"),
            Command::Store {
                uid: false,
                set: SequenceSet::Saved,
                op: StoreOp::Add,
                silent: true,
                flags: vec!["\\Deleted".into()],
                unchanged_since: Some(3)
            }
        );
        assert_eq!(
            ok(b"b2 UID MOVE 4:7 Archive\r\n"),
            Command::Move {
                uid: true,
                set: SequenceSet::Ranges(vec![(SeqBound::Num(4), SeqBound::Num(7))]),
                mailbox: "Archive".into()
            }
        );
        assert_eq!(
            ok(b"b3 ID (\"name\" \"mutt\" \"version\" NIL)\r\n"),
            Command::Id(vec![
                ("name".into(), Some("mutt".into())),
                ("version".into(), None)
            ])
        );
        assert_eq!(
            ok(b"b4 UID EXPUNGE 3\r\n"),
            Command::Expunge {
                uids: Some(SequenceSet::Ranges(vec![(
                    SeqBound::Num(3),
                    SeqBound::Num(3)
                )]))
            }
        );
        assert_eq!(
            ok(b"b6 AUTHENTICATE PLAIN =\r\n"),
            Command::Authenticate {
                mechanism: "PLAIN".into(),
                initial: Some(String::new())
            }
        );
    }

    #[test]
    fn sort_and_thread_parse() {
        use crate::imap::search::SearchKey;
        use crate::imap::sort::{SortCommand, SortCriterion, SortKey};
        use crate::imap::thread::{ThreadAlgorithm, ThreadCommand};
        assert_eq!(
            ok(b"a1 UID SORT (REVERSE ARRIVAL DISPLAYFROM) UTF-8 UNSEEN\r\n"),
            Command::Sort {
                uid: true,
                sort: SortCommand {
                    ret: None,
                    criteria: vec![
                        SortCriterion {
                            reverse: true,
                            key: SortKey::Arrival
                        },
                        SortCriterion {
                            reverse: false,
                            key: SortKey::DisplayFrom
                        }
                    ],
                    charset: "UTF-8".into(),
                    keys: vec![SearchKey::Unseen]
                }
            }
        );
        assert_eq!(
            ok(b"a2 thread references us-ascii ALL\r\n"),
            Command::Thread {
                uid: false,
                thread: ThreadCommand {
                    algorithm: ThreadAlgorithm::References,
                    charset: "us-ascii".into(),
                    keys: vec![SearchKey::All]
                }
            }
        );
        assert!(matches!(
            ok(b"a3 UID THREAD ORDEREDSUBJECT UTF-8 SUBJECT {3}\r\nfoo\r\n"),
            Command::Thread { uid: true, .. }
        ));
        assert_eq!(
            ok(b"a4 SETQUOTA \"\" (STORAGE 512)\r\n"),
            Command::Unsupported("SETQUOTA".into())
        );
        for bad in [
            &b"b1 SORT\r\n"[..],
            b"b2 SORT () UTF-8 ALL\r\n",
            b"b3 SORT (DATE) ALL\r\n",
            b"b4 SORT (COLOR) UTF-8 ALL\r\n",
            b"b5 THREAD UTF-8 ALL\r\n",
            b"b6 UID THREAD REFERENCES UTF-8\r\n",
        ] {
            let e = parse_command(bad).expect_err(&String::from_utf8_lossy(bad));
            assert!(!e.reason.is_empty());
        }
    }

    #[test]
    fn bad_commands_name_the_tag_and_position() {
        for bad in [
            &b"\r\n"[..],
            b"a1\r\n",
            b"a1 FROB\r\n",
            b"a2 FETCH 0 FLAGS\r\n",
            b"a3 FETCH 1: FLAGS\r\n",
            b"a4 FETCH 1 (FLAGS\r\n",
            b"a5 LOGIN \"unterminated\r\n",
            b"a6 LOGIN a {10}\r\nshort\r\n",
            b"a7 STORE 1 FLAGS.LOUD (\\Seen)\r\n",
            b"a8 NOOP extra\r\n",
            b"a9 SELECT INBOX (QRESYNCX)\r\n",
            b"b1 FETCH 1 BODY[1\r\n",
            b"b2 FETCH 99999999999 FLAGS\r\n",
            b"b3 APPEND INBOX hello\r\n",
        ] {
            let e = parse_command(bad).expect_err(&String::from_utf8_lossy(bad));
            assert!(!e.reason.is_empty());
        }
        assert_eq!(
            parse_command(b"a2 FETCH 0 FLAGS\r\n").unwrap_err().tag,
            "a2"
        );
    }

    /// ENABLE's capabilities, LIST's options and FETCH sections come out of the one parse
    /// as types; what cannot be one is `BAD` here, before any mailbox is looked at.
    #[test]
    fn options_and_sections_are_typed_at_parse() {
        assert_eq!(
            ok(b"e ENABLE condstore UTF8=Accept X-FOO\r\n"),
            Command::Enable(vec![
                Capability::CondStore,
                Capability::Utf8Accept,
                Capability::Other("X-FOO".into())
            ])
        );
        for bad in [
            &b"l LIST (NOSUCH) \"\" *\r\n"[..],
            b"l LIST (RECURSIVEMATCH) \"\" *\r\n",
            b"l LIST \"\" * RETURN (NOSUCH)\r\n",
            b"f FETCH 1 BODY[1.HEADERX]\r\n",
            b"f FETCH 1 BODY[0]\r\n",
            b"f FETCH 1 BINARY[1.TEXT]\r\n",
        ] {
            assert!(
                parse_command(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let Command::Fetch { attrs, .. } = ok(b"f FETCH 1 BODY.PEEK[2.1.MIME]\r\n") else {
            panic!("not a FETCH")
        };
        assert_eq!(
            attrs,
            vec![FetchAttr::BodySection {
                peek: true,
                section: Section {
                    part: vec![2, 1],
                    text: SectionText::Mime
                },
                partial: None
            }]
        );
    }
}
