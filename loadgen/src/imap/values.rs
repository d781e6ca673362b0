//! The parts of untagged responses the workload reads, parsed from a framed [`Response`]:
//! `* n EXISTS`, `* SEARCH …`, and `* n FETCH (…)` with its items (atoms, numbers, quoted
//! strings, literals, NIL and nested lists, as ENVELOPE and BODYSTRUCTURE have them).
//!
//! [`Response`]: super::framer::Response

use super::framer::literal_len;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Nil,
    Number(u64),
    /// An atom or flag (`\Seen`, `$Work`).
    Atom(&'a [u8]),
    /// A quoted string's content (escapes left as sent) or a literal's data.
    Str(&'a [u8]),
    List(Vec<Value<'a>>),
}

/// `* n FETCH (…)`: the message number and the items, names upper-cased (`BODY[]`, `UID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch<'a> {
    pub seq: u32,
    pub items: Vec<(String, Value<'a>)>,
}

impl<'a> Fetch<'a> {
    pub fn get(&self, name: &str) -> Option<&Value<'a>> {
        self.items.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn number(&self, name: &str) -> Option<u64> {
        match self.get(name) {
            Some(Value::Number(n)) => Some(*n),
            _ => None,
        }
    }
}

/// The words of an untagged response after `* `: `["3", "EXISTS"]`, `["SEARCH", "1", …]`.
fn words(raw: &[u8]) -> Option<impl Iterator<Item = &[u8]>> {
    let line = raw.strip_prefix(b"* ")?;
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some(line.split(|&b| b == b' ').filter(|w| !w.is_empty()))
}

fn number(w: &[u8]) -> Option<u64> {
    if w.is_empty() || w.len() > 19 || !w.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(w).ok()?.parse().ok()
}

/// `* n EXISTS` → n.
pub fn exists(raw: &[u8]) -> Option<u32> {
    let mut w = words(raw)?;
    let n = number(w.next()?)?;
    let kw = w.next()?;
    (kw.eq_ignore_ascii_case(b"EXISTS") && w.next().is_none()).then_some(n as u32)
}

/// `* n EXPUNGE` → n.
pub fn expunge(raw: &[u8]) -> Option<u32> {
    let mut w = words(raw)?;
    let n = number(w.next()?)?;
    let kw = w.next()?;
    (kw.eq_ignore_ascii_case(b"EXPUNGE") && w.next().is_none()).then_some(n as u32)
}

/// The response code of a status response's first line: `OK [APPENDUID 1 5] done` →
/// `["APPENDUID", "1", "5"]`.
fn response_code(raw: &[u8]) -> Option<Vec<&[u8]>> {
    let line = raw.split(|&b| b == b'\r' || b == b'\n').next()?;
    let open = line.iter().position(|&b| b == b'[')?;
    let close = open + line[open..].iter().position(|&b| b == b']')?;
    Some(
        line[open + 1..close]
            .split(|&b| b == b' ')
            .filter(|w| !w.is_empty())
            .collect(),
    )
}

/// The capabilities a response lists (`* CAPABILITY …`, or a `[CAPABILITY …]` code, as in
/// greetings and LOGIN completions), upper-cased.
pub fn capabilities(raw: &[u8]) -> Option<Vec<String>> {
    let upper = |w: &[u8]| String::from_utf8_lossy(w).to_ascii_uppercase();
    if let Some(mut w) = words(raw) {
        if w.next()
            .is_some_and(|x| x.eq_ignore_ascii_case(b"CAPABILITY"))
        {
            return Some(w.map(upper).collect());
        }
    }
    let code = response_code(raw)?;
    let (first, rest) = code.split_first()?;
    first
        .eq_ignore_ascii_case(b"CAPABILITY")
        .then(|| rest.iter().map(|w| upper(w)).collect())
}

/// `[APPENDUID validity uid]` (RFC 4315) → the UID of the appended message.
pub fn appenduid(raw: &[u8]) -> Option<u32> {
    let code = response_code(raw)?;
    if code.len() != 3 || !code[0].eq_ignore_ascii_case(b"APPENDUID") {
        return None;
    }
    number(code[2]).and_then(|n| u32::try_from(n).ok())
}

/// `* SEARCH 1 5 9` → the numbers; `None` if this is not a SEARCH response or a number is
/// malformed.
pub fn search(raw: &[u8]) -> Option<Vec<u32>> {
    let mut w = words(raw)?;
    if !w.next()?.eq_ignore_ascii_case(b"SEARCH") {
        return None;
    }
    w.map(|x| number(x).and_then(|n| u32::try_from(n).ok()))
        .collect()
}

/// Parses `* n FETCH (…)`; `Ok(None)` for any other response, `Err` if it is a FETCH whose
/// items do not parse.
pub fn fetch(raw: &[u8]) -> Result<Option<Fetch<'_>>, String> {
    let Some(rest) = raw.strip_prefix(b"* ") else {
        return Ok(None);
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let Some(seq) = number(&rest[..digits]).and_then(|n| u32::try_from(n).ok()) else {
        return Ok(None);
    };
    let after = &rest[digits..];
    if after.len() < 7 || after[0] != b' ' || !after[1..6].eq_ignore_ascii_case(b"FETCH") {
        return Ok(None);
    }
    if after[6] != b' ' {
        return Err("expected a space after FETCH".into());
    }
    let mut p = Parser {
        s: raw,
        i: 2 + digits + 7,
    };
    p.spaces();
    let items = p.items().map_err(|e| format!("{e} at byte {}", p.i))?;
    Ok(Some(Fetch { seq, items }))
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        if self.peek() == Some(b) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected {:?}", b as char))
        }
    }

    fn spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    /// `(NAME value NAME value …)` then the line end.
    fn items(&mut self) -> Result<Vec<(String, Value<'a>)>, String> {
        self.expect(b'(')?;
        let mut items = Vec::new();
        loop {
            self.spaces();
            if self.peek() == Some(b')') {
                self.i += 1;
                break;
            }
            let name = self.item_name()?;
            self.spaces();
            let v = self.value()?;
            items.push((name, v));
        }
        match &self.s[self.i..] {
            b"\r\n" | b"\n" => Ok(items),
            _ => Err("junk after the FETCH items".into()),
        }
    }

    /// `UID`, `FLAGS`, `BODY[]`, `BODY[HEADER.FIELDS (SUBJECT)]`, `BODY[]<0>`, `BINARY[1]`.
    fn item_name(&mut self) -> Result<String, String> {
        let start = self.i;
        let mut depth = 0;
        while let Some(b) = self.peek() {
            match b {
                b'[' => depth += 1,
                b']' if depth > 0 => depth -= 1,
                b' ' | b'(' | b')' if depth == 0 => break,
                b'\r' | b'\n' | b'{' | b'"' if depth == 0 => break,
                b'\r' | b'\n' => return Err("line end inside a section".into()),
                _ => {}
            }
            self.i += 1;
        }
        if self.i == start {
            return Err("expected an item name".into());
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).to_ascii_uppercase())
    }

    fn value(&mut self) -> Result<Value<'a>, String> {
        match self.peek() {
            Some(b'(') => {
                self.i += 1;
                let mut v = Vec::new();
                loop {
                    self.spaces();
                    if self.peek() == Some(b')') {
                        self.i += 1;
                        return Ok(Value::List(v));
                    }
                    v.push(self.value()?);
                }
            }
            Some(b'"') => {
                self.i += 1;
                let start = self.i;
                loop {
                    match self.peek() {
                        Some(b'\\') => self.i += 2,
                        Some(b'"') => break,
                        Some(b'\r' | b'\n') | None => return Err("unterminated string".into()),
                        Some(_) => self.i += 1,
                    }
                }
                let s = &self.s[start..self.i];
                self.i += 1;
                Ok(Value::Str(s))
            }
            Some(b'{') | Some(b'~') => {
                let nl = self.s[self.i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .ok_or("a literal without its line end")?;
                let head = &self.s[self.i..self.i + nl];
                let head = head.strip_suffix(b"\r").unwrap_or(head);
                let n = literal_len(head).ok_or("a malformed literal")? as usize;
                let data = self.i + nl + 1;
                let end = data.checked_add(n).filter(|&e| e <= self.s.len());
                let end = end.ok_or("a literal longer than the response")?;
                self.i = end;
                Ok(Value::Str(&self.s[data..end]))
            }
            Some(_) => {
                let start = self.i;
                while let Some(b) = self.peek() {
                    if matches!(b, b' ' | b'(' | b')' | b'\r' | b'\n' | b'"' | b'{') {
                        break;
                    }
                    // `\Seen` and `BODY[…]` inside lists: brackets are part of the atom.
                    self.i += 1;
                }
                let a = &self.s[start..self.i];
                if a.is_empty() {
                    return Err("expected a value".into());
                }
                Ok(if a.eq_ignore_ascii_case(b"NIL") {
                    Value::Nil
                } else if let Some(n) = number(a) {
                    Value::Number(n)
                } else {
                    Value::Atom(a)
                })
            }
            None => Err("the response ends inside the items".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expunge_capabilities_and_appenduid() {
        assert_eq!(expunge(b"* 3 EXPUNGE\r\n"), Some(3));
        assert_eq!(expunge(b"* 3 EXISTS\r\n"), None);
        assert_eq!(exists(b"* 3 EXPUNGE\r\n"), None);
        let caps = |r: &[u8]| capabilities(r).unwrap_or_default().join(" ");
        assert_eq!(
            caps(b"* CAPABILITY IMAP4rev1 uidplus IDLE\r\n"),
            "IMAP4REV1 UIDPLUS IDLE"
        );
        assert_eq!(
            caps(b"a1 OK [CAPABILITY IMAP4rev1 UIDPLUS] logged in\r\n"),
            "IMAP4REV1 UIDPLUS"
        );
        assert_eq!(
            caps(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"),
            "IMAP4REV1 STARTTLS"
        );
        assert_eq!(capabilities(b"a1 OK [READ-WRITE] done\r\n"), None);
        assert_eq!(capabilities(b"a1 OK logged in\r\n"), None);
        assert_eq!(
            appenduid(b"a2 OK [APPENDUID 38505 3955] APPEND completed\r\n"),
            Some(3955)
        );
        assert_eq!(appenduid(b"a2 OK [APPENDUID 38505] x\r\n"), None);
        assert_eq!(appenduid(b"a2 OK APPEND completed\r\n"), None);
    }

    #[test]
    fn exists_and_search() {
        assert_eq!(exists(b"* 17 EXISTS\r\n"), Some(17));
        assert_eq!(exists(b"* 17 exists\r\n"), Some(17));
        assert_eq!(exists(b"* 17 RECENT\r\n"), None);
        assert_eq!(exists(b"a1 OK\r\n"), None);
        assert_eq!(search(b"* SEARCH 3 1 22\r\n"), Some(vec![3, 1, 22]));
        assert_eq!(search(b"* SEARCH\r\n"), Some(vec![]));
        assert_eq!(search(b"* SEARCH \r\n"), Some(vec![]));
        assert_eq!(search(b"* SEARCH 1 x\r\n"), None);
        assert_eq!(search(b"* 3 EXISTS\r\n"), None);
    }

    #[test]
    fn fetch_items_in_any_order_with_literals_and_nested_lists() {
        let raw = b"* 12 FETCH (UID 40 RFC822.SIZE 11 FLAGS (\\Seen $Work) BODY[] {10}\r\nab\r\ncd)\r\nx)\r\n";
        let f = fetch(raw).unwrap().unwrap();
        assert_eq!(f.seq, 12);
        assert_eq!(f.number("UID"), Some(40));
        assert_eq!(f.number("RFC822.SIZE"), Some(11)); // (as sent; the client compares)
        assert_eq!(f.get("BODY[]"), Some(&Value::Str(b"ab\r\ncd)\r\nx")));
        assert_eq!(
            f.get("FLAGS"),
            Some(&Value::List(vec![
                Value::Atom(b"\\Seen"),
                Value::Atom(b"$Work")
            ]))
        );
        let raw = b"* 1 fetch (body[header.fields (subject)] {5}\r\nS\r\n\r\n uid 9 ENVELOPE (\"d\" NIL ((\"A \\\"q\\\"\" NIL \"a\" \"x\")) {1}\r\nz) BODY[]<0> \"\" FLAGS ())\r\n";
        let f = fetch(raw).unwrap().unwrap();
        assert_eq!(f.number("UID"), Some(9));
        assert_eq!(
            f.get("BODY[HEADER.FIELDS (SUBJECT)]"),
            Some(&Value::Str(b"S\r\n\r\n"))
        );
        assert_eq!(f.get("BODY[]<0>"), Some(&Value::Str(b"")));
        assert_eq!(f.get("FLAGS"), Some(&Value::List(vec![])));
        let Some(Value::List(env)) = f.get("ENVELOPE") else {
            panic!()
        };
        assert_eq!(env.len(), 4);
        assert_eq!(env[1], Value::Nil);
        assert_eq!(env[3], Value::Str(b"z"));
    }

    #[test]
    fn not_a_fetch_and_broken_fetches() {
        assert_eq!(fetch(b"* 3 EXISTS\r\n"), Ok(None));
        assert_eq!(fetch(b"* OK [UIDNEXT 4] x\r\n"), Ok(None));
        assert_eq!(fetch(b"a1 OK FETCH done\r\n"), Ok(None));
        assert!(fetch(b"* 1 FETCH UID 3\r\n").is_err());
        assert!(fetch(b"* 1 FETCH (UID 3\r\n").is_err());
        assert!(fetch(b"* 1 FETCH (UID 3) junk\r\n").is_err());
        assert!(fetch(b"* 1 FETCH (BODY[] {10}\r\nabc)\r\n").is_err());
        assert!(fetch(b"* 1 FETCH (X \"abc)\r\n").is_err());
    }
}
