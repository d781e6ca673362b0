//! LIST and LSUB (RFC 9051 section 6.3.9, RFC 3501 section 6.3.9, LIST-EXTENDED RFC 5258,
//! SPECIAL-USE RFC 6154): which names a command returns, with which attributes, from the
//! account's mailboxes and subscriptions. Pure: the server writes the lines.

/// The hierarchy delimiter.
pub const DELIMITER: char = '/';

/// LIST-EXTENDED selection options (RFC 5258 section 3.1, RFC 6154 section 3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub subscribed: bool,
    pub remote: bool,
    pub recursive_match: bool,
    pub special_use: bool,
}

/// LIST-EXTENDED return options (RFC 5258 section 3.2); STATUS (RFC 5819) is the
/// caller's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Returns {
    pub subscribed: bool,
    pub children: bool,
    pub special_use: bool,
}

impl Selection {
    /// From the options (upper-case). Unknown ones, or RECURSIVEMATCH with nothing to
    /// recurse for, are errors: `BAD` (RFC 5258 section 3.1).
    pub fn parse(opts: &[String]) -> Result<Self, String> {
        let mut s = Selection::default();
        for o in opts {
            match o.as_str() {
                "SUBSCRIBED" => s.subscribed = true,
                "REMOTE" => s.remote = true,
                "RECURSIVEMATCH" => s.recursive_match = true,
                "SPECIAL-USE" => s.special_use = true,
                other => return Err(format!("unknown LIST selection option {other}")),
            }
        }
        if s.recursive_match && !s.subscribed && !s.special_use {
            return Err("RECURSIVEMATCH needs another selection option".into());
        }
        Ok(s)
    }
}

impl Returns {
    pub fn parse(opts: &[String]) -> Result<Self, String> {
        let mut r = Returns::default();
        for o in opts {
            match o.as_str() {
                "SUBSCRIBED" => r.subscribed = true,
                "CHILDREN" => r.children = true,
                "SPECIAL-USE" => r.special_use = true,
                other => return Err(format!("unknown LIST return option {other}")),
            }
        }
        Ok(r)
    }
}

/// A mailbox as LIST sees it.
#[derive(Clone, Copy, Debug)]
pub struct Mailbox<'a> {
    pub name: &'a str,
    /// Its SPECIAL-USE attribute (`\\Sent`, ...), if any.
    pub special: Option<&'static str>,
}

/// One `* LIST` or `* LSUB` response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub attrs: Vec<&'static str>,
    /// `("CHILDINFO" ("SUBSCRIBED"))`: a descendant meets the selection (RECURSIVEMATCH).
    pub childinfo: bool,
    /// The mailbox exists (STATUS can be returned for it).
    pub exists: bool,
}

fn is_below(name: &str, parent: &str) -> bool {
    name.len() > parent.len()
        && name.starts_with(parent)
        && name[parent.len()..].starts_with(DELIMITER)
}

/// The superiors of `name`: `a`, `a/b` for `a/b/c`.
fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices(DELIMITER).map(move |(i, _)| &name[..i])
}

/// LIST with the given patterns (the reference already put in front of each).
pub fn list(
    boxes: &[Mailbox<'_>],
    subs: &[String],
    patterns: &[String],
    sel: Selection,
    ret: Returns,
) -> Vec<Entry> {
    let matches = |n: &str| patterns.iter().any(|p| list_match(p, n));
    let mailbox = |n: &str| boxes.iter().find(|b| b.name == n);
    let has_children = |n: &str| boxes.iter().any(|c| is_below(c.name, n));
    let subscribed = |n: &str| subs.iter().any(|s| s == n);
    let attrs_of = |n: &str| -> Vec<&'static str> {
        let mut a = Vec::new();
        match mailbox(n) {
            Some(b) => {
                a.push(if has_children(n) {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
                a.extend(b.special);
            }
            None => {
                a.push("\\NonExistent");
                if has_children(n) {
                    a.push("\\HasChildren");
                }
            }
        }
        a
    };
    let mut out = Vec::new();
    if sel.subscribed {
        // Subscriptions, whether their mailbox exists or not; with RECURSIVEMATCH also the
        // superiors of a subscription, said with CHILDINFO.
        let mut names: Vec<&str> = subs.iter().map(String::as_str).collect();
        if sel.recursive_match {
            names.extend(subs.iter().flat_map(|s| ancestors(s)));
        }
        names.sort_unstable();
        names.dedup();
        for n in names {
            if !matches(n) {
                continue;
            }
            let own = subscribed(n);
            let childinfo = sel.recursive_match && subs.iter().any(|s| is_below(s, n));
            if !own && !childinfo {
                continue;
            }
            if sel.special_use && mailbox(n).is_none_or(|b| b.special.is_none()) {
                continue;
            }
            let mut attrs = attrs_of(n);
            if own {
                attrs.push("\\Subscribed");
            }
            out.push(Entry {
                name: n.to_string(),
                attrs,
                childinfo,
                exists: mailbox(n).is_some(),
            });
        }
        return out;
    }
    for b in boxes {
        if !matches(b.name) || (sel.special_use && b.special.is_none()) {
            continue;
        }
        let mut attrs = attrs_of(b.name);
        if ret.subscribed && subscribed(b.name) {
            attrs.push("\\Subscribed");
        }
        out.push(Entry {
            name: b.name.to_string(),
            attrs,
            childinfo: false,
            exists: true,
        });
    }
    out
}

/// LSUB (RFC 3501 section 6.3.9): the subscriptions that match, whether their mailbox
/// exists or not (`\\Noselect` if not), and, where `%` hides a subscribed mailbox below a
/// level that is not subscribed itself, that level as `\\Noselect`.
pub fn lsub(boxes: &[Mailbox<'_>], subs: &[String], patterns: &[String]) -> Vec<Entry> {
    let matches = |n: &str| patterns.iter().any(|p| list_match(p, n));
    let exists = |n: &str| boxes.iter().any(|b| b.name == n);
    let mut out: Vec<Entry> = Vec::new();
    let mut sorted: Vec<&String> = subs.iter().collect();
    sorted.sort();
    for s in sorted {
        if matches(s) {
            out.push(Entry {
                name: s.clone(),
                attrs: if exists(s) {
                    vec![]
                } else {
                    vec!["\\Noselect"]
                },
                childinfo: false,
                exists: exists(s),
            });
            continue;
        }
        for a in ancestors(s) {
            if matches(a) && !subs.iter().any(|x| x == a) && !out.iter().any(|e| e.name == a) {
                out.push(Entry {
                    name: a.to_string(),
                    attrs: vec!["\\Noselect"],
                    childinfo: false,
                    exists: exists(a),
                });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Whether `name` matches a LIST pattern: `*` matches anything, `%` anything but the
/// hierarchy delimiter.
pub fn list_match(pattern: &str, name: &str) -> bool {
    // INBOX matches whatever the case of its letters in the pattern.
    let p: Vec<char> = match pattern.get(..5) {
        Some(head) if name == "INBOX" && head.eq_ignore_ascii_case("INBOX") => {
            "INBOX".chars().chain(pattern[5..].chars()).collect()
        }
        _ => pattern.chars().collect(),
    };
    let n: Vec<char> = name.chars().collect();
    // Dynamic programming over (pattern position, name position): O(|p| * |n|) whatever
    // the wildcards, so no pattern can make it backtrack without end.
    // row[j]: the pattern so far matches the first j characters of the name.
    let mut row = vec![false; n.len() + 1];
    row[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' => {
                let mut any = false;
                for j in 0..=n.len() {
                    any |= row[j];
                    next[j] = any;
                }
            }
            '%' => {
                let mut any = false;
                for j in 0..=n.len() {
                    any |= row[j];
                    next[j] = any;
                    // `%` does not cross the hierarchy delimiter.
                    if j < n.len() && n[j] == DELIMITER {
                        any = false;
                    }
                }
            }
            c => {
                for j in 1..=n.len() {
                    next[j] = row[j - 1] && n[j - 1] == c;
                }
            }
        }
        row = next;
    }
    row[n.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_patterns() {
        assert!(list_match("*", "a/b/c"));
        assert!(list_match("%", "Sent"));
        assert!(!list_match("%", "a/b"));
        assert!(list_match("a/%", "a/b"));
        assert!(list_match("inbox", "INBOX"));
        assert!(list_match("S*", "Sent"));
        assert!(!list_match("S*", "Trash"));
        assert!(list_match("%/%", "a/b"));
        assert!(!list_match("%", "a/"));
        assert!(list_match("a%", "abc"));
        assert!(list_match("INBOX*", "INBOX"));
        assert!(!list_match("Entw&APw-rfe", "INBOX"));
        // No backtracking blow-up: a long name and many stars answer at once.
        let long = "a".repeat(4000);
        assert!(!list_match("********b", &long));
        assert!(list_match("*a*a*a*a*a*a*a*a", &long));
    }

    fn boxes<'a>(names: &[&'a str]) -> Vec<Mailbox<'a>> {
        names
            .iter()
            .map(|&name| Mailbox {
                name,
                special: (name == "Sent").then_some("\\Sent"),
            })
            .collect()
    }

    fn names(e: &[Entry]) -> Vec<String> {
        e.iter()
            .map(|e| {
                format!(
                    "{} {}{}",
                    e.name,
                    e.attrs.join(" "),
                    if e.childinfo { " +childinfo" } else { "" }
                )
            })
            .collect()
    }

    #[test]
    fn unknown_options_are_bad() {
        assert!(Selection::parse(&["NOSUCH".into()]).is_err());
        assert!(Returns::parse(&["NOSUCH".into()]).is_err());
        assert!(Selection::parse(&["RECURSIVEMATCH".into()]).is_err());
        assert!(Selection::parse(&["SUBSCRIBED".into(), "RECURSIVEMATCH".into()]).is_ok());
    }

    #[test]
    fn subscribed_lists_deleted_subscriptions_and_childinfo() {
        let b = boxes(&["INBOX", "Sent", "a", "a/b"]);
        let subs: Vec<String> = vec!["INBOX".into(), "a/b".into(), "gone".into()];
        let all = vec!["*".to_string()];
        let sel = Selection {
            subscribed: true,
            ..Default::default()
        };
        assert_eq!(
            names(&list(&b, &subs, &all, sel, Returns::default())),
            [
                "INBOX \\HasNoChildren \\Subscribed",
                "a/b \\HasNoChildren \\Subscribed",
                "gone \\NonExistent \\Subscribed"
            ]
        );
        let sel = Selection {
            subscribed: true,
            recursive_match: true,
            ..Default::default()
        };
        let top = vec!["%".to_string()];
        assert_eq!(
            names(&list(&b, &subs, &top, sel, Returns::default())),
            [
                "INBOX \\HasNoChildren \\Subscribed",
                "a \\HasChildren +childinfo",
                "gone \\NonExistent \\Subscribed"
            ]
        );
    }

    #[test]
    fn lsub_shows_hidden_parents_and_missing_mailboxes() {
        let b = boxes(&["INBOX", "a", "a/b"]);
        let subs: Vec<String> = vec!["a/b".into(), "gone".into()];
        assert_eq!(
            names(&lsub(&b, &subs, &["%".to_string()])),
            ["a \\Noselect", "gone \\Noselect"]
        );
        assert_eq!(
            names(&lsub(&b, &subs, &["*".to_string()])),
            ["a/b ", "gone \\Noselect"]
        );
    }
}
