//! Changing messages: APPEND (with CATENATE's parts made by `urls.rs`), STORE, COPY,
//! MOVE and EXPUNGE.

use super::*;

impl<S: MailStore, L: Link> Session<S, L> {
    pub(super) fn parse_flags(flags: &[String]) -> Result<(Flags, Vec<String>), Failure> {
        let mut sys = Flags::empty();
        let mut kws = Vec::new();
        for f in flags {
            if let Some(s) = Flags::system(f) {
                sys = sys.union(s);
            } else if f.starts_with('\\') {
                if f.eq_ignore_ascii_case("\\Recent") {
                    continue;
                }
                return Err(Failure::bad(format!("unknown system flag {f}")));
            } else {
                kws.push(f.clone());
            }
        }
        Ok((sys, kws))
    }

    pub(super) async fn append(
        &mut self,
        tag: &str,
        mailbox: &str,
        messages: Vec<AppendMessage>,
    ) -> Res {
        let name = self.mailbox_name(mailbox)?;
        let st = match self.store.status(&name) {
            Ok(st) => st,
            Err(e) if e.store() == Some(&StoreError::NoSuchMailbox) => {
                return Err(Failure::code(Code::TryCreate, "no such mailbox"))
            }
            Err(e) => return Err(no(e)),
        };
        let limit = self.cfg.max_message_size;
        let mut prepared = Vec::with_capacity(messages.len());
        for m in messages {
            let message = match m.message {
                AppendData::Literal(b) => b,
                AppendData::Catenate(parts) => self.catenate(parts, limit).await?,
            };
            if message.len() as u64 > limit {
                return Err(Failure::code(
                    Code::TooBig,
                    format!("message larger than {limit} bytes"),
                ));
            }
            let date = match &m.date {
                Some(d) => Some(datetime::parse(d).ok_or(Failure::bad("invalid date-time"))?),
                None => None,
            };
            let (flags, keywords) = Self::parse_flags(&m.flags)?;
            // NUL octets (literal8): their parts are stored base64 (see `mime::binary`).
            let body = crate::mime::binary::without_nul(&message).unwrap_or(message);
            let meta = MessageMeta::parse(&body).encode();
            prepared.push(NewMessage {
                body,
                meta,
                flags,
                keywords,
                internal_date: date,
            });
        }
        // MULTIAPPEND stores all or none (RFC 3502): on a failure, the ones stored are
        // expunged again.
        let mut uids = Vec::new();
        for m in &prepared {
            match self.store.append(&name, m).await {
                Ok(a) => uids.push(a.uid.0),
                Err(e) => {
                    if !uids.is_empty() {
                        let done: Vec<Uid> = uids.iter().map(|&u| Uid(u)).collect();
                        let _ = self.store.expunge(&name, Some(&done)).await;
                    }
                    return Err(no(e));
                }
            }
        }
        // What this session did itself is not notified (RFC 5465 section 5).
        if self.view.as_ref().is_some_and(|v| v.mailbox == name) {
            self.own_new.extend(uids.iter().copied());
        }
        self.notify_absorb().await;
        self.sync(true).await;
        self.line(&format!(
            "{tag} OK [APPENDUID {} {}] APPEND completed",
            st.uidvalidity.0,
            compress_set(&uids)
        ));
        Ok(())
    }

    pub(super) async fn expunge(&mut self, tag: &str, uids: Option<SequenceSet>) -> Res {
        let v = self.view();
        if v.readonly {
            return Err(Failure::code(Code::ReadOnly, "mailbox is read-only"));
        }
        let mailbox = v.mailbox.clone();
        let only: Option<Vec<Uid>> = match &uids {
            Some(set) => {
                // The flags as stored now, not as this session last saw them: another
                // session may have taken \Deleted off meanwhile. Nothing awaits between
                // this read and the expunge's plan, so it cannot change in between.
                let named: HashSet<u32> = self
                    .resolve(set, true)?
                    .into_iter()
                    .map(|(_, m)| m.uid)
                    .collect();
                let deleted: Vec<Uid> = self
                    .store
                    .messages(&mailbox, Uid(1))
                    .map_err(no)?
                    .into_iter()
                    .filter(|m| named.contains(&m.uid) && Flags(m.flags).contains(Flags::DELETED))
                    .map(|m| Uid(m.uid))
                    .collect();
                Some(deleted)
            }
            None => None,
        };
        if only.as_ref().is_some_and(|v| v.is_empty()) {
            return self.ok(tag, "EXPUNGE completed").await;
        }
        self.store
            .expunge(&mailbox, only.as_deref())
            .await
            .map_err(no)?;
        self.ok(tag, "EXPUNGE completed").await
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn store(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SequenceSet,
        op: StoreOp,
        silent: bool,
        flags: &[String],
        unchanged_since: Option<u64>,
    ) -> Res {
        if self.view().readonly {
            return Err(Failure::code(Code::ReadOnly, "mailbox is read-only"));
        }
        if unchanged_since.is_some() {
            self.enable_condstore();
        }
        let (sys, kws) = Self::parse_flags(flags)?;
        let targets = self.resolve(set, uid)?;
        let mailbox = self.view().mailbox.clone();
        let uids: Vec<Uid> = targets
            .iter()
            .filter(|(_, m)| !self.view().is_gone(m.uid))
            .map(|(_, m)| Uid(m.uid))
            .collect();
        let op = match op {
            StoreOp::Add => FlagOp::Add,
            StoreOp::Remove => FlagOp::Remove,
            StoreOp::Replace => FlagOp::Replace,
        };
        let r = self
            .store
            .store(&mailbox, &uids, op, sys, &kws, unchanged_since)
            .await
            .map_err(no)?;
        self.refresh_keywords();
        let condstore = self.enabled.condstore;
        let rev2 = self.enabled.rev2;
        let view = self.view.as_mut().expect("selected");
        view.set_flags_sorted(r.changed.iter().map(msg_of));
        if let (Some(previous), Some(c)) = (r.previous_change, r.changed.first()) {
            view.caught_up(previous.0, c.modseq.0);
        }
        // `changed` and `modified` are in UID order, as `targets` is.
        let (mut changed_at, mut modified_at) = (0, 0);
        // Report the flags of every message named (changed or not), unless .SILENT; with
        // CONDSTORE, .SILENT still reports the new MODSEQ (RFC 7162 section 3.1.3).
        for (seq, m) in &targets {
            while r.changed.get(changed_at).is_some_and(|c| c.uid.0 < m.uid) {
                changed_at += 1;
            }
            while r.modified.get(modified_at).is_some_and(|u| u.0 < m.uid) {
                modified_at += 1;
            }
            let changed = r.changed.get(changed_at).is_some_and(|c| c.uid.0 == m.uid);
            if silent && !(condstore && changed) {
                continue;
            }
            if r.modified.get(modified_at).is_some_and(|u| u.0 == m.uid) {
                continue;
            }
            let now = view.get(*seq).unwrap_or(*m);
            let mut l = format!("* {seq} FETCH (").into_bytes();
            if uid {
                l.extend_from_slice(format!("UID {} ", m.uid).as_bytes());
            }
            if !silent {
                l.extend_from_slice(b"FLAGS ");
                let recent = view.is_recent(m.uid) && !rev2;
                Self::render_flags(&self.keywords, now.flags, recent, &mut l);
            }
            if condstore {
                if !silent {
                    l.push(b' ');
                }
                l.extend_from_slice(format!("MODSEQ ({})", now.modseq).as_bytes());
            }
            l.extend_from_slice(b")\r\n");
            self.out.extend_from_slice(&l);
        }
        self.sync(false).await;
        if r.modified.is_empty() {
            self.line(&format!("{tag} OK STORE completed"));
        } else {
            let mut nums: Vec<u32> = r
                .modified
                .iter()
                .filter_map(|u| {
                    if uid {
                        Some(u.0)
                    } else {
                        self.view().seq_of(u.0)
                    }
                })
                .collect();
            nums.sort_unstable();
            self.line(&format!(
                "{tag} OK [MODIFIED {}] conditional STORE failed for some",
                compress_set(&nums)
            ));
        }
        Ok(())
    }

    pub(super) async fn copy(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SequenceSet,
        mailbox: &str,
        is_move: bool,
    ) -> Res {
        if is_move && self.view().readonly {
            return Err(Failure::code(Code::ReadOnly, "mailbox is read-only"));
        }
        let to = self.mailbox_name(mailbox)?;
        let from = self.view().mailbox.clone();
        if self.store.status(&to).is_err() {
            return Err(Failure::code(Code::TryCreate, "no such mailbox"));
        }
        let uids: Vec<Uid> = self
            .resolve(set, uid)?
            .into_iter()
            .filter(|(_, m)| !self.view().is_gone(m.uid))
            .map(|(_, m)| Uid(m.uid))
            .collect();
        if uids.is_empty() {
            return self.ok(tag, "nothing to do").await;
        }
        let (uv, pairs) = if is_move {
            self.store
                .move_messages(&from, &to, &uids)
                .await
                .map_err(no)?
        } else {
            self.store.copy(&from, &to, &uids).await.map_err(no)?
        };
        let src: Vec<u32> = pairs.iter().map(|p| p.0 .0).collect();
        let dst: Vec<u32> = pairs.iter().map(|p| p.1 .0).collect();
        if from == to {
            self.own_new.extend(dst.iter().copied());
        }
        self.notify_absorb().await;
        let code = format!(
            "COPYUID {} {} {}",
            uv.0,
            compress_set(&src),
            compress_set(&dst)
        );
        if is_move {
            // RFC 6851: COPYUID in an untagged OK before the expunges.
            self.line(&format!("* OK [{code}] moved"));
            self.ok(tag, "MOVE completed").await
        } else {
            self.sync(true).await;
            self.line(&format!("{tag} OK [{code}] COPY completed"));
            Ok(())
        }
    }
}
