//! POP3 sessions as transcripts, fed whole and one byte at a time.

use super::session::{dot_stuff, top, DotStuffer, Event, MaildropEntry, Pop3Config, Session};
use crate::lines::LineSession;

const MSGS: [&[u8]; 3] = [
    b"Subject: one\r\n\r\nfirst\r\n",
    b"Subject: two\r\n\r\n.starts with a dot\r\nline 2\r\nline 3\r\n",
    b"Subject: three\r\n\r\nno final newline",
];

/// Runs a session; every login with password "pw" succeeds, the maildrop holds MSGS, and
/// commits succeed. Returns the output and the UIDs committed for deletion.
fn run(cfg: Pop3Config, parts: &[&[u8]], byte_at_a_time: bool) -> (String, Vec<u32>) {
    let mut s = Session::new(cfg);
    let mut out = Vec::new();
    let mut deleted = Vec::new();
    s.greeting(&mut out);
    let chunks: Vec<&[u8]> = if byte_at_a_time {
        parts.iter().flat_map(|p| p.chunks(1)).collect()
    } else {
        parts.to_vec()
    };
    for c in chunks {
        s.input(c);
        while let Some(ev) = s.poll(&mut out) {
            match ev {
                Event::StartTls => s.tls_started(),
                Event::Login { need, .. } => {
                    s.login_answer(crate::smtp::tests::answer(need, "pw"), &mut out)
                }
                Event::OpenMaildrop { account } => {
                    let r = if account == "locked@example.org" {
                        Err("[IN-USE] maildrop already locked".to_string())
                    } else {
                        Ok(MSGS
                            .iter()
                            .enumerate()
                            .map(|(i, m)| MaildropEntry {
                                id: 10 + i as u32,
                                uidl: format!("7.{}", 10 + i),
                                size: m.len() as u64,
                            })
                            .collect())
                    };
                    s.maildrop_opened(r, &mut out);
                }
                Event::Retrieve { id } => s.message_bytes(Ok(MSGS[(id - 10) as usize]), &mut out),
                Event::Commit { delete } => {
                    deleted = delete;
                    s.committed(Ok(()), &mut out);
                }
            }
        }
        if s.is_closed() {
            break;
        }
    }
    (String::from_utf8(out).unwrap(), deleted)
}

fn both(cfg: Pop3Config, input: &[u8]) -> (String, Vec<u32>) {
    let a = run(cfg.clone(), &[input], false);
    assert_eq!(a, run(cfg, &[input], true), "byte-at-a-time replay differs");
    a
}

fn tls() -> Pop3Config {
    let mut c = Pop3Config::new("pop.example.org");
    c.tls = true;
    c
}

#[test]
fn a_full_session() {
    let (out, deleted) = both(tls(), b"CAPA\r\nUSER u@example.org\r\nPASS pw\r\nSTAT\r\nLIST\r\nUIDL 2\r\nRETR 2\r\nTOP 2 1\r\nDELE 1\r\nDELE 1\r\nLIST 1\r\nSTAT\r\nRSET\r\nDELE 3\r\nQUIT\r\n");
    let total: usize = MSGS.iter().map(|m| m.len()).sum();
    assert!(
        out.contains("SASL PLAIN LOGIN SCRAM-SHA-256\r\n") && out.contains("RESP-CODES\r\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("+OK maildrop has 3 messages ({total} octets)")),
        "{out}"
    );
    assert!(out.contains(&format!("+OK 3 {total}\r\n")), "{out}");
    assert!(out.contains("+OK 2 7.11\r\n"), "{out}");
    assert!(out.contains("+OK message follows\r\nSubject: two\r\n\r\n..starts with a dot\r\nline 2\r\nline 3\r\n.\r\n"), "{out}");
    assert!(
        out.contains(
            "+OK top of message follows\r\nSubject: two\r\n\r\n..starts with a dot\r\n.\r\n"
        ),
        "{out}"
    );
    assert!(out.contains("-ERR message already deleted"), "{out}");
    assert!(out.contains("+OK 2 "), "{out}");
    assert!(
        out.ends_with("+OK pop.example.org signing off (1 messages deleted)\r\n"),
        "{out}"
    );
    assert_eq!(
        deleted,
        vec![12],
        "only the deletion after RSET is committed"
    );
}

#[test]
fn authorization_rules() {
    // Without TLS: no USER, no SASL; STLS offered.
    let mut plain = Pop3Config::new("pop.example.org");
    plain.starttls = true;
    let (out, _) = both(
        plain.clone(),
        b"CAPA\r\nUSER u@example.org\r\nSTAT\r\nQUIT\r\n",
    );
    assert!(
        out.contains("STLS\r\n") && !out.contains("USER\r\n"),
        "{out}"
    );
    assert!(
        out.contains("-ERR [AUTH] plaintext authentication requires STLS first"),
        "{out}"
    );
    assert!(
        out.contains("-ERR command not valid in the AUTHORIZATION state"),
        "{out}"
    );
    // STLS, then plaintext is fine; text pipelined after STLS is dropped.
    let (out, _) = run(
        plain,
        &[
            b"STLS\r\nUSER injected\r\n",
            b"USER u@example.org\r\nPASS pw\r\nQUIT\r\n",
        ],
        false,
    );
    assert!(
        out.contains("+OK begin TLS negotiation\r\n+OK send PASS"),
        "{out}"
    );
    // Wrong passwords: [AUTH], then closed after three.
    let (out, _) = both(
        tls(),
        b"USER u\r\nPASS x\r\nUSER u\r\nPASS y\r\nUSER u\r\nPASS z\r\nUSER u\r\n",
    );
    assert_eq!(
        out.matches("-ERR [AUTH] invalid credentials").count(),
        3,
        "{out}"
    );
    assert!(
        out.ends_with("-ERR too many failed logins, closing connection\r\n"),
        "{out}"
    );
    // A locked maildrop: [IN-USE], still in AUTHORIZATION.
    let (out, _) = both(
        tls(),
        b"USER locked@example.org\r\nPASS pw\r\nSTAT\r\nQUIT\r\n",
    );
    assert!(
        out.contains("-ERR [IN-USE]")
            && out.contains("-ERR command not valid in the AUTHORIZATION state"),
        "{out}"
    );
    // AUTH PLAIN with an initial response; PASS without USER; APOP is off.
    let (out, _) = both(
        tls(),
        b"PASS pw\r\nAPOP u 0123\r\nAUTH PLAIN AHVAZXhhbXBsZS5vcmcAcHc=\r\nSTAT\r\n",
    );
    assert!(
        out.contains("-ERR USER first")
            && out.contains("-ERR APOP is not enabled")
            && out.contains("+OK 3 "),
        "{out}"
    );
}

#[test]
fn bad_input_and_dropped_connections() {
    let mut cfg = tls();
    cfg.max_line = 50;
    let long = format!(
        "USER {}\r\nNOOP\r\nRETR 9\r\nRETR x\r\nFOO\r\nQUIT\r\n",
        "x".repeat(100)
    );
    let (out, _) = both(
        cfg.clone(),
        format!("USER u\r\nPASS pw\r\n{long}").as_bytes(),
    );
    assert!(
        out.contains("-ERR line too long")
            && out.contains("-ERR no such message")
            && out.contains("-ERR invalid message number")
            && out.contains("-ERR unknown command"),
        "{out}"
    );
    // A connection that drops after DELE commits nothing.
    let (_, deleted) = both(cfg, b"USER u\r\nPASS pw\r\nDELE 1\r\nDELE 2\r\n");
    assert!(deleted.is_empty());
}

#[test]
fn dot_stuffing_and_top() {
    let mut out = Vec::new();
    dot_stuff(b".a\r\nb\r\n..c\n.", &mut out);
    assert_eq!(out, b"..a\r\nb\r\n...c\n..\r\n.\r\n");
    // Fed one byte at a time, the same bytes come out.
    let mut pieces = Vec::new();
    let mut d = DotStuffer::default();
    for b in b".a\r\nb\r\n..c\n." {
        d.feed(&[*b], &mut pieces);
    }
    d.finish(&mut pieces);
    assert_eq!(pieces, out);
    assert_eq!(top(b"H: 1\r\n\r\nl1\r\nl2\r\n", 1), b"H: 1\r\n\r\nl1\r\n");
    assert_eq!(
        top(b"H: 1\r\n\r\nl1\r\nl2\r\n", 9),
        b"H: 1\r\n\r\nl1\r\nl2\r\n"
    );
    assert_eq!(top(b"H: 1\r\n", 0), b"H: 1\r\n");
}

#[test]
fn sasl_scram_sha_256() {
    use crate::sasl::scram::{client_final, Credentials};
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let unb64 = |s: &str| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .unwrap(),
        )
        .unwrap()
    };
    for (password, ok) in [("pw", true), ("nope", false)] {
        let mut s = Session::new(tls());
        let mut out = Vec::new();
        let bare = "n=u@example.org,r=cn";
        s.input(format!("AUTH SCRAM-SHA-256 {}\r\n", b64(&format!("n,,{bare}"))).as_bytes());
        assert_eq!(
            s.poll(&mut out),
            Some(Event::Login {
                need: crate::sasl::Need::ScramKeys {
                    user: "u@example.org".into()
                },
                mechanism: crate::sasl::Mechanism::ScramSha256
            })
        );
        let creds = Credentials::derive("pw", b"salt-salt-salt!!", 4096);
        s.login_answer(
            crate::sasl::Answer::ScramKeys {
                found: Some((creds, vec!["u@example.org".into()])),
                nonce: "sn".into(),
                fake_salt: Vec::new(),
            },
            &mut out,
        );
        let line = String::from_utf8(std::mem::take(&mut out)).unwrap();
        let server_first = unb64(line.strip_prefix("+ ").unwrap());
        s.input(
            format!(
                "{}\r\n",
                b64(&client_final(password, bare, &server_first, "n,,"))
            )
            .as_bytes(),
        );
        let ev = s.poll(&mut out);
        let reply = String::from_utf8(std::mem::take(&mut out)).unwrap();
        if ok {
            assert!(
                ev.is_none() && reply.starts_with("+ ") && unb64(&reply[2..]).starts_with("v="),
                "{reply}"
            );
            s.input(b"\r\n");
            assert_eq!(
                s.poll(&mut out),
                Some(Event::OpenMaildrop {
                    account: "u@example.org".into()
                })
            );
        } else {
            assert!(reply.starts_with("-ERR [AUTH]"), "{reply}");
            assert_eq!(s.take_login_outcome(), Some(false));
        }
    }
}

/// The same login behaviour as SMTP's (see the SMTP test of the same name).
#[test]
fn malformed_sasl_is_an_error_not_a_failed_login() {
    use base64::Engine as _;
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let mut s = Session::new(tls());
    let mut out = Vec::new();
    s.input(format!("AUTH SCRAM-SHA-256 {}\r\n", b64(b"n,,n=u,r=x")).as_bytes());
    let Some(Event::Login { need, .. }) = s.poll(&mut out) else {
        panic!("no lookup")
    };
    s.login_answer(crate::smtp::tests::answer(need, "pw"), &mut out);
    s.input(b"!!!\r\n");
    assert!(s.poll(&mut out).is_none());
    let text = String::from_utf8(std::mem::take(&mut out)).unwrap();
    assert!(text.ends_with("-ERR invalid base64\r\n"), "{text}");
    assert_eq!(s.take_login_outcome(), None);
    s.input(b"AUTH LOGIN\r\n*\r\n");
    assert!(s.poll(&mut out).is_none());
    let text = String::from_utf8(std::mem::take(&mut out)).unwrap();
    assert!(
        text.ends_with("-ERR authentication cancelled\r\n"),
        "{text}"
    );
    assert_eq!(s.take_login_outcome(), None);
    s.input(format!("AUTH PLAIN {}\r\n", b64(b"\0u@example.org\0wrong")).as_bytes());
    let Some(Event::Login { need, .. }) = s.poll(&mut out) else {
        panic!("no check")
    };
    s.login_answer(crate::smtp::tests::answer(need, "pw"), &mut out);
    assert!(String::from_utf8_lossy(&out).starts_with("-ERR [AUTH]"));
    assert_eq!(s.take_login_outcome(), Some(false));
}
