//! Authorisation on the wire: the `[acl]` rules decide publishes, subscriptions and retained
//! reads; a denied message never reaches a subscriber.

use unigate_mqtt::{Packet, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions, Will};

use crate::common::TestServer;
use crate::util::{connect_packet, publish, Raw};

const ACL: &str = r#"
[acl]
no_match = "deny"
[[acl.rules]]
permission = "deny"
who = "all"
action = "retained"
topics = ["public/private/#"]
[[acl.rules]]
permission = "allow"
who = "all"
action = "all"
topics = ["devices/${clientid}/#", "public/#"]
[[acl.rules]]
permission = "allow"
who = { clientid = "monitor" }
action = "subscribe"
topics = ["devices/#"]
"#;

/// Publishes `p` and returns the acknowledgement's reason code.
fn ack_code(c: &mut Raw, p: unigate_mqtt::Publish) -> ReasonCode {
    c.send(&Packet::Publish(p));
    match c.recv() {
        Packet::PubAck(a) => a.reason_code,
        Packet::PubRec(a) => a.reason_code,
        other => panic!("expected an acknowledgement, got {other:?}"),
    }
}

#[test]
fn denied_publishes_are_refused_and_never_delivered() {
    let server = TestServer::start_with(ACL, "");
    let mut monitor = Raw::v5(server.addr, "monitor");
    monitor.subscribe("devices/#", QoS::AtLeastOnce);
    let mut dev = Raw::v5(server.addr, "dev1");
    // Another device's topic: refused with 0x87, for QoS 1 and QoS 2.
    assert_eq!(
        ack_code(&mut dev, publish("devices/dev2/temp", "spoof", QoS::AtLeastOnce, 1)),
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        ack_code(&mut dev, publish("devices/dev2/temp", "spoof", QoS::ExactlyOnce, 2)),
        ReasonCode::NOT_AUTHORIZED
    );
    dev.send(&Packet::Publish(publish(
        "devices/dev2/temp",
        "spoof",
        QoS::AtMostOnce,
        0,
    )));
    // Its own topic: delivered, and it is the first thing the monitor sees.
    assert_eq!(
        ack_code(&mut dev, publish("devices/dev1/temp", "21.5", QoS::AtLeastOnce, 3)),
        ReasonCode::SUCCESS
    );
    let got = monitor.recv_publish();
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("devices/dev1/temp", &b"21.5"[..])
    );
    // MQTT 3.1.1 cannot be told: acknowledged, dropped, connection kept.
    let mut v3 = Raw::v311(server.addr, "dev3");
    assert_eq!(
        ack_code(&mut v3, publish("devices/dev1/temp", "spoof", QoS::AtLeastOnce, 4)),
        ReasonCode::SUCCESS
    );
    assert_eq!(
        ack_code(&mut v3, publish("devices/dev3/temp", "ok", QoS::AtLeastOnce, 5)),
        ReasonCode::SUCCESS
    );
    let got = monitor.recv_publish();
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("devices/dev3/temp", &b"ok"[..])
    );
    assert_eq!(
        server
            .broker()
            .metrics
            .acl_denied
            .load(std::sync::atomic::Ordering::Relaxed),
        4
    );
    server.stop();
}

#[test]
fn v311_denied_publish_can_close_the_connection() {
    let server = TestServer::start_with(&format!("[mqtt]\ndenied_publish_v3 = \"disconnect\"\n{ACL}"), "");
    let mut monitor = Raw::v5(server.addr, "monitor");
    monitor.subscribe("devices/#", QoS::AtLeastOnce);
    let mut v3 = Raw::v311(server.addr, "dev3");
    v3.send(&Packet::Publish(publish(
        "devices/dev1/temp",
        "spoof",
        QoS::AtLeastOnce,
        1,
    )));
    v3.expect_closed();
    // Nothing reached the subscriber; MQTT 5 clients still get 0x87 and stay.
    let mut dev = Raw::v5(server.addr, "dev1");
    assert_eq!(
        ack_code(&mut dev, publish("devices/dev2/temp", "spoof", QoS::AtLeastOnce, 2)),
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        ack_code(&mut dev, publish("devices/dev1/temp", "mine", QoS::AtLeastOnce, 3)),
        ReasonCode::SUCCESS
    );
    assert_eq!(&monitor.recv_publish().payload[..], b"mine");
    server.stop();
}

#[test]
fn denied_subscriptions_get_0x87_or_0x80() {
    let server = TestServer::start_with(ACL, "");
    let mut dev = Raw::v5(server.addr, "dev1");
    let ack = dev.subscribe_with(
        1,
        &[
            ("devices/dev1/#", SubscriptionOptions::new(QoS::AtLeastOnce)),
            ("devices/#", SubscriptionOptions::new(QoS::AtLeastOnce)),
            ("devices/+/cmd", SubscriptionOptions::new(QoS::AtLeastOnce)),
            ("$share/g/devices/dev1/cmd", SubscriptionOptions::new(QoS::AtLeastOnce)),
        ],
    );
    assert_eq!(
        ack.reason_codes,
        vec![
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::NOT_AUTHORIZED,
            ReasonCode::NOT_AUTHORIZED,
            ReasonCode::GRANTED_QOS_1
        ]
    );
    let mut v3 = Raw::v311(server.addr, "dev3");
    let ack = v3.subscribe_with(1, &[("devices/dev1/#", SubscriptionOptions::new(QoS::AtMostOnce))]);
    assert_eq!(ack.reason_codes, vec![ReasonCode(0x80)]);
    server.stop();
}

#[test]
fn retained_reads_follow_the_rules() {
    let server = TestServer::start_with(ACL, "");
    let mut writer = Raw::v5(server.addr, "writer");
    for (topic, body) in [("public/news", "hello"), ("public/private/key", "secret")] {
        let mut p = publish(topic, body, QoS::AtLeastOnce, 1);
        p.retain = true;
        // Nobody subscribes yet: 0x10 (no matching subscribers) is a success too.
        assert!(!ack_code(&mut writer, p).is_error());
    }
    let mut reader = Raw::v5(server.addr, "reader");
    reader.subscribe("public/#", QoS::AtLeastOnce);
    let got = reader.recv_publish();
    assert_eq!(got.topic, "public/news");
    // Nothing else is retained for it: the next thing it sees is a live message.
    assert_eq!(
        ack_code(&mut writer, publish("public/live", "now", QoS::AtLeastOnce, 2)),
        ReasonCode::SUCCESS
    );
    let next = reader.recv_publish();
    assert_eq!(next.topic, "public/live");
    server.stop();
}

#[test]
fn a_will_on_a_forbidden_topic_refuses_the_connection() {
    let server = TestServer::start_with(ACL, "");
    let mut c = connect_packet(ProtocolVersion::V5, "dev1", true);
    c.will = Some(Will {
        topic: "devices/dev2/status".into(),
        payload: "offline".into(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    let (_, ack) = Raw::connect(server.addr, c);
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
    let mut ok = connect_packet(ProtocolVersion::V5, "dev1", true);
    ok.will = Some(Will {
        topic: "devices/dev1/status".into(),
        payload: "offline".into(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    let (_, ack) = Raw::connect(server.addr, ok);
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    server.stop();
}
