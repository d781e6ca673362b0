//! The DATA stream (RFC 5321 section 4.5.2): dot-unstuffing and the end-of-data line,
//! over whatever bytes have arrived.
//!
//! Runs of lines that do not start with a dot are passed on in one piece (found with one
//! `memmem` search for "\n."), so a message costs a handful of copies, not one per line.

/// What [`unstuff`] did with the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input used; the rest must be offered again with more appended.
    pub consumed: usize,
    /// The end-of-data line was consumed: what follows it is the next command.
    pub ended: bool,
}

/// Passes the message bytes in `input` to `body`, unstuffed, until the end-of-data line.
/// `line_start` says whether `input` begins a line, and is kept up to date for the next
/// call. Only a line that starts with a dot is held back until it is complete enough to
/// tell (at most two bytes: `.` or `.\r`), so the unconsumed rest stays tiny.
pub fn unstuff(input: &[u8], line_start: &mut bool, mut body: impl FnMut(&[u8])) -> Progress {
    let mut pos = 0;
    loop {
        let rest = &input[pos..];
        if *line_start && rest.first() == Some(&b'.') {
            if rest.starts_with(b".\r\n") || rest.starts_with(b".\n") {
                let n = if rest[1] == b'\n' { 2 } else { 3 };
                return Progress {
                    consumed: pos + n,
                    ended: true,
                };
            }
            if rest == b"." || rest == b".\r" {
                return Progress {
                    consumed: pos,
                    ended: false,
                };
            }
            // A stuffed dot: drop it, the line's text follows.
            pos += 1;
            *line_start = false;
            continue;
        }
        if rest.is_empty() {
            return Progress {
                consumed: pos,
                ended: false,
            };
        }
        match memchr::memmem::find(rest, b"\n.") {
            Some(j) => {
                body(&rest[..=j]);
                pos += j + 1;
                *line_start = true;
            }
            None => {
                // No line in what is here starts with a dot: all of it is message text.
                body(rest);
                *line_start = rest.last() == Some(&b'\n');
                return Progress {
                    consumed: input.len(),
                    ended: false,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line-by-line definition, for comparison.
    fn reference(stream: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(i) = memchr::memchr(b'\n', &stream[pos..]) {
            let line = &stream[pos..pos + i + 1];
            pos += i + 1;
            if line == b".\r\n" || line == b".\n" {
                return Some((out, pos));
            }
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        None
    }

    /// Feeds `stream` in pieces of `step` bytes, as reads would deliver it.
    fn feed(stream: &[u8], step: usize) -> Option<(Vec<u8>, usize)> {
        let (mut out, mut buf, mut line_start, mut fed) = (Vec::new(), Vec::new(), true, 0);
        let mut taken = 0;
        while fed < stream.len() {
            let n = step.min(stream.len() - fed);
            buf.extend_from_slice(&stream[fed..fed + n]);
            fed += n;
            let p = unstuff(&buf, &mut line_start, |b| out.extend_from_slice(b));
            taken += p.consumed;
            buf.drain(..p.consumed);
            if p.ended {
                return Some((out, taken));
            }
        }
        None
    }

    #[test]
    fn matches_the_line_by_line_definition_however_it_is_split() {
        let streams: [&[u8]; 7] = [
            b"Subject: a\r\n\r\nbody\r\n.\r\nQUIT\r\n",
            b".\r\n",
            b"..\r\n...x\r\n.y\r\nz.\r\n. \r\n.\r\nNOOP\r\n",
            b"a\nb\n.\nMAIL FROM:<>\r\n",
            b".\rx\r\n.\r.\r\n.\r\n",
            b"no end\r\n.x",
            b"line\r\n..\r\n.\r",
        ];
        for s in streams {
            for step in [1, 2, 3, 5, 7, 64, 4096] {
                assert_eq!(
                    feed(s, step),
                    reference(s),
                    "{:?} step {step}",
                    String::from_utf8_lossy(s)
                );
            }
        }
    }

    #[test]
    fn a_long_message_is_passed_on_in_few_pieces() {
        let mut s = b"x"
            .repeat(100)
            .iter()
            .chain(b"\r\n")
            .copied()
            .collect::<Vec<u8>>()
            .repeat(50);
        s.extend_from_slice(b"..stuffed\r\n.\r\n");
        let mut pieces = 0;
        let mut line_start = true;
        let p = unstuff(&s, &mut line_start, |_| pieces += 1);
        assert!(p.ended);
        assert_eq!(p.consumed, s.len());
        assert!(pieces <= 3, "{pieces}");
    }
}
