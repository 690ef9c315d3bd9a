//! Per-username failed-attempt throttling, with bounded memory and an injectable clock.
//!
//! A user name's window opens at its first failure; once `max_failures` failures fall in the
//! window, attempts are refused without hashing until the window has passed. A success clears
//! the count. At most `capacity` user names are tracked: when full, expired entries are dropped
//! first, then the one whose window opened earliest. That scan is O(capacity), but it only runs
//! on a failure that needs a new slot, which already cost a full hash verification.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sha2::{Digest as _, Sha256};

/// Where the authenticator reads the time (injectable so that tests need not sleep).
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The monotonic system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// How many user names the throttle tracks by default.
pub const DEFAULT_TRACKED_USERS: usize = 10_000;

/// Tracked users are keyed by SHA-256 of the name: 32 bytes each however long the name
/// (MQTT allows 64 KiB), and no user names sit in this map's memory.
type Key = [u8; 32];

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    window_start: Instant,
}

/// The failure counters. A plain mutex: it is taken twice per password attempt (check, record),
/// never across a hash, and an attempt already costs milliseconds of hashing.
pub(crate) struct Throttle {
    max_failures: u32,
    window: Duration,
    capacity: usize,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl fmt::Debug for Throttle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("max_failures", &self.max_failures)
            .field("window", &self.window)
            .field("capacity", &self.capacity)
            .field("tracked", &self.entries.lock().len())
            .finish()
    }
}

fn key(user: &str) -> Key {
    Sha256::digest(user.as_bytes()).into()
}

impl Throttle {
    /// `max_failures == 0` disables throttling.
    pub(crate) fn new(max_failures: u32, window: Duration, capacity: usize) -> Throttle {
        Throttle {
            max_failures,
            window,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn enabled(&self) -> bool {
        self.max_failures > 0 && !self.window.is_zero()
    }

    fn expired(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.window_start) >= self.window
    }

    /// Whether `user` must be refused without trying its password.
    pub(crate) fn is_throttled(&self, user: &str, now: Instant) -> bool {
        if !self.enabled() {
            return false;
        }
        let mut entries = self.entries.lock();
        let k = key(user);
        match entries.get(&k) {
            Some(e) if self.expired(e, now) => {
                entries.remove(&k);
                false
            }
            Some(e) => e.failures >= self.max_failures,
            None => false,
        }
    }

    /// Counts a failed attempt for `user`.
    pub(crate) fn record_failure(&self, user: &str, now: Instant) {
        if !self.enabled() {
            return;
        }
        let mut entries = self.entries.lock();
        let k = key(user);
        if let Some(e) = entries.get_mut(&k) {
            if self.expired(e, now) {
                *e = Entry {
                    failures: 1,
                    window_start: now,
                };
            } else {
                e.failures = e.failures.saturating_add(1);
            }
            return;
        }
        if entries.len() >= self.capacity {
            entries.retain(|_, e| !self.expired(e, now));
        }
        if entries.len() >= self.capacity {
            let oldest = entries.iter().min_by_key(|(_, e)| e.window_start).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            k,
            Entry {
                failures: 1,
                window_start: now,
            },
        );
    }

    /// A successful login clears the count.
    pub(crate) fn record_success(&self, user: &str) {
        if self.enabled() {
            self.entries.lock().remove(&key(user));
        }
    }

    /// How many user names are tracked.
    pub(crate) fn tracked(&self) -> usize {
        self.entries.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_after_max_failures_until_the_window_passes() {
        let t = Throttle::new(3, Duration::from_secs(60), 100);
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(!t.is_throttled("bob", t0 + Duration::from_secs(i)));
            t.record_failure("bob", t0 + Duration::from_secs(i));
        }
        assert!(t.is_throttled("bob", t0 + Duration::from_secs(59)));
        assert!(!t.is_throttled("alice", t0 + Duration::from_secs(59)));
        assert!(!t.is_throttled("bob", t0 + Duration::from_secs(60)));
        // The window restarted: one failure is not enough.
        t.record_failure("bob", t0 + Duration::from_secs(61));
        assert!(!t.is_throttled("bob", t0 + Duration::from_secs(62)));
    }

    #[test]
    fn success_clears_and_zero_disables() {
        let t = Throttle::new(2, Duration::from_secs(60), 100);
        let t0 = Instant::now();
        t.record_failure("bob", t0);
        t.record_success("bob");
        t.record_failure("bob", t0);
        assert!(!t.is_throttled("bob", t0));
        let off = Throttle::new(0, Duration::from_secs(60), 100);
        for _ in 0..10 {
            off.record_failure("bob", t0);
        }
        assert!(!off.is_throttled("bob", t0));
        assert_eq!(off.tracked(), 0);
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_goes_first() {
        let t = Throttle::new(1, Duration::from_secs(60), 10);
        let t0 = Instant::now();
        t.record_failure("victim", t0);
        for i in 0..100u64 {
            t.record_failure(&format!("u{i}"), t0 + Duration::from_millis(i + 1));
            assert!(t.tracked() <= 10);
        }
        assert_eq!(t.tracked(), 10);
        assert!(!t.is_throttled("victim", t0 + Duration::from_secs(1)));
        assert!(t.is_throttled("u99", t0 + Duration::from_secs(1)));
        // Expired entries are dropped before anything live is evicted.
        t.record_failure("late", t0 + Duration::from_secs(120));
        assert_eq!(t.tracked(), 1);
    }
}
