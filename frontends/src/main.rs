//! `ringmail`: the mail server binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use ringmail::config::{parse_addr, Config};
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
    /// read and verify every stored message. Exits non-zero if anything is wrong.
    Fsck {
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

#[derive(Subcommand)]
enum UserAction {
    /// Add a user.
    Add {
        address: String,
        #[arg(long)]
        password: String,
        /// Further addresses delivered to this user (repeatable).
        #[arg(long = "alias")]
        aliases: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Remove a user's login (stored mail is kept).
    Del {
        address: String,
        #[command(flatten)]
        common: Common,
    },
    /// List users.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Change a user's password.
    Passwd {
        address: String,
        #[arg(long)]
        password: String,
        #[command(flatten)]
        common: Common,
    },
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colours only on a terminal: a log redirected to a file or journald stays plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let r = match cli.command {
        Command::Serve(a) => serve(a),
        Command::User { action } => user(action),
        Command::Fsck { common } => fsck(&common),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringmail: {e}");
            ExitCode::FAILURE
        }
    }
}

fn user(action: UserAction) -> Result<(), String> {
    // Each action edits the user list and says whether to save it.
    type Edit<'a> = Box<dyn Fn(&mut Users) -> Result<bool, String> + 'a>;
    let (common, f): (&Common, Edit) = match &action {
        UserAction::Add {
            address,
            password,
            aliases,
            common,
        } => (
            common,
            Box::new(move |u| {
                u.add(address, password, aliases)
                    .map(|_| true)
                    .map_err(|e| e.to_string())
            }),
        ),
        UserAction::Del { address, common } => (
            common,
            Box::new(move |u| u.remove(address).map(|_| true).map_err(|e| e.to_string())),
        ),
        UserAction::Passwd {
            address,
            password,
            common,
        } => (
            common,
            Box::new(move |u| {
                u.set_password(address, password)
                    .map(|_| true)
                    .map_err(|e| e.to_string())
            }),
        ),
        UserAction::List { common } => (
            common,
            Box::new(|u| {
                for user in u.users() {
                    if user.aliases.is_empty() {
                        println!("{}", user.address);
                    } else {
                        println!("{} (aliases: {})", user.address, user.aliases.join(", "));
                    }
                }
                Ok(false)
            }),
        ),
    };
    let cfg = config(common)?;
    let mut users = Users::load(&cfg.data).map_err(|e| e.to_string())?;
    if f(&mut users)? {
        users.save(&cfg.data).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn fsck(common: &Common) -> Result<(), String> {
    let cfg = config(common)?;
    if !cfg.data.join("SUPERBLOCK").exists() {
        return Err(format!(
            "{} is not a ringmail data directory",
            cfg.data.display()
        ));
    }
    let node = ringmail_engine::Node::start(ringmail_engine::NodeConfig::new(&cfg.data))
        .map_err(|e| e.to_string())?;
    let mut problems = 0;
    for (p, r) in &node.reports {
        if !r.is_clean() {
            problems += 1;
            println!("partition {p}: recovery found problems: {r:?}");
        }
    }
    let reports = futures_lite::future::block_on(node.handle().on_all(|p| async move {
        let rep = p.check_integrity().await;
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

fn serve(a: ServeArgs) -> Result<(), String> {
    let mut cfg = config(&a.common)?;
    if let Some(c) = a.cores {
        cfg.cores = c;
    }
    if let Some(h) = a.hostname {
        cfg.hostname = h;
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
    let signals = block_signals();
    let node = ringmail::server::start(cfg.clone())?;
    for (p, r) in &node.reports {
        if !r.is_clean() {
            tracing::warn!(partition = %p, report = ?r, "recovered with problems");
        }
    }
    tracing::info!(data = %cfg.data.display(), shards = node.handle().shards(), "ringmail is serving");
    let sig = wait_for(&signals);
    tracing::info!(signal = sig, "stopping: finishing in-flight commits");
    node.shutdown().map_err(|e| e.to_string())
}

/// Blocks SIGINT and SIGTERM in this thread before any other starts, so every thread
/// inherits the mask and only `wait_for` here receives them.
fn block_signals() -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set before any other use; all pointers are to
    // this local.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGINT);
        libc::sigaddset(set.as_mut_ptr(), libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
        set.assume_init()
    }
}

fn wait_for(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` was initialised by block_signals; `sig` is a local.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}
