//! UNSUBSCRIBE and UNSUBACK (MQTT 5 §3.10-§3.11, MQTT 3.1.1 §3.10-§3.11). MQTT 3.x UNSUBACK
//! carries only the packet identifier.

use crate::error::{DecodeError, EncodeError};
use crate::properties::{self as prop, put_properties, AckProperties, Properties, PropertyBlock, UserProperties};
use crate::reason::ReasonCode;
use crate::types::{PacketId, PacketType, ProtocolVersion};
use crate::wire::{Reader, Sink};

/// A request to remove subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Identifier echoed by the UNSUBACK.
    pub packet_id: PacketId,
    /// At least one topic filter ([MQTT-3.10.3-2]).
    pub filters: Vec<String>,
    /// UNSUBSCRIBE properties (MQTT 5 only).
    pub properties: UnsubscribeProperties,
}

/// UNSUBSCRIBE properties (MQTT 5 §3.10.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnsubscribeProperties {
    /// Application-defined name/value pairs.
    pub user_properties: UserProperties,
}

/// The server's answer to UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Identifier of the UNSUBSCRIBE being answered.
    pub packet_id: PacketId,
    /// One per filter in MQTT 5; empty in MQTT 3.x, which has none (the encoder drops them).
    pub reason_codes: Vec<ReasonCode>,
    /// Properties (MQTT 5 only).
    pub properties: AckProperties,
}

impl UnsubAck {
    /// An UNSUBACK without properties.
    pub fn new(packet_id: PacketId, reason_codes: Vec<ReasonCode>) -> Self {
        Self {
            packet_id,
            reason_codes,
            properties: AckProperties::default(),
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        if !version.is_v5() {
            return Ok(Self::new(packet_id, Vec::new()));
        }
        let properties = AckProperties::decode(r)?;
        let mut reason_codes = Vec::with_capacity(8);
        for &code in r.rest() {
            let code = ReasonCode(code);
            if !code.is_allowed_in(PacketType::UnsubAck) {
                return Err(DecodeError::Protocol(
                    "UNSUBACK reason code not allowed (MQTT 5 §3.11.3)",
                ));
            }
            reason_codes.push(code);
        }
        if reason_codes.is_empty() {
            return Err(DecodeError::Protocol("UNSUBACK without reason codes (MQTT 5 §3.11.3)"));
        }
        Ok(Self {
            packet_id,
            reason_codes,
            properties,
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
        s.put_u16(self.packet_id.get());
        if !version.is_v5() {
            return Ok(());
        }
        if self.reason_codes.is_empty() {
            return Err(EncodeError::Invalid("UNSUBACK without reason codes (MQTT 5 §3.11.3)"));
        }
        put_properties(s, &self.properties)?;
        for code in &self.reason_codes {
            s.put_u8(code.0);
        }
        Ok(())
    }
}

impl Unsubscribe {
    pub(crate) fn decode(r: &mut Reader<'_>, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            UnsubscribeProperties::decode(r)?
        } else {
            UnsubscribeProperties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(r.string()?);
        }
        if filters.is_empty() {
            return Err(DecodeError::Protocol(
                "[MQTT-3.10.3-2] UNSUBSCRIBE with no topic filters",
            ));
        }
        Ok(Self {
            packet_id,
            filters,
            properties,
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::Invalid(
                "[MQTT-3.10.3-2] UNSUBSCRIBE with no topic filters",
            ));
        }
        s.put_u16(self.packet_id.get());
        if version.is_v5() {
            put_properties(s, &self.properties)?;
        }
        for filter in &self.filters {
            s.put_str(filter)?;
        }
        Ok(())
    }
}

impl UnsubscribeProperties {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut props = Self::default();
        let mut p = Properties::read(r)?;
        while let Some(id) = p.next_id()? {
            match id {
                prop::USER_PROPERTY => props.user_properties.push(p.string_pair()?),
                other => return Err(prop::not_allowed(other)),
            }
        }
        Ok(props)
    }
}

impl PropertyBlock for UnsubscribeProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        prop::put_user(s, &self.user_properties)
    }
}
