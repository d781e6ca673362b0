//! What delivery parses once and stores with a message (`NewMessage::meta`), so that IMAP
//! can answer ENVELOPE, BODYSTRUCTURE and BODY[section] without parsing the body again.
#![forbid(unsafe_code)]

pub mod binary;
pub mod envelope;
pub mod meta;
pub mod raw_text;
mod scan;

pub use envelope::PackedEnvelope;
pub use meta::{EnvelopeMeta, MessageMeta, PartMeta};
