//! The one clock every bench client stamps and reads: nanoseconds since the process started.
//!
//! Publishers and subscribers run in the same process (on several threads), so a monotonic
//! `Instant` taken once at start is a clock common to both ends of every message: end-to-end
//! latency is `now - stamp` with no clock skew to correct for.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Starts the clock (idempotent); call before any client runs.
pub(crate) fn init() {
    epoch();
}

/// Nanoseconds since the clock started. Saturates after 584 years.
pub(crate) fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The tokio instant of a clock reading, to sleep until it.
pub(crate) fn instant_at(ns: u64) -> tokio::time::Instant {
    tokio::time::Instant::from_std(epoch() + Duration::from_nanos(ns))
}

/// Seconds between two clock readings.
pub(crate) fn secs_between(from_ns: u64, to_ns: u64) -> f64 {
    to_ns.saturating_sub(from_ns) as f64 / 1e9
}

/// Sleeps until `at`; never returns for `None` (for `select!` branches whose timer may be
/// absent).
pub(crate) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
