//! The ringmail server: protocol frontends over `ringmail-engine`.
//!
//! Protocol modules (`smtp`) are sans-I/O state machines; `server` is the thin glommio I/O
//! layer that drives them over TCP and TLS and talks to the engine.

pub mod cluster_link;
pub mod config;
pub mod dates;
/// Entry points for the fuzz targets in `fuzz/` (`docs/fuzzing.md`); not an API.
#[doc(hidden)]
pub mod fuzzing;
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
