//! MQTT over WebSocket: rumqttc's WebSocket transport on the HTTP listener's `/mqtt` and on a
//! dedicated `mqtt-ws` listener, against MQTT over TCP on the same topics; bad handshakes.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};
use tokio::sync::mpsc;

use crate::util::url as url_of;
use crate::util::*;

/// A rumqttc MQTT 3.1.1 client over WebSocket whose PUBLISHes arrive on a channel.
pub(crate) async fn ws_client(url: &str, id: &str) -> (AsyncClient, mpsc::UnboundedReceiver<rumqttc::Publish>) {
    let mut opts = MqttOptions::new(id, url, 0);
    opts.set_transport(Transport::Ws);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut ev) = AsyncClient::new(opts, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ctx, mut connected) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(p);
                }
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = ctx.send(());
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ctx.send(());
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("ws client: {e}");
                    break;
                }
            }
        }
    });
    within("WebSocket CONNACK", connected.recv()).await.expect("connected");
    client.subscribe("ws/#", QoS::AtLeastOnce).await.unwrap();
    within("SUBACK", connected.recv()).await.expect("suback");
    (client, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_meet_tcp_clients() {
    let s = TestServer::start_text(
        "workers = 2\nsys_interval = \"0s\"\n\
         [[listeners]]\nname = \"mqtt\"\nprotocol = \"mqtt\"\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"http\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"ws\"\nprotocol = \"mqtt-ws\"\nbind = \"127.0.0.1:0\"\n",
    );
    let on_http = format!("ws://127.0.0.1:{}/mqtt", s.listener("http").port());
    let on_ws = format!("ws://127.0.0.1:{}/mqtt", s.listener("ws").port());
    let (a, mut a_rx) = ws_client(&on_http, "ws-a").await;
    let (_b, mut b_rx) = ws_client(&on_ws, "ws-b").await;
    let mut tcp = Mqtt::connect(&s, "tcp").await;
    tcp.subscribe("ws/#").await;

    tcp.publish("ws/from-tcp", false, "over tcp").await;
    for rx in [&mut a_rx, &mut b_rx] {
        let p = within("a message over WebSocket", rx.recv()).await.unwrap();
        assert_eq!((p.topic.as_str(), &p.payload[..]), ("ws/from-tcp", &b"over tcp"[..]));
    }
    let _ = tcp.recv().await; // its own message
                              // A large message crosses frames.
    let big = vec![b'z'; 200_000];
    a.publish("ws/big", QoS::AtLeastOnce, false, big.clone()).await.unwrap();
    let p = tcp.recv().await;
    assert_eq!((&p.topic[..], p.payload.len()), (&b"ws/big"[..], big.len()));
    let p = within("the big one over the other WebSocket", b_rx.recv())
        .await
        .unwrap();
    assert_eq!(p.payload.len(), big.len());
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_without_the_mqtt_subprotocol_or_upgrade_are_refused() {
    let s = server("", "");
    let port = s.listener("http").port();
    let ws = |proto: Option<&str>| {
        let mut args = WS_UPGRADE.to_vec();
        let header;
        if let Some(p) = proto {
            header = format!("Sec-WebSocket-Protocol: {p}");
            args.push("-H");
            args.push(&header);
        }
        // A 101 leaves the connection open: curl stops after its --max-time.
        args.extend(["--max-time", "1"]);
        curl_status(&args, &format!("http://127.0.0.1:{port}/mqtt"))
    };
    let (status, head) = ws(None);
    assert_eq!(status, 400, "{head}");
    let (status, head) = ws(Some("mqtt"));
    assert_eq!(status, 101, "{head}");
    assert!(head.contains("sec-websocket-protocol: mqtt"), "{head}");
    // A plain GET is not a WebSocket.
    assert_eq!(curl(&[], &format!("http://127.0.0.1:{port}/mqtt")).status, 400);
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_js_over_websocket_meets_http_and_mqtt() {
    let s = server("", "");
    let mut tcp = Mqtt::connect(&s, "tcp-side").await;
    tcp.subscribe("js/#").await;
    let client = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mqttjs/client.js");
    let url = format!("ws://127.0.0.1:{}/mqtt", s.listener("http").port());
    let args: Vec<String> = [client, url.as_str(), "js/#", "hello from MQTT.js"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    let mut js = Proc::spawn("node", &args);
    js.wait_for_line("subscribed");
    // MQTT.js → MQTT over TCP.
    let p = tcp.recv().await;
    assert_eq!(
        (&p.topic[..], &p.payload[..]),
        (&b"js/from-js"[..], &b"hello from MQTT.js"[..])
    );
    // HTTP → MQTT.js.
    let r = curl(
        &[
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"topic":"js/from-http","payload":"hi js","qos":1}"#,
        ],
        &url_of(&s, "/api/v1/publish"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    js.wait_for_line("MSG js/from-http hi js");
    assert!(js.finish().0.success(), "MQTT.js exits cleanly");
    s.stop();
}

/// Keep alive and the connect timeout hold over WebSocket as over TCP (the same sweeper): a
/// client silent for 1.5 × its keep alive gets DISCONNECT 0x8D and then the close; one that
/// never sends CONNECT is closed after `connect_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_websocket_clients_are_closed_by_keep_alive_and_connect_timeout() {
    use async_tungstenite::tungstenite::client::IntoClientRequest as _;
    use async_tungstenite::tungstenite::Message as WsMessage;
    use futures::StreamExt as _;
    use std::time::Instant;
    use unigate_mqtt::{Connect, Packet as M, ProtocolVersion};

    let s = server("", "[listeners.limits]\nconnect_timeout = \"1s\"");
    let url = format!("ws://127.0.0.1:{}/mqtt", s.listener("http").port());
    let open = || async {
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
        within("WebSocket handshake", async_tungstenite::tokio::connect_async(req))
            .await
            .expect("handshake")
            .0
    };
    // The MQTT packets of the binary frames until the server closes.
    async fn until_closed(
        ws: &mut async_tungstenite::WebSocketStream<async_tungstenite::tokio::ConnectStream>,
    ) -> Vec<M> {
        let mut packets = Vec::new();
        loop {
            match within("the server's close", ws.next()).await {
                Some(Ok(WsMessage::Binary(b))) => {
                    let mut buf = bytes::BytesMut::from(&b[..]);
                    while let Some(p) = unigate_mqtt::decode(&mut buf, Some(ProtocolVersion::V5), 1 << 20).unwrap() {
                        packets.push(p);
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return packets,
                Some(Ok(_)) => {}
            }
        }
    }

    let started = Instant::now();
    let mut silent = open().await;
    assert!(until_closed(&mut silent).await.is_empty());
    let t = started.elapsed();
    assert!(
        t >= Duration::from_millis(900) && t <= Duration::from_millis(2500),
        "no CONNECT: closed after {t:?}, want about 1 s"
    );

    let mut quiet = open().await;
    let mut connect = bytes::BytesMut::new();
    let packet = M::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        client_id: "ws-quiet".into(),
        keep_alive: 1,
        ..Connect::default()
    }));
    unigate_mqtt::encode(&packet, ProtocolVersion::V5, &mut connect).unwrap();
    quiet.send(WsMessage::binary(connect.to_vec())).await.unwrap();
    let connected = Instant::now();
    let packets = until_closed(&mut quiet).await;
    let t = connected.elapsed();
    assert!(
        matches!(packets.first(), Some(M::ConnAck(a)) if a.reason_code.0 == 0),
        "{packets:?}"
    );
    assert!(
        matches!(packets.last(), Some(M::Disconnect(d)) if d.reason_code.0 == 0x8D),
        "{packets:?}"
    );
    assert!(
        t >= Duration::from_millis(1400) && t <= Duration::from_millis(2600),
        "keep alive 1 s: closed after {t:?}, want about 1.5 s"
    );
    s.stop();
}
