//! The ringmail server: protocol frontends over `ringmail-engine`.
//!
//! Protocol modules (`smtp`) are sans-I/O state machines; `server` is the thin glommio I/O
//! layer that drives them over TCP and TLS and talks to the engine.

pub mod config;
pub mod dates;
pub mod imap;
pub mod lines;
pub mod logging;
pub mod mime;
pub mod pop3;
pub mod sasl;
pub mod server;
pub mod smtp;
pub mod tls;
pub mod users;
