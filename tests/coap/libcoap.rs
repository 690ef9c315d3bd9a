//! Debian's libcoap client (`coap-client-openssl`, package libcoap3-bin) against the gateway,
//! with an MQTT client (rumqttc) on the other side of every exchange.

use std::sync::atomic::Ordering;

use crate::util::*;

fn observations(s: &TestServer) -> i64 {
    s.broker().metrics.coap_observations.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn con_publish_reaches_mqtt_as_qos1_and_non_as_qos0() {
    let s = server("");
    let mut sub = Mqtt::connect(&s, "sub").await;
    sub.subscribe("sensors/#", q(2)).await;

    let out = coap_client(&["-m", "post", "-e", "21.5", &uri(&s, "/ps/sensors/t1")]);
    assert!(out.iter().all(|l| l.trim().is_empty()), "2.04 has no payload: {out:?}");
    let p = sub.recv().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.qos),
        ("sensors/t1", &b"21.5"[..], q(1))
    );

    coap_client(&["-m", "post", "-N", "-e", "22", &uri(&s, "/ps/sensors/t2")]);
    let p = sub.recv().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.qos),
        ("sensors/t2", &b"22"[..], q(0))
    );

    // The query decides when present: retained QoS 2 (the subscriber granted 2).
    coap_client(&["-m", "put", "-e", "on", &uri(&s, "/ps/sensors/lamp?qos=2&retain=true")]);
    let p = sub.recv().await;
    assert_eq!((p.topic.as_str(), p.qos), ("sensors/lamp", q(2)));
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_gets_mqtt_messages_and_the_retained_one_first() {
    let s = server("");
    let mqtt = Mqtt::connect(&s, "pub").await;
    mqtt.publish("room/1/temp", q(1), true, "retained-19").await;
    wait_until("retained stored", || {
        s.broker().metrics.retained.load(Ordering::Relaxed) == 1
    })
    .await;

    // Wildcard observation; -w ends each notification with a newline.
    let mut obs = coap_client_bg(&["-m", "get", "-s", "30", "-w", &uri(&s, "/ps/room/+/temp")]);
    obs.wait_for_line("retained-19");
    wait_until("observation registered", || observations(&s) == 1).await;
    mqtt.publish("room/2/temp", q(1), false, "live-20").await;
    obs.wait_for_line("live-20");
    mqtt.publish("room/3/temp", q(0), false, "live-21").await;
    obs.wait_for_line("live-21");
    obs.kill();
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_read_with_plain_get() {
    let s = server("");
    let mqtt = Mqtt::connect(&s, "pub").await;
    mqtt.publish("cfg/dev7", q(1), true, "{\"interval\":60}").await;
    wait_until("retained stored", || {
        s.broker().metrics.retained.load(Ordering::Relaxed) == 1
    })
    .await;
    let out = coap_client(&["-m", "get", &uri(&s, "/ps/cfg/dev7")]);
    assert!(out.iter().any(|l| l.contains("{\"interval\":60}")), "{out:?}");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_mode_connect_publish_heartbeat_close() {
    let s = server("[coap]\nconnection_required = true\n");
    let mut sub = Mqtt::connect(&s, "sub").await;
    sub.subscribe("$SYS/broker/clients/+/+", q(0)).await;
    sub.subscribe("up/#", q(1)).await;

    let out = coap_client(&["-m", "post", "-e", "", &uri(&s, "/mqtt/connection?clientid=dev1")]);
    let token = out
        .iter()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
        .expect("a token")
        .to_string();
    assert!(token.chars().all(|c| c.is_ascii_digit()), "{token}");
    let ev = sub.recv().await;
    assert_eq!(ev.topic, "$SYS/broker/clients/dev1/connected");

    // Without the token: refused (nothing published).
    coap_client(&["-m", "post", "-e", "x", &uri(&s, "/ps/up/1?clientid=dev1")]);
    coap_client(&["-m", "post", "-e", "x", &uri(&s, "/ps/up/1?clientid=dev1&token=1")]);
    sub.assert_silent().await;

    coap_client(&[
        "-m",
        "post",
        "-e",
        "ok",
        &uri(&s, &format!("/ps/up/1?c=dev1&t={token}")),
    ]);
    let p = sub.recv().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("up/1", &b"ok"[..]));

    coap_client(&[
        "-m",
        "put",
        "-e",
        "",
        &uri(&s, &format!("/mqtt/connection?clientid=dev1&token={token}")),
    ]);
    coap_client(&[
        "-m",
        "delete",
        &uri(&s, &format!("/mqtt/connection?clientid=dev1&token={token}")),
    ]);
    let ev = sub.recv().await;
    assert_eq!(ev.topic, "$SYS/broker/clients/dev1/disconnected");
    let body: serde_json::Value = serde_json::from_slice(&ev.payload).unwrap();
    assert_eq!(body["reason"], "disconnected");
    assert_eq!(body["protocol"], "coap");
    // The token is dead now.
    coap_client(&[
        "-m",
        "post",
        "-e",
        "late",
        &uri(&s, &format!("/ps/up/1?c=dev1&t={token}")),
    ]);
    sub.assert_silent().await;
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block1_upload_arrives_whole() {
    let s = server("");
    let mut sub = Mqtt::connect(&s, "sub").await;
    sub.subscribe("big", q(1)).await;
    let body: String = (0..3000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let dir = std::env::temp_dir().join(format!("unigate-coap-b1-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("body.txt");
    std::fs::write(&file, &body).unwrap();
    coap_client(&[
        "-m",
        "post",
        "-b",
        "64",
        "-f",
        file.to_str().unwrap(),
        &uri(&s, "/ps/big"),
    ]);
    let p = sub.recv().await;
    assert_eq!(p.payload.len(), 3000);
    assert_eq!(&p.payload[..], body.as_bytes());
    let _ = std::fs::remove_dir_all(&dir);
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_notification_comes_block_wise() {
    let s = server("[coap]\nblock_size = 256\n");
    let mqtt = Mqtt::connect(&s, "pub").await;
    let mut obs = coap_client_bg(&["-m", "get", "-s", "30", "-w", &uri(&s, "/ps/fw/chunk")]);
    wait_until("observation registered", || observations(&s) == 1).await;
    let body: String = (0..2000).map(|i| char::from(b'A' + (i % 26) as u8)).collect();
    mqtt.publish("fw/chunk", q(1), false, body.clone()).await;
    let line = obs.wait_for_line("XYZ");
    assert!(
        line.contains(&body),
        "whole body in one notification, got {} bytes",
        line.len()
    );
    obs.kill();
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_datagrams_are_retransmitted_and_deduplicated() {
    // libcoap's -l drops the listed datagrams it would send: the first request is lost and
    // sent again after ACK_TIMEOUT; the message arrives once.
    let s = server("");
    let mut sub = Mqtt::connect(&s, "sub").await;
    sub.subscribe("lossy", q(1)).await;
    coap_client(&["-m", "post", "-l", "1", "-e", "once", &uri(&s, "/ps/lossy")]);
    let p = sub.recv().await;
    assert_eq!(&p.payload[..], b"once");
    sub.assert_silent().await;
    s.stop();
}
