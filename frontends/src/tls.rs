//! TLS with rustls: the configured certificate, or a self-signed one made on first start.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

/// Loads (or, when none is configured, creates once in `<data>/tls/`) the server's
/// certificate and returns the rustls configuration.
pub fn server_config(cfg: &Config) -> Result<Arc<rustls::ServerConfig>, String> {
    let (cert, key) = match (&cfg.tls.cert, &cfg.tls.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (None, None) => {
            let dir = cfg.data.join("tls");
            let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
            if !c.exists() || !k.exists() {
                self_signed(&dir, &cfg.hostname)?;
            }
            (c, k)
        }
        _ => return Err("tls.cert and tls.key must be set together".into()),
    };
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

fn self_signed(dir: &Path, hostname: &str) -> Result<(), String> {
    let names = vec![hostname.to_string(), "localhost".to_string()];
    let cert = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("generating a certificate: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    std::fs::write(dir.join("cert.pem"), cert.cert.pem())
        .map_err(|e| format!("writing the certificate: {e}"))?;
    let key_path = dir.join("key.pem");
    std::fs::write(&key_path, cert.signing_key.serialize_pem())
        .map_err(|e| format!("writing the key: {e}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600));
    }
    tracing::info!(dir = %dir.display(), "generated a self-signed certificate");
    Ok(())
}
