//! The IMAP commands that change the mailbox (APPEND, EXPUNGE) and IDLE, and `verify`
//! through IMAP, against the fake IMAP server (`support/fake_imap.rs`).

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringmail_loadgen::imap::Mix;
use ringmail_loadgen::run::check_stamp;
use ringmail_loadgen::verify::{verify_with, Protocol};
use ringmail_loadgen::{run, Config, Users, Workload};
use support::fake_imap::{fake_imap, Fault};

fn config(addr: SocketAddr, mix: &str) -> Config {
    let mut cfg = Config::new(Workload::Imap, addr);
    cfg.users = Users::parse("user%d:1-4").unwrap();
    cfg.password = "pw".into();
    cfg.connections = 4;
    cfg.duration = Duration::from_millis(1500);
    cfg.timeout = Duration::from_secs(2);
    cfg.imap_prefill = 12;
    cfg.imap_commands = 40;
    cfg.imap_idle = Duration::from_millis(20);
    cfg.size = Some(2000);
    cfg.imap_mix = Mix::parse(mix).unwrap();
    cfg
}

fn count(r: &ringmail_loadgen::Report, c: &str) -> u64 {
    r.commands.get(c).map_or(0, |s| s.count)
}

#[test]
fn append_expunge_and_idle_keep_the_uid_list_in_step_and_the_mailbox_full() {
    let fake = fake_imap(Fault::None);
    let r = run(&config(
        fake.addr,
        "append:3,expunge:4,fetch-body:3,fetch-flags:1,idle:1",
    ));
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    for c in ["append", "expunge", "idle", "fetch-body"] {
        assert!(count(&r, c) > 5, "{c}:\n{}", r.table());
    }
    // APPENDUID and the EXISTS/EXPUNGE responses kept every list exact: no resync needed.
    assert_eq!(count(&r, "resync"), 0, "{}", r.table());
    let mix: u64 = [
        "append",
        "expunge",
        "expunge-held",
        "fetch-body",
        "fetch-flags",
        "idle",
    ]
    .iter()
    .map(|c| count(&r, c))
    .sum();
    assert_eq!(count(&r, "all"), mix, "{}", r.table());
    // With more EXPUNGE than APPEND, mailboxes sit at the prefill, not below it.
    let st = fake.store.lock().unwrap();
    assert_eq!(st.len(), 4);
    for (user, mb) in st.iter() {
        assert!(mb.msgs.len() >= 12, "{user}: {}", mb.msgs.len());
        for m in &mb.msgs {
            assert!(matches!(check_stamp(&m.body), Some(Ok(_))));
        }
    }
}

#[test]
fn without_uidplus_appends_resync_and_expunge_uses_plain_expunge() {
    let fake = fake_imap(Fault::NoUidplus);
    let r = run(&config(fake.addr, "append:2,expunge:1,fetch-body:2"));
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    // No APPENDUID: each APPEND's UID is learnt by a resync (UID SEARCH UID n:*).
    assert!(count(&r, "resync") > 5, "{}", r.table());
    assert!(count(&r, "append") > 5, "{}", r.table());
    assert!(count(&r, "expunge") > 0, "{}", r.table());
}

#[test]
fn an_expunge_that_expunges_nothing_is_caught() {
    let fake = fake_imap(Fault::ExpungeIgnored);
    let r = run(&config(fake.addr, "append:1,expunge:1"));
    let ignored = r.errors.get("expunge not applied").copied().unwrap_or(0);
    assert!(ignored > 5, "{}", r.table());
    assert_eq!(r.total_errors(), ignored, "{}", r.table());
    assert!(count(&r, "append") > 5, "{}", r.table());
}

#[test]
fn idle_waits_for_news_and_its_wait_is_not_latency() {
    // News after 10 ms: IDLE ends then, long before its 5 s limit.
    let fake = fake_imap(Fault::IdleNews);
    let mut cfg = config(fake.addr, "idle:1");
    cfg.imap_prefill = 0;
    cfg.imap_idle = Duration::from_secs(5);
    cfg.duration = Duration::from_secs(1);
    let t = Instant::now();
    let r = run(&cfg);
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    assert!(count(&r, "idle") > 40, "{}", r.table());
    // No news: each IDLE waits its 40 ms, which its latency does not include.
    let fake = fake_imap(Fault::None);
    let mut cfg = config(fake.addr, "idle:1");
    cfg.imap_prefill = 0;
    cfg.imap_idle = Duration::from_millis(40);
    cfg.duration = Duration::from_secs(1);
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    let idle = &r.commands["idle"];
    assert!((40..=110).contains(&idle.count), "{}", r.table());
    assert!(idle.p50_ms < 30.0, "{}", r.table());
}

#[test]
fn verify_through_imap_finds_lost_and_corrupted_messages() {
    let fake = fake_imap(Fault::None);
    let mut cfg = config(fake.addr, "noop:1");
    cfg.imap_prefill = 5;
    cfg.duration = Duration::from_millis(100);
    assert_eq!(run(&cfg).total_errors(), 0);
    let acked: BTreeMap<String, Vec<String>> = [
        (
            "user1".to_string(),
            vec!["prefill-user1-0".into(), "prefill-user1-4".into()],
        ),
        (
            "user2".to_string(),
            vec!["prefill-user2-2".into(), "gone".into()],
        ),
    ]
    .into();
    let timeout = Duration::from_secs(2);
    let v = verify_with(Protocol::Imap, fake.addr, None, "pw", &acked, timeout);
    assert_eq!(v.checked, 4);
    assert_eq!(v.lost, ["user2 gone"]);
    assert!(v.corrupted.is_empty() && v.errors.is_empty(), "{v:?}");

    // A server that corrupts what it returns; one that refuses the login.
    let bad = fake_imap(Fault::CorruptBody);
    cfg.target = bad.addr;
    assert_eq!(run(&cfg).total_errors(), 0);
    let v = verify_with(Protocol::Imap, bad.addr, None, "pw", &acked, timeout);
    assert_eq!(v.corrupted.len(), 3, "{v:?}");
    assert_eq!(v.lost, ["user2 gone"]);
    let v = verify_with(Protocol::Imap, bad.addr, None, "nope", &acked, timeout);
    assert_eq!(v.errors.len(), 2, "{v:?}");
    assert!(v.errors[0].contains("login"), "{v:?}");
}
