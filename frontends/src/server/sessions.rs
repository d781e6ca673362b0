//! What sessions of the accounts on a shard share, beyond the store: POP3's maildrop locks
//! (RFC 1939 section 8: one session at a time) and IMAP's \Recent claims (RFC 3501 section
//! 2.3.2: a message is \Recent to one session only). Protocol state, kept by the frontends
//! in memory on the shard that owns the accounts (every session of an account runs or
//! asks there); a restart ends every session, and so releases both, as the RFCs allow.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use ringmail_engine::normalize_account;
use ringmail_engine::MailboxInfo;

#[derive(Default)]
pub struct SessionState {
    maildrops: RefCell<HashSet<String>>,
    /// (account, mailbox's UIDVALIDITY) → the highest UID a session was told is \Recent.
    recent: RefCell<HashMap<(String, u32), u32>>,
}

impl SessionState {
    /// Takes the account's maildrop lock; false if another session holds it.
    pub fn try_lock_maildrop(&self, account: &str) -> bool {
        self.maildrops
            .borrow_mut()
            .insert(normalize_account(account))
    }

    pub fn unlock_maildrop(&self, account: &str) {
        self.maildrops
            .borrow_mut()
            .remove(&normalize_account(account));
    }

    /// Claims the mailbox's \Recent messages for one session (SELECT): returns the UID up to
    /// which earlier sessions claimed them; every message above it is \Recent to the caller,
    /// and to no later caller. By UIDVALIDITY, not by name: a mailbox deleted and created
    /// again under its name starts over, and a renamed one keeps its claims.
    pub fn claim_recent(&self, account: &str, st: &MailboxInfo) -> u32 {
        let last = st.uidnext.0.saturating_sub(1);
        let key = (normalize_account(account), st.uidvalidity.0);
        let mut r = self.recent.borrow_mut();
        let old = r.get(&key).copied().unwrap_or(0);
        r.insert(key, last.max(old));
        old
    }

    /// A deleted mailbox's claims go (its UIDVALIDITY is never used again).
    pub fn forget_mailbox(&self, account: &str, uidvalidity: u32) {
        let key = (normalize_account(account), uidvalidity);
        self.recent.borrow_mut().remove(&key);
    }

    /// The \Recent boundary without claiming (EXAMINE, STATUS RECENT).
    pub fn recent_boundary(&self, account: &str, st: &MailboxInfo) -> u32 {
        let key = (normalize_account(account), st.uidvalidity.0);
        self.recent.borrow().get(&key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringmail_engine::{ModSeq, SpecialUse, Uid, UidValidity};

    fn mailbox(uidvalidity: u32, uidnext: u32) -> MailboxInfo {
        MailboxInfo {
            name: "INBOX".into(),
            uidvalidity: UidValidity(uidvalidity),
            uidnext: Uid(uidnext),
            highest_modseq: ModSeq(1),
            changed_modseq: ModSeq(1),
            special_use: SpecialUse::None,
            messages: 0,
            unseen: 0,
            size: 0,
            subscribed: false,
        }
    }

    #[test]
    fn a_maildrop_has_one_holder_and_recent_one_claimant() {
        let s = SessionState::default();
        assert!(s.try_lock_maildrop("Alice@example.org"));
        assert!(!s.try_lock_maildrop("alice@example.org"));
        s.unlock_maildrop("ALICE@example.org");
        assert!(s.try_lock_maildrop("alice@example.org"));

        let inbox = mailbox(7, 4);
        assert_eq!(s.recent_boundary("a@x", &inbox), 0);
        assert_eq!(s.claim_recent("a@x", &inbox), 0);
        assert_eq!(s.claim_recent("a@x", &inbox), 3);
        assert_eq!(s.recent_boundary("a@x", &mailbox(7, 9)), 3);
        // The same name with a new UIDVALIDITY starts over.
        assert_eq!(s.claim_recent("a@x", &mailbox(8, 2)), 0);
    }
}
