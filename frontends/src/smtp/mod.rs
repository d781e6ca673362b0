//! SMTP (RFC 5321), submission (RFC 6409) and LMTP (RFC 2033), sans I/O.
//!
//! - [`command`]: the command grammar, one line at a time.
//! - [`reply`]: replies with enhanced status codes.
//! - [`session`]: the state machine; it asks the I/O layer, through events, whatever needs
//!   storage, credentials or TLS.
#![forbid(unsafe_code)]

pub mod command;
pub mod data;
pub mod reply;
pub mod session;

#[cfg(test)]
pub(crate) mod tests;

pub use reply::Reply;
pub use session::{Envelope, Event, Mode, Session, SessionConfig};
