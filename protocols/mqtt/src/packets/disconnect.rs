//! DISCONNECT (MQTT 5 §3.14, MQTT 3.1.1 §3.14). In MQTT 3.x it is two bytes and only the
//! client sends it; MQTT 5 adds a reason code and properties, both of which may be left off
//! when they are "normal" and empty (§3.14.2.1).

use crate::error::{DecodeError, EncodeError};
use crate::properties::{self as prop, once, put_properties, Properties, PropertyBlock, UserProperties};
use crate::reason::ReasonCode;
use crate::types::{PacketType, ProtocolVersion};
use crate::wire::{Reader, Sink};

/// The last packet on a connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// Why the connection ends; NORMAL_DISCONNECTION when decoded from MQTT 3.x.
    pub reason_code: ReasonCode,
    /// Properties (MQTT 5 only).
    pub properties: DisconnectProperties,
}

/// DISCONNECT properties (MQTT 5 §3.14.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisconnectProperties {
    /// New session expiry, sent by the client only.
    pub session_expiry_interval: Option<u32>,
    /// Human-readable diagnostics.
    pub reason_string: Option<String>,
    /// Application-defined name/value pairs.
    pub user_properties: UserProperties,
    /// Another server to use, sent by the server only.
    pub server_reference: Option<String>,
}

impl Disconnect {
    /// A DISCONNECT with `reason_code` and no properties.
    pub fn new(reason_code: ReasonCode) -> Self {
        Self {
            reason_code,
            properties: DisconnectProperties::default(),
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let mut disconnect = Self::default();
        if !version.is_v5() || r.is_empty() {
            return Ok(disconnect);
        }
        disconnect.reason_code = ReasonCode(r.u8()?);
        if !disconnect.reason_code.is_allowed_in(PacketType::Disconnect) {
            return Err(DecodeError::Protocol(
                "DISCONNECT reason code not allowed (MQTT 5 §3.14.2.1)",
            ));
        }
        if !r.is_empty() {
            disconnect.properties = DisconnectProperties::decode(r)?;
        }
        Ok(disconnect)
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
        if !version.is_v5() {
            return Ok(());
        }
        let props_len = self.properties.len()?;
        if props_len == 0 {
            if self.reason_code != ReasonCode::NORMAL_DISCONNECTION {
                s.put_u8(self.reason_code.0);
            }
            return Ok(());
        }
        s.put_u8(self.reason_code.0);
        put_properties(s, &self.properties)
    }
}

impl DisconnectProperties {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut props = Self::default();
        let mut p = Properties::read(r)?;
        while let Some(id) = p.next_id()? {
            match id {
                prop::SESSION_EXPIRY_INTERVAL => once(&mut props.session_expiry_interval, p.u32()?, id)?,
                prop::REASON_STRING => once(&mut props.reason_string, p.string()?, id)?,
                prop::USER_PROPERTY => props.user_properties.push(p.string_pair()?),
                prop::SERVER_REFERENCE => once(&mut props.server_reference, p.string()?, id)?,
                other => return Err(prop::not_allowed(other)),
            }
        }
        Ok(props)
    }
}

impl PropertyBlock for DisconnectProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        prop::put_u32(s, prop::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        prop::put_str(s, prop::REASON_STRING, self.reason_string.as_deref())?;
        prop::put_user(s, &self.user_properties)?;
        prop::put_str(s, prop::SERVER_REFERENCE, self.server_reference.as_deref())
    }
}
