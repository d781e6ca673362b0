//! `ringmail`: the mail server binary.
//!
//! Today it runs the storage engine on every core with embedded defaults; the SMTP, LMTP,
//! IMAP and POP3 listeners are being built on top of it (see the issues).

use std::path::PathBuf;
use std::process::ExitCode;

use ringmail_engine::{Node, NodeConfig};

const USAGE: &str = "usage: ringmail serve [--data DIR] [--cores N]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("--help") | Some("-h") | None => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("ringmail: unknown command {other:?}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: &[String]) -> ExitCode {
    let mut cfg = NodeConfig::new(PathBuf::from("ringmail-data"));
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = it.next();
        match (a.as_str(), value) {
            ("--data", Some(v)) => cfg.data_dir = PathBuf::from(v),
            ("--cores", Some(v)) => match v.parse() {
                Ok(n) => cfg.shards = n,
                Err(_) => {
                    eprintln!("ringmail: --cores takes a number, got {v:?}");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("ringmail: bad argument {a:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    // Block SIGINT and SIGTERM before the shards start so that only this thread takes them.
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; the pointers are to our own local.
    let set = unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGINT);
        libc::sigaddset(set.as_mut_ptr(), libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
        set.assume_init()
    };
    let node = match Node::start(cfg.clone()) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("ringmail: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (p, r) in &node.reports {
        if !r.is_clean() {
            eprintln!("ringmail: partition {p} recovered with problems: {r:?}");
        }
    }
    println!(
        "ringmail: serving data in {} on {} shards; SIGINT or SIGTERM stops",
        cfg.data_dir.display(),
        node.handle().shards()
    );
    let mut sig = 0;
    // SAFETY: `set` is an initialised signal set; `sig` is our own local.
    unsafe { libc::sigwait(&set, &mut sig) };
    println!("ringmail: signal {sig}, finishing in-flight commits");
    match node.shutdown() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringmail: shutdown: {e}");
            ExitCode::FAILURE
        }
    }
}
