//! PUBLISH (MQTT 5 §3.3, MQTT 3.1.1 §3.3) and the topic name rules it enforces (MQTT 5 §4.7).
//! Topic filters are not checked here: wildcard placement belongs to the pub/sub crate.

use bytes::Bytes;

use crate::error::{DecodeError, EncodeError};
use crate::properties::{
    self as prop, once, payload_format, put_properties, Properties, PropertyBlock, UserProperties,
};
use crate::types::{PacketId, ProtocolVersion, QoS};
use crate::wire::{Reader, Sink};

/// An application message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Publish {
    /// Set when this may be a re-delivery; always false at QoS 0 ([MQTT-3.3.1-2]).
    pub dup: bool,
    /// Delivery guarantee.
    pub qos: QoS,
    /// Whether the server should keep the message as the topic's retained message.
    pub retain: bool,
    /// Topic name; may be empty in MQTT 5 when a Topic Alias stands for it.
    pub topic: String,
    /// `Some` exactly when `qos` is above 0 ([MQTT-2.2.1-2]).
    pub packet_id: Option<PacketId>,
    /// Application payload, copied out of the read buffer.
    pub payload: Bytes,
    /// PUBLISH properties (MQTT 5 only).
    pub properties: PublishProperties,
}

/// PUBLISH properties (MQTT 5 §3.3.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishProperties {
    /// 0: unspecified bytes, 1: UTF-8 payload.
    pub payload_format_indicator: Option<u8>,
    /// Lifetime of the message in seconds.
    pub message_expiry_interval: Option<u32>,
    /// Stands for the topic name on this connection; never 0.
    pub topic_alias: Option<u16>,
    /// Topic for a response; no wildcards.
    pub response_topic: Option<String>,
    /// Data to correlate a response with this request.
    pub correlation_data: Option<Bytes>,
    /// Application-defined name/value pairs.
    pub user_properties: UserProperties,
    /// Identifiers of the subscriptions that matched (server to client only), each 1..=268,435,455.
    pub subscription_identifiers: Vec<u32>,
    /// MIME-like description of the payload.
    pub content_type: Option<String>,
}

const DUP: u8 = 0x08;
const RETAIN: u8 = 0x01;

/// Rejects wildcards in a topic name ([MQTT-3.3.2-2], MQTT 5 §4.7.1).
pub(crate) fn check_topic_name(topic: &str, wildcard: &'static str) -> Result<(), DecodeError> {
    if topic.contains(['+', '#']) {
        return Err(DecodeError::InvalidTopic(wildcard));
    }
    Ok(())
}

/// A Response Topic is a topic name: not empty and without wildcards ([MQTT-3.3.2-14]).
pub(crate) fn check_response_topic(topic: &str) -> Result<(), DecodeError> {
    if topic.contains(['+', '#']) {
        return Err(DecodeError::Protocol(
            "[MQTT-3.3.2-14] Response Topic contains a wildcard",
        ));
    }
    if topic.is_empty() {
        return Err(DecodeError::Protocol("[MQTT-4.7.3-1] Response Topic is empty"));
    }
    Ok(())
}

impl Publish {
    /// A QoS 0 message with no properties.
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            payload: payload.into(),
            ..Self::default()
        }
    }

    /// The low nibble of the fixed header.
    pub(crate) fn flags(&self) -> u8 {
        let mut flags = u8::from(self.qos) << 1;
        if self.dup {
            flags |= DUP;
        }
        if self.retain {
            flags |= RETAIN;
        }
        flags
    }

    /// `flags` is the fixed header's low nibble; QoS 3 was rejected with the header.
    pub(crate) fn decode(flags: u8, r: &mut Reader<'_>, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let qos = QoS::try_from((flags >> 1) & 0x03)
            .map_err(|_| DecodeError::Malformed("[MQTT-3.3.1-4] PUBLISH with QoS 3"))?;
        let dup = flags & DUP != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::Malformed("[MQTT-3.3.1-2] DUP flag set on a QoS 0 PUBLISH"));
        }
        let topic = r.string()?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(r.packet_id()?)
        };
        let properties = if version.is_v5() {
            PublishProperties::decode(r)?
        } else {
            PublishProperties::default()
        };

        check_topic_name(&topic, "[MQTT-3.3.2-2] PUBLISH topic contains wildcard")?;
        if topic.is_empty() {
            if !version.is_v5() {
                return Err(DecodeError::InvalidTopic("[MQTT-4.7.3-1] PUBLISH topic is empty"));
            }
            if properties.topic_alias.is_none() {
                return Err(DecodeError::Protocol(
                    "PUBLISH topic is empty and there is no Topic Alias (MQTT 5 §3.3.2.1)",
                ));
            }
        }

        Ok(Self {
            dup,
            qos,
            retain: flags & RETAIN != 0,
            topic,
            packet_id,
            payload: Bytes::copy_from_slice(r.rest()),
            properties,
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
        if self.dup && self.qos == QoS::AtMostOnce {
            return Err(EncodeError::Invalid("[MQTT-3.3.1-2] DUP flag set on a QoS 0 PUBLISH"));
        }
        if !version.is_v5() && self.topic.is_empty() {
            return Err(EncodeError::Invalid(
                "[MQTT-4.7.3-1] empty topic (topic aliases need MQTT 5)",
            ));
        }
        s.put_str(&self.topic)?;
        match (self.qos, self.packet_id) {
            (QoS::AtMostOnce, None) => {}
            (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(id)) => s.put_u16(id.get()),
            (QoS::AtMostOnce, Some(_)) => {
                return Err(EncodeError::Invalid(
                    "[MQTT-2.2.1-2] QoS 0 PUBLISH with a packet identifier",
                ))
            }
            (_, None) => {
                return Err(EncodeError::Invalid(
                    "[MQTT-2.2.1-3] QoS 1/2 PUBLISH without a packet identifier",
                ))
            }
        }
        if version.is_v5() {
            put_properties(s, &self.properties)?;
        }
        s.put_slice(&self.payload);
        Ok(())
    }
}

impl PublishProperties {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut props = Self::default();
        let mut p = Properties::read(r)?;
        while let Some(id) = p.next_id()? {
            match id {
                prop::PAYLOAD_FORMAT_INDICATOR => {
                    once(&mut props.payload_format_indicator, payload_format(&mut p)?, id)?
                }
                prop::MESSAGE_EXPIRY_INTERVAL => once(&mut props.message_expiry_interval, p.u32()?, id)?,
                prop::TOPIC_ALIAS => {
                    let alias = p.u16()?;
                    if alias == 0 {
                        return Err(DecodeError::InvalidTopicAlias("[MQTT-3.3.2-8] Topic Alias is 0"));
                    }
                    once(&mut props.topic_alias, alias, id)?
                }
                prop::RESPONSE_TOPIC => {
                    let topic = p.string()?;
                    check_response_topic(&topic)?;
                    once(&mut props.response_topic, topic, id)?
                }
                prop::CORRELATION_DATA => once(&mut props.correlation_data, p.binary()?, id)?,
                prop::USER_PROPERTY => props.user_properties.push(p.string_pair()?),
                prop::SUBSCRIPTION_IDENTIFIER => {
                    let sub_id = p.varint()?;
                    if sub_id == 0 {
                        return Err(DecodeError::Protocol(
                            "Subscription Identifier is 0 (MQTT 5 §3.3.2.3.8)",
                        ));
                    }
                    props.subscription_identifiers.push(sub_id);
                }
                prop::CONTENT_TYPE => once(&mut props.content_type, p.string()?, id)?,
                other => return Err(prop::not_allowed(other)),
            }
        }
        Ok(props)
    }
}

impl PropertyBlock for PublishProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        prop::put_u8(s, prop::PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        prop::put_u32(s, prop::MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        if self.topic_alias == Some(0) {
            return Err(EncodeError::Invalid("[MQTT-3.3.2-8] Topic Alias is 0"));
        }
        prop::put_u16(s, prop::TOPIC_ALIAS, self.topic_alias);
        prop::put_str(s, prop::RESPONSE_TOPIC, self.response_topic.as_deref())?;
        prop::put_binary(s, prop::CORRELATION_DATA, self.correlation_data.as_deref())?;
        prop::put_user(s, &self.user_properties)?;
        for &sub_id in &self.subscription_identifiers {
            prop::put_subscription_id(s, sub_id)?;
        }
        prop::put_str(s, prop::CONTENT_TYPE, self.content_type.as_deref())
    }
}
