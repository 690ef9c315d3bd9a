//! Property-based round trips: every valid packet encodes, `encoded_len` matches, and decoding
//! gives back the packet (after the MQTT 3.x normalisation). Plus: no byte string, random or
//! mutated from a valid packet, makes the decoder panic.

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;

use super::strategies::{normalise, packet};
use super::{V311, V3_1, V5};
use crate::fuzzing::round_trip;
use crate::*;

fn check(packet: Packet, version: ProtocolVersion) -> Result<(), TestCaseError> {
    let mut out = BytesMut::new();
    encode(&packet, version, &mut out).map_err(|e| TestCaseError::fail(format!("{e}: {packet:?}")))?;
    prop_assert_eq!(encoded_len(&packet, version), out.len());
    let decoded = decode_slice(&out, Some(version), MAX_PACKET_SIZE);
    let expected = normalise(packet, version);
    prop_assert_eq!(decoded, Ok(Some((expected, out.len()))));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(768))]

    #[test]
    fn round_trip_v5(packet in packet(V5)) {
        check(packet, V5)?;
    }

    #[test]
    fn round_trip_v311(packet in packet(V311)) {
        check(packet, V311)?;
    }

    #[test]
    fn round_trip_v31(packet in packet(V3_1)) {
        check(packet, V3_1)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256), max in any::<u32>()) {
        for version in crate::fuzzing::VERSIONS {
            let _ = decode_slice(&bytes, version, max);
        }
        round_trip(&bytes);
    }

    #[test]
    fn mutated_packets_never_panic(
        packet in packet(V5),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = BytesMut::new();
        encode(&packet, V5, &mut bytes).unwrap();
        let mut bytes = bytes.to_vec();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        // Both the mutated packet and a prefix of it, which must ask for more or fail.
        round_trip(&bytes);
        round_trip(&bytes[..cut.index(bytes.len())]);
    }
}
