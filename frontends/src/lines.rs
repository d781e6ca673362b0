//! Splitting the client's input into command lines, with a length limit: shared by the
//! line-oriented protocols (SMTP, LMTP, POP3). Sans I/O.
#![forbid(unsafe_code)]

#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line, without its line ending (CRLF or a bare LF).
    Line(Vec<u8>),
    /// A line over the limit: it is dropped (up to its end, even if that arrives later);
    /// the session answers with its protocol's error.
    TooLong,
    /// No whole line yet.
    Pending,
}

/// A session's bytes received but not yet processed. Taking from the front moves an offset;
/// the buffer is compacted only when more bytes arrive. Draining each line from a `Vec`
/// instead moves everything behind it, so a burst of many short pipelined commands cost
/// time quadratic in its size (64 KiB of NOOPs: some 350 MB of copying).
#[derive(Debug, Default)]
pub struct Input {
    buf: Vec<u8>,
    start: usize,
}

impl Input {
    /// Appends what was read.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The unprocessed bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Marks the first `n` unprocessed bytes as processed.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
    }
}

/// Takes the next line out of `input`. `skip` remembers, between calls, that the rest of
/// an overlong line is still to be dropped, so the buffer stays bounded by `max`.
pub fn next_line(input: &mut Input, skip: &mut bool, max: usize) -> Line {
    loop {
        match memchr::memchr(b'\n', input.bytes()) {
            Some(i) => {
                let mut line = &input.bytes()[..i];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                let result = if std::mem::take(skip) {
                    None
                } else if line.len() > max {
                    Some(Line::TooLong)
                } else {
                    Some(Line::Line(line.to_vec()))
                };
                input.consume(i + 1);
                match result {
                    Some(r) => return r,
                    None => continue,
                }
            }
            None => {
                // A line of exactly `max` may have its CR here and its LF in the next read.
                let limit = max + usize::from(input.bytes().last() == Some(&b'\r'));
                if input.len() > limit {
                    input.clear();
                    if !*skip {
                        *skip = true;
                        return Line::TooLong;
                    }
                }
                return Line::Pending;
            }
        }
    }
}

/// A line protocol's sans-I/O session as its connection loop drives it (`server/driver.rs`).
pub trait LineSession {
    fn input(&mut self, data: &[u8]);
    fn is_closed(&self) -> bool;
    /// The client took too long: the session writes its goodbye.
    fn timeout(&mut self, out: &mut Vec<u8>);
    /// TLS is up after the session's STARTTLS/STLS.
    fn tls_started(&mut self);
    fn login_answer(&mut self, answer: crate::sasl::Answer, out: &mut Vec<u8>);
    /// How the login being checked ended, once known: logged in, or failed.
    fn take_login_outcome(&mut self) -> Option<bool>;
    /// The reply that tells the client the server is shutting down.
    fn stopping_reply(&self) -> &'static [u8];
    /// The reply that tells the client its mailbox is now served by another node (cluster
    /// mode), so it logs in again.
    fn moved_reply(&self) -> &'static [u8] {
        self.stopping_reply()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_the_limit() {
        let mut input = Input::default();
        input.push(b"one\r\ntwo\nthr");
        let mut skip = false;
        assert_eq!(
            next_line(&mut input, &mut skip, 10),
            Line::Line(b"one".to_vec())
        );
        assert_eq!(
            next_line(&mut input, &mut skip, 10),
            Line::Line(b"two".to_vec())
        );
        assert_eq!(next_line(&mut input, &mut skip, 10), Line::Pending);
        input.push(b"ee is far too long\r\nok\r\n");
        assert_eq!(next_line(&mut input, &mut skip, 10), Line::TooLong);
        assert_eq!(
            next_line(&mut input, &mut skip, 10),
            Line::Line(b"ok".to_vec())
        );
        // An overlong line with no end yet: reported once, dropped up to its end.
        input.push(&[b'x'; 50]);
        assert_eq!(next_line(&mut input, &mut skip, 10), Line::TooLong);
        input.push(&[b'x'; 50]);
        assert_eq!(next_line(&mut input, &mut skip, 10), Line::Pending);
        input.push(b"xx\r\nnext\r\n");
        assert_eq!(
            next_line(&mut input, &mut skip, 10),
            Line::Line(b"next".to_vec())
        );
        assert!(input.is_empty());
    }

    #[test]
    fn a_line_of_the_limit_split_between_cr_and_lf_is_whole() {
        let mut input = Input::default();
        let mut skip = false;
        input.push(b"0123456789\r");
        assert_eq!(next_line(&mut input, &mut skip, 10), Line::Pending);
        input.push(b"\n");
        assert_eq!(
            next_line(&mut input, &mut skip, 10),
            Line::Line(b"0123456789".to_vec())
        );
        input.push(b"0123456789x\r");
        assert_eq!(next_line(&mut input, &mut skip, 10), Line::TooLong);
    }

    #[test]
    fn many_pipelined_lines_are_taken_in_linear_time() {
        let mut input = Input::default();
        input.push(&b"NOOP\r\n".repeat(100_000));
        let mut skip = false;
        let t = std::time::Instant::now();
        let mut n = 0;
        while let Line::Line(l) = next_line(&mut input, &mut skip, 512) {
            assert_eq!(l, b"NOOP");
            n += 1;
        }
        assert_eq!(n, 100_000);
        // Quadratic draining took seconds here; linear takes milliseconds.
        assert!(
            t.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            t.elapsed()
        );
        input.push(b"QU");
        input.push(b"IT\r\n");
        assert_eq!(
            next_line(&mut input, &mut skip, 512),
            Line::Line(b"QUIT".to_vec())
        );
    }
}
