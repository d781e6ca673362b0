//! Logging in, the same for SMTP, IMAP and POP3, sans I/O: the exchange (`exchange`) and
//! the mechanisms under it.
#![forbid(unsafe_code)]

pub mod exchange;
pub mod plain;
pub mod scram;

pub use exchange::{Answer, Exchange, Malformed, Mechanism, Need, Step};

/// A password or AUTH blob, as every protocol receives it: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}
