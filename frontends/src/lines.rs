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

/// Takes the next line out of `input`. `skip` remembers, between calls, that the rest of
/// an overlong line is still to be dropped, so the buffer stays bounded by `max`.
pub fn next_line(input: &mut Vec<u8>, skip: &mut bool, max: usize) -> Line {
    loop {
        match memchr::memchr(b'\n', input) {
            Some(i) => {
                let mut line: Vec<u8> = input.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if std::mem::take(skip) {
                    continue;
                }
                if line.len() > max {
                    return Line::TooLong;
                }
                return Line::Line(line);
            }
            None => {
                if input.len() > max {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_the_limit() {
        let mut input = b"one\r\ntwo\nthr".to_vec();
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
        input.extend_from_slice(b"ee is far too long\r\nok\r\n");
        assert_eq!(next_line(&mut input, &mut skip, 10), Line::TooLong);
        assert_eq!(
            next_line(&mut input, &mut skip, 10),
            Line::Line(b"ok".to_vec())
        );
        // An overlong line with no end yet: reported once, dropped up to its end.
        input.extend_from_slice(&[b'x'; 50]);
        assert_eq!(next_line(&mut input, &mut skip, 10), Line::TooLong);
        input.extend_from_slice(&[b'x'; 50]);
        assert_eq!(next_line(&mut input, &mut skip, 10), Line::Pending);
        input.extend_from_slice(b"xx\r\nnext\r\n");
        assert_eq!(
            next_line(&mut input, &mut skip, 10),
            Line::Line(b"next".to_vec())
        );
    }
}
