//! Will messages: published when a connection ends without DISCONNECT, not after a normal
//! DISCONNECT; MQTT 5 will delay, its cancellation by a reconnect, and DISCONNECT 0x04.

use std::time::Instant;

use rumqttc::v5::mqttbytes::v5::{LastWill as LastWill5, LastWillProperties};
use rumqttc::LastWill as LastWill4;

use crate::common::TestServer;
use crate::util::{q4, q5, v4, v5, wait_until};

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

/// MQTT 5 §3.1.2.10: a client silent for 1.5 × its keep alive is disconnected with 0x8D
/// (Keep Alive timeout), and its will is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_timeout_disconnects_and_publishes_the_will() {
    let server = TestServer::start();
    let mut s = v5::Client::connect(v5::options(&server, "watcher")).await;
    s.subscribe("ka/#", q5(1)).await;

    let mut connect = v5::connect_packet("sleepy", None);
    connect.keep_alive = 1;
    let started = Instant::now();
    let mut c = v5::RawConn::connect(&server, connect, Some(will5("ka/will", "timed-out", None))).await;
    let (kind, body) = c.frame().await.expect("DISCONNECT");
    let after = started.elapsed();
    assert_eq!(kind, 0xE0, "expected DISCONNECT, got packet type {kind:#04x}");
    assert_eq!(
        body.first(),
        Some(&0x8D),
        "DISCONNECT reason (0x8D Keep Alive timeout): {body:02x?}"
    );
    assert!(
        after.as_millis() >= 1400,
        "disconnected after {after:?}, keep alive 1 s"
    );
    assert_eq!(c.frame().await, None, "the connection must be closed");
    let m = s.recv().await;
    assert_eq!((v5::topic(&m), &m.payload[..]), ("ka/will", &b"timed-out"[..]));
    drop(s);
    server.stop();
}

/// MQTT 5 §3.1.4: a connection closed by a session takeover publishes its will (no delay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_takeover_publishes_the_will_of_the_first_connection() {
    let server = TestServer::start();
    let mut s = v5::Client::connect(v5::options(&server, "watcher")).await;
    s.subscribe("tw/#", q5(1)).await;
    let mut o = v5::persistent(&server, "twin", 60);
    o.set_last_will(will5("tw/will", "taken-over", None));
    let mut first = v5::Client::connect(o.clone()).await;
    let second = v5::Client::connect(o).await;
    assert!(second.connack.session_present);
    first.closed().await;
    let m = s.recv().await;
    assert_eq!((v5::topic(&m), &m.payload[..]), ("tw/will", &b"taken-over"[..]));
    drop((s, second));
    server.stop();
}

/// MQTT 5 §3.1.3.2.2: with a will delay, the takeover resumes the session within the delay,
/// so the first connection's will is not published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_takeover_within_the_will_delay_cancels_the_will() {
    let server = TestServer::start();
    let mut s = v5::Client::connect(v5::options(&server, "watcher")).await;
    s.subscribe("twd/#", q5(1)).await;
    let mut o = v5::persistent(&server, "twin", 60);
    o.set_last_will(will5("twd/will", "cancelled", Some(1)));
    let mut first = v5::Client::connect(o.clone()).await;
    let second = v5::Client::connect(o).await;
    first.closed().await;

    let mut w = v5::persistent(&server, "witness", 10);
    w.set_last_will(will5("twd/will", "witness-will", Some(2)));
    v5::Client::connect(w).await.kill().await;
    let m = s.recv().await;
    assert_eq!(
        &m.payload[..],
        b"witness-will",
        "the will of the taken-over connection was published"
    );
    drop((s, second));
    server.stop();
}

/// MQTT 5 §3.1.3.2.4: the will's Message Expiry Interval is "sent as the Publication Expiry
/// Interval when the Server publishes the Will Message": it counts from publication, not from
/// CONNECT. A client connected for longer than that interval still has its will delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_message_expiry_counts_from_publication() {
    let server = TestServer::start();
    let mut s = v5::Client::connect(v5::options(&server, "watcher")).await;
    s.subscribe("wx/#", q5(1)).await;

    let mut will = will5("wx/will", "expiring-will", None);
    will.properties.as_mut().unwrap().message_expiry_interval = Some(1);
    let mut o = v5::options(&server, "mortal");
    o.set_last_will(will);
    let c = v5::Client::connect(o).await;
    // Stay connected longer than the will's expiry interval: this wait is the point of the test.
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    c.kill().await;
    let m = s.recv().await;
    assert_eq!(&m.payload[..], b"expiring-will");
    assert_eq!(
        v5::props(&m).message_expiry_interval,
        Some(1),
        "the full interval, counted from publication"
    );
    drop(s);
    server.stop();
}

/// MQTT 5 §3.14.2.2.2: a Session Expiry Interval sent in DISCONNECT replaces the one from
/// CONNECT; setting it to 0 ends the session with the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_set_to_zero_on_disconnect_ends_the_session() {
    use rumqttc::v5::mqttbytes::v5::{Disconnect, DisconnectProperties, DisconnectReasonCode, Packet};

    let server = TestServer::start();
    let mut c = v5::RawConn::connect(&server, v5::connect_packet("fleeting", Some(60)), None).await;
    assert!(server.broker().session("fleeting").is_some());
    c.send(Packet::Disconnect(Disconnect {
        reason_code: DisconnectReasonCode::NormalDisconnection,
        properties: Some(DisconnectProperties {
            session_expiry_interval: Some(0),
            reason_string: None,
            user_properties: Vec::new(),
            server_reference: None,
        }),
    }))
    .await;
    assert_eq!(
        c.frame().await,
        None,
        "the server must close the connection after DISCONNECT"
    );
    assert!(
        server.broker().session("fleeting").is_none(),
        "the session must end with the connection"
    );
    server.stop();
}

/// MQTT 5 §3.1.3.2.2: the will goes out when the session ends, even before its delay: with no
/// session expiry (0) that is when the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_delay_does_not_outlive_a_session_without_expiry() {
    let server = TestServer::start();
    let mut s = v5::Client::connect(v5::options(&server, "watcher")).await;
    s.subscribe("nx/#", q5(1)).await;
    let mut o = v5::options(&server, "gone");
    o.set_last_will(will5("nx/will", "session-over", Some(30)));
    let c = v5::Client::connect(o).await;
    let dropped = Instant::now();
    c.kill().await;
    let m = s.recv().await;
    assert_eq!(&m.payload[..], b"session-over");
    assert!(
        dropped.elapsed().as_secs() < 5,
        "will came after {:?}",
        dropped.elapsed()
    );
    drop(s);
    server.stop();
}

/// MQTT 5 §3.1.3.2.2: a reconnect with clean start 1 within the will delay does not resume
/// the session, it ends it, so the held will is published then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_start_reconnect_within_the_will_delay_publishes_the_will() {
    let server = TestServer::start();
    let mut s = v5::Client::connect(v5::options(&server, "watcher")).await;
    s.subscribe("cs/#", q5(1)).await;
    let mut o = v5::persistent(&server, "restart", 60);
    o.set_last_will(will5("cs/will", "old-session-ended", Some(30)));
    let c = v5::Client::connect(o).await;
    c.kill().await;
    let old = server
        .broker()
        .session("restart")
        .expect("the session outlives the connection");
    wait_until("the server to see the close", || !old.is_online()).await;
    let mut fresh = v5::options(&server, "restart");
    fresh.set_session_expiry_interval(Some(60));
    let fresh = v5::Client::connect(fresh).await;
    assert!(!fresh.connack.session_present);
    let m = s.recv().await;
    assert_eq!(&m.payload[..], b"old-session-ended");
    drop((s, fresh));
    server.stop();
}

/// MQTT 5 §3.1.4 / §3.1.3.2.2: the same when the first connection is still open: a takeover
/// with clean start 1 ends the old session, so its will is published despite the delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_start_takeover_publishes_the_delayed_will() {
    let server = TestServer::start();
    let mut s = v5::Client::connect(v5::options(&server, "watcher")).await;
    s.subscribe("ct/#", q5(1)).await;
    let mut o = v5::persistent(&server, "usurped", 60);
    o.set_last_will(will5("ct/will", "old-session-ended", Some(30)));
    let mut first = v5::Client::connect(o).await;
    let mut fresh = v5::options(&server, "usurped");
    fresh.set_session_expiry_interval(Some(60));
    let fresh = v5::Client::connect(fresh).await;
    assert!(!fresh.connack.session_present);
    first.closed().await;
    let m = s.recv().await;
    assert_eq!(&m.payload[..], b"old-session-ended");
    drop((s, fresh));
    server.stop();
}
