//! The running server, as the main thread sees it: reloading on SIGHUP, following
//! `users.toml`, and the shutdown.
//!
//! A reload reads the configuration file again (with the command line's overrides), the
//! TLS certificate and the users; if any of them is broken, nothing changes and the error is
//! logged. What a reload changes applies to connections accepted after it: sessions in
//! flight keep what they started with. Settings fixed at start (data directory, shards,
//! partitions, listeners) are reported and keep their running values until a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ringmail_engine::Node;

use super::throttle::Policy;
use super::{Live, Shared};
use crate::config::Config;
use crate::users::Users;

/// Reads the configuration as the command line asked for it (file plus flags).
pub type Source = Box<dyn Fn() -> Result<Config, String>>;

pub struct Running {
    node: Option<Node>,
    /// Cluster mode: the control plane (etcd, object storage), stopped before the node.
    control: Option<ringmail_cluster::ControlPlane>,
    shared: Arc<Shared>,
    source: Source,
    /// The configuration in force.
    cfg: Config,
    users_mtime: Option<SystemTime>,
    certificate: Option<crate::tls::CertInfo>,
}

/// Keys whose change needs a restart (a reload keeps their running values).
const FIXED: [&str; 9] = [
    "cluster.",
    "segment_mib",
    "data",
    "cores",
    "partitions",
    "listen.",
    "deferred_compression_mib",
    "envelope_cache_mib",
    "spin_before_park_us",
];

pub fn throttle_policy(cfg: &Config) -> Policy {
    Policy {
        per_ip: cfg.auth.max_failures_per_ip,
        per_account: cfg.auth.max_failures_per_account,
        window: Duration::from_secs(cfg.auth.failure_window_secs),
    }
}

impl Running {
    pub(super) fn new(
        control: Option<ringmail_cluster::ControlPlane>,
        node: Node,
        shared: Arc<Shared>,
        cfg: Config,
        source: Source,
        users_mtime: Option<SystemTime>,
    ) -> Self {
        let certificate = crate::tls::certificate_info(&cfg);
        if let Some(c) = &certificate {
            c.log("TLS certificate");
        }
        let r = Running {
            control,
            node: Some(node),
            shared,
            source,
            cfg,
            users_mtime,
            certificate,
        };
        r.purge_deleted(&r.shared.users.current());
        r
    }

    pub fn node(&self) -> &Node {
        self.node.as_ref().expect("the node runs until shutdown")
    }

    /// SIGHUP: the configuration, the certificate and the users, read again.
    pub fn reload(&mut self) {
        match self.try_reload() {
            Ok(()) => self.shared.metrics.reloaded(true),
            Err(e) => {
                self.shared.metrics.reloaded(false);
                tracing::error!(error = %e, "reload failed; nothing changed");
            }
        }
        self.reload_users(true);
    }

    fn try_reload(&mut self) -> Result<(), String> {
        let mut new = (self.source)()?;
        let old = flatten(&self.cfg);
        for (key, value) in &flatten(&new) {
            let before = old.get(key).map(String::as_str).unwrap_or("(unset)");
            if FIXED
                .iter()
                .any(|f| key == f || (f.ends_with('.') && key.starts_with(f)))
                && before != value
            {
                tracing::warn!(
                    key,
                    running = before,
                    configured = value.as_str(),
                    "this setting changes only at a restart; keeping the running value"
                );
            }
        }
        new.data = self.cfg.data.clone();
        new.cores = self.cfg.cores;
        new.partitions = self.cfg.partitions;
        new.listen = self.cfg.listen.clone();
        new.deferred_compression_mib = self.cfg.deferred_compression_mib;
        new.envelope_cache_mib = self.cfg.envelope_cache_mib;
        new.spin_before_park_us = self.cfg.spin_before_park_us;
        let tls = crate::tls::server_config(&new)?;
        let changes = changes(&self.cfg, &new);
        if changes.is_empty() {
            tracing::info!("configuration reloaded: unchanged");
        } else {
            tracing::info!(changes = %changes.join("; "), "configuration reloaded");
        }
        let cert = crate::tls::certificate_info(&new);
        if cert != self.certificate {
            if let Some(c) = &cert {
                c.log("TLS certificate reloaded");
            }
            self.certificate = cert;
        }
        self.shared.throttle.set_policy(throttle_policy(&new));
        self.shared
            .budget
            .set_limit(new.limits.max_inflight_message_mib << 20);
        self.shared.live.replace(Live {
            cfg: new.clone(),
            tls: Some(tls),
        });
        self.cfg = new;
        Ok(())
    }

    /// Once a second: `users.toml` read again if it changed (kept as it was, with an error
    /// logged, if the new one is broken).
    pub fn tick(&mut self) {
        self.reload_users(false);
    }

    fn reload_users(&mut self, force: bool) {
        let mtime = Users::mtime(&self.cfg.data);
        if !force && mtime == self.users_mtime {
            return;
        }
        self.users_mtime = mtime;
        let new = match Users::load(&self.cfg.data) {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(error = %e, "cannot reload users; keeping the previous list");
                return;
            }
        };
        let old = self.shared.users.current();
        let d = old.diff(&new);
        if d.is_empty() {
            if force {
                tracing::info!(users = new.users().len(), "users reloaded: unchanged");
            }
        } else {
            tracing::info!(
                users = new.users().len(),
                added = ?d.added,
                removed = ?d.removed,
                changed = ?d.changed,
                "users reloaded"
            );
        }
        self.purge_deleted(&new);
        self.shared.users.replace(new);
    }

    /// Deletes the stored mail of users deleted with `--purge` (the `user` command cannot
    /// while the server holds the data directory).
    fn purge_deleted(&self, users: &Users) {
        for d in users.deleted().iter().filter(|d| d.purge) {
            let account = d.account.clone();
            let r = futures_lite::future::block_on(self.node().handle().request(
                ringmail_engine::Request::DeleteAccount {
                    account: account.clone(),
                },
            ))
            .map(|r| matches!(r, ringmail_engine::Response::Done(true)));
            match r {
                Ok(true) => tracing::info!(
                    address = %d.address,
                    account = %account,
                    "purged the mail of a deleted user"
                ),
                Ok(false) => {}
                Err(e) => tracing::error!(
                    address = %d.address,
                    account = %account,
                    error = %e,
                    "cannot purge the mail of a deleted user"
                ),
            }
        }
    }

    /// Stops accepting, lets sessions finish their replies, checkpoints every partition.
    pub fn shutdown(mut self) -> Result<(), String> {
        // Cluster mode: partitions are handed back (flushed, shipped, released) while the
        // shards still run, then the lease is revoked.
        if let Some(c) = self.control.take() {
            c.stop();
        }
        match self.node.take() {
            Some(n) => n.shutdown().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

/// Every setting as `dotted.key → value`.
fn flatten(cfg: &Config) -> BTreeMap<String, String> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(v) = toml::Value::try_from(cfg) {
        walk("", &v, &mut out);
    }
    out
}

/// `key: old -> new` for every setting that differs.
fn changes(old: &Config, new: &Config) -> Vec<String> {
    let (a, b) = (flatten(old), flatten(new));
    let mut out = Vec::new();
    for (k, v) in &b {
        match a.get(k) {
            Some(o) if o == v => {}
            Some(o) => out.push(format!("{k}: {o} -> {v}")),
            None => out.push(format!("{k}: (unset) -> {v}")),
        }
    }
    for k in a.keys().filter(|k| !b.contains_key(*k)) {
        out.push(format!("{k}: removed"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_each_setting_that_differs() {
        let a = Config::default();
        let mut b = a.clone();
        assert!(changes(&a, &b).is_empty());
        b.limits.max_message_size = 1000;
        b.hostname = "mx.example.org".into();
        b.listen.pop3 = None;
        let c = changes(&a, &b);
        assert!(
            c.iter()
                .any(|l| l.starts_with("limits.max_message_size: 52428800 -> 1000")),
            "{c:?}"
        );
        assert!(
            c.iter()
                .any(|l| l.contains("hostname:") && l.contains("\"mx.example.org\"")),
            "{c:?}"
        );
        assert!(
            c.iter()
                .any(|l| l.starts_with("listen.pop3:") && l.ends_with("\"off\"")),
            "{c:?}"
        );
        assert_eq!(c.len(), 3);
    }
}
