//! The `password` authenticator: user names and password hashes from a TOML file.
//!
//! # The file
//!
//! ```toml
//! [users.alice]
//! hash = "$argon2id$v=19$m=24576,t=1,p=1$<salt>$<hash>"
//! [users."sensor-42"]
//! hash = "$2b$10$…"
//! ```
//!
//! [`PasswordStore`] loads it (every hash is parsed then, so a bad entry is reported with its
//! user and file), and `add` / `remove` / `save` maintain it: saving writes a temporary file in
//! the same directory and renames it over the old one, mode 0600. The `cli_*` functions are
//! what `unigate passwd` calls; [`read_password`] reads from the terminal without echo, or one
//! line from a non-terminal stdin, never from argv.
//!
//! # Hash formats
//!
//! Verification always uses the parameters embedded in the stored hash.
//!
//! | format | example prefix | notes |
//! | --- | --- | --- |
//! | argon2id (default), argon2i | `$argon2id$v=19$m=24576,t=1,p=1$` | PHC string; argon2d is refused |
//! | bcrypt | `$2a$`, `$2b$`, `$2y$` | cost 4–16; only the first 72 bytes of a password count |
//! | PBKDF2 | `$pbkdf2-sha256$i=600000,l=32$` | PHC string: `$pbkdf2-sha256$i=<rounds>[,l=<len>]$<salt>$<hash>`, salt and hash in PHC base64 (standard alphabet, no padding); `l` defaults to 32; rounds 1000–10,000,000; `$pbkdf2-sha512$` too. The passlib / Django modular-crypt forms are not accepted |
//! | salted SHA-256 | `$sha256$` | `$sha256$<base64 salt>$<base64 digest>`, digest = SHA-256(salt ‖ password): the salt is a **prefix**; base64 standard alphabet, padding optional; the salt may be empty (unsalted tables) |
//!
//! The last three exist to import user tables from other systems; `add` always writes argon2id.
//! SHA-256 and bcrypt digests we compare ourselves are compared in constant time (`subtle`),
//! argon2 and PBKDF2 outputs by the `phc` crate's constant-time `Output` equality.
//!
//! # argon2id cost
//!
//! New hashes use [`Argon2Cost::DEFAULT`]: **m = 24 MiB, t = 1, p = 1** (`unigate passwd add
//! --argon2 m=KiB,t=N[,p=N]` and `passwd import` take another). The budget: a reconnect storm
//! of 10,000 clients must verify within about a minute on the 2-core machines we target, i.e.
//! at most ~12 ms of one core per verification while both cores hash. Measured on this
//! project's 2-core x86_64 machine (AVX2; Rust 1.95, release; CPU time per verification, so
//! that other work on the shared machine does not count; `cargo bench -p unigate-auth --bench
//! password`):
//!
//! | argon2id | 1 core busy | 2 cores busy | 10,000 verifications on 2 cores |
//! | --- | --- | --- | --- |
//! | m = 12 MiB, t = 2 | 8.4 ms | | |
//! | m = 16 MiB, t = 2 | 11.5 ms | 12.6 ms | 63 s |
//! | m = 19 MiB, t = 2 (OWASP minimum) | 14.8 ms | 15.9 ms | 79 s |
//! | **m = 24 MiB, t = 1 (default)** | **9.2 ms** | **9.5 ms** | **48 s** |
//! | m = 28 MiB, t = 1 | 11.3 ms | 11.1 ms | 56 s |
//! | m = 30 MiB, t = 1 | 13.0 ms | | |
//! | m = 32 MiB, t = 1 | 13.5 ms | | |
//! | m = 46 MiB, t = 1 (OWASP minimum) | 20.7 ms | | |
//!
//! (Medians of criterion, 2026-11-26, quiet machine.) Hashing runs on working memory that
//! each thread keeps and reuses (see `hash.rs`). Before, the crate allocated m KiB per hash and
//! glibc handed out fresh pages each time: the same table then read 9.6–11.7 ms at the default
//! and 32–48 ms from 32 MiB up (glibc maps blocks of 32 MiB and more afresh), and a storm
//! through the server cost ~14.5 ms per verification. End to end, through the server, a storm
//! of 10,000 devices with their own passwords at the default cost took 51 s (about 10 ms of
//! server CPU per connection; `scripts/bench-password-storm.sh`, docs/benchmarks.md), where it
//! took about 72 s before; at OWASP's m = 46 MiB, t = 1, 104 s. 28 MiB would just fit the
//! budget now; the default keeps 24 MiB for the headroom the rest of the server needs during a
//! storm. The price of reusing: each thread that has verified keeps m (the server's two auth
//! threads: 48 MiB at the default).
//!
//! Imported formats, same measure, one core: bcrypt cost 10: 58 ms; PBKDF2-SHA256 600,000
//! rounds: 57 ms; salted SHA-256: 0.1–0.15 µs (no protection against offline guessing). A store
//! full of bcrypt or PBKDF2 entries cannot meet the storm budget (about 5 minutes for 10,000):
//! one more reason to re-add such users, which writes argon2id.
//!
//! Trade-off: with the time per verification fixed by the budget, what an attacker pays per
//! guess is memory held for that time, so the budget goes to memory: t = 1 with the largest m
//! that fits, the shape RFC 9106 §4 recommends first (and OWASP lists as m = 46 MiB, t = 1).
//! 24 MiB × 1 pass beats 16 MiB × 2 passes: 1.5× the memory an attacker must hold per guess,
//! for less of our time. It is about half of OWASP's minimum memory: meeting that minimum
//! (`--argon2 m=47104,t=1`) makes the storm twice as long. Existing hashes keep verifying
//! with their own parameters, so a store can mix costs. Device passwords that are random (128
//! bits) gain nothing from a higher cost: it protects guessable, human-chosen passwords.
//!
//! A storm after a network outage, with the broker up, does not pay this at all: see
//! [`verified`] (a verified password is remembered for `verified_cache`, 15 minutes by default,
//! as an HMAC tag), which answers such a storm as fast as anonymous connections.
//!
//! # Authentication
//!
//! [`PasswordAuthenticator`] takes the user name and password of [`Credentials`]; without either
//! it ignores the client (a token authenticator may take it). Then:
//!
//! - a user name with `max_failures` failures within `failure_window` is refused
//!   ([`DenyReason::Throttled`]) without hashing until the window has passed (at most 10,000
//!   user names tracked; see [`throttle`]);
//! - a password over [`MAX_PASSWORD_LEN`] bytes is refused at once (a failure);
//! - a user whose password was verified within `verified_cache` and who sends the same one is
//!   allowed without hashing ([`verified`]);
//! - a known user is allowed or denied ([`DenyReason::BadCredentials`], a failure);
//! - an unknown user is verified against a dummy hash anyway, so that the answer takes as long
//!   as for a real user, then ignored or denied per `unknown_user` (a denial counts as a
//!   failure). The dummy is made with the cost most common in the store; users whose hashes
//!   cost differently (an imported bcrypt entry among argon2id ones) remain distinguishable by
//!   timing.
//!
//! The hashing runs inside the returned future: the server polls it on its auth runtime, off
//! the connection threads. [`PasswordAuthenticator::reload`] re-reads the file (SIGHUP) and
//! swaps it in whole; a failed reload keeps the old users. Passwords and hashes are never
//! logged; user names only at debug level.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::{Authenticator, BoxFuture, Credentials, Decision, DenyReason, Identity};

mod cli;
mod hash;
mod store;
pub mod throttle;
pub mod verified;

pub use cli::{cli_add, cli_import, cli_list, cli_remove, read_password, Imported};
pub use hash::{Argon2Cost, HashFormat, HashFormatError, StoredHash, MAX_PASSWORD_LEN};
pub use store::PasswordStore;
pub use throttle::{Clock, SystemClock, DEFAULT_TRACKED_USERS};

use throttle::Throttle;
use verified::{Verified, MAX_VERIFIED};

/// The authenticator kind, as in `kind = "password"`.
pub const KIND: &str = "password";

/// Errors of the password store, its file and the CLI helpers. None of them carries a password
/// or a hash.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// The password file could not be read or written.
    #[error("cannot {action} password file {}: {source}", path.display())]
    Io {
        /// What failed: `read`, `write`, `replace`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file is not TOML of the expected shape (`[users.NAME]` tables with a `hash`).
    #[error("password file {}: line {line}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Line of the error (1-based; 0 when unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A user's hash is not in an accepted format, or its cost is out of range.
    #[error("password file {}: user {user:?}: {reason}", path.display())]
    BadHash {
        /// The file.
        path: PathBuf,
        /// The user whose entry is bad.
        user: String,
        /// What is wrong with it.
        reason: HashFormatError,
    },
    /// A user name is not acceptable (empty, control characters, over 65,535 bytes).
    #[error("password file {}: user {user:?}: {reason}", path.display())]
    BadUser {
        /// The file.
        path: PathBuf,
        /// The user name.
        user: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An empty password was given to store.
    #[error("the password is empty")]
    EmptyPassword,
    /// A password to store is longer than [`MAX_PASSWORD_LEN`] (it could never log in).
    #[error("the password is longer than {max} bytes")]
    PasswordTooLong {
        /// The limit.
        max: usize,
    },
    /// The two passwords typed at the prompt differ.
    #[error("the passwords do not match")]
    Mismatch,
    /// The password could not be read from the terminal or stdin.
    #[error("cannot read the password: {0}")]
    Input(#[source] io::Error),
    /// A line of `passwd import` input is not `user:password` (its content is not repeated:
    /// it holds a password).
    #[error("input line {line}: {reason}")]
    Import {
        /// The line number, from 1.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Hashing failed (system RNG failure, invalid parameters).
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// What to answer for a user name that is not in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownUser {
    /// Let the next authenticator decide (the user may be known elsewhere).
    #[default]
    Ignore,
    /// Refuse ([`DenyReason::BadCredentials`], counted as a failure).
    Deny,
}

/// `[auth.authenticators.NAME]` with `kind = "password"` (the server strips `kind`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordConfig {
    /// The password file, as given (the server resolves relative paths).
    pub file: PathBuf,
    /// `ignore` (default) or `deny`.
    #[serde(default)]
    pub unknown_user: UnknownUser,
    /// Failures per user name within `failure_window` before attempts are refused without
    /// hashing; 0 disables throttling. Default 5.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// The throttling window, e.g. `"60s"` (default), `"5m"`.
    #[serde(default = "default_failure_window", with = "humantime_serde")]
    pub failure_window: Duration,
    /// How long a verified password is remembered (as an HMAC tag, never the password), so
    /// that a client reconnecting with it is not hashed again: `"15m"` (default); `"0s"`
    /// turns it off. See [`verified`].
    #[serde(default = "default_verified_cache", with = "humantime_serde")]
    pub verified_cache: Duration,
}

fn default_verified_cache() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_max_failures() -> u32 {
    5
}

fn default_failure_window() -> Duration {
    Duration::from_secs(60)
}

impl PasswordConfig {
    /// The defaults, for `file`.
    pub fn new(file: impl Into<PathBuf>) -> PasswordConfig {
        PasswordConfig {
            file: file.into(),
            unknown_user: UnknownUser::default(),
            max_failures: default_max_failures(),
            failure_window: default_failure_window(),
            verified_cache: default_verified_cache(),
        }
    }
}

/// The users in force, the dummy hash unknown users are verified against, and the passwords
/// verified since they were loaded.
struct Loaded {
    store: PasswordStore,
    dummy: StoredHash,
    verified: Verified,
}

impl Loaded {
    fn new(store: PasswordStore, remember: Duration) -> Result<Loaded, PasswordError> {
        // The cost most users' hashes have: that is what an unknown user should cost.
        let mut costs: HashMap<String, (usize, &StoredHash)> = HashMap::new();
        for h in store.hashes() {
            costs.entry(h.cost_key()).or_insert((0, h)).0 += 1;
        }
        let template = costs
            .into_iter()
            .max_by(|(ka, (na, _)), (kb, (nb, _))| na.cmp(nb).then_with(|| kb.cmp(ka)))
            .map(|(_, (_, h))| h);
        let dummy = match template {
            Some(h) => h.dummy_like()?,
            None => StoredHash::generate(b"unigate dummy password", Argon2Cost::DEFAULT)?,
        };
        Ok(Loaded {
            store,
            dummy,
            verified: Verified::new(remember, MAX_VERIFIED),
        })
    }
}

/// The `password` authenticator. See the [module documentation](self).
pub struct PasswordAuthenticator {
    name: Arc<str>,
    path: PathBuf,
    unknown_user: UnknownUser,
    max_failures: u32,
    failure_window: Duration,
    verified_cache: Duration,
    /// Swapped whole by `reload`; readers clone the `Arc` and drop the lock before hashing.
    loaded: RwLock<Arc<Loaded>>,
    throttle: Throttle,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for PasswordAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordAuthenticator")
            .field("name", &self.name)
            .field("file", &self.path)
            .field("unknown_user", &self.unknown_user)
            .field("users", &self.loaded.read().store.len())
            .field("throttle", &self.throttle)
            .finish()
    }
}

impl PasswordAuthenticator {
    /// Loads `config.file`; `name` is the instance's name in the configuration.
    pub fn new(name: impl Into<Arc<str>>, config: &PasswordConfig) -> Result<PasswordAuthenticator, PasswordError> {
        let loaded = Loaded::new(PasswordStore::load(&config.file)?, config.verified_cache)?;
        Ok(PasswordAuthenticator {
            name: name.into(),
            path: config.file.clone(),
            unknown_user: config.unknown_user,
            max_failures: config.max_failures,
            failure_window: config.failure_window,
            verified_cache: config.verified_cache,
            loaded: RwLock::new(Arc::new(loaded)),
            throttle: Throttle::new(config.max_failures, config.failure_window, DEFAULT_TRACKED_USERS),
            clock: Arc::new(SystemClock),
        })
    }

    /// Reads time from `clock` (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> PasswordAuthenticator {
        self.clock = clock;
        self
    }

    /// Tracks at most `users` user names for throttling (default [`DEFAULT_TRACKED_USERS`]);
    /// resets the counts.
    pub fn with_tracked_users(mut self, users: usize) -> PasswordAuthenticator {
        self.throttle = Throttle::new(self.max_failures, self.failure_window, users);
        self
    }

    /// Re-reads the file and swaps it in whole; returns the number of users. On error the
    /// users loaded before stay in force. Throttling counts are kept.
    pub fn reload(&self) -> Result<usize, PasswordError> {
        // Parse and make the dummy before taking the lock: logins go on meanwhile.
        let loaded = Loaded::new(PasswordStore::load(&self.path)?, self.verified_cache)?;
        let users = loaded.store.len();
        *self.loaded.write() = Arc::new(loaded);
        tracing::info!(authenticator = %self.name, users, "password file reloaded");
        Ok(users)
    }

    /// How many users are loaded.
    pub fn users(&self) -> usize {
        self.loaded.read().store.len()
    }

    /// How many user names have a remembered verified password now.
    pub fn remembered_users(&self) -> usize {
        self.loaded.read().verified.len()
    }

    /// How many user names the throttle tracks now.
    pub fn tracked_users(&self) -> usize {
        self.throttle.tracked()
    }

    /// The decision, synchronously (hashing included).
    pub fn decide(&self, creds: &Credentials) -> Decision {
        let (Some(user), Some(password)) = (creds.username.as_deref(), creds.password.as_ref()) else {
            return Decision::Ignore;
        };
        let now = self.clock.now();
        if self.throttle.is_throttled(user, now) {
            tracing::debug!(authenticator = %self.name, user, "password attempt throttled");
            return Decision::Deny(DenyReason::Throttled);
        }
        if password.len() > MAX_PASSWORD_LEN {
            self.throttle.record_failure(user, now);
            tracing::debug!(authenticator = %self.name, user, len = password.len(), "password too long");
            return Decision::Deny(DenyReason::BadCredentials);
        }
        let loaded = Arc::clone(&self.loaded.read());
        let allow = || {
            Decision::Allow(Identity {
                username: Some(Arc::from(user)),
                authenticator: Arc::clone(&self.name),
                ..Identity::default()
            })
        };
        if loaded.verified.contains(user, password.expose(), now) {
            self.throttle.record_success(user);
            tracing::debug!(authenticator = %self.name, user, "password accepted (verified recently)");
            return allow();
        }
        match loaded.store.hash(user) {
            Some(hash) => {
                if hash.verify(password.expose()) {
                    loaded.verified.insert(user, password.expose(), now);
                    self.throttle.record_success(user);
                    tracing::debug!(authenticator = %self.name, user, "password accepted");
                    allow()
                } else {
                    self.throttle.record_failure(user, now);
                    tracing::debug!(authenticator = %self.name, user, "wrong password");
                    Decision::Deny(DenyReason::BadCredentials)
                }
            }
            None => {
                // Same work as for a real user, so the answer's timing does not tell whether
                // the user exists. black_box: the result is unused, the work must not be.
                std::hint::black_box(loaded.dummy.verify(std::hint::black_box(password.expose())));
                tracing::debug!(authenticator = %self.name, user, "unknown user");
                match self.unknown_user {
                    UnknownUser::Ignore => Decision::Ignore,
                    UnknownUser::Deny => {
                        self.throttle.record_failure(user, now);
                        Decision::Deny(DenyReason::BadCredentials)
                    }
                }
            }
        }
    }
}

impl Authenticator for PasswordAuthenticator {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn authenticate<'a>(&'a self, creds: &'a Credentials) -> BoxFuture<'a, Decision> {
        // The hash runs when the future is polled, i.e. on the server's auth runtime.
        Box::pin(async move { self.decide(creds) })
    }

    fn scram(&self, username: &str) -> Option<crate::ScramLookup> {
        if self.throttle.is_throttled(username, self.clock.now()) {
            return Some(crate::ScramLookup::Throttled);
        }
        let loaded = Arc::clone(&self.loaded.read());
        Some(match loaded.store.scram(username) {
            Some(c) => crate::ScramLookup::Found(c.clone()),
            None => crate::ScramLookup::Unknown,
        })
    }

    fn scram_result(&self, username: &str, ok: bool) {
        if ok {
            self.throttle.record_success(username);
        } else {
            self.throttle.record_failure(username, self.clock.now());
        }
    }
}
