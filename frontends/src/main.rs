//! `ringmail`: the mail server binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use ringmail::config::{parse_addr, Config, LogFormat};
use ringmail::users::Users;

// Shards hand buffers to each other (a message parsed on one core is appended on the
// recipient's): glibc's allocator serialises such frees on its arena locks (futex waits
// under load); mimalloc frees across threads without a lock.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "ringmail", version, about = "A mail server built for speed")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded defaults without --config).
    Serve(ServeArgs),
    /// Manage login accounts (works while the server runs).
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Check a data directory (the server must be stopped): recover every partition, then
    /// read and verify every stored message, changing nothing on disk. Exits non-zero if
    /// anything is wrong.
    Fsck {
        #[command(flatten)]
        common: Common,
        /// Make the directory consistent: cut a torn log tail, skip corrupt records, and
        /// expunge the messages whose stored body is unreadable (printed). Without it fsck
        /// changes nothing.
        #[arg(long)]
        repair: bool,
    },
    /// Operate a cluster (the configuration's [cluster] section): see docs/cluster.md.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Nodes (lease time left, partitions, draining) and partitions (owner, epoch,
    /// manifest, the tail a takeover would replay).
    Status {
        #[command(flatten)]
        common: Common,
    },
    /// Move a partition to a node, live: the owner publishes and releases it, the node
    /// opens it. Waits until it has (unless --no-wait).
    Move {
        partition: u32,
        node: String,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Move every partition off a node (or, with --undo, let it own partitions again).
    Drain {
        node: String,
        #[arg(long)]
        undo: bool,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args)]
struct Common {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (overrides the configuration).
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// Shards (executor threads); default: one per core.
    #[arg(long)]
    cores: Option<usize>,
    #[arg(long)]
    hostname: Option<String>,
    /// Listener addresses: IP:PORT, or "off".
    #[arg(long)]
    smtp: Option<String>,
    #[arg(long)]
    submission: Option<String>,
    #[arg(long)]
    smtps: Option<String>,
    #[arg(long)]
    lmtp: Option<String>,
    #[arg(long)]
    imap: Option<String>,
    #[arg(long)]
    imaps: Option<String>,
    #[arg(long)]
    pop3: Option<String>,
    #[arg(long)]
    pop3s: Option<String>,
    #[arg(long)]
    metrics: Option<String>,
}

/// Where a new password comes from. With neither flag: a prompt on a terminal, else the
/// first line of standard input.
#[derive(Args)]
struct PasswordArgs {
    /// The password on the command line (visible in `ps` and shell history: prefer
    /// --password-file or the prompt). `-` reads it from standard input.
    #[arg(long, conflicts_with = "password_file")]
    password: Option<String>,
    /// A file holding the password (its first line); `-` is standard input.
    #[arg(long)]
    password_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user.
    Add {
        address: String,
        #[command(flatten)]
        password: PasswordArgs,
        /// Further addresses delivered to this user (repeatable).
        #[arg(long = "alias")]
        aliases: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Remove a user's login. Their mail is kept (see `list --deleted`) unless --purge.
    Del {
        address: String,
        /// Delete the user's stored mail too (at once if the server is stopped, else by the
        /// server within a second).
        #[arg(long)]
        purge: bool,
        #[command(flatten)]
        common: Common,
    },
    /// List users.
    List {
        /// List deleted users whose mail is still stored instead.
        #[arg(long)]
        deleted: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Change a user's password.
    Passwd {
        address: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        common: Common,
    },
}

impl PasswordArgs {
    fn read(&self) -> Result<String, String> {
        let from_stdin = || -> Result<String, String> {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| format!("reading the password from standard input: {e}"))?;
            Ok(line.trim_end_matches(['\r', '\n']).to_string())
        };
        let pw = match (&self.password, &self.password_file) {
            (Some(p), _) if p == "-" => from_stdin()?,
            (Some(p), _) => p.clone(),
            (None, Some(f)) if f.as_os_str() == "-" => from_stdin()?,
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| format!("reading {}: {e}", f.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
            (None, None) if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
                let p = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
                let again = rpassword::prompt_password("Again: ").map_err(|e| e.to_string())?;
                if p != again {
                    return Err("the passwords differ".into());
                }
                p
            }
            (None, None) => from_stdin()?,
        };
        if pw.is_empty() {
            return Err("the password must not be empty".into());
        }
        Ok(pw)
    }
}

fn config(common: &Common) -> Result<Config, String> {
    let mut cfg = match &common.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(d) = &common.data {
        cfg.data = d.clone();
    }
    Ok(cfg)
}

/// Logs to standard error through a writer thread that writes in batches (a shard never
/// waits for the terminal or journald; see `ringmail::logging`), in text or JSON lines.
/// Returns the guard that writes what is left at exit.
fn init_logging(format: LogFormat) -> ringmail::logging::Guard {
    // glommio warns in Rust Debug format, once per shard, when it cannot lock memory for
    // its buffers: `memlock_check` says it once, plainly.
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) => format!("{f},glommio::sys::uring=error"),
        Err(_) => "info,glommio::sys::uring=error".to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::new(filter);
    let (writer, guard) = ringmail::logging::batched(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        // Colours only on a terminal: a log sent to a file or journald stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Mail, indexes, users and keys are private: whatever the umask, nothing made here is
    // readable by other local users (a stricter umask stays stricter).
    // SAFETY: umask only swaps the process's file-creation mask.
    unsafe {
        let old = libc::umask(0o077);
        libc::umask(old | 0o077);
    }
    // Before any thread starts (the log's writer is one): every thread inherits the mask, so
    // only the main thread's sigtimedwait ever takes SIGHUP, SIGINT and SIGTERM. Only for
    // `serve`: Ctrl-C must still stop `fsck` or `user`.
    let signals = matches!(cli.command, Command::Serve(_)).then(block_signals);
    let format = match &cli.command {
        Command::Serve(a) => config(&a.common).map(|c| c.log.format).unwrap_or_default(),
        _ => LogFormat::Text,
    };
    let guard = init_logging(format);
    let r = match cli.command {
        Command::Serve(a) => serve(a, &signals.expect("blocked for serve")),
        Command::User { action } => user(action),
        Command::Fsck { common, repair } => fsck(&common, repair),
        Command::Cluster { action } => cluster(action),
    };
    drop(guard);
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringmail: {e}");
            ExitCode::FAILURE
        }
    }
}

fn user(action: UserAction) -> Result<(), String> {
    let common = match &action {
        UserAction::Add { common, .. }
        | UserAction::Del { common, .. }
        | UserAction::List { common, .. }
        | UserAction::Passwd { common, .. } => common,
    };
    let cfg = config(common)?;
    let mut users = Users::load(&cfg.data).map_err(|e| e.to_string())?;
    match &action {
        UserAction::Add {
            address,
            password,
            aliases,
            ..
        } => {
            ringmail::users::check_address(address).map_err(|e| e.to_string())?;
            let pw = password.read()?;
            users
                .add(address, &pw, aliases)
                .map_err(|e| e.to_string())?;
        }
        UserAction::Passwd {
            address, password, ..
        } => {
            let pw = password.read()?;
            users
                .set_password(address, &pw)
                .map_err(|e| e.to_string())?;
        }
        UserAction::Del { address, purge, .. } => {
            let accounts = match users.remove(address, *purge) {
                Ok(d) => vec![d.account],
                // Deleted before with its mail kept: --purge deletes the mail now.
                Err(ringmail::users::UsersError::NoSuchUser(_)) if *purge => {
                    let kept = users.mark_purged(address);
                    if kept.is_empty() {
                        return Err(format!("no user or kept mail for {address}"));
                    }
                    kept
                }
                Err(e) => return Err(e.to_string()),
            };
            users.save(&cfg.data).map_err(|e| e.to_string())?;
            if *purge {
                let mut now = true;
                for account in &accounts {
                    now &= purge_now(&cfg, account)?;
                }
                match now {
                    true => println!("{address} deleted, and its mail"),
                    false => println!(
                        "{address} deleted; the running server deletes its mail within a second"
                    ),
                }
            } else {
                println!(
                    "{address} deleted; its mail is kept (`user list --deleted`, \
                     `user del --purge` to delete it)"
                );
            }
            return Ok(());
        }
        UserAction::List { deleted: false, .. } => {
            for user in users.users() {
                if user.aliases.is_empty() {
                    println!("{}", user.address);
                } else {
                    println!("{} (aliases: {})", user.address, user.aliases.join(", "));
                }
            }
            return Ok(());
        }
        UserAction::List { deleted: true, .. } => {
            for d in users.deleted() {
                let state = if d.purge { "mail purged" } else { "mail kept" };
                println!("{} (account {}, {state})", d.address, d.account);
            }
            return Ok(());
        }
    }
    users.save(&cfg.data).map_err(|e| e.to_string())
}

/// Deletes a removed user's mail now if no server holds the data directory: `Ok(false)`
/// when one does (it purges on its next look at the users).
fn purge_now(cfg: &Config, account: &str) -> Result<bool, String> {
    if !cfg.data.join("SUPERBLOCK").exists() {
        return Ok(true);
    }
    let node = match ringmail_engine::Node::start(ringmail_engine::NodeConfig::new(&cfg.data)) {
        Ok(n) => n,
        Err(ringmail_engine::Error::DataDirInUse(_)) => return Ok(false),
        Err(e) => return Err(e.to_string()),
    };
    let r = futures_lite::future::block_on(node.handle().request(
        ringmail_engine::Request::DeleteAccount {
            account: account.to_string(),
        },
    ))
    .map(|_| ());
    node.shutdown().map_err(|e| e.to_string())?;
    r.map(|()| true).map_err(|e| e.to_string())
}

fn cluster(action: ClusterAction) -> Result<(), String> {
    use ringmail_cluster::admin;
    let common = match &action {
        ClusterAction::Status { common }
        | ClusterAction::Move { common, .. }
        | ClusterAction::Drain { common, .. } => common,
    };
    let cfg = config(common)?;
    let c = cfg
        .cluster
        .ok_or("the configuration has no [cluster] section (see docs/cluster.md)")?;
    let wait = |no_wait: bool| (!no_wait).then_some(std::time::Duration::from_secs(120));
    match action {
        ClusterAction::Status { .. } => {
            print!("{}", admin::status(&c).map_err(|e| e.to_string())?);
        }
        ClusterAction::Move {
            partition,
            node,
            no_wait,
            ..
        } => {
            let took = admin::move_partition(&c, partition, &node, wait(no_wait))
                .map_err(|e| e.to_string())?;
            if no_wait {
                println!("asked: partition {partition} moves to {node}");
            } else {
                println!(
                    "partition {partition} moved to {node} in {:.2} s",
                    took.as_secs_f64()
                );
            }
        }
        ClusterAction::Drain {
            node,
            undo,
            no_wait,
            ..
        } => {
            let took = admin::drain(&c, &node, undo, wait(no_wait)).map_err(|e| e.to_string())?;
            if undo {
                println!("{node} serves partitions again");
            } else if no_wait {
                println!("asked: {node} drains");
            } else {
                println!("{node} drained in {:.2} s", took.as_secs_f64());
            }
        }
    }
    Ok(())
}

fn fsck(common: &Common, repair: bool) -> Result<(), String> {
    let cfg = config(common)?;
    if !cfg.data.join("SUPERBLOCK").exists() {
        return Err(format!(
            "{} is not a ringmail data directory",
            cfg.data.display()
        ));
    }
    // Read-only unless asked to repair: fsck changes nothing (and so also works on a full
    // disk).
    let mut ncfg = ringmail_engine::NodeConfig::new(&cfg.data);
    ncfg.partition.recovery = if repair {
        ringmail_engine::RecoveryMode::Repair
    } else {
        ringmail_engine::RecoveryMode::ReadOnly
    };
    let node = ringmail_engine::Node::start(ncfg).map_err(|e| e.to_string())?;
    let mut problems = 0;
    for (p, r) in &node.reports {
        if r.is_clean() {
            continue;
        }
        if repair {
            println!("partition {p}: recovery repaired: {r:?}");
        } else {
            problems += 1;
            println!("partition {p}: recovery found problems: {r:?}");
        }
    }
    let reports = futures_lite::future::block_on(node.handle().on_all(move |p| async move {
        let mut rep = p.check_integrity().await;
        if repair && !rep.damaged.is_empty() {
            // The damaged messages go, so clients stop meeting them; what is left is
            // checked again.
            for (account, mailbox, uid) in std::mem::take(&mut rep.damaged) {
                p.expunge(&account, &mailbox, Some(&[uid])).await?;
                println!("removed {account} {mailbox} UID {}", uid.0);
            }
            rep = p.check_integrity().await;
        }
        Ok((p.id(), p.stats().messages, rep))
    }));
    for r in reports {
        match r {
            Ok((p, messages, rep)) => {
                println!(
                    "partition {p}: {messages} messages, {} stored bodies checked, {} errors",
                    rep.blobs_checked,
                    rep.errors.len()
                );
                for e in &rep.errors {
                    println!("  {e}");
                }
                problems += rep.errors.len();
            }
            Err(e) => {
                println!("a partition could not be checked: {e}");
                problems += 1;
            }
        }
    }
    node.shutdown().map_err(|e| e.to_string())?;
    if problems > 0 {
        return Err(format!("{problems} problems found"));
    }
    println!("clean");
    Ok(())
}

/// The configuration file with the command line's overrides (read again on SIGHUP).
fn serve_config(a: &ServeArgs) -> Result<Config, String> {
    let mut cfg = config(&a.common)?;
    if let Some(c) = a.cores {
        cfg.cores = c;
    }
    if let Some(h) = &a.hostname {
        cfg.hostname = h.clone();
    }
    let l = &mut cfg.listen;
    for (flag, slot) in [
        (&a.smtp, &mut l.smtp),
        (&a.submission, &mut l.submission),
        (&a.smtps, &mut l.smtps),
        (&a.lmtp, &mut l.lmtp),
        (&a.imap, &mut l.imap),
        (&a.imaps, &mut l.imaps),
        (&a.pop3, &mut l.pop3),
        (&a.pop3s, &mut l.pop3s),
        (&a.metrics, &mut l.metrics),
    ] {
        if let Some(v) = flag {
            *slot = parse_addr(v)?;
        }
    }
    Ok(cfg)
}

fn serve(a: ServeArgs, signals: &libc::sigset_t) -> Result<(), String> {
    let cfg = serve_config(&a)?;
    memlock_check(cfg.cores);
    let source_args = a;
    let source: ringmail::server::reload::Source = Box::new(move || serve_config(&source_args));
    let mut running = ringmail::server::start(cfg.clone(), source)?;
    for (p, r) in &running.node().reports {
        if !r.is_clean() {
            tracing::warn!(partition = %p, report = ?r, "recovered with problems");
        }
    }
    tracing::info!(
        data = %cfg.data.display(),
        hostname = %cfg.hostname,
        shards = running.node().handle().shards(),
        "ringmail is serving"
    );
    loop {
        match wait_for(signals, std::time::Duration::from_secs(1)) {
            Some(libc::SIGHUP) => {
                tracing::info!("SIGHUP: reloading the configuration, certificate and users");
                running.reload();
            }
            Some(sig) => {
                tracing::info!(signal = sig, "stopping: finishing in-flight commits");
                break;
            }
            None => running.tick(),
        }
    }
    running.shutdown()
}

/// The locked-memory limit glommio's shards want for io_uring's registered buffers
/// (three rings share 10 MiB each): raised to the hard limit when lower, and if that is
/// still not enough, said once, with the fix. Without it the shards run, and each disk I/O
/// costs a little more CPU.
fn memlock_check(cores: usize) {
    const PER_SHARD: u64 = 3 * (10 << 20);
    let shards = if cores == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        cores
    } as u64;
    let memlock = ringmail::server::raise_soft_limit(libc::RLIMIT_MEMLOCK);
    let need = PER_SHARD * shards;
    if memlock != libc::RLIM_INFINITY && memlock < need {
        tracing::warn!(
            memlock_mib = memlock >> 20,
            wanted_mib = need >> 20,
            "the locked-memory limit is too low for io_uring's registered buffers; running \
             without them (a little more CPU per disk I/O). Raise it: LimitMEMLOCK=infinity \
             under systemd, or `ulimit -l unlimited`"
        );
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread before any other starts, so every thread
/// inherits the mask and only `wait_for` here receives them.
fn block_signals() -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set before any other use; all pointers are to
    // this local.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGINT);
        libc::sigaddset(set.as_mut_ptr(), libc::SIGTERM);
        libc::sigaddset(set.as_mut_ptr(), libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
        set.assume_init()
    }
}

/// The next of the blocked signals, or `None` after `timeout`.
fn wait_for(set: &libc::sigset_t, timeout: std::time::Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` was initialised by block_signals; `ts` is a local; no siginfo is asked.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}
