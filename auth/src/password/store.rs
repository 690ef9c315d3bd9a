//! The password file: a TOML table of users and their hashes, loaded whole, written back
//! atomically (a temporary file in the same directory, fsynced, then renamed over the old one)
//! with mode 0600 on unix.
//!
//! ```toml
//! [users.alice]
//! hash = "$argon2id$v=19$m=24576,t=1,p=1$…"
//! scram = "SCRAM-SHA-256$4096:…$…:…"   # optional: MQTT 5 enhanced authentication
//! ```
//!
//! `scram` holds SCRAM-SHA-256 verifiers (see [`crate::scram`]); `add` writes both. Imported
//! hashes have none, and their users cannot use SCRAM until they are added again.
//!
//! Comments in the file are not kept when the store is saved.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::hash::{Argon2Cost, StoredHash};
use super::PasswordError;
use crate::scram::ScramCredentials;
use crate::Secret;

/// Longest accepted user name: MQTT's string limit (MQTT 5 §1.5.4).
const MAX_USERNAME_LEN: usize = 65_535;

const HEADER: &str = "# unigate password file: one [users.NAME] table per user.\n\
                      # Written by unigate (passwd add/remove); comments are not kept.\n\n";

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct FileRepr {
    #[serde(default)]
    users: BTreeMap<String, UserRepr>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct UserRepr {
    hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scram: Option<String>,
}

/// Users and their password hashes, as in one password file.
#[derive(Clone)]
pub struct PasswordStore {
    path: PathBuf,
    users: BTreeMap<String, StoredHash>,
    scram: BTreeMap<String, ScramCredentials>,
    cost: Argon2Cost,
}

impl fmt::Debug for PasswordStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither hashes nor user names: this may end up in a log line.
        f.debug_struct("PasswordStore")
            .field("path", &self.path)
            .field("users", &self.users.len())
            .field("cost", &self.cost)
            .finish()
    }
}

/// Checks a user name: not empty, no control characters, at most 65,535 bytes.
fn check_username(user: &str) -> Result<(), &'static str> {
    if user.is_empty() {
        Err("user name is empty")
    } else if user.len() > MAX_USERNAME_LEN {
        Err("user name is longer than 65,535 bytes")
    } else if user.chars().any(char::is_control) {
        Err("user name contains control characters")
    } else {
        Ok(())
    }
}

impl PasswordStore {
    /// An empty store that [`save`](Self::save)s to `path`.
    pub fn new(path: impl Into<PathBuf>) -> PasswordStore {
        PasswordStore {
            path: path.into(),
            users: BTreeMap::new(),
            scram: BTreeMap::new(),
            cost: Argon2Cost::DEFAULT,
        }
    }

    /// Reads and parses `path`. Every hash is parsed here: a bad one fails the whole load
    /// with [`PasswordError::BadHash`] naming the user and the file.
    pub fn load(path: impl Into<PathBuf>) -> Result<PasswordStore, PasswordError> {
        let path = path.into();
        let text = fs::read_to_string(&path).map_err(|source| PasswordError::Io {
            action: "read",
            path: path.clone(),
            source,
        })?;
        warn_if_readable_by_others(&path);
        let repr: FileRepr = toml::from_str(&text).map_err(|e| PasswordError::Syntax {
            path: path.clone(),
            line: e.span().map(|s| line_of(&text, s.start)).unwrap_or(0),
            // `message()` rather than `Display`: the latter quotes the offending line, which
            // may hold a hash.
            message: e.message().to_owned(),
        })?;
        let mut users = BTreeMap::new();
        let mut scram = BTreeMap::new();
        for (user, entry) in repr.users {
            if let Err(reason) = check_username(&user) {
                return Err(PasswordError::BadUser { path, user, reason });
            }
            if let Some(text) = &entry.scram {
                match ScramCredentials::parse(text) {
                    Ok(c) => {
                        scram.insert(user.clone(), c);
                    }
                    Err(e) => {
                        return Err(PasswordError::BadHash {
                            path,
                            user,
                            reason: super::hash::HashFormatError::new(format!("scram: {e}")),
                        })
                    }
                }
            }
            match StoredHash::parse(&entry.hash) {
                Ok(hash) => {
                    users.insert(user, hash);
                }
                Err(reason) => return Err(PasswordError::BadHash { path, user, reason }),
            }
        }
        tracing::debug!(path = %path.display(), users = users.len(), "password file loaded");
        Ok(PasswordStore {
            path,
            users,
            scram,
            cost: Argon2Cost::DEFAULT,
        })
    }

    /// [`load`](Self::load), or an empty store when the file does not exist yet.
    pub fn load_or_new(path: impl Into<PathBuf>) -> Result<PasswordStore, PasswordError> {
        let path = path.into();
        match fs::metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(PasswordStore::new(path)),
            _ => PasswordStore::load(path),
        }
    }

    /// Uses `cost` for the hashes that [`add`](Self::add) makes from now on.
    pub fn with_cost(mut self, cost: Argon2Cost) -> PasswordStore {
        self.cost = cost;
        self
    }

    /// The file this store was loaded from and saves to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hashes `password` with argon2id and sets it as `user`'s; true when it replaced an
    /// existing password. Empty passwords and passwords over
    /// [`MAX_PASSWORD_LEN`](super::MAX_PASSWORD_LEN) bytes are refused.
    pub fn add(&mut self, user: &str, password: &Secret) -> Result<bool, PasswordError> {
        if password.is_empty() {
            return Err(PasswordError::EmptyPassword);
        }
        let hash = StoredHash::generate(password.expose(), self.cost)?;
        let scram = ScramCredentials::generate(password.expose());
        let replaced = self.insert_hash(user, hash)?;
        self.scram.insert(user.to_owned(), scram);
        Ok(replaced)
    }

    /// [`add`](Self::add) for many users at once, hashing on every core; returns how many
    /// existing users got a new password. Nothing changes when any entry is refused (a bad user
    /// name, an empty or over-long password: the error names the entry's user, never its
    /// password).
    pub fn add_many(&mut self, entries: &[(String, Secret)]) -> Result<usize, PasswordError> {
        for (user, password) in entries {
            let refuse = |reason| PasswordError::BadUser {
                path: self.path.clone(),
                user: user.clone(),
                reason,
            };
            check_username(user).map_err(refuse)?;
            if password.is_empty() {
                return Err(refuse("empty password"));
            }
            if password.len() > super::MAX_PASSWORD_LEN {
                return Err(refuse("password longer than the maximum"));
            }
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = entries.len().div_ceil(threads).max(1);
        let cost = self.cost;
        type Hashed = Result<Vec<(StoredHash, ScramCredentials)>, PasswordError>;
        let hashed: Vec<Hashed> = std::thread::scope(|s| {
            let workers: Vec<_> = entries
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|(_, pw)| {
                                Ok((
                                    StoredHash::generate(pw.expose(), cost)?,
                                    ScramCredentials::generate(pw.expose()),
                                ))
                            })
                            .collect::<Hashed>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| Err(PasswordError::Hash("a hashing thread failed".into())))
                })
                .collect()
        });
        let mut done = Vec::with_capacity(entries.len());
        for part in hashed {
            done.extend(part?);
        }
        let mut replaced = 0;
        for ((user, _), (hash, scram)) in entries.iter().zip(done) {
            replaced += usize::from(self.users.insert(user.clone(), hash).is_some());
            self.scram.insert(user.clone(), scram);
        }
        Ok(replaced)
    }

    /// Sets `user`'s hash as given (to import an existing table); true when it replaced one.
    pub fn insert_hash(&mut self, user: &str, hash: StoredHash) -> Result<bool, PasswordError> {
        check_username(user).map_err(|reason| PasswordError::BadUser {
            path: self.path.clone(),
            user: user.to_owned(),
            reason,
        })?;
        // A verifier derived from another password would no longer match.
        self.scram.remove(user);
        Ok(self.users.insert(user.to_owned(), hash).is_some())
    }

    /// Removes `user`; false when there was no such user.
    pub fn remove(&mut self, user: &str) -> bool {
        self.scram.remove(user);
        self.users.remove(user).is_some()
    }

    /// `user`'s SCRAM-SHA-256 verifiers, when the store has them.
    pub fn scram(&self, user: &str) -> Option<&ScramCredentials> {
        self.scram.get(user)
    }

    /// The user names, sorted.
    pub fn list(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    /// Whether `user` exists.
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// `user`'s hash.
    pub fn hash(&self, user: &str) -> Option<&StoredHash> {
        self.users.get(user)
    }

    /// Checks `user`'s password: `None` for an unknown user. No timing equalisation here:
    /// [`PasswordAuthenticator`](super::PasswordAuthenticator) does that.
    pub fn verify(&self, user: &str, password: &[u8]) -> Option<bool> {
        self.users.get(user).map(|h| h.verify(password))
    }

    /// How many users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub(crate) fn hashes(&self) -> impl Iterator<Item = &StoredHash> {
        self.users.values()
    }

    /// Writes the store to its file atomically, mode 0600 on unix, creating it when missing.
    pub fn save(&self) -> Result<(), PasswordError> {
        let repr = FileRepr {
            users: self
                .users
                .iter()
                .map(|(u, h)| {
                    (
                        u.clone(),
                        UserRepr {
                            hash: h.as_str().to_owned(),
                            scram: self.scram.get(u).map(ToString::to_string),
                        },
                    )
                })
                .collect(),
        };
        let body = toml::to_string(&repr).map_err(|e| PasswordError::Hash(format!("cannot encode the file: {e}")))?;
        let mut text = String::with_capacity(HEADER.len() + body.len());
        text.push_str(HEADER);
        text.push_str(&body);
        write_atomically(&self.path, text.as_bytes())?;
        tracing::debug!(path = %self.path.display(), users = self.users.len(), "password file saved");
        Ok(())
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes().iter().take(offset).filter(|&&b| b == b'\n').count() + 1
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "password file is accessible by group or others; chmod 600 it");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

/// Temp file beside `path` (same file system, so the rename is atomic), written, fsynced,
/// renamed over `path`; then the directory is fsynced so the rename itself survives a crash.
fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), PasswordError> {
    let io_err = |action: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| PasswordError::Io {
            action,
            path: p,
            source,
        }
    };
    let file_name = path.file_name().ok_or_else(|| PasswordError::Io {
        action: "write",
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let nonce = argon2::password_hash::try_generate_salt()
        .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .unwrap_or_else(|_| u64::from(std::process::id()));
    let tmp = dir.join(format!(".{}.{nonce:016x}.tmp", file_name.to_string_lossy()));

    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(contents)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write", &tmp)(e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("replace", path)(e));
    }
    #[cfg(unix)]
    {
        // Best effort: not every file system supports fsync on a directory.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn user_names_are_checked() {
        assert!(check_username("alice").is_ok());
        assert!(check_username("dev/42 é").is_ok());
        assert!(check_username("").is_err());
        assert!(check_username("a\nb").is_err());
        assert!(check_username(&"x".repeat(65_536)).is_err());
    }

    #[test]
    fn lines_are_counted_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
    }
}
