//! AUTH (MQTT 5 §3.15): extended authentication exchanges. The packet type is reserved before
//! MQTT 5, so the fixed-header check rejects it there and the encoder refuses it.

use bytes::Bytes;

use crate::error::{DecodeError, EncodeError};
use crate::properties::{self as prop, once, put_properties, Properties, PropertyBlock, UserProperties};
use crate::reason::ReasonCode;
use crate::types::PacketType;
use crate::wire::{Reader, Sink};

/// One step of an extended authentication exchange.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// SUCCESS, CONTINUE_AUTHENTICATION or RE_AUTHENTICATE ([MQTT-3.15.2-1]).
    pub reason_code: ReasonCode,
    /// AUTH properties.
    pub properties: AuthProperties,
}

/// AUTH properties (MQTT 5 §3.15.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthProperties {
    /// The authentication method; must match CONNECT's.
    pub authentication_method: Option<String>,
    /// Method-specific data.
    pub authentication_data: Option<Bytes>,
    /// Human-readable diagnostics.
    pub reason_string: Option<String>,
    /// Application-defined name/value pairs.
    pub user_properties: UserProperties,
}

impl Auth {
    /// An AUTH with `reason_code` and no properties.
    pub fn new(reason_code: ReasonCode) -> Self {
        Self {
            reason_code,
            properties: AuthProperties::default(),
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut auth = Self::default();
        if r.is_empty() {
            return Ok(auth);
        }
        auth.reason_code = ReasonCode(r.u8()?);
        if !auth.reason_code.is_allowed_in(PacketType::Auth) {
            return Err(DecodeError::Protocol("[MQTT-3.15.2-1] AUTH reason code not allowed"));
        }
        // Unlike DISCONNECT (§3.14.2.2.1), AUTH has no rule that lets the property length be
        // left off on its own: only both together, for SUCCESS (§3.15.2).
        auth.properties = AuthProperties::decode(r)?;
        Ok(auth)
    }

    pub(crate) fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        let props_len = self.properties.len()?;
        if props_len == 0 && self.reason_code == ReasonCode::SUCCESS {
            return Ok(());
        }
        s.put_u8(self.reason_code.0);
        put_properties(s, &self.properties)
    }
}

impl AuthProperties {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut props = Self::default();
        let mut p = Properties::read(r)?;
        while let Some(id) = p.next_id()? {
            match id {
                prop::AUTHENTICATION_METHOD => once(&mut props.authentication_method, p.string()?, id)?,
                prop::AUTHENTICATION_DATA => once(&mut props.authentication_data, p.binary()?, id)?,
                prop::REASON_STRING => once(&mut props.reason_string, p.string()?, id)?,
                prop::USER_PROPERTY => props.user_properties.push(p.string_pair()?),
                other => return Err(prop::not_allowed(other)),
            }
        }
        Ok(props)
    }
}

impl PropertyBlock for AuthProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        prop::put_str(s, prop::AUTHENTICATION_METHOD, self.authentication_method.as_deref())?;
        prop::put_binary(s, prop::AUTHENTICATION_DATA, self.authentication_data.as_deref())?;
        prop::put_str(s, prop::REASON_STRING, self.reason_string.as_deref())?;
        prop::put_user(s, &self.user_properties)
    }
}
