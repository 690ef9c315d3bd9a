//! Cross-cutting tests: golden bytes per packet and version, each validation rule with the
//! reason code it must produce, streaming, property-based round trips, and the fuzz corpus
//! replayed on stable. Unit tests for single modules live beside them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod corpus;
mod encoding;
mod golden;
mod roundtrip;
mod strategies;
mod streaming;
mod validation;

use bytes::BytesMut;

use crate::{decode_slice, encode, encoded_len, DecodeError, Packet, PacketId, ProtocolVersion};
use crate::{ReasonCode, MAX_PACKET_SIZE};

pub(crate) const V3_1: ProtocolVersion = ProtocolVersion::V3_1;
pub(crate) const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
pub(crate) const V5: ProtocolVersion = ProtocolVersion::V5;

pub(crate) fn pid(id: u16) -> PacketId {
    PacketId::new(id).unwrap()
}

/// Encodes with `encode`, checking `encoded_len` agrees.
pub(crate) fn to_bytes(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out).unwrap();
    assert_eq!(encoded_len(packet, version), out.len());
    out.to_vec()
}

/// Decodes exactly one packet that must use all of `bytes`.
pub(crate) fn from_bytes(bytes: &[u8], version: Option<ProtocolVersion>) -> Result<Packet, DecodeError> {
    match decode_slice(bytes, version, MAX_PACKET_SIZE)? {
        Some((packet, used)) => {
            assert_eq!(used, bytes.len(), "packet did not use all the bytes");
            Ok(packet)
        }
        None => panic!("incomplete packet: {bytes:02x?}"),
    }
}

/// Asserts that `bytes` fail to decode with `version`, and with which reason code.
#[track_caller]
pub(crate) fn rejects(bytes: &[u8], version: Option<ProtocolVersion>, code: ReasonCode) -> DecodeError {
    let err = match decode_slice(bytes, version, MAX_PACKET_SIZE) {
        Err(err) => err,
        other => panic!("expected an error for {bytes:02x?}, got {other:?}"),
    };
    assert_eq!(err.reason_code(), code, "{err}");
    err
}
