//! The MQTT server side of one connection, without the socket.
//!
//! [`MqttConn`] takes bytes in ([`MqttConn::handle_bytes`]), talks to the [`Broker`] (shared
//! memory, no I/O), and leaves bytes to write in [`MqttConn::out`]. The connection actor
//! (`connection.rs`) owns the socket and the timers and calls in; a test can drive the same
//! code with plain byte slices.
//!
//! Flow control: deliveries wait in the session queue until the inflight window (the client's
//! Receive Maximum, capped by our `max_inflight`) has room and the output buffer is below
//! [`HIGH_WATER`]; so a slow reader holds at most a window plus a buffer, and the rest is
//! governed by the session queue's limit (QoS 0 dropped first).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use unigate_auth::acl::Request;
use unigate_auth::{Credentials, DenyReason, Identity, Outcome, Secret};
use unigate_mqtt::{
    self as mqtt, AckProperties, ConnAck, ConnAckProperties, Connect, DecodeError, Disconnect, DisconnectProperties,
    Packet, PacketId, ProtocolVersion, PubResp, Publish, ReasonCode, SubAck, Subscribe, UnsubAck, Unsubscribe,
};
use unigate_pubsub::{Message, Origin, Protocol, QoS, TopicFilter};
use unigate_translators::{mqtt as tr, TranslateError};

use crate::broker::session::Stamp;
use crate::broker::{
    now_ms, Batch, Broker, ClientId, Delivery, Detached, FilterRefusal, KickReason, Metrics, OutState, PendingWill,
    QueueLimits, Session, SessionLink, SubOptions,
};
use crate::config::Limits;
use crate::storage::Op;

/// Output above this many bytes stops draining deliveries until the socket catches up.
pub const HIGH_WATER: usize = 64 * 1024;
/// Deliveries moved from the queue per drain, so one busy session cannot hog its thread.
const DRAIN_BATCH: usize = 256;

/// What a listener gives each of its connections.
#[derive(Debug)]
pub struct ListenerSettings {
    /// Listener name.
    pub name: Arc<str>,
    /// Its limits.
    pub limits: Limits,
    /// Its auth chain and where to run it.
    pub auth: crate::auth::ListenerAuth,
    /// TLS, on TLS listeners; replaced on reload (new connections use the new certificate).
    pub tls: parking_lot::RwLock<Option<Arc<rustls::ServerConfig>>>,
    /// `Mqtt` (TCP/TLS) or `MqttWs` (WebSocket): what messages' origin says.
    pub transport: Protocol,
    /// The broker core (here rather than in every connection: 8 bytes each).
    pub broker: Arc<Broker>,
}

/// Why a connection closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Close {
    /// The client sent DISCONNECT; `with_will` for MQTT 5 reason 0x04.
    ClientDisconnected {
        /// Publish the will anyway.
        with_will: bool,
    },
    /// The peer closed the socket or it failed.
    PeerGone,
    /// A protocol violation or malformed packet; the reason code was sent where possible and
    /// the why was logged where it happened (kept out of here: this value lives in every
    /// connection).
    Violation(ReasonCode),
    /// CONNECT refused (CONNACK with an error was sent).
    Refused(ReasonCode),
    /// No packet within 1.5 × keep alive.
    KeepAliveTimeout,
    /// No CONNECT in time.
    ConnectTimeout,
    /// Told to go.
    Kicked(KickReason),
}

impl Close {
    fn publishes_will(&self) -> bool {
        match self {
            Close::ClientDisconnected { with_will } => *with_will,
            Close::Refused(_) | Close::Kicked(KickReason::ServerShuttingDown) => false,
            _ => true,
        }
    }
}

/// A validated CONNECT whose credentials are being checked.
struct PendingConnect {
    connect: Connect,
    client_id: ClientId,
    assigned: Option<String>,
    credentials: Option<Credentials>,
    /// An enhanced-authentication (SCRAM) exchange waiting for the client's AUTH.
    scram: Option<ScramPending>,
}

/// A SCRAM-SHA-256 exchange between the server's first message and the client's final one.
struct ScramPending {
    exchange: unigate_auth::scram::ServerExchange,
    username: String,
    /// The authenticator whose verifiers are used (`None`: a decoy, the user is unknown).
    authenticator: Option<Arc<str>>,
}

struct Connected {
    version: ProtocolVersion,
    client_id: ClientId,
    /// Who the client is; `None` for an anonymous client without a user name (the common
    /// case on open listeners, which then carries no identity in memory at all).
    identity: Option<Box<Identity>>,
    session: Arc<Session>,
    generation: u64,
    keep_alive: u16,
    will: Option<Box<PendingWill>>,
    inflight_window: usize,
    client_max_packet: u32,
    client_alias_max: u16,
    /// Topic aliases set by the client; allocated on first use. Boxed on purpose: an empty map
    /// is 48 bytes in every connection, a `None` box is 8.
    #[allow(clippy::box_collection)]
    alias_in: Option<Box<HashMap<u16, String>>>,
    /// Topic aliases we set towards the client; allocated on first use (boxed, as above).
    #[allow(clippy::box_collection)]
    alias_out: Option<Box<HashMap<Arc<str>, u16>>>,
    problem_info: bool,
    /// CONNECT carried session expiry 0: DISCONNECT must not raise it [MQTT-3.14.2-2].
    connect_expiry_zero: bool,
}

/// Acknowledgements held back until the store has committed what they acknowledge, with the
/// ticket each waits for (see [`MqttConn::handle_stored`]). Later acknowledgements queue behind
/// them: PUBACKs go out in PUBLISH order (MQTT 5 §4.6).
#[derive(Default)]
struct HeldAcks {
    held: std::collections::VecDeque<(u64, Packet)>,
    /// The last ticket submitted to the store.
    ticket: u64,
}

impl HeldAcks {
    /// The first held acknowledgement if the store has committed what it waits for.
    fn pop_done(&mut self, committed: u64) -> Option<Packet> {
        if self.held.front().is_some_and(|(t, _)| *t <= committed) {
            self.held.pop_front().map(|(_, p)| p)
        } else {
            None
        }
    }
}

/// One MQTT connection's protocol state.
pub struct MqttConn {
    listener: Arc<ListenerSettings>,
    peer: SocketAddr,
    link: Option<Arc<dyn SessionLink>>,
    read_buf: BytesMut,
    /// Bytes waiting to be written.
    pub out: BytesMut,
    conn: Option<Box<Connected>>,
    /// A CONNECT waiting for the auth chain's answer.
    pending: Option<Box<PendingConnect>>,
    /// The TLS client certificate chain (DER, leaf first), on TLS listeners that were given
    /// one; taken by the auth chain at CONNECT (boxed: most connections have none, and an empty
    /// `Vec` would cost every connection 24 bytes).
    #[allow(clippy::box_collection)]
    peer_certs: Option<Box<Vec<Vec<u8>>>>,
    /// A publish hit a congested subscriber (see [`MqttConn::take_congested`]).
    congested: bool,
    /// Store tickets and the acknowledgements waiting for them; allocated on the first store
    /// submission, so a connection without a durable session pays 8 bytes.
    acks: Option<Box<HeldAcks>>,
    /// When the last packet came (8 bytes where an `Instant` takes 16).
    last_packet: Stamp,
    closed: Option<Close>,
}

impl MqttConn {
    /// A connection from `peer` on `listener`, before CONNECT.
    pub fn new(listener: Arc<ListenerSettings>, peer: SocketAddr, now: Instant) -> MqttConn {
        MqttConn {
            listener,
            peer,
            link: None,
            read_buf: BytesMut::new(),
            out: BytesMut::new(),
            conn: None,
            pending: None,
            peer_certs: None,
            congested: false,
            acks: None,
            last_packet: Stamp::at(now),
            closed: None,
        }
    }

    /// The broker core.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.listener.broker
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Records the verified TLS client certificate chain, for the auth chain.
    pub fn set_peer_certificates(&mut self, certs: Vec<Vec<u8>>) {
        self.peer_certs = (!certs.is_empty()).then(|| Box::new(certs));
    }

    /// The listener's settings.
    pub fn listener(&self) -> &Arc<ListenerSettings> {
        &self.listener
    }

    /// The keep-alive interval after which a silent client is dropped (1.5 × keep alive).
    pub fn keepalive_interval(&self) -> Option<Duration> {
        let c = self.conn.as_ref()?;
        (c.keep_alive > 0).then(|| Duration::from_millis(u64::from(c.keep_alive) * 1500))
    }

    /// How long the client has to send CONNECT.
    pub fn connect_timeout(&self) -> Duration {
        self.listener.limits.connect_timeout
    }

    /// Sets how the broker reaches this connection (its actor address).
    pub fn set_link(&mut self, link: Arc<dyn SessionLink>) {
        self.link = Some(link);
    }

    /// Whether CONNECT was accepted.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Why the connection is closing, once it is.
    pub fn close_reason(&self) -> Option<&Close> {
        self.closed.as_ref()
    }

    /// The connected client, for the management API.
    pub fn describe(&self) -> Option<crate::broker::session::ClientInfo> {
        let c = self.conn.as_ref()?;
        let identity = c.identity();
        Some(crate::broker::session::ClientInfo {
            protocol: self.listener.transport.as_str(),
            listener: self.listener.name.clone(),
            peer: Some(self.peer),
            username: identity.username.clone(),
            authenticator: Some(identity.authenticator.clone()),
            details: serde_json::json!({
                "version": match c.version {
                    ProtocolVersion::V3_1 => "3.1",
                    ProtocolVersion::V3_1_1 => "3.1.1",
                    _ => "5.0",
                },
                "keep_alive": c.keep_alive,
                "inflight_window": c.inflight_window,
            }),
        })
    }

    /// The client id once connected.
    pub fn client_id(&self) -> Option<&str> {
        self.conn.as_ref().map(|c| &*c.client_id)
    }

    /// When the last packet came.
    pub fn last_packet(&self) -> Stamp {
        self.last_packet
    }

    /// When the connection must be dropped for silence (1.5 × keep alive, MQTT 5 §3.1.2.10).
    pub fn keepalive_deadline(&self) -> Option<Instant> {
        Some(self.last_packet.instant()? + self.keepalive_interval()?)
    }

    /// A connect or keep-alive window the actor watched has ended: `Err` with the close when
    /// the connection is overdue (an MQTT 5 client gets DISCONNECT 0x8D for keep alive), else
    /// the window to watch again from [`MqttConn::last_packet`] (`None`: no keep alive).
    pub fn check_deadline(&mut self, now: Instant) -> Result<Option<Duration>, Close> {
        if !self.is_connected() {
            tracing::debug!(peer = %self.peer, "closing: no CONNECT in time");
            return Err(self.handle_timeout(Close::ConnectTimeout));
        }
        match self.keepalive_deadline() {
            Some(d) if d <= now => Err(self.handle_timeout(Close::KeepAliveTimeout)),
            _ => Ok(self.keepalive_interval()),
        }
    }

    fn version(&self) -> Option<ProtocolVersion> {
        match (&self.conn, &self.pending) {
            (Some(c), _) => Some(c.version),
            // During enhanced authentication the client's AUTH is decoded as its CONNECT said.
            (None, Some(p)) => Some(p.connect.protocol),
            (None, None) => None,
        }
    }

    fn is_v5(&self) -> bool {
        self.version().is_some_and(|v| v.is_v5())
    }

    // ------------------------------------------------------------------ input

    /// Feeds bytes read from the socket. Returns `Err` when the connection must close (any
    /// reply, e.g. a DISCONNECT with a reason code, is already in `out`).
    pub fn handle_bytes(&mut self, data: &[u8], now: Instant) -> Result<(), Close> {
        if let Some(c) = &self.closed {
            return Err(c.clone());
        }
        Metrics::add(&self.listener.broker.metrics.bytes_received, data.len() as u64);
        let max = self.listener.limits.max_packet_size;
        if self.read_buf.is_empty() {
            // Fast path: decode straight from the socket data; keep only a partial tail.
            let mut pos = 0;
            while pos < data.len() {
                match mqtt::decode_slice(&data[pos..], self.version(), max) {
                    Ok(Some((packet, used))) => {
                        pos += used;
                        self.handle_packet(packet, now).map_err(|c| self.fail(c))?;
                        if self.is_authenticating() || self.congested {
                            // CONNECT waits for the auth chain: later packets wait too (their
                            // decoding depends on the version CONNECT negotiates). And a publish
                            // that hit a congested subscriber stops reading right here.
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Err(self.decode_failed(e)),
                }
            }
            if pos < data.len() {
                self.read_buf.extend_from_slice(&data[pos..]);
            }
        } else {
            self.read_buf.extend_from_slice(data);
            loop {
                let version = self.version();
                if self.is_authenticating() || self.congested {
                    break;
                }
                match mqtt::decode(&mut self.read_buf, version, max) {
                    Ok(Some(packet)) => self.handle_packet(packet, now).map_err(|c| self.fail(c))?,
                    Ok(None) => break,
                    Err(e) => return Err(self.decode_failed(e)),
                }
            }
            if self.read_buf.is_empty() {
                // Release the buffer: an idle connection holds no read memory.
                self.read_buf = BytesMut::new();
            }
        }
        Ok(())
    }

    fn fail(&mut self, c: Close) -> Close {
        self.closed = Some(c.clone());
        c
    }

    fn decode_failed(&mut self, e: DecodeError) -> Close {
        Metrics::add(&self.listener.broker.metrics.protocol_errors, 1);
        let code = e.reason_code();
        tracing::debug!(peer = %self.peer, client_id = self.client_id().unwrap_or("-"), error = %e, "closing: bad packet");
        if !self.is_connected() {
            if code == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION {
                // The version is unknown, so answer in the 3.1.1 form (return code 1).
                let ack = Packet::ConnAck(ConnAck {
                    session_present: false,
                    reason_code: code,
                    properties: ConnAckProperties::default(),
                });
                self.write(&ack, ProtocolVersion::V3_1_1);
            }
            return self.fail(Close::Refused(code));
        }
        self.send_disconnect(code, Some(e.to_string()));
        self.fail(Close::Violation(code))
    }

    fn violation(&mut self, code: ReasonCode, why: &str) -> Close {
        Metrics::add(&self.listener.broker.metrics.protocol_errors, 1);
        tracing::debug!(peer = %self.peer, client_id = self.client_id().unwrap_or("-"), reason = why, "closing: protocol violation");
        self.send_disconnect(code, Some(why.to_string()));
        Close::Violation(code)
    }

    fn handle_packet(&mut self, packet: Packet, now: Instant) -> Result<(), Close> {
        self.last_packet = Stamp::at(now);
        if !self.is_connected() {
            let scram = self.pending.as_ref().is_some_and(|p| p.scram.is_some());
            return match packet {
                Packet::Auth(a) if scram => self.on_enhanced_auth(a),
                Packet::Connect(_) if self.pending.is_some() => {
                    Metrics::add(&self.listener.broker.metrics.protocol_errors, 1);
                    Err(Close::Violation(ReasonCode::PROTOCOL_ERROR))
                }
                Packet::Connect(c) => self.on_connect(*c),
                other => {
                    Metrics::add(&self.listener.broker.metrics.protocol_errors, 1);
                    tracing::debug!(peer = %self.peer, packet = ?other.kind(), "first packet is not CONNECT");
                    Err(Close::Violation(ReasonCode::PROTOCOL_ERROR))
                }
            };
        }
        match packet {
            Packet::Connect(_) => Err(self.violation(ReasonCode::PROTOCOL_ERROR, "[MQTT-3.1.0-2] second CONNECT")),
            Packet::Publish(p) => self.on_publish(p),
            Packet::PubAck(r) => {
                self.on_puback(r);
                Ok(())
            }
            Packet::PubRec(r) => {
                self.on_pubrec(r);
                Ok(())
            }
            Packet::PubRel(r) => {
                self.on_pubrel(r);
                Ok(())
            }
            Packet::PubComp(r) => {
                self.on_pubcomp(r);
                Ok(())
            }
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(u);
                Ok(())
            }
            Packet::PingReq => {
                self.write_current(&Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(d) => self.on_disconnect(d),
            Packet::Auth(_) => Err(self.violation(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-4.12.0-1] AUTH without an authentication method",
            )),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Err(self.violation(ReasonCode::PROTOCOL_ERROR, "server-to-client packet sent by a client"))
            }
        }
    }

    // ------------------------------------------------------------------ CONNECT

    fn refuse(&mut self, version: ProtocolVersion, code: ReasonCode, why: &str) -> Result<(), Close> {
        tracing::debug!(peer = %self.peer, reason = why, code = code.0, "CONNECT refused");
        let mut properties = ConnAckProperties::default();
        if version.is_v5() {
            properties.reason_string = Some(why.to_string());
        }
        let ack = Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: code,
            properties,
        });
        self.write(&ack, version);
        Err(Close::Refused(code))
    }

    fn on_connect(&mut self, c: Connect) -> Result<(), Close> {
        let v = c.protocol;
        let settings = &self.listener.broker.settings;
        let mut assigned = None;
        let client_id: ClientId = if c.client_id.is_empty() {
            if !v.is_v5() && !c.clean_start {
                return self.refuse(
                    v,
                    ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                    "[MQTT-3.1.3-8] empty client id needs clean session",
                );
            }
            let id = format!("auto-{:016x}", rand::random::<u64>());
            assigned = Some(id.clone());
            id.into()
        } else {
            if v == ProtocolVersion::V3_1 && c.client_id.len() > 23 {
                return self.refuse(
                    v,
                    ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                    "MQTT 3.1 client id over 23 bytes",
                );
            }
            c.client_id.as_str().into()
        };
        if let Some(w) = &c.will {
            if w.retain && !settings.retain_available {
                return self.refuse(v, ReasonCode::RETAIN_NOT_SUPPORTED, "retain is not available");
            }
            if tr::qos_in(w.qos) > self.listener.broker.max_qos() {
                return self.refuse(v, ReasonCode::QOS_NOT_SUPPORTED, "will QoS above the maximum QoS");
            }
        }
        if c.properties.authentication_method.is_some() {
            return self.start_enhanced_auth(c, client_id, assigned);
        }
        let chain = self.listener.auth.chain();
        if chain.allows_everyone() {
            // No credentials to check: finish at once, without a trip to the auth runtime.
            let identity = Identity::anonymous(c.username.as_deref());
            return self.finish_connect(c, client_id, assigned, identity, None);
        }
        let mut credentials = Credentials::new(self.listener.transport, self.listener.name.clone());
        credentials.peer = Some(self.peer);
        credentials.client_id = Some(client_id.to_string());
        credentials.username = c.username.clone();
        credentials.password = c.password.as_ref().map(|p| Secret::new(p.to_vec()));
        credentials.peer_certificates = self.peer_certs.take().map(|c| *c).unwrap_or_default();
        self.pending = Some(Box::new(PendingConnect {
            connect: c,
            client_id,
            assigned,
            credentials: Some(credentials),
            scram: None,
        }));
        Ok(())
    }

    /// MQTT 5 enhanced authentication (§4.12): SCRAM-SHA-256 against the verifiers of the
    /// chain's password store. The client-first message is in CONNECT; the server-first goes
    /// out in AUTH (0x18); the client's AUTH carries its proof; CONNACK carries the server's
    /// signature. Other methods are refused with 0x8C.
    fn start_enhanced_auth(&mut self, c: Connect, client_id: ClientId, assigned: Option<String>) -> Result<(), Close> {
        use unigate_auth::scram;
        let v = c.protocol;
        let method = c.properties.authentication_method.clone().unwrap_or_default();
        if method != scram::MECHANISM {
            return self.refuse(
                v,
                ReasonCode::BAD_AUTHENTICATION_METHOD,
                "unsupported authentication method (SCRAM-SHA-256 is supported)",
            );
        }
        let chain = self.listener.auth.chain();
        let first = match c
            .properties
            .authentication_data
            .as_deref()
            .map(scram::parse_client_first)
        {
            Some(Ok(f)) => f,
            Some(Err(e)) => return self.refuse(v, ReasonCode::NOT_AUTHORIZED, &e.to_string()),
            None => return self.refuse(v, ReasonCode::NOT_AUTHORIZED, "SCRAM needs the client-first message"),
        };
        let (authenticator, creds) = match chain.scram(&first.username) {
            None => {
                return self.refuse(
                    v,
                    ReasonCode::BAD_AUTHENTICATION_METHOD,
                    "this listener's auth chain has no SCRAM verifiers",
                )
            }
            Some((_, unigate_auth::ScramLookup::Throttled)) => {
                return self.refuse(v, ReasonCode::NOT_AUTHORIZED, "too many failed attempts")
            }
            Some((name, unigate_auth::ScramLookup::Found(creds))) => (Some(name), creds),
            Some((_, unigate_auth::ScramLookup::Unknown)) => (None, scram::ScramCredentials::decoy(&first.username)),
        };
        let (exchange, server_first) = scram::ServerExchange::start(&first, creds, &scram::server_nonce());
        let mut auth = unigate_mqtt::Auth::new(ReasonCode::CONTINUE_AUTHENTICATION);
        auth.properties.authentication_method = Some(method);
        auth.properties.authentication_data = Some(bytes::Bytes::from(server_first));
        self.write(&Packet::Auth(auth), v);
        self.pending = Some(Box::new(PendingConnect {
            connect: c,
            client_id,
            assigned,
            credentials: None,
            scram: Some(ScramPending {
                exchange,
                username: first.username,
                authenticator,
            }),
        }));
        Ok(())
    }

    /// The client's AUTH during a SCRAM exchange: its proof decides the CONNECT.
    fn on_enhanced_auth(&mut self, a: unigate_mqtt::Auth) -> Result<(), Close> {
        let Some(mut p) = self.pending.take() else {
            return Err(Close::Violation(ReasonCode::PROTOCOL_ERROR));
        };
        let Some(sp) = p.scram.take() else {
            return Err(Close::Violation(ReasonCode::PROTOCOL_ERROR));
        };
        let v = p.connect.protocol;
        let method = p.connect.properties.authentication_method.clone();
        if a.reason_code != ReasonCode::CONTINUE_AUTHENTICATION || a.properties.authentication_method != method {
            return self.refuse(
                v,
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-4.12.0-5] AUTH must continue with the same method",
            );
        }
        let data = a.properties.authentication_data.unwrap_or_default();
        let chain = self.listener.auth.chain();
        match (sp.exchange.finish(&data), &sp.authenticator) {
            (Ok(server_final), Some(name)) => {
                chain.scram_result(name, &sp.username, true);
                self.listener.broker.metrics.count_auth(name, true);
                let identity = Identity {
                    username: Some(Arc::from(sp.username.as_str())),
                    authenticator: name.clone(),
                    ..Identity::default()
                };
                let reply = (method.unwrap_or_default(), bytes::Bytes::from(server_final));
                self.finish_connect(p.connect, p.client_id, p.assigned, identity, Some(reply))
            }
            (result, name) => {
                if let Some(name) = name {
                    chain.scram_result(name, &sp.username, false);
                }
                self.listener
                    .broker
                    .metrics
                    .count_auth(name.as_deref().unwrap_or("chain"), false);
                let why = result
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "SCRAM proof does not verify".into());
                tracing::debug!(peer = %self.peer, user = %sp.username, reason = %why, "SCRAM authentication failed");
                self.refuse(v, ReasonCode::NOT_AUTHORIZED, "authentication failed")
            }
        }
    }

    /// Credentials to check, once per CONNECT: the caller runs the listener's chain on them and
    /// answers with [`MqttConn::handle_auth`].
    pub fn take_auth_request(&mut self) -> Option<Credentials> {
        self.pending.as_mut().and_then(|p| p.credentials.take())
    }

    /// Whether a CONNECT is waiting for the auth chain.
    pub fn is_authenticating(&self) -> bool {
        // During a SCRAM exchange the connection reads on: the client's AUTH is next.
        self.pending.as_ref().is_some_and(|p| p.scram.is_none())
    }

    /// The auth chain answered: finish or refuse the pending CONNECT.
    pub fn handle_auth(&mut self, outcome: Outcome) -> Result<(), Close> {
        let Some(p) = self.pending.take() else { return Ok(()) };
        let v = p.connect.protocol;
        let r = match outcome {
            Outcome::Allowed(identity) => self.finish_connect(p.connect, p.client_id, p.assigned, identity, None),
            Outcome::Denied { reason, .. } => {
                let code = match reason {
                    DenyReason::BadCredentials | DenyReason::Expired => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                    DenyReason::Unavailable => ReasonCode::SERVER_UNAVAILABLE,
                    _ => ReasonCode::NOT_AUTHORIZED,
                };
                self.refuse(v, code, &reason.to_string())
            }
        };
        r.map_err(|c| self.fail(c))
    }

    fn finish_connect(
        &mut self,
        c: Connect,
        client_id: ClientId,
        assigned: Option<String>,
        identity: Identity,
        auth_reply: Option<(String, bytes::Bytes)>,
    ) -> Result<(), Close> {
        let v = c.protocol;
        let settings = &self.listener.broker.settings;
        // An authenticator may bind the client to an id (e.g. a certificate's CN).
        let client_id = identity.client_id.clone().unwrap_or(client_id);
        let username = identity.username.clone();
        let origin = self.origin(&client_id, username.clone());
        let will = match &c.will {
            Some(w) => match tr::will_to_message(w, origin, now_ms()) {
                Ok((msg, delay)) => Some(Box::new(PendingWill {
                    msg,
                    delay,
                    expiry: tr::will_expiry(w),
                })),
                Err(TranslateError::PayloadNotUtf8 | TranslateError::InvalidPayloadFormat(_)) => {
                    return self.refuse(v, ReasonCode::PAYLOAD_FORMAT_INVALID, "will payload is not UTF-8");
                }
                Err(_) => return self.refuse(v, ReasonCode::TOPIC_NAME_INVALID, "invalid will topic"),
            },
            None => None,
        };
        if let Some(w) = &will {
            if !self.listener.broker.authorize(
                &identity,
                &client_id,
                &self.listener.name,
                Request::Publish(&w.msg.topic),
            ) {
                return self.refuse(v, ReasonCode::NOT_AUTHORIZED, "not authorized to publish the will");
            }
        }

        // Session expiry: 3.1.1 clean session 0 never expires; MQTT 5 asks for a number of seconds.
        let asked = if v.is_v5() {
            c.properties.session_expiry_interval.unwrap_or(0)
        } else if c.clean_start {
            0
        } else {
            u32::MAX
        };
        let cap = settings
            .max_session_expiry
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        let expiry = cap.map_or(asked, |cap| asked.min(cap));

        let Some(link) = self.link.clone() else {
            return self.refuse(v, ReasonCode::SERVER_UNAVAILABLE, "connection not ready");
        };
        let limits = &self.listener.limits;
        let att = self.listener.broker.attach_with_will(
            client_id.clone(),
            c.clean_start,
            expiry,
            link,
            QueueLimits {
                max_queued: limits.max_queued_messages,
                drop_policy: settings.queue_drop,
                queue_qos0_offline: settings.queue_qos0_offline,
                persist: true,
            },
            will.as_deref(),
        );

        let keep_alive = settings.server_keep_alive.unwrap_or(c.keep_alive);
        let client_receive_max = c.properties.receive_maximum.unwrap_or(u16::MAX);
        let conn = Connected {
            version: v,
            client_id: client_id.clone(),
            identity: (&identity != anonymous_identity()).then(|| Box::new(identity)),
            session: att.session.clone(),
            generation: att.generation,
            keep_alive,
            will,
            inflight_window: usize::from(client_receive_max.min(limits.max_inflight)),
            client_max_packet: c.properties.maximum_packet_size.unwrap_or(u32::MAX),
            client_alias_max: c.properties.topic_alias_maximum.unwrap_or(0),
            alias_in: None,
            alias_out: None,
            problem_info: c.properties.request_problem_information.unwrap_or(true),
            connect_expiry_zero: asked == 0,
        };
        self.conn = Some(Box::new(conn));

        let mut props = ConnAckProperties::default();
        if v.is_v5() {
            props.receive_maximum = Some(limits.max_incoming_inflight);
            props.maximum_packet_size = Some(limits.max_packet_size);
            props.topic_alias_maximum = Some(settings.topic_alias_maximum);
            props.assigned_client_identifier = assigned;
            if let Some((method, data)) = auth_reply {
                props.authentication_method = Some(method);
                props.authentication_data = Some(data);
            }
            if settings.max_qos < 2 {
                props.maximum_qos = Some(tr::qos_out(self.listener.broker.max_qos()));
            }
            if !settings.retain_available {
                props.retain_available = Some(false);
            }
            if !settings.wildcard_subscriptions {
                props.wildcard_subscription_available = Some(false);
            }
            if !settings.shared_subscriptions {
                props.shared_subscription_available = Some(false);
            }
            if !settings.subscription_identifiers {
                props.subscription_identifiers_available = Some(false);
            }
            if settings.server_keep_alive.is_some() {
                props.server_keep_alive = Some(keep_alive);
            }
            if expiry != asked {
                props.session_expiry_interval = Some(expiry);
            }
        }
        let ack = Packet::ConnAck(ConnAck {
            session_present: att.present,
            reason_code: ReasonCode::SUCCESS,
            properties: props,
        });
        self.write(&ack, v);
        tracing::debug!(peer = %self.peer, client_id = %client_id, version = ?v, present = att.present, "client connected");
        if att.present {
            self.retransmit();
        }
        self.drain();
        Ok(())
    }

    fn origin(&self, client_id: &ClientId, username: Option<Arc<str>>) -> Origin {
        Origin {
            protocol: Some(self.listener.transport),
            client_id: Some(client_id.clone()),
            username,
            peer: Some(self.peer),
            listener: Some(self.listener.name.clone()),
        }
    }

    /// Resends the inflight window after a session is resumed (MQTT 5 §4.4).
    fn retransmit(&mut self) {
        let Some(c) = self.conn.as_ref() else { return };
        let pending: Vec<(u16, OutState)> = {
            let st = c.session.lock();
            st.inflight.in_order().map(|(id, s)| (id, s.clone())).collect()
        };
        let now = now_ms();
        for (id, state) in pending {
            match state {
                OutState::Published(d) => {
                    self.write_publish(Some(id), &d, true, now);
                }
                OutState::Released(_) => {
                    if let Some(pid) = PacketId::new(id) {
                        self.write_current(&Packet::PubRel(pub_resp(pid, ReasonCode::SUCCESS)));
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ PUBLISH in

    fn on_publish(&mut self, p: Publish) -> Result<(), Close> {
        let broker = self.listener.broker.clone();
        Metrics::add(&broker.metrics.messages_received[p.qos as usize], 1);
        let Some(c) = self.conn.as_mut() else {
            return Ok(());
        };
        let v5 = c.version.is_v5();
        if tr::qos_in(p.qos) > broker.max_qos() {
            return Err(self.violation(
                ReasonCode::QOS_NOT_SUPPORTED,
                "[MQTT-3.3.1-4] QoS above the maximum QoS",
            ));
        }
        if !p.properties.subscription_identifiers.is_empty() {
            return Err(self.violation(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-3.3.4-6] PUBLISH from a client with a subscription identifier",
            ));
        }
        if p.retain && !broker.settings.retain_available {
            return Err(self.violation(
                ReasonCode::RETAIN_NOT_SUPPORTED,
                "[MQTT-3.3.1-5] retain is not available",
            ));
        }
        // Topic alias (MQTT 5 §3.3.2.3.4).
        let topic: String = match p.properties.topic_alias {
            None => p.topic.clone(),
            Some(alias) => {
                if alias == 0 || alias > broker.settings.topic_alias_maximum {
                    return Err(self.violation(
                        ReasonCode::TOPIC_ALIAS_INVALID,
                        "[MQTT-3.3.2-9] topic alias out of range",
                    ));
                }
                if p.topic.is_empty() {
                    match c.alias_in.as_ref().and_then(|m| m.get(&alias)) {
                        Some(t) => t.clone(),
                        None => {
                            return Err(self.violation(ReasonCode::PROTOCOL_ERROR, "[MQTT-3.3.4] topic alias not set"))
                        }
                    }
                } else {
                    c.alias_in
                        .get_or_insert_with(Default::default)
                        .insert(alias, p.topic.clone());
                    p.topic.clone()
                }
            }
        };
        let origin = self.origin_of_connected();
        let max_levels = self.listener.limits.max_topic_levels;
        let msg = match tr::publish_to_message(&p, &topic, origin, now_ms()) {
            Ok(m) if Broker::topic_levels_ok(&m.topic, max_levels) => m,
            Ok(_) => return self.reject_publish(&p, ReasonCode::TOPIC_NAME_INVALID, "too many topic levels"),
            Err(TranslateError::PayloadNotUtf8 | TranslateError::InvalidPayloadFormat(_)) => {
                return self.reject_publish(&p, ReasonCode::PAYLOAD_FORMAT_INVALID, "payload is not UTF-8")
            }
            Err(TranslateError::InvalidResponseTopic(_)) => {
                return Err(self.violation(ReasonCode::PROTOCOL_ERROR, "[MQTT-3.3.2-14] invalid response topic"))
            }
            Err(e) => return self.reject_publish(&p, ReasonCode::TOPIC_NAME_INVALID, &e.to_string()),
        };
        if !self.authorized(Request::Publish(&msg.topic)) {
            // A denied message never reaches a subscriber. MQTT 3.1.1 cannot be told: it is
            // dropped (and acknowledged, so the client does not resend it forever), or the
            // connection is closed (`mqtt.denied_publish_v3 = "disconnect"`).
            if !v5 {
                if self.listener.broker.settings().denied_publish_v3 == crate::config::DeniedPublishV3::Disconnect {
                    tracing::debug!(peer = %self.peer, topic = %msg.topic, "closing: PUBLISH refused by the ACL");
                    return Err(Close::Violation(ReasonCode::NOT_AUTHORIZED));
                }
                match (p.qos, p.packet_id) {
                    (mqtt::QoS::AtLeastOnce, Some(pid)) => {
                        self.write_current(&Packet::PubAck(pub_resp(pid, ReasonCode::SUCCESS)))
                    }
                    (mqtt::QoS::ExactlyOnce, Some(pid)) => {
                        self.write_current(&Packet::PubRec(pub_resp(pid, ReasonCode::SUCCESS)))
                    }
                    _ => {}
                }
                return Ok(());
            }
            return self.reject_publish(&p, ReasonCode::NOT_AUTHORIZED, "not authorized");
        }
        match (p.qos, p.packet_id) {
            (mqtt::QoS::AtMostOnce, _) => {
                self.route(msg);
            }
            (mqtt::QoS::AtLeastOnce, Some(pid)) => {
                let mut batch = Batch::default();
                let n = self.route_into(msg, &mut batch);
                let code = if n == 0 && v5 {
                    ReasonCode::NO_MATCHING_SUBSCRIBERS
                } else {
                    ReasonCode::SUCCESS
                };
                // Acknowledged once durably queued for every durable session it went to.
                let ticket = self.submit(batch);
                self.reply(ticket, Packet::PubAck(pub_resp(pid, code)));
            }
            (mqtt::QoS::ExactlyOnce, Some(pid)) => {
                let max_in = usize::from(self.listener.limits.max_incoming_inflight);
                let mut batch = Batch::default();
                let fresh = {
                    let Some(c) = self.conn.as_ref() else {
                        return Ok(());
                    };
                    let mut st = c.session.lock();
                    if st.incoming_qos2.contains(pid.get()) {
                        false
                    } else if st.incoming_qos2.len() >= max_in {
                        drop(st);
                        return Err(self.violation(
                            ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                            "[MQTT-3.3.4-9] more QoS 2 messages in flight than Receive Maximum",
                        ));
                    } else {
                        st.incoming_qos2.insert(pid.get());
                        if st.durable {
                            // Stored with the deliveries, atomically: after a crash a resend of
                            // this id is still recognised and not routed twice.
                            batch.ops.push(Op::PutIncomingQos2 {
                                serial: c.session.serial,
                                packet_id: pid.get(),
                            });
                        }
                        true
                    }
                };
                // A retransmitted QoS 2 PUBLISH (same id before PUBREL) is not routed twice.
                let code = if fresh {
                    let n = self.route_into(msg, &mut batch);
                    if n == 0 && v5 {
                        ReasonCode::NO_MATCHING_SUBSCRIBERS
                    } else {
                        ReasonCode::SUCCESS
                    }
                } else {
                    ReasonCode::SUCCESS
                };
                let ticket = self.submit(batch);
                self.reply(ticket, Packet::PubRec(pub_resp(pid, code)));
            }
            (_, None) => {
                return Err(self.violation(ReasonCode::MALFORMED_PACKET, "[MQTT-2.2.1-2] QoS > 0 without packet id"))
            }
        }
        Ok(())
    }

    /// Routes a message from this client; notes congestion so that the caller pauses reading.
    fn route(&mut self, msg: Message) -> usize {
        let (n, congested) = self.listener.broker.publish_from(msg, self.link.as_ref());
        self.congested |= congested;
        n
    }

    /// [`MqttConn::route`], collecting the store operations in `batch` (see
    /// [`MqttConn::submit`]).
    fn route_into(&mut self, msg: Message, batch: &mut Batch) -> usize {
        let (n, congested) = self.listener.broker.route(msg, self.link.as_ref(), batch);
        self.congested |= congested;
        n
    }

    /// For a durable session: the ticket an acknowledgement of a change to its record
    /// (SUBACK, UNSUBACK) waits for, so that a subscription acknowledged is one a crash keeps.
    fn record_barrier(&mut self, session: &Session) -> Option<u64> {
        if !session.lock().durable {
            return None;
        }
        let link = self.link.clone()?;
        self.next_ticket(|broker, ticket| broker.persist_barrier((link, ticket)))
    }

    /// Hands the next store ticket to `submit`; the ticket, when the store took it.
    fn next_ticket(&mut self, submit: impl FnOnce(&Broker, u64) -> bool) -> Option<u64> {
        let acks = self.acks.get_or_insert_with(Default::default);
        let ticket = acks.ticket + 1;
        submit(&self.listener.broker, ticket).then(|| {
            acks.ticket = ticket;
            ticket
        })
    }

    /// Submits `batch` to the store; returns the ticket an acknowledgement must wait for, or
    /// `None` when there is nothing to wait for.
    fn submit(&mut self, batch: Batch) -> Option<u64> {
        if batch.is_empty() {
            return None;
        }
        let Some(link) = self.link.clone() else {
            self.listener.broker.persist(batch, None);
            return None;
        };
        self.next_ticket(|broker, ticket| broker.persist(batch, Some((link, ticket))))
    }

    /// Writes an acknowledgement now, or holds it until `ticket` is durable (or until the
    /// acknowledgements held before it go, to keep their order).
    fn reply(&mut self, ticket: Option<u64>, packet: Packet) {
        match (ticket, &mut self.acks) {
            (Some(t), acks) => acks.get_or_insert_with(Default::default).held.push_back((t, packet)),
            (None, Some(acks)) if !acks.held.is_empty() => {
                let t = acks.ticket;
                acks.held.push_back((t, packet));
            }
            (None, _) => self.write_current(&packet),
        }
    }

    /// The store committed everything up to `ticket` (`ok`), or failed: writes the
    /// acknowledgements that waited for it, or closes the connection (unspecified error, MQTT 5
    /// 0x80) so that the client sends its unacknowledged messages again later.
    pub fn handle_stored(&mut self, ticket: u64, ok: bool) -> Result<(), Close> {
        if !ok {
            if let Some(acks) = self.acks.as_mut() {
                acks.held.clear();
            }
            tracing::warn!(client_id = self.client_id().unwrap_or("-"), "closing: the store failed");
            self.send_disconnect(ReasonCode::UNSPECIFIED_ERROR, Some("storage failure".into()));
            return Err(self.fail(Close::Violation(ReasonCode::UNSPECIFIED_ERROR)));
        }
        while let Some(packet) = self.acks.as_mut().and_then(|a| a.pop_done(ticket)) {
            self.write_current(&packet);
        }
        Ok(())
    }

    /// Whether a publish since the last call hit a congested subscriber (back-pressure: stop
    /// reading until [`SessionLink::resume`]). Packets behind it wait in the read buffer; feed
    /// an empty slice to [`MqttConn::handle_bytes`] to go on with them.
    pub fn take_congested(&mut self) -> bool {
        std::mem::take(&mut self.congested)
    }

    /// Whether a publish hit a congested subscriber and input processing stopped.
    pub fn is_congested(&self) -> bool {
        self.congested
    }

    /// Whether undecoded bytes wait in the read buffer.
    pub fn has_buffered_input(&self) -> bool {
        !self.read_buf.is_empty()
    }

    /// Checks a request against the client's ACL (token rules first, then the configured ACL).
    fn authorized(&self, request: Request<'_>) -> bool {
        match self.conn.as_ref() {
            Some(c) => self
                .listener
                .broker
                .authorize(c.identity(), &c.client_id, &self.listener.name, request),
            None => false,
        }
    }

    fn origin_of_connected(&self) -> Origin {
        match self.conn.as_ref() {
            Some(c) => self.origin(&c.client_id, c.identity().username.clone()),
            None => Origin::default(),
        }
    }

    /// Refuses one PUBLISH: an error code in PUBACK/PUBREC on MQTT 5; closing on 3.1.1, which
    /// has no way to say no (MQTT 3.1.1 §4.8 leaves only closing).
    fn reject_publish(&mut self, p: &Publish, code: ReasonCode, why: &str) -> Result<(), Close> {
        tracing::debug!(peer = %self.peer, client_id = self.client_id().unwrap_or("-"), reason = why, "PUBLISH refused");
        if !self.is_v5() {
            return Err(Close::Violation(code));
        }
        match (p.qos, p.packet_id) {
            (mqtt::QoS::AtLeastOnce, Some(pid)) => {
                self.write_current(&Packet::PubAck(self.resp_with_reason(pid, code, why)))
            }
            (mqtt::QoS::ExactlyOnce, Some(pid)) => {
                self.write_current(&Packet::PubRec(self.resp_with_reason(pid, code, why)))
            }
            _ => {}
        }
        Ok(())
    }

    fn resp_with_reason(&self, pid: PacketId, code: ReasonCode, why: &str) -> PubResp {
        let mut r = pub_resp(pid, code);
        if self.conn.as_ref().is_some_and(|c| c.problem_info) {
            r.properties.reason_string = Some(why.to_string());
        }
        r
    }

    // ------------------------------------------------------------------ acks

    fn on_puback(&mut self, r: PubResp) {
        let Some(c) = self.conn.as_ref() else { return };
        let removed = {
            let mut st = c.session.lock();
            match st.inflight.state(r.packet_id.get()) {
                Some(OutState::Published(d)) if d.qos == QoS::AtLeastOnce => st.inflight.remove(r.packet_id.get()),
                _ => None,
            }
        };
        match removed {
            None => tracing::debug!(client_id = %c.client_id, id = r.packet_id.get(), "PUBACK for unknown packet id"),
            Some(OutState::Published(Delivery { stored: Some(s), .. })) => {
                self.listener.broker.persist_ops(vec![Op::Remove {
                    serial: c.session.serial,
                    seq: s.seq,
                }]);
            }
            Some(_) => {}
        }
        self.drain();
    }

    fn on_pubrec(&mut self, r: PubResp) {
        let Some(c) = self.conn.as_ref() else { return };
        let id = r.packet_id.get();
        let mut ops = Vec::new();
        let serial = c.session.serial;
        let known = {
            let mut st = c.session.lock();
            match st.inflight.state(id) {
                Some(OutState::Published(d)) if d.qos == QoS::ExactlyOnce => {
                    let seq = d.stored.map(|s| s.seq);
                    if r.reason_code.is_error() {
                        // The receiver refused it: the flow ends here (MQTT 5 §4.3.3).
                        st.inflight.remove(id);
                        ops.extend(seq.map(|seq| Op::Remove { serial, seq }));
                        None
                    } else {
                        st.inflight.set(id, OutState::Released(seq));
                        // The message is the receiver's now: only the packet id stays stored.
                        ops.extend(seq.map(|seq| Op::Release { serial, seq }));
                        Some(true)
                    }
                }
                Some(OutState::Released(_)) => Some(true),
                _ => Some(false),
            }
        };
        // PUBREL only once the release is durable: after a PUBREL we must never send the
        // PUBLISH again (the receiver has forgotten its id and would deliver it twice).
        let mut batch = Batch::default();
        batch.ops = ops;
        let ticket = self.submit(batch);
        match known {
            Some(true) => self.reply(ticket, Packet::PubRel(pub_resp(r.packet_id, ReasonCode::SUCCESS))),
            Some(false) => self.write_current(&Packet::PubRel(pub_resp(
                r.packet_id,
                ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            ))),
            None => {
                self.drain();
            }
        }
    }

    fn on_pubcomp(&mut self, r: PubResp) {
        let Some(c) = self.conn.as_ref() else { return };
        let done = {
            let mut st = c.session.lock();
            match st.inflight.state(r.packet_id.get()) {
                Some(OutState::Released(seq)) => {
                    let seq = *seq;
                    st.inflight.remove(r.packet_id.get());
                    seq
                }
                _ => None,
            }
        };
        if let Some(seq) = done {
            self.listener.broker.persist_ops(vec![Op::Remove {
                serial: c.session.serial,
                seq,
            }]);
        }
        self.drain();
    }

    fn on_pubrel(&mut self, r: PubResp) {
        let Some(c) = self.conn.as_ref() else { return };
        let mut batch = Batch::default();
        let known = {
            let mut st = c.session.lock();
            let known = st.incoming_qos2.remove(r.packet_id.get());
            if known && st.durable {
                batch.ops.push(Op::DeleteIncomingQos2 {
                    serial: c.session.serial,
                    packet_id: r.packet_id.get(),
                });
            }
            known
        };
        let code = if known {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        };
        // PUBCOMP waits until the id is forgotten on disk too: the client may reuse it right
        // after, and a stale stored id would make us drop that new message as a resend.
        let ticket = self.submit(batch);
        self.reply(ticket, Packet::PubComp(pub_resp(r.packet_id, code)));
    }

    // ------------------------------------------------------------------ SUBSCRIBE

    fn on_subscribe(&mut self, s: Subscribe) -> Result<(), Close> {
        let broker = self.listener.broker.clone();
        let Some(c) = self.conn.as_ref() else {
            return Ok(());
        };
        let session = c.session.clone();
        let v5 = c.version.is_v5();
        if s.properties.subscription_identifier.is_some() && !broker.settings.subscription_identifiers {
            return Err(self.violation(
                ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
                "subscription identifiers are not supported",
            ));
        }
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut retained: Vec<(TopicFilter, SubOptions)> = Vec::new();
        for (raw, o) in &s.filters {
            let filter = match TopicFilter::new(raw) {
                Ok(f) if f.level_count() <= self.listener.limits.max_topic_levels => f,
                _ => {
                    codes.push(ReasonCode::TOPIC_FILTER_INVALID);
                    continue;
                }
            };
            if filter.share_group().is_some() && o.no_local {
                return Err(self.violation(
                    ReasonCode::PROTOCOL_ERROR,
                    "[MQTT-3.8.3-4] no local on a shared subscription",
                ));
            }
            match broker.check_filter(&filter) {
                Err(FilterRefusal::SharedNotSupported) => {
                    codes.push(ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED);
                    continue;
                }
                Err(FilterRefusal::WildcardsNotSupported) => {
                    codes.push(ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED);
                    continue;
                }
                Ok(()) => {}
            }
            if !self.authorized(Request::Subscribe(&filter)) {
                codes.push(ReasonCode::NOT_AUTHORIZED);
                continue;
            }
            let granted = tr::qos_in(o.qos).min(broker.max_qos());
            let opts = SubOptions {
                qos: granted,
                no_local: v5 && o.no_local,
                retain_as_published: v5 && o.retain_as_published,
                sub_id: s.properties.subscription_identifier,
            };
            let is_new = broker.subscribe(&session, &filter, opts);
            codes.push(ReasonCode(granted.as_u8()));
            let send_retained = match o.retain_handling {
                mqtt::RetainHandling::SendAtSubscribe => true,
                mqtt::RetainHandling::SendAtSubscribeIfNew => is_new,
                mqtt::RetainHandling::DoNotSend => false,
            };
            // Retained messages are not sent to shared subscriptions (MQTT 5 §4.8.2).
            if send_retained && filter.share_group().is_none() {
                retained.push((filter, opts));
            }
        }
        let ack = Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            reason_codes: codes,
            properties: AckProperties::default(),
        });
        let ticket = self.record_barrier(&session);
        self.reply(ticket, ack);
        for (filter, opts) in retained {
            broker.deliver_retained(&session, &filter, opts, |topic| {
                self.authorized(Request::RetainedRead(topic))
            });
        }
        self.drain();
        Ok(())
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe) {
        let broker = self.listener.broker.clone();
        let Some(c) = self.conn.as_ref() else { return };
        let session = c.session.clone();
        let codes = u
            .filters
            .iter()
            .map(|raw| match TopicFilter::new(raw) {
                Ok(f) => {
                    if broker.unsubscribe(&session, &f) {
                        ReasonCode::SUCCESS
                    } else {
                        ReasonCode::NO_SUBSCRIPTION_EXISTED
                    }
                }
                Err(_) => ReasonCode::TOPIC_FILTER_INVALID,
            })
            .collect();
        let ack = Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            reason_codes: codes,
            properties: AckProperties::default(),
        });
        let ticket = self.record_barrier(&session);
        self.reply(ticket, ack);
    }

    // ------------------------------------------------------------------ DISCONNECT

    fn on_disconnect(&mut self, d: Disconnect) -> Result<(), Close> {
        if let (Some(c), Some(new_expiry)) = (self.conn.as_ref(), d.properties.session_expiry_interval) {
            if c.connect_expiry_zero && new_expiry != 0 {
                return Err(self.violation(
                    ReasonCode::PROTOCOL_ERROR,
                    "[MQTT-3.14.2-2] session expiry raised from 0 on DISCONNECT",
                ));
            }
            let cap = self
                .listener
                .broker
                .settings
                .max_session_expiry
                .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
            c.session.lock().expiry_interval = cap.map_or(new_expiry, |cap| new_expiry.min(cap));
        }
        let with_will = d.reason_code == ReasonCode::DISCONNECT_WITH_WILL;
        Err(self.fail(Close::ClientDisconnected { with_will }))
    }

    /// The server closes the connection: a DISCONNECT with `reason` for MQTT 5 clients.
    pub fn handle_kick(&mut self, reason: KickReason) -> Close {
        let code = match reason {
            KickReason::SessionTakenOver => ReasonCode::SESSION_TAKEN_OVER,
            KickReason::ServerShuttingDown => ReasonCode::SERVER_SHUTTING_DOWN,
            KickReason::Administrative => ReasonCode::ADMINISTRATIVE_ACTION,
        };
        self.send_disconnect(code, None);
        self.fail(Close::Kicked(reason))
    }

    /// Keep alive or connect timeout elapsed.
    pub fn handle_timeout(&mut self, close: Close) -> Close {
        if close == Close::KeepAliveTimeout {
            self.send_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT, None);
        }
        self.fail(close)
    }

    fn send_disconnect(&mut self, code: ReasonCode, why: Option<String>) {
        if !self.is_v5() {
            return;
        }
        let problem_info = self.conn.as_ref().is_some_and(|c| c.problem_info);
        let d = Packet::Disconnect(Disconnect {
            reason_code: code,
            properties: DisconnectProperties {
                reason_string: why.filter(|_| problem_info),
                ..Default::default()
            },
        });
        self.write_current(&d);
    }

    /// The socket is closing: detaches the session and decides on the will. Returns the timers
    /// the caller must schedule.
    pub fn handle_closed(&mut self, close: &Close) -> Option<(Arc<Session>, u64, Detached)> {
        let c = self.conn.take()?;
        let publish_will = close.publishes_will()
            && (!self.listener.broker.is_shutting_down() || close != &Close::Kicked(KickReason::ServerShuttingDown));
        let will = if publish_will { c.will.map(|w| *w) } else { None };
        tracing::debug!(client_id = %c.client_id, reason = ?close, "client disconnected");
        let detached = self.listener.broker.detach(&c.session, c.generation, will);
        Some((c.session, c.generation, detached))
    }

    // ------------------------------------------------------------------ output

    /// Moves deliveries from the session queue into `out`, within the inflight window and
    /// [`HIGH_WATER`]. Returns true when more are waiting (call again after yielding).
    pub fn drain(&mut self) -> bool {
        let Some(c) = self.conn.as_ref() else {
            return false;
        };
        if self.out.len() >= HIGH_WATER {
            return false;
        }
        let now = now_ms();
        let window = c.inflight_window;
        let mut batch: Vec<(Option<u16>, Delivery)> = Vec::new();
        let mut expired: Vec<Op> = Vec::new();
        let resume;
        let more = {
            let mut st = c.session.lock();
            if st.generation != c.generation {
                return false;
            }
            st.wake_pending = false;
            let queued_before = st.queue.len();
            while batch.len() < DRAIN_BATCH {
                let Some(front) = st.queue.front() else { break };
                if front.msg.is_expired(now) {
                    if let Some(Delivery { stored: Some(s), .. }) = st.pop() {
                        expired.push(Op::Remove {
                            serial: c.session.serial,
                            seq: s.seq,
                        });
                    }
                    Metrics::add(&self.listener.broker.metrics.dropped_expired, 1);
                    continue;
                }
                if front.qos != QoS::AtMostOnce && st.inflight.len() >= window {
                    break;
                }
                if front.commit.as_ref().is_some_and(|c| !c.is_done()) {
                    // Not durable yet: the commit wakes us.
                    break;
                }
                let Some(d) = st.pop() else { break };
                let id = if d.qos == QoS::AtMostOnce {
                    None
                } else if let Some(stored) = d.stored {
                    // A stored delivery's packet id is fixed by its seq; if an old message
                    // still holds that id, wait as for a full window.
                    let id = stored.packet_id();
                    if st.inflight.insert_with_id(id, OutState::Published(d.clone())) {
                        Some(id)
                    } else {
                        st.unpop(d);
                        break;
                    }
                } else {
                    match st.inflight.insert(OutState::Published(d.clone())) {
                        Some(id) => Some(id),
                        None => {
                            st.unpop(d);
                            break;
                        }
                    }
                };
                batch.push((id, d));
            }
            if st.queue.is_empty() {
                st.drops_in_episode = 0;
            }
            if st.queue.len() < queued_before || !st.last_progress.is_set() {
                st.last_progress = Stamp::now();
            }
            // Publishers paused for us go on once the queue is down to half the threshold.
            resume = st.take_waiters_below(self.listener.broker.backpressure().threshold / 2);
            batch.len() == DRAIN_BATCH && !st.queue.is_empty()
        };
        for w in resume {
            w.resume();
        }
        self.listener.broker.persist_ops(expired);
        let mut dropped = false;
        for (id, d) in &batch {
            dropped |= !self.write_publish(*id, d, false, now);
        }
        // A message dropped for size freed its window slot: look at the queue again.
        more || dropped
    }

    /// Writes one PUBLISH to the client. Returns false when it was dropped for the client's
    /// maximum packet size.
    fn write_publish(&mut self, id: Option<u16>, d: &Delivery, dup: bool, now: u64) -> bool {
        let Some(c) = self.conn.as_mut() else { return true };
        let mut p = tr::message_to_publish(&d.msg, d.qos, d.retain, now);
        // A delivery loaded from the store may have been sent before the restart.
        p.dup = dup || d.stored.is_some_and(|s| s.recovered);
        p.packet_id = id.and_then(PacketId::new);
        if c.version.is_v5() {
            p.properties.subscription_identifiers = d.sub_ids.to_vec();
        }
        let mut new_alias = None;
        if c.version.is_v5() && c.client_alias_max > 0 {
            let topic = d.msg.topic.as_str();
            let used = c.alias_out.as_ref().map_or(0, |m| m.len());
            if let Some(alias) = c.alias_out.as_ref().and_then(|m| m.get(topic)) {
                p.properties.topic_alias = Some(*alias);
                p.topic.clear();
            } else if used < usize::from(c.client_alias_max) {
                let alias = used as u16 + 1;
                p.properties.topic_alias = Some(alias);
                new_alias = Some(alias);
            }
        }
        let packet = Packet::Publish(p);
        let version = c.version;
        if mqtt::encoded_len(&packet, version) > c.client_max_packet as usize {
            // Too large for the client: discard as if delivered (MQTT 5 §3.1.2.11.4). An alias
            // it would have set is not recorded: the client never saw it.
            Metrics::add(&self.listener.broker.metrics.dropped_too_large, 1);
            if let Some(id) = id {
                c.session.lock().inflight.remove(id);
                if let Some(s) = d.stored {
                    self.listener.broker.persist_ops(vec![Op::Remove {
                        serial: c.session.serial,
                        seq: s.seq,
                    }]);
                }
            }
            return false;
        }
        if let Some(alias) = new_alias {
            c.alias_out
                .get_or_insert_with(Default::default)
                .insert(Arc::from(d.msg.topic.as_str()), alias);
        }
        Metrics::add(&self.listener.broker.metrics.messages_sent[d.qos.as_u8() as usize], 1);
        self.write(&packet, version);
        true
    }

    fn write_current(&mut self, packet: &Packet) {
        let v = self.version().unwrap_or(ProtocolVersion::V3_1_1);
        self.write(packet, v);
    }

    fn write(&mut self, packet: &Packet, version: ProtocolVersion) {
        if let Err(e) = mqtt::encode(packet, version, &mut self.out) {
            tracing::warn!(peer = %self.peer, error = %e, "cannot encode packet");
        }
    }
}

fn pub_resp(packet_id: PacketId, reason_code: ReasonCode) -> PubResp {
    PubResp {
        packet_id,
        reason_code,
        properties: AckProperties::default(),
    }
}

/// The identity of an anonymous client without a user name.
fn anonymous_identity() -> &'static Identity {
    static ANONYMOUS: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
    ANONYMOUS.get_or_init(|| Identity::anonymous(None))
}

impl Connected {
    fn identity(&self) -> &Identity {
        self.identity.as_deref().unwrap_or_else(|| anonymous_identity())
    }
}
