//! POP3 (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595), SASL (RFC 5034) and UTF8
//! (RFC 6856), sans I/O.
#![forbid(unsafe_code)]

pub mod command;
pub mod session;

#[cfg(test)]
mod tests;

pub use session::{DotStuffer, Event, MaildropEntry, Pop3Config, Session, MOVED_ERR};
