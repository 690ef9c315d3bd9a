//! `GET /metrics`: the broker's counters in the Prometheus text exposition format (0.0.4).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};

use super::HttpShared;
use crate::broker::metrics::{HistogramSnapshot, HttpRoute, BOUNDS_MICROS};
use crate::broker::{Broker, Metrics, QueueDepths};

/// `GET /metrics`.
pub async fn handler(shared: web::Data<HttpShared>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(render(&shared.broker))
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The exposition text.
pub fn render(broker: &Broker) -> String {
    let m = &broker.metrics;
    let mut out = String::with_capacity(4096);
    let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
        family(out, name, "gauge", help);
        let _ = writeln!(out, "{name} {v}");
    };
    let counter = |out: &mut String, name: &str, help: &str, v: u64| {
        family(out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    };
    gauge(
        &mut out,
        "unigate_connections",
        "MQTT connections open now.",
        m.connections.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "unigate_connections_accepted_total",
        "MQTT connections accepted since start.",
        Metrics::read(&m.connections_total),
    );
    gauge(
        &mut out,
        "unigate_sessions",
        "Sessions (all protocols, online and offline).",
        m.sessions.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "unigate_subscriptions",
        "Subscriptions in the index.",
        m.subscriptions.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "unigate_retained_messages",
        "Retained messages.",
        m.retained.load(Ordering::Relaxed),
    );
    family(
        &mut out,
        "unigate_messages_received_total",
        "counter",
        "Messages received from clients, by QoS.",
    );
    for (q, c) in m.messages_received.iter().enumerate() {
        let _ = writeln!(
            out,
            "unigate_messages_received_total{{qos=\"{q}\"}} {}",
            Metrics::read(c)
        );
    }
    family(
        &mut out,
        "unigate_messages_sent_total",
        "counter",
        "Messages sent to clients, by QoS.",
    );
    for (q, c) in m.messages_sent.iter().enumerate() {
        let _ = writeln!(out, "unigate_messages_sent_total{{qos=\"{q}\"}} {}", Metrics::read(c));
    }
    counter(
        &mut out,
        "unigate_bytes_received_total",
        "Bytes read from clients.",
        Metrics::read(&m.bytes_received),
    );
    counter(
        &mut out,
        "unigate_bytes_sent_total",
        "Bytes written to clients.",
        Metrics::read(&m.bytes_sent),
    );
    family(
        &mut out,
        "unigate_messages_dropped_total",
        "counter",
        "Messages dropped, by reason.",
    );
    for (reason, c) in [
        ("queue_full", &m.dropped_queue_full),
        ("offline_qos0", &m.dropped_offline_qos0),
        ("expired", &m.dropped_expired),
        ("too_large", &m.dropped_too_large),
        ("no_subscribers", &m.unrouted),
    ] {
        let _ = writeln!(
            out,
            "unigate_messages_dropped_total{{reason=\"{reason}\"}} {}",
            Metrics::read(c)
        );
    }
    counter(
        &mut out,
        "unigate_protocol_errors_total",
        "Connections closed for malformed input or protocol violations.",
        Metrics::read(&m.protocol_errors),
    );
    counter(
        &mut out,
        "unigate_wills_published_total",
        "Wills published.",
        Metrics::read(&m.wills_published),
    );
    counter(
        &mut out,
        "unigate_acl_denied_total",
        "Requests refused by the ACL.",
        Metrics::read(&m.acl_denied),
    );
    family(
        &mut out,
        "unigate_auth_results_total",
        "counter",
        "Authentication results, by authenticator and result.",
    );
    for (authenticator, result, n) in m.auth_counts() {
        let _ = writeln!(
            out,
            "unigate_auth_results_total{{authenticator=\"{}\",result=\"{result}\"}} {n}",
            escape(&authenticator)
        );
    }
    counter(
        &mut out,
        "unigate_coap_requests_total",
        "CoAP requests handled.",
        Metrics::read(&m.coap_requests),
    );
    gauge(
        &mut out,
        "unigate_coap_clients",
        "CoAP clients (sessions).",
        m.coap_clients.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "unigate_coap_peers",
        "CoAP remote addresses with state.",
        m.coap_peers.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "unigate_coap_observations",
        "CoAP observations.",
        m.coap_observations.load(Ordering::Relaxed),
    );
    family(
        &mut out,
        "unigate_coap_observations_cancelled_total",
        "counter",
        "CoAP observations ended, by why.",
    );
    for (i, why) in ["deregister", "reset", "timeout"].iter().enumerate() {
        let _ = writeln!(
            out,
            "unigate_coap_observations_cancelled_total{{reason=\"{why}\"}} {}",
            Metrics::read(&m.coap_observe_cancelled[i])
        );
    }
    gauge(
        &mut out,
        "unigate_lwm2m_registrations",
        "LwM2M devices registered.",
        m.lwm2m_registrations.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "unigate_lwm2m_observations",
        "LwM2M observations of devices.",
        m.lwm2m_observations.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "unigate_lwm2m_notifications_total",
        "LwM2M notifications received from devices.",
        Metrics::read(&m.lwm2m_notifications),
    );
    gauge(
        &mut out,
        "unigate_http_sse_streams",
        "Server-Sent Events streams open now.",
        m.http_sse_streams.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "unigate_uptime_seconds",
        "Seconds since start.",
        broker.uptime().as_secs() as i64,
    );
    render_connections_queues_latencies(&mut out, broker);
    if let Some(store) = broker.store() {
        render_store(&mut out, store);
    }
    out
}

/// Connections by listener and protocol, queue depths, and the latency histograms.
fn render_connections_queues_latencies(out: &mut String, broker: &Broker) {
    let m = &broker.metrics;
    let counts = m.listener_counts();
    family(
        out,
        "unigate_listener_connections",
        "gauge",
        "Connections open now, by listener and protocol (MQTT over TCP/TLS and WebSocket, SSE streams, \
         JSON WebSockets, CoAP peers).",
    );
    for (listener, protocol, open, _) in &counts {
        let _ = writeln!(
            out,
            "unigate_listener_connections{{listener=\"{}\",protocol=\"{protocol}\"}} {open}",
            escape(listener)
        );
    }
    family(
        out,
        "unigate_listener_connections_accepted_total",
        "counter",
        "Connections opened since start, by listener and protocol.",
    );
    for (listener, protocol, _, accepted) in &counts {
        let _ = writeln!(
            out,
            "unigate_listener_connections_accepted_total{{listener=\"{}\",protocol=\"{protocol}\"}} {accepted}",
            escape(listener)
        );
    }

    let q = broker.queue_depths();
    family(
        out,
        "unigate_queued_messages",
        "gauge",
        "Messages queued for sessions, by whether the session is online.",
    );
    let _ = writeln!(
        out,
        "unigate_queued_messages{{session=\"online\"}} {}",
        q.queued - q.queued_offline
    );
    let _ = writeln!(
        out,
        "unigate_queued_messages{{session=\"offline\"}} {}",
        q.queued_offline
    );
    family(
        out,
        "unigate_inflight_messages",
        "gauge",
        "QoS 1/2 messages sent to clients and not yet acknowledged.",
    );
    let _ = writeln!(out, "unigate_inflight_messages {}", q.inflight);
    // A histogram computed at scrape time: each session is one observation of its queue length.
    family(
        out,
        "unigate_session_queue_depth",
        "histogram",
        "Sessions by the number of messages queued for them (at scrape time).",
    );
    let mut cumulative = 0u64;
    for (i, n) in q.sessions_by_depth.iter().enumerate() {
        cumulative += n;
        match QueueDepths::BOUNDS.get(i) {
            Some(b) => {
                let _ = writeln!(out, "unigate_session_queue_depth_bucket{{le=\"{b}\"}} {cumulative}");
            }
            None => {
                let _ = writeln!(out, "unigate_session_queue_depth_bucket{{le=\"+Inf\"}} {cumulative}");
            }
        }
    }
    let _ = writeln!(out, "unigate_session_queue_depth_sum {}", q.queued);
    let _ = writeln!(out, "unigate_session_queue_depth_count {cumulative}");

    family(
        out,
        "unigate_routing_duration_seconds",
        "histogram",
        "Time to route a published message: subscription lookup and handing it to every matching session.",
    );
    histogram(
        out,
        "unigate_routing_duration_seconds",
        "",
        &m.routing_latency.snapshot(),
    );
    family(
        out,
        "unigate_http_request_duration_seconds",
        "histogram",
        "HTTP request latency until the response head, by route.",
    );
    for route in HttpRoute::ALL {
        let labels = format!("route=\"{}\"", route.as_str());
        histogram(
            out,
            "unigate_http_request_duration_seconds",
            &labels,
            &m.http_route(route).snapshot(),
        );
    }
    family(
        out,
        "unigate_auth_duration_seconds",
        "histogram",
        "Authentication latency, by the authenticator that decided.",
    );
    for (authenticator, snapshot) in m.auth_latencies() {
        let labels = format!("authenticator=\"{}\"", escape(&authenticator));
        histogram(out, "unigate_auth_duration_seconds", &labels, &snapshot);
    }
}

/// The `_bucket`, `_sum` and `_count` lines of one histogram; `labels` (may be empty) go before
/// `le`.
fn histogram(out: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (bound, n) in BOUNDS_MICROS.iter().zip(&h.cumulative) {
        let le = *bound as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count());
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum_micros as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{braces} {}", h.count());
}

/// The embedded store's figures (only with `[storage] kind = "embedded"`).
fn render_store(out: &mut String, store: &crate::storage::Persister) {
    use crate::storage::writer::COMMIT_BUCKETS;
    let s = &store.metrics;
    family(out, "unigate_store_size_bytes", "gauge", "Size of the store file.");
    let _ = writeln!(out, "unigate_store_size_bytes {}", store.file_bytes());
    family(
        out,
        "unigate_store_commits_total",
        "counter",
        "Store commits (one fsync each).",
    );
    let _ = writeln!(out, "unigate_store_commits_total {}", s.commits.load(Ordering::Relaxed));
    family(
        out,
        "unigate_store_operations_total",
        "counter",
        "Operations committed to the store.",
    );
    let _ = writeln!(out, "unigate_store_operations_total {}", s.ops.load(Ordering::Relaxed));
    family(
        out,
        "unigate_store_failures_total",
        "counter",
        "Store commits that failed.",
    );
    let _ = writeln!(
        out,
        "unigate_store_failures_total {}",
        s.failures.load(Ordering::Relaxed)
    );
    family(
        out,
        "unigate_store_commit_seconds",
        "histogram",
        "Time to apply and commit one batch (group commit).",
    );
    let mut cumulative = 0;
    for (i, le) in COMMIT_BUCKETS.iter().enumerate() {
        cumulative += s.commit_buckets[i].load(Ordering::Relaxed);
        let _ = writeln!(out, "unigate_store_commit_seconds_bucket{{le=\"{le}\"}} {cumulative}");
    }
    cumulative += s.commit_buckets[COMMIT_BUCKETS.len()].load(Ordering::Relaxed);
    let _ = writeln!(out, "unigate_store_commit_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(
        out,
        "unigate_store_commit_seconds_sum {}",
        s.commit_micros.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(out, "unigate_store_commit_seconds_count {cumulative}");
}
