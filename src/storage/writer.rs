//! The writer thread: group commit.
//!
//! Connections send their operations down a channel and go on; the thread takes the first
//! batch, everything else already queued (and, with a commit window, what arrives within it), up
//! to `max_batch` operations, applies them in one transaction with one fsync, and then tells
//! each waiting connection the highest ticket of its that is now durable. While it commits, the
//! next batch forms in the channel, so the batch size follows the load: one operation per commit
//! when idle, thousands under load, at one fsync each.
//!
//! The channel is unbounded, but what it holds is bounded by the clients: a publisher's
//! unacknowledged QoS 1/2 messages are bounded by its window (our Receive Maximum), and the
//! acknowledgements a subscriber sends by its inflight window.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{Op, Store, StoreError};
use crate::broker::SessionLink;

/// Who waits for a batch: the connection to tell, and its ticket.
pub type Waiter = (Arc<dyn SessionLink>, u64);

/// Marks one batch as committed, for deliveries that must not reach a client before they are
/// durable: a QoS 2 delivery's packet id is remembered by the receiver until PUBREL, so a
/// delivery sent and then lost in a crash would leave an id that a later message reusing it
/// would be discarded under (MQTT 5 §4.3.3). The sessions holding such deliveries are woken
/// when the batch is committed.
#[derive(Default)]
pub struct Commit {
    done: AtomicBool,
    wake: Mutex<Vec<Arc<crate::broker::Session>>>,
}

impl std::fmt::Debug for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commit").field("done", &self.is_done()).finish()
    }
}

impl Commit {
    /// Whether the batch is durable.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Wakes `session` when the batch is durable.
    pub fn wake_on_commit(&self, session: Arc<crate::broker::Session>) {
        let mut w = self.wake.lock();
        if !w.iter().any(|s| Arc::ptr_eq(s, &session)) {
            w.push(session);
        }
    }

    fn complete(&self) {
        self.done.store(true, Ordering::Release);
        let sessions = std::mem::take(&mut *self.wake.lock());
        for s in sessions {
            s.lock().wake();
        }
    }
}

enum Request {
    Write(Vec<Op>, Option<Waiter>, Option<Arc<Commit>>),
    /// Answer once everything sent before is committed.
    Flush(mpsc::Sender<()>),
    /// Commit what is queued and end the thread.
    Stop,
}

/// Bucket upper bounds of the commit latency histogram, in seconds.
pub const COMMIT_BUCKETS: [f64; 8] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25, 1.0];

/// What the writer counts.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    /// Commits done.
    pub commits: AtomicU64,
    /// Operations committed.
    pub ops: AtomicU64,
    /// Commits that failed.
    pub failures: AtomicU64,
    /// Commit latency histogram: counts per bucket of [`COMMIT_BUCKETS`] (cumulative counts are
    /// computed when exported), plus the +Inf bucket.
    pub commit_buckets: [AtomicU64; 9],
    /// Sum of commit latencies in microseconds.
    pub commit_micros: AtomicU64,
    /// The store failed: no more writes are accepted.
    pub failed: AtomicBool,
}

impl StoreMetrics {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = COMMIT_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(COMMIT_BUCKETS.len());
        self.commit_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.commit_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
    }
}

/// The handle to the writer thread.
pub struct Persister {
    tx: Sender<Request>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Counters.
    pub metrics: Arc<StoreMetrics>,
    /// The store file, for its size (`None` for a store without a file).
    pub file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Persister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persister").field("file", &self.file).finish()
    }
}

/// How the writer batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Wait this long for more after the first operation.
    pub window: Duration,
    /// Operations at most per commit.
    pub max_batch: usize,
}

impl Persister {
    /// Starts the writer thread over `store`.
    pub fn start(
        store: Box<dyn Store>,
        settings: BatchSettings,
        file: Option<std::path::PathBuf>,
    ) -> Result<Persister, StoreError> {
        let (tx, rx) = mpsc::channel();
        let metrics = Arc::new(StoreMetrics::default());
        let m = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("unigate-store".into())
            .spawn(move || run(store, rx, settings, &m))
            .map_err(|e| StoreError::Io {
                path: "-".into(),
                message: format!("cannot start the storage writer: {e}"),
            })?;
        Ok(Persister {
            tx,
            thread: Mutex::new(Some(thread)),
            metrics,
            file,
        })
    }

    /// Queues operations; `waiter` is told (`SessionLink::stored`) once they are durable, or
    /// that they failed.
    pub fn submit(&self, ops: Vec<Op>, waiter: Option<Waiter>, commit: Option<Arc<Commit>>) {
        if let Err(mpsc::SendError(Request::Write(_, Some((link, token)), _))) =
            self.tx.send(Request::Write(ops, waiter, commit))
        {
            link.stored(token, false);
        }
    }

    /// Waits until everything submitted so far is committed (start-up, shutdown, tests).
    pub fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::channel();
        self.tx.send(Request::Flush(tx)).map_err(|_| StoreError::Stopped)?;
        rx.recv().map_err(|_| StoreError::Stopped)
    }

    /// Whether the store has failed (writes are refused since).
    pub fn has_failed(&self) -> bool {
        self.metrics.failed.load(Ordering::Relaxed)
    }

    /// The store file's size.
    pub fn file_bytes(&self) -> u64 {
        self.file
            .as_ref()
            .and_then(|f| std::fs::metadata(f).ok())
            .map_or(0, |m| m.len())
    }

    /// Commits what is queued and stops the thread (server stop).
    pub fn close(&self) {
        // The broker (and so this handle and its sender) may outlive the server: stop the
        // thread explicitly rather than by dropping the channel.
        let _ = self.tx.send(Request::Stop);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

fn run(mut store: Box<dyn Store>, rx: Receiver<Request>, settings: BatchSettings, metrics: &StoreMetrics) {
    let mut ops: Vec<Op> = Vec::new();
    let mut waiters: Vec<Waiter> = Vec::new();
    let mut flushes: Vec<mpsc::Sender<()>> = Vec::new();
    let mut commits: Vec<Arc<Commit>> = Vec::new();
    let mut stop = false;
    // With `fsync = false`, commits left unsynced are synced after a second without traffic.
    let mut synced = true;
    while !stop {
        let first = if synced {
            match rx.recv() {
                Ok(r) => r,
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => {
                    synced = match store.sync() {
                        Ok(done) => done,
                        Err(e) => {
                            tracing::error!(error = %e, "storage: sync failed");
                            true
                        }
                    };
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        stop |= take(first, &mut ops, &mut waiters, &mut flushes, &mut commits);
        let deadline = Instant::now() + settings.window;
        while ops.len() < settings.max_batch && !stop {
            match rx.try_recv() {
                Ok(r) => stop |= take(r, &mut ops, &mut waiters, &mut flushes, &mut commits),
                Err(mpsc::TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    match rx.recv_timeout(deadline - now) {
                        Ok(r) => stop |= take(r, &mut ops, &mut waiters, &mut flushes, &mut commits),
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
            }
        }
        coalesce(&mut ops);
        let ok = if ops.is_empty() {
            true
        } else if metrics.failed.load(Ordering::Relaxed) {
            false
        } else {
            let started = Instant::now();
            match store.apply(&ops) {
                Ok(()) => {
                    metrics.observe(started.elapsed());
                    metrics.ops.fetch_add(ops.len() as u64, Ordering::Relaxed);
                    synced = false;
                    true
                }
                Err(e) => {
                    // Fail-stop: a store that cannot commit must not acknowledge anything
                    // again; connections waiting are closed and their clients resend elsewhere
                    // or later.
                    metrics.failures.fetch_add(1, Ordering::Relaxed);
                    metrics.failed.store(true, Ordering::Relaxed);
                    tracing::error!(error = %e, "storage: commit failed; no QoS 1/2 message is acknowledged from now on");
                    false
                }
            }
        };
        ops.clear();
        if ok {
            for c in commits.drain(..) {
                c.complete();
            }
        }
        commits.clear();
        complete(&mut waiters, ok);
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
    }
    // Stopping: nothing stays unsynced.
    if let Err(e) = store.sync() {
        tracing::error!(error = %e, "storage: sync failed");
    }
}

/// Drops the pairs of a batch that cancel out: an entry enqueued and removed within the same
/// batch (a subscriber that acknowledged a QoS 1 delivery before its commit — it was delivered,
/// which is more than queued) is never written, and neither is a message left with no entry.
/// Applying the result is equivalent to applying the whole batch (a property test checks it).
///
/// Relies on the broker's invariant that a session's sequence numbers are never enqueued twice.
pub fn coalesce(ops: &mut Vec<Op>) {
    use std::collections::HashSet;
    // A key enqueued twice in one batch (the broker never reuses a sequence number, but the
    // store does not rely on that) is left alone: cancelling one pair could change what the
    // other write finds.
    let mut times: HashMap<(u64, u64), u32> = HashMap::new();
    for op in ops.iter() {
        if let Op::Enqueue { serial, seq, .. } = op {
            *times.entry((*serial, *seq)).or_default() += 1;
        }
    }
    let mut enqueued: HashMap<(u64, u64), usize> = HashMap::new();
    let mut cancel: HashSet<usize> = HashSet::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Enqueue { serial, seq, .. } if times.get(&(*serial, *seq)) == Some(&1) => {
                enqueued.insert((*serial, *seq), i);
            }
            Op::Remove { serial, seq } => {
                if let Some(j) = enqueued.remove(&(*serial, *seq)) {
                    cancel.insert(j);
                    cancel.insert(i);
                }
            }
            // Anything else about the session's entries keeps the pair as it is.
            Op::Release { serial, seq } => {
                enqueued.remove(&(*serial, *seq));
            }
            // A session written between an Enqueue and its Remove may be the one that made the
            // Remove count (an Enqueue for a session not yet stored is dropped, its Remove then
            // stays as a tombstone): such pairs are left to the store.
            Op::DeleteSession { serial } | Op::PutSession { serial, .. } => enqueued.retain(|(s, _), _| s != serial),
            _ => {}
        }
    }
    if cancel.is_empty() {
        return;
    }
    // Messages still referenced by an entry that stays.
    let mut used: HashSet<u64> = HashSet::new();
    for (i, op) in ops.iter().enumerate() {
        if let Op::Enqueue { entry, .. } = op {
            if !cancel.contains(&i) {
                used.extend(entry.msg_id);
            }
        }
    }
    let mut i = 0;
    ops.retain(|op| {
        let keep = !cancel.contains(&i)
            && match op {
                Op::PutMessage { id, .. } => used.contains(id),
                _ => true,
            };
        i += 1;
        keep
    });
}

/// Adds a request to the batch; true for [`Request::Stop`].
fn take(
    r: Request,
    ops: &mut Vec<Op>,
    waiters: &mut Vec<Waiter>,
    flushes: &mut Vec<mpsc::Sender<()>>,
    commits: &mut Vec<Arc<Commit>>,
) -> bool {
    match r {
        Request::Write(mut o, w, c) => {
            commits.extend(c);
            if ops.is_empty() {
                *ops = o;
            } else {
                ops.append(&mut o);
            }
            if let Some(w) = w {
                waiters.push(w);
            }
        }
        Request::Flush(tx) => flushes.push(tx),
        Request::Stop => return true,
    }
    false
}

/// Tells each waiting connection its highest ticket of the batch (tickets rise per connection,
/// so one message per connection per commit is enough).
fn complete(waiters: &mut Vec<Waiter>, ok: bool) {
    if waiters.is_empty() {
        return;
    }
    if waiters.len() == 1 {
        if let Some((link, token)) = waiters.pop() {
            link.stored(token, ok);
        }
        return;
    }
    let mut highest: HashMap<*const (), (Arc<dyn SessionLink>, u64)> = HashMap::with_capacity(waiters.len());
    for (link, token) in waiters.drain(..) {
        let key = Arc::as_ptr(&link) as *const ();
        let e = highest.entry(key).or_insert_with(|| (link.clone(), token));
        e.1 = e.1.max(token);
    }
    for (_, (link, token)) in highest {
        link.stored(token, ok);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::broker::KickReason;
    use crate::storage::memory::MemoryStore;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(u64, bool)>>);

    impl SessionLink for Recorder {
        fn wake(&self) {}
        fn kick(&self, _: KickReason) {}
        fn stored(&self, token: u64, ok: bool) {
            self.0.lock().push((token, ok));
        }
    }

    #[test]
    fn waiters_hear_their_highest_ticket() {
        let p = Persister::start(
            Box::new(MemoryStore::new()),
            BatchSettings {
                window: Duration::from_millis(20),
                max_batch: 1000,
            },
            None,
        )
        .unwrap();
        let rec = Arc::new(Recorder::default());
        let link: Arc<dyn SessionLink> = rec.clone();
        for t in 1..=5 {
            p.submit(vec![Op::DeleteSession { serial: t }], Some((link.clone(), t)), None);
        }
        p.flush().unwrap();
        let got = rec.0.lock().clone();
        assert_eq!(got.last(), Some(&(5, true)));
        assert!(got.len() <= 5);
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
