//! IMAP4rev1/rev2 (RFC 3501, RFC 9051), sans I/O: the framer (lines and literals) and the
//! command grammar. The session and the I/O layer are the next step (see issue 4).
#![forbid(unsafe_code)]

pub mod command;
pub mod framer;

pub use command::{
    parse_command, Command, FetchAttr, ParseError, SeqBound, SequenceSet, StatusItem, StoreOp,
};
pub use framer::{Frame, Framer, Limits};
