//! Broker counters: plain atomics, cheap enough for the hot path, read by `$SYS` and (later)
//! the Prometheus exporter.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use dashmap::DashMap;

/// Counters and gauges of the broker.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections open now (all protocols).
    pub connections: AtomicI64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Sessions in the registry (online and offline).
    pub sessions: AtomicI64,
    /// Subscriptions in the index.
    pub subscriptions: AtomicI64,
    /// Retained messages.
    pub retained: AtomicI64,
    /// PUBLISH packets received, by QoS.
    pub messages_received: [AtomicU64; 3],
    /// PUBLISH packets sent, by QoS.
    pub messages_sent: [AtomicU64; 3],
    /// Bytes read from clients.
    pub bytes_received: AtomicU64,
    /// Bytes written to clients.
    pub bytes_sent: AtomicU64,
    /// Messages dropped because a session queue was full.
    pub dropped_queue_full: AtomicU64,
    /// QoS 0 messages not queued for an offline session.
    pub dropped_offline_qos0: AtomicU64,
    /// Messages dropped because their expiry passed before delivery.
    pub dropped_expired: AtomicU64,
    /// Messages dropped because they exceed the client's maximum packet size.
    pub dropped_too_large: AtomicU64,
    /// Published messages that matched no subscription.
    pub unrouted: AtomicU64,
    /// Connections closed for a protocol violation or malformed packet.
    pub protocol_errors: AtomicU64,
    /// Wills published.
    pub wills_published: AtomicU64,
    /// Publishes, subscriptions and retained reads refused by the ACL.
    pub acl_denied: AtomicU64,
    /// Authentication results by (authenticator, `allow` | `deny`); the authenticator is
    /// `anonymous` for a chain's no-match allow and `chain` for its no-match deny.
    pub auth_results: DashMap<(String, &'static str), u64>,
    /// CoAP requests handled (duplicates and block-wise continuations not counted).
    pub coap_requests: AtomicU64,
    /// CoAP remote addresses with state now.
    pub coap_peers: AtomicI64,
    /// Datagrams from new remote addresses dropped because the listener's limit was reached.
    pub coap_peers_refused: AtomicU64,
    /// CoAP clients (sessions) now: connection-mode clients and observers.
    pub coap_clients: AtomicI64,
    /// CoAP observations now.
    pub coap_observations: AtomicI64,
    /// Observations ended, by why: deregistration (Observe 1), RST, retransmissions exhausted.
    pub coap_observe_cancelled: [AtomicU64; 3],
    /// CON notifications never acknowledged (retransmissions exhausted).
    pub coap_con_timeouts: AtomicU64,
    /// Server-Sent Events streams open now.
    pub http_sse_streams: AtomicI64,
    /// CoAP datagrams dropped because the socket stayed full.
    pub coap_send_dropped: AtomicU64,
    /// LwM2M devices registered now.
    pub lwm2m_registrations: AtomicI64,
    /// LwM2M observations now.
    pub lwm2m_observations: AtomicI64,
    /// LwM2M notifications received.
    pub lwm2m_notifications: AtomicU64,
}

impl Metrics {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one authentication result.
    pub fn count_auth(&self, authenticator: &str, allowed: bool) {
        let result = if allowed { "allow" } else { "deny" };
        *self
            .auth_results
            .entry((authenticator.to_string(), result))
            .or_insert(0) += 1;
    }

    /// The authentication counters, sorted.
    pub fn auth_counts(&self) -> Vec<(String, &'static str, u64)> {
        let mut v: Vec<_> = self
            .auth_results
            .iter()
            .map(|e| (e.key().0.clone(), e.key().1, *e.value()))
            .collect();
        v.sort();
        v
    }

    /// Reads a counter.
    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Adjusts a gauge.
    #[inline]
    pub fn gauge(gauge: &AtomicI64, delta: i64) {
        gauge.fetch_add(delta, Ordering::Relaxed);
    }
}
