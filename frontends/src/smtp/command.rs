//! SMTP and LMTP command grammar (RFC 5321 section 4.1, RFC 2033, RFC 3030, RFC 4954).
//!
//! Commands are parsed from one line without its CRLF; parameters are kept as given and
//! checked by the session, which knows what was announced.

use super::reply::{r, Reply};

/// ESMTP parameters (`KEY` or `KEY=value`), keys upper-cased.
pub type Params = Vec<(String, Option<String>)>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Lhlo(String),
    /// `MAIL FROM:<reverse-path> [params]`; the path may be empty (`<>`).
    Mail {
        from: String,
        params: Vec<(String, Option<String>)>,
    },
    Rcpt {
        to: String,
        params: Vec<(String, Option<String>)>,
    },
    Data,
    Bdat {
        size: u64,
        last: bool,
    },
    /// RFC 4468: message content from an IMAP URL, on submission.
    Burl {
        url: String,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy(String),
    Help,
    StartTls,
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
    /// Cluster port only (`server/dedup.rs`): `XREMEMBER <key> <address>...`, copies of a
    /// delivery stored here that its client will send again.
    XRemember {
        key: String,
        addresses: Vec<String>,
    },
}

/// Parses one command line (without CRLF).
pub fn parse(line: &[u8]) -> Result<Command, Reply> {
    let line = std::str::from_utf8(line).map_err(|_| r::syntax("command is not UTF-8"))?;
    if line.bytes().any(|b| b == 0 || (b < 32 && b != b'\t')) {
        return Err(r::syntax("control characters in command"));
    }
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], line[i + 1..].trim()),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let arg = |name: &str| -> Result<String, Reply> {
        if rest.is_empty() {
            Err(r::syntax(&format!("{name} needs an argument")))
        } else {
            Ok(rest.to_string())
        }
    };
    let none = |c: Command| -> Result<Command, Reply> {
        if rest.is_empty() {
            Ok(c)
        } else {
            Err(r::syntax("no arguments expected"))
        }
    };
    match verb.as_str() {
        "EHLO" => Ok(Command::Ehlo(arg("EHLO")?)),
        "HELO" => Ok(Command::Helo(arg("HELO")?)),
        "LHLO" => Ok(Command::Lhlo(arg("LHLO")?)),
        "MAIL" => {
            let (from, params) = path_and_params(rest, "FROM:")?;
            Ok(Command::Mail { from, params })
        }
        "RCPT" => {
            let (to, params) = path_and_params(rest, "TO:")?;
            if to.is_empty() {
                return Err(r::syntax("empty recipient"));
            }
            Ok(Command::Rcpt { to, params })
        }
        "DATA" => none(Command::Data),
        "BDAT" => {
            let mut it = rest.split_ascii_whitespace();
            let size = it
                .next()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| r::syntax("BDAT needs a chunk size"))?;
            let last = last_marker(it, "BDAT size [LAST]")?;
            Ok(Command::Bdat { size, last })
        }
        "BURL" => {
            let mut it = rest.split_ascii_whitespace();
            let url = it
                .next()
                .ok_or_else(|| r::syntax("BURL needs a URL"))?
                .to_string();
            let last = last_marker(it, "BURL url [LAST]")?;
            Ok(Command::Burl { url, last })
        }
        "RSET" => none(Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => none(Command::Quit),
        "VRFY" => Ok(Command::Vrfy(arg("VRFY")?)),
        "HELP" => Ok(Command::Help),
        "XREMEMBER" => {
            let mut it = rest.split_ascii_whitespace();
            let key = it
                .next()
                .ok_or_else(|| r::syntax("XREMEMBER key address..."))?
                .to_string();
            let addresses: Vec<String> = it.map(str::to_string).collect();
            if addresses.is_empty() {
                return Err(r::syntax("XREMEMBER key address..."));
            }
            Ok(Command::XRemember { key, addresses })
        }
        "STARTTLS" => none(Command::StartTls),
        "AUTH" => {
            let mut it = rest.split_ascii_whitespace();
            let mechanism = it
                .next()
                .ok_or_else(|| r::syntax("AUTH needs a mechanism"))?
                .to_ascii_uppercase();
            let initial = it.next().map(str::to_string);
            if it.next().is_some() {
                return Err(r::syntax("AUTH mechanism [initial-response]"));
            }
            Ok(Command::Auth { mechanism, initial })
        }
        _ => Err(r::unknown_command()),
    }
}

/// `FROM:<path> params` / `TO:<path> params` (RFC 5321 section 4.1.2). Accepts the common
/// lenient forms `FROM: <path>` and a path without angle brackets.
fn path_and_params(rest: &str, prefix: &str) -> Result<(String, Params), Reply> {
    // `get`, not indexing: the line is UTF-8 from the client, and a multi-byte character
    // may straddle the prefix's length.
    let Some(rest) = rest
        .get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| rest[prefix.len()..].trim_start())
    else {
        return Err(r::syntax(&format!("expected {prefix}<address>")));
    };
    let (path, params) = if let Some(stripped) = rest.strip_prefix('<') {
        let end = stripped
            .find('>')
            .ok_or_else(|| r::syntax("unterminated <address>"))?;
        (&stripped[..end], &stripped[end + 1..])
    } else {
        match rest.find(' ') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        }
    };
    // A source route (`@a,@b:user@host`) is ignored, as RFC 5321 section 4.1.1.3 allows.
    let path = match path.rfind(':') {
        Some(i) if path.starts_with('@') => &path[i + 1..],
        _ => path,
    };
    if path.len() > 320 || path.contains(char::is_whitespace) {
        return Err(r::syntax("invalid address"));
    }
    if !path.is_empty() && !valid_mailbox(path) {
        return Err(r::syntax("invalid address"));
    }
    let params = params
        .split_ascii_whitespace()
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_ascii_uppercase(), Some(v.to_string())),
            None => (p.to_ascii_uppercase(), None),
        })
        .collect();
    Ok((path.to_string(), params))
}

/// `local-part@domain` with a non-empty local part and a domain that looks like one.
pub fn valid_mailbox(addr: &str) -> bool {
    match addr.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && local.len() <= 64
                && !domain.is_empty()
                && domain.len() <= 255
                && domain.split('.').all(|l| {
                    !l.is_empty()
                        && l.chars().all(|c| {
                            c.is_alphanumeric() || c == '-' || c == '[' || c == ']' || c == ':'
                        })
                })
        }
        None => addr.eq_ignore_ascii_case("postmaster"),
    }
}

/// The optional `LAST` that ends BDAT and BURL, and nothing after it.
fn last_marker<'a>(mut rest: impl Iterator<Item = &'a str>, usage: &str) -> Result<bool, Reply> {
    let last = match rest.next() {
        None => false,
        Some(l) if l.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(r::syntax(usage)),
    };
    if rest.next().is_some() {
        return Err(r::syntax(usage));
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_commands() {
        assert_eq!(
            parse(b"ehlo client.example").unwrap(),
            Command::Ehlo("client.example".into())
        );
        assert_eq!(
            parse(b"MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME").unwrap(),
            Command::Mail {
                from: "a@b.example".into(),
                params: vec![
                    ("SIZE".into(), Some("100".into())),
                    ("BODY".into(), Some("8BITMIME".into()))
                ]
            }
        );
        assert_eq!(
            parse(b"MAIL FROM:<>").unwrap(),
            Command::Mail {
                from: "".into(),
                params: vec![]
            }
        );
        assert_eq!(
            parse(b"mail from: <x@y.z>").unwrap(),
            Command::Mail {
                from: "x@y.z".into(),
                params: vec![]
            }
        );
        assert_eq!(
            parse(b"RCPT TO:<@relay.example:u@d.example>").unwrap(),
            Command::Rcpt {
                to: "u@d.example".into(),
                params: vec![]
            }
        );
        assert_eq!(
            parse(b"BDAT 100 LAST").unwrap(),
            Command::Bdat {
                size: 100,
                last: true
            }
        );
        assert_eq!(
            parse(b"AUTH plain AGEAYg==").unwrap(),
            Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGEAYg==".into())
            }
        );
        assert_eq!(parse(b"NOOP whatever").unwrap(), Command::Noop);
    }

    #[test]
    fn rejects_bad_input_with_the_right_code() {
        assert_eq!(parse(b"FOO").unwrap_err().code, 500);
        assert_eq!(parse(b"MAIL TO:<a@b>").unwrap_err().code, 501);
        assert_eq!(parse(b"RCPT TO:<>").unwrap_err().code, 501);
        assert_eq!(parse(b"RCPT TO:<no-at-sign>").unwrap_err().code, 501);
        assert_eq!(parse(b"MAIL FROM:<a@b").unwrap_err().code, 501);
        assert_eq!(parse(b"DATA now").unwrap_err().code, 501);
        assert_eq!(parse(b"BDAT x").unwrap_err().code, 501);
        assert_eq!(parse(b"EHLO").unwrap_err().code, 501);
        assert_eq!(parse(b"HELO a\x00b").unwrap_err().code, 501);
        assert_eq!(parse(&[0xff, 0xfe]).unwrap_err().code, 501);
    }

    /// Found by the `smtp_command` fuzz target (fuzz/regressions/smtp_command/): a
    /// multi-byte character across the end of `FROM:`/`TO:` panicked the session (a
    /// string sliced inside a character) before any login.
    #[test]
    fn a_character_across_the_path_prefix_is_a_syntax_error() {
        assert_eq!(parse("RCPT Tjö:<a@b>".as_bytes()).unwrap_err().code, 501);
        assert_eq!(parse("MAIL FROMö<a@b>".as_bytes()).unwrap_err().code, 501);
    }
}
