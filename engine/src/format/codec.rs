//! Bounded little-endian reading and writing of record payloads.
//!
//! Every read is checked against the remaining input, and lengths read from disk are capped
//! by the limits in [`super::names`] before anything is allocated.

use crate::error::FormatError;

/// Appends little-endian values to a byte vector.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out }
    }
    pub fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }
    /// A u32 length, then the bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        // Callers check sizes against the format limits before encoding, so this fits.
        self.u32(v.len() as u32);
        self.out.extend_from_slice(v);
    }
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    pub fn raw(&mut self, v: &[u8]) {
        self.out.extend_from_slice(v);
    }
}

/// Reads little-endian values from a byte slice; every method fails cleanly on short input.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.remaining() < n {
            return Err(FormatError::Truncated {
                at: self.pos,
                wanted: n,
                available: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, FormatError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A u32 length no larger than `max`, then that many bytes.
    pub fn bytes(&mut self, max: u32) -> Result<&'a [u8], FormatError> {
        let at = self.pos;
        let len = self.u32()?;
        if len > max {
            return Err(FormatError::TooLarge {
                at,
                len: len as u64,
                max: max as u64,
            });
        }
        self.take(len as usize)
    }

    pub fn string(&mut self, max: u32) -> Result<String, FormatError> {
        let at = self.pos;
        let b = self.bytes(max)?;
        String::from_utf8(b.to_vec()).map_err(|_| FormatError::InvalidUtf8 { at })
    }

    /// A u32 item count, capped so a corrupt count cannot make us allocate without bound.
    pub fn count(&mut self, per_item: usize) -> Result<usize, FormatError> {
        let at = self.pos;
        let n = self.u32()?;
        // Each item takes at least `per_item` bytes, so a count the input cannot hold is
        // corruption; this bounds every allocation by the input's size.
        if n > crate::format::names::MAX_RECORD_ITEMS
            || (n as usize).saturating_mul(per_item.max(1)) > self.remaining()
        {
            return Err(FormatError::TooLarge {
                at,
                len: n as u64,
                max: (self.remaining() / per_item.max(1)) as u64,
            });
        }
        Ok(n as usize)
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), FormatError> {
        if self.remaining() != 0 {
            return Err(FormatError::TrailingBytes {
                at: self.pos,
                count: self.remaining(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let mut v = Vec::new();
        let mut w = Writer::new(&mut v);
        w.u8(7);
        w.u32(0xdead_beef);
        w.i64(-5);
        w.str("INBOX");
        let mut r = Reader::new(&v);
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u32().unwrap(), 0xdead_beef);
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.string(10).unwrap(), "INBOX");
        r.finish().unwrap();
        assert!(matches!(
            Reader::new(&v[..3]).u32(),
            Err(FormatError::Truncated { .. })
        ));
        let mut r = Reader::new(&v[5..]);
        r.i64().unwrap();
        assert!(matches!(r.string(2), Err(FormatError::TooLarge { .. })));
    }

    #[test]
    fn count_cannot_exceed_input() {
        let mut v = Vec::new();
        Writer::new(&mut v).u32(1_000_000);
        assert!(Reader::new(&v).count(4).is_err());
    }
}
