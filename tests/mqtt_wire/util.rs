//! A raw MQTT client for the wire tests: a blocking socket with read deadlines, packets built
//! and parsed with the project's codec (`unigate_mqtt`), and hand-written bytes where a test
//! needs input the codec would refuse to produce.
//!
//! Waits are for events: every read runs until the expected packet arrives, the peer closes,
//! or [`TIMEOUT`] passes (which fails the test). "Nothing more is coming" is proven with
//! [`Raw::barrier`], never with a sleep.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use unigate_mqtt::{
    self as mqtt, ConnAck, Connect, Packet, PacketId, ProtocolVersion, PubResp, Publish, QoS, ReasonCode, SubAck,
    Subscribe, SubscriptionOptions,
};

pub use crate::common::TIMEOUT;

/// What one read produced. Returned and matched at once, so its size does not matter and the
/// packet stays unboxed for pattern matching.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// A whole packet.
    Packet(Packet),
    /// The peer closed the connection (FIN or RST) between packets.
    Closed,
    /// Nothing arrived before the deadline.
    TimedOut,
}

/// A packet identifier from a test constant.
pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero packet id")
}

/// A CONNECT for `version` with `client_id`, keep alive 0.
pub fn connect_packet(version: ProtocolVersion, client_id: &str, clean_start: bool) -> Connect {
    Connect {
        protocol: version,
        clean_start,
        client_id: client_id.to_string(),
        ..Connect::default()
    }
}

/// A PUBLISH at `qos` (packet id `id` when `qos` > 0).
pub fn publish(topic: &str, payload: impl Into<Bytes>, qos: QoS, id: u16) -> Publish {
    let mut p = Publish::new(topic, payload);
    p.qos = qos;
    if qos != QoS::AtMostOnce {
        p.packet_id = Some(pid(id));
    }
    p
}

/// The encoding of a remaining length (MQTT 5 §1.5.5), for hand-built packets.
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// A length-prefixed string or binary field as raw bytes.
pub fn field(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A hand-built packet: first byte, then the remaining length of `body`, then `body`.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// One raw client connection.
pub struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    /// The version packets are encoded and decoded for (the one the CONNECT named).
    pub version: ProtocolVersion,
    /// When the TCP connection was opened.
    pub opened: Instant,
}

impl Raw {
    /// Opens a TCP connection; nothing is sent yet. Packets are read as MQTT 5 until
    /// [`Raw::connect`] names another version.
    pub fn open(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("tcp connect");
        stream.set_nodelay(true).expect("nodelay");
        Raw {
            stream,
            buf: BytesMut::new(),
            version: ProtocolVersion::V5,
            opened: Instant::now(),
        }
    }

    /// Opens a connection, sends `connect` and returns the client with the CONNACK.
    pub fn connect(addr: SocketAddr, connect: Connect) -> (Raw, ConnAck) {
        let mut c = Raw::open(addr);
        c.version = connect.protocol;
        c.send(&Packet::Connect(Box::new(connect)));
        match c.recv() {
            Packet::ConnAck(ack) => (c, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// An MQTT 5 client with clean start and `client_id`, CONNACK checked for success.
    pub fn v5(addr: SocketAddr, client_id: &str) -> Raw {
        Self::accepted(addr, connect_packet(ProtocolVersion::V5, client_id, true))
    }

    /// An MQTT 3.1.1 client with clean session and `client_id`, CONNACK checked for success.
    pub fn v311(addr: SocketAddr, client_id: &str) -> Raw {
        Self::accepted(addr, connect_packet(ProtocolVersion::V3_1_1, client_id, true))
    }

    /// Connects with `connect` and asserts the CONNACK is a success.
    pub fn accepted(addr: SocketAddr, connect: Connect) -> Raw {
        let (c, ack) = Raw::connect(addr, connect);
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "CONNACK {ack:?}");
        c
    }

    /// Writes raw bytes; an error (the server already closed) is returned, not a panic.
    pub fn try_send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes raw bytes.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.try_send_bytes(bytes).expect("write to server");
    }

    /// Encodes `packet` for this connection's version.
    pub fn encode(&self, packet: &Packet) -> Vec<u8> {
        let mut out = BytesMut::new();
        mqtt::encode(packet, self.version, &mut out).expect("test packet encodes");
        out.to_vec()
    }

    /// Encodes and writes `packet`.
    pub fn send(&mut self, packet: &Packet) {
        let bytes = self.encode(packet);
        self.send_bytes(&bytes);
    }

    /// Half-closes: the server reads EOF.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// The next packet, the close, or `TimedOut` after `wait`.
    pub fn next_event(&mut self, wait: Duration) -> Event {
        let deadline = Instant::now() + wait;
        loop {
            match mqtt::decode(&mut self.buf, Some(self.version), mqtt::MAX_PACKET_SIZE) {
                Ok(Some(p)) => return Event::Packet(p),
                Ok(None) => {}
                Err(e) => panic!("server sent bytes that do not decode: {e} ({:02x?})", &self.buf[..]),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Event::TimedOut;
            }
            match self.read_some(left) {
                Some(0) => {
                    assert!(
                        self.buf.is_empty(),
                        "connection closed inside a packet: {:02x?}",
                        &self.buf[..]
                    );
                    return Event::Closed;
                }
                Some(_) => {}
                None => return Event::TimedOut,
            }
        }
    }

    /// Reads once into the buffer: `Some(0)` on close, `None` on timeout.
    fn read_some(&mut self, wait: Duration) -> Option<usize> {
        self.stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .expect("read timeout");
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(n)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) if e.kind() == ErrorKind::Interrupted => Some(self.read_some(wait)?),
            // A reset is a close too (the server closed with our bytes unread).
            Err(_) => Some(0),
        }
    }

    /// The next packet; fails on close or after [`TIMEOUT`].
    pub fn recv(&mut self) -> Packet {
        match self.next_event(TIMEOUT) {
            Event::Packet(p) => p,
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    /// The next PUBLISH, failing on any other packet.
    pub fn recv_publish(&mut self) -> Publish {
        match self.recv() {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Every byte until the server closes (fails after [`TIMEOUT`]); for exact-byte checks.
    pub fn raw_until_closed(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "server did not close; got {:02x?}", &self.buf[..]);
            match self.read_some(left) {
                Some(0) => return std::mem::take(&mut self.buf).to_vec(),
                Some(_) => {}
                None => panic!("server did not close; got {:02x?}", &self.buf[..]),
            }
        }
    }

    /// The server closes without sending another packet.
    pub fn expect_closed(&mut self) {
        match self.next_event(TIMEOUT) {
            Event::Closed => {}
            other => panic!("expected the server to close, got {other:?}"),
        }
    }

    /// The next packet is an MQTT 5 DISCONNECT with `code`, and then the server closes.
    pub fn expect_disconnect(&mut self, code: u8) {
        match self.recv() {
            Packet::Disconnect(d) => assert_eq!(
                d.reason_code,
                ReasonCode(code),
                "DISCONNECT reason (wanted {code:#04x}): {d:?}"
            ),
            other => panic!("expected DISCONNECT {code:#04x}, got {other:?}"),
        }
        self.expect_closed();
    }

    /// Proves the server has written everything it was going to write before now: two
    /// PINGREQ round trips. The first PINGREQ is read after every earlier event reached the
    /// connection; whatever that turn wrote precedes the second PINGRESP. Returns the packets
    /// (other than PINGRESP) that arrived meanwhile.
    pub fn barrier(&mut self) -> Vec<Packet> {
        let mut got = Vec::new();
        for _ in 0..2 {
            self.send(&Packet::PingReq);
            loop {
                match self.recv() {
                    Packet::PingResp => break,
                    p => got.push(p),
                }
            }
        }
        got
    }

    /// Subscribes to `filters` and returns the SUBACK.
    pub fn subscribe_with(&mut self, id: u16, filters: &[(&str, SubscriptionOptions)]) -> SubAck {
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: pid(id),
            filters: filters.iter().map(|(f, o)| (f.to_string(), *o)).collect(),
            properties: Default::default(),
        }));
        match self.recv() {
            Packet::SubAck(s) => {
                assert_eq!(s.packet_id, pid(id));
                s
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Subscribes to one filter at `qos` and asserts it was granted.
    pub fn subscribe(&mut self, filter: &str, qos: QoS) {
        let ack = self.subscribe_with(1, &[(filter, SubscriptionOptions::new(qos))]);
        assert_eq!(ack.reason_codes, vec![ReasonCode(qos as u8)], "SUBACK for {filter}");
    }

    /// Publishes and completes the handshake for its QoS (PUBACK, or PUBREC/PUBREL/PUBCOMP).
    pub fn publish_acked(&mut self, p: Publish) {
        let qos = p.qos;
        let id = p.packet_id;
        self.send(&Packet::Publish(p));
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => match self.recv() {
                Packet::PubAck(a) if Some(a.packet_id) == id && !a.reason_code.is_error() => {}
                other => panic!("expected PUBACK for {id:?}, got {other:?}"),
            },
            QoS::ExactlyOnce => {
                match self.recv() {
                    Packet::PubRec(a) if Some(a.packet_id) == id && !a.reason_code.is_error() => {}
                    other => panic!("expected PUBREC for {id:?}, got {other:?}"),
                }
                let id = id.expect("QoS 2 has an id");
                self.send(&Packet::PubRel(PubResp::new(id)));
                match self.recv() {
                    Packet::PubComp(a) if a.packet_id == id => {}
                    other => panic!("expected PUBCOMP for {id:?}, got {other:?}"),
                }
            }
        }
    }

    /// Sends a normal DISCONNECT and waits for the close.
    pub fn disconnect(mut self) {
        self.send(&Packet::Disconnect(mqtt::Disconnect::new(ReasonCode::SUCCESS)));
        self.expect_closed();
    }
}
