//! Search contexts (RFC 5267 section 4, CONTEXT=SEARCH and CONTEXT=SORT): a SEARCH or
//! SORT with `RETURN (UPDATE)` whose result the server keeps up to date, telling the client
//! with `* ESEARCH (TAG "t") ADDTO (...)` and `REMOVEFROM (...)` as messages arrive, change
//! or go.
//!
//! The pure part: freezing a program's sequence numbers at the time of the command, and the
//! edits that turn the result the client has into the new one.

use super::command::{SeqBound, SequenceSet};
use super::encode;
use super::search::SearchKey;

/// Contexts one session may keep (RFC 5267 asks for at least one).
pub const MAX_CONTEXTS: usize = 10;

/// The program with every sequence-number set (and `$`) replaced by the UIDs it names now:
/// "message sequence numbers in the search program are evaluated when the command is
/// received" (RFC 5267 section 4.3).
pub fn freeze(keys: &[SearchKey], uids_of: &dyn Fn(&SequenceSet) -> Vec<u32>) -> Vec<SearchKey> {
    keys.iter().map(|k| freeze_key(k, uids_of)).collect()
}

fn freeze_key(k: &SearchKey, uids_of: &dyn Fn(&SequenceSet) -> Vec<u32>) -> SearchKey {
    match k {
        SearchKey::Seq(set) => SearchKey::Uid(uid_set(&uids_of(set))),
        SearchKey::Not(k) => SearchKey::Not(Box::new(freeze_key(k, uids_of))),
        SearchKey::Or(a, b) => SearchKey::Or(
            Box::new(freeze_key(a, uids_of)),
            Box::new(freeze_key(b, uids_of)),
        ),
        SearchKey::And(v) => SearchKey::And(freeze(v, uids_of)),
        other => other.clone(),
    }
}

/// Ascending UIDs as a set of ranges; an empty one matches nothing (UID 0 is never used).
fn uid_set(uids: &[u32]) -> SequenceSet {
    let mut ranges: Vec<(SeqBound, SeqBound)> = Vec::new();
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    for u in sorted {
        match ranges.last_mut() {
            Some((_, SeqBound::Num(hi))) if *hi + 1 == u => *hi = u,
            _ => ranges.push((SeqBound::Num(u), SeqBound::Num(u))),
        }
    }
    if ranges.is_empty() {
        ranges.push((SeqBound::Num(0), SeqBound::Num(0)));
    }
    SequenceSet::Ranges(ranges)
}

/// (position, id) edits to a result list, applied in order.
pub type Edits = Vec<(u32, u32)>;

/// What left and what joined a SEARCH result (both ascending).
pub fn diff_search(old: &[u32], new: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                removed.push(*a);
                i += 1;
            }
            (Some(a), None) => {
                removed.push(*a);
                i += 1;
            }
            (_, Some(b)) => {
                added.push(*b);
                j += 1;
            }
            (None, None) => break,
        }
    }
    (removed, added)
}

/// The edits that turn the sorted result `old` into `new` (the sort keys of a message never
/// change, so what stays keeps its order): removals as (position before it is removed, id),
/// applied in order; then additions as (position it will have, id), applied in order.
pub fn diff_sorted(old: &[u32], new: &[u32]) -> (Edits, Edits) {
    let new_set: std::collections::HashSet<u32> = new.iter().copied().collect();
    let old_set: std::collections::HashSet<u32> = old.iter().copied().collect();
    let mut removals = Vec::new();
    let mut kept = 0u32;
    for &id in old {
        if new_set.contains(&id) {
            kept += 1;
        } else {
            removals.push((kept + 1, id));
        }
    }
    let additions = new
        .iter()
        .enumerate()
        .filter(|(_, id)| !old_set.contains(id))
        .map(|(i, &id)| (i as u32 + 1, id))
        .collect();
    (removals, additions)
}

/// `* ESEARCH (TAG "t") [UID] <kind> (pos set pos set ...)` CRLF; consecutive ids at
/// consecutive positions are joined into one set.
pub fn write_update(out: &mut Vec<u8>, tag: &str, uid: bool, kind: &str, edits: &[(u32, u32)]) {
    if edits.is_empty() {
        return;
    }
    out.extend_from_slice(b"* ESEARCH (TAG ");
    encode::string(out, tag.as_bytes());
    out.push(b')');
    if uid {
        out.extend_from_slice(b" UID");
    }
    out.push(b' ');
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b" (");
    let mut i = 0;
    let mut first = true;
    while i < edits.len() {
        let (pos, _) = edits[i];
        let mut ids = vec![edits[i].1];
        // Additions at p, p+1, ... and removals all at p (each shifts the next into
        // place) form one run; position 0 (anywhere) runs join too.
        while let Some(&(p, id)) = edits.get(i + 1) {
            let next_pos = match kind {
                "ADDTO" if pos != 0 => pos + ids.len() as u32,
                _ => pos,
            };
            if p != next_pos {
                break;
            }
            ids.push(id);
            i += 1;
        }
        if !first {
            out.push(b' ');
        }
        first = false;
        encode::number(out, pos as u64);
        out.push(b' ');
        // In list order; ranges only where ids ascend by one (RFC 5267 section 3.2).
        out.extend_from_slice(encode::compress_set(&ids).as_bytes());
        i += 1;
    }
    out.extend_from_slice(b")\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn sequence_numbers_are_frozen_to_uids() {
        let keys = vec![
            SearchKey::Seq(SequenceSet::Ranges(vec![(
                SeqBound::Num(1),
                SeqBound::Num(2),
            )])),
            SearchKey::Not(Box::new(SearchKey::Seq(SequenceSet::Saved))),
            SearchKey::Seen,
        ];
        let frozen = freeze(&keys, &|set| match set {
            SequenceSet::Saved => vec![],
            _ => vec![10, 12, 11],
        });
        assert_eq!(
            frozen[0],
            SearchKey::Uid(SequenceSet::Ranges(vec![(
                SeqBound::Num(10),
                SeqBound::Num(12)
            )]))
        );
        assert_eq!(
            frozen[1],
            SearchKey::Not(Box::new(SearchKey::Uid(SequenceSet::Ranges(vec![(
                SeqBound::Num(0),
                SeqBound::Num(0)
            )]))))
        );
        assert_eq!(frozen[2], SearchKey::Seen);
    }

    #[test]
    fn search_edits() {
        assert_eq!(
            diff_search(&[1, 3, 5, 7], &[1, 4, 5, 8, 9]),
            (vec![3, 7], vec![4, 8, 9])
        );
        let removed: Vec<(u32, u32)> = [3, 7].iter().map(|&u| (0, u)).collect();
        assert_eq!(
            out(|o| write_update(o, "B01", true, "REMOVEFROM", &removed)),
            "* ESEARCH (TAG \"B01\") UID REMOVEFROM (0 3,7)\r\n"
        );
        let added: Vec<(u32, u32)> = [4, 8, 9].iter().map(|&u| (0, u)).collect();
        assert_eq!(
            out(|o| write_update(o, "B01", false, "ADDTO", &added)),
            "* ESEARCH (TAG \"B01\") ADDTO (0 4,8:9)\r\n"
        );
        assert_eq!(out(|o| write_update(o, "B01", true, "ADDTO", &[])), "");
    }

    /// Applying the edits as a client does gives the new list.
    #[test]
    fn sorted_edits_replay_to_the_new_result() {
        let cases: [(&[u32], &[u32]); 4] = [
            (&[5, 3, 9, 1], &[5, 9, 7, 1, 2]),
            (&[], &[4, 2]),
            (&[4, 2], &[]),
            (&[1, 2, 3, 4, 5], &[0, 1, 3, 5, 6]),
        ];
        for (old, new) in cases {
            let (rm, add) = diff_sorted(old, new);
            let mut list = old.to_vec();
            for (p, id) in &rm {
                assert_eq!(list[*p as usize - 1], *id);
                list.remove(*p as usize - 1);
            }
            for (p, id) in &add {
                list.insert(*p as usize - 1, *id);
            }
            assert_eq!(list, new, "{old:?} -> {new:?}");
        }
        let (_, add) = diff_sorted(&[9], &[5, 6, 9, 2]);
        assert_eq!(
            out(|o| write_update(o, "S", true, "ADDTO", &add)),
            "* ESEARCH (TAG \"S\") UID ADDTO (1 5:6 4 2)\r\n"
        );
        let (rm, _) = diff_sorted(&[5, 6, 7, 9], &[9]);
        assert_eq!(
            out(|o| write_update(o, "S", true, "REMOVEFROM", &rm)),
            "* ESEARCH (TAG \"S\") UID REMOVEFROM (1 5:7)\r\n"
        );
    }
}
