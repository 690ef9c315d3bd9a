//! A small MQTT client for the load tool: one TCP socket, the `unigate_mqtt` codec, and two
//! buffers. It is not a general client: each scenario drives it through its own loop.
//!
//! With a WebSocket path ([`Target::ws_path`]) the connection upgrades first (RFC 6455 §4.1,
//! subprotocol `mqtt`) and then carries MQTT in binary frames (MQTT 5 §6): the packets queued
//! since the last write go out as one masked frame (a frame may hold several packets, §6), and
//! the server's frames are unwrapped into the read buffer before decoding. The framing lives
//! only in [`Conn::try_flush`] and [`Conn::try_fill`], so the scenarios run unchanged.
//!
//! I/O is readiness-based (`readable()` / `try_read_buf`, `writable()` / `try_write`) on the
//! whole `TcpStream`, so one task can wait for "readable, or writable while output is pending,
//! or a timer" in a single `select!` without splitting the socket. Packets are encoded into
//! `wbuf` and written in batches; reads go into `rbuf` and every whole packet in it is decoded
//! before the next read.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::tls_client::{self, ClientTls};
use anyhow::{bail, Context};
use bytes::{Buf, BytesMut};
use rustls::ClientConnection;
use tokio::net::{TcpSocket, TcpStream};
use unigate_mqtt::{
    decode, encode, Connect, ConnectProperties, Disconnect, Packet, PacketId, ProtocolVersion, QoS, ReasonCode,
    Subscribe, SubscriptionOptions, MAX_PACKET_SIZE,
};

/// Read size of a busy connection.
pub(crate) const BUSY_READ: usize = 64 * 1024;
/// Read size of a connection that only ever gets CONNACK and PINGRESP.
pub(crate) const IDLE_READ: usize = 256;

/// Where the clients connect.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The server's address.
    pub addr: SocketAddr,
    /// MQTT over WebSocket at this path (e.g. `/mqtt`); None: MQTT over TCP.
    pub ws_path: Option<Arc<str>>,
    /// TLS settings shared by every connection (`--tls`); `None` for plain TCP. With a
    /// WebSocket path: WSS.
    pub tls: Option<ClientTls>,
    /// Local addresses the connections come from (`--source`).
    pub sources: Sources,
}

impl Target {
    /// MQTT over TCP to `addr`.
    #[cfg(test)]
    pub(crate) fn tcp(addr: SocketAddr) -> Target {
        Target {
            addr,
            ws_path: None,
            tls: None,
            sources: Sources::default(),
        }
    }

    /// A TCP connection to the server, from the next source address if there are any.
    async fn open(&self) -> io::Result<TcpStream> {
        let Some(source) = self.sources.next() else {
            return TcpStream::connect(self.addr).await;
        };
        let socket = if source.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        bind_address_no_port(&socket)?;
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(self.addr).await
    }
}

/// Local addresses the connections take in turn. Each local address has its own ephemeral
/// ports towards the server: one address gives at most ~28,000 connections to one server port
/// (Linux's default `ip_local_port_range`), and the kernel's search for a free port in
/// `connect()` grows longer as they fill up (at 15,000 connections from one address it was
/// 14 % of a profile of the whole machine). Empty: the kernel picks the address and port.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources {
    addrs: Arc<[IpAddr]>,
    turn: Arc<AtomicUsize>,
}

impl Sources {
    /// `addrs` in turn.
    pub(crate) fn new(addrs: Vec<IpAddr>) -> Sources {
        Sources {
            addrs: addrs.into(),
            turn: Arc::default(),
        }
    }

    /// How many addresses there are.
    pub(crate) fn len(&self) -> usize {
        self.addrs.len()
    }

    /// The next address, or `None` when the kernel picks.
    fn next(&self) -> Option<IpAddr> {
        let n = self.addrs.len();
        (n > 0).then(|| self.addrs[self.turn.fetch_add(1, Ordering::Relaxed) % n])
    }
}

/// Binds to an address without taking a port yet (`IP_BIND_ADDRESS_NO_PORT`): `connect()`
/// then picks the port for the whole 4-tuple, so that every source address gets the full
/// ephemeral range, instead of `bind()` picking a port unique on the host.
#[cfg(target_os = "linux")]
fn bind_address_no_port(socket: &TcpSocket) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt::IpBindAddressNoPort};
    setsockopt(socket, IpBindAddressNoPort, &true).map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn bind_address_no_port(_: &TcpSocket) -> io::Result<()> {
    Ok(())
}

/// WebSocket framing state of a connection.
#[derive(Debug, Default)]
struct WsFraming {
    /// Bytes read and not yet unwrapped from their frames.
    raw_in: BytesMut,
    /// Frames not yet written.
    raw_out: BytesMut,
}

/// How a client opens its session.
#[derive(Debug, Clone)]
pub(crate) struct SessionSpec {
    /// Client identifier.
    pub client_id: String,
    /// Clean Start (MQTT 5) / Clean Session (3.1.1).
    pub clean_start: bool,
    /// Session Expiry Interval in seconds (MQTT 5 only; 3.1.1 keeps a session without Clean
    /// Session forever).
    pub session_expiry: u32,
    /// Keep alive in seconds.
    pub keep_alive: u16,
}

/// What one non-blocking read got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fill {
    /// Bytes were appended to the read buffer.
    Data,
    /// Nothing to read right now.
    Empty,
    /// The server closed the connection.
    Eof,
}

/// One connected client.
pub(crate) struct Conn {
    /// The socket; shared by reads and writes through `&self` methods.
    pub stream: TcpStream,
    /// The version CONNECT asked for.
    pub version: ProtocolVersion,
    /// Received bytes not yet decoded.
    pub rbuf: BytesMut,
    /// Encoded packets not yet written.
    pub wbuf: BytesMut,
    /// CONNACK's Session Present flag.
    pub session_present: bool,
    /// The server's Receive Maximum (MQTT 5; 65,535 when absent or 3.1.1).
    pub receive_maximum: u16,
    read_size: usize,
    /// WebSocket framing, for MQTT over WebSocket.
    ws: Option<WsFraming>,
    /// The TLS session, boxed so that a plain connection stays small. Under TLS the bytes on
    /// `stream` are ciphertext: wait on its readiness, then call [`Conn::try_fill`] /
    /// [`Conn::try_flush`].
    tls: Option<Box<ClientConnection>>,
}

impl Conn {
    /// Connects, sends CONNECT and waits for a successful CONNACK.
    pub(crate) async fn connect(
        target: &Target,
        version: ProtocolVersion,
        spec: &SessionSpec,
        read_size: usize,
    ) -> anyhow::Result<Conn> {
        Self::connect_as(target, version, spec, read_size, None).await
    }

    /// [`Conn::connect`] with a user name and password (a password file entry, or a JWT).
    pub(crate) async fn connect_as(
        target: &Target,
        version: ProtocolVersion,
        spec: &SessionSpec,
        read_size: usize,
        credentials: Option<&(Option<String>, Option<bytes::Bytes>)>,
    ) -> anyhow::Result<Conn> {
        let addr = target.addr;
        let stream = target.open().await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            version,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            session_present: false,
            receive_maximum: u16::MAX,
            read_size,
            ws: None,
            tls: target.tls.as_ref().map(ClientTls::session).transpose()?,
        };
        if conn.tls.is_some() {
            conn.handshake()
                .await
                .with_context(|| format!("{}: TLS handshake with {addr}", spec.client_id))?;
        }
        if let Some(path) = &target.ws_path {
            conn.upgrade(addr, path).await?;
        }
        let connect = Connect {
            protocol: version,
            clean_start: spec.clean_start,
            keep_alive: spec.keep_alive,
            client_id: spec.client_id.clone(),
            properties: ConnectProperties {
                session_expiry_interval: (version.is_v5() && spec.session_expiry > 0).then_some(spec.session_expiry),
                ..ConnectProperties::default()
            },
            username: credentials.and_then(|c| c.0.clone()),
            password: credentials.and_then(|c| c.1.clone()),
            ..Connect::default()
        };
        conn.queue(&Packet::Connect(Box::new(connect)))?;
        conn.flush().await?;
        match conn.recv().await? {
            Packet::ConnAck(ack) if ack.reason_code == ReasonCode::SUCCESS => {
                conn.session_present = ack.session_present;
                conn.receive_maximum = ack.properties.receive_maximum.unwrap_or(u16::MAX);
                Ok(conn)
            }
            Packet::ConnAck(ack) => bail!(
                "{}: CONNACK refused the connection with reason code {:#04x}",
                spec.client_id,
                ack.reason_code.0
            ),
            other => bail!("{}: expected CONNACK, got {}", spec.client_id, other.kind()),
        }
    }

    /// Drives the TLS handshake to its end.
    async fn handshake(&mut self) -> anyhow::Result<()> {
        while self.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
            self.flush().await?;
            if !self.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
                break;
            }
            self.stream.readable().await?;
            if self.try_fill()? == Fill::Eof {
                bail!("the server closed the connection during the handshake");
            }
        }
        // The client's Finished (and its certificate, with TLS 1.2) may still be queued.
        Ok(self.flush().await?)
    }

    /// Subscribes to one filter and waits for the SUBACK.
    pub(crate) async fn subscribe(&mut self, filter: &str, qos: QoS) -> anyhow::Result<()> {
        let packet_id = PacketId::new(1).context("packet id 1")?;
        self.queue(&Packet::Subscribe(Subscribe {
            packet_id,
            filters: vec![(filter.to_owned(), SubscriptionOptions::new(qos))],
            properties: Default::default(),
        }))?;
        self.flush().await?;
        match self.recv().await? {
            Packet::SubAck(ack) => match ack.reason_codes.first() {
                Some(code) if code.0 < 0x80 => Ok(()),
                Some(code) => bail!("SUBACK refused {filter}: {:#04x}", code.0),
                None => bail!("SUBACK without a reason code"),
            },
            other => bail!("expected SUBACK, got {}", other.kind()),
        }
    }

    /// Sends DISCONNECT (normal), flushes, and waits briefly for the server to close, so that
    /// the server rather than the bench holds the TIME_WAIT state. Gives up after 5 s: a server
    /// that stopped reading must not hold the run up.
    pub(crate) async fn disconnect(mut self) {
        if self
            .queue(&Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)))
            .is_err()
        {
            return;
        }
        let close = async {
            if self.flush().await.is_err() {
                return;
            }
            loop {
                if self.stream.readable().await.is_err() {
                    return;
                }
                match self.try_fill() {
                    Ok(Fill::Data) => self.rbuf.clear(),
                    Ok(Fill::Empty) => {}
                    Ok(Fill::Eof) | Err(_) => return,
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), close).await;
    }

    /// Encodes `packet` into the output buffer.
    pub(crate) fn queue(&mut self, packet: &Packet) -> anyhow::Result<()> {
        encode(packet, self.version, &mut self.wbuf).with_context(|| format!("encoding {}", packet.kind()))
    }

    /// Bytes queued and not yet written (MQTT bytes not yet framed, and frames); at least 1
    /// while rustls holds ciphertext to write.
    pub(crate) fn pending_out(&self) -> usize {
        let queued = self.wbuf.len() + self.ws.as_ref().map_or(0, |ws| ws.raw_out.len());
        queued.max(usize::from(self.tls.as_ref().is_some_and(|t| t.wants_write())))
    }

    /// Writes the whole output buffer.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        while self.pending_out() > 0 {
            self.stream.writable().await?;
            self.try_flush()?;
        }
        Ok(())
    }

    /// Writes what the socket takes now, without waiting.
    pub(crate) fn try_flush(&mut self) -> io::Result<()> {
        let out = match &mut self.ws {
            None => &mut self.wbuf,
            Some(ws) => {
                if !self.wbuf.is_empty() {
                    let payload = self.wbuf.split();
                    ws_frame(&mut ws.raw_out, WS_BINARY, &payload);
                }
                &mut ws.raw_out
            }
        };
        if let Some(tls) = &mut self.tls {
            return tls_client::flush(tls, &self.stream, out);
        }
        while !out.is_empty() {
            match self.stream.try_write(out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what the socket has now, without waiting.
    pub(crate) fn try_fill(&mut self) -> io::Result<Fill> {
        let buf = match &mut self.ws {
            None => &mut self.rbuf,
            Some(ws) => &mut ws.raw_in,
        };
        let fill = if let Some(tls) = &mut self.tls {
            tls_client::fill(tls, &self.stream, buf)?
        } else {
            if buf.capacity() - buf.len() < self.read_size / 4 {
                buf.reserve(self.read_size);
            }
            match self.stream.try_read_buf(buf) {
                Ok(0) => Fill::Eof,
                Ok(_) => Fill::Data,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Fill::Empty,
                Err(e) => return Err(e),
            }
        };
        if let Some(ws) = &mut self.ws {
            if ws_unwrap(ws, &mut self.rbuf)? == Unwrapped::Closed {
                return Ok(Fill::Eof);
            }
        }
        Ok(fill)
    }

    /// The WebSocket opening handshake (RFC 6455 §4.1) with subprotocol `mqtt`; bytes the
    /// server sent after its answer stay for the framing layer.
    async fn upgrade(&mut self, addr: SocketAddr, path: &str) -> anyhow::Result<()> {
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
        );
        self.wbuf.extend_from_slice(request.as_bytes());
        self.flush().await?;
        let head_end = loop {
            if let Some(i) = self.rbuf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.rbuf.len() > 16 * 1024 {
                bail!("WebSocket handshake: the answer's head is too long");
            }
            self.stream.readable().await?;
            if self.try_fill()? == Fill::Eof {
                bail!("WebSocket handshake: the server closed the connection");
            }
        };
        let head = self.rbuf.split_to(head_end);
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let status = head.lines().next().unwrap_or_default();
        if !status.starts_with("http/1.1 101") {
            bail!("WebSocket handshake refused: {status}");
        }
        if !head
            .lines()
            .any(|l| l.replace(' ', "") == "sec-websocket-protocol:mqtt")
        {
            bail!("WebSocket handshake: the server did not agree to the mqtt subprotocol");
        }
        let mut ws = WsFraming::default();
        ws.raw_in.extend_from_slice(&self.rbuf.split());
        if ws_unwrap(&mut ws, &mut self.rbuf)? == Unwrapped::Closed {
            bail!("WebSocket: the server closed right after the handshake");
        }
        self.ws = Some(ws);
        Ok(())
    }

    /// Decodes the next whole packet in the read buffer, if there is one.
    pub(crate) fn decode(&mut self) -> anyhow::Result<Option<Packet>> {
        decode(&mut self.rbuf, Some(self.version), MAX_PACKET_SIZE).context("decoding a packet from the server")
    }

    /// Waits for the next packet.
    pub(crate) async fn recv(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(packet) = self.decode()? {
                return Ok(packet);
            }
            self.stream.readable().await?;
            if self.try_fill()? == Fill::Eof {
                bail!("the server closed the connection");
            }
        }
    }
}

/// Binary frame opcode (RFC 6455 §5.2).
const WS_BINARY: u8 = 0x2;
/// Close frame opcode.
const WS_CLOSE: u8 = 0x8;
/// Ping frame opcode.
const WS_PING: u8 = 0x9;
/// Pong frame opcode.
const WS_PONG: u8 = 0xA;

/// Appends one final frame of `opcode` carrying `payload`, masked as a client must (RFC 6455
/// §5.3).
fn ws_frame(out: &mut BytesMut, opcode: u8, payload: &[u8]) {
    out.reserve(payload.len() + 14);
    out.extend_from_slice(&[0x80 | opcode]);
    let len = payload.len();
    if len < 126 {
        out.extend_from_slice(&[0x80 | len as u8]);
    } else if let Ok(len) = u16::try_from(len) {
        out.extend_from_slice(&[0x80 | 126]);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.extend_from_slice(&[0x80 | 127]);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let key: [u8; 4] = rand::random();
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    for (i, b) in out[start..].iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// What [`ws_unwrap`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unwrapped {
    /// Data frames (if any) were unwrapped; more may follow.
    Open,
    /// The server sent a close frame.
    Closed,
}

/// Moves the payloads of every whole data frame in `ws.raw_in` to `rbuf`, answers pings, and
/// reports a close frame. An incomplete frame stays buffered.
fn ws_unwrap(ws: &mut WsFraming, rbuf: &mut BytesMut) -> io::Result<Unwrapped> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("WebSocket: {why}"));
    loop {
        let raw = &ws.raw_in[..];
        let (Some(&b0), Some(&b1)) = (raw.first(), raw.get(1)) else {
            return Ok(Unwrapped::Open);
        };
        let opcode = b0 & 0x0f;
        let masked = b1 & 0x80 != 0;
        let (len, mut at) = match b1 & 0x7f {
            126 => match raw.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(Unwrapped::Open),
            },
            127 => match raw.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                Some(b) => (u64::from_be_bytes(b), 10),
                None => return Ok(Unwrapped::Open),
            },
            n => (u64::from(n), 2),
        };
        let len = usize::try_from(len).map_err(|_| bad("frame too long"))?;
        let key = if masked {
            let Some(k) = raw.get(at..at + 4).and_then(|k| <[u8; 4]>::try_from(k).ok()) else {
                return Ok(Unwrapped::Open);
            };
            at += 4;
            Some(k)
        } else {
            None
        };
        if raw.len() < at.saturating_add(len) {
            return Ok(Unwrapped::Open);
        }
        let mut frame = ws.raw_in.split_to(at + len);
        frame.advance(at);
        if let Some(key) = key {
            for (i, b) in frame.iter_mut().enumerate() {
                *b ^= key[i & 3];
            }
        }
        match opcode {
            0x0 | WS_BINARY => rbuf.extend_from_slice(&frame),
            WS_CLOSE => return Ok(Unwrapped::Closed),
            WS_PING => ws_frame(&mut ws.raw_out, WS_PONG, &frame),
            WS_PONG => {}
            other => return Err(bad(&format!("unexpected frame opcode {other:#x}"))),
        }
    }
}

/// The text of a DISCONNECT the server sent, for error messages.
pub(crate) fn describe_disconnect(d: &Disconnect) -> String {
    match &d.properties.reason_string {
        Some(why) => format!("server sent DISCONNECT {:#04x} ({why})", d.reason_code.0),
        None => format!("server sent DISCONNECT {:#04x}", d.reason_code.0),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn frames_round_trip_through_the_unwrapper() {
        for len in [0usize, 5, 125, 126, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut ws = WsFraming::default();
            ws_frame(&mut ws.raw_in, WS_BINARY, &payload);
            // Fed in two pieces: the first half is not a whole frame.
            let whole = ws.raw_in.split();
            let mut rbuf = BytesMut::new();
            ws.raw_in.extend_from_slice(&whole[..whole.len() / 2]);
            assert_eq!(ws_unwrap(&mut ws, &mut rbuf).unwrap(), Unwrapped::Open);
            assert!(rbuf.is_empty() || len == 0 && whole.len() / 2 == 0);
            ws.raw_in.extend_from_slice(&whole[whole.len() / 2..]);
            assert_eq!(ws_unwrap(&mut ws, &mut rbuf).unwrap(), Unwrapped::Open);
            assert_eq!(&rbuf[..], &payload[..], "len {len}");
            assert!(ws.raw_in.is_empty());
        }
    }

    /// Connections take the source addresses in turn, each with a port the kernel picked.
    #[test]
    fn connections_come_from_the_source_addresses_in_turn() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let sources: Vec<IpAddr> = ["127.0.0.2", "127.0.0.3"].map(|a| a.parse().unwrap()).into();
            let target = Target {
                sources: Sources::new(sources.clone()),
                ..Target::tcp(listener.local_addr().unwrap())
            };
            let mut seen = Vec::new();
            let mut open = Vec::new();
            for _ in 0..4 {
                let stream = target.open().await.unwrap();
                let (_, peer) = listener.accept().await.unwrap();
                assert_eq!(stream.local_addr().unwrap(), peer);
                assert_ne!(peer.port(), 0);
                seen.push(peer.ip());
                open.push(stream);
            }
            assert_eq!(seen, [sources.clone(), sources].concat());
        });
    }

    #[test]
    fn pings_are_answered_and_close_is_reported() {
        let mut ws = WsFraming::default();
        // Server frames are unmasked: ping "hi", then close.
        ws.raw_in.extend_from_slice(&[0x89, 2, b'h', b'i', 0x88, 0]);
        let mut rbuf = BytesMut::new();
        assert_eq!(ws_unwrap(&mut ws, &mut rbuf).unwrap(), Unwrapped::Closed);
        let mut pong = WsFraming::default();
        pong.raw_in.extend_from_slice(&ws.raw_out);
        assert_eq!(pong.raw_in[0], 0x80 | WS_PONG);
        assert!(pong.raw_in[1] & 0x80 != 0, "a client's frames are masked");
        // A text frame is not MQTT.
        let mut text = WsFraming::default();
        text.raw_in.extend_from_slice(&[0x81, 1, b'x']);
        assert!(ws_unwrap(&mut text, &mut rbuf).is_err());
    }
}
