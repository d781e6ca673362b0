//! The real engines on loopback for the cluster's tests (this crate's and the server's):
//! etcd members and Garage nodes started by `benches/cluster-up.sh` in a temporary
//! directory, stopped by `benches/cluster-down.sh` (which kills only the PIDs the script
//! recorded). Not part of the API.
//!
//! Without `etcd` or `garage` installed the tests fail with a message saying how to install
//! them (as every test that needs a tool does; `.ci/run` installs both).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use crate::{ClusterConfig, S3Config};

pub struct Infra {
    dir: tempfile::TempDir,
    pub env: BTreeMap<String, String>,
}

fn scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../benches")
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Infra {
    /// Starts `etcd` members and `s3` Garage nodes on ports `base..base+100`.
    pub fn start(base: u16, etcd: u32, s3: u32) -> Infra {
        let garage = std::env::var("GARAGE").ok().filter(|g| !g.is_empty());
        let have_garage = garage.as_deref().map_or_else(
            || have("garage") || dirs_home().join(".cargo/bin/garage").exists(),
            |g| std::path::Path::new(g).exists(),
        );
        assert!(
            have("etcd"),
            "etcd is not installed: apt-get install etcd-server (.ci/run does)"
        );
        assert!(
            have_garage,
            "garage is not installed: cargo install --locked garage --version 2.5.0 (.ci/run does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg(scripts().join("cluster-up.sh"))
            .env("CLUSTER_DIR", dir.path())
            .env("BASE_PORT", base.to_string())
            .env("ETCD_MEMBERS", etcd.to_string())
            .env("S3_NODES", s3.to_string())
            // The tests start their own ringmail nodes (or none).
            .env("NODES", "0")
            .output()
            .unwrap();
        let env: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let infra = Infra { dir, env };
        assert!(
            out.status.success(),
            "cluster-up.sh failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        infra
    }

    pub fn get(&self, name: &str) -> &str {
        self.env
            .get(name)
            .unwrap_or_else(|| panic!("cluster-up.sh printed no {name}"))
    }

    pub fn etcd_endpoints(&self) -> Vec<String> {
        self.get("ETCD_ENDPOINTS")
            .split(',')
            .map(str::to_string)
            .collect()
    }

    /// A node's `[cluster]` section for this infrastructure.
    /// The `[cluster]` section of a server's configuration file, as TOML.
    pub fn toml(&self, node: &str, lease_ttl_secs: u64) -> String {
        let c = self.config(node, lease_ttl_secs);
        format!(
            "[cluster]\nname = {:?}\nnode = {:?}\netcd = {:?}\nlease_ttl_secs = {}\n\n[cluster.s3]\nendpoint = {:?}\nregion = {:?}\nbucket = {:?}\naccess_key = {:?}\nsecret_key = {:?}\ntimeout_secs = 2\n",
            c.name,
            c.node,
            c.etcd,
            c.lease_ttl_secs,
            c.s3.endpoint.clone().unwrap_or_default(),
            c.s3.region,
            c.s3.bucket,
            c.s3.access_key,
            c.s3.secret_key
        )
    }

    pub fn config(&self, node: &str, lease_ttl_secs: u64) -> ClusterConfig {
        ClusterConfig {
            name: "test".into(),
            node: node.into(),
            etcd: self.etcd_endpoints(),
            lease_ttl_secs,
            gc_grace_secs: 3600,
            gc_interval_secs: 300,
            ship_in_flight: 2,
            ship_interval_ms: 0,
            listen: None,
            advertise: None,
            s3: S3Config {
                endpoint: Some(self.get("S3_ENDPOINT").to_string()),
                region: self.get("S3_REGION").to_string(),
                bucket: self.get("S3_BUCKET").to_string(),
                access_key: self.get("S3_ACCESS_KEY").to_string(),
                secret_key: self.get("S3_SECRET_KEY").to_string(),
                prefix: None,
                timeout_secs: 2,
                sign_payload: false,
            },
        }
    }

    /// The PID of a process the script started (`ETCD2`, `S31`, ...).
    pub fn pid(&self, name: &str) -> i32 {
        self.get(&format!("{name}_PID")).parse().unwrap()
    }

    /// Sends `signal` to a process the script started.
    pub fn signal(&self, name: &str, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid(name).to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {name}");
    }

    /// Starts a stopped process again (`etcd2`, `s3-1`: its directory's `start.sh`), with
    /// the same data and ports; its new PID replaces the old.
    pub fn restart(&mut self, dir: &str, name: &str) {
        let out = Command::new("bash")
            .arg(self.dir.path().join(dir).join("start.sh"))
            .output()
            .unwrap();
        assert!(out.status.success());
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        self.env.insert(format!("{name}_PID"), pid);
    }
}

fn dirs_home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
}

impl Drop for Infra {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(scripts().join("cluster-down.sh"))
            .env("CLUSTER_DIR", self.dir.path())
            .output();
    }
}

/// Runs `f` on a tokio runtime, as the control-plane thread does.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}
