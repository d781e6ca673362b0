//! Cluster mode end to end (issue "The cluster, part 1"): real `ringmail` nodes with a
//! `[cluster]` section, a real etcd and a real S3 server (Garage) on loopback. A node that
//! is killed with SIGKILL loses nothing it acknowledged: the next owner opens its
//! partitions from object storage and serves every message, byte for byte, with the same
//! UIDs and flags.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ringmail_cluster::testing::Infra;

const ALICE: &str = "alice@example.org";

fn node(infra: &Infra, name: &str) -> Server {
    node_with(infra, name, "")
}

fn node_with(infra: &Infra, name: &str, top: &str) -> Server {
    let mut s = unstarted_node(infra, name, top);
    s.start();
    s
}

fn unstarted_node(infra: &Infra, name: &str, top: &str) -> Server {
    let extra = format!(
        "{top}\n{}\n[auth]\ndanger_plaintext_without_tls = true\n",
        infra.toml(name, 2)
    );
    let mut s = Server::unstarted(&[ALICE], &extra);
    s.log_filter = "info,ringmail_cluster=debug".into();
    s
}

/// Sends messages `from..to` to alice over SMTP (smtplib), retrying a 4xx (a partition not
/// yet taken over) for up to 30 s each; prints nothing.
fn send(srv: &Server, from: u32, to: u32) {
    send_sized(srv, from, to, 0)
}

/// As `send`, each message with `noise` bytes of incompressible text added.
fn send_sized(srv: &Server, from: u32, to: u32, noise: usize) {
    srv.python(&format!(
        r#"
import os, smtplib, time, random, base64
for i in range({from}, {to}):
    rnd = random.Random(i)
    noise = base64.encodebytes(bytes(rnd.getrandbits(8) for _ in range({noise} * 3 // 4))).decode().replace("\n", "\r\n")
    msg = ("From: bob@example.org\r\nTo: {ALICE}\r\nSubject: m%d\r\nMessage-ID: <m%d@test>\r\n\r\n"
           "body %d " % (i, i, i)) + ("line of text %d\r\n" % i) * (20 + i) + noise
    deadline = time.time() + 30
    while True:
        try:
            s = smtplib.SMTP("127.0.0.1", int(os.environ["SMTP"]), timeout=10)
            s.sendmail("bob@example.org", ["{ALICE}"], msg)
            s.quit()
            break
        except (smtplib.SMTPException, OSError) as e:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
"#
    ));
}

/// What alice's INBOX holds, read with imaplib (retrying while the partition is not served
/// here yet): one line per message, `uid flags subject bodylen`.
fn inbox(srv: &Server) -> Vec<String> {
    let out = srv.python(&format!(
        r#"
import os, imaplib, time, re
deadline = time.time() + 40
while True:
    try:
        c = imaplib.IMAP4("127.0.0.1", int(os.environ["IMAP"]))
        c.login("{ALICE}", "secret")
        typ, _ = c.select("INBOX")
        if typ != "OK":
            raise imaplib.IMAP4.error("select")
        break
    except (imaplib.IMAP4.error, OSError):
        if time.time() > deadline:
            raise
        time.sleep(0.2)
typ, data = c.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT])")
i = 0
while i < len(data):
    item = data[i]
    if isinstance(item, tuple):
        meta = item[0].decode()
        uid = re.search(r"UID (\d+)", meta).group(1)
        flags = re.search(r"FLAGS \(([^)]*)\)", meta + " ".join(x[0].decode() if isinstance(x, tuple) else x.decode() for x in data[i+1:i+3]))
        subject = item[1].decode().strip()
        text = data[i + 1][1]
        # \Recent belongs to sessions, not to the store: a new node's sessions see it anew.
        flags = " ".join(f for f in (flags.group(1) if flags else "").split() if f != "\\Recent")
        print(uid, flags, subject, len(text), text.split(b"\r\n")[0].decode())
        i += 2
    else:
        i += 1
c.logout()
"#
    ));
    out.lines().map(str::to_string).collect()
}

fn flag(srv: &Server, uid: u32) {
    srv.python(&format!(
        r#"
import os, imaplib
c = imaplib.IMAP4("127.0.0.1", int(os.environ["IMAP"]))
c.login("{ALICE}", "secret")
c.select("INBOX")
typ, _ = c.uid("STORE", "{uid}", "+FLAGS", "(\\Flagged)")
assert typ == "OK", typ
c.logout()
"#
    ));
}

#[test]
fn a_killed_owners_acknowledged_mail_is_served_by_the_next_owner() {
    let infra = Infra::start(31700, 1, 1);
    let mut a = node(&infra, "a");
    send(&a, 0, 12);
    flag(&a, 3);
    let before = inbox(&a);
    assert_eq!(before.len(), 12, "{before:?}");
    assert!(before[2].contains("\\Flagged"), "{before:?}");

    // The owner dies. Another node takes its partitions over once its lease (2 s) ends.
    a.kill9();
    let t = Instant::now();
    let b = node(&infra, "b");
    let after = inbox(&b);
    let took = t.elapsed();
    assert_eq!(
        after, before,
        "the new owner serves exactly what was acknowledged"
    );
    assert!(took < Duration::from_secs(30), "failover took {took:?}");
    // Logged just after the partition opened (a read may come first).
    b.wait_log("partition taken over");

    // The new owner writes on: more mail and a flag, then it dies too, and the first
    // node comes back with its stale local copy, which the manifest overrides.
    send(&b, 12, 15);
    flag(&b, 13);
    let later = inbox(&b);
    assert_eq!(later.len(), 15);
    drop(b);
    a.start();
    let again = inbox(&a);
    assert_eq!(
        again, later,
        "a restarted node serves the latest state, not its cache"
    );
}

#[test]
fn a_clean_handover_publishes_sealed_segments_and_the_checkpoint() {
    let infra = Infra::start(31800, 1, 1);
    // 1 MiB segments: 60 messages of 40 KB seal a dozen.
    let mut a = node_with(&infra, "a", "segment_mib = 1\ncores = 1\npartitions = 1");
    send_sized(&a, 0, 60, 40_000);
    flag(&a, 7);
    let before = inbox(&a);
    assert_eq!(before.len(), 60);
    // SIGTERM: the partition is closed (checkpointed), published and released.
    a.stop();
    let t = Instant::now();
    let b = node_with(&infra, "b", "segment_mib = 1\ncores = 1\npartitions = 1");
    let after = inbox(&b);
    assert_eq!(after, before);
    let took = t.elapsed();
    b.wait_log("partition taken over");
    b.wait_log("fetched a sealed segment a read needed");
    let log = b.log();
    let line = log
        .lines()
        .find(|l| l.contains("partition taken over"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("checkpoint=true"), "{line}\n{}", a.log());
    // Opened from the checkpoint and the sealed segments, not by replaying every chunk.
    assert!(!line.contains("sealed_segments=0"), "{line}");
    let chunks: usize = line
        .split("tail_chunks=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    // The old owner sealed the segment it was writing as it handed over: no batch's chunk
    // is fetched, only that last segment (the checkpoint's position is in it).
    assert_eq!(chunks, 0, "{line}");
    // The segments before the checkpoint's position were not fetched to open: reading the
    // messages in them fetched them.
    assert!(line.contains("fetched_segments=1"), "{line}");
    assert!(
        log.contains("fetched a sealed segment a read needed"),
        "{}",
        b.log()
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
}

fn owners(infra: &Infra) -> std::collections::BTreeMap<u32, String> {
    owner_keys(infra)
        .into_iter()
        .map(|(p, o)| (p, o.node))
        .collect()
}

/// The owner keys in etcd now: partition → node and epoch.
fn owner_keys(infra: &Infra) -> std::collections::BTreeMap<u32, ringmail_cluster::Owner> {
    let cfg = infra.config("observer", 2);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let c = ringmail_cluster::Coordinator::observe(&cfg).await.unwrap();
            c.owners().await.unwrap()
        })
}

/// Waits until every one of `partitions` has an owner and nothing moved for 2 s (nodes
/// that joined one after the other rebalance).
fn settle(infra: &Infra, partitions: u32) {
    settle_within(infra, partitions, Duration::from_secs(40))
}

/// As `settle`, waiting up to `limit` (three nodes starting on a loaded machine need more).
fn settle_within(infra: &Infra, partitions: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last = owners(infra);
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = owners(infra);
        if now != last {
            last = now;
            since = Instant::now();
        } else if last.len() == partitions as usize && since.elapsed() > Duration::from_secs(2) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster did not settle: {last:?}"
        );
    }
}

/// The node that owns alice's partition now (waiting up to 20 s for one to).
fn owner_of_alice(infra: &Infra, partitions: u32) -> String {
    let p = ringmail_engine::SlotMap::new(partitions)
        .partition_of(ALICE)
        .0;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(o) = owners(infra).get(&p) {
            return o.clone();
        }
        assert!(Instant::now() < deadline, "nobody owns partition {p}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `ringmail cluster ...` with a configuration holding the cluster section.
fn cluster_cli(infra: &Infra, dir: &std::path::Path, args: &[&str]) -> String {
    let config = dir.join("admin.toml");
    std::fs::write(&config, infra.toml("admin", 2)).unwrap();
    let out = std::process::Command::new(bin())
        .arg("cluster")
        .args(args)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "cluster {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn move_and_drain_hand_partitions_over_live() {
    let infra = Infra::start(31900, 1, 1);
    let top = "segment_mib = 1\ncores = 1\npartitions = 4";
    let a = node_with(&infra, "a", top);
    let b = node_with(&infra, "b", top);
    let by_name = |n: &str| if n == "a" { &a } else { &b };
    settle(&infra, 4);
    let owners_now = owners(&infra);
    assert!(
        owners_now.values().any(|n| n == "a") && owners_now.values().any(|n| n == "b"),
        "both nodes own partitions: {owners_now:?}"
    );
    let owner = owner_of_alice(&infra, 4);
    send(by_name(&owner), 0, 10);
    flag(by_name(&owner), 4);
    let before = inbox(by_name(&owner));
    assert_eq!(before.len(), 10);

    let p = ringmail_engine::SlotMap::new(4).partition_of(ALICE).0;
    let other = if owner == "a" { "b" } else { "a" };
    let out = cluster_cli(&infra, a.dir.path(), &["move", &p.to_string(), other]);
    assert!(out.contains(&format!("moved to {other}")), "{out}");
    assert_eq!(owner_of_alice(&infra, 4), other);
    // Sessions reconnect to the new owner, which has everything.
    assert_eq!(inbox(by_name(other)), before);
    send(by_name(other), 10, 13);

    let status = cluster_cli(&infra, a.dir.path(), &["status"]);
    assert!(status.contains("4 partitions, 2 nodes"), "{status}");
    // Each node's metrics show its part: all four partitions owned between them, the move
    // counted once on each side, chunks shipped by the one that took the mail.
    let m = |s: &Server, name: &str| s.metric(name, "");
    assert_eq!(
        m(&a, "ringmail_cluster_partitions_owned") + m(&b, "ringmail_cluster_partitions_owned"),
        4.0
    );
    assert_eq!(m(&a, "ringmail_cluster_lease_alive"), 1.0);
    assert!(m(by_name(&owner), "ringmail_cluster_releases_total") >= 1.0);
    assert!(m(by_name(other), "ringmail_cluster_takeovers_total") >= 1.0);
    assert!(m(by_name(other), "ringmail_cluster_moves_in_total") >= 1.0);
    assert_eq!(m(by_name(other), "ringmail_cluster_failovers_total"), 0.0);
    assert!(m(by_name(other), "ringmail_cluster_chunks_shipped_total") >= 3.0);

    // Draining the new owner sends the partition back (the only other node).
    let out = cluster_cli(&infra, a.dir.path(), &["drain", other]);
    assert!(out.contains("drained"), "{out}");
    assert_eq!(owner_of_alice(&infra, 4), owner);
    let after = inbox(by_name(&owner));
    assert_eq!(after.len(), 13);
    assert_eq!(&after[..10], &before[..]);
    let status = cluster_cli(&infra, a.dir.path(), &["status"]);
    assert!(status.contains("draining"), "{status}");
}

#[test]
fn a_paused_owner_acknowledges_nothing_after_the_takeover() {
    let infra = Infra::start(32000, 1, 1);
    let top = "cores = 1\npartitions = 1";
    let mut a = unstarted_node(&infra, "a", top);
    a.env.push(("RINGMAIL_FAILPOINTS".into(), "1".into()));
    a.start();
    assert_eq!(owner_of_alice(&infra, 1), "a");
    // Pinned to a while a is a member, so b's arrival moves nothing.
    cluster_cli(&infra, a.dir.path(), &["move", "0", "a"]);
    send(&a, 0, 2);
    let b = node_with(&infra, "b", top);
    settle(&infra, 1);
    assert_eq!(owner_of_alice(&infra, 1), "a");

    // A delivery whose batch is stored and then held before its epoch check...
    let hold = a.data().join("FAILPOINT-hold-confirm");
    std::fs::write(&hold, b"").unwrap();
    let smtp = a.smtp;
    let client = std::thread::spawn(move || {
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(format!(
                r#"
import smtplib
try:
    s = smtplib.SMTP("127.0.0.1", {smtp}, timeout=60)
    s.sendmail("bob@example.org", ["{ALICE}"], "Subject: held\r\n\r\nheld\r\n")
    print("accepted")
except smtplib.SMTPResponseException as e:
    print("refused", e.smtp_code)
except (smtplib.SMTPException, OSError) as e:
    print("failed", type(e).__name__)
"#
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !a.log().contains("failpoint: holding") {
        assert!(
            Instant::now() < deadline,
            "the batch never reached the failpoint"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...and its owner paused past its lease: b takes over.
    let pid = a.pid();
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while owner_of_alice(&infra, 1) != "b" {
        assert!(Instant::now() < deadline, "b did not take over");
        std::thread::sleep(Duration::from_millis(100));
    }
    let on_b = inbox(&b);
    assert!(on_b.len() >= 2, "{on_b:?}");
    // The paused owner resumes: it must not acknowledge the held delivery.
    std::fs::remove_file(&hold).unwrap();
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let answer = client.join().unwrap();
    assert!(
        !answer.starts_with("accepted"),
        "a fenced owner acknowledged: {answer}"
    );
    assert!(
        answer.starts_with("refused 4") || answer.starts_with("failed"),
        "{answer}"
    );
    // And it gives the partition up.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.log().contains("ownership lost") {
        assert!(
            Instant::now() < deadline,
            "a kept the partition:\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // b still has every acknowledged message.
    assert_eq!(inbox(&b)[..2], on_b[..2]);
    // Its lease gone, a joins again with a new one: a member that can own partitions
    // again (it once stayed out for good, serving nothing).
    a.wait_log("joined the cluster again with a new lease");
    let status = cluster_cli(&infra, a.dir.path(), &["status"]);
    assert!(status.contains("2 nodes"), "{status}");
}

/// The owner of a partition is killed (SIGKILL) while a load generator delivers to it, ten
/// times over, the nodes taking turns: every message any of the runs saw acknowledged is
/// then read back byte for byte through IMAP on the last owner (`ringmail-loadgen verify`).
#[test]
fn killing_the_owner_under_load_loses_nothing_acknowledged() {
    use ringmail_loadgen::verify::{verify_with, Protocol};
    use ringmail_loadgen::{run, Config, Users, Workload};
    let rounds: u64 = std::env::var("RINGMAIL_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let infra = Infra::start(32100, 1, 1);
    let top = "cores = 1\npartitions = 1";
    let mut nodes = [node_with(&infra, "a", top), node_with(&infra, "b", top)];
    let addr = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    let mut acked = std::collections::BTreeMap::<String, Vec<String>>::new();
    let mut killed_epochs = Vec::new();
    for round in 0..rounds {
        // The owner of the moment serves (its takeover is done, and the node that came back
        // has taken the partition back if placement prefers it): one delivery goes through.
        settle(&infra, 1);
        let owner = owner_of_alice(&infra, 1);
        let i = usize::from(owner == "b");
        send(&nodes[i], 1000 + round as u32, 1001 + round as u32);
        let epoch = owner_epoch(&infra);
        let mut cfg = Config::new(Workload::Smtp, addr(nodes[i].smtp));
        cfg.users = Users::parse(ALICE).unwrap();
        cfg.connections = 8;
        cfg.duration = Duration::from_secs(3);
        cfg.seed = round + 1;
        let load = std::thread::spawn(move || run(&cfg));
        std::thread::sleep(Duration::from_millis(1200));
        nodes[i].kill9();
        let report = load.join().unwrap();
        let delivered: usize = report.acked.values().map(Vec::len).sum();
        assert!(
            delivered > 0,
            "round {round}: nothing delivered before the kill"
        );
        for (u, ids) in report.acked {
            acked.entry(u).or_default().extend(ids);
        }
        killed_epochs.push(epoch);
        // The other node takes over once the dead lease ends; the killed one comes back.
        let deadline = Instant::now() + Duration::from_secs(30);
        while killed_epochs.contains(&owner_epoch(&infra)) {
            assert!(Instant::now() < deadline, "round {round}: no takeover");
            std::thread::sleep(Duration::from_millis(100));
        }
        nodes[i].start();
    }
    // The last node to come back may take the partition back (placement prefers one node);
    // a session that meets such a move is told to log in again, and does.
    settle(&infra, 1);
    let total: usize = acked.values().map(Vec::len).sum();
    let mut tries = 0;
    let v = loop {
        let owner = owner_of_alice(&infra, 1);
        let last = &nodes[usize::from(owner == "b")];
        send(last, 2000 + tries, 2001 + tries);
        let v = verify_with(
            Protocol::Imap,
            addr(last.imap),
            None,
            "secret",
            &acked,
            Duration::from_secs(30),
        );
        tries += 1;
        let moved = v
            .errors
            .iter()
            .any(|e| e.contains("served by another node"));
        if v.clean() || !moved || tries == 5 {
            break v;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(v.clean(), "{v:?}");
    assert_eq!(v.checked, total, "{v:?}");
    assert!(total as u64 >= rounds * 5, "only {total} acknowledged");
}

/// The epoch of partition 0's owner key now (0: none).
fn owner_epoch(infra: &Infra) -> u64 {
    owner_keys(infra).get(&0).map_or(0, |o| o.epoch)
}

/// `cluster move` and `drain` while mail arrives and IMAP and POP3 sessions are open: the
/// sessions on the old owner are told to log in again (IMAP `BYE [UNAVAILABLE]`, POP3
/// `-ERR [SYS/TEMP]`), they can at once on the new owner, and every delivery acknowledged
/// during the moves is there.
#[test]
fn sessions_reconnect_across_moves_under_load() {
    let infra = Infra::start(32200, 1, 1);
    let top = "cores = 1\npartitions = 1";
    let a = node_with(&infra, "a", top);
    let b = node_with(&infra, "b", top);
    // Pinned to a while a is a member.
    cluster_cli(&infra, a.dir.path(), &["move", "0", "a"]);
    assert_eq!(owner_of_alice(&infra, 1), "a");
    let admin = a.dir.path().join("admin.toml");
    let cli = |args: &str| format!("[{:?}, {args}, \"--config\", {:?}]", bin(), admin);
    let out = a.python(&format!(
        r#"
import imaplib, poplib, smtplib, socket, subprocess, threading, time, re
nodes = {{"a": ({a_smtp}, {a_imap}, {a_pop}), "b": ({b_smtp}, {b_imap}, {b_pop})}}
acked, stop = [], False
def sender():
    i, at = 0, "a"
    while not stop:
        msg = "From: bob@example.org\r\nTo: {ALICE}\r\nSubject: l%d\r\nMessage-ID: <l%d@test>\r\n\r\nbody %d\r\n" % (i, i, i)
        try:
            s = smtplib.SMTP("127.0.0.1", nodes[at][0], timeout=10)
            s.sendmail("bob@example.org", ["{ALICE}"], msg)
            s.quit()
            acked.append(i)
            i += 1
        except (smtplib.SMTPException, OSError):
            at = "b" if at == "a" else "a"
            time.sleep(0.05)
t = threading.Thread(target=sender)
t.start()

def sessions(at):
    c = imaplib.IMAP4("127.0.0.1", nodes[at][1])
    c.login("{ALICE}", "secret")
    assert c.select("INBOX")[0] == "OK"
    p = poplib.POP3("127.0.0.1", nodes[at][2])
    p.user("{ALICE}")
    p.pass_("secret")
    return c, p

def idling(at):
    s = socket.create_connection(("127.0.0.1", nodes[at][1]), timeout=10)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"a LOGIN {ALICE} secret\r\nb SELECT INBOX\r\nc IDLE\r\n")
    while not f.readline().startswith(b"+"):
        pass
    return f

def told_to_leave(c, p, idle):
    # An IDLE hears it at once: new mail may arrive meanwhile, then the BYE.
    deadline = time.time() + 5
    while True:
        line = idle.readline()
        assert line and time.time() < deadline, line
        if line.startswith(b"* BYE"):
            assert b"[UNAVAILABLE]" in line and b"served by another node" in line, line
            break
    time.sleep(2.5)
    try:
        c.noop()
        raise SystemExit("the IMAP session was not ended")
    except imaplib.IMAP4.abort as e:
        assert "served by another node" in str(e), e
    try:
        p.noop()
        raise SystemExit("the POP3 session was not ended")
    except poplib.error_proto as e:
        assert "[SYS/TEMP]" in str(e), e

time.sleep(1)
c, p = sessions("a")
idle = idling("a")
subprocess.run({move}, check=True, capture_output=True)
told_to_leave(c, p, idle)
c, p = sessions("b")
idle = idling("b")
time.sleep(1)
subprocess.run({drain}, check=True, capture_output=True)
told_to_leave(c, p, idle)
time.sleep(1)
stop = True
t.join()
c, p = sessions("a")
typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
have = set(int(m) for m in re.findall(rb"<l(\d+)@test>", b"".join(x[1] for x in data if isinstance(x, tuple))))
missing = sorted(set(acked) - have)
assert not missing, missing
print(len(acked))
"#,
        a_smtp = a.smtp,
        a_imap = a.imap,
        a_pop = a.pop3,
        b_smtp = b.smtp,
        b_imap = b.imap,
        b_pop = b.pop3,
        move = cli("\"cluster\", \"move\", \"0\", \"b\""),
        drain = cli("\"cluster\", \"drain\", \"b\""),
    ));
    let n: usize = out.trim().parse().unwrap();
    assert!(n > 20, "only {n} deliveries acknowledged");
}

/// The engines under a node fail while mail arrives: one etcd member of three is killed
/// (service goes on), then a second is stopped (no quorum: deliveries get temporary errors,
/// never a 5xx), both come back, then the S3 server is stopped and started again. Service
/// resumes by itself each time, and every delivery acknowledged throughout is stored.
#[test]
fn etcd_and_s3_faults_under_load_lose_nothing_acknowledged() {
    use ringmail_loadgen::verify::{verify_with, Protocol};
    use ringmail_loadgen::{run, Config, Users, Workload};
    let mut infra = Infra::start(32300, 3, 1);
    // The lease outlasts each outage: the node keeps its ownership through them.
    let extra = format!(
        "cores = 1\npartitions = 1\n{}\n[auth]\ndanger_plaintext_without_tls = true\n",
        infra.toml("a", 15)
    );
    let mut a = Server::unstarted(&[ALICE], &extra);
    a.start();
    assert_eq!(owner_of_alice(&infra, 1), "a");
    send(&a, 0, 1);
    let addr = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    let mut cfg = Config::new(Workload::Smtp, addr(a.smtp));
    cfg.users = Users::parse(ALICE).unwrap();
    cfg.connections = 4;
    cfg.duration = Duration::from_secs(19);
    let load = std::thread::spawn(move || run(&cfg));
    let sleep = |s: u64| std::thread::sleep(Duration::from_secs(s));
    sleep(2);
    infra.signal("ETCD3", "KILL");
    sleep(3);
    infra.signal("ETCD2", "STOP");
    sleep(4);
    infra.signal("ETCD2", "CONT");
    infra.restart("etcd3", "ETCD3");
    sleep(3);
    infra.signal("S31", "STOP");
    sleep(4);
    infra.signal("S31", "CONT");
    let report = load.join().unwrap();
    eprintln!("{}", report.table());
    let fatal: Vec<_> = report
        .errors
        .keys()
        .filter(|k| k.contains("rejected 5"))
        .collect();
    assert!(fatal.is_empty(), "{}", report.table());
    assert!(
        report.total_errors() > 0,
        "no temporary error while etcd had no quorum: {}",
        report.table()
    );
    // Service is back: a delivery goes through, and everything acknowledged is stored.
    send(&a, 1, 2);
    let total: usize = report.acked.values().map(Vec::len).sum();
    let v = verify_with(
        Protocol::Imap,
        addr(a.imap),
        None,
        "secret",
        &report.acked,
        Duration::from_secs(30),
    );
    assert!(v.clean(), "{v:?}");
    assert_eq!(v.checked, total);
    assert!(total > 50, "only {total} acknowledged: {}", report.table());
    assert!(inbox(&a).len() >= total + 2);
}

/// `ship_interval_ms` holds batches back to send fewer, larger chunks; a batch waiting out
/// the interval is not mistaken for a store that is down, so writes meanwhile are accepted.
#[test]
fn a_long_ship_interval_holds_batches_without_refusing_writes() {
    let infra = Infra::start(32400, 1, 1);
    let cluster = infra
        .toml("a", 5)
        .replace("[cluster.s3]", "ship_interval_ms = 3000\n[cluster.s3]");
    let extra = format!(
        "cores = 1\npartitions = 1\n{cluster}\n[auth]\ndanger_plaintext_without_tls = true\n"
    );
    let mut a = Server::unstarted(&[ALICE], &extra);
    a.start();
    assert_eq!(owner_of_alice(&infra, 1), "a");
    send(&a, 0, 1);
    let out = a.python(&format!(
        r#"
import os, smtplib, threading, time
res = {{}}
def deliver(i):
    t = time.time()
    try:
        s = smtplib.SMTP("127.0.0.1", int(os.environ["SMTP"]), timeout=30)
        s.sendmail("bob@example.org", ["{ALICE}"], "Subject: i%d\r\n\r\nbody\r\n" % i)
        s.quit()
        res[i] = "ok %.1f" % (time.time() - t)
    except Exception as e:
        res[i] = "refused %r" % e
ts = []
for i, at in [(1, 0), (2, 0.1), (3, 2.5)]:
    time.sleep(at - (ts and ts[-1][1] or 0))
    th = threading.Thread(target=deliver, args=(i,))
    th.start()
    ts.append((th, at))
for th, _ in ts:
    th.join()
print(res[1], "|", res[2], "|", res[3])
"#
    ));
    let parts: Vec<&str> = out.trim().split(" | ").collect();
    assert!(parts.iter().all(|p| p.starts_with("ok")), "{out}");
    // The second delivery waited for the interval after the first one's upload.
    let waited: f64 = parts[1].trim_start_matches("ok ").parse().unwrap();
    assert!(waited >= 2.0, "{out}");
    assert!(a.metric("ringmail_cluster_chunks_shipped_total", "") >= 2.0);
}

// ---- The cluster, part 2: any node serves any account ------------------------------------

/// A node of a three-node cluster with a cluster port, serving `users`.
fn routed_node(infra: &Infra, name: &str, users: &[&str]) -> (Server, u16) {
    let port = free_port();
    let section = infra.toml(name, 2).replacen(
        "[cluster.s3]",
        &format!("listen = \"127.0.0.1:{port}\"\n\n[cluster.s3]"),
        1,
    );
    let extra = format!(
        "cores = 1\npartitions = 6\n{section}\n[auth]\ndanger_plaintext_without_tls = true\n"
    );
    let mut s = Server::unstarted(users, &extra);
    s.log_filter = "info,ringmail_cluster=debug".into();
    s.start();
    (s, port)
}

/// Three nodes (a, b, c) with cluster ports, six partitions between them, and 24 users.
struct Trio {
    _infra: Infra,
    nodes: Vec<(Server, u16)>,
    owners: std::collections::BTreeMap<u32, String>,
    names: Vec<String>,
}

impl Trio {
    fn start(base: u16) -> Trio {
        let infra = Infra::start(base, 1, 1);
        let names: Vec<String> = (0..24).map(|i| format!("u{i}@example.org")).collect();
        let users: Vec<&str> = names.iter().map(String::as_str).collect();
        let nodes = ["a", "b", "c"]
            .iter()
            .map(|n| routed_node(&infra, n, &users))
            .collect();
        settle_within(&infra, 6, Duration::from_secs(90));
        let owners = owners(&infra);
        Trio {
            _infra: infra,
            nodes,
            owners,
            names,
        }
    }

    fn users(&self) -> Vec<&'static str> {
        // Leaked: a test's few names, borrowed by closures that outlive the struct's fields.
        self.names
            .iter()
            .map(|n| &*Box::leak(n.clone().into_boxed_str()))
            .collect()
    }

    fn index(node: &str) -> usize {
        ["a", "b", "c"].iter().position(|x| *x == node).unwrap()
    }
}

/// Three nodes, each serving some of six partitions. Python's smtplib, imaplib and poplib
/// reach accounts through nodes that do not serve them, and everything works as against
/// the owner: a delivery to recipients on all three nodes, reading and flagging, an APPEND
/// literal, COMPRESS, an IDLE woken by a delivery that arrived at a third node, POP3 DELE
/// seen over IMAP. Then the owner is killed: the proxied IDLE session is told `BYE
/// [UNAVAILABLE]` and logs in again through the same node once another node took over,
/// finding everything that was acknowledged.
#[test]
fn any_node_serves_any_account() {
    let trio = Trio::start(32500);
    let (users, nodes, owners_now) = (trio.users(), trio.nodes, trio.owners);
    let index = Trio::index;
    let map = ringmail_engine::SlotMap::new(6);
    let owner_of = |u: &str| owners_now[&map.partition_of(u).0].clone();
    // A user on some node O, read through P; a second user on P and a third on Q.
    let u = users
        .iter()
        .find(|u| owner_of(u) == "a")
        .or_else(|| users.iter().find(|u| owner_of(u) == "b"))
        .copied()
        .expect("a user on a or b");
    let o = owner_of(u);
    let p = if o == "a" { "b" } else { "a" };
    let q = ["a", "b", "c"]
        .into_iter()
        .find(|n| *n != o && *n != p)
        .unwrap();
    let on = |n: &str| users.iter().copied().find(|x| owner_of(x) == n);
    let (v, w) = (on(p), on(q));
    eprintln!("owners {owners_now:?}: {u} on {o}, read through {p}, third node {q}");
    let (srv_o, srv_p, srv_q) = (&nodes[index(&o)].0, &nodes[index(p)].0, &nodes[index(q)].0);
    let rcpts: Vec<&str> = [Some(u), v, w].into_iter().flatten().collect();

    let script = format!(
        r#"
import os, smtplib, imaplib, poplib, socket, time, zlib, re
P_SMTP, P_IMAP = {p_smtp}, {p_imap}
Q_SMTP, Q_POP3 = {q_smtp}, {q_pop3}
U = "{u}"
RCPTS = {rcpts:?}

def send(port, rcpts, subject):
    msg = "From: bob@example.org\r\nTo: x@example.org\r\nSubject: %s\r\n\r\nhello %s\r\n" % (subject, subject)
    s = smtplib.SMTP("127.0.0.1", port, timeout=20)
    refused = s.sendmail("bob@example.org", rcpts, msg)
    assert not refused, refused
    s.quit()

# One message for recipients on all three nodes, accepted by P.
send(P_SMTP, RCPTS, "everywhere")
for r in RCPTS:
    c = imaplib.IMAP4("127.0.0.1", P_IMAP)
    c.login(r, "secret")
    typ, data = c.select("INBOX")
    assert typ == "OK" and data[0] == b"1", (r, typ, data)
    typ, data = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT RECEIVED)])")
    head = data[0][1].decode()
    assert "Subject: everywhere" in head, head
    # One trace header: the node that accepted it; the owner added none.
    assert head.count("Received:") == 1, head
    c.logout()

# Reading, flagging and an APPEND literal through P.
c = imaplib.IMAP4("127.0.0.1", P_IMAP)
c.login(U, "secret")
c.select("INBOX")
typ, _ = c.store("1", "+FLAGS", "(\\Flagged)")
assert typ == "OK"
typ, data = c.fetch("1", "(FLAGS)")
assert b"\\Flagged" in data[0], data
body = b"From: me@example.org\r\nSubject: appended\r\n\r\n" + b"x" * 5000 + b"\r\n"
typ, data = c.append("INBOX", "(\\Seen)", None, body)
assert typ == "OK", data
typ, data = c.fetch("2", "(BODY.PEEK[])")
assert data[0][1] == body, len(data[0][1])
c.logout()

# COMPRESS=DEFLATE through the proxy: negotiated with the owner, relayed as bytes.
s = socket.create_connection(("127.0.0.1", P_IMAP), timeout=10)
f = s.makefile("rb")
f.readline()
s.sendall(b"a LOGIN %s secret\r\n" % U.encode())
while not f.readline().startswith(b"a OK"):
    pass
s.sendall(b"c COMPRESS DEFLATE\r\n")
line = f.readline()
assert line.startswith(b"c OK"), line
comp, decomp = zlib.compressobj(wbits=-15), zlib.decompressobj(wbits=-15)
s.sendall(comp.compress(b"n STATUS INBOX (MESSAGES)\r\n") + comp.flush(zlib.Z_SYNC_FLUSH))
got = b""
while b"n OK" not in got:
    got += decomp.decompress(s.recv(4096))
assert b"(MESSAGES 2)" in got, got
s.close()

# IDLE through P, woken by a delivery that arrives at Q.
s = socket.create_connection(("127.0.0.1", P_IMAP), timeout=15)
f = s.makefile("rb")
f.readline()
s.sendall(b"a LOGIN %s secret\r\nb SELECT INBOX\r\n" % U.encode())
while not f.readline().startswith(b"b OK"):
    pass
s.sendall(b"i IDLE\r\n")
assert f.readline().startswith(b"+"), "no continuation"
send(Q_SMTP, [U], "idle-wake")
line = f.readline()
assert re.match(rb"\* 3 EXISTS", line), line
s.sendall(b"DONE\r\n")
while not f.readline().startswith(b"i OK"):
    pass
s.close()

# POP3 through Q: DELE of the first message, seen over IMAP through P.
pop = poplib.POP3("127.0.0.1", Q_POP3, timeout=15)
pop.user(U)
pop.pass_("secret")
count, _ = pop.stat()
assert count == 3, count
lines = pop.retr(1)[1]
assert any(b"Subject: everywhere" in l for l in lines), lines
pop.dele(1)
pop.quit()
c = imaplib.IMAP4("127.0.0.1", P_IMAP)
c.login(U, "secret")
typ, data = c.select("INBOX")
assert data[0] == b"2", data
c.logout()
print("ok")
"#,
        p_smtp = srv_p.smtp,
        p_imap = srv_p.imap,
        q_smtp = srv_q.smtp,
        q_pop3 = srv_q.pop3,
    );
    let out = srv_p.python(&script);
    assert!(out.contains("ok"), "{out}");

    // Each node counts its part.
    assert!(srv_p.metric("ringmail_cluster_proxied_sessions_total", "imap") >= 5.0);
    assert!(srv_q.metric("ringmail_cluster_proxied_sessions_total", "pop3") >= 1.0);
    assert!(srv_p.metric("ringmail_cluster_forwarded_recipients_total", "") >= 1.0);
    assert!(srv_o.metric("ringmail_cluster_proxied_in_total", "") >= 6.0);
    // The Grafana dashboard asks only for metrics a cluster node has.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana-cluster.json"
    ))
    .unwrap();
    let (_, exposed) = srv_p.http_get("/metrics");
    let mut asked = 0;
    for piece in dashboard.split("ringmail_").skip(1) {
        let name: String = piece
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if name.is_empty() || name == "cluster" {
            continue;
        }
        asked += 1;
        assert!(
            exposed.contains(&format!("\nringmail_{name}")),
            "the dashboard asks for ringmail_{name}, which /metrics does not have"
        );
    }
    assert!(asked >= 10, "{asked}");

    // A wrong secret on the cluster port is refused.
    {
        use std::io::{BufRead, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", nodes[index(&o)].1)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"RINGMAIL/1 wrong IMAP u0@example.org 127.0.0.1\r\n")
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line).unwrap();
        assert!(
            line.starts_with("-ERR"),
            "a wrong secret was accepted: {line}"
        );
    }

    // The owner dies under a proxied IDLE: the client is told at once, and logs in again
    // through the same node once another node serves the account.
    let idle = format!(
        r#"
import socket, time, imaplib
s = socket.create_connection(("127.0.0.1", {p_imap}), timeout=30)
f = s.makefile("rb")
f.readline()
s.sendall(b"a LOGIN {u} secret\r\nb SELECT INBOX\r\ni IDLE\r\n")
while not f.readline().startswith(b"+"):
    pass
print("idling", flush=True)
line = f.readline()
t = time.time()
assert line.startswith(b"* BYE [UNAVAILABLE]"), line
deadline = time.time() + 40
while True:
    try:
        c = imaplib.IMAP4("127.0.0.1", {p_imap})
        c.login("{u}", "secret")
        typ, data = c.select("INBOX")
        if typ == "OK":
            break
    except (imaplib.IMAP4.error, OSError):
        pass
    assert time.time() < deadline, "no node took the account over"
    time.sleep(0.2)
assert data[0] == b"2", data
typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
subjects = sorted(x[1].decode().strip() for x in data if isinstance(x, tuple))
assert subjects == ["Subject: appended", "Subject: idle-wake"], subjects
c.logout()
print("back")
"#,
        p_imap = srv_p.imap,
    );
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(&idle)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert_eq!(first.trim(), "idling");
    let mut nodes = nodes;
    nodes[index(&o)].0.kill9();
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(
        out.status.success() && rest.contains("back"),
        "{rest}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A message for recipients on two nodes, one of which dies while the message is being
/// delivered: the client is told 451, as SMTP has one reply per message, though one copy
/// was stored. Its retry (the same bytes, through another node, first with the second
/// recipient refused while nobody serves it, then with both) stores each copy exactly once.
#[test]
fn a_retried_cross_node_delivery_stores_each_copy_once() {
    let trio = Trio::start(32600);
    let (users, mut nodes, owners_now) = (trio.users(), trio.nodes, trio.owners);
    let index = Trio::index;
    let map = ringmail_engine::SlotMap::new(6);
    let owner_of = |u: &str| owners_now[&map.partition_of(u).0].clone();
    // u on node X (where the message arrives), w on node Y (which dies), Z reads.
    let (u, w) = users
        .iter()
        .flat_map(|u| users.iter().map(move |w| (*u, *w)))
        .find(|(u, w)| owner_of(u) != owner_of(w))
        .unwrap();
    let (x, y) = (owner_of(u), owner_of(w));
    let z = ["a", "b", "c"]
        .into_iter()
        .find(|n| *n != x && *n != y)
        .unwrap();
    eprintln!("{u} on {x}, {w} on {y}, retry through {z}");
    let message = "From: bob@example.org\r\nTo: both@example.org\r\nSubject: once\r\nMessage-ID: <once@test>\r\n\r\nexactly once\r\n";
    let (x_smtp, z_smtp) = (nodes[index(&x)].0.smtp, nodes[index(z)].0.smtp);
    // The first try: RCPTs accepted while Y serves w; Y is killed before the message ends.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", x_smtp)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    let mut say = |s: &mut std::net::TcpStream, cmd: &str| -> String {
        use std::io::{BufRead, Write};
        s.write_all(cmd.as_bytes()).unwrap();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.clone();
            }
        }
    };
    say(&mut s, "");
    say(&mut s, "EHLO test\r\n");
    assert!(say(&mut s, "MAIL FROM:<bob@example.org>\r\n").starts_with("250"));
    assert!(say(&mut s, &format!("RCPT TO:<{u}>\r\n")).starts_with("250"));
    assert!(say(&mut s, &format!("RCPT TO:<{w}>\r\n")).starts_with("250"));
    assert!(say(&mut s, "DATA\r\n").starts_with("354"));
    nodes[index(&y)].0.kill9();
    let reply = say(&mut s, &format!("{message}.\r\n"));
    assert!(reply.starts_with("451"), "{reply}");
    say(&mut s, "QUIT\r\n");

    // The retry through Z, as a mail server does it: every recipient again, as long as
    // any is refused.
    let out = nodes[index(z)].0.python(&format!(
        r#"
import smtplib, time
msg = {message:?}
deadline = time.time() + 40
tries = 0
while True:
    tries += 1
    s = smtplib.SMTP("127.0.0.1", {z_smtp}, timeout=20)
    try:
        refused = s.sendmail("bob@example.org", ["{u}", "{w}"], msg)
    except smtplib.SMTPException as e:
        refused = str(e)
    s.quit()
    if not refused:
        break
    assert time.time() < deadline, refused
    time.sleep(0.3)
print("tries", tries)
"#
    ));
    eprintln!("{out}");
    // Every copy once, read through Z.
    let counts = nodes[index(z)].0.python(&format!(
        r#"
import imaplib
for who in ["{u}", "{w}"]:
    c = imaplib.IMAP4("127.0.0.1", {z_imap})
    c.login(who, "secret")
    typ, data = c.select("INBOX")
    typ, ids = c.search(None, 'HEADER', 'Message-ID', 'once@test')
    print(who, len(ids[0].split()))
    c.logout()
"#,
        z_imap = nodes[index(z)].0.imap
    ));
    assert_eq!(counts, format!("{u} 1\n{w} 1\n"), "{out}");
}

/// mbsync keeps a Maildir in sync with one account through a node that does not serve it,
/// then, after the account's partition moved, through another: the second sync brings the
/// new mail and pushes a flag set locally, with no duplicate and nothing for mbsync to
/// complain of (UIDVALIDITY and UIDs are the partition's, whichever node serves it).
#[test]
fn mbsync_syncs_through_any_node_across_a_move() {
    let trio = Trio::start(32700);
    let users = trio.users();
    let owner_of =
        |u: &str| trio.owners[&ringmail_engine::SlotMap::new(6).partition_of(u).0].clone();
    let u = users[0];
    let o = owner_of(u);
    let others: Vec<&str> = ["a", "b", "c"].into_iter().filter(|n| *n != o).collect();
    let (a, b) = (others[0], others[1]);
    let node = |n: &str| &trio.nodes[Trio::index(n)].0;
    let deliver = |n: &str, from: u32, to: u32| {
        node(n).python(&format!(
            r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port}, timeout=20)
for i in range({from}, {to}):
    s.sendmail("bob@example.org", ["{u}"], "From: bob@example.org\r\nSubject: sync %d\r\nMessage-ID: <sync%d@test>\r\n\r\nbody %d\r\n" % (i, i, i))
s.quit()
"#,
            port = node(n).smtp
        ))
    };
    let home = trio.nodes[0].0.dir.path().join("mbsync");
    let mail = home.join("mail");
    std::fs::create_dir_all(mail.join("INBOX")).unwrap();
    let sync = |through: &str, step: &str| {
        let srv = node(through);
        let rc = home.join("mbsyncrc");
        std::fs::write(
            &rc,
            format!(
                "IMAPAccount ringmail\nHost 127.0.0.1\nPort {port}\nUser {u}\nPass secret\n\
                 SSLType IMAPS\nCertificateFile {cert}\nSystemCertificates no\n\n\
                 IMAPStore remote\nAccount ringmail\n\n\
                 MaildirStore local\nPath {mail}/\nInbox {mail}/INBOX\n\n\
                 Channel sync\nFar :remote:\nNear :local:\nPatterns INBOX\n\
                 Create Both\nExpunge Both\nSyncState *\n",
                port = srv.imaps,
                cert = srv.data().join("tls/cert.pem").display(),
                mail = mail.display(),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let out = std::process::Command::new("mbsync")
            .arg("-c")
            .arg(&rc)
            .arg("-a")
            .env("HOME", &home)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "mbsync ({step}): {text}");
        // (A changed UIDVALIDITY on the far side is an error: "UIDVALIDITY of far side
        // changed".)
        let l = text.to_ascii_lowercase();
        assert!(
            !l.contains("error") && !l.contains("warning"),
            "mbsync complained ({step}): {text}"
        );
    };
    let local = || -> Vec<(String, String)> {
        let mut v = Vec::new();
        for sub in ["cur", "new"] {
            let Ok(dir) = std::fs::read_dir(mail.join("INBOX").join(sub)) else {
                continue;
            };
            for e in dir {
                let p = e.unwrap().path();
                let text = std::fs::read_to_string(&p).unwrap();
                let subject = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Subject: "))
                    .unwrap_or_default()
                    .to_string();
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                let flags = name.rsplit_once(":2,").map_or("", |(_, f)| f).to_string();
                v.push((subject, flags));
            }
        }
        v.sort();
        v
    };

    deliver(b, 0, 5);
    sync(a, "first, through a node that does not serve the account");
    let first = local();
    assert_eq!(first.len(), 5, "{first:?}");

    // A flag set locally, and two messages more, then the account's partition moves to a.
    let file = std::fs::read_dir(mail.join("INBOX/cur"))
        .unwrap()
        .chain(std::fs::read_dir(mail.join("INBOX/new")).unwrap())
        .map(|e| e.unwrap().path())
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains("Subject: sync 2")
        })
        .unwrap();
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let base = name.split(":2,").next().unwrap().to_string();
    let flags = name
        .rsplit_once(":2,")
        .map_or(String::new(), |(_, f)| f.to_string());
    let mut flags: Vec<char> = flags.chars().chain(['F']).collect();
    flags.sort();
    flags.dedup();
    let flagged = mail
        .join("INBOX/cur")
        .join(format!("{base}:2,{}", flags.iter().collect::<String>()));
    std::fs::rename(&file, &flagged).unwrap();
    deliver(b, 5, 7);
    let p = ringmail_engine::SlotMap::new(6).partition_of(u).0;
    let out = cluster_cli(
        &trio._infra,
        trio.nodes[0].0.dir.path(),
        &["move", &p.to_string(), a],
    );
    assert!(out.contains(&format!("moved to {a}")), "{out}");

    sync(b, "second, through another node after the move");
    let second = local();
    assert_eq!(second.len(), 7, "no duplicates: {second:?}");
    assert!(
        second.iter().any(|(s, f)| s == "sync 2" && f.contains('F')),
        "{second:?}"
    );
    // The flag reached the store: a plain IMAP session through the third node sees it.
    let seen = node(&o).python(&format!(
        r#"
import imaplib
c = imaplib.IMAP4("127.0.0.1", {port})
c.login("{u}", "secret")
c.select("INBOX")
typ, data = c.search(None, "FLAGGED")
print(len(data[0].split()))
typ, data = c.search(None, "ALL")
print(len(data[0].split()))
c.logout()
"#,
        port = node(&o).imap
    ));
    assert_eq!(seen, "1\n7\n");
}

/// Mixed load (SMTP, IMAP, POP3) spread over three nodes, and one node killed (SIGKILL) in
/// the middle and started again, as a service manager would: every acknowledged delivery
/// is then read back byte for byte through another node (`ringmail-loadgen verify` over
/// IMAP), and clients that log in again are served.
#[test]
fn killing_a_node_under_mixed_load_loses_nothing_acknowledged() {
    use ringmail_loadgen::verify::{verify_with, Protocol};
    use ringmail_loadgen::{run, Config, Mixed, Users, Workload};
    let trio = Trio::start(32800);
    let mut nodes = trio.nodes;
    let addr = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    let mut cfg = Config::new(Workload::Mixed, addr(nodes[0].0.smtp));
    cfg.users = Users::parse("u%d@example.org:0-23").unwrap();
    cfg.password = "secret".into();
    cfg.connections = 12;
    cfg.duration = Duration::from_secs(9);
    cfg.imap_prefill = 3;
    cfg.timeout = Duration::from_secs(5);
    let mut targets = Vec::new();
    for (n, _) in &nodes {
        targets.push((Workload::Smtp, addr(n.smtp)));
        targets.push((Workload::Imap, addr(n.imap)));
        targets.push((Workload::Pop3, addr(n.pop3)));
    }
    cfg.mixed = Some(Mixed {
        shares: Mixed::parse_ratio("smtp:60,imap:30,pop3:10").unwrap(),
        targets,
    });
    let load = std::thread::spawn(move || run(&cfg));
    std::thread::sleep(Duration::from_secs(4));
    nodes[1].0.kill9();
    std::thread::sleep(Duration::from_secs(1));
    nodes[1].0.start();
    let report = load.join().unwrap();
    let total: usize = report.acked.values().map(Vec::len).sum();
    assert!(total > 50, "only {total} acknowledged: {:?}", report.errors);
    // The killed node's partitions were taken over as failovers (by a survivor, or by the
    // node itself once it was back: placement may prefer it).
    let failovers: f64 = nodes
        .iter()
        .map(|(n, _)| n.metric("ringmail_cluster_failovers_total", ""))
        .sum();
    assert!(failovers >= 1.0, "{failovers}");
    // Through node a: the killed node's partitions are served again (by whichever node),
    // possibly moving back to it meanwhile: a session told to log in again does.
    let mut tries = 0;
    let v = loop {
        let v = verify_with(
            Protocol::Imap,
            addr(nodes[0].0.imap),
            None,
            "secret",
            &report.acked,
            Duration::from_secs(30),
        );
        tries += 1;
        if v.clean() || tries == 10 {
            break v;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(v.clean(), "{v:?}");
    assert_eq!(v.checked, total, "{v:?}");
}
