//! The IMAP workload: a sans-I/O response framer and value parser, a blocking client
//! connection that checks what it is told, the commands of the mix, the per-connection
//! session steps, and the APPEND prefill.

pub mod commands;
pub mod conn;
pub mod framer;
pub mod mix;
pub mod prefill;
pub mod values;
pub(crate) mod workload;

pub use mix::{Command, Mix, DEFAULT_MIX, EXTENDED_MIX};
pub use prefill::{prefill, Prefilled};
