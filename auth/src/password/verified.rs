//! Passwords verified recently, so that a client reconnecting with the password it just used
//! is not hashed again.
//!
//! A reconnect storm after a network outage (the broker stayed up, the devices lost their
//! links) would otherwise cost a full argon2id verification per device again: about a minute
//! for 10,000 devices on 2 cores. With the cache, a device that logged in within
//! `verified_cache` and sends the same password is allowed at once.
//!
//! What is kept per user name: an HMAC-SHA256 tag of the password under a random key made when
//! the file is loaded, and an expiry. Never the password. A different password (a guess) misses
//! and is verified against the stored hash as usual, so the cache gives an attacker nothing to
//! guess against; what it reveals by timing (a fast answer) is that the password was right,
//! which the answer says anyway. Someone who can read the server's memory gets key and tags and
//! could test guesses at SHA-256 speed — but could equally read passwords as clients send them.
//! The cache lives with the loaded file: a reload (SIGHUP, `passwd` changes) starts it empty, so
//! a removed user or a changed password is never honoured from it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use parking_lot::Mutex;
use subtle::ConstantTimeEq;

use crate::scram::rand_bytes;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// User names remembered at most (about 120 bytes each); past it, expired entries are dropped
/// and, if still full, new ones are not remembered.
pub const MAX_VERIFIED: usize = 200_000;

type Remembered = ([u8; 32], Instant);

/// See the [module documentation](self).
pub(crate) struct Verified {
    ttl: Duration,
    key: [u8; 32],
    /// User name → (tag of the password, remembered until).
    entries: Mutex<HashMap<Arc<str>, Remembered>>,
    max: usize,
}

impl Verified {
    /// Remembers for `ttl` (nothing when zero), at most `max` user names.
    pub(crate) fn new(ttl: Duration, max: usize) -> Verified {
        Verified {
            ttl,
            key: rand_bytes(),
            entries: Mutex::new(HashMap::new()),
            max,
        }
    }

    fn tag(&self, user: &str, password: &[u8]) -> [u8; 32] {
        // HMAC takes keys of any length: new_from_slice cannot fail.
        let Ok(mut mac) = HmacSha256::new_from_slice(&self.key) else {
            return [0; 32];
        };
        // Length-prefixed, so that (user, password) pairs cannot collide by shifting bytes.
        mac.update(&(user.len() as u64).to_be_bytes());
        mac.update(user.as_bytes());
        mac.update(password);
        mac.finalize().into_bytes().into()
    }

    /// Whether `user` logged in with `password` within the time to live.
    pub(crate) fn contains(&self, user: &str, password: &[u8], now: Instant) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let tag = self.tag(user, password);
        let entries = self.entries.lock();
        entries
            .get(user)
            .is_some_and(|(t, until)| *until > now && bool::from(t.ct_eq(&tag)))
    }

    /// `user` logged in with `password`.
    pub(crate) fn insert(&self, user: &str, password: &[u8], now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let tag = self.tag(user, password);
        let mut entries = self.entries.lock();
        if entries.len() >= self.max && !entries.contains_key(user) {
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= self.max {
                return;
            }
        }
        entries.insert(Arc::from(user), (tag, now + self.ttl));
    }

    /// How many user names are remembered (expired ones included until dropped).
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_exact_password_until_it_expires() {
        let v = Verified::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        assert!(!v.contains("alice", b"secret", t0));
        v.insert("alice", b"secret", t0);
        assert!(v.contains("alice", b"secret", t0 + Duration::from_secs(59)));
        assert!(!v.contains("alice", b"secreT", t0), "another password misses");
        assert!(
            !v.contains("alicesecret", b"", t0),
            "the boundary between user and password counts"
        );
        assert!(!v.contains("bob", b"secret", t0));
        assert!(!v.contains("alice", b"secret", t0 + Duration::from_secs(60)), "expired");
    }

    #[test]
    fn zero_ttl_remembers_nothing_and_the_bound_holds() {
        let off = Verified::new(Duration::ZERO, 10);
        let t0 = Instant::now();
        off.insert("alice", b"secret", t0);
        assert!(!off.contains("alice", b"secret", t0));
        assert_eq!(off.len(), 0);

        let v = Verified::new(Duration::from_secs(10), 2);
        v.insert("a", b"1", t0);
        v.insert("b", b"1", t0);
        v.insert("c", b"1", t0);
        assert_eq!(v.len(), 2, "full: the third is not remembered");
        assert!(!v.contains("c", b"1", t0));
        v.insert("a", b"2", t0);
        assert!(v.contains("a", b"2", t0), "a known user is updated even when full");
        // Once the others expired, room is made.
        v.insert("c", b"1", t0 + Duration::from_secs(11));
        assert!(v.contains("c", b"1", t0 + Duration::from_secs(11)));
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn two_loads_have_different_keys() {
        let (a, b) = (
            Verified::new(Duration::from_secs(1), 1),
            Verified::new(Duration::from_secs(1), 1),
        );
        assert_ne!(a.tag("u", b"p"), b.tag("u", b"p"));
    }
}
