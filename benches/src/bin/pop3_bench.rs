//! A closed-loop POP3 retrieval benchmark client: N connections, connection `i` logs in as
//! the account made from `--user` (with `%d` = i) and RETRs random messages of its
//! maildrop for a fixed time; reports retrievals/s and RETR latency. Loopback only.
//!
//! ```text
//! pop3-bench --target 127.0.0.1:2110 --user 'bench%d@example.org' --password PW
//!            [--connections 50] [--seconds 10] [--retrs-per-login 1000] [--label NAME]
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Opts {
    target: SocketAddr,
    user: String,
    password: String,
    connections: usize,
    seconds: u64,
    /// RETRs per login: logins are argon2-slow on purpose, and the figure is about retrieval.
    per_login: usize,
    label: String,
}

fn opts() -> Opts {
    let mut o = Opts {
        target: "127.0.0.1:2110".parse().unwrap(),
        user: "bench%d@example.org".into(),
        password: "bench".into(),
        connections: 50,
        seconds: 10,
        per_login: 1000,
        label: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut v = || it.next().expect("a value");
        match a.as_str() {
            "--target" => o.target = v().parse().expect("IP:PORT"),
            "--user" => o.user = v(),
            "--password" => o.password = v(),
            "--connections" => o.connections = v().parse().expect("number"),
            "--seconds" => o.seconds = v().parse().expect("number"),
            "--label" => o.label = v(),
            "--retrs-per-login" => o.per_login = v().parse().expect("number"),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(
        o.target.ip().is_loopback(),
        "load tests target loopback only"
    );
    o
}

fn line(r: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut l = String::new();
    if r.read_line(&mut l)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(l)
}

/// Reads a multi-line response body up to the terminating ".", returning its size.
fn body(r: &mut BufReader<TcpStream>) -> std::io::Result<usize> {
    let mut n = 0;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if buf == b".\r\n" {
            return Ok(n);
        }
        n += buf.len();
    }
}

fn cmd(w: &mut TcpStream, r: &mut BufReader<TcpStream>, c: &str) -> std::io::Result<String> {
    w.write_all(c.as_bytes())?;
    w.write_all(b"\r\n")?;
    line(r)
}

fn worker(o: &Opts, id: usize, stop: &AtomicBool) -> (Vec<Duration>, u64) {
    let mut lat = Vec::new();
    let mut errors = 0u64;
    let user = o.user.replace("%d", &id.to_string());
    let mut x = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while !stop.load(Ordering::Relaxed) {
        let mut run = || -> std::io::Result<()> {
            let s = TcpStream::connect(o.target)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            let mut w = s.try_clone()?;
            let mut r = BufReader::new(s);
            let bad = || std::io::Error::other("unexpected reply");
            if !line(&mut r)?.starts_with("+OK")
                || !cmd(&mut w, &mut r, &format!("USER {user}"))?.starts_with("+OK")
            {
                return Err(bad());
            }
            if !cmd(&mut w, &mut r, &format!("PASS {}", o.password))?.starts_with("+OK") {
                return Err(bad());
            }
            let stat = cmd(&mut w, &mut r, "STAT")?;
            let count: u64 = stat
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .ok_or_else(bad)?;
            if count == 0 {
                return Err(bad());
            }
            for _ in 0..o.per_login {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let t = Instant::now();
                if !cmd(&mut w, &mut r, &format!("RETR {}", x % count + 1))?.starts_with("+OK") {
                    return Err(bad());
                }
                body(&mut r)?;
                lat.push(t.elapsed());
            }
            let _ = cmd(&mut w, &mut r, "QUIT");
            Ok(())
        };
        if run().is_err() {
            errors += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
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
    let label = if o.label.is_empty() {
        o.target.to_string()
    } else {
        o.label.clone()
    };
    println!(
        "{label}\t{:.0}\t{:.2}\t{:.2}\t{}\t{errors}",
        lat.len() as f64 / elapsed,
        p(0.5),
        p(0.99),
        lat.len()
    );
}
