//! The server's configuration: one TOML file, every option with a default (documented in
//! `docs/operations.md`), and command-line flags that override it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
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
    /// Envelopes (the headers SEARCH, SORT and THREAD read) each shard keeps in memory, in
    /// MiB; about 300 bytes a message, so the default holds ~200,000 messages per shard.
    pub envelope_cache_mib: u64,
    /// Size of each log segment file, in MiB. In a cluster a new owner replays the log from
    /// the start of the segment being written, so smaller segments make takeovers faster
    /// (and publish sealed segments more often).
    pub segment_mib: u64,
    /// The name this server gives in greetings and Received headers; by default the
    /// machine's host name.
    pub hostname: String,
    pub log: Log,
    pub listen: Listen,
    pub tls: Tls,
    pub limits: Limits,
    pub smtp: Smtp,
    pub auth: Auth,
    /// Cluster mode (docs/cluster.md): partitions owned through etcd and stored in
    /// S3-compatible object storage. Absent: a single node, and nothing of it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ringmail_cluster::ClusterConfig>,
}

/// Listener addresses; `None` (in TOML: `"off"`) disables one.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    #[serde(deserialize_with = "addr", serialize_with = "addr_out")]
    pub smtp: Option<SocketAddr>,
    #[serde(deserialize_with = "addr", serialize_with = "addr_out")]
    pub submission: Option<SocketAddr>,
    #[serde(deserialize_with = "addr", serialize_with = "addr_out")]
    pub smtps: Option<SocketAddr>,
    #[serde(deserialize_with = "addr", serialize_with = "addr_out")]
    pub lmtp: Option<SocketAddr>,
    #[serde(deserialize_with = "addr", serialize_with = "addr_out")]
    pub imap: Option<SocketAddr>,
    #[serde(deserialize_with = "addr", serialize_with = "addr_out")]
    pub imaps: Option<SocketAddr>,
    #[serde(deserialize_with = "addr", serialize_with = "addr_out")]
    pub pop3: Option<SocketAddr>,
    #[serde(deserialize_with = "addr", serialize_with = "addr_out")]
    pub pop3s: Option<SocketAddr>,
    #[serde(deserialize_with = "addr", serialize_with = "addr_out")]
    pub metrics: Option<SocketAddr>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain and private key. Unset: a self-signed certificate is generated
    /// on first start in `<data>/tls/`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_line_length: usize,
    pub command_timeout_secs: u64,
    pub data_timeout_secs: u64,
    /// Concurrent connections from one IP address, per shard.
    pub max_connections_per_ip: usize,
    /// Client connections in all (0: as many as the open-file limit leaves room for after
    /// what storage needs; a higher value is lowered to that).
    pub max_connections: usize,
    pub max_auth_failures: u32,
    /// Delay before answering a failed AUTH.
    pub auth_failure_delay_ms: u64,
    pub max_errors: u32,
    /// Memory that messages being received may hold, node-wide, in MiB; past it, messages
    /// get a temporary error (SMTP 452, IMAP NO [UNAVAILABLE]).
    pub max_inflight_message_mib: u64,
    /// Bytes per second a client must keep up, on average, while it sends a long command,
    /// message or literal, beyond the command or data timeout.
    pub min_data_rate: u64,
    /// Time for a whole TLS handshake (implicit TLS and STARTTLS).
    pub tls_handshake_timeout_secs: u64,
    /// Mailboxes one account may have.
    pub max_mailboxes: usize,
    /// Levels of a mailbox name (`a/b/c` has 3).
    pub max_mailbox_depth: usize,
    /// Bytes of a mailbox name.
    pub max_mailbox_name: usize,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Smtp {
    /// Answer VRFY truthfully (off: 252 for everything, RFC 5321 section 3.5.3).
    pub vrfy: bool,
}

/// Authentication policy shared by every protocol.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// Accept passwords without TLS (SMTP AUTH on submission, POP3 USER/PASS and SASL).
    /// Only for tests, benchmarks and trusted networks.
    pub danger_plaintext_without_tls: bool,
    /// How long a verified password is remembered (as a keyed hash, per core), so a client
    /// that logs in again and again does not pay argon2 each time; 0 turns it off.
    pub cache_ttl_secs: u64,
    /// Failed logins from one address, within the window, after which its logins are
    /// refused until the window has passed (0: no limit).
    pub max_failures_per_ip: u32,
    /// Failed logins for one account, from anywhere, within the window, after which its
    /// logins are refused until the window has passed (0: no limit).
    pub max_failures_per_account: u32,
    pub failure_window_secs: u64,
    /// A login name without `@` is this domain's user (Dovecot's `auth_default_realm`);
    /// unset: logins are full addresses.
    pub default_domain: Option<String>,
}

/// Logging.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// `text` (the default) or `json` (one JSON object per line).
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            danger_plaintext_without_tls: false,
            cache_ttl_secs: 300,
            max_failures_per_ip: 10,
            max_failures_per_account: 30,
            failure_window_secs: 900,
            default_domain: None,
        }
    }
}

fn addr_out<S: serde::Serializer>(a: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match a {
        Some(a) => s.collect_str(a),
        None => s.serialize_str("off"),
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
            max_connections: 0,
            max_auth_failures: 3,
            auth_failure_delay_ms: 1000,
            max_errors: 20,
            max_inflight_message_mib: 512,
            min_data_rate: 1000,
            tls_handshake_timeout_secs: 30,
            max_mailboxes: 2000,
            max_mailbox_depth: 32,
            max_mailbox_name: 1024,
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
            envelope_cache_mib: 64,
            segment_mib: 128,
            hostname: machine_hostname(),
            log: Log::default(),
            listen: Listen::default(),
            tls: Tls::default(),
            limits: Limits::default(),
            smtp: Smtp::default(),
            auth: Auth::default(),
            cluster: None,
        }
    }
}

/// The machine's host name (`gethostname`), or `localhost` if it has none.
pub fn machine_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into the local buffer.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(h) if r == 0 && !h.is_empty() && h != "(none)" => h.to_string(),
        _ => "localhost".to_string(),
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
