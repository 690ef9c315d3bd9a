//! Other implementations against ours: Debian's mosquitto-clients (`mosquitto_pub`,
//! `mosquitto_sub`) and Eclipse paho-mqtt 2.x for Python (the scripts in `tests/paho/`), run as
//! child processes against the test server. A missing tool fails the test with a message saying
//! what to install (`scripts/test.sh` installs both); these tests never skip.
//!
//! Waits are for output lines or process exit, each under [`TIMEOUT`]; a child is killed when
//! its test fails.

use unigate_mqtt::QoS;

use crate::common::proc::Proc;
use crate::common::TestServer;
use crate::util::Raw;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Starts `mosquitto_sub` with `extra` arguments, printing messages as `MSG|fields`, and waits
/// for its SUBACK.
fn mosquitto_sub(port: u16, version: &str, extra: &[&str], format: &str) -> Proc {
    let mut a = args(&["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version, "-d"]);
    a.extend(args(extra));
    a.extend(args(&["-F", &format!("MSG|{format}")]));
    let mut p = Proc::spawn_line_buffered("mosquitto_sub", &a);
    p.wait_for_line("Subscribed (mid:");
    p
}

/// Runs `mosquitto_pub` to completion; it must succeed.
fn mosquitto_pub(port: u16, version: &str, extra: &[&str]) {
    let mut a = args(&["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version]);
    a.extend(args(extra));
    Proc::spawn("mosquitto_pub", &a).succeed();
}

/// Runs `mosquitto_pub -l`: one connection that publishes each of `lines` as a message, in
/// order, then disconnects; it must succeed.
fn mosquitto_pub_lines(port: u16, version: &str, extra: &[&str], lines: &[&str]) {
    let mut a = args(&["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version, "-l"]);
    a.extend(args(extra));
    let mut p = Proc::spawn("mosquitto_pub", &a);
    for line in lines {
        p.send_line(line);
    }
    p.close_stdin();
    p.succeed();
}

/// The `MSG|…` lines, without the prefix.
fn messages(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("MSG|"))
        .map(str::to_string)
        .collect()
}

#[test]
fn mosquitto_clients_round_trip_at_each_qos_and_version() {
    let server = TestServer::start();
    let port = server.port();
    for sub_v in ["mqttv311", "mqttv5"] {
        for pub_v in ["mqttv311", "mqttv5"] {
            for qos in ["0", "1", "2"] {
                let topic = format!("mosq/{sub_v}/{pub_v}/{qos}");
                let mut sub = mosquitto_sub(port, sub_v, &["-q", qos, "-t", &topic, "-C", "3"], "%t|%q|%r|%p");
                // One publisher connection: MQTT orders messages per connection (§4.6). Three
                // mosquitto_pub runs would be three connections, whose QoS 0 messages the
                // server's workers may route in either order (nothing acknowledges them).
                mosquitto_pub_lines(port, pub_v, &["-q", qos, "-t", &topic], &["m0", "m1", "m2"]);
                let got = messages(&sub.succeed());
                let want: Vec<String> = (0..3).map(|i| format!("{topic}|{qos}|0|m{i}")).collect();
                assert_eq!(got, want, "sub {sub_v}, pub {pub_v}, QoS {qos}");
            }
        }
    }
    server.stop();
}

#[test]
fn mosquitto_retained_message_set_and_cleared() {
    let server = TestServer::start();
    let port = server.port();
    for v in ["mqttv311", "mqttv5"] {
        let topic = format!("mosq/retained/{v}");
        mosquitto_pub(port, v, &["-r", "-q", "1", "-t", &topic, "-m", "kept"]);
        // A later subscriber gets it with the retain flag.
        let mut sub = mosquitto_sub(port, v, &["-q", "1", "-t", &topic, "-C", "1"], "%r|%p");
        assert_eq!(messages(&sub.succeed()), vec!["1|kept".to_string()], "{v}");
        // An empty retained message clears it: the next subscriber's first message is live.
        mosquitto_pub(port, v, &["-r", "-q", "1", "-t", &topic, "-n"]);
        let mut sub = mosquitto_sub(port, v, &["-q", "1", "-t", &topic, "-C", "1"], "%r|%p");
        mosquitto_pub(port, v, &["-q", "1", "-t", &topic, "-m", "live"]);
        assert_eq!(messages(&sub.succeed()), vec!["0|live".to_string()], "{v}");
    }
    server.stop();
}

#[test]
fn mosquitto_v5_user_properties_pass_through() {
    let server = TestServer::start();
    let port = server.port();
    let mut sub = mosquitto_sub(port, "mqttv5", &["-q", "1", "-t", "mosq/props", "-C", "1"], "%P|%p");
    mosquitto_pub(
        port,
        "mqttv5",
        &[
            "-q",
            "1",
            "-t",
            "mosq/props",
            "-m",
            "with-props",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
            "-D",
            "publish",
            "user-property",
            "k2",
            "v2",
            "-D",
            "publish",
            "user-property",
            "k",
            "again",
        ],
    );
    // Order and repeated names are kept (MQTT 5 §3.3.2.3.7).
    assert_eq!(
        messages(&sub.succeed()),
        vec!["k:v k2:v2 k:again|with-props".to_string()]
    );
    server.stop();
}

#[test]
fn mosquitto_will_is_published_when_the_client_dies() {
    let server = TestServer::start();
    let port = server.port();
    for v in ["mqttv311", "mqttv5"] {
        let will_topic = format!("mosq/will/{v}");
        let mut sub = mosquitto_sub(port, v, &["-q", "1", "-t", &will_topic, "-C", "2"], "%t|%q|%p");
        let with_will = |id: &str, payload: &str| {
            let a = args(&[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-V",
                v,
                "-d",
                "-i",
                id,
                "-l",
                "-t",
                "mosq/ignored",
                "--will-topic",
                &will_topic,
                "--will-payload",
                payload,
                "--will-qos",
                "1",
            ]);
            let mut p = Proc::spawn_line_buffered("mosquitto_pub", &a);
            p.wait_for_line("received CONNACK");
            p
        };
        let mut dies = with_will(&format!("dies-{v}"), "died");
        let mut leaves = with_will(&format!("leaves-{v}"), "left");
        // A normal DISCONNECT discards the will (MQTT 5 §3.1.2.5).
        leaves.close_stdin();
        leaves.succeed();
        // Killed: no DISCONNECT, so the will goes out.
        dies.kill();
        sub.wait_for_line("MSG|");
        mosquitto_pub(port, v, &["-q", "1", "-t", &will_topic, "-m", "marker"]);
        let got = messages(&sub.succeed());
        assert_eq!(
            got,
            vec![format!("{will_topic}|1|died"), format!("{will_topic}|1|marker")],
            "{v}"
        );
    }
    server.stop();
}

#[test]
fn mosquitto_sub_receives_from_a_raw_v5_publisher_with_alias() {
    // Our own raw client publishes through a topic alias; an independent subscriber sees the
    // full topic.
    let server = TestServer::start();
    let mut sub = mosquitto_sub(server.port(), "mqttv5", &["-t", "mosq/alias", "-C", "2"], "%t|%p");
    let mut raw = Raw::v5(server.addr, "raw-alias");
    let mut p = crate::util::publish("mosq/alias", &b"a"[..], QoS::AtMostOnce, 0);
    p.properties.topic_alias = Some(1);
    raw.send(&unigate_mqtt::Packet::Publish(p.clone()));
    p.topic.clear();
    p.payload = bytes::Bytes::from_static(b"b");
    raw.send(&unigate_mqtt::Packet::Publish(p));
    assert_eq!(
        messages(&sub.succeed()),
        vec!["mosq/alias|a".to_string(), "mosq/alias|b".to_string()]
    );
    raw.disconnect();
    server.stop();
}

// ---------------------------------------------------------------------- paho

/// Runs `tests/paho/{script}` against the server; it must exit 0 and print an `"ok":true`
/// JSON line, which is returned.
fn paho(script: &str, port: u16, extra: &[&str]) -> String {
    let path = format!("{}/tests/paho/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut a = vec![path, "--port".into(), port.to_string()];
    a.extend(args(extra));
    let mut p = Proc::spawn("python3", &a);
    let lines = p.succeed();
    let json = lines
        .iter()
        .rev()
        .find(|l| l.starts_with('{'))
        .cloned()
        .unwrap_or_else(|| panic!("no JSON result line: {}", p.report()));
    assert_json(&json, &[("ok", "true")]);
    json
}

/// Checks `"key":value` pairs of the compact, flat JSON the scripts print.
fn assert_json(json: &str, pairs: &[(&str, &str)]) {
    for (key, value) in pairs {
        let needle = format!("\"{key}\":{value}");
        let found = json.match_indices(&needle).any(|(i, _)| {
            let before = json[..i].ends_with(['{', ',']);
            let after = json[i + needle.len()..].starts_with([',', '}']);
            before && after
        });
        assert!(found, "{needle} not in {json}");
    }
}

#[test]
fn paho_round_trip_qos1_and_qos2_both_versions() {
    let server = TestServer::start();
    for version in ["3", "5"] {
        for qos in ["1", "2"] {
            let json = paho(
                "roundtrip.py",
                server.port(),
                &["--version", version, "--qos", qos, "--count", "20"],
            );
            assert_json(&json, &[("received", "20"), ("qos", qos), ("version", version)]);
        }
    }
    server.stop();
}

#[test]
fn paho_persistent_session_gets_offline_messages() {
    let server = TestServer::start();
    for version in ["3", "5"] {
        let json = paho("persistent.py", server.port(), &["--version", version]);
        assert_json(
            &json,
            &[
                ("session_present_first", "false"),
                ("session_present", "true"),
                (
                    "received",
                    r#"["offline-0","offline-1","offline-2","offline-3","offline-4"]"#,
                ),
            ],
        );
    }
    server.stop();
}

#[test]
fn paho_shared_subscription_splits_messages() {
    let server = TestServer::start();
    for version in ["3", "5"] {
        let json = paho("shared.py", server.port(), &["--version", version, "--count", "20"]);
        // Both members got some (the script checks) and no message was lost or doubled.
        assert_json(&json, &[("total", "20")]);
    }
    server.stop();
}

#[test]
fn paho_v5_request_response() {
    let server = TestServer::start();
    let json = paho("reqresp.py", server.port(), &[]);
    assert_json(&json, &[("responses", "5")]);
    server.stop();
}

#[test]
fn paho_script_failure_is_detected() {
    // The harness itself can fail: a script that cannot reach a server exits non-zero.
    let server = TestServer::start();
    let port = server.port();
    server.stop();
    let path = format!("{}/tests/paho/roundtrip.py", env!("CARGO_MANIFEST_DIR"));
    let mut p = Proc::spawn("python3", &[path, "--port".into(), port.to_string()]);
    let (status, _) = p.finish();
    assert!(!status.success(), "script succeeded without a server");
}
