//! CONNECT (MQTT 5 §3.1, MQTT 3.1.1 §3.1): the only self-describing packet — it carries its own
//! protocol name and level, so it decodes the same whatever version the caller passes.

use bytes::Bytes;

use crate::error::{DecodeError, EncodeError};
use crate::properties::{
    self as prop, once, payload_format, put_properties, Properties, PropertyBlock, UserProperties,
};
use crate::types::{ProtocolVersion, QoS};
use crate::wire::{Reader, Sink};

use super::publish::check_topic_name;

/// A client's request to open a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol version the client speaks; decides the encoding of the rest of the connection.
    pub protocol: ProtocolVersion,
    /// Clean Start (MQTT 5) / Clean Session (3.x).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// Client identifier; may be empty (the session layer decides whether that is allowed).
    pub client_id: String,
    /// The will message, if the Will Flag is set.
    pub will: Option<Will>,
    /// User name, if the User Name Flag is set.
    pub username: Option<String>,
    /// Password, if the Password Flag is set. Before MQTT 5 it requires a user name.
    pub password: Option<Bytes>,
    /// CONNECT properties (MQTT 5 only; empty for 3.x).
    pub properties: ConnectProperties,
}

impl Default for Connect {
    /// An MQTT 5 CONNECT with an empty client identifier and no will or credentials.
    fn default() -> Self {
        Self {
            protocol: ProtocolVersion::V5,
            clean_start: false,
            keep_alive: 0,
            client_id: String::new(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        }
    }
}

/// CONNECT properties (MQTT 5 §3.1.2.11).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectProperties {
    /// Seconds the session outlives the connection; absent means 0.
    pub session_expiry_interval: Option<u32>,
    /// QoS 1/2 publications the client will process concurrently; never 0.
    pub receive_maximum: Option<u16>,
    /// Largest packet the client accepts; never 0.
    pub maximum_packet_size: Option<u32>,
    /// Highest topic alias the client accepts from the server.
    pub topic_alias_maximum: Option<u16>,
    /// Whether the client wants Response Information in CONNACK.
    pub request_response_information: Option<bool>,
    /// Whether the server may send Reason Strings and User Properties on failures.
    pub request_problem_information: Option<bool>,
    /// Application-defined name/value pairs.
    pub user_properties: UserProperties,
    /// Name of the extended authentication method.
    pub authentication_method: Option<String>,
    /// Method-specific authentication data; only with a method.
    pub authentication_data: Option<Bytes>,
}

/// The message the server publishes if the connection ends abnormally (MQTT 5 §3.1.2.5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Will {
    /// Topic name; not empty, no wildcards.
    pub topic: String,
    /// Application message.
    pub payload: Bytes,
    /// QoS to publish with.
    pub qos: QoS,
    /// Whether to publish it retained.
    pub retain: bool,
    /// Will properties (MQTT 5 only).
    pub properties: WillProperties,
}

/// Will properties (MQTT 5 §3.1.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WillProperties {
    /// Seconds to wait after the connection ends before publishing.
    pub will_delay_interval: Option<u32>,
    /// 0: unspecified bytes, 1: UTF-8 payload.
    pub payload_format_indicator: Option<u8>,
    /// Lifetime of the will message in seconds.
    pub message_expiry_interval: Option<u32>,
    /// MIME-like description of the payload.
    pub content_type: Option<String>,
    /// Topic for a response; no wildcards.
    pub response_topic: Option<String>,
    /// Data to correlate a response with this request.
    pub correlation_data: Option<Bytes>,
    /// Application-defined name/value pairs.
    pub user_properties: UserProperties,
}

const RESERVED: u8 = 0x01;
const CLEAN_START: u8 = 0x02;
const WILL: u8 = 0x04;
const WILL_RETAIN: u8 = 0x20;
const PASSWORD: u8 = 0x40;
const USERNAME: u8 = 0x80;

impl Connect {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let name = r.prefixed("packet ends inside the protocol name (MQTT 5 §3.1.2.1)")?;
        let level = r.u8()?;
        let protocol = match (name, level) {
            (b"MQIsdp", 3) => ProtocolVersion::V3_1,
            (b"MQTT", 4) => ProtocolVersion::V3_1_1,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (b"MQTT" | b"MQIsdp", level) => return Err(DecodeError::UnsupportedProtocolVersion(level)),
            _ => return Err(DecodeError::UnsupportedProtocolName),
        };
        let v5 = protocol.is_v5();

        let flags = r.u8()?;
        if flags & RESERVED != 0 {
            return Err(DecodeError::Malformed("[MQTT-3.1.2-3] CONNECT reserved flag is not 0"));
        }
        let will_flag = flags & WILL != 0;
        let will_qos =
            QoS::try_from((flags >> 3) & 0x03).map_err(|_| DecodeError::Malformed("[MQTT-3.1.2-12] Will QoS is 3"))?;
        let will_retain = flags & WILL_RETAIN != 0;
        if !will_flag && will_qos != QoS::AtMostOnce {
            return Err(DecodeError::Protocol(
                "[MQTT-3.1.2-11] Will QoS is set without the Will Flag",
            ));
        }
        if !will_flag && will_retain {
            return Err(DecodeError::Protocol(
                "[MQTT-3.1.2-13] Will Retain is set without the Will Flag",
            ));
        }
        let has_username = flags & USERNAME != 0;
        let has_password = flags & PASSWORD != 0;
        if !v5 && has_password && !has_username {
            return Err(DecodeError::Malformed(
                "[MQTT-3.1.2-22] Password Flag is set without the User Name Flag (MQTT 3.1.1)",
            ));
        }

        let keep_alive = r.u16()?;
        let properties = if v5 {
            ConnectProperties::decode(r)?
        } else {
            ConnectProperties::default()
        };
        let client_id = r.string()?;
        let will = if will_flag {
            let properties = if v5 {
                WillProperties::decode(r)?
            } else {
                WillProperties::default()
            };
            let topic = r.string()?;
            check_topic_name(&topic, "Will Topic contains a wildcard (MQTT 5 §3.1.3.3, §4.7.1)")?;
            if topic.is_empty() {
                return Err(DecodeError::InvalidTopic("[MQTT-4.7.3-1] Will Topic is empty"));
            }
            let payload = r.binary()?;
            Some(Will {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = if has_username { Some(r.string()?) } else { None };
        let password = if has_password { Some(r.binary()?) } else { None };

        Ok(Self {
            protocol,
            clean_start: flags & CLEAN_START != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    /// Writes the variable header and payload for `self.protocol`.
    pub(crate) fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        let v5 = self.protocol.is_v5();
        if !v5 && self.password.is_some() && self.username.is_none() {
            return Err(EncodeError::Invalid(
                "[MQTT-3.1.2-22] password without user name before MQTT 5",
            ));
        }
        s.put_str(self.protocol.name())?;
        s.put_u8(self.protocol.level());

        let mut flags = 0;
        if self.clean_start {
            flags |= CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= WILL | (u8::from(will.qos) << 3);
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= USERNAME;
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        s.put_u8(flags);
        s.put_u16(self.keep_alive);
        if v5 {
            put_properties(s, &self.properties)?;
        }

        s.put_str(&self.client_id)?;
        if let Some(will) = &self.will {
            if v5 {
                put_properties(s, &will.properties)?;
            }
            s.put_str(&will.topic)?;
            s.put_binary(&will.payload)?;
        }
        if let Some(username) = &self.username {
            s.put_str(username)?;
        }
        if let Some(password) = &self.password {
            s.put_binary(password)?;
        }
        Ok(())
    }
}

impl ConnectProperties {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut props = Self::default();
        let mut p = Properties::read(r)?;
        while let Some(id) = p.next_id()? {
            match id {
                prop::SESSION_EXPIRY_INTERVAL => once(&mut props.session_expiry_interval, p.u32()?, id)?,
                prop::RECEIVE_MAXIMUM => {
                    let value = p.u16()?;
                    if value == 0 {
                        return Err(DecodeError::Protocol("Receive Maximum is 0 (MQTT 5 §3.1.2.11.3)"));
                    }
                    once(&mut props.receive_maximum, value, id)?
                }
                prop::MAXIMUM_PACKET_SIZE => {
                    let value = p.u32()?;
                    if value == 0 {
                        return Err(DecodeError::Protocol("Maximum Packet Size is 0 (MQTT 5 §3.1.2.11.4)"));
                    }
                    once(&mut props.maximum_packet_size, value, id)?
                }
                prop::TOPIC_ALIAS_MAXIMUM => once(&mut props.topic_alias_maximum, p.u16()?, id)?,
                prop::REQUEST_RESPONSE_INFORMATION => {
                    once(&mut props.request_response_information, p.boolean(id)?, id)?
                }
                prop::REQUEST_PROBLEM_INFORMATION => once(&mut props.request_problem_information, p.boolean(id)?, id)?,
                prop::USER_PROPERTY => props.user_properties.push(p.string_pair()?),
                prop::AUTHENTICATION_METHOD => once(&mut props.authentication_method, p.string()?, id)?,
                prop::AUTHENTICATION_DATA => once(&mut props.authentication_data, p.binary()?, id)?,
                other => return Err(prop::not_allowed(other)),
            }
        }
        if props.authentication_data.is_some() && props.authentication_method.is_none() {
            return Err(DecodeError::Protocol(
                "Authentication Data without Authentication Method (MQTT 5 §3.1.2.11.10)",
            ));
        }
        Ok(props)
    }
}

impl PropertyBlock for ConnectProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        prop::put_u32(s, prop::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        prop::put_u16(s, prop::RECEIVE_MAXIMUM, self.receive_maximum);
        prop::put_u32(s, prop::MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        prop::put_u16(s, prop::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        prop::put_bool(s, prop::REQUEST_RESPONSE_INFORMATION, self.request_response_information);
        prop::put_bool(s, prop::REQUEST_PROBLEM_INFORMATION, self.request_problem_information);
        prop::put_user(s, &self.user_properties)?;
        prop::put_str(s, prop::AUTHENTICATION_METHOD, self.authentication_method.as_deref())?;
        prop::put_binary(s, prop::AUTHENTICATION_DATA, self.authentication_data.as_deref())
    }
}

impl WillProperties {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut props = Self::default();
        let mut p = Properties::read(r)?;
        while let Some(id) = p.next_id()? {
            match id {
                prop::WILL_DELAY_INTERVAL => once(&mut props.will_delay_interval, p.u32()?, id)?,
                prop::PAYLOAD_FORMAT_INDICATOR => {
                    once(&mut props.payload_format_indicator, payload_format(&mut p)?, id)?
                }
                prop::MESSAGE_EXPIRY_INTERVAL => once(&mut props.message_expiry_interval, p.u32()?, id)?,
                prop::CONTENT_TYPE => once(&mut props.content_type, p.string()?, id)?,
                prop::RESPONSE_TOPIC => {
                    let topic = p.string()?;
                    super::publish::check_response_topic(&topic)?;
                    once(&mut props.response_topic, topic, id)?
                }
                prop::CORRELATION_DATA => once(&mut props.correlation_data, p.binary()?, id)?,
                prop::USER_PROPERTY => props.user_properties.push(p.string_pair()?),
                other => return Err(prop::not_allowed(other)),
            }
        }
        Ok(props)
    }
}

impl PropertyBlock for WillProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        prop::put_u32(s, prop::WILL_DELAY_INTERVAL, self.will_delay_interval);
        prop::put_u8(s, prop::PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        prop::put_u32(s, prop::MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        prop::put_str(s, prop::CONTENT_TYPE, self.content_type.as_deref())?;
        prop::put_str(s, prop::RESPONSE_TOPIC, self.response_topic.as_deref())?;
        prop::put_binary(s, prop::CORRELATION_DATA, self.correlation_data.as_deref())?;
        prop::put_user(s, &self.user_properties)
    }
}
