//! The IMAP workload against a small in-memory IMAP server (`support/fake_imap.rs`) that
//! writes its responses in pieces, varies the order of FETCH items, sends unsolicited
//! responses, and misbehaves on request: wrong sizes, corrupted bodies, NO to STORE, BYE in
//! the middle of a session, garbage.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use ringmail_loadgen::imap::Mix;
use ringmail_loadgen::run::check_stamp;
use ringmail_loadgen::{run, Config, Users, Workload};
use support::fake_imap::{fake_imap, Fault};

fn config(addr: SocketAddr) -> Config {
    let mut cfg = Config::new(Workload::Imap, addr);
    cfg.users = Users::parse("user%d:1-8").unwrap();
    cfg.password = "pw".into();
    cfg.connections = 4;
    cfg.duration = Duration::from_millis(1500);
    cfg.timeout = Duration::from_secs(2);
    cfg.imap_prefill = 12;
    cfg.imap_commands = 25;
    cfg.size = Some(3000);
    cfg
}

#[test]
fn prefill_then_every_command_of_the_mix_without_errors() {
    let fake = fake_imap(Fault::None);
    let r = run(&config(fake.addr));
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    let mix = [
        "fetch-flags",
        "fetch-body",
        "search-unseen",
        "search-subject",
        "store",
        "noop",
    ];
    for c in mix.iter().chain(&["login", "select", "logout", "all"]) {
        assert!(
            r.commands.get(*c).is_some_and(|s| s.count > 0),
            "{c}:\n{}",
            r.table()
        );
    }
    let sum: u64 = mix.iter().map(|c| r.commands[*c].count).sum();
    assert_eq!(r.commands["all"].count, sum);
    assert!(r.bytes > 0);
    // Every account holds exactly the prefill, each message stamped intact.
    let st = fake.store.lock().unwrap();
    assert_eq!(st.len(), 8);
    for (user, mb) in st.iter() {
        assert_eq!(mb.msgs.len(), 12, "{user}");
        for m in &mb.msgs {
            assert!(matches!(check_stamp(&m.body), Some(Ok(_))));
        }
    }
    drop(st);
    // A second prefill finds the accounts full.
    let before: usize = fake
        .store
        .lock()
        .unwrap()
        .values()
        .map(|m| m.msgs.len())
        .sum();
    let mut cfg = config(fake.addr);
    cfg.duration = Duration::from_millis(200);
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    let after: usize = fake
        .store
        .lock()
        .unwrap()
        .values()
        .map(|m| m.msgs.len())
        .sum();
    assert_eq!(before, after);
}

#[test]
fn open_loop_paces_imap_commands() {
    let fake = fake_imap(Fault::None);
    let mut cfg = config(fake.addr);
    cfg.rate = Some(400.0);
    cfg.duration = Duration::from_secs(2);
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    let steps: u64 = r
        .commands
        .iter()
        .filter(|(k, _)| *k != "all")
        .map(|(_, s)| s.count)
        .sum();
    assert!((600..=820).contains(&steps), "{steps}:\n{}", r.table());
}

#[test]
fn wrong_sizes_and_corrupt_bodies_are_counted_and_the_sessions_go_on() {
    for (fault, kind) in [
        (Fault::WrongSize, "size mismatch"),
        (Fault::CorruptBody, "checksum mismatch"),
    ] {
        let fake = fake_imap(fault);
        let mut cfg = config(fake.addr);
        cfg.imap_mix = Mix::parse("fetch-body:1,fetch-flags:1").unwrap();
        let r = run(&cfg);
        let bad = r.errors.get(kind).copied().unwrap_or(0);
        assert!(bad > 10, "{kind}:\n{}", r.table());
        assert_eq!(r.total_errors(), bad, "{}", r.table());
        assert!(!r.commands.contains_key("fetch-body"), "{}", r.table());
        // The stream stayed in step: the other command kept working in the same sessions.
        assert!(r.commands["fetch-flags"].count > 10, "{}", r.table());
        assert!(r.commands["login"].count <= 4 * (r.commands["logout"].count + 1));
    }
}

#[test]
fn no_bye_and_ignored_stores_are_told_apart() {
    let fake = fake_imap(Fault::NoOnStore);
    let mut cfg = config(fake.addr);
    cfg.imap_mix = Mix::parse("store:1,noop:1").unwrap();
    let r = run(&cfg);
    assert!(
        r.errors.get("NO store").copied().unwrap_or(0) > 10,
        "{}",
        r.table()
    );
    assert!(r.commands["noop"].count > 10, "{}", r.table());

    let fake = fake_imap(Fault::StoreIgnored);
    let mut cfg = config(fake.addr);
    cfg.imap_mix = Mix::parse("store:1").unwrap();
    let r = run(&cfg);
    let ignored = r.errors.get("store not applied").copied().unwrap_or(0);
    assert!(ignored > 10, "{}", r.table());
    // Some STOREs ask for what is already so (-FLAGS on a message without the flag).
    assert!(r.commands["store"].count > 10, "{}", r.table());
    assert_eq!(r.total_errors(), ignored, "{}", r.table());

    let fake = fake_imap(Fault::ByeAfter(6));
    let mut cfg = config(fake.addr);
    cfg.imap_prefill = 0;
    cfg.imap_mix = Mix::parse("noop:1").unwrap();
    let t = Instant::now();
    let r = run(&cfg);
    assert!(t.elapsed() < Duration::from_secs(4));
    assert!(
        r.errors.get("BYE noop").copied().unwrap_or(0) > 4,
        "{}",
        r.table()
    );
    assert!(r.commands["noop"].count > 4, "{}", r.table());
}

#[test]
fn refused_logins_empty_mailboxes_and_garbage() {
    let fake = fake_imap(Fault::None);
    let mut cfg = config(fake.addr);
    cfg.password = "wrong".into();
    cfg.duration = Duration::from_millis(300);
    let r = run(&cfg);
    assert!(
        r.errors.get("NO login").copied().unwrap_or(0) > 0,
        "{}",
        r.table()
    );
    assert!(
        r.errors.get("prefill: NO login").copied().unwrap_or(0) > 0,
        "{}",
        r.table()
    );
    assert!(r.commands.is_empty());

    let mut cfg = config(fake.addr);
    cfg.imap_prefill = 0;
    cfg.duration = Duration::from_millis(300);
    cfg.users = Users::parse("empty%d:1-4").unwrap();
    let r = run(&cfg);
    assert!(
        r.errors.get("empty mailbox").copied().unwrap_or(0) > 0,
        "{}",
        r.table()
    );

    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(b"220 this is SMTP\r\n");
        }
    });
    let mut cfg = config(addr);
    cfg.imap_prefill = 0;
    cfg.duration = Duration::from_millis(500);
    let t = Instant::now();
    let r = run(&cfg);
    assert!(t.elapsed() < Duration::from_secs(4));
    assert!(
        r.errors.get("garbage reply").copied().unwrap_or(0) > 0,
        "{}",
        r.table()
    );
}

#[test]
fn a_warmup_keeps_the_logins_out_of_the_measurement() {
    let fake = fake_imap(Fault::None);
    let mut cfg = config(fake.addr);
    cfg.warmup = Duration::from_secs(1);
    cfg.duration = Duration::from_secs(1);
    cfg.imap_commands = 1_000_000;
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    assert!(!r.commands.contains_key("login"), "{}", r.table());
    assert!(!r.commands.contains_key("select"), "{}", r.table());
    assert!(r.commands["all"].count > 100, "{}", r.table());
    assert!((0.9..1.5).contains(&r.seconds), "{}", r.seconds);
    // The timeline covers the warm-up too; the measured second is the last one.
    assert_eq!(r.timeline.len(), 2);
    let last = r.timeline[1] as f64;
    let all = r.commands["all"].count as f64;
    assert!((all - last).abs() < 0.2 * last, "{all} vs {last}");
}
