//! ringmail-loadgen against the real server for a few seconds per workload: it must move
//! mail, see no errors, and `verify` must find every acknowledged message intact.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use ringmail_loadgen::verify::verify;
use ringmail_loadgen::{run, Config, Users, Workload};

#[test]
fn smtp_lmtp_and_pop3_workloads_then_verify() {
    let users: Vec<String> = (1..=10).map(|i| format!("bench{i}@example.org")).collect();
    let refs: Vec<&str> = users.iter().map(|s| s.as_str()).collect();
    // The workloads log in without TLS (the loadgen speaks plain TCP).
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

#[test]
fn imap_workload_with_prefill() {
    let users: Vec<String> = (1..=8).map(|i| format!("bench{i}@example.org")).collect();
    let refs: Vec<&str> = users.iter().map(|s| s.as_str()).collect();
    // LOGIN without TLS, as the loadgen speaks plain TCP.
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
