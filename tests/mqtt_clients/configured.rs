//! What the `[mqtt]` configuration turns off or limits, as clients see it: CONNACK
//! properties (MQTT 5 §3.2.2.3) and the refusals that go with them, the session expiry cap,
//! server keep alive, and the offline queue (its limit, drop policy and QoS 0 queueing).

use rumqttc::v5::mqttbytes::v5::{DisconnectReasonCode, Filter, SubscribeProperties, SubscribeReasonCode};
use rumqttc::v5::{ConnectionError, StateError};

use crate::common::TestServer;
use crate::util::{q4, q5, seq_of, seq_payload, v4, v5, wait_until};

fn server_disconnect(e: Option<ConnectionError>) -> DisconnectReasonCode {
    match e {
        Some(ConnectionError::MqttState(StateError::ServerDisconnect { reason_code, .. })) => reason_code,
        other => panic!("expected a DISCONNECT from the server, the connection ended with {other:?}"),
    }
}

/// Wildcards, shared subscriptions and subscription identifiers turned off: CONNACK says so,
/// SUBSCRIBE is refused with 0xA2 / 0x9E, and a subscription identifier closes the connection
/// with 0xA1 (MQTT 5 §3.8.2.1.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_subscription_features_are_announced_and_refused() {
    let server = TestServer::start_with(
        "[mqtt]\nwildcard_subscriptions = false\nshared_subscriptions = false\nsubscription_identifiers = false",
        "",
    );
    let mut c = v5::Client::connect(v5::options(&server, "c")).await;
    let props = c.connack.properties.clone().expect("CONNACK properties");
    assert_eq!(props.wildcard_subscription_available, Some(0));
    assert_eq!(props.shared_subscription_available, Some(0));
    assert_eq!(props.subscription_identifiers_available, Some(0));

    assert_eq!(
        c.subscribe_with(Filter::new("a/#", q5(1)), None).await,
        vec![SubscribeReasonCode::WildcardSubscriptionsNotSupported]
    );
    assert_eq!(
        c.subscribe_with(Filter::new("$share/g/a", q5(1)), None).await,
        vec![SubscribeReasonCode::SharedSubscriptionsNotSupported]
    );
    assert_eq!(c.subscribe("a/b", q5(1)).await, q5(1), "a plain filter is still fine");

    let id = SubscribeProperties {
        id: Some(1),
        user_properties: Vec::new(),
    };
    c.client.subscribe_with_properties("a/c", q5(1), id).await.unwrap();
    assert_eq!(
        server_disconnect(c.closed().await),
        DisconnectReasonCode::SubscriptionIdentifiersNotSupported
    );
    server.stop();
}

/// Retain turned off: CONNACK Retain Available 0, and a retained PUBLISH closes the connection
/// with 0x9A (MQTT 5 §3.3.1.3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_unavailable_is_announced_and_enforced() {
    let server = TestServer::start_with("[mqtt]\nretain_available = false", "");
    let mut c = v5::Client::connect(v5::options(&server, "c")).await;
    let props = c.connack.properties.clone().expect("CONNACK properties");
    assert_eq!(props.retain_available, Some(0));
    c.client.publish("r/t", q5(1), true, "keep me").await.unwrap();
    assert_eq!(
        server_disconnect(c.closed().await),
        DisconnectReasonCode::RetainNotSupported
    );
    server.stop();
}

/// `max_session_expiry` caps the interval a client asks for, CONNACK tells the client the
/// interval used (MQTT 5 §3.2.2.3.2), and the session ends after the capped interval.
/// `server_keep_alive` is announced as Server Keep Alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_cap_and_server_keep_alive_are_announced() {
    let server = TestServer::start_with("[mqtt]\nmax_session_expiry = \"1s\"\nserver_keep_alive = 20", "");
    let c = v5::Client::connect(v5::persistent(&server, "capped", 3600)).await;
    let props = c.connack.properties.clone().expect("CONNACK properties");
    assert_eq!(props.session_expiry_interval, Some(1), "the capped interval");
    assert_eq!(props.server_keep_alive, Some(20));
    c.disconnect().await;
    wait_until("the capped session to expire", || {
        server.broker().session("capped").is_none()
    })
    .await;

    // 3.1.1 persistent sessions are capped too.
    v4::Client::connect(v4::persistent(&server, "capped4"))
        .await
        .disconnect()
        .await;
    wait_until("the capped 3.1.1 session to expire", || {
        server.broker().session("capped4").is_none()
    })
    .await;
    let c = v4::Client::connect(v4::persistent(&server, "capped4")).await;
    assert!(!c.connack.session_present);
    drop(c);
    server.stop();
}

async fn queue_while_offline(server: &TestServer, id: &str, n: usize) -> v4::Client {
    let mut s = v4::Client::connect(v4::persistent(server, id)).await;
    s.subscribe("queue/t", q4(1)).await;
    s.disconnect().await;
    let mut p = v4::Client::connect(v4::options(server, "pub")).await;
    for i in 0..n {
        p.client.publish("queue/t", q4(1), false, seq_payload(i)).await.unwrap();
    }
    p.wait_published(q4(1), n).await;
    p
}

/// `max_queued_messages` bounds the offline queue; by default the oldest messages go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_offline_queue_drops_the_oldest_by_default() {
    let server = TestServer::start_with("", "max_queued_messages = 5");
    let p = queue_while_offline(&server, "q", 12).await;
    let mut s = v4::Client::connect(v4::persistent(&server, "q")).await;
    let got: Vec<usize> = s.recv_n(5).await.iter().map(|m| seq_of(&m.payload)).collect();
    assert_eq!(got, vec![7, 8, 9, 10, 11]);
    s.assert_silent().await;
    drop((s, p));
    server.stop();
}

/// With `queue_drop = "newest"` the queue keeps the first messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_offline_queue_drops_the_newest_when_configured() {
    let server = TestServer::start_with("[mqtt]\nqueue_drop = \"newest\"", "max_queued_messages = 5");
    let p = queue_while_offline(&server, "q", 12).await;
    let mut s = v4::Client::connect(v4::persistent(&server, "q")).await;
    let got: Vec<usize> = s.recv_n(5).await.iter().map(|m| seq_of(&m.payload)).collect();
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    s.assert_silent().await;
    drop((s, p));
    server.stop();
}

/// With `queue_qos0_offline = true` QoS 0 messages are queued for an offline session too, in
/// order with the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos0_is_queued_offline_when_configured() {
    let server = TestServer::start_with("[mqtt]\nqueue_qos0_offline = true", "");
    let mut s = v5::Client::connect(v5::persistent(&server, "q0", 60)).await;
    s.subscribe("q0/t", q5(2)).await;
    s.disconnect().await;
    let mut p = v4::Client::connect(v4::options(&server, "pub")).await;
    for i in 0..6 {
        p.publish("q0/t", q4((i % 3) as u8), false, seq_payload(i)).await;
    }
    let mut s = v5::Client::connect(v5::persistent(&server, "q0", 60)).await;
    let got: Vec<(usize, u8)> = s
        .recv_n(6)
        .await
        .iter()
        .map(|m| (seq_of(&m.payload), m.qos as u8))
        .collect();
    assert_eq!(got, vec![(0, 0), (1, 1), (2, 2), (3, 0), (4, 1), (5, 2)]);
    drop((s, p));
    server.stop();
}

/// MQTT 5 §3.2.2.3.4: with Maximum QoS 1 a CONNECT whose will has QoS 2 is refused with 0x9B,
/// and a QoS 2 PUBLISH closes the connection with 0x9B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximum_qos_1_refuses_qos2_wills_and_publishes() {
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, LastWill};

    let server = TestServer::start_with("[mqtt]\nmax_qos = 1", "");
    let mut o = v5::options(&server, "w");
    o.set_last_will(LastWill::new("mq/will", "w", q5(2), false, None));
    match v5::Client::try_connect(o).await {
        Err(ConnectionError::ConnectionRefused(code)) => assert_eq!(code, ConnectReturnCode::QoSNotSupported),
        Err(e) => panic!("expected CONNACK 0x9B, got {e:?}"),
        Ok(_) => panic!("a QoS 2 will was accepted with Maximum QoS 1"),
    }

    let mut c = v5::Client::connect(v5::options(&server, "c")).await;
    c.client.publish("mq/t", q5(2), false, "too high").await.unwrap();
    assert_eq!(
        server_disconnect(c.closed().await),
        DisconnectReasonCode::QoSNotSupported
    );
    server.stop();
}
