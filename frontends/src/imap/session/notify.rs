//! NOTIFY (RFC 5465): what the client asked to hear of, and telling it.

use super::*;

/// NOTIFY's request (RFC 5465) and what the client was last told of the account.
pub(super) struct NotifyState {
    groups: Vec<crate::imap::notify::Group>,
    new_atts: Vec<crate::imap::FetchAttr>,
    known: Known,
    /// The partition's change generation when `known` was read.
    generation: u64,
}

#[derive(Default)]
pub(super) struct Known {
    /// By UIDVALIDITY, so a rename is told as one.
    mailboxes: HashMap<u32, MailboxInfo>,
    subscriptions: std::collections::BTreeSet<String>,
    /// Annotations a client can see, by mailbox UIDVALIDITY (`None`: the server's).
    annotations: HashMap<Option<u32>, ringmail_engine::Entries>,
}

impl<S: MailStore, L: Link> Session<S, L> {
    /// The account as NOTIFY follows it: mailboxes, subscriptions, and the annotations the
    /// groups watch.
    pub(super) async fn known(&self, groups: &[crate::imap::notify::Group]) -> Known {
        use crate::imap::notify::{covers, Event};
        let mut k = Known::default();
        let Ok(all) = self.store.mailboxes() else {
            return k;
        };
        k.subscriptions = self
            .store
            .subscriptions()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let visible = |e: ringmail_engine::Entries| {
            e.into_iter()
                .filter(|(n, _)| n.starts_with('/'))
                .collect::<ringmail_engine::Entries>()
        };
        for m in all {
            let watched = groups.iter().any(|g| {
                covers(&g.filter, &m.name, &|n| k.subscriptions.contains(n))
                    && g.events.contains(&Event::MailboxMetadataChange)
            });
            if watched {
                if let Ok(e) = self.store.annotations(Some(&m.name)).await {
                    k.annotations.insert(Some(m.uidvalidity.0), visible(e));
                }
            }
            k.mailboxes.insert(m.uidvalidity.0, m);
        }
        let server = groups
            .iter()
            .any(|g| g.events.contains(&Event::ServerMetadataChange));
        if server {
            if let Ok(e) = self.store.annotations(None).await {
                k.annotations.insert(None, visible(e));
            }
        }
        k
    }

    /// Takes the account as it is now as told, without telling: after this session's own
    /// change (RFC 5465 section 5: a client is not told of what it did itself).
    pub(super) async fn notify_absorb(&mut self) {
        if let Some(st) = self.notify.take() {
            let generation = self.store.change_generation();
            let known = self.known(&st.groups).await;
            self.notify = Some(NotifyState {
                known,
                generation,
                ..st
            });
        }
    }

    /// MessageNew's FETCH for messages that came into the selected mailbox since `before`
    /// (its UIDNEXT), except those this session put there.
    pub(super) async fn notify_new_messages(&mut self, before: Option<u32>) {
        let (Some(st), Some(v), Some(before)) = (&self.notify, &self.view, before) else {
            return;
        };
        if st.new_atts.is_empty() || v.uidnext <= before {
            self.own_new.clear();
            return;
        }
        let uids: Vec<u32> = v
            .messages()
            .iter()
            .map(|m| m.uid)
            .filter(|u| *u >= before && !self.own_new.contains(u))
            .collect();
        self.own_new.clear();
        if uids.is_empty() {
            return;
        }
        let set = SequenceSet::Ranges(
            uids.iter()
                .map(|&u| (crate::imap::SeqBound::Num(u), crate::imap::SeqBound::Num(u)))
                .collect(),
        );
        let atts = st.new_atts.clone();
        let _ = self.fetch_data(true, &set, &atts, None, None).await;
    }

    /// Tells the client what changed in the account since it was last told, as NOTIFY
    /// asked: STATUS for mailboxes other than the selected one, LIST for mailboxes created,
    /// deleted or renamed and for subscriptions, METADATA for annotations. With
    /// `status_now` (NOTIFY SET STATUS), STATUS for every watched mailbox first.
    pub(super) async fn notify_check(&mut self, status_now: bool) {
        use crate::imap::notify::{covers, Event};
        let Some(st) = self.notify.take() else {
            return;
        };
        // Nothing committed (nor annotated) in the partition since the last look: nothing
        // to tell, and no need to read the account again at every command.
        let generation = self.store.change_generation();
        if !status_now && generation == st.generation {
            self.notify = Some(st);
            return;
        }
        let now = self.known(&st.groups).await;
        let selected = self.view.as_ref().map(|v| v.uidvalidity);
        let condstore = self.enabled.condstore;
        let wants = |name: &str,
                     subs: &std::collections::BTreeSet<String>,
                     pick: &dyn Fn(&Event) -> bool| {
            st.groups.iter().any(|g| {
                covers(&g.filter, name, &|n| subs.contains(n)) && g.events.iter().any(pick)
            })
        };
        let message_events = |e: &Event| matches!(e, Event::MessageNew(_) | Event::MessageExpunge);
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let status_line = |this: &Self, m: &MailboxInfo, items: &str| {
            let mut l = b"* STATUS ".to_vec();
            l.extend_from_slice(&this.show_name(&m.name));
            l.extend_from_slice(format!(" ({items})\r\n").as_bytes());
            l
        };
        let full = |m: &MailboxInfo| {
            let mut s = format!(
                "MESSAGES {} UIDNEXT {} UIDVALIDITY {} UNSEEN {}",
                m.messages, m.uidnext.0, m.uidvalidity.0, m.unseen
            );
            if condstore {
                s += &format!(" HIGHESTMODSEQ {}", m.highest_modseq.0);
            }
            s
        };
        let list_line = |this: &Self, attrs: &str, name: &str, old: Option<&str>| {
            let mut l = format!("* LIST ({attrs}) \"/\" ").into_bytes();
            l.extend_from_slice(&this.show_name(name));
            if let Some(o) = old {
                l.extend_from_slice(b" (\"OLDNAME\" (");
                l.extend_from_slice(&this.show_name(o));
                l.extend_from_slice(b"))");
            }
            l.extend_from_slice(b"\r\n");
            l
        };
        let mut by_name: Vec<&MailboxInfo> = now.mailboxes.values().collect();
        by_name.sort_by(|a, b| a.name.cmp(&b.name));
        for m in by_name {
            let uv = m.uidvalidity.0;
            let subs = &now.subscriptions;
            if status_now {
                if Some(uv) != selected && wants(&m.name, subs, &message_events) {
                    lines.push(status_line(self, m, &full(m)));
                }
                continue;
            }
            match st.known.mailboxes.get(&uv) {
                None => {
                    if wants(&m.name, subs, &|e| *e == Event::MailboxName) {
                        lines.push(list_line(self, "", &m.name, None));
                    }
                }
                Some(old) if old.name != m.name => {
                    if wants(&m.name, subs, &|e| *e == Event::MailboxName)
                        || wants(&old.name, &st.known.subscriptions, &|e| {
                            *e == Event::MailboxName
                        })
                    {
                        lines.push(list_line(self, "", &m.name, Some(&old.name)));
                    }
                }
                Some(_) if Some(uv) == selected => {}
                Some(old) => {
                    let moved = old.messages != m.messages || old.uidnext != m.uidnext;
                    if moved && wants(&m.name, subs, &message_events) {
                        lines.push(status_line(self, m, &full(m)));
                    } else if old.highest_modseq != m.highest_modseq
                        && wants(&m.name, subs, &|e| *e == Event::FlagChange)
                    {
                        let items = if condstore {
                            format!(
                                "UIDVALIDITY {} HIGHESTMODSEQ {}",
                                m.uidvalidity.0, m.highest_modseq.0
                            )
                        } else {
                            format!("UNSEEN {}", m.unseen)
                        };
                        lines.push(status_line(self, m, &items));
                    }
                }
            }
            // Annotations of the mailbox that changed (removed ones included).
            if let (Some(a), Some(b)) = (
                st.known.annotations.get(&Some(uv)),
                now.annotations.get(&Some(uv)),
            ) {
                let changed: Vec<&String> = a
                    .keys()
                    .chain(b.keys())
                    .filter(|k| a.get(*k) != b.get(*k))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if !changed.is_empty() {
                    let mut l = b"* METADATA ".to_vec();
                    l.extend_from_slice(&self.show_name(&m.name));
                    for k in changed {
                        l.push(b' ');
                        encode::astring(&mut l, k.as_bytes());
                    }
                    l.extend_from_slice(b"\r\n");
                    lines.push(l);
                }
            }
        }
        if !status_now {
            let mut gone: Vec<&MailboxInfo> = st
                .known
                .mailboxes
                .iter()
                .filter(|(uv, _)| !now.mailboxes.contains_key(uv))
                .map(|(_, m)| m)
                .collect();
            gone.sort_by(|a, b| a.name.cmp(&b.name));
            for m in gone {
                if wants(&m.name, &st.known.subscriptions, &|e| {
                    *e == Event::MailboxName
                }) {
                    lines.push(list_line(self, "\\NonExistent", &m.name, None));
                }
            }
            let changed: std::collections::BTreeSet<&String> = st
                .known
                .subscriptions
                .symmetric_difference(&now.subscriptions)
                .collect();
            for name in changed {
                let either = wants(name, &now.subscriptions, &|e| {
                    *e == Event::SubscriptionChange
                }) || wants(name, &st.known.subscriptions, &|e| {
                    *e == Event::SubscriptionChange
                });
                if either {
                    let mut attrs = Vec::new();
                    if !now.mailboxes.values().any(|m| &m.name == name) {
                        attrs.push("\\NonExistent");
                    }
                    if now.subscriptions.contains(name) {
                        attrs.push("\\Subscribed");
                    }
                    lines.push(list_line(self, &attrs.join(" "), name, None));
                }
            }
            if let (Some(a), Some(b)) =
                (st.known.annotations.get(&None), now.annotations.get(&None))
            {
                let changed: std::collections::BTreeSet<&String> = a
                    .keys()
                    .chain(b.keys())
                    .filter(|k| a.get(*k) != b.get(*k))
                    .collect();
                if !changed.is_empty() {
                    let mut l = b"* METADATA \"\"".to_vec();
                    for k in changed {
                        l.push(b' ');
                        encode::astring(&mut l, k.as_bytes());
                    }
                    l.extend_from_slice(b"\r\n");
                    lines.push(l);
                }
            }
        }
        for l in lines {
            self.out.extend_from_slice(&l);
        }
        self.notify = Some(NotifyState {
            known: now,
            generation,
            ..st
        });
    }

    pub(super) async fn notify_set(
        &mut self,
        tag: &str,
        status: bool,
        mut groups: Vec<crate::imap::notify::Group>,
    ) -> Res {
        use crate::imap::notify::{Event, Filter};
        // Names as the store keeps them (modified UTF-7 decoded, INBOX in capitals).
        for g in &mut groups {
            if let Filter::Subtree(names) | Filter::Mailboxes(names) = &mut g.filter {
                for n in names.iter_mut() {
                    if let Ok(decoded) = self.mailbox_name(n) {
                        *n = decoded;
                    }
                }
            }
        }
        let unsupported = groups
            .iter()
            .flat_map(|g| &g.events)
            .any(|e| matches!(e, Event::Other(_) | Event::AnnotationChange));
        if unsupported {
            return Err(Failure::code(
                Code::BadEvent(crate::imap::notify::SUPPORTED.into()),
                "an event is not supported",
            ));
        }
        let new_atts = groups
            .iter()
            .filter(|g| {
                matches!(
                    g.filter,
                    crate::imap::notify::Filter::Selected
                        | crate::imap::notify::Filter::SelectedDelayed
                )
            })
            .flat_map(|g| &g.events)
            .find_map(|e| match e {
                Event::MessageNew(a) if !a.is_empty() => Some(a.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let mut state = NotifyState {
            groups,
            new_atts,
            known: Known::default(),
            generation: self.store.change_generation(),
        };
        state.known = self.known(&state.groups).await;
        self.notify = Some(state);
        if status {
            self.notify_check(true).await;
        }
        // An implicit NOOP (RFC 5465 section 3).
        self.ok(tag, "NOTIFY completed").await
    }
}
