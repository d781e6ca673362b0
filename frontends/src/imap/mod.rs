//! IMAP4rev1/rev2 (RFC 3501, RFC 9051), sans I/O: the framer (lines and literals), the
//! command grammar, response encoding, and the pure pieces a session needs (message
//! structure, sections, search, the selected mailbox's view).
#![forbid(unsafe_code)]

pub mod command;
pub mod context;
pub mod datetime;
pub mod encode;
pub mod fetch;
pub mod framer;
pub mod list;
pub mod metadata;
pub mod mutf7;
pub mod notify;
pub mod partial;
pub mod reply;
pub mod search;
pub mod section;
pub mod session;
pub mod sort;
pub mod structure;
pub mod thread;
pub mod url;
pub mod urlauth;
pub mod view;

pub use command::{
    parse_command, Command, FetchAttr, ParseError, SeqBound, SequenceSet, StatusItem, StoreOp,
};
pub use framer::{Frame, Framer, Limits};
