//! `ringmail-loadgen WORKLOAD --target HOST:PORT …`: see `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ringmail_loadgen::{run, verify, Config, Report, Users, Workload};

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Smtp,
    Lmtp,
    Pop3,
    /// Log in, SELECT INBOX, run --commands-per-login commands from --imap-mix, log out.
    Imap,
    /// Check through POP3 that everything a previous run's report says was acknowledged is
    /// stored, byte-identical.
    Verify,
    /// Draw a report (--report) as an SVG (--out): latency percentiles, throughput over time.
    Plot,
    /// Serve as a null SMTP server (LMTP with --lmtp) on --target, to measure the generator.
    NullServer,
}

#[derive(Parser)]
#[command(
    name = "ringmail-loadgen",
    version,
    about = "Mail load generator: SMTP, LMTP, POP3, IMAP, verify"
)]
struct Cli {
    workload: Kind,
    /// The server, on loopback (127.0.0.0/8 or ::1); for null-server, where to listen.
    #[arg(long)]
    target: Option<SocketAddr>,
    /// Users: a pattern with %d and a range (bench%d@example.org:1-100), or one address.
    #[arg(long, default_value = "bench%d@example.org:1-100")]
    users: String,
    #[arg(long, default_value = "bench")]
    password: String,
    #[arg(long, default_value_t = 10)]
    connections: usize,
    /// Requests per second (open loop, latency from each request's intended start);
    /// without it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Run this many seconds first without measuring (connections, logins, caches warm
    /// up); errors in it still count.
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// An mbox file or a Maildir directory of messages to send instead of generated ones.
    #[arg(long)]
    messages: Option<PathBuf>,
    /// Recipients per message.
    #[arg(long, default_value_t = 1)]
    recipients: usize,
    /// TLS is not supported yet: refused with a clear error rather than ignored.
    #[arg(long)]
    tls: bool,
    /// Write the JSON report here (for verify: the report to check against).
    #[arg(long)]
    report: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// POP3: delete retrieved messages.
    #[arg(long)]
    delete: bool,
    /// POP3: RETRs per login.
    #[arg(long, default_value_t = 5)]
    retrs_per_login: usize,
    /// IMAP: commands and their weights, name:weight,… (fetch-flags, fetch-body,
    /// search-unseen, search-subject, store, noop).
    #[arg(long, default_value = ringmail_loadgen::imap::DEFAULT_MIX)]
    imap_mix: String,
    /// IMAP: commands per login (then LOGOUT and a new login).
    #[arg(long, default_value_t = 100)]
    commands_per_login: usize,
    /// IMAP: before the run, APPEND to every account's INBOX until it holds this many
    /// messages (generated, or from --messages; sized by --size).
    #[arg(long, default_value_t = 0)]
    prefill: usize,
    /// Generated messages of about this many bytes (default: realistic sizes, median 3.5 KiB).
    #[arg(long)]
    size: Option<usize>,
    /// plot: the SVG file to write.
    #[arg(long)]
    out: Option<PathBuf>,
    /// null-server: speak LMTP (one reply per recipient).
    #[arg(long)]
    lmtp: bool,
}

fn load_messages(p: &PathBuf) -> Result<Vec<Vec<u8>>, String> {
    let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let mut out = Vec::new();
    if meta.is_dir() {
        // Maildir: cur/ and new/, or a plain directory of files.
        let mut dirs = vec![p.join("cur"), p.join("new")];
        if !dirs.iter().any(|d| d.is_dir()) {
            dirs = vec![p.clone()];
        }
        for d in dirs.into_iter().filter(|d| d.is_dir()) {
            for e in std::fs::read_dir(&d).map_err(|e| e.to_string())? {
                let path = e.map_err(|e| e.to_string())?.path();
                if path.is_file() {
                    out.push(std::fs::read(&path).map_err(|e| e.to_string())?);
                }
            }
        }
    } else {
        // mbox: messages start at lines "From " after an empty line (or at the start).
        let data = std::fs::read(p).map_err(|e| e.to_string())?;
        let mut cur: Vec<u8> = Vec::new();
        for line in data.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b"From ") {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                continue;
            }
            let line = if line.starts_with(b">From ") {
                &line[1..]
            } else {
                line
            };
            if line.ends_with(b"\r\n") || !line.ends_with(b"\n") {
                cur.extend_from_slice(line);
            } else {
                cur.extend_from_slice(&line[..line.len() - 1]);
                cur.extend_from_slice(b"\r\n");
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
    }
    if out.is_empty() {
        return Err(format!("no messages in {}", p.display()));
    }
    Ok(out)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Kind::Plot = cli.workload {
        return plot(&cli);
    }
    let Some(target) = cli.target else {
        eprintln!("ringmail-loadgen: --target IP:PORT is required");
        return ExitCode::from(2);
    };
    if !target.ip().is_loopback() {
        eprintln!("ringmail-loadgen: load is only sent to loopback addresses (127.0.0.0/8, ::1)");
        return ExitCode::from(2);
    }
    if cli.tls {
        eprintln!("ringmail-loadgen: --tls is not supported yet");
        return ExitCode::from(2);
    }
    let users = match Users::parse(&cli.users) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("ringmail-loadgen: --users: {e}");
            return ExitCode::from(2);
        }
    };
    if let Kind::NullServer = cli.workload {
        match std::net::TcpListener::bind(target) {
            Ok(l) => {
                eprintln!("ringmail-loadgen: null server on {}", target);
                ringmail_loadgen::null_server::serve(l, cli.lmtp);
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("ringmail-loadgen: cannot listen on {}: {e}", target);
                return ExitCode::FAILURE;
            }
        }
    }
    if let Kind::Verify = cli.workload {
        let Some(path) = &cli.report else {
            eprintln!("ringmail-loadgen: verify needs --report FILE from the run to check");
            return ExitCode::from(2);
        };
        let report: serde_json::Value = match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => {
                eprintln!("ringmail-loadgen: reading {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        let acked = serde_json::from_value(report["acked"].clone()).unwrap_or_default();
        let v = verify::verify(target, &cli.password, &acked, Duration::from_secs(10));
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        println!(
            "verify: {} checked, {} lost, {} corrupted, {} errors",
            v.checked,
            v.lost.len(),
            v.corrupted.len(),
            v.errors.len()
        );
        return if v.clean() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let workload = match cli.workload {
        Kind::Smtp => Workload::Smtp,
        Kind::Lmtp => Workload::Lmtp,
        Kind::Imap => Workload::Imap,
        _ => Workload::Pop3,
    };
    let imap_mix = match ringmail_loadgen::imap::Mix::parse(&cli.imap_mix) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ringmail-loadgen: --imap-mix: {e}");
            return ExitCode::from(2);
        }
    };
    let mut cfg = Config::new(workload, target);
    cfg.users = users;
    cfg.password = cli.password;
    cfg.connections = cli.connections.max(1);
    cfg.rate = cli.rate;
    cfg.duration = Duration::from_secs(cli.duration);
    cfg.warmup = Duration::from_secs(cli.warmup);
    cfg.seed = cli.seed;
    cfg.recipients = cli.recipients;
    cfg.pop3_delete = cli.delete;
    cfg.pop3_retrs = cli.retrs_per_login;
    cfg.size = cli.size;
    cfg.imap_mix = imap_mix;
    cfg.imap_commands = cli.commands_per_login.max(1);
    cfg.imap_prefill = cli.prefill;
    cfg.progress = true;
    if let Some(p) = &cli.messages {
        match load_messages(p) {
            Ok(m) => cfg.messages = m,
            Err(e) => {
                eprintln!("ringmail-loadgen: --messages: {e}");
                return ExitCode::from(2);
            }
        }
    }
    eprintln!("ringmail-loadgen: seed {}", cfg.seed);
    let report: Report = run(&cfg);
    print!("{}", report.table());
    if let Some(p) = &cli.report {
        if let Err(e) = std::fs::write(p, serde_json::to_vec_pretty(&report).unwrap_or_default()) {
            eprintln!("ringmail-loadgen: writing {}: {e}", p.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn plot(cli: &Cli) -> ExitCode {
    let (Some(input), Some(out)) = (&cli.report, &cli.out) else {
        eprintln!("ringmail-loadgen: plot needs --report FILE and --out FILE.svg");
        return ExitCode::from(2);
    };
    let report: Report = match std::fs::read(input)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ringmail-loadgen: reading {}: {e}", input.display());
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::write(out, ringmail_loadgen::plot::svg(&report)) {
        eprintln!("ringmail-loadgen: writing {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
