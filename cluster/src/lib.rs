//! ringmail-cluster: the control plane of cluster mode.
//!
//! A ringmail cluster keeps the partition as the unit of ownership and local disk as the hot
//! path, and leaves what must not be home-made to two proven engines:
//!
//! - **etcd** ([`coordinator`]): node membership, one owner key per partition under the
//!   owner's lease (its create revision is the ownership *epoch*), the pointer to each
//!   partition's published manifest, and the operator's move and drain requests.
//! - **S3-compatible object storage** ([`objects`]): sealed segments, checkpoints, tail chunks
//!   and manifests, as immutable objects under epoch-scoped keys (`ringmail_engine::remote`).
//!
//! Both clients run on a tokio runtime of their own, on the control-plane thread
//! ([`control`]); the engine's shards stay on glommio and talk to it over channels.
//! docs/cluster.md has the design and the failure table.

pub mod admin;
pub mod config;
pub mod control;
pub mod coordinator;
pub mod error;
pub mod etcd_keys;
pub mod objects;
pub mod routes;
/// Test harness: real etcd and Garage processes on loopback (not part of the API).
#[doc(hidden)]
pub mod testing;
mod upload_buffer;

pub use config::{ClusterConfig, S3Config};
pub use control::{ControlPlane, Status};
pub use coordinator::{Coordinator, Owner};
pub use error::ClusterError;
pub use objects::Objects;
pub use routes::{Route, RouteBoard, Routes};
