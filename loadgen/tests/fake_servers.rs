//! The load generator against servers that misbehave on purpose: one that stalls, one that
//! is not there, one that answers garbage. Every run must end on time with clear errors,
//! and open-loop latency must include the stall.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringmail_loadgen::{run, Config, Workload};

/// A minimal SMTP server; every `stall_every`-th message waits `stall` before its 250.
fn smtp_server(stall_every: u64, stall: Duration) -> SocketAddr {
    smtp_server_counted(stall_every, stall).0
}

/// What [`smtp_server_counted`] saw: connections accepted, messages, QUITs.
#[derive(Default)]
struct Seen {
    connections: AtomicU64,
    messages: AtomicU64,
    quits: AtomicU64,
}

fn smtp_server_counted(stall_every: u64, stall: Duration) -> (SocketAddr, Arc<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            seen2.connections.fetch_add(1, Ordering::Relaxed);
            let seen = seen2.clone();
            std::thread::spawn(move || {
                s.set_nodelay(true).unwrap();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let _ = w.write_all(b"220 fake\r\n");
                let mut in_data = false;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let reply: &[u8] = if in_data {
                        if line != ".\r\n" {
                            continue;
                        }
                        in_data = false;
                        if seen.messages.fetch_add(1, Ordering::Relaxed) % stall_every
                            == stall_every - 1
                        {
                            std::thread::sleep(stall);
                        }
                        b"250 ok\r\n"
                    } else if line.starts_with("DATA") {
                        in_data = true;
                        b"354 go\r\n"
                    } else if line.starts_with("QUIT") {
                        seen.quits.fetch_add(1, Ordering::Relaxed);
                        let _ = w.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    if w.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[test]
fn open_loop_latency_includes_a_stall() {
    let addr = smtp_server(100, Duration::from_millis(400));
    let mut cfg = Config::new(Workload::Smtp, addr);
    cfg.connections = 4;
    cfg.rate = Some(200.0);
    cfg.duration = Duration::from_secs(3);
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    let d = &r.commands["deliver"];
    assert!(d.count > 400, "{}", r.table());
    // The stalled message and every one scheduled behind it on that connection were late:
    // with 200/s over 4 connections (50/s each), a 400 ms stall delays ~20 requests, over
    // 3% of them, so p99 must be at least a good part of the stall.
    assert!(
        d.p99_ms >= 200.0,
        "p99 {} ms hides the stall:\n{}",
        d.p99_ms,
        r.table()
    );
    assert!(d.max_ms >= 390.0, "{}", r.table());
}

#[test]
fn an_unreachable_target_is_reported_and_the_run_ends() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = Config::new(Workload::Lmtp, SocketAddr::from(([127, 0, 0, 1], port)));
    cfg.duration = Duration::from_secs(1);
    cfg.connections = 2;
    let t = Instant::now();
    let r = run(&cfg);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        r.errors.get("connect").copied().unwrap_or(0) > 0,
        "{}",
        r.table()
    );
    assert!(r.commands.is_empty());
}

#[test]
fn a_server_answering_garbage_is_reported_and_the_run_ends() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let _ = s.write_all(b"HELLO THIS IS NOT SMTP\r\n");
        }
    });
    let mut cfg = Config::new(Workload::Smtp, addr);
    cfg.duration = Duration::from_secs(1);
    cfg.connections = 2;
    cfg.timeout = Duration::from_secs(1);
    let t = Instant::now();
    let r = run(&cfg);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        r.errors.get("garbage reply").copied().unwrap_or(0) > 0,
        "{}",
        r.table()
    );
}

/// Against the null server the generator measures its own cost per request, and the report
/// can be drawn.
#[test]
fn own_cost_against_a_null_server_and_a_plot() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || ringmail_loadgen::null_server::serve(l, true));
    let mut cfg = Config::new(Workload::Lmtp, addr);
    cfg.connections = 4;
    cfg.recipients = 2;
    cfg.duration = Duration::from_secs(2);
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    assert!(r.commands["deliver"].count > 100, "{}", r.table());
    assert!(
        r.client_cpu_us_per_request > 0.0 && r.client_cpu_us_per_request < 10_000.0,
        "{}",
        r.table()
    );
    assert_eq!(r.timeline.len(), 2);
    assert!(r.timeline.iter().all(|&c| c > 0));
    let svg = ringmail_loadgen::plot::svg(&r);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), r.percentiles.len() + 1);
    // The report round-trips through JSON, which is what `plot --report` reads.
    let back: ringmail_loadgen::Report =
        serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(ringmail_loadgen::plot::svg(&back), svg);
}

#[test]
fn messages_per_connection_quits_and_reconnects() {
    let (addr, seen) = smtp_server_counted(u64::MAX, Duration::ZERO);
    let mut cfg = Config::new(Workload::Smtp, addr);
    cfg.connections = 3;
    cfg.messages_per_connection = 2;
    cfg.duration = Duration::from_secs(1);
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    let delivered = r.commands["deliver"].count;
    let (conns, msgs, quits) = (
        seen.connections.load(Ordering::Relaxed),
        seen.messages.load(Ordering::Relaxed),
        seen.quits.load(Ordering::Relaxed),
    );
    assert!(delivered > 20, "{}", r.table());
    assert_eq!(msgs, delivered);
    // Two messages per session: every session but the last of each connection ends with
    // QUIT after its second message, and the last one quits at the end of the run.
    assert!(
        conns * 2 >= msgs && conns * 2 <= msgs + 2 * 3,
        "{conns} sessions, {msgs} messages"
    );
    assert_eq!(quits, conns, "every session ends with QUIT");
    assert_eq!(r.commands["connect"].count, conns);
}
