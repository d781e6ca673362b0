//! THREAD (RFC 5256 sections 3 and 4): the command grammar, the ORDEREDSUBJECT and
//! REFERENCES algorithms over the messages a search selected, and the response encoder.
//!
//! Hostile headers are bounded: at most [`MAX_REFS`] message-ids are taken from a message's
//! References (the last ones, nearest the parent), loop checks share a step budget, and
//! nothing recurses, so a reply chain as long as the mailbox neither overflows the stack
//! nor takes quadratic time.

use std::collections::HashMap;
use std::fmt;

use super::command::{P, R};
use super::search::{parse_search_key_list, SearchKey};
use super::sort::{base_subject_reply, casemap, parse_charset, sent_date};
use crate::mime::PackedEnvelope;

/// Message-ids kept from one References header (the last ones).
pub const MAX_REFS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadAlgorithm {
    OrderedSubject,
    References,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadCommand {
    pub algorithm: ThreadAlgorithm,
    /// As given; the caller answers `NO [BADCHARSET (UTF-8 US-ASCII)]` unless
    /// [`charset_supported`](super::search::charset_supported).
    pub charset: String,
    /// Implicitly ANDed, as for SEARCH.
    pub keys: Vec<SearchKey>,
}

/// ```text
/// thread     = ["UID" SP] "THREAD" SP thread-alg SP search-criteria
/// thread-alg = "ORDEREDSUBJECT" / "REFERENCES" / thread-alg-ext
/// search-criteria = charset 1*(SP search-key)
/// ```
/// Called after `THREAD `; stops at the CRLF (the caller checks the end).
pub(crate) fn parse_thread(p: &mut P) -> R<ThreadCommand> {
    let algorithm = match p.atom()?.to_ascii_uppercase().as_str() {
        "ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
        "REFERENCES" => ThreadAlgorithm::References,
        other => return p.err(format!("unknown threading algorithm {other}")),
    };
    p.sp()?;
    let charset = parse_charset(p)?;
    if p.at_end() {
        return p.err("THREAD needs a charset and search keys");
    }
    p.sp()?;
    Ok(ThreadCommand {
        algorithm,
        charset,
        keys: parse_search_key_list(p)?,
    })
}

/// One message as THREAD sees it.
#[derive(Clone, Copy)]
pub struct ThreadItem<'a> {
    /// What the response lists: the sequence number, or the UID for UID THREAD.
    pub id: u32,
    /// Unix seconds.
    pub internal_date: i64,
    pub envelope: &'a PackedEnvelope,
}

/// A thread tree node: a message (`id`), or a dummy standing for a missing parent (`None`,
/// only ever at the top level, with at least two children). Dropping, `Debug` (which
/// prints the `thread-list` form) and [`write_thread`] do not recurse, so trees of any
/// depth are safe.
#[derive(Default)]
pub struct Node {
    pub id: Option<u32>,
    pub children: Vec<Node>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let mut stack = std::mem::take(&mut self.children);
        while let Some(mut n) = stack.pop() {
            stack.append(&mut n.children);
        }
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        write_lists(&mut out, std::slice::from_ref(self));
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

/// What the algorithms know of one message.
struct Msg {
    id: u32,
    /// (sent date, position in the input): the total order of section 2.2.
    key: (i64, usize),
    /// The base subject mapped for i;ascii-casemap comparison.
    subject: Vec<u8>,
    reply: bool,
}

fn messages(items: &[ThreadItem]) -> Vec<Msg> {
    items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let (s, reply) = base_subject_reply(it.envelope.subject().unwrap_or_default());
            Msg {
                id: it.id,
                key: (sent_date(it.envelope, it.internal_date), i),
                subject: casemap(&s),
                reply,
            }
        })
        .collect()
}

/// Threads `items` (given in mailbox order, which breaks ties between equal sent dates).
pub fn thread(items: &[ThreadItem], algorithm: ThreadAlgorithm) -> Vec<Node> {
    let msgs = messages(items);
    let forest = match algorithm {
        ThreadAlgorithm::OrderedSubject => ordered_subject(&msgs),
        ThreadAlgorithm::References => references(items, &msgs),
    };
    forest.into_nodes(&msgs)
}

/// The result of either algorithm, in an arena: node `i < msgs.len()` is message `i`,
/// higher nodes are dummies. `kids` are sorted, `top` is the root's children in order.
struct Forest {
    kids: Vec<Vec<usize>>,
    top: Vec<usize>,
}

impl Forest {
    /// Builds the [`Node`] trees bottom-up without recursion.
    fn into_nodes(mut self, msgs: &[Msg]) -> Vec<Node> {
        let mut built: Vec<Option<Node>> = (0..self.kids.len()).map(|_| None).collect();
        // Post-order: a node is built once all of its children are.
        let mut stack: Vec<(usize, bool)> = self.top.iter().rev().map(|&t| (t, false)).collect();
        while let Some((n, done)) = stack.pop() {
            if done {
                let kids = std::mem::take(&mut self.kids[n]);
                built[n] = Some(Node {
                    id: msgs.get(n).map(|m| m.id),
                    children: kids.iter().filter_map(|&k| built[k].take()).collect(),
                });
            } else {
                stack.push((n, true));
                stack.extend(self.kids[n].iter().rev().map(|&k| (k, false)));
            }
        }
        self.top.iter().filter_map(|&t| built[t].take()).collect()
    }
}

/// ORDEREDSUBJECT: messages sorted by base subject, then sent date; each run of one
/// subject is a thread whose first message has all others as (childless) children; the
/// threads are ordered by their first message's sent date.
fn ordered_subject(msgs: &[Msg]) -> Forest {
    let mut order: Vec<usize> = (0..msgs.len()).collect();
    order.sort_by(|&a, &b| (&msgs[a].subject, msgs[a].key).cmp(&(&msgs[b].subject, msgs[b].key)));
    let mut kids = vec![Vec::new(); msgs.len()];
    let mut top = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let first = order[i];
        let mut j = i + 1;
        while j < order.len() && msgs[order[j]].subject == msgs[first].subject {
            kids[first].push(order[j]);
            j += 1;
        }
        top.push(first);
        i = j;
    }
    top.sort_by_key(|&t| msgs[t].key);
    Forest { kids, top }
}

/// Where the `msg-id`s of a header value are (`<` ... `>`), comments and other text
/// skipped.
fn id_spans(raw: &str) -> Vec<(usize, usize)> {
    let b = raw.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'(' => {
                i = super::structure::comment_end(b, i) + 1;
            }
            b'<' => {
                let start = i + 1;
                match b[start..].iter().position(|&c| c == b'>' || c == b'<') {
                    Some(len) if b[start + len] == b'>' => {
                        spans.push((start, start + len));
                        i = start + len + 1;
                    }
                    Some(len) => i = start + len,
                    None => break,
                }
            }
            _ => i += 1,
        }
    }
    spans
}

/// The id at `span` with folding white space removed, if it is `id-left "@" id-right`.
fn valid_id(raw: &str, (start, end): (usize, usize)) -> Option<String> {
    let id: String = raw[start..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let at = id.find('@')?;
    (at > 0 && at + 1 < id.len()).then_some(id)
}

/// The first valid message-id of a header value (Message-ID, In-Reply-To).
fn first_id(raw: &str) -> Option<String> {
    id_spans(raw).into_iter().find_map(|s| valid_id(raw, s))
}

/// The last `max` valid message-ids of a header value (References), in order.
fn last_ids(raw: &str, max: usize) -> Vec<String> {
    let mut v: Vec<String> = id_spans(raw)
        .into_iter()
        .rev()
        .filter_map(|s| valid_id(raw, s))
        .take(max)
        .collect();
    v.reverse();
    v
}

/// The JWZ containers of RFC 5256 REFERENCES, with doubly linked sibling lists so that
/// unlinking is O(1).
#[derive(Clone, Default)]
struct Container {
    msg: Option<usize>,
    parent: Option<usize>,
    first: Option<usize>,
    last: Option<usize>,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Links {
    c: Vec<Container>,
    /// Steps the loop checks may still take; when spent, every link that needs a check is
    /// refused (treated as a loop), which bounds the time hostile headers can cost.
    budget: usize,
}

impl Links {
    fn add(&mut self) -> usize {
        self.c.push(Container::default());
        self.c.len() - 1
    }

    /// Whether `a` is `b` or one of its ancestors (linking `a` under `b` would loop).
    fn is_ancestor(&mut self, a: usize, b: usize) -> bool {
        if a == b {
            return true;
        }
        if self.c[a].first.is_none() {
            return false;
        }
        let mut x = self.c[b].parent;
        while let Some(n) = x {
            if n == a {
                return true;
            }
            if self.budget == 0 {
                return true;
            }
            self.budget -= 1;
            x = self.c[n].parent;
        }
        false
    }

    fn unlink(&mut self, child: usize) {
        let Some(p) = self.c[child].parent.take() else {
            return;
        };
        let (prev, next) = (self.c[child].prev.take(), self.c[child].next.take());
        match prev {
            Some(pv) => self.c[pv].next = next,
            None => self.c[p].first = next,
        }
        match next {
            Some(nx) => self.c[nx].prev = prev,
            None => self.c[p].last = prev,
        }
    }

    /// Appends `child` (which has no parent) to `parent`'s children.
    fn link(&mut self, parent: usize, child: usize) {
        debug_assert!(self.c[child].parent.is_none());
        self.c[child].parent = Some(parent);
        self.c[child].prev = self.c[parent].last;
        match self.c[parent].last {
            Some(l) => self.c[l].next = Some(child),
            None => self.c[parent].first = Some(child),
        }
        self.c[parent].last = Some(child);
    }

    fn children(&self, n: usize) -> Vec<usize> {
        let mut v = Vec::new();
        let mut x = self.c[n].first;
        while let Some(k) = x {
            v.push(k);
            x = self.c[k].next;
        }
        v
    }
}

/// The container of message-id `id`, created (as a dummy) on first sight.
fn container(ids: &mut HashMap<String, usize>, l: &mut Links, id: String) -> usize {
    if let Some(&c) = ids.get(&id) {
        return c;
    }
    let c = l.add();
    ids.insert(id, c);
    c
}

/// REFERENCES (RFC 5256 section 3): link messages by Message-ID / References /
/// In-Reply-To, prune dummies, gather top-level threads by base subject, and sort siblings
/// by sent date.
fn references(items: &[ThreadItem], msgs: &[Msg]) -> Forest {
    let n = msgs.len();
    let mut l = Links {
        c: Vec::with_capacity(n * 2),
        budget: (1 << 22) + 64 * n,
    };
    let mut ids: HashMap<String, usize> = HashMap::new();
    // (1)(A) Container i is message i. Only the first message with a Message-ID owns it;
    // duplicates, and messages without a valid one, get containers no id leads to.
    for (i, it) in items.iter().enumerate() {
        let me = l.add();
        l.c[me].msg = Some(i);
        if let Some(id) = it.envelope.message_id().and_then(first_id) {
            ids.entry(id).or_insert(me);
        }
    }
    for (me, it) in items.iter().enumerate() {
        let env = it.envelope;
        let mut refs = env
            .references()
            .map(|r| last_ids(r, MAX_REFS))
            .unwrap_or_default();
        if refs.is_empty() {
            // No valid References: the first valid id of In-Reply-To, alone.
            refs.extend(env.in_reply_to().and_then(first_id));
        }
        let mut chain: Vec<usize> = refs
            .into_iter()
            .map(|r| container(&mut ids, &mut l, r))
            .collect();
        // A message's own id among its references is ignored.
        chain.retain(|&c| c != me);
        // (B) Each reference is the parent of the next, unless the next already has a
        // parent or the link would make a loop.
        for w in chain.windows(2) {
            let (a, b) = (w[0], w[1]);
            if l.c[b].parent.is_none() && !l.is_ancestor(b, a) {
                l.link(a, b);
            }
        }
        // (C) The last reference is this message's parent, replacing any parent guessed
        // from other messages' references; none if that would make a loop.
        let parent = chain.last().copied().filter(|&p| !l.is_ancestor(me, p));
        if l.c[me].parent != parent {
            l.unlink(me);
            if let Some(p) = parent {
                l.link(p, me);
            }
        }
    }

    // (2) The root's children are the containers without a parent. (3) Prune dummies:
    // bottom-up, a dummy's place is taken by its (pruned) children; at the top level only
    // when there is exactly one, and a dummy left without children goes away. Afterwards
    // `kids[m]` holds message m's children, all messages.
    let total = l.c.len();
    let mut kids: Vec<Vec<usize>> = vec![Vec::new(); total];
    let mut top = Vec::new();
    let mut stack = Vec::new();
    for root in (0..total).filter(|&c| l.c[c].parent.is_none()) {
        stack.push((root, false));
        while let Some((c, done)) = stack.pop() {
            let children = l.children(c);
            if !done {
                stack.push((c, true));
                stack.extend(children.into_iter().map(|k| (k, false)));
                continue;
            }
            let mut v = Vec::with_capacity(children.len());
            for k in children {
                if k < n {
                    v.push(k);
                } else {
                    v.append(&mut kids[k]);
                }
            }
            kids[c] = v;
        }
        if root < n {
            top.push(root);
        } else {
            match kids[root].len() {
                0 => {}
                1 => top.push(kids[root][0]),
                _ => top.push(root),
            }
        }
    }
    drop(l);
    drop(ids);

    let key = |kids: &[Vec<usize>], t: usize| {
        if t < n {
            msgs[t].key
        } else {
            msgs[kids[t][0]].key
        }
    };
    // (4) Sort the top level by sent date, a dummy by its first (earliest) child's.
    for &t in &top {
        if t >= n {
            kids[t].sort_by_key(|&k| msgs[k].key);
        }
    }
    top.sort_by_key(|&t| key(&kids, t));

    // (5) Gather top-level threads with the same base subject.
    let subject = |kids: &[Vec<usize>], t: usize| &msgs[if t < n { t } else { kids[t][0] }].subject;
    let is_reply = |t: usize| t < n && msgs[t].reply;
    // (A), (B): per subject, a dummy if there is one, else preferably a non-reply.
    let mut table: HashMap<Vec<u8>, usize> = HashMap::new();
    for &t in &top {
        let s = subject(&kids, t);
        if s.is_empty() {
            continue;
        }
        match table.get(s) {
            None => {
                table.insert(s.clone(), t);
            }
            Some(&cur) => {
                if cur < n && (t >= n || (is_reply(cur) && !is_reply(t))) {
                    table.insert(s.clone(), t);
                }
            }
        }
    }
    // (C) Merge each other thread into the table's.
    let mut alive = vec![true; kids.len()];
    let mut dummies = Vec::new();
    for &t in &top {
        let s = subject(&kids, t).clone();
        if s.is_empty() {
            continue;
        }
        let x = table[&s];
        if x == t {
            continue;
        }
        alive[t] = false;
        if x >= n && t >= n {
            // (1) Both dummies: the children join.
            let mut moved = std::mem::take(&mut kids[t]);
            kids[x].append(&mut moved);
        } else if x >= n || (is_reply(t) && !is_reply(x)) {
            // (2) Under the dummy; (3) a reply under the original.
            kids[x].push(t);
        } else if t >= n {
            // Not reached: the table prefers dummies. Were it, the message joins the
            // dummy, so that dummies keep holding messages only.
            alive[t] = true;
            alive[x] = false;
            kids[t].push(x);
            table.insert(s, t);
        } else {
            // (4) A new dummy over both.
            alive[x] = false;
            kids.push(vec![x, t]);
            alive.push(true);
            let d = kids.len() - 1;
            dummies.push(d);
            table.insert(s, d);
        }
    }
    top.retain(|&t| alive[t]);
    top.extend(dummies.into_iter().filter(|&d| alive[d]));

    // (6) Sort every set of siblings by sent date, the top level last (a dummy by its
    // first child).
    for v in &mut kids {
        v.sort_by_key(|&k| msgs[k].key);
    }
    top.sort_by_key(|&t| key(&kids, t));
    Forest { kids, top }
}

/// `thread-list`s of `nodes`, back to back (RFC 5256 section 4):
///
/// ```text
/// thread-list    = "(" (thread-members / thread-nested) ")"
/// thread-members = nz-number *(SP nz-number) [SP thread-nested]
/// thread-nested  = 2*thread-list
/// ```
fn write_lists(out: &mut Vec<u8>, nodes: &[Node]) {
    enum Act<'n> {
        List(&'n Node),
        Body(&'n Node),
        Close,
    }
    let mut stack: Vec<Act> = nodes.iter().rev().map(Act::List).collect();
    while let Some(act) = stack.pop() {
        match act {
            Act::Close => out.push(b')'),
            Act::List(n) => {
                out.push(b'(');
                stack.push(Act::Close);
                stack.push(Act::Body(n));
            }
            Act::Body(n) => {
                let mut cur = n;
                if let Some(id) = cur.id {
                    out.extend_from_slice(id.to_string().as_bytes());
                    // A single child continues the chain.
                    while let [only] = cur.children.as_slice() {
                        let Some(id) = only.id else { break };
                        out.push(b' ');
                        out.extend_from_slice(id.to_string().as_bytes());
                        cur = only;
                    }
                    if !cur.children.is_empty() {
                        out.push(b' ');
                    }
                }
                match cur.children.as_slice() {
                    [] => {}
                    // A dummy's only child stands for it.
                    [only] => stack.push(Act::Body(only)),
                    many => stack.extend(many.iter().rev().map(Act::List)),
                }
            }
        }
    }
}

/// `* THREAD (2)(3 6 (4 23)(44 7 96))` CRLF (`* THREAD` CRLF when nothing matched).
pub fn write_thread(out: &mut Vec<u8>, threads: &[Node]) {
    out.extend_from_slice(b"* THREAD");
    if !threads.is_empty() {
        out.push(b' ');
        write_lists(out, threads);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::datetime;
    use crate::mime::meta::EnvelopeMeta;

    fn parse(s: &str) -> R<ThreadCommand> {
        let b = [s.as_bytes(), b"\r\n"].concat();
        let mut p = P {
            b: &b,
            i: 0,
            tag: "t1".into(),
        };
        let r = parse_thread(&mut p)?;
        p.end()?;
        Ok(r)
    }

    #[test]
    fn commands_parse() {
        let t = parse("ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000").unwrap();
        assert_eq!(t.algorithm, ThreadAlgorithm::OrderedSubject);
        assert_eq!(t.charset, "UTF-8");
        assert_eq!(
            t.keys,
            vec![SearchKey::Since(datetime::days_from_civil(2000, 3, 5))]
        );
        let t = parse("references \"US-ASCII\" TEXT \"gewp\" UNSEEN").unwrap();
        assert_eq!(t.algorithm, ThreadAlgorithm::References);
        assert_eq!(t.charset, "US-ASCII");
        assert_eq!(
            t.keys,
            vec![SearchKey::Text("gewp".into()), SearchKey::Unseen]
        );
        for bad in [
            "",
            "REFS UTF-8 ALL",
            "REFERENCES",
            "REFERENCES UTF-8",
            "REFERENCES ALL",
            "REFERENCES UTF-8 FROB",
            "(REFERENCES) UTF-8 ALL",
            "REFERENCES  UTF-8 ALL",
        ] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(e.tag, "t1");
            assert!(!e.reason.is_empty());
        }
    }

    fn node(id: u32, children: Vec<Node>) -> Node {
        Node {
            id: Some(id),
            children,
        }
    }

    fn leaf(id: u32) -> Node {
        node(id, vec![])
    }

    fn written(threads: &[Node]) -> String {
        let mut out = Vec::new();
        write_thread(&mut out, threads);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn responses_encode() {
        // RFC 5256 section 4.
        let rfc = vec![
            leaf(2),
            node(
                3,
                vec![node(
                    6,
                    vec![
                        node(4, vec![leaf(23)]),
                        node(44, vec![node(7, vec![leaf(96)])]),
                    ],
                )],
            ),
        ];
        assert_eq!(written(&rfc), "* THREAD (2)(3 6 (4 23)(44 7 96))\r\n");
        assert_eq!(format!("{:?}", rfc[1]), "(3 6 (4 23)(44 7 96))");
        assert_eq!(written(&[]), "* THREAD\r\n");
        let dummy = Node {
            id: None,
            children: vec![leaf(3), node(5, vec![leaf(8), leaf(9)])],
        };
        assert_eq!(written(&[dummy]), "* THREAD ((3)(5 (8)(9)))\r\n");
        // A dummy with one child is written as that child.
        let lone = Node {
            id: None,
            children: vec![node(4, vec![leaf(5)])],
        };
        assert_eq!(written(&[leaf(1), lone]), "* THREAD (1)(4 5)\r\n");
    }

    /// (Message-ID, References, In-Reply-To, Subject, date): "" is absent; the date is
    /// the internal date, in days.
    type Spec<'s> = (&'s str, &'s str, &'s str, &'s str, i64);

    fn metas(specs: &[Spec]) -> Vec<PackedEnvelope> {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        specs
            .iter()
            .map(|&(mid, refs, irt, subject, _)| {
                PackedEnvelope::pack(&EnvelopeMeta {
                    message_id: opt(mid),
                    references: opt(refs),
                    in_reply_to: opt(irt),
                    subject: opt(subject),
                    ..Default::default()
                })
            })
            .collect()
    }

    /// Threads messages numbered 1.. in the given order.
    fn threaded(specs: &[Spec], alg: ThreadAlgorithm) -> String {
        let metas = metas(specs);
        let items: Vec<ThreadItem> = specs
            .iter()
            .zip(&metas)
            .enumerate()
            .map(|(i, (s, meta))| ThreadItem {
                id: i as u32 + 1,
                internal_date: s.4 * 86_400,
                envelope: meta,
            })
            .collect();
        let out = written(&thread(&items, alg));
        out.strip_prefix("* THREAD")
            .unwrap()
            .strip_suffix("\r\n")
            .unwrap()
            .trim_start()
            .to_string()
    }

    #[test]
    fn ordered_subject() {
        use ThreadAlgorithm::OrderedSubject as O;
        let specs = [
            ("", "", "", "a", 1),
            ("", "", "", "Re: b", 2),
            ("", "", "", "b", 3),
            ("", "", "", "Re: a", 4),
            ("", "", "", "c", 0),
            ("", "", "", "re: A", 5),
            ("", "", "", "[x] B (fwd)", 2),
            ("", "", "", "", 9),
            ("", "", "", "", 8),
        ];
        // Threads by first date: c (5), a (1, 4, 6), b (2 and 7 tie on date: mailbox
        // order, then 3), "" (9, 8).
        assert_eq!(threaded(&specs, O), "(5)(1 (4)(6))(2 (7)(3))(9 8)");
        assert_eq!(threaded(&[], O), "");
        assert_eq!(threaded(&specs[..1], O), "(1)");
    }

    #[test]
    fn references_rfc_example() {
        use ThreadAlgorithm::References as Refs;
        // The tree of RFC 5256 section 4, numbered 1..=8 in this order:
        // 2, 3, 6, 4, 23, 44, 7, 96.
        let specs = [
            ("<2@x>", "", "", "two", 1),
            ("<3@x>", "", "", "three", 2),
            ("<6@x>", "<3@x>", "", "Re: three", 3),
            ("<4@x>", "<3@x> <6@x>", "", "Re: three", 4),
            ("<23@x>", "", "<4@x> (Ann's message)", "Re: three", 5),
            ("<44@x>", "<3@x>\t<6@x>", "", "Re: three", 6),
            ("<7@x>", "<6@x> <44@x>", "<44@x>", "Re: three", 7),
            ("<96@x>", "<7@x>", "", "Re: three", 8),
        ];
        assert_eq!(threaded(&specs, Refs), "(1)(2 3 (4 5)(6 7 8))");
        // Arrival order does not matter, only the dates.
        let mut rev = specs;
        rev.reverse();
        assert_eq!(threaded(&rev, Refs), "(8)(7 6 (5 4)(3 2 1))");
    }

    #[test]
    fn references_dummies_and_subjects() {
        use ThreadAlgorithm::References as Refs;
        // Two replies to a missing message: a dummy at the top.
        let specs = [
            ("<1@x>", "<gone@x>", "", "", 2),
            ("<2@x>", "<gone@x>", "", "", 1),
        ];
        assert_eq!(threaded(&specs, Refs), "((2)(1))");
        // One reply to a missing message: promoted.
        assert_eq!(threaded(&specs[..1], Refs), "(1)");
        // A missing message between two present ones: spliced out.
        let specs = [
            ("<a@x>", "", "", "", 1),
            ("<b@x>", "<a@x> <gone@x>", "", "", 2),
            ("<c@x>", "<a@x> <gone@x>", "", "", 3),
        ];
        assert_eq!(threaded(&specs, Refs), "(1 (2)(3))");
        // Without references, a reply goes under the original with the same base subject;
        // two originals get a dummy; empty subjects stay apart.
        let specs = [
            ("<1@x>", "", "", "hello", 1),
            ("<2@x>", "", "", "Re: Hello", 2),
            ("<3@x>", "", "", "HELLO", 3),
            ("<4@x>", "", "", "other", 4),
            ("<5@x>", "", "", "", 5),
            ("<6@x>", "", "", "Re:", 6),
        ];
        assert_eq!(threaded(&specs, Refs), "((1 2)(3))(4)(5)(6)");
        // A reply older than the original still goes under it.
        let specs = [
            ("<1@x>", "", "", "Re: hello", 1),
            ("<2@x>", "", "", "hello", 2),
        ];
        assert_eq!(threaded(&specs, Refs), "(2 1)");
        // A dummy's subject is its first child's; another dummy with it merges.
        let specs = [
            ("<1@x>", "<p@x>", "", "Re: s", 1),
            ("<2@x>", "<p@x>", "", "Re: s", 2),
            ("<3@x>", "<q@x>", "", "Re: s", 3),
            ("<4@x>", "<q@x>", "", "Re: s", 4),
            ("<5@x>", "", "", "s", 5),
        ];
        assert_eq!(threaded(&specs, Refs), "((1)(2)(3)(4)(5))");
    }

    #[test]
    fn references_odd_ids() {
        use ThreadAlgorithm::References as Refs;
        // A duplicate Message-ID: only the first message owns it.
        let specs = [
            ("<a@x>", "", "", "", 1),
            ("<a@x>", "", "", "", 2),
            ("<c@x>", "", "<a@x>", "", 3),
        ];
        assert_eq!(threaded(&specs, Refs), "(1 3)(2)");
        // Invalid ids are ignored: the In-Reply-To is used when References has none.
        let specs = [
            ("<a@x>", "", "", "", 1),
            ("b@x", "<nonsense> junk", "<a@x>", "", 2),
            ("", "<a @\r\n x>", "", "", 3),
        ];
        assert_eq!(threaded(&specs, Refs), "(1 (2)(3))");
        assert_eq!(last_ids("<a@b> (<c@d>) <e@f", 10), vec!["a@b"]);
        assert_eq!(last_ids("<a@b> <c@d> <e@f>", 2), vec!["c@d", "e@f"]);
        assert_eq!(first_id("junk <@x> <x@> <<y@z> <a@b>"), Some("y@z".into()));
    }

    #[test]
    fn references_loops_do_not_hang() {
        use ThreadAlgorithm::References as Refs;
        // Referencing itself.
        let specs = [
            ("<a@x>", "<a@x>", "", "", 1),
            ("<b@x>", "", "<b@x>", "", 2),
            ("<c@x>", "<c@x> <c@x> <a@x> <c@x>", "", "", 3),
        ];
        assert_eq!(threaded(&specs, Refs), "(1 3)(2)");
        // A cycle of two and of three.
        let specs = [("<a@x>", "<b@x>", "", "", 1), ("<b@x>", "<a@x>", "", "", 2)];
        assert_eq!(threaded(&specs, Refs), "(2 1)");
        let specs = [
            ("<a@x>", "<c@x>", "", "", 1),
            ("<b@x>", "<a@x>", "", "", 2),
            ("<c@x>", "<b@x>", "", "", 3),
        ];
        assert_eq!(threaded(&specs, Refs), "(3 1 2)");
        // A loop inside one References header.
        let specs = [
            ("<a@x>", "", "", "", 1),
            ("<z@x>", "<a@x> <b@x> <a@x> <b@x>", "", "", 2),
        ];
        assert_eq!(threaded(&specs, Refs), "(1 2)");
    }

    #[test]
    fn deep_and_wide_input_is_bounded() {
        use ThreadAlgorithm::References as Refs;
        const N: usize = 100_000;
        let ids: Vec<String> = (0..N).map(|i| format!("<{i}@x>")).collect();
        // A reply chain as long as the mailbox, in order and the other way round.
        let forward: Vec<Spec> = (0..N)
            .map(|i| {
                (
                    ids[i].as_str(),
                    if i > 0 { ids[i - 1].as_str() } else { "" },
                    "",
                    "",
                    i as i64,
                )
            })
            .collect();
        let backward: Vec<Spec> = (0..N)
            .map(|i| {
                (
                    ids[i].as_str(),
                    if i + 1 < N { ids[i + 1].as_str() } else { "" },
                    "",
                    "",
                    i as i64,
                )
            })
            .collect();
        for specs in [&forward, &backward] {
            let metas = metas(specs);
            let items: Vec<ThreadItem> = metas
                .iter()
                .enumerate()
                .map(|(i, meta)| ThreadItem {
                    id: i as u32 + 1,
                    internal_date: i as i64,
                    envelope: meta,
                })
                .collect();
            let t = thread(&items, Refs);
            assert_eq!(t.len(), 1);
            let mut out = Vec::new();
            write_thread(&mut out, &t);
            // "* THREAD (" and N numbers in one chain.
            assert_eq!(out.iter().filter(|&&c| c == b' ').count(), N + 1);
            assert!(
                out.starts_with(b"* THREAD (1 2 3 ") || out.starts_with(b"* THREAD (100000 99999 ")
            );
        }
        // Loop checks that would each walk a long chain: a chain of D messages, K dummies
        // with a child each, then K messages linking the chain's end above each dummy.
        const D: usize = 20_000;
        const K: usize = 10_000;
        let x: Vec<String> = (0..K).map(|j| format!("<x{j}@x>")).collect();
        let pairs: Vec<String> = (0..K).map(|j| format!("{} {}", ids[D - 1], x[j])).collect();
        let mut specs: Vec<Spec> = forward[..D].to_vec();
        specs.extend((0..K).map(|j| (ids[D + j].as_str(), x[j].as_str(), "", "", 0)));
        specs.extend((0..K).map(|j| (ids[D + K + j].as_str(), pairs[j].as_str(), "", "", 0)));
        let started = std::time::Instant::now();
        let out = threaded(&specs, Refs);
        assert!(out.starts_with("("), "{}", &out[..40]);
        // Unbounded, this is D * K = 2e8 steps; the budget keeps it to a few million.
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        let mut l = Links {
            c: Vec::new(),
            budget: 10,
        };
        for i in 0..100 {
            let c = l.add();
            if i > 0 {
                l.link(c - 1, c);
            }
        }
        assert!(
            !l.is_ancestor(99, 0),
            "a childless container is no ancestor"
        );
        assert!(l.is_ancestor(0, 5));
        assert!(!l.is_ancestor(5, 4));
        // Out of budget, every check says "loop", so nothing more is linked.
        assert!(l.is_ancestor(1, 99));
        assert_eq!(l.budget, 0);
        assert!(l.is_ancestor(3, 2));

        // Huge References headers: only the last MAX_REFS ids count.
        let long: String = (0..5_000).map(|i| format!("<r{i}@x> ")).collect();
        let refs = last_ids(&long, MAX_REFS);
        assert_eq!(refs.len(), MAX_REFS);
        assert_eq!(refs[MAX_REFS - 1], "r4999@x");
        let specs: Vec<Spec> = (0..2_000)
            .map(|i| (ids[i].as_str(), long.as_str(), "", "", i as i64))
            .collect();
        // All are replies to r4999, which is missing: one dummy over all of them.
        let out = threaded(&specs, Refs);
        assert!(out.starts_with("((1)(2)(3)"), "{}", &out[..40]);
    }
}
