//! The `[cluster]` section of the configuration file. Without it nothing of this crate runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's name: the prefix of its etcd keys (`/ringmail/<name>/`) and, unless
    /// `s3.prefix` says otherwise, of its objects. Several clusters can share etcd and a
    /// bucket under different names.
    #[serde(default = "default_name")]
    pub name: String,
    /// This node's name, unique in the cluster (default: the host name).
    pub node: String,
    /// etcd client URLs, e.g. `["http://10.0.0.1:2379", "http://10.0.0.2:2379"]`.
    pub etcd: Vec<String>,
    /// Seconds an owner's lease lives without a keep-alive: a dead node's partitions are
    /// taken over after this, and a node cut off from etcd this long drops its partitions.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl_secs: u64,
    /// Objects no published manifest names any more (replaced checkpoints, compacted
    /// segments, chunks the sealed segments hold) are deleted this long after they were
    /// stored: a node still reading an older manifest finds them meanwhile.
    #[serde(default = "default_gc_grace")]
    pub gc_grace_secs: u64,
    /// How often an owner looks for such objects of its partitions.
    #[serde(default = "default_gc_interval")]
    pub gc_interval_secs: u64,
    /// Tail chunks of one partition being stored at once. While they are in flight, the
    /// batches written meanwhile wait and go together as the next chunk: fewer in flight
    /// means fewer, larger PUTs (less S3 and CPU work per message), more means less waiting
    /// for a free slot when PUTs are slow (a distant S3). Default 2.
    #[serde(default = "default_ship_in_flight")]
    pub ship_in_flight: usize,
    /// At least this long between the starts of one partition's chunk uploads (default 0:
    /// each as soon as a slot is free). A longer interval batches batches: at most
    /// 1000 / interval PUTs per second per partition, each acknowledgement waiting up to
    /// that much longer (docs/cluster.md, the capacity model).
    #[serde(default)]
    pub ship_interval_ms: u64,
    /// This node's cluster port: the other nodes forward deliveries (LMTP) and proxy IMAP
    /// and POP3 sessions to it for the partitions it serves. Unset: the node takes part in
    /// ownership, but a client reaching it for another node's account is told to try again
    /// (and other nodes cannot send it theirs). Keep it on a private network.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
    /// The address the other nodes reach the cluster port at (default: `listen`; needed when
    /// `listen` is a wildcard address such as `0.0.0.0:7400`).
    #[serde(default)]
    pub advertise: Option<String>,
    pub s3: S3Config,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The S3 endpoint, e.g. `http://127.0.0.1:3900` (Garage), `http://minio:9000`, or
    /// absent for AWS (the region's endpoint).
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// Key prefix of this cluster's objects (default: the cluster name).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Seconds a request may take before it is retried or fails (default 10).
    #[serde(default = "default_s3_timeout")]
    pub timeout_secs: u64,
    /// Sign each request's payload hash (SigV4 `x-amz-content-sha256`) instead of sending it
    /// as `UNSIGNED-PAYLOAD` (default false: a SHA-256 of every byte on both sides, which the
    /// objects' own CRCs and TLS make redundant; set it for a plain-HTTP store on a network
    /// you do not trust).
    #[serde(default)]
    pub sign_payload: bool,
}

fn default_name() -> String {
    "ringmail".into()
}
fn default_lease_ttl() -> u64 {
    5
}
fn default_gc_grace() -> u64 {
    3600
}
fn default_gc_interval() -> u64 {
    300
}
fn default_ship_in_flight() -> usize {
    2
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_s3_timeout() -> u64 {
    10
}

impl ClusterConfig {
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_secs.max(1))
    }

    /// The address the other nodes reach this node's cluster port at.
    pub fn advertised(&self) -> Option<String> {
        match (&self.advertise, self.listen) {
            (Some(a), _) => Some(a.clone()),
            (None, Some(l)) if !l.ip().is_unspecified() => Some(l.to_string()),
            _ => None,
        }
    }

    /// The prefix of this cluster's objects in the bucket.
    pub fn object_prefix(&self) -> &str {
        self.s3.prefix.as_deref().unwrap_or(&self.name)
    }

    /// Refuses a configuration that cannot work, with the reason.
    pub fn validate(&self) -> Result<(), String> {
        if self.node.is_empty() || self.node.contains('/') {
            return Err(format!(
                "cluster.node {:?} must be a non-empty name without '/'",
                self.node
            ));
        }
        if self.name.is_empty() || self.name.contains('/') {
            return Err(format!(
                "cluster.name {:?} must be a non-empty name without '/'",
                self.name
            ));
        }
        if self.etcd.is_empty() {
            return Err("cluster.etcd lists no endpoint".into());
        }
        if !(1..=3600).contains(&self.lease_ttl_secs) {
            return Err("cluster.lease_ttl_secs must be between 1 and 3600".into());
        }
        if !(1..=64).contains(&self.ship_in_flight) {
            return Err("cluster.ship_in_flight must be between 1 and 64".into());
        }
        if self.ship_interval_ms > 10_000 {
            return Err("cluster.ship_interval_ms must be at most 10000".into());
        }
        if self.s3.bucket.is_empty() {
            return Err("cluster.s3.bucket is empty".into());
        }
        if self.advertise.is_some() && self.listen.is_none() {
            return Err(
                "cluster.advertise is set but cluster.listen is not: nothing would listen there"
                    .into(),
            );
        }
        if let Some(a) = &self.advertise {
            if a.parse::<std::net::SocketAddr>().is_err() {
                return Err(format!("cluster.advertise {a:?} must be IP:PORT"));
            }
        }
        if self.listen.is_some() && self.advertised().is_none() {
            return Err(
                "cluster.listen is a wildcard address: set cluster.advertise to the address \
                 the other nodes reach this one at"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_section_takes_the_defaults() {
        // The frontends parse TOML; JSON through the same derive checks the defaults.
        let c: ClusterConfig = serde_json::from_str(
            r#"{"node":"a","etcd":["http://127.0.0.1:2379"],
                "s3":{"bucket":"b","access_key":"k","secret_key":"s"}}"#,
        )
        .unwrap();
        assert_eq!(c.name, "ringmail");
        assert_eq!(c.lease_ttl(), Duration::from_secs(5));
        assert_eq!(c.object_prefix(), "ringmail");
        assert_eq!(c.s3.region, "us-east-1");
        assert_eq!((c.ship_in_flight, c.ship_interval_ms), (2, 0));
        assert!(!c.s3.sign_payload);
        assert!(c.validate().is_ok());
        let mut none_in_flight = c.clone();
        none_in_flight.ship_in_flight = 0;
        assert!(none_in_flight.validate().is_err());
        let mut bad = c.clone();
        bad.node = "a/b".into();
        assert!(bad.validate().is_err());
        let mut bad = c;
        bad.etcd.clear();
        assert!(bad.validate().is_err());
    }
}
