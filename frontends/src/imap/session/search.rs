//! SEARCH, SORT and THREAD over the selected mailbox, a chunk at a time, and the searches
//! kept up to date (CONTEXT=SEARCH, RFC 5267).

use super::*;
use crate::imap::search;

/// A search whose result the session keeps up to date (RFC 5267 UPDATE).
pub(super) struct SearchContext {
    tag: String,
    /// Results are UIDs (UID SEARCH / UID SORT), else sequence numbers.
    uid: bool,
    charset: Option<String>,
    /// With sequence numbers and `$` frozen to the UIDs they named at the command.
    keys: Vec<search::SearchKey>,
    /// SORT's criteria; `None` for SEARCH.
    sort: Option<Vec<sort::SortCriterion>>,
    /// The result as the client has it: UIDs, in its order.
    result: Vec<u32>,
    /// The mailbox's state when `result` was made (taken before the search ran).
    stamp: (u64, u32, u32),
}

/// A message a search matched.
pub(super) struct Hit {
    seq: u32,
    uid: u32,
    size: u32,
    internal_date: i64,
    modseq: u64,
    envelope: Option<Rc<PackedEnvelope>>,
}

impl<S: MailStore, L: Link> Session<S, L> {
    /// The messages of the selected mailbox matching `keys`, in sequence order, with their
    /// metadata when the keys (or `want_meta`, for SORT and THREAD) need it.
    pub(super) async fn matching(
        &mut self,
        charset: Option<&str>,
        keys: &[search::SearchKey],
        want_meta: bool,
    ) -> Result<Vec<Hit>, Failure> {
        if let Some(cs) = charset {
            if !search::charset_supported(cs) {
                return Err(Failure::code(Code::BadCharset, "unsupported charset"));
            }
        }
        let needs = search::needs(keys);
        if needs.modseq {
            self.enable_condstore();
        }
        self.refresh_keywords();
        let v = self.view();
        let mailbox = v.mailbox.clone();
        // The picture is shared, not copied; what is stored of each message is read a
        // chunk at a time, so a search holds a few hundred entries however big the
        // mailbox (whole copies of a 200,000-message index were most of a flag search).
        let msgs = v.pictured();
        let uidvalidity = v.uidvalidity;
        let max_uid = msgs.last().map_or(0, |m| m.uid);
        let max_seq = msgs.len() as u32;
        let saved = self.saved.clone();
        let want_envelope = needs.meta || want_meta;
        let mut hits = Vec::new();
        // Flag names by flag bits: a mailbox has few distinct combinations, and naming
        // them once each spares an allocation per message.
        let mut names_of: HashMap<u64, Vec<&str>> = HashMap::new();
        // In chunks, so the envelopes missing from the cache are read many at a time
        // while what a chunk holds stays small however big the mailbox.
        for (c, pictured) in msgs.chunks(SEARCH_CHUNK).enumerate() {
            // Renamed away (and the name reused) while earlier chunks were read: the rest
            // of this mailbox is no longer under its name, and matches nothing.
            let same = self
                .store
                .status(&mailbox)
                .is_ok_and(|st| st.uidvalidity.0 == uidvalidity);
            if !same {
                break;
            }
            let uids: Vec<Uid> = pictured.iter().map(|m| Uid(m.uid)).collect();
            let mut infos = self
                .store
                .messages_of(&mailbox, &uids)
                .map_err(no)?
                .into_iter()
                .peekable();
            // (sequence number, what is stored of it) for each message still there; one
            // expunged meanwhile matches nothing.
            let first = (c * SEARCH_CHUNK) as u32 + 1;
            let chunk: Vec<(u32, ringmail_engine::MessageInfo)> = pictured
                .iter()
                .enumerate()
                .filter_map(|(k, m)| {
                    infos
                        .next_if(|i| i.uid.0 == m.uid)
                        .map(|i| (first + k as u32, i))
                })
                .collect();
            let chunk = &chunk[..];
            let envelopes = if want_envelope {
                self.store.envelopes_of(&mailbox, chunk).await
            } else {
                Vec::new()
            };
            for (k, (seq, info)) in chunk.iter().enumerate() {
                let raw = if needs.raw {
                    self.store.fetch(&mailbox, info.uid).await.ok()
                } else {
                    None
                };
                let envelope = envelopes.get(k).cloned().flatten();
                let names = names_of
                    .entry(info.flags.0)
                    .or_insert_with(|| Self::flag_names(&self.keywords, info.flags.0));
                let c = search::Candidate {
                    seq: *seq,
                    uid: info.uid.0,
                    flags: names,
                    recent: self.view().is_recent(info.uid.0),
                    internal_date: info.internal_date,
                    size: info.size,
                    modseq: info.modseq.0,
                    envelope: envelope.as_deref(),
                    raw: raw.as_deref().map(|r| r.as_slice()),
                };
                let ctx = search::Context {
                    max_seq,
                    max_uid,
                    saved: &saved,
                };
                if search::matches(keys, &c, &ctx) {
                    hits.push(Hit {
                        seq: *seq,
                        uid: info.uid.0,
                        size: info.size,
                        internal_date: info.internal_date,
                        modseq: info.modseq.0,
                        envelope: if want_meta { envelope } else { None },
                    });
                }
            }
        }
        Ok(hits)
    }

    pub(super) async fn search(&mut self, tag: &str, uid: bool, cmd: search::SearchCommand) -> Res {
        self.check_update_tag(tag, cmd.ret.as_ref())?;
        let stamp = self.mailbox_stamp();
        let found = self
            .matching(cmd.charset.as_deref(), &cmd.keys, false)
            .await?;
        let hits_uid: Vec<u32> = found.iter().map(|h| h.uid).collect();
        let hits_seq: Vec<u32> = found.iter().map(|h| h.seq).collect();
        let top_modseq = found.iter().map(|h| h.modseq).max().unwrap_or(0);
        let hits = if uid { &hits_uid } else { &hits_seq };
        let modseq = search::needs(&cmd.keys).modseq.then_some(top_modseq);
        // IMAP4rev2 answers every SEARCH with ESEARCH (RFC 9051 section 6.4.4).
        let ret = match cmd.ret {
            None if self.enabled.rev2 => Some(vec![search::ReturnOpt::All]),
            r => r,
        };
        match &ret {
            None => search::write_search(&mut self.out, hits, modseq),
            Some(ret) => {
                if ret.contains(&search::ReturnOpt::Save) {
                    let kept = search::returned_hits(&hits_uid, ret);
                    self.saved = kept;
                }
                search::write_esearch(&mut self.out, tag, uid, hits, ret, modseq);
                if ret.contains(&search::ReturnOpt::Update) {
                    self.add_context(SearchContext {
                        tag: tag.to_string(),
                        uid,
                        charset: cmd.charset.clone(),
                        keys: cmd.keys.clone(),
                        sort: None,
                        result: hits_uid.clone(),
                        stamp,
                    });
                }
            }
        }
        self.sync(uid).await;
        self.line(&format!("{tag} OK SEARCH completed"));
        Ok(())
    }

    /// The UIDs of `found` in the order of `criteria`.
    pub(super) fn sorted_uids(found: &[Hit], criteria: &[sort::SortCriterion]) -> Vec<u32> {
        let empty = PackedEnvelope::default();
        let mut items: Vec<sort::SortItem> = found
            .iter()
            .map(|h| sort::SortItem {
                id: h.uid,
                size: h.size,
                internal_date: h.internal_date,
                envelope: h.envelope.as_deref().unwrap_or(&empty),
            })
            .collect();
        sort::sort(&mut items, criteria);
        items.iter().map(|i| i.id).collect()
    }

    /// A searching command with `RETURN (UPDATE)`: a tag still updating is BAD (RFC 5267
    /// section 4.3); checked before anything is answered.
    pub(super) fn check_update_tag(&self, tag: &str, ret: Option<&Vec<search::ReturnOpt>>) -> Res {
        let update = ret.is_some_and(|r| r.contains(&search::ReturnOpt::Update));
        if update && self.contexts.iter().any(|c| c.tag == tag) {
            return Err(Failure::bad(
                "tag reuse: a search with this tag is still being updated",
            ));
        }
        Ok(())
    }

    /// Keeps a search up to date from now on, or says it will not (`NOUPDATE`). Its
    /// sequence numbers and `$` are frozen to the UIDs they name now.
    pub(super) fn add_context(&mut self, mut c: SearchContext) {
        if self.contexts.len() >= context::MAX_CONTEXTS {
            let mut l = b"* NO [NOUPDATE ".to_vec();
            encode::string(&mut l, c.tag.as_bytes());
            l.extend_from_slice(b"] too many searches are being updated\r\n");
            self.out.extend_from_slice(&l);
            return;
        }
        let uids_of = |set: &SequenceSet| -> Vec<u32> {
            self.resolve(set, false)
                .map(|v| v.into_iter().map(|(_, m)| m.uid).collect())
                .unwrap_or_default()
        };
        c.keys = context::freeze(&c.keys, &uids_of);
        self.contexts.push(c);
    }

    /// The selected mailbox's state, to tell whether a kept search must run again.
    pub(super) fn mailbox_stamp(&self) -> (u64, u32, u32) {
        self.view
            .as_ref()
            .and_then(|v| self.store.status(&v.mailbox).ok())
            .map_or((0, 0, 0), |st| {
                (st.highest_modseq.0, st.uidnext.0, st.messages)
            })
    }

    /// Runs every kept search again if the mailbox changed, and tells the client what left
    /// each result (inserted at `at`, before this sync's EXPUNGEs, numbered as in `old`)
    /// and what joined it (after this sync's EXISTS).
    pub(super) async fn update_contexts(&mut self, at: usize, old: &[Msg]) {
        if self.view.is_none() {
            return;
        }
        // Each search is run again only if the mailbox changed since its result was made
        // (a search added meanwhile does not hide the others' updates).
        let stamp = self.mailbox_stamp();
        let old_seq = |u: u32| {
            old.binary_search_by_key(&u, |m| m.uid)
                .ok()
                .map(|i| i as u32 + 1)
        };
        let (mut removals, mut additions) = (Vec::new(), Vec::new());
        let contexts = std::mem::take(&mut self.contexts);
        let mut kept = Vec::with_capacity(contexts.len());
        for mut c in contexts {
            if c.stamp == stamp {
                kept.push(c);
                continue;
            }
            c.stamp = stamp;
            let found = match self
                .matching(c.charset.as_deref(), &c.keys, c.sort.is_some())
                .await
            {
                Ok(f) => f,
                Err(_) => {
                    kept.push(c);
                    continue;
                }
            };
            let new: Vec<u32> = match &c.sort {
                Some(criteria) => Self::sorted_uids(&found, criteria),
                None => found.iter().map(|h| h.uid).collect(),
            };
            let (rm, add) = match &c.sort {
                Some(_) => context::diff_sorted(&c.result, &new),
                None => {
                    let (rm, add) = context::diff_search(&c.result, &new);
                    (
                        rm.into_iter().map(|u| (0, u)).collect(),
                        add.into_iter().map(|u| (0, u)).collect(),
                    )
                }
            };
            let view = self.view();
            let number = |edits: Vec<(u32, u32)>, seq: &dyn Fn(u32) -> Option<u32>| {
                edits
                    .into_iter()
                    .filter_map(|(p, u)| {
                        if c.uid {
                            Some((p, u))
                        } else {
                            seq(u).map(|s| (p, s))
                        }
                    })
                    .collect::<Vec<_>>()
            };
            let rm = number(rm, &old_seq);
            let add = number(add, &|u| view.seq_of(u));
            context::write_update(&mut removals, &c.tag, c.uid, "REMOVEFROM", &rm);
            context::write_update(&mut additions, &c.tag, c.uid, "ADDTO", &add);
            c.result = new;
            kept.push(c);
        }
        // Contexts made meanwhile (none: nothing here adds one) come after.
        kept.append(&mut self.contexts);
        self.contexts = kept;
        let at = at.min(self.out.len());
        self.out.splice(at..at, removals);
        self.out.extend_from_slice(&additions);
    }

    pub(super) async fn sort(&mut self, tag: &str, uid: bool, cmd: sort::SortCommand) -> Res {
        self.check_update_tag(tag, cmd.ret.as_ref())?;
        let stamp = self.mailbox_stamp();
        let found = self.matching(Some(&cmd.charset), &cmd.keys, true).await?;
        let sorted_uids = Self::sorted_uids(&found, &cmd.criteria);
        let ids: Vec<u32> = if uid {
            sorted_uids.clone()
        } else {
            let seq_of: HashMap<u32, u32> = found.iter().map(|h| (h.uid, h.seq)).collect();
            sorted_uids.iter().map(|u| seq_of[u]).collect()
        };
        match &cmd.ret {
            None => sort::write_sort(&mut self.out, &ids),
            // ESORT (RFC 5267 section 3): ESEARCH in sort order. `$` is a set: what SAVE
            // keeps loses the order.
            Some(ret) => {
                if ret.contains(&search::ReturnOpt::Save) {
                    let uids: Vec<u32> = if uid {
                        ids.clone()
                    } else {
                        let by_seq: HashMap<u32, u32> =
                            found.iter().map(|h| (h.seq, h.uid)).collect();
                        ids.iter().map(|s| by_seq[s]).collect()
                    };
                    let mut kept = search::returned_hits(&uids, ret);
                    kept.sort_unstable();
                    self.saved = kept;
                }
                let modseq = search::needs(&cmd.keys)
                    .modseq
                    .then(|| found.iter().map(|h| h.modseq).max().unwrap_or(0));
                search::write_esearch(&mut self.out, tag, uid, &ids, ret, modseq);
                if ret.contains(&search::ReturnOpt::Update) {
                    self.add_context(SearchContext {
                        tag: tag.to_string(),
                        uid,
                        charset: Some(cmd.charset.clone()),
                        keys: cmd.keys.clone(),
                        sort: Some(cmd.criteria.clone()),
                        result: sorted_uids,
                        stamp,
                    });
                }
            }
        }
        self.sync(uid).await;
        self.line(&format!("{tag} OK SORT completed"));
        Ok(())
    }

    pub(super) async fn thread(&mut self, tag: &str, uid: bool, cmd: thread::ThreadCommand) -> Res {
        let found = self.matching(Some(&cmd.charset), &cmd.keys, true).await?;
        let empty = PackedEnvelope::default();
        let items: Vec<thread::ThreadItem> = found
            .iter()
            .map(|h| thread::ThreadItem {
                id: if uid { h.uid } else { h.seq },
                internal_date: h.internal_date,
                envelope: h.envelope.as_deref().unwrap_or(&empty),
            })
            .collect();
        let threads = thread::thread(&items, cmd.algorithm);
        thread::write_thread(&mut self.out, &threads);
        self.sync(uid).await;
        self.line(&format!("{tag} OK THREAD completed"));
        Ok(())
    }

    pub(super) async fn cancel_update(&mut self, tag: &str, tags: Vec<String>) -> Res {
        let mut unknown = None;
        for t in &tags {
            let before = self.contexts.len();
            self.contexts.retain(|c| &c.tag != t);
            if self.contexts.len() == before {
                unknown.get_or_insert(t.clone());
            }
        }
        if let Some(t) = unknown {
            return Err(Failure::no(format!("no search {t:?} is being updated")));
        }
        self.ok(tag, "CANCELUPDATE completed: no further updates")
            .await
    }
}
