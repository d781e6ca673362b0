//! IMAP as real clients and test suites see it (issue "IMAP and delivery correctness"):
//! each test is a bug a client hit, fixed, on the real binary over loopback.

mod common;

use common::*;

const ALICE: &str = "alice@example.org";

/// Item 1: Python's imaplib writes an APPEND's literal and its closing CRLF in two writes;
/// with Nagle's algorithm the second waited for the server's delayed ACK, 40 ms and more
/// per APPEND (0.5 ms with one write).
#[test]
fn an_append_written_in_two_pieces_is_not_held_for_a_delayed_ack() {
    let srv = imap_server(&[ALICE], "", "");
    let out = srv.python(
        r#"
import imaplib, os, statistics, time
c = imaplib.IMAP4("127.0.0.1", int(os.environ["IMAP"]))
c.login("alice@example.org", "secret")
msg = b"From: a@example.org\r\nSubject: append\r\n\r\n" + b"line of text\r\n" * 200
times = []
for i in range(15):
    t = time.perf_counter()
    typ, _ = c.append("INBOX", None, None, msg)
    times.append(time.perf_counter() - t)
    assert typ == "OK"
print("median_ms", round(statistics.median(times) * 1000, 2))
c.logout()
"#,
    );
    let median: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("median_ms "))
        .unwrap()
        .parse()
        .unwrap();
    // The stall was 40 ms or more per APPEND; an APPEND takes about 1 ms here.
    assert!(median < 20.0, "median APPEND {median} ms");
}

/// Item 6: a name with atom-specials that is not modified UTF-7 is still a well-formed
/// astring: SELECT gets NO (no such mailbox), not BAD, and LIST matching it is OK.
#[test]
fn a_name_that_is_not_modified_utf7_is_just_nonexistent() {
    let srv = imap_server(&[ALICE], "", "");
    let mut c = imap_login(&srv, ALICE);
    let name = "!#$&'+,-.0123456789:;<=>?@^_|[}";
    let r = imap_command(&mut c, "b", &format!("SELECT {name}"));
    assert!(r.contains("b NO [NONEXISTENT]"), "{r}");
    let r = imap_command(&mut c, "c", &format!("LIST \"\" {name}"));
    assert!(r.starts_with("c OK"), "{r}");
    let r = imap_command(&mut c, "d", &format!("STATUS {name} (MESSAGES)"));
    assert!(r.contains("d NO"), "{r}");
    let r = imap_command(&mut c, "e", &format!("CREATE {name}"));
    assert!(r.contains("e NO [CANNOT]"), "{r}");
}

/// Item 7: an ID with RFC 2971's maximum (30 fields, values of 1,024 octets) got `BAD line
/// too long`.
#[test]
fn the_largest_id_rfc_2971_allows_is_accepted() {
    let srv = imap_server(&[ALICE], "", "");
    let mut c = Raw::connect_with(srv.imap, "* OK");
    let fields: Vec<String> = (0..30)
        .map(|i| format!("\"field{i:02}\" \"{}\"", "v".repeat(1024)))
        .collect();
    let r = imap_command(&mut c, "a", &format!("ID ({})", fields.join(" ")));
    assert!(r.contains("a OK"), "{}", &r[..r.len().min(300)]);
}

/// Item 15: with a default domain configured, the local part alone logs in (Dovecot's
/// `auth_default_realm`); without one, it does not.
#[test]
fn the_local_part_alone_logs_in_with_a_default_domain() {
    let script = r#"
import imaplib, os
c = imaplib.IMAP4("127.0.0.1", int(os.environ["IMAP"]))
try:
    c.login("alice", "secret"); print("imap ok")
except imaplib.IMAP4.error as e:
    print("imap refused")
"#;
    let srv = imap_server(&[ALICE], "", "default_domain = \"example.org\"\n");
    assert!(srv.python(script).contains("imap ok"));
    let srv = imap_server(&[ALICE], "", "");
    assert!(srv.python(script).contains("imap refused"));
}

/// Appends a small message to `mailbox` over `c`.
fn append(c: &mut Raw, tag: &str, mailbox: &str, subject: &str) {
    let msg = format!("From: a@example.org\r\nSubject: {subject}\r\n\r\nbody\r\n");
    let r = imap_command(
        c,
        tag,
        &format!("APPEND {mailbox} {{{}+}}\r\n{msg}", msg.len()),
    );
    assert!(r.contains(&format!("{tag} OK")), "{r}");
}

/// Item 2: \Recent claims were kept by mailbox name, so a mailbox deleted and created again
/// under the same name had its new messages counted as claimed already.
#[test]
fn recent_starts_over_when_a_name_is_reused() {
    let srv = imap_server(&[ALICE], "", "");
    let mut c = imap_login(&srv, ALICE);
    imap_command(&mut c, "a1", "CREATE r");
    for i in 0..3 {
        append(&mut c, &format!("b{i}"), "r", "first");
    }
    assert!(imap_command(&mut c, "c", "SELECT r").contains("* 3 RECENT"));
    imap_command(&mut c, "d", "CLOSE");
    assert!(imap_command(&mut c, "e", "DELETE r").contains("e OK"));
    imap_command(&mut c, "f", "CREATE r");
    append(&mut c, "g1", "r", "second");
    append(&mut c, "g2", "r", "second");
    let r = imap_command(&mut c, "h", "STATUS r (RECENT)");
    assert!(r.contains("RECENT 2"), "{r}");
    let r = imap_command(&mut c, "i", "EXAMINE r");
    assert!(r.contains("* 2 RECENT"), "{r}");
}

/// Item 3: a FETCH of MODSEQ enables CONDSTORE (RFC 7162 section 3.1): later STORE
/// responses carry MODSEQ, and the enabling command reports HIGHESTMODSEQ once, since the
/// SELECT came before CONDSTORE was on.
#[test]
fn a_fetch_of_modseq_enables_condstore() {
    let srv = imap_server(&[ALICE], "", "");
    let mut c = imap_login(&srv, ALICE);
    append(&mut c, "a", "INBOX", "one");
    imap_command(&mut c, "b", "SELECT INBOX");
    let r = imap_command(&mut c, "c", "FETCH 1 (FLAGS MODSEQ)");
    assert!(r.contains("* OK [HIGHESTMODSEQ "), "{r}");
    assert!(r.contains("MODSEQ ("), "{r}");
    let r = imap_command(&mut c, "d", "STORE 1 +FLAGS (\\Flagged)");
    let fetch = r.lines().find(|l| l.starts_with("* 1 FETCH")).unwrap_or("");
    assert!(fetch.contains("MODSEQ ("), "{r}");
    let r = imap_command(&mut c, "e", "FETCH 1 (MODSEQ)");
    assert!(!r.contains("HIGHESTMODSEQ"), "reported once: {r}");
    // Enabled before SELECT: SELECT reports it, and no command repeats it.
    let mut c = imap_login(&srv, ALICE);
    imap_command(&mut c, "a", "ENABLE CONDSTORE");
    imap_command(&mut c, "b", "SELECT INBOX");
    let r = imap_command(&mut c, "c", "FETCH 1 (MODSEQ)");
    assert!(!r.contains("HIGHESTMODSEQ"), "{r}");
}

/// Item 9: MOVE to the selected mailbox itself renumbers the messages (RFC 6851); it got
/// `NO [CANNOT]`.
#[test]
fn a_move_into_the_same_mailbox_renumbers() {
    let srv = imap_server(&[ALICE], "", "");
    let mut c = imap_login(&srv, ALICE);
    append(&mut c, "a1", "INBOX", "one");
    append(&mut c, "a2", "INBOX", "two");
    imap_command(&mut c, "b", "SELECT INBOX");
    let r = imap_command(&mut c, "c", "UID MOVE 1 INBOX");
    assert!(r.contains("c OK"), "{r}");
    assert!(r.contains("[COPYUID ") && r.contains(" 1 3]"), "{r}");
    assert!(r.contains("* 1 EXPUNGE"), "{r}");
    assert!(r.contains("* 2 EXISTS"), "{r}");
    let r = imap_command(
        &mut c,
        "d",
        "UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
    );
    assert!(r.contains("UID 2 ") && r.contains("UID 3 "), "{r}");
    assert!(
        r.contains("Subject: one") && r.contains("Subject: two"),
        "{r}"
    );
}

/// Item 11: a STORE that makes a new keyword sends FLAGS and PERMANENTFLAGS before the
/// FETCH that shows it, in this session and in others on the mailbox.
#[test]
fn a_new_keyword_is_announced_before_it_is_shown() {
    let srv = imap_server(&[ALICE], "", "");
    let mut c = imap_login(&srv, ALICE);
    append(&mut c, "a", "INBOX", "one");
    imap_command(&mut c, "b", "SELECT INBOX");
    let mut other = imap_login(&srv, ALICE);
    imap_command(&mut other, "b", "SELECT INBOX");
    let r = imap_command(&mut c, "c", "STORE 1 +FLAGS (hello)");
    let flags = r.find("* FLAGS (").expect(&r);
    let perm = r.find("[PERMANENTFLAGS (").expect(&r);
    let fetch = r.find("* 1 FETCH").expect(&r);
    assert!(flags < fetch && perm < fetch, "{r}");
    assert!(r[flags..perm].contains("hello"), "{r}");
    let r = imap_command(&mut other, "c", "NOOP");
    let flags = r.find("* FLAGS (").expect(&r);
    let fetch = r.find("* 1 FETCH").expect(&r);
    assert!(flags < fetch && r[flags..fetch].contains("hello"), "{r}");
    // Once is enough.
    let r = imap_command(&mut c, "d", "STORE 1 -FLAGS (hello)");
    assert!(!r.contains("* FLAGS"), "{r}");
}

/// Item 13: final delivery adds `Return-Path:` with the envelope sender (RFC 5321 section
/// 4.4), `<>` for the null sender, over SMTP and LMTP.
#[test]
fn final_delivery_adds_return_path() {
    let mut srv = imap_server(&[ALICE], "", "");
    srv.python(
        r#"
import os, smtplib
s = smtplib.SMTP("127.0.0.1", int(os.environ["SMTP"]))
s.sendmail("", ["alice@example.org"], b"Subject: bounce\r\n\r\nx\r\n"); s.quit()
l = smtplib.LMTP("127.0.0.1", int(os.environ["LMTP"]))
l.sendmail("bob@remote.example", ["alice@example.org"], b"Subject: lmtp\r\n\r\nx\r\n"); l.quit()
"#,
    );
    srv.stop();
    let stored = inbox_raw(&srv.data(), ALICE);
    assert!(stored[0].starts_with(b"Return-Path: <>\r\nReceived: from "));
    assert!(stored[1].starts_with(b"Return-Path: <bob@remote.example>\r\nReceived: from "));
}

/// Item 5: after a literal8 APPEND, FETCH BODY[] and BODY[1] sent raw NUL octets inside
/// ordinary literals, which IMAP forbids (RFC 3516 section 4.2). The part is stored base64
/// now; BINARY gives the octets back exactly, in a literal8.
#[test]
fn nul_octets_travel_only_in_literal8() {
    let srv = imap_server(&[ALICE], "", "");
    let mut c = imap_login(&srv, ALICE);
    let raw: &[u8] = b"Subject: nul\r\nContent-Type: text/plain\r\n\r\na\x00b\nc";
    let mut cmd = format!("APPEND INBOX ~{{{}+}}\r\n", raw.len()).into_bytes();
    cmd.extend_from_slice(raw);
    c.send(b"b ");
    c.send(&cmd);
    c.send(b"\r\n");
    loop {
        let l = c.line();
        if l.starts_with("b ") {
            assert!(l.starts_with("b OK"), "{l}");
            break;
        }
    }
    imap_command(&mut c, "c", "SELECT INBOX");
    let read_all = |c: &mut Raw, tag: &str| {
        let mut all = Vec::new();
        loop {
            let mut l = Vec::new();
            std::io::BufRead::read_until(&mut c.s, b'\n', &mut l).unwrap();
            all.extend_from_slice(&l);
            if l.starts_with(tag.as_bytes()) || l.is_empty() {
                return all;
            }
        }
    };
    c.send(b"d FETCH 1 (BODY.PEEK[] BODY.PEEK[1])\r\n");
    let r = read_all(&mut c, "d ");
    assert!(!r.contains(&0), "{:?}", String::from_utf8_lossy(&r));
    let text = String::from_utf8_lossy(&r).to_string();
    assert!(text.contains("Content-Transfer-Encoding: base64"), "{text}");
    c.send(b"e FETCH 1 (BINARY.PEEK[1])\r\n");
    let r = read_all(&mut c, "e ");
    let want: &[u8] = b"BINARY[1] ~{5}\r\na\x00b\nc)";
    assert!(
        r.windows(want.len()).any(|w| w == want),
        "{:?}",
        String::from_utf8_lossy(&r)
    );
}

/// Item 8: LIST-EXTENDED as RFC 5258 has it: unknown options are BAD; SUBSCRIBED lists
/// subscriptions whose mailbox is gone (\NonExistent); RECURSIVEMATCH gives CHILDINFO; and
/// LSUB shows a level `%` hides a subscription under, and subscriptions without a mailbox.
#[test]
fn list_extended_and_lsub_as_rfc_5258_has_them() {
    let srv = imap_server(&[ALICE], "", "");
    let mut c = imap_login(&srv, ALICE);
    let r = imap_command(&mut c, "a", "LIST (NOSUCH) \"\" *");
    assert!(r.starts_with("a BAD"), "{r}");
    let r = imap_command(&mut c, "b", "LIST \"\" * RETURN (NOSUCH)");
    assert!(r.starts_with("b BAD"), "{r}");
    imap_command(&mut c, "c1", "CREATE p/q");
    imap_command(&mut c, "c2", "SUBSCRIBE p/q");
    imap_command(&mut c, "c3", "CREATE gone");
    imap_command(&mut c, "c4", "SUBSCRIBE gone");
    imap_command(&mut c, "c5", "DELETE gone");
    let r = imap_command(&mut c, "d", "LIST (SUBSCRIBED) \"\" *");
    assert!(
        r.contains("* LIST (\\NonExistent \\Subscribed) \"/\" gone"),
        "{r}"
    );
    assert!(r.contains("\\Subscribed) \"/\" p/q"), "{r}");
    let r = imap_command(&mut c, "e", "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" %");
    assert!(
        r.contains("\"/\" p (\"CHILDINFO\" (\"SUBSCRIBED\"))"),
        "{r}"
    );
    let r = imap_command(&mut c, "f", "LSUB \"\" %");
    assert!(r.contains("* LSUB (\\Noselect) \"/\" p"), "{r}");
    assert!(r.contains("* LSUB (\\Noselect) \"/\" gone"), "{r}");
}

/// Item 14: a message another session expunged was gone at once for a session not yet told
/// (`NO no message with that UID`), though its sequence number still named it there. It is
/// fetchable, body and all, until the session is told; then the numbers move on.
#[test]
fn a_message_expunged_elsewhere_is_fetchable_until_announced() {
    let srv = imap_server(&[ALICE], "", "");
    let mut a = imap_login(&srv, ALICE);
    for i in 1..=3 {
        append(&mut a, &format!("a{i}"), "INBOX", &format!("number {i}"));
    }
    let r = imap_command(&mut a, "b", "SELECT INBOX");
    assert!(r.contains("* 3 EXISTS"), "{r}");

    let mut other = imap_login(&srv, ALICE);
    imap_command(&mut other, "c1", "SELECT INBOX");
    let r = imap_command(&mut other, "c2", "STORE 2 +FLAGS.SILENT (\\Deleted)");
    assert!(r.contains("c2 OK"), "{r}");
    let r = imap_command(&mut other, "c3", "EXPUNGE");
    assert!(r.contains("* 2 EXPUNGE"), "{r}");

    // FETCH may not announce the expunge (RFC 9051 section 7.5.1): the data is sent.
    let r = imap_command(
        &mut a,
        "d",
        "FETCH 2 (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)] ENVELOPE)",
    );
    assert!(r.contains("d OK"), "{r}");
    assert!(r.contains("* 2 FETCH (UID 2 "), "{r}");
    assert!(r.contains("Subject: number 2"), "{r}");
    assert!(r.contains("\"number 2\""), "{r}");
    assert!(!r.contains("EXPUNGE"), "{r}");
    let r = imap_command(&mut a, "e", "UID FETCH 2 (BODY[])");
    assert!(r.contains("e OK") && r.contains("body"), "{r}");
    // Told now; afterwards 2 is the message that was 3.
    let r = imap_command(&mut a, "f", "NOOP");
    assert!(r.contains("* 2 EXPUNGE"), "{r}");
    let r = imap_command(&mut a, "g", "FETCH 2 (UID)");
    assert!(r.contains("* 2 FETCH (UID 3)"), "{r}");
    let r = imap_command(&mut a, "h", "UID FETCH 2 (BODY[])");
    assert!(r.contains("h OK") && !r.contains("FETCH ("), "{r}");
}

/// Item 14 as a stress client saw it: sessions on one mailbox appending, fetching by
/// sequence number, flagging \Deleted and expunging at once. Every FETCH of a number the
/// session was shown must succeed (before the fix, dozens a run got NO).
#[test]
fn concurrent_expunges_fail_no_fetch() {
    let srv = imap_server(&[ALICE], "", "");
    let out = srv.python(
        r#"
import imaplib, os, random, threading, time
port = int(os.environ["IMAP"])
stop = time.time() + 4
fails, fetches = [], [0]
def session(k):
    rnd = random.Random(k)
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login("alice@example.org", "secret")
    typ, data = c.select("INBOX")
    n = int(data[0])
    def track():
        nonlocal n
        ex = c.untagged_responses.pop("EXISTS", None)
        gone = c.untagged_responses.pop("EXPUNGE", None)
        if ex:
            n = int(ex[-1])
        elif gone:
            n -= len(gone)
    while time.time() < stop:
        op = rnd.random()
        if op < 0.25 or n < 3:
            msg = b"From: s%d@example.org\r\nSubject: stress %d\r\n\r\n" % (k, k) + b"line\r\n" * rnd.randint(1, 200)
            typ, data = c.append("INBOX", None, None, msg)
            if typ != "OK":
                fails.append(("APPEND", data))
            c.noop()
        elif op < 0.75:
            m = rnd.randint(1, n)
            typ, data = c.fetch(str(m), "(UID RFC822.SIZE BODY.PEEK[] ENVELOPE)")
            fetches[0] += 1
            if typ != "OK":
                fails.append(("FETCH", m, n, data))
        elif op < 0.9:
            m = rnd.randint(1, n)
            typ, data = c.store(str(m), "+FLAGS.SILENT", "(\\Deleted)")
            if typ != "OK":
                fails.append(("STORE", m, n, data))
        else:
            c.expunge()
        track()
    c.logout()
seed = imaplib.IMAP4("127.0.0.1", port)
seed.login("alice@example.org", "secret")
for i in range(30):
    seed.append("INBOX", None, None, b"Subject: seed %d\r\n\r\nbody\r\n" % i)
seed.logout()
threads = [threading.Thread(target=session, args=(k,)) for k in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("fetches", fetches[0])
for f in fails[:10]: print("FAIL", f)
print("failures", len(fails))
"#,
    );
    assert!(out.contains("failures 0"), "{out}");
    let fetches: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("fetches "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(fetches > 200, "too few fetches to mean anything: {out}");
}

/// Extensions: CREATE-SPECIAL-USE (RFC 6154 section 3). The attribute given at CREATE is
/// listed; one this server cannot honour is `NO [USEATTR]` with nothing created; a
/// malformed parameter is `BAD`.
#[test]
fn create_special_use_marks_the_new_mailbox() {
    let srv = imap_server(&[ALICE], "", "");
    let mut c = imap_login(&srv, ALICE);
    let r = imap_command(&mut c, "a", "CAPABILITY");
    assert!(r.contains(" CREATE-SPECIAL-USE"), "{r}");
    let r = imap_command(&mut c, "b", "CREATE \"Old Sent\" (USE (\\Sent))");
    assert!(r.contains("b OK"), "{r}");
    let r = imap_command(&mut c, "c", "LIST \"\" \"Old Sent\"");
    assert!(r.contains("\\Sent") && r.contains("\"Old Sent\""), "{r}");
    let r = imap_command(&mut c, "d", "LIST (SPECIAL-USE) \"\" *");
    assert!(r.contains("\"Old Sent\""), "{r}");
    for (tag, attrs) in [
        ("e1", "\\All"),
        ("e2", "\\Flagged"),
        ("e3", "\\Important"),
        ("e4", "\\Sent \\Trash"),
    ] {
        let r = imap_command(&mut c, tag, &format!("CREATE x (USE ({attrs}))"));
        assert!(r.contains(&format!("{tag} NO [USEATTR]")), "{r}");
    }
    let r = imap_command(&mut c, "f", "LIST \"\" x");
    assert!(!r.contains("* LIST"), "nothing is created: {r}");
    let r = imap_command(&mut c, "g", "CREATE x (COLOR (red))");
    assert!(r.contains("g BAD"), "{r}");
    let r = imap_command(&mut c, "h", "CREATE x (USE ())");
    assert!(r.contains("h OK"), "{r}");
}

/// Extensions: PARTIAL (RFC 9394) for SEARCH, SORT and FETCH, and ESORT (RFC 5267): pages
/// counted from either end, MIN and MAX in sort order, SAVE of a page.
#[test]
fn partial_pages_and_esort_answer_in_esearch() {
    let srv = imap_server(&[ALICE], "", "");
    let mut c = imap_login(&srv, ALICE);
    let r = imap_command(&mut c, "a", "CAPABILITY");
    assert!(r.contains(" ESORT ") && r.contains(" PARTIAL "), "{r}");
    for i in 1..=6 {
        append(&mut c, &format!("b{i}"), "INBOX", &format!("s{i}"));
    }
    imap_command(&mut c, "c", "SELECT INBOX");
    let r = imap_command(&mut c, "d", "UID SEARCH RETURN (PARTIAL 2:4 COUNT) ALL");
    assert!(
        r.contains("* ESEARCH (TAG \"d\") UID COUNT 6 PARTIAL (2:4 2:4)"),
        "{r}"
    );
    let r = imap_command(&mut c, "e", "SEARCH RETURN (PARTIAL -2:-1) ALL");
    assert!(r.contains("PARTIAL (-1:-2 5:6)"), "{r}");
    let r = imap_command(&mut c, "f", "SEARCH RETURN (PARTIAL 7:9) ALL");
    assert!(r.contains("PARTIAL (7:9 NIL)") && r.contains("f OK"), "{r}");
    let r = imap_command(&mut c, "g", "SEARCH RETURN (ALL PARTIAL 1:2) ALL");
    assert!(r.contains("g BAD"), "{r}");

    let r = imap_command(
        &mut c,
        "h",
        "UID SORT RETURN (MIN MAX ALL) (REVERSE SUBJECT) UTF-8 ALL",
    );
    assert!(
        r.contains("* ESEARCH (TAG \"h\") UID MIN 6 MAX 1 ALL 6,5,4,3,2,1"),
        "{r}"
    );
    let r = imap_command(
        &mut c,
        "i",
        "UID SORT RETURN (SAVE PARTIAL 1:2) (REVERSE SUBJECT) UTF-8 ALL",
    );
    assert!(r.contains("UID PARTIAL (1:2 6,5)"), "{r}");
    let r = imap_command(&mut c, "j", "UID FETCH $ (UID)");
    assert!(
        r.contains("FETCH (UID 5)") && r.contains("FETCH (UID 6)"),
        "{r}"
    );
    assert!(!r.contains("FETCH (UID 4)"), "{r}");
    let r = imap_command(&mut c, "k", "UID SORT (SUBJECT) UTF-8 ALL");
    assert!(r.contains("* SORT 1 2 3 4 5 6"), "{r}");

    let r = imap_command(&mut c, "l", "UID FETCH 2:* (UID) (PARTIAL -1:-2)");
    assert!(
        r.contains("FETCH (UID 5)") && r.contains("FETCH (UID 6)"),
        "{r}"
    );
    assert_eq!(r.matches("FETCH (").count(), 2, "{r}");
    let r = imap_command(&mut c, "m", "UID FETCH 1:* (UID) (PARTIAL 2:3)");
    assert!(
        r.contains("FETCH (UID 2)") && r.contains("FETCH (UID 3)"),
        "{r}"
    );
    assert_eq!(r.matches("FETCH (").count(), 2, "{r}");
    let r = imap_command(&mut c, "n", "UID FETCH 1:* (UID) (PARTIAL 1:*)");
    assert!(r.contains("n BAD"), "{r}");
}

/// Item 12: header bytes that are not UTF-8 reach an IMAP client as sent (in literals), not
/// as U+FFFD: imaplib sees the Latin-1 octets in ENVELOPE and BODYSTRUCTURE.
#[test]
fn latin1_header_bytes_pass_through() {
    let srv = imap_server(&[ALICE], "", "");
    let out = srv.python(
        r#"
import imaplib, os
c = imaplib.IMAP4("127.0.0.1", int(os.environ["IMAP"]))
c.login("alice@example.org", "secret")
msg = (b"From: J\xf6rg <j@example.de>\r\nSubject: Caf\xe9 cr\xe8me\r\n"
       b"Content-Type: text/plain; name=\"r\xe9sum\xe9.txt\"\r\n\r\nbody\r\n")
typ, _ = c.append("INBOX", None, None, msg)
assert typ == "OK"
c.select("INBOX")
typ, data = c.fetch("1", "(ENVELOPE BODYSTRUCTURE)")
assert typ == "OK", data
flat = b"".join(p if isinstance(p, bytes) else b"".join(p) for p in data)
for want in [b"Caf\xe9 cr\xe8me", b"J\xf6rg", b"r\xe9sum\xe9.txt"]:
    assert want in flat, (want, flat)
assert "\ufffd".encode() not in flat, flat
print("ok")
"#,
    );
    assert!(out.contains("ok"), "{out}");
}

/// Extensions: CATENATE (RFC 4469). A message made of TEXT parts and URLs to messages and
/// sections already stored; a URL that names nothing is `NO [BADURL url]` and nothing of
/// the APPEND is stored, MULTIAPPEND included.
#[test]
fn catenate_builds_a_message_from_stored_parts() {
    let srv = imap_server(&[ALICE, "bob@example.org"], "", "");
    let mut c = imap_login(&srv, ALICE);
    let r = imap_command(&mut c, "a", "CAPABILITY");
    assert!(r.contains(" CATENATE"), "{r}");
    let original = "From: a@example.org\r\nSubject: parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nfirst part\r\n--b\r\nContent-Type: text/plain\r\n\r\nsecond part\r\n--b--\r\n";
    let r = imap_command(
        &mut c,
        "b",
        &format!("APPEND Drafts {{{}+}}\r\n{original}", original.len()),
    );
    assert!(r.contains("b OK [APPENDUID"), "{r}");
    let r = imap_command(&mut c, "c", "STATUS Drafts (UIDVALIDITY)");
    let uv: u32 = r
        .split("UIDVALIDITY ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{r}"));

    let text = "\r\nnew text\r\n";
    let r = imap_command(
        &mut c,
        "d",
        &format!(
            "APPEND Drafts (\\Draft) CATENATE (URL \"/Drafts;UIDVALIDITY={uv}/;UID=1/;section=HEADER\" TEXT {{{}+}}\r\n{text} URL \"imap://alice%40example.org@localhost/Drafts/;UID=1/;SECTION=2/;PARTIAL=0.6\")",
            text.len()
        ),
    );
    assert!(r.contains("d OK [APPENDUID"), "{r}");
    imap_command(&mut c, "e", "SELECT Drafts");
    let r = imap_command(&mut c, "f", "FETCH 2 (FLAGS BODY[])");
    let header_end = original.find("\r\n\r\n").unwrap() + 4;
    let want = format!("{}{text}second", &original[..header_end]);
    assert!(r.contains(&format!("{{{}}}\r\n{want})", want.len())), "{r}");
    assert!(r.contains("\\Draft"), "{r}");
    // Relative to the selected mailbox.
    let r = imap_command(
        &mut c,
        "g",
        "APPEND Drafts CATENATE (TEXT {14+}\r\nSubject: rel\r\n URL \";UID=1/;SECTION=1\")",
    );
    assert!(r.contains("g OK"), "{r}");
    let r = imap_command(&mut c, "h", "FETCH 3 (BODY[])");
    assert!(r.contains("Subject: rel\r\nfirst part)"), "{r}");

    for (tag, url) in [
        ("i1", "/Drafts/;UID=99".to_string()),
        ("i2", format!("/Drafts;UIDVALIDITY={}/;UID=1", uv + 1)),
        ("i3", "/Nowhere/;UID=1".to_string()),
        ("i4", "/Drafts/;UID=1/;SECTION=7".to_string()),
        (
            "i5",
            "imap://bob%40example.org@localhost/INBOX/;UID=1".to_string(),
        ),
        ("i6", "imap://elsewhere.example/Drafts/;UID=1".to_string()),
    ] {
        // The first message of the MULTIAPPEND is good; none may be stored.
        let r = imap_command(
            &mut c,
            tag,
            &format!("APPEND Drafts {{5+}}\r\nhello CATENATE (URL \"{url}\")"),
        );
        assert!(r.contains(&format!("{tag} NO [BADURL {url}]")), "{r}");
    }
    let r = imap_command(&mut c, "j", "STATUS Drafts (MESSAGES)");
    assert!(r.contains("MESSAGES 3"), "{r}");
}

/// Extensions: METADATA (RFC 5464). Annotations on mailboxes and on the server (per
/// account), kept across a crash, following RENAME and gone with DELETE; DEPTH and MAXSIZE;
/// the limits answered with their codes; bad entry names BAD.
#[test]
fn metadata_is_kept_per_mailbox_and_server() {
    let mut srv = imap_server(&[ALICE], "", "");
    let mut c = imap_login(&srv, ALICE);
    let r = imap_command(&mut c, "a", "CAPABILITY");
    assert!(r.contains(" METADATA"), "{r}");
    let r = imap_command(
        &mut c,
        "b",
        "SETMETADATA INBOX (/private/comment {12+}\r\nline1\r\nline2 /shared/vendor/acme/a \"1\" /shared/vendor/acme/a/b ~{3+}\r\nx\0y)",
    );
    assert!(r.contains("b OK"), "{r}");
    let r = imap_command(
        &mut c,
        "c",
        "SETMETADATA \"\" (/shared/comment \"server note\")",
    );
    assert!(r.contains("c OK"), "{r}");
    let r = imap_command(
        &mut c,
        "d",
        "GETMETADATA INBOX (/private/comment /shared/comment)",
    );
    assert!(
        r.contains(
            "* METADATA INBOX (/private/comment {12}\r\nline1\r\nline2 /shared/comment NIL)"
        ),
        "{r}"
    );
    let r = imap_command(&mut c, "e", "GETMETADATA (DEPTH infinity) INBOX /shared");
    assert!(
        r.contains("/shared/vendor/acme/a \"1\" /shared/vendor/acme/a/b ~{3}\r\nx\0y)"),
        "{r}"
    );
    let r = imap_command(
        &mut c,
        "f",
        "GETMETADATA INBOX (MAXSIZE 5) (/private/comment)",
    );
    assert!(r.contains("f OK [METADATA LONGENTRIES 12]"), "{r}");
    assert!(!r.contains("* METADATA"), "{r}");
    let r = imap_command(&mut c, "g", "GETMETADATA \"\" /shared/comment");
    assert!(
        r.contains("* METADATA \"\" (/shared/comment \"server note\")"),
        "{r}"
    );

    // Durable: a kill -9 right after the OK loses nothing.
    srv.kill9();
    srv.start();
    let mut c = imap_login(&srv, ALICE);
    let r = imap_command(&mut c, "h", "GETMETADATA INBOX /private/comment");
    assert!(r.contains("line1\r\nline2"), "{r}");

    imap_command(&mut c, "i1", "CREATE old");
    imap_command(&mut c, "i2", "SETMETADATA old (/private/comment \"moves\")");
    assert!(imap_command(&mut c, "i3", "RENAME old new").contains("i3 OK"));
    let r = imap_command(&mut c, "i4", "GETMETADATA new /private/comment");
    assert!(r.contains("\"moves\""), "{r}");
    imap_command(&mut c, "j1", "DELETE new");
    imap_command(&mut c, "j2", "CREATE new");
    let r = imap_command(&mut c, "j3", "GETMETADATA new /private/comment");
    assert!(r.contains("(/private/comment NIL)"), "{r}");
    let r = imap_command(&mut c, "k", "SETMETADATA INBOX (/private/comment NIL)");
    assert!(r.contains("k OK"), "{r}");
    let r = imap_command(&mut c, "l", "GETMETADATA INBOX /private/comment");
    assert!(r.contains("(/private/comment NIL)"), "{r}");

    let big = "x".repeat(70_000);
    let r = imap_command(
        &mut c,
        "m",
        &format!(
            "SETMETADATA INBOX (/private/big {{{}+}}\r\n{big})",
            big.len()
        ),
    );
    assert!(r.contains("m NO [METADATA MAXSIZE 65536]"), "{r}");
    let many: Vec<String> = (0..101).map(|i| format!("/private/n{i} \"v\"")).collect();
    let r = imap_command(
        &mut c,
        "n",
        &format!("SETMETADATA INBOX ({})", many.join(" ")),
    );
    assert!(r.contains("n NO [METADATA TOOMANY]"), "{r}");
    let r = imap_command(&mut c, "o", "GETMETADATA INBOX /private/n0");
    assert!(r.contains("(/private/n0 NIL)"), "all or none: {r}");
    let r = imap_command(&mut c, "p", "GETMETADATA nowhere /private/comment");
    assert!(r.contains("p NO [NONEXISTENT]"), "{r}");
    for (tag, cmd) in [
        ("q1", "GETMETADATA INBOX /public/x"),
        ("q2", "SETMETADATA INBOX (/shared//x \"v\")"),
        ("q3", "GETMETADATA INBOX (DEPTH 2) /shared/x"),
    ] {
        let r = imap_command(&mut c, tag, cmd);
        assert!(r.contains(&format!("{tag} BAD")), "{r}");
    }
}

/// Extensions: CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 section 4). A search with
/// RETURN (UPDATE) is kept up to date: ADDTO after the EXISTS that brings a message,
/// REMOVEFROM before the EXPUNGE that takes one, positions in sort order for SORT; tags are
/// not reused while updating; CANCELUPDATE stops it; NOUPDATE past the limit.
#[test]
fn search_contexts_follow_the_mailbox() {
    let srv = imap_server(&[ALICE], "", "");
    let mut a = imap_login(&srv, ALICE);
    let r = imap_command(&mut a, "x", "CAPABILITY");
    assert!(
        r.contains(" CONTEXT=SEARCH") && r.contains(" CONTEXT=SORT"),
        "{r}"
    );
    for i in 1..=3 {
        append(&mut a, &format!("b{i}"), "INBOX", &format!("m{i}"));
    }
    imap_command(&mut a, "c", "SELECT INBOX");
    imap_command(&mut a, "d", "STORE 2 +FLAGS.SILENT (\\Flagged)");
    let r = imap_command(&mut a, "u1", "UID SEARCH RETURN (UPDATE COUNT) FLAGGED");
    assert!(r.contains("* ESEARCH (TAG \"u1\") UID COUNT 1\r\n"), "{r}");
    let r = imap_command(&mut a, "s1", "SEARCH RETURN (UPDATE) FLAGGED");
    assert!(r.contains("* ESEARCH (TAG \"s1\")\r\n"), "{r}");
    let r = imap_command(
        &mut a,
        "t1",
        "UID SORT RETURN (UPDATE ALL) (REVERSE SUBJECT) UTF-8 FLAGGED",
    );
    assert!(r.contains("* ESEARCH (TAG \"t1\") UID ALL 2\r\n"), "{r}");
    let r = imap_command(&mut a, "u1", "UID SEARCH RETURN (UPDATE) ALL");
    assert!(r.contains("u1 BAD"), "{r}");

    // Another session flags one and delivers a flagged one.
    let mut b = imap_login(&srv, ALICE);
    imap_command(&mut b, "e1", "SELECT INBOX");
    imap_command(&mut b, "e2", "STORE 3 +FLAGS.SILENT (\\Flagged)");
    let msg = "Subject: m4\r\n\r\nbody\r\n";
    imap_command(
        &mut b,
        "e3",
        &format!("APPEND INBOX (\\Flagged) {{{}+}}\r\n{msg}", msg.len()),
    );
    let r = imap_command(&mut a, "f", "NOOP");
    let exists = r.find("* 4 EXISTS").expect(&r);
    let addto = r
        .find("* ESEARCH (TAG \"u1\") UID ADDTO (0 3:4)")
        .expect(&r);
    assert!(exists < addto, "{r}");
    assert!(r.contains("* ESEARCH (TAG \"s1\") ADDTO (0 3:4)"), "{r}");
    // Reverse subject: m4 first, m3 after it, m2 last.
    assert!(
        r.contains("* ESEARCH (TAG \"t1\") UID ADDTO (1 4,3)"),
        "{r}"
    );

    // An expunge: REMOVEFROM first, numbered as the client still has them.
    imap_command(&mut b, "g1", "UID STORE 2 +FLAGS.SILENT (\\Deleted)");
    imap_command(&mut b, "g2", "EXPUNGE");
    let r = imap_command(&mut a, "h", "NOOP");
    let rm = r
        .find("* ESEARCH (TAG \"u1\") UID REMOVEFROM (0 2)")
        .expect(&r);
    assert!(rm < r.find("* 2 EXPUNGE").expect(&r), "{r}");
    assert!(r.contains("* ESEARCH (TAG \"s1\") REMOVEFROM (0 2)"), "{r}");
    assert!(
        r.contains("* ESEARCH (TAG \"t1\") UID REMOVEFROM (3 2)"),
        "{r}"
    );

    // The session's own change counts too.
    let r = imap_command(&mut a, "i", "STORE 1 +FLAGS (\\Flagged)");
    assert!(r.contains("* ESEARCH (TAG \"u1\") UID ADDTO (0 1)"), "{r}");
    assert!(r.contains("* ESEARCH (TAG \"t1\") UID ADDTO (3 1)"), "{r}");

    let r = imap_command(&mut a, "j", "CANCELUPDATE \"u1\"");
    assert!(r.contains("j OK"), "{r}");
    let r = imap_command(&mut a, "k", "CANCELUPDATE \"nope\"");
    assert!(r.contains("k NO"), "{r}");
    let r = imap_command(&mut a, "l", "STORE 1 -FLAGS (\\Flagged)");
    assert!(!r.contains("TAG \"u1\""), "{r}");
    assert!(r.contains("* ESEARCH (TAG \"s1\") REMOVEFROM (0 1)"), "{r}");
    // A change another session made is not hidden by a new search kept up to date.
    imap_command(&mut b, "l1", "UID STORE 1 +FLAGS.SILENT (\\Flagged)");
    let r = imap_command(&mut a, "l2", "SEARCH RETURN (UPDATE COUNT) ALL");
    assert!(r.contains("* ESEARCH (TAG \"s1\") ADDTO (0 1)"), "{r}");

    // Three are kept; seven more fit, the eighth and ninth are refused but answered.
    let mut refused = 0;
    for n in 0..9 {
        let r = imap_command(&mut a, &format!("n{n}"), "SEARCH RETURN (UPDATE COUNT) ALL");
        assert!(r.contains("COUNT 3"), "{r}");
        refused += r.matches("* NO [NOUPDATE").count();
    }
    assert_eq!(refused, 2);
    // A new SELECT ends them all.
    imap_command(&mut a, "o", "SELECT INBOX");
    imap_command(&mut b, "p", "STORE 1 +FLAGS.SILENT (\\Flagged)");
    let r = imap_command(&mut a, "q", "NOOP");
    assert!(!r.contains("ESEARCH"), "{r}");
}

/// Extensions: NOTIFY (RFC 5465). Another session's changes reach this one as asked:
/// STATUS for other mailboxes (at NOTIFY SET STATUS, then as they change, during IDLE too),
/// FETCH of the asked attributes for new messages in the selected one, LIST for mailboxes
/// created, renamed, deleted or (un)subscribed, METADATA for annotations; a session's own
/// changes are not echoed; unsupported events are NO [BADEVENT], bad pairs BAD.
#[test]
fn notify_reports_changes_across_the_account() {
    let srv = imap_server(&[ALICE], "", "");
    let mut a = imap_login(&srv, ALICE);
    let mut b = imap_login(&srv, ALICE);
    let r = imap_command(&mut a, "x", "CAPABILITY");
    assert!(r.contains(" NOTIFY"), "{r}");
    imap_command(&mut a, "a1", "CREATE Other");
    imap_command(&mut a, "a2", "SELECT INBOX");
    let r = imap_command(
        &mut a,
        "n1",
        "NOTIFY SET STATUS (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS (Subject)]) MessageExpunge FlagChange)) (personal (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange MailboxMetadataChange ServerMetadataChange))",
    );
    assert!(r.contains("* STATUS Other (MESSAGES 0 UIDNEXT 1 "), "{r}");
    assert!(!r.contains("* STATUS INBOX"), "{r}");
    assert!(r.contains("n1 OK"), "{r}");

    append(&mut b, "b1", "Other", "elsewhere");
    let r = imap_command(&mut a, "c", "NOOP");
    assert!(r.contains("* STATUS Other (MESSAGES 1 UIDNEXT 2 "), "{r}");
    append(&mut b, "b2", "INBOX", "arrived");
    let r = imap_command(&mut a, "d", "NOOP");
    let exists = r.find("* 1 EXISTS").expect(&r);
    let fetch = r
        .find("* 1 FETCH (UID 1 BODY[HEADER.FIELDS (Subject)]")
        .expect(&r);
    assert!(exists < fetch && r.contains("Subject: arrived"), "{r}");
    // Its own APPEND is not echoed back as a FETCH.
    let msg = "Subject: mine\r\n\r\nx\r\n";
    let r = imap_command(
        &mut a,
        "e",
        &format!("APPEND INBOX {{{}+}}\r\n{msg}", msg.len()),
    );
    assert!(r.contains("* 2 EXISTS") && !r.contains("FETCH"), "{r}");

    imap_command(&mut b, "f1", "CREATE New");
    let r = imap_command(&mut a, "f2", "NOOP");
    assert!(r.contains("* LIST () \"/\" New\r\n"), "{r}");
    imap_command(&mut b, "f3", "RENAME New Newer");
    let r = imap_command(&mut a, "f4", "NOOP");
    assert!(
        r.contains("* LIST () \"/\" Newer (\"OLDNAME\" (New))"),
        "{r}"
    );
    imap_command(&mut b, "f5", "DELETE Newer");
    let r = imap_command(&mut a, "f6", "NOOP");
    assert!(r.contains("* LIST (\\NonExistent) \"/\" Newer"), "{r}");
    imap_command(&mut b, "g1", "SUBSCRIBE Other");
    let r = imap_command(&mut a, "g2", "NOOP");
    assert!(r.contains("* LIST (\\Subscribed) \"/\" Other"), "{r}");
    imap_command(&mut b, "h1", "SETMETADATA Other (/private/comment \"x\")");
    imap_command(&mut b, "h2", "SETMETADATA \"\" (/shared/comment \"y\")");
    let r = imap_command(&mut a, "h3", "NOOP");
    assert!(r.contains("* METADATA Other /private/comment"), "{r}");
    assert!(r.contains("* METADATA \"\" /shared/comment"), "{r}");
    // Its own CREATE is not echoed; what another session did just before is told.
    append(&mut b, "i0", "Other", "before mine");
    let r = imap_command(&mut a, "i", "CREATE Mine");
    assert!(!r.contains("* LIST"), "{r}");
    assert!(r.contains("* STATUS Other (MESSAGES 2 UIDNEXT 3 "), "{r}");

    // During IDLE, as it happens.
    a.send(b"j IDLE\r\n");
    while !a.line().starts_with('+') {}
    append(&mut b, "k", "Other", "while idle");
    let l = a.line();
    assert!(
        l.starts_with("* STATUS Other (MESSAGES 3 UIDNEXT 4 "),
        "{l}"
    );
    a.send(b"DONE\r\n");
    while !a.line().starts_with("j OK") {}

    let r = imap_command(
        &mut a,
        "l1",
        "NOTIFY SET (personal (MessageNew MessageExpunge AnnotationChange))",
    );
    assert!(r.contains("l1 NO [BADEVENT ("), "{r}");
    let r = imap_command(&mut a, "l2", "NOTIFY SET (personal (MessageNew))");
    assert!(r.contains("l2 BAD"), "{r}");
    let r = imap_command(&mut a, "m1", "NOTIFY NONE");
    assert!(r.contains("m1 OK"), "{r}");
    append(&mut b, "m2", "Other", "unheard");
    let r = imap_command(&mut a, "m3", "NOOP");
    assert!(!r.contains("STATUS"), "{r}");
}
