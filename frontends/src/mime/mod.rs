//! What delivery parses once and stores with a message (`NewMessage::meta`), so that IMAP
//! can answer ENVELOPE, BODYSTRUCTURE and BODY[section] without parsing the body again.
#![forbid(unsafe_code)]

pub mod binary;
pub mod envelope;
pub mod meta;
pub mod raw_text;
mod scan;

pub use envelope::PackedEnvelope;

/// An RFC 5322 quoted string starting at `b[open]` (a `"`): its content with quoted-pairs
/// undone, and the index just past its closing quote (or the end, when unterminated).
pub(crate) fn unquote(b: &[u8], open: usize) -> (Vec<u8>, usize) {
    let mut v = Vec::new();
    let mut i = open + 1;
    while i < b.len() && b[i] != b'"' {
        if b[i] == b'\\' && i + 1 < b.len() {
            i += 1;
        }
        v.push(b[i]);
        i += 1;
    }
    (v, i + 1)
}
pub use meta::{EnvelopeMeta, MessageMeta, PartMeta};
