//! The `imap` workload: each connection logs in, SELECTs INBOX, runs `--commands-per-login`
//! commands drawn from the mix, logs out, and starts over with its next account.
//!
//! Every step is one request for the scheduler (so `--rate` paces IMAP commands, and in the
//! open loop a slow login delays, and is charged to, the commands behind it):
//! `login` (connect, greeting, LOGIN), `select` (SELECT INBOX and UID SEARCH ALL, to learn
//! the UIDs), one mix command per step, `logout`. Commands pick a random UID of the ones
//! the session knows.
//!
//! The session keeps its UID list in step with the mailbox: APPENDUID adds a UID, each
//! `* n EXPUNGE` removes the n-th. When the list is behind (mail delivered meanwhile, an
//! APPEND without APPENDUID), the next step is a `resync`: `UID SEARCH UID last+1:*` for
//! the new messages, or, when the count does not fit otherwise, `UID SEARCH ALL`. Like
//! login, select and logout, it is not in the `all` row.

use rand::rngs::SmallRng;
use rand::Rng;

use super::conn::{wrong, ImapConn};
use super::mix::Command;
use crate::client::ClientError;
use crate::run::{Config, Step, WorkerResult};
use crate::stamp::stamp;

/// Words every generated Subject draws from; SEARCH SUBJECT looks for one of them.
const SUBJECT_WORDS: &[&str] = &[
    "meeting", "project", "report", "invoice", "budget", "release", "server", "update",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resync {
    /// Messages were added: look for UIDs above the last known.
    New,
    /// Anything else: list them all again.
    All,
}

struct Session {
    conn: ImapConn,
    /// The INBOX's UIDs once selected, ascending (so the n-th is message n).
    uids: Option<Vec<u32>>,
    /// UIDs this session appended that are still there: `expunge` takes these first.
    appended: Vec<u32>,
    /// The UID list is out of step: the next step is a resync.
    stale: Option<Resync>,
    /// Mix commands left before LOGOUT.
    left: usize,
}

/// One connection's IMAP state.
#[derive(Default)]
pub(crate) struct Worker {
    logins: u64,
    appends: u64,
    session: Option<Session>,
}

/// The account of connection `w`'s `login`-th session: connection w uses accounts w,
/// w + connections, …, so two connections never share one (as with POP3), and a
/// connection's own STOREs are the only flag changes its mailbox sees.
pub(crate) fn account(cfg: &Config, w: usize, login: u64) -> String {
    let n = cfg.connections as u64;
    let slots = (cfg.users.count() / n).max(1);
    cfg.users.get(w as u64 + (login % slots) * n)
}

impl Worker {
    /// Runs the next step of connection `w`'s session. `pool`: messages for APPEND.
    pub(crate) fn step(
        &mut self,
        cfg: &Config,
        w: usize,
        pool: &[Vec<u8>],
        rng: &mut SmallRng,
        res: &mut WorkerResult,
    ) -> Result<Step, ClientError> {
        let Some(s) = &mut self.session else {
            let user = account(cfg, w, self.logins);
            self.logins += 1;
            let mut conn = ImapConn::connect_tls(cfg.target_of(w), cfg.timeout, cfg.tls.as_ref())?;
            conn.login(&user, &cfg.password)?;
            let changes = cfg
                .imap_mix
                .commands()
                .any(|c| matches!(c, Command::Append | Command::Expunge));
            if changes && conn.caps.is_none() {
                conn.capability()?;
            }
            self.session = Some(Session {
                conn,
                uids: None,
                appended: Vec::new(),
                stale: None,
                left: cfg.imap_commands.max(1),
            });
            return Ok("login".into());
        };
        if s.uids.is_none() || s.stale.is_some() {
            let name = if s.uids.is_none() { "select" } else { "resync" };
            return match s.resync() {
                Ok(()) => Ok(name.into()),
                Err(e) => {
                    self.session = None;
                    Err(e)
                }
            };
        }
        if s.left == 0 {
            let s = self.session.take().expect("matched above");
            return s.conn.logout().map(|_| "logout".into());
        }
        s.left -= 1;
        let cmd = cfg.imap_mix.pick(rng);
        let uids = s.uids.as_deref().unwrap_or_default();
        if cmd.needs_message() && uids.is_empty() {
            s.left = 0; // log out, and try the connection's next account
            return Err(wrong(
                "empty mailbox",
                "INBOX has no messages (use --prefill)",
            ));
        }
        let uid = if uids.is_empty() {
            0
        } else {
            uids[rng.gen_range(0..uids.len())]
        };
        // Connections share accounts only when there are fewer accounts than them.
        let exclusive = cfg.users.count() >= cfg.connections as u64;
        let r: Result<Step, ClientError> = match cmd {
            Command::FetchFlags => s.conn.fetch_flags(uid).map(|_| cmd.name().into()),
            Command::FetchBody => s.conn.fetch_body(uid).map(|b| {
                res.bytes += b.len as u64;
                cmd.name().into()
            }),
            Command::SearchUnseen => s
                .conn
                .uid_search(cmd.name(), "UNSEEN")
                .map(|_| cmd.name().into()),
            Command::SearchSubject => {
                let word = SUBJECT_WORDS[rng.gen_range(0..SUBJECT_WORDS.len())];
                s.conn
                    .uid_search(cmd.name(), &format!("SUBJECT {word}"))
                    .map(|_| cmd.name().into())
            }
            Command::Store => {
                let flag = if rng.gen_bool(0.5) {
                    "\\Flagged"
                } else {
                    "\\Seen"
                };
                s.conn
                    .store(uid, rng.gen_bool(0.5), flag, exclusive)
                    .map(|_| cmd.name().into())
            }
            Command::Noop => s.conn.noop().map(|_| cmd.name().into()),
            Command::Append => {
                self.appends += 1;
                let id = format!("{}-{w}-imap{}", cfg.seed, self.appends);
                let msg = stamp(&id, &pool[self.appends as usize % pool.len()]);
                res.bytes += msg.len() as u64;
                s.append(&msg)
            }
            Command::Expunge => s.expunge(cfg.imap_prefill.max(1), exclusive, rng),
            Command::Idle => s.conn.idle(cfg.imap_idle).map(|waited| Step {
                name: cmd.name(),
                waited,
                mix: false,
            }),
        };
        s.sync();
        match r {
            Ok(step) => Ok(Step { mix: true, ..step }),
            // A tagged NO/BAD or a wrong answer leaves the session in step; anything else
            // (closed, timed out, unparseable, BYE) ends it.
            Err(e @ (ClientError::Wrong { .. } | ClientError::Refused { .. }))
                if !matches!(e, ClientError::Refused { status: "BYE", .. }) =>
            {
                Err(e)
            }
            Err(e) => {
                self.session = None;
                Err(e)
            }
        }
    }

    /// Ends a session at the end of the run (best effort, not measured).
    pub(crate) fn finish(self) {
        if let Some(s) = self.session {
            let _ = s.conn.logout();
        }
    }
}

impl Session {
    /// SELECT and the list of UIDs, or (once selected) a resync of the list.
    fn resync(&mut self) -> Result<(), ClientError> {
        let mut found_new = false;
        let (uids, kind) = match (&mut self.uids, self.stale) {
            (Some(uids), Some(Resync::New)) => {
                let last = uids.last().copied().unwrap_or(0);
                let new = self
                    .conn
                    .uid_search("resync", &format!("UID {}:*", last + 1))?;
                // (`n:*` always matches the last message, even below n.)
                let before = uids.len();
                uids.extend(new.into_iter().filter(|&u| u > last));
                uids.sort_unstable();
                uids.dedup();
                found_new = uids.len() > before;
                (std::mem::take(uids), Resync::New)
            }
            (Some(_), _) => (self.conn.uid_search("resync", "ALL")?, Resync::All),
            (None, _) => {
                self.conn.select("INBOX")?;
                (self.conn.uid_search("select", "ALL")?, Resync::All)
            }
        };
        self.conn.expunged.clear();
        self.stale = None;
        match self.conn.exists {
            // More mail arrived meanwhile: look again (all of them, if this look found
            // nothing new; after that, the search is taken as the truth).
            Some(n) if n as usize > uids.len() && kind == Resync::New => {
                self.stale = Some(if found_new { Resync::New } else { Resync::All });
            }
            _ => self.conn.exists = Some(uids.len() as u32),
        }
        self.appended.retain(|u| uids.binary_search(u).is_ok());
        self.uids = Some(uids);
        Ok(())
    }

    /// Applies the EXPUNGEs the server reported; marks the list stale if they or the
    /// message count do not fit it.
    fn sync(&mut self) {
        let uids = self.uids.get_or_insert_with(Vec::new);
        for seq in self.conn.expunged.drain(..) {
            match (seq as usize).checked_sub(1).filter(|&i| i < uids.len()) {
                Some(i) => {
                    let uid = uids.remove(i);
                    self.appended.retain(|&u| u != uid);
                }
                None => self.stale = Some(Resync::All),
            }
        }
        match self.conn.exists.map(|n| n as usize) {
            Some(n) if n == uids.len() => {}
            Some(n) if n > uids.len() && self.stale.is_none() => self.stale = Some(Resync::New),
            _ => self.stale = Some(Resync::All),
        }
    }

    /// APPEND to INBOX; with UIDPLUS, the APPENDUID must be there.
    fn append(&mut self, msg: &[u8]) -> Result<Step, ClientError> {
        let uid = self.conn.append("INBOX", msg)?;
        let uids = self.uids.get_or_insert_with(Vec::new);
        match uid {
            Some(u) if uids.last().is_none_or(|&last| last < u) => {
                uids.push(u);
                self.appended.push(u);
            }
            Some(u) => {
                self.stale = Some(Resync::All);
                return Err(wrong(
                    "APPENDUID not new",
                    format!("UID {u} is not above the mailbox's last"),
                ));
            }
            None if self.conn.has_cap("UIDPLUS") => {
                self.stale = Some(Resync::New);
                return Err(wrong("no APPENDUID", "UIDPLUS announced"));
            }
            None => self.stale = Some(Resync::New),
        }
        Ok("append".into())
    }

    /// Above `floor` messages: \Deleted on one of the session's own APPENDs (or any
    /// message), then UID EXPUNGE (EXPUNGE without UIDPLUS); it must be gone. At the floor,
    /// `expunge-held`: only the STORE (+\Deleted on an own APPEND, kept for a later
    /// EXPUNGE; without one, -\Deleted on any message), so the mailbox never drains.
    fn expunge(
        &mut self,
        floor: usize,
        exclusive: bool,
        rng: &mut SmallRng,
    ) -> Result<Step, ClientError> {
        let uids = self.uids.as_deref().unwrap_or_default();
        let any = uids[rng.gen_range(0..uids.len())];
        let own = (!self.appended.is_empty())
            .then(|| self.appended[rng.gen_range(0..self.appended.len())]);
        if uids.len() <= floor {
            match own {
                Some(uid) => self.conn.store(uid, true, "\\Deleted", exclusive)?,
                None => self.conn.store(any, false, "\\Deleted", exclusive)?,
            }
            return Ok("expunge-held".into());
        }
        let uid = own.unwrap_or(any);
        self.conn.store(uid, true, "\\Deleted", exclusive)?;
        let uidplus = self.conn.has_cap("UIDPLUS");
        self.conn.expunge(uidplus.then_some(uid))?;
        self.sync();
        let gone = !self.uids.as_ref().is_some_and(|u| u.contains(&uid));
        if !gone && self.stale.is_none() {
            return Err(wrong(
                "expunge not applied",
                format!("UID {uid} is still there"),
            ));
        }
        Ok("expunge".into())
    }
}
