//! MQTT 5 subscription options and message properties as seen on the wire: No Local, Retain As
//! Published, Retain Handling (§3.8.3.1), Subscription Identifiers and overlapping
//! subscriptions (§3.3.4), Message Expiry (§3.3.2.3.3), and the will on DISCONNECT 0x04
//! (§3.14.2.1) and on takeover.

use unigate_mqtt::{
    Disconnect, Packet, ProtocolVersion, PubResp, QoS, ReasonCode, RetainHandling, Subscribe, SubscribeProperties,
    SubscriptionOptions, Will,
};

use crate::common::TestServer;
use crate::util::{connect_packet, pid, publish, Raw};

fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions::new(qos)
}

#[test]
fn no_local_and_retain_as_published() {
    let server = TestServer::start();
    let mut c = Raw::v5(server.addr, "nl");
    let mut no_local = opts(QoS::AtMostOnce);
    no_local.no_local = true;
    let mut rap = opts(QoS::AtMostOnce);
    rap.retain_as_published = true;
    let ack = c.subscribe_with(
        1,
        &[
            ("nl/own", no_local),
            ("nl/rap", rap),
            ("nl/plain", opts(QoS::AtMostOnce)),
        ],
    );
    assert_eq!(ack.reason_codes, vec![ReasonCode(0); 3]);
    // Own message on a No Local subscription: not delivered [MQTT-3.8.3-3].
    c.send(&Packet::Publish(publish("nl/own", &b"mine"[..], QoS::AtMostOnce, 0)));
    // Retained publications, forwarded live: RETAIN kept only with Retain As Published
    // [MQTT-3.3.1-12], [MQTT-3.3.1-13].
    for t in ["nl/rap", "nl/plain"] {
        let mut p = publish(t, &b"r"[..], QoS::AtMostOnce, 0);
        p.retain = true;
        c.send(&Packet::Publish(p));
    }
    let a = c.recv_publish();
    let b = c.recv_publish();
    assert_eq!((a.topic.as_str(), a.retain), ("nl/rap", true));
    assert_eq!((b.topic.as_str(), b.retain), ("nl/plain", false));
    assert!(c.barrier().is_empty(), "No Local message delivered");
    // Clean up the retained messages.
    for t in ["nl/rap", "nl/plain"] {
        let mut p = publish(t, &b""[..], QoS::AtMostOnce, 0);
        p.retain = true;
        c.send(&Packet::Publish(p));
    }
    // Both clearing messages come back live (they are ours but not on the No Local filter).
    assert_eq!(c.barrier().len(), 2);
    c.disconnect();
    server.stop();
}

#[test]
fn retain_handling_options() {
    let server = TestServer::start();
    let mut publisher = Raw::v5(server.addr, "rh-pub");
    let mut p = publish("rh/t", &b"kept"[..], QoS::AtLeastOnce, 1);
    p.retain = true;
    publisher.publish_acked(p);

    let mut c = Raw::v5(server.addr, "rh");
    // 0: sent at every subscribe, with RETAIN set [MQTT-3.3.1-9].
    c.subscribe("rh/t", QoS::AtMostOnce);
    let r = c.recv_publish();
    assert_eq!((&r.payload[..], r.retain), (&b"kept"[..], true));
    c.subscribe("rh/t", QoS::AtMostOnce);
    assert!(c.recv_publish().retain);
    // 1: only if the subscription is new [MQTT-3.3.1-10].
    let mut if_new = opts(QoS::AtMostOnce);
    if_new.retain_handling = RetainHandling::SendAtSubscribeIfNew;
    c.subscribe_with(2, &[("rh/t", if_new)]);
    assert!(c.barrier().is_empty(), "retained sent for an existing subscription");
    c.subscribe_with(3, &[("rh/+", if_new)]);
    assert!(c.recv_publish().retain);
    // 2: never [MQTT-3.3.1-11].
    let mut never = opts(QoS::AtMostOnce);
    never.retain_handling = RetainHandling::DoNotSend;
    c.subscribe_with(4, &[("rh/#", never)]);
    assert!(c.barrier().is_empty(), "retained sent with Retain Handling 2");
    // Shared subscriptions get no retained messages (MQTT 5 §4.8.2).
    c.subscribe_with(5, &[("$share/g/rh/t", opts(QoS::AtMostOnce))]);
    assert!(c.barrier().is_empty(), "retained sent to a shared subscription");

    let mut p = publish("rh/t", &b""[..], QoS::AtLeastOnce, 2);
    p.retain = true;
    publisher.publish_acked(p);
    // The clearing message reaches c live: once for its direct subscriptions (merged), once
    // for the shared one; none has RETAIN (not Retain As Published).
    let live = c.barrier();
    assert_eq!(live.len(), 2, "{live:?}");
    assert!(live
        .iter()
        .all(|p| matches!(p, Packet::Publish(p) if p.payload.is_empty() && !p.retain)));
    c.disconnect();
    publisher.disconnect();
    server.stop();
}

#[test]
fn subscription_identifiers_and_overlapping_subscriptions() {
    let server = TestServer::start();
    let mut c = Raw::v5(server.addr, "subid");
    for (id, filter, qos) in [(1u16, "si/+", QoS::AtMostOnce), (2, "si/#", QoS::AtLeastOnce)] {
        c.send(&Packet::Subscribe(Subscribe {
            packet_id: pid(id),
            filters: vec![(filter.to_string(), opts(qos))],
            properties: SubscribeProperties {
                subscription_identifier: Some(u32::from(id) * 100),
                ..Default::default()
            },
        }));
        assert!(matches!(c.recv(), Packet::SubAck(_)));
    }
    let mut publisher = Raw::v5(server.addr, "subid-pub");
    publisher.publish_acked(publish("si/x", &b"both"[..], QoS::AtLeastOnce, 1));
    // One copy, at the highest granted QoS, with both identifiers (MQTT 5 §3.3.4).
    let p = c.recv_publish();
    assert_eq!(p.qos, QoS::AtLeastOnce);
    let mut ids = p.properties.subscription_identifiers.clone();
    ids.sort_unstable();
    assert_eq!(ids, vec![100, 200]);
    c.send(&Packet::PubAck(PubResp::new(p.packet_id.expect("QoS 1"))));
    assert!(c.barrier().is_empty(), "overlapping subscriptions delivered twice");
    c.disconnect();
    publisher.disconnect();
    server.stop();
}

#[test]
fn message_expiry_is_forwarded_counting_down() {
    let server = TestServer::start();
    let mut c = Raw::v5(server.addr, "expiry");
    c.subscribe("exp/t", QoS::AtMostOnce);
    let mut p = publish("exp/t", &b"x"[..], QoS::AtMostOnce, 0);
    p.properties.message_expiry_interval = Some(100);
    c.send(&Packet::Publish(p));
    let got = c.recv_publish();
    // The receiver gets the remaining lifetime [MQTT-3.3.2-6].
    let left = got.properties.message_expiry_interval.expect("expiry forwarded");
    assert!((99..=100).contains(&left), "{left}");
    c.disconnect();
    server.stop();
}

fn with_will(client_id: &str, topic: &str, payload: &'static [u8]) -> unigate_mqtt::Connect {
    let mut c = connect_packet(ProtocolVersion::V5, client_id, true);
    c.will = Some(Will {
        topic: topic.into(),
        payload: payload.into(),
        qos: QoS::AtLeastOnce,
        ..Default::default()
    });
    c
}

#[test]
fn will_on_disconnect_with_will_and_on_takeover() {
    let server = TestServer::start();
    let mut sub = Raw::v5(server.addr, "will-sub");
    sub.subscribe("will/#", QoS::AtMostOnce);
    // DISCONNECT 0x00 discards the will [MQTT-3.14.4-3].
    Raw::accepted(server.addr, with_will("w-normal", "will/normal", b"normal")).disconnect();
    // DISCONNECT 0x04 publishes it (MQTT 5 §3.14.2.1).
    let mut c = Raw::accepted(server.addr, with_will("w-04", "will/04", b"with-will"));
    c.send(&Packet::Disconnect(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL)));
    c.expect_closed();
    let p = sub.recv_publish();
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("will/04", &b"with-will"[..]));
    // A takeover closes the old connection without DISCONNECT from it: its will (delay 0) is
    // published (MQTT 5 §3.1.2.5).
    let mut old = Raw::accepted(server.addr, with_will("w-take", "will/take", b"taken"));
    let new = Raw::v5(server.addr, "w-take");
    old.expect_disconnect(0x8E);
    let p = sub.recv_publish();
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("will/take", &b"taken"[..]));
    assert!(sub.barrier().is_empty());
    new.disconnect();
    sub.disconnect();
    server.stop();
}

#[test]
fn takeover_resumes_the_inflight_window() {
    // B takes over A's persistent session while a QoS 1 message to A is unacknowledged: B gets
    // it again with DUP and the same packet id.
    let server = TestServer::start();
    let mut connect = connect_packet(ProtocolVersion::V5, "resume", true);
    connect.properties.session_expiry_interval = Some(300);
    let mut a = Raw::accepted(server.addr, connect.clone());
    a.subscribe("resume/t", QoS::AtLeastOnce);
    let mut publisher = Raw::v5(server.addr, "resume-pub");
    publisher.publish_acked(publish("resume/t", &b"x"[..], QoS::AtLeastOnce, 1));
    let first = a.recv_publish();
    connect.clean_start = false;
    let (mut b, ack) = Raw::connect(server.addr, connect);
    assert!(ack.session_present);
    a.expect_disconnect(0x8E);
    let again = b.recv_publish();
    assert_eq!((again.packet_id, again.dup), (first.packet_id, true));
    b.send(&Packet::PubAck(PubResp::new(again.packet_id.expect("QoS 1"))));
    assert!(b.barrier().is_empty());
    b.disconnect();
    publisher.disconnect();
    server.stop();
}

#[test]
fn unsubscribe_reason_codes() {
    let server = TestServer::start();
    let mut c = Raw::v5(server.addr, "unsub");
    c.subscribe("un/t", QoS::AtLeastOnce);
    c.send(&Packet::Unsubscribe(unigate_mqtt::Unsubscribe {
        packet_id: pid(2),
        filters: vec!["un/t".into(), "un/never".into(), "un/#/bad".into()],
        properties: Default::default(),
    }));
    match c.recv() {
        // Success, No subscription existed, Topic Filter invalid (MQTT 5 §3.11.3).
        Packet::UnsubAck(a) => {
            assert_eq!(a.packet_id, pid(2));
            assert_eq!(
                a.reason_codes,
                vec![ReasonCode(0x00), ReasonCode(0x11), ReasonCode(0x8F)]
            );
        }
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    // Gone: a QoS 1 publish now finds no subscriber (PUBACK 0x10).
    c.send(&Packet::Publish(publish("un/t", &b"x"[..], QoS::AtLeastOnce, 3)));
    match c.recv() {
        Packet::PubAck(a) => assert_eq!(a.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    assert!(c.barrier().is_empty());
    c.disconnect();
    server.stop();
}

#[test]
fn empty_client_id_v5_gets_an_assigned_identifier() {
    // MQTT 5 §3.2.2.3.7 [MQTT-3.2.2-16]: the server assigns an identifier and returns it.
    let server = TestServer::start();
    let (c, ack) = Raw::connect(server.addr, connect_packet(ProtocolVersion::V5, "", true));
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    let id = ack
        .properties
        .assigned_client_identifier
        .expect("Assigned Client Identifier");
    assert!(!id.is_empty());
    // It is a real client id: connecting with it takes that session over.
    let mut c = c;
    let _other = Raw::v5(server.addr, &id);
    c.expect_disconnect(0x8E);
    server.stop();
}
