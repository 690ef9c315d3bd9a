//! Connection rules and malformed input, byte by byte: what the server must answer (exact
//! reason codes, MQTT 5 §4.13 and §3.14.2.1) and that it closes afterwards.

use unigate_mqtt::{ConnectProperties, Packet, ProtocolVersion, QoS, ReasonCode};

use crate::common::TestServer;
use crate::util::{connect_packet, field, frame, publish, Event, Raw, TIMEOUT};

/// The body of a hand-built CONNECT: protocol name, `level`, clean start, keep alive 0, no
/// properties (level 5 only), `client_id`.
fn connect_body(name: &[u8], level: u8, flags: u8, client_id: &str) -> Vec<u8> {
    let mut body = field(name);
    body.push(level);
    body.push(flags);
    body.extend([0, 0]);
    if level == 5 {
        body.push(0);
    }
    body.extend(field(client_id.as_bytes()));
    body
}

/// A QoS 0 PUBLISH with raw topic bytes and `props` (a whole property block, MQTT 5 only).
fn publish_raw(topic: &[u8], props: Option<&[u8]>) -> Vec<u8> {
    let mut body = field(topic);
    if let Some(p) = props {
        body.extend_from_slice(p);
    }
    body.extend_from_slice(b"payload");
    frame(0x30, &body)
}

#[test]
fn first_packet_must_be_connect() {
    let server = TestServer::start();
    // PINGREQ, then a PUBLISH, as the first packet: closed with nothing written [MQTT-3.1.0-1].
    for bytes in [vec![0xC0, 0x00], publish_raw(b"a/b", None)] {
        let mut c = Raw::open(server.addr);
        c.send_bytes(&bytes);
        assert_eq!(c.raw_until_closed(), Vec::<u8>::new(), "first packet {bytes:02x?}");
    }
    server.stop();
}

#[test]
fn second_connect_is_a_protocol_error() {
    let server = TestServer::start();
    let mut c = Raw::v5(server.addr, "twice-5");
    c.send(&Packet::Connect(Box::new(connect_packet(
        ProtocolVersion::V5,
        "twice-5",
        true,
    ))));
    c.expect_disconnect(0x82);

    let mut c = Raw::v311(server.addr, "twice-3");
    c.send(&Packet::Connect(Box::new(connect_packet(
        ProtocolVersion::V3_1_1,
        "twice-3",
        true,
    ))));
    c.expect_closed();
    server.stop();
}

#[test]
fn unsupported_protocol_level_gets_return_code_1() {
    let server = TestServer::start();
    let mut c = Raw::open(server.addr);
    c.send_bytes(&frame(0x10, &connect_body(b"MQTT", 7, 0x02, "level7")));
    // CONNACK in the 3.1.1 form with return code 1, then close [MQTT-3.1.2-2].
    assert_eq!(c.raw_until_closed(), vec![0x20, 0x02, 0x00, 0x01]);
    server.stop();
}

#[test]
fn v311_empty_client_id_needs_clean_session() {
    let server = TestServer::start();
    let mut c = Raw::open(server.addr);
    c.send_bytes(&frame(0x10, &connect_body(b"MQTT", 4, 0x00, "")));
    // Return code 2, identifier rejected [MQTT-3.1.3-8].
    assert_eq!(c.raw_until_closed(), vec![0x20, 0x02, 0x00, 0x02]);

    // With clean session the server accepts it.
    let mut c = Raw::open(server.addr);
    c.version = ProtocolVersion::V3_1_1;
    c.send_bytes(&frame(0x10, &connect_body(b"MQTT", 4, 0x02, "")));
    match c.recv() {
        Packet::ConnAck(a) => assert_eq!(a.reason_code, ReasonCode::SUCCESS),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    c.disconnect();
    server.stop();
}

/// Malformed packets after a successful CONNECT: (description, v5 bytes, v3.1.1 bytes).
fn malformed_cases() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let no_props: &[u8] = &[0];
    let mut qos3 = field(b"a/b");
    qos3.extend([0x00, 0x01]);
    let mut qos3_v5 = qos3.clone();
    qos3_v5.push(0);
    vec![
        ("PINGREQ with flags 0001", vec![0xC1, 0x00], vec![0xC1, 0x00]),
        (
            "PUBREL with flags 0000",
            vec![0x60, 0x02, 0x00, 0x01],
            vec![0x60, 0x02, 0x00, 0x01],
        ),
        (
            "SUBSCRIBE with flags 0000",
            frame(0x80, &[&[0x00, 0x01, 0x00][..], &field(b"a"), &[0x00]].concat()),
            frame(0x80, &[&[0x00, 0x01][..], &field(b"a"), &[0x00]].concat()),
        ),
        (
            "remaining length in 5 bytes",
            vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        ),
        (
            "topic not UTF-8",
            publish_raw(&[b'a', 0xC3, 0x28], Some(no_props)),
            publish_raw(&[b'a', 0xC3, 0x28], None),
        ),
        (
            "topic with U+0000",
            publish_raw(b"a\0b", Some(no_props)),
            publish_raw(b"a\0b", None),
        ),
        (
            "topic with a UTF-16 surrogate",
            publish_raw(&[b'a', 0xED, 0xA0, 0x80], Some(no_props)),
            publish_raw(&[b'a', 0xED, 0xA0, 0x80], None),
        ),
        ("PUBLISH with QoS 3", frame(0x36, &qos3_v5), frame(0x36, &qos3)),
    ]
}

#[test]
fn malformed_packets_v5_get_disconnect_0x81() {
    let server = TestServer::start();
    for (what, bytes, _) in malformed_cases() {
        let mut c = Raw::v5(server.addr, "malformed-5");
        c.send_bytes(&bytes);
        match c.recv() {
            Packet::Disconnect(d) => {
                assert_eq!(d.reason_code, ReasonCode(0x81), "{what}: {d:?}")
            }
            other => panic!("{what}: expected DISCONNECT 0x81, got {other:?}"),
        }
        c.expect_closed();
    }
    server.stop();
}

#[test]
fn malformed_packets_v311_close_the_connection() {
    let server = TestServer::start();
    for (what, _, bytes) in malformed_cases() {
        let mut c = Raw::v311(server.addr, "malformed-3");
        c.send_bytes(&bytes);
        match c.next_event(TIMEOUT) {
            Event::Closed => {}
            other => panic!("{what}: expected close, got {other:?}"),
        }
    }
    server.stop();
}

#[test]
fn duplicate_property_is_a_protocol_error() {
    // MQTT 5 §2.2.2.2 and each property's clause: "It is a Protocol Error to include the ...
    // more than once" → DISCONNECT 0x82.
    let server = TestServer::start();
    // Payload Format Indicator twice in a PUBLISH.
    let mut c = Raw::v5(server.addr, "dup-prop");
    c.send_bytes(&publish_raw(b"a/b", Some(&[4, 0x01, 0x00, 0x01, 0x00])));
    c.expect_disconnect(0x82);

    // Subscription Identifier twice in a SUBSCRIBE.
    let mut c = Raw::v5(server.addr, "dup-prop");
    let body = [&[0x00, 0x01, 4, 0x0B, 0x01, 0x0B, 0x02][..], &field(b"a"), &[0x01]].concat();
    c.send_bytes(&frame(0x82, &body));
    c.expect_disconnect(0x82);
    server.stop();
}

#[test]
fn publish_to_a_wildcard_topic_closes_the_connection() {
    // [MQTT-3.3.2-2]: a topic name must not contain wildcards. MQTT 5 §4.13 leaves the reason
    // code to the receiver among Malformed Packet, Protocol Error or the more specific Topic
    // Name invalid; the connection must close.
    let server = TestServer::start();
    for topic in ["a/+", "a/#", "+", "#"] {
        let mut c = Raw::v5(server.addr, "wild-5");
        c.send_bytes(&publish_raw(topic.as_bytes(), Some(&[0])));
        match c.recv() {
            Packet::Disconnect(d) => assert!([0x81, 0x82, 0x90].contains(&d.reason_code.0), "{topic}: {d:?}"),
            other => panic!("{topic}: expected DISCONNECT, got {other:?}"),
        }
        c.expect_closed();

        let mut c = Raw::v311(server.addr, "wild-3");
        c.send_bytes(&publish_raw(topic.as_bytes(), None));
        c.expect_closed();
    }
    server.stop();
}

#[test]
fn publish_with_empty_topic_closes_the_connection() {
    let server = TestServer::start();
    // MQTT 5 §3.3.2.1: an empty topic without a Topic Alias is a Protocol Error.
    let mut c = Raw::v5(server.addr, "empty-5");
    c.send_bytes(&publish_raw(b"", Some(&[0])));
    c.expect_disconnect(0x82);
    // MQTT 3.1.1 [MQTT-4.7.3-1]: topic names are at least one character.
    let mut c = Raw::v311(server.addr, "empty-3");
    c.send_bytes(&publish_raw(b"", None));
    c.expect_closed();
    server.stop();
}

#[test]
fn oversize_packet_from_client_gets_0x95() {
    let server = TestServer::start_with("", "max_packet_size = 1024");
    let (mut c, ack) = Raw::connect(server.addr, connect_packet(ProtocolVersion::V5, "big-5", true));
    assert_eq!(ack.properties.maximum_packet_size, Some(1024), "{ack:?}");
    c.send(&Packet::Publish(publish("big", vec![b'x'; 2000], QoS::AtMostOnce, 0)));
    c.expect_disconnect(0x95);

    let mut c = Raw::v311(server.addr, "big-3");
    c.send(&Packet::Publish(publish("big", vec![b'x'; 2000], QoS::AtMostOnce, 0)));
    c.expect_closed();

    // Just under the limit is fine.
    let mut c = Raw::v5(server.addr, "big-ok");
    c.subscribe("big", QoS::AtMostOnce);
    let p = publish("big", vec![b'y'; 900], QoS::AtMostOnce, 0);
    assert!(c.encode(&Packet::Publish(p.clone())).len() <= 1024);
    c.send(&Packet::Publish(p));
    assert_eq!(c.recv_publish().payload.len(), 900);
    c.disconnect();
    server.stop();
}

#[test]
fn packets_over_the_client_maximum_are_not_sent() {
    // MQTT 5 §3.1.2.11.4 [MQTT-3.1.2-25]: the server must not send a packet larger than the
    // client's Maximum Packet Size; it discards the message as if delivered. (That the QoS 1
    // slot is then reused is flow::dropped_oversize_message_frees_its_slot_without_another_event.)
    let server = TestServer::start();
    let mut connect = connect_packet(ProtocolVersion::V5, "small-max", true);
    connect.properties = ConnectProperties {
        maximum_packet_size: Some(200),
        ..Default::default()
    };
    let mut sub = Raw::accepted(server.addr, connect);
    sub.subscribe("size/t", QoS::AtLeastOnce);

    let mut publisher = Raw::v5(server.addr, "size-pub");
    publisher.publish_acked(publish("size/t", vec![b'L'; 500], QoS::AtLeastOnce, 1));
    publisher.publish_acked(publish("size/t", &b"small"[..], QoS::AtLeastOnce, 2));
    let p = sub.recv_publish();
    assert_eq!(&p.payload[..], b"small", "the large message must be dropped");
    let id = p.packet_id.expect("QoS 1");
    sub.send(&Packet::PubAck(unigate_mqtt::PubResp::new(id)));
    assert!(sub.barrier().is_empty());
    sub.disconnect();
    publisher.disconnect();
    server.stop();
}

#[test]
fn session_takeover_disconnects_the_old_connection_with_0x8e() {
    let server = TestServer::start();
    let mut a = Raw::v5(server.addr, "taken");
    let mut b = Raw::v5(server.addr, "taken");
    a.expect_disconnect(0x8E);
    // B works.
    b.subscribe("takeover/t", QoS::AtMostOnce);
    b.send(&Packet::Publish(publish("takeover/t", &b"hi"[..], QoS::AtMostOnce, 0)));
    assert_eq!(&b.recv_publish().payload[..], b"hi");

    // MQTT 3.1.1: the old connection is just closed.
    let mut a = Raw::v311(server.addr, "taken-3");
    let _b = Raw::v311(server.addr, "taken-3");
    a.expect_closed();
    b.disconnect();
    server.stop();
}

/// A SUBSCRIBE to `a` with raw option byte `opts` (MQTT 5 form when `v5`).
fn subscribe_raw(opts: u8, v5: bool) -> Vec<u8> {
    let mut body = vec![0x00, 0x01];
    if v5 {
        body.push(0);
    }
    body.extend(field(b"a"));
    body.push(opts);
    frame(0x82, &body)
}

/// Protocol violations after CONNECT in MQTT 5: (description, bytes, acceptable DISCONNECT
/// reason codes). Where the specification names the error, one code; where it only says
/// "MUST NOT", Malformed Packet or Protocol Error (MQTT 5 §4.13.1).
fn violations_v5() -> Vec<(&'static str, Vec<u8>, &'static [u8])> {
    const EITHER: &[u8] = &[0x81, 0x82];
    let publish_with_props = |props: &[u8]| {
        let mut body = field(b"a");
        body.extend(crate::util::varint(props.len()));
        body.extend_from_slice(props);
        body.extend_from_slice(b"x");
        frame(0x30, &body)
    };
    let mut response_wild = vec![0x08];
    response_wild.extend(field(b"r/#"));
    vec![
        // §3.8.3.1: Maximum QoS 3 and Retain Handling 3 are Protocol Errors, reserved bits
        // Malformed [MQTT-3.8.3-5].
        ("SUBSCRIBE option QoS 3", subscribe_raw(0x03, true), &[0x82]),
        ("SUBSCRIBE option reserved bits", subscribe_raw(0xC0, true), &[0x81]),
        ("SUBSCRIBE Retain Handling 3", subscribe_raw(0x30, true), &[0x82]),
        // [MQTT-3.8.3-2], [MQTT-3.10.3-2]: no payload is a Protocol Error.
        ("SUBSCRIBE without filters", frame(0x82, &[0x00, 0x01, 0x00]), &[0x82]),
        ("UNSUBSCRIBE without filters", frame(0xA2, &[0x00, 0x01, 0x00]), &[0x82]),
        (
            "PUBLISH QoS 1 with packet id 0",
            frame(0x32, &[&field(b"a")[..], &[0x00, 0x00, 0x00], b"x"].concat()),
            EITHER,
        ),
        (
            "PUBLISH QoS 0 with DUP",
            frame(0x38, &[&field(b"a")[..], &[0x00], b"x"].concat()),
            EITHER,
        ),
        // [MQTT-3.3.2-14]: the Response Topic is a topic name, no wildcards.
        (
            "PUBLISH with wildcard Response Topic",
            publish_with_props(&response_wild),
            EITHER,
        ),
        ("CONNACK from a client", vec![0x20, 0x03, 0x00, 0x00, 0x00], EITHER),
        ("SUBACK from a client", vec![0x90, 0x04, 0x00, 0x01, 0x00, 0x00], EITHER),
        ("PINGRESP from a client", vec![0xD0, 0x00], EITHER),
        // [MQTT-4.12.0-1]: AUTH without an authentication method in CONNECT.
        ("AUTH without a method", vec![0xF0, 0x00], &[0x82]),
    ]
}

#[test]
fn protocol_violations_v5_get_the_specified_reason_code() {
    let server = TestServer::start();
    let mut wrong = Vec::new();
    for (what, bytes, codes) in violations_v5() {
        let mut c = Raw::v5(server.addr, "violation-5");
        c.send_bytes(&bytes);
        match c.next_event(TIMEOUT) {
            Event::Packet(Packet::Disconnect(d)) if codes.contains(&d.reason_code.0) => c.expect_closed(),
            other => wrong.push(format!("{what}: got {other:?}, want DISCONNECT {codes:02x?}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    server.stop();
}

#[test]
fn protocol_violations_v311_close_the_connection() {
    let server = TestServer::start();
    let cases = vec![
        ("SUBSCRIBE option QoS 3", subscribe_raw(0x03, false)),
        // [MQTT-3.8.3-4]: upper option bits must be 0 in 3.1.1.
        ("SUBSCRIBE option reserved bits", subscribe_raw(0x40, false)),
        ("SUBSCRIBE without filters", frame(0x82, &[0x00, 0x01])),
        ("UNSUBSCRIBE without filters", frame(0xA2, &[0x00, 0x01])),
        (
            "PUBLISH QoS 1 with packet id 0",
            frame(0x32, &[&field(b"a")[..], &[0x00, 0x00], b"x"].concat()),
        ),
        (
            "PUBLISH QoS 0 with DUP",
            frame(0x38, &[&field(b"a")[..], b"x"].concat()),
        ),
        ("CONNACK from a client", vec![0x20, 0x02, 0x00, 0x00]),
        ("AUTH in 3.1.1", vec![0xF0, 0x00]),
    ];
    for (what, bytes) in cases {
        let mut c = Raw::v311(server.addr, "violation-3");
        c.send_bytes(&bytes);
        match c.next_event(TIMEOUT) {
            Event::Closed => {}
            other => panic!("{what}: expected close, got {other:?}"),
        }
    }
    server.stop();
}

#[test]
fn bad_connect_packets_are_refused() {
    // CONNECT rules (MQTT 5 §3.1.2, 3.1.1 §3.1.2): the server closes, after at most a CONNACK
    // with a failure code (MQTT 5 §3.1.4 allows one, 3.1.1 has none for these).
    let server = TestServer::start();
    let mut with_rm0 = field(b"MQTT");
    with_rm0.extend([5, 0x02, 0, 0, 3, 0x21, 0, 0]);
    with_rm0.extend(field(b"rm0"));
    let mut will_flags_v311 = field(b"MQTT");
    // Will QoS 1 without the Will Flag [MQTT-3.1.2-13].
    will_flags_v311.extend([4, 0x0A, 0, 0]);
    will_flags_v311.extend(field(b"wq"));
    let mut password_only = field(b"MQTT");
    // Password flag without the User Name flag [MQTT-3.1.2-22].
    password_only.extend([4, 0x42, 0, 0]);
    password_only.extend(field(b"pw"));
    password_only.extend(field(b"secret"));
    let cases = vec![
        ("reserved flag set", frame(0x10, &connect_body(b"MQTT", 4, 0x03, "r"))),
        (
            "reserved flag set (v5)",
            frame(0x10, &connect_body(b"MQTT", 5, 0x03, "r")),
        ),
        ("Will QoS 3", frame(0x10, &connect_body(b"MQTT", 4, 0x1E, "w"))),
        ("Will QoS without Will Flag", frame(0x10, &will_flags_v311)),
        ("password without user name", frame(0x10, &password_only)),
        ("Receive Maximum 0", frame(0x10, &with_rm0)),
        ("fixed header flags", frame(0x11, &connect_body(b"MQTT", 4, 0x02, "f"))),
    ];
    for (what, bytes) in cases {
        let mut c = Raw::open(server.addr);
        c.send_bytes(&bytes);
        let got = c.raw_until_closed();
        let ok =
            got.is_empty() || (got.len() >= 4 && got[0] == 0x20 && got[3] >= 0x80) || got == [0x20, 0x02, 0x00, 0x01];
        assert!(ok, "{what}: got {got:02x?}");
    }
    server.stop();
}

#[test]
fn invalid_utf8_payload_with_format_indicator_is_refused() {
    // MQTT 5 §3.3.2.3.2: a payload marked UTF-8 that is not may be refused with 0x99 in PUBACK
    // or DISCONNECT; it must not be forwarded.
    let server = TestServer::start();
    let mut sub = Raw::v5(server.addr, "pfi-sub");
    sub.subscribe("pfi/t", QoS::AtMostOnce);
    let mut c = Raw::v5(server.addr, "pfi");
    let mut p = publish("pfi/t", &[0xFF, 0xFE][..], QoS::AtLeastOnce, 1);
    p.properties.payload_format_indicator = Some(1);
    c.send(&Packet::Publish(p));
    match c.recv() {
        Packet::PubAck(a) => assert_eq!(a.reason_code, ReasonCode(0x99)),
        Packet::Disconnect(d) => assert_eq!(d.reason_code, ReasonCode(0x99)),
        other => panic!("expected PUBACK or DISCONNECT 0x99, got {other:?}"),
    }
    assert!(sub.barrier().is_empty(), "the message was forwarded");
    sub.disconnect();
    server.stop();
}

#[test]
fn mqtt_3_1_clients_are_served() {
    // MQTT 3.1 (MQIsdp, level 3): client ids up to 23 bytes; longer ones get return code 2.
    let server = TestServer::start();
    let mut c = Raw::open(server.addr);
    c.send_bytes(&frame(
        0x10,
        &connect_body(b"MQIsdp", 3, 0x02, "abcdefghijklmnopqrstuvwxyz"),
    ));
    assert_eq!(c.raw_until_closed(), vec![0x20, 0x02, 0x00, 0x02]);
    let mut c = Raw::accepted(server.addr, connect_packet(ProtocolVersion::V3_1, "old-client", true));
    c.subscribe("old/t", QoS::AtLeastOnce);
    c.publish_acked(publish("old/t", &b"hello"[..], QoS::AtLeastOnce, 9));
    let p = c.recv_publish();
    assert_eq!((&p.payload[..], p.qos), (&b"hello"[..], QoS::AtLeastOnce));
    c.send(&Packet::PubAck(unigate_mqtt::PubResp::new(p.packet_id.expect("QoS 1"))));
    c.disconnect();
    server.stop();
}

#[test]
fn subscription_identifier_from_client_is_a_protocol_error() {
    // [MQTT-3.3.4-6]: a PUBLISH from a client must not carry a Subscription Identifier;
    // MQTT 5 §4.13.1 then calls for DISCONNECT with Protocol Error (or Malformed Packet).
    let server = TestServer::start();
    let mut c = Raw::v5(server.addr, "subid-pub");
    // PUBLISH "a", properties: Subscription Identifier 1, payload "x".
    c.send_bytes(&[0x30, 0x07, 0x00, 0x01, b'a', 0x02, 0x0B, 0x01, b'x']);
    match c.next_event(TIMEOUT) {
        Event::Packet(Packet::Disconnect(d)) => {
            assert!([0x81, 0x82].contains(&d.reason_code.0), "{d:?}");
            c.expect_closed();
        }
        other => panic!("expected DISCONNECT 0x82, got {other:?}"),
    }
    server.stop();
}
