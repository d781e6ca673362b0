//! A small in-memory IMAP server that writes its responses in pieces (literal announcements
//! and literal data split over many reads), varies the order of FETCH items, sends
//! unsolicited responses, and misbehaves on request: wrong sizes, corrupted bodies, NO to
//! STORE, BYE in the middle of a session, no UIDPLUS, ignored EXPUNGEs.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
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
    /// No UIDPLUS: APPEND without APPENDUID, no UID EXPUNGE.
    NoUidplus,
    /// EXPUNGE answers OK and expunges nothing.
    ExpungeIgnored,
    /// During IDLE, an `* n EXISTS` after 10 ms (news arrived).
    IdleNews,
}

pub struct Msg {
    pub uid: u32,
    pub flags: BTreeSet<String>,
    pub body: Vec<u8>,
}

#[derive(Default)]
pub struct Mailbox {
    pub msgs: Vec<Msg>,
    pub uidnext: u32,
}

impl Mailbox {
    pub fn append(&mut self, body: Vec<u8>) -> u32 {
        self.uidnext = self.uidnext.max(1);
        let uid = self.uidnext;
        self.uidnext += 1;
        self.msgs.push(Msg {
            uid,
            flags: BTreeSet::new(),
            body,
        });
        uid
    }
}

pub type Store = Arc<Mutex<HashMap<String, Mailbox>>>;

pub struct Fake {
    pub addr: SocketAddr,
    pub store: Store,
}

pub fn fake_imap(fault: Fault) -> Fake {
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

/// A UID set: `5`, `1:*`, `3,7,9:12`; `max` stands for `*`.
fn uid_set(s: &str, max: u32) -> Vec<(u32, u32)> {
    let n = |x: &str| if x == "*" { max } else { x.parse().unwrap() };
    s.split(',')
        .map(|r| match r.split_once(':') {
            Some((a, b)) => {
                let (a, b) = (n(a), n(b));
                (a.min(b), a.max(b))
            }
            None => (n(r), n(r)),
        })
        .collect()
}

fn in_set(set: &[(u32, u32)], uid: u32) -> bool {
    set.iter().any(|&(a, b)| a <= uid && uid <= b)
}

fn session(s: TcpStream, store: Store, fault: Fault) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    w.write_all(b"* OK [CAPABILITY IMAP4rev1] fake ready\r\n")?;
    let mut user = String::new();
    let mut commands = 0;
    let uidplus = fault != Fault::NoUidplus;
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
            ("CAPABILITY", _) => {
                let extra = if uidplus { " UIDPLUS" } else { "" };
                out.extend(format!("* CAPABILITY IMAP4rev1 IDLE{extra}\r\n{ok}").bytes());
            }
            ("SELECT" | "EXAMINE", _) => {
                let mut st = store.lock().unwrap();
                let mb = st.entry(user.clone()).or_default();
                let n = mb.msgs.len();
                out.extend(
                    format!("* FLAGS (\\Seen \\Flagged \\Deleted)\r\n* {n} EXISTS\r\n* OK [UIDNEXT {}] x\r\n{tag} OK [READ-WRITE] selected\r\n", mb.uidnext.max(1))
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
                let uid = mb.append(body);
                out.extend(format!("* {} EXISTS\r\n", mb.msgs.len()).bytes());
                if uidplus {
                    out.extend(format!("{tag} OK [APPENDUID 1 {uid}] appended\r\n").bytes());
                } else {
                    out.extend(format!("{tag} OK appended\r\n").bytes());
                }
            }
            ("NOOP", _) => {
                let n = store.lock().unwrap()[&user].msgs.len();
                out.extend(format!("* {n} EXISTS\r\n{ok}").bytes());
            }
            ("IDLE", _) => {
                w.write_all(b"+ idling\r\n")?;
                if fault == Fault::IdleNews {
                    std::thread::sleep(Duration::from_millis(10));
                    let n = store.lock().unwrap()[&user].msgs.len();
                    w.write_all(format!("* {n} EXISTS\r\n").as_bytes())?;
                }
                let mut done = String::new();
                r.read_line(&mut done)?;
                assert_eq!(done, "DONE\r\n");
                out.extend(ok.bytes());
            }
            ("LOGOUT", _) => {
                w.write_all(format!("* BYE bye\r\n{ok}").as_bytes())?;
                return Ok(());
            }
            ("EXPUNGE", _) => expunge(&store, &user, None, fault, &ok, &mut out),
            ("UID", Some(sub)) if sub == "EXPUNGE" && uidplus => {
                let max = store.lock().unwrap()[&user].uidnext;
                let set = uid_set(words[2], max);
                expunge(&store, &user, Some(set), fault, &ok, &mut out);
            }
            ("UID", Some(sub)) if sub == "SEARCH" => {
                let st = store.lock().unwrap();
                let mb = &st[&user];
                let key = words[2].to_ascii_uppercase();
                let max = mb.msgs.last().map_or(0, |m| m.uid);
                let hits: Vec<String> = mb
                    .msgs
                    .iter()
                    .filter(|m| match key.as_str() {
                        "ALL" => true,
                        "UNSEEN" => !m.flags.contains("\\Seen"),
                        "UID" => in_set(&uid_set(words[3], max), m.uid),
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
                let st = store.lock().unwrap();
                let mb = &st[&user];
                let max = mb.msgs.last().map_or(0, |m| m.uid);
                let set = uid_set(words[2], max);
                for (i, m) in mb.msgs.iter().enumerate() {
                    if in_set(&set, m.uid) {
                        fetch(&mut out, i, m, rest, fault);
                    }
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
                    let i = mb.msgs.iter().position(|m| m.uid == uid).unwrap();
                    let m = &mut mb.msgs[i];
                    if fault == Fault::StoreIgnored {
                    } else if words[3].starts_with('+') {
                        m.flags.insert(flag);
                    } else {
                        m.flags.remove(&flag);
                    }
                    let flags = m.flags.iter().cloned().collect::<Vec<_>>().join(" ");
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

/// Expunges the \Deleted messages (of `set`, for UID EXPUNGE), announcing each.
fn expunge(
    store: &Store,
    user: &str,
    set: Option<Vec<(u32, u32)>>,
    fault: Fault,
    ok: &str,
    out: &mut Vec<u8>,
) {
    let mut st = store.lock().unwrap();
    let mb = st.get_mut(user).unwrap();
    let mut i = 0;
    while i < mb.msgs.len() && fault != Fault::ExpungeIgnored {
        let m = &mb.msgs[i];
        let chosen = set.as_ref().is_none_or(|s| in_set(s, m.uid));
        if chosen && m.flags.contains("\\Deleted") {
            mb.msgs.remove(i);
            out.extend(format!("* {} EXPUNGE\r\n", i + 1).bytes());
        } else {
            i += 1;
        }
    }
    out.extend(ok.bytes());
}

/// One `* n FETCH` response for message `i`, items depending on what `rest` asks for.
fn fetch(out: &mut Vec<u8>, i: usize, m: &Msg, rest: &str, fault: Fault) {
    let uid = m.uid;
    let flags = m.flags.iter().cloned().collect::<Vec<_>>().join(" ");
    // Now and then an unsolicited update of another message first.
    if uid % 3 == 0 {
        out.extend(b"* 1 FETCH (FLAGS (\\Seen))\r\n");
    }
    if rest.contains("HEADER.FIELDS") {
        let b = String::from_utf8_lossy(&m.body);
        let field: String = b
            .split("\r\n")
            .filter(|l| l.to_ascii_lowercase().starts_with("x-loadgen-id:"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        let field = format!("{field}\r\n");
        out.extend(
            format!(
                "* {} FETCH (UID {uid} BODY[HEADER.FIELDS (X-LOADGEN-ID)] {{{}}}\r\n{field})\r\n",
                i + 1,
                field.len()
            )
            .bytes(),
        );
    } else if rest.contains("BODY.PEEK[]") {
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
        out.extend(format!("* {} FETCH (UID {uid} FLAGS ({flags}))\r\n", i + 1).bytes());
    }
}
