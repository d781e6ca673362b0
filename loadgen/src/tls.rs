//! TLS for every workload: implicit TLS (smtps, imaps, pop3s ports) or STARTTLS/STLS, with
//! rustls over the clients' [`Socket`].
//!
//! One [`rustls::ClientConfig`] is shared by all connections of a run, so its session cache
//! lets reconnecting sessions (POP3 and IMAP log in anew, over and over) resume instead of
//! doing a full handshake. Certificates are not checked unless asked (`--tls-verify`): the
//! targets are loopback test servers with self-signed certificates, and skipping the check
//! (and the handshake signature) keeps the generator's own cost per connection low.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use crate::client::{io, ClientError};
use crate::socket::Socket;

/// How a workload's connections use TLS.
#[derive(Clone, Debug)]
pub struct Tls {
    /// Plain TCP first, then STARTTLS (SMTP, LMTP, IMAP) or STLS (POP3); otherwise TLS
    /// from the first byte.
    pub starttls: bool,
    pub config: Arc<ClientConfig>,
    /// The name sent (SNI) and, with verification, checked against the certificate.
    pub name: ServerName<'static>,
}

/// Where `--tls-verify` finds the system's trusted roots (Debian's ca-certificates), unless
/// `SSL_CERT_FILE` says otherwise.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

impl Tls {
    /// `verify`: check the certificate against `ca` (a PEM file) or the system roots.
    /// `name`: the server name (a DNS name or an IP address).
    pub fn new(starttls: bool, verify: bool, ca: Option<&Path>, name: &str) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let config = if verify {
            let env = std::env::var_os("SSL_CERT_FILE");
            let path = ca.or(env.as_deref().map(Path::new));
            let path = path.unwrap_or(Path::new(SYSTEM_ROOTS));
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            for c in certs {
                let c = c.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no certificates", path.display()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth()
        };
        let name = match name.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(name.to_string())
                .map_err(|e| format!("server name {name:?}: {e}"))?,
        };
        Ok(Tls {
            starttls,
            config: Arc::new(config),
            name,
        })
    }

    /// TLS from the first byte, certificates not checked, named by `ip`.
    pub fn implicit(ip: IpAddr) -> Tls {
        Tls::new(false, false, None, &ip.to_string()).expect("no files involved")
    }

    /// STARTTLS, certificates not checked, named by `ip`.
    pub fn starttls(ip: IpAddr) -> Tls {
        Tls::new(true, false, None, &ip.to_string()).expect("no files involved")
    }
}

/// Accepts any certificate: for loopback test servers only (and the default of a tool that
/// only sends load to loopback addresses).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client connection's byte stream: plain TCP or TLS over it.
pub enum Stream {
    Plain(Socket),
    Tls(Box<rustls::StreamOwned<ClientConnection, Socket>>),
}

impl Stream {
    /// Starts TLS on `tcp` and completes the handshake (so a failed handshake is reported
    /// as such, at connect time).
    pub fn tls(tcp: Socket, tls: &Tls) -> Result<Stream, ClientError> {
        let conn = ClientConnection::new(tls.config.clone(), tls.name.clone())
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).map_err(handshake_error)?;
        }
        Ok(Stream::Tls(Box::new(s)))
    }

    /// This plain stream, upgraded to TLS after a STARTTLS exchange. `buffered`: bytes the
    /// client has read past the server's go-ahead, which must not exist (RFC 3207 section
    /// 5: anything sent in the clear before the handshake is suspect).
    pub fn upgrade(&self, tls: &Tls, buffered: usize) -> Result<Stream, ClientError> {
        let Stream::Plain(s) = self else {
            return Err(ClientError::Tls("STARTTLS inside TLS".into()));
        };
        if buffered > 0 {
            return Err(ClientError::Garbage(format!(
                "{buffered} bytes after the STARTTLS go-ahead"
            )));
        }
        let tcp = s.try_clone().map_err(io)?;
        Stream::tls(tcp, tls)
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    pub fn set_read_timeout(&mut self, d: Duration) {
        match self {
            Stream::Plain(s) => s.set_read_timeout(d),
            Stream::Tls(t) => t.sock.set_read_timeout(d),
        }
    }
}

fn handshake_error(e: std::io::Error) -> ClientError {
    match io(e) {
        ClientError::Closed => {
            ClientError::Tls("the server closed the connection in the handshake".into())
        }
        other => other,
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}
