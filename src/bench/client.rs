//! A small MQTT client for the load tool: one TCP socket (optionally under TLS), the
//! `unigate_mqtt` codec, and two buffers. It is not a general client: each scenario drives it
//! through its own loop.
//!
//! I/O is readiness-based (`readable()` / `try_read_buf`, `writable()` / `try_write`) on the
//! whole `TcpStream`, so one task can wait for "readable, or writable while output is pending,
//! or a timer" in a single `select!` without splitting the socket. Packets are encoded into
//! `wbuf` and written in batches; reads go into `rbuf` and every whole packet in it is decoded
//! before the next read. With TLS ([`super::tls_client`]) the same calls go through a sans-IO
//! rustls session, so the scenarios' loops do not change.

use std::io;
use std::net::SocketAddr;

use anyhow::{bail, Context};
use bytes::{Buf, BytesMut};
use rustls::ClientConnection;
use tokio::net::TcpStream;
use unigate_mqtt::{
    decode, encode, Connect, ConnectProperties, Disconnect, Packet, PacketId, ProtocolVersion, QoS, ReasonCode,
    Subscribe, SubscriptionOptions, MAX_PACKET_SIZE,
};

use super::tls_client::{self, ClientTls};

/// Where the clients connect: the server's address, and the TLS settings with `--tls`.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The server's address.
    pub addr: SocketAddr,
    /// TLS settings shared by every connection; `None` for plain TCP.
    pub tls: Option<ClientTls>,
}

impl Endpoint {
    /// Plain TCP to `addr`.
    #[cfg(test)]
    pub(crate) fn plain(addr: SocketAddr) -> Endpoint {
        Endpoint { addr, tls: None }
    }
}

/// Read size of a busy connection.
pub(crate) const BUSY_READ: usize = 64 * 1024;
/// Read size of a connection that only ever gets CONNACK and PINGRESP.
pub(crate) const IDLE_READ: usize = 256;

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
    /// The socket; shared by reads and writes through `&self` methods. Wait on its readiness,
    /// then call [`Conn::try_fill`] / [`Conn::try_flush`]: under TLS the bytes on it are
    /// ciphertext.
    pub stream: TcpStream,
    /// The TLS session, boxed so that a plain connection stays small.
    tls: Option<Box<ClientConnection>>,
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
}

impl Conn {
    /// Connects (and makes the TLS handshake), sends CONNECT and waits for a successful
    /// CONNACK.
    pub(crate) async fn connect(
        server: &Endpoint,
        version: ProtocolVersion,
        spec: &SessionSpec,
        read_size: usize,
    ) -> anyhow::Result<Conn> {
        Self::connect_as(server, version, spec, read_size, None).await
    }

    /// [`Conn::connect`] with a user name and password (a password-file entry, a JWT, or an
    /// OAuth2 access token).
    pub(crate) async fn connect_as(
        server: &Endpoint,
        version: ProtocolVersion,
        spec: &SessionSpec,
        read_size: usize,
        credentials: Option<&(Option<String>, Option<bytes::Bytes>)>,
    ) -> anyhow::Result<Conn> {
        let addr = server.addr;
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            tls: server.tls.as_ref().map(ClientTls::session).transpose()?,
            version,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            session_present: false,
            receive_maximum: u16::MAX,
            read_size,
        };
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
        if conn.tls.is_some() {
            conn.handshake()
                .await
                .with_context(|| format!("{}: TLS handshake with {addr}", spec.client_id))?;
        }
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

    /// Whether output waits to be written: encoded packets, or ciphertext rustls holds.
    pub(crate) fn pending_out(&self) -> bool {
        !self.wbuf.is_empty() || self.tls.as_ref().is_some_and(|t| t.wants_write())
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

    /// Writes the whole output buffer.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        while self.pending_out() {
            self.stream.writable().await?;
            self.try_flush()?;
        }
        Ok(())
    }

    /// Writes what the socket takes now, without waiting.
    pub(crate) fn try_flush(&mut self) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            return tls_client::flush(tls, &self.stream, &mut self.wbuf);
        }
        while !self.wbuf.is_empty() {
            match self.stream.try_write(&self.wbuf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wbuf.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what the socket has now, without waiting.
    pub(crate) fn try_fill(&mut self) -> io::Result<Fill> {
        if let Some(tls) = &mut self.tls {
            return tls_client::fill(tls, &self.stream, &mut self.rbuf);
        }
        if self.rbuf.capacity() - self.rbuf.len() < self.read_size / 4 {
            self.rbuf.reserve(self.read_size);
        }
        match self.stream.try_read_buf(&mut self.rbuf) {
            Ok(0) => Ok(Fill::Eof),
            Ok(_) => Ok(Fill::Data),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Fill::Empty),
            Err(e) => Err(e),
        }
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

/// The text of a DISCONNECT the server sent, for error messages.
pub(crate) fn describe_disconnect(d: &Disconnect) -> String {
    match &d.properties.reason_string {
        Some(why) => format!("server sent DISCONNECT {:#04x} ({why})", d.reason_code.0),
        None => format!("server sent DISCONNECT {:#04x}", d.reason_code.0),
    }
}
