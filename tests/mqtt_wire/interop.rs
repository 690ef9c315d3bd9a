//! Other implementations against ours: Debian's mosquitto-clients (`mosquitto_pub`,
//! `mosquitto_sub`) and Eclipse paho-mqtt 2.x for Python (the scripts in `tests/paho/`), run as
//! child processes against the test server. A missing tool fails the test with a message saying
//! what to install (`scripts/test.sh` installs both); these tests never skip.
//!
//! Waits are for output lines or process exit, each under [`TIMEOUT`]; a child is killed when
//! its test fails.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Instant;

use unigate_mqtt::QoS;

use crate::common::TestServer;
use crate::util::{Raw, TIMEOUT};

/// A child process whose stdout is read line by line on a thread.
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<thread::JoinHandle<String>>,
    seen: Vec<String>,
}

impl Proc {
    /// Starts `program` with `args`; stdin stays open (a pipe) until [`Proc::close_stdin`].
    fn spawn(program: &str, args: &[String]) -> Proc {
        Self::spawn_with(program, args, false)
    }

    /// [`Proc::spawn`] with stdout line-buffered through `stdbuf -oL` (coreutils): mosquitto's
    /// clients do not flush their `-d` lines when stdout is a pipe, and the tests wait for them.
    fn spawn_line_buffered(program: &str, args: &[String]) -> Proc {
        Self::spawn_with(program, args, true)
    }

    fn spawn_with(program: &str, args: &[String], line_buffered: bool) -> Proc {
        require(program);
        let mut command = if line_buffered {
            require("stdbuf");
            let mut c = Command::new("stdbuf");
            c.arg("-oL").arg(program);
            c
        } else {
            Command::new(program)
        };
        let mut child = command
            .args(args)
            // Keep tests/paho free of __pycache__.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `{program}`: {e}. The interoperability tests need mosquitto-clients \
                     (apt-get install mosquitto-clients) and paho-mqtt 2.x \
                     (python3 -m pip install 'paho-mqtt>=2,<3'); scripts/test.sh installs both"
                )
            });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().expect("stderr");
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Proc {
            name: format!("{program} {}", args.join(" ")),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: Some(stderr),
            seen: Vec::new(),
        }
    }

    fn report(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let err = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        format!("`{}`\nstdout:\n{}\nstderr:\n{err}", self.name, self.seen.join("\n"))
    }

    /// Reads stdout until a line contains `needle`.
    fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no line with {needle:?} in time from {}", self.report())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("exited before a line with {needle:?}: {}", self.report())
                }
            }
        }
    }

    /// Closes the child's stdin (mosquitto_pub -l then disconnects and exits).
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the child to exit (its stdout to close); returns the status and every stdout
    /// line. Kills it and fails after [`TIMEOUT`].
    fn finish(&mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("did not exit in time: {}", self.report()),
            }
        }
        let status = self.child.wait().expect("wait for child");
        (status, self.seen.clone())
    }

    /// [`Proc::finish`], failing unless the exit status is 0.
    fn succeed(&mut self) -> Vec<String> {
        let (status, lines) = self.finish();
        if !status.success() {
            panic!("exited with {status}: {}", self.report());
        }
        lines
    }

    /// Kills the child at once (SIGKILL: no DISCONNECT is sent).
    fn kill(&mut self) {
        self.child.kill().expect("kill child");
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails the test, saying what to install, when `program` is not on the PATH.
fn require(program: &str) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| dir.join(program).is_file());
    assert!(
        found,
        "`{program}` is not installed. The interoperability tests need mosquitto-clients \
         (apt-get install mosquitto-clients), paho-mqtt 2.x (python3 -m pip install \
         'paho-mqtt>=2,<3') and coreutils' stdbuf; scripts/test.sh installs them"
    );
}

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
                for i in 0..3 {
                    let body = format!("m{i}");
                    mosquitto_pub(port, pub_v, &["-q", qos, "-t", &topic, "-m", &body]);
                }
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
