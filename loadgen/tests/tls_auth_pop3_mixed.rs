//! TLS (STARTTLS, implicit, with and without certificate checks), SMTP AUTH and distinct
//! recipients, POP3 LIST/DELE/QUIT, and the mixed workload, against fake servers
//! (`support/`).

mod support;

use std::time::{Duration, Instant};

use ringmail_loadgen::{run, Config, Mixed, Tls, Users, Workload};
use support::fake_imap::{fake_imap, Fault};
use support::fake_pop3::fake_pop3;
use support::fake_smtp::{fake_smtp, Security};

fn smtp_config(addr: std::net::SocketAddr) -> Config {
    let mut cfg = Config::new(Workload::Smtp, addr);
    cfg.users = Users::parse("user%d:1-5").unwrap();
    cfg.password = "pw".into();
    cfg.connections = 3;
    cfg.duration = Duration::from_millis(700);
    cfg.timeout = Duration::from_secs(2);
    cfg.size = Some(1500);
    cfg
}

/// POP3 against `users` accounts of the fake server (user1.., password "pw").
fn pop3_config(addr: std::net::SocketAddr, users: u32) -> Config {
    let mut cfg = Config::new(Workload::Pop3, addr);
    cfg.users = Users::parse(&format!("user%d:1-{users}")).unwrap();
    cfg.password = "pw".into();
    cfg
}

/// Checks an error-free POP3 run made more than 3 sessions, each with one login, LIST and
/// QUIT and `retrs` RETRs; returns the session count.
fn steps_per_session(r: &ringmail_loadgen::Report, retrs: u64) -> u64 {
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    let sessions = r.commands["session"].count;
    assert!(sessions > 3, "{}", r.table());
    for c in ["login", "list", "quit"] {
        assert_eq!(r.commands[c].count, sessions, "{c}:\n{}", r.table());
    }
    assert_eq!(r.commands["retr"].count, retrs * sessions, "{}", r.table());
    sessions
}

#[test]
fn starttls_with_auth_and_distinct_recipients() {
    let fake = fake_smtp(Security::StartTls);
    let mut cfg = smtp_config(fake.addr);
    cfg.tls = Some(Tls::starttls(fake.addr.ip()));
    cfg.smtp_auth = true;
    cfg.recipients = 3;
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    let envs = fake.envelopes.lock().unwrap();
    assert!(envs.len() > 20, "{}", r.table());
    let users = Users::parse("user%d:1-5").unwrap();
    for e in envs.iter() {
        assert!(e.tls, "{e:?}");
        // Each connection logs in as its own user and sends from that address.
        assert_eq!(e.auth.as_deref(), Some(e.from.as_str()), "{e:?}");
        assert!((0..3).any(|w| users.get(w) == e.from), "{e:?}");
        let mut rcpts = e.rcpts.clone();
        rcpts.sort();
        rcpts.dedup();
        assert_eq!(rcpts.len(), 3, "{e:?}");
    }
    // The report's acknowledged ids count each recipient.
    let acked: usize = r.acked.values().map(Vec::len).sum();
    assert_eq!(acked, 3 * r.commands["deliver"].count as usize);
}

#[test]
fn implicit_tls_and_certificate_checks() {
    let fake = fake_smtp(Security::Implicit);
    let mut cfg = smtp_config(fake.addr);
    cfg.tls = Some(Tls::implicit(fake.addr.ip()));
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    assert!(fake
        .envelopes
        .lock()
        .unwrap()
        .iter()
        .all(|e| e.tls && e.auth.is_none()));

    // Checked against the server's own certificate (named "localhost"): accepted.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &fake.cert_pem).unwrap();
    cfg.tls = Some(Tls::new(false, true, Some(&ca), "localhost").unwrap());
    cfg.duration = Duration::from_millis(300);
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    assert!(r.commands["deliver"].count > 0);

    // Under another name, or trusting another certificate: refused, as a TLS error.
    for tls in [
        Tls::new(false, true, Some(&ca), "mail.example.org").unwrap(),
        {
            let other = fake_smtp(Security::Implicit);
            std::fs::write(&ca, &other.cert_pem).unwrap();
            Tls::new(false, true, Some(&ca), "localhost").unwrap()
        },
    ] {
        cfg.tls = Some(tls);
        let r = run(&cfg);
        assert!(
            r.errors.get("tls").copied().unwrap_or(0) > 0,
            "{}",
            r.table()
        );
        assert!(r.commands.is_empty(), "{}", r.table());
    }
    assert!(Tls::new(false, true, Some(&dir.path().join("none.pem")), "x").is_err());
}

#[test]
fn starttls_refused_or_absent_is_a_clear_error() {
    // A server without STARTTLS (it answers 502), and plain TCP to an implicit-TLS port.
    let fake = fake_smtp(Security::Plain);
    let mut cfg = smtp_config(fake.addr);
    cfg.tls = Some(Tls::starttls(fake.addr.ip()));
    let t = Instant::now();
    let r = run(&cfg);
    assert!(t.elapsed() < Duration::from_secs(4));
    assert!(
        r.errors.get("tls").copied().unwrap_or(0) > 0,
        "{}",
        r.table()
    );
    assert!(fake.envelopes.lock().unwrap().is_empty());

    let tls_port = fake_smtp(Security::Implicit);
    let mut cfg = smtp_config(tls_port.addr);
    cfg.timeout = Duration::from_millis(300);
    let r = run(&cfg);
    assert!(r.commands.is_empty(), "{}", r.table());
    assert!(r.total_errors() > 0, "{}", r.table());

    let pop = fake_pop3(2, 3);
    let mut cfg = pop3_config(pop.addr, 2);
    cfg.connections = 1;
    cfg.duration = Duration::from_millis(300);
    cfg.tls = Some(Tls::starttls(pop.addr.ip()));
    let r = run(&cfg);
    assert!(
        r.errors.get("tls").copied().unwrap_or(0) > 0,
        "{}",
        r.table()
    );
    assert!(r.commands.is_empty(), "{}", r.table());
}

#[test]
fn pop3_lists_deletes_and_commits_with_quit() {
    let pop = fake_pop3(4, 60);
    let mut cfg = pop3_config(pop.addr, 4);
    cfg.connections = 2;
    cfg.duration = Duration::from_millis(500);
    cfg.pop3_retrs = 2;
    cfg.pop3_dele = 3;
    // Paced, so the 240 messages outlast the run.
    cfg.rate = Some(40.0);
    let r = run(&cfg);
    let sessions = steps_per_session(&r, 2);
    assert_eq!(r.commands["dele"].count, 3 * sessions, "{}", r.table());
    // Every DELE was committed by its QUIT (the run may end in the middle of a session).
    let left: usize = pop.maildrops.lock().unwrap().values().map(Vec::len).sum();
    let deleted = 4 * 60 - left as u64;
    assert!(
        (3 * sessions..=3 * sessions + 6).contains(&deleted),
        "{deleted} deleted, {sessions} sessions"
    );
}

/// A session that started in the warm-up records none of its steps: the sub-steps (login,
/// RETR, QUIT) count exactly for the measured sessions, like the sessions themselves.
#[test]
fn warm_up_sessions_record_no_steps() {
    let pop = fake_pop3(4, 60);
    let mut cfg = pop3_config(pop.addr, 4);
    cfg.connections = 2;
    cfg.warmup = Duration::from_millis(400);
    cfg.duration = Duration::from_millis(400);
    cfg.pop3_retrs = 3;
    cfg.rate = Some(40.0);
    let r = run(&cfg);
    steps_per_session(&r, 3);
}

#[test]
fn mixed_runs_each_kind_against_its_target_with_prefixed_rows() {
    let smtp = fake_smtp(Security::Plain);
    let imap = fake_imap(Fault::None);
    let pop = fake_pop3(6, 10);
    let mut cfg = Config::new(Workload::Mixed, smtp.addr);
    cfg.users = Users::parse("user%d:1-6").unwrap();
    cfg.password = "pw".into();
    cfg.connections = 6;
    cfg.duration = Duration::from_millis(1000);
    cfg.timeout = Duration::from_secs(2);
    cfg.size = Some(1500);
    cfg.imap_prefill = 5;
    cfg.mixed = Some(Mixed {
        shares: Mixed::parse_ratio("smtp:50,imap:30,pop3:20").unwrap(),
        targets: vec![
            (Workload::Smtp, smtp.addr),
            (Workload::Imap, imap.addr),
            (Workload::Pop3, pop.addr),
        ],
    });
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    assert_eq!(r.workload, "mixed");
    assert!(
        r.target.contains(&format!("imap {}", imap.addr)),
        "{}",
        r.target
    );
    for c in [
        "smtp.deliver",
        "smtp.connect",
        "imap.login",
        "imap.select",
        "imap.fetch-body",
        "imap.all",
        "pop3.login",
        "pop3.retr",
        "pop3.session",
    ] {
        assert!(
            r.commands.get(c).is_some_and(|s| s.count > 0),
            "{c}:\n{}",
            r.table()
        );
    }
    assert!(r.commands.keys().all(|k| k.contains('.')), "{}", r.table());
    // The IMAP prefill went to the IMAP target, and deliveries to the SMTP one.
    assert!(!smtp.envelopes.lock().unwrap().is_empty());
    assert_eq!(imap.store.lock().unwrap().len(), 6);
    let acked: usize = r.acked.values().map(Vec::len).sum();
    assert_eq!(acked as u64, r.commands["smtp.deliver"].count);

    // A bad mixed configuration is reported, not a panic.
    cfg.connections = 2;
    let r = run(&cfg);
    assert!(
        r.errors.keys().any(|k| k.starts_with("config:")),
        "{}",
        r.table()
    );
}
