//! A recording SMTP server: STARTTLS (or TLS from the first byte) with a fresh self-signed
//! certificate, AUTH PLAIN, and every accepted envelope kept for the test to check.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Who logged in (AUTH PLAIN), if anyone.
    pub auth: Option<String>,
    pub tls: bool,
    pub from: String,
    pub rcpts: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Plain,
    StartTls,
    Implicit,
}

pub struct FakeSmtp {
    pub addr: SocketAddr,
    pub envelopes: Arc<Mutex<Vec<Envelope>>>,
    /// The server's certificate (PEM), for `--tls-verify --tls-ca`.
    pub cert_pem: String,
}

/// A certificate for "localhost" and its rustls server configuration.
pub fn server_tls() -> (Arc<rustls::ServerConfig>, String) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let der = CertificateDer::from(c.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .unwrap();
    (Arc::new(cfg), c.cert.pem())
}

/// The server side of a connection: plain, or TLS.
enum Io {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Read for Io {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(s) => s.read(b),
            Io::Tls(s) => s.read(b),
        }
    }
}

impl Write for Io {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(s) => s.write(b),
            Io::Tls(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Io::Plain(s) => s.flush(),
            Io::Tls(s) => s.flush(),
        }
    }
}

pub fn fake_smtp(tls: Security) -> FakeSmtp {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let envelopes = Arc::new(Mutex::new(Vec::new()));
    let (cfg, cert_pem) = server_tls();
    let env = envelopes.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (env, cfg) = (env.clone(), cfg.clone());
            std::thread::spawn(move || {
                let _ = session(s, tls, cfg, env);
            });
        }
    });
    FakeSmtp {
        addr,
        envelopes,
        cert_pem,
    }
}

fn tls_stream(s: TcpStream, cfg: Arc<rustls::ServerConfig>) -> Io {
    let conn = rustls::ServerConnection::new(cfg).unwrap();
    Io::Tls(Box::new(rustls::StreamOwned::new(conn, s)))
}

fn session(
    s: TcpStream,
    tls: Security,
    cfg: Arc<rustls::ServerConfig>,
    envelopes: Arc<Mutex<Vec<Envelope>>>,
) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut secure = tls == Security::Implicit;
    let mut r = BufReader::new(if secure {
        tls_stream(s, cfg.clone())
    } else {
        Io::Plain(s)
    });
    let mut auth = None;
    let mut env: Option<Envelope> = None;
    macro_rules! reply {
        ($s:expr) => {{
            r.get_mut().write_all($s.as_bytes())?;
            r.get_mut().flush()?;
        }};
    }
    reply!("220 fake\r\n");
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let up = line.trim_end().to_ascii_uppercase();
        if up.starts_with("EHLO") {
            let starttls = if tls == Security::StartTls && !secure {
                "250-STARTTLS\r\n"
            } else {
                ""
            };
            reply!(format!("250-fake\r\n{starttls}250 AUTH PLAIN\r\n"));
        } else if up == "STARTTLS" && tls == Security::StartTls && !secure {
            reply!("220 go ahead\r\n");
            let Io::Plain(s) = r.into_inner() else {
                return Ok(());
            };
            r = BufReader::new(tls_stream(s, cfg.clone()));
            secure = true;
        } else if up.starts_with("AUTH PLAIN ") {
            let token = line.trim_end()[11..].to_string();
            let raw = base64::engine::general_purpose::STANDARD
                .decode(token)
                .unwrap_or_default();
            let parts: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
            if parts.len() == 3 && parts[2] == b"pw" {
                auth = Some(String::from_utf8_lossy(parts[1]).into_owned());
                reply!("235 ok\r\n");
            } else {
                reply!("535 no\r\n");
            }
        } else if up.starts_with("MAIL FROM:") {
            env = Some(Envelope {
                auth: auth.clone(),
                tls: secure,
                from: line.trim_end()[10..].trim_matches(['<', '>']).to_string(),
                rcpts: Vec::new(),
            });
            reply!("250 ok\r\n");
        } else if up.starts_with("RCPT TO:") {
            let rcpt = line.trim_end()[8..].trim_matches(['<', '>']).to_string();
            if let Some(e) = &mut env {
                e.rcpts.push(rcpt);
            }
            reply!("250 ok\r\n");
        } else if up == "DATA" {
            reply!("354 go\r\n");
            loop {
                line.clear();
                if r.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
            }
            if let Some(e) = env.take() {
                envelopes.lock().unwrap().push(e);
            }
            reply!("250 queued\r\n");
        } else if up == "QUIT" {
            reply!("221 bye\r\n");
            return Ok(());
        } else {
            reply!("502 what\r\n");
        }
    }
}
