//! A closed-loop SMTP/LMTP delivery benchmark client: N connections, each sending messages
//! back to back for a fixed time; reports messages/s and the latency from the end of DATA
//! (the final dot) to the server's reply. Loopback targets only.
//!
//! ```text
//! smtp-bench --target 127.0.0.1:2525 [--lmtp] [--connections 50] [--seconds 10]
//!            [--size 4096] [--rcpt user@example.org] [--label NAME]
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringmail_benches::mailgen::MailGen;

struct Opts {
    target: SocketAddr,
    lmtp: bool,
    connections: usize,
    seconds: u64,
    size: usize,
    /// A recipient, or a pattern with `%d` filled from 0..users.
    rcpt: String,
    users: usize,
    label: String,
}

fn opts() -> Opts {
    let mut o = Opts {
        target: "127.0.0.1:2525".parse().unwrap(),
        lmtp: false,
        connections: 50,
        seconds: 10,
        size: 4096,
        rcpt: "bench@example.org".into(),
        users: 1,
        label: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut v = || it.next().expect("a value");
        match a.as_str() {
            "--target" => o.target = v().parse().expect("IP:PORT"),
            "--lmtp" => o.lmtp = true,
            "--connections" => o.connections = v().parse().expect("number"),
            "--seconds" => o.seconds = v().parse().expect("number"),
            "--size" => o.size = v().parse().expect("number"),
            "--rcpt" => o.rcpt = v(),
            "--users" => o.users = v().parse().expect("number"),
            "--label" => o.label = v(),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(
        o.target.ip().is_loopback(),
        "load tests target loopback only"
    );
    o
}

fn reply(r: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return Ok(all);
        }
    }
}

fn worker(o: &Opts, id: usize, stop: &AtomicBool) -> (Vec<Duration>, u64) {
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut g = MailGen::new(id as u64);
    let bodies: Vec<Vec<u8>> = (0..16)
        .map(|_| {
            // Dot-stuffed once here; the generator's text never starts a line with a dot.
            let mut m = g.message_of_size(o.size);
            m.extend_from_slice(b".\r\n");
            m
        })
        .collect();
    'outer: while !stop.load(Ordering::Relaxed) {
        let Ok(s) = TcpStream::connect(o.target) else {
            errors += 1;
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        s.set_nodelay(true).ok();
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let hello = if o.lmtp {
            "LHLO bench.example\r\n"
        } else {
            "EHLO bench.example\r\n"
        };
        if reply(&mut r).is_err()
            || w.write_all(hello.as_bytes()).is_err()
            || reply(&mut r).is_err()
        {
            errors += 1;
            continue;
        }
        let mut k = 0;
        while !stop.load(Ordering::Relaxed) {
            // Pipelined envelope, then the body.
            let rcpt = o
                .rcpt
                .replace("%d", &((id * 7919 + k) % o.users.max(1)).to_string());
            let env = format!("MAIL FROM:<load@bench.example>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n");
            if w.write_all(env.as_bytes()).is_err() {
                errors += 1;
                continue 'outer;
            }
            let ok = (0..3).all(|_| {
                reply(&mut r)
                    .map(|l| l.starts_with('2') || l.starts_with("354"))
                    .unwrap_or(false)
            });
            if !ok {
                errors += 1;
                continue 'outer;
            }
            let body = &bodies[k % bodies.len()];
            k += 1;
            if w.write_all(body).is_err() {
                errors += 1;
                continue 'outer;
            }
            let t = Instant::now();
            match reply(&mut r) {
                Ok(l) if l.starts_with("250") => lat.push(t.elapsed()),
                _ => {
                    errors += 1;
                    continue 'outer;
                }
            }
        }
        let _ = w.write_all(b"QUIT\r\n");
    }
    (lat, errors)
}

fn main() {
    let o = Arc::new(opts());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = (0..o.connections)
        .map(|i| {
            let (o, stop) = (o.clone(), stop.clone());
            std::thread::spawn(move || worker(&o, i, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(o.seconds));
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (l, e) = t.join().unwrap();
        lat.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let p = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(0.0)
    };
    println!(
        "{}\t{:.0}\t{:.2}\t{:.2}\t{}\t{}",
        if o.label.is_empty() {
            o.target.to_string()
        } else {
            o.label.clone()
        },
        lat.len() as f64 / elapsed,
        p(0.5),
        p(0.99),
        lat.len(),
        errors
    );
}
