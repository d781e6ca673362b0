//! TLS with rustls: the configured certificate, or a self-signed one made on first start.
//!
//! The self-signed certificate names the configured host name (and `localhost`), is valid
//! for a year, and is made again at start or reload once it has less than 30 days left:
//! clients that pinned it see a new one then, which is what a year-long certificate asks
//! of them anyway. A configured certificate is only read, and a warning is logged when it is
//! near its end.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

/// A self-signed certificate's life.
const SELF_SIGNED_DAYS: i64 = 365;
/// Renewed (self-signed) or warned about (configured) with less than this left.
const RENEW_DAYS: i64 = 30;

/// Where the certificate and key are: configured, or the self-signed pair in `<data>/tls/`.
fn paths(cfg: &Config) -> Result<(PathBuf, PathBuf, bool), String> {
    match (&cfg.tls.cert, &cfg.tls.key) {
        (Some(c), Some(k)) => Ok((c.clone(), k.clone(), false)),
        (None, None) => {
            let dir = cfg.data.join("tls");
            Ok((dir.join("cert.pem"), dir.join("key.pem"), true))
        }
        _ => Err("tls.cert and tls.key must be set together".into()),
    }
}

/// Loads (or, when none is configured, creates or renews in `<data>/tls/`) the server's
/// certificate and returns the rustls configuration.
pub fn server_config(cfg: &Config) -> Result<Arc<rustls::ServerConfig>, String> {
    let (cert, key, self_signed) = paths(cfg)?;
    if self_signed {
        let renew = match read_info(&cert) {
            Some(info) => info.days_left < RENEW_DAYS || info.names != names_for(&cfg.hostname),
            None => true,
        };
        if renew || !key.exists() {
            make_self_signed(cert.parent().unwrap_or(Path::new(".")), &cfg.hostname)?;
        }
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| format!("reading {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| format!("reading {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate {}: {e}", cert.display()))?;
    Ok(Arc::new(config))
}

/// What the log says about a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub path: PathBuf,
    /// SHA-256 of the DER, hex.
    pub sha256: String,
    pub names: Vec<String>,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
    pub days_left: i64,
}

impl CertInfo {
    pub fn log(&self, what: &str) {
        if self.days_left < RENEW_DAYS {
            tracing::warn!(
                path = %self.path.display(),
                sha256 = %self.sha256,
                names = ?self.names,
                days_left = self.days_left,
                "{what}: it expires soon; replace it"
            );
        } else {
            tracing::info!(
                path = %self.path.display(),
                sha256 = %self.sha256,
                names = ?self.names,
                days_left = self.days_left,
                "{what}"
            );
        }
    }
}

/// The server certificate's fingerprint, names and expiry (`None` if it cannot be read).
pub fn certificate_info(cfg: &Config) -> Option<CertInfo> {
    read_info(&paths(cfg).ok()?.0)
}

fn read_info(path: &Path) -> Option<CertInfo> {
    use sha2::Digest;
    let der = CertificateDer::pem_file_iter(path).ok()?.next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let not_after = cert.validity().not_after.timestamp();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let sha256 = sha2::Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(CertInfo {
        path: path.to_path_buf(),
        sha256,
        names,
        not_after,
        days_left: (not_after - now).div_euclid(86_400),
    })
}

/// The names a self-signed certificate carries: the host name, and `localhost` once.
fn names_for(hostname: &str) -> Vec<String> {
    let mut names = vec![hostname.to_string()];
    if hostname != "localhost" {
        names.push("localhost".to_string());
    }
    names
}

fn make_self_signed(dir: &Path, hostname: &str) -> Result<(), String> {
    let names = names_for(hostname);
    let mut params = rcgen::CertificateParams::new(names)
        .map_err(|e| format!("generating a certificate: {e}"))?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(SELF_SIGNED_DAYS);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname);
    let key = rcgen::KeyPair::generate().map_err(|e| format!("generating a key: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("generating a certificate: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    // The key first, private from its creation; the certificate last, so a crash between
    // the two leaves a pair that is renewed at the next start.
    write_private(&dir.join("key.pem"), key.serialize_pem().as_bytes())
        .map_err(|e| format!("writing the key: {e}"))?;
    write_private(&dir.join("cert.pem"), cert.pem().as_bytes())
        .map_err(|e| format!("writing the certificate: {e}"))?;
    tracing::info!(
        dir = %dir.display(),
        hostname,
        days = SELF_SIGNED_DAYS,
        "generated a self-signed certificate"
    );
    Ok(())
}

/// Writes a file readable by its owner only (replacing it whole).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_signed_certificate_lasts_a_year_names_each_host_once_and_is_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            data: dir.path().to_path_buf(),
            hostname: "mx.example.org".into(),
            ..Config::default()
        };
        server_config(&cfg).unwrap();
        let info = certificate_info(&cfg).unwrap();
        assert_eq!(info.names, ["mx.example.org", "localhost"]);
        assert!((360..=366).contains(&info.days_left), "{}", info.days_left);
        // Kept while valid...
        server_config(&cfg).unwrap();
        assert_eq!(certificate_info(&cfg).unwrap().sha256, info.sha256);
        // ... made again for another host name.
        let local = Config {
            hostname: "localhost".into(),
            ..cfg.clone()
        };
        server_config(&local).unwrap();
        let again = certificate_info(&local).unwrap();
        assert_ne!(again.sha256, info.sha256);
        assert_eq!(again.names, ["localhost"]);
        use std::os::unix::fs::PermissionsExt;
        let key = std::fs::metadata(dir.path().join("tls/key.pem")).unwrap();
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
    }
}
