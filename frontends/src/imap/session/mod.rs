//! The IMAP session after login, sans I/O: the authenticated and selected states (RFC 9051
//! section 3) as a state machine over two seams, the account's mail ([`MailStore`]) and the
//! connection ([`Link`]). It parses nothing (the framer and `command.rs` did) and touches no
//! socket; it writes responses to a buffer and sends them through the link. The server
//! runs it over the engine's partition and a TCP/TLS connection (`server/imap.rs`); the
//! transcript tests run it over memory (`memory.rs`, `tests.rs`).

pub mod store;

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use ringmail_engine::{
    Error, FlagOp, Flags, MailboxInfo, MessageInfo, NewMessage, SpecialUse, StoreError, Uid,
};

pub use store::{Link, MailStore, Stamp, Woke};

use crate::imap::command::{AppendData, AppendMessage, Capability, CatPart, Qresync};
use crate::imap::encode::compress_set;
use crate::imap::partial::PartialRange;
use crate::imap::reply::{Code, Failure};
use crate::imap::view::{self, Msg, SyncOptions, View};
use crate::imap::{
    context, datetime, encode, fetch, list, metadata, mutf7, search, sort, thread, url, urlauth,
    Command, Frame, SequenceSet, StatusItem, StoreOp,
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

/// The special use a CREATE asks for (RFC 6154 section 3). A mailbox here has at most one,
/// and \All and \Flagged name virtual mailboxes this store does not keep: those, several
/// at once, and attributes nobody defined are `NO [USEATTR]`, and nothing is created.
fn create_special_use(attrs: &[String]) -> Result<SpecialUse, Failure> {
    let refuse = |why: String| Err(Failure::code(Code::UseAttr, why));
    let mut attrs: Vec<String> = attrs.iter().map(|a| a.to_ascii_lowercase()).collect();
    attrs.dedup();
    match attrs.as_slice() {
        [] => Ok(SpecialUse::None),
        [a] => match a.as_str() {
            "\\archive" => Ok(SpecialUse::Archive),
            "\\drafts" => Ok(SpecialUse::Drafts),
            "\\junk" => Ok(SpecialUse::Junk),
            "\\sent" => Ok(SpecialUse::Sent),
            "\\trash" => Ok(SpecialUse::Trash),
            "\\all" | "\\flagged" => refuse(format!(
                "{a} is a virtual mailbox, which this server does not make"
            )),
            _ => refuse(format!("{a} is not a special-use attribute")),
        },
        _ => refuse("a mailbox here has one special use at most".into()),
    }
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
        Some(StoreError::ShuttingDown) | Some(StoreError::Unavailable(_)) | None => {
            Some(Code::Unavailable)
        }
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
        let tag = if tag.is_empty() { "*" } else { tag };
        self.line(&format!("{tag} {f}"));
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

    /// The mailbox's URLAUTH access key, made (and stored) when it has none.
    async fn mailbox_key(&self, mailbox: &str) -> Result<Vec<u8>, Error> {
        self.store
            .annotation_or_insert(Some(mailbox), urlauth::KEY_ENTRY, urlauth::new_key)
            .await
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

    /// Offers the view's picture to other sessions' SELECTs while it is the store's.
    fn share_view(&self) {
        let Some(v) = &self.view else { return };
        let Some(msgs) = v.snapshot() else { return };
        let stamp = Stamp {
            highest_modseq: v.highest_modseq,
            uidnext: v.uidnext,
            messages: v.len(),
        };
        self.store.share_picture(v.uidvalidity, stamp, msgs);
    }

    /// Brings the client's view of the selected mailbox up to date (untagged responses).
    async fn sync(&mut self, expunge: bool) {
        // Read with the mailbox: sync_view does not await before the view is up to date.
        let retired = self.store.retired_seq();
        // Where REMOVEFROM goes (before any EXPUNGE, while its numbers are still valid), and
        // the numbers it uses.
        let before = match (&self.view, self.contexts.is_empty()) {
            (Some(v), false) => Some((self.out.len(), v.pictured())),
            (None, false) => {
                self.contexts.clear();
                None
            }
            _ => None,
        };
        let uidnext = self.view.as_ref().map(|v| v.uidnext);
        self.sync_view(expunge).await;
        if let Some((at, old)) = before {
            self.update_contexts(at, &old).await;
        }
        if self.notify.is_some() {
            self.notify_new_messages(uidnext).await;
            self.notify_check(false).await;
        }
        if let (Some(view), Some(mark)) = (&self.view, &self.mark) {
            if !view.has_gone() {
                // Told of every expunge so far: nothing kept before is needed for us.
                self.store.caught_up(mark, retired);
            }
        }
        self.share_view();
    }

    async fn sync_view(&mut self, expunge: bool) {
        let Some(view) = self.view.as_mut() else {
            return;
        };
        let Ok(st) = self.store.status(&view.mailbox) else {
            return;
        };
        if st.highest_modseq.0 == view.highest_modseq
            && st.uidnext.0 == view.uidnext
            && st.messages == view.len()
            && !(expunge && view.has_gone())
        {
            return;
        }
        // Only new messages since the view was last brought up to date (the common case
        // while mail arrives): read just those, not the whole mailbox.
        let only_new = st.changed_modseq.0 <= view.highest_modseq
            && st.uidvalidity.0 == view.uidvalidity
            && !(expunge && view.has_gone());
        let from = if only_new { view.uidnext } else { 1 };
        let Ok(cur) = self.store.messages(&view.mailbox, Uid(from)) else {
            return;
        };
        let claimed = Some(if view.readonly {
            self.store.recent_boundary(&st)
        } else {
            self.store.claim_recent(&st)
        });
        let opt = SyncOptions {
            expunge,
            vanished: self.enabled.qresync,
            modseq: self.enabled.condstore,
            uid: self.enabled.qresync,
            recent: !self.enabled.rev2,
        };
        if let Ok(k) = self.store.keywords() {
            self.keywords = k;
        }
        if self.keywords.len() > self.keywords_told {
            let readonly = view.readonly;
            self.flag_lines(readonly);
        }
        let Some(view) = self.view.as_mut() else {
            return;
        };
        let kw = &self.keywords;
        if only_new {
            view.sync_new(
                &cur,
                st.uidnext.0,
                st.highest_modseq.0,
                claimed,
                opt,
                &mut self.out,
            );
            return;
        }
        let render = |f: u64, out: &mut Vec<u8>| Self::render_flags(kw, f, false, out);
        view.sync(
            &cur,
            st.uidnext.0,
            st.highest_modseq.0,
            claimed,
            opt,
            &render,
            &mut self.out,
        );
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
            Command::StartTls => Err(Failure::bad("already authenticated")),
            Command::Login { .. } | Command::Authenticate { .. } => {
                Err(Failure::bad("already authenticated"))
            }
            Command::Enable(caps) => {
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
            Command::Select {
                mailbox,
                readonly,
                condstore,
                qresync,
            } => {
                if condstore {
                    self.enabled.condstore = true;
                }
                if qresync.is_some() && !self.enabled.qresync {
                    return Err(Failure::bad("QRESYNC must be enabled first"));
                }
                self.select(tag, &mailbox, readonly, qresync).await
            }
            Command::Create {
                mailbox: name,
                special_use,
            } => {
                let special_use = create_special_use(&special_use)?;
                if !self.enabled.utf8 && mutf7::decode(&name).is_none() {
                    return Err(Failure::code(
                        Code::Cannot,
                        "the mailbox name is not modified UTF-7",
                    ));
                }
                let name = self.mailbox_name(&name)?;
                self.room_for(&name, 1)?;
                // Superiors are created too (RFC 9051 section 6.3.4).
                let mut prefix = String::new();
                for (i, seg) in name.split(DELIMITER).enumerate() {
                    if i > 0 {
                        prefix.push(DELIMITER);
                    }
                    prefix.push_str(seg);
                    if prefix != name && self.store.status(&prefix).is_err() {
                        let _ = self.store.create_mailbox(&prefix, SpecialUse::None).await;
                    }
                }
                let st = self
                    .store
                    .create_mailbox(&name, special_use)
                    .await
                    .map_err(no)?;
                let text = format!("[MAILBOXID ({})] CREATE completed", mailbox_id(&st));
                self.notify_absorb().await;
                self.ok(tag, &text).await
            }
            Command::Delete(name) => {
                let name = self.mailbox_name(&name)?;
                let uidvalidity = self.store.status(&name).map(|s| s.uidvalidity.0);
                self.store.delete_mailbox(&name).await.map_err(no)?;
                if let Ok(v) = uidvalidity {
                    self.store.forget_mailbox(v);
                }
                if self.view.as_ref().is_some_and(|v| v.mailbox == name) {
                    self.view = None;
                    self.mark = None;
                }
                self.notify_absorb().await;
                self.ok(tag, "DELETE completed").await
            }
            Command::Rename { from, to } => {
                let (from, to) = (self.mailbox_name(&from)?, self.mailbox_name(&to)?);
                // The renamed mailbox's inferiors move with it, as deep below `to`.
                let below = self
                    .store
                    .mailboxes()
                    .map_err(no)?
                    .iter()
                    .filter_map(|m| m.name.strip_prefix(&format!("{from}{DELIMITER}")))
                    .map(|rest| rest.split(DELIMITER).count())
                    .max()
                    .unwrap_or(0);
                self.room_for(&to, usize::from(from == "INBOX"))?;
                let depth = to.split(DELIMITER).count() + below;
                if depth > self.cfg.max_mailbox_depth {
                    return Err(Failure::code(
                        Code::Limit,
                        format!(
                            "mailboxes nest at most {} levels deep",
                            self.cfg.max_mailbox_depth
                        ),
                    ));
                }
                if from == "INBOX" {
                    // RFC 9051 section 6.3.6: INBOX stays, its messages move to the new one.
                    self.store
                        .create_mailbox(&to, SpecialUse::None)
                        .await
                        .map_err(no)?;
                    let uids: Vec<Uid> = self
                        .store
                        .messages("INBOX", Uid(1))
                        .map_err(no)?
                        .iter()
                        .map(|m| Uid(m.uid))
                        .collect();
                    if !uids.is_empty() {
                        self.store
                            .move_messages("INBOX", &to, &uids)
                            .await
                            .map_err(no)?;
                    }
                    self.notify_absorb().await;
                    return self.ok(tag, "RENAME completed").await;
                }
                self.store.rename_mailbox(&from, &to).await.map_err(no)?;
                // The selected mailbox keeps being the selected one under its new name.
                if let Some(v) = self.view.as_mut().filter(|v| v.mailbox == from) {
                    v.mailbox = to.clone();
                }
                self.notify_absorb().await;
                self.ok(tag, "RENAME completed").await
            }
            Command::Subscribe(name) => {
                let name = self.mailbox_name(&name)?;
                self.store.subscribe(&name, true).await.map_err(no)?;
                self.notify_absorb().await;
                self.ok(tag, "SUBSCRIBE completed").await
            }
            Command::Unsubscribe(name) => {
                let name = self.mailbox_name(&name)?;
                self.store.subscribe(&name, false).await.map_err(no)?;
                self.notify_absorb().await;
                self.ok(tag, "UNSUBSCRIBE completed").await
            }
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
                self.list(&reference, &patterns, lsub, select, ret, status.as_deref())?;
                self.ok(
                    tag,
                    if lsub {
                        "LSUB completed"
                    } else {
                        "LIST completed"
                    },
                )
                .await
            }
            Command::Status { mailbox, items } => {
                let name = self.mailbox_name(&mailbox)?;
                let st = self.store.status(&name).map_err(no)?;
                let line = self.status_line(&st, &items);
                self.out.extend_from_slice(&line);
                self.ok(tag, "STATUS completed").await
            }
            Command::Append { mailbox, messages } => self.append(tag, &mailbox, messages).await,
            Command::Idle => self.idle(tag).await,
            Command::GetQuotaRoot(mailbox) => {
                let name = self.mailbox_name(&mailbox)?;
                self.store.status(&name).map_err(no)?;
                let mut l = b"* QUOTAROOT ".to_vec();
                l.extend_from_slice(&self.show_name(&name));
                l.extend_from_slice(b" \"\"\r\n");
                self.out.extend_from_slice(&l);
                self.quota_line()?;
                self.ok(tag, "GETQUOTAROOT completed").await
            }
            Command::GetQuota(root) => {
                if !root.is_empty() {
                    return Err(Failure::code(Code::Nonexistent, "no such quota root"));
                }
                self.quota_line()?;
                self.ok(tag, "GETQUOTA completed").await
            }
            Command::GetMetadata(get) => self.get_metadata(tag, get).await,
            Command::GenUrlAuth(pairs) => self.genurlauth(tag, pairs).await,
            Command::Notify(crate::imap::notify::Notify::None) => {
                self.notify = None;
                self.ok(tag, "NOTIFY completed: no notifications").await
            }
            Command::Notify(crate::imap::notify::Notify::Set { status, mut groups }) => {
                use crate::imap::notify::{Event, Filter};
                // Names as the store keeps them (modified UTF-7 decoded, INBOX in capitals).
                for g in &mut groups {
                    if let Filter::Subtree(names) | Filter::Mailboxes(names) = &mut g.filter {
                        for n in names.iter_mut() {
                            if let Ok(decoded) = self.mailbox_name(n) {
                                *n = decoded;
                            }
                        }
                    }
                }
                let unsupported = groups
                    .iter()
                    .flat_map(|g| &g.events)
                    .any(|e| matches!(e, Event::Other(_) | Event::AnnotationChange));
                if unsupported {
                    return Err(Failure::code(
                        Code::BadEvent(crate::imap::notify::SUPPORTED.into()),
                        "an event is not supported",
                    ));
                }
                let new_atts = groups
                    .iter()
                    .filter(|g| {
                        matches!(
                            g.filter,
                            crate::imap::notify::Filter::Selected
                                | crate::imap::notify::Filter::SelectedDelayed
                        )
                    })
                    .flat_map(|g| &g.events)
                    .find_map(|e| match e {
                        Event::MessageNew(a) if !a.is_empty() => Some(a.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                let mut state = NotifyState {
                    groups,
                    new_atts,
                    known: Known::default(),
                    generation: self.store.change_generation(),
                };
                state.known = self.known(&state.groups).await;
                self.notify = Some(state);
                if status {
                    self.notify_check(true).await;
                }
                // An implicit NOOP (RFC 5465 section 3).
                self.ok(tag, "NOTIFY completed").await
            }
            Command::CancelUpdate(_) if self.view.is_none() => {
                Err(Failure::bad("no mailbox selected"))
            }
            Command::CancelUpdate(tags) => {
                let mut unknown = None;
                for t in &tags {
                    let before = self.contexts.len();
                    self.contexts.retain(|c| &c.tag != t);
                    if self.contexts.len() == before {
                        unknown.get_or_insert(t.clone());
                    }
                }
                if let Some(t) = unknown {
                    return Err(Failure::no(format!("no search {t:?} is being updated")));
                }
                self.ok(tag, "CANCELUPDATE completed: no further updates")
                    .await
            }
            Command::ResetKey(mailbox, mechs) => self.resetkey(tag, mailbox, mechs).await,
            Command::UrlFetch(urls) => {
                if urls.len() > MAX_URLFETCH {
                    return Err(Failure::code(
                        Code::Limit,
                        format!("at most {MAX_URLFETCH} URLs per URLFETCH"),
                    ));
                }
                // Each body is written out as it is read: a command naming one big
                // message many times holds one copy at a time.
                self.out.extend_from_slice(b"* URLFETCH");
                for u in &urls {
                    let who = urlauth::Requester::Imap(&self.account);
                    let data = self.store.fetch_url(u, who).await;
                    self.out.push(b' ');
                    encode::astring(&mut self.out, u.as_bytes());
                    self.out.push(b' ');
                    encode::nstring(&mut self.out, data.as_deref());
                    if self.out.len() >= FLUSH_AT && !self.flush().await {
                        self.closing = true;
                        return Ok(());
                    }
                }
                self.out.extend_from_slice(b"\r\n");
                self.ok(tag, "URLFETCH completed").await
            }
            Command::SetMetadata(set) => {
                let mailbox = self.metadata_target(&set.mailbox)?;
                self.store
                    .set_annotations(mailbox.as_deref(), &set.values)
                    .await
                    .map_err(|e| match e.store() {
                        Some(StoreError::AnnotationTooBig { max }) => {
                            Failure::code(Code::MetadataMaxSize(*max as u64), e.to_string())
                        }
                        Some(StoreError::TooManyAnnotations { .. }) => {
                            Failure::code(Code::MetadataTooMany, e.to_string())
                        }
                        _ => no(e),
                    })?;
                self.notify_absorb().await;
                self.ok(tag, "SETMETADATA completed").await
            }
            Command::Compress(alg) => {
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
            Command::Unsupported(v) => Err(Failure::bad(format!("{v} is not supported"))),
            // Selected state only from here on.
            _ if self.view.is_none() => Err(Failure::bad("no mailbox selected")),
            Command::Close | Command::Unselect => {
                let close = matches!(cmd, Command::Close);
                let view = self.view.take().expect("checked above");
                self.mark = None;
                if close && !view.readonly {
                    // CLOSE expunges silently (RFC 9051 section 6.4.1).
                    self.store.expunge(&view.mailbox, None).await.map_err(no)?;
                }
                if self.enabled.qresync {
                    self.line("* OK [CLOSED] previous mailbox is now closed");
                }
                self.line(&format!("{tag} OK completed"));
                Ok(())
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
                if vanished {
                    if !uid || !self.enabled.qresync {
                        return Err(Failure::bad("VANISHED needs UID FETCH and QRESYNC enabled"));
                    }
                    let view = self.view.as_ref().expect("selected");
                    vanished_earlier(view, Some(&set), &mut self.out);
                }
                self.fetch(tag, uid, &set, &attrs, changed_since, partial)
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

    fn quota_line(&mut self) -> Res {
        let a = self.store.account_info().map_err(no)?;
        let mut parts = Vec::new();
        if a.quota_bytes > 0 {
            parts.push(format!(
                "STORAGE {} {}",
                a.used_bytes.div_ceil(1024),
                a.quota_bytes / 1024
            ));
        }
        if a.quota_messages > 0 {
            parts.push(format!("MESSAGE {} {}", a.used_messages, a.quota_messages));
        }
        if !parts.is_empty() {
            self.line(&format!("* QUOTA \"\" ({})", parts.join(" ")));
        }
        Ok(())
    }

    fn status_line(&self, st: &MailboxInfo, items: &[StatusItem]) -> Vec<u8> {
        let mut l = b"* STATUS ".to_vec();
        l.extend_from_slice(&self.show_name(&st.name));
        l.extend_from_slice(b" (");
        let mut first = true;
        for it in items {
            if !std::mem::take(&mut first) {
                l.push(b' ');
            }
            if *it == StatusItem::MailboxId {
                l.extend_from_slice(format!("MAILBOXID ({})", mailbox_id(st)).as_bytes());
                continue;
            }
            let (name, v) = match it {
                StatusItem::Messages => ("MESSAGES", st.messages as u64),
                StatusItem::Recent => {
                    let b = self.store.recent_boundary(st);
                    let n = self
                        .store
                        .messages(&st.name, Uid(b.saturating_add(1)))
                        .map(|v| v.len())
                        .unwrap_or(0);
                    ("RECENT", n as u64)
                }
                StatusItem::UidNext => ("UIDNEXT", st.uidnext.0 as u64),
                StatusItem::UidValidity => ("UIDVALIDITY", st.uidvalidity.0 as u64),
                StatusItem::Unseen => ("UNSEEN", st.unseen as u64),
                StatusItem::Deleted => {
                    let n = self
                        .store
                        .messages(&st.name, Uid(1))
                        .map(|v| {
                            v.iter()
                                .filter(|m| Flags(m.flags).contains(Flags::DELETED))
                                .count()
                        })
                        .unwrap_or(0);
                    ("DELETED", n as u64)
                }
                StatusItem::Size => ("SIZE", st.size),
                StatusItem::HighestModSeq => ("HIGHESTMODSEQ", st.highest_modseq.0),
                StatusItem::MailboxId => unreachable!("written above"),
            };
            l.extend_from_slice(name.as_bytes());
            l.push(b' ');
            encode::number(&mut l, v);
        }
        l.extend_from_slice(b")\r\n");
        l
    }

    fn list(
        &mut self,
        reference: &str,
        patterns: &[String],
        lsub: bool,
        sel: list::Selection,
        rets: list::Returns,
        status: Option<&[StatusItem]>,
    ) -> Res {
        let decode = |s: &str| {
            if self.enabled.utf8 {
                Some(s.to_string())
            } else {
                mutf7::decode(s)
            }
        };
        // A reference or pattern that is not modified UTF-7 names no mailbox: nothing
        // matches it (an empty OK, as Dovecot answers).
        let Some(reference) = decode(reference) else {
            return Ok(());
        };
        if patterns.len() == 1 && patterns[0].is_empty() && !lsub {
            // The hierarchy delimiter and root (RFC 9051 section 6.3.9).
            self.line("* LIST (\\Noselect) \"/\" \"\"");
            return Ok(());
        }
        let boxes = self.store.mailboxes().map_err(no)?;
        let subs = self.store.subscriptions().unwrap_or_default();
        let pats: Vec<String> = patterns
            .iter()
            .filter_map(|p| decode(p).map(|p| format!("{reference}{p}")))
            .collect();
        let seen: Vec<list::Mailbox> = boxes
            .iter()
            .map(|b| list::Mailbox {
                name: &b.name,
                special: b.special_use.attribute(),
            })
            .collect();
        let entries = if lsub {
            list::lsub(&seen, &subs, &pats)
        } else {
            list::list(&seen, &subs, &pats, sel, rets)
        };
        for e in entries {
            let mut l = if lsub {
                b"* LSUB ".to_vec()
            } else {
                b"* LIST ".to_vec()
            };
            encode::flag_list(&mut l, e.attrs.iter().copied());
            l.extend_from_slice(b" \"/\" ");
            l.extend_from_slice(&self.show_name(&e.name));
            if e.childinfo {
                l.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            l.extend_from_slice(b"\r\n");
            if let (Some(items), true) = (status, e.exists) {
                if let Some(b) = boxes.iter().find(|b| b.name == e.name) {
                    l.extend_from_slice(&self.status_line(b, items));
                }
            }
            self.out.extend_from_slice(&l);
        }
        Ok(())
    }

    async fn select(
        &mut self,
        tag: &str,
        mailbox: &str,
        readonly: bool,
        qresync: Option<Qresync>,
    ) -> Res {
        // A new SELECT closes the old mailbox even when it fails (RFC 9051 section 6.3.2).
        // The old picture is dropped only at the end: a SELECT of the same mailbox at the
        // same state shares it.
        let old = self.view.take();
        let had = old.is_some();
        // Searches kept up to date end with the mailbox (RFC 5267 section 4.3).
        self.contexts.clear();
        // Taken before the mailbox is read, so nothing expunged after is missed by it.
        let mark = self.store.hold_expunged();
        self.mark = None;
        if had && self.enabled.qresync {
            self.line("* OK [CLOSED] previous mailbox is now closed");
        }
        let name = self.mailbox_name(mailbox)?;
        let st = self.store.status(&name).map_err(no)?;
        let stamp = Stamp {
            highest_modseq: st.highest_modseq.0,
            uidnext: st.uidnext.0,
            messages: st.messages,
        };
        let shared = self.store.shared_picture(st.uidvalidity.0, stamp);
        let msgs = match shared {
            Some(m) => m,
            None => Rc::new(self.store.messages(&name, Uid(1)).map_err(no)?),
        };
        let recent_above = Uid(if readonly {
            self.store.recent_boundary(&st)
        } else {
            self.store.claim_recent(&st)
        });

        let view = View::new(
            st.name.clone(),
            readonly,
            st.uidvalidity.0,
            st.uidnext.0,
            st.highest_modseq.0,
            msgs,
            recent_above.0,
        );
        self.refresh_keywords();
        self.flag_lines(readonly);
        self.line(&format!("* {} EXISTS", view.len()));
        if !self.enabled.rev2 {
            self.line(&format!("* {} RECENT", view.recent_count()));
            if let Some(u) = view.first_unseen(Flags::SEEN.0) {
                self.line(&format!("* OK [UNSEEN {u}] first unseen"));
            }
        }
        if self.enabled.rev2 {
            // IMAP4rev2 names the mailbox as selected (RFC 9051 section 6.3.2).
            let mut l = b"* LIST () \"/\" ".to_vec();
            l.extend_from_slice(&self.show_name(&view.mailbox));
            l.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&l);
        }
        self.line(&format!(
            "* OK [UIDVALIDITY {}] UIDs valid",
            view.uidvalidity
        ));
        self.line(&format!(
            "* OK [UIDNEXT {}] predicted next UID",
            view.uidnext
        ));
        self.line(&format!(
            "* OK [HIGHESTMODSEQ {}] highest",
            view.highest_modseq
        ));
        self.modseq_told = self.enabled.condstore;
        self.line(&format!("* OK [MAILBOXID ({})] stable id", mailbox_id(&st)));
        if let Some(q) = qresync.filter(|q| q.uidvalidity == view.uidvalidity) {
            // What changed since the client's modseq: messages gone (we keep no tombstones,
            // so every known UID that is not here; clients ignore UIDs they never had), then
            // flags changed since.
            vanished_earlier(&view, q.known_uids.as_ref(), &mut self.out);
            let kw = &self.keywords;
            let opt = SyncOptions {
                uid: true,
                modseq: true,
                ..Default::default()
            };
            for (i, m) in view.messages().iter().enumerate() {
                if m.modseq > q.modseq {
                    let flags = |f, out: &mut Vec<u8>| Self::render_flags(kw, f, false, out);
                    view::fetch_flags(&mut self.out, i as u32 + 1, m, opt, &flags);
                }
            }
        }
        self.view = Some(view);
        self.mark = Some(mark);
        self.share_view();
        drop(old);
        let mode = if readonly { "READ-ONLY" } else { "READ-WRITE" };
        self.line(&format!("{tag} OK [{mode}] SELECT completed"));
        Ok(())
    }

    fn parse_flags(flags: &[String]) -> Result<(Flags, Vec<String>), Failure> {
        let mut sys = Flags::empty();
        let mut kws = Vec::new();
        for f in flags {
            if let Some(s) = Flags::system(f) {
                sys = sys.union(s);
            } else if f.starts_with('\\') {
                if f.eq_ignore_ascii_case("\\Recent") {
                    continue;
                }
                return Err(Failure::bad(format!("unknown system flag {f}")));
            } else {
                kws.push(f.clone());
            }
        }
        Ok((sys, kws))
    }

    async fn append(&mut self, tag: &str, mailbox: &str, messages: Vec<AppendMessage>) -> Res {
        let name = self.mailbox_name(mailbox)?;
        let st = match self.store.status(&name) {
            Ok(st) => st,
            Err(e) if e.store() == Some(&StoreError::NoSuchMailbox) => {
                return Err(Failure::code(Code::TryCreate, "no such mailbox"))
            }
            Err(e) => return Err(no(e)),
        };
        let limit = self.cfg.max_message_size;
        let mut prepared = Vec::with_capacity(messages.len());
        for m in messages {
            let message = match m.message {
                AppendData::Literal(b) => b,
                AppendData::Catenate(parts) => self.catenate(parts, limit).await?,
            };
            if message.len() as u64 > limit {
                return Err(Failure::code(
                    Code::TooBig,
                    format!("message larger than {limit} bytes"),
                ));
            }
            let date = match &m.date {
                Some(d) => Some(datetime::parse(d).ok_or(Failure::bad("invalid date-time"))?),
                None => None,
            };
            let (flags, keywords) = Self::parse_flags(&m.flags)?;
            // NUL octets (literal8): their parts are stored base64 (see `mime::binary`).
            let body = crate::mime::binary::without_nul(&message).unwrap_or(message);
            let meta = MessageMeta::parse(&body).encode();
            prepared.push(NewMessage {
                body,
                meta,
                flags,
                keywords,
                internal_date: date,
            });
        }
        // MULTIAPPEND stores all or none (RFC 3502): on a failure, the ones stored are
        // expunged again.
        let mut uids = Vec::new();
        for m in &prepared {
            match self.store.append(&name, m).await {
                Ok(a) => uids.push(a.uid.0),
                Err(e) => {
                    if !uids.is_empty() {
                        let done: Vec<Uid> = uids.iter().map(|&u| Uid(u)).collect();
                        let _ = self.store.expunge(&name, Some(&done)).await;
                    }
                    return Err(no(e));
                }
            }
        }
        // What this session did itself is not notified (RFC 5465 section 5).
        if self.view.as_ref().is_some_and(|v| v.mailbox == name) {
            self.own_new.extend(uids.iter().copied());
        }
        self.notify_absorb().await;
        self.sync(true).await;
        self.line(&format!(
            "{tag} OK [APPENDUID {} {}] APPEND completed",
            st.uidvalidity.0,
            compress_set(&uids)
        ));
        Ok(())
    }

    /// The mailbox a METADATA command names: `None` for `""`, the server's (kept per
    /// account: every user here has the server to themselves).
    fn metadata_target(&self, mailbox: &str) -> Result<Option<String>, Failure> {
        if mailbox.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.mailbox_name(mailbox)?))
    }

    /// GETMETADATA (RFC 5464 section 4.2): each asked entry, with its children to DEPTH;
    /// one asked for by name that has no value is NIL; values over MAXSIZE are left out and
    /// the largest of them reported as `[METADATA LONGENTRIES n]`.
    async fn get_metadata(&mut self, tag: &str, get: metadata::GetMetadata) -> Res {
        let mailbox = self.metadata_target(&get.mailbox)?;
        let entries = self
            .store
            .annotations(mailbox.as_deref())
            .await
            .map_err(no)?;
        let mut items: Vec<(&str, Option<&[u8]>)> = Vec::new();
        let mut longest = None;
        for asked in &get.entries {
            if get.depth == metadata::Depth::Zero && !entries.contains_key(asked) {
                items.push((asked, None));
            }
            for (name, value) in &entries {
                if !metadata::selects(asked, get.depth, name)
                    || items.iter().any(|(n, _)| *n == name)
                {
                    continue;
                }
                if get.maxsize.is_some_and(|m| value.len() as u64 > m) {
                    longest = longest.max(Some(value.len()));
                    continue;
                }
                items.push((name, Some(value)));
            }
        }
        if !items.is_empty() {
            let mut l = b"* METADATA ".to_vec();
            match &mailbox {
                Some(m) => l.extend_from_slice(&self.show_name(m)),
                None => l.extend_from_slice(b"\"\""),
            }
            l.extend_from_slice(b" (");
            for (i, (name, value)) in items.iter().enumerate() {
                if i > 0 {
                    l.push(b' ');
                }
                encode::astring(&mut l, name.as_bytes());
                l.push(b' ');
                match value {
                    Some(v) => metadata::write_value(&mut l, v),
                    None => l.extend_from_slice(b"NIL"),
                }
            }
            l.extend_from_slice(b")\r\n");
            self.out.extend_from_slice(&l);
        }
        let text = match longest {
            Some(n) => format!("[METADATA LONGENTRIES {n}] GETMETADATA completed"),
            None => "GETMETADATA completed".into(),
        };
        self.ok(tag, &text).await
    }

    /// The account as NOTIFY follows it: mailboxes, subscriptions, and the annotations the
    /// groups watch.
    async fn known(&self, groups: &[crate::imap::notify::Group]) -> Known {
        use crate::imap::notify::{covers, Event};
        let mut k = Known::default();
        let Ok(all) = self.store.mailboxes() else {
            return k;
        };
        k.subscriptions = self
            .store
            .subscriptions()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let visible = |e: ringmail_engine::annotations::Entries| {
            e.into_iter()
                .filter(|(n, _)| n.starts_with('/'))
                .collect::<ringmail_engine::annotations::Entries>()
        };
        for m in all {
            let watched = groups.iter().any(|g| {
                covers(&g.filter, &m.name, &|n| k.subscriptions.contains(n))
                    && g.events.contains(&Event::MailboxMetadataChange)
            });
            if watched {
                if let Ok(e) = self.store.annotations(Some(&m.name)).await {
                    k.annotations.insert(Some(m.uidvalidity.0), visible(e));
                }
            }
            k.mailboxes.insert(m.uidvalidity.0, m);
        }
        let server = groups
            .iter()
            .any(|g| g.events.contains(&Event::ServerMetadataChange));
        if server {
            if let Ok(e) = self.store.annotations(None).await {
                k.annotations.insert(None, visible(e));
            }
        }
        k
    }

    /// Takes the account as it is now as told, without telling: after this session's own
    /// change (RFC 5465 section 5: a client is not told of what it did itself).
    async fn notify_absorb(&mut self) {
        if let Some(st) = self.notify.take() {
            let generation = self.store.change_generation();
            let known = self.known(&st.groups).await;
            self.notify = Some(NotifyState {
                known,
                generation,
                ..st
            });
        }
    }

    /// MessageNew's FETCH for messages that came into the selected mailbox since `before`
    /// (its UIDNEXT), except those this session put there.
    async fn notify_new_messages(&mut self, before: Option<u32>) {
        let (Some(st), Some(v), Some(before)) = (&self.notify, &self.view, before) else {
            return;
        };
        if st.new_atts.is_empty() || v.uidnext <= before {
            self.own_new.clear();
            return;
        }
        let uids: Vec<u32> = v
            .messages()
            .iter()
            .map(|m| m.uid)
            .filter(|u| *u >= before && !self.own_new.contains(u))
            .collect();
        self.own_new.clear();
        if uids.is_empty() {
            return;
        }
        let set = SequenceSet::Ranges(
            uids.iter()
                .map(|&u| (crate::imap::SeqBound::Num(u), crate::imap::SeqBound::Num(u)))
                .collect(),
        );
        let atts = st.new_atts.clone();
        let _ = self.fetch_data(true, &set, &atts, None, None).await;
    }

    /// Tells the client what changed in the account since it was last told, as NOTIFY
    /// asked: STATUS for mailboxes other than the selected one, LIST for mailboxes created,
    /// deleted or renamed and for subscriptions, METADATA for annotations. With
    /// `status_now` (NOTIFY SET STATUS), STATUS for every watched mailbox first.
    async fn notify_check(&mut self, status_now: bool) {
        use crate::imap::notify::{covers, Event};
        let Some(st) = self.notify.take() else {
            return;
        };
        // Nothing committed (nor annotated) in the partition since the last look: nothing
        // to tell, and no need to read the account again at every command.
        let generation = self.store.change_generation();
        if !status_now && generation == st.generation {
            self.notify = Some(st);
            return;
        }
        let now = self.known(&st.groups).await;
        let selected = self.view.as_ref().map(|v| v.uidvalidity);
        let condstore = self.enabled.condstore;
        let wants = |name: &str,
                     subs: &std::collections::BTreeSet<String>,
                     pick: &dyn Fn(&Event) -> bool| {
            st.groups.iter().any(|g| {
                covers(&g.filter, name, &|n| subs.contains(n)) && g.events.iter().any(pick)
            })
        };
        let message_events = |e: &Event| matches!(e, Event::MessageNew(_) | Event::MessageExpunge);
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let status_line = |this: &Self, m: &MailboxInfo, items: &str| {
            let mut l = b"* STATUS ".to_vec();
            l.extend_from_slice(&this.show_name(&m.name));
            l.extend_from_slice(format!(" ({items})\r\n").as_bytes());
            l
        };
        let full = |m: &MailboxInfo| {
            let mut s = format!(
                "MESSAGES {} UIDNEXT {} UIDVALIDITY {} UNSEEN {}",
                m.messages, m.uidnext.0, m.uidvalidity.0, m.unseen
            );
            if condstore {
                s += &format!(" HIGHESTMODSEQ {}", m.highest_modseq.0);
            }
            s
        };
        let list_line = |this: &Self, attrs: &str, name: &str, old: Option<&str>| {
            let mut l = format!("* LIST ({attrs}) \"/\" ").into_bytes();
            l.extend_from_slice(&this.show_name(name));
            if let Some(o) = old {
                l.extend_from_slice(b" (\"OLDNAME\" (");
                l.extend_from_slice(&this.show_name(o));
                l.extend_from_slice(b"))");
            }
            l.extend_from_slice(b"\r\n");
            l
        };
        let mut by_name: Vec<&MailboxInfo> = now.mailboxes.values().collect();
        by_name.sort_by(|a, b| a.name.cmp(&b.name));
        for m in by_name {
            let uv = m.uidvalidity.0;
            let subs = &now.subscriptions;
            if status_now {
                if Some(uv) != selected && wants(&m.name, subs, &message_events) {
                    lines.push(status_line(self, m, &full(m)));
                }
                continue;
            }
            match st.known.mailboxes.get(&uv) {
                None => {
                    if wants(&m.name, subs, &|e| *e == Event::MailboxName) {
                        lines.push(list_line(self, "", &m.name, None));
                    }
                }
                Some(old) if old.name != m.name => {
                    if wants(&m.name, subs, &|e| *e == Event::MailboxName)
                        || wants(&old.name, &st.known.subscriptions, &|e| {
                            *e == Event::MailboxName
                        })
                    {
                        lines.push(list_line(self, "", &m.name, Some(&old.name)));
                    }
                }
                Some(_) if Some(uv) == selected => {}
                Some(old) => {
                    let moved = old.messages != m.messages || old.uidnext != m.uidnext;
                    if moved && wants(&m.name, subs, &message_events) {
                        lines.push(status_line(self, m, &full(m)));
                    } else if old.highest_modseq != m.highest_modseq
                        && wants(&m.name, subs, &|e| *e == Event::FlagChange)
                    {
                        let items = if condstore {
                            format!(
                                "UIDVALIDITY {} HIGHESTMODSEQ {}",
                                m.uidvalidity.0, m.highest_modseq.0
                            )
                        } else {
                            format!("UNSEEN {}", m.unseen)
                        };
                        lines.push(status_line(self, m, &items));
                    }
                }
            }
            // Annotations of the mailbox that changed (removed ones included).
            if let (Some(a), Some(b)) = (
                st.known.annotations.get(&Some(uv)),
                now.annotations.get(&Some(uv)),
            ) {
                let changed: Vec<&String> = a
                    .keys()
                    .chain(b.keys())
                    .filter(|k| a.get(*k) != b.get(*k))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if !changed.is_empty() {
                    let mut l = b"* METADATA ".to_vec();
                    l.extend_from_slice(&self.show_name(&m.name));
                    for k in changed {
                        l.push(b' ');
                        encode::astring(&mut l, k.as_bytes());
                    }
                    l.extend_from_slice(b"\r\n");
                    lines.push(l);
                }
            }
        }
        if !status_now {
            let mut gone: Vec<&MailboxInfo> = st
                .known
                .mailboxes
                .iter()
                .filter(|(uv, _)| !now.mailboxes.contains_key(uv))
                .map(|(_, m)| m)
                .collect();
            gone.sort_by(|a, b| a.name.cmp(&b.name));
            for m in gone {
                if wants(&m.name, &st.known.subscriptions, &|e| {
                    *e == Event::MailboxName
                }) {
                    lines.push(list_line(self, "\\NonExistent", &m.name, None));
                }
            }
            let changed: std::collections::BTreeSet<&String> = st
                .known
                .subscriptions
                .symmetric_difference(&now.subscriptions)
                .collect();
            for name in changed {
                let either = wants(name, &now.subscriptions, &|e| {
                    *e == Event::SubscriptionChange
                }) || wants(name, &st.known.subscriptions, &|e| {
                    *e == Event::SubscriptionChange
                });
                if either {
                    let mut attrs = Vec::new();
                    if !now.mailboxes.values().any(|m| &m.name == name) {
                        attrs.push("\\NonExistent");
                    }
                    if now.subscriptions.contains(name) {
                        attrs.push("\\Subscribed");
                    }
                    lines.push(list_line(self, &attrs.join(" "), name, None));
                }
            }
            if let (Some(a), Some(b)) =
                (st.known.annotations.get(&None), now.annotations.get(&None))
            {
                let changed: std::collections::BTreeSet<&String> = a
                    .keys()
                    .chain(b.keys())
                    .filter(|k| a.get(*k) != b.get(*k))
                    .collect();
                if !changed.is_empty() {
                    let mut l = b"* METADATA \"\"".to_vec();
                    for k in changed {
                        l.push(b' ');
                        encode::astring(&mut l, k.as_bytes());
                    }
                    l.extend_from_slice(b"\r\n");
                    lines.push(l);
                }
            }
        }
        for l in lines {
            self.out.extend_from_slice(&l);
        }
        self.notify = Some(NotifyState {
            known: now,
            generation,
            ..st
        });
    }

    /// RESETKEY (RFC 4467 section 6): a new key for the mailbox, or no key for any, which
    /// revokes the URLs made with the old ones.
    async fn resetkey(&mut self, tag: &str, mailbox: Option<String>, mechs: Vec<String>) -> Res {
        if let Some(m) = mechs.iter().find(|m| *m != "INTERNAL") {
            return Err(Failure::bad(format!("unknown URLAUTH mechanism {m}")));
        }
        let one = mailbox.is_some();
        let names = match mailbox {
            Some(m) => {
                let name = self.mailbox_name(&m)?;
                self.store.status(&name).map_err(no)?;
                vec![name]
            }
            None => self
                .store
                .mailboxes()
                .map_err(no)?
                .into_iter()
                .map(|m| m.name)
                .collect(),
        };
        for name in names {
            let has = self
                .store
                .annotations(Some(&name))
                .await
                .map_err(no)?
                .contains_key(urlauth::KEY_ENTRY);
            // One mailbox gets a new key; "every key" means none is left.
            let value = one.then(urlauth::new_key);
            if has || value.is_some() {
                self.store
                    .set_annotations(Some(&name), &[(urlauth::KEY_ENTRY.into(), value)])
                    .await
                    .map_err(no)?;
            }
        }
        self.ok(tag, "[URLMECH INTERNAL] RESETKEY completed").await
    }

    /// GENURLAUTH (RFC 4467 section 7): each rump must be an absolute URL of this server,
    /// owned by this user, naming a message that exists, ending in `;URLAUTH=<access>`; the
    /// answer adds `:internal:<token>` under the mailbox's key (made now if it has none).
    /// Anything wrong is BAD, as the RFC says.
    async fn genurlauth(&mut self, tag: &str, pairs: Vec<(String, String)>) -> Res {
        let mut out = Vec::new();
        for (rump, mech) in &pairs {
            if mech != "INTERNAL" {
                return Err(Failure::bad(format!("unknown URLAUTH mechanism {mech}")));
            }
            let u = url::parse(rump).map_err(|e| Failure::bad(e.to_string()))?;
            match &u.urlauth {
                Some((access, m, t)) if m.is_empty() && t.is_empty() => {
                    if urlauth::Access::parse(access).is_none() {
                        return Err(Failure::bad(format!("unknown access identifier {access}")));
                    }
                }
                Some(_) => return Err(Failure::bad("the URL is already authorized")),
                None => return Err(Failure::bad("the URL needs ;URLAUTH=<access>")),
            }
            if !u.host.as_deref().is_some_and(|h| self.store.is_ours(h)) {
                return Err(Failure::bad("the URL must name this server"));
            }
            if !u
                .user
                .as_deref()
                .is_some_and(|o| o.eq_ignore_ascii_case(&self.account))
            {
                return Err(Failure::bad(
                    "the URL must name its owner, the logged-in user",
                ));
            }
            if u.expire
                .as_deref()
                .is_some_and(|e| urlauth::parse_expire(e).is_none())
            {
                return Err(Failure::bad("EXPIRE is not an RFC 3339 date-time"));
            }
            let mailbox = url::store_name(u.mailbox.as_deref().unwrap_or_default());
            let st = self
                .store
                .status(&mailbox)
                .map_err(|_| Failure::bad("no such mailbox"))?;
            if u.uidvalidity.is_some_and(|v| v != st.uidvalidity.0)
                || self.store.message(&mailbox, Uid(u.uid)).is_err()
            {
                return Err(Failure::bad("no such message"));
            }
            let key = self.mailbox_key(&mailbox).await.map_err(no)?;
            out.push(format!("{rump}:internal:{}", urlauth::token(&key, rump)));
        }
        let mut l = b"* GENURLAUTH".to_vec();
        for u in &out {
            l.push(b' ');
            encode::string(&mut l, u.as_bytes());
        }
        l.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(&l);
        self.ok(tag, "GENURLAUTH completed").await
    }

    /// A CATENATE message (RFC 4469): the TEXT parts and what the URLs name, in order. A
    /// URL that names nothing readable is `NO [BADURL url]` (the URL bare, RFC 4469 errata
    /// 4046), and nothing of the APPEND is stored.
    async fn catenate(&mut self, parts: Vec<CatPart>, limit: u64) -> Result<Vec<u8>, Failure> {
        let mut out = Vec::new();
        for p in parts {
            match p {
                CatPart::Text(t) => out.extend_from_slice(&t),
                CatPart::Url(u) => {
                    let bytes = self.url_bytes(&u).await.map_err(|e| {
                        Failure::code(
                            Code::BadUrl(u.replace(['\r', '\n', ']'], "")),
                            e.to_string(),
                        )
                    })?;
                    out.extend_from_slice(&bytes);
                }
            }
            if out.len() as u64 > limit {
                return Err(Failure::code(
                    Code::TooBig,
                    format!("message larger than {limit} bytes"),
                ));
            }
        }
        // Empty parts are fine; an empty message is not (RFC 3502's rule for literals).
        if out.is_empty() {
            return Err(Failure::no("the catenated message is empty"));
        }
        Ok(out)
    }

    /// The octets an IMAP URL names in this account: the message, or the section of it as
    /// FETCH BODY[section] returns it, cut to `;PARTIAL=`. An absolute URL must name this
    /// server and this account; a relative one without a mailbox is relative to the
    /// selected mailbox.
    async fn url_bytes(&mut self, text: &str) -> Result<Vec<u8>, url::BadUrl> {
        use url::BadUrl;
        let u = url::parse(text)?;
        if u.host.as_deref().is_some_and(|h| !self.store.is_ours(h)) {
            return Err(BadUrl("the URL names another server"));
        }
        if u.user
            .as_ref()
            .is_some_and(|x| !x.eq_ignore_ascii_case(&self.account))
        {
            return Err(BadUrl("the URL names another user's mail"));
        }
        let mailbox = match (&u.mailbox, &self.view) {
            (Some(m), _) => url::store_name(m),
            (None, Some(v)) => v.mailbox.clone(),
            (None, None) => return Err(BadUrl("a relative URL needs a selected mailbox")),
        };
        self.store.read_url(&mailbox, &u).await
    }

    async fn idle(&mut self, tag: &str) -> Res {
        self.line("+ idling");
        // Taken before each sync and nowhere else: a commit made while we sync or write
        // wakes the next wait.
        let mut seen = self.store.change_generation();
        self.sync(true).await;
        if !self.flush().await {
            self.closing = true;
            return Ok(());
        }
        loop {
            // Input first: DONE (or anything else) ends the IDLE.
            let woke = match self.link.next_frame() {
                Some(f) => Woke::Input(f),
                None => self.link.wait(self.store.changed_after(seen)).await,
            };
            match woke {
                Woke::Input(Frame::Command(b)) if b.trim_ascii().eq_ignore_ascii_case(b"DONE") => {
                    return self.ok(tag, "IDLE terminated").await;
                }
                Woke::Input(_) => {
                    self.failed(tag, &Failure::bad("expected DONE"));
                    return Ok(());
                }
                Woke::Changed => {
                    seen = self.store.change_generation();
                    self.sync(true).await
                }
                Woke::TimedOut => {
                    self.line("* BYE autologout: idle too long");
                    self.closing = true;
                    return Ok(());
                }
                Woke::Stopping => {
                    self.line("* BYE [UNAVAILABLE] server shutting down");
                    self.closing = true;
                    return Ok(());
                }
                Woke::Closed => {
                    self.closing = true;
                    return Ok(());
                }
            }
            if !self.flush().await {
                self.closing = true;
                return Ok(());
            }
        }
    }

    fn view(&self) -> &View {
        self.view.as_ref().expect("selected state")
    }

    /// The (seq, Msg) pairs a set names; by sequence number, an invalid set is `BAD`.
    fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<(u32, Msg)>, Failure> {
        let v = self.view();
        let seqs = v
            .resolve(set, uid, &self.saved)
            .map_err(|_| Failure::bad("invalid message sequence number"))?;
        Ok(seqs
            .into_iter()
            .filter_map(|s| v.get(s).map(|m| (s, m)))
            .collect())
    }

    async fn expunge(&mut self, tag: &str, uids: Option<SequenceSet>) -> Res {
        let v = self.view();
        if v.readonly {
            return Err(Failure::code(Code::ReadOnly, "mailbox is read-only"));
        }
        let mailbox = v.mailbox.clone();
        let only: Option<Vec<Uid>> = match &uids {
            Some(set) => {
                // The flags as stored now, not as this session last saw them: another
                // session may have taken \Deleted off meanwhile. Nothing awaits between
                // this read and the expunge's plan, so it cannot change in between.
                let named: HashSet<u32> = self
                    .resolve(set, true)?
                    .into_iter()
                    .map(|(_, m)| m.uid)
                    .collect();
                let deleted: Vec<Uid> = self
                    .store
                    .messages(&mailbox, Uid(1))
                    .map_err(no)?
                    .into_iter()
                    .filter(|m| named.contains(&m.uid) && Flags(m.flags).contains(Flags::DELETED))
                    .map(|m| Uid(m.uid))
                    .collect();
                Some(deleted)
            }
            None => None,
        };
        if only.as_ref().is_some_and(|v| v.is_empty()) {
            return self.ok(tag, "EXPUNGE completed").await;
        }
        self.store
            .expunge(&mailbox, only.as_deref())
            .await
            .map_err(no)?;
        self.ok(tag, "EXPUNGE completed").await
    }

    /// Whether the account may have mailbox `name` and `new` more mailboxes (with the
    /// superiors `name` needs): the limits on count, depth and name length keep one account
    /// from filling the server's memory and index (`NO [LIMIT]`).
    fn room_for(&self, name: &str, new: usize) -> Res {
        let l = &self.cfg;
        if name.len() > l.max_mailbox_name {
            return Err(Failure::code(
                Code::Limit,
                format!("mailbox names are at most {} bytes", l.max_mailbox_name),
            ));
        }
        if name.split(DELIMITER).count() > l.max_mailbox_depth {
            return Err(Failure::code(
                Code::Limit,
                format!("mailboxes nest at most {} levels deep", l.max_mailbox_depth),
            ));
        }
        let existing = self.store.mailboxes().map_err(no)?;
        let mut missing = new;
        let mut prefix = String::new();
        for (i, seg) in name.split(DELIMITER).enumerate() {
            if i > 0 {
                prefix.push(DELIMITER);
            }
            prefix.push_str(seg);
            if prefix != name && !existing.iter().any(|m| m.name == prefix) {
                missing += 1;
            }
        }
        if existing.len() + missing > l.max_mailboxes {
            return Err(Failure::code(
                Code::Limit,
                format!("an account has at most {} mailboxes", l.max_mailboxes),
            ));
        }
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

    async fn fetch(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SequenceSet,
        attrs: &[crate::imap::FetchAttr],
        changed_since: Option<u64>,
        partial: Option<PartialRange>,
    ) -> Res {
        self.fetch_data(uid, set, attrs, changed_since, partial)
            .await?;
        if self.closing {
            return Ok(());
        }
        self.sync(false).await;
        self.line(&format!("{tag} OK FETCH completed"));
        Ok(())
    }

    /// The FETCH responses of a FETCH (or of NOTIFY's MessageNew), without the sync and
    /// the tagged reply.
    async fn fetch_data(
        &mut self,
        uid: bool,
        set: &SequenceSet,
        attrs: &[crate::imap::FetchAttr],
        changed_since: Option<u64>,
        partial: Option<PartialRange>,
    ) -> Res {
        let items = fetch::prepare(attrs);
        let needs = fetch::needs(&items);
        if changed_since.is_some()
            || attrs
                .iter()
                .any(|a| matches!(a, crate::imap::FetchAttr::ModSeq))
        {
            self.enable_condstore();
        }
        let mut targets = self.resolve(set, uid)?;
        if let Some(since) = changed_since {
            targets.retain(|(_, m)| m.modseq > since);
        }
        // The page counts the messages the set and CHANGEDSINCE leave (RFC 9394 section
        // 3.4), in mailbox order.
        if let Some(r) = partial {
            targets = r.select(&targets).to_vec();
        }
        let v = self.view();
        let mailbox = v.mailbox.clone();
        let mut seen_now: HashSet<u32> = HashSet::new();
        // Reading a body sets \Seen (RFC 9051 section 6.4.5), once for the whole set.
        if needs.sets_seen && !v.readonly {
            let unseen: Vec<Uid> = targets
                .iter()
                .filter(|(_, m)| !Flags(m.flags).contains(Flags::SEEN) && !v.is_gone(m.uid))
                .map(|(_, m)| Uid(m.uid))
                .collect();
            if !unseen.is_empty() {
                let r = self
                    .store
                    .store(&mailbox, &unseen, FlagOp::Add, Flags::SEEN, &[], None)
                    .await
                    .map_err(no)?;
                let view = self.view.as_mut().expect("selected");
                for c in &r.changed {
                    view.set_flags(c.uid.0, c.flags.0, c.modseq.0);
                }
                let changed: HashMap<u32, (u64, u64)> = r
                    .changed
                    .iter()
                    .map(|c| (c.uid.0, (c.flags.0, c.modseq.0)))
                    .collect();
                for t in targets.iter_mut() {
                    if let Some(&(f, ms)) = changed.get(&t.1.uid) {
                        t.1.flags = f;
                        t.1.modseq = ms;
                        // The client learns of the new \Seen in this response.
                        seen_now.insert(t.1.uid);
                    }
                }
            }
        }
        self.refresh_keywords();
        let add_modseq = self.enabled.condstore;
        let mut unknown_cte = false;
        // Messages whose body could not be read: the others are still sent.
        let mut unreadable: Option<Failure> = None;
        let mut unsent: Vec<Uid> = Vec::new();
        // What is stored of each, looked up in one walk (a lookup per message was a quarter
        // of FETCH 1:* (FLAGS)); a message expunged meanwhile, while the body of another
        // was sent, is caught when its own body is read.
        let uids: Vec<Uid> = targets.iter().map(|(_, m)| Uid(m.uid)).collect();
        let infos = self.store.messages_of(&mailbox, &uids).map_err(no)?;
        let mut infos = infos.into_iter().peekable();
        for (seq, m) in targets {
            let gone = self.view().is_gone(m.uid);
            while infos.next_if(|i| i.uid.0 < m.uid).is_some() {}
            // Expunged by another session: still readable until we tell the client (RFC
            // 2180 section 4.1.1), if the engine still keeps it (it does for a while).
            let info = match infos.next_if(|i| i.uid.0 == m.uid) {
                Some(i) => i,
                None => match self.store.expunged_message(&mailbox, Uid(m.uid)) {
                    Some(i) => i,
                    None if gone => continue,
                    None => return Err(no(Error::Store(StoreError::NoSuchMessage))),
                },
            };
            let raw = if needs.body {
                match self.store.fetch_blob(info.blob).await {
                    Ok(b) => Some(b),
                    Err(_) if gone => continue,
                    Err(e) => {
                        tracing::error!(
                            account = %self.account,
                            mailbox = %mailbox,
                            uid = m.uid,
                            error = %e,
                            "cannot read a stored message"
                        );
                        if seen_now.contains(&m.uid) {
                            unsent.push(Uid(m.uid));
                        }
                        let damaged = matches!(e, Error::Corrupt { .. } | Error::MissingSegment(_));
                        let worse = damaged || unreadable.is_none();
                        if worse {
                            unreadable = Some(if damaged {
                                Failure::code(Code::Corruption, format!("message UID {} is damaged in storage and was not sent; the others were", m.uid))
                            } else {
                                Failure::code(Code::Unavailable, format!("message UID {} could not be read now; the others were sent", m.uid))
                            });
                        }
                        continue;
                    }
                }
            } else {
                None
            };
            let meta = if needs.meta {
                self.store
                    .meta_of(info.blob, raw.as_deref().map(|r| r.as_slice()))
                    .await
            } else {
                None
            };
            let recent = self.view().is_recent(m.uid);
            let kw = &self.keywords;
            let recent = recent && !self.enabled.rev2;
            let flags = |out: &mut Vec<u8>| Self::render_flags(kw, m.flags, recent, out);
            let msg = fetch::Message {
                seq,
                uid: m.uid,
                internal_date: info.internal_date,
                size: info.size,
                modseq: m.modseq,
                email_id: info.blob.0,
                meta: meta.as_deref(),
                raw: raw.as_deref().map(|r| r.as_slice()),
            };
            let mut line = Vec::new();
            let add_flags = seen_now.contains(&m.uid);
            match fetch::write(&mut line, &msg, &items, &flags, uid, add_flags, add_modseq) {
                Ok(()) => self.out.extend_from_slice(&line),
                Err(_) => unknown_cte = true,
            }
            if self.out.len() >= FLUSH_AT && !self.flush().await {
                self.closing = true;
                return Ok(());
            }
        }
        if unknown_cte {
            return Err(Failure::code(
                Code::UnknownCte,
                "cannot decode a part's transfer encoding",
            ));
        }
        if let Some(e) = unreadable {
            // A message the client did not get is not \Seen because of this FETCH.
            if !unsent.is_empty() {
                if let Ok(r) = self
                    .store
                    .store(&mailbox, &unsent, FlagOp::Remove, Flags::SEEN, &[], None)
                    .await
                {
                    let view = self.view.as_mut().expect("selected");
                    for c in &r.changed {
                        view.set_flags(c.uid.0, c.flags.0, c.modseq.0);
                    }
                }
            }
            return Err(e);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn store(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SequenceSet,
        op: StoreOp,
        silent: bool,
        flags: &[String],
        unchanged_since: Option<u64>,
    ) -> Res {
        if self.view().readonly {
            return Err(Failure::code(Code::ReadOnly, "mailbox is read-only"));
        }
        if unchanged_since.is_some() {
            self.enable_condstore();
        }
        let (sys, kws) = Self::parse_flags(flags)?;
        let targets = self.resolve(set, uid)?;
        let mailbox = self.view().mailbox.clone();
        let uids: Vec<Uid> = targets
            .iter()
            .filter(|(_, m)| !self.view().is_gone(m.uid))
            .map(|(_, m)| Uid(m.uid))
            .collect();
        let op = match op {
            StoreOp::Add => FlagOp::Add,
            StoreOp::Remove => FlagOp::Remove,
            StoreOp::Replace => FlagOp::Replace,
        };
        let r = self
            .store
            .store(&mailbox, &uids, op, sys, &kws, unchanged_since)
            .await
            .map_err(no)?;
        self.refresh_keywords();
        let condstore = self.enabled.condstore;
        let rev2 = self.enabled.rev2;
        let view = self.view.as_mut().expect("selected");
        view.set_flags_sorted(r.changed.iter().map(msg_of));
        if let (Some(previous), Some(c)) = (r.previous_change, r.changed.first()) {
            view.caught_up(previous.0, c.modseq.0);
        }
        // `changed` and `modified` are in UID order, as `targets` is.
        let (mut changed_at, mut modified_at) = (0, 0);
        // Report the flags of every message named (changed or not), unless .SILENT; with
        // CONDSTORE, .SILENT still reports the new MODSEQ (RFC 7162 section 3.1.3).
        for (seq, m) in &targets {
            while r.changed.get(changed_at).is_some_and(|c| c.uid.0 < m.uid) {
                changed_at += 1;
            }
            while r.modified.get(modified_at).is_some_and(|u| u.0 < m.uid) {
                modified_at += 1;
            }
            let changed = r.changed.get(changed_at).is_some_and(|c| c.uid.0 == m.uid);
            if silent && !(condstore && changed) {
                continue;
            }
            if r.modified.get(modified_at).is_some_and(|u| u.0 == m.uid) {
                continue;
            }
            let now = view.get(*seq).unwrap_or(*m);
            let mut l = format!("* {seq} FETCH (").into_bytes();
            if uid {
                l.extend_from_slice(format!("UID {} ", m.uid).as_bytes());
            }
            if !silent {
                l.extend_from_slice(b"FLAGS ");
                let recent = view.is_recent(m.uid) && !rev2;
                Self::render_flags(&self.keywords, now.flags, recent, &mut l);
            }
            if condstore {
                if !silent {
                    l.push(b' ');
                }
                l.extend_from_slice(format!("MODSEQ ({})", now.modseq).as_bytes());
            }
            l.extend_from_slice(b")\r\n");
            self.out.extend_from_slice(&l);
        }
        self.sync(false).await;
        if r.modified.is_empty() {
            self.line(&format!("{tag} OK STORE completed"));
        } else {
            let mut nums: Vec<u32> = r
                .modified
                .iter()
                .filter_map(|u| {
                    if uid {
                        Some(u.0)
                    } else {
                        self.view().seq_of(u.0)
                    }
                })
                .collect();
            nums.sort_unstable();
            self.line(&format!(
                "{tag} OK [MODIFIED {}] conditional STORE failed for some",
                compress_set(&nums)
            ));
        }
        Ok(())
    }

    async fn copy(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SequenceSet,
        mailbox: &str,
        is_move: bool,
    ) -> Res {
        if is_move && self.view().readonly {
            return Err(Failure::code(Code::ReadOnly, "mailbox is read-only"));
        }
        let to = self.mailbox_name(mailbox)?;
        let from = self.view().mailbox.clone();
        if self.store.status(&to).is_err() {
            return Err(Failure::code(Code::TryCreate, "no such mailbox"));
        }
        let uids: Vec<Uid> = self
            .resolve(set, uid)?
            .into_iter()
            .filter(|(_, m)| !self.view().is_gone(m.uid))
            .map(|(_, m)| Uid(m.uid))
            .collect();
        if uids.is_empty() {
            return self.ok(tag, "nothing to do").await;
        }
        let (uv, pairs) = if is_move {
            self.store
                .move_messages(&from, &to, &uids)
                .await
                .map_err(no)?
        } else {
            self.store.copy(&from, &to, &uids).await.map_err(no)?
        };
        let src: Vec<u32> = pairs.iter().map(|p| p.0 .0).collect();
        let dst: Vec<u32> = pairs.iter().map(|p| p.1 .0).collect();
        if from == to {
            self.own_new.extend(dst.iter().copied());
        }
        self.notify_absorb().await;
        let code = format!(
            "COPYUID {} {} {}",
            uv.0,
            compress_set(&src),
            compress_set(&dst)
        );
        if is_move {
            // RFC 6851: COPYUID in an untagged OK before the expunges.
            self.line(&format!("* OK [{code}] moved"));
            self.ok(tag, "MOVE completed").await
        } else {
            self.sync(true).await;
            self.line(&format!("{tag} OK [{code}] COPY completed"));
            Ok(())
        }
    }

    /// The messages of the selected mailbox matching `keys`, in sequence order, with their
    /// metadata when the keys (or `want_meta`, for SORT and THREAD) need it.
    async fn matching(
        &mut self,
        charset: Option<&str>,
        keys: &[search::SearchKey],
        want_meta: bool,
    ) -> Result<Vec<Hit>, Failure> {
        if let Some(cs) = charset {
            if !search::charset_supported(cs) {
                return Err(Failure::code(Code::BadCharset, "unsupported charset"));
            }
        }
        let needs = search::needs(keys);
        if needs.modseq {
            self.enable_condstore();
        }
        self.refresh_keywords();
        let v = self.view();
        let mailbox = v.mailbox.clone();
        // The picture is shared, not copied; what is stored of each message is read a
        // chunk at a time, so a search holds a few hundred entries however big the
        // mailbox (whole copies of a 200,000-message index were most of a flag search).
        let msgs = v.pictured();
        let uidvalidity = v.uidvalidity;
        let max_uid = msgs.last().map_or(0, |m| m.uid);
        let max_seq = msgs.len() as u32;
        let saved = self.saved.clone();
        let want_envelope = needs.meta || want_meta;
        let mut hits = Vec::new();
        // Flag names by flag bits: a mailbox has few distinct combinations, and naming
        // them once each spares an allocation per message.
        let mut names_of: HashMap<u64, Vec<&str>> = HashMap::new();
        // In chunks, so the envelopes missing from the cache are read many at a time
        // while what a chunk holds stays small however big the mailbox.
        for (c, pictured) in msgs.chunks(SEARCH_CHUNK).enumerate() {
            // Renamed away (and the name reused) while earlier chunks were read: the rest
            // of this mailbox is no longer under its name, and matches nothing.
            let same = self
                .store
                .status(&mailbox)
                .is_ok_and(|st| st.uidvalidity.0 == uidvalidity);
            if !same {
                break;
            }
            let uids: Vec<Uid> = pictured.iter().map(|m| Uid(m.uid)).collect();
            let mut infos = self
                .store
                .messages_of(&mailbox, &uids)
                .map_err(no)?
                .into_iter()
                .peekable();
            // (sequence number, what is stored of it) for each message still there; one
            // expunged meanwhile matches nothing.
            let first = (c * SEARCH_CHUNK) as u32 + 1;
            let chunk: Vec<(u32, ringmail_engine::MessageInfo)> = pictured
                .iter()
                .enumerate()
                .filter_map(|(k, m)| {
                    infos
                        .next_if(|i| i.uid.0 == m.uid)
                        .map(|i| (first + k as u32, i))
                })
                .collect();
            let chunk = &chunk[..];
            let envelopes = if want_envelope {
                self.store.envelopes_of(&mailbox, chunk).await
            } else {
                Vec::new()
            };
            for (k, (seq, info)) in chunk.iter().enumerate() {
                let raw = if needs.raw {
                    self.store.fetch(&mailbox, info.uid).await.ok()
                } else {
                    None
                };
                let envelope = envelopes.get(k).cloned().flatten();
                let names = names_of
                    .entry(info.flags.0)
                    .or_insert_with(|| Self::flag_names(&self.keywords, info.flags.0));
                let c = search::Candidate {
                    seq: *seq,
                    uid: info.uid.0,
                    flags: names,
                    recent: self.view().is_recent(info.uid.0),
                    internal_date: info.internal_date,
                    size: info.size,
                    modseq: info.modseq.0,
                    envelope: envelope.as_deref(),
                    raw: raw.as_deref().map(|r| r.as_slice()),
                };
                let ctx = search::Context {
                    max_seq,
                    max_uid,
                    saved: &saved,
                };
                if search::matches(keys, &c, &ctx) {
                    hits.push(Hit {
                        seq: *seq,
                        uid: info.uid.0,
                        size: info.size,
                        internal_date: info.internal_date,
                        modseq: info.modseq.0,
                        envelope: if want_meta { envelope } else { None },
                    });
                }
            }
        }
        Ok(hits)
    }

    async fn search(&mut self, tag: &str, uid: bool, cmd: search::SearchCommand) -> Res {
        self.check_update_tag(tag, cmd.ret.as_ref())?;
        let stamp = self.mailbox_stamp();
        let found = self
            .matching(cmd.charset.as_deref(), &cmd.keys, false)
            .await?;
        let hits_uid: Vec<u32> = found.iter().map(|h| h.uid).collect();
        let hits_seq: Vec<u32> = found.iter().map(|h| h.seq).collect();
        let top_modseq = found.iter().map(|h| h.modseq).max().unwrap_or(0);
        let hits = if uid { &hits_uid } else { &hits_seq };
        let modseq = search::needs(&cmd.keys).modseq.then_some(top_modseq);
        // IMAP4rev2 answers every SEARCH with ESEARCH (RFC 9051 section 6.4.4).
        let ret = match cmd.ret {
            None if self.enabled.rev2 => Some(vec![search::ReturnOpt::All]),
            r => r,
        };
        match &ret {
            None => search::write_search(&mut self.out, hits, modseq),
            Some(ret) => {
                if ret.contains(&search::ReturnOpt::Save) {
                    let kept = search::returned_hits(&hits_uid, ret);
                    self.saved = kept;
                }
                search::write_esearch(&mut self.out, tag, uid, hits, ret, modseq);
                if ret.contains(&search::ReturnOpt::Update) {
                    self.add_context(SearchContext {
                        tag: tag.to_string(),
                        uid,
                        charset: cmd.charset.clone(),
                        keys: cmd.keys.clone(),
                        sort: None,
                        result: hits_uid.clone(),
                        stamp,
                    });
                }
            }
        }
        self.sync(uid).await;
        self.line(&format!("{tag} OK SEARCH completed"));
        Ok(())
    }

    /// The UIDs of `found` in the order of `criteria`.
    fn sorted_uids(found: &[Hit], criteria: &[sort::SortCriterion]) -> Vec<u32> {
        let empty = PackedEnvelope::default();
        let mut items: Vec<sort::SortItem> = found
            .iter()
            .map(|h| sort::SortItem {
                id: h.uid,
                size: h.size,
                internal_date: h.internal_date,
                envelope: h.envelope.as_deref().unwrap_or(&empty),
            })
            .collect();
        sort::sort(&mut items, criteria);
        items.iter().map(|i| i.id).collect()
    }

    /// A searching command with `RETURN (UPDATE)`: a tag still updating is BAD (RFC 5267
    /// section 4.3); checked before anything is answered.
    fn check_update_tag(&self, tag: &str, ret: Option<&Vec<search::ReturnOpt>>) -> Res {
        let update = ret.is_some_and(|r| r.contains(&search::ReturnOpt::Update));
        if update && self.contexts.iter().any(|c| c.tag == tag) {
            return Err(Failure::bad(
                "tag reuse: a search with this tag is still being updated",
            ));
        }
        Ok(())
    }

    /// Keeps a search up to date from now on, or says it will not (`NOUPDATE`). Its
    /// sequence numbers and `$` are frozen to the UIDs they name now.
    fn add_context(&mut self, mut c: SearchContext) {
        if self.contexts.len() >= context::MAX_CONTEXTS {
            let mut l = b"* NO [NOUPDATE ".to_vec();
            encode::string(&mut l, c.tag.as_bytes());
            l.extend_from_slice(b"] too many searches are being updated\r\n");
            self.out.extend_from_slice(&l);
            return;
        }
        let uids_of = |set: &SequenceSet| -> Vec<u32> {
            self.resolve(set, false)
                .map(|v| v.into_iter().map(|(_, m)| m.uid).collect())
                .unwrap_or_default()
        };
        c.keys = context::freeze(&c.keys, &uids_of);
        self.contexts.push(c);
    }

    /// The selected mailbox's state, to tell whether a kept search must run again.
    fn mailbox_stamp(&self) -> (u64, u32, u32) {
        self.view
            .as_ref()
            .and_then(|v| self.store.status(&v.mailbox).ok())
            .map_or((0, 0, 0), |st| {
                (st.highest_modseq.0, st.uidnext.0, st.messages)
            })
    }

    /// Runs every kept search again if the mailbox changed, and tells the client what left
    /// each result (inserted at `at`, before this sync's EXPUNGEs, numbered as in `old`)
    /// and what joined it (after this sync's EXISTS).
    async fn update_contexts(&mut self, at: usize, old: &[Msg]) {
        if self.view.is_none() {
            return;
        }
        // Each search is run again only if the mailbox changed since its result was made
        // (a search added meanwhile does not hide the others' updates).
        let stamp = self.mailbox_stamp();
        let old_seq = |u: u32| {
            old.binary_search_by_key(&u, |m| m.uid)
                .ok()
                .map(|i| i as u32 + 1)
        };
        let (mut removals, mut additions) = (Vec::new(), Vec::new());
        let contexts = std::mem::take(&mut self.contexts);
        let mut kept = Vec::with_capacity(contexts.len());
        for mut c in contexts {
            if c.stamp == stamp {
                kept.push(c);
                continue;
            }
            c.stamp = stamp;
            let found = match self
                .matching(c.charset.as_deref(), &c.keys, c.sort.is_some())
                .await
            {
                Ok(f) => f,
                Err(_) => {
                    kept.push(c);
                    continue;
                }
            };
            let new: Vec<u32> = match &c.sort {
                Some(criteria) => Self::sorted_uids(&found, criteria),
                None => found.iter().map(|h| h.uid).collect(),
            };
            let (rm, add) = match &c.sort {
                Some(_) => context::diff_sorted(&c.result, &new),
                None => {
                    let (rm, add) = context::diff_search(&c.result, &new);
                    (
                        rm.into_iter().map(|u| (0, u)).collect(),
                        add.into_iter().map(|u| (0, u)).collect(),
                    )
                }
            };
            let view = self.view();
            let number = |edits: Vec<(u32, u32)>, seq: &dyn Fn(u32) -> Option<u32>| {
                edits
                    .into_iter()
                    .filter_map(|(p, u)| {
                        if c.uid {
                            Some((p, u))
                        } else {
                            seq(u).map(|s| (p, s))
                        }
                    })
                    .collect::<Vec<_>>()
            };
            let rm = number(rm, &old_seq);
            let add = number(add, &|u| view.seq_of(u));
            context::write_update(&mut removals, &c.tag, c.uid, "REMOVEFROM", &rm);
            context::write_update(&mut additions, &c.tag, c.uid, "ADDTO", &add);
            c.result = new;
            kept.push(c);
        }
        // Contexts made meanwhile (none: nothing here adds one) come after.
        kept.append(&mut self.contexts);
        self.contexts = kept;
        let at = at.min(self.out.len());
        self.out.splice(at..at, removals);
        self.out.extend_from_slice(&additions);
    }

    async fn sort(&mut self, tag: &str, uid: bool, cmd: sort::SortCommand) -> Res {
        self.check_update_tag(tag, cmd.ret.as_ref())?;
        let stamp = self.mailbox_stamp();
        let found = self.matching(Some(&cmd.charset), &cmd.keys, true).await?;
        let sorted_uids = Self::sorted_uids(&found, &cmd.criteria);
        let ids: Vec<u32> = if uid {
            sorted_uids.clone()
        } else {
            let seq_of: HashMap<u32, u32> = found.iter().map(|h| (h.uid, h.seq)).collect();
            sorted_uids.iter().map(|u| seq_of[u]).collect()
        };
        match &cmd.ret {
            None => sort::write_sort(&mut self.out, &ids),
            // ESORT (RFC 5267 section 3): ESEARCH in sort order. `$` is a set: what SAVE
            // keeps loses the order.
            Some(ret) => {
                if ret.contains(&search::ReturnOpt::Save) {
                    let uids: Vec<u32> = if uid {
                        ids.clone()
                    } else {
                        let by_seq: HashMap<u32, u32> =
                            found.iter().map(|h| (h.seq, h.uid)).collect();
                        ids.iter().map(|s| by_seq[s]).collect()
                    };
                    let mut kept = search::returned_hits(&uids, ret);
                    kept.sort_unstable();
                    self.saved = kept;
                }
                let modseq = search::needs(&cmd.keys)
                    .modseq
                    .then(|| found.iter().map(|h| h.modseq).max().unwrap_or(0));
                search::write_esearch(&mut self.out, tag, uid, &ids, ret, modseq);
                if ret.contains(&search::ReturnOpt::Update) {
                    self.add_context(SearchContext {
                        tag: tag.to_string(),
                        uid,
                        charset: Some(cmd.charset.clone()),
                        keys: cmd.keys.clone(),
                        sort: Some(cmd.criteria.clone()),
                        result: sorted_uids,
                        stamp,
                    });
                }
            }
        }
        self.sync(uid).await;
        self.line(&format!("{tag} OK SORT completed"));
        Ok(())
    }

    async fn thread(&mut self, tag: &str, uid: bool, cmd: thread::ThreadCommand) -> Res {
        let found = self.matching(Some(&cmd.charset), &cmd.keys, true).await?;
        let empty = PackedEnvelope::default();
        let items: Vec<thread::ThreadItem> = found
            .iter()
            .map(|h| thread::ThreadItem {
                id: if uid { h.uid } else { h.seq },
                internal_date: h.internal_date,
                envelope: h.envelope.as_deref().unwrap_or(&empty),
            })
            .collect();
        let threads = thread::thread(&items, cmd.algorithm);
        thread::write_thread(&mut self.out, &threads);
        self.sync(uid).await;
        self.line(&format!("{tag} OK THREAD completed"));
        Ok(())
    }
}

/// NOTIFY's request (RFC 5465) and what the client was last told of the account.
struct NotifyState {
    groups: Vec<crate::imap::notify::Group>,
    new_atts: Vec<crate::imap::FetchAttr>,
    known: Known,
    /// The partition's change generation when `known` was read.
    generation: u64,
}

#[derive(Default)]
struct Known {
    /// By UIDVALIDITY, so a rename is told as one.
    mailboxes: HashMap<u32, MailboxInfo>,
    subscriptions: std::collections::BTreeSet<String>,
    /// Annotations a client can see, by mailbox UIDVALIDITY (`None`: the server's).
    annotations: HashMap<Option<u32>, ringmail_engine::annotations::Entries>,
}

/// A search whose result the session keeps up to date (RFC 5267 UPDATE).
struct SearchContext {
    tag: String,
    /// Results are UIDs (UID SEARCH / UID SORT), else sequence numbers.
    uid: bool,
    charset: Option<String>,
    /// With sequence numbers and `$` frozen to the UIDs they named at the command.
    keys: Vec<search::SearchKey>,
    /// SORT's criteria; `None` for SEARCH.
    sort: Option<Vec<sort::SortCriterion>>,
    /// The result as the client has it: UIDs, in its order.
    result: Vec<u32>,
    /// The mailbox's state when `result` was made (taken before the search ran).
    stamp: (u64, u32, u32),
}

/// A message a search matched.
struct Hit {
    seq: u32,
    uid: u32,
    size: u32,
    internal_date: i64,
    modseq: u64,
    envelope: Option<Rc<PackedEnvelope>>,
}

/// OBJECTID's MAILBOXID (RFC 8474): the UIDVALIDITY, which a mailbox keeps for its life,
/// renames included, and which no other mailbox of the account has.
fn mailbox_id(st: &MailboxInfo) -> String {
    format!("F{:08x}", st.uidvalidity.0)
}

/// `* VANISHED (EARLIER)` for the UIDs of `set` (all UIDs when `None`) the mailbox does not
/// hold. No tombstones are kept, so that is every such UID below UIDNEXT; clients ignore
/// UIDs they never had (RFC 7162 section 3.2.5.1).
fn vanished_earlier(v: &View, set: Option<&SequenceSet>, out: &mut Vec<u8>) {
    let last = v.uidnext.saturating_sub(1);
    let ranges: Vec<(u32, u32)> = match set {
        Some(SequenceSet::Ranges(r)) => r
            .iter()
            .map(|&(a, b)| {
                let n = |x| match x {
                    crate::imap::SeqBound::Num(n) => n,
                    crate::imap::SeqBound::Star => last,
                };
                (n(a).min(n(b)), n(a).max(n(b)).min(last))
            })
            .collect(),
        Some(SequenceSet::Saved) => return,
        None => vec![(1, last)],
    };
    let mut gone: Vec<u32> = ranges
        .into_iter()
        .flat_map(|(a, b)| a..=b)
        .take(1 << 20)
        .filter(|u| v.seq_of(*u).is_none())
        .collect();
    gone.sort_unstable();
    gone.dedup();
    if !gone.is_empty() {
        out.extend_from_slice(
            format!("* VANISHED (EARLIER) {}\r\n", compress_set(&gone)).as_bytes(),
        );
    }
}

/// A message as the view keeps it.
fn msg_of(m: &MessageInfo) -> Msg {
    Msg {
        uid: m.uid.0,
        flags: m.flags.0,
        modseq: m.modseq.0,
    }
}
