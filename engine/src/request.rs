//! The engine's API as data: a [`Request`] names an account (or recipients) and what to do,
//! a [`Response`] is what came of it. Both are plain values (`Send`, no `Rc`, no closures),
//! so a request can go to the shard that owns the account here ([`NodeHandle::request`])
//! or, in a cluster, be encoded and sent to the node that owns it; the owner answers with
//! [`Partition::serve`]. The methods of [`Partition`] stay the in-process fast path.

use std::rc::Rc;

use crate::api::{
    AccountInfo, Appended, MailboxInfo, MessageInfo, NewMessage, Recipient, StoreResult,
};
use crate::error::{Result, StoreError};
use crate::flags::{FlagOp, Flags, SpecialUse};
use crate::ids::{Uid, UidValidity};
use crate::node::{NodeHandle, SendableError};
use crate::partition::{AccountOptions, Partition};

#[derive(Clone, Debug)]
pub enum Request {
    /// Creates the account unless it exists (then nothing happens).
    EnsureAccount {
        account: String,
        options: AccountOptions,
    },
    /// Deletes the account and its mail; `Response::Done(false)` if there was none.
    DeleteAccount {
        account: String,
    },
    SetQuota {
        account: String,
        bytes: u64,
        messages: u64,
    },
    AccountInfo {
        account: String,
    },
    Mailboxes {
        account: String,
    },
    Status {
        account: String,
        mailbox: String,
    },
    CreateMailbox {
        account: String,
        mailbox: String,
        special_use: SpecialUse,
    },
    RenameMailbox {
        account: String,
        from: String,
        to: String,
    },
    DeleteMailbox {
        account: String,
        mailbox: String,
    },
    Subscribe {
        account: String,
        mailbox: String,
        subscribed: bool,
    },
    /// The messages with UIDs in `from..=to`.
    Messages {
        account: String,
        mailbox: String,
        from: Uid,
        to: Uid,
    },
    Append {
        account: String,
        mailbox: String,
        message: NewMessage,
    },
    /// One copy for recipients of one partition (see [`NodeHandle::deliver`]).
    Deliver {
        recipients: Vec<Recipient>,
        message: NewMessage,
    },
    Store {
        account: String,
        mailbox: String,
        uids: Vec<Uid>,
        op: FlagOp,
        flags: Flags,
        keywords: Vec<String>,
        unchanged_since: Option<u64>,
    },
    /// These UIDs, or every `\Deleted` message when `None`.
    Expunge {
        account: String,
        mailbox: String,
        uids: Option<Vec<Uid>>,
    },
    Copy {
        account: String,
        from: String,
        to: String,
        uids: Vec<Uid>,
    },
    Move {
        account: String,
        from: String,
        to: String,
        uids: Vec<Uid>,
    },
    Fetch {
        account: String,
        mailbox: String,
        uid: Uid,
    },
}

#[derive(Clone, Debug)]
pub enum Response {
    /// Done; for `EnsureAccount` and `DeleteAccount`, whether anything changed.
    Done(bool),
    Account(AccountInfo),
    Mailboxes(Vec<MailboxInfo>),
    Mailbox(MailboxInfo),
    Messages(Vec<MessageInfo>),
    Appended(Appended),
    /// One result per recipient, in order.
    Delivered(Vec<std::result::Result<Appended, SendableError>>),
    Stored(StoreResult),
    Expunged(Vec<Uid>),
    /// The target's UIDVALIDITY and (source UID, new UID) pairs.
    Copied(UidValidity, Vec<(Uid, Uid)>),
    Message(Vec<u8>),
}

impl Request {
    /// The account whose partition serves the request.
    pub fn account(&self) -> &str {
        use Request as R;
        match self {
            R::EnsureAccount { account, .. }
            | R::DeleteAccount { account }
            | R::SetQuota { account, .. }
            | R::AccountInfo { account }
            | R::Mailboxes { account }
            | R::Status { account, .. }
            | R::CreateMailbox { account, .. }
            | R::RenameMailbox { account, .. }
            | R::DeleteMailbox { account, .. }
            | R::Subscribe { account, .. }
            | R::Messages { account, .. }
            | R::Append { account, .. }
            | R::Store { account, .. }
            | R::Expunge { account, .. }
            | R::Copy { account, .. }
            | R::Move { account, .. }
            | R::Fetch { account, .. } => account,
            R::Deliver { recipients, .. } => recipients.first().map_or("", |r| &r.account),
        }
    }
}

impl Partition {
    /// Serves one request on this partition (the one that owns its account).
    pub async fn serve(self: &Rc<Self>, request: Request) -> Result<Response> {
        use Request as R;
        Ok(match request {
            R::EnsureAccount { account, options } => {
                if self.has_account(&account) {
                    return Ok(Response::Done(false));
                }
                match self.create_account(&account, &options).await {
                    Err(e) if e.store() == Some(&StoreError::AccountExists) => {
                        Response::Done(false)
                    }
                    r => r.map(|()| Response::Done(true))?,
                }
            }
            R::DeleteAccount { account } => {
                if !self.has_account(&account) {
                    return Ok(Response::Done(false));
                }
                self.delete_account(&account).await?;
                Response::Done(true)
            }
            R::SetQuota {
                account,
                bytes,
                messages,
            } => {
                self.set_quota(&account, bytes, messages).await?;
                Response::Done(true)
            }
            R::AccountInfo { account } => Response::Account(self.account_info(&account)?),
            R::Mailboxes { account } => Response::Mailboxes(self.mailboxes(&account)?),
            R::Status { account, mailbox } => Response::Mailbox(self.status(&account, &mailbox)?),
            R::CreateMailbox {
                account,
                mailbox,
                special_use,
            } => Response::Mailbox(self.create_mailbox(&account, &mailbox, special_use).await?),
            R::RenameMailbox { account, from, to } => {
                self.rename_mailbox(&account, &from, &to).await?;
                Response::Done(true)
            }
            R::DeleteMailbox { account, mailbox } => {
                self.delete_mailbox(&account, &mailbox).await?;
                Response::Done(true)
            }
            R::Subscribe {
                account,
                mailbox,
                subscribed,
            } => {
                self.subscribe(&account, &mailbox, subscribed).await?;
                Response::Done(true)
            }
            R::Messages {
                account,
                mailbox,
                from,
                to,
            } => Response::Messages(self.messages(&account, &mailbox, from, to)?),
            R::Append {
                account,
                mailbox,
                message,
            } => Response::Appended(self.append(&account, &mailbox, &message).await?),
            R::Deliver {
                recipients,
                message,
            } => Response::Delivered(
                self.deliver(&recipients, &message)
                    .await
                    .into_iter()
                    .map(|r| r.map_err(|e| e.to_string_error()))
                    .collect(),
            ),
            R::Store {
                account,
                mailbox,
                uids,
                op,
                flags,
                keywords,
                unchanged_since,
            } => Response::Stored(
                self.store(
                    &account,
                    &mailbox,
                    &uids,
                    op,
                    flags,
                    &keywords,
                    unchanged_since,
                )
                .await?,
            ),
            R::Expunge {
                account,
                mailbox,
                uids,
            } => Response::Expunged(self.expunge(&account, &mailbox, uids.as_deref()).await?),
            R::Copy {
                account,
                from,
                to,
                uids,
            } => {
                let (uv, pairs) = self.copy(&account, &from, &to, &uids).await?;
                Response::Copied(uv, pairs)
            }
            R::Move {
                account,
                from,
                to,
                uids,
            } => {
                let (uv, pairs) = self.move_messages(&account, &from, &to, &uids).await?;
                Response::Copied(uv, pairs)
            }
            R::Fetch {
                account,
                mailbox,
                uid,
            } => Response::Message(self.fetch(&account, &mailbox, uid).await?.to_vec()),
        })
    }
}

impl NodeHandle {
    /// Sends a request to the partition that owns its account, wherever that is, and
    /// returns the response.
    pub async fn request(&self, request: Request) -> Result<Response> {
        let p = self.partition_of(request.account());
        self.on_partition(p, move |part| async move { part.serve(request).await })
            .await
    }
}
