//! An in-memory POP3 server: USER/PASS (password "pw"), LIST, RETR, DELE, QUIT (which
//! commits the deletions), and STLS refused.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// user → messages.
pub type Maildrops = Arc<Mutex<HashMap<String, Vec<Vec<u8>>>>>;

pub struct FakePop3 {
    pub addr: SocketAddr,
    pub maildrops: Maildrops,
}

/// A server whose users `user1` … `user{users}` hold `per_user` small messages each.
pub fn fake_pop3(users: usize, per_user: usize) -> FakePop3 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let maildrops: Maildrops = Arc::default();
    for u in 1..=users {
        let msgs = (0..per_user)
            .map(|i| format!("Subject: {i}\r\n\r\n.dot-stuffed line {i}\r\n").into_bytes())
            .collect();
        maildrops.lock().unwrap().insert(format!("user{u}"), msgs);
    }
    let md = maildrops.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let md = md.clone();
            std::thread::spawn(move || {
                let _ = session(s, md);
            });
        }
    });
    FakePop3 { addr, maildrops }
}

fn session(s: TcpStream, maildrops: Maildrops) -> std::io::Result<()> {
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    w.write_all(b"+OK fake\r\n")?;
    let mut user = String::new();
    let mut authed = false;
    let mut deleted: Vec<usize> = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let n = || {
            words
                .get(1)
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0)
        };
        let drops = maildrops.lock().unwrap();
        let mine = drops.get(&user);
        let out = match words.first().map(|w| w.to_ascii_uppercase()).as_deref() {
            Some("STLS") => "-ERR no TLS here\r\n".to_string(),
            Some("USER") => {
                user = words[1].to_string();
                "+OK\r\n".to_string()
            }
            Some("PASS") if words.get(1) == Some(&"pw") && mine.is_some() => {
                authed = true;
                "+OK in\r\n".to_string()
            }
            Some("PASS") => "-ERR [AUTH] no\r\n".to_string(),
            Some("LIST") if authed => {
                let mut o = "+OK\r\n".to_string();
                for (i, m) in mine.unwrap().iter().enumerate() {
                    if !deleted.contains(&(i + 1)) {
                        o.push_str(&format!("{} {}\r\n", i + 1, m.len()));
                    }
                }
                o + ".\r\n"
            }
            Some("RETR") if authed && n() >= 1 && n() <= mine.unwrap().len() => {
                let m = String::from_utf8_lossy(&mine.unwrap()[n() - 1]).into_owned();
                let stuffed = m.replace("\r\n.", "\r\n..");
                let stuffed = stuffed
                    .strip_prefix('.')
                    .map_or(stuffed.clone(), |s| format!("..{s}"));
                format!("+OK\r\n{stuffed}.\r\n")
            }
            Some("DELE") if authed && n() >= 1 && !deleted.contains(&n()) => {
                deleted.push(n());
                "+OK deleted\r\n".to_string()
            }
            Some("QUIT") => {
                drop(drops);
                if authed {
                    let mut drops = maildrops.lock().unwrap();
                    let mb = drops.get_mut(&user).unwrap();
                    deleted.sort_unstable();
                    for &i in deleted.iter().rev() {
                        mb.remove(i - 1);
                    }
                }
                w.write_all(b"+OK bye\r\n")?;
                return Ok(());
            }
            _ => "-ERR what\r\n".to_string(),
        };
        w.write_all(out.as_bytes())?;
    }
}
