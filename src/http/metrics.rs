//! `GET /metrics`: the broker's counters in the Prometheus text exposition format (0.0.4).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};

use super::HttpShared;
use crate::broker::{Broker, Metrics};

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
    counter(
        &mut out,
        "unigate_queue_dropped_total",
        "Messages dropped because a session queue was full.",
        Metrics::read(&m.dropped_queue_full),
    );
    if let Some(store) = broker.store() {
        render_store(&mut out, store);
    }
    out
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
