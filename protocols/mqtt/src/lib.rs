//! A sans-IO codec for MQTT 3.1, 3.1.1 and 5.0: bytes in, [`Packet`]s out, and back. No
//! sockets, no async, no clock; the broker's connection actor owns the I/O and the session
//! layer owns the protocol state (packet order, topic aliases, in-flight windows).
//!
//! # Streaming decode contract
//!
//! [`decode`] takes the connection's read buffer. It returns `Ok(None)` while the buffer holds
//! less than one whole packet and leaves the buffer untouched; on `Ok(Some(packet))` exactly
//! that packet's bytes have been consumed, so the caller loops until `Ok(None)`. [`decode_slice`]
//! does the same on a plain slice and reports how many bytes it used. The fixed header (type,
//! flags, remaining length) is checked as soon as it is readable, so a packet bigger than
//! `max_packet_size` is refused with [`DecodeError::PacketTooLarge`] before its body is
//! buffered, and garbage is refused after one byte.
//!
//! Every packet type but CONNECT decodes differently per version, so the caller passes the
//! version it negotiated. Before CONNECT it passes `None`: CONNECT carries its own protocol name
//! and level, and anything else decodes as MQTT 3.1.1 (the session layer rejects a first packet
//! that is not CONNECT).
//!
//! # Copy-out of payloads
//!
//! Payloads, passwords and other binary fields are copied into fresh [`bytes::Bytes`], never
//! sliced out of the read buffer: a retained message or a queued publication must not pin a
//! whole read buffer for its lifetime (rumqttd's issue #1001).
//!
//! # Errors, split by blame
//!
//! [`DecodeError`] says who broke what: [`DecodeError::Malformed`] for bytes that cannot be
//! parsed, [`DecodeError::Protocol`] for parseable bytes in a forbidden combination,
//! [`DecodeError::PacketTooLarge`] for the receiver's own limit, the two `Unsupported*`
//! variants for CONNECTs we cannot speak, and topic / topic alias errors. Each message names the
//! clause of the specification it enforces, e.g. `[MQTT-3.3.2-2] PUBLISH topic contains
//! wildcard`, and [`DecodeError::reason_code`] is the one place that maps errors to the MQTT 5
//! reason code to disconnect with. [`EncodeError`] reports packets the caller built wrong.
//!
//! What the codec leaves to the session layer: packet order, client identifier rules, topic
//! filter syntax (checked by the pub/sub crate so that one bad filter fails one subscription),
//! topic aliases above the negotiated maximum, No Local on shared subscriptions, and everything
//! that depends on which side sent the packet.
//!
//! # MQTT 3.x mapping
//!
//! The packet types are MQTT 5's; MQTT 3.x packets are a subset. [`encode`] with a 3.x version
//! drops all properties, maps CONNACK reason codes to the six 3.x return codes
//! ([`ReasonCode::to_v3_connack`]), maps every failing SUBACK code to 0x80, writes no reason code
//! in PUBACK / PUBREC / PUBREL / PUBCOMP / UNSUBACK, and writes DISCONNECT as two bytes. The
//! decoder fills in the MQTT 5 defaults (SUCCESS, no properties, no UNSUBACK codes). For MQTT 5
//! the encoder uses the short forms §3.4.2.1, §3.14.2.1 and §3.15.2.1 allow, so a plain PUBACK
//! is 4 bytes and a normal DISCONNECT 2. [`encoded_len`] is computed by the same code that
//! writes, so it always equals what [`encode`] appends.
//!
//! # Layout
//!
//! `types` (versions, QoS, packet ids), `reason` (reason codes and their per-packet tables),
//! `error`, `wire` (integers, strings, the no-panic reader and the byte sink), `properties`
//! (MQTT 5 property blocks), and `packets/*`, one module per packet family.

mod error;
#[doc(hidden)]
pub mod fuzzing;
mod packets;
mod properties;
mod reason;
mod types;
mod wire;

#[cfg(test)]
mod tests;

use bytes::{Buf, BytesMut};

pub use error::{DecodeError, EncodeError};
pub use packets::{
    Auth, AuthProperties, ConnAck, ConnAckProperties, Connect, ConnectProperties, Disconnect, DisconnectProperties,
    Packet, PubResp, Publish, PublishProperties, RetainHandling, SubAck, Subscribe, SubscribeProperties,
    SubscriptionOptions, UnsubAck, Unsubscribe, UnsubscribeProperties, Will, WillProperties,
};
pub use properties::{AckProperties, UserProperties};
pub use reason::ReasonCode;
pub use types::{InvalidQoS, PacketId, PacketType, ProtocolVersion, QoS};

/// The largest packet MQTT can express: a 5-byte fixed header and 268,435,455 bytes after it.
/// Pass it as `max_packet_size` for "no limit of my own".
pub const MAX_PACKET_SIZE: u32 = 268_435_460;

/// Decodes one packet from the front of `buf`.
///
/// `Ok(None)`: `buf` holds less than a whole packet and is untouched. `Ok(Some(packet))`: the
/// packet's bytes have been removed from the front of `buf`. `version` is the negotiated
/// version, or `None` before CONNECT (see the crate docs). `max_packet_size` bounds the whole
/// packet, fixed header included. After an error the connection must be closed; `buf` is left
/// as it was.
pub fn decode(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    match packets::decode_slice(buf, version, max_packet_size)? {
        Some((packet, used)) => {
            buf.advance(used);
            Ok(Some(packet))
        }
        None => Ok(None),
    }
}

/// [`decode`] on a slice: the packet and the number of bytes it used, or `Ok(None)` if `buf`
/// holds less than a whole packet.
pub fn decode_slice(
    buf: &[u8],
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
) -> Result<Option<(Packet, usize)>, DecodeError> {
    packets::decode_slice(buf, version, max_packet_size)
}

/// Appends `packet`, encoded for `version`, to `out`. CONNECT is always encoded for its own
/// [`Connect::protocol`]. On error nothing has been appended.
pub fn encode(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
    packets::encode(packet, version, out)
}

/// Exactly how many bytes [`encode`] would append, e.g. to check a peer's Maximum Packet Size
/// before encoding. For a packet that [`encode`] would reject it returns `usize::MAX`, which
/// fails any size limit; use [`try_encoded_len`] to see the error.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    packets::encoded_len(packet, version).unwrap_or(usize::MAX)
}

/// [`encoded_len`], with the error [`encode`] would return.
pub fn try_encoded_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    packets::encoded_len(packet, version)
}
