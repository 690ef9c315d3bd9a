//! Introspection results by token digest: a bounded map whose entries expire, with the clock
//! passed in (`now`) so that tests drive time.
//!
//! Keys are SHA-256 digests of the tokens, never the tokens: a memory dump or a debug print of
//! the cache gives nobody a usable credential. Eviction is first-in first-out: entries expire
//! on their own (at the token's `exp` at the latest), so recency adds little, and FIFO needs no
//! bookkeeping on a hit, which keeps lookups to one short lock.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// The SHA-256 digest of a token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey([u8; 32]);

impl TokenKey {
    /// The key of `token`.
    pub(crate) fn of(token: &[u8]) -> TokenKey {
        TokenKey(Sha256::digest(token).into())
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to tell entries apart in a debug print.
        write!(
            f,
            "TokenKey({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

struct Entry<V> {
    until: Instant,
    value: V,
    /// Which insertion this is, so that an old place in the FIFO does not evict a newer entry.
    seq: u64,
}

struct State<V> {
    entries: HashMap<TokenKey, Entry<V>>,
    order: VecDeque<(TokenKey, u64)>,
    next_seq: u64,
}

/// A bounded cache of `V` by token digest.
pub(crate) struct Cache<V> {
    capacity: usize,
    state: Mutex<State<V>>,
}

impl<V> fmt::Debug for Cache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("capacity", &self.capacity)
            .field("len", &self.state.lock().entries.len())
            .finish()
    }
}

impl<V: Clone> Cache<V> {
    /// A cache holding at most `capacity` entries (0: holds nothing).
    pub(crate) fn new(capacity: usize) -> Cache<V> {
        Cache {
            capacity,
            state: Mutex::new(State {
                entries: HashMap::new(),
                order: VecDeque::new(),
                next_seq: 0,
            }),
        }
    }

    /// The value for `key` if it has not expired at `now`.
    pub(crate) fn lookup(&self, key: &TokenKey, now: Instant) -> Option<V> {
        let mut s = self.state.lock();
        match s.entries.get(key) {
            Some(e) if now < e.until => Some(e.value.clone()),
            Some(_) => {
                // Its place in `order` goes when it comes up for eviction.
                s.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `value` for `key` until `now + ttl`; nothing when `ttl` is zero or the capacity
    /// is. When full, expired entries go first, then the oldest.
    pub(crate) fn insert(&self, key: TokenKey, value: V, now: Instant, ttl: Duration) {
        if self.capacity == 0 || ttl.is_zero() {
            return;
        }
        let mut guard = self.state.lock();
        let s = &mut *guard;
        let seq = s.next_seq;
        s.next_seq += 1;
        let replaced = s
            .entries
            .insert(
                key,
                Entry {
                    until: now + ttl,
                    value,
                    seq,
                },
            )
            .is_some();
        s.order.push_back((key, seq));
        if !replaced {
            while s.entries.len() > self.capacity {
                let Some((old, old_seq)) = s.order.pop_front() else {
                    break;
                };
                if s.entries.get(&old).is_some_and(|e| e.seq == old_seq) {
                    s.entries.remove(&old);
                }
            }
        }
        // `order` holds stale places of replaced and expired entries: drop them once they
        // outnumber the live ones, so that it stays within twice the capacity.
        if s.order.len() > 2 * self.capacity.max(s.entries.len()) {
            let entries = &s.entries;
            s.order.retain(|(k, q)| entries.get(k).is_some_and(|e| e.seq == *q));
        }
    }

    /// How many entries it holds (expired ones included until they are looked up or evicted).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> TokenKey {
        TokenKey::of(&[n])
    }

    #[test]
    fn entries_expire() {
        let c = Cache::new(4);
        let t0 = Instant::now();
        c.insert(key(1), "a", t0, Duration::from_secs(10));
        assert_eq!(c.lookup(&key(1), t0), Some("a"));
        assert_eq!(c.lookup(&key(1), t0 + Duration::from_secs(9)), Some("a"));
        assert_eq!(c.lookup(&key(1), t0 + Duration::from_secs(10)), None);
        assert_eq!(c.len(), 0, "an expired entry goes when looked up");
        assert_eq!(c.lookup(&key(2), t0), None);
    }

    #[test]
    fn the_oldest_goes_when_full() {
        let c = Cache::new(2);
        let t0 = Instant::now();
        let long = Duration::from_secs(60);
        c.insert(key(1), 1, t0, long);
        c.insert(key(2), 2, t0, long);
        // Replacing does not grow it, nor evict.
        c.insert(key(1), 10, t0, long);
        assert_eq!(c.len(), 2);
        c.insert(key(3), 3, t0, long);
        assert_eq!(c.len(), 2);
        // key 1 was inserted first; its replacement is newer than key 2, which goes.
        assert_eq!(c.lookup(&key(2), t0), None);
        assert_eq!(c.lookup(&key(1), t0), Some(10));
        assert_eq!(c.lookup(&key(3), t0), Some(3));
        for n in 0..100 {
            c.insert(key(n), u32::from(n), t0, long);
        }
        assert_eq!(c.len(), 2);
        assert!(c.state.lock().order.len() <= 4);
    }

    #[test]
    fn zero_capacity_or_ttl_keeps_nothing() {
        let t0 = Instant::now();
        let off = Cache::new(0);
        off.insert(key(1), (), t0, Duration::from_secs(60));
        assert_eq!(off.lookup(&key(1), t0), None);
        let c = Cache::new(4);
        c.insert(key(1), (), t0, Duration::ZERO);
        assert_eq!(c.lookup(&key(1), t0), None);
    }

    #[test]
    fn keys_are_digests_and_print_short() {
        assert_eq!(TokenKey::of(b"abc"), TokenKey::of(b"abc"));
        assert_ne!(TokenKey::of(b"abc"), TokenKey::of(b"abd"));
        // SHA-256("abc") = ba7816bf…
        assert_eq!(format!("{:?}", TokenKey::of(b"abc")), "TokenKey(ba7816bf…)");
    }
}
