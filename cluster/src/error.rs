//! What the control plane can fail with.

/// A failure of the cluster's control plane. `Unavailable` errors are temporary (etcd or
/// object storage cannot be reached); `Fenced` means this node no longer owns a partition.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("etcd is unavailable: {0}")]
    Etcd(String),
    #[error("object storage is unavailable: {0}")]
    Objects(String),
    #[error("object {key} is damaged: {detail}")]
    Damaged { key: String, detail: String },
    #[error("object {key} does not exist")]
    NotFound { key: String },
    #[error("partition {partition}: this node's ownership (epoch {epoch}) has ended")]
    Fenced { partition: u32, epoch: u64 },
    #[error("cluster configuration: {0}")]
    Config(String),
    #[error("the control plane has stopped")]
    Stopped,
}

impl ClusterError {
    /// Whether retrying later may succeed (the engines being unreachable), as opposed to
    /// a lost ownership or damaged data.
    pub fn is_temporary(&self) -> bool {
        matches!(self, ClusterError::Etcd(_) | ClusterError::Objects(_))
    }
}

impl From<etcd_client::Error> for ClusterError {
    fn from(e: etcd_client::Error) -> Self {
        ClusterError::Etcd(e.to_string())
    }
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;
