//! PUBACK, PUBREC, PUBREL and PUBCOMP (MQTT 5 §3.4-§3.7): one shape, four packet types. MQTT 5
//! lets the reason code and the property length be left off when they are SUCCESS and empty
//! (§3.4.2.1); the encoder always uses the shortest form, the decoder accepts all three.

use crate::error::{DecodeError, EncodeError};
use crate::properties::{put_properties, AckProperties, PropertyBlock};
use crate::reason::ReasonCode;
use crate::types::{PacketId, PacketType, ProtocolVersion};
use crate::wire::{Reader, Sink};

/// A QoS 1 / QoS 2 flow acknowledgement; [`crate::Packet`] says which of the four it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubResp {
    /// The identifier of the PUBLISH (or PUBREC / PUBREL) being answered.
    pub packet_id: PacketId,
    /// MQTT 5 outcome; always SUCCESS when decoded from MQTT 3.x.
    pub reason_code: ReasonCode,
    /// Properties (MQTT 5 only).
    pub properties: AckProperties,
}

impl PubResp {
    /// A successful acknowledgement without properties (4 bytes on the wire).
    pub fn new(packet_id: PacketId) -> Self {
        Self::with_reason(packet_id, ReasonCode::SUCCESS)
    }

    /// An acknowledgement with `reason_code` and no properties.
    pub fn with_reason(packet_id: PacketId, reason_code: ReasonCode) -> Self {
        Self {
            packet_id,
            reason_code,
            properties: AckProperties::default(),
        }
    }

    pub(crate) fn decode(kind: PacketType, r: &mut Reader<'_>, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let mut resp = Self::new(packet_id);
        if version.is_v5() && !r.is_empty() {
            resp.reason_code = ReasonCode(r.u8()?);
            if !resp.reason_code.is_allowed_in(kind) {
                return Err(DecodeError::Protocol(match kind {
                    PacketType::PubAck => "PUBACK reason code not allowed (MQTT 5 §3.4.2.1)",
                    PacketType::PubRec => "PUBREC reason code not allowed (MQTT 5 §3.5.2.1)",
                    PacketType::PubRel => "PUBREL reason code not allowed (MQTT 5 §3.6.2.1)",
                    _ => "PUBCOMP reason code not allowed (MQTT 5 §3.7.2.1)",
                }));
            }
            if !r.is_empty() {
                resp.properties = AckProperties::decode(r)?;
            }
        }
        Ok(resp)
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
        s.put_u16(self.packet_id.get());
        if !version.is_v5() {
            return Ok(());
        }
        let props_len = self.properties.len()?;
        if props_len == 0 {
            if self.reason_code != ReasonCode::SUCCESS {
                s.put_u8(self.reason_code.0);
            }
            return Ok(());
        }
        s.put_u8(self.reason_code.0);
        put_properties(s, &self.properties)
    }
}
