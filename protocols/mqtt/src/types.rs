//! Small value types shared by every packet: protocol versions, QoS levels, packet identifiers and
//! packet types. Each one is parsed once at the edge, so the rest of the crate (and the broker)
//! never sees an out-of-range value (MQTT 5 §1.5, §2.1.2, §2.2.1, §4.3).

use std::fmt;
use std::num::NonZeroU16;

/// The MQTT protocol revision a connection speaks, chosen by the client's CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1 (IBM), protocol name `MQIsdp`, level 3.
    V3_1,
    /// MQTT 3.1.1 (OASIS), protocol name `MQTT`, level 4.
    V3_1_1,
    /// MQTT 5.0 (OASIS), protocol name `MQTT`, level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of the CONNECT variable header (3, 4 or 5).
    pub fn level(self) -> u8 {
        match self {
            Self::V3_1 => 3,
            Self::V3_1_1 => 4,
            Self::V5 => 5,
        }
    }

    /// The protocol name CONNECT carries with this level.
    pub fn name(self) -> &'static str {
        match self {
            Self::V3_1 => "MQIsdp",
            Self::V3_1_1 | Self::V5 => "MQTT",
        }
    }

    /// Whether this is MQTT 5.0, the only version with properties and reason codes.
    pub fn is_v5(self) -> bool {
        self == Self::V5
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V3_1 => "MQTT 3.1",
            Self::V3_1_1 => "MQTT 3.1.1",
            Self::V5 => "MQTT 5.0",
        })
    }
}

/// Quality of service of a message delivery (MQTT 5 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum QoS {
    /// Fire and forget.
    #[default]
    AtMostOnce = 0,
    /// Acknowledged by PUBACK; may be duplicated.
    AtLeastOnce = 1,
    /// Four-step PUBREC / PUBREL / PUBCOMP handshake; delivered once.
    ExactlyOnce = 2,
}

/// A QoS byte that is not 0, 1 or 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid QoS value {0}")]
pub struct InvalidQoS(pub u8);

impl TryFrom<u8> for QoS {
    type Error = InvalidQoS;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        match value {
            0 => Ok(Self::AtMostOnce),
            1 => Ok(Self::AtLeastOnce),
            2 => Ok(Self::ExactlyOnce),
            other => Err(InvalidQoS(other)),
        }
    }
}

impl From<QoS> for u8 {
    fn from(qos: QoS) -> u8 {
        qos as u8
    }
}

/// A packet identifier: never zero on the wire (MQTT 5 §2.2.1, [MQTT-2.2.1-3]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketId(NonZeroU16);

impl PacketId {
    /// `None` for 0, which is not a valid packet identifier.
    pub fn new(id: u16) -> Option<Self> {
        NonZeroU16::new(id).map(Self)
    }

    /// The identifier as it appears on the wire.
    pub fn get(self) -> u16 {
        self.0.get()
    }
}

impl From<PacketId> for u16 {
    fn from(id: PacketId) -> u16 {
        id.get()
    }
}

impl fmt::Display for PacketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The control packet type, the high nibble of the fixed header (MQTT 5 §2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// Client request to connect.
    Connect = 1,
    /// Connect acknowledgment.
    ConnAck = 2,
    /// Publish message.
    Publish = 3,
    /// Publish acknowledgment (QoS 1).
    PubAck = 4,
    /// Publish received (QoS 2, part 1).
    PubRec = 5,
    /// Publish release (QoS 2, part 2).
    PubRel = 6,
    /// Publish complete (QoS 2, part 3).
    PubComp = 7,
    /// Subscribe request.
    Subscribe = 8,
    /// Subscribe acknowledgment.
    SubAck = 9,
    /// Unsubscribe request.
    Unsubscribe = 10,
    /// Unsubscribe acknowledgment.
    UnsubAck = 11,
    /// Ping request.
    PingReq = 12,
    /// Ping response.
    PingResp = 13,
    /// Disconnect notification.
    Disconnect = 14,
    /// Authentication exchange (MQTT 5 only; reserved in 3.1.1).
    Auth = 15,
}

impl PacketType {
    /// Parses the high nibble of the first fixed-header byte; `None` for the reserved value 0
    /// or anything above 15.
    pub fn from_nibble(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Connect,
            2 => Self::ConnAck,
            3 => Self::Publish,
            4 => Self::PubAck,
            5 => Self::PubRec,
            6 => Self::PubRel,
            7 => Self::PubComp,
            8 => Self::Subscribe,
            9 => Self::SubAck,
            10 => Self::Unsubscribe,
            11 => Self::UnsubAck,
            12 => Self::PingReq,
            13 => Self::PingResp,
            14 => Self::Disconnect,
            15 => Self::Auth,
            _ => return None,
        })
    }

    /// The upper-case name the specification uses, e.g. `"PUBACK"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::ConnAck => "CONNACK",
            Self::Publish => "PUBLISH",
            Self::PubAck => "PUBACK",
            Self::PubRec => "PUBREC",
            Self::PubRel => "PUBREL",
            Self::PubComp => "PUBCOMP",
            Self::Subscribe => "SUBSCRIBE",
            Self::SubAck => "SUBACK",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::UnsubAck => "UNSUBACK",
            Self::PingReq => "PINGREQ",
            Self::PingResp => "PINGRESP",
            Self::Disconnect => "DISCONNECT",
            Self::Auth => "AUTH",
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_try_from_rejects_three() {
        assert_eq!(QoS::try_from(2), Ok(QoS::ExactlyOnce));
        assert_eq!(QoS::try_from(3), Err(InvalidQoS(3)));
    }

    #[test]
    fn packet_id_rejects_zero() {
        assert_eq!(PacketId::new(0), None);
        assert_eq!(PacketId::new(7).map(PacketId::get), Some(7));
    }

    #[test]
    fn packet_type_nibbles() {
        assert_eq!(PacketType::from_nibble(0), None);
        for n in 1..=15u8 {
            let kind = PacketType::from_nibble(n);
            assert_eq!(kind.map(|k| k as u8), Some(n));
        }
        assert_eq!(PacketType::PubRel.to_string(), "PUBREL");
    }

    #[test]
    fn version_levels() {
        assert_eq!(ProtocolVersion::V3_1.level(), 3);
        assert_eq!(ProtocolVersion::V3_1_1.level(), 4);
        assert_eq!(ProtocolVersion::V5.level(), 5);
        assert!(ProtocolVersion::V5.is_v5());
        assert!(!ProtocolVersion::V3_1_1.is_v5());
    }
}
