//! SELECT and EXAMINE, CLOSE and UNSELECT, and keeping the selected mailbox's picture
//! in step with the store (untagged EXISTS, EXPUNGE/VANISHED, FETCH FLAGS).

use super::*;

/// `* VANISHED (EARLIER)` for the UIDs of `set` (all UIDs when `None`) the mailbox does not
/// hold. No tombstones are kept, so that is every such UID below UIDNEXT; clients ignore
/// UIDs they never had (RFC 7162 section 3.2.5.1).
pub(super) fn vanished_earlier(v: &View, set: Option<&SequenceSet>, out: &mut Vec<u8>) {
    let last = v.uidnext.saturating_sub(1);
    let ranges: Vec<(u32, u32)> = match set {
        Some(SequenceSet::Ranges(r)) => r
            .iter()
            .map(|&(a, b)| {
                let n = |x| match x {
                    crate::imap::SeqBound::Num(n) => n,
                    crate::imap::SeqBound::Star => last,
                };
                (n(a).min(n(b)), n(a).max(n(b)).min(last))
            })
            .collect(),
        Some(SequenceSet::Saved) => return,
        None => vec![(1, last)],
    };
    let mut gone: Vec<u32> = ranges
        .into_iter()
        .flat_map(|(a, b)| a..=b)
        .take(1 << 20)
        .filter(|u| v.seq_of(*u).is_none())
        .collect();
    gone.sort_unstable();
    gone.dedup();
    if !gone.is_empty() {
        out.extend_from_slice(
            format!("* VANISHED (EARLIER) {}\r\n", compress_set(&gone)).as_bytes(),
        );
    }
}

/// A message as the view keeps it.
pub(super) fn msg_of(m: &MessageInfo) -> Msg {
    Msg {
        uid: m.uid.0,
        flags: m.flags.0,
        modseq: m.modseq.0,
    }
}

impl<S: MailStore, L: Link> Session<S, L> {
    /// Offers the view's picture to other sessions' SELECTs while it is the store's.
    pub(super) fn share_view(&self) {
        let Some(v) = &self.view else { return };
        let Some(msgs) = v.snapshot() else { return };
        let stamp = Stamp {
            highest_modseq: v.highest_modseq,
            uidnext: v.uidnext,
            messages: v.len(),
        };
        self.store.share_picture(v.uidvalidity, stamp, msgs);
    }

    /// Brings the client's view of the selected mailbox up to date (untagged responses).
    pub(super) async fn sync(&mut self, expunge: bool) {
        // Read with the mailbox: sync_view does not await before the view is up to date.
        let retired = self.store.retired_seq();
        // Where REMOVEFROM goes (before any EXPUNGE, while its numbers are still valid), and
        // the numbers it uses.
        let before = match (&self.view, self.contexts.is_empty()) {
            (Some(v), false) => Some((self.out.len(), v.pictured())),
            (None, false) => {
                self.contexts.clear();
                None
            }
            _ => None,
        };
        let uidnext = self.view.as_ref().map(|v| v.uidnext);
        self.sync_view(expunge).await;
        if let Some((at, old)) = before {
            self.update_contexts(at, &old).await;
        }
        if self.notify.is_some() {
            self.notify_new_messages(uidnext).await;
            self.notify_check(false).await;
        }
        if let (Some(view), Some(mark)) = (&self.view, &self.mark) {
            if !view.has_gone() {
                // Told of every expunge so far: nothing kept before is needed for us.
                self.store.caught_up(mark, retired);
            }
        }
        self.share_view();
    }

    pub(super) async fn sync_view(&mut self, expunge: bool) {
        let Some(view) = self.view.as_mut() else {
            return;
        };
        let Ok(st) = self.store.status(&view.mailbox) else {
            return;
        };
        if st.highest_modseq.0 == view.highest_modseq
            && st.uidnext.0 == view.uidnext
            && st.messages == view.len()
            && !(expunge && view.has_gone())
        {
            return;
        }
        // Only new messages since the view was last brought up to date (the common case
        // while mail arrives): read just those, not the whole mailbox.
        let only_new = st.changed_modseq.0 <= view.highest_modseq
            && st.uidvalidity.0 == view.uidvalidity
            && !(expunge && view.has_gone());
        let from = if only_new { view.uidnext } else { 1 };
        let Ok(cur) = self.store.messages(&view.mailbox, Uid(from)) else {
            return;
        };
        let claimed = Some(if view.readonly {
            self.store.recent_boundary(&st)
        } else {
            self.store.claim_recent(&st)
        });
        let opt = SyncOptions {
            expunge,
            vanished: self.enabled.qresync,
            modseq: self.enabled.condstore,
            uid: self.enabled.qresync,
            recent: !self.enabled.rev2,
        };
        if let Ok(k) = self.store.keywords() {
            self.keywords = k;
        }
        if self.keywords.len() > self.keywords_told {
            let readonly = view.readonly;
            self.flag_lines(readonly);
        }
        let Some(view) = self.view.as_mut() else {
            return;
        };
        let kw = &self.keywords;
        if only_new {
            view.sync_new(
                &cur,
                st.uidnext.0,
                st.highest_modseq.0,
                claimed,
                opt,
                &mut self.out,
            );
            return;
        }
        let render = |f: u64, out: &mut Vec<u8>| Self::render_flags(kw, f, false, out);
        view.sync(
            &cur,
            st.uidnext.0,
            st.highest_modseq.0,
            claimed,
            opt,
            &render,
            &mut self.out,
        );
    }

    pub(super) async fn select(
        &mut self,
        tag: &str,
        mailbox: &str,
        readonly: bool,
        qresync: Option<Qresync>,
    ) -> Res {
        // A new SELECT closes the old mailbox even when it fails (RFC 9051 section 6.3.2).
        // The old picture is dropped only at the end: a SELECT of the same mailbox at the
        // same state shares it.
        let old = self.view.take();
        let had = old.is_some();
        // Searches kept up to date end with the mailbox (RFC 5267 section 4.3).
        self.contexts.clear();
        // Taken before the mailbox is read, so nothing expunged after is missed by it.
        let mark = self.store.hold_expunged();
        self.mark = None;
        if had && self.enabled.qresync {
            self.line("* OK [CLOSED] previous mailbox is now closed");
        }
        let name = self.mailbox_name(mailbox)?;
        let st = self.store.status(&name).map_err(no)?;
        let stamp = Stamp {
            highest_modseq: st.highest_modseq.0,
            uidnext: st.uidnext.0,
            messages: st.messages,
        };
        let shared = self.store.shared_picture(st.uidvalidity.0, stamp);
        let msgs = match shared {
            Some(m) => m,
            None => Rc::new(self.store.messages(&name, Uid(1)).map_err(no)?),
        };
        let recent_above = Uid(if readonly {
            self.store.recent_boundary(&st)
        } else {
            self.store.claim_recent(&st)
        });

        let view = View::new(
            st.name.clone(),
            readonly,
            st.uidvalidity.0,
            st.uidnext.0,
            st.highest_modseq.0,
            msgs,
            recent_above.0,
        );
        self.refresh_keywords();
        self.flag_lines(readonly);
        self.line(&format!("* {} EXISTS", view.len()));
        if !self.enabled.rev2 {
            self.line(&format!("* {} RECENT", view.recent_count()));
            if let Some(u) = view.first_unseen(Flags::SEEN.0) {
                self.line(&format!("* OK [UNSEEN {u}] first unseen"));
            }
        }
        if self.enabled.rev2 {
            // IMAP4rev2 names the mailbox as selected (RFC 9051 section 6.3.2).
            let mut l = b"* LIST () \"/\" ".to_vec();
            l.extend_from_slice(&self.show_name(&view.mailbox));
            l.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&l);
        }
        self.line(&format!(
            "* OK [UIDVALIDITY {}] UIDs valid",
            view.uidvalidity
        ));
        self.line(&format!(
            "* OK [UIDNEXT {}] predicted next UID",
            view.uidnext
        ));
        self.line(&format!(
            "* OK [HIGHESTMODSEQ {}] highest",
            view.highest_modseq
        ));
        self.modseq_told = self.enabled.condstore;
        self.line(&format!("* OK [MAILBOXID ({})] stable id", mailbox_id(&st)));
        if let Some(q) = qresync.filter(|q| q.uidvalidity == view.uidvalidity) {
            // What changed since the client's modseq: messages gone (we keep no tombstones,
            // so every known UID that is not here; clients ignore UIDs they never had), then
            // flags changed since.
            vanished_earlier(&view, q.known_uids.as_ref(), &mut self.out);
            let kw = &self.keywords;
            let opt = SyncOptions {
                uid: true,
                modseq: true,
                ..Default::default()
            };
            for (i, m) in view.messages().iter().enumerate() {
                if m.modseq > q.modseq {
                    let flags = |f, out: &mut Vec<u8>| Self::render_flags(kw, f, false, out);
                    view::fetch_flags(&mut self.out, i as u32 + 1, m, opt, &flags);
                }
            }
        }
        self.view = Some(view);
        self.mark = Some(mark);
        self.share_view();
        drop(old);
        let (mode, verb) = match readonly {
            true => ("READ-ONLY", "EXAMINE"),
            false => ("READ-WRITE", "SELECT"),
        };
        self.line(&format!("{tag} OK [{mode}] {verb} completed"));
        Ok(())
    }

    pub(super) fn view(&self) -> &View {
        self.view.as_ref().expect("selected state")
    }

    /// The (seq, Msg) pairs a set names; by sequence number, an invalid set is `BAD`.
    pub(super) fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<(u32, Msg)>, Failure> {
        let v = self.view();
        let seqs = v
            .resolve(set, uid, &self.saved)
            .map_err(|_| Failure::bad("invalid message sequence number"))?;
        Ok(seqs
            .into_iter()
            .filter_map(|s| v.get(s).map(|m| (s, m)))
            .collect())
    }

    pub(super) async fn select_cmd(
        &mut self,
        tag: &str,
        mailbox: &str,
        readonly: bool,
        condstore: bool,
        qresync: Option<Qresync>,
    ) -> Res {
        if condstore {
            self.enabled.condstore = true;
        }
        if qresync.is_some() && !self.enabled.qresync {
            return Err(Failure::bad("QRESYNC must be enabled first"));
        }
        self.select(tag, mailbox, readonly, qresync).await
    }

    pub(super) async fn close(&mut self, tag: &str, close: bool) -> Res {
        let view = self.view.take().expect("checked above");
        self.mark = None;
        if close && !view.readonly {
            // CLOSE expunges silently (RFC 9051 section 6.4.1).
            self.store.expunge(&view.mailbox, None).await.map_err(no)?;
        }
        if self.enabled.qresync {
            self.line("* OK [CLOSED] previous mailbox is now closed");
        }
        self.line(&format!("{tag} OK completed"));
        Ok(())
    }
}
