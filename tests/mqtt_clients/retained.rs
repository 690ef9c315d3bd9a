//! Retained messages: set, replace, clear; delivery on subscribe with the RETAIN flag; MQTT 5
//! retain handling, retain as published and message expiry.

use std::time::Instant;

use rumqttc::v5::mqttbytes::v5::{Filter, PublishProperties, RetainForwardRule, SubscribeReasonCode};
use unigate_pubsub::TopicFilter;

use crate::common::TestServer;
use crate::util::{q4, q5, v4, v5, wait_until};

/// MQTT 3.1.1 §3.3.1.3: a retained message replaces the previous one, an empty one clears it;
/// a new subscription gets the retained message with RETAIN 1 (3.1.1 and 5 subscribers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_is_set_replaced_and_cleared() {
    let server = TestServer::start();
    let topic = "ret/a";
    let mut p = v4::Client::connect(v4::options(&server, "pub")).await;
    p.publish(topic, q4(1), true, "one").await;
    p.publish(topic, q4(1), true, "two").await;

    let mut s4 = v4::Client::connect(v4::options(&server, "s4")).await;
    s4.subscribe(topic, q4(1)).await;
    let m = s4.recv().await;
    assert_eq!((&m.payload[..], m.retain, m.qos), (&b"two"[..], true, q4(1)));
    let mut s5 = v5::Client::connect(v5::options(&server, "s5")).await;
    s5.subscribe(topic, q5(1)).await;
    let m = s5.recv().await;
    assert_eq!((&m.payload[..], m.retain, m.qos), (&b"two"[..], true, q5(1)));

    // Only the latest was kept: the next message is the live one, with RETAIN 0.
    p.publish(topic, q4(1), false, "live").await;
    let m = s4.recv().await;
    assert_eq!((&m.payload[..], m.retain), (&b"live"[..], false));
    let m = s5.recv().await;
    assert_eq!((&m.payload[..], m.retain), (&b"live"[..], false));

    // Clearing: the empty message goes to current subscribers like any other...
    p.publish(topic, q4(1), true, "").await;
    let m = s4.recv().await;
    assert!(m.payload.is_empty(), "{m:?}");
    // ...and a new subscription gets nothing retained.
    let mut late = v4::Client::connect(v4::options(&server, "late")).await;
    late.subscribe(topic, q4(1)).await;
    p.publish(topic, q4(1), false, "marker").await;
    let m = late.recv().await;
    assert_eq!(
        (&m.payload[..], m.retain),
        (&b"marker"[..], false),
        "a cleared message was delivered"
    );
    drop((p, s4, s5, late));
    server.stop();
}

/// Retained messages match wildcard subscriptions, each with RETAIN 1 and min(stored QoS,
/// granted QoS); a topic without a retained message sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_subscription_gets_every_matching_retained_message() {
    let server = TestServer::start();
    let mut p = v5::Client::connect(v5::options(&server, "pub")).await;
    p.publish("rw/1", q5(2), true, "stored-at-2").await;
    p.publish("rw/2", q5(0), true, "stored-at-0").await;
    p.publish("rw/3", q5(1), false, "not-retained").await;
    p.publish("other/1", q5(1), true, "not-matching").await;

    let mut s = v4::Client::connect(v4::options(&server, "s")).await;
    s.subscribe("rw/#", q4(1)).await;
    let mut got: Vec<(String, Vec<u8>, u8, bool)> = s
        .recv_n(2)
        .await
        .into_iter()
        .map(|m| (m.topic, m.payload.to_vec(), m.qos as u8, m.retain))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("rw/1".into(), b"stored-at-2".to_vec(), 1, true),
            ("rw/2".into(), b"stored-at-0".to_vec(), 0, true),
        ]
    );
    p.publish("rw/marker", q5(1), false, "marker").await;
    let m = s.recv().await;
    assert_eq!(m.topic, "rw/marker", "only two retained messages match");
    drop((p, s));
    server.stop();
}

/// MQTT 5 §3.8.3.1 Retain Handling: 0 sends retained messages on every SUBSCRIBE, 1 only when
/// the subscription is new, 2 never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_retain_handling_0_1_2() {
    let server = TestServer::start();
    let topic = "rh/t";
    let mut p = v5::Client::connect(v5::options(&server, "pub")).await;
    p.publish(topic, q5(1), true, "kept").await;

    let filter = |rule| Filter {
        retain_forward_rule: rule,
        ..Filter::new(topic, q5(1))
    };
    let ok = vec![SubscribeReasonCode::Success(q5(1))];

    // 0: on every subscribe.
    let mut every = v5::Client::connect(v5::options(&server, "every")).await;
    for round in 0..2 {
        assert_eq!(
            every
                .subscribe_with(filter(RetainForwardRule::OnEverySubscribe), None)
                .await,
            ok
        );
        let m = every.recv().await;
        assert_eq!(
            (&m.payload[..], m.retain),
            (&b"kept"[..], true),
            "retain handling 0, round {round}"
        );
    }

    // 1: only when new.
    let mut new_only = v5::Client::connect(v5::options(&server, "new-only")).await;
    assert_eq!(
        new_only
            .subscribe_with(filter(RetainForwardRule::OnNewSubscribe), None)
            .await,
        ok
    );
    let m = new_only.recv().await;
    assert_eq!(
        (&m.payload[..], m.retain),
        (&b"kept"[..], true),
        "retain handling 1, new subscription"
    );
    assert_eq!(
        new_only
            .subscribe_with(filter(RetainForwardRule::OnNewSubscribe), None)
            .await,
        ok
    );

    // 2: never.
    let mut never = v5::Client::connect(v5::options(&server, "never")).await;
    assert_eq!(never.subscribe_with(filter(RetainForwardRule::Never), None).await, ok);

    // The next message for both is the live marker: nothing retained came before it.
    p.publish(topic, q5(1), false, "marker").await;
    let m = new_only.recv().await;
    assert_eq!(
        (&m.payload[..], m.retain),
        (&b"marker"[..], false),
        "retain handling 1 re-sent on resubscribe"
    );
    let m = never.recv().await;
    assert_eq!(
        (&m.payload[..], m.retain),
        (&b"marker"[..], false),
        "retain handling 2 sent a retained message"
    );
    let m = every.recv().await;
    assert_eq!(&m.payload[..], b"marker");
    drop((p, every, new_only, never));
    server.stop();
}

/// MQTT 5 §3.8.3.1 Retain As Published: with it the RETAIN flag of a live message is kept,
/// without it (and always for 3.1.1, §3.3.1.3) it is cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_retain_as_published() {
    let server = TestServer::start();
    let topic = "rap/t";
    let mut keep = v5::Client::connect(v5::options(&server, "keep")).await;
    let f = Filter {
        preserve_retain: true,
        ..Filter::new(topic, q5(1))
    };
    assert_eq!(
        keep.subscribe_with(f, None).await,
        vec![SubscribeReasonCode::Success(q5(1))]
    );
    let mut clear = v5::Client::connect(v5::options(&server, "clear")).await;
    clear.subscribe(topic, q5(1)).await;
    let mut old = v4::Client::connect(v4::options(&server, "old")).await;
    old.subscribe(topic, q4(1)).await;

    let mut p = v5::Client::connect(v5::options(&server, "pub")).await;
    p.publish(topic, q5(1), true, "flagged").await;
    p.publish(topic, q5(1), false, "plain").await;

    let got: Vec<(Vec<u8>, bool)> = keep
        .recv_n(2)
        .await
        .into_iter()
        .map(|m| (m.payload.to_vec(), m.retain))
        .collect();
    assert_eq!(
        got,
        vec![(b"flagged".to_vec(), true), (b"plain".to_vec(), false)],
        "retain as published"
    );
    let got: Vec<(Vec<u8>, bool)> = clear
        .recv_n(2)
        .await
        .into_iter()
        .map(|m| (m.payload.to_vec(), m.retain))
        .collect();
    assert_eq!(
        got,
        vec![(b"flagged".to_vec(), false), (b"plain".to_vec(), false)],
        "without retain as published"
    );
    let got: Vec<(Vec<u8>, bool)> = old
        .recv_n(2)
        .await
        .into_iter()
        .map(|m| (m.payload.to_vec(), m.retain))
        .collect();
    assert_eq!(
        got,
        vec![(b"flagged".to_vec(), false), (b"plain".to_vec(), false)],
        "3.1.1 subscriber"
    );
    drop((keep, clear, old, p));
    server.stop();
}

/// MQTT 5 §3.3.2.3.3: a retained message with a Message Expiry Interval is delivered (with
/// the remaining interval) until it expires, and not after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_retained_message_expires() {
    let server = TestServer::start();
    let topic = "rx/t";
    let mut p = v5::Client::connect(v5::options(&server, "pub")).await;
    let props = PublishProperties {
        message_expiry_interval: Some(1),
        ..Default::default()
    };
    let published = Instant::now();
    p.publish_with(topic, q5(1), true, "short-lived", props).await;

    let mut early = v5::Client::connect(v5::options(&server, "early")).await;
    early.subscribe(topic, q5(1)).await;
    let m = early.recv().await;
    assert_eq!((&m.payload[..], m.retain), (&b"short-lived"[..], true));
    assert_eq!(
        v5::props(&m).message_expiry_interval,
        Some(1),
        "remaining interval, rounded up"
    );

    let filter = TopicFilter::new(topic).unwrap();
    wait_until("the retained message to expire", || {
        server.broker().retained_matching(&filter).is_empty()
    })
    .await;
    assert!(
        published.elapsed().as_millis() >= 900,
        "expired after {:?}",
        published.elapsed()
    );

    let mut late = v5::Client::connect(v5::options(&server, "late")).await;
    late.subscribe(topic, q5(1)).await;
    p.publish(topic, q5(1), false, "marker").await;
    let m = late.recv().await;
    assert_eq!(
        (&m.payload[..], m.retain),
        (&b"marker"[..], false),
        "an expired retained message was delivered"
    );
    drop((p, early, late));
    server.stop();
}
