//! The real `ringmail` binary on loopback: Python's smtplib as the client, plus raw sockets
//! for what smtplib will not send (BDAT, garbage, cut connections).

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";

#[test]
fn smtplib_plain_starttls_auth_smtps_and_lmtp() {
    let mut srv = Server::new(&[ALICE, BOB]);
    let out = srv.python(
        r#"
import os, smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
P = lambda k: int(os.environ[k])
# Inbound, plain: two local recipients, one unknown (refused at RCPT), one remote (relay).
s = smtplib.SMTP("127.0.0.1", P("SMTP"))
refused = s.sendmail("someone@remote.example", ["alice@example.org", "nobody@example.org", "bob@example.org"], b"Subject: one\r\n\r\nfirst message\r\n")
print("refused", sorted(refused))
try:
    s.sendmail("someone@remote.example", ["x@elsewhere.example"], b"x")
except smtplib.SMTPRecipientsRefused as e:
    print("relay", e.recipients["x@elsewhere.example"][0])
s.quit()
# Inbound with STARTTLS; AUTH is not offered on port 25.
s = smtplib.SMTP("127.0.0.1", P("SMTP")); s.starttls(context=ctx); s.ehlo()
print("auth-on-25", s.has_extn("auth"))
s.sendmail("someone@remote.example", ["alice@example.org"], b"Subject: two\r\n\r\nover TLS\r\n"); s.quit()
# Submission: no AUTH before TLS; after STARTTLS, AUTH PLAIN; then LOGIN with a bad password.
s = smtplib.SMTP("127.0.0.1", P("SUBMISSION")); s.ehlo()
print("auth-before-tls", s.has_extn("auth"))
s.starttls(context=ctx); s.login("alice@example.org", "secret")
s.sendmail("alice@example.org", ["bob@example.org"], b"Subject: three\r\n\r\nsubmitted\r\n")
try:
    s.sendmail("bob@example.org", ["alice@example.org"], b"x")
except smtplib.SMTPSenderRefused as e:
    print("spoof", e.smtp_code)
try:
    s.sendmail("alice@example.org", ["friend@elsewhere.example"], b"x")
except smtplib.SMTPRecipientsRefused as e:
    print("outbound", e.recipients["friend@elsewhere.example"][0])
s.quit()
s = smtplib.SMTP("127.0.0.1", P("SUBMISSION")); s.starttls(context=ctx)
s.ehlo(); s.esmtp_features["auth"] = "LOGIN"
try:
    s.login("alice@example.org", "wrong")
except smtplib.SMTPAuthenticationError as e:
    print("badauth", e.smtp_code)
s.quit()
# Implicit TLS (465), AUTH LOGIN.
s = smtplib.SMTP_SSL("127.0.0.1", P("SMTPS"), context=ctx); s.ehlo(); s.esmtp_features["auth"] = "LOGIN"
s.login("bob@example.org", "secret")
s.sendmail("bob@example.org", ["alice@example.org"], b"Subject: four\r\n\r\nsmtps\r\n"); s.quit()
# LMTP: one reply per recipient.
l = smtplib.LMTP("127.0.0.1", P("LMTP"))
refused = l.sendmail("someone@remote.example", ["alice@example.org", "ghost@example.org", "bob@example.org"], b"Subject: five\r\n\r\nlmtp\r\n")
print("lmtp-refused", sorted(refused))
l.quit()
"#,
    );
    assert!(out.contains("refused ['nobody@example.org']"), "{out}");
    assert!(out.contains("relay 550"), "{out}");
    assert!(out.contains("auth-on-25 False"), "{out}");
    assert!(out.contains("auth-before-tls False"), "{out}");
    assert!(out.contains("spoof 553"), "{out}");
    assert!(out.contains("outbound 550"), "{out}");
    assert!(out.contains("badauth 535"), "{out}");
    assert!(out.contains("lmtp-refused ['ghost@example.org']"), "{out}");
    srv.stop();
    let a = inbox(&srv.data(), ALICE);
    let b = inbox(&srv.data(), BOB);
    let subjects = |v: &Vec<Vec<u8>>| -> Vec<String> {
        v.iter()
            .map(|m| {
                String::from_utf8_lossy(m)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    assert_eq!(
        subjects(&a),
        vec![
            "Subject: one",
            "Subject: two",
            "Subject: four",
            "Subject: five"
        ]
    );
    assert_eq!(
        subjects(&b),
        vec!["Subject: one", "Subject: three", "Subject: five"]
    );
    assert_eq!(a[0], b"Subject: one\r\n\r\nfirst message\r\n");
}

#[test]
fn pipelining_bdat_and_8bit_bodies_are_stored_byte_identical() {
    let mut srv = Server::new(&[ALICE]);
    let mut c = Raw::connect(srv.smtp);
    assert!(c.cmd("EHLO client.example").contains("250-CHUNKING"));
    // Pipelined: all commands in one write, replies in order.
    c.send(
        b"MAIL FROM:<a@remote.example> BODY=8BITMIME\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n",
    );
    assert!(c.reply().starts_with("250"));
    assert!(c.reply().starts_with("250"));
    assert!(c.reply().starts_with("354"));
    c.send("Subject: caf\u{e9}\r\n\r\n..dot line\r\n\u{fc}ber 8-bit\r\n.\r\n".as_bytes());
    assert!(c.reply().starts_with("250 2.0.0 stored"));
    // BDAT with a binary body in two chunks: every octet but NUL is stored as sent.
    let body: Vec<u8> = (1..=255u8).cycle().take(70_000).collect();
    c.send(b"MAIL FROM:<a@remote.example> BODY=BINARYMIME\r\nRCPT TO:<alice@example.org>\r\n");
    assert!(c.reply().starts_with("250"));
    assert!(c.reply().starts_with("250"));
    c.send(format!("BDAT {}\r\n", 30_000).as_bytes());
    c.send(&body[..30_000]);
    assert!(c.reply().starts_with("250 2.0.0 30000 octets"));
    c.send(format!("BDAT {} LAST\r\n", 40_000).as_bytes());
    c.send(&body[30_000..]);
    assert!(c.reply().starts_with("250 2.0.0 stored"));
    // A binary part with NUL octets is stored base64-encoded (an IMAP literal cannot carry
    // NUL), and decodes to exactly what was sent.
    let binary: Vec<u8> = (0..=255u8).cycle().take(5_000).collect();
    let mut with_nul =
        b"Subject: nul\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            .to_vec();
    with_nul.extend_from_slice(&binary);
    c.send(b"MAIL FROM:<a@remote.example> BODY=BINARYMIME\r\nRCPT TO:<alice@example.org>\r\n");
    assert!(c.reply().starts_with("250"));
    assert!(c.reply().starts_with("250"));
    c.send(format!("BDAT {} LAST\r\n", with_nul.len()).as_bytes());
    c.send(&with_nul);
    assert!(c.reply().starts_with("250 2.0.0 stored"));
    // A smuggling attempt: bare-LF "ends of data" are text, so the hidden transaction is
    // part of one message, and only the real end (CRLF . CRLF) ends it.
    c.send(b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    assert!(c.reply().starts_with("250"));
    assert!(c.reply().starts_with("250"));
    assert!(c.reply().starts_with("354"));
    let smuggled: &[u8] =
        b"Subject: one\r\n\r\nhi\n.\nMAIL FROM:<x@y>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSubject: two\r\n\n.\r\nend\r\n";
    c.send(smuggled);
    c.send(b".\r\n");
    assert!(c.reply().starts_with("250 2.0.0 stored"));
    assert!(c.cmd("QUIT").starts_with("221"));
    srv.stop();
    let a = inbox(&srv.data(), ALICE);
    assert_eq!(a.len(), 4, "one message per transaction");
    assert_eq!(a[3], smuggled);
    let stored = &a[2];
    assert!(!stored.contains(&0));
    let text = String::from_utf8(stored.clone()).unwrap();
    let (head, b64) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("Content-Transfer-Encoding: base64"), "{head}");
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.replace("\r\n", ""))
        .unwrap();
    assert_eq!(decoded, binary);
    assert_eq!(
        a[0],
        "Subject: caf\u{e9}\r\n\r\n.dot line\r\n\u{fc}ber 8-bit\r\n".as_bytes()
    );
    assert_eq!(a[1], body);
    // Delivery parsed each message once and stored its structure beside it.
    let with_meta = inbox_with_meta(&srv.data(), ALICE);
    let (stored, meta) = &with_meta[0];
    assert_eq!(meta.envelope.subject.as_deref(), Some("caf\u{e9}"));
    assert_eq!(meta.root.content_type, "text/plain");
    let r = &meta.root;
    assert_eq!(
        &stored[r.body_start as usize..r.end as usize],
        ".dot line\r\n\u{fc}ber 8-bit\r\n".as_bytes()
    );
}

#[test]
fn bad_input_gets_replies_and_the_server_keeps_serving() {
    let mut srv = Server::new(&[ALICE]);
    // Garbage, NUL bytes, unknown commands, commands out of order.
    let mut c = Raw::connect(srv.smtp);
    assert!(c.cmd("\u{1}\u{2}garbage").starts_with("501"));
    c.send(b"HELO a\x00b\r\n");
    assert!(c.reply().starts_with("501"));
    assert!(c.cmd("FROBNICATE").starts_with("500"));
    assert!(c.cmd("RCPT TO:<alice@example.org>").starts_with("503"));
    assert!(c.cmd("DATA").starts_with("503"));
    assert!(c.cmd("EHLO x").starts_with("250"));
    assert!(c
        .cmd("MAIL FROM:<a@b.example> SIZE=999999999999")
        .starts_with("552"));
    // An overlong line: refused, and the session continues.
    let long = format!("NOOP {}", "x".repeat(100_000));
    assert!(c.cmd(&long).starts_with("500 5.5.2"));
    assert!(c.cmd("NOOP").starts_with("250"));
    // AUTH on port 25 and bad base64 on submission.
    assert!(c.cmd("AUTH PLAIN AAAA").starts_with("502"));
    let mut s = Raw::connect(srv.submission);
    assert!(s.cmd("EHLO x").starts_with("250"));
    assert!(
        s.cmd("AUTH PLAIN AAAA").starts_with("530"),
        "AUTH without TLS must be refused"
    );
    // A DATA stream cut mid-way: nothing is stored.
    let mut d = Raw::connect(srv.smtp);
    d.cmd("EHLO x");
    d.cmd("MAIL FROM:<a@b.example>");
    d.cmd("RCPT TO:<alice@example.org>");
    assert!(d.cmd("DATA").starts_with("354"));
    d.send(b"Subject: never\r\n\r\nhalf a message");
    drop(d);
    // A client that goes silent is timed out (5 s in the test config) with 421.
    let mut t = Raw::connect(srv.smtp);
    t.s.get_ref()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert!(t.reply().starts_with("421"));
    // Meanwhile everyone else is served.
    let out = srv.python(
        "import os, smtplib\ns = smtplib.SMTP('127.0.0.1', int(os.environ['SMTP']))\ns.sendmail('a@b.example', ['alice@example.org'], b'Subject: ok\\r\\n\\r\\nfine\\r\\n')\ns.quit()\nprint('sent')",
    );
    assert!(out.contains("sent"));
    srv.stop();
    let a = inbox(&srv.data(), ALICE);
    assert_eq!(a.len(), 1, "only the complete message is stored");
    assert_eq!(a[0], b"Subject: ok\r\n\r\nfine\r\n");
}

#[test]
fn one_message_to_a_thousand_recipients_across_shards_is_stored_once_per_partition() {
    let users: Vec<String> = (0..1000).map(|i| format!("u{i}@example.org")).collect();
    let refs: Vec<&str> = users.iter().map(|s| s.as_str()).collect();
    let mut srv = Server::new(&refs);
    let mut c = Raw::connect(srv.lmtp);
    c.cmd("LHLO x");
    c.cmd("MAIL FROM:<list@remote.example>");
    let mut rcpts = String::new();
    for u in &users {
        rcpts.push_str(&format!("RCPT TO:<{u}>\r\n"));
    }
    c.send(rcpts.as_bytes());
    for _ in &users {
        assert!(c.reply().starts_with("250"));
    }
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: to all\r\n\r\nhello everyone\r\n.\r\n");
    for _ in &users {
        assert!(c.reply().starts_with("250 2.0.0 stored"));
    }
    c.cmd("QUIT");
    srv.stop();
    let node = ringmail_engine::Node::start(ringmail_engine::NodeConfig {
        shards: 2,
        ..ringmail_engine::NodeConfig::new(srv.data())
    })
    .unwrap();
    let stats = futures_lite::future::block_on(node.handle().stats());
    let blobs: usize = stats.iter().map(|s| s.as_ref().unwrap().blobs).sum();
    let messages: u64 = stats.iter().map(|s| s.as_ref().unwrap().messages).sum();
    assert_eq!(messages, 1000);
    assert_eq!(blobs, stats.len(), "one stored copy per partition");
    assert!(stats.len() >= 2);
    node.shutdown().unwrap();
}

#[test]
fn kill_9_during_deliveries_loses_nothing_acknowledged() {
    let mut srv = Server::new(&[ALICE]);
    let port = srv.smtp;
    // A client thread delivers as fast as it can and records each acknowledged message.
    let (tx, rx) = std::sync::mpsc::channel::<u32>();
    // It stops at the kill; why it stopped is in the failure message if that came first.
    let client = std::thread::spawn(move || -> String {
        for conn in 0..1000 {
            let s = match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => s,
                Err(e) => return format!("connection {conn}: {e}"),
            };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut c = Raw {
                s: std::io::BufReader::new(s),
            };
            let greeting = c.reply();
            if !greeting.starts_with("220") {
                return format!("connection {conn}: greeting {greeting:?}");
            }
            let ehlo = c.cmd("EHLO x");
            if !ehlo.starts_with("250") {
                return format!("connection {conn}: EHLO {ehlo:?}");
            }
            for k in 0..20u32 {
                let n = conn * 100 + k;
                for (cmd, want) in [
                    ("MAIL FROM:<a@b.example>", "250"),
                    ("RCPT TO:<alice@example.org>", "250"),
                    ("DATA", "354"),
                ] {
                    let r = c.cmd(cmd);
                    if !r.starts_with(want) {
                        return format!("message {n}: {cmd} got {r:?}");
                    }
                }
                let _ = c.s.get_mut().write_all(
                    format!(
                        "Subject: m{n}\r\n\r\n{}\r\n.\r\n",
                        "body ".repeat(n as usize % 500)
                    )
                    .as_bytes(),
                );
                let r = c.reply();
                if !r.starts_with("250") {
                    return format!("message {n}: end of data got {r:?}");
                }
                let _ = tx.send(n);
            }
            c.cmd("QUIT");
        }
        "all sent".into()
    });
    let mut acked = Vec::new();
    while acked.len() < 300 {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(n) => acked.push(n),
            Err(_) => break,
        }
    }
    srv.kill9();
    let stopped = client.join().unwrap();
    acked.extend(rx.try_iter());
    assert!(
        acked.len() >= 300,
        "only {} deliveries before the kill; the client stopped: {stopped}",
        acked.len()
    );
    srv.start();
    srv.stop();
    let stored = inbox(&srv.data(), ALICE);
    let stored: std::collections::HashSet<Vec<u8>> = stored.into_iter().collect();
    for n in acked {
        let want = format!(
            "Subject: m{n}\r\n\r\n{}\r\n",
            "body ".repeat(n as usize % 500)
        )
        .into_bytes();
        assert!(stored.contains(&want), "acknowledged message {n} was lost");
    }
}

/// SCRAM-SHA-256 from a client written from RFC 5802 in Python (smtplib has no SCRAM).
#[test]
fn scram_sha_256_over_starttls() {
    let srv = Server::new(&[ALICE]);
    let out = srv.python(
        r#"
import os, smtplib, ssl, base64, hashlib, hmac
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def scram(password):
    s = smtplib.SMTP("127.0.0.1", int(os.environ["SUBMISSION"])); s.starttls(context=ctx); s.ehlo()
    assert "SCRAM-SHA-256" in s.esmtp_features["auth"], s.esmtp_features
    bare = "n=alice@example.org,r=pyclientnonce"
    code, resp = s.docmd("AUTH", "SCRAM-SHA-256 " + base64.b64encode(("n,," + bare).encode()).decode())
    assert code == 334, (code, resp)
    sf = base64.b64decode(resp).decode()
    a = dict(kv.split("=", 1) for kv in sf.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(a["s"]), int(a["i"]))
    ck = hmac.new(salted, b"Client Key", "sha256").digest()
    sk = hashlib.sha256(ck).digest()
    wp = "c=" + base64.b64encode(b"n,,").decode() + ",r=" + a["r"]
    auth = (bare + "," + sf + "," + wp).encode()
    proof = bytes(x ^ y for x, y in zip(ck, hmac.new(sk, auth, "sha256").digest()))
    code, resp = s.docmd(base64.b64encode((wp + ",p=" + base64.b64encode(proof).decode()).encode()).decode())
    if code == 334:
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        expect = base64.b64encode(hmac.new(server_key, auth, "sha256").digest()).decode()
        assert base64.b64decode(resp).decode() == "v=" + expect, "server signature"
        code, resp = s.docmd("")
    s.quit()
    return code
print("good", scram("secret"))
print("bad", scram("wrong"))
"#,
    );
    assert!(out.contains("good 235"), "{out}");
    assert!(out.contains("bad 535"), "{out}");
}

/// `ringmail fsck` reads back every stored message; it notices a damaged one.
#[test]
fn fsck_checks_every_stored_message() {
    let mut srv = Server::new(&[ALICE]);
    srv.python(
        "import os, smtplib, base64\ns = smtplib.SMTP('127.0.0.1', int(os.environ['SMTP']))\nfor i in range(20):\n    body = base64.encodebytes(os.urandom(3000)).decode().replace('\\n', '\\r\\n')\n    s.sendmail('a@b.example', ['alice@example.org'], ('Subject: %d\\r\\n\\r\\n' % i + body).encode())\ns.quit()",
    );
    srv.stop();
    let fsck = || {
        std::process::Command::new(bin())
            .args(["fsck", "--data"])
            .arg(srv.data())
            .output()
            .unwrap()
    };
    let ok = fsck();
    let text = String::from_utf8_lossy(&ok.stdout).to_string();
    assert!(ok.status.success() && text.contains("clean"), "{text}");
    assert!(
        text.contains("20 messages") || text.matches("messages").count() >= 2,
        "{text}"
    );
    // Damage the body of a stored message: fsck must say so and fail.
    let mut damaged = false;
    for part in std::fs::read_dir(srv.data()).unwrap() {
        let part = part.unwrap().path();
        if !part.is_dir() || !part.file_name().unwrap().to_string_lossy().starts_with('p') {
            continue;
        }
        for f in std::fs::read_dir(&part).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_none_or(|e| e != "log") || damaged {
                continue;
            }
            let mut b = std::fs::read(&f).unwrap();
            // Records end where the zeros the writer writes ahead begin.
            let end = b.iter().rposition(|&x| x != 0).unwrap_or(0);
            if end > 8192 {
                // Inside a message record's body (records start at 64; the first ones
                // create the account, so go well past them).
                let at = end / 2;
                b[at] ^= 0xff;
                std::fs::write(&f, &b).unwrap();
                damaged = true;
            }
        }
    }
    assert!(damaged, "no segment to damage");
    let bad = fsck();
    let text = String::from_utf8_lossy(&bad.stdout).to_string();
    assert!(!bad.status.success(), "fsck missed the damage: {text}");
}

/// The sum over partitions of one metric, read from the metrics endpoint.
fn metric(port: u16, name: &str) -> u64 {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn bodies_stored_raw_in_a_burst_are_compressed_once_it_ends() {
    let mut srv = Server::new(&[ALICE]);
    let bodies: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            format!(
                "Subject: note {i}\r\n\r\n{}",
                format!("line {i} of a message that compresses well\r\n").repeat(100)
            )
            .into_bytes()
        })
        .collect();
    let mut c = Raw::connect(srv.smtp);
    assert!(c.cmd("EHLO client.example").starts_with("250"));
    for b in &bodies {
        c.send(b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
        assert!(c.reply().starts_with("250"));
        assert!(c.reply().starts_with("250"));
        assert!(c.reply().starts_with("354"));
        c.send(b);
        c.send(b"\r\n.\r\n");
        assert!(c.reply().starts_with("250 2.0.0 stored"));
    }
    // Acknowledged raw; compressed in the background once deliveries pause for 50 ms.
    let backlog = metric(srv.metrics, "ringmail_deferred_compression_bytes");
    assert!(backlog > 0, "nothing was deferred");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metric(srv.metrics, "ringmail_deferred_compression_bytes") > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the backlog never drained"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(c.cmd("QUIT").starts_with("221"));
    srv.stop();
    let stored = inbox(&srv.data(), ALICE);
    let want: Vec<Vec<u8>> = bodies
        .iter()
        .map(|b| [b.as_slice(), b"\r\n"].concat())
        .collect();
    assert_eq!(stored, want);
    // The compressed copies are what a restart finds: nothing looks raw any more.
    srv.start();
    assert_eq!(
        metric(srv.metrics, "ringmail_deferred_compression_bytes"),
        0
    );
    srv.stop();
}

/// The README's run command: `ringmail serve` with no flags and no config file serves from
/// `./ringmail-data` on the default loopback ports, with a certificate it makes itself,
/// and its log, written to a file, is plain text (no terminal colour codes).
#[test]
fn plain_serve_runs_on_the_embedded_defaults_with_a_plain_text_log() {
    let cwd = tempfile::tempdir().unwrap();
    let log = cwd.path().join("serve.log");
    // Killed if an assertion fails first: it holds the default ports.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut guard = KillOnDrop(
        std::process::Command::new(bin())
            .arg("serve")
            .current_dir(cwd.path())
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let child = &mut guard.0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("ringmail is serving")
    {
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "serve exited with {st}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let greeting = |port: u16| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 4];
        std::io::Read::read_exact(&mut s, &mut b).unwrap();
        b
    };
    assert_eq!(&greeting(2525), b"220 ", "SMTP on 2525");
    assert_eq!(&greeting(2143), b"* OK", "IMAP on 2143");
    assert!(cwd.path().join("ringmail-data").is_dir());
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert!(st.success(), "serve exited with {st}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("listening"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file: {text:?}"
    );
}
