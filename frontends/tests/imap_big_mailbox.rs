//! The paths that keep IMAP's cost in line with the work on big mailboxes (issue "IMAP
//! correctness", *Big mailboxes*) must give the answers the plain paths gave: envelopes read
//! many at a time and cached, pictures of a mailbox shared between sessions, a sync that
//! reads only new messages, and a session's own STORE taken as seen. On the real binary
//! over loopback.

mod common;

use common::*;

const ALICE: &str = "alice@example.org";

fn message(n: usize) -> String {
    format!(
        "From: Sender {s} <sender{s}@example.org>\r\nTo: alice@example.org\r\n\
         Subject: topic-{t}-end {n}\r\nMessage-ID: <{n}@test>\r\n\
         Date: Sun, 6 Dec 2026 12:{m:02}:00 +0000\r\n\r\nbody {n}\r\n",
        s = n % 13,
        t = n % 7,
        m = n % 60,
    )
}

/// APPENDs messages `from..to` pipelined (LITERAL+), in one write per hundred.
fn fill(c: &mut Raw, from: usize, to: usize) {
    let mut n = from;
    while n < to {
        let end = (n + 100).min(to);
        let mut buf = Vec::new();
        for i in n..end {
            let m = message(i);
            buf.extend_from_slice(format!("f{i} APPEND INBOX {{{}+}}\r\n", m.len()).as_bytes());
            buf.extend_from_slice(m.as_bytes());
            buf.extend_from_slice(b"\r\n");
        }
        c.send(&buf);
        let last = format!("f{} ", end - 1);
        loop {
            let l = c.line();
            assert!(!l.contains(" NO ") && !l.contains(" BAD "), "{l}");
            if l.starts_with(&last) {
                break;
            }
        }
        n = end;
    }
}

fn numbers(resp: &str, kind: &str) -> Vec<usize> {
    resp.lines()
        .find_map(|l| l.strip_prefix(&format!("* {kind}")))
        .unwrap_or_else(|| panic!("no {kind} in {resp}"))
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// SEARCH on envelope headers, SORT and THREAD over more messages than one chunk of reads
/// (512), with the envelope cache off (every envelope read from its record, many at a
/// time), cold, and warm: the same answers, and the ones the messages call for.
#[test]
fn envelope_searches_agree_with_and_without_the_cache() {
    const N: usize = 1300;
    let mut answers = Vec::new();
    for extra in ["envelope_cache_mib = 0", ""] {
        let srv = imap_server(&[ALICE], extra, "");
        let mut c = imap_login(&srv, ALICE);
        fill(&mut c, 0, N);
        imap_command(&mut c, "s", "SELECT INBOX");
        for round in 0..2 {
            let search = imap_command(&mut c, "b", "SEARCH SUBJECT \"topic-3-end\"");
            let want: Vec<usize> = (0..N).filter(|n| n % 7 == 3).map(|n| n + 1).collect();
            assert_eq!(numbers(&search, "SEARCH"), want, "{extra} round {round}");
            let from = imap_command(&mut c, "c", "SEARCH FROM sender5@example.org");
            let want: Vec<usize> = (0..N).filter(|n| n % 13 == 5).map(|n| n + 1).collect();
            assert_eq!(numbers(&from, "SEARCH"), want);
            let sort = imap_command(&mut c, "d", "SORT (SUBJECT REVERSE DATE) UTF-8 ALL");
            let sorted = numbers(&sort, "SORT");
            assert_eq!(sorted.len(), N);
            // Subjects "topic-T-end n" sort by T first, then by the digits of n as text.
            let key = |seq: usize| format!("TOPIC-{}-END {}", (seq - 1) % 7, seq - 1);
            assert!(sorted.windows(2).all(|w| key(w[0]) <= key(w[1])), "{sort}");
            let thread = imap_command(&mut c, "e", "THREAD ORDEREDSUBJECT UTF-8 ALL");
            assert!(thread.contains("* THREAD ("), "{thread}");
            answers.push((search, from, sort, thread));
        }
    }
    for a in &answers[1..] {
        assert_eq!(a, &answers[0]);
    }
}

/// Sessions on one mailbox: a SELECT shares another session's picture, and every change
/// after (flags, expunge, new mail, a session's own STORE followed by another's) still
/// reaches every session, and a later SELECT shows the store as it is.
#[test]
fn shared_pictures_and_quick_syncs_lose_no_change() {
    let srv = imap_server(&[ALICE], "", "");
    let mut a = imap_login(&srv, ALICE);
    fill(&mut a, 0, 30);
    imap_command(&mut a, "s", "SELECT INBOX");
    let mut b = imap_login(&srv, ALICE);
    let r = imap_command(&mut b, "s", "SELECT INBOX");
    assert!(r.contains("* 30 EXISTS"), "{r}");

    // A changes flags: B hears of it, and a session selecting now sees it.
    imap_command(&mut a, "t", "STORE 2 +FLAGS.SILENT (\\Flagged)");
    let r = imap_command(&mut b, "n", "NOOP");
    assert!(r.contains("* 2 FETCH (FLAGS (\\Flagged))"), "{r}");
    let mut c = imap_login(&srv, ALICE);
    imap_command(&mut c, "s", "SELECT INBOX");
    let r = imap_command(&mut c, "f", "FETCH 2 (FLAGS)");
    assert!(r.contains("* 2 FETCH (FLAGS (\\Flagged))"), "{r}");

    // New mail only: EXISTS, and the new message is there to fetch.
    fill(&mut a, 30, 32);
    let r = imap_command(&mut b, "n", "NOOP");
    assert!(r.contains("* 32 EXISTS"), "{r}");
    let r = imap_command(&mut b, "f", "FETCH 32 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    assert!(r.contains("topic-3-end 31"), "{r}");

    // B's own STORE, then A's: B must still hear of A's.
    imap_command(&mut b, "t", "STORE 5 +FLAGS.SILENT (\\Answered)");
    imap_command(&mut a, "t", "STORE 6 +FLAGS.SILENT (\\Draft)");
    let r = imap_command(&mut b, "n", "NOOP");
    assert!(r.contains("* 6 FETCH (FLAGS (\\Draft))"), "{r}");
    assert!(!r.contains("* 5 FETCH"), "{r}");

    // An expunge by A, new mail after it, then B.
    imap_command(&mut a, "t", "STORE 1 +FLAGS.SILENT (\\Deleted)");
    imap_command(&mut a, "x", "EXPUNGE");
    fill(&mut a, 32, 33);
    let r = imap_command(&mut b, "n", "NOOP");
    assert!(r.contains("* 1 EXPUNGE"), "{r}");
    assert!(r.contains("* 32 EXISTS"), "{r}");

    // Every session, and a new one, holds the store's picture.
    let flags = |c: &mut Raw, tag: &str| {
        let r = imap_command(c, tag, "FETCH 1:* (UID FLAGS)");
        r.lines()
            .filter(|l| l.starts_with("* ") && l.contains("FETCH"))
            // \Recent belongs to the session that selected first.
            .map(|l| l.replace(" \\Recent", "").replace("\\Recent", ""))
            .collect::<Vec<_>>()
    };
    let want = flags(&mut a, "g");
    assert_eq!(want.len(), 32);
    imap_command(&mut c, "n", "NOOP");
    assert_eq!(flags(&mut b, "g"), want);
    assert_eq!(flags(&mut c, "g"), want);
    let mut d = imap_login(&srv, ALICE);
    imap_command(&mut d, "s", "SELECT INBOX");
    assert_eq!(flags(&mut d, "g"), want);
}
