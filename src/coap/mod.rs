//! The CoAP gateway: `[[listeners]]` with `protocol = "coap"`.
//!
//! One actor per listener owns the UDP socket and, per remote address, the sans-IO message
//! layer of `unigate-coap` (dedup, retransmission, block-wise). Above it sits the gateway:
//! EMQX-compatible pub/sub (`/ps/{topic}`), connection mode (`/mqtt/connection`) and observers,
//! which are broker sessions like any MQTT client's (see [`listener`]).

pub mod dtls;
pub mod listener;
pub mod transport;

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// Receive buffer asked for on CoAP sockets: a burst of datagrams (many devices at once, or
/// many observers acknowledging one publish) must not overflow the kernel's default ~208 KiB
/// while the listener is busy. The kernel caps it at `net.core.rmem_max`.
const RECV_BUFFER: usize = 4 * 1024 * 1024;
/// Send buffer asked for (notification bursts), capped at `net.core.wmem_max`.
const SEND_BUFFER: usize = 1024 * 1024;

/// Binds a CoAP listener's UDP socket with large buffers.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Best effort: a smaller buffer still works, it only drops sooner under bursts.
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    let _ = socket.set_send_buffer_size(SEND_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Which QoS a request gets when its query names none (EMQX's `publish_qos` /
/// `subscribe_qos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultQos {
    /// From the message type: a CON request gets QoS 1 (a publish is acknowledged only after
    /// it was routed), a NON request QoS 0.
    #[default]
    Coap,
    /// Always QoS 0.
    Qos0,
    /// Always QoS 1.
    Qos1,
    /// Always QoS 2 (towards MQTT subscribers; CoAP itself has no exactly-once).
    Qos2,
}

/// How notifications are sent (EMQX's `notify_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyType {
    /// CON for messages delivered with QoS 1 or 2, NON for QoS 0.
    #[default]
    Qos,
    /// Always CON.
    Con,
    /// Always NON (still one CON every `con_notify_interval`, RFC 7641 §4.5).
    Non,
}

/// Whether notifications carry the message's topic as Location-Path options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyTopic {
    /// Only for wildcard observations, where the client cannot know it otherwise.
    #[default]
    Wildcard,
    /// On every notification.
    Always,
    /// Never.
    Never,
}

/// `[coap]`: settings of every CoAP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoapConfig {
    /// Initial retransmission timeout of a CON message (RFC 7252 ACK_TIMEOUT). NB-IoT links
    /// with long round trips want more than the default.
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// RFC 7252 ACK_RANDOM_FACTOR (at least 1.0).
    pub ack_random_factor: f64,
    /// RFC 7252 MAX_RETRANSMIT.
    pub max_retransmit: u32,
    /// How long a message id is remembered to answer duplicates (RFC 7252 EXCHANGE_LIFETIME).
    #[serde(with = "humantime_serde")]
    pub exchange_lifetime: Duration,
    /// Block size for large responses and notifications (16 to 1024, a power of two).
    pub block_size: usize,
    /// Largest request body (reassembled Block1) and response body; larger requests get 4.13.
    pub max_body: usize,
    /// Clients must open a connection (`POST /mqtt/connection`) and send `clientid` and `token`
    /// with every request (EMQX's `connection_required`).
    pub connection_required: bool,
    /// A connection-mode client that sends nothing (a heartbeat is `PUT /mqtt/connection`) for
    /// this long is disconnected.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Prefixed to every topic CoAP clients publish or observe, and taken off the topics
    /// they are notified of.
    pub mount_point: String,
    /// QoS of a publish whose query has no `qos`.
    pub publish_qos: DefaultQos,
    /// QoS of an observation whose query has no `qos`.
    pub subscribe_qos: DefaultQos,
    /// CON or NON notifications.
    pub notify_type: NotifyType,
    /// Send a notification as CON at least this often even when NON would do, to find
    /// observers that are gone (RFC 7641 §4.5).
    #[serde(with = "humantime_serde")]
    pub con_notify_interval: Duration,
    /// Whether notifications carry their topic as Location-Path.
    pub notify_topic: NotifyTopic,
    /// Messages waiting behind the CON notification in flight, per client; the oldest is
    /// dropped when full.
    pub max_queued_notifications: usize,
    /// Observations per client at most.
    pub max_observations: usize,
    /// State of a remote address that has sent nothing and owns nothing for this long is
    /// dropped.
    #[serde(with = "humantime_serde")]
    pub peer_idle_timeout: Duration,
    /// A connectionless client that sends credentials in each request is authenticated once and
    /// remembered for this long ("0s": every request runs the auth chain).
    #[serde(with = "humantime_serde")]
    pub auth_cache: Duration,
}

impl Default for CoapConfig {
    fn default() -> Self {
        CoapConfig {
            ack_timeout: Duration::from_secs(2),
            ack_random_factor: 1.5,
            max_retransmit: 4,
            exchange_lifetime: Duration::from_secs(247),
            block_size: 1024,
            max_body: 64 * 1024,
            connection_required: false,
            heartbeat: Duration::from_secs(30),
            mount_point: String::new(),
            publish_qos: DefaultQos::Coap,
            subscribe_qos: DefaultQos::Coap,
            notify_type: NotifyType::Qos,
            con_notify_interval: Duration::from_secs(24 * 3600),
            notify_topic: NotifyTopic::Wildcard,
            max_queued_notifications: 256,
            max_observations: 16,
            peer_idle_timeout: Duration::from_secs(300),
            auth_cache: Duration::from_secs(300),
        }
    }
}

impl CoapConfig {
    /// Checks values serde cannot: (key, problem).
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.ack_timeout.is_zero() {
            return Err(("ack_timeout", "must be more than 0"));
        }
        if !(self.ack_random_factor >= 1.0 && self.ack_random_factor <= 10.0) {
            return Err(("ack_random_factor", "must be between 1.0 and 10.0"));
        }
        if self.max_retransmit > 20 {
            return Err(("max_retransmit", "must be at most 20"));
        }
        if !self.block_size.is_power_of_two() || !(16..=1024).contains(&self.block_size) {
            return Err(("block_size", "must be a power of two from 16 to 1024"));
        }
        if !(16..=16 * 1024 * 1024).contains(&self.max_body) {
            return Err(("max_body", "must be between 16 bytes and 16 MiB"));
        }
        if self.heartbeat.is_zero() {
            return Err(("heartbeat", "must be more than 0"));
        }
        if self.mount_point.contains(['+', '#', '\0']) {
            return Err(("mount_point", "must not contain wildcards or U+0000"));
        }
        if self.max_queued_notifications == 0 || self.max_observations == 0 {
            return Err((
                "max_queued_notifications",
                "queue and observation limits must be at least 1",
            ));
        }
        if self.peer_idle_timeout.is_zero() {
            return Err(("peer_idle_timeout", "must be more than 0"));
        }
        Ok(())
    }

    /// The message-layer settings.
    pub fn message_layer(&self) -> unigate_coap::Config {
        unigate_coap::Config {
            ack_timeout: self.ack_timeout,
            ack_random_factor: self.ack_random_factor,
            max_retransmit: self.max_retransmit,
            exchange_lifetime: self.exchange_lifetime,
            block_size: self.block_size,
            max_body: self.max_body,
            ..unigate_coap::Config::default()
        }
    }
}
