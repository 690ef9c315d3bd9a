//! What the encoder does with MQTT 5 values on MQTT 3.x connections, the short forms it
//! picks, and the mistakes it refuses.

use bytes::{Bytes, BytesMut};

use super::{pid, to_bytes, V311, V3_1, V5};
use crate::*;

#[test]
fn v3_connack_maps_reason_codes_to_return_codes() {
    let cases = [
        (ReasonCode::SUCCESS, 0),
        (ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, 1),
        (ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, 2),
        (ReasonCode::SERVER_UNAVAILABLE, 3),
        (ReasonCode::SERVER_BUSY, 3),
        (ReasonCode::BAD_USER_NAME_OR_PASSWORD, 4),
        (ReasonCode::NOT_AUTHORIZED, 5),
        (ReasonCode::BANNED, 5),
        (ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR, 3),
    ];
    for (reason, code) in cases {
        let mut connack = ConnAck::new(reason);
        connack.properties.reason_string = Some("dropped".into());
        assert_eq!(
            to_bytes(&Packet::ConnAck(connack), V311),
            [0x20, 0x02, 0x00, code],
            "{reason}"
        );
    }
}

#[test]
fn session_present_only_with_success() {
    let connack = ConnAck {
        session_present: true,
        ..ConnAck::new(ReasonCode::NOT_AUTHORIZED)
    };
    assert_eq!(
        to_bytes(&Packet::ConnAck(connack.clone()), V311),
        [0x20, 0x02, 0x00, 0x05]
    );
    assert_eq!(to_bytes(&Packet::ConnAck(connack), V5), [0x20, 0x03, 0x00, 0x87, 0x00]);
    // MQTT 3.1 has no flag at all.
    let resumed = ConnAck {
        session_present: true,
        ..ConnAck::default()
    };
    assert_eq!(to_bytes(&Packet::ConnAck(resumed), V3_1), [0x20, 0x02, 0x00, 0x00]);
}

#[test]
fn maximum_qos_2_is_left_out() {
    let mut connack = ConnAck::default();
    connack.properties.maximum_qos = Some(QoS::ExactlyOnce);
    assert_eq!(to_bytes(&Packet::ConnAck(connack), V5), [0x20, 0x03, 0x00, 0x00, 0x00]);
}

#[test]
fn v3_suback_failures_become_0x80() {
    let suback = SubAck::new(
        pid(3),
        vec![
            ReasonCode::GRANTED_QOS_2,
            ReasonCode::NOT_AUTHORIZED,
            ReasonCode::TOPIC_FILTER_INVALID,
        ],
    );
    assert_eq!(
        to_bytes(&Packet::SubAck(suback), V311),
        [0x90, 0x05, 0x00, 0x03, 0x02, 0x80, 0x80]
    );
}

#[test]
fn v3_drops_reason_codes_and_properties() {
    let mut puback = PubResp::with_reason(pid(1), ReasonCode::QUOTA_EXCEEDED);
    puback.properties.reason_string = Some("full".into());
    assert_eq!(
        to_bytes(&Packet::PubAck(puback.clone()), V311),
        [0x40, 0x02, 0x00, 0x01]
    );
    assert_eq!(to_bytes(&Packet::PubRel(puback), V311), [0x62, 0x02, 0x00, 0x01]);

    let unsuback = UnsubAck::new(pid(4), vec![ReasonCode::NO_SUBSCRIPTION_EXISTED]);
    assert_eq!(to_bytes(&Packet::UnsubAck(unsuback), V311), [0xb0, 0x02, 0x00, 0x04]);

    let mut disconnect = Disconnect::new(ReasonCode::SESSION_TAKEN_OVER);
    disconnect.properties.reason_string = Some("bye".into());
    assert_eq!(to_bytes(&Packet::Disconnect(disconnect), V311), [0xe0, 0x00]);

    let mut publish = Publish::new("t", "p");
    publish.properties.message_expiry_interval = Some(10);
    assert_eq!(to_bytes(&Packet::Publish(publish), V311), b"\x30\x04\x00\x01tp");

    let subscribe = Subscribe {
        packet_id: pid(1),
        filters: vec![(
            "a".into(),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
        )],
        properties: SubscribeProperties {
            subscription_identifier: Some(3),
            user_properties: vec![],
        },
    };
    assert_eq!(
        to_bytes(&Packet::Subscribe(subscribe), V311),
        b"\x82\x06\x00\x01\x00\x01a\x01"
    );
}

#[test]
fn v5_short_forms() {
    assert_eq!(to_bytes(&Packet::PubAck(PubResp::new(pid(1))), V5).len(), 4);
    assert_eq!(to_bytes(&Packet::Disconnect(Disconnect::default()), V5).len(), 2);
    assert_eq!(to_bytes(&Packet::Auth(Auth::default()), V5).len(), 2);
    // A non-success AUTH always carries the property length.
    assert_eq!(
        to_bytes(&Packet::Auth(Auth::new(ReasonCode::RE_AUTHENTICATE)), V5),
        [0xf0, 0x02, 0x19, 0x00]
    );
}

#[test]
fn connect_is_encoded_for_its_own_version() {
    let connect = Connect {
        protocol: V311,
        client_id: "c".into(),
        ..Connect::default()
    };
    let packet = Packet::Connect(Box::new(connect));
    assert_eq!(to_bytes(&packet, V5), to_bytes(&packet, V311));
    assert_eq!(to_bytes(&packet, V5)[8], 0x04);
}

#[test]
fn large_remaining_lengths() {
    let publish = Publish::new("t", Bytes::from(vec![0u8; 20_000]));
    let bytes = to_bytes(&Packet::Publish(publish.clone()), V311);
    assert_eq!(&bytes[..4], &[0x30, 0xa3, 0x9c, 0x01]); // 3 + 20,000 = 20,003
    assert_eq!(bytes.len(), 4 + 20_003);
}

fn refuses(packet: Packet, version: ProtocolVersion, expected: EncodeError) {
    let mut out = BytesMut::from(&b"keep"[..]);
    assert_eq!(encode(&packet, version, &mut out), Err(expected.clone()));
    assert_eq!(&out[..], b"keep", "nothing is written on error");
    assert_eq!(encoded_len(&packet, version), usize::MAX);
    assert_eq!(try_encoded_len(&packet, version), Err(expected));
}

#[test]
fn encoder_refuses_inconsistent_packets() {
    let no_id = Publish {
        qos: QoS::AtLeastOnce,
        ..Publish::new("t", "")
    };
    refuses(
        Packet::Publish(no_id),
        V5,
        EncodeError::Invalid("[MQTT-2.2.1-3] QoS 1/2 PUBLISH without a packet identifier"),
    );
    let stray_id = Publish {
        packet_id: Some(pid(1)),
        ..Publish::new("t", "")
    };
    assert!(encode(&Packet::Publish(stray_id), V5, &mut BytesMut::new()).is_err());
    let dup0 = Publish {
        dup: true,
        ..Publish::new("t", "")
    };
    assert!(encode(&Packet::Publish(dup0), V311, &mut BytesMut::new()).is_err());
    let alias_only = Publish::new("", "");
    assert!(encode(&Packet::Publish(alias_only), V311, &mut BytesMut::new()).is_err());

    refuses(
        Packet::Auth(Auth::default()),
        V311,
        EncodeError::UnsupportedPacket {
            kind: PacketType::Auth,
            version: V311,
        },
    );
    let empty = Subscribe {
        packet_id: pid(1),
        filters: vec![],
        properties: SubscribeProperties::default(),
    };
    assert!(encode(&Packet::Subscribe(empty), V5, &mut BytesMut::new()).is_err());

    let password_only = Connect {
        protocol: V311,
        password: Some(Bytes::from_static(b"p")),
        ..Connect::default()
    };
    assert!(encode(&Packet::Connect(Box::new(password_only)), V311, &mut BytesMut::new()).is_err());

    let mut sub_id_zero = Publish::new("t", "");
    sub_id_zero.properties.subscription_identifiers = vec![0];
    assert!(encode(&Packet::Publish(sub_id_zero), V5, &mut BytesMut::new()).is_err());
}

#[test]
fn encoder_refuses_oversized_fields() {
    let long = "x".repeat(65_536);
    refuses(
        Packet::Publish(Publish::new(long.clone(), "")),
        V5,
        EncodeError::StringTooLong,
    );
    let connect = Connect {
        password: Some(Bytes::from(long.into_bytes())),
        ..Connect::default()
    };
    refuses(Packet::Connect(Box::new(connect)), V5, EncodeError::BinaryTooLong);
}

#[test]
fn encoder_refuses_packets_over_the_remaining_length_limit() {
    let huge = Publish::new("t", Bytes::from(vec![0u8; 268_435_455]));
    refuses(Packet::Publish(huge), V311, EncodeError::PacketTooLarge);
}
