//! IMAP URLs naming a message or a part of one (RFC 5092), as CATENATE (RFC 4469) and
//! URLAUTH (RFC 4467) take them.
//!
//! ```text
//! imapurl      = "imap://" iserver ipath-query
//! iserver      = [iuserinfo "@"] host [":" port]
//! imessagepart = imailbox-ref iuid [isection] [ipartial]
//! imailbox-ref = enc-mailbox [";UIDVALIDITY=" nz-number]
//! iuid         = "/;UID=" nz-number
//! isection     = "/;SECTION=" enc-section
//! ipartial     = "/;PARTIAL=" number ["." nz-number]
//! iurlauth     = [";EXPIRE=" date-time] ";URLAUTH=" access ":" mechanism ":" 32*HEXDIG
//! ```
//! A relative URL is the path alone (`/INBOX;UIDVALIDITY=5/;UID=20`), or from `;UID=` on,
//! relative to a mailbox the caller knows. Keywords are case-insensitive; the mailbox name
//! and the section are %-encoded UTF-8.

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImapUrl {
    /// The user of `imap://user@host`, %-decoded; `None` in a relative URL.
    pub user: Option<String>,
    /// The host (and port) of an absolute URL, as written.
    pub host: Option<String>,
    /// `None`: relative to the mailbox the caller has in mind (the selected one).
    pub mailbox: Option<String>,
    pub uidvalidity: Option<u32>,
    pub uid: u32,
    /// As FETCH BODY[...] takes it (`HEADER`, `1.MIME`, ...); `None`: the whole message.
    pub section: Option<String>,
    /// `(offset, length)` in the section's bytes.
    pub partial: Option<(u32, Option<u32>)>,
    pub expire: Option<String>,
    /// `(access, mechanism, token)` of `;URLAUTH=`.
    pub urlauth: Option<(String, String, String)>,
}

/// Why a URL cannot be used; the caller answers `NO [BADURL <url>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadUrl(pub &'static str);

impl std::fmt::Display for BadUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Strips `key` (case-insensitively) from the front of `s`.
fn take<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let head = s.get(..key.len())?;
    head.eq_ignore_ascii_case(key).then(|| &s[key.len()..])
}

/// A URL's mailbox (already %-decoded UTF-8, RFC 5092 section 3.3) as the store names it:
/// no trailing delimiter, INBOX in capitals. The same for every use of URLs, so what
/// GENURLAUTH signs is what URLFETCH, BURL and CATENATE read.
pub fn store_name(mailbox: &str) -> String {
    let m = mailbox.trim_end_matches('/');
    if m.eq_ignore_ascii_case("INBOX") {
        "INBOX".into()
    } else {
        m.to_string()
    }
}

/// %-decoding, to UTF-8.
pub fn percent_decode(s: &str) -> Result<String, BadUrl> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or(BadUrl("a % escape is cut short"))?;
            let v = u8::from_str_radix(hex, 16).map_err(|_| BadUrl("a % escape is not hex"))?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| BadUrl("a %-encoded name is not UTF-8"))
}

/// %-encoding of what is not an unreserved or sub-delim character, for writing URLs.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~!$'()*+,&=:@".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

fn nz32(s: &str) -> Result<u32, BadUrl> {
    match s.parse::<u32>() {
        Ok(n) if n > 0 && s.bytes().all(|c| c.is_ascii_digit()) => Ok(n),
        _ => Err(BadUrl("expected a non-zero 32-bit number")),
    }
}

/// Splits `s` at the first of `stops` (or its end).
fn until<'a>(s: &'a str, stops: &[&str]) -> (&'a str, &'a str) {
    let lower = s.to_ascii_lowercase();
    let at = stops
        .iter()
        .filter_map(|k| lower.find(&k.to_ascii_lowercase()))
        .min()
        .unwrap_or(s.len());
    s.split_at(at)
}

pub fn parse(url: &str) -> Result<ImapUrl, BadUrl> {
    let mut u = ImapUrl::default();
    let mut rest = url;
    if let Some(r) = take(rest, "imap://") {
        let end = r.find('/').ok_or(BadUrl("an IMAP URL names a message"))?;
        let (server, path) = r.split_at(end);
        let host = match server.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo
                    .split(';')
                    .next()
                    .filter(|u| !u.is_empty())
                    .map(percent_decode)
                    .transpose()?;
                u.user = user;
                host
            }
            None => server,
        };
        if host.is_empty() {
            return Err(BadUrl("no host"));
        }
        u.host = Some(host.to_string());
        rest = path;
    }
    if let Some(r) = rest.strip_prefix('/') {
        let (mailbox, r) = until(r, &[";UIDVALIDITY=", "/;UID="]);
        if mailbox.is_empty() {
            return Err(BadUrl("no mailbox"));
        }
        u.mailbox = Some(percent_decode(mailbox)?);
        rest = r;
        if let Some(r) = take(rest, ";UIDVALIDITY=") {
            let (n, r) = until(r, &["/"]);
            u.uidvalidity = Some(nz32(n)?);
            rest = r;
        }
        rest = rest.strip_prefix('/').ok_or(BadUrl("no UID"))?;
    } else if u.host.is_some() {
        return Err(BadUrl("no mailbox"));
    }
    let r = take(rest, ";UID=").ok_or(BadUrl("no UID"))?;
    let (n, r) = until(r, &["/", ";EXPIRE=", ";URLAUTH="]);
    u.uid = nz32(n)?;
    rest = r;
    if let Some(r) = take(rest, "/;SECTION=") {
        let (s, r) = until(r, &["/;PARTIAL=", ";EXPIRE=", ";URLAUTH="]);
        let s = percent_decode(s)?;
        if s.is_empty() {
            return Err(BadUrl("an empty section"));
        }
        u.section = Some(s);
        rest = r;
    }
    if let Some(r) = take(rest, "/;PARTIAL=") {
        let (p, r) = until(r, &[";EXPIRE=", ";URLAUTH="]);
        u.partial = Some(match p.split_once('.') {
            Some((o, l)) => (
                o.parse().map_err(|_| BadUrl("a bad PARTIAL offset"))?,
                Some(nz32(l)?),
            ),
            None => (p.parse().map_err(|_| BadUrl("a bad PARTIAL offset"))?, None),
        });
        rest = r;
    }
    if let Some(r) = take(rest, ";EXPIRE=") {
        let (e, r) = until(r, &[";URLAUTH="]);
        u.expire = Some(percent_decode(e)?);
        rest = r;
    }
    if let Some(r) = take(rest, ";URLAUTH=") {
        let mut it = r.splitn(3, ':');
        let access = it.next().unwrap_or_default();
        if access.is_empty() {
            return Err(BadUrl("URLAUTH without an access identifier"));
        }
        let mech = it.next().unwrap_or_default().to_string();
        let token = it.next().unwrap_or_default().to_string();
        u.urlauth = Some((access.to_string(), mech, token));
        rest = "";
    }
    if !rest.is_empty() {
        return Err(BadUrl("unexpected text in the URL"));
    }
    Ok(u)
}

/// What `u` names in `raw`: the message, or the section as FETCH BODY[section] returns it
/// (`meta` is needed then), cut to `;PARTIAL=`.
pub fn cut(
    raw: &[u8],
    meta: Option<&crate::mime::MessageMeta>,
    u: &ImapUrl,
) -> Result<Vec<u8>, BadUrl> {
    let mut bytes = match (&u.section, meta) {
        (None, _) => raw.to_vec(),
        (Some(s), Some(meta)) => {
            let section = super::section::parse_section(&s.to_ascii_uppercase())
                .map_err(|_| BadUrl("a bad section"))?;
            super::section::extract(raw, meta, &section)
                .ok_or(BadUrl("no such section"))?
                .into_owned()
        }
        (Some(_), None) => return Err(BadUrl("the message cannot be read now")),
    };
    if let Some((offset, len)) = u.partial {
        let start = (offset as usize).min(bytes.len());
        let end = len.map_or(bytes.len(), |l| {
            start.saturating_add(l as usize).min(bytes.len())
        });
        bytes = bytes[start..end].to_vec();
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_rfc_4469_and_5092() {
        let u = parse("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER").unwrap();
        assert_eq!(u.mailbox.as_deref(), Some("Drafts"));
        assert_eq!(u.uidvalidity, Some(385759045));
        assert_eq!(u.uid, 20);
        assert_eq!(u.section.as_deref(), Some("HEADER"));
        assert_eq!(u.host, None);

        let u = parse("imap://bob@example.org:143/INBOX/;uid=7/;SECTION=1.2.MIME/;PARTIAL=0.1024")
            .unwrap();
        assert_eq!(u.user.as_deref(), Some("bob"));
        assert_eq!(u.host.as_deref(), Some("example.org:143"));
        assert_eq!(u.mailbox.as_deref(), Some("INBOX"));
        assert_eq!(u.section.as_deref(), Some("1.2.MIME"));
        assert_eq!(u.partial, Some((0, Some(1024))));

        let u = parse("imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:91354a473744909de610943775f92038").unwrap();
        assert_eq!(
            u.urlauth,
            Some((
                "submit+fred".into(),
                "internal".into(),
                "91354a473744909de610943775f92038".into()
            ))
        );

        let u = parse(";UID=3").unwrap();
        assert_eq!((u.mailbox, u.uid), (None, 3));
        let u = parse("/Sent%20Items/%E2%82%AC;UIDVALIDITY=1/;UID=2").unwrap();
        assert_eq!(u.mailbox.as_deref(), Some("Sent Items/€"));
        assert_eq!(percent_encode("Sent Items/€"), "Sent%20Items%2F%E2%82%AC");

        for bad in [
            "",
            "/INBOX",
            "/INBOX/;UID=0",
            "/INBOX/;UID=x",
            "/;UID=1",
            "imap://host",
            "imap:///INBOX/;UID=1",
            "/INBOX;UIDVALIDITY=/;UID=1",
            "/INBOX/;UID=1/;SECTION=",
            "/INBOX/;UID=1/;PARTIAL=a",
            "/INBOX/;UID=1 trailing",
            "/IN%ZZ/;UID=1",
            "/IN%FF/;UID=1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
