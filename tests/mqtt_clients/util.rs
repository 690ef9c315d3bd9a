//! Helpers for the rumqttc-driven tests: a client wrapper per protocol version whose event loop
//! runs in its own task, waits bounded by [`TIMEOUT`], and a server start with a full config.
//!
//! Each wrapper pumps its `EventLoop` into a channel and stops at the first error (rumqttc
//! would otherwise reconnect on the next poll), so a closed connection stays closed and is
//! observable. Dropping a wrapper aborts the pump, which drops the socket without DISCONNECT:
//! that is how the tests close a connection abnormally.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::common::{TestServer, TIMEOUT};

/// How long a test listens to prove that something does NOT arrive.
pub const QUIET: Duration = Duration::from_millis(300);

/// Runs `f` under [`TIMEOUT`]; panics naming `what` if it does not finish.
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {TIMEOUT:?} waiting for {what}"),
    }
}

/// Polls `cond` every 20 ms until it holds (bounded by [`TIMEOUT`]).
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// A server whose whole configuration is given: `top` goes before the listener table (e.g.
/// `sys_interval = "1s"`), `sections` after it (e.g. an `[mqtt]` table).
pub fn start_server(top: &str, sections: &str) -> TestServer {
    let text = format!(
        "workers = 2\n{top}\n[[listeners]]\nname = \"mqtt\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n{sections}\n"
    );
    let config = unigate::config::Config::parse(&text, "test", Vec::new()).expect("test config");
    let server = unigate::server::start(config, [127, 0, 0, 1].into(), unigate::server::StartOptions::default())
        .expect("server starts");
    let addr = server.addr("mqtt").expect("mqtt listener");
    TestServer {
        server: Some(server),
        addr,
    }
}

/// A payload carrying a sequence number.
pub fn seq_payload(i: usize) -> Vec<u8> {
    i.to_string().into_bytes()
}

/// The sequence number in a payload made by [`seq_payload`].
pub fn seq_of(payload: &[u8]) -> usize {
    std::str::from_utf8(payload)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("payload {payload:?} is not a sequence number"))
}

/// Asserts that `seqs` is exactly 0..n in order.
pub fn assert_in_order(who: &str, seqs: &[usize], n: usize) {
    assert_eq!(seqs.len(), n, "{who}: received {} messages, expected {n}", seqs.len());
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(
            *s, i,
            "{who}: message {i} has sequence {s} (loss, duplicate or reordering)"
        );
    }
}

/// The parts of a client wrapper both protocol versions share; expanded inside [`v4`] and
/// [`v5`], where `AsyncClient`, `Event`, `Packet`, `QoS` etc. name that version's types.
macro_rules! client_wrapper {
    () => {
        /// A connected client whose event loop runs in its own task.
        pub struct Client {
            pub client: AsyncClient,
            pub connack: ConnAck,
            events: mpsc::UnboundedReceiver<Result<Event, ConnectionError>>,
            stash: VecDeque<Publish>,
            pump: JoinHandle<()>,
        }

        impl Drop for Client {
            fn drop(&mut self) {
                self.pump.abort();
            }
        }

        impl Client {
            /// Connects and waits for a successful CONNACK.
            pub async fn connect(opts: MqttOptions) -> Client {
                let id = opts.client_id();
                match Self::try_connect(opts).await {
                    Ok(c) => c,
                    Err(e) => panic!("{id}: connect failed: {e:?}"),
                }
            }

            /// Connects; returns the error if the connection or CONNECT fails.
            pub async fn try_connect(opts: MqttOptions) -> Result<Client, ConnectionError> {
                let id = opts.client_id();
                let (client, mut el) = AsyncClient::new(opts, 64);
                // Unbounded: a test reads its clients one after another, and a client it is not
                // reading yet must not stop reading its socket (a test client, not a data path).
                let (tx, mut events) = mpsc::unbounded_channel();
                let pump = tokio::spawn(async move {
                    loop {
                        let ev = el.poll().await;
                        let failed = ev.is_err();
                        if tx.send(ev).is_err() || failed {
                            break;
                        }
                    }
                });
                let connack = within(&format!("CONNACK for {id:?}"), async {
                    match events.recv().await {
                        Some(Ok(Event::Incoming(Packet::ConnAck(c)))) => Ok(c),
                        Some(Err(e)) => Err(e),
                        other => panic!("{id:?}: expected CONNACK, got {other:?}"),
                    }
                })
                .await?;
                Ok(Client {
                    client,
                    connack,
                    events,
                    stash: VecDeque::new(),
                    pump,
                })
            }

            /// The next event; panics on a closed connection or after [`TIMEOUT`].
            pub async fn next_event(&mut self) -> Event {
                match within("a client event", self.events.recv()).await {
                    Some(Ok(ev)) => ev,
                    Some(Err(e)) => panic!("connection failed: {e:?}"),
                    None => panic!("event loop ended"),
                }
            }

            /// Waits for the first event `f` accepts; incoming PUBLISHes passed over are kept
            /// for [`Client::recv`].
            pub async fn expect<T>(&mut self, what: &str, mut f: impl FnMut(&Event) -> Option<T>) -> T {
                within(what, async {
                    loop {
                        let ev = self.next_event().await;
                        if let Some(v) = f(&ev) {
                            return v;
                        }
                        if let Event::Incoming(Packet::Publish(p)) = ev {
                            self.stash.push_back(p);
                        }
                    }
                })
                .await
            }

            /// Publishes and waits until it is complete: written (QoS 0), PUBACK (1), PUBCOMP (2).
            pub async fn publish(&mut self, topic: &str, qos: QoS, retain: bool, payload: impl Into<Vec<u8>>) {
                self.client
                    .publish(topic, qos, retain, payload.into())
                    .await
                    .expect("publish request");
                self.wait_published(qos, 1).await;
            }

            /// Waits until `n` publishes of `qos` sent before are complete.
            pub async fn wait_published(&mut self, qos: QoS, n: usize) {
                for _ in 0..n {
                    self.expect("publish completion", |ev| match (qos, ev) {
                        (QoS::AtMostOnce, Event::Outgoing(Outgoing::Publish(_)))
                        | (QoS::AtLeastOnce, Event::Incoming(Packet::PubAck(_)))
                        | (QoS::ExactlyOnce, Event::Incoming(Packet::PubComp(_))) => Some(()),
                        _ => None,
                    })
                    .await;
                }
            }

            /// The next incoming PUBLISH.
            pub async fn recv(&mut self) -> Publish {
                if let Some(p) = self.stash.pop_front() {
                    return p;
                }
                self.expect("PUBLISH", |ev| match ev {
                    Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
                    _ => None,
                })
                .await
            }

            /// The next `n` incoming PUBLISHes.
            pub async fn recv_n(&mut self, n: usize) -> Vec<Publish> {
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    out.push(self.recv().await);
                }
                out
            }

            /// Asserts that no PUBLISH arrives within [`QUIET`].
            pub async fn assert_silent(&mut self) {
                if let Some(p) = self.stash.pop_front() {
                    panic!("unexpected PUBLISH {p:?}");
                }
                let got = tokio::time::timeout(QUIET, async {
                    loop {
                        match self.events.recv().await {
                            Some(Ok(Event::Incoming(Packet::Publish(p)))) => return p,
                            Some(Ok(_)) => {}
                            other => panic!("connection ended: {other:?}"),
                        }
                    }
                })
                .await;
                if let Ok(p) = got {
                    panic!("unexpected PUBLISH {p:?}");
                }
            }

            /// Waits until the connection is closed; returns the error that ended it.
            pub async fn closed(&mut self) -> Option<ConnectionError> {
                within("the connection to close", async {
                    loop {
                        match self.events.recv().await {
                            Some(Ok(Event::Incoming(Packet::Publish(p)))) => self.stash.push_back(p),
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return Some(e),
                            None => return None,
                        }
                    }
                })
                .await
            }

            /// Sends DISCONNECT and waits until the server has closed the connection.
            pub async fn disconnect(mut self) {
                self.client.disconnect().await.expect("disconnect request");
                self.closed().await;
            }

            /// Drops the connection without DISCONNECT and waits until the socket is gone.
            pub async fn kill(mut self) {
                self.pump.abort();
                let _ = (&mut self.pump).await;
            }
        }
    };
}

/// MQTT 3.1.1 through rumqttc's v4 API.
pub mod v4 {
    use super::*;
    use rumqttc::{
        AsyncClient, ConnAck, ConnectionError, Event, MqttOptions, Outgoing, Packet, Publish, QoS, SubscribeReasonCode,
    };

    /// Options for `id` towards `server` (clean session, keep alive 30 s).
    pub fn options(server: &TestServer, id: &str) -> MqttOptions {
        let mut o = MqttOptions::new(id, "127.0.0.1", server.port());
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    /// Options with clean session 0.
    pub fn persistent(server: &TestServer, id: &str) -> MqttOptions {
        let mut o = options(server, id);
        o.set_clean_session(false);
        o
    }

    client_wrapper!();

    impl Client {
        /// Subscribes and returns the granted QoS (panics on a refusal).
        pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> QoS {
            self.client.subscribe(filter, qos).await.expect("subscribe request");
            let codes = self
                .expect("SUBACK", |ev| match ev {
                    Event::Incoming(Packet::SubAck(s)) => Some(s.return_codes.clone()),
                    _ => None,
                })
                .await;
            match codes.as_slice() {
                [SubscribeReasonCode::Success(q)] => *q,
                other => panic!("subscribe {filter}: {other:?}"),
            }
        }
    }
}

/// MQTT 5 through rumqttc's v5 API.
pub mod v5 {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::{
        ConnAck, Connect, Disconnect, DisconnectReasonCode, Filter, LastWill, Packet, Publish, PublishProperties,
        SubscribeProperties, SubscribeReasonCode,
    };
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions};
    use rumqttc::Outgoing;

    /// Options for `id` towards `server` (clean start, no session expiry, keep alive 30 s).
    pub fn options(server: &TestServer, id: &str) -> MqttOptions {
        let mut o = MqttOptions::new(id, "127.0.0.1", server.port());
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    /// Options with clean start 0 and a session expiry interval.
    pub fn persistent(server: &TestServer, id: &str, expiry_secs: u32) -> MqttOptions {
        let mut o = options(server, id);
        o.set_clean_start(false);
        o.set_session_expiry_interval(Some(expiry_secs));
        o
    }

    client_wrapper!();

    impl Client {
        /// Subscribes to one filter (with its options) and returns the SUBACK reason codes.
        pub async fn subscribe_with(
            &mut self,
            filter: Filter,
            props: Option<SubscribeProperties>,
        ) -> Vec<SubscribeReasonCode> {
            let path = filter.path.clone();
            match props {
                Some(p) => self.client.subscribe_many_with_properties([filter], p).await,
                None => self.client.subscribe_many([filter]).await,
            }
            .unwrap_or_else(|e| panic!("subscribe request {path}: {e:?}"));
            self.expect("SUBACK", |ev| match ev {
                Event::Incoming(Packet::SubAck(s)) => Some(s.return_codes.clone()),
                _ => None,
            })
            .await
        }

        /// Subscribes with default options and returns the granted QoS (panics on a refusal).
        pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> QoS {
            let codes = self.subscribe_with(Filter::new(filter, qos), None).await;
            match codes.as_slice() {
                [SubscribeReasonCode::Success(q)] => *q,
                other => panic!("subscribe {filter}: {other:?}"),
            }
        }

        /// Publishes with properties and waits until it is complete.
        pub async fn publish_with(
            &mut self,
            topic: &str,
            qos: QoS,
            retain: bool,
            payload: impl Into<Vec<u8>>,
            props: PublishProperties,
        ) {
            self.client
                .publish_with_properties(topic, qos, retain, payload.into(), props)
                .await
                .expect("publish request");
            self.wait_published(qos, 1).await;
        }
    }

    /// The topic of a received PUBLISH.
    pub fn topic(p: &Publish) -> &str {
        std::str::from_utf8(&p.topic).expect("UTF-8 topic")
    }

    /// The properties of a received PUBLISH (empty ones when absent).
    pub fn props(p: &Publish) -> PublishProperties {
        p.properties.clone().unwrap_or_default()
    }

    /// An MQTT 5 connection on a plain socket, for what rumqttc's client cannot do: send
    /// DISCONNECT with a reason code other than 0x00, and read a server DISCONNECT that has no
    /// property length (MQTT 5 §3.14.2.2.1 allows omitting it; rumqttc 0.25 then waits for more
    /// bytes and reports the close as `ConnectionAborted`, losing the reason code).
    ///
    /// Packets are encoded with rumqttc's codec; frames are read as raw bytes.
    pub struct RawConn {
        stream: tokio::net::TcpStream,
        input: bytes::BytesMut,
    }

    impl RawConn {
        /// Connects and sends CONNECT; returns once a successful CONNACK came back.
        pub async fn connect(server: &TestServer, connect: Connect, will: Option<LastWill>) -> RawConn {
            let stream = within("TCP connect", tokio::net::TcpStream::connect(server.addr))
                .await
                .expect("TCP connect");
            let mut c = RawConn {
                stream,
                input: bytes::BytesMut::new(),
            };
            c.send(Packet::Connect(connect, will, None)).await;
            let (kind, body) = c.frame().await.expect("CONNACK");
            assert_eq!(kind, 0x20, "expected CONNACK, got packet type {kind:#04x}");
            assert_eq!(body.get(1), Some(&0), "CONNACK reason code: {body:02x?}");
            c
        }

        /// Encodes and sends a packet.
        pub async fn send(&mut self, packet: Packet) {
            use tokio::io::AsyncWriteExt;
            let mut out = bytes::BytesMut::new();
            packet.write(&mut out, None).expect("encode packet");
            self.stream.write_all(&out).await.expect("send packet");
        }

        /// The next frame: its first byte and its body; `None` when the server closed the socket.
        pub async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
            use tokio::io::AsyncReadExt;
            within("a packet from the server", async {
                loop {
                    if let Some((header_len, body_len)) = frame_len(&self.input) {
                        if self.input.len() >= header_len + body_len {
                            let frame = self.input.split_to(header_len + body_len);
                            return Some((frame[0], frame[header_len..].to_vec()));
                        }
                    }
                    let n = self.stream.read_buf(&mut self.input).await.expect("read");
                    if n == 0 {
                        assert!(self.input.is_empty(), "connection closed inside a packet");
                        return None;
                    }
                }
            })
            .await
        }
    }

    /// Fixed header length and remaining length of the frame at the start of `buf`, once known.
    fn frame_len(buf: &[u8]) -> Option<(usize, usize)> {
        let mut len = 0usize;
        for (i, b) in buf.iter().skip(1).take(4).enumerate() {
            len |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some((i + 2, len));
            }
        }
        None
    }

    /// CONNECT for `id`; `expiry` makes it clean start 0 with that Session Expiry Interval.
    pub fn connect_packet(id: &str, expiry: Option<u32>) -> Connect {
        let properties = expiry.map(|secs| {
            let mut p = rumqttc::v5::mqttbytes::v5::ConnectProperties::new();
            p.session_expiry_interval = Some(secs);
            p
        });
        Connect {
            keep_alive: 30,
            client_id: id.to_string(),
            clean_start: expiry.is_none(),
            properties,
        }
    }

    /// Connects over a plain socket with `will`, then sends DISCONNECT with reason 0x04
    /// (rumqttc's client always disconnects with 0x00), and waits for the server to close.
    pub async fn connect_and_disconnect_with_will(server: &TestServer, id: &str, will: LastWill) {
        let mut c = RawConn::connect(server, connect_packet(id, None), Some(will)).await;
        c.send(Packet::Disconnect(Disconnect::new(
            DisconnectReasonCode::DisconnectWithWillMessage,
        )))
        .await;
        assert_eq!(
            c.frame().await,
            None,
            "the server must close the connection after DISCONNECT"
        );
    }
}

/// The 3.1.1 QoS for 0, 1 or 2.
pub fn q4(n: u8) -> rumqttc::QoS {
    rumqttc::qos(n).expect("QoS 0..=2")
}

/// The MQTT 5 QoS for 0, 1 or 2.
pub fn q5(n: u8) -> rumqttc::v5::mqttbytes::QoS {
    rumqttc::v5::mqttbytes::qos(n).expect("QoS 0..=2")
}
