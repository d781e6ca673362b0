//! SMTP replies (RFC 5321 section 4.2) with enhanced status codes (RFC 3463).

use std::io::Write as _;

/// A reply: a code, an optional enhanced status, and one or more text lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<(u8, u16, u16)>,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, enhanced: Option<(u8, u16, u16)>, text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced,
            lines: vec![text.into()],
        }
    }

    pub fn multi(code: u16, lines: Vec<String>) -> Self {
        Self {
            code,
            enhanced: None,
            lines,
        }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// Appends the wire form; enhanced codes only when the extension was announced.
    pub fn encode(&self, out: &mut Vec<u8>, enhanced: bool) {
        let n = self.lines.len().max(1);
        for i in 0..n {
            let sep = if i + 1 == n { ' ' } else { '-' };
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            // Written in place: two `format!`s per line were an allocation each.
            let _ = write!(out, "{}{sep}", self.code);
            if let (true, Some((a, b, c))) = (enhanced, self.enhanced) {
                let _ = write!(out, "{a}.{b}.{c} ");
            }
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// The replies the session uses, named by meaning.
pub mod r {
    use super::Reply;

    pub fn ok() -> Reply {
        Reply::new(250, Some((2, 0, 0)), "OK")
    }
    pub fn sender_ok() -> Reply {
        Reply::new(250, Some((2, 1, 0)), "sender OK")
    }
    pub fn rcpt_ok() -> Reply {
        Reply::new(250, Some((2, 1, 5)), "recipient OK")
    }
    pub fn queued(id: &str) -> Reply {
        Reply::new(250, Some((2, 0, 0)), format!("stored as {id}"))
    }
    pub fn start_data() -> Reply {
        Reply::new(354, None, "end data with <CRLF>.<CRLF>")
    }
    pub fn bye(host: &str) -> Reply {
        Reply::new(221, Some((2, 0, 0)), format!("{host} closing connection"))
    }
    pub fn ready_tls() -> Reply {
        Reply::new(220, Some((2, 0, 0)), "ready to start TLS")
    }
    pub fn auth_ok() -> Reply {
        Reply::new(235, Some((2, 7, 0)), "authentication succeeded")
    }
    pub fn syntax(what: &str) -> Reply {
        Reply::new(501, Some((5, 5, 4)), format!("syntax error: {what}"))
    }
    pub fn unknown_command() -> Reply {
        Reply::new(500, Some((5, 5, 1)), "command not recognized")
    }
    pub fn line_too_long() -> Reply {
        Reply::new(500, Some((5, 5, 2)), "line too long")
    }
    pub fn bad_sequence(what: &str) -> Reply {
        Reply::new(
            503,
            Some((5, 5, 1)),
            format!("bad sequence of commands: {what}"),
        )
    }
    pub fn not_implemented(what: &str) -> Reply {
        Reply::new(502, Some((5, 5, 1)), format!("{what} not implemented"))
    }
    pub fn param_not_supported(p: &str) -> Reply {
        Reply::new(555, Some((5, 5, 4)), format!("parameter {p} not supported"))
    }
    pub fn too_big(limit: u64) -> Reply {
        Reply::new(
            552,
            Some((5, 3, 4)),
            format!("message exceeds the limit of {limit} bytes"),
        )
    }
    pub fn too_many_recipients() -> Reply {
        Reply::new(452, Some((4, 5, 3)), "too many recipients")
    }
    pub fn no_such_user() -> Reply {
        Reply::new(550, Some((5, 1, 1)), "no such user here")
    }
    pub fn relay_denied() -> Reply {
        Reply::new(550, Some((5, 7, 1)), "relaying denied")
    }
    pub fn no_outbound() -> Reply {
        Reply::new(
            550,
            Some((5, 7, 1)),
            "delivery to remote domains is not available on this server yet",
        )
    }
    pub fn auth_required() -> Reply {
        Reply::new(530, Some((5, 7, 0)), "authentication required")
    }
    pub fn tls_required() -> Reply {
        Reply::new(530, Some((5, 7, 0)), "must issue a STARTTLS command first")
    }
    pub fn auth_failed() -> Reply {
        Reply::new(535, Some((5, 7, 8)), "authentication credentials invalid")
    }
    pub fn auth_cancelled() -> Reply {
        Reply::new(501, Some((5, 0, 0)), "authentication cancelled")
    }
    pub fn bad_base64() -> Reply {
        Reply::new(501, Some((5, 5, 2)), "invalid base64 data")
    }
    pub fn sender_not_owned() -> Reply {
        Reply::new(
            553,
            Some((5, 7, 1)),
            "sender address not owned by the authenticated user",
        )
    }
    pub fn too_many_errors() -> Reply {
        Reply::new(421, Some((4, 7, 0)), "too many errors, closing connection")
    }
    pub fn timeout(host: &str) -> Reply {
        Reply::new(
            421,
            Some((4, 4, 2)),
            format!("{host} timeout, closing connection"),
        )
    }
    /// The server cannot hold the message now (its memory for messages in flight is
    /// spent): RFC 3463 4.3.1, the client retries later.
    pub fn insufficient_storage() -> Reply {
        Reply::new(
            452,
            Some((4, 3, 1)),
            "insufficient system storage, try again later",
        )
    }

    /// RFC 4954 section 6: logins from this client are refused for now.
    pub fn auth_temporarily_unavailable() -> Reply {
        Reply::new(
            454,
            Some((4, 7, 0)),
            "too many failed logins, try again later",
        )
    }

    pub fn local_error() -> Reply {
        Reply::new(
            451,
            Some((4, 3, 0)),
            "local error in processing, try again later",
        )
    }
    pub fn mailbox_full() -> Reply {
        Reply::new(452, Some((4, 2, 2)), "mailbox full")
    }
    pub fn vrfy_disabled() -> Reply {
        Reply::new(
            252,
            Some((2, 5, 0)),
            "cannot VRFY user, but will accept message",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_single_and_multi_line() {
        let mut v = Vec::new();
        r::ok().encode(&mut v, true);
        r::ok().encode(&mut v, false);
        Reply::multi(250, vec!["a".into(), "b".into()]).encode(&mut v, true);
        assert_eq!(v, b"250 2.0.0 OK\r\n250 OK\r\n250-a\r\n250 b\r\n");
    }
}
