//! Header bytes that are not UTF-8, kept exactly in a `String`.
//!
//! Mail from before RFC 6532 often carries raw Latin-1 or other 8-bit bytes in its headers.
//! IMAP returns header-derived strings (ENVELOPE, BODYSTRUCTURE) as sent, in a literal when
//! they are 8-bit, and clients guess the charset; replacing the bytes with U+FFFD loses them
//! for good. So each byte of an invalid sequence is kept as one character of a range of
//! plane 16's private use area (U+10FF80..=U+10FFFF: byte + U+10FF00), which mail does not
//! use, and turned back into the byte where the string is written out (a header that does
//! hold one of those characters is written out as that byte: the price of the scheme).
//! Valid UTF-8 is kept as it is, and the metadata's encoding (length-prefixed UTF-8) does
//! not change.

use std::borrow::Cow;

const BASE: u32 = 0x10_FF00;

/// `b` as a string: valid UTF-8 as it is, every other byte as its escape character.
pub fn text(b: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(b) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(b.len() + 8);
    for chunk in b.utf8_chunks() {
        out.push_str(chunk.valid());
        for &byte in chunk.invalid() {
            out.push(char::from_u32(BASE + byte as u32).expect("a scalar value"));
        }
    }
    Cow::Owned(out)
}

/// The octets `s` stands for: escape characters back into the bytes they keep.
pub fn octets(s: &str) -> Cow<'_, [u8]> {
    // Every escape character is encoded F4 8F BE/BF xx.
    if !s.as_bytes().contains(&0xF4) {
        return Cow::Borrowed(s.as_bytes());
    }
    let mut out = Vec::with_capacity(s.len());
    let mut buf = [0u8; 4];
    for c in s.chars() {
        match (c as u32).checked_sub(BASE) {
            Some(b @ 0x80..=0xFF) => out.push(b as u8),
            _ => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_string_comes_back_exactly() {
        let cases: [&[u8]; 5] = [
            b"plain ascii",
            "Grüße, 日本".as_bytes(),
            b"Caf\xe9 cr\xe8me",
            b"\xff\xfe\x80",
            b"half \xe2\x82 of a euro \xe2\x82\xac",
        ];
        for b in cases {
            let t = text(b);
            assert_eq!(&*octets(&t), b, "{t:?}");
        }
        assert!(matches!(text("Grüße".as_bytes()), Cow::Borrowed(_)));
        assert_eq!(text(b"Caf\xe9").chars().count(), 4);
        // Every byte value, in every position.
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        assert_eq!(&*octets(&text(&all)), &all[..]);
        // The one thing not kept: a header that really holds one of the escape characters
        // (private use, plane 16) is written out as the byte it stands for.
        assert_eq!(&*octets(&text("\u{10FF80}".as_bytes())), b"\x80");
    }
}
