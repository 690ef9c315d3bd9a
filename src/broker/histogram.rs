//! A latency histogram cheap enough for the hot path: fixed bucket bounds, one relaxed atomic
//! increment per observation for the bucket and two for the count and the sum, no lock, no
//! allocation. Read at scrape time as a Prometheus histogram (cumulative `le` buckets).
//!
//! Reads are not a snapshot: an observation may land between two bucket reads. The renderer
//! takes `_count` from the buckets it read, so that the `+Inf` bucket and `_count` always agree,
//! as the exposition format requires.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds, in microseconds, of the buckets of [`Histogram`]: 50 µs to 10 s, roughly
/// 1-2.5-5 per decade. Routing a message takes microseconds, an HTTP request or an
/// authentication against an identity provider milliseconds.
pub const BOUNDS_MICROS: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// A fixed-bucket latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is above every bound (`+Inf`).
    buckets: [AtomicU64; BOUNDS_MICROS.len() + 1],
    /// Sum of the observations in microseconds.
    sum_micros: AtomicU64,
}

/// What a scrape reads of a [`Histogram`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Cumulative counts: `cumulative[i]` observations took at most `BOUNDS_MICROS[i]`; the last
    /// entry is the count of all observations (`+Inf`).
    pub cumulative: [u64; BOUNDS_MICROS.len() + 1],
    /// Sum of the observations in microseconds.
    pub sum_micros: u64,
}

impl HistogramSnapshot {
    /// All observations.
    pub fn count(&self) -> u64 {
        self.cumulative[BOUNDS_MICROS.len()]
    }
}

impl Histogram {
    /// Records one observation.
    #[inline]
    pub fn observe(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        // A linear scan: 17 compares on a cache line, and most observations stop early.
        let i = BOUNDS_MICROS
            .iter()
            .position(|&b| micros <= b)
            .unwrap_or(BOUNDS_MICROS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The counts as they are now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0u64; BOUNDS_MICROS.len() + 1];
        let mut running = 0u64;
        for (c, b) in cumulative.iter_mut().zip(&self.buckets) {
            running = running.saturating_add(b.load(Ordering::Relaxed));
            *c = running;
        }
        HistogramSnapshot {
            cumulative,
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(51));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.cumulative[0], 2, "<= 50 µs");
        assert_eq!(s.cumulative[1], 3, "<= 100 µs");
        assert_eq!(s.cumulative[5], 3, "<= 2.5 ms");
        assert_eq!(s.cumulative[6], 4, "<= 5 ms");
        assert_eq!(s.cumulative[BOUNDS_MICROS.len() - 1], 4, "<= 10 s");
        assert_eq!(s.count(), 5, "+Inf holds everything");
        assert_eq!(s.sum_micros, 10 + 50 + 51 + 3_000 + 60_000_000);
        assert!(s.cumulative.windows(2).all(|w| w[0] <= w[1]), "cumulative");
    }

    #[test]
    fn bounds_rise() {
        assert!(BOUNDS_MICROS.windows(2).all(|w| w[0] < w[1]));
    }
}
