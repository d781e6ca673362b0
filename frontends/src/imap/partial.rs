//! Paged results (RFC 9394 PARTIAL): a range of positions in a result list, counted from
//! its start (`1:500`) or from its end (`-1:-100`), for SEARCH and SORT return options and
//! as a FETCH modifier.
//!
//! ```text
//! partial-range       = partial-range-first / partial-range-last
//! partial-range-first = nz-number ":" nz-number     ; 500:400 is 400:500
//! partial-range-last  = MINUS nz-number ":" MINUS nz-number
//! ```

use super::command::{P, R};

/// Positions `lo..=hi` (1-based, `lo <= hi`), from the end of the list when `from_end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartialRange {
    pub lo: u32,
    pub hi: u32,
    pub from_end: bool,
}

impl PartialRange {
    /// Parses a range at the parser's position. `0`, `*`, a single number, mixed signs and
    /// numbers past 32 bits are all syntax errors (BAD).
    pub(crate) fn parse(p: &mut P) -> R<Self> {
        let from_end = p.eat(b'-');
        let a = p.nz32()?;
        if !p.eat(b':') {
            return p.err("a PARTIAL range is n:m or -n:-m");
        }
        if p.eat(b'-') != from_end {
            return p.err("both ends of a PARTIAL range have the same sign");
        }
        let b = p.nz32()?;
        Ok(Self {
            lo: a.min(b),
            hi: a.max(b),
            from_end,
        })
    }

    /// The part of `items` (a result list, in its order) the range names; empty when it
    /// lies beyond the list.
    pub fn select<'a, T>(&self, items: &'a [T]) -> &'a [T] {
        let n = items.len();
        let (lo, hi) = (self.lo as usize, self.hi as usize);
        let (start, end) = if self.from_end {
            (n.saturating_sub(hi), n.saturating_sub(lo - 1))
        } else {
            ((lo - 1).min(n), hi.min(n))
        };
        &items[start..end]
    }

    /// The range as sent back in `PARTIAL (<range> ...)`: normalized, low end first.
    pub fn write(&self, out: &mut Vec<u8>) {
        let s = if self.from_end {
            format!("-{}:-{}", self.lo, self.hi)
        } else {
            format!("{}:{}", self.lo, self.hi)
        };
        out.extend_from_slice(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> R<PartialRange> {
        let b = format!("{s}\r\n");
        let mut p = P::new(b.as_bytes());
        let r = PartialRange::parse(&mut p)?;
        p.end()?;
        Ok(r)
    }

    #[test]
    fn ranges_parse_and_normalize() {
        let r = |lo, hi, from_end| PartialRange { lo, hi, from_end };
        assert_eq!(parse("1:500").unwrap(), r(1, 500, false));
        assert_eq!(parse("500:400").unwrap(), r(400, 500, false));
        assert_eq!(parse("-1:-100").unwrap(), r(1, 100, true));
        assert_eq!(parse("-500:-400").unwrap(), r(400, 500, true));
        assert_eq!(parse("4294967295:1").unwrap(), r(1, u32::MAX, false));
        for bad in [
            "0:5",
            "1:0",
            "1:*",
            "*:1",
            "-1:5",
            "1:-5",
            "5",
            "-5",
            "\"1:5\"",
            "1:4294967296",
            "-0:-1",
            "",
            "1:",
            ":1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn positions_count_from_either_end() {
        let hits = [5, 7, 9, 10, 11, 20];
        let sel = |s: &str| parse(s).unwrap().select(&hits).to_vec();
        assert_eq!(sel("2:4"), [7, 9, 10]);
        assert_eq!(sel("-1:-2"), [11, 20]);
        assert_eq!(sel("5:10"), [11, 20]);
        assert_eq!(sel("7:9"), [0; 0]);
        assert_eq!(sel("-10:-7"), [0; 0]);
        assert_eq!(sel("-10:-6"), [5]);
        assert_eq!(sel("1:4294967295"), hits);
        assert_eq!(sel("-1:-4294967295"), hits);
        let none: [u32; 0] = [];
        assert!(parse("1:3").unwrap().select(&none).is_empty());
        assert!(parse("-1:-3").unwrap().select(&none).is_empty());
        let mut out = Vec::new();
        parse("-5:-3").unwrap().write(&mut out);
        assert_eq!(out, b"-3:-5");
    }
}
