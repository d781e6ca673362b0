//! `ringmail-loadgen WORKLOAD --target HOST:PORT …`: see `--help`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ringmail_loadgen::run::Runtime;
use ringmail_loadgen::verify::{self, Protocol};
use ringmail_loadgen::{mixed, run, Config, Mixed, Report, Tls, Users, Workload};

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Smtp,
    Lmtp,
    Pop3,
    /// Log in, SELECT INBOX, run --commands-per-login commands from --imap-mix, log out.
    Imap,
    /// Connections of several kinds at once (--mix-ratio), each against its own target.
    Mixed,
    /// Check through POP3 or IMAP (--protocol) that everything a previous run's report says
    /// was acknowledged is stored, byte-identical.
    Verify,
    /// Draw a report (--report) as an SVG (--out): latency percentiles, throughput over time.
    Plot,
    /// Serve as a null SMTP server (LMTP with --lmtp) on --target, to measure the generator.
    NullServer,
}

#[derive(Clone, Copy, ValueEnum)]
enum VerifyProtocol {
    Pop3,
    Imap,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RuntimeKind {
    PerCore,
    Threads,
}

#[derive(Parser)]
#[command(
    name = "ringmail-loadgen",
    version,
    about = "Mail load generator: SMTP, LMTP, POP3, IMAP, mixed, verify"
)]
struct Cli {
    workload: Kind,
    /// The server, IP:PORT on loopback (127.0.0.0/8 or ::1); for null-server, where to
    /// listen; for mixed, the IP (and any port) the per-protocol targets default to. For
    /// smtp, lmtp, imap and pop3, several (repeated, or a comma-separated list: the nodes of
    /// a cluster): the connections are spread over them, round robin.
    #[arg(long, value_delimiter = ',')]
    target: Vec<String>,
    /// Users: a pattern with %d and a range (bench%d@example.org:1-100), or one address.
    #[arg(long, default_value = "bench%d@example.org:1-100")]
    users: String,
    #[arg(long, default_value = "bench")]
    password: String,
    #[arg(long, default_value_t = 10)]
    connections: usize,
    /// per-core: --workers threads, each running its share of the connections as
    /// coroutines over one epoll loop; threads: one blocking thread per connection.
    #[arg(long, value_enum, default_value = "per-core")]
    runtime: RuntimeKind,
    /// per-core: how many threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
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
    /// SMTP/LMTP: recipients per message, distinct users drawn from --users.
    #[arg(long, visible_alias = "recipients-per-message", default_value_t = 1)]
    recipients: usize,
    /// SMTP/LMTP: QUIT and reconnect after this many messages on a connection (1: a
    /// connection per message, as inbound MX traffic mostly is; 0: keep it open).
    #[arg(long, default_value_t = 0)]
    messages_per_connection: u64,
    /// TLS from the first byte (smtps, imaps, pop3s ports).
    #[arg(long, conflicts_with = "starttls")]
    tls: bool,
    /// Plain TCP, then STARTTLS (SMTP, LMTP, IMAP) or STLS (POP3) after the greeting.
    #[arg(long)]
    starttls: bool,
    /// Check the server's certificate (against --tls-ca, or the system's roots); off by
    /// default, as targets are loopback test servers.
    #[arg(long)]
    tls_verify: bool,
    /// With --tls-verify: trust the certificates of this PEM file instead of the system's.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// The server name to send and (with --tls-verify) check; default: the target's IP.
    #[arg(long)]
    tls_name: Option<String>,
    /// SMTP: AUTH PLAIN as the connection's own user (with --password), sending from that
    /// address: for submission ports (after --starttls, or with --tls).
    #[arg(long)]
    auth: bool,
    /// Write the JSON report here (for verify: the report to check against).
    #[arg(long)]
    report: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// POP3: delete retrieved messages (drains the mailboxes).
    #[arg(long)]
    delete: bool,
    /// POP3: DELE this many random messages per login, committed by QUIT (drains the
    /// mailboxes unless deliveries refill them).
    #[arg(long, default_value_t = 0)]
    dele_per_login: usize,
    /// POP3: RETRs per login.
    #[arg(long, default_value_t = 5)]
    retrs_per_login: usize,
    /// IMAP: commands and their weights, name:weight,… (fetch-flags, fetch-body,
    /// search-unseen, search-subject, store, noop, append, expunge, idle), or `default`,
    /// or `extended` (the default plus append:5, expunge:5, idle:1).
    #[arg(long, default_value = ringmail_loadgen::imap::DEFAULT_MIX)]
    imap_mix: String,
    /// IMAP: commands per login (then LOGOUT and a new login).
    #[arg(long, default_value_t = 100)]
    commands_per_login: usize,
    /// IMAP: before the run, APPEND to every account's INBOX until it holds this many
    /// messages (generated, or from --messages; sized by --size); `expunge` keeps
    /// mailboxes at or above it.
    #[arg(long, default_value_t = 0)]
    prefill: usize,
    /// IMAP idle: milliseconds to wait for news before DONE.
    #[arg(long, default_value_t = 100)]
    idle_ms: u64,
    /// mixed: the kinds of connections and their shares of --connections.
    #[arg(long, default_value = "smtp:60,imap:30,pop3:10")]
    mix_ratio: String,
    /// mixed: the SMTP server (default: --target's IP, port 2525; 2587 with --auth, 2465
    /// with --tls: ringmail's ports). Several, comma-separated (a cluster's nodes): the
    /// SMTP connections are spread over them; likewise for the other kinds.
    #[arg(long)]
    smtp_target: Option<String>,
    /// mixed: the LMTP server (default: --target's IP, port 2424).
    #[arg(long)]
    lmtp_target: Option<String>,
    /// mixed: the IMAP server (default: --target's IP, port 2143; 2993 with --tls).
    #[arg(long)]
    imap_target: Option<String>,
    /// mixed: the POP3 server (default: --target's IP, port 2110; 2995 with --tls).
    #[arg(long)]
    pop3_target: Option<String>,
    /// verify: read the mailboxes through POP3 or IMAP.
    #[arg(long, value_enum, default_value = "pop3")]
    protocol: VerifyProtocol,
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

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("ringmail-loadgen: {msg}");
    ExitCode::from(2)
}

/// `--target`: IP:PORT, or for mixed also a bare IP.
fn target(cli: &Cli) -> Result<SocketAddr, String> {
    let t = cli.target.first().map(String::as_str);
    let addr = match (t, cli.workload) {
        (None, Kind::Mixed) => SocketAddr::from(([127, 0, 0, 1], 0)),
        (None, _) => return Err("--target IP:PORT is required".into()),
        (Some(t), kind) => match (t.parse::<SocketAddr>(), t.parse::<IpAddr>()) {
            (Ok(a), _) => a,
            (_, Ok(ip)) if matches!(kind, Kind::Mixed) => SocketAddr::new(ip, 0),
            _ => return Err(format!("--target {t:?}: not IP:PORT")),
        },
    };
    loopback(addr)
}

/// The targets after the first (`--target` given several times).
fn more_targets(cli: &Cli) -> Result<Vec<SocketAddr>, String> {
    let more = cli.target.get(1..).unwrap_or_default();
    if !more.is_empty()
        && !matches!(
            cli.workload,
            Kind::Smtp | Kind::Lmtp | Kind::Imap | Kind::Pop3
        )
    {
        return Err("several --target: only for smtp, lmtp, imap and pop3".into());
    }
    more.iter()
        .map(|t| {
            t.parse::<SocketAddr>()
                .map_err(|_| format!("--target {t:?}: not IP:PORT"))
                .and_then(loopback)
        })
        .collect()
}

fn loopback(a: SocketAddr) -> Result<SocketAddr, String> {
    if a.ip().is_loopback() {
        Ok(a)
    } else {
        Err(format!(
            "{a}: load is only sent to loopback addresses (127.0.0.0/8, ::1)"
        ))
    }
}

fn tls(cli: &Cli, ip: IpAddr) -> Result<Option<Tls>, String> {
    if !cli.tls && !cli.starttls {
        return Ok(None);
    }
    let name = cli.tls_name.clone().unwrap_or_else(|| ip.to_string());
    Tls::new(cli.starttls, cli.tls_verify, cli.tls_ca.as_deref(), &name).map(Some)
}

/// The kinds and targets of a mixed run; unset targets are ringmail's default ports.
fn mixed_setup(cli: &Cli, ip: IpAddr) -> Result<Mixed, String> {
    let shares = Mixed::parse_ratio(&cli.mix_ratio).map_err(|e| format!("--mix-ratio: {e}"))?;
    let smtp_port = match (cli.tls, cli.auth) {
        (true, _) => 2465,
        (false, true) => 2587,
        (false, false) => 2525,
    };
    let port = |tls_port, plain| if cli.tls { tls_port } else { plain };
    let mut targets = Vec::new();
    for (kind, given, default) in [
        (Workload::Smtp, &cli.smtp_target, smtp_port),
        (Workload::Lmtp, &cli.lmtp_target, 2424),
        (Workload::Imap, &cli.imap_target, port(2993, 2143)),
        (Workload::Pop3, &cli.pop3_target, port(2995, 2110)),
    ] {
        let Some(list) = given else {
            targets.push((kind, loopback(SocketAddr::new(ip, default))?));
            continue;
        };
        for t in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let a = t
                .parse::<SocketAddr>()
                .map_err(|_| format!("{} target {t:?}: not IP:PORT", mixed::name(kind)))?;
            targets.push((kind, loopback(a)?));
        }
    }
    Ok(Mixed { shares, targets })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Kind::Plot = cli.workload {
        return plot(&cli);
    }
    let target = match target(&cli) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let tls = match tls(&cli, target.ip()) {
        Ok(t) => t,
        Err(e) => return fail(format!("TLS: {e}")),
    };
    let users = match Users::parse(&cli.users) {
        Ok(u) => u,
        Err(e) => return fail(format!("--users: {e}")),
    };
    match cli.workload {
        Kind::NullServer => return null_server(target, cli.lmtp),
        Kind::Verify => return verify(&cli, target, tls.as_ref()),
        _ => {}
    }
    let workload = match cli.workload {
        Kind::Smtp => Workload::Smtp,
        Kind::Lmtp => Workload::Lmtp,
        Kind::Imap => Workload::Imap,
        Kind::Mixed => Workload::Mixed,
        _ => Workload::Pop3,
    };
    let imap_mix = match ringmail_loadgen::imap::Mix::parse(&cli.imap_mix) {
        Ok(m) => m,
        Err(e) => return fail(format!("--imap-mix: {e}")),
    };
    let mut cfg = Config::new(workload, target);
    match more_targets(&cli) {
        Ok(more) => cfg.more_targets = more,
        Err(e) => return fail(e),
    }
    if workload == Workload::Mixed {
        match mixed_setup(&cli, target.ip()) {
            Ok(m) => cfg.mixed = Some(m),
            Err(e) => return fail(e),
        }
        if let Some(Err(e)) = cfg.mixed.as_ref().map(|m| m.roles(cli.connections.max(1))) {
            return fail(format!("--mix-ratio: {e}"));
        }
    }
    cfg.users = users;
    cfg.password = cli.password;
    cfg.connections = cli.connections.max(1);
    cfg.rate = cli.rate;
    cfg.runtime = match (cli.runtime, cli.workers) {
        (RuntimeKind::Threads, _) => Runtime::Threads,
        (RuntimeKind::PerCore, Some(w)) => Runtime::PerCore { workers: w.max(1) },
        (RuntimeKind::PerCore, None) => Runtime::per_core(),
    };
    cfg.duration = Duration::from_secs(cli.duration);
    cfg.warmup = Duration::from_secs(cli.warmup);
    cfg.seed = cli.seed;
    cfg.recipients = cli.recipients;
    cfg.messages_per_connection = cli.messages_per_connection;
    cfg.tls = tls;
    cfg.smtp_auth = cli.auth;
    cfg.pop3_delete = cli.delete;
    cfg.pop3_dele = cli.dele_per_login;
    cfg.pop3_retrs = cli.retrs_per_login;
    cfg.size = cli.size;
    cfg.imap_mix = imap_mix;
    cfg.imap_commands = cli.commands_per_login.max(1);
    cfg.imap_prefill = cli.prefill;
    cfg.imap_idle = Duration::from_millis(cli.idle_ms);
    cfg.progress = true;
    if let Some(p) = &cli.messages {
        match ringmail_loadgen::corpus::load_messages(p) {
            Ok(m) => cfg.messages = m,
            Err(e) => return fail(format!("--messages: {e}")),
        }
    }
    if let Some(m) = cfg.mixed.as_ref().filter(|_| workload == Workload::Mixed) {
        let kinds: Vec<String> = m
            .shares
            .iter()
            .map(|(k, _)| {
                let all: Vec<String> = m.targets_of(*k).iter().map(|a| a.to_string()).collect();
                format!("{} {}", mixed::name(*k), all.join(" "))
            })
            .collect();
        eprintln!("ringmail-loadgen: mixed: {}", kinds.join(", "));
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

fn null_server(target: SocketAddr, lmtp: bool) -> ExitCode {
    match std::net::TcpListener::bind(target) {
        Ok(l) => {
            eprintln!("ringmail-loadgen: null server on {target}");
            ringmail_loadgen::null_server::serve(l, lmtp);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringmail-loadgen: cannot listen on {target}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn verify(cli: &Cli, target: SocketAddr, tls: Option<&Tls>) -> ExitCode {
    let Some(path) = &cli.report else {
        return fail("verify needs --report FILE from the run to check");
    };
    let report: serde_json::Value = match std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => return fail(format!("reading {}: {e}", path.display())),
    };
    let acked = serde_json::from_value(report["acked"].clone()).unwrap_or_default();
    let protocol = match cli.protocol {
        VerifyProtocol::Pop3 => Protocol::Pop3,
        VerifyProtocol::Imap => Protocol::Imap,
    };
    let timeout = Duration::from_secs(10);
    let v = verify::verify_with(protocol, target, tls, &cli.password, &acked, timeout);
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    println!(
        "verify: {} checked, {} lost, {} corrupted, {} errors",
        v.checked,
        v.lost.len(),
        v.corrupted.len(),
        v.errors.len()
    );
    if v.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn plot(cli: &Cli) -> ExitCode {
    let (Some(input), Some(out)) = (&cli.report, &cli.out) else {
        return fail("plot needs --report FILE and --out FILE.svg");
    };
    let report: Report = match std::fs::read(input)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => return fail(format!("reading {}: {e}", input.display())),
    };
    if let Err(e) = std::fs::write(out, ringmail_loadgen::plot::svg(&report)) {
        eprintln!("ringmail-loadgen: writing {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
