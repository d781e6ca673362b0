//! The IMAP workload against a small in-memory IMAP server that writes its responses in
//! pieces (literal announcements and literal data split over many reads), varies the order
//! of FETCH items, sends unsolicited responses, and misbehaves on request: wrong sizes,
//! corrupted bodies, NO to STORE, BYE in the middle of a session, garbage.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringmail_loadgen::imap::Mix;
use ringmail_loadgen::run::check_stamp;
use ringmail_loadgen::{run, Config, Users, Workload};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// RFC822.SIZE one more than the body.
    WrongSize,
    /// One byte of every body changed.
    CorruptBody,
    /// STORE answers NO.
    NoOnStore,
    /// STORE answers OK but changes nothing (and echoes the unchanged flags).
    StoreIgnored,
    /// After this many commands a session gets `* BYE` and the connection closes.
    ByeAfter(usize),
}

struct Msg {
    uid: u32,
    flags: BTreeSet<String>,
    body: Vec<u8>,
}

type Store = Arc<Mutex<HashMap<String, Vec<Msg>>>>;

struct Fake {
    addr: SocketAddr,
    store: Store,
}

fn fake_imap(fault: Fault) -> Fake {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let store: Store = Arc::default();
    let st = store.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let st = st.clone();
            std::thread::spawn(move || {
                let _ = session(s, st, fault);
            });
        }
    });
    Fake { addr, store }
}

/// Writes `b` in pieces of 7 bytes, pausing now and then, so the client's reads end inside
/// lines and literals.
fn write_split(w: &mut TcpStream, b: &[u8]) -> std::io::Result<()> {
    for (i, piece) in b.chunks(7).enumerate() {
        w.write_all(piece)?;
        if i % 64 == 1 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    Ok(())
}

fn session(s: TcpStream, store: Store, fault: Fault) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    w.write_all(b"* OK [CAPABILITY IMAP4rev1] fake ready\r\n")?;
    let mut user = String::new();
    let mut commands = 0;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        commands += 1;
        if let Fault::ByeAfter(n) = fault {
            if commands > n && !user.is_empty() {
                w.write_all(b"* BYE going away\r\n")?;
                return Ok(());
            }
        }
        let line = line.trim_end();
        let (tag, rest) = line.split_once(' ').unwrap();
        let words: Vec<&str> = rest.split(' ').collect();
        let cmd = words[0].to_ascii_uppercase();
        let mut out = Vec::new();
        let ok = format!("{tag} OK done\r\n");
        match (cmd.as_str(), words.get(1).map(|w| w.to_ascii_uppercase())) {
            ("LOGIN", _) => {
                user = words[1].trim_matches('"').to_string();
                if words[2] != "\"pw\"" {
                    out.extend(format!("{tag} NO [AUTHENTICATIONFAILED] no\r\n").bytes());
                    user.clear();
                } else {
                    out.extend(ok.bytes());
                }
            }
            ("SELECT", _) => {
                let n = store.lock().unwrap().entry(user.clone()).or_default().len();
                out.extend(
                    format!("* FLAGS (\\Seen \\Flagged)\r\n* {n} EXISTS\r\n* OK [UIDNEXT {}] x\r\n{tag} OK [READ-WRITE] selected\r\n", n + 1)
                        .bytes(),
                );
            }
            ("APPEND", _) => {
                let n: usize = line
                    .rsplit_once('{')
                    .unwrap()
                    .1
                    .trim_end_matches('}')
                    .parse()
                    .unwrap();
                w.write_all(b"+ go ahead\r\n")?;
                let mut body = vec![0; n + 2];
                r.read_exact(&mut body)?;
                body.truncate(n);
                let mut st = store.lock().unwrap();
                let mb = st.entry(user.clone()).or_default();
                let uid = mb.len() as u32 + 1;
                mb.push(Msg {
                    uid,
                    flags: BTreeSet::new(),
                    body,
                });
                out.extend(format!("{tag} OK [APPENDUID 1 {uid}] appended\r\n").bytes());
            }
            ("NOOP", _) => {
                let n = store.lock().unwrap()[&user].len();
                out.extend(format!("* {n} EXISTS\r\n{ok}").bytes());
            }
            ("LOGOUT", _) => {
                w.write_all(format!("* BYE bye\r\n{ok}").as_bytes())?;
                return Ok(());
            }
            ("UID", Some(sub)) if sub == "SEARCH" => {
                let st = store.lock().unwrap();
                let mb = &st[&user];
                let key = words[2].to_ascii_uppercase();
                let hits: Vec<String> = mb
                    .iter()
                    .filter(|m| match key.as_str() {
                        "ALL" => true,
                        "UNSEEN" => !m.flags.contains("\\Seen"),
                        "SUBJECT" => {
                            let b = String::from_utf8_lossy(&m.body);
                            b.lines()
                                .any(|l| l.starts_with("Subject:") && l.contains(words[3]))
                        }
                        _ => panic!("search key {key}"),
                    })
                    .map(|m| m.uid.to_string())
                    .collect();
                out.extend(format!("* SEARCH {}\r\n{ok}", hits.join(" ")).bytes());
            }
            ("UID", Some(sub)) if sub == "FETCH" => {
                let uid: u32 = words[2].parse().unwrap();
                let st = store.lock().unwrap();
                let mb = &st[&user];
                let i = mb.iter().position(|m| m.uid == uid).unwrap();
                let m = &mb[i];
                let flags = m.flags.iter().cloned().collect::<Vec<_>>().join(" ");
                // Now and then an unsolicited update of another message first.
                if uid % 3 == 0 {
                    out.extend(b"* 1 FETCH (FLAGS (\\Seen))\r\n");
                }
                if rest.contains("BODY.PEEK[]") {
                    let mut body = m.body.clone();
                    if fault == Fault::CorruptBody {
                        let n = body.len();
                        body[n - 3] ^= 1;
                    }
                    let size = body.len() + usize::from(fault == Fault::WrongSize);
                    let head = if uid % 2 == 0 {
                        format!(
                            "* {} FETCH (UID {uid} RFC822.SIZE {size} BODY[] {{{}}}\r\n",
                            i + 1,
                            body.len()
                        )
                    } else {
                        format!("* {} FETCH (BODY[] {{{}}}\r\n", i + 1, body.len())
                    };
                    out.extend(head.bytes());
                    out.extend(&body);
                    if uid % 2 == 0 {
                        out.extend(b")\r\n");
                    } else {
                        out.extend(format!(" RFC822.SIZE {size} UID {uid})\r\n").bytes());
                    }
                } else {
                    out.extend(
                        format!("* {} FETCH (UID {uid} FLAGS ({flags}))\r\n", i + 1).bytes(),
                    );
                }
                out.extend(ok.bytes());
            }
            ("UID", Some(sub)) if sub == "STORE" => {
                if fault == Fault::NoOnStore {
                    out.extend(format!("{tag} NO [CANNOT] read-only today\r\n").bytes());
                } else {
                    let uid: u32 = words[2].parse().unwrap();
                    let flag = words[4].trim_matches(|c| c == '(' || c == ')').to_string();
                    let mut st = store.lock().unwrap();
                    let mb = st.get_mut(&user).unwrap();
                    let i = mb.iter().position(|m| m.uid == uid).unwrap();
                    if fault == Fault::StoreIgnored {
                    } else if words[3].starts_with('+') {
                        mb[i].flags.insert(flag);
                    } else {
                        mb[i].flags.remove(&flag);
                    }
                    let flags = mb[i].flags.iter().cloned().collect::<Vec<_>>().join(" ");
                    out.extend(
                        format!("* {} FETCH (FLAGS ({flags}) UID {uid})\r\n{ok}", i + 1).bytes(),
                    );
                }
            }
            _ => out.extend(format!("{tag} BAD what is {rest:?}\r\n").bytes()),
        }
        write_split(&mut w, &out)?;
    }
}

fn config(addr: SocketAddr) -> Config {
    let mut cfg = Config::new(Workload::Imap, addr);
    cfg.users = Users::parse("user%d:1-8").unwrap();
    cfg.password = "pw".into();
    cfg.connections = 4;
    cfg.duration = Duration::from_millis(1500);
    cfg.timeout = Duration::from_secs(2);
    cfg.imap_prefill = 12;
    cfg.imap_commands = 25;
    cfg.size = Some(3000);
    cfg
}

#[test]
fn prefill_then_every_command_of_the_mix_without_errors() {
    let fake = fake_imap(Fault::None);
    let r = run(&config(fake.addr));
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    let mix = [
        "fetch-flags",
        "fetch-body",
        "search-unseen",
        "search-subject",
        "store",
        "noop",
    ];
    for c in mix.iter().chain(&["login", "select", "logout", "all"]) {
        assert!(
            r.commands.get(*c).is_some_and(|s| s.count > 0),
            "{c}:\n{}",
            r.table()
        );
    }
    let sum: u64 = mix.iter().map(|c| r.commands[*c].count).sum();
    assert_eq!(r.commands["all"].count, sum);
    assert!(r.bytes > 0);
    // Every account holds exactly the prefill, each message stamped intact.
    let st = fake.store.lock().unwrap();
    assert_eq!(st.len(), 8);
    for (user, mb) in st.iter() {
        assert_eq!(mb.len(), 12, "{user}");
        for m in mb {
            assert!(matches!(check_stamp(&m.body), Some(Ok(_))));
        }
    }
    drop(st);
    // A second prefill finds the accounts full.
    let before: usize = fake.store.lock().unwrap().values().map(Vec::len).sum();
    let mut cfg = config(fake.addr);
    cfg.duration = Duration::from_millis(200);
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    let after: usize = fake.store.lock().unwrap().values().map(Vec::len).sum();
    assert_eq!(before, after);
}

#[test]
fn open_loop_paces_imap_commands() {
    let fake = fake_imap(Fault::None);
    let mut cfg = config(fake.addr);
    cfg.rate = Some(400.0);
    cfg.duration = Duration::from_secs(2);
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    let steps: u64 = r
        .commands
        .iter()
        .filter(|(k, _)| *k != "all")
        .map(|(_, s)| s.count)
        .sum();
    assert!((600..=820).contains(&steps), "{steps}:\n{}", r.table());
}

#[test]
fn wrong_sizes_and_corrupt_bodies_are_counted_and_the_sessions_go_on() {
    for (fault, kind) in [
        (Fault::WrongSize, "size mismatch"),
        (Fault::CorruptBody, "checksum mismatch"),
    ] {
        let fake = fake_imap(fault);
        let mut cfg = config(fake.addr);
        cfg.imap_mix = Mix::parse("fetch-body:1,fetch-flags:1").unwrap();
        let r = run(&cfg);
        let bad = r.errors.get(kind).copied().unwrap_or(0);
        assert!(bad > 10, "{kind}:\n{}", r.table());
        assert_eq!(r.total_errors(), bad, "{}", r.table());
        assert!(!r.commands.contains_key("fetch-body"), "{}", r.table());
        // The stream stayed in step: the other command kept working in the same sessions.
        assert!(r.commands["fetch-flags"].count > 10, "{}", r.table());
        assert!(r.commands["login"].count <= 4 * (r.commands["logout"].count + 1));
    }
}

#[test]
fn no_bye_and_ignored_stores_are_told_apart() {
    let fake = fake_imap(Fault::NoOnStore);
    let mut cfg = config(fake.addr);
    cfg.imap_mix = Mix::parse("store:1,noop:1").unwrap();
    let r = run(&cfg);
    assert!(
        r.errors.get("NO store").copied().unwrap_or(0) > 10,
        "{}",
        r.table()
    );
    assert!(r.commands["noop"].count > 10, "{}", r.table());

    let fake = fake_imap(Fault::StoreIgnored);
    let mut cfg = config(fake.addr);
    cfg.imap_mix = Mix::parse("store:1").unwrap();
    let r = run(&cfg);
    let ignored = r.errors.get("store not applied").copied().unwrap_or(0);
    assert!(ignored > 10, "{}", r.table());
    // Some STOREs ask for what is already so (-FLAGS on a message without the flag).
    assert!(r.commands["store"].count > 10, "{}", r.table());
    assert_eq!(r.total_errors(), ignored, "{}", r.table());

    let fake = fake_imap(Fault::ByeAfter(6));
    let mut cfg = config(fake.addr);
    cfg.imap_prefill = 0;
    cfg.imap_mix = Mix::parse("noop:1").unwrap();
    let t = Instant::now();
    let r = run(&cfg);
    assert!(t.elapsed() < Duration::from_secs(4));
    assert!(
        r.errors.get("BYE noop").copied().unwrap_or(0) > 4,
        "{}",
        r.table()
    );
    assert!(r.commands["noop"].count > 4, "{}", r.table());
}

#[test]
fn refused_logins_empty_mailboxes_and_garbage() {
    let fake = fake_imap(Fault::None);
    let mut cfg = config(fake.addr);
    cfg.password = "wrong".into();
    cfg.duration = Duration::from_millis(300);
    let r = run(&cfg);
    assert!(
        r.errors.get("NO login").copied().unwrap_or(0) > 0,
        "{}",
        r.table()
    );
    assert!(
        r.errors.get("prefill: NO login").copied().unwrap_or(0) > 0,
        "{}",
        r.table()
    );
    assert!(r.commands.is_empty());

    let mut cfg = config(fake.addr);
    cfg.imap_prefill = 0;
    cfg.duration = Duration::from_millis(300);
    cfg.users = Users::parse("empty%d:1-4").unwrap();
    let r = run(&cfg);
    assert!(
        r.errors.get("empty mailbox").copied().unwrap_or(0) > 0,
        "{}",
        r.table()
    );

    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(b"220 this is SMTP\r\n");
        }
    });
    let mut cfg = config(addr);
    cfg.imap_prefill = 0;
    cfg.duration = Duration::from_millis(500);
    let t = Instant::now();
    let r = run(&cfg);
    assert!(t.elapsed() < Duration::from_secs(4));
    assert!(
        r.errors.get("garbage reply").copied().unwrap_or(0) > 0,
        "{}",
        r.table()
    );
}

#[test]
fn a_warmup_keeps_the_logins_out_of_the_measurement() {
    let fake = fake_imap(Fault::None);
    let mut cfg = config(fake.addr);
    cfg.warmup = Duration::from_secs(1);
    cfg.duration = Duration::from_secs(1);
    cfg.imap_commands = 1_000_000;
    let r = run(&cfg);
    assert_eq!(r.total_errors(), 0, "{}", r.table());
    assert!(!r.commands.contains_key("login"), "{}", r.table());
    assert!(!r.commands.contains_key("select"), "{}", r.table());
    assert!(r.commands["all"].count > 100, "{}", r.table());
    assert!((0.9..1.5).contains(&r.seconds), "{}", r.seconds);
    // The timeline covers the warm-up too; the measured second is the last one.
    assert_eq!(r.timeline.len(), 2);
    let last = r.timeline[1] as f64;
    let all = r.commands["all"].count as f64;
    assert!((all - last).abs() < 0.2 * last, "{all} vs {last}");
}
