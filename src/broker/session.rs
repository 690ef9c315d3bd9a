//! Sessions: what a client id keeps between connections, and its delivery queue.
//!
//! A [`Session`] is shared (`Arc`) by the registry, the subscription index and the connection that
//! currently owns it. Everything mutable sits behind one small mutex per session, so a publisher
//! enqueues a delivery with one uncontended lock and never goes through a central actor.
//!
//! The queue is both the online backlog (messages not yet written because the inflight window is
//! full or the socket is slow) and the offline queue of a persistent session. The attached
//! connection is woken through its [`SessionLink`] at most once per batch (`wake_pending`).
//!
//! Ownership is decided by `generation`: each attach increments it, and a connection only touches
//! the session while its own generation is current. A taken-over connection therefore cannot
//! corrupt the state its successor now owns.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use smallvec::SmallVec;
use unigate_pubsub::{Message, QoS, TopicFilter};

use crate::config::QueueDropPolicy;

/// A client identifier, cheap to clone.
pub type ClientId = Arc<str>;

/// Why a connection is told to go away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// Another connection took the session over (MQTT 5 0x8E).
    SessionTakenOver,
    /// The server is shutting down (MQTT 5 0x8B).
    ServerShuttingDown,
    /// An operator kicked the client (MQTT 5 0x98).
    Administrative,
}

/// How the broker reaches the connection that owns a session. Implemented by each protocol's
/// connection (MQTT today; CoAP observers, SSE streams and WebSockets later).
pub trait SessionLink: Send + Sync {
    /// New deliveries are queued: drain them.
    fn wake(&self);
    /// Close the connection for `reason`; the session is no longer yours.
    fn kick(&self, reason: KickReason);
    /// A session this connection published to was congested and has drained: read again
    /// (see [`SessionState::waiters`]).
    fn resume(&self) {}
    /// Operations submitted to the store with ticket `token` (and every lower ticket of this
    /// connection) are durable (`ok`), or the store failed (`!ok`): send the acknowledgements
    /// held back for them, or close.
    fn stored(&self, _token: u64, _ok: bool) {}

    /// What the connection can say about itself (management API). `None`: nothing.
    fn describe(&self) -> Option<futures::future::BoxFuture<'static, Option<ClientInfo>>> {
        None
    }
}

/// A connected client as the management API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClientInfo {
    /// `mqtt`, `coap`, `http-sse`, …
    pub protocol: &'static str,
    /// The listener it came through.
    pub listener: Arc<str>,
    /// Its address.
    pub peer: Option<std::net::SocketAddr>,
    /// Its user name.
    pub username: Option<Arc<str>>,
    /// The authenticator that let it in.
    pub authenticator: Option<Arc<str>>,
    /// Protocol details (MQTT version, keep alive, CoAP mode, observations, …).
    pub details: serde_json::Value,
}

/// Which shared subscription a delivery came through, so that it can be handed to another
/// member when this one goes away before sending it (MQTT 5 §4.8.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedVia {
    /// The share group.
    pub group: Arc<str>,
    /// The whole `$share/{group}/{filter}` filter.
    pub filter: TopicFilter,
}

/// One message on its way to one session.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message, shared by every recipient.
    pub msg: Arc<Message>,
    /// The QoS to deliver with: min(published, granted).
    pub qos: QoS,
    /// The RETAIN flag to deliver with.
    pub retain: bool,
    /// Subscription identifiers of the matching subscriptions (MQTT 5).
    pub sub_ids: SmallVec<[u32; 1]>,
    /// Set when the delivery came through a shared subscription.
    pub shared: Option<Arc<SharedVia>>,
    /// Set when the delivery is in the store (a QoS 1/2 delivery to a durable session).
    pub stored: Option<StoredRef>,
    /// A QoS 2 delivery to a durable session is sent only once this is done (see
    /// [`crate::storage::Commit`]).
    pub commit: Option<Arc<crate::storage::Commit>>,
}

/// Where a delivery is in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredRef {
    /// Its position in the session's stored queue; also fixes its packet id
    /// ([`StoredRef::packet_id`]) so that a resend after a restart uses the same one.
    pub seq: u64,
    /// Loaded from the store at start-up: it may have been sent before the restart (DUP).
    pub recovered: bool,
}

impl StoredRef {
    /// The packet identifier of a stored delivery: a function of its seq, so that the same
    /// message gets the same id after a restart (MQTT 5 §4.4: a resend keeps its packet id;
    /// a receiver doing exactly-once by packet id must see the same one).
    pub fn packet_id(&self) -> u16 {
        (self.seq % u64::from(u16::MAX)) as u16 + 1
    }
}

/// Options of one subscription, as granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubOptions {
    /// Granted QoS.
    pub qos: QoS,
    /// Do not deliver the client's own messages (MQTT 5).
    pub no_local: bool,
    /// Keep the publisher's RETAIN flag on forward (MQTT 5).
    pub retain_as_published: bool,
    /// Subscription identifier (MQTT 5).
    pub sub_id: Option<u32>,
}

/// A QoS 1/2 message sent and not yet completed.
#[derive(Debug, Clone)]
pub enum OutState {
    /// PUBLISH sent; awaiting PUBACK (QoS 1) or PUBREC (QoS 2).
    Published(Delivery),
    /// PUBREL sent; awaiting PUBCOMP. The stored seq, for a durable session.
    Released(Option<u64>),
}

/// The outbound inflight window, in send order. A deque rather than a map: acknowledgements
/// nearly always come in order (the front), the window is small (Receive Maximum), and an
/// empty deque costs 32 bytes per session where a map costs 48 plus its hasher.
#[derive(Debug, Default)]
pub struct Inflight {
    entries: VecDeque<(u16, OutState)>,
    next_id: u16,
}

impl Inflight {
    /// Messages in the window.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, id: u16) -> Option<usize> {
        match self.entries.front() {
            Some((front, _)) if *front == id => Some(0),
            _ => self.entries.iter().position(|(i, _)| *i == id),
        }
    }

    /// Takes a free packet identifier and records `state` under it. None when all 65535 are used.
    pub fn insert(&mut self, state: OutState) -> Option<u16> {
        if self.entries.len() >= usize::from(u16::MAX) {
            return None;
        }
        loop {
            self.next_id = self.next_id.wrapping_add(1);
            if self.next_id != 0 && self.position(self.next_id).is_none() {
                break;
            }
        }
        self.entries.push_back((self.next_id, state));
        Some(self.next_id)
    }

    /// Records `state` under a given free `id` (a stored delivery's). False when the id is in
    /// use: the caller waits, as for a full window.
    pub fn insert_with_id(&mut self, id: u16, state: OutState) -> bool {
        if id == 0 || self.position(id).is_some() {
            return false;
        }
        self.entries.push_back((id, state));
        true
    }

    /// The state under `id`.
    pub fn state(&self, id: u16) -> Option<&OutState> {
        self.position(id).and_then(|p| self.entries.get(p)).map(|(_, s)| s)
    }

    /// Replaces the state under an existing `id`.
    pub fn set(&mut self, id: u16, state: OutState) -> bool {
        match self.position(id).and_then(|p| self.entries.get_mut(p)) {
            Some((_, s)) => {
                *s = state;
                true
            }
            None => false,
        }
    }

    /// Removes `id`; returns its state.
    pub fn remove(&mut self, id: u16) -> Option<OutState> {
        let p = self.position(id)?;
        let state = self.entries.remove(p).map(|(_, s)| s);
        if self.entries.is_empty() {
            // Release the buffer of an idle session.
            self.entries = VecDeque::new();
        }
        state
    }

    /// The window in send order (for retransmission on reconnect).
    pub fn in_order(&self) -> impl Iterator<Item = (u16, &OutState)> + '_ {
        self.entries.iter().map(|(id, s)| (*id, s))
    }

    /// Empties the window, returning the deliveries not yet PUBREC'd.
    pub fn drain_unsent(&mut self) -> Vec<Delivery> {
        std::mem::take(&mut self.entries)
            .into_iter()
            .filter_map(|(_, s)| match s {
                OutState::Published(d) => Some(d),
                OutState::Released(_) => None,
            })
            .collect()
    }
}

/// The currently attached connection.
pub struct Attached {
    /// The generation this connection owns.
    pub generation: u64,
    /// How to reach it.
    pub link: Arc<dyn SessionLink>,
}

/// The mutable part of a session.
pub struct SessionState {
    /// Increments on every attach.
    pub generation: u64,
    /// The connection that owns the session, if any.
    pub attached: Option<Attached>,
    /// A wake is outstanding: do not send another.
    pub wake_pending: bool,
    /// Deliveries waiting to be sent.
    pub queue: VecDeque<Delivery>,
    qos0_queued: u32,
    /// Subscriptions, by filter; allocated on the first one (boxed: an empty map costs 48
    /// bytes in every session, publishers-only clients included).
    #[allow(clippy::box_collection)]
    pub subscriptions: Option<Box<HashMap<TopicFilter, SubOptions>>>,
    /// Outbound QoS 1/2 window.
    pub inflight: Inflight,
    /// Inbound QoS 2 packet ids received and not yet released (PUBREL); bounded by our
    /// Receive Maximum, so a small vector.
    pub incoming_qos2: PacketIds,
    /// Session expiry interval in seconds (u32::MAX: never).
    pub expiry_interval: u32,
    /// The session has ended: it is no longer in the registry and takes no deliveries.
    pub ended: bool,
    /// Queue limit (at most `u32::MAX`).
    pub max_queued: u32,
    /// What a full queue drops.
    pub drop_policy: QueueDropPolicy,
    /// Whether QoS 0 messages are queued while offline.
    pub queue_qos0_offline: bool,
    /// Drops since the last "queue full" log line (logged once per episode).
    pub drops_in_episode: u32,
    /// Publishers paused because this session's queue is long while its consumer is still
    /// taking messages; resumed when the queue is short again (back-pressure).
    /// Boxed: present only under congestion, and an empty `Vec` would cost every session 24
    /// bytes.
    #[allow(clippy::box_collection)]
    pub waiters: Option<Box<Vec<Arc<dyn SessionLink>>>>,
    /// When the attached connection last moved messages out of the queue.
    pub last_progress: Stamp,
    /// The session is kept in the store: its QoS 1/2 deliveries, subscriptions and state are
    /// written there.
    pub durable: bool,
    /// The last stored queue position.
    pub next_seq: u64,
    /// When the last connection went away (ms since the epoch), for the stored record.
    pub disconnected_at: Option<std::num::NonZeroU64>,
    /// The will as stored (boxed: most sessions have none).
    pub will_record: Option<Box<crate::storage::StoredWill>>,
}

/// What happened to a delivery offered to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued.
    Queued,
    /// Queued, and an older message was dropped to make room.
    QueuedDroppedOld,
    /// Not queued: the queue is full.
    Dropped,
    /// Not queued: QoS 0 for an offline session that does not queue QoS 0.
    DroppedOffline,
    /// The session has ended.
    Ended,
}

/// A session.
pub struct Session {
    /// The client identifier.
    pub client_id: ClientId,
    /// A unique serial: the subscription index key (a new session with the same client id gets
    /// a new serial, so removing the old one's subscriptions never touches the new one's).
    pub serial: u64,
    online: AtomicBool,
    state: Mutex<SessionState>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("client_id", &self.client_id)
            .field("serial", &self.serial)
            .finish()
    }
}

impl Session {
    /// A new, empty session.
    pub fn new(client_id: ClientId, serial: u64, expiry_interval: u32, limits: QueueLimits) -> Session {
        Session {
            client_id,
            serial,
            online: AtomicBool::new(false),
            state: Mutex::new(SessionState {
                generation: 0,
                attached: None,
                wake_pending: false,
                queue: VecDeque::new(),
                qos0_queued: 0,
                subscriptions: None,
                inflight: Inflight::default(),
                incoming_qos2: PacketIds::default(),
                expiry_interval,
                ended: false,
                max_queued: limits.queue_cap(),
                drop_policy: limits.drop_policy,
                queue_qos0_offline: limits.queue_qos0_offline,
                drops_in_episode: 0,
                waiters: None,
                last_progress: Stamp::NEVER,
                durable: false,
                next_seq: 0,
                disconnected_at: None,
                will_record: None,
            }),
        }
    }

    /// Locks the state.
    pub fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock()
    }

    /// Whether a connection is attached (a hint; exact answers need the lock).
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    pub(crate) fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Relaxed);
    }

    /// Offers a delivery: queues it under the session's limits and wakes the connection.
    pub fn enqueue(&self, d: Delivery) -> Enqueued {
        self.enqueue_from(d, None, false, None).outcome
    }

    /// Like [`Session::enqueue`]; when `publisher` is given and the queue is congested (at least
    /// `bp.threshold` messages while the consumer is still making progress), the publisher is
    /// registered to be resumed later and `congested` is true: it should stop reading.
    /// With `persist`, a QoS 1/2 delivery to a durable session gets a stored queue position
    /// (`stored`): the caller writes it to the store; a stored QoS 2 delivery waits for
    /// `commit` before it is sent.
    pub fn enqueue_from(
        &self,
        mut d: Delivery,
        publisher: Option<(&Arc<dyn SessionLink>, Backpressure)>,
        persist: bool,
        commit: Option<Arc<crate::storage::Commit>>,
    ) -> Offered {
        let mut st = self.state.lock();
        let mut stored = None;
        if persist && st.durable && d.qos != QoS::AtMostOnce && !st.ended {
            st.next_seq += 1;
            let r = StoredRef {
                seq: st.next_seq,
                recovered: false,
            };
            d.stored = Some(r);
            d.commit = commit;
            stored = Some(r.seq);
        }
        let (outcome, evicted) = st.push_evicting(d);
        let evicted = evicted.and_then(|e| e.stored).map(|r| r.seq);
        if !matches!(outcome, Enqueued::Queued | Enqueued::QueuedDroppedOld) {
            stored = None;
        }
        if matches!(outcome, Enqueued::Queued | Enqueued::QueuedDroppedOld) {
            st.wake();
        }
        let mut congested = false;
        if let Some((link, bp)) = publisher {
            // A client is never paused for its own queue: it would stop reading the very
            // acknowledgements that drain it.
            let own = st.attached.as_ref().is_some_and(|a| Arc::ptr_eq(&a.link, link));
            if bp.threshold > 0
                && st.queue.len() >= bp.threshold
                && st.attached.is_some()
                && !own
                && st.is_progressing(bp.stuck_after)
            {
                let waiters = st.waiters.get_or_insert_with(Default::default);
                if !waiters.iter().any(|w| Arc::ptr_eq(w, link)) {
                    waiters.push(link.clone());
                }
                congested = true;
            }
        }
        Offered {
            outcome,
            congested,
            stored,
            evicted,
        }
    }
}

/// What [`Session::enqueue_from`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offered {
    /// Queued or not.
    pub outcome: Enqueued,
    /// The publisher should pause.
    pub congested: bool,
    /// The stored queue position given to the delivery (write it to the store).
    pub stored: Option<u64>,
    /// The stored queue position of a delivery dropped to make room (remove it from the store).
    pub evicted: Option<u64>,
}

/// When publishers are slowed down for a congested session.
#[derive(Debug, Clone, Copy)]
pub struct Backpressure {
    /// Queue length from which publishers pause (0: never).
    pub threshold: usize,
    /// A consumer that moved nothing for this long is stuck: it slows nobody down (its queue
    /// fills and drops per policy instead, so one dead client cannot stall the others).
    pub stuck_after: std::time::Duration,
}

/// Queue settings given to a session when it is created or attached.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Messages at most.
    pub max_queued: usize,
    /// What a full queue drops.
    pub drop_policy: QueueDropPolicy,
    /// Whether QoS 0 is queued while offline.
    pub queue_qos0_offline: bool,
    /// Keep the session in the store when it outlives its connection (MQTT sessions; the other
    /// protocols' sessions live in memory only).
    pub persist: bool,
}

impl QueueLimits {
    /// `max_queued` as the session keeps it (4 bytes; more than `u32::MAX` saturates).
    pub fn queue_cap(&self) -> u32 {
        self.max_queued.try_into().unwrap_or(u32::MAX)
    }
}

impl SessionState {
    /// Queues a delivery per the limits (QoS 0 dropped first when full).
    pub fn push(&mut self, d: Delivery) -> Enqueued {
        self.push_evicting(d).0
    }

    /// [`SessionState::push`], also returning the delivery dropped to make room.
    pub fn push_evicting(&mut self, d: Delivery) -> (Enqueued, Option<Delivery>) {
        if self.ended {
            return (Enqueued::Ended, None);
        }
        if self.attached.is_none() && d.qos == QoS::AtMostOnce && !self.queue_qos0_offline {
            return (Enqueued::DroppedOffline, None);
        }
        let mut outcome = Enqueued::Queued;
        let mut evicted = None;
        if self.queue.len() >= self.max_queued as usize {
            if d.qos == QoS::AtMostOnce {
                return (Enqueued::Dropped, None);
            }
            if self.qos0_queued > 0 {
                if let Some(pos) = self.queue.iter().position(|q| q.qos == QoS::AtMostOnce) {
                    evicted = self.queue.remove(pos);
                    self.qos0_queued -= 1;
                }
            } else {
                match self.drop_policy {
                    QueueDropPolicy::Newest => return (Enqueued::Dropped, None),
                    QueueDropPolicy::Oldest => {
                        evicted = self.queue.pop_front();
                    }
                }
            }
            outcome = Enqueued::QueuedDroppedOld;
        }
        if d.qos == QoS::AtMostOnce {
            self.qos0_queued += 1;
        }
        self.queue.push_back(d);
        (outcome, evicted)
    }

    /// The session as the store keeps it.
    pub fn record(&self, client_id: &ClientId) -> crate::storage::SessionRecord {
        use crate::storage::StoredSubOptions;
        let mut subscriptions: Vec<(String, StoredSubOptions)> = self
            .subscriptions
            .as_ref()
            .map(|subs| {
                subs.iter()
                    .map(|(f, o)| {
                        (
                            f.as_str().to_string(),
                            StoredSubOptions {
                                qos: o.qos,
                                no_local: o.no_local,
                                retain_as_published: o.retain_as_published,
                                sub_id: o.sub_id,
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        subscriptions.sort_by(|a, b| a.0.cmp(&b.0));
        crate::storage::SessionRecord {
            client_id: client_id.clone(),
            expiry_interval: self.expiry_interval,
            disconnected_at: if self.attached.is_some() {
                None
            } else {
                self.disconnected_at.map(std::num::NonZeroU64::get)
            },
            subscriptions,
            will: self.will_record.as_deref().cloned(),
        }
    }

    /// Takes the next delivery.
    pub fn pop(&mut self) -> Option<Delivery> {
        let d = self.queue.pop_front()?;
        if d.qos == QoS::AtMostOnce {
            self.qos0_queued = self.qos0_queued.saturating_sub(1);
        }
        Some(d)
    }

    /// Puts a delivery back at the front (it could not be sent yet).
    pub fn unpop(&mut self, d: Delivery) {
        if d.qos == QoS::AtMostOnce {
            self.qos0_queued += 1;
        }
        self.queue.push_front(d);
    }

    /// Wakes the attached connection unless a wake is already outstanding.
    pub fn wake(&mut self) {
        if self.wake_pending {
            return;
        }
        if let Some(a) = &self.attached {
            self.wake_pending = true;
            a.link.wake();
        }
    }

    /// Whether the consumer moved messages recently.
    pub fn is_progressing(&self, stuck_after: std::time::Duration) -> bool {
        self.last_progress.elapsed().is_some_and(|e| e < stuck_after)
    }

    /// Takes the paused publishers if the queue is short enough to let them go on.
    pub fn take_waiters_below(&mut self, low_water: usize) -> Vec<Arc<dyn SessionLink>> {
        if self.waiters.is_none() || self.queue.len() > low_water {
            return Vec::new();
        }
        self.waiters.take().map(|w| *w).unwrap_or_default()
    }

    /// Removes and returns the queued deliveries that came through shared subscriptions.
    pub fn take_shared(&mut self) -> Vec<Delivery> {
        if self.queue.iter().all(|d| d.shared.is_none()) {
            return Vec::new();
        }
        let (shared, own): (Vec<_>, Vec<_>) = self.queue.drain(..).partition(|d| d.shared.is_some());
        self.queue = own.into();
        self.qos0_queued = self.queue.iter().filter(|d| d.qos == QoS::AtMostOnce).count() as u32;
        shared
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::Bytes;
    use unigate_pubsub::Topic;

    fn delivery(qos: QoS, n: u8) -> Delivery {
        let msg = Message::new(Topic::new("t").unwrap(), Bytes::from(vec![n]));
        Delivery {
            msg: Arc::new(msg),
            qos,
            retain: false,
            sub_ids: SmallVec::new(),
            shared: None,
            stored: None,
            commit: None,
        }
    }

    fn state(max: usize, policy: QueueDropPolicy) -> Session {
        Session::new(
            "c".into(),
            1,
            u32::MAX,
            QueueLimits {
                max_queued: max,
                drop_policy: policy,
                queue_qos0_offline: true,
                persist: false,
            },
        )
    }

    fn payloads(st: &SessionState) -> Vec<u8> {
        st.queue.iter().map(|d| d.msg.payload[0]).collect()
    }

    #[test]
    fn full_queue_drops_qos0_first() {
        let s = state(3, QueueDropPolicy::Newest);
        let mut st = s.lock();
        assert_eq!(st.push(delivery(QoS::AtLeastOnce, 1)), Enqueued::Queued);
        assert_eq!(st.push(delivery(QoS::AtMostOnce, 2)), Enqueued::Queued);
        assert_eq!(st.push(delivery(QoS::AtLeastOnce, 3)), Enqueued::Queued);
        assert_eq!(st.push(delivery(QoS::AtMostOnce, 4)), Enqueued::Dropped);
        assert_eq!(st.push(delivery(QoS::AtLeastOnce, 5)), Enqueued::QueuedDroppedOld);
        assert_eq!(payloads(&st), vec![1, 3, 5]);
        assert_eq!(st.push(delivery(QoS::ExactlyOnce, 6)), Enqueued::Dropped);
    }

    #[test]
    fn drop_oldest_policy() {
        let s = state(2, QueueDropPolicy::Oldest);
        let mut st = s.lock();
        st.push(delivery(QoS::AtLeastOnce, 1));
        st.push(delivery(QoS::AtLeastOnce, 2));
        assert_eq!(st.push(delivery(QoS::AtLeastOnce, 3)), Enqueued::QueuedDroppedOld);
        assert_eq!(payloads(&st), vec![2, 3]);
    }

    #[test]
    fn offline_qos0_not_queued_unless_configured() {
        let s = Session::new(
            "c".into(),
            1,
            0,
            QueueLimits {
                max_queued: 10,
                drop_policy: QueueDropPolicy::Oldest,
                queue_qos0_offline: false,
                persist: false,
            },
        );
        assert_eq!(s.enqueue(delivery(QoS::AtMostOnce, 1)), Enqueued::DroppedOffline);
        assert_eq!(s.enqueue(delivery(QoS::AtLeastOnce, 1)), Enqueued::Queued);
    }

    #[test]
    fn inflight_ids_are_unique_and_ordered() {
        let mut w = Inflight::default();
        let a = w.insert(OutState::Released(None)).unwrap();
        let b = w.insert(OutState::Released(None)).unwrap();
        let c = w.insert(OutState::Released(None)).unwrap();
        assert!(a != b && b != c && a != 0);
        w.remove(b);
        let order: Vec<u16> = w.in_order().map(|(id, _)| id).collect();
        assert_eq!(order, vec![a, c]);
        w.remove(a);
        w.remove(c);
        assert!(w.is_empty());
    }

    #[test]
    fn inflight_skips_ids_in_use_on_wrap() {
        let mut w = Inflight::default();
        let first = w.insert(OutState::Released(None)).unwrap();
        for _ in 0..65533 {
            let id = w.insert(OutState::Released(None)).unwrap();
            w.remove(id);
        }
        // next_id has wrapped around to just before `first`; the next allocation must skip it.
        let id = w.insert(OutState::Released(None)).unwrap();
        assert_ne!(id, first);
        let id2 = w.insert(OutState::Released(None)).unwrap();
        assert_ne!(id2, first);
    }
}

/// A moment on a coarse process clock: milliseconds since the clock's first use, in 8 bytes
/// where an `Option<Instant>` takes 16 (per session and per connection, that counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(u64);

impl Stamp {
    /// Not set.
    pub const NEVER: Stamp = Stamp(0);

    /// Now.
    pub fn now() -> Stamp {
        Stamp::at(std::time::Instant::now())
    }

    /// The stamp of `t` (never [`Stamp::NEVER`]; times before the clock started are its start).
    pub fn at(t: std::time::Instant) -> Stamp {
        let ms = t.saturating_duration_since(clock_start()).as_millis();
        Stamp(u64::try_from(ms).unwrap_or(u64::MAX - 1).saturating_add(1))
    }

    /// Its value: milliseconds since the clock started, plus one (0 is [`Stamp::NEVER`]).
    pub fn raw(self) -> u64 {
        self.0
    }

    /// Whether it was ever set.
    pub fn is_set(self) -> bool {
        self != Stamp::NEVER
    }

    /// The instant it stands for (to the millisecond), if set.
    pub fn instant(self) -> Option<std::time::Instant> {
        self.is_set()
            .then(|| clock_start() + std::time::Duration::from_millis(self.0 - 1))
    }

    /// Time since the stamp, if set.
    pub fn elapsed(self) -> Option<std::time::Duration> {
        self.instant().map(|t| t.elapsed())
    }
}

fn clock_start() -> std::time::Instant {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *START.get_or_init(std::time::Instant::now)
}

/// Packet identifiers, as a set: a few at most (bounded by a Receive Maximum), and usually
/// none, so they live in a box allocated on the first (8 bytes per session instead of 24).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(clippy::box_collection)]
pub struct PacketIds(Option<Box<Vec<u16>>>);

impl PacketIds {
    /// Whether `id` is in the set.
    pub fn contains(&self, id: u16) -> bool {
        self.0.as_ref().is_some_and(|v| v.contains(&id))
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.len())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `id` (the caller checked it is not in yet).
    pub fn insert(&mut self, id: u16) {
        self.0.get_or_insert_with(Default::default).push(id);
    }

    /// Removes `id`; whether it was there. The box goes with the last one.
    pub fn remove(&mut self, id: u16) -> bool {
        let Some(v) = self.0.as_mut() else { return false };
        let Some(p) = v.iter().position(|x| *x == id) else {
            return false;
        };
        v.swap_remove(p);
        if v.is_empty() {
            self.0 = None;
        }
        true
    }

    /// The identifiers, in no particular order.
    pub fn to_vec(&self) -> Vec<u16> {
        self.0.as_deref().cloned().unwrap_or_default()
    }
}

impl From<Vec<u16>> for PacketIds {
    fn from(v: Vec<u16>) -> PacketIds {
        PacketIds((!v.is_empty()).then(|| Box::new(v)))
    }
}
