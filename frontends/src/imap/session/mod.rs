//! The IMAP session after login, sans I/O: the authenticated and selected states (RFC 9051
//! section 3) as a state machine over two seams, the account's mail ([`MailStore`]) and the
//! connection ([`Link`]). It parses nothing (the framer and `command.rs` did) and touches no
//! socket; it writes responses to a buffer and sends them through the link. The server
//! runs it over the engine's partition and a TCP/TLS connection (`server/imap.rs`); the
//! transcript tests run it over memory (`memory.rs`, `tests.rs`).

mod fetch;
mod idle;
pub mod login;
mod mailboxes;
#[cfg(test)]
mod memory;
mod messages;
mod metadata;
mod notify;
mod search;
mod select;
pub mod state;
pub mod store;
#[cfg(test)]
mod tests;
mod urls;

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use ringmail_engine::{
    Error, FlagOp, Flags, MailboxInfo, MessageInfo, NewMessage, SpecialUse, StoreError, Uid,
};

use mailboxes::mailbox_id;
use notify::NotifyState;
use search::SearchContext;
use select::{msg_of, vanished_earlier};
pub use state::State;
pub use store::{Link, MailStore, Stamp, Woke};

use crate::imap::command::{AppendData, AppendMessage, Capability, CatPart, Qresync};
use crate::imap::encode::compress_set;
use crate::imap::partial::PartialRange;
use crate::imap::reply::{Code, Failure};
use crate::imap::view::{self, Msg, SyncOptions, View};
use crate::imap::{
    context, datetime, encode, list, mutf7, sort, thread, url, urlauth, Command, Frame,
    SequenceSet, StatusItem, StoreOp,
};
use crate::mime::{MessageMeta, PackedEnvelope};

/// The limits and texts a session needs from the server's configuration (taken once, at
/// its start: a reload never changes a session in flight).
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The CAPABILITY list after login.
    pub capabilities: String,
    pub max_message_size: u64,
    pub max_mailbox_name: usize,
    pub max_mailbox_depth: usize,
    pub max_mailboxes: usize,
}

/// FETCH output is sent in pieces of about this size.
const FLUSH_AT: usize = 256 << 10;
/// URLs one URLFETCH may name (each may be a whole message).
const MAX_URLFETCH: usize = 100;
const DELIMITER: char = '/';
/// SEARCH, SORT and THREAD take a mailbox this many messages at a time: enough to keep the
/// store's reads of missing envelopes busy, few enough to hold little.
const SEARCH_CHUNK: usize = 512;

/// What the client turned on with ENABLE.
#[derive(Clone, Copy, Default)]
struct Enabled {
    condstore: bool,
    qresync: bool,
    utf8: bool,
    rev2: bool,
}

/// An IMAP session after login: the authenticated and selected states (RFC 9051 section
/// 3) over a [`MailStore`], writing its responses to `out` and sending them over a
/// [`Link`].
pub struct Session<S: MailStore, L: Link> {
    store: S,
    pub link: L,
    /// Responses not sent yet.
    out: Vec<u8>,
    cfg: SessionConfig,
    account: String,
    enabled: Enabled,
    view: Option<View>,
    /// While a mailbox is selected: keeps messages other sessions expunge readable until
    /// this one is told (RFC 2180 section 4.1.1).
    mark: Option<S::Mark>,
    /// The saved search result (`$`, RFC 5182), as UIDs.
    saved: Vec<u32>,
    /// Searches kept up to date (RFC 5267 UPDATE), and the mailbox's state when they were
    /// last brought up to date.
    contexts: Vec<SearchContext>,
    /// What NOTIFY asked for (RFC 5465), and the account as last told.
    notify: Option<NotifyState>,
    /// UIDs this session put into the selected mailbox (APPEND, COPY, MOVE): NOTIFY's
    /// MessageNew FETCH is not sent for them.
    own_new: HashSet<u32>,
    keywords: Vec<String>,
    closing: bool,
    /// The selected mailbox's HIGHESTMODSEQ was reported with CONDSTORE on (RFC 7162 section
    /// 3.1: a command that enables CONDSTORE after SELECT reports it then).
    modseq_told: bool,
    /// How many of the account's keywords the last FLAGS response named (the list only
    /// grows): a new one is announced before any FETCH shows it.
    keywords_told: usize,
}

type Res = Result<(), Failure>;

/// The one place engine errors become IMAP `NO` replies. What is not the client's doing
/// (damaged data, a failed disk) is said without the engine's details: those name files
/// and internals, and go to the log instead.
fn no(e: Error) -> Failure {
    match &e {
        Error::Corrupt { .. } | Error::MissingSegment(_) => {
            tracing::error!(error = %e, "stored data is damaged");
            return Failure::code(
                Code::Corruption,
                "stored data is damaged; the administrator can run fsck",
            );
        }
        Error::Io { .. } | Error::Failed(_) | Error::Poisoned(_) => {
            tracing::error!(error = %e, "storage failed");
            return Failure::code(Code::Unavailable, "storage failed, try again later");
        }
        _ => {}
    }
    let code = match e.store() {
        Some(StoreError::NoSuchMailbox) => Some(Code::Nonexistent),
        Some(StoreError::MailboxExists) => Some(Code::AlreadyExists),
        Some(StoreError::OverQuota { .. }) => Some(Code::OverQuota),
        Some(StoreError::MessageTooLarge { .. }) => Some(Code::TooBig),
        Some(StoreError::TooManyKeywords { .. }) => Some(Code::Limit),
        Some(StoreError::CannotDeleteInbox) | Some(StoreError::InvalidName(_)) => {
            Some(Code::Cannot)
        }
        Some(StoreError::ShuttingDown)
        | Some(StoreError::Unavailable(_))
        | Some(StoreError::Unconfirmed)
        | Some(StoreError::NotHere(_))
        | None => Some(Code::Unavailable),
        _ => None,
    };
    Failure {
        status: crate::imap::reply::Status::No,
        code,
        text: e.to_string().into(),
    }
}

impl<S: MailStore, L: Link> Session<S, L> {
    pub fn new(store: S, link: L, cfg: SessionConfig, account: String) -> Self {
        Session {
            store,
            link,
            out: Vec::with_capacity(4096),
            cfg,
            account,
            enabled: Enabled::default(),
            view: None,
            mark: None,
            saved: Vec::new(),
            contexts: Vec::new(),
            notify: None,
            own_new: HashSet::new(),
            keywords: Vec::new(),
            closing: false,
            modseq_told: false,
            keywords_told: 0,
        }
    }

    /// The protocol state: a session exists only after login.
    pub fn state(&self) -> State {
        match self.view {
            Some(_) => State::Selected,
            None => State::Authenticated,
        }
    }

    /// Whether the session ended (LOGOUT, or the connection is gone).
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Writes one response line.
    pub fn line(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// A command's tagged failure (untagged, `*`, when the tag could not be read).
    pub fn failed(&mut self, tag: &str, f: &Failure) {
        f.write(tag, &mut self.out);
    }

    /// Hands what was written to the link, to go out with what follows.
    pub fn pass_output(&mut self) {
        self.link.queue(&mut self.out);
    }

    /// Sends what was written. `false`: the connection is gone.
    pub async fn flush(&mut self) -> bool {
        self.link.send(&mut self.out).await
    }

    /// Runs one command and writes its responses; a failure is answered here, after the
    /// expunges it may not announce were held back.
    pub async fn handle(&mut self, tag: &str, cmd: Command) {
        if let Err(failure) = self.command(tag, cmd).await {
            // A failed FETCH, STORE or SEARCH still may not announce expunges.
            self.sync(false).await;
            self.failed(tag, &failure);
        }
    }

    /// A mailbox name as the client sent it, decoded. One that is not modified UTF-7 is
    /// still a well-formed astring, so no mailbox has it: `NO [NONEXISTENT]`, as Dovecot
    /// answers (CREATE says `NO [CANNOT]` itself), not `BAD`.
    fn mailbox_name(&self, raw: &str) -> Result<String, Failure> {
        let name = if self.enabled.utf8 {
            raw.to_string()
        } else {
            mutf7::decode(raw).ok_or_else(|| {
                Failure::code(
                    Code::Nonexistent,
                    "no such mailbox (the name is not modified UTF-7)",
                )
            })?
        };
        let name = name.trim_end_matches(DELIMITER).to_string();
        if name.eq_ignore_ascii_case("INBOX") {
            return Ok("INBOX".into());
        }
        Ok(name)
    }

    fn show_name(&self, name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let s = if self.enabled.utf8 {
            name.to_string()
        } else {
            mutf7::encode(name)
        };
        encode::astring(&mut out, s.as_bytes());
        out
    }

    /// Reads the account's keywords again; a new one is announced at once (untagged FLAGS
    /// and PERMANENTFLAGS, RFC 9051 section 7.3.5), before a FETCH can show it.
    fn refresh_keywords(&mut self) {
        if let Ok(k) = self.store.keywords() {
            self.keywords = k;
        }
        if let Some(v) = &self.view {
            if self.keywords.len() > self.keywords_told {
                let readonly = v.readonly;
                self.flag_lines(readonly);
            }
        }
    }

    /// The FLAGS and PERMANENTFLAGS responses for the selected mailbox.
    fn flag_lines(&mut self, readonly: bool) {
        let mut l = b"* FLAGS ".to_vec();
        let mut names: Vec<&str> =
            vec!["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];
        names.extend(self.keywords.iter().map(|s| s.as_str()));
        encode::flag_list(&mut l, names.iter().copied());
        l.extend_from_slice(b"\r\n* OK [PERMANENTFLAGS ");
        names.push("\\*");
        encode::flag_list(&mut l, if readonly { vec![] } else { names });
        l.extend_from_slice(b"] flags permitted\r\n");
        self.out.extend_from_slice(&l);
        self.keywords_told = self.keywords.len();
    }

    /// The IMAP names of a message's flags: system flags, then the account's keywords.
    fn flag_names(keywords: &[String], f: u64) -> Vec<&str> {
        let flags = Flags(f);
        let mut names: Vec<&str> = flags.system_names().collect();
        names.extend(
            flags
                .keywords()
                .filter_map(|k| keywords.get(k as usize).map(String::as_str)),
        );
        names
    }

    fn render_flags(keywords: &[String], f: u64, recent: bool, out: &mut Vec<u8>) {
        let flags = Flags(f);
        // Written straight out, with no list of names: FETCH 1:* (FLAGS) does this for
        // every message.
        out.push(b'(');
        let start = out.len();
        let mut put = |name: &str| {
            if out.len() > start {
                out.push(b' ');
            }
            out.extend_from_slice(name.as_bytes());
        };
        flags.system_names().for_each(&mut put);
        for k in flags.keywords() {
            if let Some(name) = keywords.get(k as usize) {
                put(name);
            }
        }
        if recent {
            put("\\Recent");
        }
        out.push(b')');
    }

    async fn command(&mut self, tag: &str, cmd: Command) -> Res {
        // Before a change of its own (absorbed untold after it), what others changed is
        // told: NOTIFY's events may go out at any time.
        let changes_account = matches!(
            cmd,
            Command::Create { .. }
                | Command::Delete(_)
                | Command::Rename { .. }
                | Command::Subscribe(_)
                | Command::Unsubscribe(_)
                | Command::SetMetadata(_)
                | Command::Append { .. }
                | Command::Copy { .. }
                | Command::Move { .. }
        );
        if changes_account && self.notify.is_some() {
            self.notify_check(false).await;
        }
        state::check(&cmd, self.state())?;
        match cmd {
            Command::Capability => {
                let c = self.cfg.capabilities.clone();
                self.line(&format!("* CAPABILITY {c}"));
                self.ok(tag, "CAPABILITY completed").await
            }
            Command::Noop => self.ok(tag, "NOOP completed").await,
            // Every change is durable when acknowledged: nothing to checkpoint.
            Command::Check => self.ok(tag, "CHECK completed").await,
            Command::Logout => {
                self.line("* BYE logging out");
                self.line(&format!("{tag} OK LOGOUT completed"));
                self.closing = true;
                Ok(())
            }
            Command::Id(_) => {
                self.line("* ID (\"name\" \"ringmail\")");
                self.ok(tag, "ID completed").await
            }
            // Refused by `state::check` above.
            Command::StartTls
            | Command::Login { .. }
            | Command::Authenticate { .. }
            | Command::Unsupported(_) => Err(Failure::bad("not valid in this state")),
            Command::Enable(caps) => self.enable(tag, caps).await,
            Command::Select {
                mailbox,
                readonly,
                condstore,
                qresync,
            } => {
                self.select_cmd(tag, &mailbox, readonly, condstore, qresync)
                    .await
            }
            Command::Create {
                mailbox: name,
                special_use,
            } => self.create(tag, name, special_use).await,
            Command::Delete(name) => self.delete(tag, name).await,
            Command::Rename { from, to } => self.rename(tag, from, to).await,
            Command::Subscribe(name) => self.subscribe(tag, name, true).await,
            Command::Unsubscribe(name) => self.subscribe(tag, name, false).await,
            Command::Namespace => {
                self.line("* NAMESPACE ((\"\" \"/\")) NIL NIL");
                self.ok(tag, "NAMESPACE completed").await
            }
            Command::List {
                reference,
                patterns,
                lsub,
                select,
                ret,
                status,
            } => {
                self.list_cmd(
                    tag,
                    &reference,
                    &patterns,
                    lsub,
                    select,
                    ret,
                    status.as_deref(),
                )
                .await
            }
            Command::Status { mailbox, items } => self.status(tag, &mailbox, &items).await,
            Command::Append { mailbox, messages } => self.append(tag, &mailbox, messages).await,
            Command::Idle => self.idle(tag).await,
            Command::GetQuotaRoot(mailbox) => self.get_quota_root(tag, &mailbox).await,
            Command::GetQuota(root) => self.get_quota(tag, &root).await,
            Command::GetMetadata(get) => self.get_metadata(tag, get).await,
            Command::GenUrlAuth(pairs) => self.genurlauth(tag, pairs).await,
            Command::Notify(crate::imap::notify::Notify::None) => {
                self.notify = None;
                self.ok(tag, "NOTIFY completed: no notifications").await
            }
            Command::Notify(crate::imap::notify::Notify::Set { status, groups }) => {
                self.notify_set(tag, status, groups).await
            }
            Command::CancelUpdate(tags) => self.cancel_update(tag, tags).await,
            Command::ResetKey(mailbox, mechs) => self.resetkey(tag, mailbox, mechs).await,
            Command::UrlFetch(urls) => self.urlfetch(tag, urls).await,
            Command::SetMetadata(set) => self.set_metadata(tag, set).await,
            Command::Compress(alg) => self.compress(tag, &alg).await,
            Command::Close | Command::Unselect => {
                self.close(tag, matches!(cmd, Command::Close)).await
            }
            Command::Expunge { uids } => self.expunge(tag, uids).await,
            Command::Fetch {
                uid,
                set,
                attrs,
                changed_since,
                vanished,
                partial,
            } => {
                self.fetch_cmd(tag, uid, &set, &attrs, changed_since, vanished, partial)
                    .await
            }
            Command::Store {
                uid,
                set,
                op,
                silent,
                flags,
                unchanged_since,
            } => {
                self.store(tag, uid, &set, op, silent, &flags, unchanged_since)
                    .await
            }
            Command::Copy { uid, set, mailbox } => self.copy(tag, uid, &set, &mailbox, false).await,
            Command::Move { uid, set, mailbox } => self.copy(tag, uid, &set, &mailbox, true).await,
            Command::Search { uid, search } => self.search(tag, uid, search).await,
            Command::Sort { uid, sort } => self.sort(tag, uid, sort).await,
            Command::Thread { uid, thread } => self.thread(tag, uid, thread).await,
        }
    }

    async fn ok(&mut self, tag: &str, text: &str) -> Res {
        self.sync(true).await;
        self.line(&format!("{tag} OK {text}"));
        Ok(())
    }

    /// Turns CONDSTORE on (RFC 7162 section 3.1): by ENABLE, or by the first command that
    /// uses a modification sequence. If a mailbox was selected before, its HIGHESTMODSEQ
    /// is reported now, once.
    fn enable_condstore(&mut self) {
        self.enabled.condstore = true;
        if self.modseq_told {
            return;
        }
        if let Some(v) = &self.view {
            self.line(&format!(
                "* OK [HIGHESTMODSEQ {}] highest",
                v.highest_modseq
            ));
            self.modseq_told = true;
        }
    }

    async fn enable(&mut self, tag: &str, caps: Vec<Capability>) -> Res {
        let mut on = Vec::new();
        for c in caps {
            match c {
                Capability::CondStore => self.enable_condstore(),
                Capability::QResync => {
                    self.enabled.qresync = true;
                    self.enable_condstore();
                }
                Capability::Utf8Accept => self.enabled.utf8 = true,
                Capability::Imap4Rev2 => self.enabled.rev2 = true,
                Capability::Other(_) => continue,
            }
            on.push(c.name().to_string());
        }
        self.line(format!("* ENABLED {}", on.join(" ")).trim_end());
        self.ok(tag, "ENABLE completed").await
    }

    async fn compress(&mut self, tag: &str, alg: &str) -> Res {
        if self.link.compressing() {
            return Err(Failure::code(
                Code::CompressionActive,
                "already compressing",
            ));
        }
        if alg != "DEFLATE" {
            return Err(Failure::bad(format!("unknown compression {alg}")));
        }
        self.line(&format!("{tag} OK DEFLATE active"));
        if !self.flush().await {
            self.closing = true;
        }
        self.link.start_compress();
        Ok(())
    }
}
