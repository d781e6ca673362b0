//! Whole IMAP sessions as transcripts, over the in-memory store and link: every command
//! family and every state error, without sockets or an engine. (The same commands run
//! against the real server in `frontends/tests/imap_*.rs`.)

use futures_lite::future::block_on;

use super::memory::{MemoryStore, ScriptLink};
use super::*;
use crate::imap::{parse_command, Framer, Limits};

const MSG: &str = "From: Ann <ann@example.org>\r\nTo: bob@example.org\r\nSubject: hello\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <1@example.org>\r\n\r\nHi Bob\r\n";

fn config() -> SessionConfig {
    SessionConfig {
        capabilities: "IMAP4rev1 IMAP4rev2 IDLE".into(),
        max_message_size: 1 << 20,
        max_mailbox_name: 100,
        max_mailbox_depth: 4,
        max_mailboxes: 20,
    }
}

fn session(store: &MemoryStore) -> Session<MemoryStore, ScriptLink> {
    Session::new(
        store.clone(),
        ScriptLink::default(),
        config(),
        "user@example.org".into(),
    )
}

/// Frames the client's bytes (commands and their literals).
fn frames(input: &str) -> Vec<Frame> {
    let mut f = Framer::new(Limits {
        max_line: 8 << 10,
        max_literal: 4 << 20,
        max_nonsync_literal: 4 << 20,
        max_command: 8 << 20,
    });
    f.input(input.replace("\r\n", "\n").replace('\n', "\r\n").as_bytes());
    std::iter::from_fn(|| f.next_frame()).collect()
}

/// Runs the client's commands (one per line; `\n` becomes CRLF) through the session, as
/// the server's connection loop does, and returns what the session answered.
fn talk(s: &mut Session<MemoryStore, ScriptLink>, input: &str) -> String {
    s.link.input.extend(frames(input));
    block_on(async {
        while let Some(frame) = s.link.input.pop_front() {
            match frame {
                Frame::Command(b) => match parse_command(&b) {
                    Ok((tag, cmd)) => s.handle(&tag, cmd).await,
                    Err(e) => s.failed(&e.tag, &Failure::bad(e.reason)),
                },
                Frame::NeedContinuation => s.line("+ go ahead"),
                Frame::Refused { tag, reason } => s.failed(&tag, &reason.reply()),
                Frame::Busy { tag } => s.failed(&tag, &Failure::no("busy")),
            }
            if s.is_closing() {
                break;
            }
        }
        s.pass_output();
    });
    String::from_utf8(std::mem::take(&mut s.link.sent))
        .unwrap()
        .replace("\r\n", "\n")
}

/// Asserts that `out` holds each of `lines` as a whole line, in this order.
#[track_caller]
fn has(out: &str, lines: &[&str]) {
    let got: Vec<&str> = out.lines().collect();
    let mut at = 0;
    for want in lines {
        match got[at..].iter().position(|l| l == want) {
            Some(i) => at += i + 1,
            None => panic!("missing (in order) {want:?} in:\n{out}"),
        }
    }
}

/// An APPEND of `MSG` (as a LITERAL+, no continuation needed) with these flags.
fn append(tag: &str, mailbox: &str, flags: &str) -> String {
    format!(
        "{tag} APPEND {mailbox} ({flags}) {{{}+}}\n{MSG}\n",
        MSG.len()
    )
}

#[test]
fn state_errors_before_a_mailbox_is_selected_and_after_login() {
    let store = MemoryStore::default();
    let mut s = session(&store);
    let out = talk(
        &mut s,
        "a FETCH 1 FLAGS\nb STORE 1 +FLAGS (\\Seen)\nc EXPUNGE\nd CLOSE\ne SEARCH ALL\n\
         f LOGIN u p\ng AUTHENTICATE PLAIN\nh STARTTLS\ni SETQUOTA \"\" (STORAGE 1)\n\
         j CANCELUPDATE \"x\"\nk UID MOVE 1 Trash\nl NOOP\n",
    );
    has(
        &out,
        &[
            "a BAD no mailbox selected",
            "b BAD no mailbox selected",
            "c BAD no mailbox selected",
            "d BAD no mailbox selected",
            "e BAD no mailbox selected",
            "f BAD already authenticated",
            "g BAD already authenticated",
            "h BAD already authenticated",
            "i BAD SETQUOTA is not supported",
            "j BAD no mailbox selected",
            "k BAD no mailbox selected",
            "l OK NOOP completed",
        ],
    );
    assert_eq!(s.state(), State::Authenticated);
}

#[test]
fn any_state_commands_and_logout() {
    let store = MemoryStore::default();
    let mut s = session(&store);
    let out = talk(
        &mut s,
        "a CAPABILITY\nb ID NIL\nc CHECK\nd ENABLE CONDSTORE X-NONE\ne LOGOUT\nf NOOP\n",
    );
    has(
        &out,
        &[
            "* CAPABILITY IMAP4rev1 IMAP4rev2 IDLE",
            "a OK CAPABILITY completed",
            "* ID (\"name\" \"ringmail\")",
            "b OK ID completed",
            "c OK CHECK completed",
            "* ENABLED CONDSTORE",
            "d OK ENABLE completed",
            "* BYE logging out",
            "e OK LOGOUT completed",
        ],
    );
    assert!(!out.contains("f OK"), "nothing runs after LOGOUT:\n{out}");
    assert!(s.is_closing());
}

#[test]
fn mailboxes_create_list_rename_delete_subscribe_status_quota() {
    let store = MemoryStore::default();
    let mut s = session(&store);
    let out = talk(
        &mut s,
        "a CREATE work/2026/q4\nb CREATE work\nc LIST \"\" *\nd SUBSCRIBE work/2026\n\
         e LSUB \"\" *\nf RENAME work/2026 archive\ng LIST \"\" archive*\nh DELETE archive/q4\n\
         i DELETE INBOX\nj STATUS INBOX (MESSAGES UIDNEXT UNSEEN)\nk NAMESPACE\n\
         l GETQUOTAROOT INBOX\nm GETQUOTA \"nope\"\nn UNSUBSCRIBE work/2026\n\
         o CREATE a/b/c/d/e\np DELETE nosuch\nq CREATE Spam (USE (\\Junk))\n\
         r LIST (SPECIAL-USE) \"\" *\n",
    );
    has(
        &out,
        &[
            "a OK [MAILBOXID (F000003ec)] CREATE completed",
            "b NO [ALREADYEXISTS] a mailbox of that name already exists",
            "* LIST (\\HasNoChildren) \"/\" INBOX",
            "* LIST (\\HasChildren) \"/\" work",
            "* LIST (\\HasChildren) \"/\" work/2026",
            "* LIST (\\HasNoChildren) \"/\" work/2026/q4",
            "c OK LIST completed",
            "d OK SUBSCRIBE completed",
            "* LSUB () \"/\" work/2026",
            "e OK LSUB completed",
            "f OK RENAME completed",
            "* LIST (\\HasChildren) \"/\" archive",
            "* LIST (\\HasNoChildren) \"/\" archive/q4",
            "g OK LIST completed",
            "h OK DELETE completed",
            "i NO [CANNOT] INBOX cannot be deleted",
            "* STATUS INBOX (MESSAGES 0 UIDNEXT 1 UNSEEN 0)",
            "j OK STATUS completed",
            "* NAMESPACE ((\"\" \"/\")) NIL NIL",
            "k OK NAMESPACE completed",
            "* QUOTAROOT INBOX \"\"",
            "l OK GETQUOTAROOT completed",
            "m NO [NONEXISTENT] no such quota root",
            "n OK UNSUBSCRIBE completed",
            "o NO [LIMIT] mailboxes nest at most 4 levels deep",
            "p NO [NONEXISTENT] no such mailbox",
            "r OK LIST completed",
        ],
    );
    assert!(out.contains("\\Junk) \"/\" Spam"), "{out}");
}

#[test]
fn append_select_fetch_store_search_expunge() {
    let store = MemoryStore::default();
    let mut s = session(&store);
    let input = append("a1", "INBOX", "\\Flagged")
        + &append("a2", "INBOX", "")
        + &append("a3", "INBOX", "\\Seen $Work")
        + "b SELECT INBOX\nc FETCH 1:* (UID FLAGS)\nd FETCH 2 (BODY.PEEK[HEADER.FIELDS (Subject)])\n\
           e STORE 2 +FLAGS (\\Deleted)\nf SEARCH UNSEEN\ng UID SEARCH SUBJECT hello\n\
           h FETCH 1 BODY[TEXT]\ni FETCH 1 FLAGS\nj EXPUNGE\nk FETCH 1:* UID\n\
           l SORT (REVERSE ARRIVAL) UTF-8 ALL\nm THREAD ORDEREDSUBJECT UTF-8 ALL\n\
           n SEARCH CHARSET KOI8-R ALL\no FETCH 9 FLAGS\np UID FETCH 9 FLAGS\n";
    let out = talk(&mut s, &input);
    has(
        &out,
        &[
            "a1 OK [APPENDUID 1001 1] APPEND completed",
            "a3 OK [APPENDUID 1001 3] APPEND completed",
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)",
            "* 3 EXISTS",
            "* 3 RECENT",
            "* OK [UIDNEXT 4] predicted next UID",
            "b OK [READ-WRITE] SELECT completed",
            "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))",
            "* 2 FETCH (UID 2 FLAGS (\\Recent))",
            "* 3 FETCH (UID 3 FLAGS (\\Seen $Work \\Recent))",
            "c OK FETCH completed",
            "* 2 FETCH (BODY[HEADER.FIELDS (Subject)] {18}",
            "Subject: hello",
            "d OK FETCH completed",
            "* 2 FETCH (FLAGS (\\Deleted \\Recent))",
            "e OK STORE completed",
            "* SEARCH 1 2",
            "f OK SEARCH completed",
            "* SEARCH 1 2 3",
            "g OK SEARCH completed",
            "* 1 FETCH (FLAGS (\\Seen \\Flagged \\Recent) BODY[TEXT] {8}",
            "h OK FETCH completed",
            "* 2 EXPUNGE",
            "j OK EXPUNGE completed",
            "* 1 FETCH (UID 1)",
            "* 2 FETCH (UID 3)",
            "k OK FETCH completed",
            "* SORT 2 1",
            "l OK SORT completed",
            // One base subject: one thread (RFC 5256 ORDEREDSUBJECT).
            "* THREAD (1 2)",
            "m OK THREAD completed",
            "n NO [BADCHARSET (UTF-8 US-ASCII)] unsupported charset",
            "o BAD invalid message sequence number",
            "p OK FETCH completed",
        ],
    );
    assert_eq!(s.state(), State::Selected);
}

#[test]
fn examine_is_read_only_and_copy_move_uid_expunge_close_unselect() {
    let store = MemoryStore::default();
    let mut s = session(&store);
    let input = append("a1", "INBOX", "")
        + &append("a2", "INBOX", "\\Deleted")
        + &append("a3", "INBOX", "\\Deleted")
        + "b CREATE Trash\nc EXAMINE INBOX\nd STORE 1 +FLAGS (\\Seen)\ne EXPUNGE\n\
           f FETCH 1 BODY[]\ng FETCH 1 FLAGS\nh SELECT INBOX\ni COPY 1:2 Trash\n\
           j UID MOVE 3 Trash\nk COPY 1 Nowhere\nl UID EXPUNGE 1\nm UID EXPUNGE 2\n\
           n STATUS Trash (MESSAGES)\no UNSELECT\np SELECT Trash\nq CLOSE\n\
           r STATUS Trash (MESSAGES DELETED)\n";
    let out = talk(&mut s, &input);
    has(
        &out,
        &[
            "b OK [MAILBOXID (F000003ea)] CREATE completed",
            "c OK [READ-ONLY] EXAMINE completed",
            "d NO [READ-ONLY] mailbox is read-only",
            "e NO [READ-ONLY] mailbox is read-only",
            "f OK FETCH completed",
            // BODY[] of a read-only mailbox does not set \Seen.
            "* 1 FETCH (FLAGS (\\Recent))",
            "g OK FETCH completed",
            "h OK [READ-WRITE] SELECT completed",
            "i OK [COPYUID 1002 1:2 1:2] COPY completed",
            "* OK [COPYUID 1002 3 3] moved",
            "* 3 EXPUNGE",
            "j OK MOVE completed",
            "k NO [TRYCREATE] no such mailbox",
            // UID EXPUNGE removes only named messages marked \Deleted.
            "l OK EXPUNGE completed",
            "* 2 EXPUNGE",
            "m OK EXPUNGE completed",
            "* STATUS Trash (MESSAGES 3)",
            "o OK completed",
            "p OK [READ-WRITE] SELECT completed",
            "q OK completed",
            // CLOSE expunged the two \Deleted copies without a word.
            "* STATUS Trash (MESSAGES 1 DELETED 0)",
        ],
    );
    assert!(!out.contains("* 1 EXPUNGE"), "{out}");
    assert_eq!(s.state(), State::Authenticated);
}

#[test]
fn condstore_and_qresync() {
    let store = MemoryStore::default();
    let mut s = session(&store);
    let input = append("a1", "INBOX", "")
        + &append("a2", "INBOX", "")
        + "b SELECT INBOX (QRESYNC (1001 1))\nc ENABLE QRESYNC\nd SELECT INBOX (CONDSTORE)\n\
           e STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Answered)\n\
           f STORE 2 (UNCHANGEDSINCE 99) +FLAGS (\\Answered)\n\
           g FETCH 1:* (FLAGS) (CHANGEDSINCE 3)\nh UID FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)\n\
           i FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)\n";
    let out = talk(&mut s, &input);
    has(
        &out,
        &[
            "b BAD QRESYNC must be enabled first",
            "* ENABLED QRESYNC",
            "* OK [HIGHESTMODSEQ 3] highest",
            "d OK [READ-WRITE] SELECT completed",
            "e OK [MODIFIED 1] conditional STORE failed for some",
            "* 2 FETCH (FLAGS (\\Answered \\Recent) MODSEQ (4))",
            "f OK STORE completed",
            "* 2 FETCH (FLAGS (\\Answered \\Recent) MODSEQ (4))",
            "g OK FETCH completed",
            "h OK FETCH completed",
            "i BAD VANISHED needs UID FETCH and QRESYNC enabled",
        ],
    );
}

#[test]
fn idle_wakes_on_another_sessions_delivery_and_ends_at_done() {
    let store = MemoryStore::default();
    let mut s = session(&store);
    talk(&mut s, &(append("a", "INBOX", "") + "b SELECT INBOX\n"));
    let other = store.clone();
    s.link.on_wait = Some(Box::new(move || {
        other.deliver("INBOX", MSG.as_bytes());
    }));
    s.link.later.extend(frames("DONE\n"));
    let out = talk(&mut s, "c IDLE\n");
    has(
        &out,
        &[
            "+ idling",
            "* 2 EXISTS",
            "* 2 RECENT",
            "c OK IDLE terminated",
        ],
    );
    assert_eq!(talk(&mut s, "d NOOP\n"), "d OK NOOP completed\n");
    // Anything but DONE ends the IDLE as a client error.
    s.link.later.extend(frames("e NOOP\n"));
    let out = talk(&mut s, "f IDLE\n");
    has(&out, &["+ idling", "f BAD expected DONE"]);
    // A client that goes away while idling ends the session.
    let out = talk(&mut s, "g IDLE\n");
    assert_eq!(out, "+ idling\n");
    assert!(s.is_closing());
}

#[test]
fn metadata_notify_compress_and_cancelupdate() {
    let store = MemoryStore::default();
    let mut s = session(&store);
    let input = "a SETMETADATA INBOX (/private/comment \"hi\")\n\
                 b GETMETADATA INBOX (/private/comment /private/none)\n\
                 c SETMETADATA \"\" (/shared/admin NIL)\n\
                 d GETMETADATA Nowhere /private/comment\n\
                 e NOTIFY SET (selected (MessageNew MessageExpunge))\n\
                 f NOTIFY SET (selected (MessageNew MessageExpunge AnnotationChange))\n\
                 g NOTIFY NONE\n\
                 h SELECT INBOX\n\
                 i SEARCH RETURN (UPDATE) ALL\n\
                 j CANCELUPDATE \"i\"\n\
                 k CANCELUPDATE \"i\"\n\
                 l COMPRESS DEFLATE\n\
                 m COMPRESS DEFLATE\n\
                 n COMPRESS GZIP\n";
    let out = talk(&mut s, input);
    has(
        &out,
        &[
            "a OK SETMETADATA completed",
            "* METADATA INBOX (/private/comment \"hi\" /private/none NIL)",
            "b OK GETMETADATA completed",
            "c OK SETMETADATA completed",
            "d NO [NONEXISTENT] no such mailbox",
            "e OK NOTIFY completed",
            "g OK NOTIFY completed: no notifications",
            "h OK [READ-WRITE] SELECT completed",
            "i OK SEARCH completed",
            "j OK CANCELUPDATE completed: no further updates",
            "k NO no search \"i\" is being updated",
            "l OK DEFLATE active",
            "m NO [COMPRESSIONACTIVE] already compressing",
            "n NO [COMPRESSIONACTIVE] already compressing",
        ],
    );
    assert!(s.link.compressing);
    assert!(
        out.contains("f NO [BADEVENT (") && out.contains(")] an event is not supported"),
        "{out}"
    );
}

#[test]
fn urls_catenate_genurlauth_urlfetch_and_resetkey() {
    let store = MemoryStore::default();
    let mut s = session(&store);
    let out = talk(
        &mut s,
        &(append("a", "INBOX", "")
            + "b CREATE Drafts\nc SELECT INBOX\n\
               d APPEND Drafts CATENATE (URL \"/INBOX;UIDVALIDITY=1001/;UID=1/;SECTION=TEXT\" TEXT {4+}\nBye!)\n\
               e APPEND Drafts CATENATE (URL \"/INBOX/;UID=9\")\n\
               f APPEND Drafts CATENATE (URL \"imap://other.example/INBOX/;UID=1\")\n\
               g GENURLAUTH \"imap://user@example.org@localhost/INBOX/;UID=1;urlauth=anonymous\" INTERNAL\n\
               h URLFETCH \"imap://user@example.org@localhost/INBOX/;UID=1;urlauth=anonymous:internal:00\"\n\
               i RESETKEY INBOX INTERNAL\nj RESETKEY\nk GENURLAUTH \"imap://localhost/INBOX/;UID=1;urlauth=anonymous\" INTERNAL\n\
               l SELECT Drafts\nm FETCH 1 BODY[]\n"),
    );
    has(
        &out,
        &[
            "d OK [APPENDUID 1002 1] APPEND completed",
            "e NO [BADURL /INBOX/;UID=9] no such message",
            "f NO [BADURL imap://other.example/INBOX/;UID=1] the URL names another server",
            "g OK GENURLAUTH completed",
            // This store resolves no authorized URL (the engine's does: tests/urlauth_burl.rs).
            "* URLFETCH imap://user@example.org@localhost/INBOX/;UID=1;urlauth=anonymous:internal:00 NIL",
            "h OK URLFETCH completed",
            "i OK [URLMECH INTERNAL] RESETKEY completed",
            "j OK [URLMECH INTERNAL] RESETKEY completed",
            "k BAD the URL must name its owner, the logged-in user",
            "* 1 FETCH (FLAGS (\\Seen \\Recent) BODY[] {12}",
            "Hi Bob",
            "Bye!)",
        ],
    );
    assert!(out.contains("* GENURLAUTH \"imap://user@example.org@localhost/INBOX/;UID=1;urlauth=anonymous:internal:"), "{out}");
}

#[test]
fn rename_inbox_multiappend_append_errors_keywords_searchres_esearch_and_notify() {
    let store = MemoryStore::default();
    let mut s = session(&store);
    let two = format!(
        "a APPEND INBOX (\\Seen) {{{}+}}\n{MSG} () {{{}+}}\n{MSG}\n",
        MSG.len(),
        MSG.len()
    );
    let big = format!("e APPEND INBOX {{{}+}}\n{}\n", 2 << 20, "x".repeat(2 << 20));
    let input = two
        + &append("b", "Nowhere", "")
        + &big
        + "c SELECT INBOX\nd STORE 1:2 +FLAGS.SILENT ($Todo)\nf FETCH 2 FLAGS\n\
           g SEARCH RETURN (SAVE) KEYWORD $Todo\nh FETCH $ UID\n\
           i SEARCH RETURN (MIN MAX COUNT PARTIAL 1:1) ALL\nj RENAME INBOX Old\n\
           k STATUS Old (MESSAGES)\nl STATUS INBOX (MESSAGES)\n\
           m NOTIFY SET (selected (MessageNew (UID) MessageExpunge))\n";
    let out = talk(&mut s, &input);
    has(
        &out,
        &[
            "a OK [APPENDUID 1001 1:2] APPEND completed",
            "b NO [TRYCREATE] no such mailbox",
            "c OK [READ-WRITE] SELECT completed",
            // A new keyword is announced before any FETCH shows it.
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Todo)",
            "d OK STORE completed",
            "* 2 FETCH (FLAGS ($Todo \\Recent))",
            "g OK SEARCH completed",
            "* 1 FETCH (UID 1)",
            "* 2 FETCH (UID 2)",
            "h OK FETCH completed",
            "* ESEARCH (TAG \"i\") MIN 1 MAX 2 COUNT 2 PARTIAL (1:1 1)",
            "j OK RENAME completed",
            "* STATUS Old (MESSAGES 2)",
            "* STATUS INBOX (MESSAGES 0)",
            "m OK NOTIFY completed",
        ],
    );
    // The 2 MiB literal is over the session's 1 MiB limit.
    assert!(
        out.contains("e NO [TOOBIG] message larger than 1048576 bytes"),
        "{out}"
    );
    // Another session's delivery to the selected mailbox is told at once (NOTIFY).
    store.deliver("INBOX", MSG.as_bytes());
    let out = talk(&mut s, "n NOOP\n");
    has(
        &out,
        &["* 1 EXISTS", "* 1 FETCH (UID 3)", "n OK NOOP completed"],
    );
}

// ---- before login --------------------------------------------------------------------------

use super::login::{Event as LoginEvent, Login, LoginConfig};

fn login_state(tls: bool) -> Login {
    Login::new(LoginConfig {
        tls,
        starttls: true,
        plaintext: false,
        max_failures: 3,
        capabilities: "IMAP4rev2 IDLE".into(),
    })
}

/// Runs the client's lines through the not-authenticated state, as the connection does;
/// the password is "pw" for everyone. Returns the responses and the last event.
fn pre(l: &mut Login, input: &str) -> (String, Option<LoginEvent>) {
    let mut last = None;
    for frame in frames(input) {
        let Frame::Command(line) = frame else {
            panic!("unexpected frame")
        };
        let mut ev = if l.in_exchange() {
            l.exchange_line(&line)
        } else {
            let (tag, cmd) = parse_command(&line).unwrap();
            l.command(&tag, cmd)
        };
        while let Some(e) = ev.take() {
            match e {
                LoginEvent::Need(need, _) => {
                    ev = l.answer(crate::smtp::tests::answer(need, "pw"));
                }
                LoginEvent::StartTls => l.tls_started(),
                done => last = Some(done),
            }
        }
        if last.is_some() {
            break;
        }
    }
    let out = String::from_utf8(std::mem::take(l.output())).unwrap();
    (out.replace("\r\n", "\n"), last)
}

#[test]
fn not_authenticated_state_starttls_then_login() {
    let mut l = login_state(false);
    let (out, ev) = pre(
        &mut l,
        "a CAPABILITY\nb LOGIN u@example.org pw\nc SELECT INBOX\nd FETCH 1 FLAGS\ne ID NIL\n\
         f NOOP\ng STARTTLS\nh CAPABILITY\ni STARTTLS\nj LOGIN u@example.org wrong\n\
         k LOGIN u@example.org pw\nl NOOP\n",
    );
    has(
        &out,
        &[
            "* CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE STARTTLS LOGINDISABLED",
            "a OK CAPABILITY completed",
            "b NO [PRIVACYREQUIRED] use STARTTLS or the implicit-TLS port first",
            "c BAD log in first",
            "d BAD not valid in this state",
            "e OK ID completed",
            "f OK NOOP completed",
            "g OK begin TLS negotiation now",
            "* CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE AUTH=PLAIN AUTH=LOGIN AUTH=SCRAM-SHA-256",
            "i BAD STARTTLS not available",
            "j NO [AUTHENTICATIONFAILED] invalid credentials",
            "k OK [CAPABILITY IMAP4rev2 IDLE] logged in",
        ],
    );
    assert_eq!(ev, Some(LoginEvent::LoggedIn(vec!["u@example.org".into()])));
    assert!(
        !out.contains("l OK"),
        "the session after login answers the rest:\n{out}"
    );
}

#[test]
fn authenticate_exchanges_cancel_and_the_failure_limit() {
    use base64::Engine as _;
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let mut l = login_state(true);
    let input = format!(
        "a AUTHENTICATE CRAM-MD5\nb AUTHENTICATE PLAIN\n*\nc AUTHENTICATE PLAIN\n{}\n\
         d AUTHENTICATE LOGIN {}\n{}\ne AUTHENTICATE PLAIN {}\nf LOGIN x y\n",
        b64(b"no separators"),
        b64(b"u@example.org"),
        b64(b"wrong"),
        b64(b"\0u@example.org\0bad"),
    );
    let (out, ev) = pre(&mut l, &input);
    has(
        &out,
        &[
            "a NO [CANNOT] unsupported mechanism",
            "+ ",
            "b BAD authentication cancelled",
            "+ ",
            "c BAD PLAIN response must be authzid NUL user NUL password",
            "+ UGFzc3dvcmQ6",
            "d NO [AUTHENTICATIONFAILED] invalid credentials",
            "e NO [AUTHENTICATIONFAILED] invalid credentials",
            "f NO [AUTHENTICATIONFAILED] invalid credentials",
            "* BYE too many failed logins",
        ],
    );
    assert_eq!(ev, Some(LoginEvent::Close));
    assert_eq!(l.take_login_outcome(), Some(false));
}
