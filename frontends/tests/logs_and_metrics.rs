//! What an operator reads: one log line per connection, login, delivery and rejection
//! (text or JSON), delivery ids unique across restarts, a fail2ban filter that works on the
//! real log, and the metrics endpoint's probes and help (issue "Safe to run", items 21-23).

mod common;

use std::process::Command;

use common::*;

const ALICE: &str = "alice@example.org";

const TRAFFIC: &str = r#"
import imaplib, os, smtplib, ssl
s = smtplib.SMTP("127.0.0.1", int(os.environ["SMTP"]))
s.sendmail("bob@remote.example", ["alice@example.org"], b"Subject: logged\r\n\r\nhi\r\n")
try:
    s.sendmail("bob@remote.example", ["someone@elsewhere.example"], b"x")
except smtplib.SMTPRecipientsRefused:
    pass
s.quit()
ctx = ssl._create_unverified_context()
c = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["IMAPS"]), ssl_context=ctx)
c.login("alice@example.org", "secret"); c.logout()
for i in range(3):
    c = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["IMAPS"]), ssl_context=ctx)
    try:
        c.login("alice@example.org", "wrong%d" % i)
    except imaplib.IMAP4.error:
        pass
    c.logout()
"#;

/// Item 21: there was no log line for a connection, a delivery, a rejection or a failed
/// login, and the id in `Received`/`250` restarted at 1 on every restart.
#[test]
fn connections_logins_deliveries_and_rejections_are_logged_with_lasting_ids() {
    let mut srv = Server::new(&[ALICE]);
    srv.python(TRAFFIC);
    srv.stop();
    let log = srv.log();
    let has = |parts: &[&str]| log.lines().any(|l| parts.iter().all(|p| l.contains(p)));
    assert!(
        has(&["connection", "listener=\"smtp\"", "remote=127.0.0.1:"]),
        "{log}"
    );
    assert!(
        has(&["connection", "listener=\"imaps\"", "tls=true"]),
        "{log}"
    );
    assert!(
        has(&[
            "delivery",
            "from=\"bob@remote.example\"",
            "rcpts=[\"alice@example.org\"]",
            "delivered=1"
        ]),
        "{log}"
    );
    assert!(
        has(&["recipient refused", "reason=\"relay_denied\""]),
        "{log}"
    );
    assert!(
        has(&[
            "INFO ringmail::login: login ",
            "protocol=\"imap\"",
            "remote=127.0.0.1",
            "user=\"alice@example.org\""
        ]),
        "{log}"
    );
    assert_eq!(log.matches("login failed").count(), 3, "{log}");
    // No credentials in the log.
    assert!(!log.contains("secret") && !log.contains("wrong1"), "{log}");

    // The id in the log is the one in the Received header, and a restart does not reuse it.
    srv.start();
    srv.python(TRAFFIC);
    srv.stop();
    let log = srv.log();
    let ids: Vec<String> = log
        .lines()
        .filter(|l| l.contains(" delivery ") || l.contains("ringmail::delivery: delivery"))
        .filter_map(|l| l.split(" id=").nth(1))
        .map(|s| s.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{log}");
    assert_ne!(ids[0], ids[1]);
    assert_ne!(ids[0][..10], ids[1][..10], "each run has its own prefix");
    let stored = inbox_headers(&srv.data());
    for id in &ids {
        assert!(
            stored.iter().any(|h| h.contains(&format!(" id {id}"))),
            "{id}: {stored:?}"
        );
    }
}

/// The Received headers of alice's messages.
fn inbox_headers(data: &std::path::Path) -> Vec<String> {
    let node = ringmail_engine::Node::start(ringmail_engine::NodeConfig {
        shards: 2,
        ..ringmail_engine::NodeConfig::new(data)
    })
    .unwrap();
    let out = futures_lite::future::block_on(node.handle().on_account(ALICE, |p| async move {
        let mut v = Vec::new();
        for m in p.messages(
            ALICE,
            "INBOX",
            ringmail_engine::Uid(1),
            ringmail_engine::Uid(u32::MAX),
        )? {
            let b = p.fetch(ALICE, "INBOX", m.uid).await?;
            v.push(String::from_utf8_lossy(&b[..b.len().min(300)]).to_string());
        }
        Ok(v)
    }))
    .unwrap();
    node.shutdown().unwrap();
    out
}

/// Item 21: JSON lines are an option, and the shipped fail2ban filter finds the failed
/// logins in both formats, checked with fail2ban's own `fail2ban-regex`.
#[test]
fn json_logs_and_the_fail2ban_filter_work_on_real_logs() {
    let filter = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/fail2ban/filter.d/ringmail.conf"
    );
    assert!(std::path::Path::new(filter).exists(), "{filter}");
    for format in ["text", "json"] {
        let mut srv = Server::with_config(&[ALICE], &format!("[log]\nformat = \"{format}\"\n"));
        srv.python(TRAFFIC);
        srv.stop();
        let log = srv.log();
        if format == "json" {
            let out = Command::new("python3")
                .arg("-c")
                .arg("import json,sys\nfor l in sys.stdin:\n  d = json.loads(l)\n  assert 'timestamp' in d and 'level' in d, d\nprint('ok')")
                .stdin(std::fs::File::open(srv.dir.path().join("server.log")).unwrap())
                .output()
                .unwrap();
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("ok"),
                "not JSON lines: {out:?}\n{log}"
            );
        }
        let out = Command::new("fail2ban-regex")
            .arg(srv.dir.path().join("server.log"))
            .arg(filter)
            .output()
            .expect("fail2ban-regex (Debian's fail2ban) must be installed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("Failregex: 3 total"),
            "{format}: fail2ban-regex found other than the 3 failed logins:\n{text}\n{log}"
        );
    }
}

/// Item 22: /healthz, /readyz, `# HELP` for every metric, open connections per listener,
/// rejections by reason, TLS handshake failures, auth failures by protocol.
#[test]
fn probes_help_and_the_counters_an_operator_needs() {
    let srv = Server::new(&[ALICE]);
    assert_eq!(srv.http_get("/healthz").0, "HTTP/1.0 200 OK");
    assert_eq!(srv.http_get("/readyz").0, "HTTP/1.0 200 OK");
    srv.python(TRAFFIC);
    // A failed TLS handshake: plain text to the implicit-TLS port.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", srv.imaps)).unwrap();
        s.write_all(b"a1 CAPABILITY\r\n\r\n").unwrap();
        let mut b = [0u8; 64];
        let _ = s.read(&mut b);
    }
    let _open = Raw::connect_with(srv.imap, "* OK");
    let (_, body) = srv.http_get("/metrics");
    let mut named = std::collections::BTreeSet::new();
    for l in body.lines().filter(|l| !l.starts_with('#')) {
        let name = l.split(['{', ' ']).next().unwrap();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        named.insert(base.to_string());
    }
    for n in &named {
        assert!(body.contains(&format!("# HELP {n} ")), "no HELP for {n}");
        assert!(body.contains(&format!("# TYPE {n} ")), "no TYPE for {n}");
    }
    assert_eq!(
        srv.metric("ringmail_connections_open", "listener=\"imap\""),
        1.0
    );
    assert!(srv.metric("ringmail_rejections_total", "reason=\"relay_denied\"") >= 1.0);
    assert!(srv.metric("ringmail_auth_failures_total", "protocol=\"imap\"") >= 3.0);
    assert!(
        srv.metric(
            "ringmail_tls_handshake_failures_total",
            "listener=\"imaps\""
        ) >= 1.0
    );
    assert_eq!(srv.http_get("/nothing").0, "HTTP/1.0 404 Not Found");
}

/// Item 23: a client sending an IP address as SNI (Python does) made rustls log a WARN per
/// connection.
#[test]
fn an_ip_address_as_sni_is_not_logged() {
    let mut srv = Server::new(&[ALICE]);
    srv.python(
        r#"
import os, socket, ssl
ctx = ssl._create_unverified_context()
for i in range(3):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(os.environ["IMAPS"]))), server_hostname="127.0.0.1")
    s.recv(100); s.close()
"#,
    );
    srv.stop();
    let log = srv.log();
    let warns: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains(" WARN ")
                && !l.contains("locked-memory")
                && !l.contains("data directory is open")
        })
        .collect();
    assert!(warns.is_empty(), "{warns:?}");
}
