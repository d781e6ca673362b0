//! The `Received:` trace header (RFC 5321 section 4.4, protocol names from RFC 3848).

use std::fmt::{Display, Write};
use std::time::SystemTime;

use crate::smtp::{Envelope, Mode};

/// Writes `Return-Path:` with the envelope's reverse-path (RFC 5321 section 4.4: added by
/// the server that makes the final delivery; `<>` for the null sender of bounces).
pub fn write_return_path(out: &mut impl Write, from: &str) {
    let _ = out.write_str("Return-Path: <");
    for c in from.chars().filter(|c| !c.is_control()).take(320) {
        let _ = out.write_char(c);
    }
    let _ = out.write_str(">\r\n");
}

/// Writes the header, CRLF-terminated, to `out`: the buffer the message then follows, so
/// delivery builds the stored message with no intermediate string.
pub fn write_header(
    out: &mut impl Write,
    env: &Envelope,
    mode: Mode,
    peer: impl Display,
    hostname: &str,
    id: impl Display,
    now: SystemTime,
) {
    let _ = out.write_str("Received: from ");
    for c in env.helo.chars().filter(|c| !c.is_control()).take(255) {
        let _ = out.write_char(c);
    }
    let _ = write!(out, " ({peer})\r\n\tby {hostname} (ringmail) with ");
    let _ = match mode {
        Mode::Lmtp => out.write_str("LMTP"),
        _ => write!(
            out,
            "{}SMTP{}{}",
            if env.esmtp { "E" } else { "" },
            if env.tls { "S" } else { "" },
            if env.auth.is_some() { "A" } else { "" }
        ),
    };
    let _ = write!(out, " id {id}");
    if let [only] = &env.rcpts[..] {
        let _ = write!(out, "\r\n\tfor <{only}>");
    }
    let _ = out.write_str(";\r\n\t");
    crate::dates::write_rfc5322(out, now);
    let _ = out.write_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn rfc5322_date(t: SystemTime) -> String {
        let mut s = String::new();
        crate::dates::write_rfc5322(&mut s, t);
        s
    }

    #[test]
    fn return_path() {
        let mut s = String::new();
        write_return_path(&mut s, "");
        write_return_path(&mut s, "a@b.example");
        assert_eq!(s, "Return-Path: <>\r\nReturn-Path: <a@b.example>\r\n");
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_795_305_675);
        assert_eq!(rfc5322_date(t), "Sun, 22 Nov 2026 00:01:15 +0000");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(rfc5322_date(t), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn header_names_the_protocol() {
        let env = Envelope {
            helo: "c.example".into(),
            rcpts: vec!["u@example.org".into()],
            esmtp: true,
            tls: true,
            auth: Some("u".into()),
            ..Default::default()
        };
        let mut h = String::new();
        write_header(
            &mut h,
            &env,
            Mode::Submission,
            "127.0.0.1",
            "mx.example.org",
            "42",
            UNIX_EPOCH,
        );
        assert!(h.starts_with("Received: from c.example (127.0.0.1)\r\n\tby mx.example.org (ringmail) with ESMTPSA id 42\r\n\tfor <u@example.org>;"), "{h}");
        assert!(h.ends_with("+0000\r\n"));
    }
}
