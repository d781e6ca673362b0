//! Response encoding primitives (RFC 9051 section 9: `string`, `nstring`, `astring`,
//! flag lists). Everything appends to a caller-owned buffer.

/// `string`: quoted when it is short, 7-bit and has no CR/LF, else a literal. Quoted
/// strings escape `"` and `\`.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() <= 1024
        && s.iter()
            .all(|&c| c != b'\r' && c != b'\n' && c != 0 && c < 0x80);
    if quotable {
        out.push(b'"');
        for &c in s {
            if c == b'"' || c == b'\\' {
                out.push(b'\\');
            }
            out.push(c);
        }
        out.push(b'"');
    } else {
        literal(out, s);
    }
}

/// `literal`: `{n}` CRLF and the octets.
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    literal_header(out, s.len());
    out.extend_from_slice(s);
}

/// `{n}` CRLF, for a literal whose octets the caller writes (or streams) next.
pub fn literal_header(out: &mut Vec<u8>, n: usize) {
    out.push(b'{');
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"}\r\n");
}

/// `nstring`: `NIL` or a string.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        None => out.extend_from_slice(b"NIL"),
        Some(s) => string(out, s),
    }
}

/// `astring`: an atom when every octet is an ASTRING-CHAR, else a string.
pub fn astring(out: &mut Vec<u8>, s: &[u8]) {
    let atom = !s.is_empty()
        && !s.eq_ignore_ascii_case(b"NIL")
        && s.iter()
            .all(|&c| c > b' ' && c < 0x7f && !b"(){%*\"\\".contains(&c));
    if atom {
        out.extend_from_slice(s);
    } else {
        string(out, s);
    }
}

/// A decimal number.
pub fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(n.to_string().as_bytes());
}

/// `(flag flag ...)`.
pub fn flag_list<'a>(out: &mut Vec<u8>, flags: impl IntoIterator<Item = &'a str>) {
    out.push(b'(');
    for (i, f) in flags.into_iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(f.as_bytes());
    }
    out.push(b')');
}

/// `sequence-set` of ascending numbers: runs become `a:b` (`[1, 2, 3, 5]` → `1:3,5`).
pub fn compress_set(nums: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < nums.len() {
        let start = nums[i];
        let mut end = start;
        while i + 1 < nums.len() && (nums[i + 1] == end || Some(nums[i + 1]) == end.checked_add(1))
        {
            i += 1;
            end = nums[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: impl Fn(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn strings_pick_their_form() {
        assert_eq!(enc(|o| string(o, b"a \"b\" \\c")), r#""a \"b\" \\c""#);
        assert_eq!(enc(|o| string(o, b"two\r\nlines")), "{10}\r\ntwo\r\nlines");
        assert_eq!(enc(|o| string(o, "Grüße".as_bytes())), "{7}\r\nGrüße");
        assert_eq!(enc(|o| nstring(o, None)), "NIL");
        assert_eq!(enc(|o| astring(o, b"INBOX")), "INBOX");
        assert_eq!(enc(|o| astring(o, b"My Mail")), "\"My Mail\"");
        assert_eq!(enc(|o| astring(o, b"nil")), "\"nil\"");
        assert_eq!(enc(|o| astring(o, b"")), "\"\"");
        assert_eq!(enc(|o| flag_list(o, ["\\Seen", "$Junk"])), "(\\Seen $Junk)");
    }
}
