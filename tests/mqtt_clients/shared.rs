//! Shared subscriptions (`$share/{group}/{filter}`, MQTT 5 §4.8.2): each message to one member
//! of the group, and messages queued for a member that leaves go to another.

use std::collections::BTreeSet;

use crate::common::TestServer;
use crate::util::{q4, q5, seq_of, seq_payload, v4, v5};

/// Two members (MQTT 5 and 3.1.1) of one group: each of 100 messages goes to exactly one of
/// them, both get a fair part, each in publish order; a plain subscriber still gets all 100.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_goes_to_exactly_one_member() {
    let server = TestServer::start();
    let mut m1 = v5::Client::connect(v5::options(&server, "m1")).await;
    assert_eq!(m1.subscribe("$share/g/sh/t", q5(1)).await, q5(1));
    let mut m2 = v4::Client::connect(v4::options(&server, "m2")).await;
    assert_eq!(m2.subscribe("$share/g/sh/t", q4(1)).await, q4(1));
    let mut plain = v4::Client::connect(v4::options(&server, "plain")).await;
    plain.subscribe("sh/t", q4(1)).await;

    const N: usize = 100;
    let mut p = v4::Client::connect(v4::options(&server, "p")).await;
    for i in 0..N {
        p.client.publish("sh/t", q4(1), false, seq_payload(i)).await.unwrap();
    }
    p.wait_published(q4(1), N).await;

    let all: Vec<usize> = plain.recv_n(N).await.iter().map(|m| seq_of(&m.payload)).collect();
    assert_eq!(all, (0..N).collect::<Vec<_>>(), "the non-shared subscriber");

    let (mut a, mut b) = (Vec::new(), Vec::new());
    while a.len() + b.len() < N {
        tokio::select! {
            m = m1.recv() => a.push(seq_of(&m.payload)),
            m = m2.recv() => b.push(seq_of(&m.payload)),
        }
    }
    m1.assert_silent().await;
    m2.assert_silent().await;
    let sa: BTreeSet<usize> = a.iter().copied().collect();
    let sb: BTreeSet<usize> = b.iter().copied().collect();
    assert_eq!(sa.len(), a.len(), "member 1 got duplicates: {a:?}");
    assert_eq!(sb.len(), b.len(), "member 2 got duplicates: {b:?}");
    assert!(
        sa.is_disjoint(&sb),
        "a message went to both members: {:?}",
        sa.intersection(&sb)
    );
    assert_eq!(sa.union(&sb).copied().collect::<Vec<_>>(), (0..N).collect::<Vec<_>>());
    assert!(
        a.len() >= N / 5 && b.len() >= N / 5,
        "unfair split: {} / {}",
        a.len(),
        b.len()
    );
    assert!(a.windows(2).all(|w| w[0] < w[1]), "member 1 out of order: {a:?}");
    assert!(b.windows(2).all(|w| w[0] < w[1]), "member 2 out of order: {b:?}");
    drop((m1, m2, plain, p));
    server.stop();
}

/// A member with Receive Maximum 1 that never acknowledges has its share queued; when it goes
/// away (its session ends with the connection) those messages, and the one it left
/// unacknowledged, go to the other member: that one ends up with all 100, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_for_a_leaving_member_go_to_another() {
    let server = TestServer::start();
    let mut o = v5::options(&server, "stuck");
    o.set_receive_maximum(Some(1));
    o.set_manual_acks(true);
    let mut stuck = v5::Client::connect(o).await;
    stuck.subscribe("$share/h/ho/t", q5(1)).await;
    let mut other = v5::Client::connect(v5::options(&server, "other")).await;
    other.subscribe("$share/h/ho/t", q5(1)).await;

    const N: usize = 100;
    let mut p = v5::Client::connect(v5::options(&server, "p")).await;
    for i in 0..N {
        p.client.publish("ho/t", q5(1), false, seq_payload(i)).await.unwrap();
    }
    p.wait_published(q5(1), N).await;

    // Receive Maximum 1: exactly one message until it is acknowledged.
    let first = stuck.recv().await;
    stuck.assert_silent().await;
    stuck.kill().await;

    let got: Vec<usize> = other.recv_n(N).await.iter().map(|m| seq_of(&m.payload)).collect();
    let set: BTreeSet<usize> = got.iter().copied().collect();
    assert_eq!(set.len(), N, "duplicates: {got:?}");
    assert_eq!(set, (0..N).collect(), "missing messages");
    assert!(set.contains(&seq_of(&first.payload)));
    other.assert_silent().await;
    drop((other, p));
    server.stop();
}

/// MQTT 5 §4.8.2: retained messages are not sent to a shared subscription when it is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_gets_no_retained_messages() {
    let server = TestServer::start();
    let mut p = v5::Client::connect(v5::options(&server, "p")).await;
    p.publish("sr/t", q5(1), true, "retained").await;
    let mut m = v5::Client::connect(v5::options(&server, "m")).await;
    m.subscribe("$share/g/sr/t", q5(1)).await;
    p.publish("sr/t", q5(1), false, "live").await;
    let got = m.recv().await;
    assert_eq!(
        (&got.payload[..], got.retain),
        (&b"live"[..], false),
        "a retained message went to a share"
    );
    drop((p, m));
    server.stop();
}

/// MQTT 5 §3.8.3.1 [MQTT-3.8.3-4]: No Local on a shared subscription is a Protocol Error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    use rumqttc::v5::mqttbytes::v5::{DisconnectReasonCode, Filter};
    use rumqttc::v5::{ConnectionError, StateError};

    let server = TestServer::start();
    let mut m = v5::Client::connect(v5::options(&server, "m")).await;
    let f = Filter {
        nolocal: true,
        ..Filter::new("$share/g/nl/t", q5(1))
    };
    m.client.subscribe_many([f]).await.unwrap();
    match m.closed().await {
        Some(ConnectionError::MqttState(StateError::ServerDisconnect { reason_code, .. })) => {
            assert_eq!(reason_code, DisconnectReasonCode::ProtocolError)
        }
        other => panic!("expected DISCONNECT 0x82, got {other:?}"),
    }
    server.stop();
}
