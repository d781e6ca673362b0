//! An [`EnvelopeMeta`] in one allocation: what SEARCH on headers, SORT and THREAD read of a
//! message, small enough that a shard can keep the envelopes of a mailbox of hundreds of
//! thousands of messages in memory (an `EnvelopeMeta` spends ~260 bytes on its eleven
//! `Option<String>`s and an allocation per field before any text).

use super::EnvelopeMeta;

const FIELDS: usize = 11;

/// The fields in one string; `ends[i]` is where field `i` ends, and bit `i` of `present`
/// tells an absent field from an empty one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedEnvelope {
    text: Box<str>,
    ends: [u32; FIELDS],
    present: u16,
}

impl PackedEnvelope {
    pub fn pack(e: &EnvelopeMeta) -> Self {
        let fields = [
            &e.date,
            &e.subject,
            &e.from,
            &e.sender,
            &e.reply_to,
            &e.to,
            &e.cc,
            &e.bcc,
            &e.in_reply_to,
            &e.message_id,
            &e.references,
        ];
        let len = fields
            .iter()
            .map(|f| f.as_ref().map_or(0, String::len))
            .sum();
        let mut text = String::with_capacity(len);
        let mut ends = [0u32; FIELDS];
        let mut present = 0u16;
        for (i, f) in fields.iter().enumerate() {
            if let Some(s) = f {
                text.push_str(s);
                present |= 1 << i;
            }
            // Metadata strings are at most 1 MiB each (meta.rs), so eleven fit in a u32.
            ends[i] = text.len() as u32;
        }
        Self {
            text: text.into_boxed_str(),
            ends,
            present,
        }
    }

    /// Bytes this holds, for a cache's budget: the text, the struct, and an allocation's
    /// bookkeeping.
    pub fn weight(&self) -> usize {
        self.text.len() + std::mem::size_of::<Self>() + 32
    }

    fn field(&self, i: usize) -> Option<&str> {
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.text.get(start..self.ends[i] as usize)
    }

    pub fn date(&self) -> Option<&str> {
        self.field(0)
    }
    pub fn subject(&self) -> Option<&str> {
        self.field(1)
    }
    pub fn from(&self) -> Option<&str> {
        self.field(2)
    }
    pub fn sender(&self) -> Option<&str> {
        self.field(3)
    }
    pub fn reply_to(&self) -> Option<&str> {
        self.field(4)
    }
    pub fn to(&self) -> Option<&str> {
        self.field(5)
    }
    pub fn cc(&self) -> Option<&str> {
        self.field(6)
    }
    pub fn bcc(&self) -> Option<&str> {
        self.field(7)
    }
    pub fn in_reply_to(&self) -> Option<&str> {
        self.field(8)
    }
    pub fn message_id(&self) -> Option<&str> {
        self.field(9)
    }
    pub fn references(&self) -> Option<&str> {
        self.field(10)
    }

    /// The field a header of this (lower-case) name fills, if it is one of the envelope's.
    pub fn header(&self, lower_name: &str) -> Option<&str> {
        match lower_name {
            "date" => self.date(),
            "subject" => self.subject(),
            "from" => self.from(),
            "sender" => self.sender(),
            "reply-to" => self.reply_to(),
            "to" => self.to(),
            "cc" => self.cc(),
            "bcc" => self.bcc(),
            "in-reply-to" => self.in_reply_to(),
            "message-id" => self.message_id(),
            _ => None,
        }
    }
}

impl Default for PackedEnvelope {
    fn default() -> Self {
        Self::pack(&EnvelopeMeta::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_every_field_and_tells_absent_from_empty() {
        let e = EnvelopeMeta {
            date: Some("Sun, 6 Dec 2026 12:00:00 +0000".into()),
            subject: Some(String::new()),
            from: Some("A <a@example.org>".into()),
            sender: None,
            reply_to: None,
            to: Some("b@example.org, c@example.org".into()),
            cc: None,
            bcc: Some("Grüße <d@example.org>".into()),
            in_reply_to: None,
            message_id: Some("<1@x>".into()),
            references: Some("<0@x> <1@x>".into()),
        };
        let p = PackedEnvelope::pack(&e);
        assert_eq!(p.date(), e.date.as_deref());
        assert_eq!(p.subject(), Some(""));
        assert_eq!(p.from(), e.from.as_deref());
        assert_eq!(p.sender(), None);
        assert_eq!(p.reply_to(), None);
        assert_eq!(p.to(), e.to.as_deref());
        assert_eq!(p.cc(), None);
        assert_eq!(p.bcc(), e.bcc.as_deref());
        assert_eq!(p.in_reply_to(), None);
        assert_eq!(p.message_id(), e.message_id.as_deref());
        assert_eq!(p.references(), e.references.as_deref());
        assert_eq!(p.header("bcc"), e.bcc.as_deref());
        assert_eq!(p.header("x-other"), None);
        let empty = PackedEnvelope::default();
        assert_eq!(empty.subject(), None);
        assert!(empty.weight() < 128);
    }
}
