//! Starting, reloading and stopping the real binary as an operator does: a server either
//! starts whole or not at all, says why, and takes SIGHUP as a reload (issue "Safe to run",
//! items 1-7).

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::*;

const ALICE: &str = "alice@example.org";

/// Item 1: a listener that cannot bind used to log `ERROR cannot listen` and leave the
/// server "serving" without it.
#[test]
fn a_listener_that_cannot_bind_stops_the_start_naming_it() {
    let mut srv = Server::unstarted(&[ALICE], "");
    // Another program holds the SMTP port.
    let taken = TcpListener::bind(("127.0.0.1", srv.smtp)).unwrap();
    let st = srv.start_expecting_exit().expect("the server must not run");
    assert!(!st.success());
    let log = srv.log();
    assert!(
        log.contains(&format!("cannot listen for smtp on 127.0.0.1:{}", srv.smtp)),
        "{log}"
    );
    // Nothing else was served meanwhile.
    assert!(TcpStream::connect(("127.0.0.1", srv.lmtp)).is_err());
    drop(taken);

    // An address that is not this host's.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["serve", "--cores", "1", "--data"])
        .arg(dir.path().join("data"))
        .args(["--smtp", "off", "--submission", "off", "--smtps", "off"])
        .args([
            "--lmtp",
            "off",
            "--imap",
            "192.0.2.1:2143",
            "--imaps",
            "off",
        ])
        .args(["--pop3", "off", "--pop3s", "off", "--metrics", "off"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot listen for imap on 192.0.2.1:2143"),
        "{err}"
    );
}

/// Item 2: SO_REUSEPORT let a second instance with another data directory join the port,
/// and the kernel split the mail between two stores (10 messages went 3/7).
#[test]
fn a_second_instance_cannot_share_a_port() {
    let mut a = Server::new(&[ALICE]);
    let mut b = Server::unstarted(&[ALICE], "");
    b.smtp = a.smtp;
    let st = b
        .start_expecting_exit()
        .expect("the second server must not run");
    assert!(!st.success());
    let log = b.log();
    assert!(
        log.contains("another process also listens on this port"),
        "{log}"
    );
    // All the mail reaches the first.
    a.python(
        r#"
import os, smtplib
for i in range(10):
    s = smtplib.SMTP("127.0.0.1", int(os.environ["SMTP"]))
    s.sendmail("x@remote.example", ["alice@example.org"], b"Subject: n%d\r\n\r\nhi\r\n" % i)
    s.quit()
"#,
    );
    a.stop();
    assert_eq!(inbox(&a.data(), ALICE).len(), 10);
}

/// Item 3: a broken users.toml made the server start with no users and bounce every
/// message with a permanent 550.
#[test]
fn a_broken_users_file_stops_the_start() {
    let mut srv = Server::unstarted(&[ALICE], "");
    std::fs::write(srv.data().join("users.toml"), "[[user]\naddress = ").unwrap();
    let st = srv.start_expecting_exit().expect("the server must not run");
    assert!(!st.success());
    let log = srv.log();
    assert!(log.contains("users.toml"), "{log}");
    assert!(TcpStream::connect(("127.0.0.1", srv.smtp)).is_err());
}

/// Items 5 and 6: a mistyped data path became a new, empty store; greetings said
/// `localhost`.
#[test]
fn a_data_path_with_a_missing_parent_is_refused_and_greetings_name_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("typo").join("data");
    let out = Command::new(bin())
        .args(["serve", "--cores", "1", "--data"])
        .arg(&bad)
        .args(["--smtp", "off", "--submission", "off", "--smtps", "off"])
        .args(["--lmtp", "off", "--imap", "off", "--imaps", "off"])
        .args(["--pop3", "off", "--pop3s", "off", "--metrics", "off"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    assert!(!dir.path().join("typo").exists(), "nothing may be created");

    let srv = Server::new(&[ALICE]);
    let host = ringmail::config::machine_hostname();
    assert_ne!(host, "localhost", "this machine has a host name");
    let mut c = Raw::connect_with(srv.smtp, "220");
    let ehlo = c.cmd("EHLO client.example");
    assert!(ehlo.starts_with(&format!("250-{host} ")), "{ehlo}");
    srv.wait_log(&format!("hostname={host}"));
}

/// Item 7: mail, users.toml and the index were created 0644, readable by every local user.
#[test]
fn mail_users_and_keys_are_private_whatever_the_umask() {
    let mut srv = Server::unstarted(&[ALICE], "");
    srv.pre_exec = Some(|| {
        // SAFETY: umask is async-signal-safe and touches nothing else.
        unsafe { libc::umask(0o022) };
        Ok(())
    });
    // The server makes the data directory; the command writes the users.
    std::fs::remove_dir_all(srv.data()).unwrap();
    srv.start();
    let out = Command::new(bin())
        .args(["user", "add", ALICE, "--password", "secret", "--data"])
        .arg(srv.data())
        .output()
        .unwrap();
    assert!(out.status.success());
    srv.wait_log("users reloaded");
    srv.python(
        r#"
import os, smtplib
s = smtplib.SMTP("127.0.0.1", int(os.environ["SMTP"]))
s.sendmail("x@remote.example", ["alice@example.org"], b"Subject: private\r\n\r\nhi\r\n")
s.quit()
"#,
    );
    let out = Command::new(bin())
        .args([
            "user",
            "add",
            "bob@example.org",
            "--password",
            "pw",
            "--data",
        ])
        .arg(srv.data())
        .output()
        .unwrap();
    assert!(out.status.success());
    srv.stop();
    use std::os::unix::fs::PermissionsExt;
    let mut checked = 0;
    let mut stack = vec![srv.data()];
    while let Some(p) = stack.pop() {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        if p.is_dir() {
            assert_eq!(mode, 0o700, "{p:?}");
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode & 0o077, 0, "{p:?} is {mode:o}");
        }
        checked += 1;
    }
    assert!(checked > 8, "{checked}");
}

/// Item 4: SIGHUP killed the process (exit 129) with no checkpoint. Now it reloads the
/// configuration, the users and the certificate; sessions in flight go on.
#[test]
fn sighup_reloads_configuration_users_and_certificate_keeping_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let make_cert = |name: &str| {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    };
    make_cert("one.example");
    let tls = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let mut srv = Server::unstarted(&[ALICE], &format!("hostname = \"mx1.example\"\n{tls}"));
    srv.start();
    // A session open across the reload.
    let mut imap = Raw::connect_with(srv.imap, "* OK");
    imap.send(b"a1 NOOP\r\n");
    assert!(imap.line().starts_with("a1 OK"));

    // New configuration, a new user, a new certificate.
    std::fs::write(
        srv.dir.path().join("ringmail.toml"),
        format!(
            "{}\n[limits]\nauth_failure_delay_ms = 50\ncommand_timeout_secs = 5\nmax_message_size = 12345\n",
            format_args!("hostname = \"mx2.example\"\n{tls}")
        ),
    )
    .unwrap();
    write_users(
        &srv.data(),
        &[ALICE.to_string(), "carol@example.org".to_string()],
    );
    make_cert("two.example");
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(srv.pid(), libc::SIGHUP) };
    srv.wait_log("configuration reloaded");
    srv.wait_log("TLS certificate reloaded");
    srv.wait_log("users reloaded");
    assert!(
        srv.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "still running"
    );
    let log = srv.log();
    assert!(
        log.contains("limits.max_message_size: 52428800 -> 12345"),
        "{log}"
    );
    assert!(
        log.contains("hostname: \"mx1.example\" -> \"mx2.example\""),
        "{log}"
    );
    assert!(log.contains("carol@example.org"), "{log}");

    // The old session is still there; new ones see the new settings and certificate.
    imap.send(b"a2 NOOP\r\n");
    assert!(imap.line().starts_with("a2 OK"));
    let mut smtp = Raw::connect_with(srv.smtp, "220 mx2.example");
    assert!(smtp.cmd("EHLO c.example").contains("SIZE 12345"));
    let names = srv.python(
        r#"
import os, socket, ssl
ctx = ssl._create_unverified_context()
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(os.environ["IMAPS"]))))
der = s.getpeercert(binary_form=True)
print(b"two.example" in der, b"one.example" in der)
"#,
    );
    assert_eq!(names.trim(), "True False");
    // A broken file is refused whole: nothing changes.
    std::fs::write(srv.dir.path().join("ringmail.toml"), "hostname = ").unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(srv.pid(), libc::SIGHUP) };
    srv.wait_log("reload failed; nothing changed");
    Raw::connect_with(srv.smtp, "220 mx2.example");
    srv.stop();
}

/// Items 8 and 9: `--password` was the only way (visible in `ps`), `--password -` set the
/// password "-", and `carol@@example.org` was accepted.
#[test]
fn user_commands_take_passwords_safely_and_check_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let user = |args: &[&str], stdin: &str| {
        let mut c = Command::new(bin())
            .arg("user")
            .args(args)
            .arg("--data")
            .arg(&data)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    };
    std::fs::create_dir(&data).unwrap();
    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, "from a file\n").unwrap();
    assert!(user(
        &[
            "add",
            "a@example.org",
            "--password-file",
            pwfile.to_str().unwrap()
        ],
        ""
    )
    .status
    .success());
    assert!(user(
        &["add", "b@example.org", "--password-file", "-"],
        "from stdin\n"
    )
    .status
    .success());
    assert!(user(
        &["add", "c@example.org", "--password", "-"],
        "dash means stdin\n"
    )
    .status
    .success());
    // Not a terminal, no flag: the first line of stdin.
    assert!(user(&["add", "d@example.org"], "piped\n").status.success());
    let users = ringmail::users::Users::load(&data).unwrap();
    for (who, pw) in [
        ("a@example.org", "from a file"),
        ("b@example.org", "from stdin"),
        ("c@example.org", "dash means stdin"),
        ("d@example.org", "piped"),
    ] {
        assert!(users.authenticate(who, pw).is_some(), "{who}");
    }
    assert!(users.authenticate("c@example.org", "-").is_none());
    for bad in [
        "carol@@example.org",
        "a,b@example.org",
        &format!("{}@example.org", "x".repeat(300)),
    ] {
        let out = user(&["add", bad, "--password", "pw"], "");
        assert!(!out.status.success(), "{bad} accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("is not a valid address"),
            "{bad}"
        );
    }
    // A prompt on a terminal, asked twice.
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "user", "add", "e@example.org", "--data", sys.argv[2]])
seen = b""
def until(what):
    global seen
    while what not in seen:
        seen += os.read(fd, 100)
until(b"Password:"); os.write(fd, b"typed\n")
until(b"Again:"); os.write(fd, b"typed\n")
_, st = os.waitpid(pid, 0)
print("exit", os.waitstatus_to_exitcode(st))
"#,
        )
        .arg(bin())
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("exit 0"),
        "{out:?}"
    );
    let users = ringmail::users::Users::load(&data).unwrap();
    assert!(users.authenticate("e@example.org", "typed").is_some());
}

/// Item 10: `user del` kept the mail, and adding the address again handed the previous
/// owner's mail to the new user.
#[test]
fn a_deleted_user_s_mail_stays_apart_and_is_purged_on_request() {
    let mut srv = Server::new(&[ALICE]);
    let send = |srv: &Server, n: usize| {
        srv.python(&format!(
            r#"
import os, smtplib
s = smtplib.SMTP("127.0.0.1", int(os.environ["SMTP"]))
for i in range({n}):
    s.sendmail("x@remote.example", ["alice@example.org"], b"Subject: m\r\n\r\nhi\r\n")
s.quit()
"#
        ));
    };
    let count = |srv: &Server| -> String {
        srv.python(
            r#"
import os, poplib, ssl
p = poplib.POP3_SSL("127.0.0.1", int(os.environ["POP3S"]), context=ssl._create_unverified_context())
p.user("alice@example.org"); p.pass_("secret")
print(p.stat()[0]); p.quit()
"#,
        )
        .trim()
        .to_string()
    };
    let data = srv.data();
    let cli = |args: &[&str]| {
        let out = Command::new(bin())
            .arg("user")
            .args(args)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    send(&srv, 3);
    assert_eq!(count(&srv), "3");
    cli(&["del", ALICE]);
    assert!(cli(&["list", "--deleted"])
        .contains("alice@example.org (account alice@example.org, mail kept)"));
    cli(&["add", ALICE, "--password", "secret"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(count(&srv), "0", "the new alice starts empty");
    send(&srv, 1);
    assert_eq!(count(&srv), "1");
    // Purged by the running server.
    cli(&["del", ALICE, "--purge"]);
    srv.wait_log("purged the mail of a deleted user");
    srv.stop();
    assert_eq!(
        inbox(&srv.data(), ALICE).len(),
        3,
        "the first owner's mail is kept"
    );
    assert!(
        inbox(&srv.data(), "alice@example.org#2").is_empty(),
        "purged"
    );
    // Purged by the command itself when no server runs.
    srv.start();
    cli(&["add", ALICE, "--password", "secret"]);
    std::thread::sleep(Duration::from_millis(1500));
    send(&srv, 2);
    srv.stop();
    assert_eq!(inbox(&srv.data(), "alice@example.org#3").len(), 2);
    assert!(cli(&["del", ALICE, "--purge"]).contains("deleted, and its mail"));
    assert!(inbox(&srv.data(), "alice@example.org#3").is_empty());
    assert_eq!(inbox(&srv.data(), ALICE).len(), 3);
    // Mail kept at a deletion can be purged later.
    assert!(cli(&["del", ALICE, "--purge"]).contains("deleted, and its mail"));
    assert!(inbox(&srv.data(), ALICE).is_empty());
    assert!(!cli(&["list", "--deleted"]).contains("mail kept"));
}
