//! NOTIFY (RFC 5465): which events of which mailboxes a client asks to hear of.
//!
//! ```text
//! notify       = "NOTIFY" SP (notify-set / notify-none)
//! notify-set   = "SET" [SP "STATUS"] SP event-group *(SP event-group)
//! event-group  = "(" filter-mailboxes SP events ")"
//! filter-mailboxes = "selected" / "selected-delayed" / "inboxes" / "personal" /
//!                    "subscribed" / "subtree" SP one-or-more-mailbox /
//!                    "mailboxes" SP one-or-more-mailbox
//! events       = "(" event *(SP event) ")" / "NONE"
//! message-event = "MessageNew" [SP "(" fetch-att *(SP fetch-att) ")"] /
//!                 "MessageExpunge" / "FlagChange" / "AnnotationChange"
//! mailbox-event = "MailboxName" / "SubscriptionChange" / "MailboxMetadataChange"
//! user-event   = "ServerMetadataChange"
//! ```

use super::command::{FetchAttr, P, R};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    Selected,
    SelectedDelayed,
    Inboxes,
    Personal,
    Subscribed,
    Subtree(Vec<String>),
    Mailboxes(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// With the attributes to FETCH for a new message in the selected mailbox.
    MessageNew(Vec<FetchAttr>),
    MessageExpunge,
    FlagChange,
    AnnotationChange,
    MailboxName,
    SubscriptionChange,
    MailboxMetadataChange,
    ServerMetadataChange,
    /// An event this server does not know (RFC 5465 asks for NO [BADEVENT], not BAD).
    Other(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub filter: Filter,
    pub events: Vec<Event>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notify {
    None,
    Set { status: bool, groups: Vec<Group> },
}

/// The events this server sends, for `[BADEVENT (...)]` (which lists all it supports).
pub const SUPPORTED: &str = "MessageNew MessageExpunge FlagChange MailboxName \
    SubscriptionChange MailboxMetadataChange ServerMetadataChange";

fn mailboxes(p: &mut P) -> R<Vec<String>> {
    if p.eat(b'(') {
        let mut v = vec![p.mailbox()?];
        while !p.eat(b')') {
            p.sp()?;
            v.push(p.mailbox()?);
        }
        Ok(v)
    } else {
        Ok(vec![p.mailbox()?])
    }
}

fn group(p: &mut P) -> R<Group> {
    if !p.eat(b'(') {
        return p.err("an event group is a list");
    }
    let filter = match p.atom()?.to_ascii_lowercase().as_str() {
        "selected" => Filter::Selected,
        "selected-delayed" => Filter::SelectedDelayed,
        "inboxes" => Filter::Inboxes,
        "personal" => Filter::Personal,
        "subscribed" => Filter::Subscribed,
        "subtree" => {
            p.sp()?;
            Filter::Subtree(mailboxes(p)?)
        }
        "mailboxes" => {
            p.sp()?;
            Filter::Mailboxes(mailboxes(p)?)
        }
        f => return p.err(format!("unknown mailbox filter {f}")),
    };
    p.sp()?;
    let mut events = Vec::new();
    if !p.eat(b'(') {
        if !p.atom()?.eq_ignore_ascii_case("NONE") {
            return p.err("events are a list or NONE");
        }
    } else {
        loop {
            let name = p.atom()?;
            events.push(match name.to_ascii_lowercase().as_str() {
                "messagenew" => {
                    let atts = if p.peek() == Some(b' ') && p.b.get(p.i + 1) == Some(&b'(') {
                        p.i += 1;
                        p.fetch_atts()?
                    } else {
                        Vec::new()
                    };
                    Event::MessageNew(atts)
                }
                "messageexpunge" => Event::MessageExpunge,
                "flagchange" => Event::FlagChange,
                "annotationchange" => Event::AnnotationChange,
                "mailboxname" => Event::MailboxName,
                "subscriptionchange" => Event::SubscriptionChange,
                "mailboxmetadatachange" => Event::MailboxMetadataChange,
                "servermetadatachange" => Event::ServerMetadataChange,
                _ => Event::Other(name),
            });
            if p.eat(b')') {
                break;
            }
            p.sp()?;
        }
    }
    if !p.eat(b')') {
        return p.err("unterminated event group");
    }
    let g = Group { filter, events };
    check(p, &g)?;
    Ok(g)
}

/// RFC 5465 section 5: MessageNew and MessageExpunge go together, FlagChange and
/// AnnotationChange need both; FETCH attributes only for the selected mailbox; message
/// events only for the selected mailbox or mailbox filters. Each breach is BAD.
fn check(p: &P, g: &Group) -> R<()> {
    let has = |f: &dyn Fn(&Event) -> bool| g.events.iter().any(f);
    let new = has(&|e| matches!(e, Event::MessageNew(_)));
    let expunge = has(&|e| *e == Event::MessageExpunge);
    let flags = has(&|e| matches!(e, Event::FlagChange | Event::AnnotationChange));
    if new != expunge || (flags && !new) {
        return p.err("MessageNew and MessageExpunge go together, and FlagChange needs both");
    }
    let selected = matches!(g.filter, Filter::Selected | Filter::SelectedDelayed);
    let atts = has(&|e| matches!(e, Event::MessageNew(a) if !a.is_empty()));
    if atts && !selected {
        return p.err("FETCH attributes of MessageNew are for the selected mailbox only");
    }
    let mailbox_events = has(&|e| {
        matches!(
            e,
            Event::MailboxName | Event::SubscriptionChange | Event::MailboxMetadataChange
        )
    });
    if selected && mailbox_events {
        return p.err("the selected mailbox takes message events only");
    }
    Ok(())
}

/// Called after `NOTIFY `; stops at the CRLF.
pub(crate) fn parse(p: &mut P) -> R<Notify> {
    let word = p.atom()?.to_ascii_uppercase();
    match word.as_str() {
        "NONE" => Ok(Notify::None),
        "SET" => {
            p.sp()?;
            let save = p.i;
            let status = p.atom().is_ok_and(|a| a.eq_ignore_ascii_case("STATUS"));
            if status {
                p.sp()?;
            } else {
                p.i = save;
            }
            let mut groups = vec![group(p)?];
            while p.eat(b' ') {
                groups.push(group(p)?);
            }
            let selected = groups
                .iter()
                .filter(|g| matches!(g.filter, Filter::Selected | Filter::SelectedDelayed))
                .count();
            if selected > 1 {
                return p.err("one selected or selected-delayed group at most");
            }
            Ok(Notify::Set { status, groups })
        }
        _ => p.err("NOTIFY SET or NOTIFY NONE"),
    }
}

/// Whether `filter` names the (not selected) mailbox `name`. `subscribed`: the account's
/// subscriptions. Names are compared as the store keeps them (INBOX in capitals).
pub fn covers(filter: &Filter, name: &str, subscribed: &dyn Fn(&str) -> bool) -> bool {
    match filter {
        Filter::Selected | Filter::SelectedDelayed => false,
        // Every mailbox of an account here is personal, and mail is delivered to INBOX
        // only; RFC 5465 lets `inboxes` be `personal` where it is hard to say more.
        Filter::Inboxes | Filter::Personal => true,
        Filter::Subscribed => subscribed(name),
        Filter::Subtree(roots) => roots.iter().any(|r| {
            let r = r.trim_end_matches('/');
            same(name, r)
                || name
                    .strip_prefix(r)
                    .is_some_and(|rest| rest.starts_with('/'))
        }),
        Filter::Mailboxes(names) => names.iter().any(|n| same(name, n)),
    }
}

fn same(a: &str, b: &str) -> bool {
    a == b || (a.eq_ignore_ascii_case("INBOX") && b.eq_ignore_ascii_case("INBOX"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> R<Notify> {
        let b = format!("{s}\r\n");
        let mut p = P::new(b.as_bytes());
        let n = parse(&mut p)?;
        p.end()?;
        Ok(n)
    }

    #[test]
    fn notify_grammar() {
        assert_eq!(parse_str("NONE").unwrap(), Notify::None);
        let n = parse_str(
            "SET STATUS (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS (From To)]) MessageExpunge FlagChange)) (subtree (Lists \"Other\") (MessageNew MessageExpunge)) (personal (MailboxName SubscriptionChange)) (inboxes NONE)",
        )
        .unwrap();
        let Notify::Set { status, groups } = n else {
            panic!()
        };
        assert!(status);
        assert_eq!(groups.len(), 4);
        assert!(matches!(&groups[0].events[0], Event::MessageNew(a) if a.len() == 2));
        assert_eq!(
            groups[1].filter,
            Filter::Subtree(vec!["Lists".into(), "Other".into()])
        );
        assert!(groups[3].events.is_empty());
        let n = parse_str("set (mailboxes INBOX (messagenew messageexpunge XFoo))").unwrap();
        let Notify::Set { groups, .. } = n else {
            panic!()
        };
        assert_eq!(groups[0].events[2], Event::Other("XFoo".into()));
        for bad in [
            "SET",
            "SET (personal (MessageNew))",
            "SET (personal (FlagChange))",
            "SET (personal (MessageNew (UID) MessageExpunge))",
            "SET (selected (MailboxName))",
            "SET (selected NONE) (selected-delayed NONE)",
            "SET (nowhere NONE)",
            "SET (personal NONE",
            "CLEAR",
        ] {
            assert!(parse_str(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_cover_mailboxes() {
        let subs = |n: &str| n == "Lists/rust";
        let sub = Filter::Subtree(vec!["Lists".into()]);
        assert!(covers(&sub, "Lists", &subs));
        assert!(covers(&sub, "Lists/rust", &subs));
        assert!(!covers(&sub, "Listsx", &subs));
        assert!(covers(&Filter::Subscribed, "Lists/rust", &subs));
        assert!(!covers(&Filter::Subscribed, "Lists", &subs));
        assert!(covers(
            &Filter::Mailboxes(vec!["inbox".into()]),
            "INBOX",
            &subs
        ));
        assert!(!covers(&Filter::Selected, "INBOX", &subs));
    }
}
