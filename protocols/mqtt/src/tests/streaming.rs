//! The streaming contract: `Ok(None)` until a whole packet is buffered, the buffer untouched
//! until then, exactly one packet consumed per `Some`, and the size limit applied to the fixed
//! header before the body is buffered.

use bytes::BytesMut;

use super::{pid, to_bytes, V311, V5};
use crate::*;

fn sample_packets() -> Vec<(Packet, ProtocolVersion)> {
    let connect = Connect {
        client_id: "c".into(),
        keep_alive: 30,
        ..Connect::default()
    };
    let big = Publish {
        qos: QoS::AtLeastOnce,
        packet_id: Some(pid(9)),
        ..Publish::new("sensors/1", vec![0xab; 300])
    };
    vec![
        (Packet::Connect(Box::new(connect)), V5),
        (Packet::Publish(big.clone()), V5),
        (Packet::Publish(big), V311),
        (Packet::PubAck(PubResp::new(pid(9))), V5),
        (Packet::PingReq, V311),
        (
            Packet::Disconnect(Disconnect::new(ReasonCode::SERVER_SHUTTING_DOWN)),
            V5,
        ),
    ]
}

#[test]
fn one_byte_at_a_time() {
    for (packet, version) in sample_packets() {
        let bytes = to_bytes(&packet, version);
        let mut buf = BytesMut::new();
        for (i, &byte) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[byte]);
            let before = buf.len();
            let decoded = decode(&mut buf, Some(version), MAX_PACKET_SIZE).unwrap();
            if i + 1 < bytes.len() {
                assert_eq!(decoded, None, "{packet:?} decoded after {} bytes", i + 1);
                assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
            } else {
                assert_eq!(decoded, Some(packet.clone()));
                assert!(buf.is_empty());
            }
        }
    }
}

#[test]
fn decode_slice_reports_bytes_used() {
    for (packet, version) in sample_packets() {
        let bytes = to_bytes(&packet, version);
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0xc0, 0x00]);
        assert_eq!(
            decode_slice(&padded, Some(version), MAX_PACKET_SIZE).unwrap(),
            Some((packet, bytes.len()))
        );
        assert_eq!(
            decode_slice(&bytes[..bytes.len() - 1], Some(version), MAX_PACKET_SIZE),
            Ok(None)
        );
    }
}

#[test]
fn several_packets_in_one_buffer() {
    let mut buf = BytesMut::new();
    let packets = sample_packets();
    for (packet, _) in &packets {
        encode(packet, V5, &mut buf).unwrap();
    }
    buf.extend_from_slice(&[0x30]); // the start of the next one
    for (packet, _) in &packets {
        assert_eq!(
            decode(&mut buf, Some(V5), MAX_PACKET_SIZE).unwrap().as_ref(),
            Some(packet)
        );
    }
    assert_eq!(decode(&mut buf, Some(V5), MAX_PACKET_SIZE), Ok(None));
    assert_eq!(&buf[..], &[0x30]);
}

#[test]
fn max_packet_size_is_checked_on_the_fixed_header_alone() {
    // A PUBLISH announcing 2,097,151 bytes: only its 4-byte fixed header is buffered.
    let mut buf = BytesMut::from(&[0x30, 0xff, 0xff, 0x7f][..]);
    let err = decode(&mut buf, Some(V311), 1024).unwrap_err();
    assert_eq!(
        err,
        DecodeError::PacketTooLarge {
            size: 4 + 2_097_151,
            max: 1024
        }
    );
    assert_eq!(err.reason_code(), ReasonCode::PACKET_TOO_LARGE);
    assert_eq!(buf.len(), 4, "an error leaves the buffer as it was");
    // The same header under a larger limit just waits for the body.
    assert_eq!(decode(&mut buf, Some(V311), MAX_PACKET_SIZE), Ok(None));
}

#[test]
fn max_packet_size_counts_the_whole_packet() {
    let bytes = to_bytes(&Packet::Publish(Publish::new("t", "12345")), V311);
    assert_eq!(bytes.len(), 10);
    let size = u32::try_from(bytes.len()).unwrap();
    assert!(decode_slice(&bytes, Some(V311), size).unwrap().is_some());
    assert_eq!(
        decode_slice(&bytes, Some(V311), size - 1),
        Err(DecodeError::PacketTooLarge { size: 10, max: 9 })
    );
    // Before the remaining length is complete nothing can be said yet.
    assert_eq!(decode_slice(&[0x30, 0xff], Some(V311), 1), Ok(None));
}

#[test]
fn empty_buffer_needs_more() {
    assert_eq!(decode(&mut BytesMut::new(), None, MAX_PACKET_SIZE), Ok(None));
}

#[test]
fn payloads_do_not_share_the_read_buffer() {
    let bytes = to_bytes(&Packet::Publish(Publish::new("t", vec![7u8; 64])), V311);
    let mut buf = BytesMut::from(&bytes[..]);
    let range = buf.as_ptr_range();
    let Some(Packet::Publish(publish)) = decode(&mut buf, Some(V311), MAX_PACKET_SIZE).unwrap() else {
        panic!("not a PUBLISH");
    };
    assert!(
        !range.contains(&publish.payload.as_ptr()),
        "payload points into the read buffer"
    );
}
