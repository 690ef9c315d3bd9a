//! SUBSCRIBE and SUBACK (MQTT 5 §3.8-§3.9, MQTT 3.1.1 §3.8-§3.9). Topic filters are checked
//! only as UTF-8 strings here; their wildcard syntax is the pub/sub crate's to judge, so that
//! a bad filter fails that one subscription (SUBACK 0x8F) rather than the whole connection.

use crate::error::{DecodeError, EncodeError};
use crate::properties::{self as prop, once, put_properties, AckProperties, Properties, PropertyBlock, UserProperties};
use crate::reason::ReasonCode;
use crate::types::{PacketId, PacketType, ProtocolVersion, QoS};
use crate::wire::{Reader, Sink};

/// A request to add subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Identifier echoed by the SUBACK.
    pub packet_id: PacketId,
    /// At least one topic filter with its options ([MQTT-3.8.3-2]).
    pub filters: Vec<(String, SubscriptionOptions)>,
    /// SUBSCRIBE properties (MQTT 5 only).
    pub properties: SubscribeProperties,
}

/// SUBSCRIBE properties (MQTT 5 §3.8.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeProperties {
    /// Identifier to attach to messages delivered through these subscriptions, 1..=268,435,455.
    pub subscription_identifier: Option<u32>,
    /// Application-defined name/value pairs.
    pub user_properties: UserProperties,
}

/// The options byte after each topic filter (MQTT 5 §3.8.3.1). MQTT 3.x only has `qos`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS the client wants messages delivered with.
    pub qos: QoS,
    /// Do not send the client its own publications (not allowed on shared subscriptions; the
    /// session layer checks that, [MQTT-3.8.3-4]).
    pub no_local: bool,
    /// Keep the RETAIN flag of forwarded messages as published.
    pub retain_as_published: bool,
    /// Whether retained messages are sent when the subscription is made.
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options with `qos` and every MQTT 5 option at its default.
    pub fn new(qos: QoS) -> Self {
        Self { qos, ..Self::default() }
    }
}

/// When retained messages are sent for a new subscription (MQTT 5 §3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum RetainHandling {
    /// Send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// Send them only if the subscription did not already exist.
    SendAtSubscribeIfNew = 1,
    /// Do not send them.
    DoNotSend = 2,
}

/// The server's answer to SUBSCRIBE: one reason code per filter, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Identifier of the SUBSCRIBE being answered.
    pub packet_id: PacketId,
    /// Granted QoS (0x00-0x02) or a failure per filter. MQTT 3.x can only say 0x80 for a
    /// failure; the encoder maps every failure to it.
    pub reason_codes: Vec<ReasonCode>,
    /// Properties (MQTT 5 only).
    pub properties: AckProperties,
}

impl SubAck {
    /// A SUBACK without properties.
    pub fn new(packet_id: PacketId, reason_codes: Vec<ReasonCode>) -> Self {
        Self {
            packet_id,
            reason_codes,
            properties: AckProperties::default(),
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            AckProperties::decode(r)?
        } else {
            AckProperties::default()
        };
        let mut reason_codes = Vec::with_capacity(8);
        for &code in r.rest() {
            let code = ReasonCode(code);
            let allowed = if version.is_v5() {
                code.is_allowed_in(PacketType::SubAck)
            } else {
                matches!(code.0, 0x00 | 0x01 | 0x02 | 0x80)
            };
            if !allowed {
                return Err(if version.is_v5() {
                    DecodeError::Protocol("SUBACK reason code not allowed (MQTT 5 §3.9.3)")
                } else {
                    DecodeError::Malformed("[MQTT-3.9.3-2] reserved SUBACK return code (MQTT 3.1.1)")
                });
            }
            reason_codes.push(code);
        }
        if reason_codes.is_empty() {
            return Err(DecodeError::Protocol("SUBACK without reason codes (MQTT 5 §3.9.3)"));
        }
        Ok(Self {
            packet_id,
            reason_codes,
            properties,
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
        if self.reason_codes.is_empty() {
            return Err(EncodeError::Invalid("SUBACK without reason codes (MQTT 5 §3.9.3)"));
        }
        s.put_u16(self.packet_id.get());
        if version.is_v5() {
            put_properties(s, &self.properties)?;
            for code in &self.reason_codes {
                s.put_u8(code.0);
            }
        } else {
            for code in &self.reason_codes {
                s.put_u8(if code.0 <= 0x02 { code.0 } else { 0x80 });
            }
        }
        Ok(())
    }
}

impl Subscribe {
    pub(crate) fn decode(r: &mut Reader<'_>, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            SubscribeProperties::decode(r)?
        } else {
            SubscribeProperties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter = r.string()?;
            let options = decode_options(r.u8()?, version)?;
            filters.push((filter, options));
        }
        if filters.is_empty() {
            return Err(DecodeError::Protocol("[MQTT-3.8.3-2] SUBSCRIBE with no topic filters"));
        }
        Ok(Self {
            packet_id,
            filters,
            properties,
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::Invalid("[MQTT-3.8.3-2] SUBSCRIBE with no topic filters"));
        }
        s.put_u16(self.packet_id.get());
        if version.is_v5() {
            put_properties(s, &self.properties)?;
        }
        for (filter, options) in &self.filters {
            s.put_str(filter)?;
            let mut byte = u8::from(options.qos);
            if version.is_v5() {
                byte |= u8::from(options.no_local) << 2
                    | u8::from(options.retain_as_published) << 3
                    | (options.retain_handling as u8) << 4;
            }
            s.put_u8(byte);
        }
        Ok(())
    }
}

fn decode_options(byte: u8, version: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
    if !version.is_v5() {
        if byte & 0xFC != 0 {
            return Err(DecodeError::Malformed(
                "[MQTT-3.8.3-4] SUBSCRIBE options reserved bits are not 0 (MQTT 3.1.1)",
            ));
        }
        let qos = QoS::try_from(byte)
            .map_err(|_| DecodeError::Malformed("[MQTT-3.8.3-4] SUBSCRIBE with QoS 3 (MQTT 3.1.1)"))?;
        return Ok(SubscriptionOptions::new(qos));
    }
    if byte & 0xC0 != 0 {
        return Err(DecodeError::Malformed(
            "[MQTT-3.8.3-5] SUBSCRIBE options reserved bits are not 0",
        ));
    }
    let qos = QoS::try_from(byte & 0x03)
        .map_err(|_| DecodeError::Protocol("SUBSCRIBE Maximum QoS is 3 (MQTT 5 §3.8.3.1)"))?;
    let retain_handling = match (byte >> 4) & 0x03 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendAtSubscribeIfNew,
        2 => RetainHandling::DoNotSend,
        _ => {
            return Err(DecodeError::Protocol(
                "SUBSCRIBE Retain Handling is 3 (MQTT 5 §3.8.3.1)",
            ))
        }
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & 0x04 != 0,
        retain_as_published: byte & 0x08 != 0,
        retain_handling,
    })
}

impl SubscribeProperties {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut props = Self::default();
        let mut p = Properties::read(r)?;
        while let Some(id) = p.next_id()? {
            match id {
                prop::SUBSCRIPTION_IDENTIFIER => {
                    let sub_id = p.varint()?;
                    if sub_id == 0 {
                        return Err(DecodeError::Protocol(
                            "Subscription Identifier is 0 (MQTT 5 §3.8.2.1.2)",
                        ));
                    }
                    once(&mut props.subscription_identifier, sub_id, id)?
                }
                prop::USER_PROPERTY => props.user_properties.push(p.string_pair()?),
                other => return Err(prop::not_allowed(other)),
            }
        }
        Ok(props)
    }
}

impl PropertyBlock for SubscribeProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        if let Some(sub_id) = self.subscription_identifier {
            prop::put_subscription_id(s, sub_id)?;
        }
        prop::put_user(s, &self.user_properties)
    }
}
