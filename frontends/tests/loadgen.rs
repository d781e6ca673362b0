//! ringmail-loadgen against the real server for a few seconds per workload: it must move
//! mail, see no errors, and `verify` must find every acknowledged message intact.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use ringmail_loadgen::imap::Mix;
use ringmail_loadgen::run::Runtime;
use ringmail_loadgen::verify::{verify, verify_with, Protocol};
use ringmail_loadgen::{run, Config, Mixed, Tls, Users, Workload};

#[test]
fn smtp_lmtp_and_pop3_workloads_then_verify() {
    let users: Vec<String> = (1..=10).map(|i| format!("bench{i}@example.org")).collect();
    let refs: Vec<&str> = users.iter().map(|s| s.as_str()).collect();
    // These workloads log in without TLS.
    let srv = Server::with_config(&refs, "[auth]\ndanger_plaintext_without_tls = true\n");
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let users = Users::parse("bench%d@example.org:1-10").unwrap();
    let mut acked = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (workload, port, seed) in [(Workload::Smtp, srv.smtp, 1), (Workload::Lmtp, srv.lmtp, 2)] {
        let mut cfg = Config::new(workload, addr(port));
        cfg.users = users.clone();
        cfg.connections = 8;
        cfg.duration = Duration::from_secs(2);
        cfg.recipients = 2;
        cfg.seed = seed;
        let r = run(&cfg);
        assert_eq!(r.total_errors(), 0, "{}", r.table());
        assert!(r.commands["deliver"].count > 20, "{}", r.table());
        for (u, ids) in r.acked {
            acked.entry(u).or_default().extend(ids);
        }
    }
    let mut cfg = Config::new(Workload::Pop3, addr(srv.pop3));
    cfg.users = users;
    cfg.password = "secret".into();
    cfg.connections = 4;
    cfg.duration = Duration::from_secs(2);
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    assert!(r.commands["retr"].count > 20, "{}", r.table());
    let v = verify(addr(srv.pop3), "secret", &acked, Duration::from_secs(10));
    assert!(v.clean(), "{v:?}");
    assert!(v.checked > 80, "{}", v.checked);
}

/// Both runtimes move mail without errors: 48 connections (SMTP, then IMAP) as coroutines on
/// one thread, then one thread per connection; everything acknowledged is then verified.
#[test]
fn per_core_and_thread_runtimes() {
    let users: Vec<String> = (1..=12).map(|i| format!("bench{i}@example.org")).collect();
    let refs: Vec<&str> = users.iter().map(|s| s.as_str()).collect();
    let srv = Server::with_config(&refs, "[auth]\ndanger_plaintext_without_tls = true\n");
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let mut acked = BTreeMap::<String, Vec<String>>::new();
    for (seed, runtime) in [(1, Runtime::PerCore { workers: 1 }), (2, Runtime::Threads)] {
        let mut cfg = Config::new(Workload::Smtp, addr(srv.smtp));
        cfg.users = Users::parse("bench%d@example.org:1-12").unwrap();
        cfg.connections = 48;
        cfg.runtime = runtime;
        cfg.duration = Duration::from_secs(2);
        cfg.seed = seed;
        let r = run(&cfg);
        delivered(&r, &mut acked);
        // Every connection got its turn.
        assert!(r.commands["connect"].count >= 48, "{}", r.table());
    }
    let mut cfg = Config::new(Workload::Imap, addr(srv.imap));
    cfg.users = Users::parse("bench%d@example.org:1-12").unwrap();
    cfg.password = "secret".into();
    cfg.connections = 24;
    cfg.runtime = Runtime::PerCore { workers: 1 };
    cfg.duration = Duration::from_secs(2);
    cfg.imap_commands = 20;
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    assert!(r.commands["login"].count >= 24, "{}", r.table());
    assert!(r.commands["all"].count > 100, "{}", r.table());
    let v = verify(addr(srv.pop3), "secret", &acked, Duration::from_secs(10));
    assert!(v.clean(), "{v:?}");
}

#[test]
fn imap_workload_with_prefill() {
    let users: Vec<String> = (1..=8).map(|i| format!("bench{i}@example.org")).collect();
    let refs: Vec<&str> = users.iter().map(|s| s.as_str()).collect();
    // LOGIN without TLS.
    let srv = Server::with_config(&refs, "[auth]\ndanger_plaintext_without_tls = true\n");
    let mut cfg = Config::new(Workload::Imap, SocketAddr::from(([127, 0, 0, 1], srv.imap)));
    cfg.users = Users::parse("bench%d@example.org:1-8").unwrap();
    cfg.password = "secret".into();
    cfg.connections = 4;
    cfg.duration = Duration::from_secs(2);
    cfg.imap_prefill = 20;
    cfg.imap_commands = 50;
    cfg.size = Some(4096);
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    assert!(r.commands["all"].count > 20, "{}", r.table());
    for c in [
        "login",
        "select",
        "fetch-flags",
        "fetch-body",
        "search-unseen",
        "search-subject",
        "store",
        "noop",
    ] {
        assert!(
            r.commands.get(c).is_some_and(|s| s.count > 0),
            "{c}:\n{}",
            r.table()
        );
    }
}

fn delivered(r: &ringmail_loadgen::Report, acked: &mut BTreeMap<String, Vec<String>>) {
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    assert!(r.commands["deliver"].count > 20, "{}", r.table());
    for (u, ids) in &r.acked {
        acked
            .entry(u.clone())
            .or_default()
            .extend(ids.iter().cloned());
    }
}

/// TLS on every protocol: implicit on the smtps, imaps and pop3s ports, STARTTLS (STLS) on
/// the others. This server refuses logins without TLS, so every login below went over TLS.
/// Deliveries (with AUTH on the submission ports, to distinct recipients on port 25) are
/// then verified through POP3 and through IMAP.
#[test]
fn tls_everywhere_auth_and_verify_through_pop3_and_imap() {
    let users: Vec<String> = (1..=8).map(|i| format!("bench{i}@example.org")).collect();
    let refs: Vec<&str> = users.iter().map(|s| s.as_str()).collect();
    let srv = Server::with_config(&refs, "");
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let ip = addr(0).ip();
    let base = |workload, port| {
        let mut cfg = Config::new(workload, addr(port));
        cfg.users = Users::parse("bench%d@example.org:1-8").unwrap();
        cfg.password = "secret".into();
        cfg.connections = 4;
        cfg.duration = Duration::from_secs(2);
        cfg.size = Some(3000);
        cfg
    };
    let mut acked = BTreeMap::new();
    let mut cfg = base(Workload::Smtp, srv.smtp);
    cfg.tls = Some(Tls::starttls(ip));
    cfg.recipients = 3;
    cfg.seed = 1;
    delivered(&run(&cfg), &mut acked);
    for (port, tls, seed) in [
        (srv.submission, Tls::starttls(ip), 2),
        (srv.smtps, Tls::implicit(ip), 3),
    ] {
        let mut cfg = base(Workload::Smtp, port);
        cfg.tls = Some(tls);
        cfg.smtp_auth = true;
        cfg.seed = seed;
        delivered(&run(&cfg), &mut acked);
    }
    let total: usize = acked.values().map(Vec::len).sum();
    let timeout = Duration::from_secs(10);
    for (protocol, port, tls) in [
        (Protocol::Pop3, srv.pop3s, Tls::implicit(ip)),
        (Protocol::Imap, srv.imap, Tls::starttls(ip)),
    ] {
        let v = verify_with(protocol, addr(port), Some(&tls), "secret", &acked, timeout);
        assert!(v.clean(), "{protocol:?}: {v:?}");
        assert_eq!(v.checked, total, "{protocol:?}");
    }

    // POP3 with STLS; then over implicit TLS, deleting one message per login.
    let mut cfg = base(Workload::Pop3, srv.pop3);
    cfg.tls = Some(Tls::starttls(ip));
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    assert!(r.commands["retr"].count > 20, "{}", r.table());
    let mut cfg = base(Workload::Pop3, srv.pop3s);
    cfg.tls = Some(Tls::implicit(ip));
    cfg.pop3_dele = 1;
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    assert_eq!(
        r.commands["dele"].count,
        r.commands["quit"].count,
        "{}",
        r.table()
    );

    // IMAP over implicit TLS with APPEND, EXPUNGE and IDLE; then STARTTLS, default mix.
    let mut cfg = base(Workload::Imap, srv.imaps);
    cfg.tls = Some(Tls::implicit(ip));
    cfg.imap_mix =
        Mix::parse("fetch-body:4,fetch-flags:2,store:2,append:3,expunge:3,idle:1").unwrap();
    cfg.imap_idle = Duration::from_millis(50);
    cfg.imap_prefill = 10;
    cfg.imap_commands = 50;
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    for c in ["append", "expunge", "idle", "fetch-body"] {
        assert!(
            r.commands.get(c).is_some_and(|s| s.count > 0),
            "{c}:\n{}",
            r.table()
        );
    }
    let mut cfg = base(Workload::Imap, srv.imap);
    cfg.tls = Some(Tls::starttls(ip));
    cfg.imap_commands = 50;
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    assert!(r.commands["all"].count > 20, "{}", r.table());
}

/// A provider's day in one run: deliveries, IMAP users and POP3 users at 4:3:1, each kind
/// against its own port; then everything delivered is verified through IMAP and POP3.
#[test]
fn mixed_workload_then_verify_through_imap_and_pop3() {
    let users: Vec<String> = (1..=8).map(|i| format!("bench{i}@example.org")).collect();
    let refs: Vec<&str> = users.iter().map(|s| s.as_str()).collect();
    let srv = Server::with_config(&refs, "[auth]\ndanger_plaintext_without_tls = true\n");
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let mut cfg = Config::new(Workload::Mixed, addr(srv.smtp));
    cfg.users = Users::parse("bench%d@example.org:1-8").unwrap();
    cfg.password = "secret".into();
    cfg.connections = 8;
    cfg.duration = Duration::from_secs(2);
    cfg.recipients = 2;
    cfg.size = Some(3000);
    cfg.imap_prefill = 10;
    cfg.imap_commands = 50;
    cfg.mixed = Some(Mixed {
        shares: Mixed::parse_ratio("smtp:4,imap:3,pop3:1").unwrap(),
        targets: vec![
            (Workload::Smtp, addr(srv.smtp)),
            (Workload::Imap, addr(srv.imap)),
            (Workload::Pop3, addr(srv.pop3)),
        ],
    });
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    for (c, min) in [("smtp.deliver", 20), ("imap.all", 20), ("pop3.retr", 5)] {
        assert!(
            r.commands.get(c).is_some_and(|s| s.count >= min),
            "{c}:\n{}",
            r.table()
        );
    }
    let total: usize = r.acked.values().map(Vec::len).sum();
    assert_eq!(total as u64, 2 * r.commands["smtp.deliver"].count);
    for (protocol, port) in [(Protocol::Imap, srv.imap), (Protocol::Pop3, srv.pop3)] {
        let v = verify_with(
            protocol,
            addr(port),
            None,
            "secret",
            &r.acked,
            Duration::from_secs(10),
        );
        assert!(v.clean(), "{protocol:?}: {v:?}");
        assert_eq!(v.checked, total, "{protocol:?}");
    }
}

/// Several targets (the nodes of a cluster): the connections are spread over them round
/// robin, and every acknowledged delivery reached one of them. Two separate servers stand
/// in for two nodes here; each stores what it acknowledged.
#[test]
fn connections_are_spread_over_several_targets() {
    let users: Vec<String> = (1..=4).map(|i| format!("bench{i}@example.org")).collect();
    let refs: Vec<&str> = users.iter().map(|s| s.as_str()).collect();
    let plain = "[auth]\ndanger_plaintext_without_tls = true\n";
    let a = Server::with_config(&refs, plain);
    let b = Server::with_config(&refs, plain);
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let mut cfg = Config::new(Workload::Smtp, addr(a.smtp));
    cfg.more_targets = vec![addr(b.smtp)];
    cfg.users = Users::parse("bench%d@example.org:1-4").unwrap();
    cfg.connections = 4;
    cfg.duration = Duration::from_secs(2);
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    assert!(
        r.target.contains(&a.smtp.to_string()) && r.target.contains(&b.smtp.to_string()),
        "{}",
        r.target
    );
    let acked: usize = r.acked.values().map(Vec::len).sum();
    let on_a = a.metric("ringmail_messages_delivered_total", "");
    let on_b = b.metric("ringmail_messages_delivered_total", "");
    assert!(on_a > 10.0 && on_b > 10.0, "{on_a} on a, {on_b} on b");
    assert_eq!(on_a + on_b, acked as f64);
    // Each server holds exactly what was acknowledged by it: verify through each finds
    // every message of the other missing, and none corrupted.
    let va = verify(addr(a.pop3), "secret", &r.acked, Duration::from_secs(10));
    assert!(va.corrupted.is_empty() && va.errors.is_empty(), "{va:?}");
    assert_eq!(va.checked, acked);
    assert_eq!(va.lost.len(), on_b as usize, "{va:?}");
}
