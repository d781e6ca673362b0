//! Splits the client's byte stream into whole IMAP commands (RFC 9051 section 2.2.1),
//! literals included.
//!
//! ```text
//! a001 APPEND INBOX {11}\r\n          ← line ends in a synchronizing literal:
//!                                       the session must send "+ ..." (NeedContinuation)
//! Hello World\r\n                       ← 11 octets, then the rest of the command line
//! a002 APPEND INBOX {5+}\r\nhello\r\n  ← LITERAL+: no continuation
//! ```
//!
//! The framer enforces the maximum line and literal sizes; after an oversized literal it
//! reports the tag so the session can answer `BAD`, and it resynchronises by skipping the
//! literal's octets when the client sends them anyway (for a non-synchronizing literal).

use super::reply::{Code, Failure};

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_line: usize,
    pub max_literal: u64,
    /// LITERAL- (RFC 7888): non-synchronizing literals are limited to 4096 octets.
    pub max_nonsync_literal: u64,
    /// All of one command, lines and literals: many literals in one command cannot add up
    /// to more than this.
    pub max_command: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line: 64 << 10,
            max_literal: 64 << 20,
            max_nonsync_literal: 64 << 20,
            max_command: 64 << 20,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole command: its bytes, literals inline (each literal's `{n}` stays in place,
    /// followed by CRLF and the n octets).
    Command(Vec<u8>),
    /// A synchronizing literal was announced: send a continuation request, then call
    /// `next_frame` again.
    NeedContinuation,
    /// Refused: answer `tag` and [`Refusal::reply`] (the tag may be empty when
    /// unparseable).
    Refused { tag: String, reason: Refusal },
    /// A literal the server has no memory for now (its budget for messages in flight is
    /// spent): answer `tag NO [UNAVAILABLE]`, and the client may try again later.
    Busy { tag: String },
}

/// Why the framer refused a command before it was parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    LineTooLong,
    InvalidLiteral,
    LiteralTooLarge,
}

impl Refusal {
    /// The tagged reply after the tag: a literal over the limit is `NO [TOOBIG]` (the
    /// command itself may be fine, RFC 7889), the others `BAD`.
    pub fn reply(self) -> Failure {
        match self {
            Refusal::LineTooLong => Failure::bad("line too long"),
            Refusal::InvalidLiteral => Failure::bad("invalid literal"),
            Refusal::LiteralTooLarge => Failure::code(Code::TooBig, "literal too large"),
        }
    }
}

#[derive(Default)]
pub struct Framer {
    limits: Limits,
    /// Received bytes not yet framed (taken from the front by an offset: many pipelined
    /// commands in one read cost no more than one each).
    buf: crate::lines::Input,
    /// Bytes of the command assembled so far (lines and literals).
    pending: Vec<u8>,
    /// Octets of the current command's lines so far (its literals do not count against
    /// the line limit).
    line_len: usize,
    /// Octets of the current command's literals so far.
    literal_total: u64,
    /// Octets of a literal still to read into `pending`.
    literal_left: u64,
    /// Octets to throw away (a refused non-synchronizing literal).
    skip: u64,
    /// Discard input up to the end of the current line (after an overlong line).
    skip_line: bool,
    /// The last bytes of the line being discarded, kept to see whether it ends in a
    /// non-synchronizing literal, whose octets must be skipped too.
    skipped_tail: Vec<u8>,
}

/// The most bytes a literal announcement at the end of a line takes: `{`, 19 digits, `+}`,
/// CR.
const LITERAL_TAIL: usize = 1 + 19 + 2 + 1;

impl Framer {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    pub fn input(&mut self, data: &[u8]) {
        self.buf.push(data);
    }

    /// Bytes held but not yet part of a complete command.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.pending.len()
    }

    /// Takes the bytes received but not yet framed (to hand them to another framer, as when
    /// a session moves to another shard). Only between commands: nothing is half-framed.
    pub fn take_input(&mut self) -> Vec<u8> {
        self.line_len = 0;
        let mut v = std::mem::take(&mut self.pending);
        v.extend_from_slice(self.buf.bytes());
        self.buf.clear();
        v
    }

    /// Discards everything buffered (STARTTLS: no plaintext may carry over).
    pub fn reset(&mut self) {
        *self = Self::new(self.limits);
    }

    fn tag_of(line: &[u8]) -> String {
        let end = line
            .iter()
            .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
            .unwrap_or(line.len());
        String::from_utf8_lossy(&line[..end.min(64)]).to_string()
    }

    /// Keeps the last bytes of a line being discarded (the buffer holds its next part).
    fn keep_tail(&mut self) {
        let bytes = self.buf.bytes();
        let new = &bytes[bytes.len().saturating_sub(LITERAL_TAIL)..];
        self.skipped_tail.extend_from_slice(new);
        let excess = self.skipped_tail.len().saturating_sub(LITERAL_TAIL);
        self.skipped_tail.drain(..excess);
    }

    fn drop_command(&mut self) {
        self.pending.clear();
        self.line_len = 0;
        self.literal_total = 0;
    }

    pub fn next_frame(&mut self) -> Option<Frame> {
        self.next_frame_with(&mut |_| true)
    }

    /// As [`Self::next_frame`], asking `grant` before taking a literal whether the command
    /// may hold that many bytes in all (the server's memory budget).
    pub fn next_frame_with(&mut self, grant: &mut dyn FnMut(u64) -> bool) -> Option<Frame> {
        loop {
            if self.skip > 0 {
                let n = (self.skip as usize).min(self.buf.len());
                self.buf.consume(n);
                self.skip -= n as u64;
                if self.skip > 0 {
                    return None;
                }
                self.skip_line = true;
            }
            if self.literal_left > 0 {
                let n = (self.literal_left as usize).min(self.buf.len());
                self.pending.extend_from_slice(&self.buf.bytes()[..n]);
                self.buf.consume(n);
                self.literal_left -= n as u64;
                if self.literal_left > 0 {
                    return None;
                }
            }
            let Some(i) = memchr::memchr(b'\n', self.buf.bytes()) else {
                if self.skip_line {
                    // Still inside a refused line: drop it as it arrives.
                    self.keep_tail();
                    self.buf.clear();
                    return None;
                }
                if self.buf.len() + self.line_len > self.limits.max_line {
                    let tag = Self::tag_of(if self.pending.is_empty() {
                        self.buf.bytes()
                    } else {
                        &self.pending
                    });
                    self.keep_tail();
                    self.buf.clear();
                    self.drop_command();
                    self.skip_line = true;
                    return Some(Frame::Refused {
                        tag,
                        reason: Refusal::LineTooLong,
                    });
                }
                return None;
            };
            let line = self.buf.bytes()[..=i].to_vec();
            self.buf.consume(i + 1);
            if std::mem::take(&mut self.skip_line) {
                // The end of a discarded line: a non-synchronizing literal announced there
                // comes anyway, and its octets are data, never commands.
                let mut tail = std::mem::take(&mut self.skipped_tail);
                tail.extend_from_slice(&line);
                if let Some(Ok((n, false))) = literal_at_end(&tail) {
                    self.skip = n;
                }
                continue;
            }
            if line.len() + self.line_len > self.limits.max_line {
                let tag = Self::tag_of(if self.pending.is_empty() {
                    &line
                } else {
                    &self.pending
                });
                self.drop_command();
                // A non-synchronizing literal at its end comes anyway: its octets are data,
                // never commands.
                if let Some(Ok((n, false))) = literal_at_end(&line) {
                    self.skip = n;
                }
                return Some(Frame::Refused {
                    tag,
                    reason: Refusal::LineTooLong,
                });
            }
            self.pending.extend_from_slice(&line);
            self.line_len += line.len();
            match literal_at_end(&line) {
                None => {
                    self.line_len = 0;
                    self.literal_total = 0;
                    return Some(Frame::Command(std::mem::take(&mut self.pending)));
                }
                Some(Err(())) => {
                    let tag = Self::tag_of(&self.pending);
                    self.drop_command();
                    return Some(Frame::Refused {
                        tag,
                        reason: Refusal::InvalidLiteral,
                    });
                }
                Some(Ok((n, sync))) => {
                    let max = if sync {
                        self.limits.max_literal
                    } else {
                        self.limits.max_nonsync_literal
                    };
                    if n > max
                        || self.literal_total + n + self.line_len as u64 > self.limits.max_command
                    {
                        let tag = Self::tag_of(&self.pending);
                        self.drop_command();
                        if !sync {
                            // The client sends it regardless: skip it, and the line after.
                            self.skip = n;
                        }
                        return Some(Frame::Refused {
                            tag,
                            reason: Refusal::LiteralTooLarge,
                        });
                    }
                    if !grant(self.pending.len() as u64 + n) {
                        let tag = Self::tag_of(&self.pending);
                        self.drop_command();
                        if !sync {
                            self.skip = n;
                        }
                        return Some(Frame::Busy { tag });
                    }
                    self.literal_left = n;
                    self.literal_total += n;
                    if sync && n > 0 {
                        return Some(Frame::NeedContinuation);
                    }
                }
            }
        }
    }
}

/// `{n}` / `{n+}` at the end of a line (before CRLF): `(n, synchronizing)`.
fn literal_at_end(line: &[u8]) -> Option<Result<(u64, bool), ()>> {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    let l = l.strip_suffix(b"\r").unwrap_or(l);
    let l = l.strip_suffix(b"}")?;
    let open = l.iter().rposition(|&b| b == b'{')?;
    let inner = &l[open + 1..];
    let (digits, sync) = match inner.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (inner, true),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Some(Err(()));
    }
    Some(
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .map(|n| (n, sync))
            .ok_or(()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(f: &mut Framer) -> Vec<Frame> {
        std::iter::from_fn(|| f.next_frame()).collect()
    }

    #[test]
    fn lines_literals_and_continuations() {
        let mut f = Framer::default();
        f.input(b"a1 NOOP\r\na2 LOGIN {3}\r\n");
        assert_eq!(
            all(&mut f),
            vec![
                Frame::Command(b"a1 NOOP\r\n".to_vec()),
                Frame::NeedContinuation
            ]
        );
        f.input(b"bob {6+}\r\nsec");
        assert_eq!(all(&mut f), vec![]);
        f.input(b"ret\r\n");
        assert_eq!(
            all(&mut f),
            vec![Frame::Command(
                b"a2 LOGIN {3}\r\nbob {6+}\r\nsecret\r\n".to_vec()
            )]
        );
    }

    #[test]
    fn byte_at_a_time_gives_the_same_frames() {
        let input = b"a1 APPEND INBOX (\\Seen) {5+}\r\nhello\r\na2 NOOP\r\na3 X {2}\r\nab\r\n";
        let mut whole = Framer::default();
        whole.input(input);
        let a = all(&mut whole);
        let mut bytes = Framer::default();
        let mut b = Vec::new();
        for c in input.chunks(1) {
            bytes.input(c);
            b.extend(all(&mut bytes));
        }
        assert_eq!(a, b);
        assert_eq!(a.len(), 4);
    }

    #[test]
    fn many_literals_cannot_add_up_past_the_command_limit() {
        let mut f = Framer::new(Limits {
            max_line: 1000,
            max_literal: 100,
            max_nonsync_literal: 100,
            max_command: 250,
        });
        let mut input = Vec::new();
        for _ in 0..5 {
            input.extend_from_slice(b"a1 X {100+}\r\n");
            input.extend_from_slice(&[b'y'; 100]);
        }
        input.extend_from_slice(b"\r\na2 NOOP\r\n");
        f.input(&input);
        let frames = all(&mut f);
        assert!(matches!(
            &frames[0],
            Frame::Refused {
                reason: Refusal::LiteralTooLarge,
                ..
            }
        ));
        assert_eq!(
            frames.last(),
            Some(&Frame::Command(b"a2 NOOP\r\n".to_vec()))
        );
        // An overlong line's literal is skipped, not run as commands.
        let mut g = Framer::new(Limits {
            max_line: 20,
            max_literal: 100,
            max_nonsync_literal: 100,
            max_command: 1000,
        });
        g.input(b"a3 APPEND INBOX (\\Seen \\Flagged) {11+}\r\nx DELETE y\r\na4 NOOP\r\n");
        let frames = all(&mut g);
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert_eq!(frames[1], Frame::Command(b"a4 NOOP\r\n".to_vec()));
    }

    /// Found by the `imap_framer` fuzz target (fuzz/regressions/imap_framer/): a refused
    /// command's non-synchronizing literal was skipped only when the framer saw the end of
    /// the refused line in the same read as its start; an overlong line that arrived in
    /// pieces, or the rest of a line after a refused literal (MULTIAPPEND), had the literal
    /// after it taken for commands, so a message's text could run as IMAP commands.
    #[test]
    fn a_refused_lines_literal_is_skipped_however_the_line_arrives() {
        let limits = Limits {
            max_line: 20,
            max_literal: 100,
            max_nonsync_literal: 100,
            max_command: 1000,
        };
        let input: &[u8] = b"a3 APPEND INBOX (\\Seen \\Flagged) {11+}\r\nx DELETE y\r\na4 NOOP\r\n";
        for step in [1, 2, 7, 30, input.len()] {
            let mut f = Framer::new(limits);
            let mut frames = Vec::new();
            for c in input.chunks(step) {
                f.input(c);
                frames.extend(all(&mut f));
            }
            assert_eq!(
                frames,
                vec![
                    Frame::Refused {
                        tag: "a3".into(),
                        reason: Refusal::LineTooLong
                    },
                    Frame::Command(b"a4 NOOP\r\n".to_vec())
                ],
                "reads of {step}"
            );
        }
        // A second literal on the line after a refused one (MULTIAPPEND) is skipped too.
        let mut f = Framer::new(limits);
        f.input(b"a5 APPEND A {200+}\r\n");
        f.input(&[b'x'; 200]);
        f.input(b" B {12+}\r\nx DELETE y\r\n\r\na6 NOOP\r\n");
        assert_eq!(
            all(&mut f),
            vec![
                Frame::Refused {
                    tag: "a5".into(),
                    reason: Refusal::LiteralTooLarge
                },
                Frame::Command(b"a6 NOOP\r\n".to_vec())
            ]
        );
    }

    #[test]
    fn literals_do_not_count_against_the_line_limit() {
        let mut f = Framer::new(Limits {
            max_line: 100,
            max_literal: 1 << 20,
            max_nonsync_literal: 1 << 20,
            max_command: 1 << 20,
        });
        let body = vec![b'x'; 100_000];
        let mut input = b"a1 APPEND INBOX {100000+}\r\n".to_vec();
        input.extend_from_slice(&body);
        input.extend_from_slice(b" {3+}\r\nabc\r\n");
        f.input(&input);
        let frames = all(&mut f);
        assert_eq!(frames.len(), 1);
        assert!(matches!(&frames[0], Frame::Command(c) if c.len() > 100_000));
    }

    #[test]
    fn limits_refuse_and_resynchronise() {
        let mut f = Framer::new(Limits {
            max_line: 100,
            max_literal: 10,
            max_nonsync_literal: 10,
            max_command: 1 << 20,
        });
        f.input(b"a1 APPEND INBOX {50}\r\n");
        assert_eq!(
            all(&mut f),
            vec![Frame::Refused {
                tag: "a1".into(),
                reason: Refusal::LiteralTooLarge
            }]
        );
        // A non-synchronizing one is sent anyway: skipped, and the next command is found.
        f.input(b"a2 APPEND INBOX {20+}\r\n01234567890123456789\r\na3 NOOP\r\n");
        assert_eq!(
            all(&mut f),
            vec![
                Frame::Refused {
                    tag: "a2".into(),
                    reason: Refusal::LiteralTooLarge
                },
                Frame::Command(b"a3 NOOP\r\n".to_vec())
            ]
        );
        let long = format!("a4 {}\r\na5 NOOP\r\n", "x".repeat(500));
        f.input(long.as_bytes());
        assert_eq!(
            all(&mut f),
            vec![
                Frame::Refused {
                    tag: "a4".into(),
                    reason: Refusal::LineTooLong
                },
                Frame::Command(b"a5 NOOP\r\n".to_vec())
            ]
        );
        f.input(b"a6 X {1x}\r\na7 X {99999999999999999999}\r\n");
        assert_eq!(
            all(&mut f),
            vec![
                Frame::Refused {
                    tag: "a6".into(),
                    reason: Refusal::InvalidLiteral
                },
                Frame::Refused {
                    tag: "a7".into(),
                    reason: Refusal::InvalidLiteral
                }
            ]
        );
        // A 10 MiB line without a newline, arriving in pieces, is refused once and does not
        // grow the buffer; the command after it is found.
        let mut frames = Vec::new();
        for _ in 0..640 {
            f.input(&[b'y'; 16 << 10]);
            frames.extend(all(&mut f));
            assert!(f.buffered() <= 100 + (16 << 10));
        }
        f.input(b"\r\na8 NOOP\r\n");
        frames.extend(all(&mut f));
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1], Frame::Command(b"a8 NOOP\r\n".to_vec()));
    }

    #[test]
    fn a_literal_past_the_memory_grant_is_refused_and_skipped() {
        let mut f = Framer::new(Limits::default());
        let mut asked = Vec::new();
        f.input(b"a1 APPEND INBOX {100+}\r\n");
        f.input(&[b'x'; 100]);
        f.input(b"\r\na2 NOOP\r\n");
        let mut grant = |n: u64| {
            asked.push(n);
            n < 50
        };
        assert_eq!(
            f.next_frame_with(&mut grant),
            Some(Frame::Busy { tag: "a1".into() })
        );
        assert_eq!(
            f.next_frame_with(&mut grant),
            Some(Frame::Command(b"a2 NOOP\r\n".to_vec()))
        );
        assert_eq!(asked, [24 + 100]);
    }
}
