//! Entry points for the fuzz targets in `fuzz/` (see `docs/fuzzing.md`), one function per
//! target, each taking the fuzzer's bytes.
//!
//! They live here, always compiled, so the targets do not depend on which modules are
//! public, and so the workspace's tests replay the checked-in corpora through the same
//! functions (`frontends/tests/fuzz_corpus.rs`). Each calls the real code and asserts what
//! must hold of its result; a panic is a finding.
//!
//! Streams are fed as a session would receive them: in one read, in reads of sizes drawn
//! from the input, and one byte at a time; what comes out must not depend on how the bytes
//! were split.
#![forbid(unsafe_code)]

use crate::imap::command::parse_command;
use crate::imap::framer::{Frame, Framer, Limits};
use crate::imap::structure::{write_body_structure, write_envelope};
use crate::lines::{next_line, Input, Line};
use crate::mime::meta::{MessageMeta, PartMeta};
use crate::smtp::data::{by_lines, unstuff};

/// `imap::command::parse_command` on one framed command. Checked: it never panics, and a
/// parsed command's tag is the input's first word.
pub fn imap_command(data: &[u8]) {
    if let Ok((tag, _)) = parse_command(data) {
        assert!(!tag.is_empty());
        assert!(data.starts_with(tag.as_bytes()));
    }
}

/// `imap::framer::Framer` over a client's stream, every command it frames then parsed as the
/// session would. The first four bytes choose the limits (small, so that every refusal is
/// reached; the line limit not below 64 bytes, as the tag of a refused line is read from
/// its first 64 and the server's is at least 40 KiB) and the server's memory grant, the fifth seeds the read sizes; continuation
/// requests are answered by reading on, as a client that waits for them would send the
/// same bytes. Checked: the frames do not depend on how the stream was split into reads;
/// a command ends with LF and holds at most `max_command` + `max_line` bytes; what the
/// framer holds between reads stays within its limits.
pub fn imap_framer(data: &[u8]) {
    let [a, b, c, g, seed, stream @ ..] = data else {
        return;
    };
    let limits = Limits {
        max_line: 64 + usize::from(*a) * 2,
        max_literal: u64::from(*b) * 4,
        max_nonsync_literal: u64::from(*b % 64) * 4,
        max_command: 16 + u64::from(*c) * 8,
    };
    let budget = u64::from(*g) * 16;
    let frames = |chunks: &mut dyn Iterator<Item = usize>| {
        let mut f = Framer::new(limits);
        let mut grant = |n: u64| n <= budget;
        let mut out = Vec::new();
        let mut fed = 0;
        while fed < stream.len() {
            let n = chunks.next().unwrap_or(usize::MAX).min(stream.len() - fed);
            f.input(&stream[fed..fed + n]);
            fed += n;
            while let Some(frame) = f.next_frame_with(&mut grant) {
                out.push(frame);
            }
            let bound = limits.max_command as usize + 2 * limits.max_line;
            assert!(f.buffered() <= bound, "{} buffered", f.buffered());
        }
        out
    };
    let whole = frames(&mut std::iter::empty());
    assert_eq!(
        frames(&mut read_sizes(*seed)),
        whole,
        "reads of random sizes"
    );
    assert_eq!(
        frames(&mut std::iter::repeat(1)),
        whole,
        "one byte at a time"
    );
    for frame in &whole {
        if let Frame::Command(cmd) = frame {
            assert!(cmd.ends_with(b"\n"));
            assert!(cmd.len() as u64 <= limits.max_command + limits.max_line as u64);
            let _ = parse_command(cmd);
        }
    }
}

/// Read sizes from 1 to 64, drawn from `seed` (xorshift), for feeding a stream in pieces.
fn read_sizes(seed: u8) -> impl Iterator<Item = usize> {
    let mut x = u32::from(seed) | 0x9e37_7900;
    std::iter::from_fn(move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        Some(1 + (x % 64) as usize)
    })
}

/// The command lines of a stream as the line-oriented sessions take them (`lines::next_line`
/// with a limit of `max`), fed in reads of the given sizes.
fn lines_of(stream: &[u8], max: usize, chunks: &mut dyn Iterator<Item = usize>) -> Vec<Line> {
    let (mut input, mut skip, mut out, mut fed) = (Input::default(), false, Vec::new(), 0);
    while fed < stream.len() {
        let n = chunks.next().unwrap_or(usize::MAX).min(stream.len() - fed);
        input.push(&stream[fed..fed + n]);
        fed += n;
        loop {
            match next_line(&mut input, &mut skip, max) {
                Line::Pending => break,
                line => out.push(line),
            }
        }
        assert!(input.len() <= max + 1, "{} buffered", input.len());
    }
    out
}

/// Splits a stream into lines (first byte: the line limit, second: the read sizes' seed),
/// checking that the lines do not depend on the reads, and passes each line to `parse`.
fn each_line(data: &[u8], mut parse: impl FnMut(&[u8])) {
    let [max, seed, stream @ ..] = data else {
        return;
    };
    let max = 4 + usize::from(*max) * 4;
    let whole = lines_of(stream, max, &mut std::iter::empty());
    assert_eq!(lines_of(stream, max, &mut read_sizes(*seed)), whole);
    assert_eq!(lines_of(stream, max, &mut std::iter::repeat(1)), whole);
    for line in &whole {
        if let Line::Line(l) = line {
            assert!(l.len() <= max);
            parse(l);
        }
    }
}

/// `smtp::command::parse` on every line of a client's stream (split by `lines::next_line`,
/// as the SMTP session does). Checked: never a panic; the lines do not depend on the reads.
pub fn smtp_command(data: &[u8]) {
    each_line(data, |l| {
        let _ = crate::smtp::command::parse(l);
    });
}

/// `pop3::command::parse` on every line of a client's stream, as [`smtp_command`].
pub fn pop3_command(data: &[u8]) {
    each_line(data, |l| {
        let _ = crate::pop3::command::parse(l);
    });
}

/// The SMTP DATA reader (`smtp::data::unstuff`) over a stream (the first byte seeds the
/// read sizes). Checked: the message and the bytes used up to the end of data are those of
/// the line-by-line definition (lines end with CRLF; `.` CRLF ends; a leading dot is
/// dropped), however the stream is split; at most two bytes are held back between reads.
pub fn smtp_data(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let expected = by_lines(stream);
    assert_eq!(unstuffed(stream, &mut std::iter::empty()), expected);
    assert_eq!(unstuffed(stream, &mut read_sizes(seed)), expected);
    assert_eq!(unstuffed(stream, &mut std::iter::repeat(1)), expected);
}

/// [`unstuff`] over `stream` in reads of the given sizes, as the SMTP session calls it.
fn unstuffed(stream: &[u8], chunks: &mut dyn Iterator<Item = usize>) -> Option<(Vec<u8>, usize)> {
    let (mut out, mut buf, mut line_start, mut fed, mut used) =
        (Vec::new(), Vec::new(), true, 0, 0);
    while fed < stream.len() {
        let n = chunks.next().unwrap_or(usize::MAX).min(stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        let p = unstuff(&buf, &mut line_start, |b| out.extend_from_slice(b));
        assert!(p.consumed <= buf.len());
        used += p.consumed;
        buf.drain(..p.consumed);
        if p.ended {
            return Some((out, used));
        }
        assert!(buf.len() <= 2, "{} bytes held back", buf.len());
    }
    None
}

/// `MessageMeta::parse` of a raw message (the MIME scan run at delivery), then the stored
/// form and IMAP's ENVELOPE and BODYSTRUCTURE made from it. Checked: every part's offsets
/// are in order and inside the message, and sub-parts inside their parent; the metadata
/// encodes and decodes to itself, and its envelope decodes alone to the same.
pub fn mime_parse(data: &[u8]) {
    let m = MessageMeta::parse(data);
    check_part(&m.root, 0, data.len() as u32);
    let encoded = m.encode();
    assert_eq!(MessageMeta::decode(&encoded).as_ref(), Ok(&m));
    assert_eq!(
        MessageMeta::decode_envelope(&encoded).as_ref(),
        Ok(&m.envelope)
    );
    write_imap(&m);
}

fn check_part(p: &PartMeta, start: u32, end: u32) {
    assert!(start <= p.header_start, "{p:?} starts before {start}");
    assert!(p.header_start <= p.body_start && p.body_start <= p.end);
    assert!(p.end <= end, "{p:?} ends after {end}");
    for c in &p.children {
        check_part(c, p.body_start, p.end);
    }
    if let Some(e) = &p.embedded {
        check_part(&e.1, p.body_start, p.end);
    }
}

fn write_imap(m: &MessageMeta) {
    let mut out = Vec::new();
    write_envelope(&mut out, &m.envelope);
    write_body_structure(&mut out, &m.root, true);
    write_body_structure(&mut out, &m.root, false);
    std::hint::black_box(out);
}

/// `MessageMeta::decode` and `decode_envelope` of stored metadata (as read back from a
/// message's record), then IMAP's ENVELOPE and BODYSTRUCTURE made from what decodes.
/// Checked: what decodes encodes to bytes that decode to the same, and the envelope read
/// alone is the envelope of the whole.
pub fn meta_decode(data: &[u8]) {
    let envelope = MessageMeta::decode_envelope(data);
    let Ok(m) = MessageMeta::decode(data) else {
        return;
    };
    assert_eq!(envelope.as_ref(), Ok(&m.envelope));
    assert_eq!(MessageMeta::decode(&m.encode()).as_ref(), Ok(&m));
    write_imap(&m);
}
