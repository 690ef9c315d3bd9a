//! MQTT 5 properties (MQTT 5 §2.2.2): the identifier table, the reader that walks one property
//! block, and the writers shared by every packet's property struct. Each packet module owns the
//! struct for its own properties; [`AckProperties`], shared by the acknowledgements, lives here.
//!
//! Rules enforced for every block: the block must fit inside the packet; each identifier must be
//! one the packet allows (else Malformed, §2.2.2.2); only User Property — and Subscription
//! Identifier in PUBLISH — may repeat (else Protocol Error, as each property's section says).

use crate::error::{DecodeError, EncodeError};
use crate::wire::{measure, Reader, Sink, MAX_VARINT};

/// User properties (MQTT 5 §3.1.2.11.8): name/value pairs, order kept, names may repeat.
pub type UserProperties = Vec<(String, String)>;

macro_rules! property_table {
    ($($name:ident = $id:literal, $text:literal;)*) => {
        $(
            #[doc = concat!("Property identifier of ", $text, ".")]
            pub(crate) const $name: u8 = $id;
        )*

        /// A property given twice where the specification allows it once.
        pub(crate) fn duplicate(id: u8) -> DecodeError {
            DecodeError::Protocol(match id {
                $($id => concat!($text, " property appears more than once (MQTT 5 §2.2.2.2)"),)*
                _ => "property appears more than once (MQTT 5 §2.2.2.2)",
            })
        }

        /// A property identifier this packet type does not allow, or no property at all.
        pub(crate) fn not_allowed(id: u8) -> DecodeError {
            DecodeError::Malformed(match id {
                $($id => concat!($text, " property is not allowed in this packet (MQTT 5 §2.2.2.2)"),)*
                _ => "unknown property identifier (MQTT 5 §2.2.2.2)",
            })
        }

        /// A byte-valued flag property that is neither 0 nor 1.
        fn not_boolean(id: u8) -> DecodeError {
            DecodeError::Protocol(match id {
                $($id => concat!($text, " property is neither 0 nor 1 (MQTT 5 §3)"),)*
                _ => "property is neither 0 nor 1 (MQTT 5 §3)",
            })
        }
    };
}

property_table! {
    PAYLOAD_FORMAT_INDICATOR = 0x01, "Payload Format Indicator";
    MESSAGE_EXPIRY_INTERVAL = 0x02, "Message Expiry Interval";
    CONTENT_TYPE = 0x03, "Content Type";
    RESPONSE_TOPIC = 0x08, "Response Topic";
    CORRELATION_DATA = 0x09, "Correlation Data";
    SUBSCRIPTION_IDENTIFIER = 0x0B, "Subscription Identifier";
    SESSION_EXPIRY_INTERVAL = 0x11, "Session Expiry Interval";
    ASSIGNED_CLIENT_IDENTIFIER = 0x12, "Assigned Client Identifier";
    SERVER_KEEP_ALIVE = 0x13, "Server Keep Alive";
    AUTHENTICATION_METHOD = 0x15, "Authentication Method";
    AUTHENTICATION_DATA = 0x16, "Authentication Data";
    REQUEST_PROBLEM_INFORMATION = 0x17, "Request Problem Information";
    WILL_DELAY_INTERVAL = 0x18, "Will Delay Interval";
    REQUEST_RESPONSE_INFORMATION = 0x19, "Request Response Information";
    RESPONSE_INFORMATION = 0x1A, "Response Information";
    SERVER_REFERENCE = 0x1C, "Server Reference";
    REASON_STRING = 0x1F, "Reason String";
    RECEIVE_MAXIMUM = 0x21, "Receive Maximum";
    TOPIC_ALIAS_MAXIMUM = 0x22, "Topic Alias Maximum";
    TOPIC_ALIAS = 0x23, "Topic Alias";
    MAXIMUM_QOS = 0x24, "Maximum QoS";
    RETAIN_AVAILABLE = 0x25, "Retain Available";
    USER_PROPERTY = 0x26, "User Property";
    MAXIMUM_PACKET_SIZE = 0x27, "Maximum Packet Size";
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28, "Wildcard Subscription Available";
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29, "Subscription Identifier Available";
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A, "Shared Subscription Available";
}

/// Stores a property that may appear at most once.
pub(crate) fn once<T>(slot: &mut Option<T>, value: T, id: u8) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(duplicate(id));
    }
    *slot = Some(value);
    Ok(())
}

/// One property block being walked: `while let Some(id) = props.next_id()? { match id … }`,
/// reading each value with the accessor for that property's type.
pub(crate) struct Properties<'a> {
    r: Reader<'a>,
}

impl<'a> Properties<'a> {
    /// Reads the property length and splits the block off `r`.
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let len = r.varint()?;
        let block = r.take(
            usize::try_from(len).unwrap_or(usize::MAX),
            "property length runs past the end of the packet (MQTT 5 §2.2.2.1)",
        )?;
        Ok(Self { r: Reader::new(block) })
    }

    /// The next property identifier, or `None` at the end of the block. All identifiers this
    /// version defines fit in one byte; anything larger is unknown.
    pub(crate) fn next_id(&mut self) -> Result<Option<u8>, DecodeError> {
        if self.r.is_empty() {
            return Ok(None);
        }
        let id = self.r.varint()?;
        match u8::try_from(id) {
            Ok(id) => Ok(Some(id)),
            Err(_) => Err(not_allowed(0)),
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.r.u8()
    }

    /// A byte that must be 0 or 1 (Request Problem Information, Retain Available, …).
    pub(crate) fn boolean(&mut self, id: u8) -> Result<bool, DecodeError> {
        match self.r.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(not_boolean(id)),
        }
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.r.u16()
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.r.u32()
    }

    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        self.r.varint()
    }

    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        self.r.string()
    }

    pub(crate) fn binary(&mut self) -> Result<bytes::Bytes, DecodeError> {
        self.r.binary()
    }

    pub(crate) fn string_pair(&mut self) -> Result<(String, String), DecodeError> {
        self.r.string_pair()
    }
}

/// Payload Format Indicator: 0 (unspecified bytes) or 1 (UTF-8), MQTT 5 §3.3.2.3.2.
pub(crate) fn payload_format(p: &mut Properties<'_>) -> Result<u8, DecodeError> {
    match p.u8()? {
        value @ (0 | 1) => Ok(value),
        _ => Err(DecodeError::Protocol(
            "Payload Format Indicator is neither 0 nor 1 (MQTT 5 §3.3.2.3.2)",
        )),
    }
}

/// A property block's contents, written to any [`Sink`].
pub(crate) trait PropertyBlock {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError>;

    /// Bytes of the properties themselves, without the property length.
    fn len(&self) -> Result<usize, EncodeError> {
        measure(|c| self.write(c))
    }
}

/// Writes the property length and then the block.
pub(crate) fn put_properties<S: Sink, P: PropertyBlock>(s: &mut S, props: &P) -> Result<(), EncodeError> {
    s.put_varint(props.len()?)?;
    props.write(s)
}

pub(crate) fn put_u8<S: Sink>(s: &mut S, id: u8, value: Option<u8>) {
    if let Some(value) = value {
        s.put_u8(id);
        s.put_u8(value);
    }
}

pub(crate) fn put_bool<S: Sink>(s: &mut S, id: u8, value: Option<bool>) {
    put_u8(s, id, value.map(u8::from));
}

pub(crate) fn put_u16<S: Sink>(s: &mut S, id: u8, value: Option<u16>) {
    if let Some(value) = value {
        s.put_u8(id);
        s.put_u16(value);
    }
}

pub(crate) fn put_u32<S: Sink>(s: &mut S, id: u8, value: Option<u32>) {
    if let Some(value) = value {
        s.put_u8(id);
        s.put_u32(value);
    }
}

/// A variable-byte-integer property (Subscription Identifier), 1..=268,435,455.
pub(crate) fn put_subscription_id<S: Sink>(s: &mut S, value: u32) -> Result<(), EncodeError> {
    let value = usize::try_from(value).unwrap_or(usize::MAX);
    if value == 0 || value > MAX_VARINT {
        return Err(EncodeError::Invalid(
            "Subscription Identifier outside 1..=268,435,455 (MQTT 5 §3.8.2.1.2)",
        ));
    }
    s.put_u8(SUBSCRIPTION_IDENTIFIER);
    s.put_varint(value)
}

pub(crate) fn put_str<S: Sink>(s: &mut S, id: u8, value: Option<&str>) -> Result<(), EncodeError> {
    if let Some(value) = value {
        s.put_u8(id);
        s.put_str(value)?;
    }
    Ok(())
}

pub(crate) fn put_binary<S: Sink>(s: &mut S, id: u8, value: Option<&[u8]>) -> Result<(), EncodeError> {
    if let Some(value) = value {
        s.put_u8(id);
        s.put_binary(value)?;
    }
    Ok(())
}

pub(crate) fn put_user<S: Sink>(s: &mut S, props: &UserProperties) -> Result<(), EncodeError> {
    for (name, value) in props {
        s.put_u8(USER_PROPERTY);
        s.put_str(name)?;
        s.put_str(value)?;
    }
    Ok(())
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK (MQTT 5 §3.4.2.2 ff.).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AckProperties {
    /// Human-readable diagnostics; not to be parsed by the receiver.
    pub reason_string: Option<String>,
    /// Application-defined name/value pairs.
    pub user_properties: UserProperties,
}

impl AckProperties {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut props = Self::default();
        let mut p = Properties::read(r)?;
        while let Some(id) = p.next_id()? {
            match id {
                REASON_STRING => once(&mut props.reason_string, p.string()?, id)?,
                USER_PROPERTY => props.user_properties.push(p.string_pair()?),
                other => return Err(not_allowed(other)),
            }
        }
        Ok(props)
    }

    /// Whether the block would be empty, which lets acknowledgements use their short forms.
    pub fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }
}

impl PropertyBlock for AckProperties {
    fn write<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        put_str(s, REASON_STRING, self.reason_string.as_deref())?;
        put_user(s, &self.user_properties)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::BytesMut;

    fn decode(bytes: &[u8]) -> Result<AckProperties, DecodeError> {
        let mut r = Reader::new(bytes);
        let props = AckProperties::decode(&mut r)?;
        r.finish()?;
        Ok(props)
    }

    #[test]
    fn ack_properties_round_trip() {
        let props = AckProperties {
            reason_string: Some("nope".into()),
            user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
        };
        let mut out = BytesMut::new();
        put_properties(&mut out, &props).unwrap();
        assert_eq!(out[0] as usize, out.len() - 1);
        assert_eq!(decode(&out).unwrap(), props);
    }

    #[test]
    fn duplicate_reason_string_is_a_protocol_error() {
        let bytes = [0x08, 0x1F, 0x00, 0x01, b'a', 0x1F, 0x00, 0x01, b'b'];
        let err = decode(&bytes).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Protocol("Reason String property appears more than once (MQTT 5 §2.2.2.2)")
        );
        assert_eq!(err.reason_code(), crate::ReasonCode::PROTOCOL_ERROR);
    }

    #[test]
    fn foreign_and_unknown_properties_are_malformed() {
        // Topic Alias (0x23) is a PUBLISH property.
        let err = decode(&[0x03, 0x23, 0x00, 0x01]).unwrap_err();
        assert_eq!(err.reason_code(), crate::ReasonCode::MALFORMED_PACKET);
        let err = decode(&[0x02, 0x7F, 0x00]).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Malformed("unknown property identifier (MQTT 5 §2.2.2.2)")
        );
        // Two-byte identifier: no such property in MQTT 5.0.
        assert!(decode(&[0x02, 0x80, 0x01]).is_err());
    }

    #[test]
    fn property_length_past_the_end_is_malformed() {
        let err = decode(&[0x05, 0x1F, 0x00]).unwrap_err();
        assert_eq!(err.reason_code(), crate::ReasonCode::MALFORMED_PACKET);
        // Value cut off by the block's own length.
        assert!(decode(&[0x02, 0x1F, 0x00, 0x00]).is_err());
    }

    #[test]
    fn booleans_must_be_zero_or_one() {
        let mut r = Reader::new(&[0x02, RETAIN_AVAILABLE, 0x02]);
        let mut p = Properties::read(&mut r).unwrap();
        let id = p.next_id().unwrap().unwrap();
        assert_eq!(
            p.boolean(id).unwrap_err().reason_code(),
            crate::ReasonCode::PROTOCOL_ERROR
        );
    }
}
