//! Login accounts: addresses, password hashes (argon2id, PHC strings), aliases, domains.
//!
//! Kept in `<data>/users.toml`, written atomically (temporary file, fsync, rename) by the
//! `ringmail user` commands, and re-read by a running server when the file changes, so
//! accounts can be added while it runs. Mail itself lives in the engine; an engine account
//! is created when a user first receives mail or logs in.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

pub const USERS_FILE: &str = "users.toml";

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    pub address: String,
    /// argon2id PHC string.
    pub password: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// SCRAM-SHA-256 keys (`SCRAM-SHA-256$iter:salt$StoredKey:ServerKey`), for the SCRAM
    /// mechanism, which cannot use the argon2 hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scram: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UsersFile {
    /// Extra local domains (every user's and alias's domain is local too).
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default, rename = "user")]
    pub users: Vec<User>,
}

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("reading or writing {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0} is not valid: {1}")]
    Parse(PathBuf, String),
    #[error("{0:?} is not a valid address (expected user@domain)")]
    BadAddress(String),
    #[error("user {0} already exists")]
    Exists(String),
    #[error("no user {0}")]
    NoSuchUser(String),
    #[error("the password must not be empty")]
    EmptyPassword,
    #[error("hashing the password: {0}")]
    Hash(String),
}

/// The users, indexed for lookups.
#[derive(Clone, Debug, Default)]
pub struct Users {
    file: UsersFile,
    /// lower-case address or alias → index of the user
    by_address: BTreeMap<String, usize>,
    domains: Vec<String>,
}

pub fn normalize(address: &str) -> String {
    address.trim().to_ascii_lowercase()
}

fn check_address(a: &str) -> Result<(), UsersError> {
    match a.rsplit_once('@') {
        Some((l, d)) if !l.is_empty() && !d.is_empty() && !a.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => Err(UsersError::BadAddress(a.to_string())),
    }
}

/// SCRAM-SHA-256 keys for a password, with a random salt.
pub fn scram_keys(password: &str) -> String {
    use argon2::password_hash::rand_core::RngCore;
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    crate::sasl::scram::Credentials::derive(password, &salt, crate::sasl::scram::ITERATIONS)
        .encode()
}

pub fn hash_password(password: &str) -> Result<String, UsersError> {
    if password.is_empty() {
        return Err(UsersError::EmptyPassword);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

impl Users {
    pub fn from_file(file: UsersFile) -> Self {
        let mut by_address = BTreeMap::new();
        let mut domains: Vec<String> = file.domains.iter().map(|d| normalize(d)).collect();
        for (i, u) in file.users.iter().enumerate() {
            for a in std::iter::once(&u.address).chain(&u.aliases) {
                by_address.insert(normalize(a), i);
                if let Some((_, d)) = a.rsplit_once('@') {
                    domains.push(normalize(d));
                }
            }
        }
        domains.sort();
        domains.dedup();
        Self {
            file,
            by_address,
            domains,
        }
    }

    pub fn load(dir: &Path) -> Result<Self, UsersError> {
        let path = dir.join(USERS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(s) => {
                let f: UsersFile =
                    toml::from_str(&s).map_err(|e| UsersError::Parse(path, e.to_string()))?;
                Ok(Self::from_file(f))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(UsersError::Io(path, e)),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), UsersError> {
        std::fs::create_dir_all(dir).map_err(|e| UsersError::Io(dir.to_path_buf(), e))?;
        let path = dir.join(USERS_FILE);
        let tmp = dir.join(format!("{USERS_FILE}.tmp"));
        let text = toml::to_string_pretty(&self.file)
            .map_err(|e| UsersError::Parse(path.clone(), e.to_string()))?;
        let io = |e| UsersError::Io(tmp.clone(), e);
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(|e| UsersError::Io(path.clone(), e))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    pub fn mtime(dir: &Path) -> Option<SystemTime> {
        std::fs::metadata(dir.join(USERS_FILE))
            .and_then(|m| m.modified())
            .ok()
    }

    pub fn add(
        &mut self,
        address: &str,
        password: &str,
        aliases: &[String],
    ) -> Result<(), UsersError> {
        check_address(address)?;
        for a in aliases {
            check_address(a)?;
        }
        for a in std::iter::once(&address.to_string()).chain(aliases) {
            if self.by_address.contains_key(&normalize(a)) {
                return Err(UsersError::Exists(a.clone()));
            }
        }
        let mut f = self.file.clone();
        f.users.push(User {
            address: normalize(address),
            password: hash_password(password)?,
            aliases: aliases.iter().map(|a| normalize(a)).collect(),
            scram: Some(scram_keys(password)),
        });
        *self = Self::from_file(f);
        Ok(())
    }

    pub fn remove(&mut self, address: &str) -> Result<(), UsersError> {
        let mut f = self.file.clone();
        let before = f.users.len();
        f.users.retain(|u| u.address != normalize(address));
        if f.users.len() == before {
            return Err(UsersError::NoSuchUser(address.to_string()));
        }
        *self = Self::from_file(f);
        Ok(())
    }

    pub fn set_password(&mut self, address: &str, password: &str) -> Result<(), UsersError> {
        let hash = hash_password(password)?;
        let mut f = self.file.clone();
        let u = f
            .users
            .iter_mut()
            .find(|u| u.address == normalize(address))
            .ok_or_else(|| UsersError::NoSuchUser(address.to_string()))?;
        u.password = hash;
        u.scram = Some(scram_keys(password));
        *self = Self::from_file(f);
        Ok(())
    }

    pub fn users(&self) -> &[User] {
        &self.file.users
    }

    /// The user an address (or alias) belongs to.
    pub fn resolve(&self, address: &str) -> Option<&User> {
        self.by_address
            .get(&normalize(address))
            .and_then(|&i| self.file.users.get(i))
    }

    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.domains.binary_search(&normalize(domain)).is_ok()
    }

    /// The user's SCRAM keys and the addresses they may send as.
    pub fn scram(&self, login: &str) -> Option<(crate::sasl::scram::Credentials, Vec<String>)> {
        let u = self.resolve(login)?;
        let c = crate::sasl::scram::Credentials::decode(u.scram.as_deref()?)?;
        Some((
            c,
            std::iter::once(u.address.clone())
                .chain(u.aliases.iter().cloned())
                .collect(),
        ))
    }

    /// Checks a password; on success, the addresses the user may send as (own first).
    /// Slow on purpose (argon2): call it off the executor thread.
    pub fn authenticate(&self, login: &str, password: &str) -> Option<Vec<String>> {
        let u = self.resolve(login)?;
        let hash = PasswordHash::new(&u.password).ok()?;
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .ok()?;
        Some(
            std::iter::once(u.address.clone())
                .chain(u.aliases.iter().cloned())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_resolve_authenticate_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let mut u = Users::load(dir.path()).unwrap();
        u.add("Alice@Example.org", "pw1", &["a@example.net".into()])
            .unwrap();
        assert!(matches!(
            u.add("alice@example.org", "x", &[]),
            Err(UsersError::Exists(_))
        ));
        assert!(matches!(
            u.add("nodomain", "x", &[]),
            Err(UsersError::BadAddress(_))
        ));
        assert!(matches!(
            u.add("b@example.org", "", &[]),
            Err(UsersError::EmptyPassword)
        ));
        u.save(dir.path()).unwrap();
        let u = Users::load(dir.path()).unwrap();
        assert_eq!(
            u.resolve("A@EXAMPLE.NET").unwrap().address,
            "alice@example.org"
        );
        assert!(u.is_local_domain("example.net") && !u.is_local_domain("elsewhere.example"));
        assert_eq!(
            u.authenticate("alice@example.org", "pw1").unwrap(),
            vec!["alice@example.org", "a@example.net"]
        );
        assert!(u.authenticate("alice@example.org", "wrong").is_none());
        assert!(u.authenticate("nobody@example.org", "pw1").is_none());
        let (c, senders) = u.scram("a@example.net").unwrap();
        assert_eq!(
            c,
            crate::sasl::scram::Credentials::derive("pw1", &c.salt, c.iterations)
        );
        assert_eq!(senders[0], "alice@example.org");
        let text = std::fs::read_to_string(dir.path().join(USERS_FILE)).unwrap();
        assert!(text.contains("$argon2id$") && !text.contains("pw1"));
    }
}
