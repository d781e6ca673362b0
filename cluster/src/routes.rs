//! Where each partition is served, as every node keeps it: the owner map, watched in etcd.
//!
//! A session's login and a delivery's recipients are routed by this map without asking
//! etcd: it is read once at start (`serving/` and `nodes/` keys), then kept current by a
//! watch from the revision of that read. A node's `serving` key says it has opened the
//! partition (after its takeover manifest was published), under its lease: a dead node's
//! keys vanish with its lease, so its partitions route nowhere until another node serves
//! them. A route that is behind (a move under way) costs the request a "try again" from
//! the node it reached, never a wrong answer: that node checks its own ownership.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::etcd_keys::EtcdKeys;

/// Where a partition's requests go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// This node serves it.
    Here,
    /// Another node serves it, at this cluster address.
    Node { node: &'a str, addr: &'a str },
    /// No node serves it now (a takeover under way), or its node has no cluster address.
    Nowhere,
}

/// A snapshot of the owner map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    me: String,
    /// Partition → (serving node, epoch).
    serving: BTreeMap<u32, (String, u64)>,
    /// Member → its cluster address (members without one are absent).
    addrs: BTreeMap<String, String>,
    /// The etcd revision this snapshot is current at.
    pub revision: i64,
}

impl Routes {
    pub fn new(me: &str) -> Self {
        Self {
            me: me.to_string(),
            ..Self::default()
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn route(&self, partition: u32) -> Route<'_> {
        match self.serving.get(&partition) {
            Some((node, _)) if *node == self.me => Route::Here,
            Some((node, _)) => match self.addrs.get(node) {
                Some(addr) => Route::Node { node, addr },
                None => Route::Nowhere,
            },
            None => Route::Nowhere,
        }
    }

    /// The serving node and epoch of `partition`.
    pub fn serving(&self, partition: u32) -> Option<(&str, u64)> {
        self.serving.get(&partition).map(|(n, e)| (n.as_str(), *e))
    }

    /// Takes one key's new value (`None`: deleted) into the map; whether it changed.
    pub fn apply(&mut self, keys: &EtcdKeys, key: &[u8], value: Option<&[u8]>) -> bool {
        let servings = keys.servings();
        let nodes = keys.nodes();
        if let Some(p) = EtcdKeys::partition_in(&servings, key) {
            let parsed = value.and_then(parse_serving);
            return match parsed {
                Some(v) => self.serving.insert(p, v.clone()) != Some(v),
                None => self.serving.remove(&p).is_some(),
            };
        }
        if let Some(node) = EtcdKeys::name_in(&nodes, key) {
            return match value.and_then(member_address) {
                Some(a) => self.addrs.insert(node, a.clone()) != Some(a),
                None => self.addrs.remove(&node).is_some(),
            };
        }
        false
    }
}

fn parse_serving(v: &[u8]) -> Option<(String, u64)> {
    let v = std::str::from_utf8(v).ok()?;
    let (node, epoch) = v.split_once(' ')?;
    Some((node.to_string(), epoch.parse().ok()?))
}

/// A member key's cluster address (`{"internal": "10.0.0.2:7400", ...}`).
pub fn member_address(v: &[u8]) -> Option<String> {
    let j: serde_json::Value = serde_json::from_slice(v).ok()?;
    Some(j.get("internal")?.as_str()?.to_string())
}

/// The current [`Routes`], shared by the control plane (which replaces it) and the shards
/// (which read it). A reader compares [`RouteBoard::version`] with the one it copied and
/// takes the new map only when it changed.
#[derive(Debug, Default)]
pub struct RouteBoard {
    current: RwLock<Arc<Routes>>,
    version: AtomicU64,
}

impl RouteBoard {
    pub fn new(me: &str) -> Self {
        Self {
            current: RwLock::new(Arc::new(Routes::new(me))),
            version: AtomicU64::new(0),
        }
    }

    pub fn current(&self) -> Arc<Routes> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn replace(&self, r: Routes) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(r);
        self.version.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_serving_and_member_keys() {
        let k = EtcdKeys::new("c");
        let mut r = Routes::new("n1");
        assert_eq!(r.route(0), Route::Nowhere);
        assert!(r.apply(&k, k.serving(0).as_bytes(), Some(b"n1 7")));
        assert!(r.apply(&k, k.serving(1).as_bytes(), Some(b"n2 9")));
        assert_eq!(r.route(0), Route::Here);
        // Served by a node whose address is not known yet.
        assert_eq!(r.route(1), Route::Nowhere);
        let member = br#"{"started":1,"lease":5,"internal":"127.0.0.1:7402"}"#;
        assert!(r.apply(&k, k.node("n2").as_bytes(), Some(member)));
        assert!(!r.apply(&k, k.node("n2").as_bytes(), Some(member)));
        assert_eq!(
            r.route(1),
            Route::Node {
                node: "n2",
                addr: "127.0.0.1:7402"
            }
        );
        assert_eq!(r.serving(1), Some(("n2", 9)));
        // The owner's lease ended: its keys are deleted.
        assert!(r.apply(&k, k.serving(1).as_bytes(), None));
        assert_eq!(r.route(1), Route::Nowhere);
        assert!(r.apply(&k, k.node("n2").as_bytes(), None));
        // Keys of no interest change nothing; a broken value counts as deleted.
        assert!(!r.apply(&k, k.manifest(1).as_bytes(), Some(b"3 x")));
        assert!(!r.apply(&k, k.serving(2).as_bytes(), Some(b"garbage")));
    }

    #[test]
    fn a_board_counts_replacements() {
        let b = RouteBoard::new("n1");
        let v = b.version();
        let mut r = Routes::new("n1");
        r.revision = 5;
        b.replace(r);
        assert_ne!(b.version(), v);
        assert_eq!(b.current().revision, 5);
    }
}
