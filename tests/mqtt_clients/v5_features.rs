//! MQTT 5 features through a real client: subscription identifiers, no local, properties
//! passed through, message expiry on forward, assigned client identifiers, CONNACK properties,
//! maximum QoS and topic aliases from the client.

use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Filter, PublishProperties, SubscribeProperties, SubscribeReasonCode};
use unigate::config::{Limits, MqttConfig};

use crate::common::TestServer;
use crate::util::{q4, q5, v4, v5};

/// MQTT 5 §3.3.4: a PUBLISH carries the identifiers of every matching subscription of the
/// client (one copy for overlapping subscriptions), and none for a subscription without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_identifiers_arrive_in_publish() {
    let server = TestServer::start();
    let mut s = v5::Client::connect(v5::options(&server, "s")).await;
    let with_id = |id| SubscribeProperties {
        id: Some(id),
        user_properties: Vec::new(),
    };
    let ok = vec![SubscribeReasonCode::Success(q5(1))];
    assert_eq!(
        s.subscribe_with(Filter::new("sid/+", q5(1)), Some(with_id(7))).await,
        ok
    );
    assert_eq!(
        s.subscribe_with(Filter::new("sid/a", q5(1)), Some(with_id(300))).await,
        ok
    );
    assert_eq!(s.subscribe_with(Filter::new("nosid/#", q5(1)), None).await, ok);

    let mut p = v4::Client::connect(v4::options(&server, "p")).await;
    p.publish("sid/a", q4(1), false, "both").await;
    p.publish("sid/b", q4(1), false, "one").await;
    p.publish("nosid/x", q4(1), false, "none").await;

    let got = s.recv_n(3).await;
    let summary: Vec<(&str, Vec<usize>)> = got
        .iter()
        .map(|m| {
            let mut ids = v5::props(m).subscription_identifiers;
            ids.sort_unstable();
            (v5::topic(m), ids)
        })
        .collect();
    assert_eq!(
        summary,
        vec![("sid/a", vec![7, 300]), ("sid/b", vec![7]), ("nosid/x", vec![])]
    );
    drop((s, p));
    server.stop();
}

/// MQTT 5 §3.8.3.1: with No Local a client does not get its own messages on that subscription;
/// others still do, and so does the client on a subscription without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_local_skips_own_messages() {
    let server = TestServer::start();
    let mut me = v5::Client::connect(v5::options(&server, "me")).await;
    let f = Filter {
        nolocal: true,
        ..Filter::new("nl/t", q5(1))
    };
    assert_eq!(
        me.subscribe_with(f, None).await,
        vec![SubscribeReasonCode::Success(q5(1))]
    );
    me.subscribe("nl/echo", q5(1)).await;
    let mut other = v5::Client::connect(v5::options(&server, "other")).await;
    other.subscribe("nl/t", q5(1)).await;

    me.publish("nl/t", q5(1), false, "mine").await;
    let m = other.recv().await;
    assert_eq!(&m.payload[..], b"mine");
    other.publish("nl/t", q5(1), false, "theirs").await;
    me.publish("nl/echo", q5(1), false, "echo").await;
    let got: Vec<Vec<u8>> = me.recv_n(2).await.into_iter().map(|m| m.payload.to_vec()).collect();
    assert_eq!(
        got,
        vec![b"theirs".to_vec(), b"echo".to_vec()],
        "own message delivered despite no local"
    );
    drop((me, other));
    server.stop();
}

/// MQTT 5 §3.3.2.3: user properties (order and duplicates kept), content type and payload
/// format indicator reach an MQTT 5 subscriber unchanged; a 3.1.1 subscriber gets the payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_properties_are_passed_through() {
    let server = TestServer::start();
    let topic = "props/t";
    let mut s5 = v5::Client::connect(v5::options(&server, "s5")).await;
    s5.subscribe(topic, q5(2)).await;
    let mut s4 = v4::Client::connect(v4::options(&server, "s4")).await;
    s4.subscribe(topic, q4(2)).await;

    let user: Vec<(String, String)> = [("b", "2"), ("a", "1"), ("a", "1"), ("a", "3"), ("", "empty key")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let props = PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json; charset=utf-8".into()),
        user_properties: user.clone(),
        ..Default::default()
    };
    let payload = r#"{"temp":21.5}"#;
    let mut p = v5::Client::connect(v5::options(&server, "p")).await;
    p.publish_with(topic, q5(2), false, payload, props).await;

    let m = s5.recv().await;
    assert_eq!(&m.payload[..], payload.as_bytes());
    let got = v5::props(&m);
    assert_eq!(got.user_properties, user, "user properties changed");
    assert_eq!(got.content_type.as_deref(), Some("application/json; charset=utf-8"));
    assert_eq!(got.payload_format_indicator, Some(1));
    assert_eq!(got.message_expiry_interval, None);
    let m = s4.recv().await;
    assert_eq!((&m.payload[..], m.qos), (payload.as_bytes(), q4(2)));
    drop((s5, s4, p));
    server.stop();
}

/// MQTT 5 §4.10: request/response with Response Topic and Correlation Data, both passed
/// through unchanged in each direction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_response_with_correlation_data() {
    let server = TestServer::start();
    let mut requester = v5::Client::connect(v5::options(&server, "requester")).await;
    requester.subscribe("rr/reply/requester", q5(1)).await;
    let mut responder = v5::Client::connect(v5::options(&server, "responder")).await;
    responder.subscribe("rr/request", q5(1)).await;

    let corr = Bytes::from_static(b"\x00\x01corr\xff");
    let props = PublishProperties {
        response_topic: Some("rr/reply/requester".into()),
        correlation_data: Some(corr.clone()),
        ..Default::default()
    };
    requester.publish_with("rr/request", q5(1), false, "ping", props).await;

    let req = responder.recv().await;
    assert_eq!(&req.payload[..], b"ping");
    let rp = v5::props(&req);
    assert_eq!(rp.response_topic.as_deref(), Some("rr/reply/requester"));
    assert_eq!(rp.correlation_data.as_ref(), Some(&corr));
    let reply = PublishProperties {
        correlation_data: rp.correlation_data.clone(),
        ..Default::default()
    };
    responder
        .publish_with(rp.response_topic.as_deref().unwrap(), q5(1), false, "pong", reply)
        .await;

    let resp = requester.recv().await;
    assert_eq!(
        (v5::topic(&resp), &resp.payload[..]),
        ("rr/reply/requester", &b"pong"[..])
    );
    assert_eq!(v5::props(&resp).correlation_data, Some(corr));
    drop((requester, responder));
    server.stop();
}

/// MQTT 5 §3.3.2.3.3: the Message Expiry Interval forwarded is the received one minus the time
/// the message waited; a message that expired while queued is not delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_expiry_is_decremented_and_enforced_while_queued() {
    let server = TestServer::start();
    let topic = "mx/t";
    let mut s = v5::Client::connect(v5::persistent(&server, "mx", 60)).await;
    s.subscribe(topic, q5(1)).await;
    s.disconnect().await;

    let mut p = v5::Client::connect(v5::options(&server, "p")).await;
    let expiring = |secs| PublishProperties {
        message_expiry_interval: Some(secs),
        ..Default::default()
    };
    p.publish_with(topic, q5(1), false, "expires-in-1", expiring(1)).await;
    p.publish_with(topic, q5(1), false, "expires-in-10", expiring(10)).await;
    p.publish(topic, q5(1), false, "never-expires").await;
    // Time has to pass for the interval to go down: this wait is the point of the test.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let mut s = v5::Client::connect(v5::persistent(&server, "mx", 60)).await;
    assert!(s.connack.session_present);
    let m = s.recv().await;
    assert_eq!(&m.payload[..], b"expires-in-10", "the expired message was delivered");
    let left = v5::props(&m)
        .message_expiry_interval
        .expect("expiry interval forwarded");
    assert!(
        (1..10).contains(&left),
        "forwarded expiry interval {left}, expected less than 10"
    );
    let m = s.recv().await;
    assert_eq!(&m.payload[..], b"never-expires");
    assert_eq!(v5::props(&m).message_expiry_interval, None);

    // Online, the interval is forwarded (nearly) whole.
    p.publish_with(topic, q5(1), false, "live", expiring(10)).await;
    let m = s.recv().await;
    let left = v5::props(&m)
        .message_expiry_interval
        .expect("expiry interval forwarded");
    assert!((9..=10).contains(&left), "live message forwarded with expiry {left}");
    drop((s, p));
    server.stop();
}

/// MQTT 5 §3.2.2.3.7: an empty client id gets an Assigned Client Identifier in CONNACK, and
/// that is the session's id. A 3.1.1 client with an empty id and clean session is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_client_id_is_assigned_one() {
    let server = TestServer::start();
    let c = v5::Client::connect(v5::options(&server, "")).await;
    let props = c.connack.properties.clone().expect("CONNACK properties");
    let id = props.assigned_client_identifier.expect("assigned client identifier");
    assert!(!id.is_empty());
    assert!(
        server.broker().session(&id).is_some(),
        "no session under the assigned id {id}"
    );

    let c2 = v5::Client::connect(v5::options(&server, "")).await;
    let id2 = c2
        .connack
        .properties
        .clone()
        .unwrap()
        .assigned_client_identifier
        .unwrap();
    assert_ne!(id, id2, "two clients were assigned the same id");

    let mut c4 = v4::Client::connect(v4::options(&server, "")).await;
    assert!(!c4.connack.session_present);
    assert_eq!(c4.subscribe("anon/t", q4(1)).await, q4(1));
    drop((c, c2, c4));
    server.stop();
}

/// MQTT 5 §3.2.2.3: CONNACK carries Receive Maximum, Maximum Packet Size and Topic Alias
/// Maximum from the configuration; Maximum QoS is absent when QoS 2 is supported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connack_properties_reflect_the_configuration() {
    let server = TestServer::start();
    let c = v5::Client::connect(v5::options(&server, "c")).await;
    assert!(!c.connack.session_present);
    let props = c.connack.properties.clone().expect("CONNACK properties");
    let limits = Limits::default();
    let mqtt = MqttConfig::default();
    assert_eq!(props.receive_max, Some(limits.max_incoming_inflight));
    assert_eq!(props.max_packet_size, Some(limits.max_packet_size));
    assert_eq!(props.topic_alias_max, Some(mqtt.topic_alias_maximum));
    assert_eq!(props.max_qos, None, "QoS 2 is supported: Maximum QoS must be absent");
    assert_eq!(props.session_expiry_interval, None, "no cap configured");
    drop(c);
    server.stop();
}

/// MQTT 5 §3.2.2.3.4: with `max_qos = 1` CONNACK says Maximum QoS 1 and a QoS 2 subscription
/// is granted QoS 1 (3.1.1 too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximum_qos_1_is_announced_and_enforced_on_subscribe() {
    let server = TestServer::start_with("[mqtt]\nmax_qos = 1", "");
    let mut c = v5::Client::connect(v5::options(&server, "c")).await;
    let props = c.connack.properties.clone().expect("CONNACK properties");
    assert_eq!(props.max_qos, Some(1));
    assert_eq!(c.subscribe("mq/t", q5(2)).await, q5(1));
    let mut c4 = v4::Client::connect(v4::options(&server, "c4")).await;
    assert_eq!(c4.subscribe("mq/t", q4(2)).await, q4(1));

    let mut p = v5::Client::connect(v5::options(&server, "p")).await;
    p.publish("mq/t", q5(1), false, "at-1").await;
    let m = c.recv().await;
    assert_eq!((&m.payload[..], m.qos), (&b"at-1"[..], q5(1)));
    let m = c4.recv().await;
    assert_eq!((&m.payload[..], m.qos), (&b"at-1"[..], q4(1)));
    drop((c, c4, p));
    server.stop();
}

/// MQTT 5 §3.3.2.3.4: a client sets a topic alias with its first PUBLISH and then publishes
/// with an empty topic and the alias; subscribers see the full topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_alias_from_the_client_is_resolved() {
    let server = TestServer::start();
    let topic = "alias/long/topic/name";
    let mut s5 = v5::Client::connect(v5::options(&server, "s5")).await;
    s5.subscribe(topic, q5(1)).await;
    let mut s4 = v4::Client::connect(v4::options(&server, "s4")).await;
    s4.subscribe(topic, q4(1)).await;

    let mut p = v5::Client::connect(v5::options(&server, "p")).await;
    let alias = || PublishProperties {
        topic_alias: Some(3),
        ..Default::default()
    };
    p.publish_with(topic, q5(1), false, "sets-alias", alias()).await;
    p.publish_with("", q5(1), false, "uses-alias", alias()).await;
    p.publish_with("", q5(0), false, "uses-alias-qos0", alias()).await;

    let got: Vec<(String, Vec<u8>)> = s5
        .recv_n(3)
        .await
        .iter()
        .map(|m| (v5::topic(m).to_string(), m.payload.to_vec()))
        .collect();
    let want = vec![
        (topic.to_string(), b"sets-alias".to_vec()),
        (topic.to_string(), b"uses-alias".to_vec()),
        (topic.to_string(), b"uses-alias-qos0".to_vec()),
    ];
    assert_eq!(got, want);
    let got: Vec<(String, Vec<u8>)> = s4
        .recv_n(3)
        .await
        .into_iter()
        .map(|m| (m.topic, m.payload.to_vec()))
        .collect();
    assert_eq!(got, want);

    // An alias can be pointed at another topic.
    s5.subscribe("alias/other", q5(1)).await;
    p.publish_with("alias/other", q5(1), false, "re-aliased", alias()).await;
    p.publish_with("", q5(1), false, "uses-new-alias", alias()).await;
    let got: Vec<(String, Vec<u8>)> = s5
        .recv_n(2)
        .await
        .iter()
        .map(|m| (v5::topic(m).to_string(), m.payload.to_vec()))
        .collect();
    let want = vec![
        ("alias/other".to_string(), b"re-aliased".to_vec()),
        ("alias/other".to_string(), b"uses-new-alias".to_vec()),
    ];
    assert_eq!(got, want);
    drop((s5, s4, p));
    server.stop();
}

/// MQTT 5 §3.3.2.3.4: a client that allows topic aliases gets them from the server: the first
/// PUBLISH on a topic carries topic and alias, later ones the alias and an empty topic; once
/// the client's Topic Alias Maximum is used up, full topics without an alias.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_uses_topic_aliases_the_client_allows() {
    let server = TestServer::start();
    let mut o = v5::options(&server, "s");
    o.set_topic_alias_max(Some(1));
    let mut s = v5::Client::connect(o).await;
    s.subscribe("out/#", q5(1)).await;
    let mut p = v4::Client::connect(v4::options(&server, "p")).await;
    for topic in ["out/first", "out/first", "out/second", "out/first", "out/second"] {
        p.publish(topic, q4(1), false, topic).await;
    }
    // rumqttc reports a PUBLISH as it came off the wire (alias not yet resolved).
    let got: Vec<(String, Option<u16>, Vec<u8>)> = s
        .recv_n(5)
        .await
        .iter()
        .map(|m| (v5::topic(m).to_string(), v5::props(m).topic_alias, m.payload.to_vec()))
        .collect();
    let want = vec![
        ("out/first".to_string(), Some(1), b"out/first".to_vec()),
        (String::new(), Some(1), b"out/first".to_vec()),
        ("out/second".to_string(), None, b"out/second".to_vec()),
        (String::new(), Some(1), b"out/first".to_vec()),
        ("out/second".to_string(), None, b"out/second".to_vec()),
    ];
    assert_eq!(got, want);

    // Without a Topic Alias Maximum, no aliases at all.
    let mut plain = v5::Client::connect(v5::options(&server, "plain")).await;
    plain.subscribe("out/#", q5(1)).await;
    p.publish("out/first", q4(1), false, "a").await;
    p.publish("out/first", q4(1), false, "b").await;
    for m in plain.recv_n(2).await {
        assert_eq!((v5::topic(&m), v5::props(&m).topic_alias), ("out/first", None));
    }
    drop((s, p, plain));
    server.stop();
}

/// MQTT 5 §3.1.2.11.4: the server does not send a packet larger than the client's Maximum
/// Packet Size; it drops that message and goes on with the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_client_maximum_packet_size_are_dropped() {
    let server = TestServer::start();
    let mut o = v5::options(&server, "small");
    o.set_max_packet_size(Some(256));
    let mut small = v5::Client::connect(o).await;
    small.subscribe("big/t", q5(1)).await;
    let mut roomy = v5::Client::connect(v5::options(&server, "roomy")).await;
    roomy.subscribe("big/t", q5(1)).await;

    let mut p = v5::Client::connect(v5::options(&server, "p")).await;
    p.publish("big/t", q5(1), false, vec![b'x'; 1000]).await;
    p.publish("big/t", q5(0), false, vec![b'y'; 1000]).await;
    p.publish("big/t", q5(1), false, "fits").await;
    p.publish("big/t", q5(1), false, "fits-too").await;

    let got: Vec<Vec<u8>> = small.recv_n(2).await.into_iter().map(|m| m.payload.to_vec()).collect();
    assert_eq!(got, vec![b"fits".to_vec(), b"fits-too".to_vec()]);
    let sizes: Vec<usize> = roomy.recv_n(4).await.iter().map(|m| m.payload.len()).collect();
    assert_eq!(
        sizes,
        vec![1000, 1000, 4, 8],
        "a client without the limit gets everything"
    );
    drop((small, roomy, p));
    server.stop();
}

/// MQTT 5 §3.11.3: UNSUBACK says Success for an existing subscription and No Subscription
/// Existed (0x11) otherwise; after it nothing more is delivered for that filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_reports_and_stops_delivery() {
    use rumqttc::v5::mqttbytes::v5::{Packet, UnsubAckReason};
    use rumqttc::v5::Event;

    let server = TestServer::start();
    let mut s = v5::Client::connect(v5::options(&server, "s")).await;
    s.subscribe("un/a", q5(1)).await;
    s.subscribe("un/b", q5(1)).await;
    let mut reasons = Vec::new();
    for filter in ["un/a", "un/never"] {
        s.client.unsubscribe(filter).await.unwrap();
        reasons.push(
            s.expect("UNSUBACK", |ev| match ev {
                Event::Incoming(Packet::UnsubAck(u)) => Some(u.reasons.clone()),
                _ => None,
            })
            .await,
        );
    }
    assert_eq!(
        reasons,
        vec![
            vec![UnsubAckReason::Success],
            vec![UnsubAckReason::NoSubscriptionExisted]
        ]
    );

    let mut p = v4::Client::connect(v4::options(&server, "p")).await;
    p.publish("un/a", q4(1), false, "gone").await;
    p.publish("un/b", q4(1), false, "kept").await;
    let m = s.recv().await;
    assert_eq!(
        (v5::topic(&m), &m.payload[..]),
        ("un/b", &b"kept"[..]),
        "delivered after UNSUBSCRIBE"
    );
    drop((s, p));
    server.stop();
}

/// MQTT 5 §3.3.4: overlapping subscriptions of one client give one copy, at the highest
/// granted QoS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_subscriptions_give_one_copy_at_the_highest_qos() {
    let server = TestServer::start();
    let mut s = v5::Client::connect(v5::options(&server, "s")).await;
    s.subscribe("ov/#", q5(0)).await;
    s.subscribe("ov/+/t", q5(2)).await;
    s.subscribe("ov/x/t", q5(1)).await;
    let mut p = v5::Client::connect(v5::options(&server, "p")).await;
    p.publish("ov/x/t", q5(2), false, "three-matches").await;
    p.publish("ov/y", q5(2), false, "one-match").await;
    let got: Vec<(Vec<u8>, u8)> = s
        .recv_n(2)
        .await
        .into_iter()
        .map(|m| (m.payload.to_vec(), m.qos as u8))
        .collect();
    assert_eq!(got, vec![(b"three-matches".to_vec(), 2), (b"one-match".to_vec(), 0)]);
    drop((s, p));
    server.stop();
}

/// MQTT 5 §3.3.2.3.4 with §3.1.2.11.4: a message dropped because it is too large for the
/// client must not leave behind a topic alias the client never learned; the next message on
/// that topic has to carry the topic name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_oversized_message_does_not_consume_a_topic_alias() {
    let server = TestServer::start();
    let mut o = v5::options(&server, "s");
    o.set_topic_alias_max(Some(5));
    o.set_max_packet_size(Some(256));
    let mut s = v5::Client::connect(o).await;
    s.subscribe("alias-big/t", q5(1)).await;
    let mut p = v5::Client::connect(v5::options(&server, "p")).await;
    p.publish("alias-big/t", q5(1), false, vec![b'x'; 1000]).await;
    p.publish("alias-big/t", q5(1), false, "small").await;
    let m = s.recv().await;
    assert_eq!(&m.payload[..], b"small");
    assert_eq!(
        v5::topic(&m),
        "alias-big/t",
        "first PUBLISH the client receives on this topic uses alias {:?} without the topic name",
        v5::props(&m).topic_alias
    );
    drop((s, p));
    server.stop();
}

/// MQTT 5 §3.3.4: retained messages sent because of a SUBSCRIBE carry its subscription
/// identifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_carry_the_subscription_identifier() {
    let server = TestServer::start();
    let mut p = v5::Client::connect(v5::options(&server, "p")).await;
    p.publish("sidr/t", q5(1), true, "stored").await;
    let mut s = v5::Client::connect(v5::options(&server, "s")).await;
    let props = SubscribeProperties {
        id: Some(42),
        user_properties: Vec::new(),
    };
    s.subscribe_with(Filter::new("sidr/#", q5(1)), Some(props)).await;
    let m = s.recv().await;
    assert_eq!((&m.payload[..], m.retain), (&b"stored"[..], true));
    assert_eq!(v5::props(&m).subscription_identifiers, vec![42]);
    drop((s, p));
    server.stop();
}
