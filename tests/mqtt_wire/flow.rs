//! Message flow on the wire: topic aliases both ways (MQTT 5 §3.3.2.3.4), QoS 2 exactly-once
//! (§4.3.3), Receive Maximum both ways (§4.9), shared-subscription and filter rules
//! (§4.8.2, §4.7).

use bytes::Bytes;
use unigate_mqtt::{
    ConnectProperties, Packet, ProtocolVersion, PubResp, Publish, QoS, ReasonCode, SubscriptionOptions,
};

use crate::common::TestServer;
use crate::util::{connect_packet, field, frame, pid, publish, Raw};

fn with_alias(topic: &str, alias: u16, payload: &'static [u8]) -> Publish {
    let mut p = Publish::new(topic, payload);
    p.properties.topic_alias = Some(alias);
    p
}

#[test]
fn topic_alias_from_client_is_resolved() {
    let server = TestServer::start();
    let mut sub = Raw::v5(server.addr, "alias-sub");
    sub.subscribe("alias/t", QoS::AtMostOnce);
    let mut publisher = Raw::v5(server.addr, "alias-pub");
    publisher.send(&Packet::Publish(with_alias("alias/t", 1, b"one")));
    publisher.send(&Packet::Publish(with_alias("", 1, b"two")));
    // Re-pointing an alias to another topic is allowed (MQTT 5 §3.3.2.3.4).
    publisher.send(&Packet::Publish(with_alias("alias/other", 1, b"elsewhere")));
    publisher.send(&Packet::Publish(with_alias("alias/t", 2, b"three")));
    publisher.send(&Packet::Publish(with_alias("", 2, b"four")));
    for want in [&b"one"[..], b"two", b"three", b"four"] {
        let p = sub.recv_publish();
        // The subscriber set no Topic Alias Maximum, so it gets the full topic every time.
        assert_eq!(p.topic, "alias/t");
        assert_eq!(p.properties.topic_alias, None);
        assert_eq!(&p.payload[..], want);
    }
    assert!(sub.barrier().is_empty());
    publisher.disconnect();
    sub.disconnect();
    server.stop();
}

#[test]
fn invalid_topic_aliases_from_client() {
    let server = TestServer::start();
    // Alias 0 [MQTT-3.3.2-8] → Topic Alias invalid. Hand-built: the encoder would refuse it.
    let mut c = Raw::v5(server.addr, "alias-bad");
    let body = [&field(b"a")[..], &[3, 0x23, 0x00, 0x00], b"x"].concat();
    c.send_bytes(&frame(0x30, &body));
    c.expect_disconnect(0x94);

    // Above the server's Topic Alias Maximum [MQTT-3.3.2-9] → Topic Alias invalid.
    let (mut c, ack) = Raw::connect(server.addr, connect_packet(ProtocolVersion::V5, "alias-bad", true));
    let max = ack.properties.topic_alias_maximum.expect("CONNACK Topic Alias Maximum");
    assert!(max > 0 && max < u16::MAX, "{ack:?}");
    c.send(&Packet::Publish(with_alias("a", max, b"ok")));
    assert!(c.barrier().is_empty(), "alias {max} is allowed");
    c.send(&Packet::Publish(with_alias("a", max + 1, b"x")));
    c.expect_disconnect(0x94);

    // An alias that was never set, with an empty topic → Protocol Error (MQTT 5 §3.3.4).
    let mut c = Raw::v5(server.addr, "alias-bad");
    c.send(&Packet::Publish(with_alias("", 3, b"x")));
    c.expect_disconnect(0x82);

    // Aliases are per connection: a mapping does not survive a reconnect (§3.3.2.3.4).
    let mut c = Raw::v5(server.addr, "alias-bad");
    c.send(&Packet::Publish(with_alias("a", 4, b"x")));
    c.disconnect();
    let mut c = Raw::v5(server.addr, "alias-bad");
    c.send(&Packet::Publish(with_alias("", 4, b"x")));
    c.expect_disconnect(0x82);
    server.stop();
}

#[test]
fn topic_aliases_to_client() {
    let server = TestServer::start();
    let mut connect = connect_packet(ProtocolVersion::V5, "alias-out", true);
    connect.properties = ConnectProperties {
        topic_alias_maximum: Some(5),
        ..Default::default()
    };
    let mut sub = Raw::accepted(server.addr, connect);
    sub.subscribe("out/#", QoS::AtMostOnce);
    let mut publisher = Raw::v5(server.addr, "alias-out-pub");
    for (topic, body) in [
        ("out/a", "1"),
        ("out/a", "2"),
        ("out/b", "3"),
        ("out/a", "4"),
        ("out/b", "5"),
    ] {
        publisher.send(&Packet::Publish(publish(topic, body.to_string(), QoS::AtMostOnce, 0)));
    }
    let got: Vec<Publish> = (0..5).map(|_| sub.recv_publish()).collect();
    let alias_a = got[0].properties.topic_alias.expect("first PUBLISH sets an alias");
    assert!((1..=5).contains(&alias_a), "{:?}", got[0]);
    assert_eq!(got[0].topic, "out/a");
    // Later ones on the same topic: empty topic, same alias [MQTT-3.3.2-12 ff.].
    for i in [1, 3] {
        assert_eq!(got[i].topic, "", "{:?}", got[i]);
        assert_eq!(got[i].properties.topic_alias, Some(alias_a));
    }
    let alias_b = got[2].properties.topic_alias.expect("alias for the second topic");
    assert_ne!(alias_a, alias_b);
    assert!((1..=5).contains(&alias_b));
    assert_eq!(got[2].topic, "out/b");
    assert_eq!(got[4].topic, "");
    assert_eq!(got[4].properties.topic_alias, Some(alias_b));
    let bodies: Vec<&[u8]> = got.iter().map(|p| &p.payload[..]).collect();
    assert_eq!(bodies, vec![&b"1"[..], b"2", b"3", b"4", b"5"]);
    sub.disconnect();
    publisher.disconnect();
    server.stop();
}

#[test]
fn topic_aliases_to_client_stop_at_its_maximum() {
    // Topic Alias Maximum 2 and three topics: the third goes with its full topic and either no
    // alias or one of 1..=2 (never above the client's maximum [MQTT-3.3.2-10]).
    let server = TestServer::start();
    let mut connect = connect_packet(ProtocolVersion::V5, "alias-cap", true);
    connect.properties.topic_alias_maximum = Some(2);
    let mut sub = Raw::accepted(server.addr, connect);
    sub.subscribe("cap/#", QoS::AtMostOnce);
    let mut publisher = Raw::v5(server.addr, "alias-cap-pub");
    for t in ["cap/1", "cap/2", "cap/3", "cap/3"] {
        publisher.send(&Packet::Publish(publish(t, &b"x"[..], QoS::AtMostOnce, 0)));
    }
    let mut aliases = std::collections::HashMap::new();
    for want in ["cap/1", "cap/2", "cap/3", "cap/3"] {
        let p = sub.recv_publish();
        let topic = match (p.topic.as_str(), p.properties.topic_alias) {
            ("", Some(a)) => aliases.get(&a).cloned().expect("alias known to the client"),
            (t, Some(a)) => {
                assert!((1..=2).contains(&a), "alias {a} above the client's maximum");
                aliases.insert(a, t.to_string());
                t.to_string()
            }
            (t, None) => t.to_string(),
        };
        assert_eq!(topic, want);
    }
    sub.disconnect();
    publisher.disconnect();
    server.stop();
}

#[test]
fn qos2_retransmission_before_pubrel_is_delivered_once() {
    let server = TestServer::start();
    let mut sub = Raw::v5(server.addr, "q2-sub");
    sub.subscribe("q2/t", QoS::ExactlyOnce);
    let mut publisher = Raw::v5(server.addr, "q2-pub");
    let mut p = publish("q2/t", &b"once"[..], QoS::ExactlyOnce, 7);
    for dup in [false, true] {
        p.dup = dup;
        publisher.send(&Packet::Publish(p.clone()));
        match publisher.recv() {
            Packet::PubRec(r) => {
                assert_eq!(r.packet_id, pid(7));
                assert!(!r.reason_code.is_error(), "{r:?}");
            }
            other => panic!("expected PUBREC, got {other:?}"),
        }
    }
    publisher.send(&Packet::PubRel(PubResp::new(pid(7))));
    match publisher.recv() {
        Packet::PubComp(r) => assert_eq!((r.packet_id, r.reason_code), (pid(7), ReasonCode::SUCCESS)),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    // After PUBREL the id is free: the same id is a new message.
    publisher.publish_acked(publish("q2/t", &b"again"[..], QoS::ExactlyOnce, 7));
    publisher.send(&Packet::Publish(publish("q2/t", &b"end"[..], QoS::AtMostOnce, 0)));

    // Complete each QoS 2 flow as the subscriber; packets of later messages may interleave.
    let mut got = Vec::new();
    let (mut end, mut released) = (false, 0);
    while !end || released < got.len() {
        match sub.recv() {
            Packet::Publish(p) if &p.payload[..] == b"end" => end = true,
            Packet::Publish(p) => {
                assert_eq!(p.qos, QoS::ExactlyOnce);
                sub.send(&Packet::PubRec(PubResp::new(p.packet_id.expect("QoS 2"))));
                got.push(p.payload);
            }
            Packet::PubRel(r) => {
                sub.send(&Packet::PubComp(PubResp::new(r.packet_id)));
                released += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(sub.barrier().is_empty());
    assert_eq!(got, vec![Bytes::from_static(b"once"), Bytes::from_static(b"again")]);
    sub.disconnect();
    publisher.disconnect();
    server.stop();
}

#[test]
fn pubrel_for_unknown_id_gets_pubcomp_0x92() {
    let server = TestServer::start();
    let mut c = Raw::v5(server.addr, "pubrel-unknown");
    c.send(&Packet::PubRel(PubResp::new(pid(99))));
    match c.recv() {
        Packet::PubComp(r) => {
            assert_eq!(r.packet_id, pid(99));
            assert_eq!(r.reason_code, ReasonCode(0x92));
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    // The connection stays usable.
    assert!(c.barrier().is_empty());
    c.disconnect();

    // MQTT 3.1.1 has no reason code: a plain PUBCOMP (§4.3.3 still requires one).
    let mut c = Raw::v311(server.addr, "pubrel-unknown-3");
    c.send(&Packet::PubRel(PubResp::new(pid(99))));
    match c.recv() {
        Packet::PubComp(r) => assert_eq!(r.packet_id, pid(99)),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    c.disconnect();
    server.stop();
}

#[test]
fn incoming_qos2_above_receive_maximum_gets_0x93() {
    let server = TestServer::start_with("", "max_incoming_inflight = 2");
    let (mut c, ack) = Raw::connect(server.addr, connect_packet(ProtocolVersion::V5, "recv-max", true));
    assert_eq!(ack.properties.receive_maximum, Some(2), "{ack:?}");
    for id in 1..=2 {
        c.send(&Packet::Publish(publish("rm/t", &b"x"[..], QoS::ExactlyOnce, id)));
        match c.recv() {
            Packet::PubRec(r) => assert_eq!(r.packet_id, pid(id)),
            other => panic!("expected PUBREC, got {other:?}"),
        }
    }
    // Releasing one makes room again.
    c.send(&Packet::PubRel(PubResp::new(pid(1))));
    assert!(matches!(c.recv(), Packet::PubComp(r) if r.packet_id == pid(1)));
    c.send(&Packet::Publish(publish("rm/t", &b"x"[..], QoS::ExactlyOnce, 3)));
    assert!(matches!(c.recv(), Packet::PubRec(r) if r.packet_id == pid(3)));
    // Ids 2 and 3 unreleased: a third is one too many [MQTT-3.3.4-9].
    c.send(&Packet::Publish(publish("rm/t", &b"x"[..], QoS::ExactlyOnce, 4)));
    c.expect_disconnect(0x93);
    server.stop();
}

#[test]
fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    let server = TestServer::start();
    let mut c = Raw::v5(server.addr, "share-nolocal");
    let mut o = SubscriptionOptions::new(QoS::AtLeastOnce);
    o.no_local = true;
    c.send(&Packet::Subscribe(unigate_mqtt::Subscribe {
        packet_id: pid(1),
        filters: vec![("$share/g/t".to_string(), o)],
        properties: Default::default(),
    }));
    // [MQTT-3.8.3-4]
    c.expect_disconnect(0x82);
    server.stop();
}

#[test]
fn invalid_filters_are_refused_in_suback() {
    let server = TestServer::start();
    let filters = ["$share/g", "$share//t", "$share/g+/t", "a/#/b", "a+", "ok/+"];
    let opts = SubscriptionOptions::new(QoS::AtLeastOnce);
    let list: Vec<(&str, SubscriptionOptions)> = filters.iter().map(|f| (*f, opts)).collect();

    let mut c = Raw::v5(server.addr, "filters-5");
    let ack = c.subscribe_with(5, &list);
    assert_eq!(
        ack.reason_codes,
        vec![
            ReasonCode(0x8F),
            ReasonCode(0x8F),
            ReasonCode(0x8F),
            ReasonCode(0x8F),
            ReasonCode(0x8F),
            ReasonCode(0x01)
        ],
        "{filters:?}"
    );
    c.disconnect();

    let mut c = Raw::v311(server.addr, "filters-3");
    let ack = c.subscribe_with(6, &list);
    let codes: Vec<u8> = ack.reason_codes.iter().map(|r| r.0).collect();
    assert_eq!(codes, vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x01], "{filters:?}");
    c.disconnect();
    server.stop();
}

#[test]
fn outbound_inflight_window_and_resend_on_reconnect() {
    let server = TestServer::start();
    let mut connect = connect_packet(ProtocolVersion::V5, "window", true);
    connect.properties = ConnectProperties {
        receive_maximum: Some(2),
        session_expiry_interval: Some(300),
        ..Default::default()
    };
    let mut sub = Raw::accepted(server.addr, connect.clone());
    sub.subscribe("win/t", QoS::AtLeastOnce);

    let mut publisher = Raw::v5(server.addr, "window-pub");
    for i in 0..10u16 {
        publisher.publish_acked(publish("win/t", format!("m{i}"), QoS::AtLeastOnce, i + 1));
    }
    // Every message is queued now (each PUBACK came after routing). Exactly two arrive.
    let first = sub.recv_publish();
    let second = sub.recv_publish();
    let extra = sub.barrier();
    assert!(extra.is_empty(), "receive maximum 2, but also got {extra:?}");
    assert_eq!(&first.payload[..], b"m0");
    assert_eq!(&second.payload[..], b"m1");
    let (id0, id1) = (first.packet_id.expect("id"), second.packet_id.expect("id"));
    assert_ne!(id0, id1);

    // Acknowledge one: exactly one more.
    sub.send(&Packet::PubAck(PubResp::new(id0)));
    let third = sub.recv_publish();
    assert_eq!(&third.payload[..], b"m2");
    assert!(!third.dup);
    let id2 = third.packet_id.expect("id");
    assert!(sub.barrier().is_empty(), "one ack, one more message");

    // Drop the connection without acking m1 and m2; the session lives on.
    drop(sub);
    connect.clean_start = false;
    let (mut sub, ack) = Raw::connect(server.addr, connect);
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert!(ack.session_present, "session present after reconnect");
    // m1 and m2 again, DUP set, same packet ids [MQTT-4.4.0-1], in order.
    let r1 = sub.recv_publish();
    let r2 = sub.recv_publish();
    assert_eq!((&r1.payload[..], r1.packet_id, r1.dup), (&b"m1"[..], Some(id1), true));
    assert_eq!((&r2.payload[..], r2.packet_id, r2.dup), (&b"m2"[..], Some(id2), true));
    assert!(sub.barrier().is_empty(), "the window is full");
    // Then the rest, in order, as the window allows.
    sub.send(&Packet::PubAck(PubResp::new(id1)));
    sub.send(&Packet::PubAck(PubResp::new(id2)));
    for i in 3..10 {
        let p = sub.recv_publish();
        assert_eq!(p.payload, Bytes::from(format!("m{i}")));
        assert!(!p.dup);
        sub.send(&Packet::PubAck(PubResp::new(p.packet_id.expect("id"))));
    }
    assert!(sub.barrier().is_empty());
    sub.disconnect();
    publisher.disconnect();
    server.stop();
}

#[test]
fn alias_is_not_assigned_by_a_publish_that_was_dropped_for_size() {
    // The server must not use an alias in a PUBLISH without first having sent the topic with
    // it on this connection (MQTT 5 §3.3.2.3.4). A PUBLISH dropped for the client's Maximum
    // Packet Size was never sent, so the next message on that topic must carry the topic.
    let server = TestServer::start();
    let mut connect = connect_packet(ProtocolVersion::V5, "alias-size", true);
    connect.properties = ConnectProperties {
        topic_alias_maximum: Some(5),
        maximum_packet_size: Some(200),
        ..Default::default()
    };
    let mut sub = Raw::accepted(server.addr, connect);
    sub.subscribe("alias-size/t", QoS::AtMostOnce);
    let mut publisher = Raw::v5(server.addr, "alias-size-pub");
    publisher.send(&Packet::Publish(publish(
        "alias-size/t",
        vec![b'L'; 500],
        QoS::AtMostOnce,
        0,
    )));
    publisher.send(&Packet::Publish(publish(
        "alias-size/t",
        &b"small"[..],
        QoS::AtMostOnce,
        0,
    )));
    let p = sub.recv_publish();
    assert_eq!(&p.payload[..], b"small");
    assert_eq!(p.topic, "alias-size/t", "alias used before it was established: {p:?}");
    sub.disconnect();
    publisher.disconnect();
    server.stop();
}

#[test]
fn dropped_oversize_message_frees_its_slot_without_another_event() {
    // Messages queued while offline, Receive Maximum 1, the first five too large for the
    // client: on reconnect they are discarded as if delivered (MQTT 5 §3.1.2.11.4) and the
    // small one must follow by itself — the client sends nothing after CONNECT. Online the same
    // happens whenever the small message is queued before the large one is dropped.
    let server = TestServer::start();
    let mut connect = connect_packet(ProtocolVersion::V5, "size-offline", true);
    connect.properties = ConnectProperties {
        receive_maximum: Some(1),
        maximum_packet_size: Some(200),
        session_expiry_interval: Some(300),
        ..Default::default()
    };
    let mut sub = Raw::accepted(server.addr, connect.clone());
    sub.subscribe("size-offline/t", QoS::AtLeastOnce);
    sub.disconnect();
    let mut publisher = Raw::v5(server.addr, "size-offline-pub");
    for id in 1..=5 {
        publisher.publish_acked(publish("size-offline/t", vec![b'L'; 500], QoS::AtLeastOnce, id));
    }
    publisher.publish_acked(publish("size-offline/t", &b"small"[..], QoS::AtLeastOnce, 6));
    connect.clean_start = false;
    let (mut sub, ack) = Raw::connect(server.addr, connect);
    assert!(ack.session_present);
    let p = sub.recv_publish();
    assert_eq!(&p.payload[..], b"small");
    sub.send(&Packet::PubAck(PubResp::new(p.packet_id.expect("QoS 1"))));
    assert!(sub.barrier().is_empty());
    sub.disconnect();
    publisher.disconnect();
    server.stop();
}

#[test]
fn qos2_outbound_resumes_with_pubrel_after_reconnect() {
    // Subscriber got the QoS 2 PUBLISH and sent PUBREC, then lost the connection before
    // PUBCOMP: on reconnect the server resends PUBREL, not the PUBLISH (MQTT 5 §4.4).
    let server = TestServer::start();
    let mut connect = connect_packet(ProtocolVersion::V5, "q2-resume", true);
    connect.properties.session_expiry_interval = Some(300);
    let mut sub = Raw::accepted(server.addr, connect.clone());
    sub.subscribe("q2r/t", QoS::ExactlyOnce);
    let mut publisher = Raw::v5(server.addr, "q2-resume-pub");
    publisher.publish_acked(publish("q2r/t", &b"x"[..], QoS::ExactlyOnce, 1));
    let p = sub.recv_publish();
    let id = p.packet_id.expect("QoS 2");
    sub.send(&Packet::PubRec(PubResp::new(id)));
    match sub.recv() {
        Packet::PubRel(r) => assert_eq!(r.packet_id, id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    drop(sub);
    connect.clean_start = false;
    let (mut sub, ack) = Raw::connect(server.addr, connect);
    assert!(ack.session_present);
    match sub.recv() {
        Packet::PubRel(r) => assert_eq!(r.packet_id, id),
        other => panic!("expected PUBREL again, got {other:?}"),
    }
    sub.send(&Packet::PubComp(PubResp::new(id)));
    assert!(sub.barrier().is_empty(), "the message is not delivered again");
    sub.disconnect();
    publisher.disconnect();
    server.stop();
}

#[test]
fn session_expiry_zero_ends_the_session() {
    // MQTT 5: no Session Expiry Interval means 0, the session ends with the connection
    // [MQTT-3.1.2-23]; reconnecting with clean start 0 finds no session.
    let server = TestServer::start();
    let mut sub = Raw::accepted(server.addr, connect_packet(ProtocolVersion::V5, "expiry-zero", true));
    sub.subscribe("ez/t", QoS::AtLeastOnce);
    sub.disconnect();
    let (mut c, ack) = Raw::connect(server.addr, connect_packet(ProtocolVersion::V5, "expiry-zero", false));
    assert!(!ack.session_present, "{ack:?}");
    // ... and its subscription is gone.
    let mut publisher = Raw::v5(server.addr, "expiry-zero-pub");
    publisher.send(&Packet::Publish(publish("ez/t", &b"x"[..], QoS::AtLeastOnce, 1)));
    match publisher.recv() {
        Packet::PubAck(a) => assert_eq!(a.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    assert!(c.barrier().is_empty());

    // Raising the expiry on DISCONNECT after connecting with 0 is a Protocol Error
    // [MQTT-3.14.2-2].
    let mut d = unigate_mqtt::Disconnect::new(ReasonCode::SUCCESS);
    d.properties.session_expiry_interval = Some(60);
    c.send(&Packet::Disconnect(d));
    c.expect_disconnect(0x82);
    publisher.disconnect();
    server.stop();
}
