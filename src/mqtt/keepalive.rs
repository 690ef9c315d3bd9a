//! Connect and keep-alive deadlines without a timer per connection.
//!
//! An actix `run_later` costs every connection a boxed 128-byte future, most of it tokio's
//! `Sleep`, for as long as the connection lives. Instead, each worker thread keeps a list of
//! its connections' [`Watch`]es and sweeps it every [`SWEEP`]; a connection whose window has
//! passed is told once ([`Watched::expired`]) and decides itself, from its exact state, whether
//! to close. A deadline is therefore kept to within one sweep: well inside the slack of the
//! 1.5 × keep-alive rule [MQTT-3.1.2-22]. Per connection this costs a weak pointer in the
//! list and 16 bytes of atomics.
//!
//! The sweeper of a thread runs while that thread has watched connections and stops when the
//! list is empty; the next [`watch`] starts it again.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::broker::session::Stamp;

/// How often a worker looks at its connections' deadlines.
pub const SWEEP: Duration = Duration::from_millis(250);

/// One connection's deadline: a window that runs from a moment. Relaxed atomics: the owner
/// and the sweeper are on one thread; the atomics only make the owning link `Sync`.
#[derive(Debug, Default)]
pub struct Watch {
    /// The start of the window ([`Stamp::raw`]).
    from: AtomicU64,
    /// Its length in milliseconds; 0: not watched.
    window_ms: AtomicU64,
}

impl Watch {
    /// A window of `window` from `from`.
    pub fn new(from: Stamp, window: Duration) -> Watch {
        let w = Watch::default();
        w.set(from, Some(window));
        w
    }

    /// Restarts the window at `from` (a packet came).
    pub fn touch(&self, from: Stamp) {
        self.from.store(from.raw(), Ordering::Relaxed);
    }

    /// Sets the window (`None`: stop watching).
    pub fn set(&self, from: Stamp, window: Option<Duration>) {
        self.from.store(from.raw(), Ordering::Relaxed);
        let ms = window.map_or(0, |w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX).max(1));
        self.window_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether the window ended by `now`; a window is reported once (then unwatched until
    /// [`Watch::set`] again).
    fn take_due(&self, now: Stamp) -> bool {
        let window = self.window_ms.load(Ordering::Relaxed);
        if window == 0 || now.raw().saturating_sub(self.from.load(Ordering::Relaxed)) < window {
            return false;
        }
        self.window_ms.store(0, Ordering::Relaxed);
        true
    }
}

/// What the sweeper watches.
pub trait Watched: Send + Sync + 'static {
    /// Its deadline.
    fn watch(&self) -> &Watch;
    /// The window ended: look at the exact deadline and close, or set a new window.
    fn expired(&self);
}

#[derive(Default)]
struct Sweeper {
    list: Vec<Weak<dyn Watched>>,
    running: bool,
}

thread_local! {
    static SWEEPER: RefCell<Sweeper> = RefCell::default();
}

/// Puts `w` under this thread's sweeper (which must run on an actix or tokio local runtime).
/// It leaves the list by itself once dropped.
pub fn watch<W: Watched>(w: &Arc<W>) {
    let weak: Weak<dyn Watched> = Arc::downgrade(w) as Weak<W>;
    let start = SWEEPER.with(|s| {
        let mut s = s.borrow_mut();
        s.list.push(weak);
        !std::mem::replace(&mut s.running, true)
    });
    if start {
        actix_rt::spawn(sweep_loop());
    }
}

/// Marks the sweeper stopped when its task ends, however it ends: also when the runtime drops
/// it at shutdown, so that a later runtime on this thread starts a new one.
struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        let _ = SWEEPER.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                s.running = false;
            }
        });
    }
}

async fn sweep_loop() {
    let _running = Running;
    let mut tick = tokio::time::interval(SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (due, running) = sweep(Stamp::now());
        // Told outside the borrow: an owner may watch again (a new connection) meanwhile.
        for w in due {
            w.expired();
        }
        if !running {
            return;
        }
    }
}

/// One pass: drops the gone, collects the due. Returns whether the sweeper goes on.
fn sweep(now: Stamp) -> (Vec<Arc<dyn Watched>>, bool) {
    SWEEPER.with(|s| {
        let mut s = s.borrow_mut();
        let mut due = Vec::new();
        s.list.retain(|weak| match weak.upgrade() {
            Some(w) => {
                if w.watch().take_due(now) {
                    due.push(w);
                }
                true
            }
            None => false,
        });
        let len = s.list.len();
        if s.list.capacity() > 64 && s.list.capacity() > 4 * len {
            s.list.shrink_to(2 * len);
        }
        if s.list.is_empty() {
            s.running = false;
        }
        (due, s.running)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    struct Probe {
        watch: Watch,
        told: AtomicUsize,
    }

    impl Watched for Probe {
        fn watch(&self) -> &Watch {
            &self.watch
        }
        fn expired(&self) {
            self.told.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn at(base: Instant, ms: u64) -> Stamp {
        Stamp::at(base + Duration::from_millis(ms))
    }

    #[test]
    fn a_window_is_due_once_at_its_end_and_touch_moves_it() {
        let base = Instant::now();
        let w = Watch::new(at(base, 0), Duration::from_millis(1500));
        assert!(!w.take_due(at(base, 1499)));
        w.touch(at(base, 1000));
        assert!(!w.take_due(at(base, 2499)));
        assert!(w.take_due(at(base, 2500)));
        assert!(!w.take_due(at(base, 9000)), "reported once");
        w.set(at(base, 9000), Some(Duration::from_millis(10)));
        assert!(w.take_due(at(base, 9010)));
        w.set(at(base, 0), None);
        assert!(!w.take_due(at(base, u64::from(u32::MAX))), "unwatched");
    }

    #[test]
    fn a_sweeper_dropped_with_its_runtime_lets_the_next_one_start() {
        SWEEPER.with(|s| s.borrow_mut().running = true);
        drop(Running);
        assert!(!SWEEPER.with(|s| s.borrow().running));
    }

    #[test]
    fn the_sweep_tells_the_due_and_forgets_the_dropped() {
        let base = Instant::now();
        let probe = |window| {
            Arc::new(Probe {
                watch: Watch::new(at(base, 0), Duration::from_millis(window)),
                told: AtomicUsize::new(0),
            })
        };
        let (soon, late, gone) = (probe(100), probe(1000), probe(100));
        SWEEPER.with(|s| {
            let mut s = s.borrow_mut();
            for p in [&soon, &late, &gone] {
                let w: Arc<dyn Watched> = p.clone();
                s.list.push(Arc::downgrade(&w));
            }
            s.running = true;
        });
        drop(gone);
        let (due, running) = sweep(at(base, 500));
        assert_eq!(due.len(), 1);
        due[0].expired();
        assert_eq!(soon.told.load(Ordering::Relaxed), 1);
        assert!(running);
        assert_eq!(SWEEPER.with(|s| s.borrow().list.len()), 2, "the dropped one left");
        drop((soon, late, due));
        let (due, running) = sweep(at(base, 5000));
        assert!(due.is_empty());
        assert!(!running, "an empty list stops the sweeper");
    }
}
