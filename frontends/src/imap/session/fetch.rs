//! FETCH: the items rendered by `imap::fetch` from the index, the stored metadata and,
//! only when an item needs it, the message.

use super::*;
use crate::imap::fetch;

impl<S: MailStore, L: Link> Session<S, L> {
    pub(super) async fn fetch(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SequenceSet,
        attrs: &[crate::imap::FetchAttr],
        changed_since: Option<u64>,
        partial: Option<PartialRange>,
    ) -> Res {
        self.fetch_data(uid, set, attrs, changed_since, partial)
            .await?;
        if self.closing {
            return Ok(());
        }
        self.sync(false).await;
        self.line(&format!("{tag} OK FETCH completed"));
        Ok(())
    }

    /// The FETCH responses of a FETCH (or of NOTIFY's MessageNew), without the sync and
    /// the tagged reply.
    pub(super) async fn fetch_data(
        &mut self,
        uid: bool,
        set: &SequenceSet,
        attrs: &[crate::imap::FetchAttr],
        changed_since: Option<u64>,
        partial: Option<PartialRange>,
    ) -> Res {
        let items = fetch::prepare(attrs);
        let needs = fetch::needs(&items);
        if changed_since.is_some()
            || attrs
                .iter()
                .any(|a| matches!(a, crate::imap::FetchAttr::ModSeq))
        {
            self.enable_condstore();
        }
        let mut targets = self.resolve(set, uid)?;
        if let Some(since) = changed_since {
            targets.retain(|(_, m)| m.modseq > since);
        }
        // The page counts the messages the set and CHANGEDSINCE leave (RFC 9394 section
        // 3.4), in mailbox order.
        if let Some(r) = partial {
            targets = r.select(&targets).to_vec();
        }
        let v = self.view();
        let mailbox = v.mailbox.clone();
        let mut seen_now: HashSet<u32> = HashSet::new();
        // Reading a body sets \Seen (RFC 9051 section 6.4.5), once for the whole set.
        if needs.sets_seen && !v.readonly {
            let unseen: Vec<Uid> = targets
                .iter()
                .filter(|(_, m)| !Flags(m.flags).contains(Flags::SEEN) && !v.is_gone(m.uid))
                .map(|(_, m)| Uid(m.uid))
                .collect();
            if !unseen.is_empty() {
                let r = self
                    .store
                    .store(&mailbox, &unseen, FlagOp::Add, Flags::SEEN, &[], None)
                    .await
                    .map_err(no)?;
                let view = self.view.as_mut().expect("selected");
                for c in &r.changed {
                    view.set_flags(c.uid.0, c.flags.0, c.modseq.0);
                }
                let changed: HashMap<u32, (u64, u64)> = r
                    .changed
                    .iter()
                    .map(|c| (c.uid.0, (c.flags.0, c.modseq.0)))
                    .collect();
                for t in targets.iter_mut() {
                    if let Some(&(f, ms)) = changed.get(&t.1.uid) {
                        t.1.flags = f;
                        t.1.modseq = ms;
                        // The client learns of the new \Seen in this response.
                        seen_now.insert(t.1.uid);
                    }
                }
            }
        }
        self.refresh_keywords();
        let add_modseq = self.enabled.condstore;
        let mut unknown_cte = false;
        // Messages whose body could not be read: the others are still sent.
        let mut unreadable: Option<Failure> = None;
        let mut unsent: Vec<Uid> = Vec::new();
        // What is stored of each, looked up in one walk (a lookup per message was a quarter
        // of FETCH 1:* (FLAGS)); a message expunged meanwhile, while the body of another
        // was sent, is caught when its own body is read.
        let uids: Vec<Uid> = targets.iter().map(|(_, m)| Uid(m.uid)).collect();
        let infos = self.store.messages_of(&mailbox, &uids).map_err(no)?;
        let mut infos = infos.into_iter().peekable();
        for (seq, m) in targets {
            let gone = self.view().is_gone(m.uid);
            while infos.next_if(|i| i.uid.0 < m.uid).is_some() {}
            // Expunged by another session: still readable until we tell the client (RFC
            // 2180 section 4.1.1), if the engine still keeps it (it does for a while).
            let info = match infos.next_if(|i| i.uid.0 == m.uid) {
                Some(i) => i,
                None => match self.store.expunged_message(&mailbox, Uid(m.uid)) {
                    Some(i) => i,
                    None if gone => continue,
                    None => return Err(no(Error::Store(StoreError::NoSuchMessage))),
                },
            };
            let raw = if needs.body {
                match self.store.fetch_blob(info.blob).await {
                    Ok(b) => Some(b),
                    Err(_) if gone => continue,
                    Err(e) => {
                        tracing::error!(
                            account = %self.account,
                            mailbox = %mailbox,
                            uid = m.uid,
                            error = %e,
                            "cannot read a stored message"
                        );
                        if seen_now.contains(&m.uid) {
                            unsent.push(Uid(m.uid));
                        }
                        let damaged = matches!(e, Error::Corrupt { .. } | Error::MissingSegment(_));
                        let worse = damaged || unreadable.is_none();
                        if worse {
                            unreadable = Some(if damaged {
                                Failure::code(Code::Corruption, format!("message UID {} is damaged in storage and was not sent; the others were", m.uid))
                            } else {
                                Failure::code(Code::Unavailable, format!("message UID {} could not be read now; the others were sent", m.uid))
                            });
                        }
                        continue;
                    }
                }
            } else {
                None
            };
            let meta = if needs.meta {
                self.store
                    .meta_of(info.blob, raw.as_deref().map(|r| r.as_slice()))
                    .await
            } else {
                None
            };
            let recent = self.view().is_recent(m.uid);
            let kw = &self.keywords;
            let recent = recent && !self.enabled.rev2;
            let flags = |out: &mut Vec<u8>| Self::render_flags(kw, m.flags, recent, out);
            let msg = fetch::Message {
                seq,
                uid: m.uid,
                internal_date: info.internal_date,
                size: info.size,
                modseq: m.modseq,
                email_id: info.blob.0,
                meta: meta.as_deref(),
                raw: raw.as_deref().map(|r| r.as_slice()),
            };
            let mut line = Vec::new();
            let add_flags = seen_now.contains(&m.uid);
            match fetch::write(&mut line, &msg, &items, &flags, uid, add_flags, add_modseq) {
                Ok(()) => self.out.extend_from_slice(&line),
                Err(_) => unknown_cte = true,
            }
            if self.out.len() >= FLUSH_AT && !self.flush().await {
                self.closing = true;
                return Ok(());
            }
        }
        if unknown_cte {
            return Err(Failure::code(
                Code::UnknownCte,
                "cannot decode a part's transfer encoding",
            ));
        }
        if let Some(e) = unreadable {
            // A message the client did not get is not \Seen because of this FETCH.
            if !unsent.is_empty() {
                if let Ok(r) = self
                    .store
                    .store(&mailbox, &unsent, FlagOp::Remove, Flags::SEEN, &[], None)
                    .await
                {
                    let view = self.view.as_mut().expect("selected");
                    for c in &r.changed {
                        view.set_flags(c.uid.0, c.flags.0, c.modseq.0);
                    }
                }
            }
            return Err(e);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn fetch_cmd(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SequenceSet,
        attrs: &[crate::imap::FetchAttr],
        changed_since: Option<u64>,
        vanished: bool,
        partial: Option<PartialRange>,
    ) -> Res {
        if vanished {
            if !uid || !self.enabled.qresync {
                return Err(Failure::bad("VANISHED needs UID FETCH and QRESYNC enabled"));
            }
            let view = self.view.as_ref().expect("selected");
            vanished_earlier(view, Some(set), &mut self.out);
        }
        self.fetch(tag, uid, set, attrs, changed_since, partial)
            .await
    }
}
