//! Will messages: published when a connection ends without DISCONNECT, not after a normal
//! DISCONNECT; MQTT 5 will delay, its cancellation by a reconnect, and DISCONNECT 0x04.

use std::time::Instant;

use rumqttc::v5::mqttbytes::v5::{LastWill as LastWill5, LastWillProperties};
use rumqttc::LastWill as LastWill4;

use crate::common::TestServer;
use crate::util::{q4, q5, v4, v5};

/// MQTT 3.1.1 §3.1.2.5: the will is published when the network connection closes without
/// DISCONNECT, with its QoS and RETAIN; after DISCONNECT it is discarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_will_on_abnormal_close_only() {
    let server = TestServer::start();
    let mut s = v4::Client::connect(v4::options(&server, "watcher")).await;
    s.subscribe("will4/#", q4(2)).await;

    // A normal DISCONNECT: no will.
    let mut o = v4::options(&server, "polite");
    o.set_last_will(LastWill4::new("will4/polite", "polite-gone", q4(1), false));
    v4::Client::connect(o).await.disconnect().await;
    let mut p = v4::Client::connect(v4::options(&server, "pub")).await;
    p.publish("will4/marker", q4(1), false, "marker").await;
    let m = s.recv().await;
    assert_eq!(m.topic, "will4/marker", "a will was published after DISCONNECT: {m:?}");

    // The socket is dropped: the will goes out, and a retained will is stored.
    let mut o = v4::options(&server, "rude");
    o.set_last_will(LastWill4::new("will4/rude", "rude-gone", q4(2), true));
    v4::Client::connect(o).await.kill().await;
    let m = s.recv().await;
    assert_eq!(
        (m.topic.as_str(), &m.payload[..], m.qos),
        ("will4/rude", &b"rude-gone"[..], q4(2))
    );
    let mut late = v4::Client::connect(v4::options(&server, "late")).await;
    late.subscribe("will4/rude", q4(2)).await;
    let m = late.recv().await;
    assert_eq!((&m.payload[..], m.retain), (&b"rude-gone"[..], true), "retained will");
    drop((s, p, late));
    server.stop();
}

fn will5(topic: &str, payload: &str, delay: Option<u32>) -> LastWill5 {
    let props = LastWillProperties {
        delay_interval: delay,
        content_type: Some("text/plain".into()),
        payload_format_indicator: Some(1),
        user_properties: vec![("why".into(), "gone".into()), ("why".into(), "again".into())],
        message_expiry_interval: None,
        response_topic: None,
        correlation_data: None,
    };
    LastWill5::new(topic, payload, q5(1), false, Some(props))
}

/// MQTT 5 §3.1.2.5: the will (with its properties) is published on an abnormal close, also to
/// a 3.1.1 subscriber; a normal DISCONNECT (0x00) discards it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_will_on_abnormal_close_only() {
    let server = TestServer::start();
    let mut s5 = v5::Client::connect(v5::options(&server, "watcher5")).await;
    s5.subscribe("will5/#", q5(1)).await;
    let mut s4 = v4::Client::connect(v4::options(&server, "watcher4")).await;
    s4.subscribe("will5/#", q4(1)).await;

    let mut o = v5::options(&server, "polite");
    o.set_last_will(will5("will5/polite", "polite-gone", None));
    v5::Client::connect(o).await.disconnect().await;
    let mut p = v5::Client::connect(v5::options(&server, "pub")).await;
    p.publish("will5/marker", q5(1), false, "marker").await;
    let m = s5.recv().await;
    assert_eq!(
        v5::topic(&m),
        "will5/marker",
        "a will was published after DISCONNECT: {m:?}"
    );
    let m = s4.recv().await;
    assert_eq!(m.topic, "will5/marker", "a will was published after DISCONNECT: {m:?}");

    let mut o = v5::options(&server, "rude");
    o.set_last_will(will5("will5/rude", "rude-gone", None));
    v5::Client::connect(o).await.kill().await;
    let m = s5.recv().await;
    assert_eq!(
        (v5::topic(&m), &m.payload[..], m.qos),
        ("will5/rude", &b"rude-gone"[..], q5(1))
    );
    let props = v5::props(&m);
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(props.payload_format_indicator, Some(1));
    assert_eq!(
        props.user_properties,
        vec![
            ("why".to_string(), "gone".to_string()),
            ("why".to_string(), "again".to_string())
        ]
    );
    let m = s4.recv().await;
    assert_eq!((m.topic.as_str(), &m.payload[..]), ("will5/rude", &b"rude-gone"[..]));
    drop((s5, s4, p));
    server.stop();
}

/// MQTT 5 §3.1.3.2.2: with a Will Delay Interval the will is published only after the delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_will_delay_holds_the_will() {
    let server = TestServer::start();
    let mut s = v5::Client::connect(v5::options(&server, "watcher")).await;
    s.subscribe("delay/#", q5(1)).await;

    let mut o = v5::persistent(&server, "delayed", 10);
    o.set_last_will(will5("delay/will", "late-will", Some(1)));
    let c = v5::Client::connect(o).await;
    let dropped = Instant::now();
    c.kill().await;
    let m = s.recv().await;
    let after = dropped.elapsed();
    assert_eq!(&m.payload[..], b"late-will");
    assert!(
        after.as_millis() >= 900,
        "will published {after:?} after the close, delay is 1 s"
    );
    drop(s);
    server.stop();
}

/// MQTT 5 §3.1.3.2.2: the will is published when the session ends, if that comes before the
/// delay (session expiry 1 s, will delay 30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_will_goes_out_when_the_session_ends_before_the_delay() {
    let server = TestServer::start();
    let mut s = v5::Client::connect(v5::options(&server, "watcher")).await;
    s.subscribe("delay/#", q5(1)).await;

    let mut o = v5::persistent(&server, "short-session", 1);
    o.set_last_will(will5("delay/will", "session-ended", Some(30)));
    let c = v5::Client::connect(o).await;
    let dropped = Instant::now();
    c.kill().await;
    let m = s.recv().await;
    let after = dropped.elapsed();
    assert_eq!(&m.payload[..], b"session-ended");
    assert!(
        (900..5000).contains(&after.as_millis()),
        "will published {after:?} after the close; session expiry is 1 s, will delay 30 s"
    );
    drop(s);
    server.stop();
}

/// MQTT 5 §3.1.3.2.2: a client that reconnects to its session within the will delay cancels
/// the will.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_will_delay_is_cancelled_by_a_reconnect() {
    let server = TestServer::start();
    let mut s = v5::Client::connect(v5::options(&server, "watcher")).await;
    s.subscribe("cancel/#", q5(1)).await;

    let mut o = v5::persistent(&server, "comeback", 10);
    o.set_last_will(will5("cancel/will", "cancelled-will", Some(1)));
    v5::Client::connect(o.clone()).await.kill().await;
    let back = v5::Client::connect(o).await;
    assert!(back.connack.session_present);

    // A witness whose will is due one second after the cancelled one would have been: when it
    // arrives, the cancelled will has had its time.
    let mut w = v5::persistent(&server, "witness", 10);
    w.set_last_will(will5("cancel/will", "witness-will", Some(2)));
    v5::Client::connect(w).await.kill().await;
    let m = s.recv().await;
    assert_eq!(&m.payload[..], b"witness-will", "the cancelled will was published");
    drop((s, back));
    server.stop();
}

/// MQTT 5 §3.14.2.1: DISCONNECT with reason 0x04 (Disconnect with Will Message) publishes the
/// will.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_disconnect_with_will_message_publishes_the_will() {
    let server = TestServer::start();
    let mut s = v5::Client::connect(v5::options(&server, "watcher")).await;
    s.subscribe("w04/#", q5(1)).await;
    v5::connect_and_disconnect_with_will(&server, "leaver", will5("w04/will", "asked-for", None)).await;
    let m = s.recv().await;
    assert_eq!((v5::topic(&m), &m.payload[..]), ("w04/will", &b"asked-for"[..]));
    drop(s);
    server.stop();
}
