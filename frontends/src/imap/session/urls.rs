//! URLs of this account's mail: GENURLAUTH, RESETKEY, URLFETCH (RFC 4467) and CATENATE's
//! parts (RFC 4469).

use super::*;

impl<S: MailStore, L: Link> Session<S, L> {
    /// The mailbox's URLAUTH access key, made (and stored) when it has none.
    pub(super) async fn mailbox_key(&self, mailbox: &str) -> Result<Vec<u8>, Error> {
        self.store
            .annotation_or_insert(Some(mailbox), urlauth::KEY_ENTRY, urlauth::new_key)
            .await
    }

    /// RESETKEY (RFC 4467 section 6): a new key for the mailbox, or no key for any, which
    /// revokes the URLs made with the old ones.
    pub(super) async fn resetkey(
        &mut self,
        tag: &str,
        mailbox: Option<String>,
        mechs: Vec<String>,
    ) -> Res {
        if let Some(m) = mechs.iter().find(|m| *m != "INTERNAL") {
            return Err(Failure::bad(format!("unknown URLAUTH mechanism {m}")));
        }
        let one = mailbox.is_some();
        let names = match mailbox {
            Some(m) => {
                let name = self.mailbox_name(&m)?;
                self.store.status(&name).map_err(no)?;
                vec![name]
            }
            None => self
                .store
                .mailboxes()
                .map_err(no)?
                .into_iter()
                .map(|m| m.name)
                .collect(),
        };
        for name in names {
            let has = self
                .store
                .annotations(Some(&name))
                .await
                .map_err(no)?
                .contains_key(urlauth::KEY_ENTRY);
            // One mailbox gets a new key; "every key" means none is left.
            let value = one.then(urlauth::new_key);
            if has || value.is_some() {
                self.store
                    .set_annotations(Some(&name), &[(urlauth::KEY_ENTRY.into(), value)])
                    .await
                    .map_err(no)?;
            }
        }
        self.ok(tag, "[URLMECH INTERNAL] RESETKEY completed").await
    }

    /// GENURLAUTH (RFC 4467 section 7): each rump must be an absolute URL of this server,
    /// owned by this user, naming a message that exists, ending in `;URLAUTH=<access>`; the
    /// answer adds `:internal:<token>` under the mailbox's key (made now if it has none).
    /// Anything wrong is BAD, as the RFC says.
    pub(super) async fn genurlauth(&mut self, tag: &str, pairs: Vec<(String, String)>) -> Res {
        let mut out = Vec::new();
        for (rump, mech) in &pairs {
            if mech != "INTERNAL" {
                return Err(Failure::bad(format!("unknown URLAUTH mechanism {mech}")));
            }
            let u = url::parse(rump).map_err(|e| Failure::bad(e.to_string()))?;
            match &u.urlauth {
                Some((access, m, t)) if m.is_empty() && t.is_empty() => {
                    if urlauth::Access::parse(access).is_none() {
                        return Err(Failure::bad(format!("unknown access identifier {access}")));
                    }
                }
                Some(_) => return Err(Failure::bad("the URL is already authorized")),
                None => return Err(Failure::bad("the URL needs ;URLAUTH=<access>")),
            }
            if !u.host.as_deref().is_some_and(|h| self.store.is_ours(h)) {
                return Err(Failure::bad("the URL must name this server"));
            }
            if !u
                .user
                .as_deref()
                .is_some_and(|o| o.eq_ignore_ascii_case(&self.account))
            {
                return Err(Failure::bad(
                    "the URL must name its owner, the logged-in user",
                ));
            }
            if u.expire
                .as_deref()
                .is_some_and(|e| urlauth::parse_expire(e).is_none())
            {
                return Err(Failure::bad("EXPIRE is not an RFC 3339 date-time"));
            }
            let mailbox = url::store_name(u.mailbox.as_deref().unwrap_or_default());
            let st = self
                .store
                .status(&mailbox)
                .map_err(|_| Failure::bad("no such mailbox"))?;
            if u.uidvalidity.is_some_and(|v| v != st.uidvalidity.0)
                || self.store.message(&mailbox, Uid(u.uid)).is_err()
            {
                return Err(Failure::bad("no such message"));
            }
            let key = self.mailbox_key(&mailbox).await.map_err(no)?;
            out.push(format!("{rump}:internal:{}", urlauth::token(&key, rump)));
        }
        let mut l = b"* GENURLAUTH".to_vec();
        for u in &out {
            l.push(b' ');
            encode::string(&mut l, u.as_bytes());
        }
        l.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(&l);
        self.ok(tag, "GENURLAUTH completed").await
    }

    /// A CATENATE message (RFC 4469): the TEXT parts and what the URLs name, in order. A
    /// URL that names nothing readable is `NO [BADURL url]` (the URL bare, RFC 4469 errata
    /// 4046), and nothing of the APPEND is stored.
    pub(super) async fn catenate(
        &mut self,
        parts: Vec<CatPart>,
        limit: u64,
    ) -> Result<Vec<u8>, Failure> {
        let mut out = Vec::new();
        for p in parts {
            match p {
                CatPart::Text(t) => out.extend_from_slice(&t),
                CatPart::Url(u) => {
                    let bytes = self.url_bytes(&u).await.map_err(|e| {
                        Failure::code(
                            Code::BadUrl(u.replace(['\r', '\n', ']'], "")),
                            e.to_string(),
                        )
                    })?;
                    out.extend_from_slice(&bytes);
                }
            }
            if out.len() as u64 > limit {
                return Err(Failure::code(
                    Code::TooBig,
                    format!("message larger than {limit} bytes"),
                ));
            }
        }
        // Empty parts are fine; an empty message is not (RFC 3502's rule for literals).
        if out.is_empty() {
            return Err(Failure::no("the catenated message is empty"));
        }
        Ok(out)
    }

    /// The octets an IMAP URL names in this account: the message, or the section of it as
    /// FETCH BODY[section] returns it, cut to `;PARTIAL=`. An absolute URL must name this
    /// server and this account; a relative one without a mailbox is relative to the
    /// selected mailbox.
    pub(super) async fn url_bytes(&mut self, text: &str) -> Result<Vec<u8>, url::BadUrl> {
        use url::BadUrl;
        let u = url::parse(text)?;
        if u.host.as_deref().is_some_and(|h| !self.store.is_ours(h)) {
            return Err(BadUrl("the URL names another server"));
        }
        if u.user
            .as_ref()
            .is_some_and(|x| !x.eq_ignore_ascii_case(&self.account))
        {
            return Err(BadUrl("the URL names another user's mail"));
        }
        let mailbox = match (&u.mailbox, &self.view) {
            (Some(m), _) => url::store_name(m),
            (None, Some(v)) => v.mailbox.clone(),
            (None, None) => return Err(BadUrl("a relative URL needs a selected mailbox")),
        };
        self.store.read_url(&mailbox, &u).await
    }

    pub(super) async fn urlfetch(&mut self, tag: &str, urls: Vec<String>) -> Res {
        if urls.len() > MAX_URLFETCH {
            return Err(Failure::code(
                Code::Limit,
                format!("at most {MAX_URLFETCH} URLs per URLFETCH"),
            ));
        }
        // Each body is written out as it is read: a command naming one big
        // message many times holds one copy at a time.
        self.out.extend_from_slice(b"* URLFETCH");
        for u in &urls {
            let who = urlauth::Requester::Imap(&self.account);
            let data = self.store.fetch_url(u, who).await;
            self.out.push(b' ');
            encode::astring(&mut self.out, u.as_bytes());
            self.out.push(b' ');
            encode::nstring(&mut self.out, data.as_deref());
            if self.out.len() >= FLUSH_AT && !self.flush().await {
                self.closing = true;
                return Ok(());
            }
        }
        self.out.extend_from_slice(b"\r\n");
        self.ok(tag, "URLFETCH completed").await
    }
}
