//! QoS 0/1/2 delivery: the granted QoS, per-publisher ordering, exactly-once for QoS 2, across
//! MQTT 3.1.1 and 5 clients on the same topics.

use std::collections::HashMap;

use crate::common::TestServer;
use crate::util::{assert_in_order, q4, q5, seq_of, seq_payload, v4, v5};

/// A payload `tag:i`, so that messages of several publishers can be told apart.
fn tagged(tag: &str, i: usize) -> Vec<u8> {
    format!("{tag}:{i}").into_bytes()
}

fn untag(payload: &[u8]) -> (String, usize) {
    let s = std::str::from_utf8(payload).expect("UTF-8 payload");
    let (tag, i) = s.split_once(':').expect("tagged payload");
    (tag.to_string(), i.parse().expect("sequence number"))
}

/// MQTT 5 §3.8.4 / 3.1.1 §3.8.4: a message is delivered with min(publish QoS, granted QoS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_qos_is_the_minimum_of_publish_and_subscription() {
    let server = TestServer::start();
    let topic = "qos/matrix";
    let mut subs4 = Vec::new();
    let mut subs5 = Vec::new();
    for s in 0..3u8 {
        let mut c = v4::Client::connect(v4::options(&server, &format!("sub4-{s}"))).await;
        assert_eq!(c.subscribe(topic, q4(s)).await, q4(s));
        subs4.push((s, c));
        let mut c = v5::Client::connect(v5::options(&server, &format!("sub5-{s}"))).await;
        assert_eq!(c.subscribe(topic, q5(s)).await, q5(s));
        subs5.push((s, c));
    }
    let mut pub4 = v4::Client::connect(v4::options(&server, "pub4")).await;
    let mut pub5 = v5::Client::connect(v5::options(&server, "pub5")).await;
    for p in 0..3u8 {
        pub4.publish(topic, q4(p), false, format!("v4-{p}")).await;
        pub5.publish(topic, q5(p), false, format!("v5-{p}")).await;
    }

    for (s, c) in &mut subs4 {
        let got: HashMap<String, u8> = c
            .recv_n(6)
            .await
            .into_iter()
            .map(|m| (String::from_utf8(m.payload.to_vec()).unwrap(), m.qos as u8))
            .collect();
        assert_eq!(got.len(), 6, "3.1.1 subscriber at QoS {s}: duplicates in {got:?}");
        for p in 0..3u8 {
            for from in ["v4", "v5"] {
                assert_eq!(
                    got.get(&format!("{from}-{p}")),
                    Some(&p.min(*s)),
                    "3.1.1 subscriber at QoS {s}, {from} publish at QoS {p}: {got:?}"
                );
            }
        }
    }
    for (s, c) in &mut subs5 {
        let got: HashMap<String, u8> = c
            .recv_n(6)
            .await
            .into_iter()
            .map(|m| (String::from_utf8(m.payload.to_vec()).unwrap(), m.qos as u8))
            .collect();
        assert_eq!(got.len(), 6, "MQTT 5 subscriber at QoS {s}: duplicates in {got:?}");
        for p in 0..3u8 {
            for from in ["v4", "v5"] {
                assert_eq!(
                    got.get(&format!("{from}-{p}")),
                    Some(&p.min(*s)),
                    "MQTT 5 subscriber at QoS {s}, {from} publish at QoS {p}: {got:?}"
                );
            }
        }
    }
    drop((subs4, subs5, pub4, pub5));
    server.stop();
}

/// 1000 QoS 1 messages from one 3.1.1 publisher arrive at a 3.1.1 and an MQTT 5 subscriber
/// complete, once each and in order (MQTT 5 §4.6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_order_is_kept_for_1000_messages_from_a_v4_publisher() {
    let server = TestServer::start();
    let topic = "order/v4";
    let mut s4 = v4::Client::connect(v4::options(&server, "s4")).await;
    s4.subscribe(topic, q4(1)).await;
    let mut s5 = v5::Client::connect(v5::options(&server, "s5")).await;
    s5.subscribe(topic, q5(1)).await;
    let mut p = v4::Client::connect(v4::options(&server, "p")).await;

    const N: usize = 1000;
    for i in 0..N {
        p.client.publish(topic, q4(1), false, seq_payload(i)).await.unwrap();
    }
    p.wait_published(q4(1), N).await;

    let got4 = s4.recv_n(N).await;
    assert!(got4.iter().all(|m| m.qos == q4(1) && !m.dup));
    assert_in_order(
        "3.1.1 subscriber",
        &got4.iter().map(|m| seq_of(&m.payload)).collect::<Vec<_>>(),
        N,
    );
    let got5 = s5.recv_n(N).await;
    assert!(got5.iter().all(|m| m.qos == q5(1) && !m.dup));
    assert_in_order(
        "MQTT 5 subscriber",
        &got5.iter().map(|m| seq_of(&m.payload)).collect::<Vec<_>>(),
        N,
    );
    s4.assert_silent().await;
    drop((s4, s5, p));
    server.stop();
}

/// The same from an MQTT 5 publisher, to QoS 2 subscriptions: the messages arrive at QoS 1
/// (the publish QoS), complete and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_order_is_kept_for_1000_messages_from_a_v5_publisher() {
    let server = TestServer::start();
    let topic = "order/v5";
    let mut s4 = v4::Client::connect(v4::options(&server, "s4")).await;
    s4.subscribe(topic, q4(2)).await;
    let mut s5 = v5::Client::connect(v5::options(&server, "s5")).await;
    s5.subscribe(topic, q5(2)).await;
    let mut p = v5::Client::connect(v5::options(&server, "p")).await;

    const N: usize = 1000;
    for i in 0..N {
        p.client.publish(topic, q5(1), false, seq_payload(i)).await.unwrap();
    }
    p.wait_published(q5(1), N).await;

    let got4 = s4.recv_n(N).await;
    assert!(got4.iter().all(|m| m.qos == q4(1)));
    assert_in_order(
        "3.1.1 subscriber",
        &got4.iter().map(|m| seq_of(&m.payload)).collect::<Vec<_>>(),
        N,
    );
    let got5 = s5.recv_n(N).await;
    assert!(got5.iter().all(|m| m.qos == q5(1)));
    assert_in_order(
        "MQTT 5 subscriber",
        &got5.iter().map(|m| seq_of(&m.payload)).collect::<Vec<_>>(),
        N,
    );
    s5.assert_silent().await;
    drop((s4, s5, p));
    server.stop();
}

/// QoS 2 from two publishers (3.1.1 and 5) interleaved: each subscriber gets every message
/// exactly once, at QoS 2, in each publisher's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_is_delivered_exactly_once() {
    let server = TestServer::start();
    let topic = "exactly/once";
    let mut s4 = v4::Client::connect(v4::options(&server, "s4")).await;
    assert_eq!(s4.subscribe(topic, q4(2)).await, q4(2));
    let mut s5 = v5::Client::connect(v5::options(&server, "s5")).await;
    assert_eq!(s5.subscribe(topic, q5(2)).await, q5(2));
    let mut p4 = v4::Client::connect(v4::options(&server, "p4")).await;
    let mut p5 = v5::Client::connect(v5::options(&server, "p5")).await;

    const N: usize = 100;
    for i in 0..N {
        p4.client.publish(topic, q4(2), false, tagged("a", i)).await.unwrap();
        p5.client.publish(topic, q5(2), false, tagged("b", i)).await.unwrap();
    }
    p4.wait_published(q4(2), N).await;
    p5.wait_published(q5(2), N).await;

    let check = |who: &str, got: Vec<(String, usize)>| {
        for tag in ["a", "b"] {
            let seqs: Vec<usize> = got.iter().filter(|(t, _)| t == tag).map(|(_, i)| *i).collect();
            assert_in_order(&format!("{who}, publisher {tag}"), &seqs, N);
        }
    };
    let got = s4.recv_n(2 * N).await;
    assert!(got.iter().all(|m| m.qos == q4(2)), "3.1.1 subscriber: QoS other than 2");
    check("3.1.1 subscriber", got.iter().map(|m| untag(&m.payload)).collect());
    let got = s5.recv_n(2 * N).await;
    assert!(
        got.iter().all(|m| m.qos == q5(2)),
        "MQTT 5 subscriber: QoS other than 2"
    );
    check("MQTT 5 subscriber", got.iter().map(|m| untag(&m.payload)).collect());
    // Nothing is delivered a second time.
    s4.assert_silent().await;
    s5.assert_silent().await;
    drop((s4, s5, p4, p5));
    server.stop();
}
