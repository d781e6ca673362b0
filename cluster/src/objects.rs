//! The partition objects in an S3-compatible bucket: put, get (checked against the
//! manifest's length and CRC-32), list and delete. Every object is written once; retries
//! (object_store's, with back-off) re-send the same bytes to the same key.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use ringmail_engine::remote::ObjectRef;

use crate::config::ClusterConfig;
use crate::error::{ClusterError, Result};

#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Objects({})", self.store)
    }
}

fn unavailable(e: object_store::Error) -> ClusterError {
    ClusterError::Objects(e.to_string())
}

impl Objects {
    /// A client for the configured bucket. Makes no request: an unreachable store shows
    /// on first use, as a temporary error.
    pub fn new(cfg: &ClusterConfig) -> Result<Self> {
        // reqwest's TLS (to AWS) takes the process's rustls provider: ring, as the
        // frontends use. Installing it again (another client) changes nothing.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let s3 = &cfg.s3;
        let timeout = Duration::from_secs(s3.timeout_secs.max(1));
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&s3.bucket)
            .with_region(&s3.region)
            .with_access_key_id(&s3.access_key)
            .with_secret_access_key(&s3.secret_key)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(timeout)
                    .with_connect_timeout(Duration::from_secs(2)),
            )
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: timeout * 3,
                ..RetryConfig::default()
            });
        if let Some(ep) = &s3.endpoint {
            // S3 servers other than AWS (Garage, MinIO, Ceph RGW) take path-style requests.
            b = b
                .with_endpoint(ep)
                .with_allow_http(ep.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        // Without a signed payload hash the client does not hash every byte it sends (nor
        // the server every byte it receives): HTTPS protects the bytes in transit, and every
        // object ringmail stores carries its own CRCs (chunks, manifests) or is checked
        // against the manifest's length and CRC-32 (segments, checkpoints).
        b = b.with_unsigned_payload(!s3.sign_payload);
        let store = b
            .build()
            .map_err(|e| ClusterError::Config(format!("object storage: {e}")))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: cfg.object_prefix().to_string(),
        })
    }

    /// The prefix of this cluster's keys (`ringmail_engine::remote::keys` puts it first).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Stores `bytes` (one buffer, or parts sent one after another) under `key` and returns
    /// the reference a manifest keeps.
    pub async fn put(&self, key: &str, bytes: impl Into<PutPayload>) -> Result<ObjectRef> {
        let payload = bytes.into();
        let mut crc = crc32fast::Hasher::new();
        payload.iter().for_each(|b| crc.update(b));
        self.put_with_crc(key, payload, crc.finalize()).await
    }

    /// As [`Self::put`], with the bytes' CRC-32 computed by the caller (off the runtime,
    /// for a large object).
    pub async fn put_with_crc(
        &self,
        key: &str,
        bytes: impl Into<PutPayload>,
        crc: u32,
    ) -> Result<ObjectRef> {
        let payload = bytes.into();
        let r = ObjectRef {
            key: key.to_string(),
            len: payload.content_length() as u64,
            crc,
        };
        self.store
            .put(&Path::from(key), payload)
            .await
            .map_err(unavailable)?;
        Ok(r)
    }

    /// The object's bytes, checked against the reference's length and CRC-32.
    pub async fn get(&self, r: &ObjectRef) -> Result<Bytes> {
        let b = self.get_raw(&r.key).await?;
        if b.len() as u64 != r.len || crc32fast::hash(&b) != r.crc {
            return Err(ClusterError::Damaged {
                key: r.key.clone(),
                detail: format!(
                    "{} bytes with CRC {:08x}, expected {} with {:08x}",
                    b.len(),
                    crc32fast::hash(&b),
                    r.len,
                    r.crc
                ),
            });
        }
        Ok(b)
    }

    /// The object's bytes, unchecked (tail chunks and manifests carry their own CRCs).
    pub async fn get_raw(&self, key: &str) -> Result<Bytes> {
        match self.store.get(&Path::from(key)).await {
            Ok(r) => r.bytes().await.map_err(unavailable),
            Err(object_store::Error::NotFound { .. }) => Err(ClusterError::NotFound {
                key: key.to_string(),
            }),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Keys and sizes under `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        Ok(self
            .list_dated(prefix)
            .await?
            .into_iter()
            .map(|(k, size, _)| (k, size))
            .collect())
    }

    /// Keys, sizes and when each was stored (Unix seconds) under `prefix`, in key order.
    pub async fn list_dated(&self, prefix: &str) -> Result<Vec<(String, u64, i64)>> {
        let p = Path::from(prefix.trim_end_matches('/'));
        let mut out: Vec<(String, u64, i64)> = self
            .store
            .list(Some(&p))
            .map_ok(|m| (m.location.to_string(), m.size, m.last_modified.timestamp()))
            .try_collect()
            .await
            .map_err(unavailable)?;
        out.sort();
        Ok(out)
    }

    /// The first LSNs of `partition`'s tail chunks of `epoch`, as the listing names them.
    pub async fn chunk_firsts(&self, partition: u32, epoch: u64) -> Result<Vec<u64>> {
        let listed = self
            .list(&ringmail_engine::remote::keys::chunk_prefix(
                &self.prefix,
                partition,
                epoch,
            ))
            .await?;
        Ok(chunk_firsts_in(
            listed.iter().map(|(k, _)| k.as_str()),
            &self.prefix,
            partition,
            epoch,
        ))
    }

    /// Deletes `key`; deleting what is already gone succeeds.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// The first LSNs of the tail chunks of `epoch` among `keys` (other keys are skipped).
pub fn chunk_firsts_in<'a>(
    keys: impl Iterator<Item = &'a str>,
    prefix: &str,
    partition: u32,
    epoch: u64,
) -> Vec<u64> {
    keys.filter_map(
        |k| match ringmail_engine::remote::ObjectKey::parse(prefix, partition, k) {
            Some(ringmail_engine::remote::ObjectKey::Chunk {
                epoch: e,
                first_lsn,
            }) if e == epoch => Some(first_lsn),
            _ => None,
        },
    )
    .collect()
}
