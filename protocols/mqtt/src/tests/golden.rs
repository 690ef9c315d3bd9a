//! Golden bytes for every packet type in MQTT 3.1.1 and 5.0 (and CONNECT in 3.1), laid out by
//! hand from the specification's figures and checked both ways: decode gives the packet,
//! encode gives the bytes back.

use bytes::Bytes;

use super::{from_bytes, pid, to_bytes, V311, V3_1, V5};
use crate::*;

/// Decode `bytes` with `version` into `packet`, and encode `packet` back into `bytes`.
#[track_caller]
fn golden(bytes: &[u8], version: ProtocolVersion, packet: Packet) {
    assert_eq!(from_bytes(bytes, Some(version)).unwrap(), packet, "decode");
    assert_eq!(to_bytes(&packet, version), bytes, "encode");
}

/// Long forms the decoder must accept although the encoder writes shorter ones.
#[track_caller]
fn decodes_to(bytes: &[u8], version: ProtocolVersion, packet: Packet) {
    assert_eq!(from_bytes(bytes, Some(version)).unwrap(), packet);
}

fn user(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

// ---------------------------------------------------------------------------- MQTT 3.1.1

#[test]
fn v311_connect_minimal() {
    // What `mosquitto_sub -V mqttv311 -i test -k 60` sends.
    let bytes = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04test";
    let connect = Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 60,
        client_id: "test".into(),
        ..Connect::default()
    };
    golden(bytes, V311, Packet::Connect(Box::new(connect.clone())));
    // CONNECT needs no negotiated version: it carries its own.
    assert_eq!(from_bytes(bytes, None).unwrap(), Packet::Connect(Box::new(connect)));
}

#[test]
fn v311_connect_with_will_and_credentials() {
    let bytes = b"\x10\x1e\x00\x04MQTT\x04\xee\x00\x0a\x00\x02cl\x00\x03a/b\x00\x02hi\x00\x01u\x00\x02pw";
    let connect = Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 10,
        client_id: "cl".into(),
        will: Some(Will {
            topic: "a/b".into(),
            payload: Bytes::from_static(b"hi"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties::default(),
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"pw")),
        properties: ConnectProperties::default(),
    };
    golden(bytes, V311, Packet::Connect(Box::new(connect)));
}

#[test]
fn v31_connect() {
    let bytes = b"\x10\x12\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x04test";
    let connect = Connect {
        protocol: V3_1,
        clean_start: true,
        keep_alive: 60,
        client_id: "test".into(),
        ..Connect::default()
    };
    golden(bytes, V3_1, Packet::Connect(Box::new(connect)));
}

#[test]
fn v311_connack() {
    golden(
        &[0x20, 0x02, 0x00, 0x00],
        V311,
        Packet::ConnAck(ConnAck::new(ReasonCode::SUCCESS)),
    );
    let resumed = ConnAck {
        session_present: true,
        ..ConnAck::default()
    };
    golden(&[0x20, 0x02, 0x01, 0x00], V311, Packet::ConnAck(resumed));
    golden(
        &[0x20, 0x02, 0x00, 0x05],
        V311,
        Packet::ConnAck(ConnAck::new(ReasonCode::NOT_AUTHORIZED)),
    );
    golden(
        &[0x20, 0x02, 0x00, 0x01],
        V311,
        Packet::ConnAck(ConnAck::new(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION)),
    );
}

#[test]
fn v311_publish() {
    golden(
        b"\x30\x0a\x00\x03a/bhello",
        V311,
        Packet::Publish(Publish::new("a/b", "hello")),
    );
    let publish = Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "t".into(),
        packet_id: Some(pid(10)),
        payload: Bytes::from_static(b"xy"),
        properties: PublishProperties::default(),
    };
    golden(b"\x3b\x07\x00\x01t\x00\x0axy", V311, Packet::Publish(publish));
    let qos2 = Publish {
        qos: QoS::ExactlyOnce,
        packet_id: Some(pid(0x1234)),
        ..Publish::new("s", "")
    };
    golden(b"\x34\x05\x00\x01s\x12\x34", V311, Packet::Publish(qos2));
}

#[test]
fn v311_publish_flow_acks() {
    let resp = PubResp::new(pid(10));
    golden(&[0x40, 0x02, 0x00, 0x0a], V311, Packet::PubAck(resp.clone()));
    golden(&[0x50, 0x02, 0x00, 0x0a], V311, Packet::PubRec(resp.clone()));
    golden(&[0x62, 0x02, 0x00, 0x0a], V311, Packet::PubRel(resp.clone()));
    golden(&[0x70, 0x02, 0x00, 0x0a], V311, Packet::PubComp(resp));
}

#[test]
fn v311_subscribe_and_suback() {
    let subscribe = Subscribe {
        packet_id: pid(1),
        filters: vec![
            ("a/#".into(), SubscriptionOptions::new(QoS::AtLeastOnce)),
            ("b/+".into(), SubscriptionOptions::new(QoS::ExactlyOnce)),
        ],
        properties: SubscribeProperties::default(),
    };
    golden(
        b"\x82\x0e\x00\x01\x00\x03a/#\x01\x00\x03b/+\x02",
        V311,
        Packet::Subscribe(subscribe),
    );
    let suback = SubAck::new(pid(1), vec![ReasonCode::GRANTED_QOS_1, ReasonCode::UNSPECIFIED_ERROR]);
    golden(&[0x90, 0x04, 0x00, 0x01, 0x01, 0x80], V311, Packet::SubAck(suback));
}

#[test]
fn v311_unsubscribe_and_unsuback() {
    let unsubscribe = Unsubscribe {
        packet_id: pid(2),
        filters: vec!["a/#".into()],
        properties: UnsubscribeProperties::default(),
    };
    golden(b"\xa2\x07\x00\x02\x00\x03a/#", V311, Packet::Unsubscribe(unsubscribe));
    golden(
        &[0xb0, 0x02, 0x00, 0x02],
        V311,
        Packet::UnsubAck(UnsubAck::new(pid(2), vec![])),
    );
}

#[test]
fn v311_ping_and_disconnect() {
    golden(&[0xc0, 0x00], V311, Packet::PingReq);
    golden(&[0xd0, 0x00], V311, Packet::PingResp);
    golden(&[0xe0, 0x00], V311, Packet::Disconnect(Disconnect::default()));
}

// ---------------------------------------------------------------------------- MQTT 5.0

#[test]
fn v5_connect_minimal() {
    // What `mosquitto_pub -V 5 -i test` sends: an empty property block.
    let bytes = b"\x10\x11\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x04test";
    let connect = Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 60,
        client_id: "test".into(),
        ..Connect::default()
    };
    golden(bytes, V5, Packet::Connect(Box::new(connect.clone())));
    assert_eq!(from_bytes(bytes, None).unwrap(), Packet::Connect(Box::new(connect)));
}

#[test]
fn v5_connect_with_everything() {
    #[rustfmt::skip]
    let bytes: &[u8] = &[
        0x10, 0x4e,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05,
        0xd6,             // user name, password, will QoS 2, will, clean start
        0x00, 0x3c,       // keep alive 60
        0x19,             // 25 bytes of properties
        0x11, 0x00, 0x00, 0x0e, 0x10, // session expiry 3600
        0x21, 0x00, 0x14,             // receive maximum 20
        0x27, 0x00, 0x00, 0x10, 0x00, // maximum packet size 4096
        0x22, 0x00, 0x0a,             // topic alias maximum 10
        0x17, 0x00,                   // request problem information 0
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property
        0x00, 0x03, b'c', b'i', b'd',
        0x0e,             // 14 bytes of will properties
        0x18, 0x00, 0x00, 0x00, 0x05, // will delay 5
        0x01, 0x01,                   // payload format: UTF-8
        0x03, 0x00, 0x04, b'j', b's', b'o', b'n', // content type
        0x00, 0x04, b'w', b'/', b'l', b't',
        0x00, 0x03, b'b', b'y', b'e',
        0x00, 0x04, b'u', b's', b'e', b'r',
        0x00, 0x03, 0x01, 0x02, 0x03,
    ];
    let connect = Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 60,
        client_id: "cid".into(),
        will: Some(Will {
            topic: "w/lt".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: WillProperties {
                will_delay_interval: Some(5),
                payload_format_indicator: Some(1),
                content_type: Some("json".into()),
                ..WillProperties::default()
            },
        }),
        username: Some("user".into()),
        password: Some(Bytes::from_static(&[1, 2, 3])),
        properties: ConnectProperties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(20),
            maximum_packet_size: Some(4096),
            topic_alias_maximum: Some(10),
            request_problem_information: Some(false),
            user_properties: vec![user("k", "v")],
            ..ConnectProperties::default()
        },
    };
    golden(bytes, V5, Packet::Connect(Box::new(connect)));
}

#[test]
fn v5_connect_password_without_user_name() {
    // Allowed since MQTT 5 (§3.1.2.9).
    let bytes = b"\x10\x12\x00\x04MQTT\x05\x40\x00\x00\x00\x00\x00\x00\x03pwd";
    let connect = Connect {
        password: Some(Bytes::from_static(b"pwd")),
        ..Connect::default()
    };
    golden(bytes, V5, Packet::Connect(Box::new(connect)));
}

#[test]
fn v5_connack() {
    golden(&[0x20, 0x03, 0x00, 0x00, 0x00], V5, Packet::ConnAck(ConnAck::default()));
    golden(
        &[0x20, 0x03, 0x00, 0x87, 0x00],
        V5,
        Packet::ConnAck(ConnAck::new(ReasonCode::NOT_AUTHORIZED)),
    );
    #[rustfmt::skip]
    let bytes: &[u8] = &[
        0x20, 0x16, 0x01, 0x00, 0x13,
        0x21, 0x00, 0x0a,                   // receive maximum 10
        0x24, 0x01,                         // maximum QoS 1
        0x25, 0x00,                         // retain not available
        0x12, 0x00, 0x03, b'a', b'b', b'c', // assigned client identifier
        0x22, 0x00, 0x05,                   // topic alias maximum 5
        0x13, 0x00, 0x1e,                   // server keep alive 30
    ];
    let connack = ConnAck {
        session_present: true,
        reason_code: ReasonCode::SUCCESS,
        properties: ConnAckProperties {
            receive_maximum: Some(10),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(false),
            assigned_client_identifier: Some("abc".into()),
            topic_alias_maximum: Some(5),
            server_keep_alive: Some(30),
            ..ConnAckProperties::default()
        },
    };
    golden(bytes, V5, Packet::ConnAck(connack));
}

#[test]
fn v5_publish() {
    golden(
        b"\x30\x0b\x00\x03a/b\x00hello",
        V5,
        Packet::Publish(Publish::new("a/b", "hello")),
    );
    #[rustfmt::skip]
    let bytes: &[u8] = &[
        0x32, 0x2a, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x05,
        0x21,                                     // 33 bytes of properties
        0x01, 0x01,                               // payload format: UTF-8
        0x02, 0x00, 0x00, 0x00, 0x3c,             // message expiry 60
        0x23, 0x00, 0x01,                         // topic alias 1
        0x08, 0x00, 0x01, b'r',                   // response topic
        0x09, 0x00, 0x02, b'c', b'd',             // correlation data
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property
        0x0b, 0x81, 0x01,                         // subscription identifier 129
        0x03, 0x00, 0x01, b't',                   // content type
        b'x',
    ];
    let publish = Publish {
        qos: QoS::AtLeastOnce,
        packet_id: Some(pid(5)),
        properties: PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            topic_alias: Some(1),
            response_topic: Some("r".into()),
            correlation_data: Some(Bytes::from_static(b"cd")),
            user_properties: vec![user("k", "v")],
            subscription_identifiers: vec![129],
            content_type: Some("t".into()),
        },
        ..Publish::new("a/b", "x")
    };
    golden(bytes, V5, Packet::Publish(publish));
}

#[test]
fn v5_publish_with_topic_alias_only() {
    let publish = Publish {
        properties: PublishProperties {
            topic_alias: Some(7),
            ..PublishProperties::default()
        },
        ..Publish::new("", "p")
    };
    golden(
        &[0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x07, b'p'],
        V5,
        Packet::Publish(publish),
    );
}

#[test]
fn v5_publish_flow_acks() {
    golden(&[0x40, 0x02, 0x00, 0x01], V5, Packet::PubAck(PubResp::new(pid(1))));
    golden(
        &[0x40, 0x03, 0x00, 0x01, 0x10],
        V5,
        Packet::PubAck(PubResp::with_reason(pid(1), ReasonCode::NO_MATCHING_SUBSCRIBERS)),
    );
    let with_props = PubResp {
        packet_id: pid(1),
        reason_code: ReasonCode::NOT_AUTHORIZED,
        properties: AckProperties {
            reason_string: Some("no".into()),
            ..AckProperties::default()
        },
    };
    golden(
        &[0x40, 0x09, 0x00, 0x01, 0x87, 0x05, 0x1f, 0x00, 0x02, b'n', b'o'],
        V5,
        Packet::PubAck(with_props),
    );
    golden(
        &[0x50, 0x03, 0x00, 0x01, 0x80],
        V5,
        Packet::PubRec(PubResp::with_reason(pid(1), ReasonCode::UNSPECIFIED_ERROR)),
    );
    golden(
        &[0x62, 0x03, 0x00, 0x01, 0x92],
        V5,
        Packet::PubRel(PubResp::with_reason(pid(1), ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)),
    );
    golden(&[0x70, 0x02, 0x00, 0x01], V5, Packet::PubComp(PubResp::new(pid(1))));
}

#[test]
fn v5_publish_flow_acks_long_forms() {
    // §3.4.2.1: reason code and property length may be present even when SUCCESS and empty.
    decodes_to(
        &[0x40, 0x03, 0x00, 0x01, 0x00],
        V5,
        Packet::PubAck(PubResp::new(pid(1))),
    );
    decodes_to(
        &[0x40, 0x04, 0x00, 0x01, 0x00, 0x00],
        V5,
        Packet::PubAck(PubResp::new(pid(1))),
    );
    decodes_to(
        &[0x62, 0x04, 0x00, 0x01, 0x92, 0x00],
        V5,
        Packet::PubRel(PubResp::with_reason(pid(1), ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)),
    );
}

#[test]
fn v5_subscribe_and_suback() {
    let subscribe = Subscribe {
        packet_id: pid(1),
        filters: vec![
            (
                "a/#".into(),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            ),
            ("x".into(), SubscriptionOptions::default()),
        ],
        properties: SubscribeProperties {
            subscription_identifier: Some(5),
            user_properties: vec![],
        },
    };
    golden(
        b"\x82\x0f\x00\x01\x02\x0b\x05\x00\x03a/#\x2d\x00\x01x\x00",
        V5,
        Packet::Subscribe(subscribe),
    );
    let suback = SubAck::new(
        pid(1),
        vec![ReasonCode::GRANTED_QOS_1, ReasonCode::TOPIC_FILTER_INVALID],
    );
    golden(&[0x90, 0x05, 0x00, 0x01, 0x00, 0x01, 0x8f], V5, Packet::SubAck(suback));
}

#[test]
fn v5_unsubscribe_and_unsuback() {
    let unsubscribe = Unsubscribe {
        packet_id: pid(2),
        filters: vec!["a/#".into()],
        properties: UnsubscribeProperties::default(),
    };
    golden(b"\xa2\x08\x00\x02\x00\x00\x03a/#", V5, Packet::Unsubscribe(unsubscribe));
    let unsuback = UnsubAck::new(pid(2), vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]);
    golden(
        &[0xb0, 0x05, 0x00, 0x02, 0x00, 0x00, 0x11],
        V5,
        Packet::UnsubAck(unsuback),
    );
}

#[test]
fn v5_ping_disconnect_auth() {
    golden(&[0xc0, 0x00], V5, Packet::PingReq);
    golden(&[0xd0, 0x00], V5, Packet::PingResp);
    golden(
        &[0xe0, 0x00],
        V5,
        Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)),
    );
    golden(
        &[0xe0, 0x01, 0x04],
        V5,
        Packet::Disconnect(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL)),
    );
    let taken_over = Disconnect {
        reason_code: ReasonCode::SESSION_TAKEN_OVER,
        properties: DisconnectProperties {
            reason_string: Some("x".into()),
            ..DisconnectProperties::default()
        },
    };
    golden(
        &[0xe0, 0x06, 0x8e, 0x04, 0x1f, 0x00, 0x01, b'x'],
        V5,
        Packet::Disconnect(taken_over),
    );
    decodes_to(&[0xe0, 0x02, 0x00, 0x00], V5, Packet::Disconnect(Disconnect::default()));

    golden(&[0xf0, 0x00], V5, Packet::Auth(Auth::new(ReasonCode::SUCCESS)));
    let scram = Auth {
        reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
        properties: AuthProperties {
            authentication_method: Some("SCRAM".into()),
            authentication_data: Some(Bytes::from_static(&[1, 2])),
            ..AuthProperties::default()
        },
    };
    golden(
        b"\xf0\x0f\x18\x0d\x15\x00\x05SCRAM\x16\x00\x02\x01\x02",
        V5,
        Packet::Auth(scram),
    );
}
