//! The `imap` workload: each connection logs in, SELECTs INBOX, runs `--commands-per-login`
//! commands drawn from the mix, logs out, and starts over with its next account.
//!
//! Every step is one request for the scheduler (so `--rate` paces IMAP commands, and in the
//! open loop a slow login delays, and is charged to, the commands behind it):
//! `login` (connect, greeting, LOGIN), `select` (SELECT INBOX and UID SEARCH ALL, to learn
//! the UIDs), one mix command per step, `logout`. Commands pick a random UID of the ones
//! the SELECT found.

use rand::rngs::SmallRng;
use rand::Rng;

use super::conn::ImapConn;
use super::mix::Command;
use crate::client::ClientError;
use crate::run::{Config, WorkerResult};

/// Words every generated Subject draws from; SEARCH SUBJECT looks for one of them.
const SUBJECT_WORDS: &[&str] = &[
    "meeting", "project", "report", "invoice", "budget", "release", "server", "update",
];

/// The steps that are not mix commands (reported, but not in the `all` row).
pub const SESSION_STEPS: [&str; 3] = ["login", "select", "logout"];

pub(crate) struct Session {
    conn: ImapConn,
    /// The INBOX's UIDs once selected.
    uids: Option<Vec<u32>>,
    /// Mix commands left before LOGOUT.
    left: usize,
}

/// The account of connection `w`'s `login`-th session: connection w uses accounts w,
/// w + connections, …, so two connections never share one (as with POP3), and a
/// connection's own STOREs are the only flag changes its mailbox sees.
pub(crate) fn account(cfg: &Config, w: usize, login: u64) -> String {
    let n = cfg.connections as u64;
    let slots = (cfg.users.count() / n).max(1);
    cfg.users.get(w as u64 + (login % slots) * n)
}

/// Runs the next step of connection `w`'s session; the step's name for the report.
pub(crate) fn step(
    cfg: &Config,
    w: usize,
    logins: &mut u64,
    session: &mut Option<Session>,
    rng: &mut SmallRng,
    res: &mut WorkerResult,
) -> Result<&'static str, ClientError> {
    let Some(s) = session else {
        let user = account(cfg, w, *logins);
        *logins += 1;
        let mut conn = ImapConn::connect(cfg.target, cfg.timeout)?;
        conn.login(&user, &cfg.password)?;
        *session = Some(Session {
            conn,
            uids: None,
            left: cfg.imap_commands.max(1),
        });
        return Ok("login");
    };
    if s.uids.is_none() {
        let r = s
            .conn
            .select("INBOX")
            .and_then(|_| s.conn.uid_search("select", "ALL"));
        return match r {
            Ok(uids) => {
                s.uids = Some(uids);
                Ok("select")
            }
            Err(e) => {
                *session = None;
                Err(e)
            }
        };
    }
    if s.left == 0 {
        let s = session.take().expect("matched above");
        return s.conn.logout().map(|_| "logout");
    }
    s.left -= 1;
    let cmd = cfg.imap_mix.pick(rng);
    let uids = s.uids.as_deref().unwrap_or_default();
    if cmd.needs_message() && uids.is_empty() {
        s.left = 0; // log out, and try the connection's next account
        return Err(ClientError::Wrong {
            check: "empty mailbox",
            detail: "INBOX has no messages (use --prefill)".into(),
        });
    }
    let uid = if uids.is_empty() {
        0
    } else {
        uids[rng.gen_range(0..uids.len())]
    };
    let r = match cmd {
        Command::FetchFlags => s.conn.fetch_flags(uid).map(|_| ()),
        Command::FetchBody => s.conn.fetch_body(uid).map(|b| res.bytes += b.len as u64),
        Command::SearchUnseen => s.conn.uid_search(cmd.name(), "UNSEEN").map(|_| ()),
        Command::SearchSubject => {
            let word = SUBJECT_WORDS[rng.gen_range(0..SUBJECT_WORDS.len())];
            s.conn
                .uid_search(cmd.name(), &format!("SUBJECT {word}"))
                .map(|_| ())
        }
        Command::Store => {
            let flag = if rng.gen_bool(0.5) {
                "\\Flagged"
            } else {
                "\\Seen"
            };
            // Connections share accounts only when there are fewer accounts than them.
            let exclusive = cfg.users.count() >= cfg.connections as u64;
            s.conn.store(uid, rng.gen_bool(0.5), flag, exclusive)
        }
        Command::Noop => s.conn.noop(),
    };
    match r {
        Ok(()) => Ok(cmd.name()),
        // A tagged NO/BAD or a wrong answer leaves the session in step; anything else
        // (closed, timed out, unparseable, BYE) ends it.
        Err(e @ (ClientError::Wrong { .. } | ClientError::Refused { .. }))
            if !matches!(e, ClientError::Refused { status: "BYE", .. }) =>
        {
            Err(e)
        }
        Err(e) => {
            *session = None;
            Err(e)
        }
    }
}

/// Ends a session at the end of the run (best effort, not measured).
pub(crate) fn finish(session: Option<Session>) {
    if let Some(s) = session {
        let _ = s.conn.logout();
    }
}
