//! Helpers: a server with MQTT and HTTP listeners, curl runs, an MQTT 5 subscriber.

use std::process::Command;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;

pub use crate::common::proc::Proc;
pub use crate::common::{TestServer, TIMEOUT};

/// How long a test listens to prove that something does NOT arrive.
pub const QUIET: Duration = Duration::from_millis(300);

/// A server with `mqtt` and `http` listeners; `top` goes first, `http_keys` into the HTTP
/// listener's table.
pub fn server(top: &str, http_keys: &str) -> TestServer {
    TestServer::start_text(&format!(
        "workers = 2\nsys_interval = \"0s\"\n{top}\n\
         [[listeners]]\nname = \"mqtt\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"http\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n{http_keys}\n"
    ))
}

/// `http://127.0.0.1:{port}{path}`.
pub fn url(s: &TestServer, path: &str) -> String {
    format!("http://127.0.0.1:{}{}", s.listener("http").port(), path)
}

/// A curl run's outcome.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub version: String,
    pub headers: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Runs curl with `args` and the URL; returns status, HTTP version, headers and body.
pub fn curl(args: &[&str], url: &str) -> Reply {
    crate::common::proc::require("curl");
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "10"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default().to_string();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    Reply {
        status,
        version,
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

/// curl arguments of a WebSocket upgrade request (RFC 6455 §4.1), without a subprotocol.
pub const WS_UPGRADE: [&str; 8] = [
    "-H",
    "Connection: Upgrade",
    "-H",
    "Upgrade: websocket",
    "-H",
    "Sec-WebSocket-Version: 13",
    "-H",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
];

/// Runs curl and returns the status and the response head, whatever curl's exit status (for
/// requests that keep the connection open, like a WebSocket upgrade).
pub fn curl_status(args: &[&str], url: &str) -> (u16, String) {
    crate::common::proc::require("curl");
    let out = Command::new("curl")
        .args(["-sS", "-i"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout)
        .replace("\r\n", "\n")
        .to_ascii_lowercase();
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Runs `f` under [`TIMEOUT`].
pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {TIMEOUT:?} waiting for {what}"),
    }
}

/// An MQTT 5 client whose PUBLISHes arrive on a channel.
pub struct Mqtt {
    pub client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Publish>,
    suback: mpsc::UnboundedReceiver<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Mqtt {
    pub async fn connect(s: &TestServer, id: &str) -> Mqtt {
        let mut opts = MqttOptions::new(id, "127.0.0.1", s.port());
        opts.set_max_packet_size(Some(1 << 20));
        let (client, mut ev) = AsyncClient::new(opts, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        let (stx, suback) = mpsc::unbounded_channel();
        let (ctx, mut connected) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(p);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = stx.send(());
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = ctx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        within("CONNACK", connected.recv()).await.expect("connected");
        Mqtt {
            client,
            rx,
            suback,
            task,
        }
    }

    pub async fn subscribe(&mut self, filter: &str) {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        within("SUBACK", self.suback.recv()).await.expect("suback");
    }

    pub async fn publish(&self, topic: &str, retain: bool, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec())
            .await
            .unwrap();
    }

    pub async fn recv(&mut self) -> Publish {
        within("a PUBLISH", self.rx.recv()).await.expect("client running")
    }

    pub async fn assert_silent(&mut self) {
        if let Ok(Some(p)) = tokio::time::timeout(QUIET, self.rx.recv()).await {
            panic!("unexpected PUBLISH on {:?}", p.topic);
        }
    }
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        self.task.abort();
    }
}
