//! The broker core: the session registry, the shared subscription index, retained messages and
//! routing.
//!
//! There is no router actor. A publisher's connection calls [`Broker::publish`] on its own
//! thread: one read lock of the subscription index collects the matching sessions (one member
//! per shared-subscription group), then each session gets the [`Delivery`] in its own queue
//! under its own small lock, and its connection is woken. The payload `Bytes` is shared by all
//! recipients, never copied.
//!
//! Timers (session expiry, will delay) are not scheduled here: the methods that start them
//! return the delay, and the caller's runtime calls back ([`Broker::expire_session`],
//! [`Broker::fire_will`]) when it elapses. That keeps the core free of a runtime and testable.

mod histogram;
pub mod metrics;
pub mod session;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use parking_lot::RwLock;
use smallvec::SmallVec;
use unigate_auth::acl::{Request, Subject};
use unigate_auth::Identity;
use unigate_pubsub::{Match, Message, QoS, RetainedIndex, SubscriptionIndex, Topic, TopicFilter};

use crate::config::MqttConfig;
pub use metrics::Metrics;
pub use session::{
    Backpressure, ClientId, Delivery, Enqueued, KickReason, OutState, QueueLimits, Session, SessionLink, SharedVia,
    StoredRef, SubOptions,
};

use crate::storage::{Commit, Op, Persister, QueueEntry, Snapshot, StoredWill, Waiter};

/// Milliseconds since the UNIX epoch (message expiry deadlines are wall-clock, so that they
/// survive a restart once storage lands).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An entry of the subscription index.
#[derive(Debug, Clone)]
pub struct SubEntry {
    /// The subscribed session.
    pub session: Arc<Session>,
    /// Its options.
    pub opts: SubOptions,
    /// For a `$share` subscription, its group and filter, made once here so that routing a
    /// message to a member clones an `Arc` instead of building the filter again.
    pub shared: Option<Arc<SharedVia>>,
}

impl SubEntry {
    /// The delivery target of `msg` through this subscription.
    fn target(&self, msg: &Message) -> Target {
        Target {
            session: self.session.clone(),
            qos: msg.qos.min(self.opts.qos),
            retain: msg.retain && self.opts.retain_as_published,
            sub_ids: self.opts.sub_id.into_iter().collect(),
            shared: self.shared.clone(),
        }
    }
}

/// The result of attaching a connection to a session.
#[derive(Debug)]
pub struct Attachment {
    /// The session.
    pub session: Arc<Session>,
    /// Whether an existing session was resumed (CONNACK session present).
    pub present: bool,
    /// The generation the connection owns.
    pub generation: u64,
}

/// A will message waiting for its delay (MQTT 5 §3.1.3.2.2).
#[derive(Debug, Clone)]
pub struct PendingWill {
    /// The will.
    pub msg: Message,
    /// Seconds to wait before publishing.
    pub delay: u32,
    /// Message expiry interval, counted from publication (MQTT 5 §3.1.3.2.4).
    pub expiry: Option<u32>,
}

impl PendingWill {
    /// The message to publish now, its expiry counted from now.
    fn into_message(self) -> Message {
        match self.expiry {
            Some(secs) => self.msg.with_expiry_interval(secs, now_ms()),
            None => self.msg,
        }
    }
}

/// What a detaching connection must schedule.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Detached {
    /// Call [`Broker::expire_session`] after this long.
    pub expire_after: Option<Duration>,
    /// Call [`Broker::fire_will`] after this long.
    pub will_after: Option<Duration>,
}

/// The broker core, shared by every connection.
pub struct Broker {
    /// MQTT settings.
    pub settings: MqttConfig,
    /// The configured ACL (None: everything allowed); replaced on reload.
    acl: RwLock<Option<Arc<unigate_auth::acl::Acl>>>,
    /// Log every authorisation decision.
    audit: std::sync::atomic::AtomicBool,
    /// Counters.
    pub metrics: Metrics,
    subs: RwLock<SubscriptionIndex<u64, SubEntry>>,
    retained: RwLock<RetainedIndex<Arc<Message>>>,
    sessions: DashMap<ClientId, Arc<Session>>,
    pending_wills: DashMap<u64, (u64, PendingWill)>,
    next_serial: AtomicU64,
    shutting_down: AtomicBool,
    started: std::time::Instant,
    /// What the management API needs from the server (listeners, configuration, reload).
    admin: Admin,
    /// The store's writer, when storage is on (set once at start-up).
    store: std::sync::OnceLock<Persister>,
    /// The next stored message id.
    next_msg_id: AtomicU64,
}

/// Store operations collected while routing one message, submitted together
/// ([`Broker::persist`]).
#[derive(Debug, Default)]
pub struct Batch {
    /// The operations, in order.
    pub ops: Vec<Op>,
    /// The message stored in this batch and its id.
    msg: Option<(u64, Arc<Message>)>,
    /// Set when a delivery waits for this batch's commit.
    commit: Option<Arc<Commit>>,
    /// The message was stored as retained (or a retained message deleted): submitted on its
    /// own under the retained index's lock, and its publisher must still wait for it.
    retained: bool,
}

impl Batch {
    /// Whether there is nothing to write or wait for (a retained change was submitted on its
    /// own; its publisher still waits for the commit that covers it).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && !self.retained
    }

    /// The stored id of `msg`, storing it first if this batch has not yet.
    fn msg_id(&mut self, msg: &Arc<Message>, next: &AtomicU64) -> u64 {
        if let Some((id, m)) = &self.msg {
            if Arc::ptr_eq(m, msg) {
                return *id;
            }
        }
        let id = next.fetch_add(1, Ordering::Relaxed);
        self.ops.push(Op::PutMessage { id, msg: msg.clone() });
        self.msg = Some((id, msg.clone()));
        id
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

struct Target {
    session: Arc<Session>,
    qos: QoS,
    retain: bool,
    sub_ids: SmallVec<[u32; 1]>,
    shared: Option<Arc<SharedVia>>,
}

impl Broker {
    /// A broker with `settings`.
    pub fn new(settings: MqttConfig) -> Broker {
        Broker {
            settings,
            acl: RwLock::new(None),
            audit: AtomicBool::new(false),
            metrics: Metrics::default(),
            subs: RwLock::new(SubscriptionIndex::new()),
            retained: RwLock::new(RetainedIndex::new()),
            sessions: DashMap::new(),
            pending_wills: DashMap::new(),
            next_serial: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            started: std::time::Instant::now(),
            admin: Admin::default(),
            store: std::sync::OnceLock::new(),
            next_msg_id: AtomicU64::new(1),
        }
    }

    // ---------------------------------------------------------------- storage

    /// Connects the store's writer (start-up, before [`Broker::restore`]).
    pub fn set_store(&self, store: Persister) {
        let _ = self.store.set(store);
    }

    /// The store's writer, when storage is on.
    pub fn store(&self) -> Option<&Persister> {
        self.store.get()
    }

    /// Submits what routing collected. With a `waiter`, returns true when it will be told
    /// ([`SessionLink::stored`]) that the batch is durable; false when there was nothing to
    /// wait for (no store, or nothing to write).
    pub fn persist(&self, batch: Batch, waiter: Option<Waiter>) -> bool {
        let Some(store) = self.store.get() else { return false };
        // A batch with only a retained change (submitted on its own, before this batch) is
        // still submitted for a waiter: it hears of the commit that covers that change.
        if batch.is_empty() || (batch.ops.is_empty() && waiter.is_none()) {
            return false;
        }
        let waits = waiter.is_some();
        store.submit(batch.ops, waiter, batch.commit);
        waits
    }

    /// Tells `waiter` when everything submitted so far is durable (a SUBACK waits so for the
    /// session record its subscription changed). False without a store.
    pub fn persist_barrier(&self, waiter: Waiter) -> bool {
        match self.store.get() {
            Some(store) => {
                store.submit(Vec::new(), Some(waiter), None);
                true
            }
            None => false,
        }
    }

    /// Submits operations that nobody waits for; whether there was a store to take them.
    pub fn persist_ops(&self, ops: Vec<Op>) -> bool {
        match self.store.get() {
            Some(store) if !ops.is_empty() => {
                store.submit(ops, None, None);
                true
            }
            _ => false,
        }
    }

    /// Writes a durable session's record. Called with the session locked, so that records and
    /// the session's deletion reach the writer in the order they happened.
    fn put_record(&self, session: &Session, st: &session::SessionState) {
        if st.durable && !st.ended {
            self.persist_ops(vec![Op::PutSession {
                serial: session.serial,
                record: Box::new(st.record(&session.client_id)),
            }]);
        }
    }

    /// Rebuilds sessions, subscriptions, queues and retained messages from the store, before
    /// the listeners open. Purges expired sessions and messages; publishes the wills that came
    /// due while the server was down. Returns the timers to schedule (session expiry, will
    /// delay) per restored session.
    pub fn restore(&self, snap: Snapshot) -> Vec<(Arc<Session>, Detached)> {
        let now = now_ms();
        let mut ops: Vec<Op> = Vec::new();
        let mut timers = Vec::new();
        let mut wills_now: Vec<PendingWill> = Vec::new();
        self.next_msg_id.fetch_max(snap.max_msg_id + 1, Ordering::Relaxed);
        let max_serial = snap.sessions.keys().copied().max().unwrap_or(0);
        self.next_serial.fetch_max(max_serial + 1, Ordering::Relaxed);
        for (topic, msg) in snap.retained {
            if msg.is_expired(now) {
                if let Ok(t) = Topic::new(&topic) {
                    ops.push(Op::DeleteRetained(t));
                }
                continue;
            }
            if self.retained.write().insert(&msg.topic, msg.clone()).is_none() {
                Metrics::gauge(&self.metrics.retained, 1);
            }
        }
        for (serial, loaded) in snap.sessions {
            let rec = loaded.record;
            let gone_at = rec.disconnected_at.unwrap_or(now);
            let expires_at = (rec.expiry_interval != u32::MAX)
                .then(|| gone_at.saturating_add(u64::from(rec.expiry_interval) * 1000));
            let will_of = |w: &StoredWill| PendingWill {
                msg: (*w.msg).clone(),
                delay: w.delay,
                expiry: w.expiry,
            };
            if expires_at.is_some_and(|t| t <= now) {
                // Expired while the server was down; its will was due at the latest then.
                if let Some(w) = &rec.will {
                    wills_now.push(will_of(w));
                }
                ops.push(Op::DeleteSession { serial });
                continue;
            }
            let limits = QueueLimits {
                max_queued: usize::MAX,
                drop_policy: self.settings.queue_drop,
                queue_qos0_offline: self.settings.queue_qos0_offline,
                persist: true,
            };
            let session = Arc::new(Session::new(rec.client_id.clone(), serial, rec.expiry_interval, limits));
            let mut detached = Detached::default();
            let mut subscriptions: Vec<(TopicFilter, SubOptions)> = Vec::new();
            for (f, o) in &rec.subscriptions {
                let Ok(filter) = TopicFilter::new(f) else { continue };
                let opts = SubOptions {
                    qos: o.qos,
                    no_local: o.no_local,
                    retain_as_published: o.retain_as_published,
                    sub_id: o.sub_id,
                };
                subscriptions.push((filter, opts));
            }
            {
                let mut st = session.lock();
                if !subscriptions.is_empty() {
                    st.subscriptions = Some(Box::new(subscriptions.iter().cloned().collect()));
                }
                st.durable = true;
                st.disconnected_at = std::num::NonZeroU64::new(gone_at);
                st.incoming_qos2 = loaded.incoming_qos2.into();
                for (seq, entry, msg) in loaded.queue {
                    st.next_seq = st.next_seq.max(seq);
                    let stored = StoredRef { seq, recovered: true };
                    match msg {
                        None => {
                            st.inflight
                                .insert_with_id(stored.packet_id(), OutState::Released(Some(seq)));
                        }
                        Some(m) if m.is_expired(now) => {
                            ops.push(Op::Remove { serial, seq });
                            Metrics::add(&self.metrics.dropped_expired, 1);
                        }
                        Some(m) => {
                            let shared = entry.shared.as_deref().and_then(|f| {
                                let filter = TopicFilter::new(f).ok()?;
                                let group = Arc::from(filter.share_group()?);
                                Some(Arc::new(SharedVia { group, filter }))
                            });
                            st.queue.push_back(Delivery {
                                msg: m,
                                qos: entry.qos,
                                retain: entry.retain,
                                sub_ids: entry.sub_ids,
                                shared,
                                stored: Some(stored),
                                commit: None,
                            });
                        }
                    }
                }
                let mut rewrite = rec.disconnected_at.is_none();
                if let Some(w) = rec.will {
                    rewrite = true;
                    // Due when it was scheduled, or (connected at the crash: the connection was
                    // lost then) its delay after now.
                    let due = w.due_at.unwrap_or(now.saturating_add(u64::from(w.delay) * 1000));
                    let due = expires_at.map_or(due, |e| due.min(e));
                    if due <= now {
                        wills_now.push(will_of(&w));
                    } else {
                        self.pending_wills.insert(serial, (0, will_of(&w)));
                        detached.will_after = Some(Duration::from_millis(due - now));
                        st.will_record = Some(Box::new(StoredWill { due_at: Some(due), ..w }));
                    }
                }
                if rewrite {
                    // Connected at the crash (now counts as the disconnect), or the will changed.
                    ops.push(Op::PutSession {
                        serial,
                        record: Box::new(st.record(&session.client_id)),
                    });
                }
                detached.expire_after = expires_at.map(|t| Duration::from_millis(t - now));
            }
            for (filter, opts) in &subscriptions {
                self.index_subscription(&session, filter, *opts);
            }
            if self.sessions.insert(rec.client_id.clone(), session.clone()).is_none() {
                Metrics::gauge(&self.metrics.sessions, 1);
            }
            timers.push((session, detached));
        }
        self.persist_ops(ops);
        for w in wills_now {
            self.publish_will(w);
        }
        timers
    }

    /// The configured ACL, if any.
    pub fn acl(&self) -> Option<Arc<unigate_auth::acl::Acl>> {
        self.acl.read().clone()
    }

    /// Replaces the ACL (start-up and reload).
    pub fn set_acl(&self, acl: Option<Arc<unigate_auth::acl::Acl>>) {
        *self.acl.write() = acl;
    }

    /// Whether authorisation decisions are logged.
    pub fn audit(&self) -> bool {
        self.audit.load(Ordering::Relaxed)
    }

    /// Turns decision logging on or off.
    pub fn set_audit(&self, on: bool) {
        self.audit.store(on, Ordering::Relaxed);
    }

    /// Time since the broker started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The highest QoS the broker grants.
    pub fn settings(&self) -> &MqttConfig {
        &self.settings
    }

    /// The sessions' client ids, sorted (management API).
    pub fn client_ids(&self) -> Vec<ClientId> {
        let mut ids: Vec<ClientId> = self.sessions.iter().map(|e| e.key().clone()).collect();
        ids.sort();
        ids
    }

    /// The attached connection's link of a session, if any.
    pub fn link_of(&self, session: &Session) -> Option<Arc<dyn SessionLink>> {
        session.lock().attached.as_ref().map(|a| a.link.clone())
    }

    /// The highest QoS accepted and granted.
    pub fn max_qos(&self) -> QoS {
        QoS::try_from(self.settings.max_qos).unwrap_or(QoS::ExactlyOnce)
    }

    /// Marks the broker as stopping (wills then follow `publish_wills_on_shutdown`).
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Whether the broker is stopping.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Number of sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Looks a session up.
    pub fn session(&self, client_id: &str) -> Option<Arc<Session>> {
        self.sessions.get(client_id).map(|s| s.clone())
    }

    // ---------------------------------------------------------------- routing

    /// Routes a message to every matching session and stores it if retained. Returns the number
    /// of sessions it was offered to.
    pub fn publish(&self, msg: Message) -> usize {
        self.publish_from(msg, None).0
    }

    /// [`Broker::publish_from`] for publishers that acknowledge only once the message is
    /// durable and are not MQTT connections (HTTP, the JSON WebSocket, CoAP CON requests): when
    /// routing queued it for persistent sessions or stored it as retained, the receiver says
    /// when that is committed (`false`: the store failed); `None` when there is nothing to wait
    /// for.
    pub fn publish_durable(
        &self,
        msg: Message,
        publisher: Option<&Arc<dyn SessionLink>>,
    ) -> (usize, bool, Option<tokio::sync::oneshot::Receiver<bool>>) {
        let mut batch = Batch::default();
        let (routed, congested) = self.route(msg, publisher, &mut batch);
        if self.store.get().is_none() || batch.is_empty() {
            self.persist(batch, None);
            return (routed, congested, None);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let signal: Arc<dyn SessionLink> = Arc::new(CommitSignal(parking_lot::Mutex::new(Some(tx))));
        let waits = self.persist(batch, Some((signal, 1)));
        (routed, congested, waits.then_some(rx))
    }

    /// [`Broker::publish`] for a publisher that can be paused: the second value is true when a
    /// matching session is congested and `publisher` was registered to be resumed when it
    /// drains (the caller stops reading from that client meanwhile).
    pub fn publish_from(&self, msg: Message, publisher: Option<&Arc<dyn SessionLink>>) -> (usize, bool) {
        let mut batch = Batch::default();
        let routed = self.route(msg, publisher, &mut batch);
        self.persist(batch, None);
        routed
    }

    /// [`Broker::publish_from`] that collects the store operations in `batch` instead of
    /// submitting them: the caller adds its own and submits with a waiter
    /// ([`Broker::persist`]), to acknowledge once they are durable. Timed for the routing
    /// latency histogram.
    pub fn route(&self, msg: Message, publisher: Option<&Arc<dyn SessionLink>>, batch: &mut Batch) -> (usize, bool) {
        let started = std::time::Instant::now();
        let routed = self.route_untimed(msg, publisher, batch);
        self.metrics.routing_latency.observe(started.elapsed());
        routed
    }

    fn route_untimed(
        &self,
        msg: Message,
        publisher: Option<&Arc<dyn SessionLink>>,
        batch: &mut Batch,
    ) -> (usize, bool) {
        let msg = Arc::new(msg);
        if msg.retain && self.settings.retain_available {
            batch.retained = self.store_retained(&msg);
        }
        let targets = self.match_targets(&msg, None);
        if targets.is_empty() {
            Metrics::add(&self.metrics.unrouted, 1);
            return (0, false);
        }
        let n = targets.len();
        let publisher = publisher.map(|p| (p, self.backpressure()));
        let mut congested = false;
        for t in targets {
            let d = Delivery {
                msg: msg.clone(),
                qos: t.qos,
                retain: t.retain,
                sub_ids: t.sub_ids,
                shared: t.shared,
                stored: None,
                commit: None,
            };
            congested |= self.offer_from(&t.session, d, publisher, batch);
        }
        (n, congested)
    }

    /// The back-pressure settings.
    pub fn backpressure(&self) -> Backpressure {
        Backpressure {
            threshold: self.settings.backpressure_queue,
            stuck_after: Duration::from_millis(500),
        }
    }

    fn offer(&self, session: &Arc<Session>, d: Delivery, batch: &mut Batch) {
        self.offer_from(session, d, None, batch);
    }

    /// Queues a delivery and counts what was dropped; true when the publisher must pause. A
    /// QoS 1/2 delivery to a durable session is added to `batch`.
    fn offer_from(
        &self,
        session: &Arc<Session>,
        d: Delivery,
        publisher: Option<(&Arc<dyn SessionLink>, Backpressure)>,
        batch: &mut Batch,
    ) -> bool {
        let persist = self.store.get().is_some();
        let entry = (persist && d.qos != QoS::AtMostOnce).then(|| {
            (
                d.msg.clone(),
                QueueEntry {
                    msg_id: None,
                    qos: d.qos,
                    retain: d.retain,
                    sub_ids: d.sub_ids.clone(),
                    shared: d.shared.as_ref().map(|s| s.filter.as_str().to_string()),
                },
            )
        });
        // QoS 2 to a durable session goes out only once stored (see `Commit`); the flag is
        // shared by the batch, and harmless if the session turns out not to store it.
        let gated = entry.is_some() && d.qos == QoS::ExactlyOnce;
        let commit = gated.then(|| batch.commit.get_or_insert_with(Default::default).clone());
        let offered = session.enqueue_from(d, publisher, persist, commit);
        if gated && offered.stored.is_some() {
            if let Some(c) = &batch.commit {
                c.wake_on_commit(session.clone());
            }
        }
        if let (Some(seq), Some((msg, mut entry))) = (offered.stored, entry) {
            entry.msg_id = Some(batch.msg_id(&msg, &self.next_msg_id));
            batch.ops.push(Op::Enqueue {
                serial: session.serial,
                seq,
                entry: Box::new(entry),
            });
        }
        if let Some(seq) = offered.evicted {
            batch.ops.push(Op::Remove {
                serial: session.serial,
                seq,
            });
        }
        let congested = offered.congested;
        match offered.outcome {
            Enqueued::Queued | Enqueued::Ended => {}
            Enqueued::DroppedOffline => Metrics::add(&self.metrics.dropped_offline_qos0, 1),
            Enqueued::QueuedDroppedOld | Enqueued::Dropped => {
                Metrics::add(&self.metrics.dropped_queue_full, 1);
                let mut st = session.lock();
                st.drops_in_episode += 1;
                if st.drops_in_episode == 1 {
                    tracing::warn!(client_id = %session.client_id, limit = st.max_queued, "session queue full, dropping messages");
                }
            }
        }
        congested
    }

    /// The sessions a message goes to. `exclude` skips one session (shared re-routing).
    fn match_targets(&self, msg: &Message, exclude: Option<u64>) -> Vec<Target> {
        let mut targets: Vec<Target> = Vec::new();
        let origin = msg.origin.client_id.as_deref();
        {
            let subs = self.subs.read();
            subs.for_each_match(&msg.topic, |m| match m {
                Match::Direct { key, value } => {
                    if Some(*key) == exclude || (value.opts.no_local && origin == Some(&*value.session.client_id)) {
                        return;
                    }
                    targets.push(value.target(msg));
                }
                Match::Shared { members, cursor, .. } => {
                    if let Some((_, entry)) = pick_member(members, cursor, exclude) {
                        targets.push(entry.target(msg));
                    }
                }
            });
        }
        if targets.len() > 1 {
            merge_overlapping(&mut targets);
        }
        targets
    }

    // ---------------------------------------------------------------- retained

    /// Sets or clears the retained message of `msg.topic`; true when that change went to the
    /// store (its publisher then waits for the commit).
    fn store_retained(&self, msg: &Arc<Message>) -> bool {
        let mut retained = self.retained.write();
        if msg.payload.is_empty() {
            if retained.remove(&msg.topic).is_none() {
                return false;
            }
            Metrics::gauge(&self.metrics.retained, -1);
            // Submitted under the lock: the store sees the changes of one topic in the
            // order the index did.
            self.persist_ops(vec![Op::DeleteRetained(msg.topic.clone())])
        } else {
            if retained.insert(&msg.topic, msg.clone()).is_none() {
                Metrics::gauge(&self.metrics.retained, 1);
            }
            // `$SYS` statistics are republished at every interval: not worth a disk write.
            !msg.topic.as_str().starts_with("$SYS/") && self.persist_ops(vec![Op::SetRetained(msg.clone())])
        }
    }

    /// The unexpired retained messages matching `filter`.
    pub fn retained_matching(&self, filter: &TopicFilter) -> Vec<Arc<Message>> {
        let now = now_ms();
        let mut out = Vec::new();
        self.retained.read().for_each_match(filter, |_, m| {
            if !m.is_expired(now) {
                out.push(m.clone());
            }
        });
        out
    }

    /// Drops expired retained messages.
    pub fn purge_expired_retained(&self) {
        let now = now_ms();
        let mut retained = self.retained.write();
        let before = retained.len();
        let mut gone: Vec<Op> = Vec::new();
        let durable = self.store.get().is_some();
        retained.retain(|_, m| {
            let expired = m.is_expired(now);
            if expired && durable {
                gone.push(Op::DeleteRetained(m.topic.clone()));
            }
            !expired
        });
        let removed = before - retained.len();
        Metrics::gauge(&self.metrics.retained, -(removed as i64));
        self.persist_ops(gone);
    }

    // ---------------------------------------------------------------- subscriptions

    /// Adds or replaces a subscription. Returns whether it is new (for retain handling 1).
    pub fn subscribe(&self, session: &Arc<Session>, filter: &TopicFilter, opts: SubOptions) -> bool {
        let is_new = {
            let mut st = session.lock();
            if st.ended {
                return false;
            }
            let is_new = st
                .subscriptions
                .get_or_insert_with(Default::default)
                .insert(filter.clone(), opts)
                .is_none();
            // Written before the index sees the subscription, so that a message routed through
            // it is never stored ahead of it.
            self.put_record(session, &st);
            is_new
        };
        self.index_subscription(session, filter, opts);
        is_new
    }

    /// Adds a subscription to the index only (the session already has it).
    fn index_subscription(&self, session: &Arc<Session>, filter: &TopicFilter, opts: SubOptions) {
        let shared = filter.share_group().map(|group| {
            Arc::new(SharedVia {
                group: Arc::from(group),
                filter: filter.clone(),
            })
        });
        let entry = SubEntry {
            session: session.clone(),
            opts,
            shared,
        };
        if self.subs.write().insert(filter, session.serial, entry).is_none() {
            Metrics::gauge(&self.metrics.subscriptions, 1);
        }
    }

    /// Removes a subscription. Returns whether it existed.
    pub fn unsubscribe(&self, session: &Arc<Session>, filter: &TopicFilter) -> bool {
        let existed = {
            let mut st = session.lock();
            let existed = st.subscriptions.as_mut().and_then(|s| s.remove(filter)).is_some();
            if existed {
                self.put_record(session, &st);
            }
            existed
        };
        if self.subs.write().remove(filter, &session.serial).is_some() {
            Metrics::gauge(&self.metrics.subscriptions, -1);
        }
        existed
    }

    /// Queues the retained messages matching a new subscription for `session`, those that
    /// `may_read` allows (the ACL's retained-read check).
    pub fn deliver_retained(
        &self,
        session: &Arc<Session>,
        filter: &TopicFilter,
        opts: SubOptions,
        may_read: impl Fn(&Topic) -> bool,
    ) {
        let mut batch = Batch::default();
        for msg in self.retained_matching(filter) {
            if !may_read(&msg.topic) {
                continue;
            }
            let qos = msg.qos.min(opts.qos);
            self.offer(
                session,
                Delivery {
                    msg,
                    qos,
                    retain: true,
                    sub_ids: opts.sub_id.into_iter().collect(),
                    shared: None,
                    stored: None,
                    commit: None,
                },
                &mut batch,
            );
        }
        self.persist(batch, None);
    }

    // ---------------------------------------------------------------- sessions

    /// Attaches a connection to the session of `client_id`, taking it over from a connection
    /// that holds it (that one is kicked), or starting a new one (`clean_start`, or none exists).
    pub fn attach(
        &self,
        client_id: ClientId,
        clean_start: bool,
        expiry_interval: u32,
        link: Arc<dyn SessionLink>,
        limits: QueueLimits,
    ) -> Attachment {
        self.attach_with_will(client_id, clean_start, expiry_interval, link, limits, None)
    }

    /// [`Broker::attach`] recording the connection's will with a durable session (published
    /// after a crash, as the connection was lost then).
    pub fn attach_with_will(
        &self,
        client_id: ClientId,
        clean_start: bool,
        expiry_interval: u32,
        link: Arc<dyn SessionLink>,
        limits: QueueLimits,
        will: Option<&PendingWill>,
    ) -> Attachment {
        let mut ended: Option<Arc<Session>> = None;
        let (session, present) = match self.sessions.entry(client_id.clone()) {
            Entry::Occupied(mut e) => {
                let old = e.get().clone();
                let mut st = old.lock();
                if let Some(prev) = st.attached.take() {
                    prev.link.kick(KickReason::SessionTakenOver);
                }
                // A session with expiry 0 ends with its connection, which this takeover closes:
                // it is never resumed, even if that connection's DISCONNECT is still in flight.
                if clean_start || st.ended || st.expiry_interval == 0 {
                    st.ended = true;
                    drop(st);
                    ended = Some(old);
                    let fresh = self.new_session(client_id, expiry_interval, limits);
                    e.insert(fresh.clone());
                    (fresh, false)
                } else {
                    drop(st);
                    (old, true)
                }
            }
            Entry::Vacant(v) => {
                let fresh = self.new_session(client_id, expiry_interval, limits);
                v.insert(fresh.clone());
                Metrics::gauge(&self.metrics.sessions, 1);
                (fresh, false)
            }
        };
        if let Some(old) = ended {
            self.cleanup_ended(&old);
        }
        let generation = {
            let mut st = session.lock();
            st.generation += 1;
            st.attached = Some(session::Attached {
                generation: st.generation,
                link,
            });
            st.expiry_interval = expiry_interval;
            st.max_queued = limits.queue_cap();
            st.drop_policy = limits.drop_policy;
            st.queue_qos0_offline = limits.queue_qos0_offline;
            st.wake_pending = false;
            st.drops_in_episode = 0;
            // A new connection is presumed to be taking messages until it proves otherwise.
            st.last_progress = session::Stamp::now();
            st.durable = limits.persist && self.store.get().is_some() && (st.durable || expiry_interval > 0);
            if st.durable {
                st.will_record = will.map(|w| {
                    Box::new(StoredWill {
                        msg: Arc::new(w.msg.clone()),
                        delay: w.delay,
                        expiry: w.expiry,
                        due_at: None,
                    })
                });
                self.put_record(&session, &st);
            }
            st.generation
        };
        session.set_online(true);
        // A new connection on the session cancels a delayed will (MQTT 5 §3.1.3.2.2).
        self.pending_wills.remove(&session.serial);
        Attachment {
            session,
            present,
            generation,
        }
    }

    fn new_session(&self, client_id: ClientId, expiry_interval: u32, limits: QueueLimits) -> Arc<Session> {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        Arc::new(Session::new(client_id, serial, expiry_interval, limits))
    }

    /// Detaches the connection owning `generation`. A session with expiry 0 ends now; others
    /// stay and the caller schedules [`Broker::expire_session`]. A will is published now, or
    /// held for its delay (the caller schedules [`Broker::fire_will`]), or dropped (`None`).
    pub fn detach(&self, session: &Arc<Session>, generation: u64, will: Option<PendingWill>) -> Detached {
        let mut out = Detached::default();
        let (owned, expiry, shared, ended, waiters) = {
            let mut st = session.lock();
            let waiters = st.waiters.take().map(|w| *w).unwrap_or_default();
            let owned = st.generation == generation && st.attached.as_ref().is_some_and(|a| a.generation == generation);
            if owned {
                st.attached = None;
                st.wake_pending = false;
            }
            let shared = if owned && !st.ended {
                st.take_shared()
            } else {
                Vec::new()
            };
            (owned, st.expiry_interval, shared, st.ended, waiters)
        };
        // Publishers paused for this consumer must not wait for a queue nobody drains now.
        for w in waiters {
            w.resume();
        }
        if owned {
            session.set_online(false);
        }
        // Queued messages of a shared subscription go to another member now (MQTT 5 §4.8.2).
        let mut batch = Batch::default();
        for d in shared {
            self.reroute_shared(session.serial, d, &mut batch);
        }
        self.persist(batch, None);
        let ends_now = owned && expiry == 0;
        if let Some(w) = will {
            let delay = w.delay.min(expiry);
            if delay == 0 || ends_now || ended {
                // Published now: no delay, or the session ends (here, or already, when a
                // clean-start connection took it over).
                self.publish_will(w);
            } else if !owned {
                // Taken over: the successor resumed the session before the delay elapsed, which
                // cancels the will (MQTT 5 §3.1.3.2.2).
            } else {
                self.pending_wills.insert(session.serial, (generation, w));
                out.will_after = Some(Duration::from_secs(u64::from(delay)));
            }
        }
        if ends_now {
            self.end_session(session);
        } else if owned {
            if expiry != u32::MAX {
                out.expire_after = Some(Duration::from_secs(u64::from(expiry)));
            }
            let mut st = session.lock();
            if st.durable && st.generation == generation {
                let now = now_ms();
                st.disconnected_at = std::num::NonZeroU64::new(now);
                st.will_record = match (out.will_after, self.pending_wills.get(&session.serial)) {
                    (Some(after), Some(w)) => Some(Box::new(StoredWill {
                        msg: Arc::new(w.1.msg.clone()),
                        delay: w.1.delay,
                        expiry: w.1.expiry,
                        due_at: Some(now.saturating_add(after.as_millis() as u64)),
                    })),
                    _ => None,
                };
                self.put_record(session, &st);
            }
        }
        out
    }

    /// Publishes a held will if the session was not resumed since.
    pub fn fire_will(&self, session: &Arc<Session>, generation: u64) {
        if let Some((_, (_, msg))) = self
            .pending_wills
            .remove_if(&session.serial, |_, (g, _)| *g == generation)
        {
            {
                let mut st = session.lock();
                if st.will_record.take().is_some() {
                    self.put_record(session, &st);
                }
            }
            self.publish_will(msg);
        }
    }

    fn publish_will(&self, will: PendingWill) {
        Metrics::add(&self.metrics.wills_published, 1);
        self.publish(will.into_message());
    }

    /// Ends a detached session whose expiry elapsed, unless it was resumed since.
    pub fn expire_session(&self, session: &Arc<Session>, generation: u64) {
        let expired = {
            let st = session.lock();
            st.generation == generation && st.attached.is_none() && !st.ended
        };
        if expired {
            tracing::debug!(client_id = %session.client_id, "session expired");
            self.end_session(session);
        }
    }

    /// Ends a session: removes it from the registry and its subscriptions from the index,
    /// publishes a held will, and hands shared-subscription messages to other members.
    pub fn end_session(&self, session: &Arc<Session>) {
        if self
            .sessions
            .remove_if(&session.client_id, |_, s| Arc::ptr_eq(s, session))
            .is_some()
        {
            Metrics::gauge(&self.metrics.sessions, -1);
        }
        session.lock().ended = true;
        self.cleanup_ended(session);
    }

    fn cleanup_ended(&self, session: &Arc<Session>) {
        let (filters, mut orphans) = {
            let mut st = session.lock();
            st.ended = true;
            let filters: Vec<TopicFilter> = st
                .subscriptions
                .take()
                .map(|s| s.into_keys().collect())
                .unwrap_or_default();
            let mut orphans = st.take_shared();
            orphans.extend(st.inflight.drain_unsent().into_iter().filter(|d| d.shared.is_some()));
            st.queue.clear();
            if st.durable {
                // Under the lock, after `ended`: no record of this serial can follow.
                st.durable = false;
                self.persist_ops(vec![Op::DeleteSession { serial: session.serial }]);
            }
            (filters, orphans)
        };
        if !filters.is_empty() {
            let mut subs = self.subs.write();
            for f in &filters {
                if subs.remove(f, &session.serial).is_some() {
                    Metrics::gauge(&self.metrics.subscriptions, -1);
                }
            }
        }
        let mut batch = Batch::default();
        for d in orphans.drain(..) {
            self.reroute_shared(session.serial, d, &mut batch);
        }
        self.persist(batch, None);
        if let Some((_, (_, will))) = self.pending_wills.remove(&session.serial) {
            self.publish_will(will);
        }
    }

    /// Offers a shared-subscription delivery to another member of its group.
    fn reroute_shared(&self, from: u64, d: Delivery, batch: &mut Batch) {
        let Some(via) = d.shared.clone() else { return };
        if let Some(r) = d.stored {
            batch.ops.push(Op::Remove {
                serial: from,
                seq: r.seq,
            });
        }
        let mut target: Option<(Arc<Session>, QoS, Option<u32>)> = None;
        {
            let subs = self.subs.read();
            subs.for_each_match(&d.msg.topic, |m| {
                if let Match::Shared {
                    group,
                    filter,
                    members,
                    cursor,
                } = m
                {
                    if target.is_none() && group == &*via.group && filter == via.filter.filter() {
                        if let Some((_, e)) = pick_member(members, cursor, Some(from)) {
                            target = Some((e.session.clone(), e.opts.qos, e.opts.sub_id));
                        }
                    }
                }
            });
        }
        if let Some((session, granted, sub_id)) = target {
            let qos = d.msg.qos.min(granted);
            self.offer(
                &session,
                Delivery {
                    qos,
                    sub_ids: sub_id.into_iter().collect(),
                    stored: None,
                    commit: None,
                    ..d
                },
                batch,
            );
        }
    }

    /// Kicks every attached connection (server shutdown).
    pub fn kick_all(&self, reason: KickReason) {
        let sessions: Vec<Arc<Session>> = self.sessions.iter().map(|e| e.value().clone()).collect();
        for s in sessions {
            let link = s.lock().attached.as_ref().map(|a| a.link.clone());
            if let Some(link) = link {
                link.kick(reason);
            }
        }
    }

    /// The ACL decision for one request: rules carried by the identity (a token's `acl` claim)
    /// first, then the configured ACL; with neither, everything is allowed, and with only token
    /// rules, what they do not allow is refused. Denials are counted,
    /// and every decision is logged when auditing is on.
    pub fn authorize(&self, identity: &Identity, client_id: &str, listener: &str, request: Request<'_>) -> bool {
        let subject = Subject::from_identity(identity, client_id, listener);
        let from_token = identity.acl.as_ref().and_then(|acl| acl.check_rules(&subject, request));
        let (allowed, source, rule) = match (from_token, self.acl()) {
            (Some(v), _) => (v.is_allowed(), "token", v.rule),
            (None, Some(acl)) => {
                let v = acl.check(&subject, request);
                (v.is_allowed(), "acl", v.rule)
            }
            // A token that carries rules is the whole policy when no ACL is configured: what it
            // does not allow is refused (its rules restrict, they never widen an open broker).
            (None, None) if identity.acl.is_some() => (false, "token", None),
            (None, None) => (true, "none", None),
        };
        if !allowed {
            Metrics::add(&self.metrics.acl_denied, 1);
        }
        if self.audit() {
            let (action, topic) = match request {
                Request::Publish(t) => ("publish", t.as_str()),
                Request::Subscribe(f) => ("subscribe", f.as_str()),
                Request::RetainedRead(t) => ("retained", t.as_str()),
            };
            tracing::info!(
                target: "unigate::audit",
                event = "authz", listener, client_id, username = identity.username.as_deref().unwrap_or(""),
                action, topic, source, rule = ?rule, result = if allowed { "allow" } else { "deny" }
            );
        }
        allowed
    }

    /// Checks a topic filter against the broker's features. Returns the MQTT 5 reason to refuse it.
    pub fn check_filter(&self, filter: &TopicFilter) -> Result<(), FilterRefusal> {
        if filter.share_group().is_some() && !self.settings.shared_subscriptions {
            return Err(FilterRefusal::SharedNotSupported);
        }
        if filter.has_wildcards() && !self.settings.wildcard_subscriptions {
            return Err(FilterRefusal::WildcardsNotSupported);
        }
        Ok(())
    }

    /// Validates a topic for publishing against a level limit.
    pub fn topic_levels_ok(topic: &Topic, max_levels: usize) -> bool {
        topic.levels().take(max_levels + 1).count() <= max_levels
    }
}

// ---------------------------------------------------------------- management registry
//
// The management API runs inside the HTTP listeners, which know their own settings only. What
// it shows about the whole server (the bound listeners, the running configuration, the
// management auth chain) and the reload it triggers are registered here by the server at start
// and on reload: rarely written, read per management request, so a plain `RwLock` each.

/// A bound listener as the management API lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListenerInfo {
    /// Its name.
    pub name: Arc<str>,
    /// Its protocol (`mqtt`, `coap`, `http`, …).
    pub protocol: String,
    /// The address it is bound to.
    pub bind: std::net::SocketAddr,
    /// Whether it speaks TLS (DTLS for CoAP).
    pub tls: bool,
}

/// Re-reads the configuration file and applies what can change at run time (the management
/// API's `POST /api/v1/auth/reload`; SIGHUP does the same).
pub type Reloader = Box<dyn Fn(&Broker) -> anyhow::Result<()> + Send + Sync>;

/// See [`Broker::set_listeners`] and the methods after it.
#[derive(Default)]
struct Admin {
    listeners: RwLock<Arc<[ListenerInfo]>>,
    config: RwLock<Option<Arc<crate::config::Config>>>,
    management_chain: RwLock<Option<Arc<unigate_auth::Chain>>>,
    reloader: RwLock<Option<Arc<Reloader>>>,
}

impl Broker {
    /// Records the bound listeners (after binding).
    pub fn set_listeners(&self, listeners: Vec<ListenerInfo>) {
        *self.admin.listeners.write() = listeners.into();
    }

    /// The bound listeners, as recorded.
    pub fn listeners(&self) -> Arc<[ListenerInfo]> {
        self.admin.listeners.read().clone()
    }

    /// Records the running configuration (start-up and reload).
    pub fn set_config(&self, config: Arc<crate::config::Config>) {
        *self.admin.config.write() = Some(config);
    }

    /// The running configuration, if recorded.
    pub fn config(&self) -> Option<Arc<crate::config::Config>> {
        self.admin.config.read().clone()
    }

    /// Records the auth chain of the management API (`management.chain`).
    pub fn set_management_chain(&self, chain: Option<Arc<unigate_auth::Chain>>) {
        *self.admin.management_chain.write() = chain;
    }

    /// The auth chain of the management API, if one is named and recorded.
    pub fn management_chain(&self) -> Option<Arc<unigate_auth::Chain>> {
        self.admin.management_chain.read().clone()
    }

    /// Registers how to reload the configuration.
    pub fn set_reloader(&self, reloader: Option<Reloader>) {
        *self.admin.reloader.write() = reloader.map(Arc::new);
    }

    /// Reloads the configuration through the registered reloader. `None`: there is none (the
    /// server was started without a configuration file).
    pub fn reload(&self) -> Option<anyhow::Result<()>> {
        let reloader = self.admin.reloader.read().clone()?;
        Some(reloader(self))
    }

    // ---------------------------------------------------------------- retained (management)

    /// The retained message of one topic, unexpired.
    pub fn retained_message(&self, topic: &Topic) -> Option<Arc<Message>> {
        let now = now_ms();
        self.retained.read().get(topic).filter(|m| !m.is_expired(now)).cloned()
    }

    /// Deletes the retained message of one topic. Returns whether there was one.
    pub fn delete_retained(&self, topic: &Topic) -> bool {
        let mut retained = self.retained.write();
        let removed = retained.remove(topic).is_some();
        if removed {
            Metrics::gauge(&self.metrics.retained, -1);
            self.persist_ops(vec![Op::DeleteRetained(topic.clone())]);
        }
        removed
    }

    /// Every unexpired retained message (`$` topics included), sorted by topic.
    pub fn retained_all(&self) -> Vec<Arc<Message>> {
        let now = now_ms();
        let mut out: Vec<Arc<Message>> = self
            .retained
            .read()
            .iter()
            .filter(|(_, m)| !m.is_expired(now))
            .map(|(_, m)| m.clone())
            .collect();
        out.sort_by(|a, b| a.topic.as_str().cmp(b.topic.as_str()));
        out
    }

    /// The sessions' queues now (a scrape of `/metrics`): each session's lock is taken once,
    /// briefly, one at a time.
    pub fn queue_depths(&self) -> QueueDepths {
        let mut d = QueueDepths::default();
        for entry in self.sessions.iter() {
            let st = entry.value().lock();
            let queued = st.queue.len();
            d.queued += queued as u64;
            d.inflight += st.inflight.len() as u64;
            if st.attached.is_none() {
                d.queued_offline += queued as u64;
            }
            let bucket = QueueDepths::BOUNDS
                .iter()
                .position(|&b| queued <= b)
                .unwrap_or(QueueDepths::BOUNDS.len());
            d.sessions_by_depth[bucket] += 1;
        }
        d
    }
}

/// What [`Broker::queue_depths`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QueueDepths {
    /// Messages queued for all sessions, online and offline.
    pub queued: u64,
    /// Of them, queued for offline sessions.
    pub queued_offline: u64,
    /// QoS 1/2 messages sent and not yet acknowledged.
    pub inflight: u64,
    /// Sessions per queue-length bucket (not cumulative): `sessions_by_depth[i]` sessions have
    /// at most `BOUNDS[i]` queued messages and more than the bound before; the last entry
    /// counts the sessions above every bound.
    pub sessions_by_depth: [u64; QueueDepths::BOUNDS.len() + 1],
}

impl QueueDepths {
    /// Queue-length bucket bounds.
    pub const BOUNDS: [usize; 7] = [0, 1, 10, 100, 1_000, 10_000, 100_000];
}

/// Why a subscription is refused by broker features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FilterRefusal {
    /// Shared subscriptions are turned off.
    #[error("shared subscriptions are not available")]
    SharedNotSupported,
    /// Wildcards are turned off.
    #[error("wildcard subscriptions are not available")]
    WildcardsNotSupported,
}

/// Picks one member of a shared group round-robin, preferring an online one.
fn pick_member<'a>(
    members: &'a [(u64, SubEntry)],
    cursor: &std::sync::atomic::AtomicUsize,
    exclude: Option<u64>,
) -> Option<&'a (u64, SubEntry)> {
    let n = members.len();
    if n == 0 {
        return None;
    }
    let start = cursor.fetch_add(1, Ordering::Relaxed);
    let mut fallback = None;
    for i in 0..n {
        let m = &members[(start + i) % n];
        if Some(m.0) == exclude {
            continue;
        }
        if m.1.session.is_online() {
            return Some(m);
        }
        if fallback.is_none() {
            fallback = Some(m);
        }
    }
    fallback
}

/// One copy per session for overlapping non-shared subscriptions: the highest QoS and every
/// subscription identifier (MQTT 5 §3.3.4).
fn merge_overlapping(targets: &mut Vec<Target>) {
    targets.sort_by_key(|t| (t.session.serial, t.shared.is_some()));
    let mut merged: Vec<Target> = Vec::with_capacity(targets.len());
    for t in targets.drain(..) {
        if let Some(last) = merged.last_mut() {
            if t.shared.is_none() && last.shared.is_none() && last.session.serial == t.session.serial {
                last.qos = last.qos.max(t.qos);
                last.retain |= t.retain;
                last.sub_ids.extend(t.sub_ids);
                continue;
            }
        }
        merged.push(t);
    }
    *targets = merged;
}

#[cfg(test)]
mod tests;

/// Tells one waiting publisher that its message is durable ([`Broker::publish_durable`]).
struct CommitSignal(parking_lot::Mutex<Option<tokio::sync::oneshot::Sender<bool>>>);

impl SessionLink for CommitSignal {
    fn wake(&self) {}

    fn kick(&self, _reason: KickReason) {}

    fn stored(&self, _token: u64, ok: bool) {
        if let Some(tx) = self.0.lock().take() {
            let _ = tx.send(ok);
        }
    }
}
