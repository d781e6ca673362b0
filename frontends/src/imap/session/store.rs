//! What an IMAP session needs of the place its mail lives, and of the connection it talks
//! over: the two seams of the session. The engine's partition implements [`MailStore`]
//! (`server/imap_store.rs`), the connection driver [`Link`] (`server/imap.rs`); the
//! transcript tests implement both in memory (`session/memory.rs`). A remote partition
//! owner (the cluster) is one more `MailStore`.

use std::future::Future;
use std::rc::Rc;

use ringmail_engine::Entries;
use ringmail_engine::{
    AccountInfo, Appended, BlobId, Error, FlagOp, Flags, MailboxInfo, MessageInfo, NewMessage,
    SpecialUse, StoreResult, Uid, UidValidity,
};

use crate::imap::url::{BadUrl, ImapUrl};
use crate::imap::urlauth::Requester;
use crate::imap::view::Msg;
use crate::imap::Frame;
use crate::mime::{MessageMeta, PackedEnvelope};

pub type Result<T> = std::result::Result<T, Error>;

/// The state of a selected mailbox a session last saw, to share its picture with other
/// sessions at the same state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub highest_modseq: u64,
    pub uidnext: u32,
    pub messages: u32,
}

/// One account's mail, as the session that logged in to it sees it. Reads are synchronous
/// (the index is in memory next to the session); changes and message contents are async.
#[allow(async_fn_in_trait)]
pub trait MailStore {
    /// Held while a mailbox is selected: messages other sessions expunge stay readable
    /// until this session was told (RFC 2180 section 4.1.1).
    type Mark;

    // ---- the account
    fn mailboxes(&self) -> Result<Vec<MailboxInfo>>;
    fn subscriptions(&self) -> Result<Vec<String>>;
    /// The account's keywords, in the order of their flag bits.
    fn keywords(&self) -> Result<Vec<String>>;
    fn account_info(&self) -> Result<AccountInfo>;
    async fn create_mailbox(&self, name: &str, special_use: SpecialUse) -> Result<MailboxInfo>;
    async fn rename_mailbox(&self, from: &str, to: &str) -> Result<()>;
    async fn delete_mailbox(&self, name: &str) -> Result<()>;
    async fn subscribe(&self, name: &str, subscribed: bool) -> Result<()>;

    // ---- a mailbox's messages
    fn status(&self, mailbox: &str) -> Result<MailboxInfo>;
    /// The messages from UID `from` on, in UID order.
    fn messages(&self, mailbox: &str, from: Uid) -> Result<Vec<Msg>>;
    /// The messages with these UIDs that exist.
    fn messages_of(&self, mailbox: &str, uids: &[Uid]) -> Result<Vec<MessageInfo>>;
    fn message(&self, mailbox: &str, uid: Uid) -> Result<MessageInfo>;
    /// A message another session expunged that this one may still show (see `Mark`).
    fn expunged_message(&self, mailbox: &str, uid: Uid) -> Option<MessageInfo>;
    async fn append(&self, mailbox: &str, message: &NewMessage) -> Result<Appended>;
    #[allow(clippy::too_many_arguments)]
    async fn store(
        &self,
        mailbox: &str,
        uids: &[Uid],
        op: FlagOp,
        flags: Flags,
        keywords: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<StoreResult>;
    /// Expunges these (or every `\Deleted`) messages; the UIDs removed.
    async fn expunge(&self, mailbox: &str, uids: Option<&[Uid]>) -> Result<Vec<Uid>>;
    /// The target's UIDVALIDITY and (source UID, new UID) pairs.
    async fn copy(
        &self,
        from: &str,
        to: &str,
        uids: &[Uid],
    ) -> Result<(UidValidity, Vec<(Uid, Uid)>)>;
    async fn move_messages(
        &self,
        from: &str,
        to: &str,
        uids: &[Uid],
    ) -> Result<(UidValidity, Vec<(Uid, Uid)>)>;

    // ---- message contents
    async fn fetch(&self, mailbox: &str, uid: Uid) -> Result<Rc<Vec<u8>>>;
    async fn fetch_blob(&self, blob: BlobId) -> Result<Rc<Vec<u8>>>;
    /// The message's parsed structure; `raw` is the message when the caller has it.
    async fn meta_of(&self, blob: BlobId, raw: Option<&[u8]>) -> Option<Rc<MessageMeta>>;
    /// The envelopes of these messages of `mailbox` (SEARCH, SORT, THREAD); `None` for one
    /// that cannot be read.
    async fn envelopes_of(
        &self,
        mailbox: &str,
        chunk: &[(u32, MessageInfo)],
    ) -> Vec<Option<Rc<PackedEnvelope>>>;
    /// The octets a URL of this account names (CATENATE), the caller's access checked.
    async fn read_url(&self, mailbox: &str, url: &ImapUrl) -> std::result::Result<Vec<u8>, BadUrl>;
    /// The octets an authorized URL names, if `who` may have them (URLFETCH): it may name
    /// another account's mail.
    async fn fetch_url(&self, url: &str, who: Requester<'_>) -> Option<Vec<u8>>;
    /// Whether a URL's host names this server.
    fn is_ours(&self, host: &str) -> bool;

    // ---- changes
    /// Moves on with every durable change of the account's partition.
    fn change_generation(&self) -> u64;
    /// Waits until the generation is past `seen`.
    fn changed_after(&self, seen: u64) -> impl Future<Output = u64>;
    /// The expunge sequence now, for [`MailStore::caught_up`].
    fn retired_seq(&self) -> u64;
    fn hold_expunged(&self) -> Self::Mark;
    /// The session was told of every expunge up to `seq`.
    fn caught_up(&self, mark: &Self::Mark, seq: u64);

    // ---- session state kept where the account lives
    /// The lowest UID not \Recent to anyone else; later ones are claimed for this session.
    fn claim_recent(&self, st: &MailboxInfo) -> u32;
    /// The lowest UID \Recent to some session (EXAMINE claims nothing).
    fn recent_boundary(&self, st: &MailboxInfo) -> u32;
    fn forget_mailbox(&self, uidvalidity: u32);
    /// A picture of the mailbox at `stamp` another session holds, to share.
    fn shared_picture(&self, uidvalidity: u32, stamp: Stamp) -> Option<Rc<Vec<Msg>>>;
    fn share_picture(&self, uidvalidity: u32, stamp: Stamp, msgs: &Rc<Vec<Msg>>);

    // ---- annotations (METADATA; URLAUTH keys)
    async fn annotations(&self, mailbox: Option<&str>) -> Result<Entries>;
    async fn set_annotations(
        &self,
        mailbox: Option<&str>,
        changes: &[(String, Option<Vec<u8>>)],
    ) -> Result<()>;
    /// The entry, made by `make` and stored if there is none (at most once at a time).
    async fn annotation_or_insert(
        &self,
        mailbox: Option<&str>,
        name: &str,
        make: fn() -> Vec<u8>,
    ) -> Result<Vec<u8>>;

    /// A refusal the operator counts (metrics), e.g. `"server_busy"`.
    fn rejected(&self, _why: &'static str) {}
}

/// The session's mailbox is no longer served on this node (cluster mode: its partition
/// moved or its owner failed over): the client logs in again and reaches the new owner.
pub const MOVED_BYE: &str =
    "* BYE [UNAVAILABLE] this mailbox is now served by another node, log in again";
/// [`MOVED_BYE`] as a line on the wire.
pub const MOVED_BYE_LINE: &[u8] =
    b"* BYE [UNAVAILABLE] this mailbox is now served by another node, log in again\r\n";

/// What woke an IDLE.
pub enum Woke {
    /// A frame from the client.
    Input(Frame),
    /// The store changed.
    Changed,
    /// Nothing for the autologout time.
    TimedOut,
    /// The server is shutting down.
    Stopping,
    /// The mailbox is now served by another node (cluster mode): the client logs in again.
    Moved,
    /// The connection is gone.
    Closed,
}

/// The session's connection: the driver's side of it.
#[allow(async_fn_in_trait)]
pub trait Link {
    /// Sends `out` and empties it. `false`: the connection is gone.
    async fn send(&mut self, out: &mut Vec<u8>) -> bool;
    /// Takes `out` to send with what follows (pipelined answers go out together).
    fn queue(&mut self, out: &mut Vec<u8>);
    /// A frame received already (pipelined), without waiting.
    fn next_frame(&mut self) -> Option<Frame>;
    /// Waits for the client's next frame or for `changed`, whichever comes first (IDLE).
    async fn wait(&mut self, changed: impl Future<Output = u64>) -> Woke;
    /// Whether COMPRESS=DEFLATE is on.
    fn compressing(&self) -> bool;
    /// Turns COMPRESS=DEFLATE on (after the OK was sent).
    fn start_compress(&mut self);
}
