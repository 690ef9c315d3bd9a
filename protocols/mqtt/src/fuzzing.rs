//! The round-trip oracle shared by the `mqtt_decode` fuzz target and the corpus replay test, so
//! that both check exactly the same thing. Not part of the supported API.

use bytes::BytesMut;

use crate::{decode, decode_slice, encode, encoded_len, ProtocolVersion, MAX_PACKET_SIZE};

/// The versions every input is decoded with: `None` is "before CONNECT".
pub const VERSIONS: [Option<ProtocolVersion>; 4] = [
    None,
    Some(ProtocolVersion::V3_1),
    Some(ProtocolVersion::V3_1_1),
    Some(ProtocolVersion::V5),
];

/// Decodes `data` as a stream of packets with each version. Every packet that decodes must
/// re-encode, with `encoded_len` equal to the bytes written and no more bytes than it came in;
/// the re-encoding must decode to the same packet and re-encode to the same bytes. Panics
/// (which is what a fuzz target reports) on any violation.
pub fn round_trip(data: &[u8]) {
    for version in VERSIONS {
        // Also exercises the streaming path: several packets in one input.
        let mut buf = BytesMut::from(data);
        for _ in 0..64 {
            let before = buf.len();
            match decode(&mut buf, version, MAX_PACKET_SIZE) {
                Ok(Some(packet)) => check_packet(&packet, before - buf.len(), version),
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) must leave the buffer untouched");
                    break;
                }
                Err(_) => {
                    assert_eq!(buf.len(), before, "an error must leave the buffer untouched");
                    break;
                }
            }
        }
    }
}

fn check_packet(packet: &crate::Packet, used: usize, version: Option<ProtocolVersion>) {
    let wire_version = version.unwrap_or(ProtocolVersion::V3_1_1);
    let mut first = BytesMut::new();
    if let Err(err) = encode(packet, wire_version, &mut first) {
        panic!("decoded packet does not re-encode: {err}\n{packet:?}");
    }
    assert_eq!(
        encoded_len(packet, wire_version),
        first.len(),
        "encoded_len != bytes written"
    );
    assert!(first.len() <= used, "re-encoding is longer than the input: {packet:?}");

    let again = match decode_slice(&first, version, MAX_PACKET_SIZE) {
        Ok(Some((again, n))) => {
            assert_eq!(n, first.len(), "re-encoding was not consumed whole");
            again
        }
        other => panic!("re-encoding does not decode: {other:?}\n{packet:?}\n{first:02x?}"),
    };
    assert_eq!(&again, packet, "round trip changed the packet");

    let mut second = BytesMut::new();
    if let Err(err) = encode(&again, wire_version, &mut second) {
        panic!("second encode failed: {err}");
    }
    assert_eq!(first, second, "encoding is not deterministic");
}
