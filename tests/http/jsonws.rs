//! The JSON WebSocket (`/api/v1/ws`) with a real WebSocket client (async-tungstenite).

use async_tungstenite::tungstenite::Message as WsMessage;
use futures::StreamExt;

use crate::util::*;

type Ws = async_tungstenite::WebSocketStream<async_tungstenite::tokio::ConnectStream>;

async fn open(s: &TestServer, query: &str) -> Ws {
    let url = format!("ws://127.0.0.1:{}/api/v1/ws{query}", s.listener("http").port());
    let (ws, _) = within("WebSocket handshake", async_tungstenite::tokio::connect_async(url))
        .await
        .expect("handshake");
    ws
}

async fn send(ws: &mut Ws, v: serde_json::Value) {
    ws.send(WsMessage::text(v.to_string())).await.unwrap();
}

/// The next JSON text frame.
async fn next(ws: &mut Ws) -> serde_json::Value {
    loop {
        match within("a frame", ws.next()).await {
            Some(Ok(WsMessage::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_publish_and_errors_over_json() {
    let s = server("", "");
    let mqtt = Mqtt::connect(&s, "mqtt-side").await;
    let mut ws = open(&s, "?clientid=web-1").await;
    send(
        &mut ws,
        serde_json::json!({"op": "subscribe", "topic": "ui/#", "qos": 1, "id": 1}),
    )
    .await;
    let ack = next(&mut ws).await;
    assert_eq!(
        (ack["op"].as_str(), ack["id"].as_i64(), ack["qos"].as_i64()),
        (Some("suback"), Some(1), Some(1))
    );
    mqtt.publish("ui/lamp", false, "on").await;
    let m = next(&mut ws).await;
    assert_eq!(
        (m["op"].as_str(), m["topic"].as_str(), m["payload"].as_str()),
        (Some("message"), Some("ui/lamp"), Some("on"))
    );

    // Publishing from the socket reaches MQTT subscribers and the socket itself.
    let mut sub = Mqtt::connect(&s, "sub").await;
    sub.subscribe("ui/#").await;
    send(
        &mut ws,
        serde_json::json!({"op": "publish", "topic": "ui/btn", "payload": "pressed", "qos": 1, "id": "p1"}),
    )
    .await;
    let mut got = [next(&mut ws).await, next(&mut ws).await];
    got.sort_by_key(|v| v["op"].as_str().map(str::to_string));
    assert_eq!(
        (got[0]["op"].as_str(), got[0]["payload"].as_str()),
        (Some("message"), Some("pressed"))
    );
    assert_eq!(
        (got[1]["op"].as_str(), got[1]["id"].as_str(), got[1]["routed"].as_i64()),
        (Some("puback"), Some("p1"), Some(2))
    );
    assert_eq!(&sub.recv().await.payload[..], b"pressed");

    // Bad requests get an error frame; the socket stays.
    send(&mut ws, serde_json::json!({"op": "publish", "topic": "ui/+", "id": 7})).await;
    let e = next(&mut ws).await;
    assert_eq!(
        (e["op"].as_str(), e["id"].as_i64(), e["code"].as_str()),
        (Some("error"), Some(7), Some("BAD_REQUEST"))
    );
    ws.send(WsMessage::text("not json")).await.unwrap();
    assert_eq!(next(&mut ws).await["code"], "BAD_REQUEST");
    send(&mut ws, serde_json::json!({"op": "dance"})).await;
    assert_eq!(next(&mut ws).await["code"], "BAD_REQUEST");
    send(
        &mut ws,
        serde_json::json!({"op": "unsubscribe", "topic": "ui/#", "id": 9}),
    )
    .await;
    assert_eq!(next(&mut ws).await["op"], "unsuback");
    mqtt.publish("ui/lamp", false, "off").await;
    assert_eq!(&sub.recv().await.payload[..], b"off");
    if let Ok(Some(Ok(WsMessage::Text(t)))) = tokio::time::timeout(QUIET, ws.next()).await {
        panic!("unsubscribed, yet got {t}");
    }
    // A binary frame closes with 1003.
    ws.send(WsMessage::binary(vec![1u8, 2, 3])).await.unwrap();
    match within("close", ws.next()).await {
        Some(Ok(WsMessage::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1003),
        other => panic!("expected a close frame, got {other:?}"),
    }
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acl_applies_to_json_sockets() {
    let acl = "[acl]\nno_match = \"deny\"\n[[acl.rules]]\npermission = \"allow\"\nwho = \"all\"\naction = \"all\"\ntopics = [\"open/#\"]\n";
    let s = server(acl, "");
    let mut ws = open(&s, "").await;
    send(
        &mut ws,
        serde_json::json!({"op": "subscribe", "topic": "secret/#", "id": 1}),
    )
    .await;
    assert_eq!(next(&mut ws).await["code"], "NOT_AUTHORIZED");
    send(
        &mut ws,
        serde_json::json!({"op": "publish", "topic": "secret/x", "payload": "p", "qos": 1, "id": 2}),
    )
    .await;
    assert_eq!(next(&mut ws).await["code"], "NOT_AUTHORIZED");
    send(
        &mut ws,
        serde_json::json!({"op": "subscribe", "topic": "open/#", "id": 3}),
    )
    .await;
    assert_eq!(next(&mut ws).await["op"], "suback");
    s.stop();
}
