//! SASL PLAIN (RFC 4616): `authzid NUL authcid NUL passwd`, base64-encoded.

use base64::Engine;

use crate::sasl::Secret;

/// The user and password of a PLAIN response; `None` when it is malformed or asks to act
/// as another user (authorization identities are not supported).
pub fn decode(b64: &str) -> Option<(String, Secret)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let parts: Vec<String> = raw
        .split(|&b| b == 0)
        .map(|p| String::from_utf8(p.to_vec()).ok())
        .collect::<Option<_>>()?;
    match <[String; 3]>::try_from(parts) {
        Ok([authz, user, pass]) if authz.is_empty() || authz == user => Some((user, Secret(pass))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_refuses() {
        let b = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let (u, p) = decode(&b(b"\0bob\0pw")).unwrap();
        assert_eq!((u.as_str(), p.0.as_str()), ("bob", "pw"));
        assert!(decode(&b(b"bob\0bob\0pw")).is_some());
        assert!(decode(&b(b"eve\0bob\0pw")).is_none());
        assert!(decode(&b(b"\0bob")).is_none());
        assert!(decode(&b(b"\0bob\0\xff")).is_none());
        assert!(decode("!!!").is_none());
    }
}
