//! A real mail-sync client against the real binary: mbsync (Debian's isync) keeps a local
//! Maildir and the server's INBOX, Archive and a mailbox it creates in step, both ways,
//! over implicit TLS. Python's imaplib seeds and changes the server side and reads it back.
//!
//! mbsync stores messages with LF line ends in the Maildir and sends them with CRLF, and it
//! adds an `X-TUID` header to every message it copies (to find it again after a crash):
//! messages are compared with exactly that taken out, so every other byte must survive.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const ALICE: &str = "alice@example.org";
/// The mailboxes the channel syncs: Projects exists only locally at first.
const BOXES: [&str; 3] = ["INBOX", "Archive", "Projects"];

// Seeded on the server (CRLF).
const M1: &[u8] = b"From: Bob <bob@example.net>\r\nTo: alice@example.org\r\nSubject: one,\r\n folded\r\nMessage-ID: <one@example.net>\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\nfirst message\r\n";
const M2: &[u8] = b"From: carol@example.com\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n.leading dot\r\nFrom the body, not a separator\r\n\r\n\ttabbed line, then an empty one\r\n\r\n";
const M3: &[u8] = b"From: dave@example.com\r\nSubject: three\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\npart one\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgc=\r\n--b1--\r\n";
const A1: &[u8] = b"From: erin@example.com\r\nSubject: archived\r\n\r\nold news\r\n";
/// Appended on the server between the first and second sync.
const S4: &[u8] = b"From: frank@example.com\r\nSubject: four\r\n\r\narrived between syncs\r\n";
// Written into the Maildir (LF, as Maildir stores them).
const L1: &[u8] = b"From: alice@example.org\nTo: bob@example.net\nSubject: written locally\nMessage-ID: <l1@example.org>\n\nkept in the Maildir\n";
const P1: &[u8] = b"From: alice@example.org\nSubject: plan\n\nstep 1\nstep 2\n";

/// Runs `cmd` with stdout and stderr merged, killing it after `secs`: (success, output).
fn run(cmd: &mut Command, what: &str, secs: u64) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out");
    let out = std::fs::File::create(&path).unwrap();
    let err = out.try_clone().unwrap();
    let mut child = match cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{what} must be installed (apt-get install isync python3; .ci/run does): {e}")
        }
        Err(e) => panic!("{what}: {e}"),
    };
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {secs}s:\n{}",
                String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
    (status.success(), text)
}

/// Python prelude: a login helper over implicit TLS (certificate not verified) and `check`.
const PRELUDE: &str = r#"
import os, imaplib, ssl, re, binascii
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def login():
    c = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["IMAPS"]), ssl_context=ctx, timeout=20)
    c.login("alice@example.org", "secret")
    return c
def check(cond, what):
    if not cond:
        raise SystemExit("FAILED: " + what)
"#;

/// Runs an imaplib script against the server (bounded); asserts it succeeded.
fn py(srv: &Server, body: &str) -> String {
    let (ok, out) = run(
        Command::new("python3")
            .arg("-c")
            .arg(format!("{PRELUDE}\n{body}"))
            .env("IMAPS", srv.imaps.to_string()),
        "python3",
        60,
    );
    assert!(ok, "python failed:\n{out}");
    out
}

/// A Python bytes literal holding `b` exactly.
fn pyb(b: &[u8]) -> String {
    let mut s = String::from("b\"");
    for c in b {
        s.push_str(&format!("\\x{c:02x}"));
    }
    s.push('"');
    s
}

/// One message as compared across the sides: maildir flag letters (sorted), the text with
/// LF line ends and without mbsync's X-TUID header, and whether that header was there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Msg {
    flags: String,
    text: String,
    tuid: bool,
}

fn msg(flags: &str, raw: &[u8], tuid: bool) -> Msg {
    let text = String::from_utf8(raw.to_vec())
        .unwrap()
        .replace("\r\n", "\n");
    Msg {
        flags: flags.to_string(),
        text,
        tuid,
    }
}

/// `raw` (CRLF only when `crlf`, else LF only) to LF text with the X-TUID header removed.
fn canon(raw: &[u8], crlf: bool, flags: String) -> Msg {
    let shown = String::from_utf8_lossy(raw);
    let lf = if crlf {
        let mut v = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            match raw[i] {
                b'\r' => {
                    assert_eq!(raw.get(i + 1), Some(&b'\n'), "bare CR in {shown:?}");
                    v.push(b'\n');
                    i += 2;
                }
                b'\n' => panic!("bare LF in {shown:?}"),
                c => {
                    v.push(c);
                    i += 1;
                }
            }
        }
        v
    } else {
        assert!(!raw.contains(&b'\r'), "CR in a Maildir file: {shown:?}");
        raw.to_vec()
    };
    let header_end = lf
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or_else(|| panic!("no header/body separator in {shown:?}"))
        + 1;
    let mut out = Vec::with_capacity(lf.len());
    let mut tuid = false;
    for line in lf[..header_end].split_inclusive(|&c| c == b'\n') {
        if line.starts_with(b"X-TUID: ") {
            assert!(!tuid, "two X-TUID headers in {shown:?}");
            assert_eq!(line.len(), 8 + 12 + 1, "X-TUID header in {shown:?}");
            tuid = true;
        } else {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(&lf[header_end..]);
    Msg {
        flags,
        text: String::from_utf8(out).unwrap(),
        tuid,
    }
}

/// IMAP system flags as maildir letters (sorted); anything else is kept visible.
fn letters(imap_flags: &str) -> String {
    let mut v: Vec<String> = imap_flags
        .split(',')
        .filter(|f| !f.is_empty() && *f != "-" && *f != "\\Recent")
        .map(|f| match f {
            "\\Draft" => "D".to_string(),
            "\\Flagged" => "F".to_string(),
            "\\Answered" => "R".to_string(),
            "\\Seen" => "S".to_string(),
            "\\Deleted" => "T".to_string(),
            other => format!("[{other}]"),
        })
        .collect();
    v.sort();
    v.concat()
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ServerBox {
    uidvalidity: String,
    uidnext: String,
    highestmodseq: String,
    /// By UID.
    msgs: Vec<(u32, Msg)>,
}

/// Every synced mailbox on the server (missing ones left out), read with EXAMINE and
/// UID FETCH BODY.PEEK[] so reading changes nothing.
fn server_state(srv: &Server) -> BTreeMap<String, ServerBox> {
    let out = py(
        srv,
        &format!(
            r#"
c = login()
for box in {BOXES:?}:
    typ, data = c.select(box, readonly=True)
    if typ != "OK":
        print("MISSING", box)
        continue
    code = lambda k: (c.response(k)[1][0] or b"none").decode()
    print("BOX", box, code("UIDVALIDITY"), code("UIDNEXT"), code("HIGHESTMODSEQ"))
    typ, data = c.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
    check(typ == "OK", "fetch %r" % data)
    for item in data:
        if isinstance(item, tuple):
            uid = re.search(rb"UID (\d+)", item[0]).group(1).decode()
            flags = re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode().split()
            print("MSG", box, uid, ",".join(flags) or "-", binascii.hexlify(item[1]).decode())
c.logout()
"#
        ),
    );
    let mut m = BTreeMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f[0] {
            "BOX" => {
                m.insert(
                    f[1].to_string(),
                    ServerBox {
                        uidvalidity: f[2].into(),
                        uidnext: f[3].into(),
                        highestmodseq: f[4].into(),
                        msgs: Vec::new(),
                    },
                );
            }
            "MSG" => {
                let raw: Vec<u8> = (0..f[4].len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&f[4][i..i + 2], 16).unwrap())
                    .collect();
                let b = m.get_mut(f[1]).unwrap();
                b.msgs
                    .push((f[2].parse().unwrap(), canon(&raw, true, letters(f[3]))));
            }
            "MISSING" => {}
            _ => panic!("unexpected line {line:?} in\n{out}"),
        }
    }
    m
}

/// The server's messages in one mailbox as (UID, message).
fn server_box(state: &BTreeMap<String, ServerBox>, name: &str) -> Vec<(u32, Msg)> {
    state
        .get(name)
        .unwrap_or_else(|| panic!("no {name} on the server: {state:#?}"))
        .msgs
        .clone()
}

/// The Maildir path of a synced mailbox.
fn local_dir(mail: &Path, name: &str) -> PathBuf {
    mail.join(name)
}

/// The messages of one local mailbox (cur/ and new/), sorted, and their paths.
fn local_box(mail: &Path, name: &str) -> Vec<(Msg, PathBuf)> {
    let mut v = Vec::new();
    for sub in ["cur", "new"] {
        let dir = local_dir(mail, name).join(sub);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            let file = p.file_name().unwrap().to_str().unwrap().to_string();
            let flags = match file.split_once(":2,") {
                Some((_, f)) => f.to_string(),
                None => String::new(),
            };
            let mut sorted: Vec<char> = flags.chars().collect();
            sorted.sort();
            v.push((
                canon(
                    &std::fs::read(&p).unwrap(),
                    false,
                    sorted.into_iter().collect(),
                ),
                p,
            ));
        }
    }
    v.sort();
    v
}

fn local_msgs(mail: &Path, name: &str) -> Vec<Msg> {
    local_box(mail, name).into_iter().map(|(m, _)| m).collect()
}

/// The local file holding the message whose text is `raw`'s.
fn local_file(mail: &Path, name: &str, raw: &[u8]) -> PathBuf {
    let want = msg("", raw, false).text;
    let hits: Vec<PathBuf> = local_box(mail, name)
        .into_iter()
        .filter(|(m, _)| m.text == want)
        .map(|(_, p)| p)
        .collect();
    assert_eq!(hits.len(), 1, "{hits:?}");
    hits.into_iter().next().unwrap()
}

/// Every file under `dir` (messages and mbsync's state) with its content.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                m.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    m
}

fn sorted(mut v: Vec<Msg>) -> Vec<Msg> {
    v.sort();
    v
}

/// mbsync's major and minor version (`isync 1.4.4`).
fn mbsync_version(home: &Path) -> (u32, u32) {
    let (ok, out) = run(
        Command::new("mbsync").arg("--version").env("HOME", home),
        "mbsync",
        30,
    );
    assert!(ok, "mbsync --version: {out}");
    let v = out
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("mbsync --version: {out:?}"));
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

/// One `mbsync -a` with protocol and sync tracing; asserts success and a clean log.
fn mbsync(home: &Path, rc: &Path, step: &str) -> String {
    let (ok, out) = run(
        Command::new("mbsync")
            .arg("-Dns")
            .arg("-c")
            .arg(rc)
            .arg("-a")
            .current_dir(home)
            .env("HOME", home),
        "mbsync",
        120,
    );
    assert!(ok, "mbsync failed ({step}):\n{out}");
    for line in out.lines() {
        let l = line.to_ascii_lowercase();
        // Server responses are echoed as they are: only mbsync's own lines are judged.
        let transcript = line.starts_with("* ")
            || line.starts_with(">>> ")
            || line.starts_with("+ ")
            || line.starts_with(">+>")
            || line
                .split(' ')
                .next()
                .is_some_and(|t| t.parse::<u32>().is_ok());
        assert!(
            transcript || !(l.contains("error") || l.contains("warning")),
            "mbsync complained ({step}): {line}\n{out}"
        );
    }
    out
}

/// The commands mbsync sent (tags dropped).
fn commands(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.strip_prefix(">>> "))
        .map(|l| l.split_once(' ').map_or(l, |(_, c)| c).to_string())
        .collect()
}

#[test]
fn mbsync_syncs_a_maildir_both_ways() {
    let srv = Server::new(&[ALICE]);
    let home = srv.dir.path().join("home");
    let mail = home.join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    let (major, minor) = mbsync_version(&home);
    // isync 1.5 renamed SSLType to TLSType.
    let tls_type = if (major, minor) >= (1, 5) {
        "TLSType"
    } else {
        "SSLType"
    };
    let rc = home.join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount ringmail\nHost 127.0.0.1\nPort {port}\nUser {ALICE}\nPass secret\n\
             {tls_type} IMAPS\nCertificateFile {cert}\nSystemCertificates no\n\n\
             IMAPStore remote\nAccount ringmail\n\n\
             MaildirStore local\nPath {mail}/\nInbox {mail}/INBOX\nSubFolders Verbatim\n\n\
             Channel sync\nFar :remote:\nNear :local:\nPatterns {boxes}\n\
             Create Both\nExpunge Both\nSyncState *\n",
            port = srv.imaps,
            cert = srv.data().join("tls/cert.pem").display(),
            mail = mail.display(),
            boxes = BOXES.join(" "),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    // (1) Seed the server.
    let out = py(
        &srv,
        &format!(
            r#"
c = login()
for box, flags, m in [("INBOX", None, {m1}), ("INBOX", r"(\Flagged \Seen)", {m2}),
                      ("INBOX", r"(\Answered)", {m3}), ("Archive", r"(\Seen)", {a1})]:
    typ, data = c.append(box, flags, None, m)
    check(typ == "OK", "append %r" % data)
c.logout()
print("seeded")
"#,
            m1 = pyb(M1),
            m2 = pyb(M2),
            m3 = pyb(M3),
            a1 = pyb(A1),
        ),
    );
    assert!(out.contains("seeded"), "{out}");
    let before = server_state(&srv);
    assert_eq!(
        server_box(&before, "INBOX"),
        vec![
            (1, msg("", M1, false)),
            (2, msg("FS", M2, false)),
            (3, msg("R", M3, false)),
        ]
    );
    assert_eq!(
        server_box(&before, "Archive"),
        vec![(1, msg("S", A1, false))]
    );
    assert!(!before.contains_key("Projects"), "{before:#?}");

    // (2)-(3) First sync: the server's mailboxes appear locally, flags included.
    let log1 = mbsync(&home, &rc, "first sync");
    let ctx1 = format!("mbsync output:\n{log1}");
    assert_eq!(
        local_msgs(&mail, "INBOX"),
        sorted(vec![
            msg("", M1, true),
            msg("FS", M2, true),
            msg("R", M3, true),
        ]),
        "{ctx1}"
    );
    assert_eq!(
        local_msgs(&mail, "Archive"),
        vec![msg("S", A1, true)],
        "{ctx1}"
    );
    assert!(!local_dir(&mail, "Projects").exists(), "{ctx1}");
    let after1 = server_state(&srv);
    assert_eq!(after1, before, "the first sync changed the server\n{ctx1}");

    // (4) Changes on both sides. Locally: a new message (flagged), \Seen on M1, and a new
    // mailbox with a seen message. On the server: \Flagged on M3 and a new message.
    std::fs::write(
        local_dir(&mail, "INBOX").join("new/1700000000.R1.ringmail-test:2,F"),
        L1,
    )
    .unwrap();
    let m1 = local_file(&mail, "INBOX", M1);
    let base = m1.file_name().unwrap().to_str().unwrap();
    let base = base.split_once(":2,").map_or(base, |(b, _)| b);
    std::fs::rename(
        &m1,
        local_dir(&mail, "INBOX").join(format!("cur/{base}:2,S")),
    )
    .unwrap();
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(local_dir(&mail, "Projects").join(sub)).unwrap();
    }
    std::fs::write(
        local_dir(&mail, "Projects").join("cur/1700000001.R2.ringmail-test:2,S"),
        P1,
    )
    .unwrap();
    let out = py(
        &srv,
        &format!(
            r#"
c = login()
c.select("INBOX")
typ, data = c.uid("STORE", "3", "+FLAGS", r"(\Flagged)")
check(typ == "OK", "store %r" % data)
typ, data = c.append("INBOX", None, None, {s4})
check(typ == "OK", "append %r" % data)
c.logout()
print("changed")
"#,
            s4 = pyb(S4),
        ),
    );
    assert!(out.contains("changed"), "{out}");

    // (5)-(6) Second sync: each side gets the other's changes.
    let log2 = mbsync(&home, &rc, "second sync");
    let ctx2 = format!("mbsync output:\n{log2}");
    let after2 = server_state(&srv);
    assert_eq!(
        server_box(&after2, "INBOX"),
        vec![
            (1, msg("S", M1, false)),
            (2, msg("FS", M2, false)),
            (3, msg("FR", M3, false)),
            (4, msg("", S4, false)),
            (5, msg("F", L1, true)),
        ],
        "{ctx2}"
    );
    assert_eq!(
        server_box(&after2, "Archive"),
        vec![(1, msg("S", A1, false))],
        "{ctx2}"
    );
    assert_eq!(
        server_box(&after2, "Projects"),
        vec![(1, msg("S", P1, true))],
        "the mailbox created locally is created on the server\n{ctx2}"
    );
    for b in ["INBOX", "Archive"] {
        assert_eq!(
            after2[b].uidvalidity, before[b].uidvalidity,
            "{b}: UIDVALIDITY"
        );
    }
    assert_eq!(
        local_msgs(&mail, "INBOX"),
        sorted(vec![
            msg("S", M1, true),
            msg("FS", M2, true),
            msg("FR", M3, true),
            msg("", S4, true),
            msg("F", L1, false),
        ]),
        "{ctx2}"
    );
    assert_eq!(
        local_msgs(&mail, "Archive"),
        vec![msg("S", A1, true)],
        "{ctx2}"
    );
    assert_eq!(
        local_msgs(&mail, "Projects"),
        vec![msg("S", P1, false)],
        "{ctx2}"
    );

    // (7) Deletions. On the server: M2 expunged, and S4 flagged \Deleted but left in
    // place (Expunge Both expunges it). Locally: M3's file removed, and P1 marked trashed.
    let out = py(
        &srv,
        r#"
c = login()
c.select("INBOX")
typ, data = c.uid("STORE", "2", "+FLAGS", r"(\Deleted)")
check(typ == "OK", "store %r" % data)
typ, data = c.expunge()
check(typ == "OK" and data == [b"2"], "expunge %r" % data)
typ, data = c.uid("STORE", "4", "+FLAGS", r"(\Deleted)")
check(typ == "OK", "store %r" % data)
c.logout()
print("deleted")
"#,
    );
    assert!(out.contains("deleted"), "{out}");
    std::fs::remove_file(local_file(&mail, "INBOX", M3)).unwrap();
    let p1 = local_file(&mail, "Projects", P1);
    let p1_name = p1.file_name().unwrap().to_str().unwrap().to_string();
    assert!(p1_name.ends_with(":2,S"), "{p1_name}");
    std::fs::rename(&p1, p1.with_file_name(format!("{p1_name}T"))).unwrap();

    let log3 = mbsync(&home, &rc, "third sync");
    let ctx3 = format!("mbsync output:\n{log3}");
    let after3 = server_state(&srv);
    assert_eq!(
        server_box(&after3, "INBOX"),
        vec![(1, msg("S", M1, false)), (5, msg("F", L1, true))],
        "{ctx3}"
    );
    assert_eq!(
        server_box(&after3, "Archive"),
        vec![(1, msg("S", A1, false))],
        "{ctx3}"
    );
    assert_eq!(server_box(&after3, "Projects"), vec![], "{ctx3}");
    assert_eq!(
        local_msgs(&mail, "INBOX"),
        sorted(vec![msg("S", M1, true), msg("F", L1, false)]),
        "{ctx3}"
    );
    assert_eq!(
        local_msgs(&mail, "Archive"),
        vec![msg("S", A1, true)],
        "{ctx3}"
    );
    assert_eq!(local_msgs(&mail, "Projects"), vec![], "{ctx3}");

    // (8) A fourth sync has nothing to do: it only reads, and neither side changes (the
    // server's UIDNEXT and HIGHESTMODSEQ included, and every local file and state file).
    let files = tree(&mail);
    let log4 = mbsync(&home, &rc, "fourth sync");
    let ctx4 = format!("mbsync output:\n{log4}");
    for c in commands(&log4) {
        let read_only = [
            "AUTHENTICATE ",
            "LOGIN ",
            "CAPABILITY",
            "COMPRESS ",
            "NAMESPACE",
            "LIST ",
        ]
        .iter()
        .any(|p| c.starts_with(p))
            || c.starts_with("SELECT ")
            || (c.starts_with("UID FETCH ") && c.ends_with(" (UID FLAGS)"))
            || c == "CLOSE"
            || c == "LOGOUT";
        assert!(read_only, "the fourth sync sent {c:?}\n{ctx4}");
    }
    // Every change mbsync makes is journaled ("-> log:"), and per message it announces
    // what it propagates.
    for line in log4.lines() {
        let t = line.trim_start();
        let change = t.starts_with("-> log:")
            || t.starts_with("new message ")
            || t.starts_with("pushing ")
            || t.starts_with("pulling ");
        assert!(!change, "the fourth sync did {line:?}\n{ctx4}");
    }
    assert_eq!(server_state(&srv), after3, "{ctx4}");
    assert_eq!(tree(&mail), files, "the local side changed\n{ctx4}");
}
