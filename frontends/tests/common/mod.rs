//! Starts the real `ringmail` binary on free loopback ports with a temporary data directory.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub smtp: u16,
    pub submission: u16,
    pub smtps: u16,
    pub lmtp: u16,
    pub metrics: u16,
    pub pop3: u16,
    pub pop3s: u16,
    pub imap: u16,
    pub imaps: u16,
    /// Appended to the test configuration.
    pub extra_config: String,
    /// `RUST_LOG` for the server (unset when empty).
    pub log_filter: String,
    /// Run before the server starts, in its process (limits, umask).
    pub pre_exec: Option<fn() -> std::io::Result<()>>,
    /// More environment for the server process.
    pub env: Vec<(String, String)>,
}

/// A port nothing listens on now, at random from 10000-19999, and not handed out before in
/// this test process (one server's listeners must differ).
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    // From 10000-19999, below the kernel's ephemeral range (32768-60999 by default): a
    // client connection of any test can then never be given one as its local port, which
    // would stop a killed server from listening there again when the test restarts it.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let seed = std::collections::hash_map::RandomState::new();
    let mut n = 0u64;
    loop {
        n += 1;
        let mut h = seed.build_hasher();
        h.write_u64(n);
        let p = 10_000 + (h.finish() % 10_000) as u16;
        let mut given = GIVEN.lock().unwrap();
        if given.contains(&p) || TcpListener::bind(("127.0.0.1", p)).is_err() {
            continue;
        }
        given.push(p);
        return p;
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringmail")
}

/// Writes `users.toml` directly (one argon2 hash shared by all: hashing per user would
/// dominate the test's time). Every password is "secret".
pub fn write_users(data: &Path, users: &[String]) {
    std::fs::create_dir_all(data).unwrap();
    let hash = ringmail::users::hash_password("secret").unwrap();
    let scram = ringmail::users::scram_keys("secret");
    let mut s = String::new();
    for u in users {
        s.push_str(&format!(
            "[[user]]\naddress = \"{u}\"\npassword = \"{hash}\"\nscram = \"{scram}\"\n\n"
        ));
    }
    std::fs::write(data.join("users.toml"), s).unwrap();
}

impl Server {
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn new(users: &[&str]) -> Server {
        Self::with_config(users, "")
    }

    /// A server whose configuration file also holds `extra` (TOML).
    pub fn with_config(users: &[&str], extra: &str) -> Server {
        let mut s = Self::unstarted(users, extra);
        s.start();
        s
    }

    /// A server not started yet: set its fields, then `start` (or `start_expecting_exit`).
    pub fn unstarted(users: &[&str], extra: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let users: Vec<String> = users.iter().map(|s| s.to_string()).collect();
        write_users(&dir.path().join("data"), &users);
        Server {
            dir,
            child: None,
            smtp: free_port(),
            submission: free_port(),
            smtps: free_port(),
            lmtp: free_port(),
            metrics: free_port(),
            pop3: free_port(),
            pop3s: free_port(),
            imap: free_port(),
            imaps: free_port(),
            extra_config: extra.to_string(),
            log_filter: String::new(),
            pre_exec: None,
            env: Vec::new(),
        }
    }

    /// Everything the server logged (stderr), over all its starts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Waits up to 15 s for `what` to appear in the server's log.
    pub fn wait_log(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.log().contains(what) {
            assert!(
                Instant::now() < deadline,
                "no {what:?} in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET path` on the metrics listener: (status line, body).
    pub fn http_get(&self, path: &str) -> (String, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.metrics)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (
            head.lines().next().unwrap_or("").to_string(),
            body.to_string(),
        )
    }

    /// A metric's value (the sum over its label sets that contain `labels`).
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        let (_, body) = self.http_get("/metrics");
        body.lines()
            .filter(|l| {
                !l.starts_with('#')
                    && (l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
                    && l.contains(labels)
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    pub fn start(&mut self) {
        let mut child = self.spawn();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.lmtp)) {
                let mut b = [0u8; 3];
                if s.read_exact(&mut b).is_ok() && &b == b"220" {
                    self.child = Some(child);
                    return;
                }
            }
            if let Some(st) = child.try_wait().unwrap() {
                panic!("the server exited with {st}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
        panic!("the server did not start:\n{}", self.log());
    }

    /// Starts the server and waits for it to exit on its own (a start that must fail):
    /// its exit status, or `None` if it was still running after 30 s (then it is killed).
    pub fn start_expecting_exit(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.spawn();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(st) = child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// The command line `start` runs.
    pub fn command(&self) -> Command {
        let config = self.dir.path().join("ringmail.toml");
        // The tests' own limits, merged into a [limits] table of `extra` if it has one.
        let limits = "[limits]\nauth_failure_delay_ms = 50\ncommand_timeout_secs = 5\n";
        let text = if self.extra_config.contains("[limits]\n") {
            self.extra_config.replacen("[limits]\n", limits, 1)
        } else {
            format!("{}\n{limits}", self.extra_config)
        };
        std::fs::write(&config, text).unwrap();
        let a = |p: u16| format!("127.0.0.1:{p}");
        let mut cmd = Command::new(bin());
        if !self.log_filter.is_empty() {
            cmd.env("RUST_LOG", &self.log_filter);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(f) = self.pre_exec {
            use std::os::unix::process::CommandExt;
            // SAFETY: the hook only calls async-signal-safe libc functions (setrlimit, umask).
            unsafe { cmd.pre_exec(f) };
        }
        cmd.args(["serve", "--config"])
            .arg(&config)
            .arg("--data")
            .arg(self.data())
            .args([
                "--cores",
                "2",
                "--smtp",
                &a(self.smtp),
                "--submission",
                &a(self.submission),
                "--smtps",
                &a(self.smtps),
            ])
            .args(["--lmtp", &a(self.lmtp), "--metrics", &a(self.metrics)])
            .args([
                "--imap",
                &a(self.imap),
                "--imaps",
                &a(self.imaps),
                "--pop3",
                &a(self.pop3),
                "--pop3s",
                &a(self.pop3s),
            ]);
        cmd
    }

    fn spawn(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        self.command()
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(st) = c.try_wait().unwrap() {
                    assert!(st.success(), "server exited with {st}");
                    return;
                }
                assert!(Instant::now() < deadline, "server did not stop");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Runs a Python script (stdlib only) with PORTS in its environment; asserts success.
    pub fn python(&self, script: &str) -> String {
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .env("SMTP", self.smtp.to_string())
            .env("SUBMISSION", self.submission.to_string())
            .env("SMTPS", self.smtps.to_string())
            .env("LMTP", self.lmtp.to_string())
            .env("POP3", self.pop3.to_string())
            .env("POP3S", self.pop3s.to_string())
            .env("IMAP", self.imap.to_string())
            .env("IMAPS", self.imaps.to_string())
            .output()
            .expect("python3");
        let so = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "python failed:\n{so}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        so
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A line-oriented raw client for bad-input tests.
pub struct Raw {
    pub s: BufReader<TcpStream>,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        Self::connect_with(port, "220")
    }

    /// Connects and expects a greeting starting with `greeting`.
    pub fn connect_with(port: u16, greeting: &str) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = Raw {
            s: BufReader::new(s),
        };
        assert!(r.reply().starts_with(greeting));
        r
    }
    pub fn send(&mut self, b: &[u8]) {
        self.s.get_mut().write_all(b).unwrap();
    }
    /// One whole (possibly multi-line) reply.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.s.read_line(&mut line).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }
    pub fn cmd(&mut self, c: &str) -> String {
        self.send(format!("{c}\r\n").as_bytes());
        self.reply()
    }
    /// One line.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        let _ = self.s.read_line(&mut line);
        line
    }
    /// True once the server closed the connection.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0))
    }
}

/// Opens the data directory with the engine (the server must be stopped) and returns the
/// bodies in the account's INBOX, without the Received header the server added.
pub fn inbox(data: &Path, account: &str) -> Vec<Vec<u8>> {
    inbox_raw(data, account)
        .into_iter()
        .map(|b| strip_received(&b).to_vec())
        .collect()
}

/// The account's INBOX as stored, Received header included (empty if it has none).
pub fn inbox_raw(data: &Path, account: &str) -> Vec<Vec<u8>> {
    let node = ringmail_engine::Node::start(ringmail_engine::NodeConfig {
        shards: 2,
        ..ringmail_engine::NodeConfig::new(data)
    })
    .unwrap();
    let a = account.to_string();
    let bodies =
        futures_lite::future::block_on(node.handle().on_account(account, move |p| async move {
            let mut v = Vec::new();
            if !p.has_account(&a) {
                return Ok(v);
            }
            for m in p.messages(
                &a,
                "INBOX",
                ringmail_engine::Uid(1),
                ringmail_engine::Uid(u32::MAX),
            )? {
                v.push(p.fetch(&a, "INBOX", m.uid).await?.to_vec());
            }
            Ok(v)
        }))
        .unwrap();
    node.shutdown().unwrap();
    bodies
}

/// The stored messages and the metadata parsed at delivery, by UID order.
pub fn inbox_with_meta(data: &Path, account: &str) -> Vec<(Vec<u8>, ringmail::mime::MessageMeta)> {
    let node = ringmail_engine::Node::start(ringmail_engine::NodeConfig {
        shards: 2,
        ..ringmail_engine::NodeConfig::new(data)
    })
    .unwrap();
    let a = account.to_string();
    let out =
        futures_lite::future::block_on(node.handle().on_account(account, move |p| async move {
            let mut v = Vec::new();
            for m in p.messages(
                &a,
                "INBOX",
                ringmail_engine::Uid(1),
                ringmail_engine::Uid(u32::MAX),
            )? {
                let body = p.fetch(&a, "INBOX", m.uid).await?.to_vec();
                let meta = p.fetch_meta(&a, "INBOX", m.uid).await?;
                v.push((body, meta));
            }
            Ok(v)
        }))
        .unwrap();
    node.shutdown().unwrap();
    out.into_iter()
        .map(|(b, m)| (b, ringmail::mime::MessageMeta::decode(&m).unwrap()))
        .collect()
}

/// The message as the client sent it: without the `Return-Path:` and `Received:` headers
/// the server put on top.
pub fn strip_received(b: &[u8]) -> &[u8] {
    assert!(
        b.starts_with(b"Return-Path: <"),
        "no Return-Path header: {:?}",
        String::from_utf8_lossy(&b[..b.len().min(80)])
    );
    let b = &b[memchr_crlf(b).unwrap() + 2..];
    assert!(
        b.starts_with(b"Received: "),
        "no Received header: {:?}",
        String::from_utf8_lossy(&b[..b.len().min(80)])
    );
    // The header ends at the first CRLF not followed by whitespace.
    let mut i = 0;
    while let Some(p) = memchr_crlf(&b[i..]) {
        let end = i + p + 2;
        if end >= b.len() || (b[end] != b' ' && b[end] != b'\t') {
            return &b[end..];
        }
        i = end;
    }
    b
}

fn memchr_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// A server for IMAP tests that log in over plaintext: `top_level` keys go before any
/// section (TOML puts a key in the last section opened), `auth` keys into `[auth]`.
pub fn imap_server(users: &[&str], top_level: &str, auth: &str) -> Server {
    Server::with_config(
        users,
        &format!("{top_level}\n[auth]\ndanger_plaintext_without_tls = true\n{auth}"),
    )
}

/// A raw IMAP connection logged in as `user` (password `secret`).
pub fn imap_login(srv: &Server, user: &str) -> Raw {
    let mut c = Raw::connect_with(srv.imap, "* OK");
    c.send(format!("a LOGIN {user} secret\r\n").as_bytes());
    while !c.line().starts_with("a OK") {}
    c
}

/// Sends a tagged IMAP command and returns every line up to and including the tagged reply.
pub fn imap_command(c: &mut Raw, tag: &str, cmd: &str) -> String {
    c.send(format!("{tag} {cmd}\r\n").as_bytes());
    let mut all = String::new();
    loop {
        let l = c.line();
        all.push_str(&l);
        if l.starts_with(&format!("{tag} ")) || l.is_empty() {
            return all;
        }
    }
}
