//! GETMETADATA and SETMETADATA (RFC 5464) over the store's annotations.

use super::*;
use crate::imap::metadata;

impl<S: MailStore, L: Link> Session<S, L> {
    /// The mailbox a METADATA command names: `None` for `""`, the server's (kept per
    /// account: every user here has the server to themselves).
    pub(super) fn metadata_target(&self, mailbox: &str) -> Result<Option<String>, Failure> {
        if mailbox.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.mailbox_name(mailbox)?))
    }

    /// GETMETADATA (RFC 5464 section 4.2): each asked entry, with its children to DEPTH;
    /// one asked for by name that has no value is NIL; values over MAXSIZE are left out and
    /// the largest of them reported as `[METADATA LONGENTRIES n]`.
    pub(super) async fn get_metadata(&mut self, tag: &str, get: metadata::GetMetadata) -> Res {
        let mailbox = self.metadata_target(&get.mailbox)?;
        let entries = self
            .store
            .annotations(mailbox.as_deref())
            .await
            .map_err(no)?;
        let mut items: Vec<(&str, Option<&[u8]>)> = Vec::new();
        let mut longest = None;
        for asked in &get.entries {
            if get.depth == metadata::Depth::Zero && !entries.contains_key(asked) {
                items.push((asked, None));
            }
            for (name, value) in &entries {
                if !metadata::selects(asked, get.depth, name)
                    || items.iter().any(|(n, _)| *n == name)
                {
                    continue;
                }
                if get.maxsize.is_some_and(|m| value.len() as u64 > m) {
                    longest = longest.max(Some(value.len()));
                    continue;
                }
                items.push((name, Some(value)));
            }
        }
        if !items.is_empty() {
            let mut l = b"* METADATA ".to_vec();
            match &mailbox {
                Some(m) => l.extend_from_slice(&self.show_name(m)),
                None => l.extend_from_slice(b"\"\""),
            }
            l.extend_from_slice(b" (");
            for (i, (name, value)) in items.iter().enumerate() {
                if i > 0 {
                    l.push(b' ');
                }
                encode::astring(&mut l, name.as_bytes());
                l.push(b' ');
                match value {
                    Some(v) => metadata::write_value(&mut l, v),
                    None => l.extend_from_slice(b"NIL"),
                }
            }
            l.extend_from_slice(b")\r\n");
            self.out.extend_from_slice(&l);
        }
        let text = match longest {
            Some(n) => format!("[METADATA LONGENTRIES {n}] GETMETADATA completed"),
            None => "GETMETADATA completed".into(),
        };
        self.ok(tag, &text).await
    }

    pub(super) async fn set_metadata(&mut self, tag: &str, set: metadata::SetMetadata) -> Res {
        let mailbox = self.metadata_target(&set.mailbox)?;
        self.store
            .set_annotations(mailbox.as_deref(), &set.values)
            .await
            .map_err(|e| match e.store() {
                Some(StoreError::AnnotationTooBig { max }) => {
                    Failure::code(Code::MetadataMaxSize(*max as u64), e.to_string())
                }
                Some(StoreError::TooManyAnnotations { .. }) => {
                    Failure::code(Code::MetadataTooMany, e.to_string())
                }
                _ => no(e),
            })?;
        self.notify_absorb().await;
        self.ok(tag, "SETMETADATA completed").await
    }
}
