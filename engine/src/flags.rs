//! Message flags: the IMAP system flags and per-account keywords in one 64-bit set.
//!
//! Bits 0..8 are system flags; bit `8 + k` is keyword `k` of the account's keyword table
//! (defined by a `DefineKeyword` record), so an account can use up to 56 keywords.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u64);

impl Flags {
    pub const SEEN: Flags = Flags(1);
    pub const ANSWERED: Flags = Flags(1 << 1);
    pub const FLAGGED: Flags = Flags(1 << 2);
    pub const DELETED: Flags = Flags(1 << 3);
    pub const DRAFT: Flags = Flags(1 << 4);
    /// Mask of the bits reserved for system flags.
    pub const SYSTEM_MASK: u64 = 0xff;
    pub const KEYWORD_BASE: u32 = 8;
    pub const MAX_KEYWORDS: usize = 56;

    pub const fn empty() -> Self {
        Flags(0)
    }
    pub fn keyword(index: u8) -> Self {
        debug_assert!((index as usize) < Self::MAX_KEYWORDS);
        Flags(1 << (Self::KEYWORD_BASE + index as u32))
    }
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
    pub fn minus(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Indexes of the keywords set.
    pub fn keywords(self) -> impl Iterator<Item = u8> {
        (0..Self::MAX_KEYWORDS as u8).filter(move |k| self.contains(Flags::keyword(*k)))
    }

    /// The IMAP spelling of a system flag, if `name` is one.
    pub fn system(name: &str) -> Option<Flags> {
        Some(match name.to_ascii_lowercase().as_str() {
            "\\seen" => Self::SEEN,
            "\\answered" => Self::ANSWERED,
            "\\flagged" => Self::FLAGGED,
            "\\deleted" => Self::DELETED,
            "\\draft" => Self::DRAFT,
            _ => return None,
        })
    }

    pub fn system_names(self) -> impl Iterator<Item = &'static str> {
        [
            (Self::SEEN, "\\Seen"),
            (Self::ANSWERED, "\\Answered"),
            (Self::FLAGGED, "\\Flagged"),
            (Self::DELETED, "\\Deleted"),
            (Self::DRAFT, "\\Draft"),
        ]
        .into_iter()
        .filter(move |(f, _)| self.contains(*f))
        .map(|(_, n)| n)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut l = f.debug_list();
        for n in self.system_names() {
            l.entry(&n);
        }
        for k in self.keywords() {
            l.entry(&format_args!("kw{k}"));
        }
        l.finish()
    }
}

/// How a STORE changes flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagOp {
    Add,
    Remove,
    Replace,
}

impl FlagOp {
    pub fn apply(self, old: Flags, arg: Flags) -> Flags {
        match self {
            FlagOp::Add => old.union(arg),
            FlagOp::Remove => old.minus(arg),
            FlagOp::Replace => arg,
        }
    }
}

/// RFC 6154 special-use attributes, as stored in a mailbox record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum SpecialUse {
    #[default]
    None = 0,
    All = 1,
    Archive = 2,
    Drafts = 3,
    Flagged = 4,
    Junk = 5,
    Sent = 6,
    Trash = 7,
}

impl SpecialUse {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::None,
            1 => Self::All,
            2 => Self::Archive,
            3 => Self::Drafts,
            4 => Self::Flagged,
            5 => Self::Junk,
            6 => Self::Sent,
            7 => Self::Trash,
            _ => return None,
        })
    }

    /// The RFC 6154 attribute, e.g. `\Sent`.
    pub fn attribute(self) -> Option<&'static str> {
        Some(match self {
            Self::None => return None,
            Self::All => "\\All",
            Self::Archive => "\\Archive",
            Self::Drafts => "\\Drafts",
            Self::Flagged => "\\Flagged",
            Self::Junk => "\\Junk",
            Self::Sent => "\\Sent",
            Self::Trash => "\\Trash",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops() {
        let f = Flags::SEEN.union(Flags::keyword(3));
        assert!(f.contains(Flags::SEEN));
        assert_eq!(f.keywords().collect::<Vec<_>>(), vec![3]);
        assert_eq!(FlagOp::Remove.apply(f, Flags::SEEN), Flags::keyword(3));
        assert_eq!(FlagOp::Replace.apply(f, Flags::DRAFT), Flags::DRAFT);
        assert_eq!(Flags::system("\\SEEN"), Some(Flags::SEEN));
        assert_eq!(format!("{f:?}"), "[\"\\\\Seen\", kw3]");
    }
}
