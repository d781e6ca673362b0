//! The server's configuration: one TOML file, every option with a default (documented in
//! `docs/operations.md`), and command-line flags that override it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the engine, users and certificates live.
    pub data: PathBuf,
    /// Executor threads (shards); 0 = one per core.
    pub cores: usize,
    /// Partitions of a new data directory (fixed once created); 0 = one per shard. More
    /// partitions mean more concurrent durable writes, which on a device that serializes cache
    /// flushes makes smaller batches (measured here with 2 shards: 1 partition 17.3k SMTP
    /// deliveries/s, 2 partitions 15.5k, 4 partitions 13k); more let a data directory later
    /// spread over more cores.
    pub partitions: u32,
    /// Microseconds an idle shard keeps polling before it sleeps (0: sleep at once). On a
    /// busy server it saves a wake-up per request; on an idle one it burns CPU.
    pub spin_before_park_us: u64,
    /// Mail each partition may keep stored uncompressed, in MiB, for a background thread to
    /// compress when a core is idle (0: compress every message before it is stored).
    pub deferred_compression_mib: u64,
    /// The name this server gives in greetings and Received headers.
    pub hostname: String,
    pub listen: Listen,
    pub tls: Tls,
    pub limits: Limits,
    pub smtp: Smtp,
    pub auth: Auth,
}

/// Listener addresses; `None` (in TOML: `"off"`) disables one.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    #[serde(deserialize_with = "addr")]
    pub smtp: Option<SocketAddr>,
    #[serde(deserialize_with = "addr")]
    pub submission: Option<SocketAddr>,
    #[serde(deserialize_with = "addr")]
    pub smtps: Option<SocketAddr>,
    #[serde(deserialize_with = "addr")]
    pub lmtp: Option<SocketAddr>,
    #[serde(deserialize_with = "addr")]
    pub imap: Option<SocketAddr>,
    #[serde(deserialize_with = "addr")]
    pub imaps: Option<SocketAddr>,
    #[serde(deserialize_with = "addr")]
    pub pop3: Option<SocketAddr>,
    #[serde(deserialize_with = "addr")]
    pub pop3s: Option<SocketAddr>,
    #[serde(deserialize_with = "addr")]
    pub metrics: Option<SocketAddr>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain and private key. Unset: a self-signed certificate is generated
    /// on first start in `<data>/tls/`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_line_length: usize,
    pub command_timeout_secs: u64,
    pub data_timeout_secs: u64,
    /// Concurrent connections from one IP address, per shard.
    pub max_connections_per_ip: usize,
    pub max_auth_failures: u32,
    /// Delay before answering a failed AUTH.
    pub auth_failure_delay_ms: u64,
    pub max_errors: u32,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Smtp {
    /// Answer VRFY truthfully (off: 252 for everything, RFC 5321 section 3.5.3).
    pub vrfy: bool,
}

/// Authentication policy shared by every protocol.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// Accept passwords without TLS (SMTP AUTH on submission, POP3 USER/PASS and SASL).
    /// Only for tests, benchmarks and trusted networks.
    pub danger_plaintext_without_tls: bool,
    /// How long a verified password is remembered (as a keyed hash, per core), so a client
    /// that logs in again and again does not pay argon2 each time; 0 turns it off.
    pub cache_ttl_secs: u64,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            danger_plaintext_without_tls: false,
            cache_ttl_secs: 300,
        }
    }
}

fn addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    parse_addr(&s).map_err(serde::de::Error::custom)
}

/// `off` disables a listener; anything else must be `IP:PORT`.
pub fn parse_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| format!("{s:?} is not IP:PORT or \"off\""))
}

fn local(port: u16) -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], port)))
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            smtp: local(2525),
            submission: local(2587),
            smtps: local(2465),
            lmtp: local(2424),
            imap: local(2143),
            imaps: local(2993),
            pop3: local(2110),
            pop3s: local(2995),
            metrics: local(9187),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: 50 << 20,
            max_recipients: 1000,
            max_line_length: 4096,
            command_timeout_secs: 300,
            data_timeout_secs: 600,
            max_connections_per_ip: 100,
            max_auth_failures: 3,
            auth_failure_delay_ms: 1000,
            max_errors: 20,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data: PathBuf::from("ringmail-data"),
            cores: 0,
            partitions: 0,
            spin_before_park_us: 0,
            deferred_compression_mib: 1024,
            hostname: "localhost".into(),
            listen: Listen::default(),
            tls: Tls::default(),
            limits: Limits::default(),
            smtp: Smtp::default(),
            auth: Auth::default(),
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_off() {
        let c: Config = toml::from_str(
            "hostname = \"mx.example.org\"\n[listen]\nsmtp = \"off\"\nlmtp = \"127.0.0.1:24\"\n",
        )
        .unwrap();
        assert_eq!(c.hostname, "mx.example.org");
        assert_eq!(c.listen.smtp, None);
        assert_eq!(c.listen.lmtp, local(24));
        assert_eq!(c.listen.submission, local(2587));
        assert!(toml::from_str::<Config>("bogus = 1").is_err());
        assert!(toml::from_str::<Config>("[listen]\nsmtp = \"nonsense\"").is_err());
    }
}
