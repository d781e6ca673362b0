//! SASL PLAIN (RFC 4616): `authzid NUL authcid NUL passwd`.

use crate::sasl::Secret;

/// The user and password of a decoded PLAIN message, or why it is not one. Acting as
/// another user (an authorization identity other than the user's own) is not supported.
pub fn split(raw: &[u8]) -> Result<(String, Secret), &'static str> {
    let parts: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
    let [authz, user, pass] = parts.as_slice() else {
        return Err("PLAIN response must be authzid NUL user NUL password");
    };
    let (Ok(authz), Ok(user), Ok(pass)) = (
        std::str::from_utf8(authz),
        std::str::from_utf8(user),
        std::str::from_utf8(pass),
    ) else {
        return Err("credentials are not UTF-8");
    };
    if user.is_empty() {
        return Err("PLAIN response names no user");
    }
    if !authz.is_empty() && authz != user {
        return Err("acting as another user is not supported");
    }
    Ok((user.to_string(), Secret(pass.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_refuses() {
        let (u, p) = split(b"\0bob\0pw").unwrap();
        assert_eq!((u.as_str(), p.0.as_str()), ("bob", "pw"));
        assert!(split(b"bob\0bob\0pw").is_ok());
        assert!(split(b"eve\0bob\0pw").is_err());
        assert!(split(b"\0bob").is_err());
        assert!(split(b"\0\0pw").is_err());
        assert!(split(b"\0bob\0\xff").is_err());
        assert!(split(b"\0bob\0pw\0").is_err());
    }
}
