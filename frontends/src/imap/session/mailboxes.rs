//! The account's mailboxes: CREATE, DELETE, RENAME, SUBSCRIBE, LIST/LSUB, STATUS, and the
//! quota commands (RFC 9208).

use super::*;

/// The special use a CREATE asks for (RFC 6154 section 3). A mailbox here has at most one,
/// and \All and \Flagged name virtual mailboxes this store does not keep: those, several
/// at once, and attributes nobody defined are `NO [USEATTR]`, and nothing is created.
pub(super) fn create_special_use(attrs: &[String]) -> Result<SpecialUse, Failure> {
    let refuse = |why: String| Err(Failure::code(Code::UseAttr, why));
    let mut attrs: Vec<String> = attrs.iter().map(|a| a.to_ascii_lowercase()).collect();
    attrs.dedup();
    match attrs.as_slice() {
        [] => Ok(SpecialUse::None),
        [a] => match a.as_str() {
            "\\archive" => Ok(SpecialUse::Archive),
            "\\drafts" => Ok(SpecialUse::Drafts),
            "\\junk" => Ok(SpecialUse::Junk),
            "\\sent" => Ok(SpecialUse::Sent),
            "\\trash" => Ok(SpecialUse::Trash),
            "\\all" | "\\flagged" => refuse(format!(
                "{a} is a virtual mailbox, which this server does not make"
            )),
            _ => refuse(format!("{a} is not a special-use attribute")),
        },
        _ => refuse("a mailbox here has one special use at most".into()),
    }
}

/// OBJECTID's MAILBOXID (RFC 8474): the UIDVALIDITY, which a mailbox keeps for its life,
/// renames included, and which no other mailbox of the account has.
pub(super) fn mailbox_id(st: &MailboxInfo) -> String {
    format!("F{:08x}", st.uidvalidity.0)
}

impl<S: MailStore, L: Link> Session<S, L> {
    pub(super) fn quota_line(&mut self) -> Res {
        let a = self.store.account_info().map_err(no)?;
        let mut parts = Vec::new();
        if a.quota_bytes > 0 {
            parts.push(format!(
                "STORAGE {} {}",
                a.used_bytes.div_ceil(1024),
                a.quota_bytes / 1024
            ));
        }
        if a.quota_messages > 0 {
            parts.push(format!("MESSAGE {} {}", a.used_messages, a.quota_messages));
        }
        if !parts.is_empty() {
            self.line(&format!("* QUOTA \"\" ({})", parts.join(" ")));
        }
        Ok(())
    }

    pub(super) fn status_line(&self, st: &MailboxInfo, items: &[StatusItem]) -> Vec<u8> {
        let mut l = b"* STATUS ".to_vec();
        l.extend_from_slice(&self.show_name(&st.name));
        l.extend_from_slice(b" (");
        let mut first = true;
        for it in items {
            if !std::mem::take(&mut first) {
                l.push(b' ');
            }
            if *it == StatusItem::MailboxId {
                l.extend_from_slice(format!("MAILBOXID ({})", mailbox_id(st)).as_bytes());
                continue;
            }
            let (name, v) = match it {
                StatusItem::Messages => ("MESSAGES", st.messages as u64),
                StatusItem::Recent => {
                    let b = self.store.recent_boundary(st);
                    let n = self
                        .store
                        .messages(&st.name, Uid(b.saturating_add(1)))
                        .map(|v| v.len())
                        .unwrap_or(0);
                    ("RECENT", n as u64)
                }
                StatusItem::UidNext => ("UIDNEXT", st.uidnext.0 as u64),
                StatusItem::UidValidity => ("UIDVALIDITY", st.uidvalidity.0 as u64),
                StatusItem::Unseen => ("UNSEEN", st.unseen as u64),
                StatusItem::Deleted => {
                    let n = self
                        .store
                        .messages(&st.name, Uid(1))
                        .map(|v| {
                            v.iter()
                                .filter(|m| Flags(m.flags).contains(Flags::DELETED))
                                .count()
                        })
                        .unwrap_or(0);
                    ("DELETED", n as u64)
                }
                StatusItem::Size => ("SIZE", st.size),
                StatusItem::HighestModSeq => ("HIGHESTMODSEQ", st.highest_modseq.0),
                StatusItem::MailboxId => unreachable!("written above"),
            };
            l.extend_from_slice(name.as_bytes());
            l.push(b' ');
            encode::number(&mut l, v);
        }
        l.extend_from_slice(b")\r\n");
        l
    }

    pub(super) fn list(
        &mut self,
        reference: &str,
        patterns: &[String],
        lsub: bool,
        sel: list::Selection,
        rets: list::Returns,
        status: Option<&[StatusItem]>,
    ) -> Res {
        let decode = |s: &str| {
            if self.enabled.utf8 {
                Some(s.to_string())
            } else {
                mutf7::decode(s)
            }
        };
        // A reference or pattern that is not modified UTF-7 names no mailbox: nothing
        // matches it (an empty OK, as Dovecot answers).
        let Some(reference) = decode(reference) else {
            return Ok(());
        };
        if patterns.len() == 1 && patterns[0].is_empty() && !lsub {
            // The hierarchy delimiter and root (RFC 9051 section 6.3.9).
            self.line("* LIST (\\Noselect) \"/\" \"\"");
            return Ok(());
        }
        let boxes = self.store.mailboxes().map_err(no)?;
        let subs = self.store.subscriptions().unwrap_or_default();
        let pats: Vec<String> = patterns
            .iter()
            .filter_map(|p| decode(p).map(|p| format!("{reference}{p}")))
            .collect();
        let seen: Vec<list::Mailbox> = boxes
            .iter()
            .map(|b| list::Mailbox {
                name: &b.name,
                special: b.special_use.attribute(),
            })
            .collect();
        let entries = if lsub {
            list::lsub(&seen, &subs, &pats)
        } else {
            list::list(&seen, &subs, &pats, sel, rets)
        };
        for e in entries {
            let mut l = if lsub {
                b"* LSUB ".to_vec()
            } else {
                b"* LIST ".to_vec()
            };
            encode::flag_list(&mut l, e.attrs.iter().copied());
            l.extend_from_slice(b" \"/\" ");
            l.extend_from_slice(&self.show_name(&e.name));
            if e.childinfo {
                l.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            l.extend_from_slice(b"\r\n");
            if let (Some(items), true) = (status, e.exists) {
                if let Some(b) = boxes.iter().find(|b| b.name == e.name) {
                    l.extend_from_slice(&self.status_line(b, items));
                }
            }
            self.out.extend_from_slice(&l);
        }
        Ok(())
    }

    /// Whether the account may have mailbox `name` and `new` more mailboxes (with the
    /// superiors `name` needs): the limits on count, depth and name length keep one account
    /// from filling the server's memory and index (`NO [LIMIT]`).
    pub(super) fn room_for(&self, name: &str, new: usize) -> Res {
        let l = &self.cfg;
        if name.len() > l.max_mailbox_name {
            return Err(Failure::code(
                Code::Limit,
                format!("mailbox names are at most {} bytes", l.max_mailbox_name),
            ));
        }
        if name.split(DELIMITER).count() > l.max_mailbox_depth {
            return Err(Failure::code(
                Code::Limit,
                format!("mailboxes nest at most {} levels deep", l.max_mailbox_depth),
            ));
        }
        let existing = self.store.mailboxes().map_err(no)?;
        let mut missing = new;
        let mut prefix = String::new();
        for (i, seg) in name.split(DELIMITER).enumerate() {
            if i > 0 {
                prefix.push(DELIMITER);
            }
            prefix.push_str(seg);
            if prefix != name && !existing.iter().any(|m| m.name == prefix) {
                missing += 1;
            }
        }
        if existing.len() + missing > l.max_mailboxes {
            return Err(Failure::code(
                Code::Limit,
                format!("an account has at most {} mailboxes", l.max_mailboxes),
            ));
        }
        Ok(())
    }

    pub(super) async fn create(
        &mut self,
        tag: &str,
        name: String,
        special_use: Vec<String>,
    ) -> Res {
        let special_use = create_special_use(&special_use)?;
        if !self.enabled.utf8 && mutf7::decode(&name).is_none() {
            return Err(Failure::code(
                Code::Cannot,
                "the mailbox name is not modified UTF-7",
            ));
        }
        let name = self.mailbox_name(&name)?;
        self.room_for(&name, 1)?;
        // Superiors are created too (RFC 9051 section 6.3.4).
        let mut prefix = String::new();
        for (i, seg) in name.split(DELIMITER).enumerate() {
            if i > 0 {
                prefix.push(DELIMITER);
            }
            prefix.push_str(seg);
            if prefix != name && self.store.status(&prefix).is_err() {
                let _ = self.store.create_mailbox(&prefix, SpecialUse::None).await;
            }
        }
        let st = self
            .store
            .create_mailbox(&name, special_use)
            .await
            .map_err(no)?;
        let text = format!("[MAILBOXID ({})] CREATE completed", mailbox_id(&st));
        self.notify_absorb().await;
        self.ok(tag, &text).await
    }

    pub(super) async fn delete(&mut self, tag: &str, name: String) -> Res {
        let name = self.mailbox_name(&name)?;
        let uidvalidity = self.store.status(&name).map(|s| s.uidvalidity.0);
        self.store.delete_mailbox(&name).await.map_err(no)?;
        if let Ok(v) = uidvalidity {
            self.store.forget_mailbox(v);
        }
        if self.view.as_ref().is_some_and(|v| v.mailbox == name) {
            self.view = None;
            self.mark = None;
        }
        self.notify_absorb().await;
        self.ok(tag, "DELETE completed").await
    }

    pub(super) async fn rename(&mut self, tag: &str, from: String, to: String) -> Res {
        let (from, to) = (self.mailbox_name(&from)?, self.mailbox_name(&to)?);
        // The renamed mailbox's inferiors move with it, as deep below `to`.
        let below = self
            .store
            .mailboxes()
            .map_err(no)?
            .iter()
            .filter_map(|m| m.name.strip_prefix(&format!("{from}{DELIMITER}")))
            .map(|rest| rest.split(DELIMITER).count())
            .max()
            .unwrap_or(0);
        self.room_for(&to, usize::from(from == "INBOX"))?;
        let depth = to.split(DELIMITER).count() + below;
        if depth > self.cfg.max_mailbox_depth {
            return Err(Failure::code(
                Code::Limit,
                format!(
                    "mailboxes nest at most {} levels deep",
                    self.cfg.max_mailbox_depth
                ),
            ));
        }
        if from == "INBOX" {
            // RFC 9051 section 6.3.6: INBOX stays, its messages move to the new one.
            self.store
                .create_mailbox(&to, SpecialUse::None)
                .await
                .map_err(no)?;
            let uids: Vec<Uid> = self
                .store
                .messages("INBOX", Uid(1))
                .map_err(no)?
                .iter()
                .map(|m| Uid(m.uid))
                .collect();
            if !uids.is_empty() {
                self.store
                    .move_messages("INBOX", &to, &uids)
                    .await
                    .map_err(no)?;
            }
            self.notify_absorb().await;
            return self.ok(tag, "RENAME completed").await;
        }
        self.store.rename_mailbox(&from, &to).await.map_err(no)?;
        // The selected mailbox keeps being the selected one under its new name.
        if let Some(v) = self.view.as_mut().filter(|v| v.mailbox == from) {
            v.mailbox = to.clone();
        }
        self.notify_absorb().await;
        self.ok(tag, "RENAME completed").await
    }

    pub(super) async fn subscribe(&mut self, tag: &str, name: String, on: bool) -> Res {
        let name = self.mailbox_name(&name)?;
        self.store.subscribe(&name, on).await.map_err(no)?;
        self.notify_absorb().await;
        let done = if on {
            "SUBSCRIBE completed"
        } else {
            "UNSUBSCRIBE completed"
        };
        self.ok(tag, done).await
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn list_cmd(
        &mut self,
        tag: &str,
        reference: &str,
        patterns: &[String],
        lsub: bool,
        select: list::Selection,
        ret: list::Returns,
        status: Option<&[StatusItem]>,
    ) -> Res {
        self.list(reference, patterns, lsub, select, ret, status)?;
        self.ok(
            tag,
            if lsub {
                "LSUB completed"
            } else {
                "LIST completed"
            },
        )
        .await
    }

    pub(super) async fn status(&mut self, tag: &str, mailbox: &str, items: &[StatusItem]) -> Res {
        let name = self.mailbox_name(mailbox)?;
        let st = self.store.status(&name).map_err(no)?;
        let line = self.status_line(&st, items);
        self.out.extend_from_slice(&line);
        self.ok(tag, "STATUS completed").await
    }

    pub(super) async fn get_quota_root(&mut self, tag: &str, mailbox: &str) -> Res {
        let name = self.mailbox_name(mailbox)?;
        self.store.status(&name).map_err(no)?;
        let mut l = b"* QUOTAROOT ".to_vec();
        l.extend_from_slice(&self.show_name(&name));
        l.extend_from_slice(b" \"\"\r\n");
        self.out.extend_from_slice(&l);
        self.quota_line()?;
        self.ok(tag, "GETQUOTAROOT completed").await
    }

    pub(super) async fn get_quota(&mut self, tag: &str, root: &str) -> Res {
        if !root.is_empty() {
            return Err(Failure::code(Code::Nonexistent, "no such quota root"));
        }
        self.quota_line()?;
        self.ok(tag, "GETQUOTA completed").await
    }
}
