//! ringmail-loadgen: a multi-protocol mail load generator.
//!
//! It drives SMTP, LMTP, POP3 and IMAP servers (ringmail, Postfix, Dovecot, any standard one) on
//! loopback, measures per-command latency in HDR histograms, and checks afterwards that
//! every message a server acknowledged is stored, byte for byte (`verify`).
//!
//! ```text
//!  connections (coroutines, one epoll loop   ─► client (blocking-style SMTP/LMTP/POP3/IMAP,
//!      │        per core; or a thread each)       plain, implicit TLS or STARTTLS) ─► server
//!      │ closed loop: next request when the last is answered
//!      │ open loop: requests at fixed intended times; latency counts from the intended
//!      │            start, so a stalled server cannot hide its stall (no coordinated omission)
//!      ▼
//!  per-worker histograms and acknowledged ids ─► merged report (table, JSON)
//! ```

// The coroutine runtime (`percore`) is the only place with `unsafe` (UNSAFE.md).
#![deny(unsafe_code)]

pub mod client;
pub mod corpus;
pub mod imap;
pub mod mailgen;
pub mod mixed;
pub mod null_server;
#[allow(unsafe_code)]
mod percore;
pub mod plot;
mod pop3;
mod progress;
pub mod report;
pub mod run;
mod smtp;
pub mod socket;
pub mod stamp;
pub mod tls;
pub mod users;
pub mod verify;

pub use mixed::Mixed;
pub use report::Report;
pub use run::{run, Config, Users, Workload};
pub use tls::Tls;
