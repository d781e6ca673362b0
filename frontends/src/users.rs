//! Login accounts: addresses, password hashes (argon2id, PHC strings), aliases, domains.
//!
//! Kept in `<data>/users.toml` (mode 0600), written atomically (temporary file, fsync,
//! rename) by the `ringmail user` commands, and re-read by a running server when the file
//! changes, so accounts can be added while it runs. Mail itself lives in the engine, in an
//! engine account named after the user (`account`); it is created when the user first
//! receives mail or logs in.
//!
//! A deleted user's mail stays stored (listed under `[[deleted]]`) unless deleted with
//! `--purge`. An address added again gets a new engine account (`address#2`, ...), so a new
//! owner of an address never sees the previous owner's mail.

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
    /// The engine account holding the user's mail; unset means the address itself (users
    /// added before accounts were named, and every address's first owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

impl User {
    /// The engine account holding this user's mail.
    pub fn account(&self) -> &str {
        self.account.as_deref().unwrap_or(&self.address)
    }
}

/// A user who was deleted, and the engine account that holds (or held) their mail.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeletedUser {
    pub address: String,
    pub account: String,
    /// Seconds since the Unix epoch.
    #[serde(default)]
    pub deleted_at: u64,
    /// The mail is to be deleted too (by the server, or by the `user` command when the
    /// server is stopped).
    #[serde(default)]
    pub purge: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UsersFile {
    /// Extra local domains (every user's and alias's domain is local too).
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default, rename = "user")]
    pub users: Vec<User>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<DeletedUser>,
}

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("reading or writing {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0} is not valid: {1}")]
    Parse(PathBuf, String),
    #[error("{0:?} is not a valid address: {1}")]
    BadAddress(String, &'static str),
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

/// An address a mailbox can have: `local@domain` as RFC 5321 section 4.1.2 writes it
/// (a dot-atom local part; a domain of LDH labels, or UTF-8 labels for SMTPUTF8), within
/// the limits of section 4.5.3.1 (local part 64 octets, domain 255, path 256).
pub fn check_address(a: &str) -> Result<(), UsersError> {
    let bad = |why| Err(UsersError::BadAddress(a.to_string(), why));
    let Some((local, domain)) = a.rsplit_once('@') else {
        return bad("expected local-part@domain");
    };
    if local.is_empty() {
        return bad("the local part is empty");
    }
    if local.len() > 64 {
        return bad("the local part is longer than 64 octets (RFC 5321 section 4.5.3.1.1)");
    }
    if a.len() > 254 {
        return bad("the address is longer than 254 octets (RFC 5321 section 4.5.3.1.3)");
    }
    // atext (RFC 5322 section 3.2.3), and UTF-8 beyond ASCII (RFC 6531).
    let atext =
        |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    if local
        .split('.')
        .any(|atom| atom.is_empty() || !atom.chars().all(atext))
    {
        return bad("the local part must be atoms (letters, digits, !#$%&'*+-/=?^_`{|}~) joined by single dots");
    }
    if domain.is_empty() || domain.len() > 255 {
        return bad("the domain must have 1 to 255 octets");
    }
    for label in domain.split('.') {
        let ldh = |c: char| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii();
        if label.is_empty() || label.len() > 63 || !label.chars().all(ldh) {
            return bad("each domain label must have 1 to 63 letters, digits or hyphens");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a domain label must not start or end with a hyphen");
        }
    }
    Ok(())
}

/// What changed between two user lists.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UsersDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Password or aliases changed.
    pub changed: Vec<String>,
}

impl UsersDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
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

/// An argon2 hash of nothing anyone knows, verified for unknown users, so that a wrong
/// password costs the same time whether the account exists or not (without it, timing
/// told existing accounts apart: ~20 ms more for them).
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        use argon2::password_hash::rand_core::RngCore;
        let mut pw = [0u8; 16];
        OsRng.fill_bytes(&mut pw);
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(&pw, &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
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

    pub fn deleted(&self) -> &[DeletedUser] {
        &self.file.deleted
    }

    /// Who was added, removed or changed from `self` to `new`.
    pub fn diff(&self, new: &Users) -> UsersDiff {
        let mut d = UsersDiff::default();
        for u in new.users() {
            match self.users().iter().find(|o| o.address == u.address) {
                None => d.added.push(u.address.clone()),
                Some(o) if o != u => d.changed.push(u.address.clone()),
                Some(_) => {}
            }
        }
        for o in self.users() {
            if !new.users().iter().any(|u| u.address == o.address) {
                d.removed.push(o.address.clone());
            }
        }
        d
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
        // Only the last component, as `serve` does: a mistyped path fails instead of
        // becoming a new store.
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(UsersError::Io(dir.to_path_buf(), e)),
        }
        let path = dir.join(USERS_FILE);
        let tmp = dir.join(format!("{USERS_FILE}.tmp"));
        let text = toml::to_string_pretty(&self.file)
            .map_err(|e| UsersError::Parse(path.clone(), e.to_string()))?;
        let io = |e| UsersError::Io(tmp.clone(), e);
        // Password hashes: readable by the server's user only, whatever the umask.
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
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
        let address = normalize(address);
        let account = self.fresh_account(&address);
        f.users.push(User {
            account: (account != address).then_some(account),
            address,
            password: hash_password(password)?,
            aliases: aliases.iter().map(|a| normalize(a)).collect(),
            scram: Some(scram_keys(password)),
        });
        *self = Self::from_file(f);
        Ok(())
    }

    /// An engine account name no user, present or deleted, has had: the address itself the
    /// first time, then `address#2`, `address#3`, ...
    fn fresh_account(&self, address: &str) -> String {
        let taken = |a: &str| {
            self.file.users.iter().any(|u| u.account() == a)
                || self.file.deleted.iter().any(|d| d.account == a)
        };
        let mut n = 1;
        let mut name = address.to_string();
        while taken(&name) {
            n += 1;
            name = format!("{address}#{n}");
        }
        name
    }

    /// Removes a user's login. Their mail stays stored under `[[deleted]]`, unless `purge`:
    /// then it is deleted (by the server if it runs, else by the caller).
    pub fn remove(&mut self, address: &str, purge: bool) -> Result<DeletedUser, UsersError> {
        let mut f = self.file.clone();
        let a = normalize(address);
        let i = f
            .users
            .iter()
            .position(|u| u.address == a)
            .ok_or_else(|| UsersError::NoSuchUser(address.to_string()))?;
        let u = f.users.remove(i);
        let deleted = DeletedUser {
            account: u.account().to_string(),
            address: u.address,
            deleted_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            purge,
        };
        f.deleted.push(deleted.clone());
        *self = Self::from_file(f);
        Ok(deleted)
    }

    /// Marks the kept mail of a deleted address for deletion; returns its accounts.
    pub fn mark_purged(&mut self, address: &str) -> Vec<String> {
        let mut f = self.file.clone();
        let a = normalize(address);
        let mut accounts = Vec::new();
        for d in f.deleted.iter_mut().filter(|d| d.address == a && !d.purge) {
            d.purge = true;
            accounts.push(d.account.clone());
        }
        *self = Self::from_file(f);
        accounts
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
        let user = self.resolve(login);
        let hash = user.map(|u| u.password.as_str()).unwrap_or(decoy_hash());
        let hash = PasswordHash::new(hash).ok()?;
        let verified = Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok();
        let u = user.filter(|_| verified)?;
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
            Err(UsersError::BadAddress(..))
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

    #[test]
    fn addresses_are_checked_against_rfc_5321() {
        for ok in [
            "a@example.org",
            "first.last+tag@mail.example.org",
            "o'brien@example.org",
            "x@localhost",
            "jörg@bücher.example",
            &format!("{}@example.org", "l".repeat(64)),
        ] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "carol@@example.org",
            "a,b@example.org",
            "a b@example.org",
            "@example.org",
            "a@",
            "a@.example.org",
            "a@example..org",
            "a@-example.org",
            ".a@example.org",
            "a..b@example.org",
            "a.@example.org",
            "a@exa_mple.org",
            &format!("{}@example.org", "l".repeat(65)),
            &format!("{}@example.org", "l".repeat(300)),
            &format!("a@{}.org", "d".repeat(64)),
        ] {
            assert!(
                matches!(check_address(bad), Err(UsersError::BadAddress(..))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_readded_address_gets_a_new_account_and_the_old_mail_is_listed() {
        let mut u = Users::default();
        u.add("a@example.org", "pw", &[]).unwrap();
        assert_eq!(
            u.resolve("a@example.org").unwrap().account(),
            "a@example.org"
        );
        let d = u.remove("a@example.org", false).unwrap();
        assert_eq!(d.account, "a@example.org");
        assert!(!d.purge);
        assert!(u.resolve("a@example.org").is_none());
        u.add("A@example.org", "pw2", &[]).unwrap();
        assert_eq!(
            u.resolve("a@example.org").unwrap().account(),
            "a@example.org#2"
        );
        u.remove("a@example.org", true).unwrap();
        u.add("a@example.org", "pw3", &[]).unwrap();
        assert_eq!(
            u.resolve("a@example.org").unwrap().account(),
            "a@example.org#3"
        );
        let kept: Vec<(&str, bool)> = u
            .deleted()
            .iter()
            .map(|d| (d.account.as_str(), d.purge))
            .collect();
        assert_eq!(kept, [("a@example.org", false), ("a@example.org#2", true)]);
        // The account survives a save and a load.
        let dir = tempfile::tempdir().unwrap();
        u.save(dir.path()).unwrap();
        let back = Users::load(dir.path()).unwrap();
        assert_eq!(
            back.resolve("a@example.org").unwrap().account(),
            "a@example.org#3"
        );
        assert_eq!(back.deleted().len(), 2);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(USERS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn unknown_users_cost_an_argon2_verification_too() {
        let mut u = Users::default();
        u.add("a@example.org", "pw", &[]).unwrap();
        let _ = decoy_hash();
        // The fastest of a few tries: the machine's noise only ever adds time.
        let time = |login: &str| {
            (0..4)
                .map(|_| {
                    let t = std::time::Instant::now();
                    assert!(u.authenticate(login, "wrong").is_none());
                    t.elapsed()
                })
                .min()
                .unwrap()
        };
        let (known, unknown) = (time("a@example.org"), time("nobody@example.org"));
        assert!(
            unknown * 3 > known && known * 3 > unknown,
            "{known:?} vs {unknown:?}"
        );
    }
}
