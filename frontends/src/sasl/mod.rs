//! SASL mechanisms shared by SMTP, IMAP and POP3, sans I/O.
#![forbid(unsafe_code)]

pub mod plain;
pub mod scram;

/// A password or AUTH blob, as every protocol receives it: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}
