//! Persistent sessions (3.1.1 clean session 0, MQTT 5 clean start 0 + session expiry), clean
//! starts, session expiry and session takeover.

use std::time::Instant;

use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Packet as RawPacket, PubAckReason, Subscribe};
use rumqttc::v5::Event;

use crate::common::TestServer;
use crate::util::{q4, q5, seq_of, seq_payload, v4, v5, wait_until};

/// Publishes, while the subscriber is away: one QoS 0 message, then `n` messages alternating
/// QoS 1 and QoS 2 with sequence numbers. Returns the QoS of each numbered message.
async fn publish_while_offline(p: &mut v4::Client, topic: &str, n: usize) -> Vec<u8> {
    p.publish(topic, q4(0), false, "qos0-while-offline").await;
    let mut qos = Vec::new();
    for i in 0..n {
        let q = if i % 2 == 0 { 1 } else { 2 };
        p.publish(topic, q4(q), false, seq_payload(i)).await;
        qos.push(q);
    }
    qos
}

/// MQTT 3.1.1 §3.1.2.4: a clean session 0 session keeps its subscriptions and queues QoS 1 and
/// QoS 2 messages while the client is away; QoS 0 is not queued (the default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_persistent_session_queues_qos1_and_qos2_in_order() {
    let server = TestServer::start();
    let topic = "persist/v4";
    let mut s = v4::Client::connect(v4::persistent(&server, "keeper")).await;
    assert!(!s.connack.session_present, "first connection: no session yet");
    s.subscribe(topic, q4(2)).await;
    s.disconnect().await;

    let mut p = v4::Client::connect(v4::options(&server, "pub")).await;
    let qos = publish_while_offline(&mut p, topic, 10).await;

    let mut s = v4::Client::connect(v4::persistent(&server, "keeper")).await;
    assert!(s.connack.session_present, "resumed session must be present");
    // The QoS 0 message, published first, would arrive first if it had been queued.
    let got = s.recv_n(10).await;
    for (i, m) in got.iter().enumerate() {
        assert_eq!(seq_of(&m.payload), i, "message {i}: {m:?}");
        assert_eq!(m.qos as u8, qos[i], "message {i}: QoS");
        assert_eq!(m.topic, topic);
    }
    s.assert_silent().await;
    drop((s, p));
    server.stop();
}

/// MQTT 5 §3.1.2.4 / §3.1.2.11.2: clean start 0 with a session expiry interval resumes the
/// session; messages published by a 3.1.1 client meanwhile arrive in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_persistent_session_queues_qos1_and_qos2_in_order() {
    let server = TestServer::start();
    let topic = "persist/v5";
    let mut s = v5::Client::connect(v5::persistent(&server, "keeper5", 60)).await;
    assert!(!s.connack.session_present);
    s.subscribe(topic, q5(2)).await;
    s.disconnect().await;
    assert!(
        server.broker().session("keeper5").is_some(),
        "session must outlive the connection"
    );

    let mut p = v4::Client::connect(v4::options(&server, "pub")).await;
    let qos = publish_while_offline(&mut p, topic, 10).await;

    let mut s = v5::Client::connect(v5::persistent(&server, "keeper5", 60)).await;
    assert!(s.connack.session_present, "resumed session must be present");
    let got = s.recv_n(10).await;
    for (i, m) in got.iter().enumerate() {
        assert_eq!(seq_of(&m.payload), i, "message {i}: {m:?}");
        assert_eq!(m.qos as u8, qos[i], "message {i}: QoS");
        assert_eq!(v5::topic(m), topic);
    }
    s.assert_silent().await;
    drop((s, p));
    server.stop();
}

/// MQTT 3.1.1 §3.1.2.4: clean session 1 discards the stored session: no session present, no
/// queued messages, no old subscriptions; and its own session ends with the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_clean_session_discards_the_stored_session() {
    let server = TestServer::start();
    let mut s = v4::Client::connect(v4::persistent(&server, "c4")).await;
    s.subscribe("clean4/old", q4(1)).await;
    s.disconnect().await;

    let mut p = v4::Client::connect(v4::options(&server, "pub")).await;
    p.publish("clean4/old", q4(1), false, "queued").await;

    let mut s = v4::Client::connect(v4::options(&server, "c4")).await;
    assert!(!s.connack.session_present, "clean session: session present must be 0");
    s.subscribe("clean4/marker", q4(1)).await;
    p.publish("clean4/old", q4(1), false, "after").await;
    p.publish("clean4/marker", q4(1), false, "marker").await;
    // Neither the queued message nor one for the old subscription comes before the marker.
    let m = s.recv().await;
    assert_eq!((m.topic.as_str(), &m.payload[..]), ("clean4/marker", &b"marker"[..]));
    s.disconnect().await;

    let s = v4::Client::connect(v4::persistent(&server, "c4")).await;
    assert!(!s.connack.session_present, "a clean session ends with its connection");
    drop((s, p));
    server.stop();
}

/// MQTT 5 §3.1.2.4: clean start 1 discards an existing session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_clean_start_discards_the_stored_session() {
    let server = TestServer::start();
    let mut s = v5::Client::connect(v5::persistent(&server, "c5", 60)).await;
    s.subscribe("clean5/old", q5(1)).await;
    s.disconnect().await;

    let mut p = v5::Client::connect(v5::options(&server, "pub")).await;
    p.publish("clean5/old", q5(1), false, "queued").await;

    let mut opts = v5::options(&server, "c5");
    opts.set_session_expiry_interval(Some(60));
    let mut s = v5::Client::connect(opts).await;
    assert!(!s.connack.session_present, "clean start: session present must be 0");
    s.subscribe("clean5/marker", q5(1)).await;
    p.publish("clean5/old", q5(1), false, "after").await;
    p.publish("clean5/marker", q5(1), false, "marker").await;
    let m = s.recv().await;
    assert_eq!((v5::topic(&m), &m.payload[..]), ("clean5/marker", &b"marker"[..]));
    drop((s, p));
    server.stop();
}

/// MQTT 5 §3.1.2.11.2: the session ends when its expiry interval elapses after the connection
/// closed; a later publish finds no subscriber and the client gets a new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_session_expiry_ends_the_session() {
    let server = TestServer::start();
    let topic = "expiry/session";
    let mut s = v5::Client::connect(v5::persistent(&server, "short", 1)).await;
    s.subscribe(topic, q5(1)).await;
    s.disconnect().await;
    let closed = Instant::now();
    assert!(
        server.broker().session("short").is_some(),
        "session must outlive the connection"
    );

    wait_until("the session to expire", || server.broker().session("short").is_none()).await;
    let lived = closed.elapsed();
    assert!(lived.as_millis() >= 800, "session ended after {lived:?}, expiry is 1 s");

    let mut p = v5::Client::connect(v5::options(&server, "pub")).await;
    p.client.publish(topic, q5(1), false, "nobody").await.unwrap();
    let reason = p
        .expect("PUBACK", |ev| match ev {
            Event::Incoming(Packet::PubAck(a)) => Some(a.reason),
            _ => None,
        })
        .await;
    assert_eq!(
        reason,
        PubAckReason::NoMatchingSubscribers,
        "the subscription must be gone"
    );

    let mut s = v5::Client::connect(v5::persistent(&server, "short", 1)).await;
    assert!(!s.connack.session_present, "expired session must not be present");
    s.assert_silent().await;
    drop((s, p));
    server.stop();
}

/// MQTT 5 §3.1.4-3: a second connection with the same client id takes the session over; the
/// first (MQTT 5) gets DISCONNECT 0x8E, the second resumes the session with its subscriptions.
/// The first connection is a raw one: rumqttc 0.25 cannot read a DISCONNECT without a property
/// length (see `util::v5::RawConn`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_session_takeover_disconnects_the_first_connection() {
    let server = TestServer::start();
    let topic = "takeover/v5";
    let mut first = v5::RawConn::connect(&server, v5::connect_packet("twin", Some(60)), None).await;
    let mut sub = Subscribe::new(Filter::new(topic, q5(1)), None);
    sub.pkid = 1;
    first.send(RawPacket::Subscribe(sub)).await;
    let (kind, body) = first.frame().await.expect("SUBACK");
    assert_eq!(
        (kind, body.last()),
        (0x90, Some(&1)),
        "SUBACK granting QoS 1: {body:02x?}"
    );

    let mut second = v5::Client::connect(v5::persistent(&server, "twin", 60)).await;
    assert!(second.connack.session_present, "taken-over session must be present");
    let (kind, body) = first.frame().await.expect("DISCONNECT before the close");
    assert_eq!(kind, 0xE0, "expected DISCONNECT, got packet type {kind:#04x}");
    assert_eq!(
        body.first(),
        Some(&0x8E),
        "DISCONNECT reason (0x8E Session taken over): {body:02x?}"
    );
    assert_eq!(first.frame().await, None, "the first connection must be closed");

    let mut p = v4::Client::connect(v4::options(&server, "pub")).await;
    p.publish(topic, q4(1), false, "to-the-second").await;
    let m = second.recv().await;
    assert_eq!(&m.payload[..], b"to-the-second");
    drop((second, p));
    server.stop();
}

/// MQTT 3.1.1 §3.1.4-2: the same for 3.1.1 clients (no DISCONNECT in 3.1.1: the first
/// connection is just closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_session_takeover_closes_the_first_connection() {
    let server = TestServer::start();
    let topic = "takeover/v4";
    let mut first = v4::Client::connect(v4::persistent(&server, "twin4")).await;
    first.subscribe(topic, q4(1)).await;

    let mut second = v4::Client::connect(v4::persistent(&server, "twin4")).await;
    assert!(second.connack.session_present, "taken-over session must be present");
    assert!(first.closed().await.is_some(), "the first connection must be closed");

    let mut p = v4::Client::connect(v4::options(&server, "pub")).await;
    p.publish(topic, q4(1), false, "to-the-second").await;
    let m = second.recv().await;
    assert_eq!(&m.payload[..], b"to-the-second");
    drop((first, second, p));
    server.stop();
}

/// MQTT 3.1.1 §4.4: messages sent and not acknowledged when the connection drops are sent
/// again with DUP 1 when the session resumes, before the rest of the queue; acknowledged ones
/// are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_unacknowledged_messages_are_resent_with_dup_on_resume() {
    use rumqttc::{Event as Event4, Outgoing};

    let server = TestServer::start();
    let topic = "resend/v4";
    let mut o = v4::persistent(&server, "forgetful");
    o.set_manual_acks(true);
    let mut s = v4::Client::connect(o).await;
    s.subscribe(topic, q4(1)).await;

    let mut p = v4::Client::connect(v4::options(&server, "pub")).await;
    for i in 0..10 {
        p.client.publish(topic, q4(1), false, seq_payload(i)).await.unwrap();
    }
    p.wait_published(q4(1), 10).await;

    let first = s.recv_n(10).await;
    for m in &first[..3] {
        s.client.ack(m).await.unwrap();
    }
    for _ in 0..3 {
        s.expect("PUBACK sent", |ev| {
            matches!(ev, Event4::Outgoing(Outgoing::PubAck(_))).then_some(())
        })
        .await;
    }
    s.kill().await;
    // Once the server has seen the close, a new message is queued, not sent: it comes with DUP 0.
    let session = server.broker().session("forgetful").expect("persistent session");
    wait_until("the server to see the close", || !session.is_online()).await;
    p.publish(topic, q4(1), false, seq_payload(10)).await;

    let mut s = v4::Client::connect(v4::persistent(&server, "forgetful")).await;
    assert!(s.connack.session_present);
    let got: Vec<(usize, bool)> = s.recv_n(8).await.iter().map(|m| (seq_of(&m.payload), m.dup)).collect();
    let want: Vec<(usize, bool)> = (3..10).map(|i| (i, true)).chain([(10, false)]).collect();
    assert_eq!(got, want, "(sequence, DUP) after resuming");
    s.assert_silent().await;
    drop((s, p));
    server.stop();
}

/// MQTT 5 §4.4 with QoS 2 and Receive Maximum 5: completed flows are not resent; the window's
/// unacknowledged PUBLISHes are, with DUP 1, then the queued messages follow, all in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_unacknowledged_qos2_messages_are_resent_with_dup_on_resume() {
    let server = TestServer::start();
    let topic = "resend/v5";
    let mut o = v5::persistent(&server, "forgetful5", 60);
    o.set_manual_acks(true);
    o.set_receive_maximum(Some(5));
    let mut s = v5::Client::connect(o).await;
    s.subscribe(topic, q5(2)).await;

    let mut p = v5::Client::connect(v5::options(&server, "pub")).await;
    for i in 0..10 {
        p.client.publish(topic, q5(2), false, seq_payload(i)).await.unwrap();
    }
    p.wait_published(q5(2), 10).await;

    // The window is 5; completing two flows (PUBREC, then PUBCOMP for the server's PUBREL)
    // makes room for two more.
    let window = s.recv_n(5).await;
    assert_eq!(
        window.iter().map(|m| seq_of(&m.payload)).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    for m in &window[..2] {
        s.client.ack(m).await.unwrap();
    }
    let more = s.recv_n(2).await;
    assert_eq!(more.iter().map(|m| seq_of(&m.payload)).collect::<Vec<_>>(), vec![5, 6]);
    s.kill().await;

    let mut s = v5::Client::connect(v5::persistent(&server, "forgetful5", 60)).await;
    assert!(s.connack.session_present);
    let got: Vec<(usize, bool, u8)> = s
        .recv_n(8)
        .await
        .iter()
        .map(|m| (seq_of(&m.payload), m.dup, m.qos as u8))
        .collect();
    let want: Vec<(usize, bool, u8)> = (2..7)
        .map(|i| (i, true, 2))
        .chain((7..10).map(|i| (i, false, 2)))
        .collect();
    assert_eq!(got, want, "(sequence, DUP, QoS) after resuming");
    s.assert_silent().await;
    drop((s, p));
    server.stop();
}

/// MQTT 5 §3.1.2.11.2: without a Session Expiry Interval (0) the session ends with the
/// connection, even with clean start 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_session_without_expiry_ends_with_the_connection() {
    let server = TestServer::start();
    let mut o = v5::options(&server, "brief");
    o.set_clean_start(false);
    let mut s = v5::Client::connect(o.clone()).await;
    s.subscribe("brief/t", q5(1)).await;
    s.disconnect().await;
    assert!(
        server.broker().session("brief").is_none(),
        "session expiry 0: the session must end"
    );
    let s = v5::Client::connect(o).await;
    assert!(!s.connack.session_present);
    drop(s);
    server.stop();
}
