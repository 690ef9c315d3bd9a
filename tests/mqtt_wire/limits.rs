//! Per-listener limits (max connections, topic levels) and the graceful stop.

use std::sync::atomic::Ordering;

use unigate_mqtt::{Packet, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions, Will};

use crate::common::TestServer;
use crate::util::{connect_packet, publish, Raw};

#[test]
fn connections_beyond_max_connections_are_closed_and_slots_come_back() {
    let server = TestServer::start_with("", "max_connections = 2");
    let a = Raw::v5(server.addr, "lim-a");
    let b = Raw::v5(server.addr, "lim-b");
    // The third is closed before any CONNACK.
    let mut c = Raw::open(server.addr);
    let _ = c.try_send_bytes(&c.encode(&Packet::Connect(Box::new(connect_packet(
        ProtocolVersion::V5,
        "lim-c",
        true,
    )))));
    c.expect_closed();
    // A slot freed by a disconnect is usable again.
    a.disconnect();
    let mut again = None;
    for _ in 0..50 {
        // The server releases the slot when it has seen the close; retry briefly.
        let mut d = Raw::open(server.addr);
        let bytes = d.encode(&Packet::Connect(Box::new(connect_packet(
            ProtocolVersion::V5,
            "lim-d",
            true,
        ))));
        if d.try_send_bytes(&bytes).is_ok() {
            if let crate::util::Event::Packet(Packet::ConnAck(ack)) =
                d.next_event(std::time::Duration::from_millis(200))
            {
                assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
                again = Some(d);
                break;
            }
        }
    }
    assert!(again.is_some(), "a freed connection slot was not reusable");
    b.disconnect();
    server.stop();
}

/// The largest value the key takes (TOML integers end at i64::MAX) means "no limit", not a
/// counter that overflowed and refuses everyone.
#[test]
fn the_largest_max_connections_lets_clients_in() {
    let server = TestServer::start_with("", &format!("max_connections = {}", i64::MAX));
    let c = Raw::v5(server.addr, "unlimited");
    c.disconnect();
    server.stop();
}

#[test]
fn topics_and_filters_beyond_max_topic_levels_are_refused() {
    let server = TestServer::start_with("", "max_topic_levels = 3");
    let mut c = Raw::v5(server.addr, "levels");
    let ack = c.subscribe_with(
        1,
        &[
            ("a/b/c", SubscriptionOptions::new(QoS::AtLeastOnce)),
            ("a/b/c/d", SubscriptionOptions::new(QoS::AtLeastOnce)),
        ],
    );
    assert_eq!(
        ack.reason_codes,
        vec![ReasonCode::GRANTED_QOS_1, ReasonCode::TOPIC_FILTER_INVALID]
    );
    c.send(&Packet::Publish(publish("a/b/c/d", "deep", QoS::AtLeastOnce, 7)));
    match c.recv() {
        Packet::PubAck(a) => assert_eq!(a.reason_code, ReasonCode::TOPIC_NAME_INVALID),
        other => panic!("expected PUBACK 0x90, got {other:?}"),
    }
    // Within the limit it flows.
    c.send(&Packet::Publish(publish("a/b/c", "ok", QoS::AtLeastOnce, 8)));
    let mut got_ack = false;
    let mut got_msg = false;
    while !(got_ack && got_msg) {
        match c.recv() {
            Packet::PubAck(a) => {
                assert_eq!(a.reason_code, ReasonCode::SUCCESS);
                got_ack = true;
            }
            Packet::Publish(p) => {
                assert_eq!(&p.payload[..], b"ok");
                got_msg = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // MQTT 3.1.1 cannot refuse a PUBLISH: the connection is closed.
    let mut v3 = Raw::v311(server.addr, "levels-3");
    v3.send(&Packet::Publish(publish("a/b/c/d", "deep", QoS::AtLeastOnce, 1)));
    v3.expect_closed();
    server.stop();
}

#[test]
fn graceful_stop_sends_0x8b_and_keeps_wills_unpublished() {
    let server = TestServer::start();
    let broker = server.server.as_ref().expect("running").broker.clone();
    let mut with_will = connect_packet(ProtocolVersion::V5, "stop-will", true);
    with_will.will = Some(Will {
        topic: "wills/stop".into(),
        payload: "gone".into(),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Default::default(),
    });
    let mut c5 = Raw::accepted(server.addr, with_will);
    let mut c3 = Raw::v311(server.addr, "stop-v3");
    let stopper = std::thread::spawn(move || server.stop());
    c5.expect_disconnect(0x8B);
    c3.expect_closed();
    stopper.join().expect("server stopped");
    assert_eq!(broker.metrics.wills_published.load(Ordering::Relaxed), 0);
    assert!(broker.retained_matching(&"wills/#".parse().expect("filter")).is_empty());
}

#[test]
fn backpressure_keeps_acknowledged_messages_when_a_subscriber_lags() {
    use unigate_mqtt::{PacketId, PubResp};
    // A queue of 200 would overflow many times over without back-pressure.
    let server = TestServer::start_with("[mqtt]\nbackpressure_queue = 50\n", "max_queued_messages = 200");
    let mut sub_connect = connect_packet(ProtocolVersion::V5, "bp-sub", true);
    sub_connect.properties.receive_maximum = Some(8);
    let mut sub = Raw::accepted(server.addr, sub_connect);
    sub.subscribe("bp/#", QoS::AtLeastOnce);
    const N: u32 = 3000;
    let addr = server.addr;
    // The publisher pipelines everything without waiting, then collects the acknowledgements.
    let publisher = std::thread::spawn(move || {
        let mut p = Raw::v5(addr, "bp-pub");
        let mut bytes = Vec::new();
        for i in 0..N {
            let id = (i % 60_000 + 1) as u16;
            bytes.extend(p.encode(&Packet::Publish(publish(
                "bp/t",
                i.to_be_bytes().to_vec(),
                QoS::AtLeastOnce,
                id,
            ))));
        }
        p.send_bytes(&bytes);
        let mut acked = 0;
        while acked < N {
            match p.recv() {
                Packet::PubAck(a) => {
                    assert!(!a.reason_code.is_error());
                    acked += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        acked
    });
    // The subscriber takes its time but keeps going: every message, in order.
    for i in 0..N {
        let p = sub.recv_publish();
        assert_eq!(
            u32::from_be_bytes(p.payload[..4].try_into().expect("4 bytes")),
            i,
            "lost or reordered"
        );
        if i % 500 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let id: PacketId = p.packet_id.expect("QoS 1");
        sub.send(&Packet::PubAck(PubResp::new(id)));
    }
    assert_eq!(publisher.join().expect("publisher"), N);
    assert_eq!(server.broker().metrics.dropped_queue_full.load(Ordering::Relaxed), 0);
    server.stop();
}
