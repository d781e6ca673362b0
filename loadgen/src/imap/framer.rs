//! IMAP server responses, framed without I/O: bytes in, whole responses out.
//!
//! A response is one line, unless the line ends with a literal announcement `{n}`: then the
//! next `n` bytes are the literal's data (CRLFs and all) and the response goes on after them
//! up to the next line end, which may announce another literal. The framer keeps where it
//! stopped scanning, so bytes arriving in pieces (a literal split over many reads) are never
//! scanned twice.

/// One complete server response: `* …`, `+ …` or `TAG …`, with its literals and final CRLF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub raw: Vec<u8>,
}

/// How a tagged or untagged status response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    Bye,
    Preauth,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::Bye => "BYE",
            Status::Preauth => "PREAUTH",
        }
    }
}

impl Response {
    pub fn is_untagged(&self) -> bool {
        self.raw.starts_with(b"* ")
    }

    pub fn is_continuation(&self) -> bool {
        self.raw.first() == Some(&b'+')
    }

    /// The tag of a tagged response.
    pub fn tag(&self) -> Option<&[u8]> {
        if self.is_untagged() || self.is_continuation() {
            return None;
        }
        self.raw.split(|&b| b == b' ').next()
    }

    /// `OK`/`NO`/`BAD`/`BYE`/`PREAUTH` after the tag or `*`, if this is a status response.
    pub fn status(&self) -> Option<Status> {
        let word = self.raw.split(|&b| b == b' ').nth(1)?;
        let word = word.strip_suffix(b"\r\n").unwrap_or(word);
        [
            Status::Ok,
            Status::No,
            Status::Bad,
            Status::Bye,
            Status::Preauth,
        ]
        .into_iter()
        .find(|s| word.eq_ignore_ascii_case(s.name().as_bytes()))
    }

    /// The first line, printable and bounded, for error messages.
    pub fn first_line(&self) -> String {
        let end = self
            .raw
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(self.raw.len())
            .min(200);
        String::from_utf8_lossy(&self.raw[..end]).into_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A response (or a literal in it) larger than the limit.
    TooLarge(u64),
}

/// Accumulates bytes from the server and cuts them into [`Response`]s.
pub struct Framer {
    buf: Vec<u8>,
    /// Where the response being framed starts in `buf`.
    start: usize,
    /// Where to look for the next line end; past `buf.len()` while literal bytes are owed.
    scan: usize,
    /// Where the current line segment starts (the response's start, or just after a
    /// literal's data): only it can announce the next literal.
    seg: usize,
    max: usize,
}

impl Framer {
    /// `max`: the largest response accepted, literals included.
    pub fn new(max: usize) -> Self {
        Framer {
            buf: Vec::with_capacity(64 << 10),
            start: 0,
            scan: 0,
            seg: 0,
            max,
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.scan -= self.start;
            self.seg -= self.start;
            self.start = 0;
        } else if self.start > (32 << 10) && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.scan -= self.start;
            self.seg -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet returned in a response.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete response, if the bytes fed so far hold one.
    pub fn next_response(&mut self) -> Result<Option<Response>, FrameError> {
        loop {
            if self.scan > self.buf.len() {
                return Ok(None); // literal bytes still owed
            }
            let Some(nl) = memchr(b'\n', &self.buf[self.scan..]) else {
                self.scan = self.buf.len();
                if self.buffered() > self.max {
                    return Err(FrameError::TooLarge(self.buffered() as u64));
                }
                return Ok(None);
            };
            let eol = self.scan + nl;
            let line_end = if eol > self.seg && self.buf[eol - 1] == b'\r' {
                eol - 1
            } else {
                eol
            };
            match literal_len(&self.buf[self.seg..line_end]) {
                Some(n) => {
                    let end = (eol + 1) as u64 + n;
                    if end - self.start as u64 > self.max as u64 {
                        return Err(FrameError::TooLarge(end - self.start as u64));
                    }
                    self.scan = end as usize;
                    self.seg = self.scan;
                }
                None => {
                    let raw = self.buf[self.start..=eol].to_vec();
                    self.start = eol + 1;
                    self.scan = self.start;
                    self.seg = self.start;
                    return Ok(Some(Response { raw }));
                }
            }
        }
    }
}

/// The size of the literal a line segment announces at its end: `{123}` (or `~{123}` for
/// BINARY, or `{123+}`).
pub(crate) fn literal_len(line: &[u8]) -> Option<u64> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn memchr(needle: u8, h: &[u8]) -> Option<usize> {
    h.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(f: &mut Framer) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        while let Some(r) = f.next_response().unwrap() {
            v.push(r.raw);
        }
        v
    }

    const STREAM: &[u8] = b"* 1 FETCH (UID 7 BODY[] {12}\r\nab\r\n{3}\r\nxyz FLAGS (\\Seen))\r\n\
* 2 FETCH (BODY[HEADER] {0}\r\n)\r\n* SEARCH 1 2\r\n+ go\r\na3 OK done\r\n";

    #[test]
    fn responses_with_literals_in_one_piece_and_byte_by_byte() {
        let mut f = Framer::new(1 << 20);
        f.feed(STREAM);
        let whole = all(&mut f);
        assert_eq!(whole.len(), 5);
        assert_eq!(
            whole[0],
            b"* 1 FETCH (UID 7 BODY[] {12}\r\nab\r\n{3}\r\nxyz FLAGS (\\Seen))\r\n"
        );
        assert_eq!(whole[1], b"* 2 FETCH (BODY[HEADER] {0}\r\n)\r\n");
        assert_eq!(whole.concat(), STREAM);
        // Every split point: the same responses.
        for cut in 0..STREAM.len() {
            let mut f = Framer::new(1 << 20);
            f.feed(&STREAM[..cut]);
            let mut got = all(&mut f);
            f.feed(&STREAM[cut..]);
            got.extend(all(&mut f));
            assert_eq!(got, whole, "cut at {cut}");
            assert_eq!(f.buffered(), 0);
        }
        let mut f = Framer::new(1 << 20);
        let mut got = Vec::new();
        for b in STREAM {
            f.feed(std::slice::from_ref(b));
            got.extend(all(&mut f));
        }
        assert_eq!(got, whole);
    }

    #[test]
    fn tags_and_statuses() {
        let r = |s: &[u8]| Response { raw: s.to_vec() };
        assert_eq!(r(b"a12 OK done\r\n").tag(), Some(&b"a12"[..]));
        assert_eq!(r(b"a12 ok done\r\n").status(), Some(Status::Ok));
        assert_eq!(r(b"a12 NO [TRYCREATE] x\r\n").status(), Some(Status::No));
        assert_eq!(r(b"a1 BAD\r\n").status(), Some(Status::Bad));
        assert_eq!(r(b"* BYE shutting down\r\n").status(), Some(Status::Bye));
        assert_eq!(r(b"* BYE shutting down\r\n").tag(), None);
        assert_eq!(r(b"* 3 EXISTS\r\n").status(), None);
        assert_eq!(r(b"+ \r\n").tag(), None);
        assert!(r(b"+ \r\n").is_continuation());
        assert_eq!(r(b"a1 OK x\r\n").first_line(), "a1 OK x");
    }

    #[test]
    fn limits_and_lookalikes() {
        let mut f = Framer::new(100);
        f.feed(b"* 1 FETCH (BODY[] {1000}\r\n");
        assert_eq!(f.next_response(), Err(FrameError::TooLarge(1026)));
        let mut f = Framer::new(100);
        f.feed(&[b'x'; 150]);
        assert!(f.next_response().is_err());
        // `{x}` is not a literal, `{5+}` and `~{5}` are.
        assert_eq!(literal_len(b"* OK {x}"), None);
        assert_eq!(literal_len(b"* OK {}"), None);
        assert_eq!(literal_len(b"BINARY[] ~{5}"), Some(5));
        assert_eq!(literal_len(b"{5+}"), Some(5));
        // A literal whose data contains what looks like another announcement and a line end,
        // or the start of one that the line after it would complete.
        let mut f = Framer::new(1000);
        f.feed(b"* 1 FETCH (BODY[] {9}\r\n{2}\r\nab\r\n)\r\n* 2 FETCH (BODY[] {3}\r\n{12}\r\n");
        assert_eq!(
            all(&mut f),
            vec![
                b"* 1 FETCH (BODY[] {9}\r\n{2}\r\nab\r\n)\r\n".to_vec(),
                b"* 2 FETCH (BODY[] {3}\r\n{12}\r\n".to_vec()
            ]
        );
    }

    #[test]
    fn the_buffer_is_reused_after_many_responses() {
        let mut f = Framer::new(1 << 20);
        for i in 0..10_000 {
            f.feed(format!("* {i} EXISTS\r\na{i} OK ").as_bytes());
            assert_eq!(all(&mut f).len(), 1);
            f.feed(b"done\r\n");
            assert_eq!(all(&mut f).len(), 1);
        }
        assert!(f.buf.capacity() < 1 << 20);
    }
}
