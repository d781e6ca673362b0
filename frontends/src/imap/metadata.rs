//! METADATA (RFC 5464): the GETMETADATA and SETMETADATA grammar, entry names, and the
//! `* METADATA` response.
//!
//! ```text
//! getmetadata  = "GETMETADATA" [SP getmetadata-options] SP mailbox SP entries
//! getmetadata-options = "(" getmetadata-option *(SP getmetadata-option) ")"
//! maxsize-opt  = "MAXSIZE" SP number
//! scope-opt    = "DEPTH" SP ("0" / "1" / "infinity")
//! entries      = entry / "(" entry *(SP entry) ")"
//! setmetadata  = "SETMETADATA" SP mailbox SP entry-values
//! entry-values = "(" entry-value *(SP entry-value) ")"
//! entry-value  = entry SP value
//! value        = nstring / literal8
//! ```
//! The RFC's own examples put the options after the mailbox, and list several entries
//! without parentheses; both are accepted.

use super::command::{P, R};
use super::encode;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Depth {
    /// The entry itself.
    #[default]
    Zero,
    /// And its children.
    One,
    /// And everything below it.
    Infinity,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetMetadata {
    /// As sent; `""` is the server (here: the account).
    pub mailbox: String,
    pub maxsize: Option<u64>,
    pub depth: Depth,
    /// Lower-case.
    pub entries: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetMetadata {
    pub mailbox: String,
    /// Lower-case names; `None` removes.
    pub values: Vec<(String, Option<Vec<u8>>)>,
}

/// An entry name as RFC 5464 section 3.2 allows it: `/private` or `/shared`, then
/// `/`-separated components, no `//`, no trailing `/`, no `*` or `%`, printable ASCII only.
/// `bare_scope` allows `/private` or `/shared` alone (GETMETADATA with a DEPTH).
pub fn valid_entry(name: &str, bare_scope: bool) -> bool {
    let lower = name.to_ascii_lowercase();
    let rest = match lower
        .strip_prefix("/private")
        .or_else(|| lower.strip_prefix("/shared"))
    {
        Some(r) => r,
        None => return false,
    };
    if rest.is_empty() {
        return bare_scope;
    }
    rest.starts_with('/')
        && !rest.ends_with('/')
        && !rest.contains("//")
        && name
            .bytes()
            .all(|c| (0x20..0x7f).contains(&c) && c != b'*' && c != b'%')
}

fn entry(p: &mut P, bare_scope: bool) -> R<String> {
    let e = p.astr()?;
    if !valid_entry(&e, bare_scope) {
        return p.err(format!("{e:?} is not a valid entry name"));
    }
    Ok(e.to_ascii_lowercase())
}

/// Options in parentheses, or `None` if what follows is not an option list.
fn options(p: &mut P, get: &mut GetMetadata) -> R<bool> {
    let save = p.i;
    if !p.eat(b'(') {
        return Ok(false);
    }
    let first = p.atom().map(|a| a.to_ascii_uppercase());
    if !matches!(first.as_deref(), Ok("MAXSIZE" | "DEPTH")) {
        // An entry list (or an error for the entry parser to report).
        p.i = save;
        return Ok(false);
    }
    p.i = save + 1;
    loop {
        match p.atom()?.to_ascii_uppercase().as_str() {
            "MAXSIZE" => {
                p.sp()?;
                get.maxsize = Some(p.number()?);
            }
            "DEPTH" => {
                p.sp()?;
                get.depth = match p.atom()?.to_ascii_lowercase().as_str() {
                    "0" => Depth::Zero,
                    "1" => Depth::One,
                    "infinity" => Depth::Infinity,
                    d => return p.err(format!("DEPTH is 0, 1 or infinity, not {d}")),
                };
            }
            o => return p.err(format!("unknown GETMETADATA option {o}")),
        }
        if p.eat(b')') {
            return Ok(true);
        }
        p.sp()?;
    }
}

/// Called after `GETMETADATA `; stops at the CRLF.
pub(crate) fn parse_get(p: &mut P) -> R<GetMetadata> {
    let mut get = GetMetadata {
        mailbox: String::new(),
        maxsize: None,
        depth: Depth::Zero,
        entries: Vec::new(),
    };
    let before = options(p, &mut get)?;
    if before {
        p.sp()?;
    }
    get.mailbox = p.mailbox()?;
    p.sp()?;
    if !before && options(p, &mut get)? {
        p.sp()?;
    }
    let bare = get.depth != Depth::Zero;
    if p.eat(b'(') {
        loop {
            get.entries.push(entry(p, bare)?);
            if p.eat(b')') {
                break;
            }
            p.sp()?;
        }
    } else {
        get.entries.push(entry(p, bare)?);
        while p.eat(b' ') {
            get.entries.push(entry(p, bare)?);
        }
    }
    Ok(get)
}

/// Called after `SETMETADATA `; stops at the CRLF.
pub(crate) fn parse_set(p: &mut P) -> R<SetMetadata> {
    let mailbox = p.mailbox()?;
    p.sp()?;
    if !p.eat(b'(') {
        return p.err("SETMETADATA takes a list of entries and values");
    }
    let mut values = Vec::new();
    loop {
        let name = entry(p, false)?;
        p.sp()?;
        let value = if p.eat(b'~') {
            if p.peek() != Some(b'{') {
                return p.err("expected a literal8");
            }
            Some(p.literal()?)
        } else if matches!(p.peek(), Some(b'"' | b'{')) {
            Some(p.astring()?)
        } else if p.atom()?.eq_ignore_ascii_case("NIL") {
            None
        } else {
            return p.err("a value is a string, a literal or NIL");
        };
        values.push((name, value));
        if p.eat(b')') {
            return Ok(SetMetadata { mailbox, values });
        }
        p.sp()?;
    }
}

/// Whether `name` is what `asked` with `depth` selects.
pub fn selects(asked: &str, depth: Depth, name: &str) -> bool {
    if name == asked {
        return true;
    }
    let Some(below) = name.strip_prefix(asked).and_then(|r| r.strip_prefix('/')) else {
        return false;
    };
    match depth {
        Depth::Zero => false,
        Depth::One => !below.contains('/'),
        Depth::Infinity => true,
    }
}

/// A value: a string (a literal when it must be), or a literal8 when it holds NUL.
pub fn write_value(out: &mut Vec<u8>, v: &[u8]) {
    if v.contains(&0) {
        out.push(b'~');
        encode::literal(out, v);
    } else {
        encode::string(out, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with<T>(s: &str, f: impl FnOnce(&mut P) -> R<T>) -> R<T> {
        let b = format!("{s}\r\n");
        let mut p = P::new(b.as_bytes());
        let r = f(&mut p)?;
        p.end()?;
        Ok(r)
    }

    #[test]
    fn entry_names() {
        for ok in [
            "/private/comment",
            "/shared/comment",
            "/Shared/Vendor/acme/x",
        ] {
            assert!(valid_entry(ok, false), "{ok}");
        }
        assert!(valid_entry("/shared", true));
        for bad in [
            "/shared",
            "/public/x",
            "shared/comment",
            "/shared//x",
            "/shared/x/",
            "/shared/*",
            "/shared/%",
            "/shared/é",
            "/shared/a\u{1}",
            "/sharedx",
        ] {
            assert!(!valid_entry(bad, false), "{bad}");
        }
    }

    #[test]
    fn getmetadata_in_every_order_the_rfc_shows() {
        let g = with(
            "(MAXSIZE 1024 DEPTH 1) INBOX (/shared/comment /Private/Comment)",
            parse_get,
        )
        .unwrap();
        assert_eq!(g.mailbox, "INBOX");
        assert_eq!((g.maxsize, g.depth), (Some(1024), Depth::One));
        assert_eq!(g.entries, ["/shared/comment", "/private/comment"]);
        let g = with("\"INBOX\" (MAXSIZE 1024) (/shared/comment)", parse_get).unwrap();
        assert_eq!(g.maxsize, Some(1024));
        let g = with("\"\" /private/comment /shared/comment", parse_get).unwrap();
        assert_eq!((g.mailbox.as_str(), g.entries.len()), ("", 2));
        let g = with("(DEPTH infinity) \"\" /shared", parse_get).unwrap();
        assert_eq!(g.depth, Depth::Infinity);
        for bad in [
            "INBOX",
            "INBOX /shared",
            "(DEPTH 2) INBOX /shared/x",
            "(FOO 1) INBOX /shared/x",
            "INBOX (/shared/x",
            "INBOX /bad/x",
        ] {
            assert!(with(bad, parse_get).is_err(), "{bad}");
        }
    }

    #[test]
    fn setmetadata_values() {
        let s = with(
            "INBOX (/private/comment {5+}\r\nab\r\nc /shared/comment NIL /shared/x \"\" /shared/y ~{2+}\r\na\0)",
            parse_set,
        )
        .unwrap();
        assert_eq!(
            s.values,
            [
                ("/private/comment".to_string(), Some(b"ab\r\nc".to_vec())),
                ("/shared/comment".to_string(), None),
                ("/shared/x".to_string(), Some(Vec::new())),
                ("/shared/y".to_string(), Some(b"a\0".to_vec())),
            ]
        );
        for bad in [
            "INBOX /shared/x \"v\"",
            "INBOX (/shared/x)",
            "INBOX (/shared/x FOO)",
            "INBOX (/shared \"v\")",
            "INBOX ()",
        ] {
            assert!(with(bad, parse_set).is_err(), "{bad}");
        }
    }

    #[test]
    fn depth_selects_children() {
        assert!(selects("/a/b", Depth::Zero, "/a/b"));
        assert!(!selects("/a/b", Depth::Zero, "/a/b/c"));
        assert!(selects("/a/b", Depth::One, "/a/b/c"));
        assert!(!selects("/a/b", Depth::One, "/a/b/c/d"));
        assert!(selects("/a/b", Depth::Infinity, "/a/b/c/d"));
        assert!(!selects("/a/b", Depth::Infinity, "/a/bc"));
        let mut out = Vec::new();
        write_value(&mut out, b"a\0b");
        assert_eq!(out, b"~{3}\r\na\0b");
    }
}
