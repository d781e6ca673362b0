//! The cluster's keys in etcd. Values stay small (names, a serial and an object key).
//!
//! ```text
//! /ringmail/<cluster>/layout              partition count, written once when the cluster is made
//! /ringmail/<cluster>/nodes/<node>        a member, under the node's lease
//! /ringmail/<cluster>/owner/<p:05>        the owning node, under its lease; create revision = epoch
//! /ringmail/<cluster>/manifest/<p:05>     "<serial> <object key>" of the published manifest
//! /ringmail/<cluster>/assign/<p:05>       where an operator asked the partition to move
//! /ringmail/<cluster>/serving/<p:05>      "<node> <epoch>" once the owner has opened it
//! /ringmail/<cluster>/drain/<node>        present while the node is being drained
//! /ringmail/<cluster>/secret              what nodes show each other on their cluster ports
//! /ringmail/<cluster>/released/<p:05>     the epoch of the last ownership handed over cleanly
//! ```

#[derive(Clone, Debug)]
pub struct EtcdKeys {
    root: String,
}

impl EtcdKeys {
    pub fn new(cluster: &str) -> Self {
        Self {
            root: format!("/ringmail/{cluster}/"),
        }
    }

    pub fn layout(&self) -> String {
        format!("{}layout", self.root)
    }
    pub fn nodes(&self) -> String {
        format!("{}nodes/", self.root)
    }
    pub fn node(&self, node: &str) -> String {
        format!("{}{node}", self.nodes())
    }
    pub fn owners(&self) -> String {
        format!("{}owner/", self.root)
    }
    pub fn owner(&self, partition: u32) -> String {
        format!("{}{partition:05}", self.owners())
    }
    pub fn manifests(&self) -> String {
        format!("{}manifest/", self.root)
    }
    pub fn manifest(&self, partition: u32) -> String {
        format!("{}{partition:05}", self.manifests())
    }
    pub fn assigns(&self) -> String {
        format!("{}assign/", self.root)
    }
    pub fn assign(&self, partition: u32) -> String {
        format!("{}{partition:05}", self.assigns())
    }
    pub fn servings(&self) -> String {
        format!("{}serving/", self.root)
    }
    pub fn serving(&self, partition: u32) -> String {
        format!("{}{partition:05}", self.servings())
    }
    pub fn releaseds(&self) -> String {
        format!("{}released/", self.root)
    }
    pub fn released(&self, partition: u32) -> String {
        format!("{}{partition:05}", self.releaseds())
    }
    pub fn secret(&self) -> String {
        format!("{}secret", self.root)
    }
    pub fn drains(&self) -> String {
        format!("{}drain/", self.root)
    }
    pub fn drain(&self, node: &str) -> String {
        format!("{}{node}", self.drains())
    }

    /// The partition a key under `prefix` names (`.../owner/00003` → 3).
    pub fn partition_in(prefix: &str, key: &[u8]) -> Option<u32> {
        std::str::from_utf8(key)
            .ok()?
            .strip_prefix(prefix)?
            .parse()
            .ok()
    }

    /// The node a key under `prefix` names.
    pub fn name_in(prefix: &str, key: &[u8]) -> Option<String> {
        Some(
            std::str::from_utf8(key)
                .ok()?
                .strip_prefix(prefix)?
                .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back() {
        let k = EtcdKeys::new("c1");
        assert_eq!(k.owner(3), "/ringmail/c1/owner/00003");
        assert_eq!(
            EtcdKeys::partition_in(&k.owners(), k.owner(3).as_bytes()),
            Some(3)
        );
        assert_eq!(
            EtcdKeys::partition_in(&k.owners(), k.manifest(3).as_bytes()),
            None
        );
        assert_eq!(
            EtcdKeys::name_in(&k.nodes(), k.node("n2").as_bytes()).as_deref(),
            Some("n2")
        );
    }
}
