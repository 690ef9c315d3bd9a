//! CONNACK (MQTT 5 §3.2, MQTT 3.1.1 §3.2). MQTT 3.x has six return codes instead of reason
//! codes; the encoder maps with [`ReasonCode::to_v3_connack`] and the decoder maps back with
//! [`ReasonCode::from_v3_connack`]. MQTT 3.1 has no Session Present flag.

use bytes::Bytes;

use crate::error::{DecodeError, EncodeError};
use crate::properties::{self as prop, once, put_properties, Properties, PropertyBlock, UserProperties};
use crate::reason::ReasonCode;
use crate::types::{PacketType, ProtocolVersion, QoS};
use crate::wire::{Reader, Sink};

/// The server's answer to CONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAck {
    /// Whether the server resumed a stored session. Only ever sent with
    /// [`ReasonCode::SUCCESS`] ([MQTT-3.2.2-6]): the encoder writes 0 for any other code. Always
    /// false in MQTT 3.1, which has no such flag.
    pub session_present: bool,
    /// The outcome; mapped to a return code for MQTT 3.x.
    pub reason_code: ReasonCode,
    /// CONNACK properties (MQTT 5 only).
    pub properties: ConnAckProperties,
}

/// CONNACK properties (MQTT 5 §3.2.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAckProperties {
    /// Session expiry the server imposes instead of the client's.
    pub session_expiry_interval: Option<u32>,
    /// QoS 1/2 publications the server will process concurrently; never 0.
    pub receive_maximum: Option<u16>,
    /// Highest QoS the server supports. Only 0 or 1 may be sent: the encoder omits
    /// `Some(ExactlyOnce)`, which is what an absent property means.
    pub maximum_qos: Option<QoS>,
    /// Whether retained messages are supported.
    pub retain_available: Option<bool>,
    /// Largest packet the server accepts; never 0.
    pub maximum_packet_size: Option<u32>,
    /// Client identifier the server assigned when the client sent an empty one.
    pub assigned_client_identifier: Option<String>,
    /// Highest topic alias the server accepts from the client.
    pub topic_alias_maximum: Option<u16>,
    /// Human-readable diagnostics.
    pub reason_string: Option<String>,
    /// Application-defined name/value pairs.
    pub user_properties: UserProperties,
    /// Whether wildcard subscriptions are supported.
    pub wildcard_subscription_available: Option<bool>,
    /// Whether subscription identifiers are supported.
    pub subscription_identifiers_available: Option<bool>,
    /// Whether shared subscriptions are supported.
    pub shared_subscription_available: Option<bool>,
    /// Keep alive the server imposes instead of the client's.
    pub server_keep_alive: Option<u16>,
    /// Basis for response topics, when the client asked for it.
    pub response_information: Option<String>,
    /// Another server to use.
    pub server_reference: Option<String>,
    /// Extended authentication method.
    pub authentication_method: Option<String>,
    /// Method-specific authentication data.
    pub authentication_data: Option<Bytes>,
}

impl ConnAck {
    /// A CONNACK with `reason_code`, no session and no properties.
    pub fn new(reason_code: ReasonCode) -> Self {
        Self {
            reason_code,
            ..Self::default()
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let flags = r.u8()?;
        // MQTT 3.1 calls the byte reserved and gives it no rules, so it is ignored there.
        let session_present = match version {
            ProtocolVersion::V3_1 => false,
            ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => {
                if flags & 0xFE != 0 {
                    return Err(DecodeError::Malformed(
                        "[MQTT-3.2.2-1] CONNACK reserved acknowledge flags are not 0",
                    ));
                }
                flags & 0x01 != 0
            }
        };
        let code = r.u8()?;
        let (reason_code, properties) = if version.is_v5() {
            let reason = ReasonCode(code);
            if !reason.is_allowed_in(PacketType::ConnAck) {
                return Err(DecodeError::Protocol(
                    "CONNACK reason code not allowed (MQTT 5 §3.2.2.2)",
                ));
            }
            (reason, ConnAckProperties::decode(r)?)
        } else {
            let reason = ReasonCode::from_v3_connack(code).ok_or(DecodeError::Malformed(
                "CONNACK return code 6-255 is reserved (MQTT 3.1.1 §3.2.2.3)",
            ))?;
            (reason, ConnAckProperties::default())
        };
        if session_present && reason_code != ReasonCode::SUCCESS {
            return Err(DecodeError::Protocol(
                "[MQTT-3.2.2-6] Session Present set with a non-zero reason code",
            ));
        }
        Ok(Self {
            session_present,
            reason_code,
            properties,
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
        let session_present =
            self.session_present && self.reason_code == ReasonCode::SUCCESS && version != ProtocolVersion::V3_1;
        s.put_u8(u8::from(session_present));
        if version.is_v5() {
            s.put_u8(self.reason_code.0);
            put_properties(s, &self.properties)
        } else {
            s.put_u8(self.reason_code.to_v3_connack());
            Ok(())
        }
    }
}

impl ConnAckProperties {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut props = Self::default();
        let mut p = Properties::read(r)?;
        while let Some(id) = p.next_id()? {
            match id {
                prop::SESSION_EXPIRY_INTERVAL => once(&mut props.session_expiry_interval, p.u32()?, id)?,
                prop::RECEIVE_MAXIMUM => {
                    let value = p.u16()?;
                    if value == 0 {
                        return Err(DecodeError::Protocol("Receive Maximum is 0 (MQTT 5 §3.2.2.3.3)"));
                    }
                    once(&mut props.receive_maximum, value, id)?
                }
                prop::MAXIMUM_QOS => {
                    let qos = match p.u8()? {
                        0 => QoS::AtMostOnce,
                        1 => QoS::AtLeastOnce,
                        _ => {
                            return Err(DecodeError::Protocol(
                                "Maximum QoS is neither 0 nor 1 (MQTT 5 §3.2.2.3.4)",
                            ))
                        }
                    };
                    once(&mut props.maximum_qos, qos, id)?
                }
                prop::RETAIN_AVAILABLE => once(&mut props.retain_available, p.boolean(id)?, id)?,
                prop::MAXIMUM_PACKET_SIZE => {
                    let value = p.u32()?;
                    if value == 0 {
                        return Err(DecodeError::Protocol("Maximum Packet Size is 0 (MQTT 5 §3.2.2.3.6)"));
                    }
                    once(&mut props.maximum_packet_size, value, id)?
                }
                prop::ASSIGNED_CLIENT_IDENTIFIER => once(&mut props.assigned_client_identifier, p.string()?, id)?,
                prop::TOPIC_ALIAS_MAXIMUM => once(&mut props.topic_alias_maximum, p.u16()?, id)?,
                prop::REASON_STRING => once(&mut props.reason_string, p.string()?, id)?,
                prop::USER_PROPERTY => props.user_properties.push(p.string_pair()?),
                prop::WILDCARD_SUBSCRIPTION_AVAILABLE => {
                    once(&mut props.wildcard_subscription_available, p.boolean(id)?, id)?
                }
                prop::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                    once(&mut props.subscription_identifiers_available, p.boolean(id)?, id)?
                }
                prop::SHARED_SUBSCRIPTION_AVAILABLE => {
                    once(&mut props.shared_subscription_available, p.boolean(id)?, id)?
                }
                prop::SERVER_KEEP_ALIVE => once(&mut props.server_keep_alive, p.u16()?, id)?,
                prop::RESPONSE_INFORMATION => once(&mut props.response_information, p.string()?, id)?,
                prop::SERVER_REFERENCE => once(&mut props.server_reference, p.string()?, id)?,
                prop::AUTHENTICATION_METHOD => once(&mut props.authentication_method, p.string()?, id)?,
                prop::AUTHENTICATION_DATA => once(&mut props.authentication_data, p.binary()?, id)?,
                other => return Err(prop::not_allowed(other)),
            }
        }
        Ok(props)
    }
}

impl PropertyBlock for ConnAckProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        prop::put_u32(s, prop::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        prop::put_u16(s, prop::RECEIVE_MAXIMUM, self.receive_maximum);
        let maximum_qos = self.maximum_qos.filter(|&qos| qos != QoS::ExactlyOnce);
        prop::put_u8(s, prop::MAXIMUM_QOS, maximum_qos.map(u8::from));
        prop::put_bool(s, prop::RETAIN_AVAILABLE, self.retain_available);
        prop::put_u32(s, prop::MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        prop::put_str(
            s,
            prop::ASSIGNED_CLIENT_IDENTIFIER,
            self.assigned_client_identifier.as_deref(),
        )?;
        prop::put_u16(s, prop::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        prop::put_str(s, prop::REASON_STRING, self.reason_string.as_deref())?;
        prop::put_user(s, &self.user_properties)?;
        prop::put_bool(
            s,
            prop::WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        prop::put_bool(
            s,
            prop::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        );
        prop::put_bool(
            s,
            prop::SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        prop::put_u16(s, prop::SERVER_KEEP_ALIVE, self.server_keep_alive);
        prop::put_str(s, prop::RESPONSE_INFORMATION, self.response_information.as_deref())?;
        prop::put_str(s, prop::SERVER_REFERENCE, self.server_reference.as_deref())?;
        prop::put_str(s, prop::AUTHENTICATION_METHOD, self.authentication_method.as_deref())?;
        prop::put_binary(s, prop::AUTHENTICATION_DATA, self.authentication_data.as_deref())
    }
}
