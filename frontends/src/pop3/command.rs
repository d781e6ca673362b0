//! POP3 command grammar (RFC 1939 section 3: a keyword and up to two arguments).

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    User(String),
    Pass(String),
    Apop(String, String),
    Auth(Option<String>, Option<String>),
    Stls,
    Capa,
    Utf8,
    Stat,
    List(Option<u32>),
    Uidl(Option<u32>),
    Retr(u32),
    Top(u32, u32),
    Dele(u32),
    Noop,
    Rset,
    Quit,
}

/// Parses one line without its CRLF. Errors are the text of a `-ERR` reply.
pub fn parse(line: &[u8]) -> Result<Command, &'static str> {
    let line = std::str::from_utf8(line).map_err(|_| "command is not UTF-8")?;
    if line.bytes().any(|b| b < 32 && b != b'\t') {
        return Err("control characters in command");
    }
    let (kw, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let args: Vec<&str> = rest.split_ascii_whitespace().collect();
    let num = |s: &str| -> Result<u32, &'static str> {
        match s.parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err("invalid message number"),
        }
    };
    let kw = kw.to_ascii_uppercase();
    let c = match (kw.as_str(), args.as_slice()) {
        // PASS takes the rest of the line: passwords may contain spaces.
        ("PASS", _) if !rest.is_empty() => Command::Pass(rest.to_string()),
        ("USER", [u]) => Command::User(u.to_string()),
        ("APOP", [u, d]) => Command::Apop(u.to_string(), d.to_string()),
        ("AUTH", []) => Command::Auth(None, None),
        ("AUTH", [m]) => Command::Auth(Some(m.to_ascii_uppercase()), None),
        ("AUTH", [m, ir]) => Command::Auth(Some(m.to_ascii_uppercase()), Some(ir.to_string())),
        ("STLS", []) => Command::Stls,
        ("CAPA", []) => Command::Capa,
        ("UTF8", []) => Command::Utf8,
        ("STAT", []) => Command::Stat,
        ("LIST", []) => Command::List(None),
        ("LIST", [n]) => Command::List(Some(num(n)?)),
        ("UIDL", []) => Command::Uidl(None),
        ("UIDL", [n]) => Command::Uidl(Some(num(n)?)),
        ("RETR", [n]) => Command::Retr(num(n)?),
        ("TOP", [n, l]) => Command::Top(num(n)?, l.parse().map_err(|_| "invalid line count")?),
        ("DELE", [n]) => Command::Dele(num(n)?),
        ("NOOP", []) => Command::Noop,
        ("RSET", []) => Command::Rset,
        ("QUIT", []) => Command::Quit,
        (
            "USER" | "PASS" | "APOP" | "AUTH" | "STLS" | "CAPA" | "UTF8" | "STAT" | "LIST" | "UIDL"
            | "RETR" | "TOP" | "DELE" | "NOOP" | "RSET" | "QUIT",
            _,
        ) => return Err("wrong number of arguments"),
        _ => return Err("unknown command"),
    };
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            parse(b"user alice@example.org").unwrap(),
            Command::User("alice@example.org".into())
        );
        assert_eq!(
            parse(b"PASS two words").unwrap(),
            Command::Pass("two words".into())
        );
        assert_eq!(parse(b"TOP 3 10").unwrap(), Command::Top(3, 10));
        assert_eq!(parse(b"LIST").unwrap(), Command::List(None));
        assert_eq!(
            parse(b"AUTH PLAIN AGEAYg==").unwrap(),
            Command::Auth(Some("PLAIN".into()), Some("AGEAYg==".into()))
        );
        assert_eq!(parse(b"RETR 0"), Err("invalid message number"));
        assert_eq!(parse(b"RETR x"), Err("invalid message number"));
        assert_eq!(parse(b"RETR 1 2"), Err("wrong number of arguments"));
        assert_eq!(parse(b"DELE"), Err("wrong number of arguments"));
        assert_eq!(parse(b"XYZZY"), Err("unknown command"));
        assert_eq!(parse(b"LIST 99999999999"), Err("invalid message number"));
        assert_eq!(parse(b"NOOP\x00"), Err("control characters in command"));
    }
}
