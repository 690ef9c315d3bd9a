//! The codec's errors, split by who is at fault (as rustls does): bytes that cannot be parsed,
//! bytes that parse but break a protocol rule, limits the receiver set, and protocol versions we
//! do not speak. [`DecodeError::reason_code`] is the one place that maps them to MQTT 5 reason
//! codes. Messages name the specification clause so that an operator can look them up.

use crate::reason::ReasonCode;
use crate::types::{PacketType, ProtocolVersion};

/// Why a packet could not be decoded. The connection that sent it must be closed (MQTT 5 §4.13):
/// after CONNACK with [`DecodeError::reason_code`] if the failing packet was CONNECT, else after
/// a DISCONNECT with that code (MQTT 5 only).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes cannot be parsed as the packet they claim to be: a bad variable byte integer, a
    /// field running past the remaining length, invalid UTF-8, a reserved bit set, bytes left
    /// over after the last field, a property not allowed in this packet, a zero packet
    /// identifier… ("Malformed Packet", MQTT 5 §1.2). The text names the clause.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),

    /// The bytes parse but the combination is not allowed: a property given twice, a zero
    /// Receive Maximum, a Will QoS without the Will Flag, a SUBSCRIBE without filters… ("Protocol
    /// Error", MQTT 5 §1.2). The text names the clause.
    #[error("protocol error: {0}")]
    Protocol(&'static str),

    /// The fixed header announces a packet larger than the receiver's maximum packet size
    /// (MQTT 5 §3.1.2.11.4, [MQTT-3.2.2-15]). Detected before the body is buffered.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge {
        /// The whole packet's size: fixed header plus remaining length.
        size: usize,
        /// The limit the caller passed in.
        max: u32,
    },

    /// CONNECT names a known protocol (`MQTT` or `MQIsdp`) with a level this codec does not
    /// speak, or a level that does not go with that name ([MQTT-3.1.2-2]). The server answers
    /// CONNACK 0x84 (MQTT 5) or return code 1 (MQTT 3.x) and closes.
    #[error("[MQTT-3.1.2-2] unsupported protocol level {0}")]
    UnsupportedProtocolVersion(u8),

    /// CONNECT names a protocol other than `MQTT` or `MQIsdp` ([MQTT-3.1.2-1]).
    #[error("[MQTT-3.1.2-1] unsupported protocol name")]
    UnsupportedProtocolName,

    /// A topic name breaks the topic name rules: wildcard characters, or empty where that is not
    /// allowed (MQTT 5 §4.7, [MQTT-3.3.2-2], [MQTT-4.7.3-1]).
    #[error("invalid topic name: {0}")]
    InvalidTopic(&'static str),

    /// A Topic Alias of 0 ([MQTT-3.3.2-8]). Aliases above the negotiated maximum are the
    /// session layer's to reject, with the same reason code.
    #[error("invalid topic alias: {0}")]
    InvalidTopicAlias(&'static str),
}

impl DecodeError {
    /// The MQTT 5 reason code to send in the CONNACK or DISCONNECT that closes the connection.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Malformed(_) => ReasonCode::MALFORMED_PACKET,
            Self::Protocol(_) => ReasonCode::PROTOCOL_ERROR,
            Self::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            Self::UnsupportedProtocolVersion(_) | Self::UnsupportedProtocolName => {
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
            }
            Self::InvalidTopic(_) => ReasonCode::TOPIC_NAME_INVALID,
            Self::InvalidTopicAlias(_) => ReasonCode::TOPIC_ALIAS_INVALID,
        }
    }
}

/// Why a packet could not be encoded. These are the caller's mistakes (the packet value breaks
/// a rule the wire format cannot express); nothing has been written to the output buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The packet's remaining length, or a property block's length, exceeds 268,435,455 bytes,
    /// the largest variable byte integer (MQTT 5 §1.5.5, §2.1.4).
    #[error("packet exceeds the 268,435,455-byte remaining length limit")]
    PacketTooLarge,

    /// A UTF-8 string field is longer than 65,535 bytes (MQTT 5 §1.5.4).
    #[error("string field longer than 65,535 bytes")]
    StringTooLong,

    /// A binary field (password, will payload, correlation or authentication data) is longer
    /// than 65,535 bytes (MQTT 5 §1.5.6).
    #[error("binary field longer than 65,535 bytes")]
    BinaryTooLong,

    /// The packet type does not exist in this protocol version (AUTH before MQTT 5).
    #[error("{kind} does not exist in {version}")]
    UnsupportedPacket {
        /// The packet type that was asked for.
        kind: PacketType,
        /// The version it was to be encoded for.
        version: ProtocolVersion,
    },

    /// The packet's fields contradict each other or a value is out of range, e.g. a QoS 1
    /// PUBLISH without a packet identifier. The text names the clause.
    #[error("invalid packet: {0}")]
    Invalid(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_by_blame() {
        assert_eq!(DecodeError::Malformed("x").reason_code(), ReasonCode(0x81));
        assert_eq!(DecodeError::Protocol("x").reason_code(), ReasonCode(0x82));
        assert_eq!(
            DecodeError::PacketTooLarge { size: 9, max: 8 }.reason_code(),
            ReasonCode(0x95)
        );
        assert_eq!(
            DecodeError::UnsupportedProtocolVersion(6).reason_code(),
            ReasonCode(0x84)
        );
        assert_eq!(DecodeError::UnsupportedProtocolName.reason_code(), ReasonCode(0x84));
        assert_eq!(DecodeError::InvalidTopic("x").reason_code(), ReasonCode(0x90));
        assert_eq!(DecodeError::InvalidTopicAlias("x").reason_code(), ReasonCode(0x94));
    }

    #[test]
    fn messages_carry_the_clause() {
        let err = DecodeError::InvalidTopic("[MQTT-3.3.2-2] PUBLISH topic contains wildcard");
        assert_eq!(
            err.to_string(),
            "invalid topic name: [MQTT-3.3.2-2] PUBLISH topic contains wildcard"
        );
    }
}
