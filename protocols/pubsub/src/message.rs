//! The message every protocol translates to: topic, payload, QoS, retain flag, MQTT 5 properties,
//! where it came from, and when it expires.
//!
//! Time is a parameter: expiry is an absolute deadline in milliseconds since the UNIX epoch, and
//! every method that needs the time takes `now_ms` from the caller, so that the crate reads no
//! clock and tests run on a simulated one.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::qos::QoS;
use crate::topic::Topic;

/// MQTT 5 Payload Format Indicator (§3.3.2.3.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PayloadFormat {
    /// 0: unspecified bytes (the default when absent).
    #[default]
    Unspecified,
    /// 1: UTF-8 encoded character data.
    Utf8,
}

impl PayloadFormat {
    /// The indicator byte on the MQTT wire (0 or 1).
    #[must_use]
    pub const fn as_u8(self) -> u8 {
        match self {
            PayloadFormat::Unspecified => 0,
            PayloadFormat::Utf8 => 1,
        }
    }

    /// The format for an indicator byte; `None` for values other than 0 and 1, which MQTT 5 makes a
    /// protocol error (reason 0x81, the codec's to report).
    #[must_use]
    pub const fn from_u8(value: u8) -> Option<PayloadFormat> {
        match value {
            0 => Some(PayloadFormat::Unspecified),
            1 => Some(PayloadFormat::Utf8),
            _ => None,
        }
    }
}

/// The application properties a message carries: MQTT 5's set, the richest of our protocols
/// (§3.3.2.3); the others map onto it.
///
/// A CoAP Content-Format becomes a `content_type` (its media type, e.g. `application/json`), and
/// so does an HTTP Content-Type. MQTT 3.1.1 has none of these. Message expiry is not here but in
/// [`Message::expires_at`], as an absolute deadline; topic aliases and subscription identifiers
/// belong to one connection, not to the message, and stay in the MQTT session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Properties {
    /// Payload Format Indicator (§3.3.2.3.2); `None` when absent.
    pub payload_format: Option<PayloadFormat>,
    /// Content Type (§3.3.2.3.9): a MIME type such as `application/json`.
    pub content_type: Option<String>,
    /// Response Topic (§3.3.2.3.5), for request/response.
    pub response_topic: Option<Topic>,
    /// Correlation Data (§3.3.2.3.6), opaque to the broker.
    pub correlation_data: Option<Bytes>,
    /// User Properties (§3.3.2.3.7), in order; a name may repeat.
    pub user_properties: Vec<(String, String)>,
}

impl Properties {
    /// Whether no property is set (as for every MQTT 3.1.1 message).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.payload_format.is_none()
            && self.content_type.is_none()
            && self.response_topic.is_none()
            && self.correlation_data.is_none()
            && self.user_properties.is_empty()
    }
}

/// The protocol a message or a client came in through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// MQTT 3.1, 3.1.1 or 5 over TCP or TLS.
    Mqtt,
    /// MQTT over WebSocket.
    MqttWs,
    /// CoAP over UDP or DTLS (the `/ps` publish/subscribe gateway).
    Coap,
    /// LwM2M over CoAP(/DTLS): registrations, notifications, responses.
    Lwm2m,
    /// HTTP API (publish endpoints, SSE, WebSocket other than MQTT).
    Http,
    /// The broker itself (`$SYS` topics, will messages published on a client's behalf, the
    /// management API).
    System,
}

impl Protocol {
    /// The lowercase name, as used in configuration (`protocol = "mqtt-ws"`), logs and metrics.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Mqtt => "mqtt",
            Protocol::MqttWs => "mqtt-ws",
            Protocol::Coap => "coap",
            Protocol::Lwm2m => "lwm2m",
            Protocol::Http => "http",
            Protocol::System => "system",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who published a message: enough for ACL placeholders, audit logs, MQTT 5 No Local and the
/// management API. Every field is optional because not every protocol knows each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The protocol the message came in through.
    pub protocol: Option<Protocol>,
    /// The publisher's client id (MQTT client identifier, CoAP `clientid`, LwM2M endpoint name).
    pub client_id: Option<Arc<str>>,
    /// The authenticated username, if any.
    pub username: Option<Arc<str>>,
    /// The peer's address.
    pub peer: Option<SocketAddr>,
    /// The name of the listener the message arrived on.
    pub listener: Option<Arc<str>>,
}

/// A message on the namespace.
///
/// The payload is a `Bytes`, shared (not copied) by every subscriber it is delivered to; producers
/// should copy it out of their read buffer first, so that a stored message does not pin the whole
/// buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The topic it was published to.
    pub topic: Topic,
    /// The application payload.
    pub payload: Bytes,
    /// The QoS it was published with; each delivery gets the minimum of this and the granted QoS.
    pub qos: QoS,
    /// The publisher asked for it to be retained (MQTT 5 §3.3.1.3).
    pub retain: bool,
    /// The MQTT 5 application properties.
    pub properties: Properties,
    /// Who published it.
    pub origin: Origin,
    /// The absolute deadline after which the message must not be delivered, in milliseconds since
    /// the UNIX epoch, computed by the caller from an MQTT 5 Message Expiry Interval (or a CoAP or
    /// HTTP `expiry` parameter); `None` means it never expires.
    pub expires_at: Option<u64>,
}

impl Message {
    /// A QoS 0, non-retained message without properties, origin or expiry.
    #[must_use]
    pub fn new(topic: Topic, payload: Bytes) -> Message {
        Message {
            topic,
            payload,
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
            origin: Origin::default(),
            expires_at: None,
        }
    }

    /// Sets the deadline to `secs` seconds after `now_ms` (MQTT 5 Message Expiry Interval,
    /// §3.3.2.3.3).
    #[must_use]
    pub fn with_expiry_interval(mut self, secs: u32, now_ms: u64) -> Message {
        self.expires_at = Some(now_ms.saturating_add(u64::from(secs) * 1000));
        self
    }

    /// Whether the deadline has been reached at `now_ms` (a message is expired at its deadline).
    /// A message without expiry never expires.
    #[must_use]
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at.is_some_and(|deadline| now_ms >= deadline)
    }

    /// The Message Expiry Interval to forward at `now_ms`: the seconds left, rounded up (MQTT 5
    /// §3.3.2.3.3: the received value minus the time the message waited in the server). `None`
    /// when the message has no expiry; `Some(0)` once it has expired (check
    /// [`is_expired`](Self::is_expired) first: such a message is not delivered). A message that has
    /// not expired always gets at least 1.
    #[must_use]
    pub fn remaining_expiry_secs(&self, now_ms: u64) -> Option<u32> {
        let remaining_ms = self.expires_at?.saturating_sub(now_ms);
        Some(u32::try_from(remaining_ms.div_ceil(1000)).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn msg() -> Message {
        Message::new(Topic::new("a/b").unwrap(), Bytes::from_static(b"hi"))
    }

    #[test]
    fn new_has_defaults() {
        let m = msg();
        assert_eq!(m.qos, QoS::AtMostOnce);
        assert!(!m.retain);
        assert!(m.properties.is_empty());
        assert_eq!(m.origin, Origin::default());
        assert_eq!(m.expires_at, None);
        assert!(!m.is_expired(u64::MAX));
        assert_eq!(m.remaining_expiry_secs(0), None);
    }

    #[test]
    fn expiry_is_absolute_and_rounded_up() {
        let now = 1_700_000_000_000;
        let m = msg().with_expiry_interval(10, now);
        assert_eq!(m.expires_at, Some(now + 10_000));
        assert!(!m.is_expired(now));
        assert_eq!(m.remaining_expiry_secs(now), Some(10));
        assert_eq!(m.remaining_expiry_secs(now + 1), Some(10));
        assert_eq!(m.remaining_expiry_secs(now + 999), Some(10));
        assert_eq!(m.remaining_expiry_secs(now + 1000), Some(9));
        assert_eq!(m.remaining_expiry_secs(now + 9_999), Some(1));
        assert!(!m.is_expired(now + 9_999));
        assert!(m.is_expired(now + 10_000));
        assert_eq!(m.remaining_expiry_secs(now + 10_000), Some(0));
        assert_eq!(m.remaining_expiry_secs(now + 20_000), Some(0));
        // Even 0 seconds is a deadline: expired at once.
        assert!(msg().with_expiry_interval(0, now).is_expired(now));
        // No overflow at the far end of time.
        let far = msg().with_expiry_interval(u32::MAX, u64::MAX - 5);
        assert_eq!(far.expires_at, Some(u64::MAX));
        let long = msg().with_expiry_interval(u32::MAX, 0);
        assert_eq!(long.remaining_expiry_secs(0), Some(u32::MAX));
    }

    #[test]
    fn payload_format_wire_values() {
        for pf in [PayloadFormat::Unspecified, PayloadFormat::Utf8] {
            assert_eq!(PayloadFormat::from_u8(pf.as_u8()), Some(pf));
        }
        assert_eq!(PayloadFormat::from_u8(2), None);
    }

    #[test]
    fn properties_emptiness() {
        let mut p = Properties::default();
        assert!(p.is_empty());
        p.user_properties.push(("k".into(), "v".into()));
        assert!(!p.is_empty());
        let p = Properties {
            content_type: Some("application/json".into()),
            ..Properties::default()
        };
        assert!(!p.is_empty());
    }

    #[test]
    fn protocol_names() {
        let all = [
            (Protocol::Mqtt, "mqtt"),
            (Protocol::MqttWs, "mqtt-ws"),
            (Protocol::Coap, "coap"),
            (Protocol::Lwm2m, "lwm2m"),
            (Protocol::Http, "http"),
            (Protocol::System, "system"),
        ];
        for (p, name) in all {
            assert_eq!(p.to_string(), name);
            assert_eq!(p.as_str(), name);
        }
    }
}
