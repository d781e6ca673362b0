//! The `Received:` trace header (RFC 5321 section 4.4, protocol names from RFC 3848).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::smtp::{Envelope, Mode};

/// RFC 5322 date-time in UTC, e.g. `Sun, 22 Nov 2026 00:01:15 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = crate::imap::datetime::civil_from_days(days);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The header, CRLF-terminated, to put in front of the message.
pub fn header(
    env: &Envelope,
    mode: Mode,
    peer: &str,
    hostname: &str,
    id: &str,
    now: SystemTime,
) -> String {
    let proto = match mode {
        Mode::Lmtp => "LMTP".to_string(),
        _ => format!(
            "{}SMTP{}{}",
            if env.esmtp { "E" } else { "" },
            if env.tls { "S" } else { "" },
            if env.auth.is_some() { "A" } else { "" }
        ),
    };
    let helo: String = env
        .helo
        .chars()
        .filter(|c| !c.is_control())
        .take(255)
        .collect();
    let rcpt = if env.rcpts.len() == 1 {
        format!("\r\n\tfor <{}>", env.rcpts[0])
    } else {
        String::new()
    };
    format!(
        "Received: from {helo} ({peer})\r\n\tby {hostname} (ringmail) with {proto} id {id}{rcpt};\r\n\t{}\r\n",
        rfc5322_date(now)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let h = header(
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
