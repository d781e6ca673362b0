//! POP3 against the real binary: Python's poplib for whole sessions, raw sockets for bad
//! input, and the store checked after the server stops.

mod common;

use common::*;

const ALICE: &str = "alice@example.org";

/// Delivers `n` messages to alice over LMTP.
fn deliver(srv: &Server, n: usize) {
    srv.python(&format!(
        r#"
import os, smtplib
l = smtplib.LMTP("127.0.0.1", int(os.environ["LMTP"]))
for i in range({n}):
    l.sendmail("a@remote.example", ["alice@example.org"], ("Subject: m%d\r\n\r\n.dotted line\r\nbody %d\r\n" % (i, i)).encode())
l.quit()
"#
    ));
}

#[test]
fn poplib_sessions_retrieve_top_delete_rset_and_commit_at_quit() {
    let mut srv = Server::new(&[ALICE]);
    deliver(&srv, 5);
    let out = srv.python(
        r#"
import os, poplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
P = lambda k: int(os.environ[k])
p = poplib.POP3("127.0.0.1", P("POP3"))
caps = p.capa()
print("stls-offered", "STLS" in caps, "user-before-tls", "USER" in caps)
try:
    p.user("alice@example.org")
except poplib.error_proto as e:
    print("plain-refused", e)
p.stls(context=ctx)
p.user("alice@example.org"); p.pass_("secret")
count, size = p.stat(); print("stat", count)
uidls = [u.split()[1].decode() for u in p.uidl()[1]]; print("uidl", uidls)
resp, lines, octets = p.retr(2); print("retr2", lines)
resp, lines, octets = p.top(3, 0); print("top3", lines)
p.dele(1); p.dele(2); p.rset(); p.dele(4)
# A second session of the same account is refused while this one holds the maildrop.
q = poplib.POP3_SSL("127.0.0.1", P("POP3S"), context=ctx)
q.user("alice@example.org")
try:
    q.pass_("secret")
except poplib.error_proto as e:
    print("second", e)
q.quit()
print("quit", p.quit())
# A session that drops after DELE commits nothing. (poplib reads through a file made from
# the socket: the connection closes only once both are closed. Before, it stayed open and the
# test passed only once the server's 5 s command timeout ended the session.)
d = poplib.POP3_SSL("127.0.0.1", P("POP3S"), context=ctx)
d.user("alice@example.org"); d.pass_("secret"); d.dele(1); d.file.close(); d.sock.close()
# The next session sees 4 messages with the same UIDLs as before, minus message 4's. The
# server notices the dropped connection and releases its lock a moment later.
import time
for attempt in range(100):
    n = poplib.POP3_SSL("127.0.0.1", P("POP3S"), context=ctx)
    n.user("alice@example.org")
    try:
        n.pass_("secret")
        break
    except poplib.error_proto as e:
        assert b"IN-USE" in str(e).encode(), e
        n.quit(); time.sleep(0.05)
print("after", n.stat()[0], [u.split()[1].decode() for u in n.uidl()[1]])
n.quit()
"#,
    );
    assert!(
        out.contains("stls-offered True user-before-tls False"),
        "{out}"
    );
    assert!(out.contains("plain-refused b'-ERR [AUTH]"), "{out}");
    assert!(out.contains("stat 5"), "{out}");
    assert!(out.contains("retr2 [b'Return-Path: <"), "{out}");
    assert!(
        out.contains("b'Subject: m1', b'', b'.dotted line', b'body 1']"),
        "dot-unstuffed by poplib: {out}"
    );
    assert!(
        out.contains("top3 [b'Return-Path: <") && out.contains("b'Subject: m2', b'']"),
        "{out}"
    );
    assert!(out.contains("second b'-ERR [IN-USE]"), "{out}");
    assert!(
        out.contains(&format!(
            "quit b'+OK {} signing off (1 messages deleted)'",
            ringmail::config::machine_hostname()
        )),
        "{out}"
    );
    let uidl_line = out
        .lines()
        .find(|l| l.starts_with("uidl "))
        .unwrap()
        .to_string();
    let after_line = out
        .lines()
        .find(|l| l.starts_with("after "))
        .unwrap()
        .to_string();
    assert!(after_line.starts_with("after 4 "), "{out}");
    let before: Vec<String> = uidl_line
        .trim_start_matches("uidl ")
        .trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .map(|s| s.trim_matches('\'').to_string())
        .collect();
    let mut expect = before.clone();
    expect.remove(3);
    let after: Vec<String> = after_line[8..]
        .trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .map(|s| s.trim_matches('\'').to_string())
        .collect();
    assert_eq!(
        after, expect,
        "UIDLs are stable and the deleted one is gone"
    );
    // The deletion is in the store, and UIDLs survive a restart.
    srv.stop();
    assert_eq!(inbox(&srv.data(), ALICE).len(), 4);
    srv.start();
    let out = srv.python(
        r#"
import os, poplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
n = poplib.POP3_SSL("127.0.0.1", int(os.environ["POP3S"]), context=ctx)
n.user("alice@example.org"); n.pass_("secret")
print("restart", [u.split()[1].decode() for u in n.uidl()[1]])
n.quit()
"#,
    );
    assert!(
        out.contains(&format!("restart {}", &after_line[8..])),
        "{out}\n{after_line}"
    );
}

#[test]
fn bad_input_gets_err_replies() {
    let srv = Server::new(&[ALICE]);
    deliver(&srv, 1);
    let mut c = Raw::connect_with(srv.pop3, "+OK");
    // Raw::reply reads one line: POP3 replies to these are single lines.
    assert!(c.cmd("FOO").starts_with("-ERR unknown command"));
    assert!(c.cmd("STAT").starts_with("-ERR command not valid"));
    assert!(c.cmd("PASS x").starts_with("-ERR USER first"));
    assert!(c
        .cmd(&format!("USER {}", "x".repeat(10_000)))
        .starts_with("-ERR line too long"));
    assert!(c.cmd("RETR").starts_with("-ERR"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    // Wrong passwords (over implicit TLS, with SASL PLAIN via Python) are refused with [AUTH].
    let out = srv.python(
        r#"
import os, poplib, ssl, base64
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
p = poplib.POP3_SSL("127.0.0.1", int(os.environ["POP3S"]), context=ctx)
p.user("alice@example.org")
try:
    p.pass_("wrong")
except poplib.error_proto as e:
    print("bad", e)
r = p._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0alice@example.org\0secret").decode())
print("sasl", r)
print("range", end=" ")
try:
    p.retr(7)
except poplib.error_proto as e:
    print(e)
p.quit()
"#,
    );
    assert!(
        out.contains("bad b'-ERR [AUTH] invalid credentials'"),
        "{out}"
    );
    assert!(out.contains("sasl b'+OK maildrop has 1 messages"), "{out}");
    assert!(out.contains("range b'-ERR no such message'"), "{out}");
}

/// fetchmail (Debian's) fetches the mailbox over POP3S and deletes what it fetched.
#[test]
fn fetchmail_fetches_the_mailbox() {
    let mut srv = Server::new(&[ALICE]);
    deliver(&srv, 3);
    let dir = srv.dir.path().to_path_buf();
    let out = dir.join("fetched");
    let rc = dir.join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "set no bouncemail\npoll 127.0.0.1 service {} protocol pop3 timeout 20\n  user \"alice@example.org\" password \"secret\" ssl no sslcertck\n  mda \"/bin/sh -c 'cat >> {}; echo =====END===== >> {}'\"\n  fetchall\n",
            srv.pop3s,
            out.display(),
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let run = std::process::Command::new("fetchmail")
        .args(["--nodetach", "--nosyslog", "-f"])
        .arg(&rc)
        .env("HOME", &dir)
        .output()
        .expect("fetchmail must be installed (apt-get install fetchmail; .ci/run does)");
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        run.status.success(),
        "fetchmail failed: {}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(text.matches("=====END=====").count(), 3, "{text}");
    for i in 0..3 {
        assert!(text.contains(&format!("Subject: m{i}")), "{text}");
        assert!(text.contains(&format!("body {i}")), "{text}");
    }
    srv.stop();
    assert!(
        inbox(&srv.data(), ALICE).is_empty(),
        "fetched messages are deleted"
    );
}

/// Accounts on every core: each session is handed to the core that owns its account, with
/// its TLS state (STLS and implicit TLS), and pipelined commands sent right after PASS.
#[test]
fn sessions_move_to_the_owning_core_with_their_tls_state() {
    let users = [
        "u1@example.org",
        "u2@example.org",
        "u3@example.org",
        "u4@example.org",
        "u5@example.org",
        "u6@example.org",
    ];
    let srv = Server::new(&users);
    let out = srv.python(
        r#"
import os, poplib, smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
users = ["u%d@example.org" % i for i in range(1, 7)]
l = smtplib.LMTP("127.0.0.1", int(os.environ["LMTP"]))
for u in users:
    l.sendmail("a@remote.example", [u], ("Subject: for %s\r\n\r\nhello %s\r\n" % (u, u)).encode())
l.quit()
for i, u in enumerate(users):
    if i % 2:
        p = poplib.POP3_SSL("127.0.0.1", int(os.environ["POP3S"]), context=ctx)
    else:
        p = poplib.POP3("127.0.0.1", int(os.environ["POP3"])); p.stls(context=ctx)
    p.user(u)
    # PASS and STAT in one write: STAT arrives before the session moves.
    p.sock.sendall(b"PASS secret\r\nSTAT\r\n")
    assert p._getresp().startswith(b"+OK"), u
    assert p._getresp().startswith(b"+OK 1 "), u
    body = b"\n".join(p.retr(1)[1])
    assert b"hello " + u.encode() in body, (u, body)
    p.quit()
print("ok")
"#,
    );
    assert!(out.contains("ok"), "{out}");
}

/// POP3 and IMAP see one store: deletions committed at QUIT reach an IMAP session that has
/// INBOX selected, and UIDL names the same messages as IMAP's UIDs.
#[test]
fn imap_sees_pop3_deletions_and_shares_its_uids() {
    let srv = Server::new(&[ALICE]);
    deliver(&srv, 4);
    let out = srv.python(
        r#"
import os, poplib, imaplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["IMAPS"]), ssl_context=ctx)
m.login("alice@example.org", "secret")
m.select("INBOX")
uv = int(m.untagged_responses["UIDVALIDITY"][0])
typ, data = m.uid("SEARCH", None, "ALL")
imap_uids = data[0].split()
p = poplib.POP3_SSL("127.0.0.1", int(os.environ["POP3S"]), context=ctx)
p.user("alice@example.org"); p.pass_("secret")
uidls = [u.split()[1] for u in p.uidl()[1]]
assert uidls == [b"%d.%s" % (uv, u) for u in imap_uids], (uidls, uv, imap_uids)
p.dele(1); p.dele(3)
# Not yet: deletions wait for QUIT.
m.noop()
assert "EXPUNGE" not in m.untagged_responses, m.untagged_responses
p.quit()
m.noop()
assert m.untagged_responses.get("EXPUNGE") == [b"1", b"2"], m.untagged_responses
typ, data = m.uid("SEARCH", None, "ALL")
assert data[0].split() == [imap_uids[1], imap_uids[3]], data
m.logout()
print("ok")
"#,
    );
    assert!(out.contains("ok"), "{out}");
}

/// With debug logging on, a server that had read mail aborted at shutdown ("thread local
/// panicked on drop"): the shard's server lived in a thread-local until the thread exited,
/// and dropping it there closed segment files, whose log lines reached a logger that was
/// already gone.
#[test]
fn shutdown_with_debug_logging_after_reads_is_clean() {
    let mut srv = Server::new(&[ALICE]);
    srv.stop();
    srv.log_filter = "debug".into();
    srv.start();
    deliver(&srv, 2);
    srv.python(
        r#"
import os, poplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
for _ in range(4):
    p = poplib.POP3_SSL("127.0.0.1", int(os.environ["POP3S"]), context=ctx)
    p.user("alice@example.org"); p.pass_("secret"); p.retr(1); p.retr(2); p.quit()
"#,
    );
    // `stop` asserts a clean exit.
    srv.stop();
}
