//! The fifteen control packets (MQTT 5 §3): the [`Packet`] enum, the fixed header (§2.1) and
//! the dispatch from packet type to the module that owns each packet's body.

mod auth;
mod connack;
mod connect;
mod disconnect;
mod publish;
mod pubresp;
mod subscribe;
mod unsubscribe;

pub use auth::{Auth, AuthProperties};
pub use connack::{ConnAck, ConnAckProperties};
pub use connect::{Connect, ConnectProperties, Will, WillProperties};
pub use disconnect::{Disconnect, DisconnectProperties};
pub use publish::{Publish, PublishProperties};
pub use pubresp::PubResp;
pub use subscribe::{RetainHandling, SubAck, Subscribe, SubscribeProperties, SubscriptionOptions};
pub use unsubscribe::{UnsubAck, Unsubscribe, UnsubscribeProperties};

use bytes::BytesMut;

use crate::error::{DecodeError, EncodeError};
use crate::types::{PacketType, ProtocolVersion};
use crate::wire::{measure, parse_varint, varint_len, Reader, Sink, MAX_VARINT};

/// Any MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT, boxed: it is several times larger than the other packets.
    Connect(Box<Connect>),
    /// CONNACK.
    ConnAck(ConnAck),
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK (QoS 1 acknowledgement).
    PubAck(PubResp),
    /// PUBREC (QoS 2, step 1).
    PubRec(PubResp),
    /// PUBREL (QoS 2, step 2).
    PubRel(PubResp),
    /// PUBCOMP (QoS 2, step 3).
    PubComp(PubResp),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBACK.
    SubAck(SubAck),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK.
    UnsubAck(UnsubAck),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect(Disconnect),
    /// AUTH (MQTT 5 only).
    Auth(Auth),
}

impl Packet {
    /// The packet's type, e.g. for logging (`PacketType` displays as `"PUBLISH"`).
    pub fn kind(&self) -> PacketType {
        match self {
            Self::Connect(_) => PacketType::Connect,
            Self::ConnAck(_) => PacketType::ConnAck,
            Self::Publish(_) => PacketType::Publish,
            Self::PubAck(_) => PacketType::PubAck,
            Self::PubRec(_) => PacketType::PubRec,
            Self::PubRel(_) => PacketType::PubRel,
            Self::PubComp(_) => PacketType::PubComp,
            Self::Subscribe(_) => PacketType::Subscribe,
            Self::SubAck(_) => PacketType::SubAck,
            Self::Unsubscribe(_) => PacketType::Unsubscribe,
            Self::UnsubAck(_) => PacketType::UnsubAck,
            Self::PingReq => PacketType::PingReq,
            Self::PingResp => PacketType::PingResp,
            Self::Disconnect(_) => PacketType::Disconnect,
            Self::Auth(_) => PacketType::Auth,
        }
    }

    /// The first fixed-header byte: type and flags (MQTT 5 §2.1.3, Table 2-2).
    fn first_byte(&self) -> u8 {
        let flags = match self {
            Self::Publish(publish) => publish.flags(),
            Self::PubRel(_) | Self::Subscribe(_) | Self::Unsubscribe(_) => 0b0010,
            _ => 0,
        };
        (self.kind() as u8) << 4 | flags
    }

    /// Writes everything after the fixed header.
    fn write_body<S: Sink>(&self, version: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
        match self {
            Self::Connect(connect) => connect.write(s),
            Self::ConnAck(connack) => connack.write(version, s),
            Self::Publish(publish) => publish.write(version, s),
            Self::PubAck(resp) | Self::PubRec(resp) | Self::PubRel(resp) | Self::PubComp(resp) => {
                resp.write(version, s)
            }
            Self::Subscribe(subscribe) => subscribe.write(version, s),
            Self::SubAck(suback) => suback.write(version, s),
            Self::Unsubscribe(unsubscribe) => unsubscribe.write(version, s),
            Self::UnsubAck(unsuback) => unsuback.write(version, s),
            Self::PingReq | Self::PingResp => Ok(()),
            Self::Disconnect(disconnect) => disconnect.write(version, s),
            Self::Auth(auth) => {
                if !version.is_v5() {
                    return Err(EncodeError::UnsupportedPacket {
                        kind: PacketType::Auth,
                        version,
                    });
                }
                auth.write(s)
            }
        }
    }

    /// The remaining length: the size of everything after the fixed header.
    fn remaining_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let len = measure(|c| self.write_body(version, c))?;
        if len > MAX_VARINT {
            return Err(EncodeError::PacketTooLarge);
        }
        Ok(len)
    }
}

/// Checks the first fixed-header byte: a known packet type with the flags the specification
/// fixes for it ([MQTT-2.1.3-1]). PUBLISH's QoS 3 is caught here, before its body is buffered.
fn check_first_byte(byte: u8, version: ProtocolVersion) -> Result<PacketType, DecodeError> {
    let kind = PacketType::from_nibble(byte >> 4)
        .ok_or(DecodeError::Malformed("packet type 0 is reserved (MQTT 5 §2.1.2)"))?;
    let flags = byte & 0x0F;
    let flags_ok = match kind {
        PacketType::Publish => {
            if flags & 0b0110 == 0b0110 {
                return Err(DecodeError::Malformed("[MQTT-3.3.1-4] PUBLISH with QoS 3"));
            }
            true
        }
        // MQTT 3.1 also set DUP on retransmitted PUBREL / SUBSCRIBE / UNSUBSCRIBE (3.1 §2.1).
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => {
            flags == 0b0010 || (version == ProtocolVersion::V3_1 && flags == 0b1010)
        }
        PacketType::Auth if !version.is_v5() => {
            return Err(DecodeError::Malformed(
                "packet type 15 is reserved before MQTT 5 (MQTT 3.1.1 §2.2.1)",
            ));
        }
        _ => flags == 0,
    };
    if !flags_ok {
        return Err(DecodeError::Malformed("[MQTT-2.1.3-1] invalid fixed header flags"));
    }
    Ok(kind)
}

/// See [`crate::decode_slice`].
pub(crate) fn decode_slice(
    buf: &[u8],
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
) -> Result<Option<(Packet, usize)>, DecodeError> {
    let Some((&first, after_first)) = buf.split_first() else {
        return Ok(None);
    };
    let version = version.unwrap_or(ProtocolVersion::V3_1_1);
    let kind = check_first_byte(first, version)?;
    let Some((remaining, len_bytes)) = parse_varint(after_first)? else {
        return Ok(None);
    };
    // At most 1 + 4 + 268,435,455: no overflow on any target with 32-bit usize or wider.
    let size = 1 + len_bytes + usize::try_from(remaining).unwrap_or(usize::MAX - 5);
    if size > usize::try_from(max_packet_size).unwrap_or(usize::MAX) {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    let Some(body) = buf.get(1 + len_bytes..size) else {
        return Ok(None);
    };
    let packet = decode_body(kind, first & 0x0F, body, version)?;
    Ok(Some((packet, size)))
}

/// Decodes one packet body; every byte of it must be used.
fn decode_body(kind: PacketType, flags: u8, body: &[u8], version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let mut r = Reader::new(body);
    let packet = match kind {
        PacketType::Connect => Packet::Connect(Box::new(Connect::decode(&mut r)?)),
        PacketType::ConnAck => Packet::ConnAck(ConnAck::decode(&mut r, version)?),
        PacketType::Publish => Packet::Publish(Publish::decode(flags, &mut r, version)?),
        PacketType::PubAck => Packet::PubAck(PubResp::decode(kind, &mut r, version)?),
        PacketType::PubRec => Packet::PubRec(PubResp::decode(kind, &mut r, version)?),
        PacketType::PubRel => Packet::PubRel(PubResp::decode(kind, &mut r, version)?),
        PacketType::PubComp => Packet::PubComp(PubResp::decode(kind, &mut r, version)?),
        PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(&mut r, version)?),
        PacketType::SubAck => Packet::SubAck(SubAck::decode(&mut r, version)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(&mut r, version)?),
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(&mut r, version)?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect(Disconnect::decode(&mut r, version)?),
        PacketType::Auth => Packet::Auth(Auth::decode(&mut r)?),
    };
    r.finish()?;
    Ok(packet)
}

/// See [`crate::encode`].
pub(crate) fn encode(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
    let version = effective_version(packet, version);
    // Measuring first validates the whole packet, so nothing is written on error.
    let remaining = packet.remaining_len(version)?;
    out.reserve(1 + varint_len(remaining) + remaining);
    out.put_u8(packet.first_byte());
    out.put_varint(remaining)?;
    packet.write_body(version, out)
}

/// See [`crate::encoded_len`].
pub(crate) fn encoded_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let remaining = packet.remaining_len(effective_version(packet, version))?;
    Ok(1 + varint_len(remaining) + remaining)
}

/// CONNECT says which version it is; every other packet takes the connection's.
fn effective_version(packet: &Packet, version: ProtocolVersion) -> ProtocolVersion {
    match packet {
        Packet::Connect(connect) => connect.protocol,
        _ => version,
    }
}
