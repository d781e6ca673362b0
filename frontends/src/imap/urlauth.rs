//! URLAUTH (RFC 4467): URLs that carry their own authorization to one message or part, for
//! a submission server (BURL, RFC 4468) or another user to fetch.
//!
//! A URL is authorized by a token over its "rump" (the URL up to and including
//! `;URLAUTH=<access>`, exactly as sent): here `01` (the algorithm) and HMAC-SHA256 keyed
//! with the mailbox's access key, in hex. Each mailbox has its own random key, made at the
//! first GENURLAUTH and replaced by RESETKEY, which revokes every URL made with it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The access key's length (RFC 4467 asks for at least 128 bits).
pub const KEY_LEN: usize = 32;
/// Where a mailbox's key is kept among its annotations: not a valid METADATA entry name,
/// so no client can read or set it.
pub const KEY_ENTRY: &str = "#urlauth-key";
const ALGORITHM: &str = "01";

/// Who may fetch a URL (RFC 4467 section 3, RFC 5092 `access`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    Anonymous,
    AuthUser,
    User(String),
    Submit(String),
}

impl Access {
    pub fn parse(s: &str) -> Option<Access> {
        let lower = s.to_ascii_lowercase();
        let user = |prefix: &str| {
            lower
                .starts_with(prefix)
                .then(|| super::url::percent_decode(&s[prefix.len()..]).ok())
                .flatten()
                .filter(|u| !u.is_empty())
        };
        match lower.as_str() {
            "anonymous" => Some(Access::Anonymous),
            "authuser" => Some(Access::AuthUser),
            _ => user("user+")
                .map(Access::User)
                .or_else(|| user("submit+").map(Access::Submit)),
        }
    }

    /// Whether a fetch by `who` is allowed: `user` the logged-in IMAP user, or `submit_for`
    /// the user a submission session (BURL) acts for.
    pub fn allows(&self, who: &Requester<'_>) -> bool {
        match (self, who) {
            (Access::Anonymous | Access::AuthUser, _) => true,
            (Access::User(u), Requester::Imap(me)) => u.eq_ignore_ascii_case(me),
            (Access::Submit(u), Requester::Submission(me)) => u.eq_ignore_ascii_case(me),
            _ => false,
        }
    }
}

/// Who asks to fetch a URL.
#[derive(Clone, Copy, Debug)]
pub enum Requester<'a> {
    Imap(&'a str),
    Submission(&'a str),
}

/// A URL split at its authorization: `(rump, mechanism, token)`.
pub fn split(url: &str) -> Option<(&str, &str, &str)> {
    let at = url.to_ascii_lowercase().find(";urlauth=")? + ";urlauth=".len();
    let colon = at + url[at..].find(':')?;
    let (mech, token) = url[colon + 1..].split_once(':')?;
    Some((&url[..colon], mech, token))
}

/// The token for `rump` under `key`.
pub fn token(key: &[u8], rump: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(rump.as_bytes());
    let mut out = String::from(ALGORITHM);
    for b in mac.finalize().into_bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Whether `token` authorizes `rump` under `key` (compared in constant time).
pub fn verify(key: &[u8], rump: &str, token: &str) -> bool {
    let Some(hex) = token.strip_prefix(ALGORITHM) else {
        return false;
    };
    if hex.len() != 64 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return false;
    }
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(rump.as_bytes());
    mac.verify_slice(&bytes).is_ok()
}

/// `;EXPIRE=` (RFC 3339 `date-time`) as Unix seconds.
pub fn parse_expire(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Fractions of a second, then the zone.
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let m = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *c == b'+' {
                m
            } else {
                -m
            }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// A fresh random access key (RESETKEY stores it, revoking every URL made with the old one).
pub fn new_key() -> Vec<u8> {
    use password_hash::rand_core::{OsRng, RngCore};
    let mut k = vec![0u8; KEY_LEN];
    OsRng.fill_bytes(&mut k);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_their_rump_and_key() {
        let url = "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred";
        let key = [7u8; KEY_LEN];
        let t = token(&key, url);
        assert_eq!(t.len(), 66);
        assert!(verify(&key, url, &t));
        assert!(!verify(&[8u8; KEY_LEN], url, &t));
        assert!(!verify(&key, &url.replace("20", "21"), &t));
        assert!(!verify(&key, url, &t[..64]));
        assert!(!verify(&key, url, "zz"));
        let full = format!("{url}:internal:{t}");
        assert_eq!(split(&full), Some((url, "internal", t.as_str())));
        assert_eq!(split(url), None);
    }

    #[test]
    fn access_identifiers() {
        assert_eq!(Access::parse("Anonymous"), Some(Access::Anonymous));
        assert_eq!(Access::parse("authuser"), Some(Access::AuthUser));
        assert_eq!(
            Access::parse("submit+fred%40example.org"),
            Some(Access::Submit("fred@example.org".into()))
        );
        assert_eq!(Access::parse("user+"), None);
        assert_eq!(Access::parse("app+x"), None);
        let fred = Access::User("fred".into());
        assert!(fred.allows(&Requester::Imap("FRED")));
        assert!(!fred.allows(&Requester::Imap("joe")));
        assert!(!fred.allows(&Requester::Submission("fred")));
        let submit = Access::Submit("fred".into());
        assert!(submit.allows(&Requester::Submission("fred")));
        assert!(!submit.allows(&Requester::Imap("fred")));
        assert!(Access::AuthUser.allows(&Requester::Imap("anyone")));
    }

    #[test]
    fn expiry_times() {
        assert_eq!(parse_expire("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_expire("2026-12-06T15:00:00Z"), Some(1_796_569_200));
        assert_eq!(
            parse_expire("2026-12-06T16:00:00.25+01:00"),
            Some(1_796_569_200)
        );
        for bad in [
            "2026-12-06",
            "2026-13-01T00:00:00Z",
            "2026-12-06T15:00:00",
            "x",
        ] {
            assert_eq!(parse_expire(bad), None, "{bad}");
        }
    }
}
