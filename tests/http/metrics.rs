//! `/metrics` after real traffic: MQTT over TCP (anonymous and with a password) and over
//! WebSocket, an SSE stream, HTTP publishes and an offline persistent session. The scrape is
//! checked against the Prometheus text format (0.0.4) by a strict parser, then for the series
//! the operators need: connections by listener and protocol, messages by QoS, bytes, drops,
//! auth results and latencies by authenticator, queue depths, routing and HTTP latencies.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;
use unigate_auth::password::PasswordStore;
use unigate_auth::Secret;

use crate::util::*;

/// One sample: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: samples, and each family's type.
#[derive(Debug, Default)]
struct Exposition {
    samples: Vec<Sample>,
    types: HashMap<String, String>,
}

impl Exposition {
    /// Parses the text format strictly: HELP and TYPE at most once per family and before its
    /// samples, known types, well-formed names, labels and values, sample names that belong to
    /// their family (`_bucket`, `_sum`, `_count` for histograms), and for each histogram series
    /// rising `le` bounds ending in `+Inf`, cumulative counts, and `+Inf` equal to `_count`.
    fn parse(text: &str) -> Exposition {
        let mut e = Exposition::default();
        let mut helped = std::collections::HashSet::new();
        let mut seen_samples_of = std::collections::HashSet::new();
        assert!(text.ends_with('\n'), "the exposition ends with a line feed");
        for (n, line) in text.lines().enumerate() {
            let at = format!("line {}: {line:?}", n + 1);
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("{at}: HELP without text"));
                assert!(valid_name(name), "{at}");
                assert!(!help.is_empty(), "{at}");
                assert!(helped.insert(name.to_string()), "{at}: second HELP");
                assert!(!seen_samples_of.contains(name), "{at}: HELP after samples");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("{at}: TYPE without type"));
                assert!(valid_name(name), "{at}");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{at}: unknown type"
                );
                assert!(!seen_samples_of.contains(name), "{at}: TYPE after samples");
                assert!(
                    e.types.insert(name.to_string(), kind.to_string()).is_none(),
                    "{at}: second TYPE"
                );
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "{at}: stray line");
            let s = parse_sample(line).unwrap_or_else(|why| panic!("{at}: {why}"));
            let family = family_of(&s.name, &e.types).unwrap_or_else(|| panic!("{at}: sample without a TYPE"));
            seen_samples_of.insert(family.clone());
            match e.types[&family].as_str() {
                "counter" => assert!(s.value >= 0.0, "{at}: negative counter"),
                "histogram" => {
                    assert!(s.value >= 0.0, "{at}");
                    if s.name.ends_with("_bucket") {
                        assert!(s.labels.contains_key("le"), "{at}: bucket without le");
                    }
                }
                _ => {}
            }
            e.samples.push(s);
        }
        e.check_histograms();
        e
    }

    fn check_histograms(&self) {
        for (family, kind) in &self.types {
            if kind != "histogram" {
                continue;
            }
            // Series: the labels other than `le`.
            let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            let mut counts: BTreeMap<String, f64> = BTreeMap::new();
            for s in &self.samples {
                let mut key_labels = s.labels.clone();
                let le = key_labels.remove("le");
                let key = format!("{key_labels:?}");
                if s.name == format!("{family}_bucket") {
                    let le = le.expect("le");
                    let bound = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().unwrap_or_else(|_| panic!("{family}: bad le {le:?}"))
                    };
                    series.entry(key).or_default().push((bound, s.value));
                } else if s.name == format!("{family}_count") {
                    counts.insert(key, s.value);
                }
            }
            for (key, buckets) in &series {
                assert!(
                    buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                    "{family}{key}: le rises and counts are cumulative: {buckets:?}"
                );
                let last = buckets.last().expect("a bucket");
                assert!(last.0.is_infinite(), "{family}{key}: ends with +Inf");
                assert_eq!(Some(&last.1), counts.get(key), "{family}{key}: +Inf == _count");
            }
        }
    }

    /// The value of `name` with exactly these labels (`le` not included unless given).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    fn must(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in the scrape"))
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The family a sample belongs to: its own name, or without a histogram/summary suffix.
fn family_of(name: &str, types: &HashMap<String, String>) -> Option<String> {
    if let Some(kind) = types.get(name) {
        return (kind != "histogram").then(|| name.to_string());
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if matches!(types.get(base).map(String::as_str), Some("histogram" | "summary")) {
                return Some(base.to_string());
            }
        }
    }
    None
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let bytes = line.as_bytes();
    let mut i = name_end;
    if bytes[i] == b'{' {
        i += 1;
        loop {
            if bytes.get(i) == Some(&b'}') {
                i += 1;
                break;
            }
            let eq = line[i..].find('=').ok_or("label without =")? + i;
            let lname = &line[i..eq];
            if !valid_name(lname) || lname.contains(':') {
                return Err(format!("bad label name {lname:?}"));
            }
            if bytes.get(eq + 1) != Some(&b'"') {
                return Err("label value not quoted".into());
            }
            let mut value = String::new();
            i = eq + 2;
            loop {
                match bytes.get(i) {
                    None => return Err("unterminated label value".into()),
                    Some(b'\\') => {
                        match bytes.get(i + 1) {
                            Some(b'\\') => value.push('\\'),
                            Some(b'"') => value.push('"'),
                            Some(b'n') => value.push('\n'),
                            _ => return Err("bad escape in a label value".into()),
                        }
                        i += 2;
                    }
                    Some(b'"') => break,
                    Some(_) => {
                        let c = line[i..].chars().next().ok_or("bad UTF-8")?;
                        value.push(c);
                        i += c.len_utf8();
                    }
                }
            }
            if labels.insert(lname.to_string(), value).is_some() {
                return Err(format!("label {lname} twice"));
            }
            i += 1; // the closing quote
            match bytes.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {}
                _ => return Err("expected , or } after a label".into()),
            }
        }
    }
    let rest = line[i..].strip_prefix(' ').ok_or("no space before the value")?;
    let mut parts = rest.split(' ');
    let value = parts.next().ok_or("no value")?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
    };
    if let Some(ts) = parts.next() {
        ts.parse::<i64>().map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if parts.next().is_some() {
        return Err("trailing text".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[test]
fn the_parser_refuses_what_prometheus_refuses() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\"} 3\n";
    let e = Exposition::parse(ok);
    assert_eq!(e.must("a_total", &[("x", "1"), ("y", "q\"")]), 3.0);
    for bad in [
        "a_total 1\n",                                                                    // no TYPE
        "# TYPE a_total counter\na_total{x=1} 1\n",                                       // unquoted label
        "# TYPE a_total counter\na_total -1\n",                                           // negative counter
        "# TYPE a_total counter\na_total 1\n# TYPE a_total counter\n",                    // TYPE twice
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n", // not cumulative
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n", // +Inf != count
    ] {
        assert!(
            std::panic::catch_unwind(|| Exposition::parse(bad)).is_err(),
            "accepted {bad:?}"
        );
    }
}

/// A password file with `alice` (password `secret`), in a directory removed when the returned
/// guard drops.
fn users() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new().prefix("unigate-metrics-").tempdir().unwrap();
    let file = dir.path().join("passwd.toml");
    let mut store = PasswordStore::new(&file);
    store.add("alice", &Secret::new("secret")).unwrap();
    store.save().unwrap();
    (dir, file)
}

/// An MQTT 5 client that only connects (and tells whether CONNACK said yes).
async fn connect(s: &TestServer, id: &str, credentials: Option<(&str, &str)>, persistent: bool) -> (AsyncClient, bool) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", s.port());
    if let Some((u, p)) = credentials {
        opts.set_credentials(u, p);
    }
    if persistent {
        opts.set_clean_start(false);
        opts.set_session_expiry_interval(Some(300));
    }
    let (client, mut ev) = AsyncClient::new(opts, 10);
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => {
                    let _ = tx.send(a.code == rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = tx.send(true);
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = tx.send(false);
                    break;
                }
            }
        }
    });
    let ok = within("CONNACK", rx.recv()).await.unwrap_or(false);
    if ok && persistent {
        client.subscribe("m/#", QoS::AtLeastOnce).await.unwrap();
        assert!(within("SUBACK", rx.recv()).await.unwrap_or(false));
    }
    (client, ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_real_traffic_are_well_formed_and_plausible() {
    let (_users_dir, passwd) = users();
    let s = server(
        &format!(
            "[auth]\naudit = false\ndefault_chain = \"all\"\n\
             [auth.chains.all]\nauthenticators = [\"users\"]\nno_match = \"allow\"\n\
             [auth.authenticators.users]\nkind = \"password\"\nfile = {passwd:?}\n"
        ),
        "",
    );
    // An anonymous subscriber, a password user, a wrong password.
    let mut sub = Mqtt::connect(&s, "m-sub").await;
    sub.subscribe("m/#").await;
    let (_alice, ok) = connect(&s, "m-alice", Some(("alice", "secret")), false).await;
    assert!(ok, "alice gets in");
    let (_eve, ok) = connect(&s, "m-eve", Some(("alice", "wrong")), false).await;
    assert!(!ok, "a wrong password is refused");
    // An offline persistent session that queues what is published next.
    let (away, ok) = connect(&s, "m-away", None, true).await;
    assert!(ok);
    away.disconnect().await.unwrap();
    within("the persistent session to go offline", async {
        while s.broker().session("m-away").is_some_and(|x| x.is_online()) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    // MQTT over WebSocket and an SSE stream on the HTTP listener (which, with a password
    // authenticator in its chain, wants credentials).
    let ws = crate::ws::ws_client(&format!("ws://127.0.0.1:{}/mqtt", s.listener("http").port()), "m-ws").await;
    let mut stream = Proc::spawn(
        "curl",
        &[
            "-sS".to_string(),
            "-N".into(),
            "--max-time".into(),
            "20".into(),
            "-u".into(),
            "alice:secret".into(),
            "-H".into(),
            "Accept: text/event-stream".into(),
            url(&s, "/topics/m/%23"),
        ],
    );
    within("the SSE stream", async {
        while s.broker().metrics.http_sse_streams.load(Ordering::Relaxed) < 1 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    // Five QoS 1 publishes over HTTP; each reaches the subscriber, the stream and the queue.
    for i in 0..5 {
        let r = curl(
            &[
                "-u",
                "alice:secret",
                "-H",
                "content-type: application/json",
                "-d",
                &format!(r#"{{"topic":"m/{i}","payload":"v{i}","qos":1}}"#),
            ],
            &url(&s, "/api/v1/publish"),
        );
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json()["routed"], 3, "subscriber, SSE stream, offline session: {r:?}");
    }
    for _ in 0..5 {
        let _ = sub.recv().await;
    }
    stream.wait_for_line("\"topic\":\"m/4\"");

    let r = curl(&[], &url(&s, "/metrics"));
    assert_eq!(r.status, 200);
    let m = Exposition::parse(&r.body);
    let l = |listener: &'static str, protocol: &'static str| [("listener", listener), ("protocol", protocol)];
    assert_eq!(
        m.must("unigate_listener_connections", &l("mqtt", "mqtt")),
        2.0,
        "sub and alice"
    );
    assert!(m.must("unigate_listener_connections_accepted_total", &l("mqtt", "mqtt")) >= 4.0);
    assert_eq!(m.must("unigate_listener_connections", &l("http", "mqtt-ws")), 1.0);
    assert_eq!(m.must("unigate_listener_connections", &l("http", "http-sse")), 1.0);
    // HTTP connections: this scrape's, the SSE stream's and the WebSocket's at least (curl
    // runs before it closed theirs may not have been noticed yet).
    assert!(m.must("unigate_listener_connections", &l("http", "http")) >= 3.0);
    assert!(m.must("unigate_listener_connections_accepted_total", &l("http", "http")) >= 8.0);
    assert!(m.must("unigate_messages_received_total", &[("qos", "1")]) >= 5.0);
    assert!(
        m.must("unigate_messages_sent_total", &[("qos", "1")]) >= 10.0,
        "subscriber and stream"
    );
    assert!(m.must("unigate_bytes_received_total", &[]) > 0.0);
    assert!(m.must("unigate_bytes_sent_total", &[]) > 0.0);
    assert!(m
        .value("unigate_messages_dropped_total", &[("reason", "queue_full")])
        .is_some());
    assert!(
        m.must(
            "unigate_auth_results_total",
            &[("authenticator", "users"), ("result", "allow")]
        ) >= 1.0
    );
    assert!(
        m.must(
            "unigate_auth_results_total",
            &[("authenticator", "users"), ("result", "deny")]
        ) >= 1.0
    );
    let users_auth = m.must("unigate_auth_duration_seconds_count", &[("authenticator", "users")]);
    assert!(users_auth >= 2.0, "alice and eve: {users_auth}");
    let users_auth_sum = m.must("unigate_auth_duration_seconds_sum", &[("authenticator", "users")]);
    assert!(
        users_auth_sum > 0.0 && users_auth_sum < 10.0 * users_auth,
        "{users_auth_sum}"
    );
    // Queues: the offline session holds the five messages.
    assert_eq!(m.must("unigate_queued_messages", &[("session", "offline")]), 5.0);
    let sessions = s.broker().session_count() as f64;
    assert_eq!(m.must("unigate_session_queue_depth_count", &[]), sessions);
    assert_eq!(
        m.must("unigate_session_queue_depth_bucket", &[("le", "1")])
            - m.must("unigate_session_queue_depth_bucket", &[("le", "0")]),
        0.0,
        "no session has exactly one queued"
    );
    assert_eq!(
        m.must("unigate_session_queue_depth_bucket", &[("le", "10")]),
        sessions,
        "the offline one has 5"
    );
    assert!(m.value("unigate_inflight_messages", &[]).is_some());
    // Latencies.
    let routed = m.must("unigate_routing_duration_seconds_count", &[]);
    assert!(routed >= 5.0, "{routed}");
    let routing_sum = m.must("unigate_routing_duration_seconds_sum", &[]);
    assert!(
        routing_sum > 0.0 && routing_sum < routed,
        "under a second each: {routing_sum}"
    );
    assert_eq!(
        m.must("unigate_http_request_duration_seconds_count", &[("route", "publish")]),
        5.0
    );
    assert!(
        m.must(
            "unigate_http_request_duration_seconds_count",
            &[("route", "topic_read")]
        ) >= 1.0
    );
    assert!(m.must("unigate_http_request_duration_seconds_count", &[("route", "mqtt_ws")]) >= 1.0);
    drop(ws);
    drop(stream);
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_are_counted_while_open() {
    let s = server("", "");
    for _ in 0..3 {
        assert_eq!(curl(&[], &url(&s, "/health")).status, 200);
    }
    // Once the server has noticed the three closes, only the scrape's own connection is open.
    within("closed HTTP connections counted down", async {
        loop {
            let m = Exposition::parse(&curl(&[], &url(&s, "/metrics")).body);
            let labels = [("listener", "http"), ("protocol", "http")];
            if m.must("unigate_listener_connections", &labels) == 1.0 {
                assert!(m.must("unigate_listener_connections_accepted_total", &labels) >= 4.0);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    s.stop();
}
