//! SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, without channel binding.
//!
//! ```text
//! C: n,,n=user,r=<client nonce>                       client-first
//! S: r=<client nonce><server nonce>,s=<salt>,i=<n>    server-first
//! C: c=biws,r=<nonce>,p=<proof>                       client-final
//! S: v=<server signature>                             server-final
//! ```
//!
//! The server stores only StoredKey and ServerKey (derived from the password with PBKDF2),
//! never the password.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

pub const ITERATIONS: u32 = 4096;

/// What the server stores for a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut m = HmacSha256::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

impl Credentials {
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Self {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        Self {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64 fields).
    pub fn encode(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }

    pub fn decode(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("SCRAM-SHA-256$")?;
        let (a, b) = rest.split_once('$')?;
        let (iter, salt) = a.split_once(':')?;
        let (stored, server) = b.split_once(':')?;
        Some(Self {
            iterations: iter.parse().ok()?,
            salt: B64.decode(salt).ok()?,
            stored_key: B64.decode(stored).ok()?.try_into().ok()?,
            server_key: B64.decode(server).ok()?.try_into().ok()?,
        })
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message")]
    Malformed,
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("authentication failed")]
    Failed,
}

/// The exchange after the client's first message.
pub struct Exchange {
    pub user: String,
    client_first_bare: String,
    gs2_header: String,
    client_nonce: String,
    server_first: Option<String>,
    creds: Option<Credentials>,
}

fn attr(part: &str, name: char) -> Option<&str> {
    let mut c = part.chars();
    (c.next()? == name && c.next()? == '=').then(|| &part[2..])
}

/// `saslname` unescaping: `=2C` is `,` and `=3D` is `=` (RFC 5802 section 5.1).
fn unescape(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut it = s.split("=");
    out.push_str(it.next()?);
    for piece in it {
        if let Some(rest) = piece.strip_prefix("2C") {
            out.push(',');
            out.push_str(rest);
        } else if let Some(rest) = piece.strip_prefix("3D") {
            out.push('=');
            out.push_str(rest);
        } else {
            return None;
        }
    }
    Some(out)
}

impl Exchange {
    pub fn start(client_first: &str) -> Result<Self, ScramError> {
        let mut parts = client_first.splitn(3, ',');
        let cb = parts.next().ok_or(ScramError::Malformed)?;
        let authzid = parts.next().ok_or(ScramError::Malformed)?;
        let bare = parts.next().ok_or(ScramError::Malformed)?;
        match cb {
            "n" | "y" => {}
            c if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed),
        }
        let mut user = None;
        let mut nonce = None;
        for p in bare.split(',') {
            if let Some(v) = attr(p, 'n') {
                user = unescape(v);
            } else if let Some(v) = attr(p, 'r') {
                nonce = Some(v.to_string());
            } else if p.starts_with("m=") {
                return Err(ScramError::Malformed);
            }
        }
        let (Some(user), Some(client_nonce)) = (user, nonce) else {
            return Err(ScramError::Malformed);
        };
        if user.is_empty() || client_nonce.is_empty() || client_nonce.contains(',') {
            return Err(ScramError::Malformed);
        }
        if let Some(z) = authzid.strip_prefix("a=") {
            if unescape(z).as_deref() != Some(user.as_str()) {
                return Err(ScramError::Failed);
            }
        } else if !authzid.is_empty() {
            return Err(ScramError::Malformed);
        }
        Ok(Self {
            user,
            client_first_bare: bare.to_string(),
            gs2_header: format!("{cb},{authzid},"),
            client_nonce,
            server_first: None,
            creds: None,
        })
    }

    /// The server's first message. Unknown users get a message from made-up credentials
    /// (`creds` = None) so the exchange does not reveal whether the user exists.
    pub fn server_first(
        &mut self,
        creds: Option<Credentials>,
        server_nonce: &str,
        fake_salt: &[u8],
    ) -> String {
        let (iter, salt) = match &creds {
            Some(c) => (c.iterations, c.salt.clone()),
            None => (ITERATIONS, fake_salt.to_vec()),
        };
        let msg = format!(
            "r={}{},s={},i={}",
            self.client_nonce,
            server_nonce,
            B64.encode(&salt),
            iter
        );
        self.creds = creds;
        self.server_first = Some(msg.clone());
        msg
    }

    /// Checks the client's proof; on success returns the server-final message.
    pub fn finish(&self, client_final: &str) -> Result<String, ScramError> {
        let server_first = self.server_first.as_deref().ok_or(ScramError::Malformed)?;
        let (without_proof, proof) = client_final
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed)?;
        let mut cbind = None;
        let mut nonce = None;
        for p in without_proof.split(',') {
            if let Some(v) = attr(p, 'c') {
                cbind = Some(v);
            } else if let Some(v) = attr(p, 'r') {
                nonce = Some(v);
            }
        }
        if cbind != Some(B64.encode(&self.gs2_header).as_str()) {
            return Err(ScramError::Failed);
        }
        let expected_nonce = server_first
            .strip_prefix("r=")
            .and_then(|r| r.split(',').next());
        if nonce.is_none() || nonce != expected_nonce {
            return Err(ScramError::Failed);
        }
        let creds = self.creds.as_ref().ok_or(ScramError::Failed)?;
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed)?;
        if proof.len() != 32 {
            return Err(ScramError::Failed);
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, server_first, without_proof
        );
        let client_sig = hmac(&creds.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(client_sig).map(|(a, b)| a ^ b).collect();
        let stored: [u8; 32] = Sha256::digest(&client_key).into();
        // Constant-time comparison: the proof is attacker-controlled.
        if stored
            .iter()
            .zip(creds.stored_key)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
        {
            return Err(ScramError::Failed);
        }
        Ok(format!(
            "v={}",
            B64.encode(hmac(&creds.server_key, auth_message.as_bytes()))
        ))
    }
}

/// One SCRAM exchange as a protocol session drives it, over base64 messages. The session
/// only adds its protocol's framing (`334 ` in SMTP, `+ ` in POP3) and its replies.
pub struct ServerExchange {
    ex: Exchange,
    senders: Option<Vec<String>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum StartError {
    BadBase64,
    Invalid(ScramError),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Finish {
    /// Send `server_final` (base64); after the client's empty answer, the user is in.
    Success {
        server_final: String,
        senders: Vec<String>,
    },
    BadBase64,
    Failed,
}

fn unb64(s: &str) -> Option<String> {
    B64.decode(s.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

impl ServerExchange {
    /// From the client's first message: the exchange, and the user to look up.
    pub fn start(client_first_b64: &str) -> Result<(Self, String), StartError> {
        let first = unb64(client_first_b64).ok_or(StartError::BadBase64)?;
        let ex = Exchange::start(&first).map_err(StartError::Invalid)?;
        let user = ex.user.clone();
        Ok((Self { ex, senders: None }, user))
    }

    /// The server's first message (base64) from the lookup's answer.
    pub fn challenge(
        &mut self,
        found: Option<(Credentials, Vec<String>)>,
        nonce: &str,
        fake_salt: &[u8],
    ) -> String {
        let (creds, senders) = match found {
            Some((c, s)) => (Some(c), Some(s)),
            None => (None, None),
        };
        self.senders = senders;
        B64.encode(self.ex.server_first(creds, nonce, fake_salt))
    }

    /// Checks the client's final message (base64).
    pub fn finish(self, client_final_b64: &str) -> Finish {
        let Some(fin) = unb64(client_final_b64) else {
            return Finish::BadBase64;
        };
        match (self.ex.finish(&fin), self.senders) {
            (Ok(server_final), Some(senders)) => Finish::Success {
                server_final: B64.encode(server_final),
                senders,
            },
            _ => Finish::Failed,
        }
    }
}

/// The client's final message for `password` (tests act as the client with it).
#[cfg(test)]
pub fn client_final(
    password: &str,
    client_first_bare: &str,
    server_first: &str,
    gs2: &str,
) -> String {
    let mut salt = Vec::new();
    let mut iter = 0;
    let mut nonce = "";
    for p in server_first.split(',') {
        if let Some(v) = attr(p, 's') {
            salt = B64.decode(v).unwrap();
        } else if let Some(v) = attr(p, 'i') {
            iter = v.parse().unwrap();
        } else if let Some(v) = attr(p, 'r') {
            nonce = v;
        }
    }
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iter, &mut salted);
    let client_key = hmac(&salted, b"Client Key");
    let stored: [u8; 32] = Sha256::digest(client_key).into();
    let without_proof = format!("c={},r={nonce}", B64.encode(gs2));
    let auth = format!("{client_first_bare},{server_first},{without_proof}");
    let sig = hmac(&stored, auth.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(sig).map(|(a, b)| a ^ b).collect();
    format!("{without_proof},p={}", B64.encode(proof))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil".
    #[test]
    fn rfc7677_example() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let creds = Credentials::derive("pencil", &salt, 4096);
        let mut ex = Exchange::start("n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(ex.user, "user");
        let sf = ex.server_first(Some(creds.clone()), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", &[]);
        assert_eq!(sf, "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        let fin = ex
            .finish("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(fin, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert!(ex.finish("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVR=").is_err());
        assert_eq!(Credentials::decode(&creds.encode()), Some(creds));
    }

    #[test]
    fn rejects_malformed_and_channel_binding() {
        assert_eq!(
            Exchange::start("p=tls-unique,,n=u,r=x").err(),
            Some(ScramError::ChannelBinding)
        );
        for bad in [
            "",
            "n,,",
            "n,,n=,r=x",
            "x,,n=u,r=x",
            "n,,n=u",
            "n,,n=a=ZZb,r=x",
            "n,,m=ext,n=u,r=x",
        ] {
            assert!(Exchange::start(bad).is_err(), "{bad:?}");
        }
        let mut ex = Exchange::start("n,,n=u,r=abc").unwrap();
        ex.server_first(None, "srv", b"salt");
        assert_eq!(
            ex.finish("c=biws,r=abcsrv,p=AAAA").err(),
            Some(ScramError::Failed)
        );
    }
}
