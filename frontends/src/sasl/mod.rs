//! SASL mechanisms shared by SMTP, IMAP and POP3, sans I/O.
#![forbid(unsafe_code)]

pub mod plain;
pub mod scram;
