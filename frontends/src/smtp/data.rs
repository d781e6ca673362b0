//! The DATA stream (RFC 5321 section 4.5.2): dot-unstuffing and the end-of-data line,
//! over whatever bytes have arrived.
//!
//! Lines end with CRLF and nothing else: a bare LF is message text, so `<LF>.<LF>` or
//! `<LF>.<CRLF>` do not end the message. Accepting those as the end is what made "SMTP
//! smuggling" possible (CVE-2023-51764 and siblings: a sender hides a second message
//! behind what one server takes for text and another for the end of data).
//!
//! Runs of lines that do not start with a dot are passed on in one piece (found with one
//! `memmem` search for "\r\n."), so a message costs a handful of copies, not one per line.

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
/// call. At most two bytes are held back for the next call: a line start's `.` or `.\r`
/// (the end of data, or a stuffed dot?), or a final CR (the start of a line end?).
pub fn unstuff(input: &[u8], line_start: &mut bool, mut body: impl FnMut(&[u8])) -> Progress {
    let mut pos = 0;
    loop {
        let rest = &input[pos..];
        if *line_start && rest.first() == Some(&b'.') {
            if rest.starts_with(b".\r\n") {
                return Progress {
                    consumed: pos + 3,
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
        match memchr::memmem::find(rest, b"\r\n.") {
            Some(j) => {
                body(&rest[..j + 2]);
                pos += j + 2;
                *line_start = true;
            }
            None => {
                // No line here starts with a dot: all of it is message text, except a final
                // CR, which the next read may turn into a line end.
                let take = rest.len() - usize::from(rest.last() == Some(&b'\r'));
                if take > 0 {
                    body(&rest[..take]);
                    *line_start = rest[..take].ends_with(b"\r\n");
                }
                return Progress {
                    consumed: pos + take,
                    ended: false,
                };
            }
        }
    }
}

/// What [`unstuff`] must give, defined line by line (lines end with CRLF; `.` CRLF ends;
/// a leading dot is dropped): the message and the bytes up to and including the
/// end-of-data line, or `None` if the stream has none. For the tests and the `smtp_data`
/// fuzz target.
pub(crate) fn by_lines(stream: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(i) = memchr::memmem::find(&stream[pos..], b"\r\n") {
        let line = &stream[pos..pos + i + 2];
        pos += i + 2;
        if line == b".\r\n" {
            return Some((out, pos));
        }
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let streams: [&[u8]; 10] = [
            b"Subject: a\r\n\r\nbody\r\n.\r\nQUIT\r\n",
            b".\r\n",
            b"..\r\n...x\r\n.y\r\nz.\r\n. \r\n.\r\nNOOP\r\n",
            b"a\nb\n.\nMAIL FROM:<>\r\n",
            b".\rx\r\n.\r.\r\n.\r\n",
            b"no end\r\n.x",
            b"line\r\n..\r\n.\r",
            // Smuggling attempts: neither bare-LF form ends the message.
            b"x\r\n.\nMAIL FROM:<a@b>\r\n\n.\r\nRCPT TO:<c@d>\r\n\r\n.\r\nQUIT\r\n",
            b"x\n.\r\ny\r\r\n.\r\n",
            b"\r\r\n\r\n.\r\n",
        ];
        for s in streams {
            for step in [1, 2, 3, 5, 7, 64, 4096] {
                assert_eq!(
                    feed(s, step),
                    by_lines(s),
                    "{:?} step {step}",
                    String::from_utf8_lossy(s)
                );
            }
        }
    }

    #[test]
    fn only_crlf_dot_crlf_ends_the_message() {
        let s = b"a\n.\nb\n.\r\nc\r\n.\r\n";
        let (body, used) = feed(s, 4096).expect("ends");
        assert_eq!(body, b"a\n.\nb\n.\r\nc\r\n");
        assert_eq!(used, s.len());
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
