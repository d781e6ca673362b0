//! Whole sessions as transcripts, fed at once and one byte at a time.

use super::reply::Reply;
use super::session::{Event, Mode, Session, SessionConfig};
use crate::lines::LineSession;
use crate::sasl::{Answer, Mechanism, Need};
use base64::Engine as _;

/// The server's output, and each delivered message with its recipients.
type Transcript = (String, Vec<(Vec<String>, Vec<u8>)>);

/// Runs `input` through a session; `users` are the known recipients, every delivery
/// succeeds, and the password is "secret". Returns the output and the delivered messages.
fn run(cfg: SessionConfig, input: &[u8], byte_at_a_time: bool) -> Transcript {
    run_parts(cfg, &[input], byte_at_a_time)
}

/// Like `run`, with input arriving in separate reads (each part after the previous one was
/// processed), as across a TLS handshake.
fn run_parts(cfg: SessionConfig, parts: &[&[u8]], byte_at_a_time: bool) -> Transcript {
    let mut s = Session::new(cfg);
    let mut out = Vec::new();
    let mut delivered = Vec::new();
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
                Event::CheckRecipient { address, .. } => {
                    let ok = address.ends_with("@example.org") && !address.starts_with("nobody");
                    s.rcpt_result(
                        if ok {
                            Ok(())
                        } else {
                            Err(super::reply::r::no_such_user())
                        },
                        &mut out,
                    );
                }
                Event::Login { need, .. } => s.login_answer(answer(need, "secret"), &mut out),
                Event::Deliver { envelope, message } => {
                    let n = envelope.rcpts.len();
                    delivered.push((envelope.rcpts, message));
                    s.deliver_result(
                        (0..n).map(|i| Ok::<_, Reply>(format!("id{i}"))).collect(),
                        &mut out,
                    );
                }
                Event::StartTls => s.tls_started(),
                // Answered as the server does; the transcript shows the reply.
                Event::Remember { .. } => s.remembered(&mut out),
                // URLs containing "good" resolve to a line naming the submitter.
                Event::FetchUrl { url, user } => s.burl_result(
                    if url.contains("good") {
                        Ok(format!("[{url} for {user}]").into_bytes())
                    } else {
                        Err(Reply::new(
                            554,
                            Some((5, 6, 6)),
                            "IMAP URL resolution failed",
                        ))
                    },
                    &mut out,
                ),
            }
        }
        if s.is_closed() {
            break;
        }
    }
    (String::from_utf8(out).unwrap(), delivered)
}

/// The server's answer to a login: `password` is everyone's; SCRAM users are unknown.
pub(crate) fn answer(need: Need, password: &str) -> Answer {
    match need {
        Need::Password { user, password: p } => {
            Answer::Password((p.0 == password).then(|| vec![user]))
        }
        Need::ScramKeys { .. } => Answer::ScramKeys {
            found: None,
            nonce: "n".into(),
            fake_salt: b"salt".to_vec(),
        },
    }
}

fn both(cfg: SessionConfig, input: &[u8]) -> Transcript {
    let whole = run(cfg.clone(), input, false);
    let bytes = run(cfg, input, true);
    assert_eq!(whole, bytes, "byte-at-a-time replay differs");
    whole
}

fn inbound() -> SessionConfig {
    SessionConfig::new(Mode::Inbound, "mx.example.org")
}

#[test]
fn pipelined_transaction_with_dot_stuffing() {
    let input = b"EHLO client.example\r\nMAIL FROM:<a@remote.example> SIZE=30\r\nRCPT TO:<u@example.org>\r\nRCPT TO:<nobody@example.org>\r\nRCPT TO:<v@example.org>\r\nDATA\r\nSubject: x\r\n\r\n..leading dot\r\nbody\r\n.\r\nQUIT\r\n";
    let (out, delivered) = both(inbound(), input);
    let codes: Vec<&str> = out.lines().map(|l| &l[..4]).collect();
    assert!(
        out.contains("250-PIPELINING") && out.contains("250-CHUNKING") && out.contains("250 DSN"),
        "{out}"
    );
    assert!(out.contains("550 5.1.1"), "{out}");
    assert_eq!(codes.last(), Some(&"221 "));
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].0, vec!["u@example.org", "v@example.org"]);
    assert_eq!(
        delivered[0].1,
        b"Subject: x\r\n\r\n.leading dot\r\nbody\r\n"
    );
}

#[test]
fn bdat_chunks_and_binary_bodies() {
    let mut input = b"EHLO c\r\nMAIL FROM:<> BODY=BINARYMIME\r\nRCPT TO:<u@example.org>\r\nBDAT 5\r\nab\r\nxBDAT 3 LAST\r\n\x00.\n".to_vec();
    input.extend_from_slice(b"QUIT\r\n");
    let (out, delivered) = both(inbound(), &input);
    assert!(out.contains("250 2.0.0 5 octets received"), "{out}");
    assert_eq!(delivered[0].1, b"ab\r\nx\x00.\n");
    // DATA is refused with BODY=BINARYMIME.
    let (out, _) = both(
        inbound(),
        b"EHLO c\r\nMAIL FROM:<> BODY=BINARYMIME\r\nRCPT TO:<u@example.org>\r\nDATA\r\n",
    );
    assert!(out.contains("503 5.5.1"), "{out}");
}

#[test]
fn lmtp_replies_once_per_recipient() {
    let cfg = SessionConfig::new(Mode::Lmtp, "lmtp.example.org");
    let (out, delivered) = both(cfg.clone(), b"LHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.org>\r\nRCPT TO:<v@example.org>\r\nDATA\r\nhi\r\n.\r\n");
    assert_eq!(out.matches("250 2.0.0 stored as").count(), 2, "{out}");
    assert_eq!(delivered.len(), 1);
    let (out, _) = both(cfg.clone(), b"EHLO x\r\n");
    assert!(out.contains("500 this service expects LHLO"), "{out}");
    // A message refused as a whole (too large) is still answered once per recipient.
    let mut small = cfg;
    small.max_message_size = 10;
    let (out, delivered) = both(small, b"LHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.org>\r\nRCPT TO:<v@example.org>\r\nDATA\r\nmore than ten bytes\r\n.\r\nNOOP\r\n");
    assert_eq!(out.matches("552 ").count(), 2, "{out}");
    assert!(out.ends_with("250 2.0.0 OK\r\n"), "{out}");
    assert!(delivered.is_empty());
}

/// The cluster port's LMTP takes a delivery key on MAIL and XREMEMBER; a client's LMTP
/// session takes neither.
#[test]
fn only_cluster_peers_may_name_delivery_keys() {
    let input: &[u8] = b"LHLO x\r\nMAIL FROM:<a@b.example> XRINGMAIL-KEY=00ff\r\nRSET\r\nXREMEMBER 00ff u@example.org\r\nXREMEMBER 00ff\r\n";
    let cfg = SessionConfig::new(Mode::Lmtp, "lmtp.example.org");
    let (out, _) = both(cfg.clone(), input);
    assert!(out.contains("555 "), "{out}");
    assert!(out.contains("502 "), "{out}");
    let mut peer = cfg;
    peer.cluster_peer = true;
    let (out, _) = both(peer, input);
    let replies: Vec<&str> = out.lines().filter(|l| !l.starts_with("250-")).collect();
    assert!(replies[2].starts_with("250"), "{out}");
    assert!(replies[4].starts_with("250 2.0.0 OK"), "{out}");
    assert!(replies[5].starts_with("501"), "{out}");
}

/// BURL (RFC 4468): URL content joins the message like a BDAT chunk, interleaved with
/// BDAT, delivered at LAST; a URL that does not resolve fails the transaction; BURL needs
/// authentication, recipients, and the submission service.
#[test]
fn burl_takes_message_content_from_urls() {
    let mut cfg = SessionConfig::new(Mode::Submission, "smtp.example.org");
    cfg.tls = true;
    let auth: &[u8] = b"EHLO c\r\nAUTH PLAIN AHVAZXhhbXBsZS5vcmcAc2VjcmV0\r\n";
    let (out, delivered) = both(
        cfg.clone(),
        &[
            auth,
            b"MAIL FROM:<u@example.org>\r\nBURL imap://x/good;1\r\n",
            b"RCPT TO:<v@example.org>\r\nBURL imap://x/good;1\r\nBDAT 3\r\n|x|BURL imap://x/good;2 LAST\r\n",
            b"MAIL FROM:<u@example.org>\r\nRCPT TO:<v@example.org>\r\nBURL imap://x/bad LAST\r\n",
            b"BDAT 1 LAST\r\nz",
        ]
        .concat(),
    );
    assert!(out.contains("250-BURL imap"), "{out}");
    assert!(
        out.contains("503 5.5.1 need MAIL before BURL") || out.contains("554 5.5.0"),
        "{out}"
    );
    assert!(
        out.contains("554 5.6.6 IMAP URL resolution failed"),
        "{out}"
    );
    assert_eq!(delivered.len(), 1, "{out}");
    assert_eq!(
        String::from_utf8_lossy(&delivered[0].1),
        "[imap://x/good;1 for u@example.org]|x|[imap://x/good;2 for u@example.org]"
    );
    // The failed transaction is gone: its BDAT after it finds no MAIL.
    assert!(out.contains("need MAIL before BDAT"), "{out}");
    // Not on port 25, and not before AUTH.
    let inbound = SessionConfig::new(Mode::Inbound, "mx.example.org");
    let (out, _) = both(
        inbound,
        b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<v@example.org>\r\nBURL imap://x/good LAST\r\n",
    );
    assert!(!out.contains("BURL imap"), "{out}");
    assert!(out.contains("502 5.5.1"), "{out}");
    let (out, _) = both(cfg, b"EHLO c\r\nBURL imap://x/good LAST\r\n");
    assert!(out.contains("503"), "{out}");
}

#[test]
fn submission_requires_tls_then_auth_and_owned_sender() {
    let mut cfg = SessionConfig::new(Mode::Submission, "smtp.example.org");
    cfg.starttls = true;
    let (out, _) = both(
        cfg.clone(),
        b"EHLO c\r\nAUTH PLAIN AHVAZXhhbXBsZS5vcmcAc2VjcmV0\r\nMAIL FROM:<u@example.org>\r\n",
    );
    assert!(
        !out.contains("AUTH PLAIN LOGIN"),
        "AUTH offered before TLS: {out}"
    );
    assert!(out.contains("530 5.7.0 must issue a STARTTLS"), "{out}");
    assert!(out.contains("530 5.7.0 authentication required"), "{out}");
    // After STARTTLS: EHLO again, AUTH, and only the user's own address as sender.
    // Plaintext pipelined behind STARTTLS must be discarded (RFC 3207 section 6).
    let before: &[u8] = b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<injected@example.org>\r\n";
    let after: &[u8] = b"EHLO c\r\nAUTH PLAIN AHVAZXhhbXBsZS5vcmcAc2VjcmV0\r\nMAIL FROM:<other@example.org>\r\nMAIL FROM:<u@example.org>\r\nRCPT TO:<v@example.org>\r\nDATA\r\nx\r\n.\r\n";
    let (out, delivered) = run_parts(cfg.clone(), &[before, after], false);
    assert!(!out.contains("sender OK\r\n250 2.1.0 sender OK"), "{out}");
    assert_eq!(out.matches("2.1.0 sender OK").count(), 1, "{out}");
    assert!(out.contains("220 2.0.0 ready to start TLS"));
    assert!(
        out.contains("250-AUTH PLAIN LOGIN") || out.contains("250 AUTH PLAIN LOGIN"),
        "{out}"
    );
    assert!(out.contains("235 2.7.0"), "{out}");
    assert!(out.contains("553 5.7.1"), "{out}");
    assert_eq!(delivered.len(), 1);
    // AUTH LOGIN, a wrong password three times, then the session closes.
    cfg.tls = true;
    let (out, _) = both(
        cfg.clone(),
        b"EHLO c\r\nAUTH LOGIN\r\ndUBleGFtcGxlLm9yZw==\r\nc2VjcmV0\r\n",
    );
    assert!(
        out.contains("334 VXNlcm5hbWU6")
            && out.contains("334 UGFzc3dvcmQ6")
            && out.contains("235 2.7.0"),
        "{out}"
    );
    let bad = b"EHLO c\r\nAUTH PLAIN AHUAd3Jvbmc=\r\nAUTH PLAIN AHUAd3Jvbmc=\r\nAUTH PLAIN AHUAd3Jvbmc=\r\nNOOP\r\n";
    let (out, _) = both(cfg.clone(), bad);
    assert_eq!(out.matches("535 5.7.8").count(), 3, "{out}");
    assert!(
        out.contains("421") && !out.contains("250 2.0.0 OK"),
        "{out}"
    );
    let (out, _) = both(
        cfg,
        b"EHLO c\r\nAUTH PLAIN !!!notbase64\r\nAUTH LOGIN\r\n*\r\n",
    );
    assert!(
        out.contains("501 5.5.2 invalid base64") && out.contains("501 5.0.0"),
        "{out}"
    );
}

#[test]
fn bad_input_gets_proper_replies() {
    let mut cfg = inbound();
    cfg.max_line = 100;
    let long = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(500));
    let (out, _) = both(cfg.clone(), long.as_bytes());
    // No EHLO yet: no enhanced status codes.
    assert!(
        out.contains("500 line too long") && out.ends_with("250 OK\r\n"),
        "{out}"
    );
    let (out, _) = both(cfg.clone(), b"MAIL FROM:<a@b.c>\r\nRCPT TO:<u@example.org>\r\nDATA\r\nFOO\r\nHELO x\r\nRCPT TO:<u@example.org>\r\nMAIL FROM:<a@b.c> FOO=1\r\n");
    assert!(
        out.contains("503 bad sequence of commands: say hello first"),
        "{out}"
    );
    assert!(
        out.contains("503 bad sequence of commands: need MAIL before RCPT"),
        "{out}"
    );
    assert!(out.contains("500 command not recognized"), "{out}");
    assert!(out.contains("555 parameter FOO"), "{out}");
    // Too many errors: 421 and close.
    let (out, _) = both(cfg.clone(), "FOO\r\n".repeat(30).as_bytes());
    assert!(out.contains("421 too many errors"), "{out}");
    assert_eq!(out.matches("500 command not recognized").count(), 20);
    // A message over the limit is consumed and refused, and the session goes on.
    cfg.max_message_size = 10;
    let (out, delivered) = both(cfg, b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<u@example.org>\r\nDATA\r\n0123456789abcdef\r\n.\r\nNOOP\r\n");
    assert!(
        out.contains("552 5.3.4") && out.ends_with("250 2.0.0 OK\r\n"),
        "{out}"
    );
    assert!(delivered.is_empty());
}

#[test]
fn scram_sha_256_authenticates_and_rejects_a_wrong_password() {
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
    for (password, ok) in [("secret", true), ("wrong", false)] {
        let mut cfg = SessionConfig::new(Mode::Submission, "smtp.example.org");
        cfg.tls = true;
        let mut s = Session::new(cfg);
        let mut out = Vec::new();
        s.input(b"EHLO c\r\n");
        assert!(s.poll(&mut out).is_none());
        assert!(String::from_utf8_lossy(&out).contains("SCRAM-SHA-256"));
        out.clear();
        let bare = "n=u@example.org,r=clientnonce";
        s.input(format!("AUTH SCRAM-SHA-256 {}\r\n", b64(&format!("n,,{bare}"))).as_bytes());
        assert_eq!(
            s.poll(&mut out),
            Some(Event::Login {
                need: Need::ScramKeys {
                    user: "u@example.org".into()
                },
                mechanism: Mechanism::ScramSha256
            })
        );
        let creds = Credentials::derive("secret", b"0123456789abcdef", 4096);
        s.login_answer(
            Answer::ScramKeys {
                found: Some((creds, vec!["u@example.org".into()])),
                nonce: "servernonce".into(),
                fake_salt: Vec::new(),
            },
            &mut out,
        );
        let line = String::from_utf8(std::mem::take(&mut out)).unwrap();
        assert!(line.starts_with("334 "), "{line}");
        let server_first = unb64(&line[4..]);
        assert!(server_first.starts_with("r=clientnonceservernonce,s="));
        let fin = client_final(password, bare, &server_first, "n,,");
        s.input(format!("{}\r\n", b64(&fin)).as_bytes());
        assert!(s.poll(&mut out).is_none());
        let reply = String::from_utf8(std::mem::take(&mut out)).unwrap();
        if ok {
            assert!(reply.starts_with("334 "), "{reply}");
            assert!(unb64(&reply[4..]).starts_with("v="));
            s.input(b"\r\n");
            assert!(s.poll(&mut out).is_none());
            assert_eq!(
                String::from_utf8_lossy(&out),
                "235 2.7.0 authentication succeeded\r\n"
            );
            assert_eq!(s.authenticated_user(), Some("u@example.org"));
        } else {
            assert!(reply.starts_with("535 5.7.8"), "{reply}");
            assert_eq!(s.authenticated_user(), None);
        }
    }
}

/// One login behaviour in every protocol (`sasl::exchange`): a malformed client message is
/// a protocol error and not a failed login; wrong credentials are.
#[test]
fn malformed_sasl_is_an_error_not_a_failed_login() {
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let mut cfg = SessionConfig::new(Mode::Submission, "smtp.example.org");
    cfg.tls = true;
    let mut s = Session::new(cfg);
    let mut out = Vec::new();
    s.input(format!("EHLO c\r\nAUTH SCRAM-SHA-256 {}\r\n", b64(b"n,,n=u,r=x")).as_bytes());
    let Some(Event::Login { need, .. }) = s.poll(&mut out) else {
        panic!("no lookup")
    };
    s.login_answer(answer(need, "secret"), &mut out);
    s.input(b"!!!\r\n");
    assert!(s.poll(&mut out).is_none());
    let text = String::from_utf8(std::mem::take(&mut out)).unwrap();
    assert!(
        text.ends_with("501 5.5.2 invalid base64 data\r\n"),
        "{text}"
    );
    assert_eq!(s.take_login_outcome(), None);
    s.input(b"AUTH LOGIN\r\n*\r\n");
    assert!(s.poll(&mut out).is_none());
    let text = String::from_utf8(std::mem::take(&mut out)).unwrap();
    assert!(
        text.ends_with("501 5.0.0 authentication cancelled\r\n"),
        "{text}"
    );
    assert_eq!(s.take_login_outcome(), None);
    s.input(format!("AUTH PLAIN {}\r\n", b64(b"\0u@example.org\0wrong")).as_bytes());
    let Some(Event::Login { need, .. }) = s.poll(&mut out) else {
        panic!("no check")
    };
    s.login_answer(answer(need, "secret"), &mut out);
    assert!(String::from_utf8_lossy(&out).starts_with("535 5.7.8"));
    assert_eq!(s.take_login_outcome(), Some(false));
}
