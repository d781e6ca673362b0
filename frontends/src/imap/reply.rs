//! Tagged failures (RFC 9051 section 7.1) as types: `NO` or `BAD`, a response code, and a
//! text. Handlers return them, the session writes them after the tag, and tests compare
//! them; nothing matches reply text.

use std::borrow::Cow;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The command was understood and failed.
    No,
    /// The command was not understood, or not valid now.
    Bad,
}

/// Response codes a failure carries (RFC 9051 section 7.1 and the extensions'). Codes of
/// `OK` replies carry data and are written where they are made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Code {
    AlreadyExists,
    AuthenticationFailed,
    /// The charsets SEARCH, SORT and THREAD take.
    BadCharset,
    /// NOTIFY events not supported (RFC 5465 section 5.9), as a parenthesized list.
    BadEvent(String),
    /// A URL that names nothing readable (RFC 4469), without `]` or line ends.
    BadUrl(String),
    Cannot,
    CompressionActive,
    Corruption,
    Limit,
    MetadataMaxSize(u64),
    MetadataTooMany,
    Nonexistent,
    OverQuota,
    PrivacyRequired,
    ReadOnly,
    TooBig,
    TryCreate,
    Unavailable,
    UnknownCte,
    UseAttr,
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Code::AlreadyExists => "ALREADYEXISTS",
            Code::AuthenticationFailed => "AUTHENTICATIONFAILED",
            Code::BadCharset => "BADCHARSET (UTF-8 US-ASCII)",
            Code::BadEvent(events) => return write!(f, "BADEVENT ({events})"),
            Code::BadUrl(url) => return write!(f, "BADURL {url}"),
            Code::Cannot => "CANNOT",
            Code::CompressionActive => "COMPRESSIONACTIVE",
            Code::Corruption => "CORRUPTION",
            Code::Limit => "LIMIT",
            Code::MetadataMaxSize(n) => return write!(f, "METADATA MAXSIZE {n}"),
            Code::MetadataTooMany => "METADATA TOOMANY",
            Code::Nonexistent => "NONEXISTENT",
            Code::OverQuota => "OVERQUOTA",
            Code::PrivacyRequired => "PRIVACYREQUIRED",
            Code::ReadOnly => "READ-ONLY",
            Code::TooBig => "TOOBIG",
            Code::TryCreate => "TRYCREATE",
            Code::Unavailable => "UNAVAILABLE",
            Code::UnknownCte => "UNKNOWN-CTE",
            Code::UseAttr => "USEATTR",
        })
    }
}

/// A command's tagged failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub status: Status,
    pub code: Option<Code>,
    pub text: Cow<'static, str>,
}

impl Failure {
    /// `BAD text`.
    pub fn bad(text: impl Into<Cow<'static, str>>) -> Self {
        Failure {
            status: Status::Bad,
            code: None,
            text: text.into(),
        }
    }

    /// `NO text`.
    pub fn no(text: impl Into<Cow<'static, str>>) -> Self {
        Failure {
            status: Status::No,
            code: None,
            text: text.into(),
        }
    }

    /// `NO [code] text`.
    pub fn code(code: Code, text: impl Into<Cow<'static, str>>) -> Self {
        Failure {
            status: Status::No,
            code: Some(code),
            text: text.into(),
        }
    }
}

impl Failure {
    /// Writes the failure as the tagged reply to `tag` (untagged, `*`, when the tag could
    /// not be read).
    pub fn write(&self, tag: &str, out: &mut Vec<u8>) {
        let tag = if tag.is_empty() { "*" } else { tag };
        out.extend_from_slice(format!("{tag} {self}\r\n").as_bytes());
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.status {
            Status::No => "NO ",
            Status::Bad => "BAD ",
        })?;
        if let Some(code) = &self.code {
            write!(f, "[{code}] ")?;
        }
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes() {
        assert_eq!(
            Failure::bad("no mailbox selected").to_string(),
            "BAD no mailbox selected"
        );
        assert_eq!(
            Failure::code(Code::BadCharset, "unsupported charset").to_string(),
            "NO [BADCHARSET (UTF-8 US-ASCII)] unsupported charset"
        );
        assert_eq!(
            Failure::code(Code::MetadataMaxSize(1024), "too big").to_string(),
            "NO [METADATA MAXSIZE 1024] too big"
        );
        assert_eq!(
            Failure::no("no such search").to_string(),
            "NO no such search"
        );
    }
}
