//! Broker counters: plain atomics, cheap enough for the hot path, read by `$SYS` and (later)
//! the Prometheus exporter.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

pub use super::histogram::{Histogram, HistogramSnapshot, BOUNDS_MICROS};

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

    // Latencies and per-listener connections (the Prometheus exporter, issue #6).
    /// Time to route one published message: the subscription index lookup and handing it to
    /// every matching session's queue ([`super::Broker::publish_from`]).
    pub routing_latency: Histogram,
    /// HTTP request latency until the response head, by [`HttpRoute`].
    pub http_latency: [Histogram; HttpRoute::ALL.len()],
    /// Authentication latency by the authenticator that decided (`chain` for a timeout).
    pub auth_latency: DashMap<String, Arc<Histogram>>,
    /// Connections by (listener, protocol): MQTT over TCP/TLS and WebSocket, SSE streams, JSON
    /// WebSockets, CoAP peers.
    pub listener_connections: DashMap<(Arc<str>, &'static str), Arc<ConnectionCounts>>,
}

/// Connections of one listener and protocol.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    /// Open now.
    pub open: AtomicI64,
    /// Opened since start.
    pub accepted: AtomicU64,
}

impl ConnectionCounts {
    /// Counts a connection opened; dropping the returned guard counts it closed.
    pub fn opened(self: &Arc<Self>) -> OpenConnection {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.accepted.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone())
    }
}

/// One open connection in [`ConnectionCounts`]; closed when dropped.
#[derive(Debug)]
pub struct OpenConnection(Arc<ConnectionCounts>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The HTTP routes whose latency is kept apart: a fixed set, so that a request costs no lookup
/// and no allocation, and the label set stays bounded whatever paths clients ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpRoute {
    /// `POST /api/v1/publish`.
    Publish,
    /// `POST /api/v1/publish/bulk`.
    PublishBulk,
    /// `POST` / `PUT /topics/{topic}`.
    TopicPublish,
    /// `GET /topics/{filter}` (until the event stream's head, or the retained message).
    TopicRead,
    /// `GET /mqtt` (until the WebSocket handshake's answer).
    MqttWs,
    /// `GET /api/v1/ws`.
    JsonWs,
    /// The management API (`/api/v1/…` other than the above).
    Management,
    /// `/health`, `/ready`, `/metrics`.
    Operations,
    /// Anything else (404s).
    Other,
}

impl HttpRoute {
    /// Every route, in label order.
    pub const ALL: [HttpRoute; 9] = [
        HttpRoute::Publish,
        HttpRoute::PublishBulk,
        HttpRoute::TopicPublish,
        HttpRoute::TopicRead,
        HttpRoute::MqttWs,
        HttpRoute::JsonWs,
        HttpRoute::Management,
        HttpRoute::Operations,
        HttpRoute::Other,
    ];

    /// The route of a request.
    pub fn of(method: &str, path: &str) -> HttpRoute {
        match path {
            "/api/v1/publish" => HttpRoute::Publish,
            "/api/v1/publish/bulk" => HttpRoute::PublishBulk,
            "/mqtt" => HttpRoute::MqttWs,
            "/api/v1/ws" => HttpRoute::JsonWs,
            "/health" | "/ready" | "/metrics" => HttpRoute::Operations,
            p if p.starts_with("/topics/") => {
                if method == "GET" || method == "HEAD" {
                    HttpRoute::TopicRead
                } else {
                    HttpRoute::TopicPublish
                }
            }
            p if p.starts_with("/api/v1/") => HttpRoute::Management,
            _ => HttpRoute::Other,
        }
    }

    /// The `route` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            HttpRoute::Publish => "publish",
            HttpRoute::PublishBulk => "publish_bulk",
            HttpRoute::TopicPublish => "topic_publish",
            HttpRoute::TopicRead => "topic_read",
            HttpRoute::MqttWs => "mqtt_ws",
            HttpRoute::JsonWs => "json_ws",
            HttpRoute::Management => "management",
            HttpRoute::Operations => "operations",
            HttpRoute::Other => "other",
        }
    }
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

    /// The connection counts of a listener and protocol (looked up once per connection, or
    /// once per listener, never per message).
    pub fn listener(&self, listener: &Arc<str>, protocol: &'static str) -> Arc<ConnectionCounts> {
        if let Some(c) = self.listener_connections.get(&(listener.clone(), protocol)) {
            return c.clone();
        }
        self.listener_connections
            .entry((listener.clone(), protocol))
            .or_default()
            .clone()
    }

    /// The per-listener connection counts, sorted: (listener, protocol, open, accepted).
    pub fn listener_counts(&self) -> Vec<(Arc<str>, &'static str, i64, u64)> {
        let mut v: Vec<_> = self
            .listener_connections
            .iter()
            .map(|e| {
                let c = e.value();
                (
                    e.key().0.clone(),
                    e.key().1,
                    c.open.load(Ordering::Relaxed),
                    c.accepted.load(Ordering::Relaxed),
                )
            })
            .collect();
        v.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        v
    }

    /// Records how long an authentication took, under the authenticator that decided.
    pub fn observe_auth(&self, authenticator: &str, took: Duration) {
        let h = match self.auth_latency.get(authenticator) {
            Some(h) => h.clone(),
            None => self.auth_latency.entry(authenticator.to_string()).or_default().clone(),
        };
        h.observe(took);
    }

    /// The authentication latency histograms, sorted by authenticator.
    pub fn auth_latencies(&self) -> Vec<(String, HistogramSnapshot)> {
        let mut v: Vec<_> = self
            .auth_latency
            .iter()
            .map(|e| (e.key().clone(), e.value().snapshot()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The latency histogram of an HTTP route.
    #[inline]
    pub fn http_route(&self, route: HttpRoute) -> &Histogram {
        &self.http_latency[route as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_routes_are_classified_by_path_and_method() {
        assert_eq!(HttpRoute::of("POST", "/api/v1/publish"), HttpRoute::Publish);
        assert_eq!(HttpRoute::of("POST", "/api/v1/publish/bulk"), HttpRoute::PublishBulk);
        assert_eq!(HttpRoute::of("PUT", "/topics/a/b"), HttpRoute::TopicPublish);
        assert_eq!(HttpRoute::of("GET", "/topics/a/%23"), HttpRoute::TopicRead);
        assert_eq!(HttpRoute::of("GET", "/api/v1/clients/x"), HttpRoute::Management);
        assert_eq!(HttpRoute::of("GET", "/metrics"), HttpRoute::Operations);
        assert_eq!(HttpRoute::of("GET", "/nope"), HttpRoute::Other);
        for (i, r) in HttpRoute::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "ALL is in discriminant order");
        }
    }

    #[test]
    fn open_connections_count_down_when_dropped() {
        let m = Metrics::default();
        let name: Arc<str> = Arc::from("mqtt");
        let a = m.listener(&name, "mqtt").opened();
        let b = m.listener(&name, "mqtt").opened();
        let _c = m.listener(&name, "mqtt-ws").opened();
        drop(a);
        assert_eq!(
            m.listener_counts(),
            vec![(name.clone(), "mqtt", 1, 2), (name.clone(), "mqtt-ws", 1, 1)]
        );
        drop(b);
        assert_eq!(m.listener_counts()[0].2, 0);
    }
}
